"""The GPU training path, on the CPU: on a GPU, ``--precision auto`` trains under the
mixed_float16 policy with XLA (``accelerate``), and neither path runs on a machine without
one.  These tests make ``accelerate`` see a GPU (or force XLA alone) and train cnn-tiny on a
few hundred synthetic images for one epoch, so a bug on that path fails here, not on the
first GPU machine (``benchmarks/gpu_check.py`` is the run on real hardware)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cifar_edge.train import TrainConfig, train
from cifar_edge.train import distribute, loop

TINY = dict(model="cnn-tiny", data="synthetic", batch_size=64, lr=0.1, warmup_epochs=0.3, epochs=1,
            synthetic_size=192, val_split=0.0, seed=5)


@pytest.fixture(autouse=True)
def op_determinism_restored():
    """An XLA run switches op determinism off for the process; later tests get it back as it was."""
    from tensorflow.python.framework import config as tf_config
    was = tf_config.is_op_determinism_enabled()
    yield
    (tf_config.enable_op_determinism if was else tf_config.disable_op_determinism)()


@pytest.fixture
def compiled(monkeypatch):
    """What each model.compile of a training run was given: the model and its XLA flag."""
    seen = []
    real = loop.compile_model

    def spy(model, cfg, steps, num_classes, xla, frozen=None):
        real(model, cfg, steps, num_classes, xla, frozen)
        seen.append({"model": model, "xla": xla})
    monkeypatch.setattr(loop, "compile_model", spy)
    return seen


def _test_images(cfg):
    from cifar_edge.data import load_dataset, prepare_images
    from cifar_edge.models import get_model_spec
    ds = load_dataset(cfg["data"], synthetic_size=cfg["synthetic_size"], seed=cfg["seed"])
    return prepare_images(ds.x_test, get_model_spec(cfg["model"]).normalization), ds.y_test


def test_gpu_default_trains_in_mixed_float16_with_xla_and_saves_a_float32_model(tmp_path, monkeypatch, compiled):
    """``--precision auto`` as on a GPU (the device list is faked): float16 compute, float32
    logits, a loss-scaled optimizer, XLA, a finite loss; the saved model computes in float32
    and predicts what the trained float16 model predicts."""
    from cifar_edge._tf import keras, tf
    from cifar_edge.runs import load_model
    monkeypatch.setattr(distribute, "gpus", lambda: [tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")])
    tf.config.experimental.enable_op_determinism()      # as an earlier CPU run in this process leaves it
    run = tmp_path / "gpu-default"
    metrics = train(TrainConfig(precision="auto", **TINY), run)

    config = json.loads((run / "config.json").read_text())
    assert config["device"] == {"gpu": True, "mixed_precision": True, "policy": "mixed_float16", "xla": True}
    [fit] = compiled
    trained = fit["model"]
    assert fit["xla"] and trained.jit_compile
    assert isinstance(trained.optimizer, keras.mixed_precision.LossScaleOptimizer)
    assert trained.get_layer("stem_conv").compute_dtype == "float16"        # really float16 compute
    assert trained.get_layer("logits").compute_dtype == "float32" and trained.output.dtype == tf.float32
    assert np.isfinite(_training_loss(run)) and np.isfinite(metrics["loss"])
    assert keras.mixed_precision.global_policy().name == "float32"         # models built later are float32

    saved = load_model(run / "model.keras")
    assert {layer.compute_dtype for layer in saved.layers} == {"float32"}
    x, y = _test_images(TINY)
    ours = saved.predict(x, verbose=0)
    theirs = np.asarray(trained(x, training=False), np.float32)           # float16 compute
    np.testing.assert_allclose(ours, theirs, atol=0.03, rtol=2e-3)       # float16 rounding only (~0.007 seen)
    assert float(np.mean(ours.argmax(1) == y)) == pytest.approx(metrics["top1"], abs=2e-3)


def _training_loss(run) -> float:
    """The last epoch's training loss from history.csv."""
    import csv
    with open(run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == TINY["epochs"]
    return float(rows[-1]["loss"])


def test_xla_training_on_cpu_agrees_with_the_plain_run(tmp_path):
    """XLA alone (float32): the same seed, data and steps as a run without it give the same
    model within float tolerance, and the run after it is deterministic again."""
    from cifar_edge._tf import tf
    from cifar_edge.data import load_dataset
    from cifar_edge.runs import RunFolder
    cfg = TrainConfig(**TINY).resolved()
    ds = load_dataset("synthetic", synthetic_size=TINY["synthetic_size"], seed=TINY["seed"])
    x, y = _test_images(TINY)
    models = {}
    for xla in (True, False):
        loop.seed_everything(cfg.seed, deterministic=not xla)
        run = RunFolder(tmp_path / f"xla-{xla}")
        run.root.mkdir()
        model, _ = loop.fit(cfg, run, ds.x_train, ds.y_train, None, None, ds.num_classes,
                            tf.distribute.get_strategy(), {"policy": "float32", "xla": xla})
        assert model.jit_compile is xla
        models[xla] = model.predict(x, verbose=0)
        assert np.all(np.isfinite(models[xla]))
    from tensorflow.python.framework import config as tf_config
    assert tf_config.is_op_determinism_enabled()                 # the plain run switched it back on
    np.testing.assert_allclose(models[True], models[False], atol=0.02, rtol=2e-3)   # ~0.003 seen
    assert np.mean(models[True].argmax(1) == models[False].argmax(1)) >= 0.97


def test_gpu_default_path_runs_the_default_cnn_recipe(tmp_path, monkeypatch, compiled):
    """The default cnn's sgd-l2 (multipliers, stem freeze, in-graph lookahead) under the
    loss-scaled float16 optimizer with XLA: it trains, the stem kernel stays the whitening
    one, and the saved weights are the lookahead's slow copy."""
    from cifar_edge._tf import keras, tf
    from cifar_edge.runs import load_model
    monkeypatch.setattr(distribute, "gpus", lambda: [tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")])
    cfg = dict(model="cnn", model_options={"base_widths": (24, 16, 32, 32)}, data="synthetic", epochs=1,
               synthetic_size=192, val_split=0.0, seed=5, batch_size=64)
    metrics = train(TrainConfig(precision="auto", **cfg), tmp_path / "run")
    [fit] = compiled
    trained = fit["model"]
    assert fit["xla"] and isinstance(trained.optimizer, keras.mixed_precision.LossScaleOptimizer)
    inner = trained.optimizer.inner_optimizer
    assert inner.lookahead_total_steps == int(inner.iterations) and inner.slow
    assert np.isfinite(metrics["loss"])
    saved = load_model(tmp_path / "run" / "model.keras")
    for var, slow in inner._slow_pairs:                                   # ended on the slow copy
        np.testing.assert_allclose(np.asarray(var.numpy(), np.float32), slow.numpy(), rtol=1e-6, atol=1e-7)
    from cifar_edge.data import load_dataset
    from cifar_edge.models import get_model_spec
    from cifar_edge.train.whitening import whitening_filters
    ds = load_dataset("synthetic", synthetic_size=192, seed=5)
    whitened = whitening_filters(ds.x_train, get_model_spec("cnn").normalization, seed=5)
    np.testing.assert_allclose(saved.get_layer("stem_conv").get_weights()[0], whitened, rtol=1e-5, atol=1e-6)
