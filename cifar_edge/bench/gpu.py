"""What a phone's GPU will do with each .tflite, in one place: read from the bench's litert-gpu
rows (LiteRT's GPU accelerator, at its default fp16 precision and at enforce_f32), per file:
does it take the whole graph (else which ops it refused), how far its fp16 kernels move the
outputs from the file's CPU runtime, and which variant to ship for a GPU and which for a CPU.

The GPU accelerator here is the one in LiteRT's wheel (WebGPU); a phone's GPU delegate is
OpenCL/GL, with its own op coverage, but both compile the same graph to fp16 kernels by default,
so placement and fp16 parity measured here are the first answer; latency on a software GPU is not.
"""
from __future__ import annotations

GPU_BACKENDS = ("litert-gpu", "litert-gpu-f32")   # default precision (fp16 kernels), enforce_f32
FP16_PARITY = 0.98      # default-precision top-1 agreement with the CPU runtime for fp16 kernels to be safe
F32_PARITY = 0.99       # enforce_f32's: lower means the accelerator computes something else, not rounding


def gpu_summary(rows: list) -> dict | None:
    """Per .tflite of the benched run (not its optimize runs): the GPU path's placement and
    parity, and the variants to ship; None when no litert-gpu row exists (not asked for)."""
    files: dict = {}
    for r in rows:
        if r["format"] != "tflite" or r["backend"] not in GPU_BACKENDS or r["name"] != r["variant"]:
            continue
        f = files.setdefault(r["variant"], {"variant": r["variant"], "precision": r["precision"]})
        f["f32" if r["backend"] == "litert-gpu-f32" else "default"] = _path(r)
    if not files:
        return None
    for f in files.values():
        ran = [f[k] for k in ("default", "f32") if f.get(k, {}).get("status") == "ok"]
        f["whole_graph"] = all(p["whole_graph"] for p in ran) if ran else None
        f["refused"] = sorted({op for p in ran for op in p["refused"]})
        default = f.get("default", {})
        f["fp16_parity"] = ({"agreement": default["agreement"], "max_abs_diff": default["max_abs_diff"],
                             "ok": default["agreement"] >= FP16_PARITY} if default.get("status") == "ok" else None)
    adapters = {p["adapter"] for f in files.values() for k in ("default", "f32")
                if (p := f.get(k, {})).get("adapter")}
    return {"files": list(files.values()), "adapters": sorted(adapters),
            "software": any(f.get(k, {}).get("software") for f in files.values() for k in ("default", "f32")),
            "ship": _ship(files, rows)}


def _path(r: dict) -> dict:
    if r["status"] != "ok":
        return {"status": r["status"], "reason": r.get("reason")}
    p = r.get("placement") or {}
    adapter = p.get("adapter") or {}
    return {"status": "ok", "agreement": r.get("agreement_file"), "max_abs_diff": r.get("max_abs_diff_file"),
            "images": r.get("agreement_images"), "whole_graph": bool(p.get("fully_accelerated")),
            "refused": dict(p.get("refused") or {}), "adapter": adapter.get("name"),
            "software": bool(adapter.get("software")), "p50_ms": (r.get("latency") or {}).get("p50_ms")}


def _ship(files: dict, rows: list) -> dict:
    """For a GPU: the fp16 file when the GPU takes its whole graph and its fp16 kernels keep
    agreement (a GPU computes in fp16 by default, so fp16 weights lose nothing more and halve the
    download), else float32 when that one qualifies.  For a CPU: the int8 file when it ran on
    LiteRT (export refuses an int8 file that fails its parity gate), else float32."""
    def qualifies(name):
        f = files.get(name)
        return bool(f and f["whole_graph"] and f["fp16_parity"] and f["fp16_parity"]["ok"]
                    and f.get("f32", {}).get("agreement", 0) >= F32_PARITY)
    gpu = next((n for n in ("tflite-fp16", "tflite-float32") if qualifies(n)), None)
    why = ("its whole graph runs on the GPU and its fp16 kernels agree with the CPU" if gpu else
           "no float file runs whole on the GPU with fp16 parity: ship for the CPU")
    cpu_ok = {r["variant"] for r in rows if r["backend"] == "litert" and r["status"] == "ok" and r["name"] == r["variant"]}
    cpu = next((n for n in ("tflite-int8", "tflite-float32") if n in cpu_ok), None)
    return {"gpu": gpu, "gpu_why": why, "cpu": cpu,
            "cpu_why": "int8 kernels on the CPU (XNNPACK); on the GPU an int8 file runs as float, gaining nothing"
            if cpu == "tflite-int8" else "no int8 file ran on LiteRT's CPU rows"}


HEADERS = ("file", "whole graph on GPU", "refused ops", "fp16 kernels: agree / max diff",
           "enforce_f32: agree / max diff")


def gpu_table(summary: dict) -> tuple[str, list, list]:
    """(the adapter sentence, the table's rows, the shipping advice lines): what bench.md, the
    terminal and the HTML report show."""
    adapter = (f"Adapter: {', '.join(summary['adapters']) or 'none'}"
               + (" (a software GPU: the CPU emulating one, so latency here is no device's; placement and parity "
                  "are what carries to a phone's GPU)" if summary["software"] else ""))
    rows = [(f["variant"], _yes(f["whole_graph"]), ", ".join(f["refused"]) or "-", _parity(f.get("default")),
             _parity(f.get("f32"))) for f in summary["files"]]
    ship = summary["ship"]
    advice = [f"ship for a phone's GPU: {ship['gpu'] or 'none'} ({ship['gpu_why']})",
              f"ship for its CPU: {ship['cpu'] or 'none'} ({ship['cpu_why']})"]
    return adapter, rows, advice


def gpu_lines(summary: dict | None) -> list[str]:
    """The summary as Markdown lines (bench.md; the terminal prints them too)."""
    if not summary:
        return []
    adapter, rows, advice = gpu_table(summary)
    return ["", "## GPU path (LiteRT's GPU accelerator)", "", adapter, "", "| " + " | ".join(HEADERS) + " |",
            "|" + "---|" * len(HEADERS), *["| " + " | ".join(r) + " |" for r in rows], "",
            *[f"- {a}" for a in advice]]


def _yes(v):
    return "-" if v is None else "yes" if v else "no"


def _parity(p: dict | None) -> str:
    if not p:
        return "-"
    if p["status"] != "ok":
        return f"{p['status']}: {p.get('reason') or ''}"[:120]
    return f"{p['agreement']:.2%} / {p['max_abs_diff']:.2g}"
