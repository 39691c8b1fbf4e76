"""Models made elsewhere through `cifar-edge import`, one per source kind, on the real CIFAR-10.

Each model is trained here the way its users make it (a notebook's tf_keras CNN, the same network
in Keras 3, a ResNet-18 adapted to 32 px in PyTorch as a .pt2 and as an .onnx), or brought as a
file (``--pt2 PATH``: e.g. airbench94's own network, trained by its own code), then imported,
exported (every variant its kind makes), repaired (``--max-drop``) and benched at one thread on
the 10k test images, each step a `cifar-edge` command in a new process.

    python benchmarks/import_models.py [--only notebook,keras3,resnet18] [--epochs 10] [--pt2 airbench.pt2 [--pt2-onnx]]

``--pt2-onnx`` also writes that network as an .onnx (torch's dynamo exporter, external data), imports
that, and scores every ONNX/OpenVINO file of both runs against torch itself (``torch agreement``):
the files' agreement with their own source says nothing about torch when the source is an .onnx.

Writes benchmarks/results/import_models.{json,md}: per file its top-1 on the 10k test images,
size, 1-thread latency, drop against the source model, and the --max-drop winner.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import machine, write_results  # noqa: E402

DATA = Path(os.environ.get("CIFAR_EDGE_SHARED", ROOT.parent / "shared" / "data")) / "cifar10"
SOURCES = ("notebook", "keras3", "resnet18", "resnet18-onnx")


def cli(*args) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "cifar_edge.cli", *map(str, args)], capture_output=True, text=True)
    if r.returncode not in (0, 1):
        raise SystemExit(f"cifar-edge {' '.join(map(str, args))} failed:\n{r.stderr[-3000:]}")
    print(f"{time.perf_counter() - t0:7.1f} s  cifar-edge {' '.join(map(str, args))}", flush=True)
    return time.perf_counter() - t0


def cifar10():
    parts = [np.load(DATA / f"cifar10_train_jpeg_part{i}.npz") for i in (1, 2)]
    test = np.load(DATA / "cifar10_test.npz")
    return (np.concatenate([p["x_train"] for p in parts]), np.concatenate([p["y_train"] for p in parts]).astype(np.int64),
            test["x_test"], test["y_test"].astype(np.int64))


def notebook_cnn(K):
    """The CNN of a typical Keras CIFAR notebook: Rescaling inside, BatchNorm, Dropout, softmax."""
    L = K.layers
    return K.Sequential([
        K.Input((32, 32, 3)), L.Rescaling(1 / 255.0),
        L.Conv2D(32, 3, padding="same", activation="relu"), L.BatchNormalization(),
        L.Conv2D(32, 3, padding="same", activation="relu"), L.BatchNormalization(), L.MaxPooling2D(), L.Dropout(0.2),
        L.Conv2D(64, 3, padding="same", activation="relu"), L.BatchNormalization(),
        L.Conv2D(64, 3, padding="same", activation="relu"), L.BatchNormalization(), L.MaxPooling2D(), L.Dropout(0.3),
        L.Conv2D(128, 3, padding="same", activation="relu"), L.BatchNormalization(), L.MaxPooling2D(), L.Dropout(0.4),
        L.GlobalAveragePooling2D(), L.Dense(10, activation="softmax")])


def train_keras(which: str, out: Path, epochs: int, seed: int) -> tuple[Path, dict]:
    if which == "notebook":
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        import tf_keras as K
        path = out / "cifar10_notebook.h5"
    else:
        import keras as K
        path = out / "cifar10_keras3.keras"
    x, y, xt, yt = cifar10()
    K.utils.set_random_seed(seed)
    model = notebook_cnn(K)
    model.compile(K.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=2)
    model.save(path)
    return path, {"train_seconds": round(time.perf_counter() - t0, 1), "epochs": epochs, "train_images": len(x)}


def train_resnet18(out: Path, epochs: int, seed: int, limit: int) -> tuple[Path, Path, dict]:
    """ResNet-18 (torchvision's layout: BasicBlocks 2-2-2-2, 64..512 channels) adapted to 32 px
    as the CIFAR literature does: a 3x3 stride-1 stem and no max pool."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + self.down(x))

    layers, cin = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()], 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10))
    torch.manual_seed(seed)
    x, y, _, _ = cifar10()
    x, y = x[:limit], y[:limit]
    mean, std = x.reshape(-1, 3).mean(0), x.reshape(-1, 3).std(0)
    xs = torch.from_numpy(((x - mean) / std).astype(np.float32)).permute(0, 3, 1, 2)
    ys = torch.from_numpy(y)
    steps = epochs * ((len(xs) + 127) // 128)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=steps)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(xs))
        for i in range(0, len(xs), 128):
            idx = order[i:i + 128]
            batch = xs[idx]
            flip = torch.rand(len(batch)) < 0.5
            batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
            opt.zero_grad()
            nn.functional.cross_entropy(net(batch), ys[idx]).backward()
            opt.step()
            sched.step()
        print(f"resnet18 epoch {epoch + 1}/{epochs}  {time.perf_counter() - t0:.0f} s", flush=True)
    net.eval()
    pt2 = out / "resnet18_cifar.pt2"
    program = torch.export.export(net, (torch.zeros(2, 3, 32, 32),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(pt2))
    onnx_path = out / "resnet18_cifar.onnx"
    torch.onnx.export(program, dynamo=True, input_names=["x"]).save(str(onnx_path), external_data=True)
    stats = {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}
    return pt2, onnx_path, {"train_seconds": round(time.perf_counter() - t0, 1), "epochs": epochs,
                            "train_images": int(limit), **stats}


def onnx_of(pt2: Path, out: Path) -> Path:
    """The .pt2's network as an .onnx, as its users would write it: torch.onnx.export (dynamo)."""
    import torch
    path = out / f"{pt2.stem}.onnx"
    if not path.is_file():
        torch.onnx.export(torch.export.load(str(pt2)), dynamo=True, input_names=["x"]).save(str(path), external_data=True)
    return path


_TORCH_ANSWERS: dict = {}       # (.pt2, normalization, size) -> torch's answers: both runs of one .pt2 share them


def torch_agreement(pt2: Path, run: Path) -> dict:
    """Top-1 agreement with torch (the .pt2 run on the 10k test images) of each ONNX and OpenVINO
    file of ``run``, run by each runtime that takes it; written to run/torch_agreement.json."""
    import torch
    from cifar_edge.data import prepare_images
    from cifar_edge.formats import open_model
    from cifar_edge.runs import load_run
    loaded = load_run(run)
    _, _, x, y = cifar10()
    images = prepare_images(x, loaded.norm, loaded.input_size)
    key = (str(pt2), tuple(loaded.norm.mean), tuple(loaded.norm.std), loaded.input_size)   # what the images are made of
    if key not in _TORCH_ANSWERS:
        net = torch.export.load(str(pt2)).module()
        with torch.no_grad():
            _TORCH_ANSWERS[key] = np.concatenate([
                net(torch.from_numpy(np.ascontiguousarray(images[i:i + 500].transpose(0, 3, 1, 2)))).numpy()
                for i in range(0, len(images), 500)]).argmax(1)
    ref = _TORCH_ANSWERS[key]
    manifest = json.loads((run / "export" / "export.json").read_text())
    out = {"torch_top1": float(np.mean(ref == y))}
    for e in manifest["exports"].values():
        if e["format"] not in ("onnx", "openvino"):
            continue
        for runtime in ("onnxruntime", "openvino") if e["format"] == "onnx" else ("openvino",):
            pred = open_model(run / "export" / e["file"], runtime=runtime).predict(images, batch_size=500).argmax(1)
            key = f"{e['variant']}@{runtime}"
            out[key] = {"agreement": float(np.mean(pred == ref)), "top1": float(np.mean(pred == y))}
            print(f"torch agreement {run.name} {key}: {out[key]}", flush=True)
    (run / "torch_agreement.json").write_text(json.dumps(out, indent=1))
    return out


def measure(name: str, model: Path, runs: Path, extra: list, facts: dict) -> list[dict]:
    run = runs / name
    if model is None:                      # --reuse: the figures of a finished run
        if not (run / "mediapipe.json").is_file():
            mediapipe(run, json.loads((run / "export" / "export.json").read_text()))
        return collect(name, run)
    cli("import", model, "--data", DATA, "--out", run, *extra)
    cli("export", run, "--all", "--check-images", "2000")
    manifest = json.loads((run / "export" / "export.json").read_text())
    fmt = "tflite" if any(e["format"] == "tflite" for e in manifest["exports"].values()) else "onnx"
    repair = run / "repair"
    cli("export", run, "--format", fmt, "--int8", "--max-drop", "0.5", "--out", repair, "--check-images", "2000")
    repaired = json.loads((repair / "export.json").read_text()) if (repair / "export.json").is_file() else {}
    winner = next(iter(repaired.get("exports", {}).values()), None)
    cli("bench", run, "--limit", "10000", "--threads", "1", "--runs", "100", "--batch", "32", "--no-export",
        "--no-reference", "--no-siblings", "--runtime", "litert", "--runtime", "onnxruntime", "--runtime", "openvino")
    (run / "benchmark_facts.json").write_text(json.dumps({"winner": (winner or {}).get("variant"), **facts}))
    mediapipe(run, manifest)
    return collect(name, run)


MEDIAPIPE = ROOT / ".tools" / "mediapipe-venv" / "bin" / "python"


def mediapipe(run: Path, manifest: dict):
    """MediaPipe Tasks' ImageClassifier (its own venv) on each .tflite with float or uint8 input, on
    the 10k test images as uint8 pixels: nothing but the file and its metadata tells it the input
    type, normalization and labels.  Its top-1 goes beside ours in the table."""
    files = [e for e in manifest["exports"].values() if e["format"] == "tflite" and e["options"].get("io") != "int8"]
    if not MEDIAPIPE.is_file() or not files:
        print(f"MediaPipe rows skipped: {'no .tflite' if not files else f'{MEDIAPIPE} missing (bash .ci/run installs it)'}")
        return
    _, _, x, y = cifar10()
    images = run / "mediapipe_images.npy"
    np.save(images, x)
    r = subprocess.run([str(MEDIAPIPE), str(ROOT / "tests" / "mediapipe_classify.py"), str(images),
                        *[str(run / "export" / e["file"]) for e in files]], capture_output=True, text=True)
    images.unlink()
    if r.returncode != 0:
        raise SystemExit(f"MediaPipe failed:\n{r.stderr[-2000:]}")
    out = {}
    for e, (path, got) in zip(files, json.loads(r.stdout).items()):
        out[e["variant"]] = ({"error": got["error"]} if "error" in got else
                             {"top1": float(np.mean(np.argmax(got["scores"], axis=1) == y)), "images": int(len(y))})
        print(f"MediaPipe {e['variant']}: {out[e['variant']]}", flush=True)
    (run / "mediapipe.json").write_text(json.dumps(out, indent=1))


def collect(name: str, run: Path) -> list[dict]:
    """One row per file and runtime (the backend that ran it) from the run's bench.json."""
    facts = json.loads((run / "benchmark_facts.json").read_text())
    winner = facts.pop("winner", None)
    by_mediapipe = json.loads((run / "mediapipe.json").read_text()) if (run / "mediapipe.json").is_file() else {}
    bench = json.loads((run / "bench" / "bench.json").read_text())
    source = json.loads((run / "metrics.json").read_text())
    rows = []
    for r in bench["rows"]:
        if r["status"] != "ok":
            continue
        rows.append({"source": name, "kind": source["source"]["kind"], "variant": r["variant"],
                     "runtime": r.get("backend") or r["runtime"],
                     "source_top1": source["top1"], "top1": r["top1"], "images": r["images"],
                     "drop_points": (source["top1"] - r["top1"]) * 100, "agreement": r["agreement_keras"],
                     "mb": r["size_bytes"] / 1e6, "p50_ms": (r.get("latency") or {}).get("p50_ms"),
                     "mediapipe_top1": (by_mediapipe.get(r["variant"]) or {}).get("top1"),
                     "max_drop_winner": winner, **facts})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(SOURCES[:2]), help=f"comma-separated of {', '.join(SOURCES)}")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--resnet-epochs", type=int, default=2)
    ap.add_argument("--resnet-images", type=int, default=10000)
    ap.add_argument("--pt2", type=Path, help="a .pt2 made elsewhere (airbench94's network, say) to import too")
    ap.add_argument("--pt2-onnx", action="store_true", help="also import the --pt2 network as an .onnx, and score "
                    "both runs' ONNX/OpenVINO files against torch")
    ap.add_argument("--pt2-mean", default="125.307,122.950,113.865")
    ap.add_argument("--pt2-std", default="62.993,62.089,66.705")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "import-models")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse", action="store_true", help="re-read the finished runs under --out; train and measure the rest")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = args.only.split(",")
    rows, against_torch = [], {}          # run name -> the .pt2 its ONNX/OpenVINO files are scored against
    for which in ("notebook", "keras3"):
        if which in chosen:
            done = args.reuse and (args.out / "runs" / which / "benchmark_facts.json").is_file()
            path, facts = (None, {}) if done else train_keras(which, args.out, args.epochs, args.seed)
            rows += measure(which, path, args.out / "runs", [], facts)
    if {"resnet18", "resnet18-onnx"} & set(chosen):
        trained = args.out / "resnet18_cifar.json"     # the facts of a finished training, for --reuse
        if args.reuse and trained.is_file():
            pt2, onnx_path, facts = args.out / "resnet18_cifar.pt2", args.out / "resnet18_cifar.onnx", json.loads(trained.read_text())
        else:
            pt2, onnx_path, facts = train_resnet18(args.out, args.resnet_epochs, args.seed, args.resnet_images)
            trained.write_text(json.dumps(facts))
        norm = ["--mean", ",".join(f"{v:.4f}" for v in facts["mean"]), "--std", ",".join(f"{v:.4f}" for v in facts["std"])]
        for name, model in (("resnet18", pt2), ("resnet18-onnx", onnx_path)):
            if name in chosen:
                done = args.reuse and (args.out / "runs" / name / "benchmark_facts.json").is_file()
                rows += measure(name, None if done else model, args.out / "runs", norm, facts)
        against_torch.update({name: pt2 for name in ("resnet18", "resnet18-onnx") if name in chosen})
    if args.pt2:
        done = args.reuse and (args.out / "runs" / args.pt2.stem / "benchmark_facts.json").is_file()
        rows += measure(args.pt2.stem, None if done else args.pt2, args.out / "runs",
                        ["--mean", args.pt2_mean, "--std", args.pt2_std], {})
        if args.pt2_onnx:
            name = f"{args.pt2.stem}-onnx"
            done = args.reuse and (args.out / "runs" / name / "benchmark_facts.json").is_file()
            rows += measure(name, None if done else onnx_of(args.pt2, args.out), args.out / "runs",
                            ["--mean", args.pt2_mean, "--std", args.pt2_std], {})
            against_torch.update({args.pt2.stem: args.pt2, name: args.pt2})
    torch_rows = {}
    for run, pt2 in against_torch.items():
        done = args.reuse and (args.out / "runs" / run / "torch_agreement.json").is_file()
        torch_rows[run] = (json.loads((args.out / "runs" / run / "torch_agreement.json").read_text()) if done
                           else torch_agreement(pt2, args.out / "runs" / run))
    header = ("source", "kind", "variant", "runtime", "source top-1", "top-1", "drop (points)", "agreement", "MB",
              "p50 ms (1 thread)", "MediaPipe top-1", "--max-drop 0.5 winner")
    table = [(r["source"], r["kind"], r["variant"], r["runtime"], f"{r['source_top1']:.2%}", f"{r['top1']:.2%}",
              f"{r['drop_points']:+.2f}", f"{r['agreement']:.2%}", f"{r['mb']:.2f}",
              "-" if r["p50_ms"] is None else f"{r['p50_ms']:.3f}",
              "-" if r.get("mediapipe_top1") is None else f"{r['mediapipe_top1']:.2%}", r["max_drop_winner"] or "-")
             for r in rows]
    command = (f"python benchmarks/import_models.py --only {args.only} --epochs {args.epochs}"
               + (f" --pt2 {args.pt2}" if args.pt2 else "") + (" --pt2-onnx" if args.pt2_onnx else ""))
    lines = [f"# Models made elsewhere, through `cifar-edge import` (seed {args.seed})", "",
             f"`{command}` on {machine()['cpu']}: top-1 on the 10k CIFAR-10 test images, latency at 1 thread.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in table]
    if torch_rows:
        lines += ["", "Against torch itself (the .pt2 run on the same 10k images): each ONNX and OpenVINO file of the "
                  "run imported from the .pt2 and of the run imported from its .onnx.", "",
                  "| run | file@runtime | top-1 agreement with torch | top-1 | torch top-1 |", "|---|---|---|---|---|"]
        lines += [f"| {run} | {key} | {v['agreement']:.2%} | {v['top1']:.2%} | {got['torch_top1']:.2%} |"
                  for run, got in torch_rows.items() for key, v in got.items() if key != "torch_top1"]
    write_results("import_models", {"seed": args.seed, "epochs": args.epochs, "command": command, "machine": machine(),
                                    "rows": rows, "torch_agreement": torch_rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
