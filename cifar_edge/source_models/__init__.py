"""The kinds of model file `cifar-edge import` takes, one module each (tf_keras, Keras 3, ONNX,
PyTorch), discovered like the formats: each public module registers its SourceKind."""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from ..errors import CifarEdgeError
from ._base import KINDS, ImportOptions, SourceKind, SourceModel, image_layout, register


def _discover():
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_discover()


def detect_kind(path) -> SourceKind:
    """The kind of model file at ``path``, or one line naming what was found and what is taken."""
    path = Path(path)
    if not path.exists():
        raise CifarEdgeError(f"{path} does not exist; pass a model file or SavedModel folder")
    for kind in KINDS.values():
        if kind.detect(path):
            return kind
    raise CifarEdgeError(f"{path} is not a model file cifar-edge imports; give one of: "
                         + "; ".join(k.description for k in KINDS.values()))


def refusal(config: dict, fmt_name: str, opts) -> str | None:
    """Why a run's model cannot be exported to (format, options) because of where it came from, or None."""
    from ..runs import source_kind
    kind = KINDS.get(source_kind(config))
    return None if kind is None else kind.refusal(fmt_name, opts)


def open_source(run, config: dict) -> SourceModel:
    """The imported model of a run folder, reloaded from the copy the run keeps."""
    from ..runs import inside_run
    source = config.get("source") or {}
    kind = KINDS.get(source.get("kind"))
    if kind is None:
        raise CifarEdgeError(f"{run.config} names an unknown source kind {source.get('kind')!r}; it was edited: "
                             "import the model again")
    path = inside_run(run.root, source.get("file", ""), run.config)
    if not path.exists():
        raise CifarEdgeError(f"{path} is missing from the imported run {run.root}; import the model again")
    model, _ = kind.load(path, ImportOptions(layout=source.get("layout")))
    return model


__all__ = ["KINDS", "ImportOptions", "SourceKind", "SourceModel", "detect_kind", "image_layout", "open_source", "refusal", "register"]
