"""Artifacts are written to a temp file in the same folder, then renamed into place,
so a crash never leaves a half-written file under the final name."""
from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temp path beside ``path``; rename it to ``path`` only if the block succeeds.

    ``suffix`` defaults to the final suffix, since some writers (Keras, matplotlib) pick
    the format from the file name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path, text: str):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")


def read_json(path):
    """Parsed JSON; a corrupt or half-written file is the user's one-line error, not a traceback."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        from .errors import CifarEdgeError
        raise CifarEdgeError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); it is corrupt or "
                             "half-written: restore it or delete it and re-create it") from None


def write_csv(path, header, rows):
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)


def _jsonable(o):
    import numpy as np
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
