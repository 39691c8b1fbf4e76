"""The training normalization folded into the exported graph (tflite.fold_normalization):
the file takes raw pixels and computes exactly what the bare conversion computed on
normalized images, integer-only graphs stay integer-only, and integer inputs hold the
pixels themselves (scale 1)."""
from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from cifar_edge._tf import keras
from cifar_edge.data import Normalization
from cifar_edge.formats import ExportContext, ExportOptions
from cifar_edge.formats._tflite_convert import convert, fold_normalization

pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning")

NORM = Normalization((125.3, 123.0, 113.9), (63.0, 62.1, 66.7))
VARIANTS = {"float32": ExportOptions(), "int8": ExportOptions(quantization="int8"),
            "int8-io-int8": ExportOptions(quantization="int8", io="int8"), "int8-io-uint8": ExportOptions(quantization="int8", io="uint8")}


@pytest.fixture(scope="module")
def converted():
    """A small conv net with 'same' padding (where folding into the first conv would be
    inexact at the border), converted bare: {variant: bytes}, and real-looking pixels."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    pixels = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3)).astype(np.uint8)
    ctx = ExportContext(model=model, class_names=[str(i) for i in range(10)], norm=NORM, input_size=32,
                        calibration=NORM.apply_numpy(pixels))
    return {name: convert(ctx, opts) for name, opts in VARIANTS.items()}, pixels


def _run(data: bytes, x: np.ndarray):
    interp = Interpreter(model_content=data, num_threads=1)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], list(x.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x.astype(inp["dtype"]))
    interp.invoke()
    y = interp.get_tensor(out["index"]).astype(np.float32)
    scale, zero = out["quantization"]
    return (y - zero) * scale if scale else y, inp, out


def _normalized_input(x: np.ndarray, detail) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero), info.min, info.max)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_folded_file_on_pixels_computes_what_the_bare_file_did(converted, variant):
    files, pixels = converted
    bare = files[variant]
    detail = Interpreter(model_content=bare).get_input_details()[0]
    expected, _, out = _run(bare, _normalized_input(NORM.apply_numpy(pixels), detail))
    raw = pixels.astype(np.int16) - 128 if detail["dtype"] == np.int8 else pixels
    got, inp, _ = _run(fold_normalization(bare, NORM.mean, NORM.std), raw)
    if variant == "float32":
        np.testing.assert_allclose(got, expected, atol=1e-5)
    elif variant == "int8":                   # float I/O: the fold runs in float before the quantize op
        np.testing.assert_array_equal(got, expected)
    else:                                     # integer I/O: an int8 op, its rounding at most one step off
        assert np.abs(got - expected).max() <= 1.001 * out["quantization"][0]
        assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.95
    assert inp["quantization"] == {"float32": (0.0, 0), "int8": (1.0, -128), "uint8": (1.0, 0)}[np.dtype(inp["dtype"]).name]


@pytest.mark.parametrize("variant", ["int8-io-int8", "int8-io-uint8"])
def test_integer_only_graphs_stay_integer_only(converted, variant):
    bare = converted[0][variant]
    types = lambda data: {d["dtype"] for d in Interpreter(model_content=data).get_tensor_details()}  # noqa: E731
    assert np.float32 not in types(bare)
    assert types(fold_normalization(bare, NORM.mean, NORM.std)) <= types(bare) | {np.dtype(np.int32)}


def test_signature_runner_feeds_the_pixel_input(converted):
    files, pixels = converted
    folded = fold_normalization(files["float32"], NORM.mean, NORM.std)
    runner = Interpreter(model_content=folded).get_signature_runner()
    (name,) = runner.get_input_details()
    got = next(iter(runner(**{name: pixels[:1].astype(np.float32)}).values()))
    np.testing.assert_allclose(got, _run(folded, pixels[:1])[0], atol=1e-6)


def test_variants_convert_from_one_saved_model(monkeypatch):
    """Every variant of an export converts from one SavedModel (from_keras_model would save the
    model anew each time) and computes what from_keras_model's file computes."""
    from cifar_edge._tf import tf
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(keras.layers.Conv2D(2, 3)(inputs))))
    saves = []
    real_save = tf.saved_model.save
    monkeypatch.setattr(tf.saved_model, "save", lambda *a, **k: saves.append(a[1]) or real_save(*a, **k))
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype(np.float32)
    ctx = ExportContext(model=model, class_names=list("abcd"), norm=NORM, input_size=8, calibration=x)
    files = [convert(ctx, opts) for opts in (ExportOptions(), ExportOptions(quantization="fp16"), ExportOptions(quantization="int8"))]
    assert len(saves) == 1 and all(files)
    reference = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    np.testing.assert_allclose(_run(files[0], x)[0], _run(reference, x)[0], atol=1e-6)
