"""The new classification head every pretrained backbone gets, named so two-stage
fine-tuning can tell head from backbone."""
from __future__ import annotations

from .._tf import keras

HEAD_LAYERS = ("gap", "head_dropout", "logits")


def classification_head(features, num_classes: int, dropout: float = 0.0):
    """Backbone feature map -> global average pool -> dropout (if any) -> dense logits."""
    x = keras.layers.GlobalAveragePooling2D(name="gap")(features)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    return keras.layers.Dense(num_classes, name="logits")(x)
