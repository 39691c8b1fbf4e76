"""The CI gate: fail a build when a variant's accuracy falls short, naming the variant.

Both thresholds are in percent / percentage points, as the bench table shows them.  A
variant fails ``fail_under`` when any of its measured rows is below it, or when it has no
measured row at all because it failed (a skipped row, e.g. no GPU, is not a failure).
"""
from __future__ import annotations

from ..errors import CifarEdgeError


def check_thresholds(fail_under: float | None, max_int8_drop: float | None):
    if fail_under is not None and not 0 <= fail_under <= 100:
        raise CifarEdgeError(f"--fail-under {fail_under} is invalid; give a top-1 in percent, 0..100 (e.g. 85)")
    if max_int8_drop is not None and max_int8_drop < 0:
        raise CifarEdgeError(f"--max-int8-drop {max_int8_drop} is invalid; give percentage points >= 0 (e.g. 1.5)")


def gate(rows, fail_under: float | None = None, max_int8_drop: float | None = None) -> list[str]:
    """One message per variant that falls short (empty: the gate passes)."""
    check_thresholds(fail_under, max_int8_drop)
    by_variant: dict[str, list] = {}
    for r in rows:
        by_variant.setdefault(r["name"], []).append(r)
    problems = []
    for name, group in by_variant.items():
        measured = [r for r in group if r["status"] == "ok" and r.get("top1") is not None]
        failed = [r for r in group if r["status"] == "failed"]
        unscored = [r for r in group if r["status"] == "ok" and r.get("top1") is None]   # e.g. phone-only rows
        if (fail_under is not None or max_int8_drop is not None) and not measured and (failed or unscored):
            why = failed[0]["reason"][:160] if failed else "its rows measure latency only: add a host runtime (litert)"
            problems.append(f"{name}: no top-1 measured ({why})")
            continue
        if fail_under is not None and measured:
            worst = min(measured, key=lambda r: r["top1"])
            if 100 * worst["top1"] < fail_under:
                problems.append(f"{name}: top-1 {100 * worst['top1']:.2f}% on {worst['backend']} is under "
                                f"--fail-under {fail_under:g}%")
        if max_int8_drop is not None and group[0]["precision"] in ("int8", "int16x8", "dynamic"):   # int8 weights
            drops = [r for r in measured if r.get("top1_drop_points") is not None]
            if drops:
                worst = max(drops, key=lambda r: r["top1_drop_points"])
                if worst["top1_drop_points"] > max_int8_drop:
                    problems.append(f"{name}: top-1 drops {worst['top1_drop_points']:.2f} points against the "
                                    f"{worst.get('drop_against', 'float model')} on {worst['backend']}, more than "
                                    f"--max-int8-drop {max_int8_drop:g}")
    return problems
