"""ReLU (our default) against GELU (airbench's activation) in the default cnn: what each costs
on the edge, from two finished real CIFAR-10 runs of the same recipe (the GELU one is the
ablation's `--act gelu` row, benchmarks/ablate_cifar10.py).

For each run: float top-1 on the 10k test set (metrics.json), its PTQ int8 .tflite's top-1 on
the same 10k images and top-1 agreement with Keras, and LiteRT's 1-thread p50 latency of the
float and int8 files, in one process after the other with the same settings.  Writes
benchmarks/results/activation_cifar10.{json,md}.

    python benchmarks/activation_cifar10.py --relu runs/c10-default --gelu runs/ablate-gelu
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import ROOT, SHARED_DATA, machine, need, write_results

VARIANTS = ("tflite-float32", "tflite-int8")


def bench(run: Path) -> dict:
    """Export (when missing) and bench the float and int8 files on LiteRT at 1 thread."""
    out = run / "bench-activation"
    command = ["bench", str(run), "--no-siblings", "--threads", "1", "--limit", "10000", "--runs", "300",
               "--batch", "32", "--no-reference", "--runtime", "litert", "--out", str(out),
               *[f"--variant={v}" for v in VARIANTS]]
    subprocess.run([sys.executable, "-m", "cifar_edge.cli", *command], check=True, cwd=ROOT)
    rows = {r["name"]: r for r in json.loads((out / "bench.json").read_text())["rows"] if r["status"] == "ok"}
    metrics = json.loads((run / "metrics.json").read_text())
    config = json.loads((run / "config.json").read_text())
    train = config["train"]
    act = train["model_options"].get("act", "relu")
    recipe = {k: train[k] for k in ("model", "epochs", "seed", "precision", "batch_size", "lr", "augment")}
    recipe["data"] = Path(train["data"]).name      # one dataset, however its path was spelled
    recipe["model_options"] = {k: v for k, v in train["model_options"].items() if k != "act"}
    return {"run": str(run), "act": act, "recipe": recipe, "float_top1": metrics["top1"], "float_top1_tta": metrics.get("top1_tta"),
            "train_minutes": round(metrics.get("train_seconds", 0) / 60, 1),
            "int8_top1": rows["tflite-int8"]["top1"], "int8_images": rows["tflite-int8"]["images"],
            "int8_agreement": rows["tflite-int8"]["agreement_keras"],
            "float_p50_ms": rows["tflite-float32"]["latency"]["p50_ms"],
            "int8_p50_ms": rows["tflite-int8"]["latency"]["p50_ms"],
            "int8_placement": rows["tflite-int8"].get("placement")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--relu", default=str(ROOT / "runs" / "cifar10"))
    ap.add_argument("--gelu", default=str(ROOT / "runs" / "ablate-gelu"))
    args = ap.parse_args()
    need(SHARED_DATA / "cifar10")
    rows = [bench(Path(args.relu).resolve()), bench(Path(args.gelu).resolve())]
    relu, gelu = rows
    if (relu["act"], gelu["act"]) != ("relu", "gelu"):
        sys.exit(f"--relu trained with {relu['act']}, --gelu with {gelu['act']}: pass a ReLU run and a GELU run")
    if relu["recipe"] != gelu["recipe"]:
        differ = sorted(k for k in relu["recipe"] if relu["recipe"][k] != gelu["recipe"][k])
        sys.exit(f"the two runs differ in more than the activation ({', '.join(differ)}): train them with one recipe")
    recipe = relu["recipe"]
    lines = [f"# ReLU against GELU in the {recipe['model']} model (real CIFAR-10, {recipe['epochs']} epochs, "
             f"seed {recipe['seed']}, {recipe['precision']})", "",
             "Float top-1: the Keras model on the 10k test images (metrics.json); int8: the PTQ .tflite on LiteRT on "
             "the same images. Training minutes are each run's own (a shared machine; compare them only roughly).", "",
             "| activation | float top-1 | 6-view TTA | training | int8 top-1 | int8 − float | int8 agreement | "
             "float p50 | int8 p50 | int8 placement |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        placement = r["int8_placement"] or {}
        lines.append(f"| {r['act']} | {r['float_top1']:.2%} | {r['float_top1_tta']:.2%} | {r['train_minutes']} min | "
                     f"{r['int8_top1']:.2%} | {(r['int8_top1'] - r['float_top1']) * 100:+.2f} pts | "
                     f"{r['int8_agreement']:.2%} | {r['float_p50_ms']:.3f} ms | {r['int8_p50_ms']:.3f} ms | "
                     f"{placement.get('delegated', '?')}/{placement.get('nodes', '?')} nodes on "
                     f"{placement.get('engine', '?')} |")
    ratios = {"float_latency_gelu_over_relu": gelu["float_p50_ms"] / relu["float_p50_ms"],
              "int8_latency_gelu_over_relu": gelu["int8_p50_ms"] / relu["int8_p50_ms"],
              "float_top1_gelu_minus_relu_points": (gelu["float_top1"] - relu["float_top1"]) * 100,
              "int8_top1_gelu_minus_relu_points": (gelu["int8_top1"] - relu["int8_top1"]) * 100}
    lines += ["", f"GELU / ReLU latency at 1 thread: float {ratios['float_latency_gelu_over_relu']:.2f} x, "
                  f"int8 {ratios['int8_latency_gelu_over_relu']:.2f} x; top-1 GELU − ReLU: float "
                  f"{ratios['float_top1_gelu_minus_relu_points']:+.2f} points, int8 "
                  f"{ratios['int8_top1_gelu_minus_relu_points']:+.2f} points (one seed each: the seed-to-seed "
                  "spread of the float top-1 is about 0.3-0.7 points).", "",
              f"Machine: {machine()['cpu']}, {machine()['cores']} cores, no GPU.", ""]
    write_results("activation_cifar10", {"rows": rows, "ratios": ratios, "machine": machine()}, "\n".join(lines))


if __name__ == "__main__":
    main()
