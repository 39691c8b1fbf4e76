"""Per-op latency profiles of the real CIFAR-10 default's float and int8 .tflite files
(`cifar-edge bench --profile-ops`): LiteRT with XNNPACK and on its builtin kernels (each op cut
out into a one-op model and timed alone), onnxruntime on the .onnx and OpenVINO's counters on
the same .tflite files, at 1 thread.  Each LiteRT profile's sum is set beside the row's p50, the
check that timing ops alone adds up to the whole model.  Writes
benchmarks/results/op_profile_cifar10.{json,md}.

    python benchmarks/op_profile_cifar10.py [--run runs/cifar10]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from common import ROOT, SHARED_DATA, machine, need, write_results

VARIANTS = ("tflite-float32", "tflite-fp16", "tflite-int8", "tflite-int16x8", "onnx-float32", "onnx-int8")
RUNTIMES = ("litert", "litert-no-xnnpack", "onnxruntime", "openvino")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=str(ROOT / "runs" / "cifar10"))
    args = ap.parse_args()
    need(SHARED_DATA / "cifar10")
    run = Path(args.run).resolve()
    out = run / "bench-profile"
    command = ["bench", str(run), "--no-siblings", "--threads", "1", "--limit", "500", "--no-reference",
               "--profile-ops", "--out", str(out), *[f"--variant={v}" for v in VARIANTS],
               *[f"--runtime={r}" for r in RUNTIMES]]
    subprocess.run([sys.executable, "-m", "cifar_edge.cli", *command], check=True, cwd=ROOT)
    rows = [r for r in json.loads((out / "bench.json").read_text())["rows"] if r.get("op_profile")]
    summary = [{"variant": r["name"], "runtime": r["backend"], "p50_ms": r["latency"]["p50_ms"],
                "ops_total_ms": r["op_profile"]["total_ms"], "nodes": r["op_profile"]["nodes"],
                "engine": r["op_profile"]["engine"], "by_op": r["op_profile"]["by_op"],
                "slowest": r["op_profile"]["slowest"][:5]} for r in rows]
    shown = "cifar-edge " + " ".join(command).replace(str(run), os.path.relpath(run, ROOT))
    lines = ["# Per-op profiles of the default CNN (real CIFAR-10), 1 thread", "", f"`{shown}`", "",
             "| variant | runtime | ops total ms | row p50 ms | total / p50 | nodes |", "|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['variant']} | {s['runtime']} | {s['ops_total_ms']:.3f} | {s['p50_ms']:.3f} | "
                     f"{s['ops_total_ms'] / s['p50_ms']:.2f} | {s['nodes']} |")
    table = (out / "bench.md").read_text()
    lines += ["", table[table.index("## Per-op profile"):].split("\n![")[0].strip(), "",
              f"Machine: {machine()['cpu']}, {machine()['cores']} cores, no GPU.", ""]
    write_results("op_profile_cifar10", {"command": shown, "rows": summary, "machine": machine()}, "\n".join(lines))


if __name__ == "__main__":
    main()
