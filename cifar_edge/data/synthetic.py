"""A procedural, learnable 32x32 stand-in for CIFAR, for offline smoke runs.

Each class is a shape (disk, square, ring, stripes, ...) and, beyond ten classes, a colour
scheme; position, size, colours and noise vary per image, so a model must learn the shape,
not memorise pixels.  Always labelled synthetic wherever it is shown.
"""
from __future__ import annotations

import numpy as np

from .dataset import Dataset

SHAPES = ("disk", "square", "ring", "cross", "triangle", "hstripes", "vstripes", "diagonal",
          "checker", "dots")
PALETTES = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "purple", "white", "brown")
_RGB = np.array([[220, 40, 40], [40, 200, 60], [50, 80, 230], [230, 220, 40], [220, 50, 220],
                 [40, 220, 220], [250, 140, 20], [130, 40, 200], [240, 240, 240], [140, 90, 40]], np.float32)


def _masks(shape_ids, size, rng):
    n = len(shape_ids)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy = rng.uniform(size * 0.35, size * 0.65, (n, 1, 1))
    cx = rng.uniform(size * 0.35, size * 0.65, (n, 1, 1))
    r = rng.uniform(size * 0.22, size * 0.34, (n, 1, 1))
    dy, dx = yy[None] - cy, xx[None] - cx
    dist = np.sqrt(dy ** 2 + dx ** 2)
    period = rng.uniform(5, 8, (n, 1, 1))
    inside_box = (np.abs(dy) < r) & (np.abs(dx) < r)
    masks = {
        "disk": dist < r,
        "square": (np.abs(dy) < r * 0.8) & (np.abs(dx) < r * 0.8),
        "ring": (dist < r) & (dist > r * 0.55),
        "cross": ((np.abs(dy) < r * 0.3) | (np.abs(dx) < r * 0.3)) & inside_box,
        "triangle": (dy > -r) & (dy < r) & (np.abs(dx) < (dy + r) / 2),
        "hstripes": (np.mod(yy[None], period) < period / 2) & inside_box,
        "vstripes": (np.mod(xx[None], period) < period / 2) & inside_box,
        "diagonal": (np.mod(xx[None] + yy[None], period) < period / 2) & inside_box,
        "checker": ((np.mod(yy[None], period) < period / 2) ^ (np.mod(xx[None], period) < period / 2)) & inside_box,
        "dots": (np.sqrt((dy - r / 2) ** 2 + dx ** 2) < r / 3) | (np.sqrt((dy + r / 2) ** 2 + dx ** 2) < r / 3),
    }
    out = np.zeros((n, size, size), bool)
    for k, name in enumerate(SHAPES):
        sel = shape_ids == k
        out[sel] = masks[name][sel]
    return out


def render(labels, num_classes: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Images (N, size, size, 3) uint8 for the given class labels."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    shape_ids = labels % len(SHAPES)
    mask = _masks(shape_ids, size, rng)
    if num_classes > len(SHAPES):
        fg = _RGB[(labels // len(SHAPES)) % len(PALETTES)]
    else:
        fg = _RGB[rng.integers(0, len(PALETTES), len(labels))]
    fg = np.clip(fg + rng.normal(0, 20, fg.shape), 0, 255)
    bg = rng.uniform(0, 120, (len(labels), 3)).astype(np.float32)
    img = np.where(mask[..., None], fg[:, None, None, :], bg[:, None, None, :])
    img += rng.normal(0, 18, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def class_names(num_classes: int):
    if num_classes <= len(SHAPES):
        return [SHAPES[i] for i in range(num_classes)]
    return [f"{PALETTES[(i // len(SHAPES)) % len(PALETTES)]}_{SHAPES[i % len(SHAPES)]}" for i in range(num_classes)]


def make_synthetic(num_classes: int = 10, n_train: int = 5000, n_test: int | None = None,
                   size: int = 32, seed: int = 0) -> Dataset:
    if not 2 <= num_classes <= len(SHAPES) * len(PALETTES):
        from ..errors import CifarEdgeError
        raise CifarEdgeError(f"synthetic data supports 2..{len(SHAPES) * len(PALETTES)} classes; got {num_classes}")
    n_test = n_test if n_test is not None else max(n_train // 5, num_classes)
    rng = np.random.default_rng(seed)
    y_train = rng.permutation(np.arange(n_train) % num_classes)
    y_test = rng.permutation(np.arange(n_test) % num_classes)
    coarse = None
    if num_classes == 100:  # mimic CIFAR-100's 20 superclasses: 5 classes each
        coarse = ([f"group_{i}" for i in range(20)], np.arange(100) // 5)
    return Dataset(
        name=f"synthetic{num_classes}", source="synthetic (procedural shapes, NOT real CIFAR images)",
        x_train=render(y_train, num_classes, size, seed), y_train=y_train.astype(np.int64),
        x_test=render(y_test, num_classes, size, seed + 1), y_test=y_test.astype(np.int64),
        class_names=class_names(num_classes), synthetic=True,
        coarse_names=None if coarse is None else coarse[0],
        fine_to_coarse=None if coarse is None else coarse[1])
