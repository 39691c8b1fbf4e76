"""`cifar-edge train` throughput against a plain `model.fit` of the same model and data.

Both fit the same compiled model (same recipe) on the same tf.data pipeline (same
augmentation) for the same epochs, in one process, alternating A/B/A/B so machine noise
hits both.  Each arm's time is the wall time of its whole ``model.fit`` call (so ours
includes every callback: progress, history, TensorBoard, crash backup, and both include
the same graph tracing), median over the repeats.  The ratio ours/plain is the cost of
our loop.  Bar: ratio >= 0.95.

Both arms train under the same ``--precision`` (default bf16, the setting of the
default CNN's CIFAR-10 run in the README) with the same optimizer, lookahead included.

    python benchmarks/train_overhead.py [--images 6000] [--epochs 3] [--repeats 3] [--precision bf16]
"""
from __future__ import annotations

import argparse
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import SHARED_DATA, machine, need, write_results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=6000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision", default="bf16", choices=("float32", "bf16"))
    args = ap.parse_args()

    from cifar_edge import console
    from cifar_edge.data import load_path, make_dataset
    from cifar_edge.models import get_model_spec
    from cifar_edge.train import TrainConfig, train
    from cifar_edge.train.distribute import accelerate, compute_policy
    from cifar_edge.train.loop import _compile, seed_everything

    data_dir = need(SHARED_DATA / "cifar10")
    ds = load_path(data_dir)
    x, y = ds.x_train[:args.images], ds.y_train[:args.images]
    tmp = Path(tempfile.mkdtemp())
    import numpy as np
    np.savez(tmp / "subset.npz", x_train=x, y_train=y, x_test=ds.x_test[:1000], y_test=ds.y_test[:1000],
             class_names=np.array(ds.class_names))
    cfg = TrainConfig(model="cnn", data=str(tmp / "subset.npz"), epochs=args.epochs, val_split=0.0,
                      precision=args.precision).resolved(n_train=len(x))   # the batch `train` picks for this data
    spec = get_model_spec("cnn")
    console.set_quiet(True)

    policy = accelerate(cfg.precision)["policy"]
    params = []                                   # of the model both arms train, for the record

    def plain_fit():
        seed_everything(0)
        with compute_policy(policy):
            model = spec.build(ds.num_classes)
            params.append(model.count_params())
            _compile(model, cfg, math.ceil(len(x) / cfg.batch_size), ds.num_classes, xla=False)
            data = make_dataset(x, y, ds.num_classes, cfg.batch_size, spec.normalization, training=True,
                                augment=cfg.augment, seed=0, epochs=range(args.epochs))
            t0 = time.perf_counter()
            model.fit(data, epochs=args.epochs, steps_per_epoch=math.ceil(len(x) / cfg.batch_size), verbose=0)
            return time.perf_counter() - t0

    def ours(i):
        run = tmp / f"ours{i}"
        metrics = train(TrainConfig(**{**cfg.to_dict(), "augment": cfg.augment}), run)
        shutil.rmtree(run)
        return metrics["fit_seconds_this_session"]

    plain, mine = [], []
    for i in range(args.repeats):
        plain.append(plain_fit())
        mine.append(ours(i))
    n_images = len(x) * args.epochs
    plain_ips = n_images / statistics.median(plain)
    ours_ips = n_images / statistics.median(mine)
    ratio = ours_ips / plain_ips
    result = {"images": len(x), "epochs": args.epochs, "repeats": args.repeats, "precision": args.precision,
              "model": "cnn", "params": params[0], "batch_size": cfg.batch_size, "lookahead": cfg.lookahead,
              "plain_fit_seconds": [round(s, 2) for s in plain], "cifar_edge_fit_seconds": [round(s, 2) for s in mine],
              "plain_images_per_second": round(plain_ips, 1), "cifar_edge_images_per_second": round(ours_ips, 1),
              "ratio": round(ratio, 3), "meets_bar": ratio >= 0.95, "machine": machine()}
    md = ("# `cifar-edge train` vs plain `model.fit` (same model, data, recipe)\n\n"
          "| plain model.fit img/s | cifar-edge train img/s | ratio | bar (>= 0.95) |\n|---|---|---|---|\n"
          f"| {plain_ips:.1f} | {ours_ips:.1f} | {ratio:.3f} | {'met' if result['meets_bar'] else 'NOT met'} |\n\n"
          f"Default `cnn` ({result['params']:,} params) in {args.precision}, batch {cfg.batch_size}, lookahead "
          f"{'on' if cfg.lookahead else 'off'} in both; {len(x)} real CIFAR-10 images x "
          f"{args.epochs} epochs, {args.repeats} alternating runs each; median "
          "wall time of the whole fit, ours including its callbacks (progress, history, TensorBoard, "
          "crash backup).\n")
    write_results("train_overhead", result, md)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
