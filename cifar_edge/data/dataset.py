"""The in-memory dataset every source loads into, and the checks that make bad input a
clear error instead of a shape mismatch deep inside TensorFlow."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import CifarEdgeError


@dataclass
class Dataset:
    """uint8 NHWC RGB images with integer labels; the test split may be absent."""

    name: str
    source: str                      # where it came from, shown to the user
    x_train: np.ndarray
    y_train: np.ndarray
    class_names: list
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    synthetic: bool = False
    coarse_names: list | None = None          # CIFAR-100 superclasses
    fine_to_coarse: np.ndarray | None = None  # class index -> superclass index
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self):
        return tuple(self.x_train.shape[1:])

    def with_coarse_labels(self) -> "Dataset":
        """The same images labelled by superclass (CIFAR-100 'coarse' label mode)."""
        if self.fine_to_coarse is None or self.coarse_names is None:
            raise CifarEdgeError(f"{self.name} has no superclass labels; use --labels fine")
        f2c = np.asarray(self.fine_to_coarse)
        return replace(self, name=f"{self.name}-coarse", y_train=f2c[self.y_train],
                       y_test=None if self.y_test is None else f2c[self.y_test],
                       class_names=list(self.coarse_names), coarse_names=None, fine_to_coarse=None)

    def summary(self) -> dict:
        counts = np.bincount(self.y_train, minlength=self.num_classes)
        return {
            "name": self.name, "source": self.source, "synthetic": self.synthetic,
            "train": int(len(self.x_train)), "test": 0 if self.x_test is None else int(len(self.x_test)),
            "image_shape": list(self.image_shape), "classes": self.num_classes,
            "per_class_train_min": int(counts.min()), "per_class_train_max": int(counts.max()),
            "superclasses": None if self.coarse_names is None else len(self.coarse_names),
        }


def as_images(x, what: str) -> np.ndarray:
    """Coerce an image array to uint8 NHWC RGB, or raise an error that says how to fix it."""
    x = np.asarray(x)
    if x.ndim == 3:                                   # grayscale N,H,W
        x = np.repeat(x[..., None], 3, axis=-1)
    if x.ndim == 2 and x.shape[1] % 3 == 0 and round((x.shape[1] // 3) ** 0.5) ** 2 * 3 == x.shape[1]:
        side = round((x.shape[1] // 3) ** 0.5)        # official flat rows: 3072 = 3x32x32 planes
        x = x.reshape(-1, 3, side, side).transpose(0, 2, 3, 1)
    if x.ndim != 4:
        raise CifarEdgeError(f"{what}: expected images shaped (N, H, W, 3); got {x.shape}. "
                             "Save images as an N x H x W x 3 uint8 array")
    if x.shape[-1] not in (1, 3) and x.shape[1] in (1, 3):
        x = x.transpose(0, 2, 3, 1)                   # NCHW -> NHWC
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if x.shape[-1] != 3:
        raise CifarEdgeError(f"{what}: expected 3 colour channels; got shape {x.shape}. "
                             "Save images as an N x H x W x 3 uint8 array")
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.number):
            raise CifarEdgeError(f"{what}: images must be numeric; got dtype {x.dtype}")
        if not np.isfinite(x).all():
            raise CifarEdgeError(f"{what}: images contain NaN or infinite values; clean the data")
        hi = float(x.max()) if x.size else 0.0
        lo = float(x.min()) if x.size else 0.0
        if lo < 0 or hi > 255:
            raise CifarEdgeError(f"{what}: pixel values span [{lo:g}, {hi:g}]; expected 0..255 "
                                 "(or 0..1 floats). Rescale the images")
        x = np.round(x * 255 if hi <= 1.0 else x).astype(np.uint8)
    return np.ascontiguousarray(x)


def as_labels(y, n_images: int, num_classes: int | None, what: str) -> np.ndarray:
    """Coerce labels to int64 of shape (N,), checking count and range."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise CifarEdgeError(f"{what}: expected one integer label per image, shape (N,); got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise CifarEdgeError(f"{what}: labels must be integers 0..C-1; got dtype {y.dtype}")
    if len(y) != n_images:
        raise CifarEdgeError(f"{what}: {n_images} images but {len(y)} labels; they must match one to one")
    if len(y) and y.min() < 0:
        raise CifarEdgeError(f"{what}: negative label {int(y.min())}; labels must be 0..C-1")
    if num_classes is not None and len(y) and y.max() >= num_classes:
        raise CifarEdgeError(f"{what}: label {int(y.max())} is out of range for {num_classes} classes; "
                             f"labels must be 0..{num_classes - 1} (or supply matching class names)")
    return y.astype(np.int64)
