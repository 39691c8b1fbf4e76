"""The one table of export formats.  Export, bench and the CLI all read it: adding a format
is adding a row and one exporter function (the Ultralytics exporter's pattern).

A *format* is a file type with the options it accepts; a *variant* is one named
combination of options (``int8``, ``fp16``, ``int8_io-uint8`` ...) that ``--all`` and the
bench export.  Unknown names and conflicting options fail here, before any work starts.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import CifarEdgeError, unknown_choice

IO_TYPES = ("float", "int8", "uint8")


@dataclass(frozen=True)
class ExportOptions:
    """How to export: quantization, I/O type and converter settings."""
    int8: bool = False          # full-integer quantization (calibrated activations)
    fp16: bool = False          # float16 weights
    dynamic: bool = False       # dynamic-range: int8 weights, float activations
    io: str = "float"           # int8 models only: float, int8 or uint8 input/output
    opset: int = 17             # ONNX opset
    per_channel: bool = True    # int8 weights per output channel (else per tensor)
    from_tflite: bool = False   # ONNX int8: convert the int8 .tflite (QDQ) instead of quantizing in onnxruntime
    int16x8: bool = False       # TFLite: 16-bit activations, 8-bit weights (calibrated)
    float_layers: tuple = ()    # int8: nodes kept in float (selective quantization, `export --max-drop`): TFLite
                                # converter denylist or onnxruntime nodes_to_exclude

    @property
    def quantized(self) -> bool:
        """Quantized activations or weights: parity is judged against the int8 threshold."""
        return self.int8 or self.dynamic or self.int16x8

    @property
    def calibrated(self) -> bool:
        """Activations quantized with ranges calibrated on training images."""
        return self.int8 or self.int16x8

    @property
    def quantization(self) -> str:
        return ("int8" if self.int8 else "int16x8" if self.int16x8 else "fp16" if self.fp16
                else "dynamic" if self.dynamic else "none")

    @property
    def input_dtype(self) -> str:
        """The exported file's input tensor type."""
        return self.io if self.int8 and self.io != "float" else "float32"

    def set_options(self) -> set:
        """The option names that differ from the defaults."""
        default = ExportOptions()
        return {f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(default, f.name)}

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "float_layers": list(self.float_layers)}   # as JSON holds it


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    options: frozenset          # option names this format accepts
    exporter: str               # "module:function" in cifar_edge.export, imported on use
    runtimes: tuple             # runtimes that can load the file (see cifar_edge.runtimes)
    description: str

    def export_fn(self):
        import importlib
        module, fn = self.exporter.split(":")
        return getattr(importlib.import_module(f"cifar_edge.export.{module}"), fn)


FORMATS = {f.name: f for f in (
    Format("keras", ".h5", frozenset(), "keras_format:export_keras", ("keras",),
           "the float Keras model (HDF5), the reference every other row is checked against"),
    Format("tflite", ".tflite", frozenset({"int8", "fp16", "dynamic", "io", "per_channel", "int16x8", "float_layers"}),
           "tflite:export_tflite", ("litert",),
           "LiteRT flatbuffer with labels and normalization metadata, for Android/iOS/microcontrollers"),
    Format("onnx", ".onnx", frozenset({"int8", "opset", "per_channel", "from_tflite", "float_layers"}),
           "onnx:export_onnx", ("onnxruntime",),
           "ONNX via tf2onnx (dynamic batch); int8 as QDQ through onnxruntime or from the int8 .tflite"),
)}

# Named variants: what `export --all` and `bench` produce, in table order.
VARIANTS = {
    "keras": ("keras", ExportOptions()),
    "tflite-float32": ("tflite", ExportOptions()),
    "tflite-fp16": ("tflite", ExportOptions(fp16=True)),
    "tflite-dynamic": ("tflite", ExportOptions(dynamic=True)),
    "tflite-int8": ("tflite", ExportOptions(int8=True)),
    "tflite-int8-io-int8": ("tflite", ExportOptions(int8=True, io="int8")),
    "tflite-int8-io-uint8": ("tflite", ExportOptions(int8=True, io="uint8")),
    "tflite-int16x8": ("tflite", ExportOptions(int16x8=True)),
    "onnx-float32": ("onnx", ExportOptions()),
    "onnx-int8": ("onnx", ExportOptions(int8=True)),
    "onnx-int8-from-tflite": ("onnx", ExportOptions(int8=True, from_tflite=True)),
}


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise unknown_choice("format", name, FORMATS)
    return FORMATS[name]


def get_variant(name: str) -> tuple[Format, ExportOptions]:
    if name not in VARIANTS:
        raise unknown_choice("variant", name, VARIANTS)
    fmt, opts = VARIANTS[name]
    return FORMATS[fmt], opts


def validate(fmt: Format, opts: ExportOptions) -> ExportOptions:
    """Reject options the format does not take and combinations that contradict each other."""
    unsupported = sorted(opts.set_options() - fmt.options)
    if unsupported:
        flags = ", ".join("--" + o.replace("_", "-") for o in unsupported)
        raise CifarEdgeError(f"{fmt.name} export does not take {flags}; it accepts "
                             f"{', '.join(sorted(fmt.options)) or 'no options'}")
    modes = [m for m in ("int8", "fp16", "dynamic", "int16x8") if getattr(opts, m)]
    if len(modes) > 1:
        raise CifarEdgeError(f"--{' and --'.join(modes)} conflict: choose one quantization mode")
    if opts.io not in IO_TYPES:
        raise unknown_choice("I/O type", opts.io, IO_TYPES)
    if opts.io != "float" and not opts.int8:
        raise CifarEdgeError(f"--io {opts.io} needs a full-integer model; add --int8")
    if opts.float_layers and not opts.calibrated:
        raise CifarEdgeError("--float-layers keeps layers of a calibrated model in float; add --int8 (or --int16x8)")
    if opts.float_layers and opts.io != "float":
        raise CifarEdgeError("--float-layers takes float input/output; drop --io")
    if opts.float_layers and opts.int16x8:
        raise CifarEdgeError("TensorFlow quantizes int16x8 whole (its int16 quantizer takes no per-layer "
                             "denylist); use --float-layers with --int8")
    if opts.float_layers and opts.from_tflite:
        raise CifarEdgeError("--float-layers keeps nodes of onnxruntime's quantization in float; drop --from-tflite")
    if opts.from_tflite and not opts.int8:
        raise CifarEdgeError("--from-tflite converts the int8 .tflite; add --int8")
    if not 13 <= opts.opset <= 18:
        raise CifarEdgeError(f"--opset {opts.opset} is not supported by tf2onnx 1.17 here; use 13..18 (default 17)")
    return opts


QAT_INT8_ONLY = "a quantization-aware run exports int8 files only (float ones belong to its parent run)"


def qat_allows(fmt: Format, opts: ExportOptions) -> bool:
    """A quantization-aware model is trained to ship as integers: only its int8 variants exist
    (int8 with float layers too, when a repair keeps some)."""
    return opts.int8


def variant_name(fmt: Format, opts: ExportOptions) -> str:
    """A stable name (and file stem) for a format + options: ``tflite-int8-io-uint8``."""
    for name, (f, o) in VARIANTS.items():
        if f == fmt.name and o == opts:
            return name
    parts = [fmt.name]
    parts += [m for m in ("int8", "int16x8", "fp16", "dynamic") if getattr(opts, m)] or (["float32"] if fmt.name != "keras" else [])
    if opts.float_layers:
        parts.append("selective")
    if opts.io != "float":
        parts.append(f"io-{opts.io}")
    if not opts.per_channel:
        parts.append("per-tensor")
    if opts.from_tflite:
        parts.append("from-tflite")
    if opts.opset != ExportOptions().opset and fmt.name == "onnx":
        parts.append(f"opset{opts.opset}")
    return "-".join(parts)


def file_name(fmt: Format, opts: ExportOptions) -> str:
    return variant_name(fmt, opts) + fmt.suffix
