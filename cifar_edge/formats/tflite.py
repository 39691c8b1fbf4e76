"""LiteRT / TFLite: the flatbuffer with labels and normalization metadata, for Android, iOS and
microcontrollers; float32, fp16, dynamic-range, int8 (float or integer I/O) and int16x8.

Runs on the LiteRT Interpreter (XNNPACK or builtin kernels), the CompiledModel API (CPU, GPU)
and, through ``cifar-edge bench --device android``, LiteRT's benchmark_model on a phone."""
from __future__ import annotations


from ._base import Backend, ExportOptions, Format, register
from ._litert import (check_litert_loads, dead_activation_tensors, from_output, open_compiled, open_litert, profile_litert,
                      to_input)
from ._base import FOLDED_NORMALIZATION
from ._tflite_metadata import embed_metadata, folded_normalization, read_metadata

__all__ = ["FOLDED_NORMALIZATION", "embed_metadata", "calibrated_model", "check_litert_loads", "convert", "dead_activation_tensors", "from_output",
           "open_litert", "open_compiled", "read_metadata", "folded_normalization", "to_input"]


def export(ctx, path, opts):
    from ._tflite_convert import export_tflite
    export_tflite(ctx, path, opts)


def convert(ctx, opts) -> bytes:
    """The converted flatbuffer of ``opts`` (no metadata), made once per export context."""
    from ._tflite_convert import convert as _convert
    return _convert(ctx, opts)


def calibrated_model(ctx) -> bytes:
    """The calibrated float flatbuffer selective int8 quantizes from."""
    from ._tflite_convert import calibrated_model as _calibrated
    return _calibrated(ctx)


def _open(path, threads=None):
    return open_litert(path, threads)




register(
    Format("tflite", ".tflite", frozenset({"int8", "fp16", "dynamic", "io", "per_channel", "int16x8", "float_layers"}),
           "LiteRT flatbuffer with labels and normalization metadata, for Android/iOS/microcontrollers",
           export=export, open=_open, runtime="litert", order=1,
           variants={
               "tflite-float32": ExportOptions(),
               "tflite-fp16": ExportOptions(fp16=True),
               "tflite-dynamic": ExportOptions(dynamic=True),
               "tflite-int8": ExportOptions(int8=True),
               "tflite-int8-io-int8": ExportOptions(int8=True, io="int8"),
               "tflite-int8-io-uint8": ExportOptions(int8=True, io="uint8"),
               "tflite-int16x8": ExportOptions(int16x8=True),
           },
           probe=check_litert_loads),
    backends=(
        Backend("litert", ("tflite",), "cpu", True, "LiteRT interpreter with XNNPACK (its default CPU delegate)",
                lambda p, t: open_litert(p, t, xnnpack=True), profiler=profile_litert),
        Backend("litert-no-xnnpack", ("tflite",), "cpu", True, "LiteRT interpreter on its builtin kernels",
                lambda p, t: open_litert(p, t, xnnpack=False),
                profiler=lambda p, t, x, runs: profile_litert(p, t, x, runs, xnnpack=False)),
        Backend("litert-compiled", ("tflite",), "cpu", True, "LiteRT CompiledModel, CPU accelerator",
                lambda p, t: open_compiled(p, t)),
        # The GPU accelerator is WebGPU (Dawn over Vulkan or GL): it runs wherever an adapter exists,
        # a software one included (Mesa's lavapipe), so these rows measure placement and parity anywhere.
        Backend("litert-gpu", ("tflite",), "gpu", False,
                "LiteRT CompiledModel, GPU accelerator (WebGPU), default precision (fp16 kernels), CPU fallback",
                lambda p, t: open_compiled(p, t, gpu=True)),
        Backend("litert-gpu-f32", ("tflite",), "gpu", False,
                "LiteRT CompiledModel, GPU accelerator (WebGPU), enforce_f32, CPU fallback",
                lambda p, t: open_compiled(p, t, gpu=True, enforce_f32=True)),
        Backend("android-cpu", ("tflite",), "android", True, "benchmark_model on the phone, XNNPACK"),
        Backend("android-gpu-fp16", ("tflite",), "android", False, "benchmark_model on the phone, GPU delegate, fp16 allowed"),
        Backend("android-gpu-fp32", ("tflite",), "android", False, "benchmark_model on the phone, GPU delegate, fp32"),
        Backend("android-nnapi", ("tflite",), "android", False, "benchmark_model on the phone, NNAPI delegate"),
    ))

