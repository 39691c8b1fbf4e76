"""`cifar-edge import MODEL --data DATA --out RUN`: a model made elsewhere becomes a run folder
like a trained one, so export, diagnose, bench, evaluate, predict, report and serve take it.

The run keeps a copy of the user's file (never the original, which is not touched) with its
SHA-256, and config.json records where it came from: its kind, layout, the preprocessing the
exported files fold in, and whether it ends in a softmax.  The source model is evaluated on
DATA's test split on its own runtime, as train evaluates, into metrics.json."""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np

from . import console
from .errors import CifarEdgeError
from .fileio import write_json, write_text
from .runs import RunFolder, save_model, trust_model_code
from .source_models import ImportOptions, SourceModel, detect_kind, image_layout
from .versions import versions

LAYOUTS = ("nhwc", "nchw")


def _sha256(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _source_files(path: Path) -> list[Path]:
    """Every file the model consists of: a SavedModel's folder, an .onnx and its external data."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    if path.suffix.lower() == ".onnx":
        from .source_models.onnx import external_files
        return [path, *external_files(path)]
    return [path]


def load_custom_objects(module: str):
    """Import the user's module of custom layer classes (a module name or a .py file): the user
    named it, so its code runs; tf_keras then finds the classes it registers or defines."""
    from ._tf import keras
    try:
        if module.endswith(".py"):
            spec = importlib.util.spec_from_file_location(Path(module).stem, module)
            if spec is None or not Path(module).is_file():
                raise ImportError(f"no such file {module}")
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        else:
            sys.path.insert(0, str(Path.cwd()))
            mod = importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - whatever the user's module raises
        raise CifarEdgeError(f"--custom-objects {module}: cannot import it ({type(e).__name__}: {str(e)[:120]})") from None
    found = {name: obj for name, obj in vars(mod).items() if isinstance(obj, type) and issubclass(obj, keras.layers.Layer)}
    keras.utils.get_custom_objects().update(found)
    return sorted(found)


def _keras_input(model):
    shape = model.input_shape
    if isinstance(shape, list):
        raise CifarEdgeError(f"the model takes {len(shape)} inputs; cifar-edge imports single-image classifiers")
    return tuple(shape)


def _fixed_keras(model, layout: str, size: int):
    """A tf_keras model taking (N, size, size, 3): an NCHW model gets a Permute in front, and a
    model built for any size gets a fixed one, so every file made from it is NHWC and static."""
    from ._tf import keras
    shape = _keras_input(model)
    fixed = (shape[1:3] if layout == "nhwc" else shape[2:4]) == (size, size)
    if layout == "nhwc" and fixed:
        return model
    image = keras.Input((size, size, 3), name="image")
    x = keras.layers.Permute((3, 1, 2), name="nhwc_to_nchw")(image) if layout == "nchw" else image
    return keras.Model(image, model(x), name=model.name)


def graph_preprocessing(model) -> str | None:
    """The leading Rescaling or Normalization layer of a Keras model (tf_keras or Keras 3), as a
    line for config.json, or None: such a model takes raw pixels and normalizes them itself."""
    layers = [layer for layer in getattr(model, "layers", []) if type(layer).__name__ != "InputLayer"]
    while layers and hasattr(layers[0], "layers") and type(layers[0]).__name__ in ("Sequential", "Functional", "Model"):
        layers = [layer for layer in layers[0].layers if type(layer).__name__ != "InputLayer"]
    if not layers:
        return None
    first = layers[0]
    kind = type(first).__name__
    if kind == "Rescaling":
        return f"in the graph: Rescaling(scale={float(np.mean(first.scale)):.6g}, offset={float(np.mean(first.offset)):.6g})"
    if kind == "Normalization":
        return "in the graph: Normalization (mean and variance adapted in the model)"
    return None


def _normalization(model, mean, std):
    """(Normalization, how): from the graph when it holds it (the files then take raw pixels),
    else from --mean/--std in pixel units, else raw pixels with a warning."""
    from .data.pipeline import Normalization
    in_graph = graph_preprocessing(model)
    if in_graph:
        if mean is not None or std is not None:
            raise CifarEdgeError(f"the model normalizes its input itself ({in_graph}); drop --mean/--std")
        return Normalization(), in_graph
    if (mean is None) != (std is None):
        raise CifarEdgeError("--mean and --std go together: give both, in pixel units 0..255 (e.g. --mean "
                             "125.3,123.0,113.9 --std 63.0,62.1,66.7)")
    if mean is None:
        console.warn("the model holds no Rescaling/Normalization layer and no --mean/--std was given: it gets raw "
                     "pixels 0..255; pass --mean R,G,B --std R,G,B (pixel units) if it was trained on normalized ones")
        return Normalization(), "none: raw pixels 0..255"
    if len(mean) != 3 or len(std) != 3 or not all(s > 0 for s in std):
        raise CifarEdgeError("--mean and --std take three numbers each (R,G,B in pixel units), std > 0")
    return Normalization(tuple(map(float, mean)), tuple(map(float, std))), "--mean/--std (pixel units)"


def _read_labels(path, classes: int, default: list) -> list:
    if path is None:
        return list(default)
    names = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(names) != classes:
        raise CifarEdgeError(f"--labels {path} lists {len(names)} names but the model has {classes} outputs; "
                             "give one name per output, in output order")
    return names


def import_model(model_path, data: str, out, labels=None, input_size: int | None = None, mean=None, std=None,
                 layout: str | None = None, custom_objects: str | None = None, trust_model: bool = False) -> dict:
    """Import ``model_path`` into the new run folder ``out``; returns its metrics (metrics.json)."""
    from .data import load_dataset
    from .evaluate import evaluate_model
    from .evaluate.metrics import is_probabilities
    src = Path(model_path)
    if layout is not None and layout not in LAYOUTS:
        raise CifarEdgeError(f"--layout {layout} is invalid; use nhwc or nchw")
    if input_size is not None and input_size < 8:
        raise CifarEdgeError(f"--input-size {input_size} is invalid; give the model's input side in pixels (>= 8)")
    kind = detect_kind(src)
    if trust_model:
        trust_model_code(True)
    if custom_objects:
        load_custom_objects(custom_objects)
    console.info(f"loading {src} as a {kind.name} model ...")
    model, facts = kind.load(src, ImportOptions(trust_model, custom_objects, layout))
    keras_model = None if isinstance(model, SourceModel) else model
    shape = _keras_input(model) if keras_model is not None else model.input_shape
    if keras_model is None:
        layout, height, width = model.layout, model.input_shape[1], model.input_shape[2]
    else:
        layout, height, width = image_layout(shape, layout)
    if height is not None and height != width:
        raise CifarEdgeError(f"the model's input is {height}x{width}; cifar-edge's files take square images")
    if height is not None and input_size is not None and input_size != height:
        raise CifarEdgeError(f"--input-size {input_size} differs from the model's fixed input {height}; drop it")
    size = height or input_size
    if size is None:
        raise CifarEdgeError("the model takes any image size; pass --input-size N (the side it was trained at)")
    if keras_model is not None:
        keras_model = model = _fixed_keras(keras_model, layout, int(size))
    norm, preprocessing = _normalization(model, mean, std)
    classes = model.output_shape[-1]
    ds = load_dataset(data)
    if ds.x_test is None:
        raise CifarEdgeError(f"{ds.name} has no test split to evaluate the model on; pass --data with one")
    if classes is not None and classes != ds.num_classes:
        raise CifarEdgeError(f"the model has {classes} outputs but {ds.name} has {ds.num_classes} classes; pass the "
                             "--data it was trained for (or a model for this data)")
    class_names = _read_labels(labels, ds.num_classes, ds.class_names)
    files = _source_files(src.resolve())
    digest = _sha256(files)
    run = RunFolder(out)
    with run.new("cifar-edge import", "choose a new --out for the imported run"):
        copy = run.source_dir / src.name
        if src.is_dir():
            shutil.copytree(src, copy)
        else:
            copy.parent.mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copy2(f, copy.parent / f.relative_to(src.resolve().parent))
        if keras_model is not None:
            save_model(keras_model, run.model_h5)
        console.info(f"evaluating it on {len(ds.x_test):,} {ds.name} test images ({facts['runtime']}) ...")
        metrics = evaluate_model(model, ds.x_test, ds.y_test, class_names=class_names, norm=norm, out_dir=run.root,
                                 image_size=int(size), split="test")
        probes = (np.zeros((2, size, size, 3), np.float32),      # a head ends in a softmax when every row of
                  np.random.default_rng(0).uniform(-2, 2, (2, size, size, 3)).astype(np.float32))  # both sums to 1
        outputs = "softmax" if all(is_probabilities(model(x)) for x in probes) else "logits"
        source = {"kind": kind.name, "file": str(copy.relative_to(run.root)), "sha256": digest,
                  "original": str(src.resolve()), "files": [str(f.relative_to(src.resolve() if src.is_dir() else src.resolve().parent))
                                                           for f in files],
                  "layout": layout, "preprocessing": preprocessing, "outputs": outputs, "runtime": facts["runtime"],
                  "custom_objects": custom_objects, "trusted_code": bool(trust_model)}
        metrics.update({"model": f"imported {kind.name}", "source": source})
        flops = None
        if keras_model is not None:
            from .models import count_flops
            try:
                flops = count_flops(keras_model)
            except Exception:  # noqa: BLE001 - a layer whose shapes count_flops cannot read
                flops = None
        write_json(run.config, {
            "train": {"model": f"imported-{kind.name}", "data": data, "seed": 0, "val_split": 0.0},
            "data_path": str(Path(data).resolve()) if Path(data).exists() else None, "dataset": ds.summary(),
            "class_names": class_names, "normalization": norm.to_dict(), "input_size": int(size),
            "params": int(keras_model.count_params()) if keras_model is not None else None, "flops": flops,
            "source": source, "versions": versions()})
        write_text(run.labels, "\n".join(class_names) + "\n")
        write_json(run.metrics, metrics)
    chance = 1.0 / ds.num_classes
    if metrics["top1"] < 2 * chance:
        console.warn(f"the model scores {metrics['top1']:.1%} on {ds.name}, near chance ({chance:.1%}): check its "
                     "preprocessing (--mean/--std, pixel units), the label order (--labels) and the layout (--layout)")
    return metrics
