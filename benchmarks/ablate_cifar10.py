"""What each of airbench's tricks earns here: the default cnn on real CIFAR-10 with one trick
switched off at a time, at the default budget, against the full recipe.  The full recipe's
row is the seed's recorded default run (train_cifar10_airbench_seed<N>.json) where there is one.

Each run is `benchmarks/train_cifar10.py` (so the CLI command and its figures are recorded in
benchmarks/results/ablation_<name>.json); this script then writes the table
benchmarks/results/ablation_cifar10.{json,md}.  A finished run is reused, so the script can
be stopped and started again; the table has every finished row.  One run takes about 22 minutes
of both cores.

    python benchmarks/ablate_cifar10.py [--epochs 10] [--seed 0] [--only whiten,lookahead]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

from common import ROOT, machine, write_results

BASE = "--precision bf16"
# name -> (what is switched off, the flags that switch it off)
ABLATIONS = {
    "full": ("nothing (the full recipe)", ""),
    "whiten": ("patch-whitened stem (a trained random stem instead)", "--no-whiten"),
    "bn_bias_lr": ("BatchNorm bias lr x64", "--bn-bias-lr 1"),
    "dirac": ("dirac init of the 3x3 convs", "--no-dirac"),
    "lookahead": ("lookahead", "--no-lookahead"),
    "alternate_flip": ("alternating flip (random flips instead)", "--random-flip"),
    "logit_scale": ("logits x 1/9", "--logit-scale 1"),
    "gelu": ("ReLU (GELU instead, airbench's activation)", "--act gelu"),
}


def _without(command: str, *options: str) -> list[str]:
    """A recorded command's words without the given options and their values (where a run
    wrote to and read from, which do not change what it trains)."""
    words = command.split()
    return [w for i, w in enumerate(words) if w not in options and (i == 0 or words[i - 1] not in options)]


def _seed_runs(epochs: int) -> dict[int, float]:
    """top-1 of every recorded seed of the default at this epoch count (the spread a row is judged by)."""
    found = {}
    for path in sorted((ROOT / "benchmarks" / "results").glob("train_cifar10_airbench_seed*.json")):
        r = json.loads(path.read_text())
        if r["epochs"] == epochs:
            found[r["seed"]] = r["top1"]
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=",".join(ABLATIONS), help="the rows to train where they have no results yet")
    args = ap.parse_args()
    only = args.only.split(",")
    unknown = sorted(set(only) - set(ABLATIONS))
    if unknown:
        sys.exit(f"--only: unknown row(s) {', '.join(unknown)}; choose from {', '.join(ABLATIONS)}")
    rows, not_run = [], []
    for name, (what, flags) in ABLATIONS.items():   # the table has every finished row, not only those just run
        results = ROOT / "benchmarks" / "results" / f"ablation_{name}.json"
        seed_run = ROOT / "benchmarks" / "results" / f"train_cifar10_airbench_seed{args.seed}.json"
        if name == "full" and not results.is_file() and seed_run.is_file():
            ours = ["cifar-edge", "train", "--model", "cnn", "--epochs", str(args.epochs), "--val-split", "0",
                    "--seed", str(args.seed), *BASE.split()]      # as train_cifar10.py records it
            if _without(json.loads(seed_run.read_text())["command"], "--out", "--data") == ours:
                results = seed_run      # the seed's recorded run of the default is this row's command
        if not results.is_file() and name not in only:
            not_run.append(name)
            continue
        if not results.is_file():
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_cifar10.py"), "--epochs", str(args.epochs),
                            "--seed", str(args.seed), "--out", str(ROOT / "runs" / f"ablate-{name}"),
                            f"--flags={BASE} {flags}".strip(), "--results", f"ablation_{name}"], check=True, cwd=ROOT)
        r = json.loads(results.read_text())
        rows.append({"name": name, "off": what, "flags": flags, "top1": r["top1"], "top1_tta": r.get("top1_tta6"),
                     "train_minutes": r["train_minutes"], "command": r["command"]})
    full = next((r for r in rows if r["name"] == "full"), None)
    seeds = _seed_runs(args.epochs)
    mean = sum(seeds.values()) / len(seeds) if seeds else None
    lines = ["# What each trick earns: the default cnn on real CIFAR-10, one trick off at a time", "",
             f"{args.epochs} epochs, seed {args.seed}, bf16; the full recipe's row first.", "",
             "| switched off | flags | top-1 | vs full (same seed) | vs the full recipe's seed mean | 6-view TTA | "
             "training time |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        delta = f"{(r['top1'] - full['top1']) * 100:+.2f} pts" if full and r is not full else ""
        vs_mean = f"{(r['top1'] - mean) * 100:+.2f} pts" if mean is not None and r is not full else ""
        tta = f"{r['top1_tta']:.2%}" if r["top1_tta"] is not None else "n/a"
        lines.append(f"| {r['off']} | `{r['flags']}` | {r['top1']:.2%} | {delta} | {vs_mean} | {tta} | "
                     f"{r['train_minutes']:.1f} min |")
    spread = ", ".join(f"seed {k}: {v:.2%}" for k, v in seeds.items())
    lines += ["", f"The full recipe's recorded seeds ({spread}; mean {mean:.2%}) spread "
                  f"{(max(seeds.values()) - min(seeds.values())) * 100:.2f} points: with one seed per row, a "
                  "difference smaller than that is not told apart from seed noise." if seeds else "",
              f"Not run yet: {', '.join(not_run)} (`--only {','.join(not_run)}` runs them)." if not_run else "",
              "", "Machine: 2-core CPU, no GPU. Training times are each run's own, on a shared machine whose speed "
                  "varied between days: compare them across rows only roughly.", ""]
    write_results("ablation_cifar10", {"epochs": args.epochs, "seed": args.seed, "rows": rows, "not_run": not_run,
                                       "seed_runs": seeds,
                                       "seed_mean": mean, "machine": machine()}, "\n".join(lines))


if __name__ == "__main__":
    main()
