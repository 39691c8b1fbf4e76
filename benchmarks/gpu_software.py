"""GPU rows on a software GPU: collects the GPU and WebGPU rows (and the CPU rows they are held
against) of finished `cifar-edge bench` outputs into benchmarks/results/gpu_software.{md,json},
with each bench's command, the adapter, and this machine's CPU (`lscpu`): a software GPU's
latency is that CPU's, so the CPU is what the latency column describes.

    python benchmarks/gpu_software.py BENCH_DIR [BENCH_DIR ...]

Each BENCH_DIR is a bench output folder (bench.json); run the benches first, e.g.
``cifar-edge bench RUN --runtime litert --runtime litert-gpu --runtime litert-gpu-f32 ...``
(docs/gpu.md)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cifar_edge.bench.gpu import gpu_lines
from cifar_edge.fileio import write_json, write_text

OUT = Path(__file__).parent / "results" / "gpu_software"
LSCPU_FIELDS = ("Architecture", "Model name", "CPU(s)", "Thread(s) per core", "Flags")


def _lscpu() -> dict:
    text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k: fields[k].strip() for k in LSCPU_FIELDS if k in fields and k != "Flags"} | {
        "avx512": "avx512f" in fields.get("Flags", ""), "avx2": "avx2" in fields.get("Flags", "")}


def _row(r: dict) -> dict:
    p = r.get("placement") or {}
    adapter = p.get("adapter") or {}
    return {"variant": r["variant"], "runtime": r["backend"], "status": r["status"], "reason": r.get("reason") or None,
            "agreement_file": r.get("agreement_file"), "max_abs_diff_file": r.get("max_abs_diff_file"),
            "agreement_images": r.get("agreement_images"), "top1": r.get("top1"),
            "whole_graph": p.get("fully_accelerated"), "refused": p.get("refused") or {},
            "nodes": p.get("nodes"), "delegated": p.get("delegated"), "adapter": adapter.get("name"),
            "software_gpu": adapter.get("software"), "p50_ms": (r.get("latency") or {}).get("p50_ms")}


def _table(rows: list) -> list[str]:
    out = ["| variant | runtime | status | agree file % | max abs diff | images | whole graph | refused ops | "
           "adapter | p50 ms (software GPU: not a device figure) |", "|" + "---|" * 10]
    for r in rows:
        agree = "-" if r["agreement_file"] is None else f"{r['agreement_file']:.2%}"
        diff = "-" if r["max_abs_diff_file"] is None else f"{r['max_abs_diff_file']:.2g}"
        whole = "-" if r["whole_graph"] is None else "yes" if r["whole_graph"] else "no"
        p50 = "-" if r["p50_ms"] is None else f"{r['p50_ms']:.1f}" + (" (software)" if r["software_gpu"] else "")
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}"
        out.append(f"| {r['variant']} | {r['runtime']} | {status} | {agree} | {diff} | {r['agreement_images'] or '-'} | "
                   f"{whole} | {', '.join(r['refused']) or '-'} | {r['adapter'] or '-'} | {p50} |")
    return out


def main(folders: list[str]):
    if not folders:
        sys.exit("usage: python benchmarks/gpu_software.py BENCH_DIR [BENCH_DIR ...] (bench output folders)")
    cpu = _lscpu()
    benches, md = [], ["# GPU rows on a software GPU", "",
                       f"CPU (lscpu): {cpu.get('Model name')}, {cpu.get('CPU(s)')} CPU(s), "
                       f"AVX-512 {'yes' if cpu['avx512'] else 'no'}. No GPU: LiteRT's GPU accelerator ran on Mesa's "
                       "lavapipe (Vulkan on this CPU), the browser's WebGPU on Chromium's SwiftShader. Latency is this "
                       "CPU emulating a GPU, never a device figure; agreement, max |diff| and placement are the "
                       "result. Produced by `python benchmarks/gpu_software.py` from the bench outputs below.", ""]
    for folder in folders:
        result = json.loads((Path(folder) / "bench.json").read_text())
        rows = [_row(r) for r in result["rows"]]
        benches.append({"run": result["run"], "command": result["command"], "seconds": result["seconds"],
                        "machine": result["machine"], "versions": result["versions"], "gpu": result.get("gpu"),
                        "rows": rows})
        md += [f"## {Path(result['run']).name}", "", f"`{result['command']}` ({result['seconds']:.0f} s, "
               f"load average {result['machine']['load_before'][0]:.1f} on {result['machine']['cores']} cores)", "",
               *_table(rows), *gpu_lines(result.get("gpu")), ""]
    write_json(OUT.with_suffix(".json"), {"lscpu": cpu, "benches": benches})
    write_text(OUT.with_suffix(".md"), "\n".join(md))
    print(f"wrote {OUT.with_suffix('.md')} and .json")


if __name__ == "__main__":
    main(sys.argv[1:])
