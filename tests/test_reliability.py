"""Nothing lost, nothing silently wrong: kill -9 at five moments then --resume gives the
uninterrupted run's metrics exactly; one writer per run folder; bad input is a one-line error
that leaves nothing behind.  Each case here reproduced a bug first (issue 17)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_edge.errors import CifarEdgeError
from cifar_edge.fileio import folder_lock, to_json

DRIVER = Path(__file__).with_name("crash_driver.py")
TIMING = {"train_seconds", "fit_seconds_this_session", "images_per_second"}   # wall clock: differ by nature
TRAIN = ["train", "--model", "cnn-tiny", "--data", "small.npz", "--epochs", "3", "--batch-size", "64",
         "--val-split", "0.1", "--seed", "1"]


def cli(*args, cwd, crash_at: str = "", timeout=300):
    env = {**os.environ, "CRASH_AT": crash_at}
    env.pop("TF_CONFIG", None)
    return subprocess.run([sys.executable, str(DRIVER), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def scored(run: Path) -> dict:
    return {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if k not in TIMING}


def leftovers(run: Path) -> list[str]:
    return [str(p.relative_to(run)) for p in run.rglob("*") if "~" in p.name or "_temp" in p.name]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, cifar10_real):
    """600 real CIFAR-10 training images (3 epochs of 9 steps), 200 test images, and the
    uninterrupted run every crashed run must end up identical to.  --data is relative on
    purpose: later commands run from other directories."""
    xtr, ytr, xte, yte, names = cifar10_real
    root = tmp_path_factory.mktemp("reliability")
    np.savez(root / "small.npz", x_train=xtr[:600], y_train=ytr[:600], x_test=xte[:200], y_test=yte[:200],
             class_names=np.array(names))
    done = cli(*TRAIN, "--out", "clean", cwd=root)
    assert done.returncode == 0, done.stderr
    return root


def _best_saves(run: Path) -> int:
    """How many times the uninterrupted run saved best.keras (val_accuracy improved)."""
    import csv
    best, saves = -1.0, 0
    with open(run / "history.csv", newline="") as f:
        for row in csv.DictReader(f):
            if float(row["val_accuracy"]) > best:
                best, saves = float(row["val_accuracy"]), saves + 1
    return saves


@pytest.mark.parametrize("moment", ["before the first checkpoint", "mid-epoch", "during the epoch checkpoint",
                                    "during best.keras", "during model.keras", "during final evaluation"])
def test_kill_9_then_resume_gives_the_uninterrupted_metrics_exactly(workdir, moment):
    crash_at = {"before the first checkpoint": "batch:1:4", "mid-epoch": "batch:2:5",
                "during the epoch checkpoint": "checkpoint:2",
                "during best.keras": f"replace:best.keras:{_best_saves(workdir / 'clean')}",   # the last save
                "during model.keras": "replace:model.keras",
                "during final evaluation": "replace:confusion.png:2"}[moment]   # 1st is the validation one
    out = f"crash-{crash_at.replace(':', '-')}"
    killed = cli(*TRAIN, "--out", out, cwd=workdir, crash_at=crash_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (workdir / out / "metrics.json").exists()
    resumed = cli(*TRAIN, "--out", out, "--resume", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert scored(workdir / out) == scored(workdir / "clean")
    assert leftovers(workdir / out) == []
    assert scored(workdir / out)["model"] == "cnn-tiny"   # what the result table is titled: the run's, not --model's default


# The default cnn's recipe at test size: sgd-l2 with lookahead, whose slow copy must come back
# from the crash backup (9 steps an epoch, blends at steps 5, 10, 15: the kill at step 14 falls
# after a blend the backup of step 9 does not hold).
AIRBENCH = ["train", "--model", "cnn", "--widths", "24,16,32,32", "--data", "small.npz", "--epochs", "2",
            "--batch-size", "64", "--val-split", "0.1", "--seed", "1"]


def test_kill_9_mid_epoch_then_resume_is_exact_with_lookahead(workdir):
    clean = cli(*AIRBENCH, "--out", "ab-clean", cwd=workdir)
    assert clean.returncode == 0, clean.stderr[-2000:]
    config = json.loads((workdir / "ab-clean" / "config.json").read_text())["train"]
    assert config["lookahead"] and config["optimizer"] == "sgd-l2" and config["whiten"]
    killed = cli(*AIRBENCH, "--out", "ab-crash", cwd=workdir, crash_at="batch:2:5")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = cli(*AIRBENCH, "--out", "ab-crash", "--resume", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert scored(workdir / "ab-crash") == scored(workdir / "ab-clean")


def test_a_second_writer_is_refused_naming_the_holder(workdir):
    run = workdir / "locked"
    with folder_lock(run, "cifar-edge train"):
        second = cli(*TRAIN, "--out", "locked", cwd=workdir)
    assert second.returncode == 2
    assert f"in use by `cifar-edge train` (PID {os.getpid()})" in second.stderr and "Traceback" not in second.stderr
    assert [p.name for p in run.iterdir()] == [".lock"]          # the holder's folder is untouched


def test_commands_find_relative_data_from_any_directory(workdir, monkeypatch):
    from cifar_edge.runs import load_run, run_data
    monkeypatch.chdir("/")
    data = run_data(load_run(workdir / "clean"))
    assert len(data.x_train) + len(data.x_val) == 600


def test_a_nonsense_config_is_a_clear_error(workdir, tmp_path):
    from cifar_edge.runs import load_run
    run = tmp_path / "run"
    shutil.copytree(workdir / "clean", run)
    config = json.loads((run / "config.json").read_text())
    for bad, problem in [({"hello": "world"}, "no 'train'"),
                         ({**config, "normalization": "banana"}, "'normalization' must hold"),
                         ({**config, "class_names": "cats"}, "'class_names' must list")]:
        (run / "config.json").write_text(json.dumps(bad))
        with pytest.raises(CifarEdgeError, match=f"is not a cifar-edge run config \\({problem}"):
            load_run(run)


def test_stale_temp_files_of_a_dead_export_are_removed_on_re_export(workdir, tmp_path):
    from cifar_edge.export import ExportConfig, export_run, resolve_variants
    run = tmp_path / "run"
    shutil.copytree(workdir / "clean", run)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = run / "export" / f".tflite-float32.~{int(dead.stdout)}~x1y2.tflite"
    live = run / "export" / f".other.~{os.getpid()}~x1y2.tflite"           # a live writer's: kept
    stale.parent.mkdir()
    stale.write_bytes(b"half")
    live.write_bytes(b"busy")
    export_run(run, resolve_variants(fmt="tflite"), cfg=ExportConfig(check_images=50), command="test")
    assert not stale.exists() and live.exists()


def test_disk_full_during_the_checkpoint_is_one_error_and_resumable(workdir, tmp_path, monkeypatch):
    from cifar_edge._tf import tf
    from cifar_edge.train import TrainConfig, train
    real_save = tf.train.CheckpointManager.save

    def full(self, *args, **kwargs):
        Path(self.directory, "ckpt-1_temp").mkdir(parents=True, exist_ok=True)     # what TF leaves behind
        raise tf.errors.ResourceExhaustedError(None, None, "ckpt-1_temp/part-0; No space left on device")
    monkeypatch.setattr(tf.train.CheckpointManager, "save", full)
    cfg = TrainConfig(model="cnn-tiny", data=str(workdir / "small.npz"), epochs=1, batch_size=64, val_split=0.1)
    with pytest.raises(CifarEdgeError, match=r"disk holding .* is full .*No space left.*--resume"):
        train(cfg, tmp_path / "run")
    assert leftovers(tmp_path / "run") == []
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    assert train(cfg, tmp_path / "run", resume=True)["epochs_run"] == 1


def test_non_finite_settings_and_a_diverging_loss_are_errors_that_leave_nothing(workdir, tmp_path):
    from cifar_edge.train import TrainConfig, train
    bad = cli(*TRAIN, "--lr", "inf", "--out", str(tmp_path / "inf"), cwd=workdir)
    assert bad.returncode == 2 and "--lr inf is invalid; use a finite number" in bad.stderr
    assert not (tmp_path / "inf").exists()
    cfg = TrainConfig(model="cnn-tiny", data=str(workdir / "small.npz"), epochs=2, batch_size=64, lr=1e30,
                      val_split=0.1)
    with pytest.raises(CifarEdgeError, match=r"loss became (nan|inf) at epoch 1 step \d+.*lower --lr"):
        train(cfg, tmp_path / "nan")
    assert not (tmp_path / "nan").exists()
    assert to_json({"p": float("nan"), "q": [np.float32("inf"), 1.5]}) == '{"p": null, "q": [null, 1.5]}'


def _npz(path, x, y, **extra):
    np.savez(path, x_train=x, y_train=y, **extra)
    return str(path)


def test_data_that_cannot_make_or_score_a_classifier_is_refused_before_training(tmp_path):
    from cifar_edge.train import TrainConfig, train
    rng = np.random.default_rng(0)
    one_image = _npz(tmp_path / "one.npz", rng.integers(0, 255, (1, 32, 32, 3), np.uint8), np.array([0]),
                     class_names=np.array(["a", "b"]))
    with pytest.raises(CifarEdgeError, match="one class"):
        train(TrainConfig(model="cnn-tiny", data=one_image, val_split=0.1), tmp_path / "r1")
    two = _npz(tmp_path / "two.npz", rng.integers(0, 255, (2, 32, 32, 3), np.uint8), np.array([0, 1]))
    with pytest.raises(CifarEdgeError, match="no test split and --val-split 0.1 of 2 images holds none back"):
        train(TrainConfig(model="cnn-tiny", data=two, val_split=0.1), tmp_path / "r2")
    gray_one_class = _npz(tmp_path / "gray.npz", rng.integers(0, 255, (10, 28, 28), np.uint8), np.zeros(10, int))
    with pytest.raises(CifarEdgeError, match="a classifier needs at least two classes"):
        train(TrainConfig(model="cnn-tiny", data=gray_one_class, val_split=0.2), tmp_path / "r3")
    assert not any((tmp_path / r).exists() for r in ("r1", "r2", "r3"))


def test_grayscale_small_images_are_described_not_silently_converted(tmp_path, capfd):
    from cifar_edge.train import TrainConfig, train
    rng = np.random.default_rng(0)
    gray = _npz(tmp_path / "gray.npz", rng.integers(0, 255, (40, 28, 28), np.uint8), np.arange(40) % 2)
    train(TrainConfig(model="cnn-tiny", data=gray, val_split=0.25, epochs=1, batch_size=16), tmp_path / "run")
    err = capfd.readouterr().err
    assert "the images are grayscale" in err and "the images are 28x28; cnn-tiny resizes them to 32x32" in err


def test_image_folder_with_a_link_loop_or_an_empty_class_is_refused(tmp_path):
    from cifar_edge.data.sources import load_image_folder
    for cls in ("cat", "dog"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "data" / cls / "a.png")
    (tmp_path / "data" / "parentlink").symlink_to("..")
    with pytest.raises(CifarEdgeError, match=r"parentlink links back to .*\(a loop\)"):
        load_image_folder(tmp_path / "data")
    (tmp_path / "data" / "parentlink").unlink()
    (tmp_path / "data" / "bird").mkdir()
    with pytest.raises(CifarEdgeError, match=r"bird holds no images"):
        load_image_folder(tmp_path / "data")


def _png(path, width, height, depth=8, rows=b""):
    """A colour PNG written from the format's chunks (Pillow cannot write 16-bit RGB); with no
    ``rows`` only the header is real, enough to test the size checks."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


def test_every_pillow_mode_reads_as_the_right_8_bit_rgb(tmp_path):
    from cifar_edge.images import open_rgb, read_image
    ramp = (np.linspace(0, 1, 64 * 64).reshape(64, 64) * 40000).astype(np.uint16)   # mean 20000 of 65535
    Image.fromarray(ramp).save(tmp_path / "gray16.png")
    assert Image.open(tmp_path / "gray16.png").mode.startswith("I")
    assert read_image(tmp_path / "gray16.png", 64).mean() == pytest.approx(ramp.mean() / 257, abs=0.5)   # not 255
    rgb16 = np.zeros((4, 4, 3), ">u2")
    rgb16[..., 0], rgb16[..., 1] = 65535, 30000
    rows = b"".join(b"\x00" + row.tobytes() for row in rgb16)
    assert tuple(read_image(_png(tmp_path / "rgb16.png", 4, 4, 16, rows), 4)[0, 0]) == (255, 117, 0)
    cases = {"I;16B": (Image.frombytes("I;16B", (4, 4), b"\x80\x80" * 16), (128, 128, 128)),
             "I": (Image.fromarray(np.full((4, 4), 0x8080, np.uint16)).convert("I"), (128, 128, 128)),
             "F": (Image.fromarray(np.full((4, 4), 0.5, np.float32)), (128, 128, 128)),
             "CMYK": (Image.new("CMYK", (4, 4), (0, 255, 255, 0)), (255, 0, 0)),
             "LA": (Image.new("LA", (4, 4), (0, 0)), (255, 255, 255)),                  # transparent: white
             "P+transparency": (Image.new("P", (4, 4), 0), (255, 255, 255)),
             "1": (Image.new("1", (4, 4), 1), (255, 255, 255))}
    cases["P+transparency"][0].info["transparency"] = 0
    for mode, (img, rgb) in cases.items():
        assert open_rgb(img).getpixel((0, 0)) == rgb, mode
    with pytest.raises(CifarEdgeError, match="image mode LAB"):
        open_rgb(Image.new("LAB", (4, 4)))


def test_directories_and_huge_images_get_true_messages(tmp_path, recwarn):
    from cifar_edge.images import read_image
    with pytest.raises(CifarEdgeError, match="is a folder, not an image"):
        read_image(tmp_path, 32)
    with pytest.raises(CifarEdgeError, match="3600000000 pixels, too large; downscale it"):
        read_image(_png(tmp_path / "huge.png", 60000, 60000), 32)
    with pytest.raises(CifarEdgeError, match="10000x10000 pixels, too large"):
        read_image(_png(tmp_path / "big.png", 10000, 10000), 32)
    assert not [w for w in recwarn if "DecompressionBomb" in type(w.message).__name__]
