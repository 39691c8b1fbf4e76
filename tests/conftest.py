"""Shared fixtures: small real CIFAR subsets from ../shared/data (skipped where absent) and
writers for the official pickle format."""
from __future__ import annotations

import hashlib
import pickle
import signal
import tarfile
from pathlib import Path

import numpy as np
import pytest

# A harness that starts the suite in the background without job control hands it SIGINT ignored,
# and an ignored signal stays ignored in every child: the tests that press Ctrl-C on a command
# would see it do nothing (measured: a CI rehearsal started so failed both).  A handled signal
# is reset to the default across exec, so each child's Python gets its KeyboardInterrupt back.
signal.signal(signal.SIGINT, signal.default_int_handler)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CIFAR100_TEST = SHARED / "cifar100" / "cifar100_test.npz"
CIFAR10_DIR = SHARED / "cifar10"


# The longest modules, longest first (CI's --durations): scheduled first, so neither worker is
# left running one of them alone at the end (pyproject's --no-loadscope-reorder keeps this order;
# xdist would otherwise hand out the groups with the most tests first, the one-test families last).
LONGEST_MODULES = ("test_families_fresh", "test_bench", "test_transfer", "test_run_trust", "test_reliability",
                   "test_android_contract", "test_ray")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the marks to group the tests
def pytest_collection_modifyitems(config, items):
    """Test groups for pytest-xdist's ``--dist loadgroup`` (pyproject's addopts): a module's tests
    stay on one worker, so its module fixtures (trained runs) are built once, while the
    fresh-process family matrix, the longest module, spreads one family per group."""
    for item in items:
        family = getattr(item, "callspec", None) and item.callspec.params.get("family")
        group = item.module.__name__ + (f"-{family}" if family else "")
        item.add_marker(pytest.mark.xdist_group(group))
    rank = {name: i for i, name in enumerate(LONGEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.module.__name__, len(rank)))


def _need(path: Path):
    if not path.exists():
        pytest.skip(f"real data not available at {path} (only on the project's machines)")


@pytest.fixture(scope="session")
def cifar100_real():
    """The real CIFAR-100 test set: (x, y_fine, y_coarse, fine_names, coarse_names)."""
    _need(CIFAR100_TEST)
    with np.load(CIFAR100_TEST) as f:
        return (f["x_test"], f["y_test_fine"].astype(np.int64), f["y_test_coarse"].astype(np.int64),
                [str(n) for n in f["fine_names"]], [str(n) for n in f["coarse_names"]])


@pytest.fixture(scope="session")
def cifar10_real():
    """Real CIFAR-10: (x_train 50k, y_train, x_test 10k, y_test, names)."""
    _need(CIFAR10_DIR / "cifar10_test.npz")
    parts = [np.load(CIFAR10_DIR / f"cifar10_train_jpeg_part{i}.npz") for i in (1, 2)]
    test = np.load(CIFAR10_DIR / "cifar10_test.npz")
    return (np.concatenate([p["x_train"] for p in parts]), np.concatenate([p["y_train"] for p in parts]).astype(np.int64),
            test["x_test"], test["y_test"].astype(np.int64), [str(n) for n in test["class_names"]])


def real_npz(cifar10_real, path: Path, train: int, test: int) -> str:
    """The first ``train``/``test`` real CIFAR-10 images as an .npz source at ``path``."""
    xtr, ytr, xte, yte, names = cifar10_real
    np.savez(path, x_train=xtr[:train], y_train=ytr[:train], x_test=xte[:test], y_test=yte[:test],
             class_names=np.array(names))
    return str(path)


def md5(path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _dump(path: Path, obj):
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_official_cifar100(root: Path, x_train, y_fine, y_coarse, x_test, yt_fine, yt_coarse, fine_names, coarse_names):
    """Write a cifar-100-python folder in the official pickle layout (bytes keys, flat
    3072-byte rows in CHW plane order)."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    flat = lambda x: x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # noqa: E731
    _dump(folder / "train", {b"data": flat(x_train), b"fine_labels": list(map(int, y_fine)),
                             b"coarse_labels": list(map(int, y_coarse)), b"filenames": [b"x.png"] * len(x_train)})
    _dump(folder / "test", {b"data": flat(x_test), b"fine_labels": list(map(int, yt_fine)),
                            b"coarse_labels": list(map(int, yt_coarse))})
    _dump(folder / "meta", {b"fine_label_names": [n.encode() for n in fine_names],
                            b"coarse_label_names": [n.encode() for n in coarse_names]})
    return folder


def write_official_cifar10(root: Path, x_train, y_train, x_test, y_test, names):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    flat = lambda x: x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # noqa: E731
    for i, (xs, ys) in enumerate(zip(np.array_split(x_train, 5), np.array_split(y_train, 5)), start=1):
        _dump(folder / f"data_batch_{i}", {b"data": flat(xs), b"labels": list(map(int, ys))})
    _dump(folder / "test_batch", {b"data": flat(x_test), b"labels": list(map(int, y_test))})
    _dump(folder / "batches.meta", {b"label_names": [n.encode() for n in names]})
    return folder


def make_tar_gz(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def checksums_for(folder: Path, archive: Path | None = None) -> dict:
    """An MD5 table in the same form as the official one, for files the tests wrote."""
    table = {f"{folder.name}/{f.name}": md5(f) for f in folder.iterdir()}
    if archive is not None:
        table[archive.name] = md5(archive)
    return table


@pytest.fixture
def small_cifar100(cifar100_real):
    """200 real CIFAR-100 images (2 per class) split 150/50, as arrays."""
    x, yf, yc, fn, cn = cifar100_real
    idx = np.concatenate([np.flatnonzero(yf == c)[:2] for c in range(100)])
    return x[idx], yf[idx], yc[idx], fn, cn


def train_tiny(root: Path, epochs: int = 2, limit: int = 600) -> Path:
    """A small real run of cnn-tiny on the learnable synthetic stand-in (always available)."""
    from cifar_edge.train import TrainConfig, train
    train(TrainConfig(model="cnn-tiny", data="synthetic", epochs=epochs, limit=limit, batch_size=64, lr=0.1,
                      warmup_epochs=0.3, synthetic_classes=10), root)
    return root


FAST_EXPORT = dict(calibration_images=200, check_images=300)


@pytest.fixture(scope="session")
def exported_run(tmp_path_factory):
    """A small real run (cnn-tiny, learnable synthetic data) with every variant of the format
    table exported into RUN/export; shared by the export, contract, example and serve tests."""
    from cifar_edge.export import ExportConfig, export_run, resolve_variants
    run = train_tiny(tmp_path_factory.mktemp("exported") / "run", epochs=3, limit=1500)
    entries = export_run(run, resolve_variants(all_variants=True), cfg=ExportConfig(**FAST_EXPORT), command="test")
    return run, {e["variant"]: e for e in entries}


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def photo_files(cifar10_real, tmp_path_factory):
    """Real CIFAR-10 test images saved the ways users' photos come: PNG and JPEG, grayscale,
    RGBA with transparency, palette, EXIF-rotated, non-square and large; plus a non-image."""
    from PIL import Image
    x = cifar10_real[2]
    root = tmp_path_factory.mktemp("photos")
    big = Image.fromarray(x[0]).resize((1200, 900), Image.Resampling.BICUBIC)
    files = {}

    def save(name, img, **kw):
        files[name] = root / name
        img.save(files[name], **kw)

    save("rgb.png", Image.fromarray(x[1]))
    save("photo.jpg", big, quality=90)
    save("gray.png", Image.fromarray(x[2]).convert("L"))
    rgba = Image.fromarray(x[3]).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.where(np.arange(32)[None, :] < 16, 255, 0).astype(np.uint8).repeat(32, 0)))
    save("alpha.png", rgba)
    save("palette.gif", Image.fromarray(x[4]).convert("P", palette=Image.Palette.ADAPTIVE))
    exif = Image.Exif()
    exif[0x0112] = 6                                   # "rotate 90 CW to view"
    save("rotated.jpg", Image.fromarray(x[5]).resize((64, 48)), quality=95, exif=exif.tobytes())
    files["not_an_image.png"] = root / "not_an_image.png"
    files["not_an_image.png"].write_text("this is text, not pixels\n")
    return files
