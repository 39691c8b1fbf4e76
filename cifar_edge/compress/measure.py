"""What compression actually achieved, measured on the weights rather than assumed from
the settings: zeros per kernel (pruning) and distinct values per kernel (clustering)."""
from __future__ import annotations

import numpy as np

from .._tf import keras

KERNEL_LAYERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def kernels(model) -> dict:
    """{layer name: kernel array} of the Conv2D/DepthwiseConv2D/Dense layers (the ones tfmot
    prunes and clusters), looking inside tfmot wrappers."""
    out = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)          # QuantizeWrapper & co. hold the real layer
        if isinstance(inner, KERNEL_LAYERS):
            # Read the variable, from the outer layer: a quantize wrapper points ``inner.kernel``
            # at its symbolic fake-quantized tensor, and a reloaded one owns the kernel itself.
            for v in layer.weights:
                if v.name.split("/")[-1].split(":")[0] in ("kernel", "depthwise_kernel"):
                    out[inner.name] = np.asarray(v)
                    break
    return out


def sparsity(model) -> tuple[float, dict]:
    """(overall fraction of exact zeros, {layer: fraction}) over the kernels."""
    ks = kernels(model)
    per_layer = {name: round(float(np.mean(k == 0)), 4) for name, k in ks.items()}
    zeros = sum(int(np.sum(k == 0)) for k in ks.values())
    total = sum(k.size for k in ks.values())
    return (round(zeros / total, 4) if total else 0.0), per_layer


def unique_values(model) -> dict:
    """{layer: number of distinct values in its kernel}."""
    return {name: int(np.unique(k).size) for name, k in kernels(model).items()}
