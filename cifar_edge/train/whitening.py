"""Patch-whitening initialisation of the CNN's 2x2 stem (airbench's trick).

The stem's filters are set to the whitening transform of the training images' 2x2 patches
(eigenvectors scaled by 1/sqrt(eigenvalue), each with its negative) and frozen, so the
first layer starts decorrelated instead of random: it buys accuracy in short runs for
the cost of one 12x12 eigendecomposition.
"""
from __future__ import annotations

import numpy as np

from ..data.pipeline import Normalization

STEM = "stem_conv"


def whitening_filters(images_uint8, norm: Normalization, kernel: int = 2, eps: float = 5e-4,
                      max_images: int = 5000, seed: int = 0) -> np.ndarray:
    """Kernel (k, k, 3, 2 * k*k*3) whitening the k x k patches of the (normalized) images."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(images_uint8))[:max_images]
    x = norm.apply_numpy(images_uint8[idx])
    windows = np.lib.stride_tricks.sliding_window_view(x, (kernel, kernel), axis=(1, 2))  # N,H',W',C,k,k
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, kernel * kernel * 3)          # (kh, kw, c) order
    patches = patches - patches.mean(axis=0)
    cov = patches.T @ patches / len(patches)
    eigvals, eigvecs = np.linalg.eigh(cov)
    w = eigvecs / np.sqrt(eigvals + eps)                                                     # columns = filters
    w = np.concatenate([w, -w], axis=1)
    return w.reshape(kernel, kernel, 3, -1).astype(np.float32)


def whiten_stem(model, images_uint8, norm: Normalization, seed: int = 0) -> bool:
    """Set and freeze the stem's filters; returns False (and changes nothing) when the model
    has no matching 2x2 stem."""
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
    layer.trainable = False
    return True
