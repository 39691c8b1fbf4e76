"""The CLI through Typer's runner: each command end to end, and bad input as one clear
line with a non-zero exit, never a traceback or a half-written file."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cifar_edge.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def assert_clean_error(result, *fragments):
    assert result.exit_code != 0
    text = result.output
    assert "Traceback" not in text
    error_lines = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, text
    for fragment in fragments:
        assert fragment in error_lines[0], error_lines[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "tiny"
    result = invoke("train", "--model", "cnn-tiny", "--data", "synthetic", "--epochs", "2", "--out", run,
                    "--seed", "0", "--limit", "1500", "--batch-size", "64", "--lr", "0.1")
    assert result.exit_code == 0, result.output
    assert "top1" in result.output
    return run


@pytest.fixture
def images(tmp_path):
    """Images of every awkward kind: grey, RGBA, palette, huge, tiny, wide."""
    rng = np.random.default_rng(0)
    paths = {}
    specs = {"grey.png": ("L", (40, 40)), "alpha.png": ("RGBA", (32, 32)), "palette.gif": ("P", (50, 30)),
             "huge.jpg": ("RGB", (3000, 2000)), "tiny.png": ("RGB", (5, 5)), "wide.bmp": ("RGB", (200, 20))}
    for name, (mode, size) in specs.items():
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        img = Image.fromarray(arr).convert(mode)
        img.save(tmp_path / name)
        paths[name] = tmp_path / name
    return paths


def test_train_evaluate_predict_explain(trained_run, images, tmp_path):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert 0 <= metrics["top1"] <= 1 and 0 <= metrics["top5"] <= 1
    assert metrics["top1"] > 0.2                                   # 10 synthetic classes: chance 0.1
    result = invoke("evaluate", trained_run, "--tta")
    assert result.exit_code == 0, result.output
    evaluated = json.loads((trained_run / "evaluation" / "metrics.json").read_text())
    assert evaluated["top1"] == pytest.approx(metrics["top1"])     # same model, same data, same answer
    assert 0 <= evaluated["top1_tta"] <= evaluated["top5_tta"] <= 1 and "top1_tta" in result.output
    assert evaluated["tta_views"] == 6 and "tta_views" in result.output
    result = invoke("predict", trained_run, *images.values(), "--json")
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.stdout)
    assert len(predictions) == len(images)
    for p in predictions:
        probs = [t["probability"] for t in p["top"]]
        assert len(p["top"]) == 5 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        assert all(isinstance(t["class"], str) for t in p["top"])
    table = invoke("predict", trained_run, images["grey.png"])
    assert table.exit_code == 0 and "probability" in table.output
    result = invoke("explain", trained_run, images["alpha.png"], "--out", tmp_path / "cam")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "cam").glob("*.png"))) == 1


def test_widths_flag_sets_the_cnn_channels(tmp_path):
    run = tmp_path / "narrow"
    result = invoke("train", "--model", "cnn-tiny", "--data", "synthetic", "--epochs", "1", "--limit", "300",
                    "--widths", "16,16,32,40", "--out", run)
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["model_options"]["base_widths"] == [16, 16, 32, 40]
    from cifar_edge.runs import load_model
    model = load_model(run / "model.keras")                        # cnn-tiny halves them
    assert [model.get_layer(f"{n}_conv").filters for n in ("stem", "s1", "s2", "s3")] == [8, 8, 16, 20]


def test_models_and_data_commands(tmp_path):
    result = invoke("models")
    assert result.exit_code == 0 and "cnn-tiny" in result.output and "MFLOPs" in result.output
    result = invoke("data", "info", "synthetic")
    assert result.exit_code == 0 and "NOT real" in result.output
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 8, 8, 3), np.uint8), y=np.array([0, 1, 0, 1]))
    assert invoke("data", "info", tmp_path / "d.npz").exit_code == 0
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(b"not the official file")
    assert_clean_error(invoke("data", "verify", tmp_path), "failed the MD5 check")
    assert "MISMATCH" in invoke("data", "verify", tmp_path).output


def test_quickstart_trains_exports_benches_and_says_what_next(tmp_path, monkeypatch):
    """Offline, without real data: the synthetic stand-in, said so; then one row per file (float and
    int8 .tflite, .onnx) with top-1, size and latency, and the next commands.  Sizes shrunk for the test."""
    import cifar_edge.data.sources as sources
    import cifar_edge.quickstart as qs
    from cifar_edge.errors import CifarEdgeError

    def offline(kind):
        raise CifarEdgeError(f"could not download {kind} (offline in this test)")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))       # no cache ...
    monkeypatch.setenv("CIFAR_EDGE_SHARED", str(tmp_path / "none"))  # ... no shared data folder ...
    monkeypatch.delenv("CIFAR_EDGE_DATA", raising=False)
    monkeypatch.setattr(sources, "_download_with_keras", offline)   # ... and no network
    for name, value in (("TRAIN_IMAGES", 600), ("CALIBRATION_IMAGES", 50), ("CHECK_IMAGES", 60),
                        ("BENCH_IMAGES", 100), ("BENCH_RUNS", 5)):
        monkeypatch.setattr(qs, name, value)
    result = invoke("quickstart", "--out", tmp_path / "qs", "--epochs", "1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "SYNTHETIC" in out and (tmp_path / "qs" / "metrics.json").is_file()
    files = {line.split("\t")[0]: line.split("\t") for line in out.splitlines() if "\t" in line}
    for variant in qs.quickstart_variants():
        row = files[f"{variant}{'.onnx' if variant.startswith('onnx') else '.tflite'}"]
        assert row[1].endswith("%") and float(row[2]) > 0 and float(row[3]) > 0      # top-1, MB, 1-thread ms
        assert (tmp_path / "qs" / "export" / row[0]).is_file()
    assert float(files["tflite-int8.tflite"][4].rstrip("x")) < 0.5   # int8: well under half the float file
    for command, _ in qs.next_commands(tmp_path / "qs"):
        assert command in out
    qs._fresh_folder(tmp_path / "qs")                               # a re-run replaces its own folder ...
    assert [p.name for p in (tmp_path / "qs").iterdir()] == [qs.MARKER]
    (tmp_path / "mine").mkdir()                                     # ... and nothing else
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    assert_clean_error(invoke("quickstart", "--out", tmp_path / "mine"), "not a quickstart folder")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize("args, fragments", [
    (["train", "--model", "resnet"], ["unknown model 'resnet'", "cifar-edge models"]),
    (["train", "--data", "cifar-100"], ["did you mean 'cifar100'"]),
    (["train", "--data", "/no/such/dir"], ["does not exist"]),
    (["train", "--epochs", "0"], ["--epochs 0 is invalid"]),
    (["train", "--optimizer", "adam"], ["choose one of sgd, sgd-l2, adamw"]),
    (["train", "--momentum", "1.5"], ["--momentum 1.5 is invalid"]),
    (["train", "--limit", "3", "--data", "synthetic"], ["smaller than the 10 classes"]),
    (["train", "--depth", "a,b"], ["--depth 'a,b' is invalid"]),
    (["train", "--zoom", "2"], ["zoom must be < 1"]),
    (["train", "--head", "max", "--data", "synthetic"], ["head must be 'gap' or 'gmp'"]),
    (["train", "--precision", "fp8"], ["--precision fp8 is invalid", "bf16"]),
    (["train", "--widths", "24,x"], ["--widths '24,x' is invalid"]),
    (["train", "--widths", "24,64", "--data", "synthetic"], ["widths (24, 64): the airbench layout takes the stem width and three stage widths"]),
    (["train", "--resume"], ["nothing to resume"]),
    (["data", "info", "cifar10x"], ["did you mean 'cifar10'"]),
])
def test_bad_input_is_one_clear_line(tmp_path, monkeypatch, args, fragments):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args, *(["--out", tmp_path / "run"] if args[0] == "train" else []))
    assert_clean_error(result, *fragments)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").rglob("*.keras"))


def test_bad_files_are_one_clear_line(tmp_path, trained_run, images):
    (tmp_path / "notes.txt").write_text("not an image")
    assert_clean_error(invoke("predict", trained_run, tmp_path / "notes.txt"), "notes.txt", "PNG or JPEG")
    assert_clean_error(invoke("predict", trained_run, tmp_path / "missing.png"), "not found")
    assert_clean_error(invoke("predict", tmp_path / "nowhere", images["grey.png"]), "does not exist")
    empty = tmp_path / "empty_run"
    empty.mkdir()
    assert_clean_error(invoke("evaluate", empty), "holds no trained model")
    broken = tmp_path / "broken_run"
    broken.mkdir()
    (broken / "config.json").write_text((trained_run / "config.json").read_text())
    (broken / "model.keras").write_bytes((trained_run / "model.keras").read_bytes()[:1000])  # truncated
    assert_clean_error(invoke("predict", broken, images["grey.png"]), "corrupt or truncated")
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((3, 32, 32, 3), np.uint8), y_train=np.array([0, 1, 99]),
             class_names=np.array(["a", "b"]))
    assert_clean_error(invoke("train", "--data", tmp_path / "bad.npz", "--out", tmp_path / "r2"),
                       "out of range")
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 truncated zip")
    assert_clean_error(invoke("train", "--data", tmp_path / "corrupt.npz", "--out", tmp_path / "r3"),
                       "cannot read")
