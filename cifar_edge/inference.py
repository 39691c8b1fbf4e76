"""Predicting with a finished run: read user images of any size or mode and return top-k
with class names."""
from __future__ import annotations

import numpy as np

from .images import read_image
from .runs import LoadedRun


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
