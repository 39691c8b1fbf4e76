"""Loaders, bad input, splits: on official-format files the tests write and real CIFAR."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import checksums_for, make_tar_gz, write_official_cifar10, write_official_cifar100
from PIL import Image

from cifar_edge.data import load_dataset, load_path, make_synthetic, stratified_kfold, stratified_split
from cifar_edge.data.sources import load_official_archive, load_official_folder
from cifar_edge.errors import CifarEdgeError


@pytest.fixture
def official100(tmp_path, small_cifar100):
    x, yf, yc, fn, cn = small_cifar100
    folder = write_official_cifar100(tmp_path, x[:150], yf[:150], yc[:150], x[150:], yf[150:], yc[150:], fn, cn)
    return folder, small_cifar100


def test_official_cifar100_folder_roundtrips_pixels_labels_and_names(official100):
    folder, (x, yf, yc, fn, cn) = official100
    ds = load_official_folder(folder, "cifar100", checksums=checksums_for(folder))
    assert ds.x_train.shape == (150, 32, 32, 3) and ds.x_train.dtype == np.uint8
    np.testing.assert_array_equal(ds.x_train, x[:150])          # CHW planes -> HWC exactly
    np.testing.assert_array_equal(ds.y_test, yf[150:])
    assert ds.class_names == fn and ds.coarse_names == cn
    np.testing.assert_array_equal(ds.fine_to_coarse[yf], yc)   # fine -> coarse map recovered
    coarse = ds.with_coarse_labels()
    assert coarse.num_classes == 20
    np.testing.assert_array_equal(coarse.y_train, yc[:150])


def test_official_archive_md5_checked_before_unpickling(tmp_path, official100):
    folder, (x, *_rest) = official100
    archive = make_tar_gz(folder, tmp_path / "cifar-100-python.tar.gz")
    ds = load_official_archive(archive, checksums=checksums_for(folder, archive))
    np.testing.assert_array_equal(ds.x_train, x[:150])
    with pytest.raises(CifarEdgeError, match="MD5 mismatch.*download it again"):
        load_official_archive(archive)                           # official sums: ours differ
    with pytest.raises(CifarEdgeError, match="MD5 mismatch"):
        load_official_folder(folder, "cifar100")


def test_corrupt_and_incomplete_official_files(tmp_path, official100):
    folder, _ = official100
    (folder / "test").write_bytes(b"\x80\x02garbage")
    with pytest.raises(CifarEdgeError, match="not a readable CIFAR pickle"):
        load_official_folder(folder, "cifar100", checksums=None)
    (folder / "meta").unlink()
    with pytest.raises(CifarEdgeError, match="missing meta"):
        load_official_folder(folder, "cifar100", checksums=None)
    bad = tmp_path / "cifar-100-python.tar.gz"
    bad.write_bytes(b"not a tarball")
    with pytest.raises(CifarEdgeError, match="not a readable .tar.gz"):
        load_path(bad)


def test_hostile_pickle_is_refused(tmp_path, official100):
    folder, _ = official100
    import pickle
    import os
    (folder / "test").write_bytes(pickle.dumps(os.system))       # would run code if trusted
    with pytest.raises(CifarEdgeError, match="refusing to load"):
        load_official_folder(folder, "cifar100", checksums=None)


def test_official_cifar10_folder(tmp_path, small_cifar100):
    x, yf, *_ = small_cifar100
    y = yf % 10
    write_official_cifar10(tmp_path, x[:150], y[:150], x[150:], y[150:], [f"c{i}" for i in range(10)])
    ds = load_path(tmp_path, verify=False)                       # finds the folder inside
    assert ds.name == "cifar10" and ds.num_classes == 10 and len(ds.x_train) == 150
    np.testing.assert_array_equal(ds.x_test, x[150:])


def test_npz_sources_and_env_var(tmp_path, monkeypatch, small_cifar100):
    x, yf, yc, fn, cn = small_cifar100
    np.savez(tmp_path / "d.npz", x_train=x[:150], y_train_fine=yf[:150], y_train_coarse=yc[:150],
             x_test=x[150:], y_test_fine=yf[150:], fine_names=np.array(fn), coarse_names=np.array(cn))
    ds = load_dataset(str(tmp_path / "d.npz"))
    assert ds.class_names == fn and len(ds.x_test) == 50
    assert ds.with_coarse_labels().num_classes == 20
    np.savez(tmp_path / "xy.npz", x=x, y=yf)                     # x/y only, names inferred
    assert load_dataset(str(tmp_path / "xy.npz")).x_test is None
    # A dataset in parts: same keys concatenated in file order
    parts = tmp_path / "parts"
    parts.mkdir()
    np.savez(parts / "a.npz", x_train=x[:100], y_train=yf[:100])
    np.savez(parts / "b.npz", x_train=x[100:], y_train=yf[100:])
    np.testing.assert_array_equal(load_dataset(str(parts)).x_train, x)
    env = tmp_path / "env"
    (env / "cifar100").mkdir(parents=True)
    np.savez(env / "cifar100" / "t.npz", x_train=x, y_train=yf)
    monkeypatch.setenv("CIFAR_EDGE_DATA", str(env))
    ds = load_dataset("cifar100")
    assert ds.name == "cifar100" and len(ds.x_train) == 200 and ds.coarse_names is not None


@pytest.mark.parametrize("arrays, message", [
    ({"x_train": np.zeros((4, 32, 32, 5), np.uint8), "y_train": np.zeros(4)}, "3 colour channels"),
    ({"x_train": np.zeros((4, 32), np.uint8), "y_train": np.zeros(4)}, r"expected images shaped \(N, H, W, 3\)"),
    ({"x_train": np.zeros((4, 8, 8, 3), np.uint8), "y_train": np.zeros(3)}, "4 images but 3 labels"),
    ({"x_train": np.zeros((4, 8, 8, 3), np.uint8), "y_train": np.array([0, 1, 2, -1])}, "negative label"),
    ({"x_train": np.zeros((2, 8, 8, 3), np.uint8), "y_train": np.array([0, 5]), "class_names": np.array(["a", "b"])},
     "label 5 is out of range for 2 classes"),
    ({"x_train": np.full((2, 8, 8, 3), 300.0), "y_train": np.array([0, 1])}, "pixel values span"),
    ({"images": np.zeros((2, 8, 8, 3))}, "need 'x_train' and 'y_train'"),
])
def test_bad_arrays_name_the_problem(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CifarEdgeError, match=message):
        load_dataset(str(tmp_path / "bad.npz"))


def test_a_test_split_alone_loads_and_train_refuses_it(tmp_path):
    """A test set alone is data `import` and `evaluate` take; train has nothing to fit on it."""
    from cifar_edge.train import TrainConfig, train
    x = np.random.default_rng(0).integers(0, 255, (6, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "test_only.npz", x_test=x, y_test=np.array([0, 1, 2, 0, 1, 2]))
    ds = load_dataset(str(tmp_path / "test_only.npz"))
    assert ds.x_train.shape == (0, 8, 8, 3) and len(ds.x_test) == 6
    assert ds.class_names == ["class_0", "class_1", "class_2"]
    with pytest.raises(CifarEdgeError, match="no training images"):
        train(TrainConfig(model="cnn-tiny", data=str(tmp_path / "test_only.npz"), epochs=1), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_layouts_are_normalised_to_nhwc_uint8(tmp_path):
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "nchw.npz", x=nhwc.transpose(0, 3, 1, 2), y=np.arange(6) % 2)
    np.testing.assert_array_equal(load_dataset(str(tmp_path / "nchw.npz")).x_train, nhwc)
    np.savez(tmp_path / "unit.npz", x=nhwc / 255.0, y=np.arange(6) % 2)
    np.testing.assert_array_equal(load_dataset(str(tmp_path / "unit.npz")).x_train, nhwc)
    np.savez(tmp_path / "grey.npz", x=nhwc[..., 0], y=np.arange(6) % 2)
    assert load_dataset(str(tmp_path / "grey.npz")).x_train.shape == (6, 8, 8, 3)


def test_image_folder_any_size_and_mode(tmp_path):
    for cls, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (64, 48), colour).save(tmp_path / cls / "a.png")
        Image.new("L", (20, 20), 128).save(tmp_path / cls / "b.jpg")
        Image.new("RGBA", (32, 32), colour + (128,)).save(tmp_path / cls / "c.png")
    ds = load_dataset(str(tmp_path))
    assert ds.class_names == ["blue", "red"] and ds.x_train.shape == (6, 32, 32, 3)
    assert ds.x_train[ds.y_train == 1][0, 0, 0, 0] == 255       # red image, red channel
    (tmp_path / "red" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(CifarEdgeError, match=r"cannot read image .*broken.png"):
        load_dataset(str(tmp_path))


def test_unknown_or_missing_sources():
    with pytest.raises(CifarEdgeError, match="did you mean 'cifar100'"):
        load_dataset("cifar-100")
    with pytest.raises(CifarEdgeError, match="does not exist"):
        load_dataset("./no/such/folder")
    with pytest.raises(CifarEdgeError, match="--labels must be"):
        load_dataset("synthetic", labels="medium")


def test_synthetic_is_labelled_and_learnable_by_a_linear_model():
    ds = make_synthetic(num_classes=10, n_train=2000, seed=1)
    assert ds.synthetic and "NOT real" in ds.source and ds.x_train.shape == (2000, 32, 32, 3)
    # A ridge-regression linear classifier on raw pixels already beats chance (10%) clearly.
    feats = lambda x: np.c_[x.reshape(len(x), -1) / 255.0, np.ones(len(x))]  # noqa: E731
    f = feats(ds.x_train)
    w = np.linalg.solve(f.T @ f + 100.0 * np.eye(f.shape[1]), f.T @ np.eye(10)[ds.y_train])
    acc = (feats(ds.x_test) @ w).argmax(1).__eq__(ds.y_test).mean()
    assert acc > 0.3, acc
    assert make_synthetic(100, 500).with_coarse_labels().num_classes == 20


def test_stratified_split_and_kfold(cifar100_real):
    _, y, *_ = cifar100_real
    tr, va = stratified_split(y, 0.1, seed=3)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(y)
    np.testing.assert_array_equal(np.bincount(y[va], minlength=100), np.full(100, 10))
    tr2, va2 = stratified_split(y, 0.1, seed=3)
    np.testing.assert_array_equal(va, va2)                       # seeded
    folds = stratified_kfold(y, 5, seed=0)
    all_val = np.concatenate([v for _, v in folds])
    np.testing.assert_array_equal(np.sort(all_val), np.arange(len(y)))  # each sample validated once
    for tr, va in folds:
        assert np.bincount(y[va], minlength=100).min() == 20
    with pytest.raises(CifarEdgeError, match="at least 2 folds"):
        stratified_kfold(y, 1)
    with pytest.raises(CifarEdgeError):
        stratified_split(y, 1.5)
