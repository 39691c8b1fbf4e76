"""The CLI as a script sees it: each command in its own process with stdout piped.  Tables come
out whole (grep finds full rows), --json prints one strict JSON document and nothing else, and
stderr carries our own lines only, no TensorFlow/absl/LiteRT chatter unless --verbose."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cifar_edge.cli import _print_json, app

ROOT = Path(__file__).resolve().parents[1]

# what TensorFlow, absl, oneDNN, CUDA probing, XNNPACK, LiteRT and tf_keras print on their own
NOISE = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog|oneDNN|cuda|cuInit|XNNPACK delegate|LiteRT environment|"
                   r"UserWarning|yet to be built|HDF5 file|fully_quantize|accelerator|out-of-range for weight|is deprecated",
                   re.IGNORECASE | re.MULTILINE)


def cli(*args):
    """``python -m cifar_edge ARGS`` with stdout and stderr piped (not a terminal), not verbose."""
    env = {k: v for k, v in os.environ.items() if k != "CIFAR_EDGE_VERBOSE"}
    r = subprocess.run([sys.executable, "-m", "cifar_edge", *map(str, args)], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=600)
    assert r.returncode == 0, f"{args}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r


def quiet(r):
    noise = [line for line in r.stderr.splitlines() if NOISE.search(line)]
    assert not noise, "\n".join(noise)


def strict_json(text):
    """The whole of stdout as one JSON document, refusing NaN and Infinity."""
    def refuse(token):
        raise AssertionError(f"{token} in JSON output")
    return json.loads(text, parse_constant=refuse)


def rows(stdout, first):
    """Tab-separated rows whose first field is ``first``."""
    return [line.split("\t") for line in stdout.splitlines() if line.split("\t")[0] == first]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny trained run (cnn-tiny, 300 synthetic images, 1 epoch), made by the CLI itself."""
    run = tmp_path_factory.mktemp("piped") / "run"
    r = cli("train", "--model", "cnn-tiny", "--data", "synthetic", "--epochs", "1", "--limit", "300",
            "--batch-size", "64", "--out", run)
    quiet(r)
    assert rows(r.stdout, "top1"), r.stdout                       # the metrics table, one row per metric
    assert "epoch 1/1" in r.stderr                                # our own progress stays
    return run


def test_models_rows_are_whole_when_piped_and_json_parses():
    from cifar_edge.models import get_model_spec
    r = cli("models", "[cm]*")              # the registry's widest rows, without building ConvNeXt and ResNet
    quiet(r)
    found = rows(r.stdout, "mobilenetv2")                        # `cifar-edge models | grep mobilenetv2`
    assert len(found) == 1 and found[0][-1] == get_model_spec("mobilenetv2").description   # nothing cut
    assert [row[0] for row in rows(r.stdout, "cnn")] == ["cnn"] and "…" not in r.stdout
    doc = strict_json(cli("models", "cnn-tiny", "--json").stdout)
    assert [m["name"] for m in doc["models"]] == ["cnn-tiny"]
    assert doc["models"][0]["params"] > 0 and doc["models"][0]["flops"] > 0


def test_formats_rows_and_json_and_verbose():
    from cifar_edge.formats import variants
    r = cli("formats")
    quiet(r)
    assert rows(r.stdout, "tflite-int8") == [["tflite-int8", "tflite", "quantization=int8"]]   # `| grep tflite-int8`
    doc = strict_json(cli("formats", "--json").stdout)
    assert [v["name"] for v in doc["variants"]] == list(variants())
    assert {f["name"] for f in doc["formats"]} >= {"tflite", "onnx", "keras"}
    r = cli("--verbose", "models", "cnn-tiny", "--json")   # builds a model: TensorFlow is imported
    assert NOISE.search(r.stderr), r.stderr               # --verbose brings TensorFlow's own lines back ...
    assert strict_json(r.stdout)["models"][0]["name"] == "cnn-tiny"   # ... on stderr: stdout is the document alone


def test_export_bench_evaluate_json_and_quiet(tiny_run, capsys):
    r = cli("export", tiny_run, "--variant", "tflite-float32", "--variant", "tflite-int8-io-uint8", "--variant", "keras",
            "--variant", "onnx-int8", "--variant", "onnx-int8-from-tflite",    # onnxruntime's and tf2onnx's notes
            "--check-images", "50", "--calibration-images", "50", "--min-agreement-int8", "0.5", "--json")
    quiet(r)
    doc = strict_json(r.stdout)
    assert [e["variant"] for e in doc["entries"]] == ["tflite-float32", "tflite-int8-io-uint8", "keras", "onnx-int8",
                                                      "onnx-int8-from-tflite"]
    assert doc["failures"] == {} and doc["manifest"].endswith("export.json")
    assert "exporting tflite-int8-io-uint8" in r.stderr           # progress on stderr
    r = cli("bench", tiny_run, "--variant", "tflite-float32", "--variant", "tflite-int8-io-uint8", "--runtime", "litert",
            "--threads", "1", "--runs", "5", "--warmup", "1", "--limit", "50", "--batch", "8", "--no-reference",
            "--json")
    quiet(r)
    doc = strict_json(r.stdout)
    ok = [row for row in doc["rows"] if row["status"] == "ok"]
    assert {row["variant"] for row in ok} == {"tflite-float32", "tflite-int8-io-uint8"}
    assert all(row["latency"]["p50_ms"] > 0 for row in ok) and doc["gate_failures"] == []
    from cifar_edge.bench import rich_table
    from cifar_edge.cli import _print_table
    _print_table(rich_table(doc))                  # the bench's own table, printed where stdout is not a terminal
    printed = capsys.readouterr().out
    assert [row[:3] for row in rows(printed, "tflite-int8-io-uint8")] == [["tflite-int8-io-uint8", "litert", "1"]]
    assert all(len(row) == len(printed.splitlines()[0].split("\t")) for row in rows(printed, "tflite-float32"))
    r = cli("evaluate", tiny_run, "--limit", "100", "--json")
    quiet(r)
    doc = strict_json(r.stdout)
    assert doc["metrics"]["n"] == 100 and 0 <= doc["metrics"]["top1"] <= 1


def test_json_is_strict_even_for_nan_and_numpy(capsys):
    _print_json({"f1": float("nan"), "x": [np.float32(np.inf), np.int64(3)], "ok": 0.5})
    assert strict_json(capsys.readouterr().out) == {"f1": None, "x": [None, 3], "ok": 0.5}


def test_help_has_no_empty_defaults_or_bool_metavars():
    """Every command's --help: no flag shown with a <bool> metavar, no help text ending in " ."
    (a "[default: ...]" swallowed as markup)."""
    import typer.main
    runner = CliRunner()
    checked = 0
    todo = [((), typer.main.get_command(app))]
    while todo:
        path, cmd = todo.pop()
        if hasattr(cmd, "commands"):          # a group (typer carries its own click)
            todo += [((*path, name), sub) for name, sub in cmd.commands.items()]
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, result.output
        text = result.output
        assert "<bool>" not in text, (path, text)
        assert not re.search(r"\w \.(\s|$)", text, re.MULTILINE), (path, text)   # "Batch size ." : a lost default
        checked += 1
    assert checked > 15


def test_saving_an_uncompiled_model_as_h5_says_nothing(tmp_path, monkeypatch):
    """model.h5 is written on purpose and load_model's models are uncompiled: neither Keras' legacy-HDF5
    warning nor its "compiled metrics have yet to be built" note comes out of save_model (plain
    model.save says both, which keeps this test honest)."""
    import logging
    import warnings
    from cifar_edge._tf import keras
    from cifar_edge.runs import load_model, save_model
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2)(inp))
    tf_logger = logging.getLogger("tensorflow")
    monkeypatch.setattr(tf_logger, "level", logging.WARNING)      # as under --verbose
    notes = []
    handler = logging.Handler()
    handler.emit = lambda record: notes.append(record.getMessage())
    tf_logger.addHandler(handler)
    try:
        for save, path in ((model.save, tmp_path / "plain.h5"), (lambda p: save_model(model, p), tmp_path / "ours.h5")):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                before = len(notes)
                save(path)
            said = [str(w.message) for w in caught if "HDF5" in str(w.message)] + \
                [n for n in notes[before:] if "yet to be built" in n]
            assert (len(said) == 2) == (path.name == "plain.h5"), said
    finally:
        tf_logger.removeHandler(handler)
    assert load_model(tmp_path / "ours.h5").count_params() == model.count_params()
