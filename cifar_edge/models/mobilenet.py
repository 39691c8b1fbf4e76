"""MobileNetV2 from ``tf_keras.applications``, built flat (``input_tensor=``) so tfmot can
quantize and prune it, with a new classification head for the dataset's classes.

Inputs are scaled to [-1, 1] (keras' ``preprocess_input`` for MobileNetV2) by the pipeline's
normalization, so exported files carry it in their metadata like any other model.
"""
from __future__ import annotations

from .._tf import keras
from ..data.pipeline import Normalization
from ..errors import CifarEdgeError

IMAGENET_PM1 = Normalization((127.5, 127.5, 127.5), (127.5, 127.5, 127.5))   # pixels -> [-1, 1]
ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
RESOLUTIONS = (32, 96, 128, 160, 192, 224)


def check_alpha_and_size(alpha: float, size: int):
    if alpha not in ALPHAS:
        raise CifarEdgeError(f"MobileNetV2 alpha {alpha} does not exist; use one of {', '.join(map(str, ALPHAS))}")
    if size not in RESOLUTIONS:
        raise CifarEdgeError(f"MobileNetV2 input size {size} is not supported; use one of "
                             f"{', '.join(map(str, RESOLUTIONS))} (--image-size)")


def build_mobilenet_v2(num_classes: int, input_shape=(96, 96, 3), alpha: float = 1.0, dropout: float = 0.2,
                       weights: str | None = None, include_imagenet_head: bool = False):
    """The backbone (``weights``: None, "imagenet" or a keras weights file for it) + GAP,
    dropout and a dense head named ``logits``.  ``include_imagenet_head`` also keeps keras'
    1000-way top instead (for checking imported ImageNet weights)."""
    check_alpha_and_size(alpha, input_shape[0])
    inputs = keras.Input(shape=input_shape, name="image")
    base = keras.applications.MobileNetV2(input_tensor=inputs, include_top=False, weights=weights, alpha=alpha)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(base.output)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"mobilenetv2_{alpha}")
