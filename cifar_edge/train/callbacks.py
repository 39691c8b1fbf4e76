"""Training callbacks: progress, crash-safe history and best checkpoint, throughput."""
from __future__ import annotations

import csv
import math
import time
from pathlib import Path

from .. import console
from .._tf import keras
from ..errors import CifarEdgeError
from ..fileio import atomic_path, read_json, write_csv, write_json


def _lr(model):
    opt = model.optimizer
    lr = opt.learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        return float(lr(opt.iterations))
    return float(keras.backend.get_value(lr))


class EpochStats(keras.callbacks.Callback):
    """Adds ``lr``, ``epoch_seconds``, ``images_per_second`` (and the fine-tuning ``stage``)
    to each epoch's logs."""

    def __init__(self, images_per_epoch: int, stage: int | None = None):
        super().__init__()
        self.images_per_epoch, self.stage = images_per_epoch, stage

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._train_seconds = None

    def on_test_begin(self, logs=None):  # validation starts: training part of the epoch is over
        if getattr(self, "_t0", None) is not None and self._train_seconds is None:
            self._train_seconds = time.perf_counter() - self._t0

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        train_s = self._train_seconds or (time.perf_counter() - self._t0)
        logs["lr"] = _lr(self.model)
        logs["epoch_seconds"] = round(time.perf_counter() - self._t0, 3)
        logs["train_seconds"] = round(train_s, 3)
        logs["images_per_second"] = round(self.images_per_epoch / train_s, 2)
        if self.stage is not None:
            logs["stage"] = self.stage


class HistoryCSV(keras.callbacks.Callback):
    """history.csv rewritten atomically every epoch; on resume, rows from epochs that are
    being re-run are dropped, so a killed run never leaves duplicate or torn rows."""

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)

    def on_epoch_end(self, epoch, logs=None):
        rows = []
        if self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < epoch + 1]
        rows.append({"epoch": epoch + 1, **{k: v for k, v in (logs or {}).items()}})
        keys = ["epoch"] + sorted({k for r in rows for k in r} - {"epoch"})
        write_csv(self.path, keys, [[r.get(k, "") for k in keys] for r in rows])


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model whenever ``monitor`` improves, atomically (temp file + rename), then
    records which epoch and value it holds in ``record`` (best.json).

    On resume the best so far comes from that record, not from history.csv: a process killed
    while saving best.keras has the epoch's row in the history but not its model, and must save
    it again when the epoch is re-run.

    ``snapshot`` keeps the values it saved, variable by variable, so the process that saved them
    restores the best model without reading best.keras back: tf_keras reads a .keras file's
    weights through backward seeks in a zip member (ResNet50: over a minute)."""

    def __init__(self, path, record, monitor="val_accuracy"):
        super().__init__()
        self.path, self.record, self.monitor, self.best = Path(path), Path(record), monitor, -math.inf
        self.snapshot = None
        if self.path.is_file() and self.record.is_file():
            saved = read_json(self.record)
            if saved.get("monitor") == monitor and saved.get("value") is not None:
                self.best = float(saved["value"])

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or value <= self.best:
            return
        self.best = value
        with atomic_path(self.path) as tmp:
            self.model.save(tmp)
        self.snapshot = [(v, v.numpy()) for v in self.model.weights]
        write_json(self.record, {"epoch": epoch + 1, "monitor": self.monitor, "value": float(value)})


class NonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first NaN or infinite loss with the fix, instead of training on
    to a model that predicts NaN and failing later with an unrelated message."""

    def __init__(self, lr: float):
        super().__init__()
        self.lr, self._epoch = lr, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise CifarEdgeError(f"the training loss became {float(loss)} at epoch {self._epoch + 1} step "
                                    f"{batch + 1}: training diverged; lower --lr (it was {self.lr:g}) or check "
                                    "the data for broken images")


class Progress(keras.callbacks.Callback):
    """A progress bar per epoch on a terminal and one summary line per epoch always."""

    def __init__(self, epochs: int, steps_per_epoch: int):
        super().__init__()
        self.epochs, self.steps = epochs, steps_per_epoch
        self._ctx = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._ctx = console.progress(f"epoch {epoch + 1}/{self.epochs}", self.steps)
        self._advance = self._ctx.__enter__()

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        self._advance(1, loss=float(logs.get("loss", 0.0)), acc=float(logs.get("accuracy", 0.0)))

    def on_epoch_end(self, epoch, logs=None):
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = None
        logs = logs or {}
        parts = [f"epoch {epoch + 1}/{self.epochs}"]
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
            if key in logs:
                parts.append(f"{key} {logs[key]:.4g}")
        if "images_per_second" in logs:
            parts.append(f"{logs['images_per_second']:.0f} img/s")
        console.info("  ".join(parts))
