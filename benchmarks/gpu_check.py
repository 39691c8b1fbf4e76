"""The GPU path end to end on one GPU, as one command, in <= 8 minutes all told.

1. a GPU is visible (nvidia-smi names it; TensorFlow lists it), else one line and exit 1;
2. `cifar-edge train` of the default `cnn` on the real CIFAR-10 (../shared/data/cifar10) with
   the GPU defaults (`--precision auto`: mixed float16 + XLA), --epochs of them;
3. `cifar-edge export` of the variants the GPU runtimes load (Keras, ONNX float32 and int8);
4. `cifar-edge bench` of them on TF/Keras on the GPU, onnxruntime CUDA and TensorRT, beside their
   CPU rows; a runtime that cannot run here has a row saying why ("not available: ...").

Writes benchmarks/results/gpu_check.{json,md}: wall time per step, top-1, img/s (training and
each bench row), the device and the library versions.  One deadline (--budget-minutes) bounds
everything: each step gets what is left of it, and a step still running at the deadline is
killed with its whole process group; the results so far are written either way.

Needs TensorFlow with CUDA (`pip install tensorflow[and-cuda]`: CUDA, cuDNN, and ptxas for
XLA), and for the onnxruntime GPU rows onnxruntime-gpu (plus the TensorRT libraries for its
row).  Exit status 0 when every step ran, the run trained in mixed float16 with XLA and the
TF/Keras GPU row ran; 1 otherwise.

    python benchmarks/gpu_check.py [--epochs 10] [--budget-minutes 8] [--out runs/gpu-check]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, SHARED_DATA, machine, need, write_results

VARIANTS = ("keras", "onnx-float32", "onnx-int8")
RUNTIMES = ("keras-gpu", "onnxruntime-cuda", "onnxruntime-tensorrt", "keras", "onnxruntime")

# Run in a child, so this process never holds the GPU the steps need.
PROBE = """
import json
from cifar_edge._tf import tf
gpus = tf.config.list_physical_devices("GPU")
details = [tf.config.experimental.get_device_details(g) for g in gpus]
build = tf.sysconfig.get_build_info()
try:
    import onnxruntime as ort
    providers, ort_version = ort.get_available_providers(), ort.__version__
except ImportError:
    providers, ort_version = [], None
print(json.dumps({"tf_gpus": [g.name for g in gpus],
                  "tf_gpu_names": [d.get("device_name") for d in details],
                  "compute_capability": [list(d.get("compute_capability") or ()) for d in details],
                  "tensorflow": tf.__version__, "tf_built_with_cuda": tf.test.is_built_with_cuda(),
                  "tf_cuda": build.get("cuda_version"), "tf_cudnn": build.get("cudnn_version"),
                  "onnxruntime": ort_version, "onnxruntime_providers": providers}))
"""


class Deadline:
    def __init__(self, seconds: float):
        self.budget = seconds
        self.start = time.monotonic()
        self.end = self.start + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def run_step(name: str, argv: list, deadline: Deadline, shown: str) -> dict:
    """Run one step in its own process group with what is left of the deadline; its record."""
    record = {"step": name, "command": shown, "seconds": 0.0}
    left = deadline.left()
    if left <= 1:
        return {**record, "status": "not started", "reason": "the time budget was spent"}
    print(f"\n== {name}: {shown}  ({left:.0f} s of the budget left)", flush=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, start_new_session=True)
    try:
        rc = proc.wait(timeout=left)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return {**record, "seconds": round(time.monotonic() - t0, 1), "status": "timed out",
                "reason": f"killed at the {deadline.budget:.0f} s deadline"}
    except BaseException:               # Ctrl-C: nothing of the step outlives us
        _kill_group(proc)
        raise
    record.update(seconds=round(time.monotonic() - t0, 1), status="ok" if rc == 0 else "failed")
    if rc:
        record["reason"] = f"exit status {rc} (its messages are above)"
    return record


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def find_gpu(deadline: Deadline) -> dict:
    """The visible GPU's facts; exits with one line when there is none."""
    nodes = sorted(glob.glob("/dev/nvidia[0-9]*"))
    smi = shutil.which("nvidia-smi")
    if not nodes and not smi:
        sys.exit("gpu_check: no GPU visible: no NVIDIA device (/dev/nvidia*) and no nvidia-smi on this machine; "
                 "run it on a machine with a CUDA GPU")
    gpu = {"device_nodes": nodes}
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
            if out:
                name, memory, driver = [s.strip() for s in out[0].split(",")][:3]
                gpu.update(name=name, memory=memory, driver=driver, count=len(out))
        except (subprocess.TimeoutExpired, OSError, ValueError):
            pass
    try:
        probe = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True,
                               timeout=min(180, max(1, deadline.left())))
    except subprocess.TimeoutExpired:
        sys.exit("gpu_check: no GPU visible: TensorFlow did not list its devices within 180 s")
    if probe.returncode:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"gpu_check: no GPU visible: the TensorFlow device probe failed ({last[:200]})")
    gpu.update(json.loads(probe.stdout.strip().splitlines()[-1]))
    if not gpu["tf_gpus"]:
        sys.exit(f"gpu_check: no GPU visible to TensorFlow (nvidia-smi: {gpu.get('name', 'none')}; TensorFlow "
                 f"{gpu['tensorflow']}, built with CUDA: {gpu['tf_built_with_cuda']}); install "
                 "tensorflow[and-cuda] or fix the CUDA libraries")
    gpu.setdefault("name", gpu["tf_gpu_names"][0])
    return gpu


def best_throughput(row: dict):
    tput = row.get("throughput") or []
    return max(tput, key=lambda t: t["images_per_s"], default=None)


def summarize_rows(rows: list) -> list:
    out = []
    for r in rows:
        best = best_throughput(r) if r["status"] == "ok" else None
        out.append({"variant": r["variant"], "runtime": r["backend"], "device": r["device"], "threads": r.get("threads"),
                    "status": r["status"],
                    "reason": r.get("reason"), "engine": r.get("engine"), "top1": r.get("top1"),
                    "p50_ms": (r.get("latency") or {}).get("p50_ms"),
                    "images_per_s": best["images_per_s"] if best else None, "batch": best["batch"] if best else None,
                    "load_ms": r.get("load_ms"), "notes": r.get("notes") or []})
    return out


def _cell(row: dict) -> str:
    if row["status"] == "ok":
        return "ok"
    return ("not available: " if row["status"] == "skipped" else f"{row['status']}: ") + (row["reason"] or "")


def _bench_line(r: dict) -> str:
    runtime = r["runtime"] + (f", {r['threads']} thread{'s' if r['threads'] != 1 else ''}" if r["device"] == "cpu" and r["threads"] else "")
    if r["status"] != "ok":
        return f"| {r['variant']} | {runtime} | - | - | - | {_cell(r)} |"
    top1 = "-" if r["top1"] is None else f"{r['top1']:.2%}"
    tput = f"{r['images_per_s']:.0f} ({r['batch']})" if r["images_per_s"] else "-"
    return f"| {r['variant']} | {runtime} | {top1} | {r['p50_ms']:.3f} | {tput} | ok |"


def markdown(result: dict) -> str:
    gpu, t = result["gpu"], result.get("training") or {}
    lines = [f"# GPU check: {result['model']} on {result['data']}, trained, exported and benched on one GPU\n",
             f"`{result['command']}` on **{gpu.get('name')}** ({gpu.get('memory', '?')}, driver {gpu.get('driver', '?')}; "
             f"TensorFlow {gpu.get('tensorflow')} with CUDA {gpu.get('tf_cuda')} / cuDNN {gpu.get('tf_cudnn')}; "
             f"onnxruntime {gpu.get('onnxruntime')}: {', '.join(gpu.get('onnxruntime_providers') or []) or 'none'}). "
             f"Total **{result['total_seconds']:.0f} s** of a {result['budget_seconds']:.0f} s budget.\n",
             "| step | wall s | status |", "|---|---|---|"]
    lines += [f"| {s['step']} | {s['seconds']:.1f} | {s['status']}{': ' + s['reason'] if s.get('reason') else ''} |"
              for s in result["steps"]]
    if t:
        lines += ["", "| top-1 | top-5 | epochs | training time | train img/s | policy | XLA |", "|---|---|---|---|---|---|---|",
                  f"| {t['top1']:.2%} | {t['top5']:.2%} | {t['epochs']} | {t['train_seconds']:.0f} s | "
                  f"{t['images_per_second'] or 0:.0f} | {t['device'].get('policy')} | {t['device'].get('xla')} |"]
    if result.get("bench"):
        lines += ["", "| variant | runtime | top-1 | p50 ms (1 image) | img/s (batch) | status |", "|---|---|---|---|---|---|"]
        lines += [_bench_line(r) for r in result["bench"]]
    lines += ["", "Checks: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in result["checks"].items()), ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="cnn", help="model to train (the default model of `cifar-edge train`)")
    ap.add_argument("--data", default=None, help="training data [default: the real CIFAR-10 in ../shared/data]")
    ap.add_argument("--epochs", type=int, default=10, help="training epochs (the whole check must fit the budget)")
    ap.add_argument("--budget-minutes", type=float, default=8.0, help="hard limit for everything, GPU probe included")
    ap.add_argument("--out", default=str(ROOT / "runs" / "gpu-check"), help="run folder (replaced)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="variants to export and bench")
    ap.add_argument("--export-all", action="store_true", help="export every variant of the format table "
                    "(TFLite included: the whole export path on this machine); the bench still measures --variants")
    ap.add_argument("--runtimes", default=",".join(RUNTIMES), help="bench runtimes (see `cifar-edge bench --help`)")
    ap.add_argument("--limit", type=int, default=2000, help="bench top-1 on this many test images")
    ap.add_argument("--runs", type=int, default=200, help="timed single-image runs per bench row")
    ap.add_argument("--results", default="gpu_check", help="name of the results files in benchmarks/results/")
    args = ap.parse_args()
    if args.epochs < 1 or args.budget_minutes <= 0:
        ap.error("--epochs must be 1 or more and --budget-minutes positive")
    deadline = Deadline(args.budget_minutes * 60)
    gpu = find_gpu(deadline)
    data = str(need(SHARED_DATA / "cifar10")) if args.data is None else \
        str(Path(args.data).resolve()) if Path(args.data).exists() else args.data     # a path, or a name
    out = Path(args.out).resolve()
    variants = [v for v in args.variants.split(",") if v]
    runtimes = [r for r in args.runtimes.split(",") if r]
    cli = [sys.executable, "-m", "cifar_edge.cli"]

    def relative(text: str) -> str:
        return text.replace(str(SHARED_DATA), "../shared/data").replace(str(out), os.path.relpath(out, ROOT))

    def shown(argv):
        return "cifar-edge " + relative(" ".join(argv))

    train = ["train", "--model", args.model, "--data", data, "--epochs", str(args.epochs), "--val-split", "0",
             "--out", str(out), "--seed", str(args.seed), "--precision", "auto"]
    export = ["export", str(out), *(["--all"] if args.export_all else [a for v in variants for a in ("--variant", v)])]
    bench = ["bench", str(out), *[a for v in variants for a in ("--variant", v)],
             *[a for r in runtimes for a in ("--runtime", r)], "--limit", str(args.limit), "--runs", str(args.runs),
             "--batch", "64,256", "--no-reference", "--no-siblings"]
    shutil.rmtree(out, ignore_errors=True)
    steps = [{"step": "gpu probe", "command": "nvidia-smi; TensorFlow's device list",
              "seconds": round(deadline.elapsed(), 1), "status": "ok"}]
    try:
        for name, argv in (("train", train), ("export", export), ("bench", bench)):
            if steps[-1]["status"] == "ok":
                steps.append(run_step(name, cli + argv, deadline, shown(argv)))
            else:
                steps.append({"step": name, "command": shown(argv), "seconds": 0.0, "status": "not started",
                              "reason": "an earlier step did not finish"})
    finally:
        result = {"model": args.model, "data": relative(data),
                  **collect(gpu, out, steps, deadline)}
        write_results(args.results, result, markdown(result))
    sys.exit(0 if all(result["checks"].values()) else 1)


def collect(gpu: dict, out: Path, steps: list, deadline: Deadline) -> dict:
    """Whatever the steps left in the run folder, as the results document."""
    def read(path):
        try:
            return json.loads((out / path).read_text())
        except (OSError, ValueError):
            return None
    config, metrics, bench = read("config.json"), read("metrics.json"), read("bench/bench.json")
    training = None
    if config and metrics:
        training = {"top1": metrics["top1"], "top5": metrics["top5"], "test_images": metrics["n"],
                    "epochs": metrics["epochs_run"], "train_seconds": metrics["train_seconds"],
                    "images_per_second": metrics["images_per_second"], "device": config["device"],
                    "params": config["params"], "flops_per_image": config["flops"]}
    rows = summarize_rows(bench["rows"]) if bench else []
    keras_gpu = [r for r in rows if r["runtime"] == "keras-gpu"]
    checks = {"every step ran": all(s["status"] == "ok" for s in steps),
              "trained in mixed_float16": bool(training and training["device"].get("policy") == "mixed_float16"),
              "trained with XLA": bool(training and training["device"].get("xla")),
              "TF/Keras GPU rows ran": bool(keras_gpu) and all(r["status"] == "ok" for r in keras_gpu)}
    argv = " ".join(sys.argv[1:])
    return {"command": f"python benchmarks/gpu_check.py{' ' + argv if argv else ''}", "gpu": gpu,
            "machine": machine(), "budget_seconds": round(deadline.budget),
            "total_seconds": round(deadline.elapsed(), 1), "steps": steps, "training": training,
            "bench_seconds": bench["seconds"] if bench else None, "bench": rows, "checks": checks,
            "versions": (config or {}).get("versions"), "run": os.path.relpath(out, ROOT)}


if __name__ == "__main__":
    main()
