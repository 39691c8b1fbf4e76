"""Classify images with a cifar-edge .onnx using only onnxruntime, numpy and Pillow.

    pip install onnxruntime numpy pillow
    python classify_onnx.py model.onnx photo.jpg [more.png ...] [--top 5] [--threads 2]

The input size, normalization and labels come from the ``cifar_edge`` entry cifar-edge
writes into the model's metadata_props; float32 and int8 (QDQ) files both take float input.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime as ort

from pipeline import run_cli, top_k


class Classifier:
    """One .onnx: pixels in, class scores out."""

    def __init__(self, path: str, threads: int = 2):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map.get("cifar_edge")
        if meta is None:
            raise ValueError("this .onnx has no cifar_edge metadata; export it with `cifar-edge export --format onnx`")
        self.meta = json.loads(meta)
        self.labels = self.meta["labels"]
        self.size = int(self.meta["input_size"])
        self.mean = np.asarray(self.meta["mean"], np.float32)
        self.std = np.asarray(self.meta["std"], np.float32)
        self.input_name = self.session.get_inputs()[0].name

    def scores(self, pixels: np.ndarray) -> np.ndarray:
        x = (pixels.astype(np.float32) - self.mean) / self.std
        return self.session.run(None, {self.input_name: x[None]})[0][0]

    def top(self, pixels: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        return top_k(self.scores(pixels), self.labels, k)


if __name__ == "__main__":
    sys.exit(run_cli("Classify images with a cifar-edge .onnx (onnxruntime only).", Classifier))
