"""examples/python: the LiteRT and onnxruntime scripts run on exported files with TensorFlow
and cifar-edge unimportable, read users' photos the way cifar-edge does, agree with its
reference pipeline, and turn bad input into one-line errors."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from cifar_edge.images import read_image
from cifar_edge.runs import load_run
from cifar_edge.formats import open_model
from conftest import ROOT

EXAMPLES = ROOT / "examples" / "python"
GOOD_PHOTOS = ["rgb.png", "photo.jpg", "gray.png", "alpha.png", "palette.gif", "rotated.jpg"]
BLOCKER = '''
import sys
BLOCKED = {blocked!r}
class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked: the example must run without it")
sys.meta_path.insert(0, _Blocker())
'''


def run_example(script: str, args, tmp_path, blocked) -> subprocess.CompletedProcess:
    """Run an example in a fresh interpreter where ``blocked`` packages cannot be imported."""
    site = tmp_path / f"site-{script}"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER.format(blocked=set(blocked)))
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, str(EXAMPLES / script), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=tmp_path)


def parse_top1(stdout: str) -> dict[str, str]:
    """{image path: top-1 label} from the examples' output."""
    result, current = {}, None
    for line in stdout.splitlines():
        if not line.startswith(" "):
            current = line.split("  (")[0]
        elif current not in result:
            result[current] = line.split("%  ", 1)[1]
    return result


def reference_top1(run, model_path, photos) -> dict[str, str]:
    loaded = load_run(run)
    runner = open_model(model_path)
    x = np.stack([read_image(p, loaded.input_size) for p in photos])
    return {str(p): loaded.class_names[i] for p, i in zip(photos, runner.run(loaded.norm.apply_numpy(x)).argmax(1))}


@pytest.mark.parametrize("script, variant, blocked", [
    ("classify_litert.py", "tflite-int8", {"tensorflow", "tf_keras", "keras", "cifar_edge", "onnxruntime", "onnx"}),
    ("classify_litert.py", "tflite-int8-io-uint8", {"tensorflow", "tf_keras", "keras", "cifar_edge"}),
    ("classify_onnx.py", "onnx-float32", {"tensorflow", "tf_keras", "keras", "cifar_edge", "ai_edge_litert"}),
    ("classify_onnx.py", "onnx-int8", {"tensorflow", "tf_keras", "keras", "cifar_edge", "ai_edge_litert"}),
])
def test_example_classifies_photos_like_cifar_edge_without_tensorflow(script, variant, blocked, exported_run,
                                                                      photo_files, tmp_path):
    run, exported = exported_run
    model = run / "export" / exported[variant]["file"]
    photos = [photo_files[n] for n in GOOD_PHOTOS]
    r = run_example(script, [model, *photos, "--top", "5", "--threads", "1"], tmp_path, blocked)
    assert r.returncode == 0, r.stderr
    top1 = parse_top1(r.stdout)
    assert top1 == reference_top1(run, model, photos)
    assert r.stdout.count("%  ") == 5 * len(photos)


def test_examples_turn_bad_input_into_one_line_errors(exported_run, photo_files, tmp_path):
    run, exported = exported_run
    model = run / "export" / exported["tflite-float32"]["file"]
    r = run_example("classify_litert.py", [model, photo_files["not_an_image.png"], photo_files["rgb.png"]], tmp_path, {})
    assert r.returncode == 1
    assert "cannot read" in r.stderr and "pass a PNG or JPEG" in r.stderr and "Traceback" not in r.stderr
    assert str(photo_files["rgb.png"]) in r.stdout                # the good image still classified
    for bad_model in (photo_files["rgb.png"], run / "export" / "labels.txt"):
        r = run_example("classify_litert.py", [bad_model, photo_files["rgb.png"]], tmp_path, {})
        assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr, r.stderr
    r = run_example("classify_onnx.py", [model, photo_files["rgb.png"]], tmp_path, {})
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr, r.stderr


def test_example_image_reading_equals_cifar_edge(photo_files, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import pipeline
    for name in GOOD_PHOTOS:
        for size in (32, 96):
            assert np.array_equal(pipeline.load_image(photo_files[name], size), read_image(photo_files[name], size)), name
