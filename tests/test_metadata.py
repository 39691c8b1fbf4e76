"""TFLite metadata: the standard TFLITE_METADATA entry (decoded with the schema's generated
reader), the labels.txt zip appended to the file, the plain `cifar_edge` JSON entry, and a
model that still runs bit-identically in LiteRT."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as tfl
from ai_edge_litert.interpreter import Interpreter

from cifar_edge._tf import keras, tf
from cifar_edge.errors import CifarEdgeError
from cifar_edge.export import _metadata_schema_fb as md_fb
from cifar_edge.export.metadata import embed_metadata, read_metadata

# The int8 converter warns about input statistics it does not need here.
pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning")

LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MEAN = (125.3, 123.0, 113.9)
STD = (63.0, 62.1, 66.7)


@pytest.fixture(scope="module")
def models():
    """A tiny CIFAR-shaped classifier as float and full-int8 (int8 I/O) flatbuffers."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))

    float_bytes = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.normal(size=(1, 32, 32, 3)).astype(np.float32)]
                                                for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return {"float32": float_bytes, "int8": converter.convert()}


def _embed(raw, input_dtype="float32", **overrides):
    kwargs = dict(name="tiny-cnn", description="A test classifier", version="0.1.0", author="cifar-edge tests",
                  input_size=32, mean=MEAN, std=STD, labels=LABELS, input_dtype=input_dtype,
                  output_is_logits=True, extra={"quantization": input_dtype, "qat": False})
    kwargs.update(overrides)
    return embed_metadata(raw, **kwargs)


def _entries(data: bytes) -> dict[str, bytes]:
    model = tfl.Model.GetRootAs(data, 0)
    return {model.Metadata(i).Name().decode(): model.Buffers(model.Metadata(i).Buffer()).DataAsNumpy().tobytes()
            for i in range(model.MetadataLength())}


def _run(data: bytes, x: np.ndarray) -> np.ndarray:
    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_read_back_every_field(models, tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(_embed(models["float32"]))
    meta = read_metadata(path)

    assert meta["cifar_edge"] == {"input_size": 32, "mean": list(MEAN), "std": list(STD), "input_dtype": "float32",
                                  "output_is_logits": True, "labels": LABELS, "quantization": "float32",
                                  "qat": False}
    std_md = meta["tflite_metadata"]
    assert (std_md["name"], std_md["description"], std_md["version"], std_md["author"], std_md["license"]) == (
        "tiny-cnn", "A test classifier", "0.1.0", "cifar-edge tests", "Apache-2.0")
    assert std_md["min_parser_version"] == "1.0.0"
    image = std_md["input"]
    assert (image["name"], image["color_space"]) == ("image", "RGB")
    assert image["mean"] == pytest.approx(MEAN) and image["std"] == pytest.approx(STD)
    assert image["stats"]["min"] == pytest.approx([-m / s for m, s in zip(MEAN, STD)], rel=1e-6)
    assert image["stats"]["max"] == pytest.approx([(255 - m) / s for m, s in zip(MEAN, STD)], rel=1e-6)
    assert std_md["output"]["name"] == "logits"
    assert std_md["output"]["associated_files"] == [{"name": "labels.txt", "type": "TENSOR_AXIS_LABELS",
                                                     "description": "Labels for categories that the model can "
                                                                    "recognize.", "locale": None}]
    assert meta["associated_files"] == {"labels.txt": "\n".join(LABELS) + "\n"}
    assert read_metadata(path.read_bytes()) == meta


def test_standard_buffer_decodes_with_the_generated_schema_code(models):
    """Walk TFLITE_METADATA with the flatc-generated reader only, the way the Task library's
    MetadataExtractor walks it: identifier, one subgraph, the union types, the vectors."""
    buf = _entries(_embed(models["float32"], output_is_logits=False))["TFLITE_METADATA"]
    assert md_fb.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0)
    root = md_fb.ModelMetadata.GetRootAs(buf, 0)
    assert root.MinParserVersion() == b"1.0.0" and root.License() == b"Apache-2.0"
    assert root.SubgraphMetadataLength() == 1
    graph = root.SubgraphMetadata(0)
    assert (graph.InputTensorMetadataLength(), graph.OutputTensorMetadataLength()) == (1, 1)
    # Nothing newer than schema 1.0.0 may be set, or min_parser_version would have to rise.
    assert graph.InputProcessUnitsIsNone() and graph.OutputProcessUnitsIsNone()
    assert graph.InputTensorGroupsIsNone() and graph.OutputTensorGroupsIsNone() and graph.CustomMetadataIsNone()

    image = graph.InputTensorMetadata(0)
    assert image.Content().ContentPropertiesType() == md_fb.ContentProperties.ImageProperties
    props = md_fb.ImageProperties()
    props.Init(image.Content().ContentProperties().Bytes, image.Content().ContentProperties().Pos)
    assert props.ColorSpace() == md_fb.ColorSpaceType.RGB
    assert image.ProcessUnitsLength() == 1
    unit = image.ProcessUnits(0)
    assert unit.OptionsType() == md_fb.ProcessUnitOptions.NormalizationOptions
    norm = md_fb.NormalizationOptions()
    norm.Init(unit.Options().Bytes, unit.Options().Pos)
    np.testing.assert_allclose(norm.MeanAsNumpy(), MEAN, rtol=1e-6)
    np.testing.assert_allclose(norm.StdAsNumpy(), STD, rtol=1e-6)

    scores = graph.OutputTensorMetadata(0)
    assert scores.Name() == b"probability"
    assert scores.Content().ContentPropertiesType() == md_fb.ContentProperties.FeatureProperties
    np.testing.assert_array_equal(scores.Stats().MinAsNumpy(), [0.0])
    np.testing.assert_array_equal(scores.Stats().MaxAsNumpy(), [1.0])
    assert scores.AssociatedFilesLength() == 1
    labels = scores.AssociatedFiles(0)
    assert (labels.Name(), labels.Type()) == (b"labels.txt", md_fb.AssociatedFileType.TENSOR_AXIS_LABELS)


def test_labels_are_a_zip_appended_to_the_flatbuffer(models, tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(_embed(models["float32"]))
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == ["labels.txt"]
        assert zf.read("labels.txt").decode().splitlines() == LABELS


def test_plain_json_entry(models):
    entries = _entries(_embed(models["int8"], input_dtype="int8"))
    assert {"TFLITE_METADATA", "cifar_edge"} <= set(entries)
    plain = json.loads(entries["cifar_edge"].decode("utf-8"))
    assert plain["labels"] == LABELS and plain["input_dtype"] == "int8" and plain["input_size"] == 32


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_model_runs_identically_after_embedding(models, dtype):
    raw = models[dtype]
    embedded = _embed(raw, input_dtype=dtype)
    rng = np.random.default_rng(1)
    if dtype == "int8":
        x = rng.integers(-128, 128, size=(1, 32, 32, 3), dtype=np.int8)
    else:
        x = rng.normal(size=(1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(_run(raw, x), _run(embedded, x))
    assert Interpreter(model_content=embedded).get_signature_list() == \
        Interpreter(model_content=raw).get_signature_list()
    # The converter's own metadata entries (min_runtime_version, ...) survive.
    assert set(_entries(raw)) <= set(_entries(embedded))


def test_weight_buffers_stay_16_byte_aligned(models):
    data = _embed(models["int8"], input_dtype="int8")
    model = tfl.Model.GetRootAs(data, 0)
    starts = [model.Buffers(i)._tab.Vector(model.Buffers(i)._tab.Offset(4)) for i in range(model.BuffersLength()) if model.Buffers(i).DataLength()]
    assert starts and all(start % 16 == 0 for start in starts)


def test_int8_metadata_follows_the_writer(models):
    meta = read_metadata(_embed(models["int8"], input_dtype="int8"))
    image = meta["tflite_metadata"]["input"]
    assert image["mean"] == pytest.approx(MEAN)
    # The image classifier writer records no range for int8 tensors.
    assert image["stats"] == {"min": None, "max": None}
    assert meta["tflite_metadata"]["output"]["stats"] == {"min": None, "max": None}


def test_embedding_again_replaces_instead_of_stacking(models):
    once = _embed(models["float32"])
    twice = _embed(once, labels=[label.upper() for label in LABELS])
    assert len(twice) == len(once)
    model = tfl.Model.GetRootAs(twice, 0)
    names = [model.Metadata(i).Name() for i in range(model.MetadataLength())]
    assert names.count(b"TFLITE_METADATA") == names.count(b"cifar_edge") == 1
    with zipfile.ZipFile(io.BytesIO(twice)) as zf:
        assert zf.namelist() == ["labels.txt"]
    assert read_metadata(twice)["cifar_edge"]["labels"] == [label.upper() for label in LABELS]


def test_model_without_metadata_reads_as_empty(models):
    meta = read_metadata(models["float32"])
    assert meta == {"cifar_edge": None, "tflite_metadata": None, "associated_files": {}}


@pytest.mark.parametrize("data", [b"", b"not a model at all", b"\x00" * 4 + b"TFL3" + b"\xff" * 40],
                         ids=["empty", "text", "garbled"])
def test_non_tflite_input_is_a_clear_error(data):
    with pytest.raises(CifarEdgeError, match="cifar-edge export --format tflite") as err:
        _embed(data)
    assert "\n" not in str(err.value)
    with pytest.raises(CifarEdgeError, match="cifar-edge export --format tflite"):
        read_metadata(data)


@pytest.mark.parametrize("overrides, message", [
    ({"labels": LABELS[:9]}, "9 labels for a model with 10 outputs"),
    ({"labels": LABELS[:9] + ["two\nlines"]}, "single-line"),
    ({"input_dtype": "int8"}, "pass 'float32'"),
    ({"input_size": 64}, "takes 32x32"),
    ({"std": (1.0, 0.0, 1.0)}, "std > 0"),
    ({"mean": (0.5,)}, "one value per RGB channel"),
    ({"extra": {"labels": []}}, "may not redefine labels"),
    ({"extra": {"when": object()}}, "JSON-serializable"),
])
def test_inconsistent_metadata_is_refused(models, overrides, message):
    with pytest.raises(CifarEdgeError, match=message):
        _embed(models["float32"], **overrides)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CifarEdgeError, match="cannot read"):
        read_metadata(tmp_path / "nope.tflite")
