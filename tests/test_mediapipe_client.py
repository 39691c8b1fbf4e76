"""A real client: MediaPipe Tasks' ImageClassifier (the task library Android apps use)
classifies real CIFAR images with every exported .tflite variant, told nothing but the file:
input type, normalization and labels come from its metadata.

It runs in its own virtualenv (mediapipe pins absl-py 2, tfmot 0.8 absl-py 1), which .ci/run
installs, through tests/mediapipe_classify.py.  On 32-px models its top-1 must equal ours on
every image (its scores too, the file being fed the same pixels); on an upsampled model
(MobileNetV2) its own resize differs from ours (bilinear, half-pixel centres, in float before
normalization), so agreement must reach UPSAMPLED_MIN_AGREEMENT.  MediaPipe takes float32
and uint8 input tensors only: it refuses the int8-I/O file, and that refusal is checked too.
"""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from cifar_edge.data import prepare_images
from cifar_edge.export import ExportConfig, VARIANTS, export_run, resolve_variants
from cifar_edge.export.metadata import read_metadata
from cifar_edge.inference import load_run
from cifar_edge.runtimes import open_model
from conftest import ROOT

PYTHON = ROOT / ".tools" / "mediapipe-venv" / "bin" / "python"
INSTALL = "python3 -m venv .tools/mediapipe-venv && .tools/mediapipe-venv/bin/pip install 'mediapipe~=1.2.2'"
SCRIPT = ROOT / "tests" / "mediapipe_classify.py"
IMAGES = 200
UPSAMPLED_MIN_AGREEMENT = 0.95
REFUSED_INT8 = "Requested one of these types: uint8/float32, got INT8"
TFLITE_VARIANTS = [name for name, (fmt, _) in VARIANTS.items() if fmt == "tflite"]


@pytest.fixture(scope="module")
def mediapipe():
    if not PYTHON.is_file():
        pytest.skip(f"MediaPipe's virtualenv is missing: `{INSTALL}` (as .ci/run does)")
    return PYTHON


@pytest.fixture(scope="module")
def mobilenet_run(tmp_path_factory):
    """A scaled-down MobileNetV2 (alpha 0.35, 96 px: CIFAR images upsampled 3x) with every
    TFLite variant exported."""
    from cifar_edge.train import TrainConfig, train
    run = tmp_path_factory.mktemp("mobilenet") / "run"
    train(TrainConfig(model="mobilenetv2", data="synthetic", synthetic_classes=10, epochs=1, limit=300,
                      batch_size=32, input_size=96, model_options={"alpha": 0.35, "weights": "none"}), run)
    entries = export_run(run, resolve_variants(TFLITE_VARIANTS), command="test",
                         cfg=ExportConfig(calibration_images=100, check_images=60, min_agreement_int8=0.5))
    return run, {e["variant"]: e for e in entries}


def mediapipe_scores(python, images: np.ndarray, paths: list, work) -> dict:
    np.save(work / "images.npy", images)
    r = subprocess.run([str(python), str(SCRIPT), str(work / "images.npy"), *map(str, paths)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def compare(run, exported, images, python, work) -> dict:
    """{variant: top-1 agreement of MediaPipe with our runtime} over every exported .tflite."""
    loaded = load_run(run)
    x = prepare_images(images, loaded.norm, loaded.input_size)
    files = {name: run / "export" / e["file"] for name, e in exported.items() if e["format"] == "tflite"}
    assert set(files) == set(TFLITE_VARIANTS)
    answers = mediapipe_scores(python, images, list(files.values()), work)
    agreement = {}
    for name, path in files.items():
        answer = answers[str(path)]
        if read_metadata(path)["cifar_edge"]["input_dtype"] == "int8":
            assert REFUSED_INT8 in answer.get("error", ""), (name, answer)
            continue
        assert "error" not in answer, (name, answer["error"])
        assert answer["labels"] == loaded.class_names, name
        theirs, ours = np.asarray(answer["scores"]), open_model(path).predict(x)
        agreement[name] = float(np.mean(theirs.argmax(1) == ours.argmax(1)))
        if loaded.input_size == images.shape[1]:
            np.testing.assert_allclose(theirs, ours, atol=1e-4, err_msg=name)
    print(f"MediaPipe top-1 agreement with cifar-edge on {len(images)} images: {agreement}")   # shown with -s
    return agreement


def test_mediapipe_reads_every_32px_variant_and_agrees_exactly(exported_run, cifar10_real, mediapipe, tmp_path):
    run, exported = exported_run
    agreement = compare(run, exported, cifar10_real[2][:IMAGES], mediapipe, tmp_path)
    assert agreement and all(a == 1.0 for a in agreement.values()), agreement


def test_mediapipe_on_an_upsampled_mobilenet_agrees_within_tolerance(mobilenet_run, cifar10_real, mediapipe, tmp_path):
    run, exported = mobilenet_run
    agreement = compare(run, exported, cifar10_real[2][:IMAGES], mediapipe, tmp_path)
    assert agreement and min(agreement.values()) >= UPSAMPLED_MIN_AGREEMENT, agreement
