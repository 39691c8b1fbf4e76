"""Quantize a conv's learned weights on their own range: ``conv(x; W) = conv(x; W - I) + x``.

A dirac-initialised 3x3 conv (as airbench's) keeps its identity tap
(about 0.95 after two epochs) while the weights it learned stay small beside it (per output
channel max/rms of 24-48).  Per-channel int8 then spends the channel's scale on the identity
tap and rounds the learned weights to 2 or 3 levels.  Written as ``conv(W - I)`` plus an
explicit residual ``Add`` of its input, the float function is the same (up to float
rounding) and the conv's weights quantize on their own range; the identity travels through
the Add at the activation's own int8 scale.

Only quantized files convert from the split model (:meth:`ExportContext.quantizable`); float
files keep the model as trained.  A conv is split only where its identity tap dominates, so a
model whose learned weights have grown past it converts as before.
"""
from __future__ import annotations

import numpy as np

# A conv is split when, over its identity channels, the median weight range after the split
# is below this fraction of the range before: the identity tap sets the scale.
SPLIT_WHEN_RANGE_BELOW = 0.5


def _identity_kernel(kernel: np.ndarray) -> np.ndarray | None:
    """The identity as a kernel of this shape (centre tap, channel i -> i), or None if the
    conv cannot carry one (even kernel, fewer outputs than inputs)."""
    kh, kw, cin, cout = kernel.shape
    if kh % 2 == 0 or kw % 2 == 0 or cin != cout:
        return None
    eye = np.zeros_like(kernel)
    eye[kh // 2, kw // 2, np.arange(cin), np.arange(cin)] = 1.0
    return eye


def identity_dominates(kernel: np.ndarray) -> bool:
    """Whether removing the identity shrinks the typical output channel's weight range below
    :data:`SPLIT_WHEN_RANGE_BELOW` of what it was."""
    eye = _identity_kernel(kernel)
    if eye is None:
        return False
    before = np.abs(kernel).max(axis=(0, 1, 2))
    after = np.abs(kernel - eye).max(axis=(0, 1, 2))
    return bool(np.median(after / np.maximum(before, 1e-12)) < SPLIT_WHEN_RANGE_BELOW)


def _splittable(layer) -> bool:
    from .._tf import keras
    if type(layer) is not keras.layers.Conv2D or not layer.get_weights():
        return False
    cfg = layer.get_config()
    return (cfg["padding"] == "same" and tuple(cfg["strides"]) == (1, 1) and tuple(cfg["dilation_rate"]) == (1, 1)
            and cfg.get("groups", 1) == 1 and cfg["data_format"] == "channels_last"
            and cfg["activation"] == "linear" and len(layer._inbound_nodes) == 1)  # noqa: SLF001 - one call site


def split_identity(model):
    """(model, names of the convs split): ``model`` itself when none qualifies, else a new
    functional model where each qualifying conv holds ``W - I`` and an ``Add`` named
    ``<conv>_identity`` adds the conv's input to its output."""
    from .._tf import keras
    if not isinstance(model, keras.Model) or not hasattr(model, "_is_graph_network") or not model._is_graph_network:  # noqa: SLF001
        return model, []
    chosen = [layer.name for layer in model.layers if _splittable(layer) and identity_dominates(layer.get_weights()[0])]
    if not chosen:
        return model, []
    config = model.get_config()
    layers, renamed = [], {}
    for spec in config["layers"]:
        layers.append(spec)
        if spec["name"] in chosen:
            (call,) = spec["inbound_nodes"]
            source = call[0]
            add = f"{spec['name']}_identity"
            layers.append({"class_name": "Add", "name": add,
                           "config": {"name": add, "trainable": False, "dtype": spec["config"].get("dtype")},
                           "inbound_nodes": [[[spec["name"], 0, 0, {}], [source[0], source[1], source[2], {}]]]})
            renamed[spec["name"]] = add

    def redirect(ref):
        return [renamed.get(ref[0], ref[0]), *ref[1:]]
    for spec in layers:
        if not spec["name"].endswith("_identity") or spec["name"][:-len("_identity")] not in renamed:
            spec["inbound_nodes"] = [[redirect(ref) for ref in call] for call in spec["inbound_nodes"]]
    config["layers"] = layers
    config["output_layers"] = [redirect(ref) for ref in config["output_layers"]]
    split = keras.Model.from_config(config)
    for layer in model.layers:
        weights = layer.get_weights()
        if layer.name in chosen:
            weights[0] = weights[0] - _identity_kernel(weights[0])
        split.get_layer(layer.name).set_weights(weights)
    return split, chosen
