"""ONNX: float32 through tf2onnx (dynamic batch); int8 as QDQ through onnxruntime's static
quantization or converted from the int8 .tflite.  Runs on onnxruntime (CPU, CUDA, TensorRT)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..errors import CifarEdgeError
from ._base import (Backend, ExportOptions, FloatLayers, Format, Runner, Unavailable, default_threads, gpu_missing,
                    op_profile, register)


class ProviderMissing(CifarEdgeError):
    """onnxruntime did not start the execution provider asked for first (no CUDA or TensorRT
    libraries, say): it drops or falls back from such a provider with only a printed warning,
    and its figures would be another device's."""


def open_onnxruntime(path, threads: int | None = None, providers=("CPUExecutionProvider",)) -> Runner:
    """onnxruntime on ``path`` (an .onnx file or its bytes: a candidate measured before it is written).
    Raises :class:`ProviderMissing` when the first of ``providers`` is not among the session's."""
    import onnxruntime as ort
    label = "<in memory>" if isinstance(path, bytes) else str(path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or default_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(path if isinstance(path, bytes) else str(path), opts, providers=list(providers))
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise CifarEdgeError(f"onnxruntime cannot load {label} ({str(e).splitlines()[0][:120]}); the file is "
                             "corrupt or truncated: export it again") from None
    if providers[0] not in sess.get_providers():
        raise ProviderMissing(f"onnxruntime could not start {providers[0]} (the session has "
                              f"{', '.join(sess.get_providers())}; check its CUDA/TensorRT libraries)")
    inp = sess.get_inputs()[0]
    name = inp.name

    def call(x):
        return np.asarray(sess.run(None, {name: x})[0], np.float32)

    size = inp.shape[1] if isinstance(inp.shape[1], int) else 0
    return Runner("onnxruntime", label, size, "float32", opts.intra_op_num_threads, [], call)


def profile_onnxruntime(path, threads, x, runs) -> dict:
    """onnxruntime's own profiler (``enable_profiling``): each node's kernel time per inference."""
    import json
    import os
    import tempfile

    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or default_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="cifar-edge-ort-profile-") as work:
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(work, "profile")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: np.ascontiguousarray(x, np.float32)}
        sess.run(None, feed)                       # warm-up, dropped below with the session's set-up
        for _ in range(runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    nodes = [{"node": e["name"][:-len("_kernel_time")], "op": e["args"].get("op_name", "?"), "ms": e["dur"] / 1e3,
              "kernel": e["args"].get("provider")}
             for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    # the first run (warm-up) is the first 1/(runs + 1) of each node's events
    per_run = len(nodes) // (runs + 1)
    return op_profile("onnxruntime CPU (its profiler)", nodes[per_run:], runs)


def _on_gpu(path, provider: str) -> Runner:
    import onnxruntime as ort
    missing = gpu_missing()
    if missing:
        raise Unavailable(missing)
    if provider not in ort.get_available_providers():
        raise Unavailable(f"this onnxruntime has no {provider} (install onnxruntime-gpu)")
    # TensorRT hands the nodes it cannot build to CUDA, as onnxruntime advises, and CUDA to the CPU
    fallback = ("CUDAExecutionProvider", "CPUExecutionProvider") if provider == "TensorrtExecutionProvider" \
        else ("CPUExecutionProvider",)
    try:
        runner = open_onnxruntime(path, providers=(provider, *fallback))
    except ProviderMissing as e:        # a GPU row must not report another device's figures
        raise Unavailable(str(e)) from None
    return dataclasses.replace(runner, runtime=f"onnxruntime-{provider[:-len('ExecutionProvider')].lower()}")


def export(ctx, path, opts):
    from ._onnx_convert import export_onnx
    export_onnx(ctx, path, opts)


def quantized_onnx(ctx, opts) -> bytes:
    """onnxruntime's QDQ int8 of the run's float .onnx (no metadata), made once per context."""
    from ._onnx_convert import quantized_onnx as _quantized
    return _quantized(ctx, opts)


def rank_nodes(ctx, opts, images):
    from ._onnx_convert import rank_nodes as _rank
    return _rank(ctx, opts, images)


def _float_nodes(ctx, opts) -> list[str]:
    """onnxruntime's ``nodes_to_exclude`` takes the pre-processed float graph's node names, in graph order."""
    import tempfile

    import onnx

    from ._onnx_convert import _prepared_float
    with tempfile.TemporaryDirectory(prefix="cifar-edge-onnx-names-") as work:
        graph = onnx.load(str(_prepared_float(ctx, opts.opset, Path(work))), load_external_data=False).graph
    return [n.name for n in graph.node if n.name]


def read_onnx_metadata(path) -> dict | None:
    from ._onnx_convert import read_onnx_metadata as _read
    return _read(path)


def _check(opts: ExportOptions):
    if opts.float_layers and opts.from_tflite:
        raise CifarEdgeError("--float-layers keeps nodes of onnxruntime's quantization in float; drop --from-tflite")
    if opts.from_tflite and opts.quantization != "int8":
        raise CifarEdgeError("--from-tflite converts the int8 .tflite; add --int8")
    if not 13 <= opts.opset <= 18:
        raise CifarEdgeError(f"--opset {opts.opset} is not supported by tf2onnx 1.17 here; use 13..18 (default 17)")


register(
    Format("onnx", ".onnx", frozenset({"int8", "opset", "per_channel", "from_tflite", "float_layers"}),
           "ONNX via tf2onnx (dynamic batch); int8 as QDQ through onnxruntime or from the int8 .tflite",
           export=export, open=lambda path, threads=None: open_onnxruntime(path, threads), runtime="onnxruntime",
           order=2, check=_check, packages=("tf2onnx", "onnx", "onnxruntime"),
           float_layers=FloatLayers(_float_nodes, rank_nodes, lambda data: open_onnxruntime(data, threads=1),
                                    qat_refusal="carries the QDQ nodes it learned, with no onnxruntime quantization "
                                                "to keep layers out of"),
           variants={
               "onnx-float32": ExportOptions(),
               "onnx-int8": ExportOptions(quantization="int8"),
               "onnx-int8-from-tflite": ExportOptions(quantization="int8", from_tflite=True),
           }),
    backends=(
        Backend("onnxruntime", ("onnx",), "cpu", True, "onnxruntime, CPUExecutionProvider",
                lambda p, t: open_onnxruntime(p, t), profiler=profile_onnxruntime),
        Backend("onnxruntime-cuda", ("onnx",), "gpu", False, "onnxruntime, CUDAExecutionProvider",
                lambda p, t: _on_gpu(p, "CUDAExecutionProvider")),
        Backend("onnxruntime-tensorrt", ("onnx",), "gpu", False, "onnxruntime, TensorrtExecutionProvider",
                lambda p, t: _on_gpu(p, "TensorrtExecutionProvider")),
    ))
