"""What every exporter gets: the model, the run it came from, and calibration images."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class ExportContext:
    model: object                     # the Keras model (plain, stripped, or QAT-wrapped)
    class_names: list
    norm: object                      # cifar_edge.data.Normalization
    input_size: int
    calibration: np.ndarray           # normalized float32 training images, (N, H, W, 3)
    qat: bool = False                 # the model was trained quantization-aware
    name: str = "cifar-edge model"
    description: str = ""
    work_dir: Path | None = None      # where intermediate files (float ONNX, int8 .tflite) go
    intermediates: dict = field(default_factory=dict)   # variant name -> path, reused within one export
