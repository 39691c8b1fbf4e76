"""Export: the format table, the exporters, and the parity-checked `export_run`."""
from .exporter import ExportConfig, export_run, read_failures, read_manifest, resolve_variants
from .formats import FORMATS, VARIANTS, ExportOptions, Format, get_format, get_variant, validate, variant_name

__all__ = ["ExportConfig", "export_run", "read_failures", "read_manifest", "resolve_variants", "FORMATS", "VARIANTS",
           "ExportOptions", "Format", "get_format", "get_variant", "validate", "variant_name"]
