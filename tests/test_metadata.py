"""TFLite metadata: the standard TFLITE_METADATA entry (walked by the schema's field slots), the labels.txt zip appended to the file, the plain `cifar_edge` JSON entry, and a
model that still runs bit-identically in LiteRT."""
from __future__ import annotations

import io
import json
import zipfile

import flatbuffers
import flatbuffers.table
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as tfl
from ai_edge_litert.interpreter import Interpreter

from cifar_edge._tf import keras, tf
from cifar_edge.errors import CifarEdgeError
from cifar_edge.formats.tflite import embed_metadata, read_metadata

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


class _Fb:
    """A bare flatbuffer table walked by slot number, independently of the module's schema
    table: slots and union type codes are restated here from metadata_schema.fbs."""

    def __init__(self, tab):
        self.tab = tab

    @classmethod
    def root(cls, buf: bytes):
        return cls(flatbuffers.table.Table(bytearray(buf), flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0)))

    def _at(self, slot):
        return self.tab.Offset(4 + 2 * slot)

    def has(self, slot) -> bool:
        return self._at(slot) != 0

    def string(self, slot):
        return self.tab.String(self._at(slot) + self.tab.Pos)

    def byte(self, slot):
        return self.tab.Get(flatbuffers.number_types.Uint8Flags, self._at(slot) + self.tab.Pos)

    def table(self, slot):
        return _Fb(flatbuffers.table.Table(self.tab.Bytes, self.tab.Indirect(self._at(slot) + self.tab.Pos)))

    def tables(self, slot):
        o = self._at(slot)
        return [_Fb(flatbuffers.table.Table(self.tab.Bytes, self.tab.Indirect(self.tab.Vector(o) + 4 * i)))
                for i in range(self.tab.VectorLen(o))] if o else []

    def floats(self, slot):
        return self.tab.GetVectorAsNumpy(flatbuffers.number_types.Float32Flags, self._at(slot))


def test_standard_buffer_decodes_by_the_schema_slots(models):
    """Walk TFLITE_METADATA by the schema's slots, the way the Task library's MetadataExtractor
    (and MediaPipe) walk it: identifier, one subgraph, the union types, the vectors."""
    buf = _entries(_embed(models["float32"], output_is_logits=False, mean=(127.5,) * 3,
                          std=(127.5,) * 3))["TFLITE_METADATA"]
    assert buf[4:8] == b"M001"
    root = _Fb.root(buf)                                # ModelMetadata
    assert root.string(7) == b"1.0.0" and root.string(5) == b"Apache-2.0"
    graphs = root.tables(3)
    assert len(graphs) == 1
    graph = graphs[0]                                   # SubGraphMetadata
    assert (len(graph.tables(2)), len(graph.tables(3))) == (1, 1)
    # Nothing newer than schema 1.0.0 may be set (input/output process units, 1.1.0),
    # or min_parser_version would have to rise.
    assert not graph.has(5) and not graph.has(6)

    image = graph.tables(2)[0]                          # TensorMetadata
    content = image.table(3)                            # Content: union type (slot 0), value (slot 1)
    assert content.byte(0) == 2                         # ContentProperties.ImageProperties
    assert content.table(1).byte(0) == 1                # ImageProperties.color_space = RGB
    units = image.tables(4)
    assert len(units) == 1 and units[0].byte(0) == 1    # ProcessUnitOptions.NormalizationOptions
    norm = units[0].table(1)
    # One value for all channels: what MediaPipe Tasks requires.
    np.testing.assert_array_equal(norm.floats(0), [127.5])
    np.testing.assert_array_equal(norm.floats(1), [127.5])
    np.testing.assert_array_equal(image.table(5).floats(1), [-1.0])   # Stats.min
    np.testing.assert_array_equal(image.table(5).floats(0), [1.0])    # Stats.max

    scores = graph.tables(3)[0]
    assert scores.string(0) == b"probability"
    assert scores.table(3).byte(0) == 1                 # ContentProperties.FeatureProperties
    np.testing.assert_array_equal(scores.table(5).floats(1), [0.0])
    np.testing.assert_array_equal(scores.table(5).floats(0), [1.0])
    files = scores.tables(6)
    assert len(files) == 1
    assert (files[0].string(0), files[0].byte(2)) == (b"labels.txt", 2)   # AssociatedFileType.TENSOR_AXIS_LABELS


def test_per_channel_normalization_is_written_per_channel(models):
    buf = _entries(_embed(models["float32"]))["TFLITE_METADATA"]
    norm = _Fb.root(buf).tables(3)[0].tables(2)[0].tables(4)[0].table(1)
    np.testing.assert_allclose(norm.floats(0), MEAN, rtol=1e-6)
    np.testing.assert_allclose(norm.floats(1), STD, rtol=1e-6)


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
