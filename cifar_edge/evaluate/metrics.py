"""Predictions and classification metrics, in plain numpy (no scikit-learn on the target).

Metrics take softmax probabilities, not logits, so that ``loss`` is a real cross-entropy and
``top5`` ties behave the same for every model family.
"""
from __future__ import annotations

import numpy as np

from .._tf import tf
from ..data.pipeline import Normalization, prepare_images
from ..errors import CifarEdgeError

_EPS = 1e-7  # same clip as Keras' cross-entropy, so our loss matches the training log


def model_image_size(model) -> int | None:
    """Square input resolution the model was built for, or None if it takes any size."""
    shape = model.input_shape
    if isinstance(shape, list):
        shape = shape[0]
    h, w = shape[1], shape[2]
    return int(h) if h is not None and h == w else None


def predict_logits(model, images_uint8, norm: Normalization, image_size: int | None = None,
                   batch_size: int = 256) -> np.ndarray:
    """Run the model on uint8 images in batches and return its raw float32 outputs.

    Calls the model directly (not ``model.predict``) because that is several times faster
    for small CPU models; normalization and resizing are the training pipeline's own.
    ``image_size=None`` resizes to the model's input size when the images differ.
    """
    images = np.asarray(images_uint8)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise CifarEdgeError(f"expected images shaped (N, H, W, 3); got {images.shape}. "
                             "Pass a batch of RGB images")
    if image_size is None:
        size = model_image_size(model)
        if size is not None and images.shape[1:3] != (size, size):
            image_size = size
    if batch_size < 1:
        raise CifarEdgeError(f"batch_size must be >= 1; got {batch_size}")
    outputs = []
    for start in range(0, len(images), batch_size):
        x = prepare_images(images[start:start + batch_size], norm, image_size)
        outputs.append(np.asarray(model(tf.constant(x), training=False), np.float32))
    if not outputs:
        return np.zeros((0, int(model.output_shape[-1])), np.float32)
    return np.concatenate(outputs, axis=0)


def predict_probabilities(model, images_uint8, norm: Normalization, image_size: int | None = None) -> np.ndarray:
    """Softmax outputs of ``predict_logits`` (models that end in a softmax pass through)."""
    return to_probabilities(predict_logits(model, images_uint8, norm, image_size=image_size))


def softmax(logits) -> np.ndarray:
    """Numerically stable softmax over the last axis (float32)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def is_probabilities(outputs, atol: float = 1e-3) -> bool:
    """True if every row is already a probability distribution (model ends in softmax)."""
    p = np.asarray(outputs, np.float64)
    return bool(p.size == 0 or ((p >= -atol).all() and (p <= 1 + atol).all()
                                and np.allclose(p.sum(axis=-1), 1.0, atol=atol)))


def to_probabilities(outputs) -> np.ndarray:
    """Model outputs -> probabilities: our models emit logits, imported ones may emit softmax."""
    return np.asarray(outputs, np.float32) if is_probabilities(outputs) else softmax(outputs)


def _check_inputs(probs, labels, class_names):
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels).reshape(-1)
    if probs.ndim != 2:
        raise CifarEdgeError(f"probabilities must be shaped (N, classes); got {probs.shape}")
    n, c = probs.shape
    if n == 0:
        raise CifarEdgeError("no examples to evaluate; pass at least one image")
    if len(labels) != n:
        raise CifarEdgeError(f"{n} predictions but {len(labels)} labels; pass one label per image")
    if len(class_names) != c:
        raise CifarEdgeError(f"the model has {c} outputs but {len(class_names)} class names were given; "
                             "use the class names of the dataset the model was trained on")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.mod(labels, 1) == 0):
            raise CifarEdgeError("labels must be integer class indices (not one-hot or names)")
        labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= c:
        raise CifarEdgeError(f"labels must be in 0..{c - 1}; found {labels.min()}..{labels.max()}")
    if not is_probabilities(probs):
        raise CifarEdgeError("classification_metrics needs probabilities (rows summing to 1); "
                             "convert logits with softmax() first")
    return probs, labels.astype(np.int64)


def confusion_matrix(labels, preds, num_classes: int) -> np.ndarray:
    """C x C counts, rows = true class, columns = predicted class."""
    idx = np.asarray(labels, np.int64) * num_classes + np.asarray(preds, np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(num, den):
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def classification_metrics(probs, labels, class_names, fine_to_coarse=None, coarse_names=None) -> dict:
    """Accuracy, loss and per-class scores for one split, as JSON-ready Python types.

    top-k counts a hit when fewer than k classes score strictly higher than the true one
    (ties resolved in the model's favour, as ``tf.math.in_top_k``), with k = min(5, C).
    Precision/recall/F1 of a class that is never predicted/present are 0, and ``macro_f1``
    averages over classes that occur in the labels or predictions (as scikit-learn does).
    """
    probs, labels = _check_inputs(probs, labels, class_names)
    n, c = probs.shape
    preds = probs.argmax(axis=1)
    p_true = probs[np.arange(n), labels]
    rank = (probs > p_true[:, None]).sum(axis=1)  # classes scoring above the true one
    k = min(5, c)

    cm = confusion_matrix(labels, preds, c)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = (support > 0) | (predicted > 0)

    per_class = [{"name": str(class_names[i]), "precision": float(precision[i]), "recall": float(recall[i]),
                  "f1": float(f1[i]), "support": int(support[i])} for i in range(c)]
    # Rank only classes that occur in the labels: recall of an absent class means nothing.
    ranked = sorted((i for i in range(c) if support[i] > 0), key=lambda i: (-recall[i], i))
    top = min(5, len(ranked))
    out = {
        "n": int(n),
        "top1": float((preds == labels).mean()),
        "top5": float((rank < k).mean()),
        "top5_k": k,
        "loss": float(-np.log(np.clip(p_true, _EPS, 1.0)).mean()),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": per_class,
        "confusion": cm.tolist(),
        "best_classes": [{"name": str(class_names[i]), "accuracy": float(recall[i])} for i in ranked[:top]],
        "worst_classes": [{"name": str(class_names[i]), "accuracy": float(recall[i])}
                          for i in reversed(ranked[len(ranked) - top:])],
    }
    if fine_to_coarse is not None:
        out.update(superclass_metrics(preds, labels, fine_to_coarse, coarse_names, c))
    return out


def superclass_metrics(preds, labels, fine_to_coarse, coarse_names, num_classes: int) -> dict:
    """Accuracy after mapping fine classes to superclasses (CIFAR-100's 20 coarse labels):
    a 'wrong but close' prediction (maple vs oak) still counts here."""
    f2c = np.asarray(fine_to_coarse, np.int64).reshape(-1)
    if len(f2c) != num_classes:
        raise CifarEdgeError(f"fine_to_coarse maps {len(f2c)} classes but the model has {num_classes}; "
                             "pass one superclass index per fine class")
    if f2c.min() < 0:
        raise CifarEdgeError("fine_to_coarse has negative superclass indices; use 0-based indices")
    n_coarse = int(f2c.max()) + 1
    if coarse_names is None:
        coarse_names = [str(i) for i in range(n_coarse)]
    elif len(coarse_names) < n_coarse:
        raise CifarEdgeError(f"fine_to_coarse uses {n_coarse} superclasses but only {len(coarse_names)} "
                             "coarse names were given")
    true_c, pred_c = f2c[labels], f2c[preds]
    hit = true_c == pred_c
    support = np.bincount(true_c, minlength=len(coarse_names))
    correct = np.bincount(true_c, weights=hit, minlength=len(coarse_names))
    acc = _ratio(correct, support)
    return {
        "superclass_top1": float(hit.mean()),
        "per_superclass": [{"name": str(coarse_names[j]), "accuracy": float(acc[j]), "support": int(support[j])}
                           for j in range(len(coarse_names))],
    }
