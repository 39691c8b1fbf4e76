"""ConvNeXt built flat from stock layers, so tfmot (Conv/Dense annotated), TFLite int8 and
tf2onnx all take it, and loading keras' official ConvNeXt weights by layer name.

keras' own ConvNeXt nests Sequential blocks (tfmot cannot quantize a nested model) and
writes its 7x7 depthwise convolution as a grouped Conv2D (tf2onnx cannot convert it).  Here
the same graph uses DepthwiseConv2D, LayerNormalization, GELU written with ``erf``, and a
registered LayerScale, with keras' layer names, so the official weight files map one to one.
The ImageNet normalization keras does inside the model (its "prestem") is done by the data
pipeline instead and recorded in the run, as for every other model.
"""
from __future__ import annotations

import math

import numpy as np

from .._tf import keras, tf
from ..data.pipeline import Normalization
from ..errors import CifarEdgeError
from .pretrained import TRANSFER_RECIPE, WEIGHTS, does_not_fit, download_failed, weights_file
from .registry import ModelOption, register_model

layers = keras.layers
IMAGENET_NORM = Normalization((0.485 * 255, 0.456 * 255, 0.406 * 255), (0.229 * 255, 0.224 * 255, 0.225 * 255))
VARIANTS = {   # name: (depths, widths, keras application or None)
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768), "ConvNeXtTiny"),
    "small": ((3, 3, 27, 3), (96, 192, 384, 768), "ConvNeXtSmall"),
    "base": ((3, 3, 27, 3), (128, 256, 512, 1024), "ConvNeXtBase"),
    "nano": ((2, 2, 6, 2), (48, 96, 192, 384), None),      # CPU-sized; no official weights
}


class _NothingToCompress:
    """tfmot prunes and clusters only layers that say which weights it may touch: these have
    none worth it (a per-channel scale, no weights), so they say so and stay as they are."""

    def get_prunable_weights(self):
        return []

    def get_clusterable_weights(self):
        return []


@keras.utils.register_keras_serializable("cifar_edge")
class GELU(_NothingToCompress, layers.Layer):
    """Exact GELU, x * Phi(x), written with erf (TFLite and ONNX both have Erf)."""

    def call(self, x):
        return 0.5 * x * (1.0 + tf.math.erf(x / math.sqrt(2.0)))


@keras.utils.register_keras_serializable("cifar_edge")
class LayerScale(_NothingToCompress, layers.Layer):
    """Per-channel learned scale of a residual branch (keras' LayerScale, same weight name)."""

    def __init__(self, init_values: float = 1e-6, projection_dim: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.init_values, self.projection_dim = init_values, projection_dim

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=(self.projection_dim,),
                                     initializer=keras.initializers.Constant(self.init_values), trainable=True)

    def call(self, x):
        return x * self.gamma

    def get_config(self):
        return {**super().get_config(), "init_values": self.init_values, "projection_dim": self.projection_dim}


@keras.utils.register_keras_serializable("cifar_edge")
class StochasticDepth(_NothingToCompress, layers.Layer):
    """Drops a residual branch per sample while training (identity at inference)."""

    def __init__(self, rate: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate

    def call(self, x, training=None):
        if not training or not self.rate:
            return x
        keep = 1.0 - self.rate
        mask = tf.floor(keep + tf.random.uniform((tf.shape(x)[0], 1, 1, 1), 0, 1))
        return x / keep * mask

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


CUSTOM_OBJECTS = {"GELU": GELU, "LayerScale": LayerScale, "StochasticDepth": StochasticDepth}


def _block(x, dim: int, drop: float, name: str):
    y = layers.DepthwiseConv2D(7, padding="same", name=f"{name}_depthwise_conv")(x)
    y = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_layernorm")(y)
    y = layers.Dense(4 * dim, name=f"{name}_pointwise_conv_1")(y)
    y = GELU(name=f"{name}_gelu")(y)
    y = layers.Dense(dim, name=f"{name}_pointwise_conv_2")(y)
    y = LayerScale(1e-6, dim, name=f"{name}_layer_scale")(y)
    if drop:
        y = StochasticDepth(drop, name=f"{name}_stochastic_depth")(y)
    return layers.Add(name=f"{name}_add")([x, y])


def build_convnext(num_classes: int, input_shape=(32, 32, 3), variant: str = "nano", drop_path: float = 0.0,
                   weights: str | None = None, include_imagenet_head: bool = False):
    """ConvNeXt ``variant`` with a GAP -> LayerNorm -> Dense head named ``logits``.
    ``weights``: None / "none", "imagenet" (keras' download) or a keras ConvNeXt weights file;
    ``include_imagenet_head`` maps the official 1000-way head too (num_classes must be 1000)."""
    if variant not in VARIANTS:
        raise CifarEdgeError(f"unknown ConvNeXt variant '{variant}'; use one of {', '.join(VARIANTS)}")
    if not 0 <= drop_path < 1:
        raise CifarEdgeError(f"--drop-path {drop_path} is invalid; use a rate in [0, 1), e.g. 0.1")
    if input_shape[0] < 32:
        raise CifarEdgeError(f"ConvNeXt needs at least 32x32 inputs (it downsamples 32x); got {input_shape[0]}")
    depths, widths, _ = VARIANTS[variant]
    prefix = f"convnext_{variant}"
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Conv2D(widths[0], 4, strides=4, name=f"{prefix}_stem_conv")(inputs)
    x = layers.LayerNormalization(epsilon=1e-6, name=f"{prefix}_stem_layernorm")(x)
    rates = np.linspace(0.0, drop_path, sum(depths))
    k = 0
    for i, (depth, dim) in enumerate(zip(depths, widths)):
        if i:
            x = layers.LayerNormalization(epsilon=1e-6, name=f"{prefix}_downsampling_layernorm_{i - 1}")(x)
            x = layers.Conv2D(dim, 2, strides=2, name=f"{prefix}_downsampling_conv_{i - 1}")(x)
        for j in range(depth):
            x = _block(x, dim, float(rates[k]), f"{prefix}_stage_{i}_block_{j}")
            k += 1
    x = layers.GlobalAveragePooling2D(name=f"{prefix}_head_gap")(x)
    x = layers.LayerNormalization(epsilon=1e-6, name=f"{prefix}_head_layernorm")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    model = keras.Model(inputs, outputs, name=prefix)
    if weights not in (None, "none"):
        load_official_weights(model, variant, weights, include_head=include_imagenet_head)
    return model


def _flat_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _flat_layers(layer)
        else:
            yield layer


def map_stock_weights(ours, stock, include_head: bool = False) -> int:
    """Copy a keras.applications ConvNeXt's weights into ours by layer name; returns the
    number of layers set.  The grouped 7x7 kernels (7, 7, 1, C) become depthwise (7, 7, C, 1)."""
    theirs = {layer.name: layer for layer in _flat_layers(stock)}
    norms = [layer for layer in _flat_layers(stock) if isinstance(layer, layers.LayerNormalization)]
    count = 0
    for layer in ours.layers:
        if not layer.weights:
            continue
        if layer.name == "logits":
            if not include_head:
                continue
            source = theirs.get(f"{ours.name}_head_dense")
        elif layer.name.endswith("_head_layernorm") and layer.name not in theirs:
            source = norms[-1]                 # include_top=False files name it layer_normalization_N
        else:
            source = theirs.get(layer.name)
        if source is None:
            raise CifarEdgeError(f"the ConvNeXt weights have no layer {layer.name}; pass weights of the same "
                                 f"variant ({ours.name})")
        values = source.get_weights()
        if isinstance(layer, layers.DepthwiseConv2D):
            values = [values[0].transpose(0, 1, 3, 2), *values[1:]]
        try:
            layer.set_weights(values)
        except ValueError as e:
            raise CifarEdgeError(f"weights for {layer.name} do not fit ({str(e).splitlines()[0][:100]}); pass "
                                 f"weights of the same variant ({ours.name}) and number of classes") from None
        count += 1
    return count


def load_official_weights(model, variant: str, weights: str, include_head: bool = False) -> int:
    """keras' ConvNeXt ``variant`` with ``weights`` ("imagenet" or a file), mapped into ``model``."""
    app = VARIANTS[variant][2]
    if app is None:
        raise CifarEdgeError(f"convnext-{variant} has no official weights; use --weights none "
                             "(or convnext-tiny/small/base)")
    if weights != "imagenet":
        weights_file(weights, "a keras ConvNeXt weights file")
    builder = getattr(keras.applications, app)
    try:
        stock = builder(include_top=include_head, weights=weights, input_shape=model.input_shape[1:],
                        include_preprocessing=False)
    except (ValueError, OSError) as e:
        raise does_not_fit(weights, f"keras {app}", e, "pass weights saved from the same variant") from None
    except Exception as e:  # noqa: BLE001 - keras raises a bare Exception when the download fails
        raise download_failed(app, e) from None
    return map_stock_weights(model, stock, include_head=include_head)


def backbone_blocks(model) -> list[list[str]]:
    """Layer names per block, bottom to top: the stem, then each ConvNeXt block and each
    downsampling step in graph order; what `--unfreeze N` counts from the top."""
    import re
    groups: dict[str, list[str]] = {}
    for layer in model.layers:
        name = layer.name
        if isinstance(layer, keras.layers.InputLayer) or "_head_" in name or name == "logits":
            continue
        if "_stage_" in name:
            key = re.match(r"(.*_stage_\d+_block_\d+)_", name).group(1)
        elif "_downsampling_" in name:
            key = "downsampling_" + name.rsplit("_", 1)[1]
        else:
            key = "stem"
        groups.setdefault(key, []).append(name)
    return list(groups.values())      # insertion order is the graph's order


def weights_here(variant: str):
    def info() -> str:
        if VARIANTS[variant][2] is None:
            return "none: no official weights for this size"
        return "imagenet (keras download, needs internet); PATH (a keras ConvNeXt weights file); none"
    return info


OPTIONS = (ModelOption("drop_path", float, "stochastic depth, rising linearly to this rate at the last block."), WEIGHTS)


def _register(variant: str, input_size: int, description: str):
    @register_model(f"convnext-{variant}", input_size=input_size, normalization=IMAGENET_NORM,
                    recipe=TRANSFER_RECIPE, family="transfer", weights_info=weights_here(variant),
                    blocks=backbone_blocks, options=OPTIONS, description=description)
    def convnext(num_classes, input_shape, **options):
        return build_convnext(num_classes=num_classes, input_shape=input_shape, variant=variant, **options)


_register("nano", 32, "ConvNeXt at CPU size (depths 2-2-6-2, widths 48..384), flat, tfmot/TFLite/ONNX-ready")
for _name in ("tiny", "small", "base"):
    _register(_name, 96, f"ConvNeXt-{_name.capitalize()} (flat reimplementation; loads keras' official "
                         "weights by layer name; --weights imagenet|none|PATH)")
