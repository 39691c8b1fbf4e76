"""Device setup: tf.distribute strategies, and mixed precision + XLA on GPU only."""
from __future__ import annotations

import os

from .. import console
from .._tf import keras, tf
from ..errors import CifarEdgeError

CPU_DEVICES_ENV = "CIFAR_EDGE_CPU_DEVICES"


def gpus():
    return tf.config.list_physical_devices("GPU")


def split_cpu(n: int):
    """Split the CPU into ``n`` logical devices so distribution can run (and be tested)
    without GPUs.  Must happen before TensorFlow initialises its devices."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:
        current = len(tf.config.list_logical_devices("CPU"))
        if current != n:
            raise CifarEdgeError(f"TensorFlow already started with {current} CPU device(s); set "
                                 f"{CPU_DEVICES_ENV}={n} before starting to split the CPU") from None


def make_strategy(name: str):
    """``auto``: mirror over GPUs when there are several, else the default strategy.
    ``mirrored`` on a machine without GPUs mirrors over logical CPU devices
    ($CIFAR_EDGE_CPU_DEVICES, default 2).  ``multiworker`` reads TF_CONFIG."""
    n_gpu = len(gpus())
    if name == "default" or (name == "auto" and n_gpu < 2):
        return tf.distribute.get_strategy()
    if name in ("auto", "mirrored"):
        if n_gpu:
            return tf.distribute.MirroredStrategy()
        raw = os.environ.get(CPU_DEVICES_ENV, "2")
        if not raw.isdigit() or int(raw) < 1:
            raise CifarEdgeError(f"{CPU_DEVICES_ENV}={raw!r} is invalid; set it to a whole number of devices, e.g. 2")
        n = int(raw)
        split_cpu(n)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:n]
        console.info(f"mirrored strategy over {len(devices)} logical CPU devices (no GPU)")
        return tf.distribute.MirroredStrategy(devices=devices,
                                              cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "multiworker":
        raw = os.environ.get("TF_CONFIG")
        if raw is not None:
            import json
            try:
                json.loads(raw)
            except ValueError:
                raise CifarEdgeError("TF_CONFIG is not valid JSON; set it to the cluster spec "
                                     "(see tf.distribute.MultiWorkerMirroredStrategy) or unset it") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise CifarEdgeError(f"unknown strategy '{name}'; use auto, default, mirrored or multiworker")


def accelerate() -> dict:
    """Mixed precision and XLA are switched on automatically, on GPU only (on CPU they
    slow training down)."""
    on_gpu = bool(gpus())
    keras.mixed_precision.set_global_policy("mixed_float16" if on_gpu else "float32")
    return {"gpu": on_gpu, "mixed_precision": on_gpu, "xla": on_gpu}
