"""Test-time augmentation: airbench94's 6-view TTA (Keller Jordan's airbench, ``tta_level=2``).

airbench scores each test image as

    0.5 * mirror_avg(x) + 0.5 * mean(mirror_avg(crop_a), mirror_avg(crop_b))
    mirror_avg(v) = 0.5 * net(v) + 0.5 * net(flip_lr(v))

where ``crop_a`` / ``crop_b`` are the image reflect-padded by 1 pixel and cropped back to its
own size at offsets (0, 0) and (2, 2), i.e. translated by one pixel down-right / up-left.
That is 6 views: image and mirror with weight 1/4 each, the 4 translated views 1/8 each.

Like airbench we average the model's raw outputs, which for our models are logits, and only
then take the softmax.  A model that already ends in a softmax (an imported one) has its
probabilities averaged instead; either way the result is a probability distribution per row.
"""
from __future__ import annotations

import numpy as np

from ..data.pipeline import Normalization
from ..errors import CifarEdgeError
from .metrics import predict_logits, to_probabilities

TTA_VIEWS = 6


def tta_views(images_uint8) -> list[tuple[float, np.ndarray]]:
    """The 6 airbench views of a uint8 NHWC batch, as ``[(weight, images), ...]``.

    Order: image, mirror (width axis reversed), the image translated by +1 px (reflect-pad 1,
    crop at (0, 0)) and its mirror, translated by -1 px (crop at (2, 2)) and its mirror.
    Weights 1/4, 1/4, 1/8, 1/8, 1/8, 1/8 (they sum to 1).  Every view has the input's shape
    and dtype and is C-contiguous.  Reflect padding mirrors about the edge pixel (numpy's
    ``"reflect"``, as PyTorch's ``F.pad(..., mode="reflect")`` that airbench uses).
    """
    images = np.asarray(images_uint8)
    if images.ndim != 4:
        raise CifarEdgeError(f"expected images shaped (N, H, W, C); got {images.shape}. Pass a batch of images")
    n, h, w, _ = images.shape
    if h < 2 or w < 2:
        raise CifarEdgeError(f"TTA needs images of at least 2x2 pixels to reflect-pad; got {h}x{w}")
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    plus = padded[:, 0:h, 0:w]          # content moves down-right by one pixel
    minus = padded[:, 2:h + 2, 2:w + 2]  # content moves up-left by one pixel

    def mirror(x):
        return np.ascontiguousarray(x[:, :, ::-1])

    return [(0.25, np.ascontiguousarray(images)), (0.25, mirror(images)),
            (0.125, np.ascontiguousarray(plus)), (0.125, mirror(plus)),
            (0.125, np.ascontiguousarray(minus)), (0.125, mirror(minus))]


def tta_probabilities(model, images_uint8, norm: Normalization, image_size: int | None = None,
                      plain_outputs=None) -> np.ndarray:
    """Class probabilities (N, classes) of ``model`` under airbench's 6-view TTA.

    The weighted average of the model's raw outputs over ``tta_views`` (logits for our models,
    as airbench; probabilities for a model that ends in a softmax), converted to probabilities
    with ``to_probabilities``.  Views are built at the images' own resolution and then
    normalized/resized exactly as ``predict_logits`` does.  Costs 6 forward passes, or 5 when
    the caller already has the plain view's ``predict_logits`` (``plain_outputs``).
    """
    total = None
    for i, (weight, view) in enumerate(tta_views(images_uint8)):
        raw = plain_outputs if i == 0 and plain_outputs is not None else \
            predict_logits(model, view, norm, image_size=image_size)
        out = weight * np.asarray(raw, np.float64)
        total = out if total is None else total + out
    return to_probabilities(total.astype(np.float32))
