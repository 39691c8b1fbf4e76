"""Predicting with a finished run: read user images of any size or mode and return top-k
with class names."""
from __future__ import annotations

import numpy as np

from .errors import CifarEdgeError
from .images import read_image
from .runs import LoadedRun


def predict_files(loaded: LoadedRun, paths, top: int = 5, failures: dict | None = None) -> list[dict]:
    """Top-k predictions with class names and probabilities, one dict per image.  An unreadable
    image raises, unless ``failures`` is given: then its error goes there ({path: message}) and
    the other images are still predicted."""
    from .evaluate import predict_probabilities
    readable, images = [], []
    for p in paths:
        try:
            images.append(read_image(p, loaded.input_size))
            readable.append(p)
        except CifarEdgeError as e:
            if failures is None:
                raise
            failures[str(p)] = str(e)
    if not images:
        return []
    paths = readable
    probs = predict_probabilities(loaded.model, np.stack(images), loaded.norm, loaded.input_size)
    k = min(top, probs.shape[1])
    out = []
    for p, row in zip(paths, probs):
        order = np.argsort(-row)[:k]
        out.append({"image": str(p), "top": [{"class": loaded.class_names[i], "index": int(i),
                                              "probability": float(row[i])} for i in order]})
    return out
