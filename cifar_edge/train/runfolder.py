"""The run folder: one place that knows its file names, so training, evaluation, predict
and the CLI agree on them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import CifarEdgeError


@dataclass(frozen=True)
class RunFolder:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    config = property(lambda self: self.root / "config.json")
    metrics = property(lambda self: self.root / "metrics.json")
    history = property(lambda self: self.root / "history.csv")
    model_keras = property(lambda self: self.root / "model.keras")
    model_h5 = property(lambda self: self.root / "model.h5")
    best = property(lambda self: self.root / "best.keras")
    backup = property(lambda self: self.root / "backup")
    tensorboard = property(lambda self: self.root / "tensorboard")
    labels = property(lambda self: self.root / "labels.txt")

    def require_model(self) -> Path:
        """The trained model, or a clear error when the folder holds none."""
        if not self.root.is_dir():
            raise CifarEdgeError(f"run folder {self.root} does not exist; pass the --out folder of a "
                                 "`cifar-edge train` run")
        for p in (self.model_keras, self.best, self.model_h5):
            if p.is_file():
                return p
        if (self.root / "fold_1").is_dir():
            raise CifarEdgeError(f"{self.root} is a k-fold run: each fold has its own model; pass "
                                 f"{self.root / 'fold_1'} (or another fold)")
        raise CifarEdgeError(f"{self.root} holds no trained model (model.keras); train first with "
                             f"`cifar-edge train --out {self.root}` or finish it with --resume")


def load_model(path):
    """Load a saved Keras model, turning a corrupt/truncated file into a clear error."""
    from .._tf import keras
    from . import schedules  # noqa: F401 - registers our schedule classes for deserialisation
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - h5py/zip/json errors all mean 'unreadable'
        raise CifarEdgeError(f"cannot load model {path} ({type(e).__name__}: {str(e)[:120]}); the file is "
                             "corrupt or truncated: re-run training or re-export it") from None
