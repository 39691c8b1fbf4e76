"""A .tflite that LiteRT cannot run must give an error, not kill the process.

LiteRT aborts (SIGABRT) preparing an int8 ADD whose output range is all zeros and whose
inputs are not: a BatchNorm after pooling (a separate MUL and ADD) followed by a ReLU that
never fires on the calibration images.  A clustered tiny CNN produced exactly this."""
from __future__ import annotations

import numpy as np
import pytest

from cifar_edge._tf import keras, tf
from cifar_edge.errors import CifarEdgeError
from cifar_edge.formats.tflite import check_litert_loads, open_litert

L = keras.layers


def _int8(model, images) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([images[i:i + 1]] for i in range(len(images)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def _model(bn_offset: float):
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, name="conv")(inputs)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.Conv2D(8, 3, name="conv2")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(4)(x))
    model.get_layer("bn").set_weights([np.full(8, 2.0), np.full(8, bn_offset), np.zeros(8), np.ones(8)])
    return model


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(-1, 1, (32, 16, 16, 3)).astype(np.float32)


def test_a_file_litert_would_abort_on_is_an_error_naming_the_dead_layers(images):
    data = _int8(_model(bn_offset=-100.0), images)       # every ReLU input negative: its output always 0
    with pytest.raises(CifarEdgeError, match=r"LiteRT aborts .* \(signal 6\).*all-zero range.*relu"):
        check_litert_loads(data, "tflite-int8")


def test_a_healthy_file_passes_and_runs(images):
    data = _int8(_model(bn_offset=0.0), images)
    check_litert_loads(data, "tflite-int8")
    assert open_litert(data, threads=1).predict(images).shape == (32, 4)
