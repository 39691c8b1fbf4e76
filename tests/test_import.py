"""`cifar-edge import` as a user meets it: models made elsewhere, trained here on real CIFAR-10
images (a notebook-style tf_keras .h5, the same network in Keras 3, a PyTorch net as .onnx),
taken through import, export, diagnose, bench, evaluate, predict and MediaPipe, each command in
a fresh process; and the bad inputs a user brings, each refused in one line, leaving nothing."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import time

import numpy as np
import pytest

import hostile
from mediapipe_check import PYTHON as MEDIAPIPE, compare

TRAIN, TEST = 4000, 1000
FAST_EXPORT = ["--calibration-images", "200", "--check-images", "500"]
FAST_BENCH = ["--limit", "200", "--runs", "5", "--warmup", "1", "--threads", "1", "--batch", "8", "--no-reference",
              "--no-siblings"]


def cli(*args, check=True, timeout=900) -> subprocess.CompletedProcess:
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "cifar_edge.cli", *map(str, args)], capture_output=True, text=True,
                            timeout=timeout)
    print(f"{time.perf_counter() - t0:6.1f} s  cifar-edge {' '.join(map(str, args[:2]))} ...")
    if check:
        assert result.returncode == 0, f"{' '.join(map(str, args))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def refused(result, *words) -> str:
    """The one error line of a refused command (exit 2, no traceback), checked to name ``words``."""
    assert result.returncode == 2, (result.returncode, result.stdout[-1500:], result.stderr[-1500:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    for w in words:
        assert w.lower() in errors[0].lower(), errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory, cifar10_real):
    x, y, xt, yt, names = cifar10_real
    path = tmp_path_factory.mktemp("data") / "c10small.npz"
    np.savez(path, x_train=x[:TRAIN], y_train=y[:TRAIN], x_test=xt[:TEST], y_test=yt[:TEST], class_names=np.array(names))
    return path, x[:TRAIN], y[:TRAIN], xt[:TEST], yt[:TEST]


def _notebook_cnn(K, classes=10, channels=3, lam=None):
    """A CNN as a notebook makes it: Rescaling inside, BatchNorm, Dropout, a softmax head."""
    L = K.layers
    layers = [K.Input((32, 32, channels)), L.Rescaling(1 / 255.0)]
    if lam is not None:
        layers.append(L.Lambda(lam))
    layers += [L.Conv2D(16, 3, padding="same", activation="relu"), L.BatchNormalization(), L.MaxPooling2D(),
               L.Conv2D(32, 3, padding="same", activation="relu"), L.BatchNormalization(), L.MaxPooling2D(),
               L.Conv2D(32, 3, padding="same", activation="relu"), L.GlobalAveragePooling2D(), L.Dropout(0.2),
               L.Dense(classes, activation="softmax")]
    return K.Sequential(layers)


def _trained(K, data, path, epochs=8):
    """The notebook CNN in Keras library ``K``, fitted on the real training images, saved at ``path``."""
    _, x, y, _, _ = data
    K.utils.set_random_seed(0)
    model = _notebook_cnn(K)
    model.compile(K.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    model.save(path)
    return path


@pytest.fixture(scope="module")
def notebook_h5(data, tmp_path_factory):
    from cifar_edge._tf import keras
    return _trained(keras, data, tmp_path_factory.mktemp("nb") / "cifar10_model.h5")


@pytest.fixture(scope="module")
def keras3_file(data, tmp_path_factory):
    import keras as keras3
    return _trained(keras3, data, tmp_path_factory.mktemp("k3") / "cifar10_model.keras")


CORE = ("tflite-float32", "tflite-int8", "tflite-int8-io-uint8", "onnx-float32", "onnx-int8", "openvino-float32")


def _pipeline(run, data, tmp_path, variants=None):
    """export (--all, or ``variants``), diagnose, bench, evaluate and predict of an imported run,
    in fresh processes; returns export.json."""
    which = ["--all"] if variants is None else [a for v in variants for a in ("--variant", v)]
    result = cli("export", run, *which, *FAST_EXPORT, check=False)
    manifest = json.loads((run / "export" / "export.json").read_text())
    assert result.returncode == (1 if manifest.get("failures") else 0), result.stderr[-2000:]
    cli("diagnose", run, "--images", "30", "--calibration-images", "200", "--check-images", "500")
    assert (run / "export" / "diagnose" / "tflite-int8.json").is_file()
    cli("bench", run, *FAST_BENCH, "--no-export", "--runtime", "litert", "--runtime", "onnxruntime",
        "--runtime", "openvino")
    bench = json.loads((run / "bench" / "bench.json").read_text())
    ok = [r for r in bench["rows"] if r["status"] == "ok"]
    floats = [r for r in ok if r["variant"].endswith("float32")]
    assert floats and all(r["agreement_keras"] >= 0.995 for r in floats), [(r["variant"], r["agreement_keras"]) for r in floats]
    # quantized files of a 40% model flip near-tied answers without losing accuracy: their drop is
    # checked on export.json's figures; here only that none is broken
    assert all(r["agreement_keras"] >= 0.8 for r in ok), [(r["variant"], r["runtime"], r["agreement_keras"]) for r in ok]
    assert "top1" in json.loads(cli("evaluate", run, "--json", "--limit", "300").stdout)["metrics"]
    from PIL import Image
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(image)
    top = json.loads(cli("predict", run, image, "--json").stdout)[0]["top"]
    probabilities = [t["probability"] for t in top]
    assert len(top) == 5 and probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.001
    return manifest


def _check_files(run, manifest, min_float=0.995, max_drop=1.0):
    """Float files agree with the source on >= 99.5% of top-1.  Quantized files passed export's
    accuracy gate (within ``max_drop`` points of the source, or a loss within noise); an int8 file
    more than ``max_drop`` points below the source on the check images is repaired with
    ``--max-drop``, whose file must then pass the same gate.  Returns {variant: entry}."""
    exports = {e["variant"]: e for e in manifest["exports"].values()}
    for name, e in exports.items():
        p = e["parity"]
        if not (e["options"]["quantization"] in ("int8", "dynamic", "int16x8")):
            assert p["top1_agreement"] >= min_float, (name, p["top1_agreement"])
            continue
        assert p["gate"]["passes"], (name, p["gate"])
        if p["gate"]["drop_points"] > max_drop and e["options"]["io"] == "float" and name.endswith("int8"):
            out = run / f"repair-{e['format']}"
            cli("export", run, "--format", e["format"], "--int8", "--max-drop", max_drop, "--out", out, *FAST_EXPORT)
            repaired = next(iter(json.loads((out / "export.json").read_text())["exports"].values()))
            gate = repaired["parity"]["gate"]
            assert gate["passes"] and (gate["drop_points"] <= max_drop or gate["p_value"] >= 0.05), (name, gate)
    return exports


PLAIN_INT8 = {"tflite-int8", "tflite-int8-io-uint8"}


def _int8_within_budget(run, exports, tmp_path):
    """A .tflite int8 file within the 1-point budget: the plain one from the export, or else the one
    `export --int8` writes by repairing it.  A 30-45% model trained here differs a little run to run,
    and its plain int8 file sometimes loses more than the budget beyond noise (seen: -3.2 points, p
    1e-4, on a 33% Keras 3 model); the must-hold asks for --max-drop 1.0 where plain int8 misses."""
    if "tflite-int8" in exports:
        return
    cli("export", run, "--format", "tflite", "--int8", *FAST_EXPORT, "--out", tmp_path / "repaired")
    (entry,) = json.loads((tmp_path / "repaired" / "export.json").read_text())["exports"].values()
    assert entry["variant"].startswith("tflite-int") and entry["parity"]["gate"]["passes"], entry["parity"]


def test_notebook_h5_through_the_pipeline(notebook_h5, data, tmp_path):
    path, *_ = data
    run = tmp_path / "run"
    original = notebook_h5.read_bytes()
    out = cli("import", notebook_h5, "--data", path, "--out", run)
    assert "export" in out.stdout
    config = json.loads((run / "config.json").read_text())
    source = config["source"]
    assert source["kind"] == "tf_keras" and source["outputs"] == "softmax" and "Rescaling" in source["preprocessing"]
    assert config["normalization"] == {"mean": [0.0] * 3, "std": [1.0] * 3}     # the graph normalizes itself
    assert (run / source["file"]).read_bytes() == original == notebook_h5.read_bytes()   # copied, never modified
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n"] == TEST and metrics["top1"] > 0.25, metrics["top1"]        # well above chance (10%)
    exports = _check_files(run, _pipeline(run, data, tmp_path))
    assert {"keras", "tflite-float32", "onnx-float32", "onnx-int8", "openvino-float32"} <= set(exports)
    _int8_within_budget(run, exports, tmp_path)
    if MEDIAPIPE.is_file():
        compare(run, data[3][:200], tmp_path)      # MediaPipe reads the files by their metadata alone


def test_keras3_model_through_the_pipeline(keras3_file, data, tmp_path):
    path, *_ = data
    run = tmp_path / "run"
    cli("import", keras3_file, "--data", path, "--out", run)
    config = json.loads((run / "config.json").read_text())
    assert config["source"]["kind"] == "keras3" and config["source"]["runtime"] == "keras3"
    assert json.loads((run / "metrics.json").read_text())["top1"] > 0.25
    exports = _check_files(run, _pipeline(run, data, tmp_path, CORE + ("keras",)))   # the rest of --all: the notebook's
    assert "keras" not in exports and set(CORE) - PLAIN_INT8 <= set(exports) <= set(CORE)
    _int8_within_budget(run, exports, tmp_path)
    assert all(e["parity"]["runtime"] for e in exports.values())
    refused(cli("optimize", run, "--qat", check=False), "keras3", "tfmot")
    if MEDIAPIPE.is_file():
        compare(run, data[3][:200], tmp_path)


def test_a_plain_savedmodel_from_keras3_export(keras3_file, data, tmp_path):
    """Keras 3's ``model.export`` folder (no Keras metadata): its signature is the reference."""
    import keras as keras3
    folder = tmp_path / "exported"
    keras3.saving.load_model(keras3_file).export(str(folder), verbose=False)
    run = tmp_path / "run"
    cli("import", folder, "--data", data[0], "--out", run)
    config = json.loads((run / "config.json").read_text())
    assert config["source"]["kind"] == "saved_model" and config["source"]["runtime"] == "tensorflow"
    cli("export", run, "--variant", "tflite-float32", "--variant", "tflite-int8", "--variant", "onnx-float32", *FAST_EXPORT)
    exports = _check_files(run, json.loads((run / "export" / "export.json").read_text()))
    assert set(exports) == {"tflite-float32", "tflite-int8", "onnx-float32"}


@pytest.fixture(scope="module")
def torch_onnx(data, tmp_path_factory):
    """A PyTorch CNN trained on the real images (NCHW, normalized outside the graph), as a user's
    .onnx with its weights in an external data file; with its torch top-1 on the test images."""
    torch = pytest.importorskip("torch", reason="the torch extra is not installed: pip install -e '.[torch]'")
    import onnx
    from torch import nn
    _, x, y, xt, yt = data
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(16, 32, 3, padding="same"), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(32, 10))
    mean, std = x.reshape(-1, 3).mean(0), x.reshape(-1, 3).std(0)
    prep = lambda a: torch.from_numpy(((a - mean) / std).astype(np.float32)).permute(0, 3, 1, 2)  # noqa: E731
    xs, ys = prep(x), torch.from_numpy(y)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    for _ in range(3):
        order = torch.randperm(len(xs))
        for i in range(0, len(xs), 64):
            idx = order[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(xs[idx]), ys[idx]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        top1 = float((net(prep(xt)).argmax(1).numpy() == yt).mean())
    folder = tmp_path_factory.mktemp("onnx")
    plain = folder / "plain.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, 32, 32),), str(plain), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n"}})
    path = folder / "net.onnx"
    onnx.save(onnx.load(str(plain)), str(path), save_as_external_data=True, location="net.onnx.data", size_threshold=0)
    plain.unlink()
    # channels_last, as PyTorch's fast-path training code keeps its weights (litert-torch misread them)
    fast = copy.deepcopy(net).to(memory_format=torch.channels_last)
    program = torch.export.export(fast, (torch.zeros(2, 3, 32, 32),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(folder / "net.pt2"))
    return path, mean, std, top1


def test_torch_onnx_agrees_with_torch_on_onnxruntime_and_openvino(torch_onnx, data, tmp_path):
    path, mean, std, torch_top1 = torch_onnx
    run = tmp_path / "run"
    fmt = lambda v: ",".join(f"{c:.5f}" for c in v)  # noqa: E731
    cli("import", path, "--data", data[0], "--out", run, "--mean", fmt(mean), "--std", fmt(std))
    config = json.loads((run / "config.json").read_text())
    assert config["source"]["layout"] == "nchw" and config["source"]["outputs"] == "logits"
    assert sorted(config["source"]["files"]) == ["net.onnx", "net.onnx.data"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert abs(metrics["top1"] - torch_top1) <= 0.002, (metrics["top1"], torch_top1)   # onnxruntime = torch
    result = cli("export", run, "--all", *FAST_EXPORT)
    assert "no maintained ONNX-to-TFLite converter" in result.stderr            # the TFLite rows say why
    exports = _check_files(run, json.loads((run / "export" / "export.json").read_text()))
    assert set(exports) == {"onnx-float32", "onnx-int8", "openvino-float32", "openvino-int8"}
    cli("bench", run, *FAST_BENCH, "--no-export", "--runtime", "onnxruntime", "--runtime", "openvino")
    rows = json.loads((run / "bench" / "bench.json").read_text())["rows"]
    float_rows = [r for r in rows if r["status"] == "ok" and "float32" in r["variant"]]
    assert {r["runtime"] for r in float_rows} == {"onnxruntime", "openvino"}
    assert all(r["agreement_keras"] >= 0.995 for r in float_rows), [(r["variant"], r["agreement_keras"]) for r in float_rows]
    skipped = [r for r in rows if r["variant"].startswith("tflite")]
    assert skipped and all(r["status"] == "skipped" and "TFLite" in r["reason"] for r in skipped)


def test_pytorch_pt2_to_nhwc_tflite_onnx_and_openvino(torch_onnx, data, tmp_path):
    """The same network as a torch ExportedProgram: litert-torch's float32 and int8 files (float
    and uint8 I/O) take NHWC raw pixels with the normalization folded in, MediaPipe reads them,
    and every file is checked against torch."""
    pytest.importorskip("litert_torch", reason="the torch extra is not installed: pip install -e '.[torch]'")
    from ai_edge_litert.interpreter import Interpreter
    onnx_path, mean, std, torch_top1 = torch_onnx
    run = tmp_path / "run"
    fmt = lambda v: ",".join(f"{c:.5f}" for c in v)  # noqa: E731
    cli("import", onnx_path.with_suffix(".pt2"), "--data", data[0], "--out", run, "--mean", fmt(mean), "--std", fmt(std))
    config = json.loads((run / "config.json").read_text())
    assert config["source"]["kind"] == "torch" and config["source"]["layout"] == "nchw"
    assert abs(json.loads((run / "metrics.json").read_text())["top1"] - torch_top1) <= 0.002
    wanted = ("tflite-float32", "tflite-int8", "tflite-int8-io-uint8", "onnx-float32", "openvino-float32")
    cli("export", run, *[a for v in wanted for a in ("--variant", v)], *FAST_EXPORT)
    exports = _check_files(run, json.loads((run / "export" / "export.json").read_text()))
    assert set(exports) == set(wanted)
    # int8 weights in fact: a 'same'-padded conv once stayed float in the "int8" file
    assert exports["tflite-int8"]["size_bytes"] < 0.5 * exports["tflite-float32"]["size_bytes"]
    for name in ("tflite-float32", "tflite-int8", "tflite-int8-io-uint8"):
        interpreter = Interpreter(model_path=str(run / "export" / exports[name]["file"]))
        assert list(interpreter.get_input_details()[0]["shape"][1:]) == [32, 32, 3], name    # NHWC
    refused(cli("export", run, "--variant", "tflite-fp16", check=False), "litert-torch")
    if MEDIAPIPE.is_file():
        compare(run, data[3][:200], tmp_path)


# --------------------------------------------------------------------------- bad input
def _keras_file(tmp_path, name, **kwargs):
    from cifar_edge._tf import keras
    path = tmp_path / name
    _notebook_cnn(keras, **kwargs).save(path)
    return path


def test_a_file_that_is_no_model_is_refused(data, tmp_path):
    for name, content in (("notes.h5", b"not a model at all"), ("weights.bin", b"\x00" * 64),
                          ("broken.onnx", b"\x08\x07garbage")):
        (tmp_path / name).write_bytes(content)
        run = tmp_path / f"run-{name}"
        refused(cli("import", tmp_path / name, "--data", data[0], "--out", run, check=False), name)
        assert not run.exists()


def test_a_model_for_other_classes_is_refused(data, tmp_path):
    path = _keras_file(tmp_path, "seven.h5", classes=7)
    run = tmp_path / "run"
    refused(cli("import", path, "--data", data[0], "--out", run, check=False), "7 outputs", "10 classes")
    assert not run.exists()


def test_a_model_whose_input_is_not_an_rgb_image_is_refused(data, tmp_path):
    path = _keras_file(tmp_path, "gray.h5", channels=1)
    run = tmp_path / "run"
    refused(cli("import", path, "--data", data[0], "--out", run, check=False), "3-channel")
    assert not run.exists()


def test_onnx_without_its_external_data_is_refused(torch_onnx, data, tmp_path):
    import shutil
    path = tmp_path / "net.onnx"
    shutil.copy(torch_onnx[0], path)                     # the .onnx alone, its net.onnx.data left behind
    run = tmp_path / "run"
    refused(cli("import", path, "--data", data[0], "--out", run, check=False), "net.onnx.data", "missing")
    assert not run.exists()


def test_pt2_without_the_torch_extra_names_the_install(data, tmp_path):
    path = tmp_path / "model.pt2"
    path.write_bytes(b"PK\x05\x06" + b"\x00" * 18)       # the torch extra is missing before the file is read
    run = tmp_path / "run"
    code = ("import sys; sys.modules['torch'] = None; from cifar_edge.cli import main; "
            f"sys.argv = ['cifar-edge', 'import', {str(path)!r}, '--data', {str(data[0])!r}, '--out', {str(run)!r}]; main()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    refused(result, "pip install", "torch")
    assert not run.exists()


def test_a_lambda_model_never_runs_without_trust_model(data, tmp_path):
    """A Lambda layer whose code writes a file, as an .h5, a .keras and a SavedModel: import
    refuses each, and evaluate/export/predict of a run whose model.h5 carries it refuse it, in one
    line naming the layer and --trust-model; the file never appears.  With --trust-model the user
    said so, and it loads."""
    from cifar_edge._tf import keras
    marker = tmp_path / "lambda_ran.txt"
    build = lambda lam: _notebook_cnn(keras, lam=lam)  # noqa: E731
    run = tmp_path / "run"
    for name in ("lambda.h5", "lambda.keras", "lambda_savedmodel"):
        hostile.lambda_model(tmp_path / name, marker, build)
        refused(cli("import", tmp_path / name, "--data", data[0], "--out", run, check=False), "Lambda", "--trust-model")
        assert not run.exists() and not marker.exists(), name
    path = tmp_path / "lambda.h5"

    # A shared run folder whose model.h5 was swapped for the hostile one.
    plain = _keras_file(tmp_path, "plain.h5")
    cli("import", plain, "--data", data[0], "--out", run)
    (run / "model.h5").write_bytes(path.read_bytes())
    image = tmp_path / "x.png"
    from PIL import Image
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    for args in (("evaluate", run), ("export", run, "--format", "tflite"), ("predict", run, image)):
        refused(cli(*args, check=False), "Lambda", "--trust-model")
        assert not marker.exists(), args

    trusted = tmp_path / "trusted"
    cli("import", path, "--data", data[0], "--out", trusted, "--trust-model")
    assert marker.exists()                                   # the user's word: its code ran


def test_import_help_names_every_source_kind():
    out = " ".join(cli("import", "--help").stdout.split())      # the help wraps at the terminal's width
    for words in ("tf_keras", "SavedModel", "Keras 3", ".onnx", ".pt2", "tf.saved_model"):
        assert words in out, words


# --------------------------------------------------------------------------- optimize an import
def test_an_imported_notebook_model_is_optimized_with_qat_and_pruning(notebook_h5, data, tmp_path):
    """`optimize --qat` and `--prune` of the imported notebook model (Rescaling inside, softmax head,
    BatchNorm, Dropout) fine-tune it on DATA's training images, each in a fresh process; each run
    then exports int8 within a few points of the source (well above chance) and evaluates, and the
    parent rules hold for it as for a trained run's (a QAT run exports int8 only)."""
    path, *_ = data
    run = tmp_path / "run"
    cli("import", notebook_h5, "--data", path, "--out", run)
    source_top1 = json.loads((run / "metrics.json").read_text())["top1"]
    # a 40% CNN of 16-32 channels pruned to 0.3 in one epoch of batch 32 (125 steps); 0.5 at the
    # recipe's batch 64 (63 steps) fell 13 points, past optimize's own --max-drop 10
    for method, flags in (("qat", ["--qat"]), ("prune", ["--prune", "0.3", "--batch-size", "32"])):
        out = tmp_path / method
        cli("optimize", run, *flags, "--epochs", "1", "--out", out)
        config = json.loads((out / "config.json").read_text())
        assert config["source"]["outputs"] == "softmax" and config["optimize"]["method"] == method
        assert config["optimize"]["frozen_batchnorm"] == 2 and config["optimize"]["lr"] == pytest.approx(1e-4)
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["top1"] > 0.25 and source_top1 - metrics["top1"] <= 0.08, (method, metrics["top1"], source_top1)
        if method == "prune":
            assert metrics["sparsity"] >= 0.25, metrics["sparsity"]
        cli("export", out, "--format", "tflite", "--int8", *FAST_EXPORT)
        (entry,) = json.loads((out / "export" / "export.json").read_text())["exports"].values()
        top1 = entry["accuracy"][entry["parity"]["split"]]["top1"]
        assert entry["options"]["quantization"] == "int8" and top1 > 0.25 and source_top1 - top1 <= 0.08, (method, top1, source_top1)
        assert "top1" in json.loads(cli("evaluate", out, "--json", "--limit", "300").stdout)["metrics"]
    refused(cli("export", tmp_path / "qat", "--format", "onnx", check=False), "int8")
    refused(cli("optimize", tmp_path / "qat", "--prune", "0.5", check=False), "quantization-aware")


def test_optimize_of_an_import_whose_data_has_no_training_images_is_refused(notebook_h5, data, tmp_path):
    """A test set alone imports (the model is evaluated on it), but fine-tuning needs training images."""
    _, _, _, xt, yt = data
    test_only = tmp_path / "test_only.npz"
    np.savez(test_only, x_test=xt, y_test=yt)
    run = tmp_path / "run"
    cli("import", notebook_h5, "--data", test_only, "--out", run)
    out = tmp_path / "run-qat"
    refused(cli("optimize", run, "--qat", "--out", out, check=False), "no training images", "import", "x_train")
    assert not out.exists()


def test_which_imported_kinds_optimize_takes_and_their_recipe():
    """tfmot takes tf_keras models only; an imported model's fine-tune is IMPORTED_RECIPE's, the
    user's --lr/--batch-size first."""
    from cifar_edge.compress import OptimizeConfig
    from cifar_edge.compress.parent import check_parent
    from cifar_edge.compress.run import IMPORTED_RECIPE, LR_DIVISOR, _finetune_config
    from cifar_edge.errors import CifarEdgeError
    from cifar_edge.source_models import KINDS
    config = {"train": {"model": "imported-tf_keras", "data": "d.npz", "seed": 0, "val_split": 0.0}, "input_size": 32,
              "source": {"kind": "tf_keras", "outputs": "softmax"}}
    check_parent("qat", "run", config)
    for kind in set(KINDS) - {"tf_keras"}:
        with pytest.raises(CifarEdgeError, match=f"imported {kind} model: tfmot"):
            check_parent("prune", "run", {**config, "source": {"kind": kind}})
    ft = _finetune_config(config, OptimizeConfig("cluster", epochs=3))
    assert (ft.optimizer, ft.epochs, ft.schedule, ft.input_size) == ("adamw", 3, "cosine", 32)
    assert ft.lr == pytest.approx(IMPORTED_RECIPE["lr"] / LR_DIVISOR["cluster"]) and not ft.augment.flip_h
    ft = _finetune_config(config, OptimizeConfig("qat", lr=3e-5, batch_size=16))
    assert (ft.lr, ft.batch_size) == (3e-5, 16)
