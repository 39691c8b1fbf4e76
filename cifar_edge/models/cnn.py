"""The custom CNN for 32x32 images, in two layouts.

``airbench`` (the default ``cnn``), airbench94's network::

    stem conv 2x2 (24, bias, no BN) -> act -> stage_i: conv -> maxpool -> BN -> act -> conv -> BN -> act
    ... -> global max pool -> dense (no bias)

with BatchNorm at momentum 0.6 and no scale, convs initialised as torch does
(uniform +-1/sqrt(fan_in)) and their first ``in_channels`` filters as the identity (dirac).

``residual`` (``cnn-tiny``), a ResNet-9-style net::

    stem conv(w0) -> stage_i: conv(w_i) -> maxpool -> [residual block x depth] ... -> GAP -> dense

Built only from layers that tfmot can quantize and prune (Conv2D, BatchNormalization,
ReLU/GELU, MaxPooling2D, Add, Multiply, global pooling, Dense, Dropout), and flat, so QAT,
pruning, TFLite and ONNX export all take it as is.  Pooling right after each stage's first
conv keeps most of the compute at 16x16 and below, which buys accuracy per CPU-second.
"""
from __future__ import annotations

import numpy as np

from .._tf import keras
from ..data.pipeline import Normalization
from .registry import ModelOption, register_model

layers = keras.layers

# Per-channel CIFAR statistics (0..255): the CNN trains from scratch on these.
CIFAR_NORM = Normalization((125.3, 123.0, 113.9), (63.0, 62.1, 66.7))

# airbench94's widths (stem, then one per stage).  On real CIFAR-10 here: 90.00% after 21 bfloat16
# epochs (41 min), against the narrower net's 89.59% after 25 float32 epochs (benchmarks/train_cifar10.py).
DEFAULT_WIDTHS = (24, 64, 256, 256)
# The narrower net (the default until then), kept for cnn-tiny: tests want seconds per epoch.
NARROW_WIDTHS = (24, 48, 192, 192)
# cnn-micro: under 1 MB of int8 weights (0.84 M params) for microcontroller flash; its largest
# activations (31x31x64 int8) keep TFLite Micro's arena far under 256 KB.
MICRO_WIDTHS = (24, 64, 160, 160)


LAYOUTS = ("airbench", "residual")
ACTIVATIONS = ("relu", "gelu")


def _torch_init():
    """torch's default init, U(+-1/sqrt(fan_in)): airbench's learning rates are tuned to it.
    A new instance per layer (a shared unseeded one gives every layer the same draw)."""
    return keras.initializers.VarianceScaling(1 / 3, mode="fan_in", distribution="uniform")


def _act(x, act, name):
    if act == "gelu":
        return layers.Activation("gelu", name=f"{name}_gelu")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _conv_bn_relu(x, filters, name, bn=True, pool=False, kernel=3, padding="same", act="relu",
                  bn_momentum=0.9, bn_scale=True, init="he_normal"):
    x = layers.Conv2D(filters, kernel, padding=padding, use_bias=not bn,
                      kernel_initializer=init, name=f"{name}_conv")(x)
    if pool:
        x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    if bn:
        x = layers.BatchNormalization(momentum=bn_momentum, epsilon=1e-5, scale=bn_scale, name=f"{name}_bn")(x)
    return _act(x, act, name)


def _dirac(model):
    """Set the first ``in_channels`` filters of every 3x3 conv that does not narrow to the
    identity (airbench's ``dirac_`` init): each block starts close to passing its input on."""
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D) and tuple(layer.kernel_size) == (3, 3):
            kernel = layer.get_weights()[0]
            cin, cout = kernel.shape[2], kernel.shape[3]
            if cin > cout:
                continue
            kernel[:, :, :, :cin] = 0.0
            kernel[1, 1, np.arange(cin), np.arange(cin)] = 1.0
            layer.set_weights([kernel, *layer.get_weights()[1:]])


def _airbench(x, widths, act, bn_momentum):
    stem_bias = 1 / np.sqrt(2 * 2 * int(x.shape[-1]))
    x = layers.Conv2D(widths[0], 2, padding="valid", kernel_initializer=_torch_init(),
                      bias_initializer=keras.initializers.RandomUniform(-stem_bias, stem_bias), name="stem_conv")(x)
    x = _act(x, act, "stem")
    common = dict(act=act, bn_momentum=bn_momentum, bn_scale=False)
    for stage, filters in enumerate(widths[1:], start=1):
        x = _conv_bn_relu(x, filters, f"s{stage}a", pool=True, init=_torch_init(), **common)
        x = _conv_bn_relu(x, filters, f"s{stage}b", init=_torch_init(), **common)
    return x


def _squeeze_excite(x, name, ratio=8):
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_gap")(x)
    s = layers.Conv2D(max(channels // ratio, 8), 1, activation="relu", name=f"{name}_se_reduce")(s)
    s = layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_se_expand")(s)
    return layers.Multiply(name=f"{name}_se_scale")([x, s])


def build_cnn(num_classes: int = 100, input_shape=(32, 32, 3), width: float = 1.0,
              depth: tuple = (1, 1, 1), base_widths: tuple = DEFAULT_WIDTHS,
              block_convs: int = 1, bn: bool = True, se: bool = False, dropout: float = 0.0,
              head: str | None = None, stem_kernel: int = 2, name: str = "cnn", layout: str = "residual",
              act: str = "relu", bn_momentum: float | None = None, dirac: bool = True) -> keras.Model:
    """Build the CNN.

    ``width`` multiplies ``base_widths`` (stem + one per stage).  ``residual`` layout:
    ``depth`` gives the number of residual blocks (``block_convs`` convs each) after each
    stage's pooled conv.  ``head`` is ``gap`` (global average pool) or ``gmp`` (global max
    pool) [default: gmp for airbench, gap for residual].  ``bn_momentum`` in keras' convention
    [default: 0.6 for airbench, 0.9 for residual].
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    if act not in ACTIVATIONS:
        raise ValueError(f"act must be one of {', '.join(ACTIVATIONS)}; got {act!r}")
    if layout == "airbench" and (tuple(depth) != (1, 1, 1) or block_convs != 1 or se or not bn):
        raise ValueError("depth, block_convs, se and bn shape the residual layout; add layout='residual' "
                         "(CLI: --layout residual) to use them")
    head = head or ("gmp" if layout == "airbench" else "gap")
    if width <= 0:
        raise ValueError(f"width must be > 0; got {width}")
    if layout == "airbench" and len(base_widths) != 4:
        raise ValueError(f"widths {tuple(base_widths)}: the airbench layout takes the stem width and three stage "
                         "widths, e.g. 24,64,256,256")
    if len(depth) != len(base_widths) - 1:
        raise ValueError(f"widths {tuple(base_widths)} and depth {tuple(depth)} disagree: give the stem width "
                         f"plus one width per stage, and one depth per stage")
    if head not in ("gap", "gmp"):
        raise ValueError(f"head must be 'gap' or 'gmp'; got {head!r}")
    widths = [max(8, int(round(w * width))) for w in base_widths]
    inputs = keras.Input(shape=input_shape, name="image")
    if layout == "airbench":
        x = _airbench(inputs, widths, act, 0.6 if bn_momentum is None else bn_momentum)
    else:
        common = dict(bn=bn, act=act, bn_momentum=0.9 if bn_momentum is None else bn_momentum)
        # A 2x2 'valid' stem (as airbench's whitening layer) makes 31x31 maps, so the stages
        # run at 15, 7 and 3 px: ~35% fewer FLOPs than 16/8/4 for the same accuracy.
        x = _conv_bn_relu(inputs, widths[0], "stem", kernel=stem_kernel,
                          padding="valid" if stem_kernel == 2 else "same", **common)
        for stage, (filters, blocks) in enumerate(zip(widths[1:], depth), start=1):
            x = _conv_bn_relu(x, filters, f"s{stage}", pool=True, **common)
            for b in range(blocks):
                y = x
                for c in range(block_convs):
                    y = _conv_bn_relu(y, filters, f"s{stage}b{b}c{c}", **common)
                if se:
                    y = _squeeze_excite(y, f"s{stage}b{b}")
                x = layers.Add(name=f"s{stage}b{b}_add")([x, y])
    pool = layers.GlobalAveragePooling2D if head == "gap" else layers.GlobalMaxPooling2D
    x = pool(name="head_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    # float32 logits even under mixed precision (GPU), for a stable softmax and loss.
    airbench = layout == "airbench"
    outputs = layers.Dense(num_classes, name="logits", dtype="float32", use_bias=not airbench,
                           kernel_initializer=_torch_init() if airbench else "glorot_uniform")(x)
    model = keras.Model(inputs, outputs, name=name)
    if airbench and dirac:
        _dirac(model)
    return model


# airbench94's recipe (Jordan 2024), in keras terms.  Its lr 11.5 and weight decay 0.0153
# are "per 1024 examples" of a summed loss, scaled down by 1 + 1/(1 - momentum); for a mean
# loss at batch B that is lr 11.5 / (1 + 1/0.15) * B / 1024 (1.5 at 1024) and an L2 term of
# 0.0153 / 11.5 through the momentum.  `cifar-edge train` uses it unless flags override it; a
# smaller batch scales the lr with it (TrainConfig.resolved).  Its QAT fine-tune
# (`optimize --qat`) takes the run's lr / 500, not / 10: with BatchNorm biases at 64 x the lr,
# one QAT epoch of the real CIFAR-10 default lost 0.54 points at / 10, 0.35 at / 100 and 0.24
# at / 500 (int8 file against float, 10k test images, seed 0; benchmarks/compress_cifar10.py);
# cnn-micro shares the recipe, so its divisor too (not measured on it separately).
AIRBENCH_RECIPE = {
    "optimizer": {"optimizer": "sgd-l2", "lr": 11.5 / (1 + 1 / 0.15), "momentum": 0.85, "nesterov": True,
                  "weight_decay": 0.0153 / 11.5, "schedule": "triangle", "warmup_epochs": 0.23, "batch_size": 1024,
                  "label_smoothing": 0.2, "bn_bias_lr": 64.0, "lookahead": True, "whiten_bias_epochs": 3},
    "augmentation": {"alternate_flip": True},
    "network": {"whiten": True, "logit_scale": 1 / 9},
    "evaluation": {"tta": True},
    "compression": {"qat_lr_divisor": 500},
}

# The residual net's recipe (the default until airbench's port), kept for cnn-tiny.
RESIDUAL_RECIPE = {
    "optimizer": {"optimizer": "sgd", "lr": 0.4, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-3,
                  "schedule": "onecycle", "warmup_epochs": 0.2, "batch_size": 512, "label_smoothing": 0.2},
}

OPTIONS = (
    ModelOption("width", float, "width multiplier."),
    ModelOption("depth", "ints", "residual blocks per stage, e.g. 1,1,1.", example="1,1,1"),
    ModelOption("base_widths", "ints", "channels of the stem and of each stage [default: 24,64,256,256].",
                flag="widths", example="24,64,256,256"),
    ModelOption("se", bool, "squeeze-and-excitation blocks."),
    ModelOption("dropout", float, "dropout before the classifier."),
    ModelOption("head", str, "global pooling before the classifier, gap (average) or gmp (max)."),
    ModelOption("layout", str, "airbench (two convs per stage) or residual (ResNet-9-style) [default: airbench]."),
    ModelOption("act", str, "activation, relu or gelu."),
    ModelOption("dirac", bool, "identity init of the 3x3 convs' first filters (airbench layout)."),
)


def _residual_before_airbench(config: dict) -> dict:
    """A saved `cnn` run from before cnn became airbench's net (its config has no lookahead):
    that run's model is the residual one."""
    if "lookahead" not in config:
        config = {**config, "model_options": {"layout": "residual", **config.get("model_options", {})}}
    return config


@register_model("cnn", input_size=32, normalization=CIFAR_NORM, family="cnn", recipe=AIRBENCH_RECIPE, options=OPTIONS,
                default=True, upgrade_config=_residual_before_airbench,
                description="airbench94's CNN for 32x32 (whitened stem, 64/256/256), tfmot-ready")
def cnn(num_classes, input_shape, **options):
    return build_cnn(num_classes=num_classes, input_shape=input_shape, **{"layout": "airbench", **options})


# `cifar-edge quickstart` trains cnn-tiny, a residual CNN at 1/8 of the default's FLOPs, so training,
# three exports and the bench fit in a few minutes on two cores (~63% top-1 on real CIFAR-10 here).
# A larger batch and lower peak rate than the recipe's, because a few epochs of a few thousand
# images are too few steps for batch 512 at lr 0.4.
QUICKSTART = {"batch_size": 128, "lr": 0.2}


@register_model("cnn-tiny", input_size=32, normalization=CIFAR_NORM, family="cnn", recipe=RESIDUAL_RECIPE, options=OPTIONS,
                quickstart=QUICKSTART,
                description="half-width, shallower residual CNN: seconds per epoch, for tests and smoke runs")
def cnn_tiny(num_classes, input_shape, **options):
    options = {"base_widths": NARROW_WIDTHS, "width": 0.5, "depth": (0, 1, 0), **options}
    return build_cnn(num_classes=num_classes, input_shape=input_shape, **options)


@register_model("cnn-micro", input_size=32, normalization=CIFAR_NORM, family="cnn", recipe=AIRBENCH_RECIPE, options=OPTIONS,
                description="airbench's CNN at 64/160/160 for microcontrollers: 0.84 MB int8, small arena")
def cnn_micro(num_classes, input_shape, **options):
    options = {"layout": "airbench", "base_widths": MICRO_WIDTHS, **options}
    return build_cnn(num_classes=num_classes, input_shape=input_shape, **options)
