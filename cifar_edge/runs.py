"""The run spine: a run folder's paths (export/ and bench/ included), loading its model with
every custom object registered, and replaying its data split.  train, compress, export,
bench, serve and the CLI all go through here, so they agree on names and on what a run holds;
it sits low in the stack and imports nothing of theirs."""
from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CifarEdgeError
from .fileio import folder_lock, read_json, remove_stale_temps

MANIFEST = "export.json"
QUANTIZED = ("qat", "pqat")      # optimize methods whose model is quantize-wrapped: it ships as int8 only


class FinalVerdict(CifarEdgeError):
    """A run's outcome that a resume would only repeat (a fine-tune far below its parent): the
    run is discarded, resumed or not."""


@dataclass(frozen=True)
class RunFolder:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    config = property(lambda self: self.root / "config.json")
    metrics = property(lambda self: self.root / "metrics.json")
    history = property(lambda self: self.root / "history.csv")
    model_keras = property(lambda self: self.root / "model.keras")
    model_h5 = property(lambda self: self.root / "model.h5")
    best = property(lambda self: self.root / "best.keras")
    backup = property(lambda self: self.root / "backup")
    tensorboard = property(lambda self: self.root / "tensorboard")
    labels = property(lambda self: self.root / "labels.txt")
    best_record = property(lambda self: self.root / "best.json")   # which epoch best.keras holds
    export_dir = property(lambda self: self.root / "export")        # exported files and export.json
    bench_dir = property(lambda self: self.root / "bench")          # bench.json, tables and plots
    manifest = property(lambda self: self.root / "export" / MANIFEST)  # export.json: export's own record
    source_dir = property(lambda self: self.root / "source")        # an imported run's copy of the user's file

    @contextlib.contextmanager
    def new(self, command: str, used: str, resume: bool = False, resumable: bool = False):
        """The one protocol of a command that makes a run (train, optimize, import), under the lock.

        A new run refuses a used folder (``used`` says what to do instead), before the lock adds
        its file and again after it.  What a failure leaves behind:
        - an error of ours (bad settings or data, a diverged run): resuming cannot change it, so a
          new run is discarded; a resumed one keeps its progress, unless the error is a
          :class:`FinalVerdict`, which a resume would only repeat;
        - anything else, Ctrl-C included: a ``resumable`` command keeps what ``--resume`` continues
          once its config.json is written; otherwise the new run is discarded.
        """
        if not resume:
            self._refuse_used(used)
        created = not self.root.exists()
        with self.writing(command):
            if not resume:
                self._refuse_used(used)       # a writer that finished between the check and the lock
            try:
                yield self
            except CifarEdgeError as e:
                if not resume or isinstance(e, FinalVerdict):
                    self.discard(created)
                raise
            except BaseException:
                if not resume and not (resumable and self.config.is_file()):
                    self.discard(created)
                raise

    def _refuse_used(self, used: str):
        self.refuse_unfinished_optimize(", or choose a new --out")
        if self.has_files():
            raise CifarEdgeError(f"run folder {self.root} is not empty; {used}")

    @contextlib.contextmanager
    def writing(self, command: str):
        """The one way to write a run: an exclusive lock (a second writer is refused), and the
        leftovers of a killed writer removed first: our temp files, and TensorFlow's unfinished
        checkpoint folders, which only a writer of this run can have made."""
        with folder_lock(self.root, command):
            remove_stale_temps(self.root)
            _remove_unfinished_checkpoints(self.backup)
            try:
                yield self
            except BaseException:
                _remove_unfinished_checkpoints(self.backup)   # e.g. the disk filled during a save
                raise

    def has_files(self) -> bool:
        """Whether the folder holds anything but dot files (the lock, a killed writer's temps)."""
        return self.root.is_dir() and any(not p.name.startswith(".") for p in self.root.iterdir())

    def discard(self, created: bool):
        """Remove what a failed new run wrote: the folder itself when this run ``created`` it, else
        its contents (dot files aside), so a folder the user made stays where it was."""
        if created:
            shutil.rmtree(self.root, ignore_errors=True)
            return
        for p in self.root.iterdir():
            if not p.name.startswith("."):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)

    def read_config(self) -> dict:
        """config.json, checked to be a run's config: a clear error instead of a KeyError later."""
        if not self.config.is_file():
            raise CifarEdgeError(f"{self.root} has a model but no config.json; it was not written by "
                                 "`cifar-edge train` (re-train into a new --out)")
        config = read_json(self.config)
        problem = _config_problem(config)
        if problem:
            raise CifarEdgeError(f"{self.config} is not a cifar-edge run config ({problem}); it was edited or "
                                 "written by another tool: restore the original or re-train")
        return config

    def unfinished_optimize(self) -> str | None:
        """The method of an optimize run that has not finished (no metrics.json, written last),
        else None.  Its folder may hold a model (a killed run's, or a from-scratch one written by
        an old `train --resume`) that is not the optimized model, so nothing may use it."""
        if self.metrics.is_file() or not self.config.is_file():
            return None
        try:
            config = read_json(self.config)
        except (OSError, CifarEdgeError):
            return None                      # read_config says what is wrong with it
        return (config.get("optimize") or {}).get("method") if isinstance(config, dict) else None

    def resumable(self, what: str, elsewhere: str) -> dict:
        """config.json of an interrupted ``what`` (run, optimize run) in this folder, for --resume;
        else one line saying there is nothing to resume (``elsewhere``: where to go instead)."""
        if not self.config.is_file():
            raise CifarEdgeError(f"nothing to resume in {self.root}: no config.json there; drop --resume to start a "
                                 f"new {what}")
        if self.metrics.is_file():
            raise CifarEdgeError(f"run {self.root} already finished (metrics.json exists); nothing to resume. "
                                 f"{elsewhere}")
        return self.read_config()

    def refuse_unfinished_optimize(self, alternative: str = ""):
        """Raise when this is an unfinished optimize run, naming the command that finishes it."""
        method = self.unfinished_optimize()
        if method:
            raise CifarEdgeError(f"{self.root} is an unfinished `cifar-edge optimize --{method}` run (no metrics.json, "
                                 f"so no optimized model yet); finish it with `cifar-edge optimize --out {self.root} "
                                 f"--resume`{alternative}")

    def resume_hint(self, command: str) -> str:
        """What an interrupted ``command`` (train, optimize) kept in this folder, and how to go on."""
        if self.config.is_file():
            return f"continue it with `cifar-edge {command} --out {self.root} --resume`"
        return "nothing was kept; run the command again"

    def require_model(self) -> Path:
        """The trained model, or a clear error when the folder holds none.

        model.h5 first: it holds the same model as model.keras (both are saved together, the same
        outputs) and loads 3-10x faster, because tf_keras reads a .keras file's weights through
        backward seeks in a zip member, each re-reading it from the start (MobileNetV2: 11.2 s
        against 1.3 s; ConvNeXt-nano 15.4 s against 1.1 s), and every command loads the run."""
        if not self.root.is_dir():
            raise CifarEdgeError(f"run folder {self.root} does not exist; pass the --out folder of a "
                                 "`cifar-edge train` run")
        self.refuse_unfinished_optimize()
        for p in (self.model_h5, self.model_keras, self.best):
            if p.is_file():
                return p
        imported = self._imported_file()
        if imported is not None:
            return imported
        if (self.root / "fold_1").is_dir():
            raise CifarEdgeError(f"{self.root} is a k-fold run: each fold has its own model; pass "
                                 f"{self.root / 'fold_1'} (or another fold)")
        raise CifarEdgeError(f"{self.root} holds no trained model (model.keras); train first with "
                             f"`cifar-edge train --out {self.root}` or finish it with --resume")

    def _imported_file(self) -> Path | None:
        """An imported run's copy of the user's model (its source/ file), when config.json names one."""
        try:
            source = read_json(self.config).get("source") if self.config.is_file() else None
        except (OSError, ValueError, AttributeError, CifarEdgeError):
            return None
        if not isinstance(source, dict) or not isinstance(source.get("file"), str):
            return None
        path = inside_run(self.root, source["file"], self.config)
        return path if path.exists() else None




def inside_run(folder, relative, source) -> Path:
    """``relative``, a path that ``source`` (one of a run's own files, e.g. export.json) names,
    resolved inside ``folder``, or a CifarEdgeError.  A run folder may come from anyone: the paths
    its files hold must not lead a reader, or a server, to files elsewhere ('..', an absolute
    path, a symlink out)."""
    root = Path(folder).resolve()
    if not isinstance(relative, str) or not relative.strip() or "\0" in relative:
        raise CifarEdgeError(f"{source} names {relative!r} where a file name belongs; it was edited or "
                             "written by another tool: remove that entry (or the file) and export again")
    path = (root / relative).resolve()
    if root not in path.parents:
        raise CifarEdgeError(f"{source} names '{relative}', which leads to {path}, outside {root}; a run's files "
                             "may only point inside it: remove that entry (or the file) and export again")
    return path


def _remove_unfinished_checkpoints(backup: Path):
    if backup.is_dir():
        for p in backup.rglob("*_temp*"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _config_problem(config) -> str | None:
    """What makes ``config`` unusable as a run config, or None."""
    def numbers(v, n=None):
        return isinstance(v, list) and (n is None or len(v) == n) and all(
            isinstance(e, (int, float)) and not isinstance(e, bool) for e in v)
    if not isinstance(config, dict):
        return f"a JSON {type(config).__name__}, not an object"
    for key in ("train", "class_names", "normalization", "input_size"):
        if key not in config:
            return f"no '{key}'"
    if not isinstance(config["train"], dict) or not isinstance(config["train"].get("model"), str):
        return "'train' must be an object naming the model"
    names = config["class_names"]
    if not (isinstance(names, list) and len(names) >= 2 and all(isinstance(c, str) for c in names)):
        return "'class_names' must list at least two names"
    norm = config["normalization"]
    if not (isinstance(norm, dict) and numbers(norm.get("mean")) and numbers(norm.get("std"))
            and len(norm["mean"]) == len(norm["std"]) and all(s > 0 for s in norm["std"])):
        return "'normalization' must hold 'mean' and 'std' lists of numbers, std > 0"
    size = config["input_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        return "'input_size' must be a whole number of pixels"
    return None


def optimize_method(config: dict) -> str | None:
    """The compression a run came from (qat, prune, pqat, cluster), or None for a trained or imported run."""
    return (config.get("optimize") or {}).get("method")


def is_quantization_aware(config: dict) -> bool:
    """The run's model is quantize-wrapped (QAT, PQAT): it ships as int8 only."""
    return optimize_method(config) in QUANTIZED


def source_kind(config: dict) -> str:
    """Where the run's model came from: "trained" (cifar-edge train/optimize) or the kind of
    model file `cifar-edge import` took (see cifar_edge.source_models)."""
    return (config.get("source") or {}).get("kind", "trained")


def ends_in_softmax(config: dict) -> bool:
    """The run's model outputs probabilities, not logits: an imported model whose head ends in a
    softmax (`cifar-edge import` records it); our own models emit logits."""
    return (config.get("source") or {}).get("outputs") == "softmax"


def data_source(config: dict) -> str | None:
    """The data a run was trained on: the absolute path recorded at training time when it still
    exists (so commands work from any directory), else the --data as given."""
    resolved = config.get("data_path")
    if resolved and Path(resolved).exists():
        return resolved
    return config["train"].get("data")


def save_model(model, path):
    """``model.save(path)`` without Keras' two notes about it.  model.h5 is written on purpose
    (it loads several times faster than model.keras, see require_model), so the "legacy HDF5"
    UserWarning is dropped for exactly that call; and a model with nothing to compile (loaded
    with compile=False, or stripped by tfmot) has no metrics, so the HDF5 writer's "compiled
    metrics have yet to be built" note says nothing about it and is dropped too."""
    from . import console
    with console.without_notes("tensorflow", "compiled metrics have yet to be built",
                               "You are saving your model as an HDF5 file"):
        model.save(path)


_TRUSTED = {"code": False}


def trust_model_code(trusted: bool = True):
    """The user said --trust-model: model files may run the Python code they carry (Lambda
    layers).  Off by default, for every command and every file, ours and imported ones."""
    _TRUSTED["code"] = bool(trusted)


def code_layers(path) -> list[str]:
    """Names of the layers whose loading would run Python code stored in the file at ``path``
    (Keras' ``Lambda``, whose config holds marshalled bytecode or a module function), in an
    .h5, a .keras or a SavedModel's Keras metadata, nested models included."""
    import json
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("class_name") == "Lambda":
                found.append(str((node.get("config") or {}).get("name") or "Lambda"))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    for text in architecture_texts(path):
        try:
            walk(json.loads(text))
        except ValueError:
            found.append("<unreadable architecture>")   # cannot prove it safe: refuse like a Lambda
    return found


def refuse_code(path):
    """The loading rule: a file whose loading runs code loads only after --trust-model."""
    if _TRUSTED["code"]:
        return
    layers = code_layers(path)
    if layers:
        raise CifarEdgeError(f"{path} holds {len(layers)} Lambda layer(s) ({', '.join(layers[:5])}): loading it runs "
                             "Python code stored in the file; pass --trust-model only if you trust its author")


def load_model(path):
    """Load a saved Keras model with every class cifar-edge defines registered first, so a
    load never depends on which modules this process happened to import.

    No code from the file runs unless the user said --trust-model (:func:`refuse_code`),
    whatever the file's type.  An unreadable file and a file that names a layer class nobody
    registered are different problems with different fixes, and get different errors.
    Quantization-aware models (``cifar-edge optimize --qat/--pqat``) need tfmot's layer
    classes; tfmot is imported only for those, so plain loads stay fast."""
    import contextlib

    from ._tf import keras
    from .models import register_custom_objects
    refuse_code(path)
    register_custom_objects()
    text = _model_config_text(path)
    scope = contextlib.nullcontext()
    if text and any(f'"class_name":"{name}' in text for name in _QUANTIZE_CLASSES):
        from .models.tfmot_compat import quantize_scope
        scope = quantize_scope()
    kwargs = {"safe_mode": False} if _TRUSTED["code"] and str(path).endswith(".keras") else {}
    try:
        with scope:
            return keras.models.load_model(path, compile=False, **kwargs)
    except Exception as e:  # noqa: BLE001 - h5py/zip/json errors all mean 'unreadable'
        missing = _unregistered_classes(text, keras) if text else []
        if missing:
            raise CifarEdgeError(
                f"cannot load model {path}: it needs the layer class(es) {', '.join(missing)}, which this "
                "installation does not define; the file is intact. Pass --custom-objects MODULE (a Python module "
                "that defines them) to `cifar-edge import`, or load it with the code that saved it") from None
        raise CifarEdgeError(f"cannot load model {path} ({type(e).__name__}: {str(e)[:120]}); the file is "
                             "corrupt or truncated: re-run training or re-export it") from None


_QUANTIZE_CLASSES = ("QuantizeLayer", "QuantizeWrapper")   # QuantizeWrapperV2 included


def architecture_texts(path) -> list[str]:
    """Every Keras architecture JSON a model file holds, read without building anything: the
    config of an .h5 or a .keras, or each object's metadata in a SavedModel's keras_metadata.pb."""
    path = Path(path)
    if path.is_dir():
        meta = path / "keras_metadata.pb"
        if not meta.is_file():
            return []
        import importlib

        from ._tf import keras            # the protobuf module ships with tf_keras
        saved_metadata_pb2 = importlib.import_module(f"{keras.__name__}.protobuf.saved_metadata_pb2")
        doc = saved_metadata_pb2.SavedMetadata()
        try:
            doc.ParseFromString(meta.read_bytes())
        except Exception:  # noqa: BLE001 - protobuf's DecodeError: cannot prove it safe
            return ["<unreadable>"]
        return [node.metadata for node in doc.nodes if node.metadata]
    text = _model_config_text(path)
    return [text] if text else []


def _model_config_text(path) -> str | None:
    """The model's architecture JSON (from a .keras zip or an .h5 attribute), spaces removed,
    read without building the model; None when the file cannot be read that far."""
    import zipfile
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                text = z.read("config.json").decode()
        elif path.suffix in (".h5", ".hdf5"):
            import h5py
            with h5py.File(path, "r") as f:
                text = f.attrs.get("model_config", "")
                text = text.decode() if isinstance(text, bytes) else str(text)
        else:
            return None
    except (OSError, KeyError, ValueError, UnicodeDecodeError, zipfile.BadZipFile):
        return None          # unreadable: the load reports it
    return text.replace(" ", "")


_BUILTIN_CLASSES = {"Functional", "Model", "Sequential", "InputLayer", "TFOpLambda", "SlicingOpLambda"}


def _unregistered_classes(text: str, keras) -> list[str]:
    """Layer class names in the architecture that neither keras nor a registration knows."""
    import json
    try:
        config = json.loads(text)
        layers = config.get("config", config).get("layers", [])
        names = {layer.get("class_name") or "" for layer in layers}     # layers only, not initializers
    except (ValueError, AttributeError):
        return []
    return [name for name in sorted(names)
            if not (name in _BUILTIN_CLASSES or hasattr(keras.layers, name) or name.startswith(("Quantize", "Prune"))
                    or keras.utils.get_registered_object(name) is not None)]


# --------------------------------------------------------------------------- a finished run
@dataclass
class LoadedRun:
    run: RunFolder
    model: object                     # a tf_keras model, or an imported model behind the same call (SourceModel)
    config: dict
    class_names: list
    norm: object                      # cifar_edge.data.Normalization
    input_size: int

    @property
    def source(self) -> str:
        """"trained", or the kind of file `cifar-edge import` took (tf_keras, keras3, onnx, torch)."""
        return source_kind(self.config)

    @property
    def keras(self):
        """The tf_keras model, for what only tf_keras does (QAT, pruning, Grad-CAM, the .h5): None for
        an imported Keras 3, ONNX or PyTorch model."""
        return None if getattr(self.model, "kind", None) else self.model

    def require_keras(self, what: str):
        """The tf_keras model, or one true line saying why ``what`` does not apply to this run."""
        if self.keras is None:
            raise CifarEdgeError(f"{what} needs a tf_keras model, and {self.run.root} holds an imported {self.source} "
                                 f"model ({self.config['source']['file']}); {what} does not apply to it")
        return self.keras

    @property
    def quantization_aware(self) -> bool:
        return is_quantization_aware(self.config)

    _data: dict = field(default_factory=dict, repr=False)   # run_data's splits, loaded once per process


def as_loaded(run) -> "LoadedRun":
    """``run`` itself when it is already loaded (bench hands export the run it holds), else loaded."""
    return run if isinstance(run, LoadedRun) else load_run(run)


def load_run(run_dir) -> LoadedRun:
    run = RunFolder(run_dir)
    if not run.root.is_dir():
        run.require_model()                          # its error names the problem
    config = run.read_config() if run.config.is_file() else None
    from .data.pipeline import Normalization
    if config is not None and source_kind(config) not in ("trained", "tf_keras"):
        from .source_models import open_source
        path, model = run.require_model(), open_source(run, config)
    else:
        path = run.require_model()
        config = config if config is not None else run.read_config()
        model = load_model(path)
    width, names = model.output_shape[-1], config["class_names"]
    if width is not None and width != len(names):      # else predict indexes past the names, and evaluate blames --data
        raise CifarEdgeError(f"{run.config} lists {len(names)} class names but the model ({path.name}) outputs "
                             f"{width} classes; config.json was edited or copied from another run: restore this "
                             "run's own config.json, or re-train")
    return LoadedRun(run, model, config, names, Normalization.from_dict(config["normalization"]),
                     int(config["input_size"]))


@dataclass
class RunData:
    """The images a run was trained and checked on, split exactly as training split them."""
    dataset: object
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None

    @property
    def x_test(self):
        return self.dataset.x_test

    @property
    def y_test(self):
        return self.dataset.y_test

    def held_out(self):
        """(images, labels, split name) never trained on: validation, else test."""
        if self.x_val is not None and len(self.x_val):
            return self.x_val, self.y_val, "val"
        if self.x_test is not None:
            return self.x_test, self.y_test, "test"
        raise CifarEdgeError(f"{self.dataset.name} has neither a validation nor a test split to check against")


def run_data(loaded: LoadedRun, data: str | None = None) -> RunData:
    """Reload the run's dataset (or ``data``) and redo its seeded limit and train/val split; once
    per loaded run and source (bench and the export it starts share it)."""
    if data not in loaded._data:
        loaded._data[data] = _run_data(loaded, data)
    return loaded._data[data]


def _run_data(loaded: LoadedRun, data: str | None) -> RunData:
    from .data import limit_images, load_dataset, train_val
    cfg = loaded.config["train"]
    ds = load_dataset(data or data_source(loaded.config), labels=cfg.get("labels", "fine"), verify=cfg.get("verify", True),
                      synthetic_classes=cfg.get("synthetic_classes"), synthetic_size=cfg.get("synthetic_size"),
                      seed=cfg.get("seed", 0))
    if ds.num_classes != len(loaded.class_names):
        raise CifarEdgeError(f"{ds.name} has {ds.num_classes} classes but the model was trained on "
                             f"{len(loaded.class_names)}; pass the data it was trained on")
    seed = cfg.get("seed", 0)
    x, y = limit_images(ds.x_train, ds.y_train, cfg.get("limit") if data is None else None, seed)
    val_split = cfg.get("val_split", 0.0) if not cfg.get("kfold") else 0.0
    return RunData(ds, *train_val(x, y, val_split, seed))
