"""TFLite export: float32, float16, dynamic-range and full int8 (float or integer I/O),
from plain, pruned and QAT models, with labels and normalization metadata embedded so the
file can be dropped into an Android app as is."""
from __future__ import annotations

from pathlib import Path

from .. import __version__
from .._tf import tf
from ..errors import CifarEdgeError
from .formats import ExportOptions

_IO_DTYPES = {"int8": tf.int8, "uint8": tf.uint8}


def _converter(ctx, opts):
    converter = tf.lite.TFLiteConverter.from_keras_model(ctx.model)
    if opts.fp16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif opts.dynamic:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif opts.calibrated:
        # QAT models carry learned ranges; calibration still fixes the input/output scales.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([ctx.calibration[i:i + 1]] for i in range(len(ctx.calibration)))
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8 if opts.int16x8
            else tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if opts.io in _IO_DTYPES:
            converter.inference_input_type = converter.inference_output_type = _IO_DTYPES[opts.io]
        if not opts.per_channel:
            converter._experimental_disable_per_channel = True  # noqa: SLF001 - the converter's only switch
    return converter


def _run_converter(fn):
    try:
        return fn()
    except CifarEdgeError:
        raise
    except Exception as e:  # noqa: BLE001 - the converter raises ConverterError and plain Exceptions
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise CifarEdgeError(f"TFLite conversion failed: {first}; check that every layer is a TFLite builtin "
                             "(see `cifar-edge models`) or export with fewer options") from None


def calibrated_model(ctx) -> bytes:
    """The float model with activation ranges recorded from the calibration images: what the
    converter quantizes.  Made once per export context; selective quantization quantizes it
    again and again with other layers kept in float, without calibrating each time."""
    if ctx.calibrated is None:
        def run():
            converter = _converter(ctx, ExportOptions(int8=True))
            converter._experimental_calibrate_only = True  # noqa: SLF001 - the step QuantizationDebugger uses
            return converter.convert()
        ctx.calibrated = _run_converter(run)
    return ctx.calibrated


def quantize_calibrated(calibrated: bytes, opts) -> bytes:
    """int8 of a calibrated model with ``opts.float_layers`` (node names) left in float: the
    converter's own quantization pass with a denylist, as TFLite's QuantizationDebugger runs it."""
    from tensorflow.lite.python.convert import mlir_quantize
    return _run_converter(lambda: mlir_quantize(calibrated, disable_per_channel=not opts.per_channel,
                                                denylisted_nodes=list(opts.float_layers)))


def convert(ctx, opts) -> bytes:
    """The bare flatbuffer (no metadata) for ``ctx.model`` under ``opts``, converted once per
    export context: the --max-drop search measures the file it then exports, and the ONNX
    from-tflite variant reuses the int8 .tflite."""
    if opts not in ctx.flatbuffers:
        ctx.flatbuffers[opts] = (quantize_calibrated(calibrated_model(ctx), opts) if opts.float_layers
                                 else _run_converter(lambda: _converter(ctx, opts).convert()))
    return ctx.flatbuffers[opts]


def export_tflite(ctx, path: Path, opts):
    from .metadata import embed_metadata
    data = convert(ctx, opts)
    facts = ctx.model_facts(opts)
    graph_facts = {k: facts.pop(k) for k in ("input_size", "mean", "std", "labels", "input_dtype", "output_is_logits")}
    data = embed_metadata(
        data, name=ctx.name, description=ctx.description or f"CIFAR classifier ({len(ctx.class_names)} classes)",
        version=__version__, author="cifar-edge", **graph_facts, extra=facts)
    Path(path).write_bytes(data)
