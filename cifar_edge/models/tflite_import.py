"""Keras MobileNetV2 1.0 ImageNet weights rebuilt from an int8 TFLite MobileNetV2.

These machines cannot download keras' float weights, but ``../shared/weights`` holds two of
Google's quantized MobileNetV2 1.0/224 files: the TF1-slim QAT ``mobilenet_v2_1.0_224_quant``
(uint8) and the TF2 post-training ``tf2_mobilenet_v2_1.0_224_ptq`` (int8, per-channel); the QAT
one tracks a float forward pass more closely (measured: pooled-feature cosine 0.987 vs 0.972 on
real CIFAR images at 224).  Their 53 convolutions (36 CONV_2D, 17 DEPTHWISE_CONV_2D) run in the
same order as keras' 52 backbone convolutions plus the 1x1
logits conv, so they map one to one by position.  Each kernel is dequantized with its
per-channel scales; BatchNorm was folded into the convs, so each keras BN layer becomes an
identity (gamma 1, mean 0, var 1 - eps) whose beta carries the folded bias.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CifarEdgeError

IMAGENET_CLASSES = 1001          # TF-slim/Hub heads: index 0 is "background"


def _dequantize(tensor: np.ndarray, q: dict) -> np.ndarray:
    """real = scale * (q - zero_point), per channel along the tensor's quantized dimension."""
    axis = int(q.get("quantized_dimension", 0))
    scales, zeros = np.asarray(q["scales"], np.float64), np.asarray(q["zero_points"], np.float64)
    if scales.size == 0:
        raise CifarEdgeError("a weight tensor of the .tflite carries no quantization scales; "
                             "pass an int8-quantized MobileNetV2 .tflite")
    shape = [1] * tensor.ndim
    if scales.size > 1:
        shape[axis] = -1
    return ((tensor.astype(np.float64) - zeros.reshape(shape)) * scales.reshape(shape)).astype(np.float32)


def read_tflite_convs(path) -> list[dict]:
    """[{op, kernel (keras layout), bias}] for every conv of the .tflite, in execution order."""
    from ai_edge_litert.interpreter import Interpreter
    path = Path(path)
    if not path.is_file():
        raise CifarEdgeError(f"{path} not found; pass the MobileNetV2 int8 .tflite "
                             "(../shared/weights/mobilenet_v2_1.0_224_imagenet_tflite_quant/)")
    try:
        interp = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
        ops = interp._get_ops_details()   # noqa: SLF001 - the only way to walk the graph in op order
    except (ValueError, RuntimeError) as e:
        raise CifarEdgeError(f"LiteRT cannot read {path} ({str(e).splitlines()[0][:100]}); pass a .tflite file") from None
    details = {d["index"]: d for d in interp.get_tensor_details()}
    convs = []
    for op in ops:
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        w_index, b_index = op["inputs"][1], op["inputs"][2]
        w = interp.get_tensor(w_index)
        if op["op_name"] == "CONV_2D":      # (out, kh, kw, in) -> keras (kh, kw, in, out)
            kernel = _dequantize(w, details[w_index]["quantization_parameters"]).transpose(1, 2, 3, 0)
        else:                                # (1, kh, kw, in * mult) -> keras (kh, kw, in, mult)
            kernel = _dequantize(w, details[w_index]["quantization_parameters"])[0][..., None]
        if b_index < 0:
            raise CifarEdgeError(f"{path}: a convolution has no bias (BatchNorm not folded); pass the int8 "
                                 "MobileNetV2 .tflite from ../shared/weights")
        bias = _dequantize(interp.get_tensor(b_index), details[b_index]["quantization_parameters"])
        convs.append({"op": op["op_name"], "name": details[w_index]["name"].split(";")[0], "kernel": kernel,
                      "bias": bias.reshape(-1)})
    return convs


def import_mobilenet_v2(model, tflite_path, include_head: bool = False) -> dict:
    """Load the .tflite's weights into keras MobileNetV2 1.0 ``model`` (built with the layer
    names of ``keras.applications.MobileNetV2``).  With ``include_head``, ``model`` must end
    in a Dense(1001) named ``logits``, which gets the ImageNet head.  Returns what was set."""
    from .._tf import keras
    convs = read_tflite_convs(tflite_path)
    layers = [layer for layer in model.layers if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D")]
    head = convs[len(layers)] if len(convs) == len(layers) + 1 else None
    if len(convs) - (head is not None) != len(layers):
        raise CifarEdgeError(f"{tflite_path} has {len(convs)} convolutions but this model has {len(layers)}; "
                             "pass MobileNetV2 1.0 (alpha 1.0) and its int8 .tflite")
    by_name = {layer.name: layer for layer in model.layers}
    for conv, layer in zip(convs, layers):
        kind = "CONV_2D" if type(layer).__name__ == "Conv2D" else "DEPTHWISE_CONV_2D"
        target = layer.get_weights()[0]
        if conv["op"] != kind or conv["kernel"].shape != target.shape:
            raise CifarEdgeError(f"{tflite_path}: {conv['name']} ({conv['op']} {conv['kernel'].shape}) does not fit "
                                 f"layer {layer.name} ({kind} {target.shape}); pass MobileNetV2 1.0 at alpha 1.0")
        layer.set_weights([conv["kernel"]])
        bn = by_name.get(_bn_name(layer.name))
        if not isinstance(bn, keras.layers.BatchNormalization):
            raise CifarEdgeError(f"layer {layer.name} has no BatchNormalization after it; "
                                 "build the model with keras.applications.MobileNetV2 layer names")
        n = conv["bias"].size
        bn.set_weights([np.ones(n, np.float32), conv["bias"], np.zeros(n, np.float32),
                        np.full(n, 1.0 - bn.epsilon, np.float32)])
    if include_head:
        if head is None:
            raise CifarEdgeError(f"{tflite_path} has no classification head to import")
        dense = model.get_layer("logits")
        dense.set_weights([head["kernel"].reshape(-1, head["kernel"].shape[-1]), head["bias"]])
    return {"convs": len(layers), "head": include_head}


def _bn_name(conv_name: str) -> str:
    """keras MobileNetV2's BN layer after each conv: Conv1 -> bn_Conv1, Conv_1 -> Conv_1_bn, else NAME_BN."""
    if conv_name == "Conv1":
        return "bn_Conv1"
    if conv_name == "Conv_1":
        return "Conv_1_bn"
    return f"{conv_name}_BN"


def save_imported_backbone(tflite_path, out) -> dict:
    """keras MobileNetV2 1.0 without top, weights from ``tflite_path``, saved to ``out`` (.h5,
    atomically): the file `train --weights PATH` loads, at any input size."""
    from .._tf import keras
    from ..fileio import atomic_path
    base = keras.applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False, weights=None, alpha=1.0)
    info = import_mobilenet_v2(base, tflite_path)
    with atomic_path(out) as tmp:
        base.save_weights(str(tmp), save_format="h5")
    return info
