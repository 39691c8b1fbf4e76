"""Runtimes: load an exported file (or a Keras model) and run it on normalized float images.

Every runner takes the same input (the training pipeline's normalized float32 NHWC batch)
and returns float32 outputs, quantizing inputs and dequantizing outputs itself when the
file has integer I/O, and turning the images back into pixels for a .tflite whose graph
normalizes (every exported one: apps feed it raw pixels).  Export's parity check, evaluation of exported files and the bench
all go through here, so a model file is always run the same way.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CifarEdgeError, unknown_choice


@dataclass
class Runner:
    """A loaded model: ``run(x)`` maps normalized float32 (N, H, W, 3) to float32 outputs."""
    runtime: str
    path: str
    input_size: int
    input_dtype: str
    threads: int | None
    notes: list = field(default_factory=list)   # e.g. "XNNPACK refused the model: builtin kernels"
    _call: object = None

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._call(np.ascontiguousarray(x, dtype=np.float32))

    def predict(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Outputs for a whole array, in batches."""
        return np.concatenate([self.run(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def default_threads() -> int:
    return os.cpu_count() or 1


# --------------------------------------------------------------------------- LiteRT interpreter
PIXEL_SNAP = 1e-3     # a denormalized value this close to a whole pixel is that pixel


def to_input(x, detail, folded=None):
    """Normalized float32 -> what the input tensor holds: pixels again for a file whose graph
    normalizes (``folded``: the (mean, std) it applies), quantized for integer I/O."""
    if folded is not None:
        x = x * np.asarray(folded[1], np.float32) + np.asarray(folded[0], np.float32)
        # Whole pixels (images not resized) come back exactly, as an app feeds them: the round
        # trip through normalization is off by ~1e-5, which moves a dynamic-range file's scores.
        whole = np.round(x)
        x = np.where(np.abs(x - whole) < PIXEL_SNAP, whole, x)
    if not np.issubdtype(detail["dtype"], np.integer):
        return x.astype(detail["dtype"])
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])


def from_output(y, detail):
    """The output tensor -> float32 (dequantized for integer I/O)."""
    scale, zero = detail["quantization"]
    if np.issubdtype(detail["dtype"], np.integer) and scale:
        return (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32)


def open_litert(path, threads: int | None = None, xnnpack: bool = True) -> Runner:
    """The LiteRT interpreter (ai-edge-litert).  XNNPACK is LiteRT's default CPU delegate;
    when it refuses a model (ai-edge-litert 2.3 does for some sparse int8 files) we fall
    back to the builtin kernels and say so in ``notes``.  ``path`` may also be the file's
    bytes (a candidate being measured before it is written)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from .export.metadata import folded_normalization
    threads = threads or default_threads()
    notes = []
    source = {"model_content": path} if isinstance(path, bytes) else {"model_path": str(path)}
    if isinstance(path, bytes):
        path = "<in memory>"

    def make(resolver):
        interp = Interpreter(**source, num_threads=threads, experimental_op_resolver_type=resolver)
        interp.allocate_tensors()
        return interp

    try:
        if xnnpack:
            try:
                interp = make(OpResolverType.AUTO)
            except RuntimeError as e:
                notes.append(f"XNNPACK could not take this model ({str(e).splitlines()[0][:80]}); "
                             "ran on LiteRT's builtin kernels")
                interp = make(OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        else:
            interp = make(OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    except (ValueError, RuntimeError) as e:
        raise CifarEdgeError(f"LiteRT cannot load {path} ({str(e).splitlines()[0][:120]}); the file is corrupt, "
                             "truncated or not a .tflite: export it again") from None
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    folded = folded_normalization(source.get("model_content") or source["model_path"])
    state = {"batch": int(inp["shape"][0])}

    def call(x):
        if len(x) != state["batch"]:
            interp.resize_tensor_input(inp["index"], [len(x), *inp["shape"][1:]])
            interp.allocate_tensors()
            state["batch"] = len(x)
        interp.set_tensor(inp["index"], to_input(x, inp, folded))
        interp.invoke()
        return from_output(interp.get_tensor(out["index"]), out)

    runtime = "litert" if xnnpack and not notes else "litert-builtin"
    return Runner(runtime, str(path), int(inp["shape"][1]), np.dtype(inp["dtype"]).name, threads, notes, call)


_PROBE = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
interp = Interpreter(model_path=sys.argv[1], num_threads=1)
interp.allocate_tensors()
detail = interp.get_input_details()[0]
interp.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
interp.invoke()
"""
DEAD_RANGE = 1e-7     # an activation scale below this: the converter's stand-in for an all-zero calibration range


def check_litert_loads(path, name: str = ""):
    """Load and run ``path`` (a .tflite or its bytes) once in a child process first.

    LiteRT does not raise on some files it cannot run: it aborts the whole process
    (SIGABRT, no Python exception, nothing cleaned up).  Seen on the int8 file of a clustered
    tiny CNN whose ReLUs output only zeros on the calibration images: the converter gives such
    a tensor a near-zero scale, and the requantization multiplier of the next op is out of
    LiteRT's range.  A child that dies says so here, as an error naming those tensors."""
    import subprocess
    import sys
    import tempfile
    with tempfile.TemporaryDirectory(prefix="cifar-edge-probe-") as work:
        if isinstance(path, bytes):
            Path(work, "model.tflite").write_bytes(path)
            path = Path(work, "model.tflite")
        result = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True,
                                timeout=600)
        if result.returncode >= 0:     # 0, or a Python error the in-process load will report properly
            return
        dead = dead_activation_tensors(path)
    what = name or Path(path).name
    cause = (f"{len(dead)} activation tensor(s) have an all-zero range on the calibration images "
             f"({', '.join(dead[:3])}{' ...' if len(dead) > 3 else ''}): those layers output only zeros, so the "
             "model is dead or collapsed there; check the run's accuracy, or calibrate on more --calibration-images"
             if dead else "export float or another variant")
    raise CifarEdgeError(f"LiteRT aborts the process loading {what} (signal {-result.returncode}); nothing was "
                         f"kept: {cause}")


def dead_activation_tensors(path) -> list[str]:
    """Names of the quantized non-constant tensors whose scale says 'all zeros when calibrated'
    (reading tensor details does not trigger the abort; allocating does)."""
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=str(path))
    computed = {d["index"] for d in interp.get_input_details()}     # activations: inputs and op outputs
    for op in interp._get_ops_details():  # noqa: SLF001 - the only way to tell weights from activations
        computed.update(op["outputs"])
    dead = []
    for detail in interp.get_tensor_details():
        scales = detail["quantization_parameters"]["scales"]
        if detail["index"] in computed and len(scales) == 1 and 0 < scales[0] < DEAD_RANGE:
            dead.append(detail["name"].split(";")[0])
    return dead


# --------------------------------------------------------------------------- onnxruntime
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


# --------------------------------------------------------------------------- Keras
def keras_runner(model, path: str = "") -> Runner:
    """A Keras model called directly (``model(x)``, not ``predict``: faster on small batches)."""
    def call(x):
        return np.asarray(model(x, training=False), np.float32)
    return Runner("keras", str(path), int(model.input_shape[1]), "float32", None, [], call)


def open_keras(path) -> Runner:
    from .train.runfolder import load_model
    return keras_runner(load_model(path), path)


RUNTIMES = {"litert": open_litert, "onnxruntime": open_onnxruntime, "keras": open_keras}


def open_model(path, runtime: str | None = None, **kwargs) -> Runner:
    """Open ``path`` with ``runtime`` (default: the one its suffix calls for)."""
    path = Path(path)
    if not path.is_file():
        raise CifarEdgeError(f"model file {path} does not exist; export it first with `cifar-edge export`")
    if runtime is None:
        runtime = {".tflite": "litert", ".onnx": "onnxruntime", ".keras": "keras", ".h5": "keras"}.get(path.suffix)
        if runtime is None:
            raise CifarEdgeError(f"{path}: unknown model suffix '{path.suffix}'; use .tflite, .onnx, .keras or .h5")
    if runtime not in RUNTIMES:
        raise unknown_choice("runtime", runtime, RUNTIMES)
    return RUNTIMES[runtime](path, **kwargs)
