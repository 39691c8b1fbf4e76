"""tf_keras models: an .h5 or .keras saved by tf_keras (or tf.keras before Keras 3), or a
SavedModel folder holding Keras metadata.  They become runs like trained ones: the whole
pipeline applies, QAT, pruning and clustering included."""
from __future__ import annotations

from pathlib import Path

from ._base import SourceKind, keras_version, register

SUFFIXES = (".h5", ".hdf5", ".keras")


def _detect(path: Path) -> bool:
    if path.is_dir():
        return (path / "saved_model.pb").is_file() and (path / "keras_metadata.pb").is_file()
    if path.suffix.lower() not in SUFFIXES:
        return False
    version = keras_version(path)
    return version is None or not version.startswith("3")


def _load(path: Path, options):
    """The model through the run spine's loading rule (no code from the file without --trust-model)."""
    from ..runs import load_model
    return load_model(path), {"runtime": "keras"}


register(SourceKind("tf_keras", "a tf_keras (Keras 2) .h5 or .keras, or a Keras SavedModel folder",
                    _detect, _load, order=0, tfmot=True))
