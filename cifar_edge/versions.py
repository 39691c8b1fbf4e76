"""The versions a result was made with, recorded in every config.json, export.json and bench.json."""
from __future__ import annotations

import importlib.metadata as md
import platform

from . import __version__

PACKAGES = ("tensorflow", "tf_keras", "tensorflow-model-optimization", "tf2onnx", "onnx", "onnxruntime",
            "ai-edge-litert")


def versions() -> dict:
    out = {"cifar_edge": __version__, "python": platform.python_version(), "machine": platform.machine(),
           "processor": platform.processor()}
    for pkg in PACKAGES:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
