"""Quantization-aware training wrappers (QAT, and PQAT with a prune-preserving scheme).

tfmot's 8-bit scheme quantizes a whole model only when it knows every layer; our CNN
pools before its BatchNormalization (conv -> pool -> BN), a pattern tfmot cannot fold, so
the fallback fake-quantizes just the layers that carry weights (Conv2D, DepthwiseConv2D,
Dense), which is where int8 saves size and time.
"""
from __future__ import annotations

import re

import numpy as np

from .. import console
from .._tf import keras
from ..errors import CifarEdgeError
from .measure import KERNEL_LAYERS
from ..models.qat_scheme import PerChannelQuantizeScheme
from ..models.tfmot_compat import quantize_scope, tfmot


def quantize(model, scheme=None, custom_objects: dict | None = None):
    """Return (quantize-wrapped copy of ``model``, coverage), coverage being ``"whole model"``
    or ``"conv/dense layers"``.  ``scheme`` defaults to tfmot's 8-bit scheme with depthwise
    kernels per channel (see qat_scheme)."""
    q = tfmot.quantization.keras
    extra = {"scheme": scheme or PerChannelQuantizeScheme()}
    try:
        with quantize_scope(), keras.utils.custom_object_scope(custom_objects or {}):
            return q.quantize_apply(q.quantize_annotate_model(model), **extra), "whole model"
    except (RuntimeError, ValueError) as e:
        first = e
    console.info(f"not quantizing the whole model ({_reason(first)}): fake-quantizing Conv2D/"
                 "DepthwiseConv2D/Dense layers only")
    annotate = lambda layer: q.quantize_annotate_layer(layer) if isinstance(layer, KERNEL_LAYERS) else layer  # noqa: E731
    try:
        with quantize_scope(), keras.utils.custom_object_scope(custom_objects or {}):
            annotated = keras.models.clone_model(model, clone_function=annotate)
            return q.quantize_apply(annotated, **extra), "conv/dense layers"
    except (RuntimeError, ValueError) as e:
        layer, reason = _layer_name(e), _reason(e)
        if layer is None:
            layer, reason = _unsupported_activation(model) or (_layer_name(first), reason)
        what = f"layer {layer}" if layer else "a layer of this model"
        raise CifarEdgeError(f"tfmot cannot quantize {what} ({reason}); use --prune instead or replace {what} "
                             "with one tfmot supports (Conv2D/Dense with relu, BatchNormalization right after "
                             "a conv)") from None


def _layer_name(error) -> str | None:
    """The layer tfmot's message names ("Layer s1_bn:<class ...> is not supported")."""
    m = re.search(r"[Ll]ayer\s+['\"]?([\w./-]+?)['\"]?\s*:?\s*<class", str(error))
    return m.group(1) if m else None


def _unsupported_activation(model) -> tuple[str, str] | None:
    """(layer, reason) for the first weighted layer whose activation tfmot cannot
    fake-quantize: tfmot's own message about activations names no layer."""
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_aware_activation import (
        QuantizeAwareActivation as Activation)
    supported = Activation._PRE_QUANT_ACTIVATIONS | Activation._POST_QUANT_ACTIVATIONS
    for layer in model.layers:
        activation = getattr(getattr(layer, "activation", None), "__name__", "linear")
        if isinstance(layer, KERNEL_LAYERS) and activation not in supported:
            return layer.name, f"activation '{activation}' is not one of {', '.join(sorted(supported))}"
    return None


def _reason(error) -> str:
    """tfmot's message, first sentence, with "Layer x:<class 'a.b.C'>" shortened to "layer x (C)"."""
    text = str(error).split("\n", 1)[0].split(". ", 1)[0].rstrip(".")
    text = re.sub(r"[Ll]ayer\s+([\w./-]+):<class '[\w.]*?(\w+)'>", r"layer \1 (\2)", text)
    return text[:200]


RANGE_IMAGES = 512        # float calibration images that set the QAT activation ranges before fine-tuning


def init_activation_ranges(wrapped, model, images: np.ndarray, batch_size: int = 32) -> int:
    """Set every activation quantizer's range of the QAT model ``wrapped`` to what the float
    ``model`` produces on ``images`` (the mean over batches of each batch's min and max, what
    tfmot's moving average converges to); returns how many ranges were set.

    tfmot starts each range at [-6, 6] and moves it by an exponential average with decay
    0.999, so a fine-tune of a few hundred steps ends with ranges still far off (a ReLU6
    output of MobileNetV2 still spanned [-4.7, 6] after 250 steps: 44% of its int8 levels
    unused), and the QAT model fell 7.8 points below its float parent."""
    from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer as _qlayer
    targets = []       # (min variable, max variable, float layer name or None for the input)
    for layer in wrapped.layers:
        names = {v.name.split("/")[-1].split(":")[0]: v for v in layer.weights}
        if isinstance(layer, _qlayer.QuantizeLayer) and "quantize_layer_min" in names:
            targets.append((names["quantize_layer_min"], names["quantize_layer_max"], None))
        elif isinstance(layer, tfmot.quantization.keras.QuantizeWrapper):
            for prefix in ("output", "post_activation"):
                if f"{prefix}_min" in names:
                    targets.append((names[f"{prefix}_min"], names[f"{prefix}_max"], layer.layer.name))
    present = {layer.name for layer in model.layers}
    targets = [t for t in targets if t[2] is None or t[2] in present]
    wanted = sorted({name for _, _, name in targets if name is not None})
    probe = keras.Model(model.input, [model.get_layer(n).output for n in wanted]) if wanted else None
    lows, highs = {n: [] for n in [None, *wanted]}, {n: [] for n in [None, *wanted]}
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size]
        lows[None].append(float(x.min()))
        highs[None].append(float(x.max()))
        if probe is not None:
            outs = probe(x, training=False)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            for n, o in zip(wanted, outs):
                o = np.asarray(o)
                lows[n].append(float(o.min()))
                highs[n].append(float(o.max()))
    for vmin, vmax, name in targets:
        lo, hi = min(0.0, float(np.mean(lows[name]))), max(0.0, float(np.mean(highs[name])))
        if hi - lo < 1e-6:
            hi = lo + 1e-6
        vmin.assign(np.full(vmin.shape, lo, np.float32))
        vmax.assign(np.full(vmax.shape, hi, np.float32))
    return len(targets)
