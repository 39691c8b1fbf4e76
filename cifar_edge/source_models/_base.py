"""What every source kind builds on: the SourceKind record and its registry, and SourceModel,
an imported model behind the one call the pipeline makes of a model (``model(x)`` on normalized
NHWC float32 images), with the converters its kind offers.

A *source kind* is a type of model file a user brings (a tf_keras .h5, a Keras 3 .keras, an
.onnx, a PyTorch .pt2).  Each lives in its own module of this package and registers itself;
`cifar-edge import`, the run spine and the formats read what a kind can do from here."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import CifarEdgeError


@dataclass(frozen=True)
class ImportOptions:
    """What `cifar-edge import` was told about the model beyond the file."""
    trust_model: bool = False          # the file may run the code it carries (Lambda layers)
    custom_objects: str | None = None  # a Python module defining the file's custom layer classes
    layout: str | None = None          # nhwc or nchw; None: from the input shape


@dataclass
class SourceModel:
    """An imported model, called like a Keras model: ``model(x)`` maps normalized NHWC float32
    images to its outputs on the source's own runtime (Keras 3, onnxruntime, torch), the
    reference every exported file is checked against."""
    kind: str
    runtime: str                      # the reference runtime's name, as parity records it
    input_shape: tuple                # (None, H, W, 3): what ``model(x)`` takes, whatever the source's layout
    output_shape: tuple               # (None, classes)
    predict: Callable                 # normalized NHWC float32 -> float32 outputs
    layout: str = "nhwc"              # the source file's own input layout
    native: object = None             # the model in its own library (a Keras 3 model, a torch module ...)
    saved_model: Callable | None = None   # saved_model(folder): a TF SavedModel of it (TFLite and tf2onnx read it)
    onnx: Callable | None = None      # onnx(path, opset): a float .onnx of it with NHWC input
    tflite: Callable | None = None    # tflite(opts, calibration) -> .tflite bytes, for kinds with their own converter
    layers: list = field(default_factory=list)     # layer objects with .name, in order (diagnose's ranking)

    def __call__(self, x, training=False):
        return np.asarray(self.predict(np.ascontiguousarray(np.asarray(x, np.float32))), np.float32)


@dataclass(frozen=True)
class SourceKind:
    """One type of model file `cifar-edge import` takes."""
    name: str                         # tf_keras, keras3, onnx, torch
    description: str                  # one line for `import --help`
    detect: Callable                  # detect(path) -> bool: this kind reads the file
    load: Callable                    # load(path, ImportOptions) -> (model, facts): a tf_keras model or a SourceModel
    order: int
    tfmot: bool = False               # QAT, pruning and clustering apply (tf_keras only)
    makes: tuple = ("keras", "tflite", "onnx")    # the formats it converts to itself (others convert those files)
    why_not: str = ""                 # why the formats it does not make are missing
    extra_refusal: Callable | None = None   # extra_refusal(format name, options) -> why not, for option limits

    def refusal(self, fmt_name: str, opts) -> str | None:
        """Why (format, options) cannot be made from this kind of source, or None."""
        from ..formats._base import FORMATS          # the registry itself: the package imports this one
        fmt_name = getattr(FORMATS.get(fmt_name), "made_from", "") or fmt_name   # a format made from another's file
        if fmt_name == "keras" and "keras" not in self.makes:
            return (f"the keras variant is a tf_keras .h5, and a {self.name} source has none; its own file is kept in "
                    "the run's source/ folder")
        if fmt_name not in self.makes:
            return self.why_not or f"a {self.name} source has no {fmt_name} converter"
        if fmt_name == "onnx" and getattr(opts, "from_tflite", False) and "tflite" not in self.makes:
            return "--from-tflite needs the int8 .tflite, which this source cannot make: " + self.why_not
        return self.extra_refusal(fmt_name, opts) if self.extra_refusal is not None else None


KINDS: dict[str, SourceKind] = {}


def register(kind: SourceKind):
    KINDS[kind.name] = kind
    ordered = sorted(KINDS.values(), key=lambda k: k.order)
    KINDS.clear()
    KINDS.update((k.name, k) for k in ordered)


def keras_version(path) -> str | None:
    """The Keras version that saved an .h5 or .keras file ("2.21.0", "3.15.1"), or None."""
    import json
    import zipfile
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                if "metadata.json" in z.namelist():
                    return str(json.loads(z.read("metadata.json")).get("keras_version") or "") or None
            return None
        import h5py
        with h5py.File(path, "r") as f:
            v = f.attrs.get("keras_version")
            return (v.decode() if isinstance(v, bytes) else str(v)) if v is not None else None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def image_layout(shape, layout: str | None = None):
    """(layout, height, width) of a 4-D image input, or one line saying it is not a 3-channel image."""
    dims = list(shape)
    if len(dims) != 4 or 3 not in (dims[1], dims[3]):
        raise CifarEdgeError(f"the model's input has shape {dims}, not a batch of 3-channel images (N, H, W, 3) or "
                             "(N, 3, H, W); cifar-edge imports RGB image classifiers")
    if layout is None:
        if dims[3] == 3 and dims[1] != 3:
            layout = "nhwc"
        elif dims[1] == 3 and dims[3] != 3:
            layout = "nchw"
        else:
            raise CifarEdgeError(f"the input shape {dims} could be NCHW or NHWC; pass --layout nhwc or --layout nchw")
    return (layout, *(dims[1:3] if layout == "nhwc" else dims[2:4]))
