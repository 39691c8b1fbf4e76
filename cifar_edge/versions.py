"""The versions a result was made with, recorded in every config.json, export.json and bench.json."""
from __future__ import annotations

import importlib.metadata as md
import platform

from . import __version__

CORE = ("tensorflow", "tf_keras", "tensorflow-model-optimization")   # what trains, compresses and loads every run


def packages() -> tuple:
    """The packages whose versions a result depends on: the core, then those each format and
    runtime declares (``Format.packages``, ``Backend.packages``), in table order."""
    from .formats import BACKENDS, FORMATS
    declared = [p for record in (*FORMATS.values(), *BACKENDS.values()) for p in record.packages]
    return tuple(dict.fromkeys((*CORE, *declared)))


def versions() -> dict:
    out = {"cifar_edge": __version__, "python": platform.python_version(), "machine": platform.machine(),
           "processor": platform.processor()}
    for pkg in packages():
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
