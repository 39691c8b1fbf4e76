"""A TensorFlow SavedModel without Keras metadata (``tf.saved_model.save`` of a tf.Module, or
Keras 3's ``model.export``): its serving signature is the reference, TFLite converts the folder
itself and tf2onnx a traced call of the signature.  NHWC float input only."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..errors import CifarEdgeError
from ._base import SourceKind, SourceModel, image_layout, register


def _detect(path: Path) -> bool:
    return path.is_dir() and (path / "saved_model.pb").is_file() and not (path / "keras_metadata.pb").is_file()


def _load(path: Path, options):
    from .._tf import tf
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as e:  # noqa: BLE001 - TensorFlow's own error types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:140]
        raise CifarEdgeError(f"TensorFlow cannot load the SavedModel {path} ({first}); save it again") from None
    signatures = dict(loaded.signatures)
    signature = signatures.get("serving_default") or next(iter(signatures.values()), None)
    if signature is None:
        raise CifarEdgeError(f"the SavedModel {path} has no serving signature; save it with one (signatures=...)")
    inputs = signature.structured_input_signature[1]
    if len(inputs) != 1:
        raise CifarEdgeError(f"the SavedModel's signature takes {len(inputs)} inputs; cifar-edge imports single-image "
                             "classifiers")
    name, spec = next(iter(inputs.items()))
    layout, height, width = image_layout(spec.shape.as_list(), options.layout)
    if layout != "nhwc" or spec.dtype != tf.float32:
        raise CifarEdgeError(f"the SavedModel takes {spec.dtype.name} {layout.upper()} images; cifar-edge imports "
                             "SavedModels taking float32 NHWC images (export it so, or as ONNX)")
    outputs = sorted(signature.structured_outputs)

    def call(t):
        return signature(**{name: t})[outputs[0]]

    def predict(x):
        return np.asarray(call(tf.constant(x)), np.float32)

    def saved_model(folder):
        shutil.copytree(path, folder, dirs_exist_ok=True)

    def onnx(path_out, opset):
        import tf2onnx
        tf2onnx.convert.from_function(tf.function(call), input_signature=(tf.TensorSpec((None, height, width, 3),
                                                                                        tf.float32, name="image"),),
                                      opset=opset, output_path=str(path_out))

    classes = signature.structured_outputs[outputs[0]].shape[-1]
    return SourceModel("saved_model", "tensorflow", (None, height, width, 3), (None, classes), predict,
                       native=loaded, saved_model=saved_model, onnx=onnx), {"runtime": "tensorflow"}


register(SourceKind("saved_model", "a TensorFlow SavedModel folder without Keras metadata (tf.saved_model.save, "
                    "Keras 3's model.export)", _detect, _load, order=2, makes=("tflite", "onnx")))
