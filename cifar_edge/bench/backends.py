"""The runtimes a bench row runs on: one table, as the format table is for files.

A *backend* is a runtime family of the format table (``Format.runtimes``: litert,
onnxruntime, keras) on one device with one set of options.  The bench crosses every exported
file with every backend of its family; a backend that cannot run here raises
:class:`Unavailable`, and its row says why instead of disappearing.
"""
from __future__ import annotations

import dataclasses
import glob
from dataclasses import dataclass
from typing import Callable

from ..errors import CifarEdgeError, unknown_choice
from ..runtimes import ProviderMissing, Runner, default_threads, open_litert, open_onnxruntime


class Unavailable(Exception):
    """This backend cannot run on this machine (no GPU, no provider): the row is skipped."""


def gpu_missing() -> str | None:
    """Why there is no GPU to run on, or None when a GPU device node exists."""
    nodes = [p for pattern in ("/dev/nvidia[0-9]*", "/dev/dri/renderD*", "/dev/kgsl-3d0", "/dev/mali*")
             for p in glob.glob(pattern)]
    return None if nodes else "no GPU"


def keras_threads() -> int:
    from .._tf import tf
    return tf.config.threading.get_intra_op_parallelism_threads() or default_threads()


def _keras(path, device: str) -> Runner:
    from .._tf import tf
    from ..runtimes import open_keras
    if device == "gpu":
        if gpu_missing() or not tf.config.list_physical_devices("GPU"):
            raise Unavailable("no GPU (TensorFlow sees none)")
    base = open_keras(path)
    name = "/GPU:0" if device == "gpu" else "/CPU:0"

    def call(x):
        with tf.device(name):
            return base.run(x)
    return dataclasses.replace(base, runtime="keras" if device == "cpu" else "keras-gpu", threads=keras_threads(),
                               _call=call)


def _onnx_gpu(path, provider: str) -> Runner:
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


def _compiled(path, threads, gpu: bool) -> Runner:
    from .compiled import open_compiled
    if gpu and gpu_missing():
        raise Unavailable(gpu_missing())
    return open_compiled(path, threads, gpu=gpu)


@dataclass(frozen=True)
class Backend:
    name: str
    family: str          # a runtime of the format table: which files it loads
    device: str          # cpu, gpu or android
    threaded: bool       # one row per --threads count (else one row at the runtime's own setting)
    description: str
    opener: Callable | None = None   # opener(path, threads) -> Runner; None: run by the android module


BACKENDS = {b.name: b for b in (
    Backend("keras", "keras", "cpu", False, "TensorFlow/Keras, model(x) on the CPU (TF's own thread pool)",
            lambda p, t: _keras(p, "cpu")),
    Backend("keras-gpu", "keras", "gpu", False, "TensorFlow/Keras on the first GPU",
            lambda p, t: _keras(p, "gpu")),
    Backend("litert", "litert", "cpu", True, "LiteRT interpreter with XNNPACK (its default CPU delegate)",
            lambda p, t: open_litert(p, t, xnnpack=True)),
    Backend("litert-no-xnnpack", "litert", "cpu", True, "LiteRT interpreter on its builtin kernels",
            lambda p, t: open_litert(p, t, xnnpack=False)),
    Backend("litert-compiled", "litert", "cpu", True, "LiteRT CompiledModel, CPU accelerator",
            lambda p, t: _compiled(p, t, gpu=False)),
    Backend("litert-compiled-gpu", "litert", "gpu", False, "LiteRT CompiledModel, GPU accelerator (CPU fallback)",
            lambda p, t: _compiled(p, t, gpu=True)),
    Backend("onnxruntime", "onnxruntime", "cpu", True, "onnxruntime, CPUExecutionProvider",
            lambda p, t: open_onnxruntime(p, t)),
    Backend("onnxruntime-cuda", "onnxruntime", "gpu", False, "onnxruntime, CUDAExecutionProvider",
            lambda p, t: _onnx_gpu(p, "CUDAExecutionProvider")),
    Backend("onnxruntime-tensorrt", "onnxruntime", "gpu", False, "onnxruntime, TensorrtExecutionProvider",
            lambda p, t: _onnx_gpu(p, "TensorrtExecutionProvider")),
    Backend("android-cpu", "litert", "android", True, "benchmark_model on the phone, XNNPACK"),
    Backend("android-gpu-fp16", "litert", "android", False, "benchmark_model on the phone, GPU delegate, fp16 allowed"),
    Backend("android-gpu-fp32", "litert", "android", False, "benchmark_model on the phone, GPU delegate, fp32"),
    Backend("android-nnapi", "litert", "android", False, "benchmark_model on the phone, NNAPI delegate"),
)}


def check_runtime_names(names):
    for name in names:
        if name not in BACKENDS:
            raise unknown_choice("runtime", name, BACKENDS)


def backends_for(fmt, names=(), android: bool = False) -> list[Backend]:
    """The backends that load ``fmt``'s files, limited to ``names`` when given."""
    return [b for b in BACKENDS.values() if b.family in fmt.runtimes and (not names or b.name in names)
            and (b.device != "android" or android)]


def open_backend(backend: Backend, path, threads: int | None) -> Runner:
    """Load ``path`` on ``backend``; raises Unavailable (skip) or CifarEdgeError (fail)."""
    if backend.opener is None:
        raise CifarEdgeError(f"backend {backend.name} runs on a phone: pass --device android[:SERIAL]")
    return backend.opener(path, threads)
