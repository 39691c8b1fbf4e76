"""Seeded stratified splits: train/validation and K-fold, so every class is represented
in the same proportion in each part."""
from __future__ import annotations

import numpy as np

from ..errors import CifarEdgeError


def stratified_split(labels, fraction: float, seed: int = 0):
    """Indices (train, held_out) with ``fraction`` of each class held out."""
    if not 0 <= fraction < 1:
        raise CifarEdgeError(f"validation fraction must be in [0, 1); got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(idx) * fraction))
        if fraction > 0 and k == 0 and len(idx) > 1:
            k = 1
        held.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def stratified_subset(labels, n: int, seed: int = 0):
    """Sorted indices of about ``n`` samples, every class kept in proportion (at least one each)."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if n < len(classes):
        raise CifarEdgeError(f"--limit {n} is smaller than the {len(classes)} classes; use at least {len(classes)}")
    rng = np.random.default_rng(seed)
    take = np.maximum(1, np.round(counts * n / len(labels)).astype(int))
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked))


def stratified_kfold(labels, k: int, seed: int = 0):
    """List of ``k`` (train, val) index pairs; each sample is in exactly one val fold."""
    labels = np.asarray(labels)
    if k < 2:
        raise CifarEdgeError(f"--kfold needs at least 2 folds; got {k}")
    counts = np.bincount(labels)
    if counts[counts > 0].min() < k:
        raise CifarEdgeError(f"--kfold {k}: the smallest class has only {counts[counts > 0].min()} images; "
                             "use fewer folds")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), np.int64)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        fold_of[idx] = (np.arange(len(idx)) + rng.integers(k)) % k
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(k)]


def limit_images(x, y, limit: int | None, seed: int = 0):
    """``limit`` images kept stratified (all when ``limit`` is None or not smaller)."""
    if limit and limit < len(y):
        keep = stratified_subset(y, limit, seed)
        return x[keep], y[keep]
    return x, y


def train_val(x, y, fraction: float, seed: int = 0):
    """(x_train, y_train, x_val, y_val) as training splits them; the val half is None when
    ``fraction`` is 0.  Export and optimize call this too, so they see the same split."""
    if fraction > 0:
        tr, va = stratified_split(y, fraction, seed)
        return x[tr], y[tr], x[va], y[va]
    return x, y, None, None
