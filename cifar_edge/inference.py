"""Using a finished run: load its model with the metadata it was trained with, read user
images of any size or mode, and predict top-k with class names."""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from .data.pipeline import Normalization
from .errors import CifarEdgeError
from .fileio import read_json
from .images import read_image
from .train.runfolder import RunFolder, load_model


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
    if not run.config.is_file():
        raise CifarEdgeError(f"{run.root} has a model but no config.json; it was not written by "
                             "`cifar-edge train` (re-train into a new --out)")
    config = read_json(run.config)
    return LoadedRun(run, load_model(path), config, config["class_names"],
                     Normalization.from_dict(config["normalization"]), int(config["input_size"]))


def predict_files(loaded: LoadedRun, paths, top: int = 5) -> list[dict]:
    """Top-k predictions with class names and probabilities, one dict per image."""
    from .evaluate import predict_logits, to_probabilities
    images = np.stack([read_image(p, loaded.input_size) for p in paths])
    probs = to_probabilities(predict_logits(loaded.model, images, loaded.norm, loaded.input_size))
    k = min(top, probs.shape[1])
    out = []
    for p, row in zip(paths, probs):
        order = np.argsort(-row)[:k]
        out.append({"image": str(p), "top": [{"class": loaded.class_names[i], "index": int(i),
                                              "probability": float(row[i])} for i in order]})
    return out
