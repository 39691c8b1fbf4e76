"""TFLite export: float32, float16, dynamic-range and full int8 (float or integer I/O),
from plain, pruned and QAT models, with labels and normalization metadata embedded so the
file can be dropped into an Android app as is."""
from __future__ import annotations

from pathlib import Path

from .. import __version__
from .._tf import tf
from ..errors import CifarEdgeError

_IO_DTYPES = {"int8": tf.int8, "uint8": tf.uint8}


def convert(ctx, opts) -> bytes:
    """The bare flatbuffer (no metadata) for ``ctx.model`` under ``opts``."""
    converter = tf.lite.TFLiteConverter.from_keras_model(ctx.model)
    if opts.fp16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif opts.dynamic:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif opts.int8:
        # QAT models carry learned ranges; calibration still fixes the input/output scales.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([ctx.calibration[i:i + 1]] for i in range(len(ctx.calibration)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if opts.io in _IO_DTYPES:
            converter.inference_input_type = converter.inference_output_type = _IO_DTYPES[opts.io]
        if not opts.per_channel:
            converter._experimental_disable_per_channel = True  # noqa: SLF001 - the converter's only switch
    try:
        return converter.convert()
    except Exception as e:  # noqa: BLE001 - the converter raises ConverterError and plain Exceptions
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise CifarEdgeError(f"TFLite conversion failed: {first}; check that every layer is a TFLite builtin "
                             "(see `cifar-edge models`) or export with fewer options") from None


def export_tflite(ctx, path: Path, opts):
    from .metadata import embed_metadata
    data = convert(ctx, opts)
    facts = ctx.model_facts(opts)
    graph_facts = {k: facts.pop(k) for k in ("input_size", "mean", "std", "labels", "input_dtype", "output_is_logits")}
    data = embed_metadata(
        data, name=ctx.name, description=ctx.description or f"CIFAR classifier ({len(ctx.class_names)} classes)",
        version=__version__, author="cifar-edge", **graph_facts, extra=facts)
    Path(path).write_bytes(data)
