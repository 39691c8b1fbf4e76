"""Shared bits of the benchmark scripts: where the real data lives, machine facts, and
writing results (JSON + Markdown) to benchmarks/results/."""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CIFAR_EDGE_SHARED", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))


def need(path: Path) -> Path:
    if not path.exists():
        sys.exit(f"benchmark data not found at {path}; set CIFAR_EDGE_SHARED to the folder holding cifar10/")
    return path


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "python": platform.python_version()}


def write_results(name: str, result: dict, markdown: str):
    from cifar_edge.fileio import write_json, write_text
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / f"{name}.json", result)
    write_text(RESULTS / f"{name}.md", markdown)
    print(markdown)
