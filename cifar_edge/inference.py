"""Using a finished run: load its model with the metadata it was trained with, read user
images of any size or mode, and predict top-k with class names."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data.pipeline import Normalization, prepare_images
from .errors import CifarEdgeError
from .fileio import read_json
from .train.runfolder import RunFolder, load_model


@dataclass
class LoadedRun:
    run: RunFolder
    model: object
    config: dict
    class_names: list
    norm: Normalization
    input_size: int


def load_run(run_dir, which: str = "model") -> LoadedRun:
    run = RunFolder(run_dir)
    path = run.require_model() if which == "model" else run.best
    if not run.config.is_file():
        raise CifarEdgeError(f"{run.root} has a model but no config.json; it was not written by "
                             "`cifar-edge train` (re-train into a new --out)")
    config = read_json(run.config)
    return LoadedRun(run, load_model(path), config, config["class_names"],
                     Normalization.from_dict(config["normalization"]), int(config["input_size"]))


def read_image(path, size: int) -> np.ndarray:
    """Any image file (grey, RGBA, palette, 16-bit, any size) as size x size x 3 uint8 RGB."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise CifarEdgeError(f"image {p} does not exist; pass paths to PNG/JPEG files")
    try:
        with Image.open(p) as im:
            if im.width * im.height > 64_000_000:
                raise CifarEdgeError(f"image {p} is {im.width}x{im.height}, too large to be a photo; downscale it")
            im.draft("RGB", (size * 4, size * 4))       # fast JPEG downscale for huge photos
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                canvas = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(canvas, im)  # transparent -> white, not black
            rgb = im.convert("RGB").resize((size, size), Image.BILINEAR)
            return np.asarray(rgb, np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise CifarEdgeError(f"cannot read {p} as an image ({type(e).__name__}); pass a PNG/JPEG/BMP file") from None


def predict_files(loaded: LoadedRun, paths, top: int = 5) -> list[dict]:
    """Top-k predictions with class names and probabilities, one dict per image."""
    images = np.stack([read_image(p, loaded.input_size) for p in paths])
    logits = loaded.model.predict(prepare_images(images, loaded.norm), verbose=0, batch_size=64)
    probs = _softmax(np.asarray(logits, np.float64))
    k = min(top, probs.shape[1])
    out = []
    for p, row in zip(paths, probs):
        order = np.argsort(-row)[:k]
        out.append({"image": str(p), "top": [{"class": loaded.class_names[i], "index": int(i),
                                              "probability": float(row[i])} for i in order]})
    return out


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
