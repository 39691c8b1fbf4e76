"""int8 of short cnn runs: Keras top-1 against the int8 and dynamic-range files, before and after
the identity split (cifar_edge/formats/_identity_split.py), on the first 2,000 test images.

    python benchmarks/int8_short_runs.py --data /tmp/first5k.npz --epochs 1,2,3,5 --runs /tmp/int8-runs

``first5k.npz``: the first 5,000 training images of ../shared/data/cifar10 (part 1) and its first
2,000 test images.  Each run trains in a fresh process (`cifar-edge train --model cnn --seed 0`).
"Before" is the flatbuffer the model converts to without the split (what export wrote until
then, or refused to); "after" is the file `cifar-edge export` writes now, run from disk.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import ROOT, machine, write_results

CLI = [sys.executable, "-m", "cifar_edge.cli"]
VARIANTS = {"int8": ["--int8"], "dynamic": ["--dynamic"]}


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True)


def measure(run: Path, data: str) -> dict:
    import numpy as np

    from cifar_edge.data import prepare_images
    from cifar_edge.data.sources import load_npz
    from cifar_edge.export import ExportConfig
    from cifar_edge.export.exporter import prepare
    from cifar_edge.formats import ExportOptions, open_model
    from cifar_edge.formats.keras import keras_runner
    from cifar_edge.export.repair import file_bytes
    from cifar_edge.formats import get_format
    from cifar_edge.formats.tflite import open_litert
    from cifar_edge.runs import load_run
    from cifar_edge.timing import latency

    loaded = load_run(run)
    test = load_npz(data)
    images = prepare_images(test.x_test, loaded.norm, loaded.input_size)
    labels = np.asarray(test.y_test)
    acc = lambda out: float(np.mean(out.argmax(1) == labels))  # noqa: E731

    def engine(runner, key):
        """Op placement and 1-thread p50 latency of a file, as bench reports them."""
        p = runner.placement or {}
        row[f"{key}_placement"] = f"{p.get('engine')} {p.get('delegated')}/{p.get('nodes')}"
        row[f"{key}_p50_ms"] = round(latency(runner.run, images[:1], runs=200, warmup=20)["p50_ms"], 3)
        return runner
    row = {"run": str(run), "test_images": len(labels), "keras_top1": acc(keras_runner(loaded.model).predict(images))}
    ctx, _ = prepare(loaded, ExportConfig(), calibrate=True)
    for name, flags in VARIANTS.items():
        opts = ExportOptions(quantization=name)
        before = file_bytes(ctx, get_format("tflite"), opts)     # the file export wrote from the unsplit model
        row[f"{name}_before_top1"] = acc(engine(open_litert(before, threads=1), f"{name}_before").predict(images))
        out = run / "export-bench"
        done = _cli("export", str(run), "--format", "tflite", *flags, "--out", str(out), "--json")
        row[f"{name}_export_rc"] = done.returncode
        if done.returncode == 0:
            entry = json.loads(done.stdout)["entries"][0]
            after = engine(open_model(out / entry["file"], threads=1), f"{name}_after")
            row[f"{name}_after_top1"] = acc(after.predict(images))
            row[f"{name}_identity_split"] = (entry.get("identity_split") or {}).get("layers", [])
            row[f"{name}_variant"] = entry["variant"]
            row[f"{name}_gate"] = entry["parity"].get("gate")
        else:
            row[f"{name}_after_top1"] = None
            row[f"{name}_refusal"] = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", default="1,2,3,5")
    ap.add_argument("--runs", default="/tmp/int8-short-runs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = []
    for n in [int(e) for e in args.epochs.split(",")]:
        run = Path(args.runs) / f"e{n}"
        if not (run / "model.keras").is_file():
            done = _cli("train", "--model", "cnn", "--data", args.data, "--epochs", str(n), "--seed", str(args.seed),
                        "--out", str(run))
            if done.returncode:
                sys.exit(f"training {n} epochs failed: {done.stderr[-400:]}")
        rows.append({"epochs": n, **measure(run, args.data)})
        print(json.dumps(rows[-1]), flush=True)
    pct = lambda v: "refused" if v is None else f"{100 * v:.2f}"  # noqa: E731
    lines = ["# int8 of short `cnn` runs (first 5,000 CIFAR-10 training images)", "",
             f"`cifar-edge train --model cnn --data first5k.npz --epochs N --seed {args.seed}`, then "
             "`cifar-edge export RUN --format tflite --int8` / `--dynamic`; top-1 on the first "
             f"{rows[0]['test_images']} test images. Before: the same model converted without the identity split "
             "(the file export refused to write, or wrote). After: the file export writes now, read back from disk.",
             "", "| epochs | Keras | int8 before | int8 after | dynamic before | dynamic after | convs split |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['epochs']} | {pct(r['keras_top1'])} | {pct(r['int8_before_top1'])} | "
                     f"{pct(r['int8_after_top1'])} | {pct(r['dynamic_before_top1'])} | {pct(r['dynamic_after_top1'])} | "
                     f"{', '.join(r.get('int8_identity_split') or []) or '-'} |")
    lines += ["", "Export's own check (the held-out val split, 501 images; budget 1 point, exact McNemar) and the files' "
              "op placement and 1-thread p50 latency (LiteRT + XNNPACK, 200 runs on a shared 2-core machine: "
              "differences under ~20% are noise here):", "",
              "| epochs | variant | drop on val (p) | agreement | placement before -> after | p50 ms before -> after |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        for name in VARIANTS:
            g = r.get(f"{name}_gate") or {}
            lines.append(f"| {r['epochs']} | {r.get(f'{name}_variant', name)} | "
                         f"{g.get('drop_points', float('nan')):+.2f} ({g.get('p_value', float('nan')):.2g}) | "
                         f"{100 * g.get('agreement', float('nan')):.1f}% | {r.get(f'{name}_before_placement')} -> "
                         f"{r.get(f'{name}_after_placement')} | {r.get(f'{name}_before_p50_ms')} -> "
                         f"{r.get(f'{name}_after_p50_ms')} |")
    m = machine()
    lines += ["", f"Machine: {m['cpu']}, {m['cores']} cores. Script: `benchmarks/int8_short_runs.py`."]
    write_results("int8_short_runs", {"rows": rows, "machine": m, "seed": args.seed}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
