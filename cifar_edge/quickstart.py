"""`cifar-edge quickstart`: the toolkit's point in a few minutes on a laptop CPU.

A small training run of a small model (the one its family marks ``quickstart``) on the best data
to be had, then the files a phone or a server runs (float and int8 .tflite, float .onnx), each checked against Keras, then a short bench:
one row per file with its top-1, size and single-thread latency.  Everything goes through the
same train / export / bench functions as the commands, into one run folder the other commands
(serve, report, export --android) take as it is.

Real data, where it can be had: CIFAR-100 from $CIFAR_EDGE_DATA or keras' cache, else the real
CIFAR-10 of the project's shared data folder ($CIFAR_EDGE_SHARED, or ``shared/data`` beside the
checkout), else CIFAR-100 downloaded by keras; otherwise the synthetic stand-in, said loudly.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import console
from .errors import CifarEdgeError

MARKER = ".cifar-edge-quickstart"
TRAIN_IMAGES = 8000            # stratified subset of the training split (10% of it held out for validation)
CALIBRATION_IMAGES = 200       # int8 calibration (export's default is 500)
CHECK_IMAGES = 500             # held-out images each file is checked against Keras on
BENCH_IMAGES = 1000            # test images each file's top-1 is measured on
BENCH_RUNS = 100               # timed single-image runs per file
ANDROID_ASSETS = "examples/android/app/src/main/assets"


@dataclass
class Data:
    source: str                # TrainConfig.data: a name or a path, so export and bench reload the same images
    description: str
    dataset: object = None     # already loaded (None: synthetic, made by train)
    synthetic: bool = False


def shared_data_dir() -> Path:
    """The project's shared data folder: $CIFAR_EDGE_SHARED, else ``shared/data`` beside the checkout."""
    env = os.environ.get("CIFAR_EDGE_SHARED")
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def find_data() -> Data:
    """The first real dataset found (local before downloading), else the synthetic stand-in."""
    from .data.sources import load_named, load_path
    try:
        ds = load_named("cifar100", download=False)
        return Data("cifar100", f"real CIFAR-100 ({ds.source})", ds)
    except CifarEdgeError:
        pass
    cifar10 = shared_data_dir() / "cifar10"
    if cifar10.is_dir() and any(cifar10.glob("*.npz")):
        try:
            ds = load_path(cifar10)
            if ds.x_test is not None:
                return Data(str(cifar10.resolve()), f"real CIFAR-10 ({cifar10})", ds)
        except CifarEdgeError as e:
            console.warn(f"cannot use {cifar10} ({e})")
    try:
        ds = load_named("cifar100")
        return Data("cifar100", f"real CIFAR-100 ({ds.source})", ds)
    except CifarEdgeError as e:
        console.warn(f"no real CIFAR data here ({e}); using the SYNTHETIC stand-in: the figures below show the "
                     "pipeline, not CIFAR accuracy")
    return Data("synthetic", "SYNTHETIC stand-in (procedural shapes, not CIFAR)", synthetic=True)


def _fresh_folder(out_dir) -> Path:
    """Quickstart replaces its own previous folder, and never anything else."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / MARKER).is_file():
            raise CifarEdgeError(f"{out_dir} exists and is not a quickstart folder; pass another --out "
                                 "(quickstart replaces its own folder on every run)")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).write_text("written by `cifar-edge quickstart`; safe to delete\n")
    return out_dir


def quickstart_variants() -> tuple:
    """The files the quickstart makes: float32 and int8 of the first format converted from the
    model (.tflite), float32 of the second (.onnx); the float reference first."""
    from .formats import FORMATS, ExportOptions, Variant
    first, second = [f for f in FORMATS.values() if f.precision_in_name and not f.made_from][:2]
    return (Variant(first, ExportOptions()).name, Variant(first, ExportOptions(quantization="int8")).name,
            Variant(second, ExportOptions()).name)


def file_rows(bench: dict, export_dir: Path) -> list[dict]:
    """One row per file from the bench: its own runtime (LiteRT for .tflite, onnxruntime for
    .onnx) at 1 thread, with size and latency relative to the float .tflite."""
    from .export import get_variant
    rows = []
    for variant in quickstart_variants():
        fmt = get_variant(variant).fmt
        row = next((r for r in bench["rows"] if r["variant"] == variant and r["backend"] == fmt.runtime
                    and r["threads"] == 1), None)
        if row is None or row["status"] != "ok":
            rows.append({"variant": variant, "file": None, "status": row["status"] if row else "failed",
                         "reason": row["reason"] if row else "not measured"})
            continue
        rows.append({"variant": variant, "file": str(export_dir / row["file"]), "status": "ok",
                     "runtime": row["backend"], "top1": row["top1"], "images": row["images"],
                     "size_bytes": row["size_bytes"], "latency_ms": row["latency"]["p50_ms"]})
    ref = rows[0] if rows[0]["status"] == "ok" else None
    for r in rows:
        if ref and r["status"] == "ok":
            r["size_vs_float"] = r["size_bytes"] / ref["size_bytes"]
            r["latency_vs_float"] = r["latency_ms"] / ref["latency_ms"]
    return rows


def next_commands(run: Path) -> list[tuple[str, str]]:
    """What to run next on the quickstart's folder: (command, what it does)."""
    return [
        (f"cifar-edge export {run} --format tflite --int8 --android {ANDROID_ASSETS}",
         "the int8 file and labels into the Android app (then build it: examples/android/README.md)"),
        (f"cifar-edge serve {run}", "a local web page: upload an image, see the top-5 and latency of every file"),
        (f"cifar-edge report {run}", "one HTML page of the run: training, exports, bench"),
    ]


def run_quickstart(out_dir, epochs: int = 4) -> dict:
    """Train, export, bench; returns what the CLI prints (also in RUN/bench and RUN/export)."""
    from .bench import BenchConfig, bench_run
    from .export import ExportConfig, export_run, resolve_variants
    from .models.registry import quickstart_model
    from .train import TrainConfig, train

    out_dir = _fresh_folder(out_dir)
    data = find_data()
    extra = {"synthetic_classes": 10, "synthetic_size": 6000} if data.synthetic else {}
    model = quickstart_model()
    cfg = TrainConfig(model=model.name, data=data.source, epochs=epochs, val_split=0.1, seed=0, limit=TRAIN_IMAGES,
                      **model.quickstart, **extra)
    metrics = train(cfg, out_dir, dataset=data.dataset)
    command = "cifar-edge quickstart"
    failures: dict = {}          # a file that fails its check is a row saying why, not the end of the quickstart
    chosen = resolve_variants(list(quickstart_variants()))
    export_run(out_dir, chosen, cfg=ExportConfig(
        calibration_images=CALIBRATION_IMAGES, check_images=CHECK_IMAGES), command=command, failures=failures)
    bench = bench_run(out_dir, BenchConfig(runs=BENCH_RUNS, warmup=10, limit=BENCH_IMAGES, threads=(1,), batches=(32,),
                                           variants=tuple(v.name for v in chosen),
                                           runtimes=tuple(dict.fromkeys(v.fmt.runtime for v in chosen)), siblings=False,
                                           export=False, reference=False), command=command)
    from .runs import RunFolder
    export_dir = RunFolder(out_dir).export_dir
    return {"run": str(out_dir), "export_dir": str(export_dir), "data": data.description, "synthetic": data.synthetic, "model": model.name,
            "train_images": TRAIN_IMAGES, "epochs": epochs, "metrics": metrics,
            "files": file_rows(bench, export_dir), "export_failures": failures,
            "keras_top1": bench["runs"][0]["float"]["top1"], "bench_seconds": bench["seconds"],
            "next": next_commands(out_dir)}
