"""`cifar-edge train --ray-workers N` (extra ``[ray]``): two local Ray Train workers on real
CIFAR-10; rank 0 alone writes the run folder, kill -9 of a worker then --resume finishes the run,
and the result is within noise of --strategy multiworker with the same seed."""
from __future__ import annotations

import csv
import glob
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import real_npz

from cifar_edge.train import TrainConfig, train

INSTALL = "pip install -e '.[ray]'"
# 2 epochs of cnn-tiny on 3,000 training images (300 held out), scored on 1,000 test images
ARGS = ("--model", "cnn-tiny", "--epochs", "2", "--batch-size", "64", "--lr", "0.1", "--warmup-epochs", "0.3",
        "--seed", "0")


def _cli(*args, pre: str = "") -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "RAY_ADDRESS")}
    code = f"{pre}\nimport sys\nfrom cifar_edge.cli import main\nsys.argv = ['cifar-edge', *sys.argv[1:]]\nmain()"
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _rows(run: Path):
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_without_ray_the_flag_says_how_to_install_it(tmp_path):
    proc = _cli("train", "--data", "synthetic", "--out", str(tmp_path / "run"), "--ray-workers", "2",
                pre="import sys; sys.modules['ray'] = None   # as if not installed")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert err.strip().splitlines() == [f"error: --ray-workers needs Ray Train, which is not installed: {INSTALL}"]
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def ray_installed():
    try:
        import ray.train  # noqa: F401
    except ImportError:
        pytest.skip(f"Ray Train is not installed: {INSTALL}")


@pytest.fixture(scope="module")
def real3k_npz(tmp_path_factory, cifar10_real):
    return real_npz(cifar10_real, tmp_path_factory.mktemp("data") / "cifar10_3k.npz", 3300, 1000)


def test_two_ray_workers_resume_after_kill_9_and_match_multiworker(tmp_path, ray_installed, real3k_npz):
    run = tmp_path / "run"
    scratch_before = set(glob.glob(os.path.join(tempfile.gettempdir(), "cifar-edge-rank*")))
    proc = _cli("train", *ARGS, "--data", real3k_npz, "--val-split", str(300 / 3300), "--out", str(run),
                "--ray-workers", "2")
    try:
        deadline = time.monotonic() + 900      # Ray and TensorFlow start in three processes: minutes on a busy CPU
        while not (run / "backup" / "chief" / "checkpoint").is_file():   # epoch 1's backup recorded as complete
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no crash backup after 900 s"
            time.sleep(0.2)
    finally:
        if proc.poll() is None and not (run / "backup" / "chief" / "checkpoint").is_file():
            proc.terminate()                   # the driver stops its local Ray instance with it
            proc.communicate(timeout=120)
    rank0 = int(re.search(r"PID (\d+)", (run / ".lock").read_text()).group(1))
    os.kill(rank0, signal.SIGKILL)                # the worker that writes the run folder
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: a Ray worker failed (rank 0: its process died") and \
        f"cifar-edge train --out {run} --resume --ray-workers 2" in last, last
    assert not (run / "metrics.json").exists()
    epoch1 = _rows(run)[0]

    proc = _cli("train", "--out", str(run), "--resume", "--ray-workers", "2")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[0] == epoch1   # resumed at epoch 2, not retrained
    config = json.loads((run / "config.json").read_text())
    assert config["strategy"] == {"name": "multiworker", "class": "CollectiveAllReduceStrategy", "replicas": 2}
    for name in ("model.keras", "model.h5", "best.keras", "best.json", "metrics.json", "labels.txt",
                 "confusion.csv", "curves.png"):
        assert (run / name).is_file(), name
    assert not (run / "backup").exists()
    # rank 1 trained into a scratch copy of the run folder, removed when it finished
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "cifar-edge-rank*"))) <= scratch_before
    ray_run = json.loads((run / "metrics.json").read_text())
    assert ray_run["n"] == 1000 and ray_run["top1"] > 0.3, ray_run["top1"]   # chance: 0.1

    # the same run in this process, one worker: within noise (two replicas' BatchNorm batches are half as large)
    alone = train(TrainConfig(model="cnn-tiny", data=real3k_npz, epochs=2, batch_size=64, lr=0.1, warmup_epochs=0.3,
                              seed=0, val_split=300 / 3300, strategy="multiworker"), tmp_path / "alone")
    assert abs(ray_run["top1"] - alone["top1"]) < 0.04, (ray_run["top1"], alone["top1"])
