"""LiteRT's own benchmark CLI (shipped with ai-edge-litert as ``litert-benchmark``): the reference
timer of LiteRT's CPU rows (``Backend.reference``), run on the same file with the same threads."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


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
