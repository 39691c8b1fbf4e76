"""The one place that imports TensorFlow.

tensorflow-model-optimization only accepts Keras 2 models, so the legacy
``tf_keras`` must be selected *before* TensorFlow is first imported.  Every
module of ours imports ``tf`` and ``keras`` from here.  TensorFlow's own log
lines are silenced here too, before it loads, unless verbose (see console.py).
"""
import os
import warnings

from . import console

# What a process must have in its environment before TensorFlow loads; other processes that
# run our code (Ray Train's workers) are started with it too.
ENVIRONMENT = {"TF_USE_LEGACY_KERAS": "1"}
for _name, _value in ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)
console.tensorflow_environment()

with console.native_stderr_silenced():
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402

if not console.verbose():
    import absl.logging  # noqa: E402

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    # int8 I/O with a representative dataset needs no input statistics; the converter warns anyway
    warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected", category=UserWarning)

__all__ = ["tf", "keras", "ENVIRONMENT"]
