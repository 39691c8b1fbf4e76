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


MARKER = ".cifar-edge-quickstart"


def run_quickstart(out_dir, epochs: int = 4):
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / MARKER).is_file():
            raise CifarEdgeError(f"{out_dir} exists and is not a quickstart folder; pass another --out "
                                 "(quickstart replaces its own folder on every run)")
        shutil.rmtree(out_dir)   # our own previous quickstart: start clean
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).write_text("written by `cifar-edge quickstart`; safe to delete\n")
    try:
        dataset = load_named("cifar100")
        data, source, extra = "cifar100", f"real CIFAR-100 ({dataset.source})", {"limit": 10000}
    except CifarEdgeError as e:
        console.warn(f"real CIFAR-100 unavailable ({e}); using the SYNTHETIC stand-in")
        dataset = None
        data, source, extra = "synthetic", "synthetic stand-in (procedural shapes, not CIFAR)", \
            {"synthetic_classes": 10, "synthetic_size": 6000}
    cfg = TrainConfig(model="cnn", data=data, epochs=epochs, val_split=0.1, seed=0, **extra)
    return train(cfg, out_dir, dataset=dataset), source
