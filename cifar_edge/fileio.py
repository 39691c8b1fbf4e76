"""Artifacts are written to a temp file in the same folder, then renamed into place,
so a crash never leaves a half-written file under the final name.

Temp names carry the writer's PID (``.model.~1234~abcd.keras``), so the next run can tell the
leftovers of a killed process from another live writer's files and remove only those."""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import tempfile
from pathlib import Path

_TEMP_NAME = re.compile(r"^\..*\.~(\d+)~[^/]*$")


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temp path beside ``path``; rename it to ``path`` only if the block succeeds.

    ``suffix`` defaults to the final suffix, since some writers (Keras, matplotlib) pick
    the format from the file name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.~{os.getpid()}~", suffix=suffix or path.suffix,
                               dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        yield Path(tmp)
        if os.path.isdir(tmp) and path.is_dir():     # a folder export replacing an older one
            old = Path(tempfile.mkdtemp(prefix=f".{path.stem}.~{os.getpid()}~old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            import shutil
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.unlink(tmp)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != 0


def remove_stale_temps(folder) -> list[Path]:
    """Delete the temp files and folders that killed processes left under ``folder`` (any depth);
    returns what was removed.  Files of live processes, this one included, are kept."""
    import shutil
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            m = _TEMP_NAME.match(name)
            if m is None or _alive(int(m.group(1))):
                continue
            p = Path(root) / name
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
            removed.append(p)
        dirs[:] = [d for d in dirs if (Path(root) / d).is_dir()]
    return removed


_SYSTEM_TEMP = re.compile(r"^cifar-edge-[\w-]+?~(\d+)~")


def system_temp_prefix(kind: str) -> str:
    """The name prefix of a work folder in the system temp folder (``cifar-edge-savedmodel~PID~``):
    the PID lets :func:`remove_stale_system_temps` tell a killed process's folder from a live one's."""
    return f"cifar-edge-{kind}~{os.getpid()}~"


def remove_stale_system_temps() -> list[Path]:
    """Delete the work folders that killed processes left in the system temp folder (kill -9
    runs no cleanup); returns what was removed.  Live processes' folders are kept."""
    import shutil
    removed = []
    for p in Path(tempfile.gettempdir()).glob("cifar-edge-*~*~*"):
        m = _SYSTEM_TEMP.match(p.name)
        if m and not _alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


@contextlib.contextmanager
def folder_lock(folder, command: str):
    """Hold an exclusive lock on ``folder`` (its ``.lock`` file) for one writer at a time.

    The kernel drops the lock when its holder exits, ``kill -9`` included, so a stale lock
    never blocks a resume.  A second writer gets an error naming the holder's PID."""
    import fcntl
    from .errors import CifarEdgeError
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise CifarEdgeError(f"{folder} is in use by {holder}; wait for it to finish, or choose another "
                             "--out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"`{command}` (PID {os.getpid()})".encode(), 0)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def write_text(path, text: str):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path, obj):
    write_text(path, to_json(obj, indent=2) + "\n")


def to_json(obj, **kwargs) -> str:
    """Strict JSON: numpy values converted, and NaN/Infinity (not JSON) written as null."""
    return json.dumps(finite_or_none(obj), default=_jsonable, allow_nan=False, **kwargs)


def finite_or_none(obj):
    """``obj`` with every non-finite float (NaN, +-Infinity) replaced by None, at any depth."""
    import numpy as np
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return finite_or_none(obj.tolist())
    return obj


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
