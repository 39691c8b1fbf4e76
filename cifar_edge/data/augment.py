"""Batch-level data augmentation in TensorFlow.

Everything works on whole batches (one fused projective transform for flips, shifts,
rotation and zoom) because per-image ops in tf.data cost more CPU than the model on a
2-core machine.  Images are float32 NHWC; labels are one-hot float32 (MixUp/CutMix mix
them).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .._tf import tf


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run, and how strong.  Zero/False switches one off."""

    flip_h: bool = True
    flip_v: bool = False
    translate: int = 2          # pad-and-random-crop, in pixels (reflect padding)
    rotation: float = 0.0       # max degrees
    zoom: float = 0.0           # max relative zoom in/out, e.g. 0.1
    contrast: float = 0.0       # max relative contrast change, e.g. 0.2
    cutout: int = 0             # side of the erased square, pixels
    mixup: float = 0.0          # Beta(alpha, alpha); 0 = off
    cutmix: float = 0.0         # Beta(alpha, alpha); 0 = off

    def to_dict(self):
        return asdict(self)

    @classmethod
    def none(cls):
        return cls(flip_h=False, translate=0)

    def validate(self):
        from ..errors import CifarEdgeError
        for name in ("translate", "rotation", "zoom", "contrast", "cutout", "mixup", "cutmix"):
            if getattr(self, name) < 0:
                raise CifarEdgeError(f"augmentation '{name}' must be >= 0; got {getattr(self, name)}")
        if self.zoom >= 1:
            raise CifarEdgeError(f"zoom must be < 1 (a fraction of the image); got {self.zoom}")
        return self


def _geometric(images, cfg: AugmentConfig, seed, flips=None):
    """One projective transform per image: flips, translation, rotation and zoom together.
    ``flips`` (bool per image) decides the horizontal mirror instead of chance."""
    n = tf.shape(images)[0]
    h = tf.cast(tf.shape(images)[1], tf.float32)
    w = tf.cast(tf.shape(images)[2], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 6)

    def uniform(i, lo, hi):
        return tf.random.stateless_uniform([n], seeds[i], lo, hi)

    sx = tf.ones([n])
    sy = tf.ones([n])
    if cfg.flip_h:
        sx = tf.where(uniform(0, 0.0, 1.0) < 0.5 if flips is None else flips, -1.0, 1.0)
    if cfg.flip_v:
        sy = tf.where(uniform(1, 0.0, 1.0) < 0.5, -1.0, 1.0)
    theta = uniform(2, -1.0, 1.0) * (cfg.rotation * math.pi / 180.0) if cfg.rotation else tf.zeros([n])
    scale = uniform(3, 1.0 - cfg.zoom, 1.0 + cfg.zoom) if cfg.zoom else tf.ones([n])
    if cfg.translate:
        t = float(cfg.translate)
        dx = tf.round(uniform(4, -t - 0.5, t + 0.5))
        dy = tf.round(uniform(5, -t - 0.5, t + 0.5))
    else:
        dx = dy = tf.zeros([n])
    # Output pixel (x, y) samples the input at A @ ((x, y) - c) + c + d, with A = R(theta) S / zoom.
    cos, sin = tf.cos(theta) / scale, tf.sin(theta) / scale
    a0, a1 = cos * sx, -sin * sy
    b0, b1 = sin * sx, cos * sy
    cx, cy = (w - 1) / 2, (h - 1) / 2
    a2 = cx - a0 * cx - a1 * cy + dx
    b2 = cy - b0 * cx - b1 * cy + dy
    zeros = tf.zeros([n])
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    smooth = bool(cfg.rotation or cfg.zoom)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="BILINEAR" if smooth else "NEAREST", fill_mode="REFLECT")


def _contrast(images, strength, seed):
    n = tf.shape(images)[0]
    factor = tf.random.stateless_uniform([n, 1, 1, 1], seed, 1 - strength, 1 + strength)
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return (images - mean) * factor + mean


def _box_masks(n, h, w, box_h, box_w, seed):
    """Per-image boolean masks (n, h, w, 1) of one box of the given size (clipped at edges)."""
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    cy = tf.random.stateless_uniform([n, 1, 1], s1, 0, tf.cast(h, tf.float32))
    cx = tf.random.stateless_uniform([n, 1, 1], s2, 0, tf.cast(w, tf.float32))
    ys = tf.cast(tf.range(h), tf.float32)[None, :, None]
    xs = tf.cast(tf.range(w), tf.float32)[None, None, :]
    inside = ((tf.abs(ys - cy) < box_h / 2) & (tf.abs(xs - cx) < box_w / 2))
    return inside[..., None]


def _cutout(images, size, seed):
    n, h, w = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    mask = _box_masks(n, h, w, float(size), float(size), seed)
    return tf.where(mask, tf.zeros_like(images), images)


def _beta(seed, n, alpha):
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    g1 = tf.random.stateless_gamma([n], s1, alpha)
    g2 = tf.random.stateless_gamma([n], s2, alpha)
    total = g1 + g2
    # Both gammas can underflow to 0 for small alpha: call that an even mix, not NaN.
    return tf.where(total > 0, tf.math.divide_no_nan(g1, total), 0.5)


def _mixup(images, labels, alpha, seed):
    n = tf.shape(images)[0]
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    lam = _beta(s1, n, alpha)
    perm = tf.random.experimental.stateless_shuffle(tf.range(n), s2)
    lam_img = lam[:, None, None, None]
    images = lam_img * images + (1 - lam_img) * tf.gather(images, perm)
    labels = lam[:, None] * labels + (1 - lam[:, None]) * tf.gather(labels, perm)
    return images, labels


def _cutmix(images, labels, alpha, seed):
    n, h, w = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    s1, s2, s3 = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    lam = _beta(s1, n, alpha)
    side = tf.sqrt(1.0 - lam)
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    mask = _box_masks(n, h, w, (side * hf)[:, None, None], (side * wf)[:, None, None], s2)
    perm = tf.random.experimental.stateless_shuffle(tf.range(n), s3)
    images = tf.where(mask, tf.gather(images, perm), images)
    area = tf.reduce_mean(tf.cast(mask, tf.float32), axis=[1, 2, 3])  # actual pasted fraction
    labels = (1 - area)[:, None] * labels + area[:, None] * tf.gather(labels, perm)
    return images, labels


def augment_batch(images, labels, cfg: AugmentConfig, seed, flips=None):
    """Augment one batch.  ``seed`` is a stateless seed (shape [2]) unique to the batch;
    ``flips`` (bool per image, optional) chooses which images are mirrored."""
    seeds = tf.random.experimental.stateless_split(seed, 5)
    if cfg.flip_h or cfg.flip_v or cfg.translate or cfg.rotation or cfg.zoom:
        images = _geometric(images, cfg, seeds[0], flips)
    if cfg.contrast:
        images = _contrast(images, cfg.contrast, seeds[1])
    if cfg.cutout:
        images = _cutout(images, cfg.cutout, seeds[2])
    if cfg.mixup:
        images, labels = _mixup(images, labels, cfg.mixup, seeds[3])
    if cfg.cutmix:
        images, labels = _cutmix(images, labels, cfg.cutmix, seeds[4])
    return images, labels
