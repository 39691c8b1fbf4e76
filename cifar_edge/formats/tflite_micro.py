"""TFLite Micro: the int8 .tflite in TFLite Micro's own interpreter (its Python build runs the
same reference kernels a microcontroller does, on this host), as a bench row with what a
microcontroller needs to know before flashing: the tensor arena the model allocates (recorded
by TFLM's RecordingMicroAllocator) and its flash (the model's bytes), held against named MCU
budgets.

Everything about TFLite Micro is in this module.  The package is optional and ships only
dev builds, so the extra pins one: ``pip install 'cifar-edge[micro]'``; without it the rows say so.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import CifarEdgeError
from ._base import Backend, Runner, Unavailable, register
from ._litert import from_output, native_stderr, to_input
from ._tflite_metadata import folded_normalization, read_metadata

INSTALL = "TFLite Micro is not installed: pip install 'cifar-edge[micro]'"
KB = 1024
# Common microcontroller budgets (RAM for the arena, flash for the model): an app's own code
# and buffers need room too, so "fits" is the smallest budget that holds the model alone.
RAM_BUDGETS = {"256 KB": 256 * KB, "512 KB": 512 * KB, "1 MB": 1024 * KB}
FLASH_BUDGETS = {"1 MB": 1024 * KB, "2 MB": 2048 * KB}
ARENA_LIMIT = 16 * 1024 * KB     # what the interpreter may allocate: it records how much it used
# Reference kernels take ~0.1 s per image of the default CNN here: parity is checked on the first
# images only (120: one disagreement is 0.8%).
MAX_IMAGES = 120


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise Unavailable(INSTALL) from None
    return runtime


def fits(arena_bytes: int, flash_bytes: int) -> dict:
    """The smallest named RAM and flash budgets that hold the arena and the model (None: none)."""
    ram = next((name for name, size in RAM_BUDGETS.items() if arena_bytes <= size), None)
    flash = next((name for name, size in FLASH_BUDGETS.items() if flash_bytes <= size), None)
    return {"ram": ram, "flash": flash}


def _detail(details: dict) -> dict:
    """TFLM's tensor details in the form LiteRT's I/O helpers take."""
    q = details["quantization_parameters"]
    scale = float(q["scales"][0]) if len(q["scales"]) else 0.0
    zero = int(q["zero_points"][0]) if len(q["zero_points"]) else 0
    return {"dtype": details["dtype"], "quantization": (scale, zero)}


def arena_bytes(interpreter) -> int:
    """The arena the model used, as TFLM's RecordingMicroAllocator reports it (after an invoke)."""
    with native_stderr() as log:
        interpreter.print_allocations()
    match = re.search(r"Arena allocation total (\d+) bytes", log[0])
    if match is None:
        raise CifarEdgeError(f"TFLite Micro did not report its arena use: {log[0].strip()[:160]}")
    return int(match.group(1))


def open_micro(path, threads: int | None = None) -> Runner:
    """TFLite Micro on an int8 .tflite, one image per invoke as on the device.  Integer I/O is
    quantized here with the scales the file declares; normalized float32 in, float32 out."""
    runtime = _runtime()
    path = Path(path)
    facts = (read_metadata(path).get("cifar_edge") or {})
    if facts.get("quantization", "int8") != "int8":
        kind = "float32" if facts["quantization"] == "none" else facts["quantization"]
        raise Unavailable(f"TFLite Micro runs full-integer (int8) files; this one is {kind}")
    data = path.read_bytes()
    with native_stderr() as log:
        try:
            interp = runtime.Interpreter.from_bytes(data, arena_size=ARENA_LIMIT)
        except (RuntimeError, ValueError) as e:
            err = str(e).strip().splitlines()[0] if str(e).strip() else ""
        else:
            err = None
    if err is not None:
        missing = re.search(r"registration from op code (\w+)", log[0])
        if missing:       # a model TFLM cannot run (ConvNeXt's LayerNorm needs REDUCE_PROD): a row it skips
            raise Unavailable(f"TFLite Micro has no kernel for {missing.group(1)}, an op of {path.name}")
        reason = (log[0].strip().splitlines() or [err])[-1][:160]
        raise CifarEdgeError(f"TFLite Micro cannot run {path.name} ({reason}): it lacks a kernel for one of "
                             "its ops, or the file is not a valid .tflite")
    inp, out = _detail(interp.get_input_details(0)), _detail(interp.get_output_details(0))
    folded = folded_normalization(path)

    def one(x):
        interp.set_input(to_input(x, inp, folded), 0)
        interp.invoke()
        return from_output(np.asarray(interp.get_output(0)), out)

    def call(x):
        return np.concatenate([one(x[i:i + 1]) for i in range(len(x))])

    size = int(interp.get_input_details(0)["shape"][1])
    call(np.zeros((1, size, size, 3), np.float32))       # allocations are recorded on the first invoke
    arena = arena_bytes(interp)
    footprint = {"arena_bytes": arena, "flash_bytes": len(data), "fits": fits(arena, len(data))}
    return Runner("tflite-micro", str(path), size, np.dtype(inp["dtype"]).name, 1, [], call,
                  footprint=footprint)


register(backends=(
    Backend("tflite-micro", ("tflite",), "mcu", False,
            "TFLite Micro's interpreter (reference kernels, host build): int8 files, arena and flash vs MCU budgets",
            open_micro, max_images=MAX_IMAGES, batched=False, packages=("tflite-micro",)),
))
