"""Quantization-aware training wrappers (QAT, and PQAT with a prune-preserving scheme).

tfmot's 8-bit scheme quantizes a whole model only when it knows every layer; our CNN
pools before its BatchNormalization (conv -> pool -> BN), a pattern tfmot cannot fold, so
the fallback fake-quantizes just the layers that carry weights (Conv2D, DepthwiseConv2D,
Dense), which is where int8 saves size and time.
"""
from __future__ import annotations

import re

from .. import console
from .._tf import keras
from ..errors import CifarEdgeError
from .measure import KERNEL_LAYERS
from .tfmot_compat import quantize_scope, tfmot



def quantize(model, scheme=None, custom_objects: dict | None = None):
    """Return (quantize-wrapped copy of ``model``, coverage), coverage being ``"whole model"``
    or ``"conv/dense layers"``.  ``scheme`` defaults to tfmot's 8-bit scheme."""
    q = tfmot.quantization.keras
    extra = {"scheme": scheme} if scheme is not None else {}
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
