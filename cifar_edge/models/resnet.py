"""ResNet50, the seeds' baseline: ``tf_keras.applications.ResNet50`` built flat with a new head.

keras' ImageNet ResNet50 expects BGR pixels minus the ImageNet mean ("caffe" preprocessing).
Our pipeline feeds RGB, so when weights are loaded the first convolution's input channels are
reversed instead: the same function of the RGB image, with no extra layer in the graph.
"""
from __future__ import annotations

import re

from .._tf import keras
from ..data.pipeline import Normalization
from ..errors import CifarEdgeError
from .head import HEAD_LAYERS, classification_head
from .pretrained import TRANSFER_RECIPE, WEIGHTS, does_not_fit, download_failed, weights_file
from .registry import ModelOption, register_model

CAFFE_RGB = Normalization((123.68, 116.779, 103.939), (1.0, 1.0, 1.0))   # keras' means, in RGB order


def build_resnet50(num_classes: int, input_shape=(96, 96, 3), dropout: float = 0.0, weights: str | None = None):
    if input_shape[0] < 32:
        raise CifarEdgeError(f"ResNet50 needs at least 32x32 inputs; got {input_shape[0]} (--input-size)")
    inputs = keras.Input(shape=input_shape, name="image")
    base = keras.applications.ResNet50(input_tensor=inputs, include_top=False, weights=None)
    if weights not in (None, "none"):
        _load(base, weights)
    return keras.Model(inputs, classification_head(base.output, num_classes, dropout), name="resnet50")


def _load(base, weights: str):
    if weights == "imagenet":
        try:
            source = keras.applications.ResNet50(include_top=False, weights="imagenet",
                                                 input_shape=base.input_shape[1:])
        except Exception as e:  # noqa: BLE001 - keras raises a bare Exception when the download fails
            raise download_failed("ResNet50", e) from None
        base.set_weights(source.get_weights())
    else:
        path = weights_file(weights, "a keras ResNet50 weights file (include_top=False)")
        try:
            base.load_weights(str(path))
        except (ValueError, OSError, KeyError) as e:
            raise does_not_fit(weights, "ResNet50", e, "pass a keras ResNet50 weights file without its top") from None
    conv1 = base.get_layer("conv1_conv")
    kernel, bias = conv1.get_weights()
    conv1.set_weights([kernel[:, :, ::-1, :], bias])      # BGR-trained first layer -> RGB input


def backbone_blocks(model) -> list[list[str]]:
    """The stem (conv1, pool1) and each bottleneck block conv{2..5}_block{N}, bottom to top."""
    groups: dict[str, list[str]] = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer) or layer.name in HEAD_LAYERS:
            continue
        m = re.match(r"(conv\d_block\d+)_", layer.name)
        groups.setdefault(m.group(1) if m else "stem", []).append(layer.name)
    return list(groups.values())


def weights_here() -> str:
    return "imagenet (keras download, needs internet); PATH (keras ResNet50 no-top weights); none"


@register_model("resnet50", input_size=96, normalization=CAFFE_RGB, recipe=TRANSFER_RECIPE, family="transfer",
                weights_info=weights_here, blocks=backbone_blocks,
                options=(ModelOption("dropout", float, "dropout before the classifier."), WEIGHTS),
                description="ResNet50 baseline (keras.applications, built flat; --weights imagenet|none|PATH)")
def resnet50(num_classes, input_shape, **options):
    return build_resnet50(num_classes=num_classes, input_shape=input_shape, **options)
