"""airbench94 itself (Keller Jordan's `airbench` package, PyTorch) on this machine's data and CPU.

Why: our tf_keras port of airbench94 reaches ~90% on the shared CIFAR-10, where the paper
reports 93.2% (94.0% with TTA) on a GPU with the original lossless training images.  Running
the reference's own code on the same JPEG-q75 training set, on the CPU, separates "the port
misses something" from "this data and this machine give ~90%".

The package is written for CUDA and fp16.  This script runs it unmodified on the CPU by
handing it a CPU data loader and a network whose `.half()/.cuda()` calls are no-ops, and by
timing with the wall clock instead of CUDA events.  Nothing of the package is copied here.

It needs its own virtualenv (torch is not a project dependency):

    python3 -m venv .venv-airbench && .venv-airbench/bin/pip install airbench==0.1.8 torch torchvision numpy
    .venv-airbench/bin/python benchmarks/reference_airbench94.py --seed 0 [--epochs 9.9] [--precision float32]

Writes benchmarks/results/reference_airbench94_seed<N>.{json,md}.  With `--save-pt2 FILE` it also
saves the trained network as a PyTorch ExportedProgram (`torch.export.save`, dynamic batch, float32
NCHW input normalized with airbench's CIFAR mean/std), the file `cifar-edge import` takes:
`benchmarks/import_models.py --pt2 FILE` then imports it (use the same torch version in both venvs).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CIFAR_EDGE_SHARED", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results"


def _write_atomic(path: Path, text: str):
    """cifar_edge.fileio's temp-then-rename, restated: this script runs in the torch venv, without the package."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _cifar10_as_torch_files(folder: Path):
    """airbench's loader reads `<folder>/train.pt` and `test.pt` ({images uint8 NHWC, labels,
    classes}), the layout it saves after its own torchvision download."""
    import torch
    src = SHARED_DATA / "cifar10"
    if not (src / "cifar10_test.npz").exists():
        sys.exit(f"CIFAR-10 not found at {src}; set CIFAR_EDGE_SHARED to the folder holding cifar10/")
    parts = [np.load(src / f"cifar10_train_jpeg_part{i}.npz") for i in (1, 2)]
    test = np.load(src / "cifar10_test.npz")
    classes = [str(c) for c in test["class_names"]]
    folder.mkdir(parents=True, exist_ok=True)
    for name, x, y in (("train", np.concatenate([p["x_train"] for p in parts]),
                        np.concatenate([p["y_train"] for p in parts])),
                       ("test", test["x_test"], test["y_test"])):
        torch.save({"images": torch.tensor(x), "labels": torch.tensor(y.astype(np.int64)), "classes": classes},
                   folder / f"{name}.pt")


def _cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


class _WallClockEvent:
    """Stands in for torch.cuda.Event(enable_timing=True): elapsed_time in milliseconds."""

    def __init__(self, **_):
        self.t = None

    def record(self):
        self.t = time.perf_counter()

    def elapsed_time(self, end):
        return 1e3 * (end.t - self.t)


class _Tee:
    """Prints through and keeps the lines (the package reports its per-epoch table only on stdout)."""

    def __init__(self, stream):
        self.stream, self.lines, self._part = stream, [], ""

    def write(self, text):
        self.stream.write(text)
        *done, self._part = (self._part + text).split("\n")
        self.lines += [line for line in done if line.startswith("|")]
        return len(text)

    def flush(self):
        self.stream.flush()


@contextlib.contextmanager
def _cpu_float(torch):
    """Make the package's `.half()` and `.cuda()` calls no-ops for the duration."""
    saved = (torch.nn.Module.half, torch.nn.Module.cuda)
    torch.nn.Module.half = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.nn.Module.half, torch.nn.Module.cuda = saved


def _torchvision_or_normalize_only(torch):
    """airbench imports torchvision for two things: `datasets.CIFAR10` (its download path, which
    this script never takes: it hands the package `train.pt`/`test.pt`) and `transforms.Normalize`.
    PyPI's torchvision wheel is built against torch's CUDA libraries, so beside the CPU torch build
    (the one the project's venv has, and the one a .pt2 for `cifar-edge import` must be saved with)
    its extension fails to load.  Then the package gets a torchvision module holding just
    Normalize, written here with torch, and a `datasets` that refuses the download."""
    try:
        import torchvision  # noqa: F401
        return "torchvision " + torchvision.__version__
    except (ImportError, OSError, RuntimeError):
        pass
    import types

    class Normalize(torch.nn.Module):
        def __init__(self, mean, std):
            super().__init__()
            self.mean, self.std = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)

        def forward(self, x):
            return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def no_download(*_, **__):
        raise RuntimeError("this script hands airbench its data; torchvision's download is not available")

    vision = types.ModuleType("torchvision")
    vision.transforms = types.ModuleType("torchvision.transforms")
    vision.transforms.Normalize = Normalize
    vision.datasets = types.SimpleNamespace(CIFAR10=no_download)
    sys.modules.update({"torchvision": vision, "torchvision.transforms": vision.transforms})
    return "no torchvision (its Normalize written with torch)"


def _save_exported_program(torch, model, path: Path):
    """The network as trained (eval mode, float32, NCHW), with a dynamic batch so that import can
    evaluate and calibrate it in batches; written through a temp file, then renamed."""
    model = model.float().eval()
    program = torch.export.export(model, (torch.zeros(2, 3, 32, 32),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.pt2")
    torch.export.save(program, str(tmp))
    tmp.replace(path)
    print(f"saved the trained network as {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=float, default=9.9, help="airbench94's own budget")
    parser.add_argument("--precision", choices=("float32", "bf16"), default="float32",
                        help="float32, or CPU bf16 autocast (with it the package's net stayed at chance "
                             "here: loss 2.302 after 11 and 48 steps, cause not found)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--save-pt2", type=Path, help="also save the trained network here as a .pt2 ExportedProgram")
    args = parser.parse_args()

    import torch
    vision = _torchvision_or_normalize_only(torch)
    import airbench
    from airbench import lib_airbench94, utils
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.cuda.Event = _WallClockEvent
    torch.cuda.synchronize = lambda *a, **k: None

    class CpuLoader(utils.CifarLoader):
        def __init__(self, path, *a, gpu="cpu", **k):
            super().__init__(path, *a, gpu="cpu", **k)
            self.images = self.images.float()   # the package stores fp16 for the GPU

    utils.CifarLoader = CpuLoader  # train() builds its test loader from this name
    whiten = utils.init_whitening_conv

    def init_whitening_fp32(*a, **k):
        # The package computes the patch covariance in float32 (its `.float()`); autocast would
        # turn that matmul into bf16 and the eigendecomposition into NaNs.
        with torch.autocast("cpu", enabled=False):
            return whiten(*a, **k)

    utils.init_whitening_conv = init_whitening_fp32

    def make_net():
        with _cpu_float(torch):
            return lib_airbench94.make_net94().to(memory_format=torch.channels_last)

    with tempfile.TemporaryDirectory() as tmp:
        _cifar10_as_torch_files(Path(tmp) / "cifar10")
        cwd = os.getcwd()
        os.chdir(tmp)  # the package opens the relative path 'cifar10'
        try:
            train_loader = CpuLoader("cifar10", train=True, batch_size=lib_airbench94.hyp["opt"]["batch_size"],
                                     aug=lib_airbench94.hyp["aug"], altflip=True)
            test_loader = CpuLoader("cifar10", train=False, batch_size=2000)
            autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16"
                        else contextlib.nullcontext())
            start = time.perf_counter()
            log = _Tee(sys.stdout)
            with autocast, contextlib.redirect_stdout(log):
                model = lib_airbench94.train94(train_loader, epochs=args.epochs, make_net=make_net, verbose=True)
            seconds = time.perf_counter() - start
            with autocast:
                single = utils.evaluate(model, test_loader, tta_level=0)
                tta = utils.evaluate(model, test_loader, tta_level=lib_airbench94.hyp["net"]["tta_level"])
        finally:
            os.chdir(cwd)
    if args.save_pt2:
        _save_exported_program(torch, model, args.save_pt2)

    result = {
        "what": "airbench94 (PyPI airbench, unmodified) on the shared JPEG-q75 CIFAR-10 train set, CPU",
        "airbench_version": getattr(airbench, "__version__", "0.1.8"), "torch": torch.__version__,
        "torchvision": vision, "seed": args.seed, "epochs": args.epochs, "precision": args.precision, "threads": args.threads,
        "test_top1": round(100 * single, 2), "test_top1_tta": round(100 * tta, 2),
        "seconds_incl_per_epoch_eval": round(seconds, 1),
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count()},
        "package_log": log.lines,   # its per-epoch table: train loss/acc, test acc, training seconds
        "saved_pt2": str(args.save_pt2) if args.save_pt2 else None,
        "command": "python " + " ".join([f"benchmarks/{Path(__file__).name}", *sys.argv[1:]]),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"reference_airbench94_seed{args.seed}"
    _write_atomic(RESULTS / f"{name}.json", json.dumps(result, indent=2) + "\n")
    md = (f"# airbench94 reference on this machine (seed {args.seed})\n\n"
          f"| epochs | precision | threads | top-1 | top-1 TTA | minutes (incl. per-epoch eval) |\n"
          f"|---|---|---|---|---|---|\n"
          f"| {args.epochs} | {args.precision} | {args.threads} | {result['test_top1']}% | "
          f"{result['test_top1_tta']}% | {seconds / 60:.1f} |\n\n"
          f"Command: `{result['command']}`\n\nThe package's own log:\n\n```\n" + "\n".join(log.lines) + "\n```\n")
    _write_atomic(RESULTS / f"{name}.md", md)
    print(md)


if __name__ == "__main__":
    main()
