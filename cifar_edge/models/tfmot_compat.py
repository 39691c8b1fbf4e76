"""The one place that knows how tfmot 0.8's quantize-wrapped models survive a save/load
round trip in tf_keras' ``.keras`` format (``.h5`` loads without these fixes).

Two tfmot bugs break ``load_model`` on a QAT ``.keras`` file:

* ``QuantizeLayer.build`` never marks the layer built, so the loader builds it twice and
  finds 5 variables where the file holds 3.  :func:`quantize_scope` swaps in a subclass
  (same class name: the file addresses weights by snake-cased class name) that builds once.
* A ``QuantizeWrapperV2`` created by ``quantize_apply`` lists its kernel twice, one built
  by the loader lists it once, so the files' variable counts disagree.  :func:`reloadable`
  rebuilds the model from its config the way the loader will, before it is saved.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .._tf import keras
from ..errors import CifarEdgeError

import tensorflow_model_optimization as tfmot  # noqa: E402 - after _tf selected tf_keras
from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer as _qlayer  # noqa: E402

from .qat_scheme import CUSTOM_OBJECTS as _SCHEME_OBJECTS  # noqa: E402


class QuantizeLayer(_qlayer.QuantizeLayer):
    """tfmot's QuantizeLayer, built by the functional graph only (never twice)."""

    def build_from_config(self, config):
        pass   # the model calls the layer right after, which builds it


@contextlib.contextmanager
def quantize_scope():
    """tfmot's ``quantize_scope`` plus the fixed QuantizeLayer and our per-channel depthwise
    config: use it to load or clone QAT models."""
    with tfmot.quantization.keras.quantize_scope(), \
            keras.utils.custom_object_scope({"QuantizeLayer": QuantizeLayer, **_SCHEME_OBJECTS}):   # inner wins
        yield


def is_quantized(model) -> bool:
    """True when ``model`` holds tfmot quantization wrappers (a QAT/PQAT model)."""
    wrapped = (_qlayer.QuantizeLayer, tfmot.quantization.keras.QuantizeWrapper)
    return any(isinstance(layer, wrapped) for layer in model.layers)


def reloadable(model):
    """A copy of a quantize-wrapped ``model`` laid out exactly as ``load_model`` will rebuild
    it, with the same weights, so its ``.keras`` file loads back.  Plain models pass through.

    Call it after training: a prune-preserving quantizer takes its zero mask from the
    weights when built, and the copy's mask is rebuilt from weights that already hold the
    zeros (training never moves a masked weight), so predictions are unchanged."""
    if not is_quantized(model):
        return model
    with quantize_scope():
        copy = keras.models.model_from_json(model.to_json())
    source, target = model.weights, copy.weights
    if [_short(v) for v in source] != [_short(v) for v in target]:
        raise CifarEdgeError("cannot lay out the quantization-aware model for saving (tfmot changed its "
                             "variables); pin tensorflow-model-optimization==0.8.* as pyproject.toml does")
    copy.set_weights([np.asarray(v) for v in source])
    return copy


def _short(variable) -> tuple:
    """A variable's name without its layer prefix, and its shape, for matching two copies."""
    return variable.name.split("/")[-1], tuple(variable.shape)
