"""`cifar-edge quickstart`: a small but real run end to end on the best data to be had.

Real CIFAR-100 when it can be found ($CIFAR_EDGE_DATA, keras' cache, or a download);
otherwise the synthetic stand-in, said loudly.  A few minutes on a laptop CPU.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from . import console
from .data.sources import load_named
from .errors import CifarEdgeError
from .train import TrainConfig, train


def run_quickstart(out_dir, epochs: int = 4):
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)   # the quickstart folder is ours: start clean each time
    try:
        load_named("cifar100")
        data, source, extra = "cifar100", "real CIFAR-100", {"limit": 10000}
    except CifarEdgeError as e:
        console.warn(f"real CIFAR-100 unavailable ({e}); using the SYNTHETIC stand-in")
        data, source, extra = "synthetic", "synthetic stand-in (procedural shapes, not CIFAR)", \
            {"synthetic_classes": 10, "synthetic_size": 6000}
    cfg = TrainConfig(model="cnn", data=data, epochs=epochs, val_split=0.1, seed=0, **extra)
    return train(cfg, out_dir), source
