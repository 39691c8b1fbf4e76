"""Metadata inside the .tflite, so an Android app needs nothing but the model file.

Two entries go into the model's ``metadata`` list:

* ``TFLITE_METADATA``: the TFLite Support ``ModelMetadata`` flatbuffer (schema
  ``metadata_schema.fbs``, identifier ``M001``) laid out as
  ``tflite_support.metadata_writers.image_classifier`` writes it, with ``labels.txt`` zipped
  onto the end of the file as ``MetadataPopulator`` does.  MediaPipe Tasks, the Task library
  and ``MetadataExtractor`` read it.  tflite-support itself pins protobuf<4, which TensorFlow
  2.21 cannot live with, so this module writes and reads the tables it needs itself, with the
  ``flatbuffers`` package's Builder and Table and the schema's field slots.
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
import flatbuffers.table
import numpy as np
from ai_edge_litert import schema_py_generated as _tfl
from ai_edge_litert.tools import flatbuffer_utils

from ..errors import CifarEdgeError

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
# In the JSON entry of a file that takes raw pixels: the training normalization its graph
# applies itself (export folds it in, see tflite.fold_normalization); the entry's mean/std
# are then the identity an app applies.
from ._base import FOLDED_NORMALIZATION  # noqa: E402 - beside its explanation
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
    return _append_zip(pack_model(model), {LABELS_FILE: "\n".join(labels) + "\n"})


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


def folded_normalization(tflite_path_or_bytes) -> tuple[list, list] | None:
    """(mean, std) a .tflite applies inside its graph, so it takes raw pixels; None for a file
    that takes normalized images (a bare conversion, or a file exported before folding)."""
    facts = read_metadata(tflite_path_or_bytes)["cifar_edge"] or {}
    folded = facts.get(FOLDED_NORMALIZATION)
    return (list(folded["mean"]), list(folded["std"])) if folded else None


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


def pack_model(model: _tfl.ModelT) -> bytes:
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
#
# Our own reader and writer, from the field slots and types of tflite-support's
# metadata_schema.fbs (facts of the format), for the tables an image classifier uses.  A
# field's slot is its position in the table's declaration; a union field takes two slots,
# its type (ubyte) and then its value.  Fields we neither write nor read are left out.

_COLOR_SPACES = ("UNKNOWN", "RGB", "GRAYSCALE")
_FILE_TYPES = ("UNKNOWN", "DESCRIPTIONS", "TENSOR_AXIS_LABELS", "TENSOR_VALUE_LABELS",
               "TENSOR_AXIS_SCORE_CALIBRATION", "VOCABULARY")
_UNIONS = {   # member tables in declaration order; type 0 is NONE
    "ContentProperties": ("FeatureProperties", "ImageProperties", "BoundingBoxProperties"),
    "ProcessUnitOptions": ("NormalizationOptions", "ScoreCalibrationOptions", "ScoreThresholdingOptions",
                           "BertTokenizerOptions", "SentencePieceTokenizerOptions"),
}
_SCHEMA = {   # table -> {field: (slot, type)}; type: "string", "[float]", an enum tuple, a table, [table] or a union
    "ModelMetadata": {"name": (0, "string"), "description": (1, "string"), "version": (2, "string"),
                      "subgraph_metadata": (3, ["SubGraphMetadata"]), "author": (4, "string"),
                      "license": (5, "string"), "min_parser_version": (7, "string")},
    "SubGraphMetadata": {"input_tensor_metadata": (2, ["TensorMetadata"]),
                         "output_tensor_metadata": (3, ["TensorMetadata"]),
                         "input_process_units": (5, ["ProcessUnit"]), "output_process_units": (6, ["ProcessUnit"])},
    "TensorMetadata": {"name": (0, "string"), "description": (1, "string"), "content": (3, "Content"),
                       "process_units": (4, ["ProcessUnit"]), "stats": (5, "Stats"),
                       "associated_files": (6, ["AssociatedFile"])},
    "Content": {"content_properties": (0, "ContentProperties")},
    "FeatureProperties": {},
    "ImageProperties": {"color_space": (0, _COLOR_SPACES)},
    "ProcessUnit": {"options": (0, "ProcessUnitOptions")},
    "NormalizationOptions": {"mean": (0, "[float]"), "std": (1, "[float]")},
    "Stats": {"max": (0, "[float]"), "min": (1, "[float]")},
    "AssociatedFile": {"name": (0, "string"), "description": (1, "string"), "type": (2, _FILE_TYPES),
                       "locale": (3, "string")},
}


def _is_union(kind) -> bool:
    return isinstance(kind, str) and kind in _UNIONS


def _write_table(b: flatbuffers.Builder, table: str, values: dict) -> int:
    """One table from a dict of its fields (None: absent); unions as (member, fields).
    Children are written first, since a flatbuffer is built from the leaves up."""
    fields = _SCHEMA[table]
    children = {}
    for name, value in values.items():
        kind = fields[name][1]
        if value is None or isinstance(kind, tuple):
            continue
        if kind == "string":
            children[name] = b.CreateString(value)
        elif kind == "[float]":
            children[name] = b.CreateNumpyVector(np.asarray(value, np.float32))
        elif isinstance(kind, list):
            items = [_write_table(b, kind[0], item) for item in value]
            b.StartVector(4, len(items), 4)
            for offset in reversed(items):
                b.PrependUOffsetTRelative(offset)
            children[name] = b.EndVector()
        elif _is_union(kind):
            children[name] = _write_table(b, value[0], value[1])
        else:
            children[name] = _write_table(b, kind, value)
    b.StartObject(1 + max((slot + _is_union(kind) for slot, kind in fields.values()), default=-1))
    for name, value in values.items():
        slot, kind = fields[name]
        if value is None:
            continue
        if isinstance(kind, tuple):
            b.PrependInt8Slot(slot, kind.index(value), 0)
        elif _is_union(kind):
            b.PrependUint8Slot(slot, 1 + _UNIONS[kind].index(value[0]), 0)
            b.PrependUOffsetTRelativeSlot(slot + 1, children[name], 0)
        else:
            b.PrependUOffsetTRelativeSlot(slot, children[name], 0)
    return b.EndObject()


def _read_table(table: str, tab: flatbuffers.table.Table) -> dict:
    """Every field of ``table`` we know as plain values (absent: None); unions as (member, fields)."""
    out = {}
    for name, (slot, kind) in _SCHEMA[table].items():
        o = tab.Offset(4 + 2 * slot)
        if not o:
            out[name] = None
        elif kind == "string":
            out[name] = tab.String(o + tab.Pos).decode("utf-8")
        elif kind == "[float]":
            out[name] = _floats(tab.GetVectorAsNumpy(flatbuffers.number_types.Float32Flags, o))
        elif isinstance(kind, tuple):
            value = tab.Get(flatbuffers.number_types.Int8Flags, o + tab.Pos)
            out[name] = kind[value] if 0 <= value < len(kind) else str(value)
        elif isinstance(kind, list):
            start = tab.Vector(o)
            out[name] = [_read_table(kind[0], flatbuffers.table.Table(tab.Bytes, tab.Indirect(start + 4 * i)))
                         for i in range(tab.VectorLen(o))]
        elif _is_union(kind):
            member = tab.Get(flatbuffers.number_types.Uint8Flags, o + tab.Pos)
            value_at = tab.Offset(4 + 2 * (slot + 1))
            known = 0 < member <= len(_UNIONS[kind]) and _UNIONS[kind][member - 1] in _SCHEMA and value_at
            out[name] = ((_UNIONS[kind][member - 1], _read_table(_UNIONS[kind][member - 1],
                                                                 flatbuffers.table.Table(tab.Bytes, tab.Indirect(value_at + tab.Pos))))
                         if known else (member, None))
        else:
            out[name] = _read_table(kind, flatbuffers.table.Table(tab.Bytes, tab.Indirect(o + tab.Pos)))
    return out


def _build_model_metadata(*, name, description, version, author, mean, std, input_dtype, output_dtype,
                          output_is_logits) -> bytes:
    """ModelMetadata as the image classifier writer fills it: RGB image input with its
    normalization and value range, and a feature output labelled by ``labels.txt``."""
    low, high = _input_range(mean, std, input_dtype)
    image = {"name": "image", "description": "Input image to be classified.",
             "content": {"content_properties": ("ImageProperties", {"color_space": "RGB"})},
             "process_units": [{"options": ("NormalizationOptions", {"mean": _one_or_three(mean),
                                                                     "std": _one_or_three(std)})}],
             "stats": {"max": high, "min": low}}
    low, high = _output_range(output_dtype, output_is_logits)
    scores = {"name": "logits" if output_is_logits else "probability",
              "description": ("Logits of the labels respectively; apply softmax for probabilities."
                              if output_is_logits else "Probabilities of the labels respectively."),
              "content": {"content_properties": ("FeatureProperties", {})},
              "stats": {"max": high, "min": low},
              "associated_files": [{"name": LABELS_FILE, "type": "TENSOR_AXIS_LABELS",
                                    "description": "Labels for categories that the model can recognize."}]}
    b = flatbuffers.Builder(1024)
    root = _write_table(b, "ModelMetadata", {
        "name": name, "description": description, "version": version, "author": author, "license": LICENSE,
        "min_parser_version": MIN_PARSER_VERSION,
        "subgraph_metadata": [{"input_tensor_metadata": [image], "output_tensor_metadata": [scores]}]})
    b.Finish(root, _METADATA_IDENTIFIER)
    return bytes(b.Output())


def _one_or_three(values) -> list[float]:
    """One value when the channels agree: MediaPipe Tasks refuses per-channel normalization,
    and the schema applies a single value to every channel."""
    return [values[0]] if len(set(values)) == 1 else list(values)


def _input_range(mean, std, input_dtype):
    """(min, max) of the input tensor's values, as the image classifier writer records them:
    the normalized pixel range for float input, raw pixels for uint8 input, and nothing for
    int8 input (whose range the writer leaves to the quantization parameters)."""
    if input_dtype == "uint8":
        return [0.0], [255.0]
    if input_dtype == "int8":
        return None, None
    return (_one_or_three([(0.0 - m) / s for m, s in zip(mean, std)]),
            _one_or_three([(255.0 - m) / s for m, s in zip(mean, std)]))


def _output_range(output_dtype, output_is_logits):
    """Probabilities lie in [0, 1] (the writer's float convention) and uint8 scores in [0, 255];
    logits and int8 scores have no fixed range, so they get no stats."""
    if output_dtype == "uint8":
        return [0.0], [255.0]
    if output_dtype == "float32" and not output_is_logits:
        return [0.0], [1.0]
    return None, None


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
    if len(buf) < 8 or bytes(buf[4:8]) != _METADATA_IDENTIFIER:
        raise CifarEdgeError("the TFLITE_METADATA entry lacks the 'M001' identifier: "
                             "re-export the model to rewrite its metadata")
    root = flatbuffers.table.Table(bytearray(buf), flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
    meta = _read_table("ModelMetadata", root)
    graphs = meta.pop("subgraph_metadata") or [{}]
    result = {**meta, "input": None, "output": None}
    inputs, outputs = graphs[0].get("input_tensor_metadata"), graphs[0].get("output_tensor_metadata")
    if inputs:
        result["input"] = _parse_input(inputs[0])
    if outputs:
        tensor = outputs[0]
        result["output"] = {"name": tensor["name"], "description": tensor["description"], "stats": tensor["stats"],
                            "associated_files": tensor["associated_files"] or []}
    return result


def _parse_input(tensor: dict) -> dict:
    units = [u["options"][1] for u in tensor["process_units"] or [] if u["options"]
             and u["options"][0] == "NormalizationOptions"]
    content = (tensor["content"] or {}).get("content_properties")
    return {"name": tensor["name"], "description": tensor["description"],
            "mean": units[0]["mean"] if units else None, "std": units[0]["std"] if units else None,
            "color_space": content[1]["color_space"] if content and content[0] == "ImageProperties" else None,
            "stats": tensor["stats"]}


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
