"""QAT of depthwise convolutions: each output channel gets its own int8 range, as PTQ gives
it, and the converted .tflite keeps those ranges and computes what the QAT model computes.

tfmot 0.8 shares one range across a depthwise kernel's channels; with channels of very
different magnitudes (MobileNetV2's BatchNorm-folded imported weights), the small ones round
to zero and the QAT model lost 3.65 points against its parent where PTQ lost none."""
from __future__ import annotations

import numpy as np
import pytest

from cifar_edge._tf import keras, tf
from cifar_edge.models.qat_scheme import DepthwisePerChannelQuantizer, PerChannelQuantizeScheme
from cifar_edge.compress.quantize import init_activation_ranges, quantize
from cifar_edge.models.tfmot_compat import reloadable, tfmot
from cifar_edge.formats.tflite import open_litert

CHANNEL_SCALES = np.array([1.0, 0.1, 0.01, 0.002], np.float32)   # per-channel magnitudes of the depthwise kernel


def _depthwise_kernel() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.uniform(-1, 1, (3, 3, 4, 1)) * CHANNEL_SCALES[None, None, :, None]).astype(np.float32)


def _fake_quantized(quantizer, kernel: np.ndarray) -> np.ndarray:
    holder = keras.layers.Layer()
    weights = quantizer.build(kernel.shape, "depthwise_kernel", holder)
    return np.asarray(quantizer(tf.constant(kernel), training=True, weights=weights))


def _relative_error_per_channel(kernel, quantized) -> np.ndarray:
    err = np.abs(quantized - kernel).max(axis=(0, 1, 3))
    return err / np.abs(kernel).max(axis=(0, 1, 3))


def test_every_depthwise_channel_keeps_its_own_range():
    kernel = _depthwise_kernel()
    ours = _relative_error_per_channel(kernel, _fake_quantized(DepthwisePerChannelQuantizer(), kernel))
    assert ours.max() < 0.01, ours            # half a step of 127 levels of each channel's own range
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit.default_8bit_quantizers import (
        Default8BitConvWeightsQuantizer)
    shared = _relative_error_per_channel(kernel, _fake_quantized(Default8BitConvWeightsQuantizer(), kernel))
    assert shared[-1] > 0.2, shared           # tfmot's shared range rounds the smallest channel away


def _model():
    inputs = keras.Input((12, 12, 4))
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(inputs)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    x = keras.layers.ReLU(6.0, name="dw_relu")(x)
    x = keras.layers.Conv2D(8, 1, name="pw")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(5, name="logits")(x))
    model.get_layer("dw").set_weights([_depthwise_kernel()])
    # BatchNorm brings every channel back to the same scale (as a trained network's next layers
    # do), so each channel matters to the output and no activation range hides a small one
    model.get_layer("dw_bn").set_weights([1 / CHANNEL_SCALES, np.zeros(4), np.zeros(4), np.ones(4)])
    return model


def _qat(model, scheme, images):
    wrapped, _ = quantize(model, scheme)
    for layer in wrapped.layers:      # as optimize keeps a transfer model's BatchNorm: in inference mode
        if isinstance(getattr(layer, "layer", layer), keras.layers.BatchNormalization):
            getattr(layer, "layer", layer).trainable = False
    wrapped(images[:8], training=True)          # one training-mode pass sets the weight ranges
    init_activation_ranges(wrapped, model, images)
    return reloadable(wrapped)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).normal(0, 1, (64, 12, 12, 4)).astype(np.float32)


def test_qat_model_tracks_float_where_the_shared_range_does_not(images):
    model = _model()
    reference = model.predict(images, verbose=0)
    ours = _qat(model, PerChannelQuantizeScheme(), images).predict(images, verbose=0)
    shared = _qat(model, tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme(), images).predict(
        images, verbose=0)
    error = lambda out: np.abs(out - reference).mean() / np.abs(reference).mean()  # noqa: E731
    assert error(ours) < 0.1, error(ours)
    assert error(shared) > 2 * error(ours), (error(shared), error(ours))


def test_converted_file_quantizes_depthwise_per_channel_and_matches_the_qat_model(images):
    qat = _qat(_model(), PerChannelQuantizeScheme(), images)
    converter = tf.lite.TFLiteConverter.from_keras_model(qat)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([images[i:i + 1]] for i in range(16))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    data = converter.convert()
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_content=data)
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    (op,) = [o for o in interpreter._get_ops_details() if o["op_name"] == "DEPTHWISE_CONV_2D"]  # noqa: SLF001
    weights = details[op["inputs"][1]]
    scales = np.asarray(weights["quantization_parameters"]["scales"])
    assert weights["dtype"] == np.int8 and len(scales) == 4
    expected = qat.predict(images, verbose=0)
    got = open_litert(data, threads=1).predict(images)
    assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.9
    assert np.abs(got - expected).mean() < 0.1 * np.abs(expected).mean()
