"""Keras: the float model as an HDF5 file, the reference every other file is checked against.
Runs on TensorFlow, on the CPU or the first GPU."""
from __future__ import annotations

import dataclasses

import numpy as np

from ._base import Backend, ExportOptions, Format, Runner, Unavailable, default_threads, gpu_missing, register

MODEL_VARIANT = "keras"      # the variant that is the run's model itself: serve and bench run the loaded model for it


def keras_runner(model, path: str = "") -> Runner:
    """A Keras model called directly (``model(x)``, not ``predict``: faster on small batches)."""
    def call(x):
        return np.asarray(model(x, training=False), np.float32)
    return Runner("keras", str(path), int(model.input_shape[1]), "float32", None, [], call)


def model_runner(loaded) -> Runner:
    """A loaded run's own model, named for the runtime it runs on: Keras, or an imported model's
    own runtime (onnxruntime, torch ...)."""
    runtime = (loaded.config.get("source") or {}).get("runtime", "keras")
    return dataclasses.replace(keras_runner(loaded.model), runtime=runtime)


def open_keras(path, threads=None) -> Runner:
    from ..runs import load_model
    return keras_runner(load_model(path), path)


def _threads() -> int:
    from .._tf import tf
    return tf.config.threading.get_intra_op_parallelism_threads() or default_threads()


def _on_device(path, device: str) -> Runner:
    from .._tf import tf
    if device == "gpu" and (gpu_missing() or not tf.config.list_physical_devices("GPU")):
        raise Unavailable("no GPU (TensorFlow sees none)")
    base = open_keras(path)
    name = "/GPU:0" if device == "gpu" else "/CPU:0"

    def call(x):
        with tf.device(name):
            return base.run(x)
    return dataclasses.replace(base, runtime="keras" if device == "cpu" else "keras-gpu", threads=_threads(),
                               _call=call)


def export(ctx, path, opts):
    from ..runs import save_model
    save_model(ctx.model, path)


register(
    Format("keras", ".h5", frozenset(), "the float Keras model (HDF5), the reference every other row is checked against",
           export=export, open=open_keras, runtime="keras", order=0, variants={MODEL_VARIANT: ExportOptions()},
           other_suffixes=(".keras",), precision_in_name=False),
    backends=(
        Backend("keras", ("keras",), "cpu", False, "TensorFlow/Keras, model(x) on the CPU (TF's own thread pool)",
                lambda p, t: _on_device(p, "cpu")),
        Backend("keras-gpu", ("keras",), "gpu", False, "TensorFlow/Keras on the first GPU",
                lambda p, t: _on_device(p, "gpu")),
    ))
