"""Train the default CNN on the real CIFAR-10 (50k train / 10k test) within a time budget.

Runs exactly the CLI command the README states, then records top-1, top-5, training time and
img/s in benchmarks/results/train_cifar10.{json,md}.  The bar (issue "Foundation"): >= 90%
top-1 after <= 45 minutes of training on a 2-core CPU; issue 14's, airbench94's recipe: >= 93.0%
single view and >= 93.8% with 6-view TTA after <= 25 minutes.

    python benchmarks/train_cifar10.py [--epochs 10] [--seed 0] [--out runs/cifar10-bench] [--flags=...] [--existing] [--results NAME]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, SHARED_DATA, machine, need, write_results

BUDGET_MINUTES = 25
BAR_TOP1, BAR_TTA = 0.930, 0.938


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="another seed measures the run-to-run spread")
    ap.add_argument("--out", default=str(ROOT / "runs" / "cifar10-bench"))
    ap.add_argument("--flags", default="--precision bf16", help="extra `cifar-edge train` flags (replace the default; keep --precision bf16 for the bar's run)")
    ap.add_argument("--results", default="train_cifar10", help="name of the results files in benchmarks/results/")
    ap.add_argument("--existing", action="store_true",
                    help="record the finished run in --out (trained by this command) instead of training again")
    args = ap.parse_args()
    data = need(SHARED_DATA / "cifar10")
    out = Path(args.out).resolve()
    command = ["cifar-edge", "train", "--model", "cnn", "--data", str(data), "--epochs", str(args.epochs),
               "--val-split", "0", "--out", str(out), "--seed", str(args.seed), *args.flags.split()]
    wall = None
    if not args.existing:
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.time()
        subprocess.run([sys.executable, "-m", "cifar_edge.cli", *command[1:]], check=True, cwd=ROOT)
        wall = round((time.time() - t0) / 60, 2)
    metrics = json.loads((out / "metrics.json").read_text())
    if metrics["epochs_run"] != args.epochs:
        sys.exit(f"{out} ran {metrics['epochs_run']} epochs, not --epochs {args.epochs}; pass the run's own flags")
    # 6-view TTA beside (never instead of) the plain figure an app gets: in metrics.json when the
    # recipe scores it, else scored now.
    tta = metrics
    if "top1_tta" not in metrics:
        subprocess.run([sys.executable, "-m", "cifar_edge.cli", "evaluate", str(out), "--tta"], check=True, cwd=ROOT)
        tta = json.loads((out / "evaluation" / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    train_min = metrics["train_seconds"] / 60
    env = " ".join(f"{k}={os.environ[k]}" for k in ("TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS") if k in os.environ)
    result = {
        "command": (env + " " if env else "") + " ".join(command).replace(str(data), "../shared/data/cifar10").replace(str(out), os.path.relpath(out, ROOT)),
        "model": "cnn", "seed": args.seed, "params": config["params"], "flops_per_image": config["flops"], "epochs": metrics["epochs_run"],
        "top1": metrics["top1"], "top5": metrics["top5"], "test_images": metrics["n"],
        "top1_tta6": tta["top1_tta"], "top5_tta6": tta["top5_tta"], "tta_views": tta["tta_views"],
        "train_minutes": round(train_min, 2), "wall_minutes_incl_eval": wall,
        "train_images_per_second": metrics["images_per_second"], "budget_minutes": BUDGET_MINUTES,
        "meets_bar": bool(metrics["top1"] >= BAR_TOP1 and tta["top1_tta"] >= BAR_TTA and train_min <= BUDGET_MINUTES),
        "machine": machine(),
        "versions": config["versions"],
    }
    md = (f"# Default CNN on real CIFAR-10\n\n`{result['command']}`\n\n"
          f"| top-1 | top-5 | top-1, 6-view TTA | epochs | training time | img/s | params | MFLOPs/img | bar (>=93.0%, TTA >=93.8%, <=25 min) |\n"
          f"|---|---|---|---|---|---|---|---|---|\n"
          f"| {result['top1']:.2%} | {result['top5']:.2%} | {result['top1_tta6']:.2%} | {result['epochs']} | {train_min:.1f} min | "
          f"{result['train_images_per_second']:.0f} | {result['params']:,} | {result['flops_per_image'] / 1e6:.1f} | "
          f"{'met' if result['meets_bar'] else 'NOT met'} |\n\n"
          f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, no GPU. "
          f"Train set: the JPEG-q75 CIFAR-10 train images from ../shared/data; test: the lossless 10k. "
          f"The bar is judged on the plain top-1 (what an exported model gives); 6-view TTA averages each "
          f"test image over flip x {{0, +-1 px translate}}, as airbench94 (`cifar-edge evaluate RUN --tta`).\n")
    write_results(args.results, result, md)


if __name__ == "__main__":
    main()
