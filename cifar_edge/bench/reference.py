"""A second opinion on a row's latency: a runtime's own benchmark tool (``Backend.reference``, e.g.
LiteRT's CLI) on the same file with the same threads.  Its median beside ours, and their ratio,
show whether our timing harness adds or hides anything."""
from __future__ import annotations

import numpy as np

AGREEMENT = 0.25        # |ours / theirs - 1| within this counts as agreeing
ROUNDS = 3              # measurement rounds of both sides at most, when the first disagrees


def agreement(ours_p50_ms: float, measure_ours, results: list, measure_theirs, same_engine: bool) -> dict:
    """Our p50 against the tool's median.  ``results`` holds the tool's runs so far for this
    file and thread count (shared between rows, extended here).  When the first comparison
    disagrees, both sides are measured again, one after the other, up to :data:`ROUNDS` times
    and the medians of the rounds compared: on a 2-core machine a single busy moment would
    otherwise decide the verdict.  Every round's figures are kept."""
    ours = [ours_p50_ms]
    if not results:
        results.append(measure_theirs())
    result = compare(ours_p50_ms, _median_result(results))
    while same_engine and result.get("agrees") is False and len(ours) < ROUNDS:
        ours.append(measure_ours())
        results.append(measure_theirs())
        result = compare(float(np.median(ours)), _median_result(results))
    theirs = [r.get("median_ms") for r in results]
    return {**result, "rounds": len(ours), "ours_p50_rounds_ms": ours, "theirs_median_rounds_ms": theirs,
            "same_engine": same_engine}


def _median_result(results: list) -> dict:
    ok = [r for r in results if r.get("median_ms")]
    if not ok:
        return results[0]
    return {**ok[0], "median_ms": float(np.median([r["median_ms"] for r in ok])),
            "avg_ms": float(np.median([r["avg_ms"] for r in ok])), "p95_ms": float(np.median([r["p95_ms"] for r in ok]))}


def compare(ours_p50_ms: float, reference: dict) -> dict:
    """Add our p50, the ratio ours/theirs and whether it is within :data:`AGREEMENT`."""
    theirs = reference.get("median_ms") or reference.get("avg_ms")
    if not theirs or not ours_p50_ms:
        return reference
    ratio = ours_p50_ms / theirs
    return {**reference, "ours_p50_ms": ours_p50_ms, "ratio": ratio, "agrees": abs(ratio - 1) <= AGREEMENT}
