"""Every registered model family the way a user meets it: the CLI, each command in a new
process, on a run trained by another process.

A tiny run per family (scaled-down options where memory or CI time demands), then in fresh
processes: evaluate, predict, export --all (cnn-tiny, and every family under
CIFAR_EDGE_ALL_FAMILIES=1; mobilenetv2 exports the core variants; every .tflite then read by
MediaPipe Tasks, a real client, see mediapipe_check), optimize --qat / --prune /
--cluster and the export of each, bench --limit, and serve's loading.  A model that loads only when the
process happened to import the module that defines its layers (ConvNeXt's) fails here.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from cifar_edge.models import list_models
from conftest import CIFAR10_DIR
from mediapipe_check import PYTHON, compare

DATA = ["--data", "synthetic", "--synthetic-classes", "10", "--limit", "300", "--val-split", "0.2", "--seed", "0"]
# name: (train flags, the optimize methods of its full command matrix in CI).  Every family
# trains and loads in fresh processes (train, evaluate, predict, an int8 export, serve) on every CI
# run.  The full matrix (export --all, the optimize methods and their exports, bench) runs in CI
# on cnn-tiny (the CNN builder `cnn` shares) with every method, and on mobilenetv2 (a keras
# application like resnet50, depthwise QAT) with QAT, the transfer models' hard case (pruning and
# clustering wrap layers alike in every family); with CIFAR_EDGE_ALL_FAMILIES=1 every method on
# all five.  convnext-nano's full matrix alone costs ~9 CPU minutes (15 M parameters); its QAT
# wrapping, int8 and ONNX exports are covered in one process by test_transfer, and the
# CompiledModel batch bug its bench found by test_bench.
METHODS = (["--qat"], ["--prune", "0.5"], ["--cluster", "8"])
# Longest first (CI's --durations): xdist hands the test groups out in this order.
FAMILIES = {
    "mobilenetv2": (["--alpha", "0.35", "--input-size", "32", "--weights", "none"], METHODS[:1]),
    "cnn-tiny": ([], METHODS),
    "resnet50": (["--input-size", "32", "--weights", "none"], ()),
    "convnext-nano": ([], ()),
    "cnn": (["--widths", "8,8,16,16"], ()),
}
FAST_EXPORT = ["--calibration-images", "100", "--check-images", "60"]
# The variants whose converters meet each family's own layers (depthwise convs, keras
# applications); the rest of `export --all` (fp16, dynamic range, int8 I/O, OpenVINO, ONNX from
# the int8 .tflite) converts the same graph again and runs in CI on cnn-tiny.
CORE_VARIANTS = ("tflite-float32", "tflite-int8", "tflite-int8-io-uint8", "tflite-int16x8", "onnx-float32", "onnx-int8")
ALL = os.environ.get("CIFAR_EDGE_ALL_FAMILIES") == "1"


def cli(*args, check=True, timeout=600) -> subprocess.CompletedProcess:
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "cifar_edge.cli", *map(str, args)], capture_output=True,
                            text=True, timeout=timeout)
    print(f"{time.perf_counter() - t0:6.1f} s  cifar-edge {' '.join(map(str, args[:2]))} ...")    # shown with -s
    if check:
        assert result.returncode == 0, f"{' '.join(map(str, args))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def test_every_registered_family_is_covered():
    """A new family must be added here (or to the convnext-* group, which shares one module, or be
    `cnn` at other widths: cnn-micro, whose CLI path benchmarks/mcu_cifar10.py runs on real data)."""
    names = {spec.name for spec in list_models()}
    covered = set(FAMILIES) | {n for n in names if n.startswith("convnext-")} | {"cnn-micro"}
    assert names <= covered, names - covered


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_through_every_command_in_fresh_processes(family, tmp_path):
    flags, methods = FAMILIES[family]
    methods = METHODS if ALL else methods
    full = bool(methods)
    run = tmp_path / "run"
    cli("train", "--model", family, *DATA, "--epochs", "1", "--batch-size", "32", "--out", run, *flags)
    assert (run / "metrics.json").is_file()

    result = cli("evaluate", run)
    assert "top1" in result.stdout
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(image)
    top = json.loads(cli("predict", run, image, "--json").stdout)[0]["top"]
    assert len(top) == 5 and abs(sum(t["probability"] for t in top) - 1) < 0.5

    if full:
        which = ["--all"] if family == "cnn-tiny" or ALL else [a for v in CORE_VARIANTS for a in ("--variant", v)]
        result = cli("export", run, *which, *FAST_EXPORT, "--min-agreement-int8", "0.5", check=False)
        manifest = json.loads((run / "export" / "export.json").read_text())
        written = {e["variant"] for e in manifest["exports"].values()}
        failed = set(manifest.get("failures") or {})
        assert written | failed >= {"tflite-float32", "tflite-int8", "tflite-int16x8", "onnx-float32", "onnx-int8"}
        assert {"tflite-float32", "onnx-float32"} <= written       # float files must always agree
        assert result.returncode == (1 if failed else 0), result.stderr[-2000:]
        if PYTHON.is_file() and (CIFAR10_DIR / "cifar10_test.npz").is_file():
            # A real client: MediaPipe Tasks reads every exported .tflite by its metadata alone.
            with np.load(CIFAR10_DIR / "cifar10_test.npz") as f:
                compare(run, f["x_test"][:200], tmp_path)
        for method in methods:
            child = tmp_path / f"child{method[0]}"
            cli("optimize", run, *method, "--epochs", "1", "--out", child, "--max-drop", "100")
            assert json.loads((child / "metrics.json").read_text())["method"] == method[0].lstrip("-")
            # A tiny clustered model may be dead in places (ReLUs that never fire), which LiteRT
            # cannot run: that must be a one-line error naming the layers, never an abort.
            result = cli("export", child, "--format", "tflite", "--int8", *FAST_EXPORT, "--min-agreement-int8",
                         "0", "--max-drop", "100", check=method[0] != "--cluster")
            assert result.returncode == 0 or "all-zero range" in result.stderr, (result.returncode,
                                                                                  result.stderr[-2000:])
        cli("bench", run, "--limit", "40", "--runs", "3", "--warmup", "1", "--threads", "1", "--batch", "4",
            "--no-reference", "--no-siblings", "--no-export", "--variant", "tflite-int8", "--variant", "onnx-float32",
            "--variant", "keras")
        assert (run / "bench" / "bench.json").is_file()
    else:
        cli("export", run, "--variant", "tflite-int8", *FAST_EXPORT, "--min-agreement-int8", "0", "--max-drop", "100")

    server = subprocess.Popen([sys.executable, "-m", "cifar_edge.cli", "serve", str(run), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, url, said = time.time() + 180, None, ""
        while time.time() < deadline and url is None:
            line = server.stdout.readline()
            if not line and server.poll() is not None:
                break
            said += line
            found = re.search(r"http://127\.0\.0\.1:\d+/", said)     # rich may wrap the line when piped
            url = found.group(0) if found else None
        assert url, server.stderr.read()[-3000:] if server.poll() is not None else "serve did not start"
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200
    finally:
        server.kill()
        server.wait()
