"""Trust nothing a run folder holds (issue 30): a killed optimize resumes as what it was, to the
uninterrupted metrics, and nothing uses it before; flags that differ on --resume and class lists
that disagree with the model are one true line; off-size images are said; a killed export's
work folders do not pile up in the system temp.  Each case reproduced the bug first, the CLI
in a fresh process as a user runs it, the hostile files built here (tests/hostile.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hostile

DRIVER = Path(__file__).with_name("crash_driver.py")
TIMING = {"train_seconds", "fit_seconds_this_session", "images_per_second"}   # wall clock: differ by nature
PRUNE = ["optimize", "parent", "--prune", "0.5", "--epochs", "3", "--max-drop", "100"]
QAT = ["optimize", "parent", "--qat", "--epochs", "2", "--max-drop", "100"]


def cli(*args, cwd, crash_at: str = "", timeout=300, env=None):
    env = {**os.environ, "CRASH_AT": crash_at, **(env or {})}
    env.pop("TF_CONFIG", None)
    return subprocess.run([sys.executable, str(DRIVER), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def scored(run: Path) -> dict:
    return {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if k not in TIMING}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, cifar10_real):
    """600 real CIFAR-10 training images and 200 test images, a 1-epoch cnn-tiny parent, and its
    uninterrupted 3-epoch prune every killed prune must end up identical to."""
    xtr, ytr, xte, yte, names = cifar10_real
    root = tmp_path_factory.mktemp("trust")
    np.savez(root / "small.npz", x_train=xtr[:600], y_train=ytr[:600], x_test=xte[:200], y_test=yte[:200],
             class_names=np.array(names))
    for args in (["train", "--model", "cnn-tiny", "--data", "small.npz", "--epochs", "1", "--batch-size", "64",
                  "--seed", "1", "--out", "parent"], [*PRUNE, "--out", "prune-clean"]):
        done = cli(*args, cwd=root)
        assert done.returncode == 0, done.stderr[-2000:]
    return root


def _refused(done, *needles):
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "Traceback" not in done.stderr, done.stderr[-2000:]
    for needle in needles:
        assert needle in line, line


def _nothing_uses_an_unfinished_optimize(workdir: Path, out: str):
    """What the issue found each command doing with a killed optimize's folder, now refused
    with the command that finishes it."""
    finish = f"cifar-edge optimize --out {out} --resume"
    for args in (["export", out, "--format", "tflite"], ["evaluate", out], ["optimize", out, "--qat", "--out", "q"],
                 ["train", "--out", out, "--resume"], [*PRUNE, "--out", out]):
        _refused(cli(*args, cwd=workdir), finish)
    assert not (workdir / out / "model.keras").exists() and not (workdir / "q").exists()
    from cifar_edge.bench.targets import collect_runs
    siblings = [r.root.name for r in collect_runs(workdir / "parent")]
    assert "prune-clean" in siblings and out not in siblings


@pytest.mark.parametrize("crash_at", ["batch:2:3", "replace:model.keras"])
def test_a_killed_prune_resumes_as_what_it_was_to_the_uninterrupted_metrics(workdir, crash_at):
    out = f"prune-{crash_at.replace(':', '-')}"
    killed = cli(*PRUNE, "--out", out, cwd=workdir, crash_at=crash_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (workdir / out / "config.json").is_file() and not (workdir / out / "metrics.json").exists()
    if crash_at.startswith("batch"):
        _nothing_uses_an_unfinished_optimize(workdir, out)
    resumed = cli("optimize", "--out", out, "--resume", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert scored(workdir / out) == scored(workdir / "prune-clean")
    assert scored(workdir / out)["sparsity"] >= 0.45
    assert not (workdir / out / "backup").exists()
    assert [p.name for p in (workdir / out).iterdir() if "~" in p.name] == []
    from cifar_edge.bench.targets import collect_runs
    assert out in [r.root.name for r in collect_runs(workdir / "parent")]      # finished: a sibling now


def test_a_killed_qat_resumes_to_the_uninterrupted_metrics(workdir):
    clean = cli(*QAT, "--out", "qat-clean", cwd=workdir)
    assert clean.returncode == 0, clean.stderr[-2000:]
    killed = cli(*QAT, "--out", "qat-crash", cwd=workdir, crash_at="batch:2:4")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = cli("optimize", "parent", "--qat", "--out", "qat-crash", "--resume", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert scored(workdir / "qat-crash") == scored(workdir / "qat-clean")


def test_ctrl_c_says_the_resume_command_of_the_command_interrupted(workdir):
    interrupted = cli(*PRUNE, "--out", "prune-int", cwd=workdir, crash_at="sigint:2:3")
    assert interrupted.returncode == 130, interrupted.stderr[-2000:]
    assert interrupted.stderr.strip().splitlines()[-1] == \
        "interrupted; continue it with `cifar-edge optimize --out prune-int --resume`"
    resumed = cli("optimize", "--out", "prune-int", "--resume", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert scored(workdir / "prune-int") == scored(workdir / "prune-clean")
    train = cli("train", "--model", "cnn-tiny", "--data", "small.npz", "--epochs", "1", "--batch-size", "64",
                "--out", "train-int", cwd=workdir, crash_at="sigint:1:2")
    assert train.returncode == 130, train.stderr[-2000:]
    assert train.stderr.strip().splitlines()[-1] == \
        "interrupted; continue it with `cifar-edge train --out train-int --resume`"


def test_resume_refuses_settings_that_differ_from_the_saved_ones(workdir, tmp_path):
    half = hostile.unfinished_train(workdir / "parent", tmp_path / "half")
    _refused(cli("train", "--out", str(half), "--resume", "--epochs", "8", "--lr", "0.01", "--model", "cnn-tiny",
                 cwd=workdir), "--epochs 8 (the run's: 1)", "--lr 0.01 (the run's: ", "drop them")
    assert sorted(p.name for p in half.iterdir() if not p.name.startswith(".")) == ["config.json", "labels.txt"]
    killed = cli(*PRUNE, "--out", "prune-flags", cwd=workdir, crash_at="batch:1:2")
    assert killed.returncode == -signal.SIGKILL
    _refused(cli("optimize", "--out", "prune-flags", "--resume", "--prune", "0.8", "--epochs", "3", cwd=workdir),
             "--prune 0.8 (the run's: 0.5)")
    _refused(cli("optimize", "--out", "prune-flags", "--resume", "--qat", cwd=workdir), "--qat (the run's: --prune)")
    # Flags that agree with the saved ones are fine; killed before its first epoch ended, it still ends exact.
    resumed = cli("optimize", "parent", "--out", "prune-flags", "--resume", "--prune", "0.5", "--epochs", "3",
                  cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert scored(workdir / "prune-flags") == scored(workdir / "prune-clean")
    _refused(cli("optimize", "--out", str(half), "--resume", cwd=workdir),
             f"is a training run, not an optimize run; continue it with `cifar-edge train --out {half} --resume`")


def test_optimize_errors_name_the_flags_that_exist(workdir):
    for flag, value, words in (("--prune", "1.5", "a fraction between 0 and 1"), ("--cluster", "0", "2 or more"),
                               ("--prune", "nan", "a finite number")):
        _refused(cli("optimize", "parent", flag, value, "--out", "never", cwd=workdir), f"{flag} {value} is invalid",
                 words)
    assert not (workdir / "never").exists()


def test_a_class_list_that_disagrees_with_the_model_is_named_at_load(workdir, tmp_path):
    names = json.loads((workdir / "parent" / "config.json").read_text())["class_names"]
    run = hostile.with_class_names(workdir / "parent", tmp_path / "three", names[:3])
    from PIL import Image
    Image.new("RGB", (32, 32), (200, 10, 10)).save(tmp_path / "red.png")
    for args in (["predict", str(run), str(tmp_path / "red.png")], ["evaluate", str(run)],
                 ["export", str(run), "--format", "tflite"]):
        _refused(cli(*args, cwd=workdir), f"{run / 'config.json'} lists 3 class names but the model (model.h5) "
                 "outputs 10 classes", "restore this run's own config.json")


def test_off_size_images_in_an_image_folder_are_said_once_with_count_and_size(tmp_path):
    folder = hostile.image_folder(tmp_path / "imgs", classes=2, per_class=150, off=43)
    done = cli("data", "info", str(folder), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    said = [line for line in done.stderr.splitlines() if "warning:" in line]
    assert said == [f"warning: {folder}: 43 of 300 images are not 32x32 (43 at 48x40); each was centre-cropped to "
                    "a square and resized to 32x32 (bilinear)"], done.stderr[-2000:]


def test_a_killed_exports_work_folders_leave_the_system_temp_at_the_next_export(workdir, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(workdir / "parent", run, ignore=shutil.ignore_patterns("export", "bench"))
    temp = tmp_path / "systemtemp"
    temp.mkdir()
    killed = cli("export", str(run), "--format", "tflite", "--check-images", "50", cwd=workdir,
                 crash_at="replace:tflite-float32.tflite", env={"TMPDIR": str(temp)})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    ours = lambda: sorted(p for p in temp.iterdir() if p.name.startswith("cifar-edge"))  # noqa: E731
    assert [p.name.split("~")[0] for p in ours()] == ["cifar-edge-savedmodel"]   # what kill -9 leaves
    live = hostile.stale_system_temps(temp, os.getpid())        # a live export's: kept
    again = cli("export", str(run), "--format", "tflite", "--check-images", "50", cwd=workdir,
                env={"TMPDIR": str(temp)})
    assert again.returncode == 0, again.stderr[-2000:]
    assert ours() == sorted(live)


def test_only_dead_processes_work_folders_are_removed(tmp_path, monkeypatch):
    from cifar_edge.fileio import remove_stale_system_temps
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)       # gettempdir() reads TMPDIR again
    dead = hostile.stale_system_temps(tmp_path, hostile.dead_pid())
    live = hostile.stale_system_temps(tmp_path, os.getpid())
    (tmp_path / "cifar-edge-notes.txt").write_text("someone else's")
    assert sorted(remove_stale_system_temps()) == sorted(dead)
    assert all(p.exists() for p in live) and (tmp_path / "cifar-edge-notes.txt").exists()
