"""The physical limit beside each row: the best GEMM rate this machine reaches, measured once
per bench, in float32 and in int8, at each thread count the bench uses.

The fastest probe counts: BLAS sgemm through numpy (float32 only; in a child process so
OPENBLAS_NUM_THREADS pins its threads) and two large one-layer models built with TF and run by
LiteRT/XNNPACK (a fully-connected layer and a 3x3 convolution, float32 and full-integer int8),
the GEMM kernels the bench's LiteRT rows use.  Achieved ops/s of a row over this peak says how
far a model is from what the silicon does on the easiest workload it gets.  A probe is timed by
its fastest run, so a busy machine lowers it less than it lowers a row's median.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

_SHAPES = {   # name: (layer, input shape with batch, multiply-adds); both are plain GEMMs in XNNPACK
    "fc 256x1024x1024": ("dense", (256, 1024), 256 * 1024 * 1024),
    "conv3x3 32x32x128->128": ("conv", (1, 32, 32, 128), 32 * 32 * 128 * 128 * 9),
}
_NUMPY = """
import time, numpy as np
n = 1024
a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
b = a.T.copy()
a @ b
best = float("inf")
for _ in range(8):
    t0 = time.perf_counter()
    a @ b
    best = min(best, time.perf_counter() - t0)
print(2 * n ** 3 / best / 1e9)
"""
_BUILT: dict = {}       # (shape name, kind) -> .tflite bytes: converted once per process, timed per bench


def _numpy_gops(threads: int) -> float | None:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    try:
        out = subprocess.run([sys.executable, "-c", _NUMPY], env=env, capture_output=True, text=True, timeout=120)
        return float(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        return None


def _probe_model(name: str, kind: str) -> bytes:
    """One layer as a .tflite: float32, or full-integer int8 with int8 I/O."""
    if (name, kind) not in _BUILT:
        from .._tf import keras, tf
        layer, shape, _ = _SHAPES[name]
        inp = keras.Input(shape[1:], batch_size=shape[0])
        out = keras.layers.Dense(1024, use_bias=False)(inp) if layer == "dense" else \
            keras.layers.Conv2D(128, 3, padding="same", use_bias=False)(inp)
        conv = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inp, out))
        if kind == "int8":
            rng = np.random.default_rng(0)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([rng.standard_normal(shape).astype(np.float32)] for _ in range(2))
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = conv.inference_output_type = tf.int8
        _BUILT[name, kind] = conv.convert()
    return _BUILT[name, kind]


def _litert_gops(path, macs: int, threads: int, reps: int = 15) -> float:
    """GEMM rate of ``invoke`` alone (inputs set once), with LiteRT's default XNNPACK delegate."""
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=str(path), num_threads=threads)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], np.ones(inp["shape"], inp["dtype"]))
    for _ in range(3):
        interp.invoke()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        interp.invoke()
        best = min(best, time.perf_counter() - t0)
    return 2 * macs / best / 1e9


def measure_peak(thread_counts) -> dict:
    """``{"float32": {threads: GOPS}, "int8": {...}, "probes": {...}}``; threads keys are str (JSON)."""
    t0 = time.perf_counter()
    probes = {"numpy sgemm 1024^3 float32": {str(t): _numpy_gops(t) for t in thread_counts}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (_, _, macs) in _SHAPES.items():
            for kind in ("float32", "int8"):
                path = os.path.join(tmp, f"probe_{kind}_{len(probes)}.tflite")
                with open(path, "wb") as f:
                    f.write(_probe_model(name, kind))
                probes[f"litert {name} {kind}"] = {str(t): _litert_gops(path, macs, t) for t in thread_counts}
    best = {kind: {str(t): max((p[str(t)] for name, p in probes.items() if name.endswith(kind) and p[str(t)]),
                               default=None) for t in thread_counts} for kind in ("float32", "int8")}
    return {**best, "probes": probes, "unit": "GOPS (2 x multiply-adds per second)",
            "seconds": time.perf_counter() - t0,
            "method": "fastest of 15 runs of one-layer GEMMs on LiteRT/XNNPACK (fc 256x1024x1024, conv3x3 "
                      "32x32x128->128; float32 and int8) and of numpy sgemm 1024^3 (float32)"}


def peak_for(peak: dict, kind: str, threads: int | None) -> float | None:
    """The peak for a row: its kind (float32 or int8) at its thread count (else the nearest below)."""
    table = peak.get(kind) or {}
    if not table or threads is None:
        return None
    usable = [int(t) for t in table if int(t) <= threads] or [min(int(t) for t in table)]
    return table[str(max(usable))]
