"""Using a finished run: load its model with the metadata it was trained with, read user
images of any size or mode, and predict top-k with class names."""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from .data.pipeline import Normalization
from .errors import CifarEdgeError
from .images import read_image
from .train.runfolder import RunFolder, data_source, load_model


@dataclass
class LoadedRun:
    run: RunFolder
    model: object
    config: dict
    class_names: list
    norm: Normalization
    input_size: int


def load_run(run_dir) -> LoadedRun:
    run = RunFolder(run_dir)
    path = run.require_model()
    config = run.read_config()
    return LoadedRun(run, load_model(path), config, config["class_names"],
                     Normalization.from_dict(config["normalization"]), int(config["input_size"]))


def predict_files(loaded: LoadedRun, paths, top: int = 5) -> list[dict]:
    """Top-k predictions with class names and probabilities, one dict per image."""
    from .evaluate import predict_probabilities
    images = np.stack([read_image(p, loaded.input_size) for p in paths])
    probs = predict_probabilities(loaded.model, images, loaded.norm, loaded.input_size)
    k = min(top, probs.shape[1])
    out = []
    for p, row in zip(paths, probs):
        order = np.argsort(-row)[:k]
        out.append({"image": str(p), "top": [{"class": loaded.class_names[i], "index": int(i),
                                              "probability": float(row[i])} for i in order]})
    return out


@dataclass
class RunData:
    """The images a run was trained and checked on, split exactly as training split them."""
    dataset: object
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None

    @property
    def x_test(self):
        return self.dataset.x_test

    @property
    def y_test(self):
        return self.dataset.y_test

    def held_out(self):
        """(images, labels, split name) never trained on: validation, else test."""
        if self.x_val is not None and len(self.x_val):
            return self.x_val, self.y_val, "val"
        if self.x_test is not None:
            return self.x_test, self.y_test, "test"
        raise CifarEdgeError(f"{self.dataset.name} has neither a validation nor a test split to check against")


def run_data(loaded: LoadedRun, data: str | None = None) -> RunData:
    """Reload the run's dataset (or ``data``) and redo its seeded limit and train/val split."""
    from .data import limit_images, load_dataset, train_val
    cfg = loaded.config["train"]
    ds = load_dataset(data or data_source(loaded.config), labels=cfg.get("labels", "fine"), verify=cfg.get("verify", True),
                      synthetic_classes=cfg.get("synthetic_classes"), synthetic_size=cfg.get("synthetic_size"),
                      seed=cfg.get("seed", 0))
    if ds.num_classes != len(loaded.class_names):
        raise CifarEdgeError(f"{ds.name} has {ds.num_classes} classes but the model was trained on "
                             f"{len(loaded.class_names)}; pass the data it was trained on")
    seed = cfg.get("seed", 0)
    x, y = limit_images(ds.x_train, ds.y_train, cfg.get("limit") if data is None else None, seed)
    val_split = cfg.get("val_split", 0.0) if not cfg.get("kfold") else 0.0
    return RunData(ds, *train_val(x, y, val_split, seed))
