"""The custom residual CNN (``cnn``): a ResNet-9-style network for 32x32 images.

Built only from layers that tfmot can quantize and prune (Conv2D, BatchNormalization,
ReLU, MaxPooling2D, Add, Multiply, GlobalAveragePooling2D, Dense, Dropout), and flat,
so QAT, pruning, TFLite and ONNX export all take it as is.

Layout (widths scale with ``width``)::

    stem conv(w0) -> stage_i: conv(w_i) -> maxpool -> [residual block x depth] ... -> GAP -> dense

Pooling right after each stage's first conv (as in ResNet-9 and airbench) keeps most of
the compute at 16x16 and below, which is what buys accuracy per CPU-second.
"""
from __future__ import annotations

from .._tf import keras

layers = keras.layers

# airbench94's widths (stem, then one per stage).  On real CIFAR-10 here: 90.00% after 21 bfloat16
# epochs (41 min), against the narrower net's 89.59% after 25 float32 epochs (benchmarks/train_cifar10.py).
DEFAULT_WIDTHS = (24, 64, 256, 256)
# The narrower net (the default until then), kept for cnn-tiny: tests want seconds per epoch.
NARROW_WIDTHS = (24, 48, 192, 192)


def _conv_bn_relu(x, filters, name, bn=True, pool=False, kernel=3, padding="same"):
    x = layers.Conv2D(filters, kernel, padding=padding, use_bias=not bn,
                      kernel_initializer="he_normal", name=f"{name}_conv")(x)
    if pool:
        x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    if bn:
        x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _squeeze_excite(x, name, ratio=8):
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_gap")(x)
    s = layers.Conv2D(max(channels // ratio, 8), 1, activation="relu", name=f"{name}_se_reduce")(s)
    s = layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_se_expand")(s)
    return layers.Multiply(name=f"{name}_se_scale")([x, s])


def build_cnn(num_classes: int = 100, input_shape=(32, 32, 3), width: float = 1.0,
              depth: tuple = (1, 1, 1), base_widths: tuple = DEFAULT_WIDTHS,
              block_convs: int = 1, bn: bool = True, se: bool = False, dropout: float = 0.0,
              head: str = "gap", stem_kernel: int = 2, name: str = "cnn") -> keras.Model:
    """Build the residual CNN.

    ``width`` multiplies ``base_widths`` (stem + one per stage); ``depth`` gives the number
    of residual blocks (``block_convs`` convs each) after each stage's pooled conv;
    ``head`` is ``gap`` (global average pool) or ``gmp`` (global max pool).
    """
    if width <= 0:
        raise ValueError(f"width must be > 0; got {width}")
    if len(depth) != len(base_widths) - 1:
        raise ValueError(f"widths {tuple(base_widths)} and depth {tuple(depth)} disagree: give the stem width "
                         f"plus one width per stage, and one depth per stage")
    if head not in ("gap", "gmp"):
        raise ValueError(f"head must be 'gap' or 'gmp'; got {head!r}")
    widths = [max(8, int(round(w * width))) for w in base_widths]
    inputs = keras.Input(shape=input_shape, name="image")
    # A 2x2 'valid' stem (as airbench's whitening layer) makes 31x31 maps, so the stages
    # run at 15, 7 and 3 px: ~35% fewer FLOPs than 16/8/4 for the same accuracy.
    x = _conv_bn_relu(inputs, widths[0], "stem", bn=bn, kernel=stem_kernel,
                      padding="valid" if stem_kernel == 2 else "same")
    for stage, (filters, blocks) in enumerate(zip(widths[1:], depth), start=1):
        x = _conv_bn_relu(x, filters, f"s{stage}", bn=bn, pool=True)
        for b in range(blocks):
            y = x
            for c in range(block_convs):
                y = _conv_bn_relu(y, filters, f"s{stage}b{b}c{c}", bn=bn)
            if se:
                y = _squeeze_excite(y, f"s{stage}b{b}")
            x = layers.Add(name=f"s{stage}b{b}_add")([x, y])
    pool = layers.GlobalAveragePooling2D if head == "gap" else layers.GlobalMaxPooling2D
    x = pool(name="head_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    # float32 logits even under mixed precision (GPU), for a stable softmax and loss.
    outputs = layers.Dense(num_classes, name="logits", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)
