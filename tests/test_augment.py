"""Augmentation: shapes kept, each switch does what it says, seeded and label-consistent."""
from __future__ import annotations

import numpy as np
import pytest

from cifar_edge._tf import tf
from cifar_edge.data import AugmentConfig, Normalization, make_dataset
from cifar_edge.data.augment import augment_batch
from cifar_edge.errors import CifarEdgeError

OFF = dict(flip_h=False, translate=0)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32"))
    labels = tf.one_hot(np.arange(8) % 4, 4)
    return images, labels


def run(images, labels, seed=(1, 2), **cfg):
    x, y = augment_batch(images, labels, AugmentConfig(**{**OFF, **cfg}), tf.constant(seed, tf.int64))
    return x.numpy(), y.numpy()


def test_flip_h_mirrors_or_keeps_each_image(batch):
    x, _ = run(*batch, flip_h=True)
    src = batch[0].numpy()
    flipped = [np.array_equal(x[i], src[i, :, ::-1]) for i in range(8)]
    kept = [np.array_equal(x[i], src[i]) for i in range(8)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_flip_v(batch):
    x, _ = run(*batch, flip_v=True)
    src = batch[0].numpy()
    flipped = [np.array_equal(x[i], src[i, ::-1]) for i in range(8)]
    kept = [np.array_equal(x[i], src[i]) for i in range(8)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_translate_shifts_by_whole_pixels(batch):
    x, _ = run(*batch, translate=2)
    src = batch[0].numpy()
    shifts = []
    for i in range(8):  # the interior must equal the source shifted by some (dy, dx) in [-2, 2]
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if np.array_equal(x[i, 4:-4, 4:-4], src[i, 4 + dy:28 + dy, 4 + dx:28 + dx])]
        assert found, i
        shifts.append(found[0])
    assert len(set(shifts)) > 1 and any(s != (0, 0) for s in shifts)


def _disk(radius=8.0):
    yy, xx = np.mgrid[0:32, 0:32]
    disk = (((yy - 15.5) ** 2 + (xx - 15.5) ** 2) < radius ** 2).astype("float32") * 255
    return tf.constant(np.repeat(np.repeat(disk[None, ..., None], 3, -1), 8, 0)), tf.one_hot(np.zeros(8), 2)


def test_rotation_turns_about_the_centre():
    images, labels = _disk()
    x, _ = run(images, labels, rotation=40)
    # A centred disk is rotation-invariant: any angle about the centre leaves it in place.
    np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), images.numpy().mean(), rtol=0.03)
    assert np.abs(x - images.numpy()).mean() < 4.0


def test_zoom_scales_about_the_centre():
    images, labels = _disk()
    x, _ = run(images, labels, zoom=0.3)
    area = (x[..., 0] > 127).sum(axis=(1, 2)) / (images.numpy()[0, ..., 0] > 127).sum()
    assert ((area > 0.45) & (area < 1.75)).all() and area.std() > 0.02   # scaled by (1 +- 0.3)^2
    yy, xx = np.mgrid[0:32, 0:32]
    for img in x[..., 0] > 127:                                         # still centred
        assert abs(yy[img].mean() - 15.5) < 0.6 and abs(xx[img].mean() - 15.5) < 0.6


def test_cutout_erases_a_square(batch):
    x, _ = run(*batch, cutout=8)
    zeros = (x == 0).all(axis=-1).sum(axis=(1, 2))
    assert zeros.max() <= 64 and zeros.min() > 0


def test_mixup_and_cutmix_mix_labels_consistently(batch):
    _, y = run(*batch, mixup=0.4)
    np.testing.assert_allclose(y.sum(1), 1, rtol=1e-5)
    assert (y.max(1) < 1).any()
    x, y = run(*batch, cutmix=1.0)
    np.testing.assert_allclose(y.sum(1), 1, rtol=1e-5)
    src = batch[0].numpy()
    changed = (x != src).any(-1).mean(axis=(1, 2))                   # pasted area fraction
    own = y[np.arange(8), np.arange(8) % 4]
    # Images pasted with another class lose exactly that area from their own label.
    other = (y > 0).sum(1) > 1
    assert other.any()
    np.testing.assert_allclose(1 - own[other], changed[other], atol=1e-5)


def test_everything_on_keeps_shapes_and_is_seeded(batch):
    cfg = dict(flip_h=True, flip_v=True, translate=4, rotation=15, zoom=0.1, contrast=0.2, cutout=6, mixup=0.2, cutmix=0.5)
    a = run(*batch, seed=(3, 4), **cfg)
    b = run(*batch, seed=(3, 4), **cfg)
    c = run(*batch, seed=(5, 6), **cfg)
    assert a[0].shape == (8, 32, 32, 3) and a[1].shape == (8, 4)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    assert np.isfinite(a[0]).all()


def test_pipeline_normalizes_resizes_and_one_hots():
    x = np.full((10, 32, 32, 3), 100, np.uint8)
    y = np.arange(10) % 3
    norm = Normalization((100.0, 100.0, 100.0), (2.0, 2.0, 2.0))
    ds = make_dataset(x, y, 3, 4, norm, training=True, augment=AugmentConfig(), image_size=48, seed=0)
    images, labels = next(iter(ds))
    assert images.shape == (4, 48, 48, 3) and labels.shape == (4, 3)
    np.testing.assert_allclose(images.numpy(), 0.0, atol=1e-5)
    assert sum(int(b[0].shape[0]) for b in ds) == 10                 # nothing dropped


def test_bad_augment_values():
    with pytest.raises(CifarEdgeError, match="zoom must be < 1"):
        AugmentConfig(zoom=1.5).validate()
    with pytest.raises(CifarEdgeError, match="'cutout' must be >= 0"):
        AugmentConfig(cutout=-1).validate()
