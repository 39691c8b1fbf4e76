"""The library's entry points: what a script needs, one call per CLI command, each delegating to
the function that command calls (so a script and the CLI cannot drift apart).

TensorFlow loads on the first call, not on ``import cifar_edge``, so the CLI starts fast.  The
names are not the subpackages' (``cifar_edge.train`` is a package: importing it would replace a
function of that name).  Mistakes raise :class:`cifar_edge.errors.CifarEdgeError` with one line
saying what to fix, the message the CLI prints.
"""
from __future__ import annotations

__all__ = ["train_run", "import_model", "load_run", "predict", "export_files", "diagnose_int8", "bench_files"]


def train_run(out, *, resume: bool = False, **settings) -> dict:
    """Train into the run folder ``out`` and evaluate, as ``cifar-edge train``; returns metrics.json.

    ``settings`` are :class:`cifar_edge.train.TrainConfig` fields (``model``, ``data``, ``epochs``,
    ``seed``, ``limit``, ``batch_size``, ``lr`` ...); unset ones take the model's recipe.
    ``resume=True`` continues a killed run from its last epoch with its saved settings.
    """
    from .train import TrainConfig, train
    return train(TrainConfig(**settings), out, resume=resume)


def import_model(model, data: str, out, **options) -> dict:
    """Make a model trained elsewhere a run folder, as ``cifar-edge import``; returns metrics.json.

    ``model``: a tf_keras or Keras 3 ``.h5``/``.keras``, a SavedModel folder, an ``.onnx`` or a
    PyTorch ``.pt2``.  ``options``: ``labels``, ``input_size``, ``mean``/``std`` (pixel units,
    3 numbers each), ``layout``, ``custom_objects``, ``trust_model``.
    """
    from .importer import import_model as _import
    return _import(model, data, out, **options)


def load_run(run):
    """Open a finished run folder (trained, optimized or imported) once, to pass to the calls below
    instead of its path: a :class:`cifar_edge.runs.LoadedRun` (model, class names, normalization)."""
    from .runs import as_loaded
    return as_loaded(run)


def predict(run, images, top: int = 5) -> list[dict]:
    """Top-``top`` classes of each image file (any size or mode), as ``cifar-edge predict``:
    ``[{"image": path, "top": [{"class", "index", "probability"}, ...]}, ...]``."""
    from .inference import predict_files
    return predict_files(load_run(run), images, top=top)


def export_files(run, variants, out=None, **checks) -> list[dict]:
    """Export named variants (``cifar-edge formats``; ``"all"`` for every one), each checked against
    the Keras model, as ``cifar-edge export --variant``; returns their export.json entries.

    ``checks`` are :class:`cifar_edge.export.ExportConfig` fields (``max_drop``, ``check_images``,
    ``calibration_images``, ``repair`` ...).  A file that fails its check raises, naming why.
    """
    from .export import ExportConfig, export_run, resolve_variants
    every = variants == "all"
    names = None if every else [variants] if isinstance(variants, str) else list(variants)
    chosen = resolve_variants(names, all_variants=every)
    return export_run(run, chosen, out, ExportConfig(**checks), command=f"cifar_edge.export_files({variants!r})")


def diagnose_int8(run, variant: str | None = None, images: int = 200, **checks) -> dict:
    """Rank the layers of an int8 variant (default tflite-int8) by the error each adds, linked to per-class drift
    beyond noise, as ``cifar-edge diagnose``; returns the report (also in RUN/export/diagnose/).

    ``checks`` are the :class:`cifar_edge.export.ExportConfig` fields export would use.
    """
    from .export import ExportConfig
    from .export.diagnose import diagnose_run
    return diagnose_run(load_run(run), variant, ExportConfig(**checks), images=images)


def bench_files(run, out=None, **settings) -> dict:
    """Measure the run's files on every runtime that loads them, as ``cifar-edge bench``: returns
    bench.json's content (rows of accuracy, size, latency ...), also written to ``out`` (RUN/bench).

    ``settings`` are :class:`cifar_edge.bench.BenchConfig` fields (``variants``, ``runtimes``,
    ``threads``, ``limit``, ``runs``, ``reference``, ``siblings`` ...).
    """
    from .bench import BenchConfig, bench_run
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
    root = run.run.root if hasattr(run, "run") else run          # a LoadedRun, or its path
    return bench_run(root, BenchConfig(**fields), out, command="cifar_edge.bench_files()")
