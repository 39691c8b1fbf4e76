"""ONNX export: float32 through tf2onnx (explicit input signature, dynamic batch), int8 as
QDQ through onnxruntime's static quantization (per-channel by default) or by converting the
int8 .tflite.  Every file passes onnx.checker's full check before it is kept."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np

from .._tf import tf
from ..errors import CifarEdgeError
from ._base import ExportOptions, imported_converter


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]


def check(path):
    """onnx.checker's full check (types and shapes inferred), or a clear error."""
    import onnx
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # noqa: BLE001 - ValidationError and friends
        raise CifarEdgeError(f"exported ONNX failed onnx.checker: {_first_line(e)}; try another --opset") from None


@contextlib.contextmanager
def _quiet_converters():
    """Unless verbose: tf2onnx's INFO lines; onnxruntime's root-logger note that a BatchNorm
    vector has no channel axis (it is then quantized per tensor, as it should be); and TF's
    tf.lite.Interpreter deprecation notice (tf2onnx reads a .tflite with it)."""
    from .. import console
    if console.verbose():
        yield
        return
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    with console.without_notes(None, "is out-of-range for weight", r"\s*Warning: tf.lite.Interpreter is deprecated"):
        yield


def float_onnx(ctx, path: Path, opset: int):
    """The float .onnx of the context's model: tf2onnx for a tf_keras model; an imported model
    writes its own (its kind knows how: a traced Keras 3 call, the ONNX graph itself, torch)."""
    import tf2onnx
    own = imported_converter(ctx.model, "onnx")
    if own is not None:
        try:
            with _quiet_converters():
                own(path, opset)
        except CifarEdgeError:
            raise
        except Exception as e:  # noqa: BLE001 - each converter raises its own types
            raise CifarEdgeError(f"the {ctx.model.kind} model could not be converted to ONNX: {_first_line(e)}; "
                                 "try another --opset or export TFLite") from None
        return
    size = ctx.input_size
    signature = (tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),)
    try:
        with _quiet_converters():
                tf2onnx.convert.from_keras(ctx.model, input_signature=signature, opset=opset, output_path=str(path))
    except Exception as e:  # noqa: BLE001
        raise CifarEdgeError(f"tf2onnx could not convert the model: {_first_line(e)}; "
                             "try another --opset or export TFLite") from None


class _Calibration:
    """onnxruntime's CalibrationDataReader over our normalized training images."""

    def __init__(self, images: np.ndarray, input_name: str, batch: int = 16):
        self._batches = iter([{input_name: images[i:i + batch]} for i in range(0, len(images), batch)])

    def get_next(self):
        return next(self._batches, None)

    def rewind(self):  # onnxruntime >= 1.20 may call it; our reader is single-pass
        pass

    def __iter__(self):  # the QDQ debugging helpers iterate over the reader
        return iter(self.get_next, None)


def _prepared_float(ctx, opset: int, work: Path) -> Path:
    """The float ONNX after onnxruntime's quantization pre-processing (shape inference,
    optimizations), written into ``work``; converted once per export context and opset."""
    from onnxruntime.quantization import quant_pre_process
    prepared = ctx.cache("onnx").setdefault("prepared", {})       # opset -> pre-processed float .onnx bytes
    if opset not in prepared:
        float_path, prep_path = work / "float.raw.onnx", work / "float.prep.onnx"
        float_onnx(ctx, float_path, opset)
        quant_pre_process(str(float_path), str(prep_path), skip_symbolic_shape=False)
        prepared[opset] = prep_path.read_bytes()
    path = work / "float.onnx"
    path.write_bytes(prepared[opset])
    return path


def _input_name(path: Path) -> str:
    import onnx
    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def quantized_onnx(ctx, opts: ExportOptions) -> bytes:
    """Static QDQ quantization of the float ONNX (per-channel int8 weights, int8 activations),
    ``opts.float_layers`` (node names) left in float; made once per export context, so the
    --max-drop search measures the very file it then exports."""
    import tempfile
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    models = ctx.cache("onnx").setdefault("quantized", {})        # ExportOptions -> QDQ int8 .onnx bytes
    if opts not in models:
        with tempfile.TemporaryDirectory(prefix="cifar-edge-onnx-") as work:
            prep, out = _prepared_float(ctx, opts.opset, Path(work)), Path(work) / "int8.onnx"
            try:
                with _quiet_converters():
                    quantize_static(str(prep), str(out), _Calibration(ctx.calibration, _input_name(prep)),
                                    quant_format=QuantFormat.QDQ, per_channel=opts.per_channel,
                                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                                    calibrate_method=CalibrationMethod.MinMax,
                                    nodes_to_exclude=list(opts.float_layers))
            except Exception as e:  # noqa: BLE001
                raise CifarEdgeError(f"onnxruntime static quantization failed: {_first_line(e)}; "
                                     "try --from-tflite or export float ONNX") from None
            models[opts] = out.read_bytes()
    return models[opts]


def rank_nodes(ctx, opts: ExportOptions, images: np.ndarray) -> list[dict]:
    """Every node whose output onnxruntime quantizes, worst first by the error it adds: the
    noise/signal ratio of its output in the int8 model against the float model (per channel,
    as `diagnose` measures TFLite tensors; onnxruntime's QDQ debugging helpers collect both),
    beyond the worst of its inputs', as noise powers.  The node names are what
    ``nodes_to_exclude`` (``--float-layers``) takes."""
    import tempfile

    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (collect_activations, create_activation_matching,
                                                         modify_model_output_intermediate_tensors)

    from ._quant_error import channel_nsr, keras_layer_of
    with tempfile.TemporaryDirectory(prefix="cifar-edge-onnx-rank-") as work:
        work = Path(work)
        prep = _prepared_float(ctx, opts.opset, work)
        qdq = work / "int8.onnx"
        qdq.write_bytes(quantized_onnx(ctx, opts))
        name = _input_name(prep)
        activations = []
        for model in (prep, qdq):
            augmented = work / f"{model.stem}.augmented.onnx"
            modify_model_output_intermediate_tensors(str(model), str(augmented))
            activations.append(collect_activations(str(augmented), _Calibration(images, name)))
        matching = create_activation_matching(activations[1], activations[0])
        graph = onnx.load(str(prep), load_external_data=False).graph
    order = {layer.name: i for i, layer in enumerate(ctx.model.layers)}
    # the helpers save every tensor flattened: shape inference's shapes give the channels back
    shapes = {v.name: [d.dim_value or -1 for d in v.type.tensor_type.shape.dim]
              for v in [*graph.value_info, *graph.input, *graph.output]}
    nsr = {}
    for tensor, match in matching.items():
        if match.get("float") and match.get("post_qdq"):
            shape = shapes.get(tensor, [-1])
            shape = [-1, *shape[1:]] if shape.count(-1) <= 1 else [-1]
            ref, got = (np.concatenate([a.reshape(shape) for a in match[k]]) for k in ("float", "post_qdq"))
            if ref.ndim == 4 and tensor != name:        # tf2onnx computes in NCHW after its input transpose
                ref, got = np.moveaxis(ref, 1, -1), np.moveaxis(got, 1, -1)
            nsr[tensor] = channel_nsr(ref if ref.ndim > 1 else ref[:, None], got if got.ndim > 1 else got[:, None])
    feeders = _feeders(graph)
    rows, carried = [], {}          # carried: the error a tensor has, from its nearest quantized ancestor
    for node in graph.node:         # (ONNX keeps nodes in topological order)
        inherited = max((carried.get(i, 0.0) for i in node.input), default=0.0)
        for o in node.output:
            carried[o] = nsr.get(o, inherited)
        out = next((o for o in node.output if o in nsr), None)
        if out is None:
            continue
        rows.append({"node": node.name, "with": feeders[node.name], "layer": keras_layer_of(node.name, order),
                     "op": node.op_type,
                     "added_nsr": float(np.sqrt(max(0.0, nsr[out] ** 2 - inherited ** 2))),
                     "accumulated_nsr": float(nsr[out])})
    rows.sort(key=lambda r: -r["added_nsr"])
    for rank, r in enumerate(rows, start=1):
        r["rank"] = rank
    return rows


_WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def _feeders(graph) -> dict[str, list[str]]:
    """For each node, the nodes between it and the weighted nodes before it (BatchNorm's Mul and
    Add, activations, pooling ...).  Keeping a node in float leaves its input quantized when its
    producer is quantized: an activation whose per-tensor scale crushes some channels stays
    crushed.  So a node goes to float with its feeders, and its input tensor keeps its float values."""
    producer = {o: n for n in graph.node for o in n.output}
    out = {}
    for node in graph.node:
        chain, stack, seen = [], list(node.input), set()
        while stack:
            feeder = producer.get(stack.pop())
            if feeder is None or feeder.name in seen or feeder.op_type in _WEIGHTED:
                continue
            seen.add(feeder.name)
            chain.append(feeder.name)
            stack.extend(feeder.input)
        out[node.name] = chain
    return out


def int8_onnx_from_tflite(ctx, path: Path, opts: ExportOptions, work: Path):
    """tf2onnx turns a full-int8 .tflite with float I/O into a QDQ ONNX model."""
    import tf2onnx
    from ._tflite_convert import convert
    tflite_path = work / "int8.tflite"
    tflite_path.write_bytes(convert(ctx, ExportOptions(quantization="int8", per_channel=opts.per_channel)))
    try:
        with _quiet_converters():
            tf2onnx.convert.from_tflite(str(tflite_path), opset=opts.opset, output_path=str(path))
    except Exception as e:  # noqa: BLE001
        raise CifarEdgeError(f"tf2onnx could not convert the int8 .tflite: {_first_line(e)}; "
                             "use onnx int8 without --from-tflite") from None


ONNX_METADATA_KEY = "cifar_edge"


def embed_onnx_metadata(path, facts: dict):
    """The model facts as a ``cifar_edge`` JSON entry of the model's metadata_props, which
    onnxruntime exposes as ``get_modelmeta().custom_metadata_map`` (the .tflite carries the same)."""
    import json
    import onnx
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key != ONNX_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=ONNX_METADATA_KEY, value=json.dumps(facts, ensure_ascii=False))
    onnx.save(model, str(path))


def read_onnx_metadata(path) -> dict | None:
    """The ``cifar_edge`` entry of an .onnx file (None when it has none)."""
    import json
    import onnx
    model = onnx.load(str(path), load_external_data=False)
    value = next((p.value for p in model.metadata_props if p.key == ONNX_METADATA_KEY), None)
    return None if value is None else json.loads(value)


def export_onnx(ctx, path: Path, opts: ExportOptions):
    import tempfile
    with tempfile.TemporaryDirectory(prefix="cifar-edge-onnx-") as work:
        if opts.quantization != "int8" or ctx.qat and not opts.from_tflite:
            float_onnx(ctx, path, opts.opset)   # a QAT model's fake-quant ops become QDQ nodes
        elif opts.from_tflite:
            int8_onnx_from_tflite(ctx, path, opts, Path(work))
        else:
            Path(path).write_bytes(quantized_onnx(ctx, opts))
    embed_onnx_metadata(path, ctx.model_facts(opts))
    check(path)
