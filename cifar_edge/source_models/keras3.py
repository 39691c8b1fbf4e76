"""Keras 3 models (.keras or .h5 saved by Keras 3), which tf_keras cannot read.  Keras 3 (TF
backend, installed with TensorFlow) loads them beside tf_keras in one process; TFLite converts
from the SavedModel its ``model.export`` writes and tf2onnx from a traced call.  tfmot 0.8 does
not take Keras 3 models, so QAT, pruning and clustering do not apply."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CifarEdgeError
from ._base import SourceKind, SourceModel, keras_version, register


def _detect(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in (".keras", ".h5", ".hdf5") and \
        (keras_version(path) or "").startswith("3")


def _load(path: Path, options):
    from ..runs import _TRUSTED, refuse_code
    from .._tf import tf
    refuse_code(path)
    import keras as keras3
    try:
        model = keras3.saving.load_model(str(path), compile=False, safe_mode=not _TRUSTED["code"])
    except Exception as e:  # noqa: BLE001 - Keras 3 raises TypeError/ValueError for unknown classes
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise CifarEdgeError(f"Keras 3 cannot load {path} ({first}); if it names a custom class, pass "
                             "--custom-objects MODULE") from None
    shape = tuple(model.inputs[0].shape)

    def predict(x):
        return np.asarray(model(x, training=False), np.float32)

    def saved_model(folder):
        model.export(str(folder), verbose=False)

    def onnx(path_out, opset):
        import tf2onnx
        signature = (tf.TensorSpec((None, *shape[1:]), tf.float32, name="image"),)
        tf2onnx.convert.from_function(tf.function(lambda t: model(t, training=False)), input_signature=signature,
                                      opset=opset, output_path=str(path_out))

    return SourceModel("keras3", "keras3", (None, *shape[1:]), tuple(model.outputs[0].shape), predict,
                       native=model, saved_model=saved_model, onnx=onnx, layers=list(model.layers)), {"runtime": "keras3"}


register(SourceKind("keras3", "a Keras 3 .keras or .h5", _detect, _load, order=1, makes=("tflite", "onnx")))
