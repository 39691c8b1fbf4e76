"""MobileNetV2 from ``tf_keras.applications``, built flat (``input_tensor=``) so tfmot can
quantize and prune it, with a new classification head for the dataset's classes.

Inputs are scaled to [-1, 1] (keras' ``preprocess_input`` for MobileNetV2) by the pipeline's
normalization, so exported files carry it in their metadata like any other model.
"""
from __future__ import annotations

from .._tf import keras
from ..data.pipeline import Normalization
from ..errors import CifarEdgeError
from .head import HEAD_LAYERS, classification_head
from .pretrained import TRANSFER_RECIPE, WEIGHTS, does_not_fit, download_failed, weights_file
from .registry import ModelOption, register_model

IMAGENET_PM1 = Normalization((127.5, 127.5, 127.5), (127.5, 127.5, 127.5))   # pixels -> [-1, 1]
# keras builds MobileNetV2's BatchNorm with momentum 0.999, made for ImageNet's ~1M steps: in a
# CIFAR-sized run (a few thousand steps) the moving statistics never catch up and the model
# trained from scratch scores chance in inference mode (measured: 1% on CIFAR-100 after 15
# epochs, 34% with batch statistics).  0.9, as in our CNN, tracks within ~20 steps.
BN_MOMENTUM = 0.9
ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
RESOLUTIONS = (32, 96, 128, 160, 192, 224)


def imagenet_weights_here() -> str:
    """What `--weights imagenet` would find on this machine (keras caches in ~/.keras/models)."""
    from pathlib import Path
    cached = sorted((Path.home() / ".keras" / "models").glob("mobilenet_v2_weights_*_no_top.h5"))
    imagenet = f"imagenet (cached: {len(cached)} file(s))" if cached else "imagenet (keras download, needs internet)"
    return f"{imagenet}; PATH (offline: `cifar-edge weights import-tflite`); none"


def backbone_blocks(model) -> list[list[str]]:
    """keras MobileNetV2's layers grouped bottom to top: the stem, expanded_conv, block_1 ..
    block_16, the final 1x1 conv; what `--unfreeze N` counts from the top."""
    import re
    groups: dict[int, list[str]] = {}
    for layer in model.layers:
        name = layer.name
        if name in HEAD_LAYERS or isinstance(layer, keras.layers.InputLayer):
            continue
        if name.startswith("Conv1") or name == "bn_Conv1":
            index = 0
        elif name.startswith("expanded_conv"):
            index = 1
        elif (m := re.match(r"block_(\d+)_", name)):
            index = int(m.group(1)) + 1
        elif name.startswith("Conv_1") or name == "out_relu":
            index = 18
        else:
            raise CifarEdgeError(f"layer {name} is not part of keras' MobileNetV2; rebuild the model with cifar-edge")
        groups.setdefault(index, []).append(name)
    return [groups[i] for i in sorted(groups)]


def check_alpha_and_size(alpha: float, size: int):
    if alpha not in ALPHAS:
        raise CifarEdgeError(f"MobileNetV2 alpha {alpha} does not exist; use one of {', '.join(map(str, ALPHAS))}")
    if size not in RESOLUTIONS:
        raise CifarEdgeError(f"MobileNetV2 input size {size} is not supported; use one of "
                             f"{', '.join(map(str, RESOLUTIONS))} (--input-size)")


def build_mobilenet_v2(num_classes: int, input_shape=(96, 96, 3), alpha: float = 1.0, dropout: float = 0.2,
                       weights: str | None = None):
    """The backbone + GAP, dropout and a dense head named ``logits``.  ``weights``: None /
    "none" (random), "imagenet" (keras' download, cached in ~/.keras/models) or the path of a
    keras weights file of the backbone (e.g. from `cifar-edge weights import-tflite`)."""
    check_alpha_and_size(alpha, input_shape[0])
    inputs = keras.Input(shape=input_shape, name="image")
    base = _backbone(inputs, alpha, weights)
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    outputs = classification_head(base.output, num_classes, dropout)
    return keras.Model(inputs, outputs, name=f"mobilenetv2_{alpha}")


def _backbone(inputs, alpha: float, weights: str | None):
    """keras' MobileNetV2 without its top, on ``inputs`` (flat), with ``weights`` loaded."""
    if weights in (None, "none"):
        return keras.applications.MobileNetV2(input_tensor=inputs, include_top=False, weights=None, alpha=alpha)
    if weights == "imagenet":
        try:
            return keras.applications.MobileNetV2(input_tensor=inputs, include_top=False, weights="imagenet",
                                                  alpha=alpha)
        except Exception as e:  # noqa: BLE001 - keras raises a bare Exception when the download fails
            raise download_failed(f"MobileNetV2 (alpha {alpha})", e,
                                  "offline, rebuild them with `cifar-edge weights import-tflite` and pass "
                                  "--weights PATH, or train from scratch with --weights none") from None
    path = weights_file(weights, "a keras weights file (`cifar-edge weights import-tflite` writes one)")
    base = keras.applications.MobileNetV2(input_tensor=inputs, include_top=False, weights=None, alpha=alpha)
    try:
        base.load_weights(str(path))
    except (ValueError, OSError, KeyError) as e:
        raise does_not_fit(path, f"MobileNetV2 alpha {alpha}", e,
                           "pass weights saved from the same architecture (same --alpha)") from None
    return base


@register_model("mobilenetv2", input_size=96, normalization=IMAGENET_PM1, recipe=TRANSFER_RECIPE, family="transfer",
                weights_info=imagenet_weights_here, blocks=backbone_blocks,
                options=(ModelOption("alpha", float, f"width multiplier ({', '.join(map(str, ALPHAS))})."),
                         ModelOption("dropout", float, "dropout before the classifier."), WEIGHTS),
                description="MobileNetV2 (keras.applications, built flat; --alpha 0.35..1.4, --weights "
                            "imagenet|none|PATH), images upsampled in the pipeline")
def mobilenetv2(num_classes, input_shape, **options):
    return build_mobilenet_v2(num_classes=num_classes, input_shape=input_shape, **options)
