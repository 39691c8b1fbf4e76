"""Builders of hostile run folders and inputs (issue 30: trust nothing a run folder holds).
Each makes, inside a test's own tmp folder, what a killed process, a hand edit or a user's own
images leave behind, so a test can show the command that meets it gives one true line."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def dead_pid() -> int:
    """The PID of a process that has exited (what a kill -9'd writer leaves in its temp names)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def unfinished_train(finished: Path, dest: Path) -> Path:
    """A training run killed before its first checkpoint: config.json and labels.txt, no model."""
    dest.mkdir(parents=True)
    for name in ("config.json", "labels.txt"):
        shutil.copy(finished / name, dest / name)
    return dest


def with_class_names(finished: Path, dest: Path, names: list[str]) -> Path:
    """A copy of a finished run whose config.json lists ``names`` instead of the model's classes."""
    shutil.copytree(finished, dest, ignore=shutil.ignore_patterns("export", "bench", "evaluation", ".lock"))
    config = json.loads((dest / "config.json").read_text())
    (dest / "config.json").write_text(json.dumps({**config, "class_names": names}))
    return dest


def image_folder(root: Path, classes: int, per_class: int, off: int, off_size=(48, 40), seed: int = 0) -> Path:
    """``root/<class>/*.png``: ``classes * per_class`` images of 32x32, of which the first ``off``
    are ``off_size`` (width, height) instead."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            w, h = off_size if c * per_class + i < off else (32, 32)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"class{c}" / f"{i}.png")
    return root


def stale_system_temps(tmpdir: Path, pid: int) -> list[Path]:
    """Work folders in the system temp folder as a process ``pid`` leaves them when kill -9'd
    mid-export (a SavedModel being converted, a LiteRT probe)."""
    made = []
    for kind in ("savedmodel", "probe"):
        folder = tmpdir / f"cifar-edge-{kind}~{pid}~x1y2"
        (folder / "variables").mkdir(parents=True)
        (folder / "saved_model.pb").write_bytes(b"half")
        made.append(folder)
    return made
