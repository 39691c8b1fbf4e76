"""The export formats, one module each, and the runtimes that load them.

Each public module of this package defines one format and registers it with its variants,
exporter, opener and bench backends (``_base.register``); modules whose names start with
``_`` are their helpers.  The format table, ``open_model``, bench's backends and the CLI's
choices are all read from these registries, so adding a format is adding a module here.
Format modules import their heavy packages (TensorFlow, onnxruntime ...) only when used.
"""
from __future__ import annotations

import importlib
import pkgutil

from ._base import (BACKENDS, FOLDED_NORMALIZATION, FORMATS, IO_TYPES, QAT_INT8_ONLY, QUANTIZATIONS, Backend, ExportContext,
                    FloatLayers, HOST_DEVICES, ExportOptions, Format, ReferenceTimer, Runner, Unavailable, backends_for,
                    check_runtime_names, default_threads, file_name, format_of, get_format, get_variant, gpu_missing,
                    on_software_gpu, open_backend, open_model, qat_allows, quantization_from_flags, register, validate,
                    variant_name, variants, Variant)
from ._float_layers import match_float_layers
from ._quant_error import plot_layers
from .keras import MODEL_VARIANT, keras_runner, model_runner


def _discover():
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_discover()

__all__ = ["BACKENDS", "FOLDED_NORMALIZATION", "FORMATS", "IO_TYPES", "QAT_INT8_ONLY", "QUANTIZATIONS", "Backend",
           "ExportContext", "FloatLayers", "ReferenceTimer", "MODEL_VARIANT", "keras_runner", "match_float_layers", "plot_layers", "model_runner", "quantization_from_flags",
           "HOST_DEVICES", "ExportOptions", "Format", "Runner", "Unavailable", "backends_for", "check_runtime_names",
           "default_threads", "file_name", "format_of", "get_format", "get_variant", "gpu_missing", "on_software_gpu", "open_backend",
           "open_model", "qat_allows", "register", "validate", "Variant", "variant_name", "variants"]
