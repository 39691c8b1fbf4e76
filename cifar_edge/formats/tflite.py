"""LiteRT / TFLite: the flatbuffer with labels and normalization metadata, for Android, iOS and
microcontrollers; float32, fp16, dynamic-range, int8 (float or integer I/O) and int16x8.

Runs on the LiteRT Interpreter (XNNPACK or builtin kernels), the CompiledModel API (CPU, GPU)
and, through ``cifar-edge bench --device android``, LiteRT's benchmark_model on a phone."""
from __future__ import annotations


from ..errors import CifarEdgeError
from ._base import Backend, ExportOptions, FloatLayers, Format, ReferenceTimer, register
from ._litert import (check_litert_loads, dead_activation_tensors, from_output, open_compiled, open_litert, profile_litert,
                      to_input)
from ._base import FOLDED_NORMALIZATION
from ._litert_cli import run_reference
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


def _check(opts: ExportOptions):
    if opts.float_layers and opts.quantization == "int16x8":
        raise CifarEdgeError("TensorFlow quantizes int16x8 whole (its int16 quantizer takes no per-layer "
                             "denylist); use --float-layers with --int8")


def _float_nodes(ctx, opts) -> list[str]:
    """The converter's denylist takes the calibrated model's tensor names, in graph order."""
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_content=calibrated_model(ctx))
    tensors = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    return [tensors[o] for op in interp._get_ops_details() for o in op["outputs"] if o in tensors]  # noqa: SLF001


def _rank(ctx, opts, images, calibration=None):
    from ._quant_error import rank_layers
    return rank_layers(ctx.model, calibrated_model(ctx), images, calibration, per_channel=opts.per_channel)


def _open_candidate(data: bytes):
    check_litert_loads(data)          # a file that would crash LiteRT is refused, in a child process
    return open_litert(data, threads=1)


def _diagnose(ctx, opts, held_out, calibration, images):
    """Each quantized layer's added and carried error (TFLite's NumericVerify), and the int8 file's outputs on ``images``."""
    return _rank(ctx, opts, held_out, calibration), open_litert(convert(ctx, opts)).predict(images)


# LiteRT's CLI runs XNNPACK (CompiledModel, CPU): a row on the builtin kernels is expected to differ from it.
_CLI = ReferenceTimer(run_reference, same_engine=lambda engine: engine != "litert-builtin")


register(
    Format("tflite", ".tflite", frozenset({"int8", "fp16", "dynamic", "io", "per_channel", "int16x8", "float_layers"}),
           "LiteRT flatbuffer with labels and normalization metadata, for Android/iOS/microcontrollers",
           export=export, open=_open, runtime="litert", order=1,
           variants={
               "tflite-float32": ExportOptions(),
               "tflite-fp16": ExportOptions(quantization="fp16"),
               "tflite-dynamic": ExportOptions(quantization="dynamic"),
               "tflite-int8": ExportOptions(quantization="int8"),
               "tflite-int8-io-int8": ExportOptions(quantization="int8", io="int8"),
               "tflite-int8-io-uint8": ExportOptions(quantization="int8", io="uint8"),
               "tflite-int16x8": ExportOptions(quantization="int16x8"),
           },
           probe=check_litert_loads, check=_check, packages=("ai-edge-litert",),
           float_layers=FloatLayers(_float_nodes, lambda ctx, opts, images: _rank(ctx, opts, images), _open_candidate,
                                    fallbacks=lambda opts: [(ExportOptions(quantization="int16x8",
                                                                           per_channel=opts.per_channel), "int16x8")],
                                    diagnose=_diagnose)),
    backends=(
        Backend("litert", ("tflite",), "cpu", True, "LiteRT interpreter with XNNPACK (its default CPU delegate)",
                lambda p, t: open_litert(p, t, xnnpack=True), profiler=profile_litert, reference=_CLI),
        Backend("litert-no-xnnpack", ("tflite",), "cpu", True, "LiteRT interpreter on its builtin kernels",
                lambda p, t: open_litert(p, t, xnnpack=False),
                profiler=lambda p, t, x, runs: profile_litert(p, t, x, runs, xnnpack=False),
                reference=ReferenceTimer(run_reference, same_engine=lambda engine: False)),
        Backend("litert-compiled", ("tflite",), "cpu", True, "LiteRT CompiledModel, CPU accelerator",
                lambda p, t: open_compiled(p, t), reference=_CLI),
        # The GPU accelerator is WebGPU (Dawn over Vulkan or GL): it runs wherever an adapter exists,
        # a software one included (Mesa's lavapipe), so these rows measure placement and parity anywhere.
        Backend("litert-gpu", ("tflite",), "gpu", False,
                "LiteRT CompiledModel, GPU accelerator (WebGPU), default precision (fp16 kernels), CPU fallback",
                lambda p, t: open_compiled(p, t, gpu=True)),
        Backend("litert-gpu-f32", ("tflite",), "gpu", False,
                "LiteRT CompiledModel, GPU accelerator (WebGPU), enforce_f32, CPU fallback",
                lambda p, t: open_compiled(p, t, gpu=True, enforce_f32=True)),
        Backend("android-cpu", ("tflite",), "android", True, "benchmark_model on the phone, XNNPACK",
                device_args=("--use_xnnpack=true",)),
        Backend("android-gpu-fp16", ("tflite",), "android", False, "benchmark_model on the phone, GPU delegate, fp16 allowed",
                device_args=("--use_gpu=true", "--gpu_precision_loss_allowed=true")),
        Backend("android-gpu-fp32", ("tflite",), "android", False, "benchmark_model on the phone, GPU delegate, fp32",
                device_args=("--use_gpu=true", "--gpu_precision_loss_allowed=false")),
        Backend("android-nnapi", ("tflite",), "android", False, "benchmark_model on the phone, NNAPI delegate",
                device_args=("--use_nnapi=true",)),
    ))

