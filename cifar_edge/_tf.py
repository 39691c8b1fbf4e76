"""The one place that imports TensorFlow.

tensorflow-model-optimization only accepts Keras 2 models, so the legacy
``tf_keras`` must be selected *before* TensorFlow is first imported.  Every
module of ours imports ``tf`` and ``keras`` from here.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras"]
