"""int8 of the transfer models, each file run in its runtime on every held-out image.

For each model: the float .tflite, plain PTQ int8, int16x8, the `export --max-drop` winner
and the QAT model's int8, with top-1 on all held-out images, size, 1-thread LiteRT latency,
the layers kept in float, and `cifar-edge diagnose`'s plot.  Every step is the CLI command
recorded in the results, in its own process; runs and files that exist are reused.

    python benchmarks/int8_transfer_cifar100.py --model mobilenetv2-96      # MobileNetV2, 96 px
    python benchmarks/int8_transfer_cifar100.py --model convnext-nano-c10   # ConvNeXt-nano, CIFAR-10

MobileNetV2 trains on the real CIFAR-100 8,000/2,000 split that transfer_cifar100.py writes
(imported ImageNet weights); convnext-nano trains from scratch on the real CIFAR-10 (50k/10k),
since it has no official weights and 8,000 images do not teach it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from common import ROOT, SHARED_DATA, machine, need, write_results

TFLITE = "weights/mobilenet_v2_1.0_224_imagenet_tflite_quant/mobilenet_v2_1.0_224_quant.tflite"
CHECK = 2000           # held-out images the parity check and the --max-drop search use


def cli(*args: str):
    print("$ cifar-edge", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "cifar_edge.cli", *args], check=True, cwd=ROOT)


def plans(out: Path, size: int) -> dict:
    split = out / "cifar100_test_80_20.npz"
    weights = out / "mobilenetv2_imagenet_from_tflite.h5"
    return {
        f"mobilenetv2-{size}": {"data": str(split), "prepare": lambda: _prepare_cifar100(out, split, weights),
                                "train": ["--model", "mobilenetv2", "--weights", str(weights), "--input-size",
                                          str(size), "--epochs", "6", "--head-epochs", "2", "--lr", "0.0005"],
                                "qat": ["--epochs", "2"], "max_drop": 0.5},
        "convnext-nano-c10": {"data": str(SHARED_DATA / "cifar10"), "prepare": lambda: None,
                              "train": ["--model", "convnext-nano", "--epochs", "12", "--lr", "0.002",
                                        "--batch-size", "128"],
                              "qat": ["--epochs", "1", "--limit", "10000"], "max_drop": 1.0},
    }


def _prepare_cifar100(out: Path, split: Path, weights: Path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from transfer_cifar100 import write_split
    if not split.is_file():
        write_split(out, seed=0)
    if not weights.is_file():
        cli("weights", "import-tflite", str(need(SHARED_DATA.parent / TFLITE)), "--out", str(weights))


def measure(run: Path, file: Path) -> dict:
    """top-1 on every held-out image, size and 1-thread LiteRT latency of one .tflite."""
    sys.path.insert(0, str(ROOT))
    from cifar_edge.data import prepare_images
    from cifar_edge.export.parity import top1
    from cifar_edge.runs import load_run, run_data
    from cifar_edge.formats.tflite import open_litert
    from cifar_edge.timing import latency
    loaded = load_run(run)
    x, y, split = run_data(loaded).held_out()
    images = prepare_images(x, loaded.norm, loaded.input_size)
    runner = open_litert(file, threads=1)
    return {"file": str(file.relative_to(ROOT)) if file.is_relative_to(ROOT) else str(file), "split": split,
            "images": int(len(y)), "top1": top1(runner.predict(images), y), "size_bytes": file.stat().st_size,
            "latency_ms_1thread": latency(runner.run, images[:1], runs=200, warmup=20)["p50_ms"],
            "threads": 1, "runtime": runner.runtime}


def bench_model(name: str, plan: dict, out: Path) -> dict:
    plan["prepare"]()
    run, qat = out / name, out / f"{name}-qat"
    if not (run / "metrics.json").is_file():
        cli("train", "--data", plan["data"], "--val-split", "0", "--seed", "0", "--out", str(run), *plan["train"],
            *(["--resume"] if (run / "config.json").is_file() else []))
    check = ["--check-images", str(CHECK)]
    anyway = ["--no-repair", "--max-drop", "100", "--min-agreement-int8", "0"]    # written whatever they lose
    for flags in (["--format", "tflite"], ["--format", "tflite", "--int8", *anyway],
                  ["--variant", "tflite-int16x8", *anyway]):
        cli("export", str(run), *flags, *check)
    # What a user gets from `export --int8` with nothing else said (its budget and repair by default).
    cli("export", str(run), "--format", "tflite", "--int8", *check, "--out", str(run / "default"))
    cli("export", str(run), "--format", "tflite", "--int8", "--max-drop", str(plan["max_drop"]), *check,
        "--out", str(run / "repaired"))
    cli("diagnose", str(run), *check)
    (default,) = json.loads((run / "default" / "export.json").read_text())["exports"].values()
    (repaired,) = json.loads((run / "repaired" / "export.json").read_text())["exports"].values()
    files = {"float32": run / "export" / "tflite-float32.tflite", "int8 PTQ": run / "export" / "tflite-int8.tflite",
             "int16x8": run / "export" / "tflite-int16x8.tflite",
             "export --int8 (default)": run / "default" / default["file"],
             f"--max-drop {plan['max_drop']:g} winner": run / "repaired" / repaired["file"]}
    if not (qat / "metrics.json").is_file():
        shutil.rmtree(qat, ignore_errors=True)
        cli("optimize", str(run), "--qat", *plan["qat"], "--out", str(qat), "--max-drop", "100")
    cli("export", str(qat), "--format", "tflite", "--int8", *check, "--min-agreement-int8", "0")
    files["QAT int8"] = qat / "export" / "tflite-int8.tflite"
    rows = {label: measure(run, f) for label, f in files.items()}
    base = rows["float32"]
    for label, r in rows.items():
        r["drop_points"] = round(100 * (base["top1"] - r["top1"]), 2)
        r["latency_vs_float"] = round(r["latency_ms_1thread"] / base["latency_ms_1thread"], 3)
        r["size_vs_float"] = round(r["size_bytes"] / base["size_bytes"], 3)
    rows[f"--max-drop {plan['max_drop']:g} winner"]["float_layers"] = repaired["options"]["float_layers"]
    rows["export --int8 (default)"]["float_layers"] = default["options"]["float_layers"]
    qat_metrics = json.loads((qat / "metrics.json").read_text())
    return {"run": str(run), "max_drop": plan["max_drop"], "rows": rows,
            "repair_candidates": repaired["repair"]["candidates"] if "repair" in repaired else [],
            "qat_keras_top1": qat_metrics["top1"], "qat_parent_top1": qat_metrics["parent_top1"],
            "diagnosis_plot": str(run / "export" / "diagnose" / "tflite-int8.png"),
            "train_command": plan["train"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "runs" / "int8"))
    ap.add_argument("--model", default="mobilenetv2-96", help="mobilenetv2-96, mobilenetv2-128 or convnext-nano-c10")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    size = int(args.model.rsplit("-", 1)[1]) if args.model.startswith("mobilenetv2-") else 96
    result = {"machine": machine(), "seed": 0, "model": args.model,
              **bench_model(args.model, plans(out, size)[args.model], out)}
    lines = [f"# int8 of {args.model} (every held-out image, 1-thread LiteRT latency)", "",
             "| file | top-1 | drop (points) | size MB | × float size | latency ms | × float latency | float layers |",
             "|---|---|---|---|---|---|---|---|"]
    for label, r in result["rows"].items():
        lines.append(f"| {label} | {r['top1']:.2%} | {r['drop_points']:+.2f} | {r['size_bytes'] / 1e6:.2f} | "
                     f"{r['size_vs_float']:.3f} | {r['latency_ms_1thread']:.3f} | {r['latency_vs_float']:.3f} | "
                     f"{len(r.get('float_layers') or [])} |")
    lines.append("")
    lines.append(f"QAT Keras model {result['qat_keras_top1']:.2%} vs its float parent {result['qat_parent_top1']:.2%}.")
    lines.append(f"Machine: {result['machine'].get('cpu', '?')}; latency ratios are of one run on this machine.")
    write_results(f"int8_{args.model.replace('-', '_')}", result, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
