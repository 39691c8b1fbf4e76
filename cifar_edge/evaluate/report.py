"""One call that evaluates a model on a split and writes the standard plots and tables.

It returns metrics instead of writing metrics.json, because the caller (training / the CLI)
merges them with its own run metadata into a single file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.pipeline import Normalization
from ..errors import CifarEdgeError
from .metrics import classification_metrics, predict_logits, to_probabilities
from .plots import (plot_confusion, plot_per_class, plot_prediction_grid, plot_training_curves,
                    write_confusion_csv)
from .tta import TTA_VIEWS, tta_probabilities

CONFUSION_CSV = "confusion.csv"


def evaluate_model(model, images_uint8, labels, class_names, norm: Normalization, out_dir,
                   image_size: int | None = None, fine_to_coarse=None, coarse_names=None,
                   history_csv=None, split: str = "test", tta: bool = False) -> dict:
    """Predict, score and plot.  Writes confusion.csv, confusion.png, per_class.png,
    correct_examples.png, wrong_examples.png and (if ``history_csv`` exists) curves.png
    into ``out_dir``; returns the metrics plus ``plots`` ({name: filename}) and ``split``.
    ``tta`` adds ``top1_tta``/``top5_tta``/``loss_tta`` and ``tta_views`` (6): airbench94's
    6-view test-time augmentation, flip x {0, +-1 px translate} (see ``tta.py``); the headline
    figures and plots stay those of the plain model, which is what an app runs."""
    images = np.asarray(images_uint8)
    labels = np.asarray(labels).reshape(-1)
    if len(images) == 0:
        raise CifarEdgeError(f"the {split} split has no images; evaluate on a non-empty split")
    if len(images) != len(labels):
        raise CifarEdgeError(f"{len(images)} images but {len(labels)} labels in the {split} split; "
                             "pass one label per image")
    out_dir = Path(out_dir)
    raw = predict_logits(model, images, norm, image_size=image_size)
    probs = to_probabilities(raw)
    metrics = classification_metrics(probs, labels, class_names, fine_to_coarse, coarse_names)
    if tta:
        # 6-view TTA (airbench94's tta_level 2) costs 6x the inference, so it is reported
        # beside the plain figure, never instead.
        scored = classification_metrics(tta_probabilities(model, images, norm, image_size=image_size,
                                                          plain_outputs=raw), labels, class_names)
        metrics.update({f"{k}_tta": scored[k] for k in ("top1", "top5", "loss")})
        metrics["tta_views"] = TTA_VIEWS
    confusion = np.asarray(metrics["confusion"], np.int64)

    write_confusion_csv(confusion, class_names, out_dir / CONFUSION_CSV)
    plots = {
        "confusion": plot_confusion(confusion, class_names, out_dir / "confusion.png").name,
        "per_class": plot_per_class(metrics["per_class"], out_dir / "per_class.png").name,
        "correct_examples": plot_prediction_grid(images, labels, probs, class_names,
                                                 out_dir / "correct_examples.png", correct=True).name,
        "wrong_examples": plot_prediction_grid(images, labels, probs, class_names,
                                               out_dir / "wrong_examples.png", correct=False).name,
    }
    if history_csv is not None and Path(history_csv).is_file():
        plots["curves"] = plot_training_curves(history_csv, out_dir / "curves.png").name
    return {**metrics, "split": split, "plots": plots}
