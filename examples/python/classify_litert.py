"""Classify images with a cifar-edge .tflite using only ai-edge-litert, numpy and Pillow.

    pip install ai-edge-litert numpy pillow
    python classify_litert.py model.tflite photo.jpg [more.png ...] [--top 5] [--threads 2]

Everything the model needs (input size and type, normalization, labels) is read from the
metadata cifar-edge embeds in the file, so every exported variant (float32, fp16,
dynamic-range, int8 with float/int8/uint8 I/O) works unchanged.  These are the same steps the
Android app takes (examples/android, its `contract` package).
"""
from __future__ import annotations

import json
import sys

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from pipeline import run_cli, top_k


def read_metadata(model_bytes: bytes) -> dict:
    """The plain-JSON ``cifar_edge`` metadata entry of a .tflite."""
    model = schema.Model.GetRootAs(model_bytes, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == b"cifar_edge":
            buffer = model.Buffers(entry.Buffer())
            data = (model_bytes[buffer.Offset():buffer.Offset() + buffer.Size()] if buffer.Offset() > 1
                    else buffer.DataAsNumpy().tobytes())
            return json.loads(data.decode("utf-8"))
    raise ValueError("this .tflite has no cifar_edge metadata; export it with `cifar-edge export --format tflite`")


class Classifier:
    """One .tflite: pixels in, class scores out."""

    def __init__(self, path: str, threads: int = 2):
        with open(path, "rb") as f:
            self.meta = read_metadata(f.read())
        self.labels = self.meta["labels"]
        self.size = int(self.meta["input_size"])
        self.mean = np.asarray(self.meta["mean"], np.float32)
        self.std = np.asarray(self.meta["std"], np.float32)
        self.interpreter = Interpreter(model_path=path, num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 RGB (size, size, 3) -> the input tensor: normalized, quantized for integer inputs."""
        x = (pixels.astype(np.float32) - self.mean) / self.std
        dtype = self.input["dtype"]
        if np.issubdtype(dtype, np.integer):
            scale, zero = self.input["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / np.float32(scale) + np.float32(zero)), info.min, info.max)
        return x.astype(dtype)[None]

    def scores(self, pixels: np.ndarray) -> np.ndarray:
        """Logits for one image, dequantized for integer outputs."""
        self.interpreter.set_tensor(self.input["index"], self.encode(pixels))
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])[0]
        scale, zero = self.output["quantization"]
        if np.issubdtype(y.dtype, np.integer):
            return (y.astype(np.float32) - np.float32(zero)) * np.float32(scale)
        return y.astype(np.float32)

    def top(self, pixels: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        return top_k(self.scores(pixels), self.labels, k)


if __name__ == "__main__":
    sys.exit(run_cli("Classify images with a cifar-edge .tflite (LiteRT only).", Classifier))
