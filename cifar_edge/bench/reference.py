"""A second opinion on every .tflite latency: LiteRT's own benchmark CLI (shipped with
ai-edge-litert as ``litert-benchmark``) on the same file with the same threads.  Its median
beside ours, and their ratio, show whether our timing harness adds or hides anything."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

AGREEMENT = 0.25        # |ours / theirs - 1| within this counts as agreeing
ROUNDS = 3              # measurement rounds of both sides at most, when the first disagrees


def command(model, threads: int, runs: int, warmup: int, result_json) -> list[str]:
    """The CLI call: the console script beside our Python, else the module it wraps."""
    exe = Path(sys.executable).with_name("litert-benchmark")
    found = str(exe) if exe.is_file() else shutil.which("litert-benchmark")
    base = [found] if found else [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model"]
    return [*base, f"--model={model}", f"--num_threads={threads}", f"--num_runs={runs}",
            f"--warmup_runs={max(warmup, 1)}", f"--result_json={result_json}"]


def run_reference(model, threads: int, runs: int, warmup: int, timeout: float = 300) -> dict:
    """``{"tool", "median_ms", "avg_ms", "p95_ms", "runs"}``, or ``{"error": why}``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = command(model, threads, runs, warmup, out)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            return {"tool": "litert-benchmark", "error": f"{type(e).__name__}: {e}"[:200]}
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return {"tool": "litert-benchmark", "error": f"exit {proc.returncode}: {tail[0][:160]}"}
        lat = json.loads(out.read_text())["latency"]
    return {"tool": "litert-benchmark (CompiledModel, CPU)", "median_ms": lat["median_ms"], "avg_ms": lat["avg_ms"],
            "p95_ms": lat["p95_ms"], "runs": lat["num_runs"], "threads": threads}


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
