"""Export: every row of the format table exports, runs in its own runtime and agrees with
Keras; manifests, metadata and labels read back; bad input fails cleanly, leaving nothing."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cifar_edge.cli import app
from cifar_edge.data import prepare_images
from cifar_edge.errors import CifarEdgeError
from cifar_edge.export import ExportConfig, ExportOptions, export_run, read_manifest, resolve_variants
from cifar_edge.export.parity import file_facts
from cifar_edge.formats import get_format, open_model, variants
from cifar_edge.runs import load_run, run_data
from cifar_edge.formats.keras import keras_runner
from conftest import FAST_EXPORT

FAST = ExportConfig(**FAST_EXPORT)


@pytest.fixture(scope="module")
def run(exported_run):
    return exported_run[0]


@pytest.fixture(scope="module")
def exported(exported_run):
    return exported_run[1]


@pytest.fixture(scope="module")
def held_out(run):
    loaded = load_run(run)
    x, y, _ = run_data(loaded).held_out()
    images = prepare_images(x[:200], loaded.norm, loaded.input_size)
    return images, y[:200], keras_runner(loaded.model).predict(images)


def test_every_variant_of_the_table_exports_and_agrees_with_keras(run, exported, held_out):
    images, labels, reference = held_out
    assert set(exported) == set(variants())
    assert np.mean(reference.argmax(1) == labels) > 0.5          # the model learned (chance: 0.1)
    for name, entry in exported.items():
        path = run / "export" / entry["file"]
        assert path.exists(), name
        fmt = get_format(entry["format"])
        if fmt.folder:                       # a folder export: every file, names included, is hashed
            assert path.is_dir() and entry["sha256"] == file_facts(fmt.files(path), root=path)["sha256"], name
        else:
            assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest(), name
        # Run the file ourselves, independently of the manifest.
        outputs = open_model(path).predict(images)
        agree = np.mean(outputs.argmax(1) == reference.argmax(1))
        quantized = entry["options"]["quantization"] in ("int8", "dynamic", "int16x8")
        assert agree >= (0.9 if quantized else 0.99), (name, agree)
        if not quantized:
            assert np.max(np.abs(outputs - reference)) < (0.05 if entry["options"]["quantization"] == "fp16" else 1e-3), name
        assert entry["parity"]["top1_agreement"] >= entry["parity"]["threshold"]
    assert not list((run / "export").glob(".*")), "temp files left behind"


def test_int8_files_are_really_integer_and_smaller(run, exported):
    from ai_edge_litert.interpreter import Interpreter
    sizes = {n: e["size_bytes"] for n, e in exported.items()}
    assert sizes["tflite-int8"] < 0.4 * sizes["tflite-float32"]
    assert sizes["tflite-fp16"] < 0.6 * sizes["tflite-float32"]
    for name, dtype in (("tflite-int8", np.float32), ("tflite-int8-io-int8", np.int8),
                        ("tflite-int8-io-uint8", np.uint8)):
        interp = Interpreter(model_path=str(run / "export" / exported[name]["file"]))
        assert interp.get_input_details()[0]["dtype"] == dtype, name
        assert interp.get_output_details()[0]["dtype"] == dtype, name
        kinds = {d["dtype"] for d in interp.get_tensor_details()}
        assert np.int8 in kinds, name                               # weights/activations in int8


def test_onnx_files_pass_the_full_checker_and_take_any_batch(run, exported, held_out):
    import onnx
    import onnxruntime as ort
    images = held_out[0]
    for name in ("onnx-float32", "onnx-int8", "onnx-int8-from-tflite"):
        path = run / "export" / exported[name]["file"]
        onnx.checker.check_model(str(path), full_check=True)
        ops = {n.op_type for n in onnx.load(str(path)).graph.node}
        if "int8" in name:
            assert {"QuantizeLinear", "DequantizeLinear"} <= ops, name
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = sess.get_inputs()[0].name
        for batch in (1, 7):
            assert sess.run(None, {feed: images[:batch]})[0].shape == (batch, 10)


def test_manifest_records_parity_sizes_versions_command_and_drift(run, exported):
    manifest = read_manifest(run / "export")
    assert set(manifest) == {e["file"] for e in exported.values()}
    entry = manifest[exported["tflite-int8"]["file"]]
    assert entry["parity"]["split"] == "val" and entry["parity"]["images"] == 150   # all 10% of 1,500
    assert entry["gzip_bytes"] < entry["size_bytes"] and entry["calibration_images"] == 200
    assert entry["command"] == "test" and "tensorflow" in entry["versions"] and "onnxruntime" in entry["versions"]
    assert "drift" in entry and "drift" not in manifest[exported["tflite-float32"]["file"]]
    for row in entry["drift"]["classes"]:
        assert row["delta"] == pytest.approx(row["export_top1"] - row["float_top1"])
    assert (run / "export" / "labels.txt").read_text().split("\n")[:10] == load_run(run).class_names


def test_tflite_metadata_and_labels_read_back(run, exported):
    from cifar_edge.formats.tflite import read_metadata
    loaded = load_run(run)
    meta = read_metadata(run / "export" / exported["tflite-int8-io-uint8"]["file"])
    assert meta["cifar_edge"]["labels"] == loaded.class_names
    assert meta["cifar_edge"]["input_dtype"] == "uint8" and meta["cifar_edge"]["input_size"] == 32
    assert meta["associated_files"]["labels.txt"].split() == loaded.class_names


def test_tflite_files_take_raw_pixels_with_one_mean_and_std(run, exported):
    """The training normalization is folded into every .tflite's graph: apps and task
    libraries apply one mean/std (0 and 1), integer inputs hold the pixels themselves."""
    from ai_edge_litert.interpreter import Interpreter

    from cifar_edge.formats.tflite import FOLDED_NORMALIZATION, read_metadata
    loaded = load_run(run)
    for name, entry in exported.items():
        if entry["format"] != "tflite":
            continue
        path = run / "export" / entry["file"]
        meta = read_metadata(path)
        assert (meta["tflite_metadata"]["input"]["mean"], meta["tflite_metadata"]["input"]["std"]) == ([0.0], [1.0])
        facts = meta["cifar_edge"]
        assert (facts["mean"], facts["std"]) == ([0.0] * 3, [1.0] * 3), name
        assert np.allclose(facts[FOLDED_NORMALIZATION]["mean"], loaded.norm.mean), name
        assert np.allclose(facts[FOLDED_NORMALIZATION]["std"], loaded.norm.std), name
        detail = Interpreter(model_path=str(path)).get_input_details()[0]
        expected = {"float32": (0.0, 0), "uint8": (1.0, 0), "int8": (1.0, -128)}[np.dtype(detail["dtype"]).name]
        assert detail["quantization"] == expected, name


def test_onnx_files_carry_the_same_model_facts_as_tflite(run, exported):
    """Apps without cifar-edge read input size, normalization and labels from either file."""
    from cifar_edge.formats.tflite import FOLDED_NORMALIZATION, read_metadata
    from cifar_edge.formats.onnx import read_onnx_metadata
    loaded = load_run(run)
    tflite_facts = read_metadata(run / "export" / exported["tflite-int8"]["file"])["cifar_edge"]
    tflite_facts = {**tflite_facts, **tflite_facts[FOLDED_NORMALIZATION]}   # .onnx files take normalized images
    for name, entry in exported.items():
        if entry["format"] != "onnx":
            continue
        facts = read_onnx_metadata(run / "export" / entry["file"])
        assert facts["labels"] == loaded.class_names and facts["input_size"] == 32, name
        assert np.allclose(facts["mean"], loaded.norm.mean) and np.allclose(facts["std"], loaded.norm.std), name
        assert facts["input_dtype"] == "float32" and facts["quantization"] == entry["options"]["quantization"]
        assert {k: facts[k] for k in ("mean", "std", "labels", "output_is_logits")} == \
            {k: tflite_facts[k] for k in ("mean", "std", "labels", "output_is_logits")}


def test_export_that_disagrees_with_keras_fails_and_leaves_nothing(run, tmp_path, monkeypatch):
    import cifar_edge.formats._tflite_convert as tfl
    from cifar_edge._tf import keras
    loaded = load_run(run)
    other = keras.models.clone_model(loaded.model)               # same architecture, fresh weights
    real_convert = tfl.convert
    monkeypatch.setattr(tfl, "convert", lambda ctx, opts: real_convert(type(ctx)(**{**vars(ctx), "model": other}), opts))
    with pytest.raises(CifarEdgeError, match="agrees with Keras on only"):
        export_run(run, resolve_variants(fmt="tflite"), out_dir=tmp_path / "out", cfg=FAST)
    assert not any(p.suffix == ".tflite" for p in (tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else True


@pytest.mark.parametrize("kwargs, message", [
    (dict(fmt="tflte"), "did you mean 'tflite'"),
    (dict(fmt="tflite", opts=ExportOptions(io="uint8")), "add --int8"),
    (dict(fmt="onnx", opts=ExportOptions(quantization="fp16")), "does not take --fp16"),
    (dict(fmt="onnx", opts=ExportOptions(from_tflite=True)), "add --int8"),
    (dict(fmt="onnx", opts=ExportOptions(opset=9)), "opset"),
    (dict(names=["tflite-int9"]), "did you mean 'tflite-int8'"),
    (dict(fmt="tflite", all_variants=True), "drop --format"),
    (dict(names=["tflite-int8"], opts=ExportOptions(io="uint8")), "drop --io"),
    (dict(names=["tflite-int8"], fmt="onnx"), "drop --format"),
    (dict(), "nothing to export"),
])
def test_bad_options_fail_before_any_work(kwargs, message):
    with pytest.raises(CifarEdgeError, match=message):
        resolve_variants(**kwargs)


def test_int8_without_calibration_images_is_an_error(run, tmp_path):
    with pytest.raises(CifarEdgeError, match="calibration"):
        export_run(run, resolve_variants(fmt="tflite", opts=ExportOptions(quantization="int8")), out_dir=tmp_path,
                   cfg=ExportConfig(calibration_images=0))
    assert not list(tmp_path.iterdir())


def test_run_without_model_and_corrupt_model_are_clear_errors(run, tmp_path):
    import shutil
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CifarEdgeError, match="holds no trained model"):
        export_run(empty, resolve_variants(fmt="tflite"))
    broken = tmp_path / "broken"
    shutil.copytree(run, broken, ignore=shutil.ignore_patterns("export", "*.h5", "best.keras"))
    data = (broken / "model.keras").read_bytes()
    (broken / "model.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(CifarEdgeError, match="corrupt or truncated"):
        export_run(broken, resolve_variants(fmt="tflite"))
    assert not (broken / "export").exists()


def test_cli_export_tflite_int8_and_android_drop(run, tmp_path):
    assets = tmp_path / "assets"
    result = CliRunner().invoke(app, ["export", str(run), "--format", "tflite", "--int8", "--out", str(tmp_path / "x"),
                                      "--android", str(assets), "--calibration-images", "150",
                                      "--check-images", "200"])
    assert result.exit_code == 0, result.output
    assert "tflite-int8" in result.output and "export.json" in result.output
    assert (assets / "model.tflite").read_bytes() == (tmp_path / "x" / "tflite-int8.tflite").read_bytes()
    assert (assets / "labels.txt").read_text().split() == load_run(run).class_names
    manifest = json.loads((tmp_path / "x" / "export.json").read_text())
    assert manifest["exports"]["tflite-int8.tflite"]["command"].startswith("cifar-edge")


def test_cli_bad_format_is_one_line_with_suggestion(run):
    result = CliRunner().invoke(app, ["export", str(run), "--format", "onxx"])
    assert result.exit_code == 2
    assert "did you mean 'onnx'" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["formats"])
    assert result.exit_code == 0 and "tflite-int8-io-uint8" in result.output


@pytest.mark.parametrize("flags", [["--qat"], ["--prune", "0.5"]])
def test_optimized_runs_export_int8_through_the_cli_with_drift_against_the_parent(run, tmp_path, flags):
    child = tmp_path / "child"
    result = CliRunner().invoke(app, ["optimize", str(run), *flags, "--epochs", "1", "--limit", "600",
                                      "--out", str(child)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["export", str(child), "--variant", "tflite-int8", "--variant", "onnx-int8",
                                      "--calibration-images", "150", "--check-images", "200"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(child / "export")
    for entry in manifest.values():
        assert entry["parity"]["top1_agreement"] >= 0.9
        assert entry["drift"]["against"] == "parent float keras"
        assert entry["optimize"]["method"] == flags[0].lstrip("-")
    if flags == ["--qat"]:       # a QAT model is only meant to be deployed as integers
        result = CliRunner().invoke(app, ["export", str(child), "--format", "tflite"])
        assert result.exit_code == 2 and "export it with --int8" in result.output
        entries = export_run(child, resolve_variants(all_variants=True), out_dir=tmp_path / "all", cfg=FAST)
        assert {e["variant"] for e in entries} == {n for n, v in variants().items() if v.opts.quantization == "int8"}


def test_cli_optimize_takes_exactly_one_method(run):
    result = CliRunner().invoke(app, ["optimize", str(run), "--qat", "--cluster", "16"])
    assert result.exit_code == 2 and "choose exactly one" in result.output


def test_corrupt_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "export.json").write_text('{"exports": {"a.tflite": ')
    with pytest.raises(CifarEdgeError, match="corrupt"):
        read_manifest(tmp_path)
