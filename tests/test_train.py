"""Training: beats chance on real data, resumes after kill -9, is reproducible, runs
distributed and K-fold, writes a complete run folder."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import real_npz

from cifar_edge.errors import CifarEdgeError
from cifar_edge.train import TrainConfig, load_model, train
from cifar_edge.train.schedules import OneCycle, WarmupCosine

TINY = dict(model="cnn-tiny", batch_size=64, lr=0.1, warmup_epochs=0.3)


def _history(run: Path):
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def real10_npz(tmp_path_factory, cifar10_real):
    """4,000 real CIFAR-10 training images and 1,000 test images, as an .npz source."""
    return real_npz(cifar10_real, tmp_path_factory.mktemp("data") / "cifar10_small.npz", 4000, 1000)


def test_short_run_on_real_cifar10_beats_chance_and_writes_run_folder(tmp_path, real10_npz):
    run = tmp_path / "run"
    metrics = train(TrainConfig(data=real10_npz, epochs=3, **TINY), run)
    assert metrics["split"] == "test" and metrics["n"] == 1000
    assert metrics["top1"] > 0.30, metrics["top1"]                # chance is 0.10
    assert metrics["top5"] > metrics["top1"]
    for name in ("model.keras", "model.h5", "best.keras", "config.json", "metrics.json", "history.csv",
                 "labels.txt", "confusion.csv", "confusion.png", "curves.png"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert not (run / "backup").exists()                          # removed once the run finished
    rows = _history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"loss", "accuracy", "val_accuracy", "lr", "images_per_second"} <= set(rows[0])
    saved = json.loads((run / "metrics.json").read_text())
    assert 0 <= saved["top1"] <= 1 and 0 <= saved["top5"] <= 1
    assert json.loads((run / "config.json").read_text())["train"]["optimizer"] == "sgd"  # cnn recipe


def test_the_saved_model_is_the_best_epochs_not_the_last(tmp_path, monkeypatch):
    """Validation improving only at epoch 1 (its checkpoint is the only one saved) of 2: the
    run's model must be epoch 1's, restored from the values best.keras was saved with."""
    from cifar_edge.train.callbacks import BestCheckpoint
    save = BestCheckpoint.on_epoch_end
    monkeypatch.setattr(BestCheckpoint, "on_epoch_end",
                        lambda self, epoch, logs=None: save(self, epoch, logs) if epoch == 0 else None)
    run = tmp_path / "run"
    train(TrainConfig(data="synthetic", epochs=2, limit=600, seed=0, **TINY), run)
    final, best = load_model(run / "model.h5"), load_model(run / "best.keras")
    for a, b in zip(final.get_weights(), best.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_same_seed_gives_same_metrics(tmp_path):
    cfg = dict(data="synthetic", epochs=1, limit=600, seed=7, **TINY)
    a = train(TrainConfig(**cfg), tmp_path / "a")
    b = train(TrainConfig(**cfg), tmp_path / "b")
    assert a["top1"] == b["top1"] and a["loss"] == b["loss"]
    assert _history(tmp_path / "a")[0]["loss"] == _history(tmp_path / "b")[0]["loss"]


def _cli(*args, env=None, **kw):
    env = {**{k: v for k, v in os.environ.items() if k != "TF_CONFIG"}, **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "cifar_edge.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def test_resume_after_crash_in_evaluation_only_evaluates(tmp_path, monkeypatch):
    import cifar_edge.train.loop as loop
    real_evaluate = loop.evaluate_model

    def crash(*args, **kwargs):
        raise RuntimeError("power cut during evaluation")
    run = tmp_path / "run"
    monkeypatch.setattr(loop, "evaluate_model", crash)
    with pytest.raises(RuntimeError):
        train(TrainConfig(data="synthetic", epochs=2, limit=300, **TINY), run)
    assert (run / "model.keras").is_file() and not (run / "metrics.json").exists()
    monkeypatch.setattr(loop, "evaluate_model", real_evaluate)
    metrics = train(TrainConfig(**TINY), run, resume=True)
    assert metrics["fit_seconds_this_session"] == 0 and metrics["epochs_run"] == 2   # nothing retrained
    assert not (run / "backup").exists()


def test_resume_and_rerun_errors(tmp_path):
    with pytest.raises(CifarEdgeError, match="nothing to resume"):
        train(TrainConfig(**TINY), tmp_path / "none", resume=True)
    run = tmp_path / "run"
    train(TrainConfig(data="synthetic", epochs=1, limit=300, **TINY), run)
    with pytest.raises(CifarEdgeError, match="not empty; pass --resume"):
        train(TrainConfig(data="synthetic", epochs=1, limit=300, **TINY), run)
    with pytest.raises(CifarEdgeError, match="already finished"):
        train(TrainConfig(**TINY), run, resume=True)


@pytest.mark.parametrize("strategy, expected, replicas", [("mirrored", "MirroredStrategy", 2),
                                                          ("multiworker", "CollectiveAllReduceStrategy", 1)])
def test_distributed_strategies_on_cpu(tmp_path, strategy, expected, replicas):
    run = tmp_path / "run"
    proc = _cli("train", "--model", "cnn-tiny", "--data", "synthetic", "--epochs", "1", "--limit", "512",
                "--batch-size", "64", "--out", str(run), "--strategy", strategy,
                env={"CIFAR_EDGE_CPU_DEVICES": "2"})
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    config = json.loads((run / "config.json").read_text())
    assert config["strategy"] == {"name": strategy, "class": expected, "replicas": replicas}
    if strategy == "mirrored":
        assert "2 logical CPU devices" in err
    assert json.loads((run / "metrics.json").read_text())["top1"] >= 0


def test_kfold_reports_mean_and_std(tmp_path):
    metrics = train(TrainConfig(data="synthetic", epochs=1, limit=600, kfold=2, **TINY), tmp_path / "k")
    assert metrics["kfold"] == 2 and len(metrics["folds"]) == 2
    tops = [f["top1"] for f in metrics["folds"]]
    assert metrics["top1"] == pytest.approx(np.mean(tops))
    assert metrics["top1_std"] == pytest.approx(np.std(tops, ddof=1))
    assert (tmp_path / "k" / "fold_2" / "metrics.json").is_file()
    assert (tmp_path / "k" / "fold_2" / "model.keras").is_file()


@pytest.mark.parametrize("optimizer, schedule", [("adamw", "cosine"), ("sgd", "exponential"),
                                                 ("adamw", "plateau"), ("sgd", "constant")])
def test_optimizers_and_schedules_train(tmp_path, optimizer, schedule):
    cfg = TrainConfig(data="synthetic", epochs=2, limit=400, optimizer=optimizer, schedule=schedule,
                      lr=1e-3 if optimizer == "adamw" else 0.05, model="cnn-tiny", batch_size=64,
                      early_stopping=1)
    metrics = train(cfg, tmp_path / "r")
    assert np.isfinite(metrics["loss"])
    lrs = [float(r["lr"]) for r in _history(tmp_path / "r")]
    if schedule in ("exponential", "cosine"):
        assert lrs[1] < lrs[0]
    else:                                                         # constant; plateau waits 2 epochs
        assert lrs[0] == pytest.approx(cfg.lr) and lrs[1] == pytest.approx(cfg.lr)


def test_schedules_shape():
    one = OneCycle(1.0, total_steps=100, warmup_steps=20)
    assert float(one(0)) == 0 and float(one(20)) == pytest.approx(1.0) and float(one(100)) == 0
    assert float(one(10)) == pytest.approx(0.5) and float(one(60)) == pytest.approx(0.5)
    cos = WarmupCosine(2.0, total_steps=110, warmup_steps=10)
    assert float(cos(10)) == pytest.approx(2.0) and float(cos(60)) == pytest.approx(1.0) and float(cos(110)) < 1e-6


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, "--epochs 0 is invalid"), ("optimizer", "adam", "choose one of sgd, sgd-l2, adamw"),
    ("schedule", "linear", "choose one of onecycle"), ("val_split", 1.0, "--val-split 1.0 is invalid"),
    ("kfold", 1, "--kfold 1 is invalid"), ("lr", -1.0, "positive learning rate"),
    ("model", "resnet", "unknown model 'resnet'"), ("precision", "fp8", "choose one of auto, float32, bf16"),
])
def test_bad_training_settings(tmp_path, field, value, message):
    with pytest.raises(CifarEdgeError, match=message):
        train(TrainConfig(**{**TINY, "data": "synthetic", field: value}), tmp_path / "r")
    assert not (tmp_path / "r").exists()                          # nothing half-written


def test_bf16_run_trains_and_saves_a_float32_model(tmp_path, real10_npz):
    """bfloat16 compute is for training speed only: the saved model (what evaluation and
    export read) computes in float32 and gives the figures in metrics.json, and the process
    is back on float32 afterwards."""
    from cifar_edge._tf import keras
    from cifar_edge.data import load_path, prepare_images
    from cifar_edge.models import get_model_spec
    from cifar_edge.runs import load_model
    run = tmp_path / "bf16"
    metrics = train(TrainConfig(data=real10_npz, epochs=3, precision="bf16", **TINY), run)
    assert metrics["top1"] > 0.30, metrics["top1"]                # chance is 0.10
    assert keras.mixed_precision.global_policy().name == "float32"
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["precision"] == "bf16" and config["device"]["policy"] == "mixed_bfloat16"
    model = load_model(run / "model.keras")
    assert {layer.compute_dtype for layer in model.layers} == {"float32"}
    ds = load_path(real10_npz)
    x = prepare_images(ds.x_test, get_model_spec("cnn-tiny").normalization)
    top1 = float(np.mean(np.argmax(model.predict(x, verbose=0), 1) == ds.y_test))
    assert top1 == pytest.approx(metrics["top1"], abs=2e-3)      # batch order may flip a tie


def test_mlflow_logging(tmp_path):
    pytest.importorskip("mlflow", reason="MLflow is an optional extra: pip install 'cifar-edge[mlflow]'")
    run = tmp_path / "run"
    train(TrainConfig(data="synthetic", epochs=2, limit=300, mlflow=True, **TINY), run)
    import mlflow
    client = mlflow.tracking.MlflowClient((run / "mlruns").resolve().as_uri())
    runs = client.search_runs([client.get_experiment_by_name("cifar-edge").experiment_id])
    assert len(runs) == 1
    logged = runs[0].data
    saved = json.loads((run / "metrics.json").read_text())
    assert logged.metrics["test_top1"] == pytest.approx(saved["top1"]) and logged.params["model"] == "cnn-tiny"
    assert len(client.get_metric_history(runs[0].info.run_id, "loss")) == 2      # one per epoch
    assert {a.path for a in client.list_artifacts(runs[0].info.run_id)} >= {"metrics.json", "model.keras"}


def test_patch_whitening_decorrelates_stem_outputs(cifar100_real):
    from cifar_edge.models import get_model_spec
    from cifar_edge.train.whitening import whiten_stem, whitening_filters
    x = cifar100_real[0][:800]
    spec = get_model_spec("cnn")
    w = whitening_filters(x, spec.normalization, eps=0.0)
    assert w.shape == (2, 2, 3, 24)
    patches = np.lib.stride_tricks.sliding_window_view(spec.normalization.apply_numpy(x), (2, 2), axis=(1, 2))
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 12)
    out = patches @ w.reshape(12, 24)[:, :12]
    np.testing.assert_allclose(out.T @ out / len(out), np.eye(12), atol=5e-3)   # white (second moment, as airbench)
    model = spec.build(10)
    assert whiten_stem(model, x, spec.normalization)
    assert not model.get_layer("stem_conv").trainable
    assert whiten_stem(model, x, spec.normalization, freeze_layer=False)     # sgd-l2 freezes by step instead
    assert model.get_layer("stem_conv").trainable
    np.testing.assert_allclose(model.get_layer("stem_conv").get_weights()[0], whitening_filters(x, spec.normalization))
