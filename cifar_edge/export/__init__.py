"""Export: the format table, the exporters, and the parity-checked `export_run`."""
from .exporter import (MANIFEST, ExportConfig, export_run, file_accuracy, read_failures, read_manifest,
                       resolve_variants, split_accuracy)
from ..formats import (FORMATS, ExportOptions, Format, get_format, get_variant, quantization_from_flags, validate,
                       variant_name, variants)

__all__ = ["MANIFEST", "ExportConfig", "export_run", "file_accuracy", "split_accuracy", "read_failures", "read_manifest", "resolve_variants", "FORMATS", "variants",
           "ExportOptions", "Format", "get_format", "get_variant", "quantization_from_flags", "validate", "variant_name"]
