"""`cifar-edge data verify`: official CIFAR files against their published MD5 sums."""
from __future__ import annotations

from pathlib import Path

from ..errors import CifarEdgeError
from .sources import OFFICIAL_MD5, md5sum


def verify_files(path) -> list[dict]:
    """One row per official file found under ``path`` (a folder or an archive)."""
    p = Path(path)
    if not p.exists():
        raise CifarEdgeError(f"{p} does not exist; pass an official CIFAR folder or .tar.gz")
    candidates = [p] if p.is_file() else [f for f in sorted(p.rglob("*")) if f.is_file()]
    rows = []
    for f in candidates:
        key = next((k for k in OFFICIAL_MD5 if f.as_posix().endswith(k)), None)
        if key is None:
            continue
        got = md5sum(f)
        rows.append({"file": str(f), "md5": got, "status": "ok" if got == OFFICIAL_MD5[key] else
                     f"MISMATCH (expected {OFFICIAL_MD5[key]})"})
    if not rows:
        raise CifarEdgeError(f"no official CIFAR files under {p}; expected cifar-100-python/ or "
                             "cifar-10-batches-py/ (or their .tar.gz)")
    return rows
