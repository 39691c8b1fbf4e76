"""TFLite export: float32, float16, dynamic-range and full int8 (float or integer I/O),
from plain, pruned and QAT models, with labels and normalization metadata embedded so the
file can be dropped into an Android app as is."""
from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

from .. import __version__
from .._tf import tf
from ..errors import CifarEdgeError
from ..fileio import system_temp_prefix
from ._base import ExportOptions, imported_converter

_IO_DTYPES = {"int8": tf.int8, "uint8": tf.uint8}


def _saved_model(ctx) -> str | None:
    """The model saved once per export context, as the SavedModel every variant converts from:
    ``from_keras_model`` saves it anew on each call, half of a conversion's time (12 of 23 CPU
    seconds for MobileNetV2 0.35).  None if it cannot be saved (the converter's own fallback
    then runs)."""
    cache = ctx.cache("tflite")
    if "saved_model" not in cache:
        work = tempfile.mkdtemp(prefix=system_temp_prefix("savedmodel"))
        weakref.finalize(ctx, shutil.rmtree, work, True)
        own = imported_converter(ctx.model, "saved_model")     # an imported model saves itself (Keras 3: model.export)
        if own is not None:
            own(work)
            cache["saved_model"] = work
            return work
        try:
            tf.saved_model.save(ctx.model, work, options=tf.saved_model.SaveOptions(save_debug_info=True))
            cache["saved_model"] = work
        except Exception:  # noqa: BLE001 - whatever the saver refuses, from_keras_model handles its own way
            cache["saved_model"] = ""
    return cache["saved_model"] or None


def _converter(ctx, opts):
    saved = _saved_model(ctx)
    converter = (tf.lite.TFLiteConverter.from_saved_model(saved) if saved
                 else tf.lite.TFLiteConverter.from_keras_model(ctx.model))
    if opts.quantization == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif opts.quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif opts.calibrated:
        # QAT models carry learned ranges; calibration still fixes the input/output scales.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _representative(ctx.calibration)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8 if opts.quantization == "int16x8"
            else tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if opts.io in _IO_DTYPES:
            converter.inference_input_type = converter.inference_output_type = _IO_DTYPES[opts.io]
        if not opts.per_channel:
            converter._experimental_disable_per_channel = True  # noqa: SLF001 - the converter's only switch
    return converter


def _representative(images):
    """The calibration images one at a time, as the converter takes them, with progress."""
    from .. import console
    with console.progress("calibration", len(images)) as advance:
        for i in range(len(images)):
            yield [images[i:i + 1]]
            advance(image=i + 1)


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
    cache = ctx.cache("tflite")
    if "calibrated" not in cache:
        def run():
            converter = _converter(ctx, ExportOptions(quantization="int8"))
            converter._experimental_calibrate_only = True  # noqa: SLF001 - the step QuantizationDebugger uses
            return converter.convert()
        cache["calibrated"] = _run_converter(run)
    return cache["calibrated"]


def quantize_calibrated(calibrated: bytes, opts) -> bytes:
    """int8 of a calibrated model with ``opts.float_layers`` (node names) left in float: the
    converter's own quantization pass with a denylist, as TFLite's QuantizationDebugger runs it."""
    from tensorflow.lite.python.convert import mlir_quantize
    return _run_converter(lambda: mlir_quantize(calibrated, disable_per_channel=not opts.per_channel,
                                                denylisted_nodes=list(opts.float_layers)))


def convert(ctx, opts) -> bytes:
    """The bare flatbuffer (no metadata) for ``ctx.model`` under ``opts``, converted once per
    export context: the --max-drop search measures the file it then exports, and the ONNX
    from-tflite variant reuses the int8 .tflite.  An imported model with a converter of its
    own (PyTorch: litert-torch) makes it itself."""
    own = imported_converter(ctx.model, "tflite")
    flatbuffers = ctx.cache("tflite").setdefault("flatbuffers", {})    # ExportOptions -> bytes
    if own is not None and opts not in flatbuffers:
        flatbuffers[opts] = _run_converter(lambda: own(opts, ctx.calibration))
    if opts not in flatbuffers:
        flatbuffers[opts] = (quantize_calibrated(calibrated_model(ctx), opts) if opts.float_layers
                             else _run_converter(lambda: _converter(ctx, opts).convert()))
    return flatbuffers[opts]


def export_tflite(ctx, path: Path, opts):
    """The converted graph with the training normalization folded in front (the file takes
    raw pixels) and the metadata an app or task library reads."""
    from ._tflite_metadata import embed_metadata
    data = fold_normalization(convert(ctx, opts), ctx.norm.mean, ctx.norm.std)
    facts = ctx.model_facts(opts, folded=True)
    graph_facts = {k: facts.pop(k) for k in ("input_size", "mean", "std", "labels", "input_dtype", "output_is_logits")}
    data = embed_metadata(
        data, name=ctx.name, description=ctx.description or f"CIFAR classifier ({len(ctx.class_names)} classes)",
        version=__version__, author="cifar-edge", **graph_facts, extra=facts)
    Path(path).write_bytes(data)


# --- normalization folded into the graph ------------------------------------------------
#
# Apps and task libraries (MediaPipe Tasks refuses per-channel normalization) get a file
# that takes raw pixels: a leading 1x1 depthwise convolution computes the training
# pipeline's (pixel - mean) / std per channel inside the graph.  It is added to the
# converted flatbuffer, so the file is the very graph export's checks and the --max-drop
# search measured, with one exact op in front.

PIXEL_SCALE = 1.0          # integer inputs hold raw pixels: real = 1.0 * (q - zero_point)
PIXEL_ZERO = {"uint8": 0, "int8": -128}


def fold_normalization(tflite_bytes: bytes, mean, std) -> bytes:
    """The model with ``(pixel - mean) / std`` as its first op, taking pixels in 0..255.

    Float input: a float depthwise op in front.  Integer input: the input holds raw pixels
    (scale 1, zero point 0 for uint8, -128 for int8) and an int8 depthwise op with one
    per-channel weight (exactly 127 levels) and an int32 bias writes the tensor the graph
    took before, with its own scale: integer-only graphs stay integer-only."""
    from ai_edge_litert import schema_py_generated as tfl
    from ai_edge_litert.tools import flatbuffer_utils

    from ._tflite_metadata import pack_model
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))
    graph = model.subgraphs[0]
    weight = 1.0 / np.asarray(std, np.float64)
    bias = -np.asarray(mean, np.float64) * weight
    normalized = graph.inputs[0]                  # the tensor the graph reads normalized images from
    image = graph.tensors[normalized]
    raw = _clone_tensor(image, tfl)
    kind = {tfl.TensorType.FLOAT32: "float32", tfl.TensorType.INT8: "int8", tfl.TensorType.UINT8: "uint8"}.get(image.type)
    if kind is None:
        raise CifarEdgeError(f"cannot fold normalization into a model with input tensor type {image.type}; "
                             "export float32, int8 or uint8 I/O")

    def add_tensor(tensor, data=None) -> int:
        if data is None:
            tensor.buffer = 0                     # activations: the empty buffer, as the converter does
        else:
            buffer = tfl.BufferT()
            buffer.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            model.buffers.append(buffer)
            tensor.buffer = len(model.buffers) - 1
        graph.tensors.append(tensor)
        return len(graph.tensors) - 1

    first_op, dw_input = 0, None
    if kind == "float32":
        w = _constant(tfl, b"normalization/scale", [1, 1, 1, 3], tfl.TensorType.FLOAT32)
        b = _constant(tfl, b"normalization/shift", [3], tfl.TensorType.FLOAT32)
        w_data, b_data, version = weight.astype(np.float32), bias.astype(np.float32), 1
        dw_input = add_tensor(raw)
        dw_output = normalized
    else:
        raw.quantization = _quantization(tfl, [PIXEL_SCALE], [PIXEL_ZERO[kind]])
        int8_raw = raw if kind == "int8" else _clone_tensor(image, tfl, b"/pixels_int8")
        if kind == "uint8":
            # uint8 I/O: the converter's QUANTIZE (uint8 -> int8) now requantizes the raw pixels,
            # and the depthwise op writes the int8 tensor it used to write.
            consumers = [op for op in graph.operators if normalized in list(op.inputs)]
            codes = [max(model.operatorCodes[op.opcodeIndex].builtinCode,
                         model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode) for op in consumers]
            if codes != [tfl.BuiltinOperator.QUANTIZE]:
                raise CifarEdgeError("uint8 input without its single QUANTIZE op; cannot fold normalization: "
                                     "export --io int8 or float")
            int8_raw.type = tfl.TensorType.INT8
            int8_raw.quantization = _quantization(tfl, [PIXEL_SCALE], [PIXEL_ZERO["int8"]])
            quantize = consumers[0]
            dw_output = quantize.outputs[0]
            graph.inputs = [add_tensor(raw)]
            quantize.inputs = [graph.inputs[0]]
            dw_input = add_tensor(int8_raw)
            quantize.outputs = [dw_input]
            first_op = graph.operators.index(quantize) + 1
        else:
            dw_input, dw_output = add_tensor(raw), normalized
        out_q = graph.tensors[dw_output].quantization
        w_scale = weight / 127.0                  # one weight per channel: exactly 127 levels
        w = _constant(tfl, b"normalization/scale", [1, 1, 1, 3], tfl.TensorType.INT8,
                      _quantization(tfl, w_scale, [0, 0, 0], axis=3))
        b = _constant(tfl, b"normalization/shift", [3], tfl.TensorType.INT32,
                      _quantization(tfl, PIXEL_SCALE * w_scale, [0, 0, 0]))
        w_data = np.full(3, 127, np.int8)
        b_data = np.round(bias / (PIXEL_SCALE * w_scale)).astype(np.int32)
        version = 3                               # int8 with per-channel weights
        if out_q is None or out_q.scale is None or len(out_q.scale) != 1:
            raise CifarEdgeError("the model's integer input has no single scale; cannot fold normalization")
    if kind != "uint8":
        graph.inputs = [dw_input]
    op = tfl.OperatorT()
    op.opcodeIndex = _opcode(model, tfl, tfl.BuiltinOperator.DEPTHWISE_CONV_2D, version)
    op.inputs = [dw_input, add_tensor(w, w_data), add_tensor(b, b_data)]
    op.outputs = [dw_output]
    op.builtinOptionsType = tfl.BuiltinOptions.DepthwiseConv2DOptions
    options = tfl.DepthwiseConv2DOptionsT()
    options.padding, options.strideW, options.strideH, options.depthMultiplier = tfl.Padding.VALID, 1, 1, 1
    options.dilationWFactor = options.dilationHFactor = 1
    op.builtinOptions = options
    graph.operators.insert(first_op, op)
    if dw_output == normalized:                   # the new input takes the old one's name
        image.name += b"/normalized"
    for signature in model.signatureDefs or []:   # the signature runner must feed the new input
        for entry in signature.inputs or []:
            if entry.tensorIndex == normalized:
                entry.tensorIndex = graph.inputs[0]
    return pack_model(model)


def retype_io(tflite_bytes: bytes, io: str) -> bytes:
    """An int8-I/O model (what litert-torch's PT2E int8 writes) with ``io`` input and output, as
    TensorFlow's converter writes them: float32 (a QUANTIZE in front, a DEQUANTIZE behind) or uint8
    (a QUANTIZE each way, zero point moved by 128).  int8 returns the model as it is."""
    if io == "int8":
        return tflite_bytes
    from ai_edge_litert import schema_py_generated as tfl
    from ai_edge_litert.tools import flatbuffer_utils

    from ._tflite_metadata import pack_model
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))
    graph = model.subgraphs[0]
    old_in, old_out = graph.inputs[0], graph.outputs[0]
    for index in (old_in, old_out):
        q = graph.tensors[index].quantization
        if graph.tensors[index].type != tfl.TensorType.INT8 or q is None or q.scale is None or len(q.scale) != 1:
            raise CifarEdgeError("the int8 model's input or output is not one int8 tensor with one scale; "
                                 "cannot give it float or uint8 I/O: export --io int8")
    kind = tfl.TensorType.FLOAT32 if io == "float" else tfl.TensorType.UINT8

    def outer(index: int) -> int:
        inner = graph.tensors[index]
        tensor = _clone_tensor(inner, tfl)
        tensor.type, tensor.buffer = kind, 0
        tensor.quantization = None if io == "float" else _quantization(
            tfl, inner.quantization.scale, np.asarray(inner.quantization.zeroPoint) + 128)
        inner.name += b"/int8"
        graph.tensors.append(tensor)
        return len(graph.tensors) - 1

    new_in, new_out = outer(old_in), outer(old_out)

    def operator(builtin: int, src: int, dst: int):
        op = tfl.OperatorT()
        op.opcodeIndex = _opcode(model, tfl, builtin, 2)
        op.inputs, op.outputs = [src], [dst]
        return op

    graph.operators.insert(0, operator(tfl.BuiltinOperator.QUANTIZE, new_in, old_in))
    graph.operators.append(operator(tfl.BuiltinOperator.DEQUANTIZE if io == "float" else tfl.BuiltinOperator.QUANTIZE,
                                    old_out, new_out))
    graph.inputs, graph.outputs = [new_in], [new_out]
    for signature in model.signatureDefs or []:
        for entry in [*(signature.inputs or []), *(signature.outputs or [])]:
            entry.tensorIndex = {old_in: new_in, old_out: new_out}.get(entry.tensorIndex, entry.tensorIndex)
    return pack_model(model)


def _clone_tensor(tensor, tfl, suffix: bytes = b""):
    out = tfl.TensorT()
    out.shape, out.type, out.name = list(tensor.shape), tensor.type, tensor.name + suffix
    out.shapeSignature = None if tensor.shapeSignature is None else list(tensor.shapeSignature)
    return out


def _constant(tfl, name: bytes, shape, dtype, quantization=None):
    tensor = tfl.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.quantization = name, list(shape), dtype, quantization
    return tensor


def _quantization(tfl, scale, zero_point, axis: int = 0):
    q = tfl.QuantizationParametersT()
    q.scale = np.asarray(scale, np.float32)
    q.zeroPoint = np.asarray(zero_point, np.int64)
    q.quantizedDimension = axis
    return q


def _opcode(model, tfl, builtin: int, version: int) -> int:
    """Index of the operator code for ``builtin`` (added, or its version raised, as needed)."""
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and not code.customCode:
            code.version = max(code.version, version)
            return i
    code = tfl.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = builtin
    code.version = version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1
