"""Compression: each method writes a run folder that loads back with the same predictions,
and the weights really are what the method promises (measured from the saved files, not
taken from metrics.json); bad input fails before anything is written."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cifar_edge._tf import keras
from cifar_edge.compress import METHODS, OptimizeConfig, optimize_run
from cifar_edge.data import load_dataset
from cifar_edge.errors import CifarEdgeError
from cifar_edge.evaluate import predict_logits
from cifar_edge.runs import load_run
from conftest import train_tiny
from cifar_edge.runs import load_model

FAST = dict(epochs=1, limit=300)       # 5 steps of 64 images: enough to exercise every method


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("compress") / "parent", epochs=2)


@pytest.fixture(scope="module")
def qat_run(parent):
    out = parent.parent / "qat"
    return out, optimize_run(parent, out, OptimizeConfig(method="qat", epochs=2, limit=300))


@pytest.fixture(scope="module")
def pruned(parent):
    out = parent.parent / "prune"
    return out, optimize_run(parent, out, OptimizeConfig(method="prune", sparsity=0.5, epochs=2, limit=300))


def _kernels(model) -> dict:
    """Conv2D/Dense kernels by layer name, looking inside tfmot's quantize wrappers."""
    out = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, (keras.layers.Conv2D, keras.layers.Dense)):
            # The variable itself (a wrapper's inner.kernel is a fake-quantized tensor), which a
            # reloaded wrapper owns rather than its inner layer.
            (kernel,) = [v for v in layer.weights if v.name.split("/")[-1] == "kernel:0"]
            out[inner.name] = np.asarray(kernel)
    return out


def _quantized(model) -> bool:
    return any(type(layer).__name__.startswith("Quantize") for layer in model.layers)


def _test_split():
    ds = load_dataset("synthetic", synthetic_classes=10, seed=0)
    return ds.x_test, ds.y_test


def test_qat_run_reloads_with_same_predictions(parent, qat_run):
    out, metrics = qat_run
    for name in ("model.keras", "model.h5", "config.json", "labels.txt", "history.csv", "metrics.json"):
        assert (out / name).is_file(), name
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [".lock"]   # the writer lock; no temp files
    config = json.loads((out / "config.json").read_text())
    assert config["parent"] == str(parent.resolve()) and config["optimize"]["method"] == "qat"
    assert config["train"] == json.loads((parent / "config.json").read_text())["train"]
    assert (out / "labels.txt").read_text() == (parent / "labels.txt").read_text()
    with open(out / "history.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert json.loads((out / "metrics.json").read_text())["top1"] == metrics["top1"]

    loaded = load_run(out)                                        # what evaluate/predict/export use
    assert _quantized(loaded.model)
    x, y = _test_split()
    logits = predict_logits(loaded.model, x, loaded.norm)
    np.testing.assert_allclose(logits, predict_logits(load_model(out / "model.h5"), x, loaded.norm), atol=1e-5)
    assert np.mean(logits.argmax(1) == y) == pytest.approx(metrics["top1"], abs=1e-3)   # same as in-process
    assert metrics["top1"] > 0.3, metrics["top1"]                 # chance is 0.1
    assert metrics["method"] == "qat" and metrics["parent_top1"] is not None


def test_prune_reaches_target_sparsity_in_saved_kernels(pruned):
    out, metrics = pruned
    model = load_model(out / "model.keras")
    assert not any("prune" in type(layer).__name__.lower() for layer in model.layers)   # stripped
    kernels = _kernels(model)
    zeros = sum(int((k == 0).sum()) for k in kernels.values()) / sum(k.size for k in kernels.values())
    assert zeros == pytest.approx(0.5, abs=0.02)
    assert all((k == 0).mean() >= 0.45 for k in kernels.values()), {n: (k == 0).mean() for n, k in kernels.items()}
    assert metrics["sparsity"] == pytest.approx(zeros, abs=1e-3) and set(metrics["layer_sparsity"]) == set(kernels)
    h5 = _kernels(load_model(out / "model.h5"))
    assert all(np.array_equal(h5[n], kernels[n]) for n in kernels)


def test_pqat_keeps_the_parents_zeros(pruned, tmp_path):
    parent_dir, _ = pruned
    metrics = optimize_run(parent_dir, tmp_path / "pqat", OptimizeConfig(method="pqat", **FAST))
    model = load_run(tmp_path / "pqat").model
    assert _quantized(model)
    before, after = _kernels(load_model(parent_dir / "model.keras")), _kernels(model)
    assert set(before) == set(after)
    for name, k in before.items():
        assert np.all(after[name][k == 0] == 0), name            # every pruned weight is still zero
    assert metrics["sparsity"] >= metrics["parent_sparsity"] - 1e-3 >= 0.49
    assert json.loads((tmp_path / "pqat" / "config.json").read_text())["optimize"]["parent_method"] == "prune"


def test_cluster_leaves_at_most_n_values_per_kernel(parent, tmp_path):
    metrics = optimize_run(parent, tmp_path / "c", OptimizeConfig(method="cluster", clusters=16, **FAST))
    kernels = _kernels(load_model(tmp_path / "c" / "model.keras"))
    counts = {n: len(np.unique(k)) for n, k in kernels.items()}
    assert max(counts.values()) <= 16 and metrics["max_unique_values"] == max(counts.values()), counts
    assert metrics["top1"] > 0.2, metrics["top1"]                 # fine-tuning did not collapse the model


def test_quantized_model_of_whole_model_path_round_trips(tmp_path):
    """A model tfmot quantizes whole (no fallback) also saves and reloads to the same outputs."""
    from cifar_edge.compress.quantize import quantize
    from cifar_edge.models.tfmot_compat import reloadable
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model, coverage = quantize(keras.Model(inputs, keras.layers.Dense(3)(x)))
    assert coverage == "whole model"
    images = np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)
    model(images, training=True)                                  # move the quantizer ranges off their init
    saved = reloadable(model)
    np.testing.assert_allclose(saved(images), model(images), atol=1e-6)
    for name in ("m.keras", "m.h5"):
        saved.save(tmp_path / name)
        np.testing.assert_allclose(load_model(tmp_path / name)(images), model(images), atol=1e-6)


def test_unquantizable_layer_is_named_with_a_fix():
    from cifar_edge.compress.quantize import quantize
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="elu", name="odd_conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    with pytest.raises(CifarEdgeError, match="layer odd_conv.*use --prune instead or replace layer odd_conv"):
        quantize(keras.Model(inputs, keras.layers.Dense(3)(x)))


@pytest.mark.parametrize("settings, message", [
    (dict(method="prun"), "unknown optimization method 'prun'; did you mean 'prune'"),
    (dict(method="prune", sparsity=1.0), "--prune 1.0 is invalid"),     # the flags that exist (issue 30)
    (dict(method="prune", sparsity=0.0), "--prune 0.0 is invalid"),
    (dict(method="cluster", clusters=1), "--cluster 1 is invalid"),
    (dict(method="qat", epochs=0), "--epochs 0 is invalid"),
    (dict(method="pqat"), "--pqat keeps a pruned model's zeros, but .* is not pruned"),
    (dict(method="prune", limit=10, epochs=1), "1 training steps are too few to prune"),
])
def test_bad_settings(parent, tmp_path, settings, message):
    with pytest.raises(CifarEdgeError, match=message):
        optimize_run(parent, tmp_path / "out", OptimizeConfig(**settings))
    assert not (tmp_path / "out").exists()                        # nothing half-written


@pytest.mark.parametrize("method, message", [
    ("qat", "already quantization-aware"),
    ("cluster", "--cluster cannot start from .* quantization-aware"),
    ("prune", "--prune cannot start from .* quantization-aware"),
    ("pqat", "is a qat run"),
])
def test_methods_refuse_a_quantization_aware_parent(qat_run, tmp_path, method, message):
    with pytest.raises(CifarEdgeError, match=message):
        optimize_run(qat_run[0], tmp_path / "out", OptimizeConfig(method=method))
    assert not (tmp_path / "out").exists()


def test_bad_parent_or_output_folder(parent, tmp_path):
    with pytest.raises(CifarEdgeError, match="does not exist"):
        optimize_run(tmp_path / "missing", tmp_path / "out", OptimizeConfig(method="qat"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CifarEdgeError, match="holds no trained model"):
        optimize_run(tmp_path / "empty", tmp_path / "out", OptimizeConfig(method="qat"))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(CifarEdgeError, match="not empty"):
        optimize_run(parent, tmp_path / "used", OptimizeConfig(method="qat"))
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["notes.txt"]
    assert METHODS == ("qat", "prune", "pqat", "cluster")


def test_onnx_repair_of_a_qat_run_is_refused_as_it_would_measure_another_file(qat_run, tmp_path):
    """A QAT run's ONNX is its learned QDQ graph: onnxruntime quantization (what the repair search
    and --float-layers steer) never runs on it, so a search would measure a file export does not
    write: --float-layers is refused and the search never takes it."""
    from cifar_edge.export import ExportConfig, ExportOptions, export_run, resolve_variants
    from cifar_edge.export.exporter import prepare, repairable
    from cifar_edge.formats import Variant
    from cifar_edge.formats import get_format
    from cifar_edge.runs import load_run
    out, _ = qat_run
    cfg = ExportConfig(calibration_images=100, check_images=60, max_drop=1.0)
    with pytest.raises(CifarEdgeError, match="quantization-aware run's onnx file carries the QDQ nodes.*--format tflite"):
        export_run(out, resolve_variants(fmt="onnx", opts=ExportOptions(quantization="int8", float_layers=("s1_conv",))),
                   out_dir=tmp_path / "e", cfg=cfg)
    assert not (tmp_path / "e").exists()
    ctx, _ = prepare(load_run(out), cfg, calibrate=True)
    assert ctx.qat and not repairable(ctx, Variant(get_format("onnx"), ExportOptions(quantization="int8")))
    assert repairable(ctx, Variant(get_format("tflite"), ExportOptions(quantization="int8")))


def test_qat_lr_follows_the_recipe_it_was_measured_with():
    """airbench's recipe fine-tunes QAT at its lr / 500 (BatchNorm biases train at 64 x the lr);
    the same model trained with another optimizer, or another method, keeps the generic divisor."""
    from cifar_edge.compress.run import LR_DIVISOR, lr_divisor
    from cifar_edge.train.config import TrainConfig
    airbench = TrainConfig(model="cnn", epochs=1).resolved()
    assert airbench.optimizer == "sgd-l2" and lr_divisor("qat", airbench) == 500
    assert lr_divisor("prune", airbench) == LR_DIVISOR["prune"]
    adamw = TrainConfig(model="cnn", epochs=1, optimizer="adamw").resolved()
    assert lr_divisor("qat", adamw) == LR_DIVISOR["qat"]
    assert lr_divisor("qat", TrainConfig(model="cnn-tiny", epochs=1).resolved()) == LR_DIVISOR["qat"]
