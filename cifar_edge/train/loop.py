"""`cifar-edge train`: one run folder per run, resumable after a crash (kill -9 included).

The Keras ``BackupAndRestore`` checkpoint is written at every epoch end and carries the
weights, optimizer state and epoch counter; schedules are functions of the optimizer step,
and each epoch's batches are drawn from (seed, epoch) alone, so a resumed run redoes at most
the epoch that was in flight and ends exactly where the uninterrupted run would have.
"""
from __future__ import annotations

import dataclasses
import shutil
import time

import numpy as np

from .. import console
from .._tf import keras, tf
from ..data import limit_images, load_dataset, make_dataset, stratified_kfold, train_val
from ..data.pipeline import batches_per_epoch, resize_target
from ..errors import CifarEdgeError, Interrupted
from ..fileio import atomic_path, read_json, write_json, write_text
from ..models import count_flops, get_model_spec
from .callbacks import BestCheckpoint, EpochStats, HistoryCSV, NonFiniteLoss, Progress
from .config import TrainConfig
from .distribute import accelerate, compute_policy, float32_copy, make_strategy
from ..runs import RunFolder, load_model, save_model
from ..versions import versions
from .optim import ScaledSGD
from .schedules import make_schedule
from .whitening import LOGITS, frozen_stem, scale_logits, whiten_stem


def seed_everything(seed: int, deterministic: bool = True):
    """Same seed on the same CPU gives the same metrics.  ``deterministic=False`` (an XLA run:
    the GPU default) seeds without op determinism, which XLA cannot compile a max pool's
    gradient under ("no deterministic XLA implementation", on the first step), and
    switches it off again when an earlier run in this process turned it on."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    else:
        from tensorflow.python.framework import config as tf_config   # disable_op_determinism is not public
        tf_config.disable_op_determinism()


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int, model=None, frozen: dict | None = None):
    """The run's optimizer.  ``frozen`` ({variable-name suffix: first step it no longer trains}) and
    ``model`` (whose BatchNorm statistics the lookahead blends) serve sgd-l2 only."""
    lr = make_schedule(cfg.schedule, cfg.lr, cfg.epochs, steps_per_epoch, cfg.warmup_epochs, cfg.decay_rate)
    if cfg.optimizer == "sgd-l2":
        multipliers = {"/beta": cfg.bn_bias_lr or 1.0, f"{LOGITS}/kernel": (cfg.logit_scale or 1.0) ** 2}
        opt = ScaledSGD(lr, momentum=cfg.momentum, nesterov=cfg.nesterov, l2=cfg.weight_decay or 0.0,
                        multipliers={k: v for k, v in multipliers.items() if v != 1.0}, freeze_from=frozen,
                        lookahead_total_steps=cfg.epochs * steps_per_epoch if cfg.lookahead else 0)
        if cfg.lookahead and model is not None:
            opt.track_statistics(model)
        return opt
    if cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                   weight_decay=cfg.weight_decay or None)
    else:
        opt = keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay)
    if cfg.weight_decay:
        opt.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return opt


def compile_model(model, cfg: TrainConfig, steps_per_epoch: int, num_classes: int, xla: bool, frozen: dict | None = None,
                  from_logits: bool = True):
    """``from_logits=False`` for a model that ends in a softmax (an imported one may)."""
    model.compile(
        optimizer=make_optimizer(cfg, steps_per_epoch, model, frozen),
        loss=keras.losses.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=cfg.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                 keras.metrics.TopKCategoricalAccuracy(k=min(5, num_classes), name="top5")],
        jit_compile=xla)


def fit(cfg: TrainConfig, run: RunFolder, x_train, y_train, x_val, y_val, num_classes: int,
        strategy, accel: dict):
    """Build, compile and fit one model into ``run`` under the run's precision; returns the
    float32 model (what is saved and exported) and the training seconds."""
    with compute_policy(accel["policy"]):
        model, seconds = _fit(cfg, run, x_train, y_train, x_val, y_val, num_classes, strategy, accel)
    return float32_copy(model), seconds


def _fit(cfg: TrainConfig, run: RunFolder, x_train, y_train, x_val, y_val, num_classes: int, strategy, accel: dict):
    spec = get_model_spec(cfg.model)
    steps = batches_per_epoch(len(x_train), cfg.batch_size)
    frozen = None
    with strategy.scope():
        model = spec.build(num_classes, cfg.input_size, **cfg.model_options)
        # sgd-l2 freezes by step (the stem's bias trains for whiten_bias_epochs); others freeze the layer.
        by_step = cfg.optimizer == "sgd-l2"
        if cfg.whiten and whiten_stem(model, x_train, spec.normalization, cfg.seed, freeze_layer=not by_step):
            frozen = frozen_stem((cfg.whiten_bias_epochs or 0) * steps) if by_step else None
            bias_epochs = min(cfg.whiten_bias_epochs or 0, cfg.epochs)
            console.info("stem initialised by patch whitening (kernel frozen"
                         + (f", bias trains {bias_epochs} of {cfg.epochs} epochs)" if by_step else ")"))
        if (cfg.logit_scale or 1.0) != 1.0:
            scale_logits(model, cfg.logit_scale)
    size = resize_target(x_train, cfg.input_size)

    def train_ds(epochs: range):
        return make_dataset(x_train, y_train, num_classes, cfg.batch_size, spec.normalization, training=True,
                            augment=cfg.augment, image_size=size, seed=cfg.seed, epochs=epochs,
                            alternate_flip=bool(cfg.alternate_flip))
    val_ds = None
    if x_val is not None and len(x_val):
        val_ds = make_dataset(x_val, y_val, num_classes, max(cfg.batch_size, 256), spec.normalization,
                              training=False, image_size=size)
    stage = _Stage(cfg, run, train_ds, val_ds, steps, len(x_train), num_classes, strategy, accel["xla"], frozen)
    if cfg.head_epochs:
        seconds = _fit_two_stages(model, spec, stage)
        for layer in model.layers:      # saved fully trainable, so optimize/QAT later train everything
            layer.trainable = True
    else:
        seconds = stage.fit(model, cfg, 0, cfg.epochs, run.backup)
    if run.best.exists() and val_ds is not None:   # best on validation, not last
        _check_best_record(run, "val_accuracy")
        if stage.best_snapshot is not None:        # saved by this process: its values, not read back
            for variable, value in stage.best_snapshot:
                variable.assign(value)
        else:                                      # saved before a crash and resume
            best = load_model(run.best)
            for layer in model.layers:   # layer by layer: a model's weight order follows its trainable flags
                layer.set_weights(best.get_layer(layer.name).get_weights())
    return model, seconds


class _Stage:
    """What every fit of a run shares; ``fit`` trains epochs [first, last) of the run with
    its own crash backup, so each stage of a two-stage run resumes on its own."""

    def __init__(self, cfg, run, train_ds, val_ds, steps, n_train, num_classes, strategy, xla, frozen=None):
        self.cfg, self.run, self.train_ds, self.val_ds, self.steps = cfg, run, train_ds, val_ds, steps
        self.n_train, self.num_classes, self.strategy, self.xla = n_train, num_classes, strategy, xla
        self.frozen = frozen
        self.best_snapshot = None      # the best checkpoint's values when this process saved it

    def fit(self, model, cfg: TrainConfig, first: int, last: int, backup, label: int | None = None) -> float:
        """Compile ``model`` with ``cfg`` (its optimizer and schedule span ``cfg.epochs``) and fit."""
        run, val_ds = self.run, self.val_ds
        with self.strategy.scope():
            compile_model(model, cfg, self.steps, self.num_classes, self.xla, self.frozen)
        monitor = "val_accuracy" if val_ds is not None else "accuracy"
        callbacks = [NonFiniteLoss(cfg.lr), EpochStats(self.n_train, stage=label), HistoryCSV(run.history),
                     keras.callbacks.TensorBoard(str(run.tensorboard), update_freq="epoch", profile_batch=0,
                                                 write_graph=False),
                     Progress(self.cfg.epochs, self.steps)]
        best = BestCheckpoint(run.best, run.best_record, monitor) if val_ds is not None else None
        if best is not None:
            callbacks.append(best)
        if cfg.early_stopping:
            callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=cfg.early_stopping))
        if cfg.schedule == "plateau":
            callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss" if val_ds else "loss",
                                                               factor=0.2, patience=2, min_lr=cfg.lr * 1e-3))
        seconds = fit_resumable(model, self.train_ds, val_ds, first, last, self.steps, backup, callbacks)
        if best is not None and best.snapshot is not None:
            self.best_snapshot = best.snapshot
        return seconds


def fit_resumable(model, train_ds, val_ds, first: int, last: int, steps: int, backup, callbacks) -> float:
    """Fit epochs [first, last) of a compiled ``model`` with a crash backup in ``backup``, so a
    killed process resumes at the last finished epoch and ends where the uninterrupted one would
    have; ``train_ds(epochs)`` draws the batches of exactly those epochs.  Returns the seconds."""
    # Last, so the backup is taken only after this epoch's history row is on disk.  Kept
    # until metrics.json is written, so a crash while saving or evaluating loses nothing.
    callbacks = [*callbacks, keras.callbacks.BackupAndRestore(str(backup), save_freq="epoch", delete_checkpoint=False)]
    start = max(first, _backed_up_epochs(backup))    # where BackupAndRestore will resume
    t0 = time.perf_counter()
    model.fit(train_ds(range(start, last)), validation_data=val_ds, initial_epoch=first, epochs=last,
              steps_per_epoch=steps, verbose=0, callbacks=callbacks)
    return time.perf_counter() - t0


def _backed_up_epochs(backup) -> int:
    """How many epochs the crash backup in ``backup`` holds (0 when none); fit resumes there."""
    latest = tf.train.latest_checkpoint(str(backup / "chief"))
    if latest is None:
        return 0
    return int(tf.train.load_checkpoint(latest).get_tensor("ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE")) + 1


def _check_best_record(run: RunFolder, monitor: str):
    """best.keras should be the epoch history.csv names as best; say so when it is not."""
    import csv
    with open(run.history, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get(monitor)]
    best = max(rows, key=lambda r: float(r[monitor]), default=None)   # the first of equal values, as saved
    record = read_json(run.best_record) if run.best_record.is_file() else {}
    if best is not None and record.get("epoch") != int(best["epoch"]):   # only after a non-deterministic re-run
        console.warn(f"best.keras holds epoch {record.get('epoch')} ({monitor} {record.get('value')}) but "
                     f"history.csv's best is epoch {best['epoch']}: a resumed epoch re-ran to another value "
                     "(non-deterministic ops); the saved best model is used")


def _fit_two_stages(model, spec, stage: _Stage) -> float:
    """Stage 1: only the new head trains, on a frozen backbone, at ``head_lr``.  Stage 2: the
    top ``unfreeze`` backbone blocks (or all) join at ``lr``, with BatchNorm kept in inference
    mode.  One history, one run folder; a crash resumes inside whichever stage it hit."""
    cfg, run = stage.cfg, stage.run
    blocks = spec.blocks(model)       # TrainConfig.resolved made sure the model has them
    head = {layer.name for layer in model.layers} - {name for block in blocks for name in block}
    n = len(blocks) if cfg.unfreeze == "all" else int(cfg.unfreeze)
    if n > len(blocks):
        raise CifarEdgeError(f"--unfreeze {n}: {cfg.model} has {len(blocks)} backbone blocks; use up to "
                             f"{len(blocks)} or 'all'")
    stage1_done = run.backup / "stage1_head.h5"
    seconds = 0.0
    if stage1_done.is_file():
        model.load_weights(str(stage1_done))
    else:
        for layer in model.layers:
            layer.trainable = layer.name in head
        stage1 = dataclasses.replace(cfg, lr=cfg.head_lr or 10 * cfg.lr, epochs=cfg.head_epochs)
        console.info(f"stage 1: the head only, {cfg.head_epochs} epochs at lr {stage1.lr:g}")
        seconds += stage.fit(model, stage1, 0, cfg.head_epochs, run.backup / "stage1", label=1)
        with atomic_path(stage1_done) as tmp:
            model.save_weights(str(tmp))
    trainable = head | {name for block in blocks[len(blocks) - n:] for name in block}
    for layer in model.layers:
        layer.trainable = layer.name in trainable and not isinstance(layer, keras.layers.BatchNormalization)
    console.info(f"stage 2: the head and the top {n} of {len(blocks)} backbone blocks (BatchNorm frozen), "
                 f"{cfg.epochs - cfg.head_epochs} epochs at lr {cfg.lr:g}")
    stage2 = dataclasses.replace(cfg, epochs=cfg.epochs - cfg.head_epochs)
    seconds += stage.fit(model, stage2, cfg.head_epochs, cfg.epochs, run.backup / "stage2", label=2)
    return seconds


def _prepare_run(cfg: TrainConfig, run: RunFolder, resume: bool, given: dict) -> TrainConfig:
    if resume:
        config = run.resumable("run", "Start a new run with another --out")
        run.refuse_unfinished_optimize()   # its settings are the parent's: train would fit a new model from scratch
        differ = _differing(cfg, config, given)
        if differ:
            raise CifarEdgeError(f"--resume continues {run.root} with the settings it was started with, but "
                                 f"{'; '.join(differ)} differ; drop them, or start a new run with another --out")
        saved = TrainConfig.from_dict(config["train"])
        console.info(f"resuming {run.root} (epochs {saved.epochs}, model {saved.model})")
        return saved.validate()
    return cfg


def _differing(requested: TrainConfig, config: dict, given: dict) -> list[str]:
    """``--flag value (the run's: saved)`` for each typed flag (``given``: {flag: path of its
    setting in the train config, e.g. "augment.cutout"}) whose value is not the run's saved one:
    a resume that ignored it would silently train something else than asked."""
    import json

    from ..fileio import to_json

    def at(tree, path):
        for key in path.split("."):
            tree = tree.get(key) if isinstance(tree, dict) else None
        return json.loads(to_json(tree))          # tuples and lists alike
    mine, theirs = requested.to_dict(), config["train"]
    out = []
    for flag, path in given.items():
        if at(mine, path) == at(theirs, path):
            continue
        if path == "data" and _absolute_data_path(requested.data) == config.get("data_path"):
            continue                                  # the same data, named from another directory
        saved = at(theirs, path)
        out.append(f"{flag} {at(mine, path)} (the run's: {'not set' if saved is None else saved})")
    return out


def _fit_to_data(requested: TrainConfig, cfg: TrainConfig, n_images: int) -> TrainConfig:
    """The recipe resolved again for this many training images (a short run on few images gets
    a smaller batch); says so when that changed the batch."""
    n_train = n_images * (cfg.kfold - 1) // cfg.kfold if cfg.kfold else int(n_images * (1 - cfg.val_split))
    fitted = requested.resolved(n_train=n_train)
    if fitted.batch_size != cfg.batch_size:
        steps = batches_per_epoch(n_train, fitted.batch_size) * fitted.epochs
        console.info(f"{n_train} training images x {fitted.epochs} epochs: batch {fitted.batch_size} and lr "
                     f"{fitted.lr:.3g} (recipe: {cfg.batch_size}, {cfg.lr:.3g}), so the run takes {steps} steps")
    return fitted


def train(cfg: TrainConfig, out_dir, resume: bool = False, dataset=None, given: dict | None = None) -> dict:
    """Train per ``cfg`` into ``out_dir`` and evaluate; returns the metrics dict, with the model
    name under ``"model"`` (a resume takes it from the run, not from ``cfg``).  A resume refuses
    the flags in ``given`` ({flag: its setting's path in TrainConfig}) whose value in ``cfg``
    differs from the run's saved settings.

    ``dataset`` may pass an already loaded :class:`Dataset` for ``cfg.data``.  One writer per
    run folder; a second is refused.
    """
    run = RunFolder(out_dir)
    requested = cfg
    if not resume:
        cfg = cfg.resolved()          # bad settings fail before anything touches the disk
    try:
        with run.new("cifar-edge train", "pass --resume to continue that run or choose a new --out",
                     resume=resume, resumable=True):
            try:
                return _train(cfg, run, resume, dataset, requested, given or {})
            except KeyboardInterrupt:
                raise Interrupted(run.resume_hint("train")) from None
    except (OSError, tf.errors.OpError) as e:   # said after the run kept what --resume continues
        if _disk_full(e):
            raise CifarEdgeError(f"the disk holding {run.root} is full ({_first_line(e)}); free some space "
                                 f"and continue with `cifar-edge train --out {run.root} --resume`") from None
        raise


def _disk_full(e: Exception) -> bool:
    import errno
    return getattr(e, "errno", None) == errno.ENOSPC or "No space left on device" in str(e)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]


def _train(cfg: TrainConfig, run: RunFolder, resume: bool, dataset, requested: TrainConfig, given: dict) -> dict:
    cfg = _prepare_run(cfg, run, resume, given)
    strategy = make_strategy(cfg.strategy)      # before anything initialises TF devices
    accel = accelerate(cfg.precision)
    ds = dataset or load_dataset(cfg.data, labels=cfg.labels, verify=cfg.verify,
                                 synthetic_classes=cfg.synthetic_classes, synthetic_size=cfg.synthetic_size,
                                 seed=cfg.seed)
    if ds.synthetic:
        console.warn(f"training on {ds.source}")
    x, y = limit_images(ds.x_train, ds.y_train, cfg.limit, cfg.seed)
    spec = get_model_spec(cfg.model)
    _check_trainable(ds, x, y, cfg)
    if not resume:
        cfg = _fit_to_data(requested, cfg, len(x))
        _describe_conversion(ds, x, cfg.input_size, cfg.model)
        probe = spec.build(ds.num_classes, cfg.input_size, **cfg.model_options)
        write_json(run.config, {
            "train": cfg.to_dict(), "data_path": _absolute_data_path(cfg.data), "dataset": ds.summary(),
            "class_names": ds.class_names, "coarse_names": ds.coarse_names,
            "fine_to_coarse": None if ds.fine_to_coarse is None else ds.fine_to_coarse.tolist(),
            "normalization": spec.normalization.to_dict(), "input_size": cfg.input_size,
            "params": int(probe.count_params()), "flops": count_flops(probe),
            "device": accel, "versions": versions(),
            "strategy": {"name": cfg.strategy, "class": type(strategy).__name__,
                         "replicas": strategy.num_replicas_in_sync}})
        write_text(run.labels, "\n".join(ds.class_names) + "\n")
        del probe
    # after the probe model: its initialisers must not shift the run's draws
    seed_everything(cfg.seed, deterministic=not accel["xla"])
    console.info(f"{cfg.model} on {ds.name} ({len(x)} train images, {ds.num_classes} classes) -> {run.root}")
    if cfg.kfold:
        metrics = _train_kfold(cfg, run, x, y, ds.class_names, strategy, accel)
    else:
        x_tr, y_tr, x_va, y_va = train_val(x, y, cfg.val_split, cfg.seed)
        if resume and run.model_keras.is_file() and run.model_h5.is_file():
            model, seconds = load_model(run.require_model()), 0.0   # crashed after training: just evaluate
        else:
            model, seconds = fit(cfg, run, x_tr, y_tr, x_va, y_va, ds.num_classes, strategy, accel)
            for path in (run.model_h5, run.model_keras):
                with atomic_path(path) as tmp:
                    save_model(model, tmp)
        metrics = evaluate_model(model, ds, spec.normalization, cfg, run, x_va, y_va)
        metrics.update(training_throughput(run, seconds, len(x_tr)))
    metrics["model"] = cfg.model
    write_json(run.metrics, metrics)
    shutil.rmtree(run.backup, ignore_errors=True)   # finished: the crash backup has done its job
    if cfg.mlflow:
        from .tracking import log_to_mlflow
        log_to_mlflow(run, cfg, metrics)
    return metrics


def _check_trainable(ds, x, y, cfg: TrainConfig):
    """Refuse, before anything is written, data that cannot make or score a classifier."""
    if len(y) == 0:
        raise CifarEdgeError(f"{ds.name} holds no training images (a test split only); pass --data with a training "
                             "split (x_train/y_train)")
    present = np.unique(y)
    if len(present) < 2:
        raise CifarEdgeError(f"{ds.name}: every training image has the label '{ds.class_names[int(present[0])]}' "
                             "(one class); a classifier needs at least two classes: check the labels")
    if cfg.kfold:
        return
    x_val = train_val(x, y, cfg.val_split, cfg.seed)[2]
    if ds.x_test is None and (x_val is None or len(x_val) == 0):
        raise CifarEdgeError(f"{ds.name} has no test split and --val-split {cfg.val_split:g} of {len(x)} images "
                             "holds none back: nothing to evaluate on; use more images, a larger --val-split, "
                             "or data with a test split")


def _describe_conversion(ds, x, input_size, model: str):
    """Say what was done to images that are not what the model family expects."""
    h, w = x.shape[1:3]
    if x.size and all(np.array_equal(x[..., 0], x[..., c]) for c in (1, 2)):
        console.warn(f"{ds.name}: the images are grayscale; their one channel is repeated as RGB")
    if resize_target(x, input_size) is not None:
        console.warn(f"{ds.name}: the images are {w}x{h}; {model} resizes them to {input_size}x{input_size} "
                     "(bilinear) for training and evaluation")


def _absolute_data_path(data):
    """--data as an absolute path when it names a file or folder, so later commands find it from
    anywhere; None for dataset names (cifar10, synthetic ...)."""
    from pathlib import Path
    if data and Path(data).expanduser().exists():
        return str(Path(data).expanduser().resolve())
    return None


def training_throughput(run: RunFolder, seconds: float, n_train: int) -> dict:
    import csv
    with open(run.history, newline="") as f:
        rows = list(csv.DictReader(f))
    train_s = sum(float(r["train_seconds"]) for r in rows)
    return {"epochs_run": len(rows), "train_seconds": round(train_s, 1), "fit_seconds_this_session": round(seconds, 1),
            "images_per_second": round(n_train * len(rows) / train_s, 1) if train_s else None}


def evaluate_model(model, ds, norm, cfg, run: RunFolder, x_va, y_va) -> dict:
    """The run's metrics.json figures: test split (val when none), val beside it; ``norm`` the model's input normalization."""
    from ..evaluate import evaluate_model
    size = resize_target(ds.x_train, cfg.input_size)
    common = dict(class_names=ds.class_names, norm=norm, image_size=size,
                  fine_to_coarse=ds.fine_to_coarse, coarse_names=ds.coarse_names)
    out = {}
    if x_va is not None and len(x_va):
        val = evaluate_model(model, x_va, y_va, out_dir=run.root / "val", history_csv=None, split="val", **common)
        out["val"] = {k: val[k] for k in ("top1", "top5", "loss", "n")}
    tta = bool(cfg.tta)     # the headline stays single view (what an app runs); TTA goes beside it
    if ds.x_test is not None:
        main = evaluate_model(model, ds.x_test, ds.y_test, out_dir=run.root, history_csv=run.history,
                              split="test", tta=tta, **common)
    elif x_va is not None and len(x_va):
        main = evaluate_model(model, x_va, y_va, out_dir=run.root, history_csv=run.history, split="val", tta=tta,
                              **common)
    else:
        raise CifarEdgeError("no test split and --val-split 0: nothing to evaluate on; set --val-split > 0")
    out.update(main)
    out["synthetic_data"] = ds.synthetic
    return out


def _train_kfold(cfg: TrainConfig, run: RunFolder, x, y, class_names, strategy, accel) -> dict:
    """K stratified folds, each its own resumable sub-run; reports mean +- std of top-1."""
    from ..evaluate import evaluate_model
    spec = get_model_spec(cfg.model)
    size = resize_target(x, cfg.input_size)
    folds = []
    for k, (tr, va) in enumerate(stratified_kfold(y, cfg.kfold, cfg.seed), start=1):
        sub = RunFolder(run.root / f"fold_{k}")
        if sub.metrics.is_file():
            folds.append(read_json(sub.metrics))
            continue
        sub.root.mkdir(parents=True, exist_ok=True)
        if not sub.config.is_file():   # each fold is a usable run folder (predict/evaluate take it)
            write_json(sub.config, {**read_json(run.config), "fold": k})
        console.info(f"fold {k}/{cfg.kfold}: {len(tr)} train, {len(va)} validation")
        seed_everything(cfg.seed + k, deterministic=not accel["xla"])
        model, seconds = fit(cfg, sub, x[tr], y[tr], x[va], y[va], len(class_names), strategy, accel)
        with atomic_path(sub.model_keras) as tmp:
            save_model(model, tmp)
        m = evaluate_model(model, x[va], y[va], class_names=class_names,
                           norm=spec.normalization, image_size=size, out_dir=sub.root,
                           history_csv=sub.history, split=f"fold {k} validation")
        m = {key: m[key] for key in ("top1", "top5", "loss", "n")}
        m.update(training_throughput(sub, seconds, len(tr)))
        write_json(sub.metrics, m)
        shutil.rmtree(sub.backup, ignore_errors=True)
        folds.append(m)
    top1 = np.array([f["top1"] for f in folds])
    top5 = np.array([f["top5"] for f in folds])
    return {"kfold": cfg.kfold, "top1": float(top1.mean()), "top1_std": float(top1.std(ddof=1)),
            "top5": float(top5.mean()), "top5_std": float(top5.std(ddof=1)), "folds": folds,
            "split": "k-fold validation"}
