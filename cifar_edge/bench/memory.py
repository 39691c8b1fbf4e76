"""Peak resident memory of one block of work in this process, read from the kernel.

Linux keeps a high-water mark of the resident set (VmHWM) and resets it to the current
size when "5" is written to /proc/self/clear_refs, so each row can measure its own peak
without a subprocess.  Memory freed by earlier rows and reused by this one is not counted:
the figure is what the row added on top of the process, a lower bound of a fresh process.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def _status_kb(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        _CLEAR.write_text("5")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def peak_rss():
    """Yields a dict that holds ``peak_rss_delta_mb`` (None where /proc cannot tell) after the block."""
    out = {"peak_rss_delta_mb": None}
    before = _status_kb("VmRSS")
    reset = _reset_peak()
    try:
        yield out
    finally:
        peak = _status_kb("VmHWM")
        if reset and before is not None and peak is not None:
            out["peak_rss_delta_mb"] = max(peak - before, 0) / 1024
