"""airbench's initialisations that depend on the data or on the optimizer.

Patch whitening: the 2x2 stem's filters are set to the whitening transform of the training
images' 2x2 patches (eigenvectors scaled by 1/sqrt(eigenvalue + eps), each with its
negative) and frozen, so the first layer starts decorrelated instead of random: it buys
accuracy in short runs for the cost of one 12x12 eigendecomposition.

Logit scale: airbench multiplies the logits by 1/9.  Here the head stays a plain Dense
(nothing extra to quantize or export): its kernel starts scaled by the factor and the
sgd-l2 optimizer scales its gradient by the factor squared, which trains exactly alike.
"""
from __future__ import annotations

import numpy as np

from ..data.pipeline import Normalization

STEM = "stem_conv"
LOGITS = "logits"


def whitening_filters(images_uint8, norm: Normalization, kernel: int = 2, eps: float = 5e-4,
                      max_images: int = 5000, seed: int = 0) -> np.ndarray:
    """Kernel (k, k, 3, 2 * k*k*3) whitening the k x k patches of the (normalized) images."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(images_uint8))[:max_images]
    x = norm.apply_numpy(images_uint8[idx])
    windows = np.lib.stride_tricks.sliding_window_view(x, (kernel, kernel), axis=(1, 2))  # N,H',W',C,k,k
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, kernel * kernel * 3)          # (kh, kw, c) order
    cov = patches.T @ patches / len(patches)          # uncentred, as airbench (normalized pixels: mean ~0)
    eigvals, eigvecs = np.linalg.eigh(cov)
    w = eigvecs / np.sqrt(eigvals + eps)                                                     # columns = filters
    w = np.concatenate([w, -w], axis=1)
    return w.reshape(kernel, kernel, 3, -1).astype(np.float32)


def whiten_stem(model, images_uint8, norm: Normalization, seed: int = 0, freeze_layer: bool = True) -> bool:
    """Set the stem's filters (and freeze the layer, unless the optimizer freezes them by step);
    returns False (and changes nothing) when the model has no matching 2x2 stem."""
    try:
        layer = model.get_layer(STEM)
    except ValueError:
        return False
    kernel = layer.kernel
    k = int(kernel.shape[0])
    if int(kernel.shape[-1]) != 2 * k * k * 3 or int(kernel.shape[2]) != 3:
        return False
    weights = layer.get_weights()
    weights[0] = whitening_filters(images_uint8, norm, kernel=k, seed=seed)
    layer.set_weights(weights)
    layer.trainable = not freeze_layer
    return True


def frozen_stem(bias_steps: int) -> dict:
    """sgd-l2's freeze map for a whitened stem: the kernel never trains, the bias stops at
    step ``bias_steps`` (0: never trains)."""
    return {f"{STEM}/kernel": 0, f"{STEM}/bias": int(bias_steps)}


def scale_logits(model, scale: float) -> bool:
    """Scale the head's initial kernel by ``scale`` (see the module docstring); False when
    the model has no Dense ``logits`` layer."""
    try:
        layer = model.get_layer(LOGITS)
    except ValueError:
        return False
    weights = layer.get_weights()
    weights[0] = weights[0] * scale
    layer.set_weights(weights)
    return True
