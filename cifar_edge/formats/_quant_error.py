"""Per-layer quantization error of an int8 .tflite: which layers cost the accuracy.

Two errors per quantized tensor, both as a noise-to-signal ratio (the RMS of the error over
the spread of the float values, per channel, averaged over channels; per channel, because
one outlier channel can stretch a tensor's single int8 scale and drown every other channel
while whole-tensor figures look fine) and as cosine similarity:

* **added**: the error the layer's own quantization adds, given the same (quantized) input,
  read from the NumericVerify ops TFLite's QuantizationDebugger instruments the model with;
* **accumulated**: the error of the tensor when the whole model runs in int8, against the
  float model on the same image.

A layer whose added error is high is one to keep in float (``export --max-drop`` does so in
ranking order); a high accumulated error with a low added one is inherited from upstream.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def channel_nsr(reference: np.ndarray, other: np.ndarray) -> float:
    """Mean over channels (last axis) of RMS(other - reference) / std(reference)."""
    ref = reference.reshape(-1, reference.shape[-1]).astype(np.float64)
    err = other.reshape(-1, reference.shape[-1]).astype(np.float64) - ref
    spread = ref.std(axis=0)
    live = spread > 1e-8 * (np.abs(ref).max() + 1e-12)
    if not live.any():
        return 0.0
    return float(np.mean(np.sqrt(np.mean(err[:, live] ** 2, axis=0)) / spread[live]))


def cosine(reference: np.ndarray, other: np.ndarray) -> float:
    a, b = reference.ravel().astype(np.float64), other.ravel().astype(np.float64)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom else 1.0


def _dequantize(tensor: np.ndarray, detail: dict) -> np.ndarray:
    params = detail.get("quantization_parameters") or {}
    scales, zeros = params.get("scales"), params.get("zero_points")
    if not np.issubdtype(tensor.dtype, np.integer) or scales is None or not len(scales):
        return tensor.astype(np.float32)
    axis = params.get("quantized_dimension", 0)
    if len(scales) > 1:
        shape = [1] * tensor.ndim
        shape[axis] = len(scales)
        scales, zeros = scales.reshape(shape), zeros.reshape(shape)
    return ((tensor.astype(np.float32) - zeros) * scales).astype(np.float32)


@dataclass
class _Layer:
    node: str          # the TFLite tensor (node) name: what the converter's denylist takes
    op: str
    layer: str         # the Keras layer it comes from
    added: list
    added_cos: list
    accumulated: list
    accumulated_cos: list


def keras_layer_of(node: str, layer_order: dict) -> str:
    """The Keras layer a TFLite tensor name comes from ("model/block_1_project/Conv2D;..."):
    of the layer names it mentions, the one latest in the model (a fused op's output)."""
    found = [part for piece in node.split(";") for part in piece.split("/") if part in layer_order]
    return max(found, key=layer_order.get) if found else node.split(";")[0]


def _interpreter(content: bytes, preserve: bool = False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    interp = Interpreter(model_content=content, num_threads=1,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                         experimental_preserve_all_tensors=preserve)
    interp.allocate_tensors()
    return interp


def _feed(interp, image: np.ndarray):
    from ._litert import to_input
    detail = interp.get_input_details()[0]
    interp.set_tensor(detail["index"], to_input(image[None], detail))
    interp.invoke()


def layer_errors(calibrated: bytes, images: np.ndarray, denylist=(), per_channel: bool = True) -> dict:
    """{node: (op, [added nsr], [added cosine], [accumulated nsr], [accumulated cosine])} over
    ``images`` (normalized float32, one at a time), for the int8 quantization of ``calibrated``
    with ``denylist`` nodes in float."""
    from tensorflow.lite.python.convert import mlir_quantize
    debug = mlir_quantize(calibrated, disable_per_channel=not per_channel, enable_numeric_verify=True,
                          denylisted_nodes=list(denylist))
    plain = mlir_quantize(calibrated, disable_per_channel=not per_channel, denylisted_nodes=list(denylist))
    dbg, quant, flt = _interpreter(debug, True), _interpreter(plain, True), _interpreter(calibrated, True)
    # NumericVerify ops take (quantized tensor, float tensor computed from the same quantized input).
    verify = [op for op in dbg._get_ops_details() if op["op_name"] in ("NumericVerify", "NUMERIC_VERIFY")]  # noqa: SLF001
    dbg_tensors = {t["index"]: t for t in dbg.get_tensor_details()}
    producers = {o: op["op_name"] for op in dbg._get_ops_details() for o in op["outputs"]}  # noqa: SLF001
    quant_by_name = {t["name"]: t for t in quant.get_tensor_details()}
    float_by_name = {t["name"]: t for t in flt.get_tensor_details()}
    from .. import console
    out: dict = {}
    with console.progress(f"diagnosis ({len(verify)} layers)", len(images)) as advance:
        for k, image in enumerate(images, start=1):
            for interp in (dbg, quant, flt):
                _feed(interp, image)
            for op in verify:
                q_idx, f_idx = op["inputs"][0], op["inputs"][1]
                q_detail = dbg_tensors[q_idx]
                name = dbg_tensors[f_idx]["name"]        # the float op's output: what the denylist names
                q = _dequantize(dbg.get_tensor(q_idx), q_detail)
                f = dbg.get_tensor(f_idx).astype(np.float32)
                row = out.setdefault(name, (producers.get(q_idx, "?"), [], [], [], []))
                row[1].append(channel_nsr(f, q))
                row[2].append(cosine(f, q))
                if name in quant_by_name and name in float_by_name:
                    qd = quant_by_name[name]
                    whole = _dequantize(quant.get_tensor(qd["index"]), qd)
                    ref = flt.get_tensor(float_by_name[name]["index"]).astype(np.float32)
                    if whole.shape == ref.shape:
                        row[3].append(channel_nsr(ref, whole))
                        row[4].append(cosine(ref, whole))
            advance(image=k)
    return out


def rank_layers(model, calibrated: bytes, held_out: np.ndarray, calibration: np.ndarray | None = None,
                denylist=(), per_channel: bool = True) -> list[dict]:
    """Every quantized tensor of the int8 model, worst added error (on held-out images) first."""
    order = {layer.name: i for i, layer in enumerate(model.layers)}
    held = layer_errors(calibrated, held_out, denylist, per_channel)
    calib = layer_errors(calibrated, calibration, denylist, per_channel) if calibration is not None else {}
    mean = lambda v: float(np.mean(v)) if v else None  # noqa: E731
    rows = []
    for node, (op, added, added_cos, acc, acc_cos) in held.items():
        rows.append({"node": node, "layer": keras_layer_of(node, order), "op": op,
                     "added_nsr": mean(added), "added_cosine": mean(added_cos),
                     "accumulated_nsr": mean(acc), "accumulated_cosine": mean(acc_cos),
                     "added_nsr_calibration": mean(calib[node][1]) if node in calib else None})
    rows.sort(key=lambda r: -(r["added_nsr"] or 0.0))
    for rank, r in enumerate(rows, start=1):
        r["rank"] = rank
    return rows


def plot_layers(rows: list[dict], path, title: str, top: int = 25):
    """Horizontal bars of the worst layers: the error each adds beside the error it carries."""
    from matplotlib.figure import Figure
    shown = rows[:top][::-1]
    fig = Figure(figsize=(9, 0.32 * len(shown) + 1.6))
    ax = fig.add_subplot()
    y = np.arange(len(shown))
    ax.barh(y + 0.2, [r["accumulated_nsr"] or 0 for r in shown], height=0.4, label="accumulated (whole int8 model)",
            color="C1")
    ax.barh(y - 0.2, [r["added_nsr"] or 0 for r in shown], height=0.4, label="added by the layer itself", color="C0")
    ax.set_yticks(y, [f"{r['rank']}. {r['layer']} ({r['op'].lower()})" for r in shown], fontsize=7)
    ax.set_xlabel("quantization noise / signal (per-channel RMS error over std)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    from ..fileio import atomic_path
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    return str(path)

