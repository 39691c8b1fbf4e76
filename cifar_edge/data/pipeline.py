"""tf.data input pipelines: uint8 images in, normalized float32 batches and one-hot labels out.

Normalization belongs to the model family (see the model registry) and is recorded in each
run's config, so exported models can carry it as metadata.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._tf import tf
from .augment import AugmentConfig, augment_batch


@dataclass(frozen=True)
class Normalization:
    """``(pixel - mean) / std`` per channel, with pixels in 0..255."""

    mean: tuple = (0.0, 0.0, 0.0)
    std: tuple = (1.0, 1.0, 1.0)

    def to_dict(self):
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d):
        return cls(tuple(d["mean"]), tuple(d["std"]))

    def apply_numpy(self, images_uint8) -> np.ndarray:
        x = np.asarray(images_uint8, np.float32)
        return (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)


def resize_target(images, size: int | None) -> int | None:
    """``size`` if images (N, H, W, 3) must be resized to size x size, else None."""
    if size is None or tuple(images.shape[1:3]) == (size, size):
        return None
    return int(size)


def _finish(images, image_size, norm: Normalization):
    """float32 images in 0..255 -> resized (if asked) and normalized."""
    if image_size is not None:
        images = tf.image.resize(images, (image_size, image_size), method="bilinear")
    return (images - tf.constant(norm.mean, tf.float32)) / tf.constant(norm.std, tf.float32)


def make_dataset(x, y, num_classes: int, batch_size: int, norm: Normalization, training: bool,
                 augment: AugmentConfig | None = None, image_size: int | None = None,
                 seed: int = 0, drop_remainder: bool = False, epochs: range | None = None,
                 alternate_flip: bool = False) -> tf.data.Dataset:
    """Batches of (normalized images, one-hot labels).

    A training pipeline holds the epochs in ``epochs`` (default: one) back to back; fit it with
    ``steps_per_epoch=batches_per_epoch(...)``.  Each epoch's order and each batch's augmentation
    are functions of (seed, epoch) alone, not of how many epochs this process has run, so a run
    resumed at epoch k sees exactly the batches the uninterrupted run saw.  Resizing to
    ``image_size`` (for models that want larger inputs) happens after augmentation.

    ``alternate_flip`` (with ``augment.flip_h``): a random half of the images is mirrored in
    even epochs and the other half in odd ones, so every image is seen both ways every two
    epochs (airbench's alternating flip) instead of by chance.
    """
    image_size = resize_target(x, image_size)
    aug = augment if (training and augment is not None) else None

    def prep(images, labels, batch_seed=None, flips=None):
        images = tf.cast(images, tf.float32)
        onehot = tf.one_hot(labels, num_classes)
        if aug is not None:
            images, onehot = augment_batch(images, onehot, aug, batch_seed, flips)
        return _finish(images, image_size, norm), onehot

    if not training:
        ds = tf.data.Dataset.from_tensor_slices((x, np.asarray(y, np.int32))).batch(batch_size, drop_remainder)
        return ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
    images, labels = tf.constant(x), tf.constant(np.asarray(y, np.int32))
    n, steps = len(x), batches_per_epoch(len(x), batch_size, drop_remainder)
    epochs = range(1) if epochs is None else epochs

    alternate = bool(alternate_flip and aug is not None and aug.flip_h)
    if alternate:       # which images are mirrored in even epochs
        first_flip = tf.random.stateless_uniform([n], tf.constant([seed + 2, 0], tf.int64)) < 0.5

    def one_epoch(epoch):
        order = tf.random.experimental.stateless_shuffle(tf.range(n), tf.stack([tf.constant(seed, tf.int64), epoch]))
        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder).enumerate()
        return batches.map(lambda b, idx: (idx, tf.stack([tf.constant(seed + 1, tf.int64), epoch * steps + b]), epoch))

    def gather(idx, batch_seed, epoch):
        flips = tf.not_equal(tf.gather(first_flip, idx), tf.equal(epoch % 2, 1)) if alternate else None
        return prep(tf.gather(images, idx), tf.gather(labels, idx), batch_seed, flips)

    ds = tf.data.Dataset.range(epochs.start, epochs.stop).flat_map(one_epoch)
    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def batches_per_epoch(n: int, batch_size: int, drop_remainder: bool = False) -> int:
    return n // batch_size if drop_remainder else math.ceil(n / batch_size)


def prepare_images(images_uint8, norm: Normalization, image_size: int | None = None):
    """Normalize (and resize) a numpy batch for inference, exactly as the pipeline does."""
    images = tf.convert_to_tensor(images_uint8)
    return _finish(tf.cast(images, tf.float32), resize_target(images, image_size), norm).numpy()
