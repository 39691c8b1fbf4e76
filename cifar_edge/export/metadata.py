"""Metadata inside the .tflite, so an Android app needs nothing but the model file.

Two entries go into the model's ``metadata`` list:

* ``TFLITE_METADATA``: the TFLite Support ``ModelMetadata`` flatbuffer (schema
  ``metadata_schema.fbs``, identifier ``M001``) laid out as
  ``tflite_support.metadata_writers.image_classifier`` writes it, with ``labels.txt`` zipped
  onto the end of the file as ``MetadataPopulator`` does.  The Task library, ML Model
  Binding and ``MetadataExtractor`` read it.  tflite-support itself pins protobuf<4, which
  TensorFlow 2.21 cannot live with, so the schema's generated code is vendored in
  ``_metadata_schema_fb`` and used here for writing and reading.
* ``cifar_edge``: the same facts as plain UTF-8 JSON, for apps that would rather not parse
  a flatbuffer.
"""
from __future__ import annotations

import io
import json
import math
import os
import zipfile

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as _tfl
from ai_edge_litert.tools import flatbuffer_utils

from ..errors import CifarEdgeError
from . import _metadata_schema_fb as _md

TFLITE_METADATA = "TFLITE_METADATA"
CIFAR_EDGE_METADATA = "cifar_edge"
LABELS_FILE = "labels.txt"
LICENSE = "Apache-2.0"
# Everything written here (image input, normalization, stats, TENSOR_AXIS_LABELS) exists
# since metadata schema 1.0.0; this is what MetadataPopulator would compute for it
# (tflite-support metadata_version.cc only raises it for later fields we do not use).
MIN_PARSER_VERSION = "1.0.0"

_METADATA_IDENTIFIER = b"M001"
_TFLITE_IDENTIFIER = b"TFL3"
_DTYPES = {_tfl.TensorType.FLOAT32: "float32", _tfl.TensorType.INT8: "int8", _tfl.TensorType.UINT8: "uint8"}
_JSON_KEYS = ("input_size", "mean", "std", "input_dtype", "output_is_logits", "labels")
_NOT_TFLITE = "pass the .tflite file written by `cifar-edge export --format tflite`"


def embed_metadata(tflite_bytes: bytes, *, name: str, description: str, version: str, author: str,
                   input_size: int, mean: tuple[float, float, float], std: tuple[float, float, float],
                   labels: list[str], input_dtype: str, output_is_logits: bool, extra: dict) -> bytes:
    """A copy of ``tflite_bytes`` carrying both metadata entries and a zipped ``labels.txt``.

    ``mean``/``std`` are in 0..255 pixel units (``(pixel - mean) / std``), TFLite Support's
    convention.  Everything is checked against the model's own input and output tensors first,
    because metadata that disagrees with the graph makes an app silently misclassify.
    Embedding again replaces both entries and the packed files.
    """
    model = _load_model(tflite_bytes)
    extra = dict(extra or {})
    mean, std, labels = _check(model, input_size=input_size, mean=mean, std=std, labels=labels,
                               input_dtype=input_dtype, extra=extra)
    plain = {"input_size": int(input_size), "mean": mean, "std": std, "input_dtype": input_dtype,
             "output_is_logits": bool(output_is_logits), "labels": labels, **extra}
    standard = _build_model_metadata(name=name, description=description, version=version, author=author,
                                     mean=mean, std=std, input_dtype=input_dtype,
                                     output_dtype=_DTYPES.get(_output_tensor(model).type),
                                     output_is_logits=output_is_logits)
    _set_metadata(model, TFLITE_METADATA, standard)
    _set_metadata(model, CIFAR_EDGE_METADATA, json.dumps(plain, ensure_ascii=False).encode("utf-8"))
    return _append_zip(_pack_model(model), {LABELS_FILE: "\n".join(labels) + "\n"})


def read_metadata(tflite_path_or_bytes) -> dict:
    """Both metadata entries and the packed files of a .tflite, as plain Python values.

    Entries the model lacks come back as None (and ``associated_files`` as {}), so a model
    from elsewhere can be inspected too.  The standard buffer is decoded with the schema's
    generated reader, independently of how ``embed_metadata`` built it.
    """
    data = _read_bytes(tflite_path_or_bytes)
    entries = _metadata_entries(data)
    plain = entries.get(CIFAR_EDGE_METADATA)
    standard = entries.get(TFLITE_METADATA)
    try:
        return {"cifar_edge": json.loads(plain.decode("utf-8")) if plain is not None else None,
                "tflite_metadata": _parse_model_metadata(standard) if standard is not None else None,
                "associated_files": _packed_files(data)}
    except CifarEdgeError:
        raise
    except Exception as e:  # noqa: BLE001 - corrupt JSON, flatbuffer or zip
        raise CifarEdgeError(f"the model's metadata is corrupt ({type(e).__name__}): "
                             "re-export the model to rewrite it") from None


# --- the outer TFLite model -------------------------------------------------------------

def _has_tflite_identifier(data) -> bool:
    return len(data) >= 8 and bytes(data[4:8]) == _TFLITE_IDENTIFIER


def _load_model(tflite_bytes) -> _tfl.ModelT:
    """The model as mutable objects; CifarEdgeError if the bytes are not a TFLite flatbuffer."""
    if not isinstance(tflite_bytes, (bytes, bytearray, memoryview)):
        raise CifarEdgeError(f"embed_metadata needs the model as bytes, got {type(tflite_bytes).__name__}: "
                             "pass Path(...).read_bytes() of the .tflite")
    data = bytes(tflite_bytes)
    if not _has_tflite_identifier(data):
        raise CifarEdgeError(f"not a TFLite model (no 'TFL3' identifier): {_NOT_TFLITE}")
    try:
        model = flatbuffer_utils.read_model_from_bytearray(data)
        _input_tensor(model)  # a garbled graph fails here, inside the try, rather than later
        _output_tensor(model)
    except CifarEdgeError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt flatbuffer fails anywhere inside the generated reader
        raise CifarEdgeError(f"unreadable TFLite flatbuffer ({type(e).__name__}): {_NOT_TFLITE}") from None
    return model


def _input_tensor(model: _tfl.ModelT) -> _tfl.TensorT:
    return _only_tensor(model, "inputs")


def _output_tensor(model: _tfl.ModelT) -> _tfl.TensorT:
    return _only_tensor(model, "outputs")


def _only_tensor(model: _tfl.ModelT, which: str) -> _tfl.TensorT:
    """The single input/output tensor of the main subgraph, which is all an image classifier has."""
    if not model.subgraphs:
        raise CifarEdgeError(f"the TFLite model has no subgraph: {_NOT_TFLITE}")
    graph = model.subgraphs[0]
    indices = list(getattr(graph, which) if getattr(graph, which) is not None else [])
    if len(indices) != 1:
        raise CifarEdgeError(f"the model has {len(indices)} {which}, an image classifier has exactly one: "
                             "export a single-input, single-output classifier")
    return graph.tensors[indices[0]]


def _check(model, *, input_size, mean, std, labels, input_dtype, extra):
    """Validated (mean, std, labels) as plain lists; CifarEdgeError naming the fix otherwise."""
    mean = [float(v) for v in mean]
    std = [float(v) for v in std]
    if len(mean) != 3 or len(std) != 3:
        raise CifarEdgeError(f"mean and std need one value per RGB channel, got {len(mean)} and {len(std)}")
    if not all(math.isfinite(v) for v in mean + std) or any(v <= 0 for v in std):
        raise CifarEdgeError(f"normalization must be finite with std > 0, got mean={mean} std={std}")

    image = _input_tensor(model)
    shape = [int(d) for d in (image.shape if image.shape is not None else [])]
    if len(shape) != 4 or shape[3] != 3:
        raise CifarEdgeError(f"the model input has shape {shape}, expected (batch, height, width, 3): "
                             "export an RGB image classifier")
    if any(d > 0 and d != int(input_size) for d in shape[1:3]):
        raise CifarEdgeError(f"input_size={input_size} but the model takes {shape[1]}x{shape[2]} images: "
                             "pass the model's input size")
    actual = _DTYPES.get(image.type, f"tensor type {image.type}")
    if input_dtype != actual:
        raise CifarEdgeError(f"input_dtype={input_dtype!r} but the model input is {actual}: pass {actual!r}")

    labels = [str(label) for label in labels]
    scores = _output_tensor(model)
    classes = int(scores.shape[-1]) if scores.shape is not None and len(scores.shape) else 0
    if len(labels) != classes:
        raise CifarEdgeError(f"{len(labels)} labels for a model with {classes} outputs: "
                             "pass exactly one label per class, in class-index order")
    bad = [label for label in labels if not label.strip() or "\n" in label or "\r" in label]
    if bad:
        raise CifarEdgeError(f"label {bad[0]!r} cannot be a line of labels.txt: use non-empty, single-line labels")

    clash = sorted(set(extra) & set(_JSON_KEYS))
    if clash:
        raise CifarEdgeError(f"extra metadata may not redefine {', '.join(clash)}: pass them as arguments")
    try:
        json.dumps(extra)
    except (TypeError, ValueError) as e:
        raise CifarEdgeError(f"extra metadata is not JSON-serializable ({e}): pass plain str/number/list/dict values") \
            from None
    return mean, std, labels


def _set_metadata(model: _tfl.ModelT, name: str, payload: bytes) -> None:
    """Point the metadata entry ``name`` at a buffer holding ``payload``.  An older entry of
    that name is replaced and its buffer reused when nothing else refers to it, so embedding
    twice does not grow the file."""
    model.buffers = list(model.buffers or [])
    model.metadata = list(model.metadata or [])
    old = next((m for m in model.metadata if _text(m.name) == name), None)
    others = {int(m.buffer) for m in model.metadata if m is not old}
    others |= {int(t.buffer) for g in model.subgraphs for t in (g.tensors or [])}
    buffer = _tfl.BufferT()
    buffer.data = np.frombuffer(payload, dtype=np.uint8)
    if old is not None and 0 < old.buffer < len(model.buffers) and int(old.buffer) not in others:
        model.buffers[old.buffer] = buffer
        return
    if old is not None:
        model.metadata.remove(old)
    model.buffers.append(buffer)
    entry = _tfl.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)


class _AlignedBuilder(flatbuffers.Builder):
    """Honours the TFLite schema's ``force_align: 16`` on buffer data, which the generated
    Python ``Pack`` ignores (byte vectors land on any 4-byte boundary), so weights keep the
    alignment a runtime may rely on when it uses them in place."""

    def CreateNumpyVector(self, x):  # noqa: N802 - flatbuffers' name
        if x.dtype == np.uint8:
            self.Prep(16, x.size)
        return super().CreateNumpyVector(x)


def _pack_model(model: _tfl.ModelT) -> bytes:
    builder = _AlignedBuilder(1024)
    builder.Finish(model.Pack(builder), file_identifier=_TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def _append_zip(model_bytes: bytes, files: dict[str, str]) -> bytes:
    """The model with ``files`` zipped after it, exactly as MetadataPopulator packs associated
    files: zipfile's append mode on a non-zip starts a new archive at the end of the data, so
    the file is at once a valid flatbuffer (trailing bytes are ignored) and a valid zip."""
    out = io.BytesIO(model_bytes)
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a") as zf:
        for file_name, text in files.items():
            zf.writestr(file_name, text.encode("utf-8"))
    return out.getvalue()


# --- the TFLITE_METADATA flatbuffer -----------------------------------------------------

def _build_model_metadata(*, name, description, version, author, mean, std, input_dtype, output_dtype,
                          output_is_logits) -> bytes:
    """ModelMetadata as the image classifier writer fills it: RGB image input with its
    normalization and value range, and a feature output labelled by ``labels.txt``."""
    b = flatbuffers.Builder(1024)
    strings = {k: b.CreateString(v) for k, v in {
        "name": name, "description": description, "version": version, "author": author,
        "license": LICENSE, "min_parser_version": MIN_PARSER_VERSION,
        "in_name": "image", "in_desc": "Input image to be classified.",
        "out_name": "logits" if output_is_logits else "probability",
        "out_desc": ("Logits of the labels respectively; apply softmax for probabilities." if output_is_logits
                     else "Probabilities of the labels respectively."),
        "labels": LABELS_FILE, "labels_desc": "Labels for categories that the model can recognize.",
    }.items()}

    # Input: content, normalization, stats of the values the tensor holds.
    _md.ImagePropertiesStart(b)
    _md.ImagePropertiesAddColorSpace(b, _md.ColorSpaceType.RGB)
    image_props = _md.ImagePropertiesEnd(b)
    in_content = _content(b, _md.ContentProperties.ImageProperties, image_props)

    mean_vec = _float_vector(b, _md.NormalizationOptionsStartMeanVector, mean)
    std_vec = _float_vector(b, _md.NormalizationOptionsStartStdVector, std)
    _md.NormalizationOptionsStart(b)
    _md.NormalizationOptionsAddMean(b, mean_vec)
    _md.NormalizationOptionsAddStd(b, std_vec)
    normalization = _md.NormalizationOptionsEnd(b)
    _md.ProcessUnitStart(b)
    _md.ProcessUnitAddOptionsType(b, _md.ProcessUnitOptions.NormalizationOptions)
    _md.ProcessUnitAddOptions(b, normalization)
    process_units = _table_vector(b, _md.TensorMetadataStartProcessUnitsVector, [_md.ProcessUnitEnd(b)])
    in_stats = _stats(b, *_input_range(mean, std, input_dtype))

    input_md = _tensor(b, strings["in_name"], strings["in_desc"], in_content, in_stats, process_units=process_units)

    # Output: feature content, labels file, stats only where the range is known.
    _md.FeaturePropertiesStart(b)
    out_content = _content(b, _md.ContentProperties.FeatureProperties, _md.FeaturePropertiesEnd(b))
    _md.AssociatedFileStart(b)
    _md.AssociatedFileAddName(b, strings["labels"])
    _md.AssociatedFileAddDescription(b, strings["labels_desc"])
    _md.AssociatedFileAddType(b, _md.AssociatedFileType.TENSOR_AXIS_LABELS)
    out_files = _table_vector(b, _md.TensorMetadataStartAssociatedFilesVector, [_md.AssociatedFileEnd(b)])
    out_stats = _stats(b, *_output_range(output_dtype, output_is_logits))

    output_md = _tensor(b, strings["out_name"], strings["out_desc"], out_content, out_stats, files=out_files)

    inputs = _table_vector(b, _md.SubGraphMetadataStartInputTensorMetadataVector, [input_md])
    outputs = _table_vector(b, _md.SubGraphMetadataStartOutputTensorMetadataVector, [output_md])
    _md.SubGraphMetadataStart(b)
    _md.SubGraphMetadataAddInputTensorMetadata(b, inputs)
    _md.SubGraphMetadataAddOutputTensorMetadata(b, outputs)
    subgraphs = _table_vector(b, _md.ModelMetadataStartSubgraphMetadataVector, [_md.SubGraphMetadataEnd(b)])

    _md.ModelMetadataStart(b)
    _md.ModelMetadataAddName(b, strings["name"])
    _md.ModelMetadataAddDescription(b, strings["description"])
    _md.ModelMetadataAddVersion(b, strings["version"])
    _md.ModelMetadataAddSubgraphMetadata(b, subgraphs)
    _md.ModelMetadataAddAuthor(b, strings["author"])
    _md.ModelMetadataAddLicense(b, strings["license"])
    _md.ModelMetadataAddMinParserVersion(b, strings["min_parser_version"])
    b.Finish(_md.ModelMetadataEnd(b), _METADATA_IDENTIFIER)
    return bytes(b.Output())


def _input_range(mean, std, input_dtype):
    """Per-channel (min, max) of the input tensor's values, as the image classifier writer
    records them: the normalized pixel range for float input, raw pixels for uint8 input, and
    nothing for int8 input (whose range the writer leaves to the quantization parameters)."""
    if input_dtype == "uint8":
        return [0.0], [255.0]
    if input_dtype == "int8":
        return None, None
    return [(0.0 - m) / s for m, s in zip(mean, std)], [(255.0 - m) / s for m, s in zip(mean, std)]


def _output_range(output_dtype, output_is_logits):
    """Probabilities lie in [0, 1] (the writer's float convention) and uint8 scores in [0, 255];
    logits and int8 scores have no fixed range, so they get no stats."""
    if output_dtype == "uint8":
        return [0.0], [255.0]
    if output_dtype == "float32" and not output_is_logits:
        return [0.0], [1.0]
    return None, None


def _tensor(b, name, description, content, stats, process_units=None, files=None):
    """One TensorMetadata table from offsets already built (flatbuffers nest inside out)."""
    _md.TensorMetadataStart(b)
    _md.TensorMetadataAddName(b, name)
    _md.TensorMetadataAddDescription(b, description)
    _md.TensorMetadataAddContent(b, content)
    if process_units is not None:
        _md.TensorMetadataAddProcessUnits(b, process_units)
    _md.TensorMetadataAddStats(b, stats)
    if files is not None:
        _md.TensorMetadataAddAssociatedFiles(b, files)
    return _md.TensorMetadataEnd(b)


def _content(b, kind, properties):
    _md.ContentStart(b)
    _md.ContentAddContentPropertiesType(b, kind)
    _md.ContentAddContentProperties(b, properties)
    return _md.ContentEnd(b)


def _stats(b, low, high):
    max_vec = _float_vector(b, _md.StatsStartMaxVector, high) if high is not None else None
    min_vec = _float_vector(b, _md.StatsStartMinVector, low) if low is not None else None
    _md.StatsStart(b)
    if max_vec is not None:
        _md.StatsAddMax(b, max_vec)
    if min_vec is not None:
        _md.StatsAddMin(b, min_vec)
    return _md.StatsEnd(b)


def _float_vector(b, start, values):
    start(b, len(values))
    for v in reversed(values):
        b.PrependFloat32(float(v))
    return b.EndVector()


def _table_vector(b, start, offsets):
    start(b, len(offsets))
    for offset in reversed(offsets):
        b.PrependUOffsetTRelative(offset)
    return b.EndVector()


# --- reading ----------------------------------------------------------------------------

def _read_bytes(source) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        try:
            with open(os.fspath(source), "rb") as f:
                data = f.read()
        except (OSError, TypeError) as e:
            raise CifarEdgeError(f"cannot read {source}: {getattr(e, 'strerror', None) or e}; "
                                 "pass an existing .tflite path or its bytes") from None
    if not _has_tflite_identifier(data):
        raise CifarEdgeError(f"not a TFLite model (no 'TFL3' identifier): {_NOT_TFLITE}")
    return data


def _metadata_entries(data: bytes) -> dict[str, bytes]:
    """name -> raw buffer of each metadata entry, read in place (no copy of the weights)."""
    try:
        model = _tfl.Model.GetRootAs(data, 0)
        if model.SubgraphsLength() < 1:  # every real model has one; garbage decodes as empty
            raise ValueError("no subgraph")
        entries = {}
        for i in range(model.MetadataLength()):
            meta = model.Metadata(i)
            buffer = model.Buffers(meta.Buffer())
            if buffer.Offset() > 1:  # large models keep buffer data after the flatbuffer
                entries[meta.Name().decode("utf-8")] = data[buffer.Offset():buffer.Offset() + buffer.Size()]
            else:
                entries[meta.Name().decode("utf-8")] = buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
        return entries
    except Exception as e:  # noqa: BLE001 - a corrupt flatbuffer fails anywhere inside the generated reader
        raise CifarEdgeError(f"unreadable TFLite flatbuffer ({type(e).__name__}): {_NOT_TFLITE}") from None


def _parse_model_metadata(buf: bytes) -> dict:
    """The fields an image classifier app uses, from a TFLITE_METADATA buffer."""
    if not _md.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0):
        raise CifarEdgeError("the TFLITE_METADATA entry lacks the 'M001' identifier: "
                             "re-export the model to rewrite its metadata")
    meta = _md.ModelMetadata.GetRootAs(buf, 0)
    result = {"name": _text(meta.Name()), "description": _text(meta.Description()),
              "version": _text(meta.Version()), "author": _text(meta.Author()),
              "license": _text(meta.License()), "min_parser_version": _text(meta.MinParserVersion()),
              "input": None, "output": None}
    if meta.SubgraphMetadataLength() == 0:
        return result
    graph = meta.SubgraphMetadata(0)
    if graph.InputTensorMetadataLength():
        result["input"] = _parse_input(graph.InputTensorMetadata(0))
    if graph.OutputTensorMetadataLength():
        tensor = graph.OutputTensorMetadata(0)
        result["output"] = {"name": _text(tensor.Name()), "description": _text(tensor.Description()),
                            "stats": _parse_stats(tensor.Stats()),
                            "associated_files": [_parse_file(tensor.AssociatedFiles(i))
                                                 for i in range(tensor.AssociatedFilesLength())]}
    return result


def _parse_input(tensor) -> dict:
    mean = std = None
    for i in range(tensor.ProcessUnitsLength()):
        unit = tensor.ProcessUnits(i)
        if unit.OptionsType() == _md.ProcessUnitOptions.NormalizationOptions:
            options = _md.NormalizationOptions()
            table = unit.Options()
            options.Init(table.Bytes, table.Pos)
            mean, std = _floats(options.MeanAsNumpy()), _floats(options.StdAsNumpy())
            break
    color_space = None
    content = tensor.Content()
    if content is not None and content.ContentPropertiesType() == _md.ContentProperties.ImageProperties:
        image = _md.ImageProperties()
        table = content.ContentProperties()
        image.Init(table.Bytes, table.Pos)
        color_space = _enum_name(_md.ColorSpaceType, image.ColorSpace())
    return {"name": _text(tensor.Name()), "description": _text(tensor.Description()),
            "mean": mean, "std": std, "color_space": color_space, "stats": _parse_stats(tensor.Stats())}


def _parse_stats(stats) -> dict | None:
    if stats is None:
        return None
    return {"min": _floats(stats.MinAsNumpy()) if stats.MinLength() else None,
            "max": _floats(stats.MaxAsNumpy()) if stats.MaxLength() else None}


def _parse_file(f) -> dict:
    return {"name": _text(f.Name()), "description": _text(f.Description()),
            "type": _enum_name(_md.AssociatedFileType, f.Type()), "locale": _text(f.Locale())}


def _packed_files(data: bytes) -> dict[str, str]:
    """The zip appended after the flatbuffer (empty if there is none), decoded as UTF-8 text."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return {n: zf.read(n).decode("utf-8", errors="replace") for n in zf.namelist()}
    except zipfile.BadZipFile:
        return {}


def _floats(values) -> list[float]:
    """float32 values as the shortest decimals that round-trip (125.3, not 125.30000305175781)."""
    return [float(str(np.float32(v))) for v in values]


def _text(value) -> str | None:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _enum_name(enum, value) -> str:
    return next((k for k, v in vars(enum).items() if v == value and not k.startswith("_")), str(value))
