"""`optimize_run`: fine-tune a trained run with one tfmot method into a new run folder that
evaluate, predict and export treat like any other run (plus ``parent`` and ``optimize`` in
its config.json).

Fine-tuning reuses the parent's data, split, normalization, input size and recipe at a
fraction of its learning rate (a tenth; a hundredth to cluster) on a cosine decay, so the
model stays near the parent's optimum while it adapts to fake-quantization, masks or
shared weights.  An imported tf_keras model brings no recipe of ours: it takes IMPORTED_RECIPE.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from .. import console
from ..data import AugmentConfig, limit_images, make_dataset, prepare_images
from ..data.pipeline import batches_per_epoch, resize_target
from ..errors import CifarEdgeError, Interrupted
from .._tf import keras
from ..fileio import atomic_path, read_json, write_json, write_text
from ..models import get_model_spec
from ..train.callbacks import EpochStats, HistoryCSV, NonFiniteLoss, Progress
from ..train.config import TrainConfig
from ..train.loop import compile_model, evaluate_model, fit_resumable, seed_everything, training_throughput
from ..runs import (FinalVerdict, RunFolder, data_source, ends_in_softmax, load_model, load_run, run_data, save_model,
                    source_kind)
from ..train.whitening import frozen_stem
from ..versions import versions
from . import cluster, measure, prune
from .config import QUANTIZED, OptimizeConfig, flag
from .parent import check_parent, parent_method
from ..models.qat_scheme import PerChannelQuantizeScheme
from .quantize import RANGE_IMAGES, init_activation_ranges, quantize
from ..models.tfmot_compat import reloadable, tfmot


def optimize_run(parent_dir, out_dir, cfg: OptimizeConfig | None = None, resume: bool = False,
                 given: dict | None = None) -> dict:
    """Optimize the model of the run in ``parent_dir`` per ``cfg`` into the new run folder
    ``out_dir``; returns the metrics written to its metrics.json.

    ``resume`` finishes an interrupted optimize run in ``out_dir`` (kill -9 included) with the
    settings it saved, through train's crash backup, to the metrics the uninterrupted run would
    have written; ``parent_dir`` and ``given`` ({OptimizeConfig field: value the user typed}) may
    be None, and where given must agree with the saved ones."""
    run = RunFolder(out_dir)
    if not resume:
        cfg.validate()
    with run.new("cifar-edge optimize", "choose a new --out for the optimized run", resume=resume, resumable=True):
        if resume:
            parent_dir, cfg = _saved_settings(run, parent_dir, given or {})
        try:
            return _prepare_and_optimize(parent_dir, run, cfg, resume)
        except KeyboardInterrupt:
            raise Interrupted(run.resume_hint("optimize")) from None


def _saved_settings(run: RunFolder, parent_dir, given: dict):
    """(parent folder, OptimizeConfig) of the interrupted optimize run in ``run``; settings the
    user typed that differ from the saved ones are refused, never silently ignored."""
    config = run.resumable("optimize run", "Optimize into another --out")
    if not (config.get("optimize") or {}).get("method") or not config.get("parent"):
        raise CifarEdgeError(f"{run.root} is a training run, not an optimize run; continue it with `cifar-edge "
                             f"train --out {run.root} --resume`")
    cfg = OptimizeConfig.from_saved(config["optimize"])
    value = lambda field, v: f"--{v}" if field == "method" else v  # noqa: E731
    differ = [f"{flag(k) + ' ' if k != 'method' else ''}{value(k, v)} (the run's: {value(k, getattr(cfg, k))})"
              for k, v in given.items() if v != getattr(cfg, k)]
    if parent_dir is not None and Path(parent_dir).resolve() != Path(config["parent"]).resolve():
        differ.insert(0, f"parent {parent_dir} (the run's: {config['parent']})")
    if differ:
        raise CifarEdgeError(f"--resume finishes {run.root} with the settings it was started with, but "
                             f"{'; '.join(differ)} differ; drop them, or optimize into a new --out")
    return Path(config["parent"]), cfg


def _prepare_and_optimize(parent_dir, run: RunFolder, cfg: OptimizeConfig, resume: bool) -> dict:
    parent = RunFolder(parent_dir)
    parent.require_model()
    check_parent(cfg.method, parent.root, parent.read_config())

    loaded = load_run(parent.root)
    data = run_data(loaded)
    ds, config = data.dataset, loaded.config
    if len(data.x_train) == 0:
        raise CifarEdgeError(f"the run's data {data_source(config)} holds no training images (a test split only), and "
                             f"--{cfg.method} fine-tunes on them; give the run data with a training split (an imported "
                             "model: `cifar-edge import MODEL --data DATA --out RUN` again, DATA with x_train/y_train)")
    ft = _finetune_config(config, cfg)
    x_tr, y_tr = limit_images(data.x_train, data.y_train, cfg.limit, cfg.seed)
    steps = batches_per_epoch(len(x_tr), ft.batch_size)
    seed_everything(cfg.seed)

    before = {}
    if cfg.method == "pqat":
        before["parent_sparsity"] = measure.sparsity(loaded.model)[0]
    elif cfg.method == "qat" and parent_method(config) == "prune":
        console.warn("plain QAT lets the pruned weights grow back; use --pqat to keep the parent's zeros")
    elif cfg.method == "qat" and parent_method(config) == "cluster":
        console.warn("QAT does not keep the parent's weight clusters; the exported model will not share weights")
    model, callbacks, facts = _wrap(cfg, loaded.model, steps * cfg.epochs)
    if config["train"].get("head_epochs") or source_kind(config) != "trained":
        facts["frozen_batchnorm"] = _freeze_batchnorm(model)
    if cfg.method in QUANTIZED:
        x_cal, _ = limit_images(x_tr, y_tr, RANGE_IMAGES, cfg.seed)
        facts["ranges_from_float"] = init_activation_ranges(model, loaded.model,
                                                            prepare_images(x_cal, loaded.norm, loaded.input_size))
    # A whitened stem stays as whitened: sgd-l2 froze it by step in the parent's run, not by layer.
    frozen = frozen_stem(0) if ft.optimizer == "sgd-l2" and ft.whiten else None
    compile_model(model, ft, steps, ds.num_classes, xla=False, frozen=frozen, from_logits=not ends_in_softmax(config))
    return _optimize(cfg, run, parent, loaded, data, config, ft, x_tr, y_tr, model, callbacks, facts, before, resume)


def _optimize(cfg, run, parent, loaded, data, config, ft, x_tr, y_tr, model, callbacks, facts, before,
              resume: bool) -> dict:
    ds = data.dataset
    if resume:       # prepared as the interrupted run was; what it had trained comes from the backup
        console.info(f"resuming {run.root} ({cfg.method} of {parent.root}, {cfg.epochs} epochs)")
    else:
        _write_config(cfg, run, parent, loaded, config, ft, x_tr, facts)
        console.info(f"{cfg.method} of {parent.root} ({len(x_tr)} images, {cfg.epochs} epochs, lr {ft.lr:g}) -> "
                     f"{run.root}")
    if resume and run.model_h5.is_file() and run.model_keras.is_file():
        model, seconds = load_model(run.model_h5), 0.0      # killed after saving the model: just score it
    else:
        seconds = _fit(model, ft, run, x_tr, y_tr, data.x_val, data.y_val, ds.num_classes, loaded.norm,
                       loaded.input_size, callbacks)
        model = _finish(cfg.method, model)
        for path in (run.model_h5, run.model_keras):
            with atomic_path(path) as tmp:
                save_model(model, tmp)

    metrics = evaluate_model(model, ds, loaded.norm, ft, run, data.x_val, data.y_val)   # as the parent was fed
    metrics.update(training_throughput(run, seconds, len(x_tr)))
    parent_metrics = read_json(parent.metrics) if parent.metrics.is_file() else {}
    _check_against_parent(cfg, metrics, parent_metrics)
    metrics.update(method=cfg.method, parent=str(parent.root.resolve()), parent_top1=parent_metrics.get("top1"),
                   **before, **_figures(cfg.method, model))
    write_json(run.metrics, metrics)   # last: its presence marks a finished run
    shutil.rmtree(run.backup, ignore_errors=True)   # finished: the crash backup has done its job
    return metrics


def _write_config(cfg, run, parent, loaded, config, ft, x_tr, facts):
    """The parent's config.json plus ``parent`` and ``optimize`` (the settings a resume reads back)."""
    write_json(run.config, {**config, "versions": versions(), "parent": str(parent.root.resolve()), "optimize": {
        "method": cfg.method, "epochs": cfg.epochs, "lr": ft.lr, "batch_size": ft.batch_size,
        "schedule": ft.schedule, "limit": cfg.limit, "seed": cfg.seed, "train_images": int(len(x_tr)),
        "sparsity": cfg.sparsity if cfg.method == "prune" else None,
        "clusters": cfg.clusters if cfg.method == "cluster" else None,
        "frequency": facts.get("frequency"), "end_step": facts.get("end_step"), "quantized": facts.get("quantized"),
        "frozen_batchnorm": facts.get("frozen_batchnorm", 0), "ranges_from_float": facts.get("ranges_from_float"),
        "max_drop": cfg.max_drop,
        "parent_method": parent_method(config), "tfmot": tfmot.__version__}})
    write_text(run.labels, "\n".join(loaded.class_names) + "\n")


# Default fine-tuning lr = parent's lr / this (a model's recipe may set its own for QAT:
# ``qat_lr_divisor``).  Clustering trains one centroid per cluster, whose gradient sums those of
# all its weights, so it needs a far smaller step (at / 10 cnn-tiny's centroids collapsed to 2-3
# values and accuracy to chance; / 100 kept 16 and gained).
LR_DIVISOR = {"qat": 10, "prune": 10, "pqat": 10, "cluster": 100}


# The fine-tune recipe of an imported model, whose own optimizer, lr, batch and augmentation are
# unknown here.  AdamW adapts each weight's step to its gradients' scale, so one lr suits a network
# whose training lr we never saw (SGD's right lr depends on that recipe); lr 1e-3 is Adam's default,
# the one most notebooks train with, and LR_DIVISOR takes the usual tenth of it (a hundredth to
# cluster).  No weight decay and no label smoothing: a short fine-tune should not pull the weights
# or the softmax's confidence away from where the model was trained.  No augmentation: nothing
# says what the model's images tolerate (a mirrored digit is another digit).  BatchNorm is frozen
# (see _freeze_batchnorm), Dropout trains as in the model's own training.
IMPORTED_RECIPE = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.0, "label_smoothing": 0.0, "batch_size": 64,
                   "augment": AugmentConfig.none(), "whiten": False, "alternate_flip": False, "tta": False,
                   "bn_bias_lr": 1.0, "logit_scale": 1.0, "whiten_bias_epochs": 0}


def lr_divisor(method: str, parent: TrainConfig) -> float:
    """What the parent's lr is divided by for ``method``'s fine-tune: the model recipe's own QAT
    divisor when the parent trained with the recipe's optimizer (it was measured with it)."""
    recipe = get_model_spec(parent.model).settings
    if method == "qat" and recipe.get("qat_lr_divisor") and parent.optimizer == recipe.get("optimizer"):
        return recipe["qat_lr_divisor"]
    return LR_DIVISOR[method]


def _finetune_config(config: dict, cfg: OptimizeConfig) -> TrainConfig:
    """The parent's training recipe (an imported model's: IMPORTED_RECIPE), shortened: cfg's
    epochs, a fraction of the learning rate (unless given) on a cosine decay without warm-up."""
    parent = TrainConfig.from_dict(config["train"])
    if source_kind(config) == "trained":
        lr = cfg.lr or parent.lr / lr_divisor(cfg.method, parent)
    else:
        parent = dataclasses.replace(parent, input_size=int(config["input_size"]), **IMPORTED_RECIPE)
        lr = cfg.lr or parent.lr / LR_DIVISOR[cfg.method]
    # One stage, whatever the parent's was: a two-stage parent's head/backbone split served
    # its own run (its BatchNorm stays frozen here too, see _freeze_batchnorm).
    return dataclasses.replace(parent, epochs=cfg.epochs, lr=lr, seed=cfg.seed,
                               batch_size=cfg.batch_size or parent.batch_size, schedule="cosine",
                               warmup_epochs=0.0, early_stopping=0, head_epochs=0, head_lr=None,
                               unfreeze="all", lookahead=False).validate()


def _freeze_batchnorm(model) -> int:
    """Keep BatchNorm in inference mode (its moving statistics fixed), as the parent's last
    stage had it; returns how many layers were frozen.

    A fine-tuned transfer model was trained with frozen BatchNorm, and its moving statistics
    are the ones the network is calibrated to (for imported weights, identities carrying the
    folded biases).  Training them on batch statistics instead re-normalizes every channel
    and destroys the model: MobileNetV2's QAT fine-tune trained at chance (loss ln 100) so.  An
    imported model is frozen so too: its statistics are the ones its weights were calibrated to,
    and a short fine-tune at a tenth of an lr we never saw has no reason to move them."""
    frozen = 0
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)          # inside tfmot's quantize/prune/cluster wrappers
        if isinstance(inner, keras.layers.BatchNormalization):
            inner.trainable = False
            frozen += 1
    return frozen


class BelowParent(FinalVerdict):
    """The fine-tuned model ended too far below its parent: a verdict a resume would repeat."""


def _check_against_parent(cfg: OptimizeConfig, metrics: dict, parent_metrics: dict):
    """A compressed model far below its parent is a failed run, not a normal one."""
    mine, theirs = metrics.get("top1"), parent_metrics.get("top1")
    if mine is None or theirs is None or (theirs - mine) * 100 <= cfg.max_drop:
        return
    raise BelowParent(
        f"the {cfg.method} model scored {mine:.2%} top-1 on the {metrics.get('split', 'test')} split, "
        f"{(theirs - mine) * 100:.1f} points below its parent's {theirs:.2%} (allowed: --max-drop "
        f"{cfg.max_drop:g}); nothing was kept. Fine-tune longer (--epochs) or at a lower --lr, or pass a larger "
        "--max-drop to keep it anyway")


def _wrap(cfg: OptimizeConfig, model, total_steps: int):
    """(model wrapped for the method, extra fit callbacks, facts for config.json)."""
    if cfg.method == "prune":
        return prune.prune(model, cfg.sparsity, total_steps, cfg.frequency)
    if cfg.method == "cluster":
        return cluster.cluster(model, cfg.clusters), [], {}
    wrapped, coverage = quantize(model, PerChannelQuantizeScheme(preserve_sparsity=cfg.method == "pqat"))
    return wrapped, [], {"quantized": coverage}


def _finish(method: str, model):
    """The model to save: plain Keras for prune/cluster, the QAT model laid out to reload."""
    if method == "prune":
        return prune.strip(model)
    if method == "cluster":
        return cluster.strip(model)
    return reloadable(model)


def _fit(model, ft: TrainConfig, run: RunFolder, x_tr, y_tr, x_va, y_va, num_classes, norm, input_size,
         extra_callbacks) -> float:
    """Fine-tune with the training pipeline, its history/progress callbacks and its crash backup
    (a resume continues after the last finished epoch); seconds spent."""
    size = resize_target(x_tr, input_size)

    def train_ds(epochs: range):
        return make_dataset(x_tr, y_tr, num_classes, ft.batch_size, norm, training=True, augment=ft.augment,
                            image_size=size, seed=ft.seed, epochs=epochs)
    val_ds = None
    if x_va is not None and len(x_va):
        val_ds = make_dataset(x_va, y_va, num_classes, max(ft.batch_size, 256), norm, training=False,
                              image_size=size)
    steps = batches_per_epoch(len(x_tr), ft.batch_size)
    callbacks = [*extra_callbacks, EpochStats(len(x_tr)), HistoryCSV(run.history), Progress(ft.epochs, steps),
                 NonFiniteLoss(ft.lr)]
    return fit_resumable(model, train_ds, val_ds, 0, ft.epochs, steps, run.backup, callbacks)


def _figures(method: str, model) -> dict:
    """Measured effect of the method on the saved model's kernels."""
    if method in ("prune", "pqat"):
        overall, per_layer = measure.sparsity(model)
        return {"sparsity": overall, "layer_sparsity": per_layer}
    if method == "cluster":
        counts = measure.unique_values(model)
        return {"max_unique_values": max(counts.values(), default=0), "layer_unique_values": counts}
    return {}
