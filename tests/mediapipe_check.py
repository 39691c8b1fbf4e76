"""MediaPipe Tasks' ImageClassifier as a client of exported .tflite files, for the tests.

It runs in its own virtualenv (mediapipe pins absl-py 2, tfmot 0.8 absl-py 1), which .ci/run
installs, through tests/mediapipe_classify.py: nothing but the file and its metadata tells it
the input type, normalization and labels.  ``compare`` holds MediaPipe's answers against our
runtime on the same images: where the images have the model's input size (no resize) top-1
must be equal on every image, and the scores within 1e-3 (the file is fed the same pixels); otherwise
(larger photos, or an upsampled model such as MobileNetV2 at 96 px) MediaPipe resizes them
its own way and we with the training pipeline's bilinear, so top-1 agreement must reach
RESIZED_MIN_AGREEMENT.  MediaPipe takes float32 and uint8 input tensors only: the int8-I/O
file's refusal is checked instead.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".tools" / "mediapipe-venv" / "bin" / "python"
INSTALL = "python3 -m venv .tools/mediapipe-venv && .tools/mediapipe-venv/bin/pip install 'mediapipe~=1.2.2'"
SCRIPT = ROOT / "tests" / "mediapipe_classify.py"
# Measured: 93.5% on 200 CIFAR-10 images enlarged to 64 px for a 32-px CNN, 89% on 500 for an
# ImageNet-initialized MobileNetV2 1.0 at 96 px (top-1 accuracy 65.4% ours, 65.0% MediaPipe's):
# MediaPipe's resize samples differently from tf.image.resize's half-pixel bilinear.
RESIZED_MIN_AGREEMENT = 0.85
REFUSED_INT8 = "Requested one of these types: uint8/float32, got INT8"


def require_mediapipe() -> Path:
    if not PYTHON.is_file():
        pytest.skip(f"MediaPipe's virtualenv is missing: `{INSTALL}` (as .ci/run does)")
    return PYTHON


def mediapipe_answers(images: np.ndarray, paths: list, work: Path) -> dict:
    np.save(work / "mediapipe-images.npy", images)
    r = subprocess.run([str(PYTHON), str(SCRIPT), str(work / "mediapipe-images.npy"), *map(str, paths)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def compare(run: Path, images: np.ndarray, work: Path) -> dict:
    """{variant: MediaPipe's top-1 agreement with our runtime} over every .tflite in RUN/export."""
    from cifar_edge.data import prepare_images
    from cifar_edge.export import read_manifest
    from cifar_edge.formats.tflite import read_metadata
    from cifar_edge.runs import load_run
    from cifar_edge.formats import open_model
    loaded = load_run(run)
    x = prepare_images(images, loaded.norm, loaded.input_size)
    files = {e["variant"]: run / "export" / e["file"] for e in read_manifest(run / "export").values()
             if e["format"] == "tflite"}
    answers = mediapipe_answers(images, list(files.values()), work)
    exact = loaded.input_size == images.shape[1]
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
        if exact:      # the same pixels in: the same scores, to one step of a quantized output (int16x8 rounds its own way)
            np.testing.assert_allclose(theirs, ours, atol=1e-3 + _output_step(path), err_msg=name)
    print(f"MediaPipe top-1 agreement with cifar-edge, {run.name}, {len(images)} images: {agreement}")  # with -s
    assert agreement, "no .tflite MediaPipe could take"
    assert min(agreement.values()) >= (1.0 if exact else RESIZED_MIN_AGREEMENT), agreement
    return agreement


def _output_step(path: Path) -> float:
    """The quantization step of the scores before the file dequantizes them (0 for float outputs):
    MediaPipe's and LiteRT's kernels may round a quantized output one step apart."""
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=str(path))
    output = interpreter.get_output_details()[0]
    step = output["quantization"][0]
    if not step:
        tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
        for op in interpreter._get_ops_details():
            if op["op_name"] == "DEQUANTIZE" and output["index"] in list(op["outputs"]):
                step = tensors[op["inputs"][0]]["quantization"][0]
    return float(step or 0.0)
