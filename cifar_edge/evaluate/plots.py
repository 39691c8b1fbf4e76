"""Evaluation figures and tables.  Each function writes one file atomically and returns its Path.

Figures are built as bare ``Figure`` objects (not pyplot) so nothing lingers in pyplot's
global registry when a long session evaluates many models.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..errors import CifarEdgeError  # noqa: E402
from ..fileio import atomic_path, write_csv  # noqa: E402

_MAX_TICK_LABELS = 20   # beyond this, class names on the axes are an unreadable smear
_MAX_CELL_COUNTS = 12   # write counts into confusion cells only when they fit


def _save(fig: Figure, path, tight: bool = True) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight" if tight else None)
    return path


def plot_confusion(confusion, class_names, path) -> Path:
    """Confusion matrix coloured by row fraction (recall), so rare classes are as visible as
    common ones; cell counts are printed for small class counts."""
    cm = np.asarray(confusion, np.int64)
    c = cm.shape[0]
    if cm.shape != (c, c) or len(class_names) != c:
        raise CifarEdgeError(f"confusion must be {len(class_names)}x{len(class_names)} (one row per class name); "
                             f"got {cm.shape}")
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, np.float64), where=rows > 0)
    acc = np.trace(cm) / max(cm.sum(), 1)

    side = 6 if c <= 20 else 9
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_title(f"Confusion matrix — accuracy {acc:.1%} (n={int(cm.sum())})")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if c <= _MAX_TICK_LABELS:
        ax.set_xticks(range(c), [str(n) for n in class_names], rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(c), [str(n) for n in class_names], fontsize=8)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if c <= _MAX_CELL_COUNTS:
        for i in range(c):
            for j in range(c):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if frac[i, j] > 0.5 else "black")
    return _save(fig, path)


def write_confusion_csv(confusion, class_names, path) -> Path:
    """Counts with class names on both axes (rows = true), for spreadsheets."""
    cm = np.asarray(confusion, np.int64)
    if cm.shape != (len(class_names), len(class_names)):
        raise CifarEdgeError(f"confusion must be {len(class_names)}x{len(class_names)}; got {cm.shape}")
    names = [str(n) for n in class_names]
    write_csv(path, ["true\\predicted", *names], [[name, *map(int, row)] for name, row in zip(names, cm)])
    return Path(path)


def plot_prediction_grid(images_uint8, labels, probs, class_names, path, correct: bool = True,
                         n: int = 16) -> Path:
    """The ``n`` most confident correct (or wrong) predictions: confident mistakes are the
    ones most worth looking at (label noise, look-alike classes)."""
    images = np.asarray(images_uint8)
    labels = np.asarray(labels).reshape(-1)
    probs = np.asarray(probs)
    preds = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    pool = np.flatnonzero((preds == labels) == bool(correct))
    chosen = pool[np.argsort(-conf[pool], kind="stable")][:max(int(n), 0)]
    kind = "correct" if correct else "wrong"

    if len(chosen) == 0:
        fig = Figure(figsize=(4, 2))
        fig.text(0.5, 0.5, f"no {kind} predictions", ha="center", va="center", fontsize=12)
        return _save(fig, path, tight=False)

    cols = min(len(chosen), max(1, math.ceil(math.sqrt(n))))
    rows = math.ceil(len(chosen) / cols)
    fig = Figure(figsize=(1.9 * cols, 2.1 * rows + 0.4))
    fig.suptitle(f"Most confident {kind} predictions ({len(chosen)} of {len(pool)})", fontsize=10)
    for k, i in enumerate(chosen):
        ax = fig.add_subplot(rows, cols, k + 1)
        img = images[i]
        ax.imshow(img.squeeze(-1) if img.ndim == 3 and img.shape[-1] == 1 else img,
                  cmap="gray" if img.ndim == 2 or img.shape[-1] == 1 else None, interpolation="nearest")
        title = f"{class_names[preds[i]]} ({conf[i]:.0%})"
        if not correct:
            title += f"\ntrue: {class_names[labels[i]]}"
        ax.set_title(title, fontsize=7, color="black" if correct else "firebrick")
        ax.axis("off")
    return _save(fig, path)


_CURVE_PANELS = (
    ("loss", ("loss",)),
    ("accuracy", ("accuracy", "top5")),
    ("learning rate", ("lr", "learning_rate")),
)


def read_history(history_csv_path) -> dict[str, np.ndarray]:
    """Columns of a Keras CSVLogger-style history as float arrays (blank cells -> NaN)."""
    path = Path(history_csv_path)
    if not path.is_file():
        raise CifarEdgeError(f"training history '{path}' not found; pass the history.csv written by training")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        rows = list(reader)

    def num(v):
        try:
            return float(v)
        except (TypeError, ValueError):
            return math.nan

    return {k: np.array([num(r.get(k)) for r in rows], np.float64) for k in fields}


def plot_training_curves(history_csv_path, path) -> Path:
    """Loss, accuracy (and top-5) and learning rate per epoch, train solid / validation dashed."""
    hist = read_history(history_csv_path)
    known = {name for _, names in _CURVE_PANELS for name in names}
    if not any(k in known or k.removeprefix("val_") in known for k in hist):
        raise CifarEdgeError(f"'{history_csv_path}' has none of the columns loss, accuracy, top5, lr "
                             "(or val_*); pass the history.csv written by training")
    n_rows = len(next(iter(hist.values())))
    epochs = hist["epoch"] if "epoch" in hist else np.arange(n_rows, dtype=np.float64)

    panels = []
    for title, names in _CURVE_PANELS:
        series = [(k, hist[k], f"C{j}") for j, name in enumerate(names) for k in (name, f"val_{name}")
                  if k in hist and not (title == "learning rate" and k.startswith("val_"))]
        if series:
            panels.append((title, series))
    fig = Figure(figsize=(4.5 * len(panels), 3.6))
    if n_rows == 0:
        fig.text(0.5, 0.5, "no epochs recorded yet", ha="center", va="center", fontsize=12)
        return _save(fig, path, tight=False)
    for p, (title, series) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1)
        for name, values, color in series:   # a metric and its val_ twin share a colour
            ax.plot(epochs, values, marker="." if n_rows < 30 else None, color=color,
                    linestyle="--" if name.startswith("val_") else "-", label=name)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if title == "learning rate":
            if np.nanmin(np.concatenate([v for _, v, _ in series]), initial=np.inf) > 0:
                ax.set_yscale("log")
        else:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_per_class(per_class, path) -> Path:
    """Per-class recall, sorted, with the mean marked: shows at a glance which classes drag
    accuracy down and how uneven the model is."""
    if not per_class:
        raise CifarEdgeError("per_class is empty; pass the 'per_class' list from classification_metrics")
    items = sorted(per_class, key=lambda d: -d["recall"])
    names = [str(d["name"]) for d in items]
    recall = np.array([d["recall"] for d in items], np.float64)
    c = len(items)
    fig = Figure(figsize=(max(6.0, 0.16 * c + 2), 4))
    ax = fig.add_subplot()
    x = np.arange(c)
    ax.bar(x, recall, color=matplotlib.colormaps["RdYlGn"](recall), edgecolor="none")
    ax.axhline(recall.mean(), color="black", linewidth=1, linestyle="--", label=f"mean {recall.mean():.1%}")
    ax.set_xticks(x, names, rotation=90, fontsize=8 if c <= 30 else 6)
    ax.set_xlim(-0.6, c - 0.4)
    ax.set_ylim(0, 1)
    ax.set_ylabel("recall (accuracy on class)")
    ax.set_title("Per-class recall")
    ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)
