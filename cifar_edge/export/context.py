"""What every exporter gets: the model, the run it came from, and calibration images."""
from __future__ import annotations

from dataclasses import dataclass, field

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
    repair: dict | None = None        # the --max-drop search behind this export, for its manifest entry
    saved_model: str | None = None    # the model as a SavedModel folder, once saved ("": cannot be); tflite converts from it
    calibrated: bytes | None = None   # the calibrated float flatbuffer, once made (selective int8 reuses it)
    flatbuffers: dict = field(default_factory=dict)   # ExportOptions -> converted .tflite bytes (no metadata)
    onnx_prepared: dict = field(default_factory=dict)  # opset -> the pre-processed float .onnx bytes
    onnx_models: dict = field(default_factory=dict)    # ExportOptions -> QDQ int8 .onnx bytes (no metadata)

    def model_facts(self, opts, folded: bool = False) -> dict:
        """What an app needs to run the exported file without cifar-edge (input size and type,
        normalization, labels); embedded in every .tflite and .onnx.  A file with the
        normalization ``folded`` into its graph takes raw pixels: mean 0, std 1 for the app."""
        norm = {"mean": [float(v) for v in self.norm.mean], "std": [float(v) for v in self.norm.std]}
        if folded:
            from .metadata import FOLDED_NORMALIZATION
            norm = {"mean": [0.0] * 3, "std": [1.0] * 3, FOLDED_NORMALIZATION: norm}
        return {"input_size": int(self.input_size), **norm, "input_dtype": opts.input_dtype,
                "output_is_logits": True, "labels": list(self.class_names),
                "quantization": opts.quantization, "qat": bool(self.qat),
                **({"float_layers": list(opts.float_layers)} if opts.float_layers else {})}
