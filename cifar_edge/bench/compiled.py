"""LiteRT's CompiledModel API (the successor of the Interpreter) as a :class:`Runner`, so the
bench times it exactly like every other runtime: normalized float32 in, float32 out."""
from __future__ import annotations

import contextlib
import os
import tempfile

import numpy as np

from ..errors import CifarEdgeError
from ..export.metadata import folded_normalization
from ..runtimes import Runner, default_threads, from_output, to_input


@contextlib.contextmanager
def native_stderr():
    """Capture what native code writes to fd 2 (LiteRT logs its accelerator set-up there and
    its Python exceptions carry only a source location); yields a list filled with the text."""
    captured = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode(errors="replace"))


def last_error(log: str) -> str:
    """The most telling line of a native log: its last ERROR line, else its last line."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "ERROR" in ln or "Failed" in ln]
    return (errors or lines or [""])[-1][:160]


def open_compiled(path, threads: int | None = None, gpu: bool = False) -> Runner:
    """``CompiledModel.from_file`` on the CPU accelerator (XNNPACK), or the GPU accelerator with
    CPU fallback.  Integer I/O is quantized here with the scales the file declares."""
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.options import CpuOptions, Options

    threads = threads or default_threads()
    accel = HardwareAccelerator.GPU | HardwareAccelerator.CPU if gpu else HardwareAccelerator.CPU
    with native_stderr() as log:
        try:
            model = CompiledModel.from_file(str(path), options=Options(
                hardware_accelerators=accel, cpu_options=CpuOptions(num_threads=threads)))
            details = Interpreter(model_path=str(path))   # only for the I/O quantization scales
            inp, out = details.get_input_details()[0], details.get_output_details()[0]
        except (RuntimeError, ValueError) as e:
            err = e
        else:
            err = None
    if err is not None:
        reason = last_error(log[0]) or str(err).splitlines()[0]
        raise CifarEdgeError(f"LiteRT CompiledModel cannot load {path} ({reason}); the file is corrupt, "
                             "truncated or not a .tflite: export it again")
    notes = [] if model.is_fully_accelerated() else ["not fully accelerated: some ops ran on the CPU fallback"]
    classes = int(out["shape"][-1])
    folded = folded_normalization(path)
    state = {"batch": 0}

    def buffers(batch):
        if batch != state["batch"]:
            model.resize_input_tensor(0, [batch, *map(int, inp["shape"][1:])])
            state.update(batch=batch, ins=model.create_input_buffers(0), outs=model.create_output_buffers(0))
        return state["ins"], state["outs"]

    def run(x):
        ins, outs = buffers(len(x))
        ins[0].write(np.ascontiguousarray(to_input(x, inp, folded)))
        model.run_by_index(0, ins, outs)
        y = outs[0].read(len(x) * classes, out["dtype"]).reshape(len(x), classes)
        return from_output(y, out)

    def call(x):
        if len(x) > 1 and "batched" not in state:
            # CompiledModel resizes the input but leaves some graphs' output at batch 1 (seen on
            # ConvNeXt's); running such a batch writes past the output buffer and corrupts the heap.
            _, outs = buffers(len(x))
            state["batched"] = int(outs[0].get_tensor_details()["shape"][0]) == len(x)
            if not state["batched"]:
                notes.append("CompiledModel does not resize this file's output past batch 1: batches ran image by image")
        if len(x) > 1 and not state["batched"]:
            return np.concatenate([run(x[i:i + 1]) for i in range(len(x))])
        return run(x)

    name = "litert-compiled-gpu" if gpu else "litert-compiled"
    return Runner(name, str(path), int(inp["shape"][1]), np.dtype(inp["dtype"]).name, threads, notes, call)
