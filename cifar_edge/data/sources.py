"""Where data comes from: named CIFAR sources (keras download + cache, or a local official
copy), official pickle folders and archives (MD5-checked before unpickling), .npz files,
image folders, and the synthetic stand-in.  Everything lands in a :class:`Dataset`."""
from __future__ import annotations

import difflib
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np

from ..errors import CifarEdgeError
from . import names
from .dataset import Dataset, as_images, as_labels

NAMED_SOURCES = ("cifar100", "cifar10", "synthetic")
ENV_VAR = "CIFAR_EDGE_DATA"

# Official MD5 sums (as published with the datasets and used by torchvision).
OFFICIAL_MD5 = {
    "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
    "cifar-100-python/train": "16019d7e3df5f24257cddd939b257f8d",
    "cifar-100-python/test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "cifar-100-python/meta": "7973b15100ade9c7d40fb424638fde48",
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
    "cifar-10-batches-py/data_batch_1": "c99cafc152244af753f735de768cd75f",
    "cifar-10-batches-py/data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "cifar-10-batches-py/data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "cifar-10-batches-py/data_batch_4": "634d18415352ddfa80567beed471001a",
    "cifar-10-batches-py/data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "cifar-10-batches-py/test_batch": "40351d587109b95175f43aff81a1287e",
    "cifar-10-batches-py/batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
_OFFICIAL = {
    "cifar100": {"folder": "cifar-100-python", "archive": "cifar-100-python.tar.gz",
                 "train": ["train"], "test": ["test"], "meta": "meta"},
    "cifar10": {"folder": "cifar-10-batches-py", "archive": "cifar-10-python.tar.gz",
                "train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"],
                "meta": "batches.meta"},
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def md5sum(path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _SafeUnpickler(pickle.Unpickler):
    """CIFAR pickles hold only dicts, lists, bytes and numpy arrays; refuse anything else,
    so a hostile file cannot run code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("builtins", "bytes"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(blob: bytes, what: str) -> dict:
    try:
        d = _SafeUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any failure means a corrupt file
        raise CifarEdgeError(f"{what} is not a readable CIFAR pickle ({e}); re-download or re-extract it") from None
    if not isinstance(d, dict):
        raise CifarEdgeError(f"{what} is not a CIFAR pickle (no dict inside); re-download it")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def _check_md5(path: Path, key: str, checksums: dict | None):
    if checksums is None or key not in checksums:
        return
    got = md5sum(path)
    if got != checksums[key]:
        raise CifarEdgeError(f"MD5 mismatch for {path}: got {got}, expected {checksums[key]}; "
                             "the file is corrupt or not the official one: download it again "
                             "(or pass --no-verify for a deliberate subset)")


def _official_from_members(kind: str, read, origin: str) -> Dataset:
    """Build a Dataset from official pickles; ``read(member)`` returns a member's bytes."""
    spec = _OFFICIAL[kind]
    parts = {split: [_unpickle(read(m), f"{origin}/{m}") for m in spec[split]] for split in ("train", "test")}
    meta = _unpickle(read(spec["meta"]), f"{origin}/{spec['meta']}")

    def stack(dicts, key, what):
        try:
            return np.concatenate([np.asarray(d[key]) for d in dicts])
        except KeyError:
            raise CifarEdgeError(f"{what} has no '{key}' entry; is it the right dataset ({kind})?") from None

    def names_of(key):
        if key not in meta:
            raise CifarEdgeError(f"{origin}/{spec['meta']} has no '{key}'; is it the official {kind} meta file?")
        return [n.decode() if isinstance(n, bytes) else str(n) for n in meta[key]]

    xs = {s: as_images(stack(parts[s], "data", f"{origin} {s}"), f"{origin} {s}") for s in parts}
    if kind == "cifar100":
        class_names = names_of("fine_label_names")
        coarse_names = names_of("coarse_label_names")
        ys = {s: as_labels(stack(parts[s], "fine_labels", origin), len(xs[s]), len(class_names), f"{origin} {s}")
              for s in parts}
        yc = {s: stack(parts[s], "coarse_labels", origin).astype(np.int64) for s in parts}
        f2c = np.zeros(len(class_names), np.int64)
        f2c[ys["train"]] = yc["train"]
        f2c[ys["test"]] = yc["test"]
        return Dataset("cifar100", origin, xs["train"], ys["train"], class_names, xs["test"], ys["test"],
                       coarse_names=coarse_names, fine_to_coarse=f2c)
    class_names = names_of("label_names")
    ys = {s: as_labels(stack(parts[s], "labels", origin), len(xs[s]), len(class_names), f"{origin} {s}")
          for s in parts}
    return Dataset("cifar10", origin, xs["train"], ys["train"], class_names, xs["test"], ys["test"])


def load_official_folder(path, kind: str, checksums: dict | None = OFFICIAL_MD5) -> Dataset:
    """An extracted ``cifar-100-python`` / ``cifar-10-batches-py`` folder."""
    path = Path(path)
    spec = _OFFICIAL[kind]
    members = spec["train"] + spec["test"] + [spec["meta"]]
    missing = [m for m in members if not (path / m).is_file()]
    if missing:
        raise CifarEdgeError(f"{path} is missing {', '.join(missing)}; it should be the official "
                             f"'{spec['folder']}' folder: extract {spec['archive']} again")
    for m in members:
        _check_md5(path / m, f"{spec['folder']}/{m}", checksums)
    return _official_from_members(kind, lambda m: (path / m).read_bytes(), str(path))


def load_official_archive(path, kind: str | None = None, checksums: dict | None = OFFICIAL_MD5) -> Dataset:
    """The official ``.tar.gz``; its MD5 is checked before anything is unpickled."""
    path = Path(path)
    try:
        tar = tarfile.open(path, "r:gz")
        names_in = tar.getnames()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise CifarEdgeError(f"{path} is not a readable .tar.gz ({e}); download it again") from None
    if kind is None:
        kind = next((k for k, s in _OFFICIAL.items() if any(n.startswith(s["folder"]) for n in names_in)), None)
        if kind is None:
            raise CifarEdgeError(f"{path} holds neither cifar-100-python/ nor cifar-10-batches-py/; "
                                 "is it the official CIFAR archive?")
    spec = _OFFICIAL[kind]
    _check_md5(path, spec["archive"], checksums)

    def read(member):
        try:
            return tar.extractfile(f"{spec['folder']}/{member}").read()
        except (KeyError, AttributeError, tarfile.TarError, OSError, EOFError) as e:
            raise CifarEdgeError(f"{path} has no readable {spec['folder']}/{member} ({e}); download it again") from None

    with tar:
        return _official_from_members(kind, read, str(path))


_NPZ_IMAGES = ("x_train", "x_test", "x")
_NPZ_LABELS = {"x_train": ("y_train", "y_train_fine"), "x_test": ("y_test", "y_test_fine"), "x": ("y", "y_fine")}


def load_npz(paths, name: str | None = None) -> Dataset:
    """One .npz or several (e.g. a dataset in parts): arrays with the same key are
    concatenated in file order.  Keys: ``x_train/y_train[/x_test/y_test]`` or ``x/y``, or a test
    split alone (``x_test/y_test``: no training images, for `import` and `evaluate`); optional
    ``class_names``/``fine_names``, ``coarse_names``, ``fine_to_coarse``, ``y_*_coarse``."""
    paths = [Path(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
    arrays: dict = {}
    for p in paths:
        try:
            with np.load(p, allow_pickle=False) as f:
                for k in f.files:
                    arrays.setdefault(k, []).append(f[k])
        except Exception as e:  # noqa: BLE001 - zip, pickle or value errors all mean 'unreadable'
            raise CifarEdgeError(f"cannot read {p} as .npz ({type(e).__name__}: {e}); "
                                 "write it with numpy.savez") from None
    origin = ", ".join(str(p) for p in paths)
    merged = {}
    for k, v in arrays.items():
        try:
            merged[k] = np.concatenate(v) if k in _NPZ_IMAGES or k.startswith("y") else v[0]
        except ValueError as e:
            raise CifarEdgeError(f"{origin}: array '{k}' cannot be joined across files ({e}); "
                                 "give every part the same image size and 1-D labels") from None
    if "x_train" not in merged and "x" not in merged and "x_test" not in merged:
        raise CifarEdgeError(f"{origin}: found arrays {sorted(merged)}; need 'x_train' and 'y_train' "
                             "(optionally 'x_test'/'y_test'), 'x' and 'y', or a test split alone ('x_test'/'y_test')")
    class_names = merged.get("class_names", merged.get("fine_names"))
    class_names = None if class_names is None else [str(c) for c in class_names]

    def pair(xkey):
        ykey = next((k for k in _NPZ_LABELS[xkey] if k in merged), None)
        if ykey is None:
            raise CifarEdgeError(f"{origin}: '{xkey}' has no labels; add '{_NPZ_LABELS[xkey][0]}'")
        x = as_images(merged[xkey], f"{origin} {xkey}")
        return x, as_labels(merged[ykey], len(x), len(class_names) if class_names else None, f"{origin} {ykey}")

    xte = yte = None
    if "x_test" in merged:
        xte, yte = pair("x_test")
    if "x_train" in merged or "x" in merged:
        xtr, ytr = pair("x_train" if "x_train" in merged else "x")
    else:                      # a test set alone: nothing to train on (train and optimize refuse it)
        xtr, ytr = np.zeros((0, *xte.shape[1:]), np.uint8), np.zeros(0, np.int64)
    if len(xtr) == 0 and xte is None:
        raise CifarEdgeError(f"{origin}: the training arrays are empty; add images")
    if class_names is None:
        n = int(max(ytr.max(initial=-1), -1 if yte is None else yte.max())) + 1
        class_names = [f"class_{i}" for i in range(n)]
    coarse_names = merged.get("coarse_names")
    f2c = merged.get("fine_to_coarse")
    if f2c is None and "y_train_coarse" in merged and coarse_names is not None:
        coarse = as_labels(merged["y_train_coarse"], len(xtr), len(coarse_names), f"{origin} y_train_coarse")
        f2c = np.zeros(len(class_names), np.int64)
        f2c[ytr] = coarse
    if f2c is not None and (len(f2c) != len(class_names) or coarse_names is None
                            or np.max(f2c) >= len(coarse_names) or np.min(f2c) < 0):
        raise CifarEdgeError(f"{origin}: fine_to_coarse must map each of {len(class_names)} classes to "
                             "a superclass index below len(coarse_names); fix or drop it")
    return Dataset(name or paths[0].stem, origin, xtr, ytr, class_names, xte, yte,
                   coarse_names=None if coarse_names is None else [str(c) for c in coarse_names],
                   fine_to_coarse=None if f2c is None else np.asarray(f2c, np.int64))


def load_image_folder(path, image_size: int = 32) -> Dataset:
    """``root/<class>/*.png`` (or ``root/train/<class>`` [+ ``root/test/<class>``]), any image
    size or mode, read exactly as `predict` reads images (see images.py)."""
    from PIL import Image

    from .. import console
    from ..images import read_image

    root = Path(path)
    splits = {"train": root / "train"} if (root / "train").is_dir() else {"train": root}
    if (root / "train").is_dir() and (root / "test").is_dir():
        splits["test"] = root / "test"
    class_names = sorted(d.name for d in splits["train"].iterdir() if d.is_dir())
    for folder in splits.values():
        _check_class_folders(folder)
    if not class_names:
        raise CifarEdgeError(f"{root} has no class subfolders; lay images out as {root}/<class>/<image>.png")
    out, off_size = {}, {}           # off_size: {(width, height): count} of images not image_size square
    for split, folder in splits.items():
        xs, ys = [], []
        for label, cls in enumerate(class_names):
            for f in sorted((folder / cls).glob("*")) if (folder / cls).is_dir() else []:
                if f.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                try:
                    xs.append(read_image(f, image_size))
                    with Image.open(f) as im:      # the header only: its size before the crop and resize
                        if im.size != (image_size, image_size):
                            off_size[im.size] = off_size.get(im.size, 0) + 1
                except CifarEdgeError as e:
                    raise CifarEdgeError(f"cannot read image {f} ({e}); remove or replace it") from None
                ys.append(label)
            if split == "train" and (not ys or ys[-1] != label):
                raise CifarEdgeError(f"class folder {folder / cls} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                                     "add its images or remove the folder")
        if not xs:
            raise CifarEdgeError(f"no images found under {folder}; expected {folder}/<class>/<image>.png")
        out[split] = (np.stack(xs), np.asarray(ys, np.int64))
    if off_size:
        total = sum(len(y) for _, y in out.values())
        sizes = ", ".join(f"{n} at {w}x{h}" for (w, h), n in sorted(off_size.items(), key=lambda kv: -kv[1])[:3])
        console.warn(f"{root}: {sum(off_size.values())} of {total} images are not {image_size}x{image_size} "
                     f"({sizes}{', ...' if len(off_size) > 3 else ''}); each was centre-cropped to a square and "
                     f"resized to {image_size}x{image_size} (bilinear)")
    xte, yte = out.get("test", (None, None))
    return Dataset(root.name, str(root), out["train"][0], out["train"][1], class_names, xte, yte)


def _check_class_folders(folder: Path):
    """Each class folder must be a real folder of its own: a link back up the tree (a loop) would
    add a class of no images, or of the whole dataset again."""
    top = folder.resolve()
    for d in sorted(folder.iterdir()):
        if d.is_dir() and d.is_symlink():
            target = d.resolve()
            if target == top or top.is_relative_to(target):
                raise CifarEdgeError(f"class folder {d} links back to {target}, which contains it (a loop); "
                                     "remove the link or replace it with a folder of that class's images")


def _find_official(root: Path, kind: str | None, checksums) -> Dataset | None:
    """Look in ``root`` for an official CIFAR folder or archive (of ``kind``, or either)."""
    for k in ([kind] if kind else list(_OFFICIAL)):
        spec = _OFFICIAL[k]
        if (root / spec["meta"]).is_file():
            return load_official_folder(root, k, checksums)
        if (root / spec["folder"] / spec["meta"]).is_file():
            return load_official_folder(root / spec["folder"], k, checksums)
        if (root / spec["archive"]).is_file():
            return load_official_archive(root / spec["archive"], k, checksums)
    return None


def load_path(path, kind: str | None = None, verify: bool = True, image_size: int = 32) -> Dataset:
    """Load whatever lives at ``path``: official folder/archive, .npz (or a folder of them),
    or an image folder."""
    p = Path(path).expanduser()
    checksums = OFFICIAL_MD5 if verify else None
    if not p.exists():
        raise CifarEdgeError(f"data path {p} does not exist; pass an existing folder or file to --data")
    if p.is_file():
        if p.name.endswith((".tar.gz", ".tgz")):
            return load_official_archive(p, kind, checksums)
        if p.suffix == ".npz":
            return load_npz(p)
        raise CifarEdgeError(f"don't know how to read {p.name}; use an official CIFAR .tar.gz, an .npz, "
                             "or a folder of class subfolders")
    found = _find_official(p, kind, checksums)
    if found is not None:
        return found
    npz = sorted(p.glob("*.npz"))
    if npz:
        return load_npz(npz, name=p.name)
    return load_image_folder(p, image_size)


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def _download_with_keras(kind: str):
    from .._tf import keras
    loader = keras.datasets.cifar100 if kind == "cifar100" else keras.datasets.cifar10
    try:
        loader.load_data()
    except Exception as e:  # noqa: BLE001 - network errors come in many types
        raise CifarEdgeError(
            f"could not download {kind} ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}); "
            f"offline? Pass --data PATH to a local official folder/.tar.gz/.npz, set {ENV_VAR}, "
            "or use --data synthetic") from None


def load_named(kind: str, verify: bool = True, download: bool = True) -> Dataset:
    """``cifar100`` / ``cifar10``: from $CIFAR_EDGE_DATA, else keras' cache, else download."""
    local = os.environ.get(ENV_VAR)
    if local:
        root = Path(local).expanduser()
        if not root.exists():
            raise CifarEdgeError(f"{ENV_VAR}={local} does not exist; point it at a folder holding "
                                 f"{_OFFICIAL[kind]['folder']}/ or {_OFFICIAL[kind]['archive']}")
        found = _find_official(root, kind, OFFICIAL_MD5 if verify else None)
        if found is None and root.is_dir():
            sub = root / kind
            if sub.is_dir() and sorted(sub.glob("*.npz")):
                found = load_npz(sorted(sub.glob("*.npz")), name=kind)
        if found is None:
            raise CifarEdgeError(f"{ENV_VAR}={local} holds no {kind} data; expected "
                                 f"{_OFFICIAL[kind]['folder']}/, {_OFFICIAL[kind]['archive']} or {kind}/*.npz there")
        found.name = kind
        return _with_cifar100_names(found)
    cache = keras_cache_dir()
    found = _find_official(cache, kind, OFFICIAL_MD5 if verify else None)
    if found is None and download:
        _download_with_keras(kind)
        found = _find_official(cache, kind, OFFICIAL_MD5 if verify else None)
    if found is None:
        raise CifarEdgeError(f"no {kind} data in keras' cache ({cache}); pass --data PATH or set {ENV_VAR}")
    return _with_cifar100_names(found)


def _with_cifar100_names(ds: Dataset) -> Dataset:
    """CIFAR-100 from any source gets the official superclasses when it lacks them."""
    if ds.name == "cifar100" and ds.coarse_names is None and ds.num_classes == 100:
        ds.coarse_names = list(names.CIFAR100_COARSE)
        ds.fine_to_coarse = np.asarray(names.CIFAR100_FINE_TO_COARSE)
    return ds


def load_dataset(source: str = "cifar100", labels: str = "fine", verify: bool = True,
                 download: bool = True, image_size: int = 32, synthetic_classes: int | None = None,
                 synthetic_size: int | None = None, seed: int = 0) -> Dataset:
    """Resolve ``source`` (a name from NAMED_SOURCES or a path) to a Dataset."""
    from .synthetic import make_synthetic

    if labels not in ("fine", "coarse"):
        raise CifarEdgeError(f"--labels must be 'fine' or 'coarse'; got {labels!r}")
    if source == "synthetic":
        ds = make_synthetic(num_classes=synthetic_classes or 10, n_train=synthetic_size or 5000, seed=seed)
    elif source in _OFFICIAL:
        ds = load_named(source, verify=verify, download=download)
    elif Path(source).expanduser().exists() or os.sep in source or source.startswith("."):
        ds = load_path(source, verify=verify, image_size=image_size)
    else:
        close = difflib.get_close_matches(source, NAMED_SOURCES, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise CifarEdgeError(f"unknown data source '{source}'; {hint}use one of {', '.join(NAMED_SOURCES)} "
                             "or a path to local data")
    return ds.with_coarse_labels() if labels == "coarse" else ds
