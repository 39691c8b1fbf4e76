"""The microcontroller model: cnn-micro on the real CIFAR-10, int8, run in TFLite Micro.

Trains `cnn-micro` with the CLI (or takes a finished run), exports the int8 .tflite (float and
int8 I/O), and runs each file in TFLite Micro's interpreter on the whole 10k test set: its
top-1, agreement with LiteRT on the same file, and the tensor arena and flash it needs.
Issue 15's bar (MLPerf Tiny's task is CIFAR-10 at 85%): int8 >= 88% with an arena <= 256 KB
and a model <= 1 MB.  Writes benchmarks/results/mcu_cifar10.{json,md}.

    python benchmarks/mcu_cifar10.py [--epochs 12] [--seed 0] [--out runs/micro] [--existing] [--images N]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, SHARED_DATA, machine, need, write_results

BAR_TOP1, ARENA_BAR, FLASH_BAR = 0.88, 256 * 1024, 1024 * 1024
VARIANTS = ("tflite-int8", "tflite-int8-io-int8")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "runs" / "micro"))
    ap.add_argument("--existing", action="store_true", help="use the finished run in --out instead of training")
    ap.add_argument("--images", type=int, default=None, help="test images for TFLite Micro (default: all 10k)")
    args = ap.parse_args()
    data = need(SHARED_DATA / "cifar10")
    out = Path(args.out).resolve()
    train_cmd = ["cifar-edge", "train", "--model", "cnn-micro", "--data", str(data), "--epochs", str(args.epochs),
                 "--val-split", "0", "--out", str(out), "--seed", str(args.seed), "--precision", "bf16"]
    if not args.existing:
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "cifar_edge.cli", *train_cmd[1:]], check=True, cwd=ROOT)
    export_cmd = ["cifar-edge", "export", str(out), *[f"--variant={v}" for v in VARIANTS]]
    subprocess.run([sys.executable, "-m", "cifar_edge.cli", *export_cmd[1:]], check=True, cwd=ROOT)

    import numpy as np

    from cifar_edge.data import prepare_images
    from cifar_edge.export import read_manifest
    from cifar_edge.formats import open_model
    from cifar_edge.console import progress
    from cifar_edge.runs import RunFolder, load_run, run_data

    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    loaded = load_run(out)
    x, y, _ = run_data(loaded).held_out()
    if args.images:
        x, y = x[:args.images], y[:args.images]
    images = prepare_images(x, loaded.norm, loaded.input_size)
    manifest = {e["variant"]: e for e in read_manifest(RunFolder(out).export_dir).values()}
    files = []
    for variant in VARIANTS:
        path = RunFolder(out).export_dir / manifest[variant]["file"]
        micro = open_model(path, runtime="tflite-micro")
        t0 = time.perf_counter()
        with progress(f"TFLite Micro: {variant}", total=len(images)) as advance:
            outputs = []
            for i in range(0, len(images), 100):
                outputs.append(micro.predict(images[i:i + 100]))
                advance(len(outputs[-1]))
        seconds = time.perf_counter() - t0
        micro_out = np.concatenate(outputs)
        litert_out = open_model(path).predict(images)
        foot = micro.footprint
        files.append({
            "variant": variant, "file": path.name, "test_images": len(y),
            "top1_tflite_micro": float(np.mean(micro_out.argmax(1) == y)),
            "top1_litert": float(np.mean(litert_out.argmax(1) == y)),
            "agreement_with_litert": float(np.mean(micro_out.argmax(1) == litert_out.argmax(1))),
            "arena_bytes": foot["arena_bytes"], "flash_bytes": foot["flash_bytes"], "fits": foot["fits"],
            "tflite_micro_ms_per_image": seconds * 1e3 / len(y),
            "meets_bar": bool(np.mean(micro_out.argmax(1) == y) >= BAR_TOP1 and foot["arena_bytes"] <= ARENA_BAR
                              and foot["flash_bytes"] <= FLASH_BAR),
        })
    result = {"commands": [" ".join(train_cmd), " ".join(export_cmd)], "seed": args.seed,
              "params": config["params"], "flops_per_image": config["flops"], "epochs": metrics["epochs_run"],
              "float_top1": metrics["top1"], "train_minutes": round(metrics["train_seconds"] / 60, 2),
              "files": files, "bar": {"top1": BAR_TOP1, "arena_bytes": ARENA_BAR, "flash_bytes": FLASH_BAR},
              "machine": machine(), "versions": config["versions"]}
    rel = lambda s: s.replace(str(data), "../shared/data/cifar10").replace(str(out), str(Path(args.out)))  # noqa: E731
    md = ["# cnn-micro on real CIFAR-10, in TFLite Micro\n",
          f"`{rel(result['commands'][0])}` then `{rel(result['commands'][1])}`; seed {args.seed}; "
          f"{config['params']:,} params, {config['flops'] / 1e6:.0f} MFLOPs/img; float (Keras) top-1 "
          f"{metrics['top1']:.2%} after {result['train_minutes']:.1f} min of training ({metrics['epochs_run']} epochs).\n",
          "| file | top-1 TFLite Micro | top-1 LiteRT | agreement | arena KB | flash KB | fits | ms/img (TFLM, host) | bar (>=88%, arena <=256 KB, model <=1 MB) |",
          "|---|---|---|---|---|---|---|---|---|"]
    for f in files:
        md.append(f"| {f['file']} | {f['top1_tflite_micro']:.2%} | {f['top1_litert']:.2%} | {f['agreement_with_litert']:.2%} | "
                  f"{f['arena_bytes'] / 1024:.1f} | {f['flash_bytes'] / 1024:.1f} | RAM {f['fits']['ram']}, flash {f['fits']['flash']} | "
                  f"{f['tflite_micro_ms_per_image']:.1f} | {'met' if f['meets_bar'] else 'NOT met'} |")
    md.append(f"\nOn {len(y):,} real CIFAR-10 test images; arena as TFLite Micro's RecordingMicroAllocator "
              f"reports it; machine: {result['machine']['cpu']}, {result['machine']['cores']} cores.\n")
    write_results("mcu_cifar10", result, "\n".join(md))


if __name__ == "__main__":
    main()
