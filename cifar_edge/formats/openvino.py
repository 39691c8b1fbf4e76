"""OpenVINO: the IR (``model.xml`` + ``model.bin`` in one folder) converted from this run's
.onnx, float32 or int8 from the ONNX QDQ file; and OpenVINO's CPU runtime as a bench row for
the IR, the .onnx and the .tflite files (OpenVINO reads both directly).

Everything about OpenVINO is in this module: no other module of the library names it.  The
package is optional (``pip install 'cifar-edge[openvino]'``); without it the rows say so.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from ..errors import CifarEdgeError
from ._base import Backend, ExportOptions, Format, Runner, Unavailable, default_threads, op_profile, register

XML, BIN = "model.xml", "model.bin"
METADATA_KEY = "cifar_edge"      # the model facts as JSON in the IR's rt_info, as the .tflite and .onnx carry them
INSTALL = "OpenVINO is not installed: pip install 'cifar-edge[openvino]'"


def _ov():
    try:
        import openvino
    except ImportError:
        raise Unavailable(INSTALL) from None
    return openvino


def export(ctx, path, opts: ExportOptions):
    """The run's .onnx of the same quantization, converted by ``openvino.convert_model``; the
    IR keeps float32 weights (no fp16 compression: the parity check is against float Keras)."""
    from . import onnx as onnx_format
    try:
        ov = _ov()
    except Unavailable as e:
        raise CifarEdgeError(str(e)) from None
    folder = Path(path)
    folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="cifar-edge-openvino-") as work:
        source = Path(work) / "model.onnx"
        onnx_format.export(ctx, source, ExportOptions(quantization=opts.quantization))
        try:
            model = ov.convert_model(str(source))
        except Exception as e:  # noqa: BLE001 - OpenVINO raises its own exception types
            raise CifarEdgeError(f"OpenVINO could not convert the .onnx ({str(e).strip().splitlines()[0][:160]}); "
                                 "export onnx instead") from None
    facts = ctx.model_facts(opts)
    model.set_rt_info(json.dumps(facts, ensure_ascii=False), METADATA_KEY)
    model.set_rt_info(" ".join(name.replace(" ", "_") for name in ctx.class_names), ["model_info", "labels"])
    ov.save_model(model, str(folder / XML), compress_to_fp16=False)


def read_ir_metadata(path) -> dict | None:
    """The ``cifar_edge`` facts of an exported IR folder (None when it has none)."""
    model = _ov().Core().read_model(str(Path(path) / XML))
    return json.loads(model.get_rt_info(METADATA_KEY).astype(str)) if model.has_rt_info(METADATA_KEY) else None


def open_openvino(path, threads: int | None = None) -> Runner:
    """OpenVINO's CPU plugin on an IR folder, an .onnx or a .tflite, at float32 inference
    precision (its default on CPUs with bf16 support is bf16, which would move float files'
    answers).  Takes and returns what every Runner does: normalized float32 in, float32 out."""
    ov = _ov()
    path = Path(path)
    source = path / XML if path.is_dir() else path
    threads = threads or default_threads()
    core = ov.Core()
    try:
        model = core.read_model(str(source))
    except Exception as e:  # noqa: BLE001
        raise CifarEdgeError(f"OpenVINO cannot read {path} ({str(e).strip().splitlines()[0][:120]}); the file is "
                             "corrupt or truncated: export it again") from None
    to_input, from_output = _tflite_io(path) if path.suffix == ".tflite" else (None, None)
    shape = model.inputs[0].get_partial_shape()
    if shape.rank.get_length() == 4 and shape[0].is_static:
        model.reshape({model.inputs[0]: ov.PartialShape([-1, *[d.get_length() for d in list(shape)[1:]]])})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    size = int(list(shape)[1].get_length()) if list(shape)[1].is_static else 0

    def call(x):
        fed = x if to_input is None else to_input(x)
        y = request.infer({0: fed})[compiled.outputs[0]]
        return np.asarray(y if from_output is None else from_output(y), np.float32)

    return Runner("openvino", str(path), size, str(model.inputs[0].get_element_type().to_dtype()), threads,
                  [], call, placement=_placement(compiled))


def profile_openvino(path, threads, x, runs) -> dict:
    """OpenVINO's performance counters (``PERF_COUNT``): each executed node's real time and the
    kernel that ran it, per inference."""
    ov = _ov()
    path = Path(path)
    core = ov.Core()
    model = core.read_model(str(path / XML if path.is_dir() else path))
    to_input = _tflite_io(path)[0] if path.suffix == ".tflite" else (lambda v: v)
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads or default_threads(),
                                                 "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": True})
    request = compiled.create_infer_request()
    fed = to_input(np.ascontiguousarray(x, np.float32))
    request.infer({0: fed})                     # warm-up
    nodes = []
    for _ in range(runs):
        request.infer({0: fed})
        nodes += [{"node": p.node_name, "op": p.node_type, "ms": p.real_time.total_seconds() * 1e3,
                   "kernel": p.exec_type} for p in request.profiling_info
                  if p.status == p.Status.EXECUTED]
    return op_profile("OpenVINO CPU (PERF_COUNT)", nodes, runs)


def _tflite_io(path):
    """A .tflite takes raw pixels (normalization folded in) and may have integer I/O: the same
    conversion LiteRT's runner does, with the scales the file declares."""
    from ai_edge_litert.interpreter import Interpreter

    from ._litert import from_output, to_input
    from ._tflite_metadata import folded_normalization
    details = Interpreter(model_path=str(path))
    inp, out = details.get_input_details()[0], details.get_output_details()[0]
    folded = folded_normalization(path)
    return (lambda x: to_input(x, inp, folded)), (lambda y: from_output(y, out))


def _placement(compiled) -> dict:
    """Which CPU kernels OpenVINO chose for the executed graph (its runtime model's ``execType``
    per node: e.g. ``jit_avx512_I8`` for an int8 convolution, ``ref_any`` for a reference kernel)."""
    kinds: dict = {}
    nodes = 0
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        if layer in ("Input", "Output", "Parameter", "Result", "Constant"):
            continue
        nodes += 1
        kernel = info["execType"].astype(str) if "execType" in info else "unknown"
        precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else ""
        key = f"{kernel} {precision}".strip()
        kinds[key] = kinds.get(key, 0) + 1
    return {"engine": "OpenVINO CPU plugin", "nodes": nodes, "delegated": nodes, "fallback": 0,
            "kernels": dict(sorted(kinds.items(), key=lambda kv: -kv[1]))}


register(
    Format("openvino", "_openvino_model", frozenset({"int8"}),
           "OpenVINO IR (model.xml + model.bin) from the .onnx; int8 from the ONNX QDQ file",
           export=export, open=open_openvino, runtime="openvino", order=3, folder=True, made_from="onnx", packages=("openvino",),
           variants={"openvino-float32": ExportOptions(), "openvino-int8": ExportOptions(quantization="int8")}),
    backends=(
        Backend("openvino", ("openvino", "onnx", "tflite"), "cpu", True,
                "OpenVINO CPU plugin (f32 inference precision); reads the IR, .onnx and .tflite", open_openvino,
                profiler=profile_openvino),
    ))
