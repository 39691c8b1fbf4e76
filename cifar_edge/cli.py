"""The `cifar-edge` command line: parse, call the library, print.  User mistakes
(CifarEdgeError) become one line on stderr and exit code 2, never a traceback."""
from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand

from .errors import CifarEdgeError
from .fileio import to_json
from .formats import BACKENDS, FORMATS

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Train a CIFAR classifier and take it all the way to a file a phone can run.")
data_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Inspect and verify datasets.")
app.add_typer(data_app, name="data")
weights_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Pretrained weights for the transfer models.")
app.add_typer(weights_app, name="weights")
stdout = Console(highlight=False, soft_wrap=True)   # paths and commands stay on one line when piped


@app.callback()
def _global_options(
    verbose: Annotated[bool, typer.Option("--verbose", help="Also show TensorFlow's, absl's and the runtimes' own log "
                                          "lines (or set CIFAR_EDGE_VERBOSE=1).")] = False,
    trust_model: Annotated[bool, typer.Option("--trust-model", help="Let model files run the Python code they carry "
                                              "(Keras Lambda layers). Off: such a file is refused, never run.")] = False,
):
    """Train a CIFAR classifier and take it all the way to a file a phone can run."""
    from . import console
    if verbose:
        os.environ[console.VERBOSE_ENV] = "1"
    console.keep_native_stderr_away()     # before anything native loads
    if trust_model:
        from .runs import trust_model_code
        trust_model_code(True)


def friendly(fn):
    """Run a command; turn our errors (and Ctrl-C) into one clear line and a non-zero exit."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CifarEdgeError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        except OSError as e:   # unwritable --out, a file where a folder should be, disk full ...
            where = f" ({e.filename})" if e.filename else ""
            typer.echo(f"error: {e.strerror or e}{where}; check the path, its permissions and free space", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as e:   # train and optimize say what they kept (errors.Interrupted)
            typer.echo(f"interrupted; {e}" if str(e) else "interrupted", err=True)
            raise typer.Exit(130) from None
    return wrapper


def _typed(ctx: typer.Context) -> set:
    """The parameters the user typed (not left at their defaults): what a --resume must check
    against the run's saved settings instead of ignoring."""
    return {name for name in [*ctx.params, *ctx.meta.get(MODEL_OPTIONS, ())]   # by name: typer brings its own click
            if getattr(ctx.get_parameter_source(name), "name", None) in ("COMMANDLINE", "ENVIRONMENT")}


def _metrics_table(title: str, metrics: dict) -> Table:
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for key in ("split", "n", "top1", "top1_std", "top5", "loss", "top1_tta", "top5_tta", "tta_views", "superclass_top1",
                "macro_f1", "epochs_run", "train_seconds", "images_per_second"):
        if metrics.get(key) is not None:
            v = metrics[key]
            t.add_row(key, f"{v:.4f}" if isinstance(v, float) and key not in ("train_seconds", "images_per_second")
                      else str(v))
    return t


def _print_table(table: Table):
    """A rich table on a terminal; piped or redirected, tab-separated lines (a header row, then
    one line per row, nothing cut at 80 columns), so grep, cut and sort find whole rows."""
    if stdout.is_terminal:
        stdout.print(table)
        return
    plain = lambda cell: " ".join(str(cell).split())      # noqa: E731 - no tabs or newlines inside a field
    lines = ["\t".join(plain(c.header) for c in table.columns)]
    lines += ["\t".join(plain(c) for c in row) for row in zip(*(c.cells for c in table.columns))]
    typer.echo("\n".join(lines))


JSON_HELP = "Print one JSON document to stdout instead of tables (progress stays on stderr)."
MARKDOWN_HELP = "Print the table as Markdown: the README's copy, which a test keeps equal to this output."


def _markdown(table: Table, leave_out=()) -> str:
    """A rich table as a Markdown table (``|`` inside a cell escaped), without the columns named in
    ``leave_out``: the README holds this text, so it must not depend on the machine."""
    columns = [c for c in table.columns if c.header not in leave_out]
    cell = lambda v: " ".join(str(v).split()).replace("|", "\\|")      # noqa: E731
    lines = ["| " + " | ".join(cell(c.header) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in zip(*(c.cells for c in columns))]
    return "\n".join(lines)


@contextlib.contextmanager
def _results_only(as_json: bool):
    """With --json, stdout carries the JSON document alone: whatever the libraries print while
    the command runs (Python prints, and C++ writes to descriptor 1) goes to stderr instead."""
    if not as_json:
        yield
        return
    own = sys.stdout is sys.__stdout__          # the process's own stdout, not a test runner's capture
    sys.stdout.flush()
    saved = os.dup(1) if own else None
    if own:
        os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if own:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def _print_json(doc):
    """One strict JSON document: NaN and infinities (a metric with nothing to measure) become null."""
    typer.echo(to_json(doc, indent=2))


class _TrainCommand(TyperCommand):
    """`train`, with a flag for every option a model family declares (models/registry.py),
    added when the command is parsed: the families (and TensorFlow) load only for `train`."""
    family_options: list = []

    def parse_args(self, ctx, args):
        if not _TrainCommand.family_options:
            from .models import model_options
            _TrainCommand.family_options = model_options()
        names = {o.name for o in _TrainCommand.family_options}
        if names and not any(p.name in names for p in self.params):
            at = next(i for i, p in enumerate(self.params) if p.name == "input_size") + 1
            self.params[at:at] = _family_flags(_TrainCommand.family_options)
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        """Hand the model options to `train` apart from its own parameters (ctx.meta)."""
        names = {o.name for o in _TrainCommand.family_options}
        ctx.meta[MODEL_OPTIONS] = {name: ctx.params.pop(name) for name in list(ctx.params) if name in names}
        return super().invoke(ctx)


MODEL_OPTIONS = "cifar_edge.model_options"


def _family_flags(options) -> list:
    """Typer's own parameters for the declared model options, each help naming the models that
    take it: typer reads them off a function whose signature lists them."""
    import inspect

    from .models.registry import option_owners

    def annotation(o):
        flag = f"{o.cli_flag}/--no-{o.cli_flag[2:]}" if o.kind is bool else o.cli_flag
        kind = o.kind if o.kind in (bool, int, float) else str
        return Annotated[Optional[kind], typer.Option(flag, help=f"{', '.join(option_owners(o.name))}: {o.help}")]

    def family_options(**options):
        """The declared model options."""
    hints = {o.name: annotation(o) for o in options}
    family_options.__annotations__ = hints
    family_options.__signature__ = inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=hint)
         for name, hint in hints.items()])
    holder = typer.Typer(add_completion=False)
    holder.command()(family_options)
    return typer.main.get_command(holder).params


@app.command(cls=_TrainCommand)
@friendly
def train(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Option(help="Model name from `cifar-edge models` [default: the one its family marks default, airbench's CNN].")] = None,
    data: Annotated[str, typer.Option(help="cifar100, cifar10, synthetic, or a path (official folder/.tar.gz, .npz, image folder).")] = "cifar100",
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 10,
    out: Annotated[Path, typer.Option(help="Run folder to create (or resume).")] = Path("runs/latest"),
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same CPU: same metrics).")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint (with its saved settings).")] = False,
    labels: Annotated[str, typer.Option(help="CIFAR-100 labels: fine (100) or coarse (20).")] = "fine",
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size [default: model recipe].")] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="sgd, sgd-l2 (torch-style L2 through the momentum, as airbench) or adamw [default: model recipe].")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate [default: model recipe].")] = None,
    momentum: Annotated[Optional[float], typer.Option(help="SGD momentum.")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="Weight decay: decoupled for sgd and adamw (BN/bias excluded); for sgd-l2 an L2 term on every variable, through the momentum.")] = None,
    schedule: Annotated[Optional[str], typer.Option(help="onecycle, triangle, cosine, exponential, plateau or constant.")] = None,
    warmup_epochs: Annotated[Optional[float], typer.Option(help="Warm-up epochs (<1: fraction of the run).")] = None,
    label_smoothing: Annotated[Optional[float], typer.Option(help="Label smoothing.")] = None,
    whiten: Annotated[Optional[bool], typer.Option("--whiten/--no-whiten", help="Patch-whitening init of a 2x2 stem (airbench's) [default: model recipe].")] = None,
    lookahead: Annotated[Optional[bool], typer.Option("--lookahead/--no-lookahead", help="sgd-l2: airbench's lookahead every 5 steps, BatchNorm statistics included [default: model recipe].")] = None,
    bn_bias_lr: Annotated[Optional[float], typer.Option(help="sgd-l2: learning-rate multiplier of BatchNorm biases [default: model recipe; airbench's 64].")] = None,
    logit_scale: Annotated[Optional[float], typer.Option(help="sgd-l2: the head trains as if its logits were multiplied by this [default: model recipe; airbench's 1/9].")] = None,
    alternate_flip: Annotated[Optional[bool], typer.Option("--alternate-flip/--random-flip", help="Mirror each image every other epoch (airbench) instead of at random [default: model recipe].")] = None,
    tta: Annotated[Optional[bool], typer.Option("--tta/--no-tta", help="Also score 6-view test-time augmentation into metrics.json [default: model recipe].")] = None,
    early_stopping: Annotated[int, typer.Option(help="Stop after N epochs without improvement (0: off).")] = 0,
    val_split: Annotated[float, typer.Option(help="Stratified validation fraction of the training set.")] = 0.1,
    input_size: Annotated[Optional[int], typer.Option(help="Input resolution [default: model's].")] = None,
    head_epochs: Annotated[int, typer.Option(help="Two-stage fine-tuning: the first N of --epochs train only the new head on a frozen backbone.")] = 0,
    head_lr: Annotated[Optional[float], typer.Option(help="Stage-1 learning rate [default: 10 x --lr].")] = None,
    unfreeze: Annotated[str, typer.Option(help="Stage 2: 'all' backbone blocks, or how many from the top (BatchNorm stays frozen).")] = "all",
    flip_h: Annotated[bool, typer.Option("--flip-h/--no-flip-h", help="Random horizontal flips.")] = True,
    flip_v: Annotated[bool, typer.Option("--flip-v/--no-flip-v", help="Random vertical flips.")] = False,
    translate: Annotated[int, typer.Option(help="Pad-and-random-crop by up to N pixels.")] = 2,
    rotation: Annotated[float, typer.Option(help="Random rotation, max degrees.")] = 0.0,
    zoom: Annotated[float, typer.Option(help="Random zoom, max fraction.")] = 0.0,
    contrast: Annotated[float, typer.Option(help="Random contrast, max fraction.")] = 0.0,
    cutout: Annotated[int, typer.Option(help="Cutout square side in pixels (0: off).")] = 0,
    mixup: Annotated[float, typer.Option(help="MixUp Beta alpha (0: off).")] = 0.0,
    cutmix: Annotated[float, typer.Option(help="CutMix Beta alpha (0: off).")] = 0.0,
    strategy: Annotated[str, typer.Option(help="auto, default, mirrored or multiworker (tf.distribute).")] = "auto",
    ray_workers: Annotated[Optional[int], typer.Option(help="Train on N Ray Train workers (multiworker strategy; rank 0 writes the run folder; extra: pip install -e '.[ray]').")] = None,
    ray_address: Annotated[Optional[str], typer.Option(help="With --ray-workers: the Ray cluster to join (ray://host:10001 or host:6379) [default: a new local one].")] = None,
    precision: Annotated[str, typer.Option(help="auto (mixed float16 on GPU, float32 on CPU), float32, or bf16 (bfloat16 compute; faster on CPUs with AVX512-BF16). Saved models are float32 either way.")] = "auto",
    kfold: Annotated[int, typer.Option(help="Train K stratified folds and report mean ± std.")] = 0,
    mlflow: Annotated[bool, typer.Option(help="Also log to a local MLflow store (extra: cifar-edge[mlflow]).")] = False,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="MD5-check official CIFAR files.")] = True,
    limit: Annotated[Optional[int], typer.Option(help="Use only N training images (stratified).")] = None,
    synthetic_classes: Annotated[Optional[int], typer.Option(help="Classes of the synthetic data.")] = None,
):
    """Train a model into a run folder (resumable), then evaluate it."""
    from .data import AugmentConfig
    from .train import TrainConfig
    from .train import train as run_training

    given_options = ctx.meta[MODEL_OPTIONS]
    options = {o.name: o.value(given_options[o.name]) for o in _TrainCommand.family_options
               if given_options.get(o.name) is not None}
    cfg = TrainConfig(
        model=model, data=data, labels=labels, epochs=epochs, seed=seed, val_split=val_split, batch_size=batch_size,
        optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay, schedule=schedule,
        warmup_epochs=warmup_epochs, label_smoothing=label_smoothing, whiten=whiten, lookahead=lookahead,
        bn_bias_lr=bn_bias_lr, logit_scale=logit_scale, alternate_flip=alternate_flip, tta=tta,
        early_stopping=early_stopping,
        input_size=input_size, model_options=options, strategy=strategy, precision=precision, kfold=kfold, mlflow=mlflow,
        verify=verify, limit=limit, synthetic_classes=synthetic_classes, head_epochs=head_epochs, head_lr=head_lr,
        unfreeze=unfreeze,
        augment=AugmentConfig(flip_h=flip_h, flip_v=flip_v, translate=translate, rotation=rotation, zoom=zoom,
                              contrast=contrast, cutout=cutout, mixup=mixup, cutmix=cutmix))
    given = _train_flags(_typed(ctx) - {"out", "resume", "ray_workers", "ray_address"})
    if ray_workers is not None:
        from .train.ray_train import train_on_ray
        metrics = train_on_ray(cfg, out, ray_workers, ray_address, resume=resume, given=given)
    elif ray_address is not None:
        raise CifarEdgeError("--ray-address needs --ray-workers N: how many workers to start there")
    else:
        metrics = run_training(cfg, out, resume=resume, given=given)
    _print_result(metrics["model"], out, metrics)     # a resumed run's own model, not this command's default


def _train_flags(names) -> dict:
    """{--flag: the path of its setting in TrainConfig} for these `train` parameters."""
    import dataclasses

    from .data import AugmentConfig
    from .train import TrainConfig
    top, augment = {f.name for f in dataclasses.fields(TrainConfig)}, {f.name for f in dataclasses.fields(AugmentConfig)}
    family = {o.name: o.cli_flag for o in _TrainCommand.family_options}
    return {family.get(name, "--" + name.replace("_", "-")): name if name in top else f"augment.{name}"
            if name in augment else f"model_options.{name}" for name in sorted(names)}


def _floats(flag: str, value: Optional[str]):
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise CifarEdgeError(f"--{flag} {value!r} is invalid; give three numbers in pixel units, e.g. 125.3,123.0,113.9") from None


@app.command("import")
@friendly
def import_(
    model: Annotated[Path, typer.Argument(help="The model: a tf_keras .h5/.keras, a Keras SavedModel folder, a Keras 3 "
                                               ".keras/.h5, a plain TF SavedModel folder (tf.saved_model.save, Keras 3's "
                                               "model.export), an .onnx (external data beside it), or a PyTorch "
                                               "ExportedProgram .pt2 (torch.export.save; needs pip install -e '.[torch]').")],
    data: Annotated[str, typer.Option(help="The data it classifies: cifar10, cifar100, or a path (as train takes); "
                                           "its test split is evaluated, its training images calibrate int8.")],
    out: Annotated[Path, typer.Option(help="New run folder to create.")],
    labels: Annotated[Optional[Path], typer.Option(help="Class names, one per line in output order [default: DATA's].")] = None,
    input_size: Annotated[Optional[int], typer.Option(help="Input side in pixels, for a model built for any size.")] = None,
    mean: Annotated[Optional[str], typer.Option(help="Per-channel mean, pixel units 0..255, when the model does not "
                                                     "normalize itself: R,G,B.")] = None,
    std: Annotated[Optional[str], typer.Option(help="Per-channel std, pixel units: R,G,B.")] = None,
    layout: Annotated[Optional[str], typer.Option(help="nhwc or nchw [default: from the input shape].")] = None,
    custom_objects: Annotated[Optional[str], typer.Option(help="A Python module (name or .py file) defining the "
                                                                "model's custom layer classes; it is imported, so its code runs.")] = None,
    trust_model: Annotated[bool, typer.Option("--trust-model", help="Let the model file run the code it carries "
                                              "(Keras Lambda layers); only for files whose author you trust.")] = False,
):
    """Import a model made elsewhere into a run folder: tf_keras, Keras 3, ONNX or PyTorch."""
    from .importer import import_model
    metrics = import_model(model, data, out, labels=labels, input_size=input_size, mean=_floats("mean", mean),
                           std=_floats("std", std), layout=layout, custom_objects=custom_objects, trust_model=trust_model)
    _print_table(_metrics_table(f"{metrics['model']}: {out}", metrics))
    stdout.print(f"run folder: {out}  (source/, config.json, metrics.json)")
    stdout.print(f"next: cifar-edge export {out} --all")


def _print_result(model, run_dir, metrics):
    _print_table(_metrics_table(f"{model}: {run_dir}", metrics))
    stdout.print(f"run folder: {run_dir}  (metrics.json, history.csv, model.keras, model.h5, plots)")


@app.command()
@friendly
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder from `cifar-edge train`.")],
    data: Annotated[Optional[str], typer.Option(help="Evaluate on this source's test split [default: the run's].")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N test images.")] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Also score airbench's 6-view test-time augmentation "
                                      "(flip x {0, +-1 px translate}), reported as top1_tta/top5_tta "
                                      "beside the plain figures.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
):
    """Evaluate a trained run: top-1/top-5, per-class report, confusion matrix, plots."""
    from .evaluate_run import evaluate_run
    with _results_only(as_json):
        metrics, where = evaluate_run(run, data=data, limit=limit, tta=tta)
    if as_json:
        _print_json({"run": str(run), "written_to": str(where), "metrics": metrics})
        return
    _print_table(_metrics_table(f"evaluation of {run}", metrics))
    stdout.print(f"written to {where}")


@app.command()
@friendly
def predict(
    run: Annotated[Path, typer.Argument(help="Run folder from `cifar-edge train`.")],
    images: Annotated[List[Path], typer.Argument(help="Image files (any size or mode).")],
    top: Annotated[int, typer.Option(min=1, help="How many classes to show.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
):
    """Classify image files; prints the top-5 classes with probabilities."""
    from .inference import predict_files
    from .runs import load_run
    failures = {}                     # an unreadable image must not hide the others' results
    with _results_only(as_json):
        results = predict_files(load_run(run), images, top=top, failures=failures)
    if as_json:
        _print_json(results)
    else:
        for r in results:
            t = Table(title=r["image"])
            t.add_column("rank", justify="right")
            t.add_column("class")
            t.add_column("probability", justify="right")
            for i, p in enumerate(r["top"], start=1):
                t.add_row(str(i), p["class"], f"{p['probability']:.3f}")
            _print_table(t)
    for message in failures.values():
        typer.echo(f"error: {message}", err=True)
    if failures:
        raise typer.Exit(2)


@app.command()
@friendly
def explain(
    run: Annotated[Path, typer.Argument(help="Run folder from `cifar-edge train`.")],
    images: Annotated[List[Path], typer.Argument(help="Image files to explain.")],
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Where to write heatmaps [default: RUN/explain].")] = None,
):
    """Grad-CAM heatmaps: which pixels drove each prediction."""
    from .evaluate import explain_images
    from .runs import load_run
    loaded = load_run(run)
    results = explain_images(loaded.require_keras("Grad-CAM (explain)"), [str(p) for p in images], loaded.norm, loaded.input_size,
                             loaded.class_names, out_dir or loaded.run.root / "explain")
    for r in results:
        stdout.print(f"{r['image']}: {r['top1']} ({r['confidence']:.1%}) -> {r['path']}")


@app.command()
@friendly
def optimize(
    ctx: typer.Context,
    run: Annotated[Optional[Path], typer.Argument(help="Trained run folder, or an imported tf_keras one, to optimize (with --resume: optional).")] = None,
    qat: Annotated[bool, typer.Option("--qat", help="Quantization-aware training (then export --int8).")] = False,
    prune: Annotated[Optional[float], typer.Option(help="Magnitude pruning to this sparsity, e.g. 0.5.")] = None,
    pqat: Annotated[bool, typer.Option("--pqat", help="Pruning-preserving QAT of a pruned run.")] = False,
    cluster: Annotated[Optional[int], typer.Option(help="Weight clustering to N values per kernel, e.g. 16.")] = None,
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs.")] = 2,
    lr: Annotated[Optional[float], typer.Option(help="Fine-tuning learning rate [default: the run's / 10; / 100 to cluster; QAT: / the model recipe's qat_lr_divisor where it sets one, for a run trained with its optimizer (airbench's: 500); an imported model: 1e-4, 1e-5 to cluster].")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size [default: the run's; an imported model: 64].")] = None,
    frequency: Annotated[Optional[int], typer.Option(help="Pruning: steps between mask updates [default: fitted to the run].")] = None,
    max_drop: Annotated[float, typer.Option(help="Fail (keeping nothing) when the optimized model's top-1 ends more than this many points below its parent's.")] = 10.0,
    limit: Annotated[Optional[int], typer.Option(help="Fine-tune on only N training images (stratified).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="New run folder [default: RUN-<method>].")] = None,
    resume: Annotated[bool, typer.Option(help="Finish the interrupted optimize run in --out with its saved settings.")] = False,
):
    """Compress a trained run (QAT, pruning, PQAT, clustering) into a new run folder."""
    from .compress import OptimizeConfig, optimize_run
    chosen = [m for m, on in (("qat", qat), ("prune", prune is not None), ("pqat", pqat),
                              ("cluster", cluster is not None)) if on]
    if resume and len(chosen) < 2:       # settings from the run; the ones typed must agree with them
        if out is None:
            raise CifarEdgeError("--resume needs --out: the folder of the interrupted optimize run")
        given = {name: ctx.params[name] for name in _typed(ctx) - {"run", "out", "resume", "qat", "prune", "pqat",
                                                                    "cluster"}}
        given.update({"method": chosen[0]} if chosen else {})
        given.update({"sparsity": prune} if prune is not None else {})
        given.update({"clusters": cluster} if cluster is not None else {})
        metrics = optimize_run(run, out, resume=True, given=given)
        title = f"{metrics['method']} of {metrics['parent']}"
    else:
        if run is None:
            raise CifarEdgeError("name the trained run to optimize (cifar-edge optimize RUN --prune 0.5 ...), or "
                                 "pass --resume --out RUN to finish an interrupted one")
        if len(chosen) != 1:
            raise CifarEdgeError(f"choose exactly one of --qat, --prune S, --pqat, --cluster N (got "
                                 f"{', '.join('--' + m for m in chosen) or 'none'}); chain runs to combine them")
        cfg = OptimizeConfig(method=chosen[0], epochs=epochs, sparsity=prune if prune is not None else 0.5,
                             clusters=cluster if cluster is not None else 16, lr=lr, batch_size=batch_size,
                             limit=limit, seed=seed, frequency=frequency, max_drop=max_drop)
        out = out or run.with_name(f"{run.name}-{chosen[0]}")
        metrics = optimize_run(run, out, cfg)
        title = f"{chosen[0]} of {run}"
    _print_result(title, out, metrics)
    stdout.print(f"next: cifar-edge export {out} --format tflite --int8")


def _export_table(title: str, entries: list) -> Table:
    first = entries[0]["parity"]
    t = Table(title=f"{title}\n(checked on {first['images']} {first['split']} images; Keras top-1 "
                    f"{first['keras_top1']:.2%})")
    for col in ("variant", "MB", "gzip MB", "agree", "max |diff|", "top-1", "drop (McNemar p)", "notes"):
        t.add_column(col, justify="left" if col in ("variant", "notes") else "right")
    for e in entries:
        p, gate = e["parity"], e["parity"].get("gate")
        notes = list(e.get("notes") or [])
        if e.get("repair"):
            notes.append(f"repair kept in float: {', '.join(e['options']['float_layers']) or e['options']['quantization']}")
        t.add_row(e["variant"], f"{e['size_bytes'] / 1e6:.2f}", f"{e['gzip_bytes'] / 1e6:.2f}",
                  f"{p['top1_agreement']:.2%}", f"{p['max_abs_diff']:.2g}", f"{e['accuracy'][p['split']]['top1']:.2%}",
                  "-" if gate is None else f"{gate['drop_points']:+.2f} ({gate['p_value']:.2g})", "; ".join(notes))
    return t


@app.command()
@friendly
def export(
    run: Annotated[Path, typer.Argument(help="Run folder (from train or optimize).")],
    format: Annotated[Optional[str], typer.Option("--format", "-f", help=f"{', '.join(FORMATS)} (see `cifar-edge formats`).")] = None,
    int8: Annotated[bool, typer.Option(help="Full-integer int8 (calibrated on training images).")] = False,
    fp16: Annotated[bool, typer.Option(help="TFLite float16 weights.")] = False,
    dynamic: Annotated[bool, typer.Option(help="TFLite dynamic-range (int8 weights, float activations).")] = False,
    io: Annotated[str, typer.Option(help="int8 TFLite input/output type: float, int8 or uint8.")] = "float",
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    per_tensor: Annotated[bool, typer.Option(help="int8 weights per tensor instead of per channel.")] = False,
    from_tflite: Annotated[bool, typer.Option(help="ONNX int8: convert the int8 .tflite (QDQ) instead of quantizing in onnxruntime.")] = False,
    int16x8: Annotated[bool, typer.Option("--int16x8", help="TFLite: 16-bit activations, 8-bit weights (calibrated).")] = False,
    float_layers: Annotated[Optional[str], typer.Option(help="int8 TFLite or ONNX: comma-separated layers to keep in float, as `cifar-edge diagnose` and the repair log name them (layer or node names).")] = None,
    max_drop: Annotated[float, typer.Option(help="Quantized files: the top-1 points they may lose against the Keras model (beyond McNemar noise, p < 0.05) before export refuses them.")] = 1.0,
    repair: Annotated[bool, typer.Option("--repair/--no-repair", help="int8 TFLite or ONNX missing --max-drop: search for a file within it (worst layers kept in float, then int16x8).")] = True,
    variant: Annotated[Optional[List[str]], typer.Option(help="A named variant from `cifar-edge formats` (repeatable).")] = None,
    all_variants: Annotated[bool, typer.Option("--all", help="Every variant of the format table.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Output folder [default: RUN/export].")] = None,
    android: Annotated[Optional[Path], typer.Option(help="Also copy model.tflite + labels.txt into this Android assets folder.")] = None,
    calibration_images: Annotated[int, typer.Option(help="Training images for int8 calibration.")] = 500,
    check_images: Annotated[int, typer.Option(help="Held-out images for the parity check.")] = 1000,
    min_agreement: Annotated[float, typer.Option(help="Fail a float/fp16 export below this top-1 agreement with Keras.")] = 0.99,
    min_agreement_int8: Annotated[float, typer.Option(help="Floor for quantized files: below this top-1 agreement with Keras a file is broken, whatever its accuracy.")] = 0.50,
    data: Annotated[Optional[str], typer.Option(help="Data source for calibration and checks [default: the run's].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
):
    """Export a run's model (TFLite, ONNX, Keras), checked against Keras, with an export.json manifest."""
    from .export import ExportConfig, ExportOptions, export_run, quantization_from_flags, resolve_variants
    quantization = quantization_from_flags(int8=int8, fp16=fp16, dynamic=dynamic, int16x8=int16x8)
    opts = ExportOptions(quantization=quantization, io=io, opset=opset, per_channel=not per_tensor,
                         from_tflite=from_tflite,
                         float_layers=tuple(n.strip() for n in (float_layers or "").split(",") if n.strip()))
    chosen = resolve_variants(variant, format, opts, all_variants)
    cfg = ExportConfig(calibration_images=calibration_images, check_images=check_images,
                       min_agreement=min_agreement, min_agreement_int8=min_agreement_int8, data=data,
                       max_drop=max_drop, repair=repair)
    failures = {} if len(chosen) > 1 else None      # several variants: go on past a failing one
    with _results_only(as_json):
        entries = export_run(run, chosen, out, cfg, command=" ".join(["cifar-edge", *sys.argv[1:]]),
                             android_dir=android, failures=failures)
    from .runs import MANIFEST, RunFolder
    manifest = Path(out) / MANIFEST if out else RunFolder(run).manifest
    if as_json:
        _print_json({"run": str(run), "manifest": str(manifest), "entries": entries, "failures": failures or {}})
    else:
        if entries:
            _print_table(_export_table(f"exports of {run}", entries))
        stdout.print(f"manifest: {manifest}")
    if failures:       # each reason was printed as it happened
        typer.echo(f"error: {len(failures)} of {len(chosen)} variants failed ({', '.join(failures)}); their reasons "
                   "and figures are in export.json", err=True)
        raise typer.Exit(1)


@app.command()
@friendly
def diagnose(
    run: Annotated[Path, typer.Argument(help="Run folder (from train or optimize).")],
    variant: Annotated[Optional[str], typer.Option(help="The int8 variant to diagnose [default: tflite-int8, the first format's that can].")] = None,
    images: Annotated[int, typer.Option(help="Held-out (and calibration) images the per-layer errors are averaged over.")] = 200,
    top: Annotated[int, typer.Option(min=1, help="Layers to print.")] = 15,
    calibration_images: Annotated[int, typer.Option(help="Training images for int8 calibration (as export).")] = 500,
    check_images: Annotated[int, typer.Option(help="Held-out images for top-1 and per-class drift (as export).")] = 1000,
    data: Annotated[Optional[str], typer.Option(help="Data source [default: the run's].")] = None,
):
    """Per-layer int8 error (added vs accumulated), ranked, linked to significant per-class drift."""
    from .export import ExportConfig
    from .export.diagnose import diagnose_run
    report = diagnose_run(run, variant, ExportConfig(calibration_images=calibration_images, check_images=check_images,
                                                     data=data), images=images)
    o = report["overall"]
    t = Table(title=f"{report['variant']} of {run}: top-1 {report['int8_top1']:.2%} vs float {report['float_top1']:.2%} on "
                    f"{report['check_images']} {report['split']} images (McNemar p = {o['p_value']:.3g})")
    for col in ("rank", "layer", "op", "added n/s", "accumulated n/s", "added cos", "node"):
        t.add_column(col, justify="right" if col in ("rank", "added n/s", "accumulated n/s", "added cos") else "left")
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    for r in report["layers"][:top]:
        t.add_row(str(r["rank"]), r["layer"], r["op"], fmt(r["added_nsr"], ".4f"), fmt(r["accumulated_nsr"], ".4f"),
                  fmt(r["added_cosine"], ".4f"), r["node"][:60])
    _print_table(t)
    findings = report["drift_findings"]
    stdout.print("per-class drift beyond noise (exact McNemar, Bonferroni over classes): "
                 + (", ".join(f"{c['class']} {c['delta']:+.0%} (p={c['p_value']:.2g})" for c in findings) or
                    f"none ({report['classes_moved']} classes moved, all within noise)"))
    stdout.print(f"written: {report['json']}, {report['plot']}")
    if report["int8_top1"] < report["float_top1"]:
        stdout.print(f"repair: cifar-edge export {run} --format {report['format']} --int8 (searches for a file within --max-drop, "
                     "default 1 point, when plain int8 misses it), or --float-layers LAYER,... with names from the "
                     "layer column")


@app.command()
@friendly
def bench(
    run: Annotated[Path, typer.Argument(help="Run folder (from train or optimize).")],
    runs: Annotated[int, typer.Option(help="Timed single-image runs per row, after warm-up.")] = 200,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up runs per row.")] = 20,
    limit: Annotated[Optional[int], typer.Option(help="Top-1/top-5 on N test images (stratified); default: all.")] = None,
    threads: Annotated[Optional[str], typer.Option(help="CPU thread counts, e.g. 1,2; default: 1 and every core.")] = None,
    batch: Annotated[str, typer.Option(help="Batch sizes for throughput.")] = "32,64",
    variant: Annotated[Optional[List[str]], typer.Option(help="Only this variant (repeatable); default: every variant of `cifar-edge formats`.")] = None,
    format: Annotated[Optional[List[str]], typer.Option("--format", "-f", help=f"Only variants of this format: {', '.join(FORMATS)} (repeatable).")] = None,
    runtime: Annotated[Optional[List[str]], typer.Option(help=f"Only this runtime (repeatable): {', '.join(BACKENDS)}.")] = None,
    with_runs: Annotated[Optional[List[Path]], typer.Option("--with", help="Also bench this optimize run (repeatable).")] = None,
    siblings: Annotated[bool, typer.Option("--siblings/--no-siblings", help="Also bench optimize runs beside RUN whose parent is RUN.")] = True,
    export: Annotated[bool, typer.Option("--export/--no-export", help="Export missing or stale variants (--no-export: measure the files as they are).")] = True,
    reference: Annotated[bool, typer.Option("--reference/--no-reference", help="Also time each .tflite with LiteRT's own benchmark CLI.")] = True,
    profile_ops: Annotated[bool, typer.Option("--profile-ops", help="Also profile each op's latency on the runtimes with a profiler ("
                                   f"{', '.join(b.name for b in BACKENDS.values() if b.profiler)}) into bench.json and bench.md.")] = False,
    device: Annotated[Optional[str], typer.Option(help="Also run on a phone: android or android:SERIAL (needs adb).")] = None,
    benchmark_binary: Annotated[Optional[Path], typer.Option(help="benchmark_model binary to push when the phone has none.")] = None,
    fail_under: Annotated[Optional[float], typer.Option(help="Exit 1 when a variant's top-1 is under this percent (CI gate).")] = None,
    max_int8_drop: Annotated[Optional[float], typer.Option(help="Exit 1 when an int8 variant loses more top-1 points than this against float.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder; default: RUN/bench.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP + " The document is bench.json's, with the gate's "
                                          "failures under 'gate_failures'.")] = False,
):
    """Measure every exported variant on every runtime: accuracy, latency, throughput, memory, ops/s."""
    from .bench import BenchConfig, bench_run, check_thresholds, gate, parse_ints, rich_table
    from .bench.gpu import gpu_lines
    check_thresholds(fail_under, max_int8_drop)
    cfg = BenchConfig(runs=runs, warmup=warmup, limit=limit, threads=parse_ints(threads, "threads"),
                      batches=parse_ints(batch, "batch"), variants=tuple(variant or ()), formats=tuple(format or ()),
                      runtimes=tuple(runtime or ()), with_runs=tuple(map(str, with_runs or ())), siblings=siblings,
                      export=export, reference=reference, profile_ops=profile_ops, device=device,
                      benchmark_binary=str(benchmark_binary) if benchmark_binary else None)
    with _results_only(as_json):
        result = bench_run(run, cfg, out, command=" ".join(["cifar-edge", *sys.argv[1:]]))
    problems = gate(result["rows"], fail_under, max_int8_drop)
    if as_json:
        _print_json({**result, "gate_failures": problems})
    else:
        _print_table(rich_table(result))
        for line in gpu_lines(result.get("gpu")):
            stdout.print(line, markup=False, highlight=False)
        stdout.print(f"written to {out or Path(run) / 'bench'}: bench.json, bench.csv, bench.md, *.png")
    for p in problems:
        typer.echo(f"gate failed: {p}", err=True)
    if not any(r["status"] == "ok" for r in result["rows"]):
        typer.echo(f"error: no row ran: all {len(result['rows'])} were skipped or failed (their reasons are in the "
                   "table and bench.json); export the variants first or choose others with --variant/--runtime",
                   err=True)
        raise typer.Exit(1)
    if problems:
        raise typer.Exit(1)


@app.command()
@friendly
def report(run: Annotated[Path, typer.Argument(help="Run folder.")]):
    """One self-contained HTML page of a run: training, exports and bench (RUN/report.html)."""
    from .bench import write_report
    stdout.print(f"report: {write_report(run)}")


@app.command()
@friendly
def serve(
    run: Annotated[Path, typer.Argument(help="Run folder (its exported files in RUN/export are served too).")],
    host: Annotated[str, typer.Option(help="Address to listen on; beyond this machine needs --public (--host 0.0.0.0 --public: reach it from a phone on the LAN).")] = "127.0.0.1",
    public: Annotated[bool, typer.Option("--public", help="Allow a --host reachable from other machines (they can upload images and download the exported models).")] = False,
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = 8000,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads per runtime [default: all cores].")] = None,
    variant: Annotated[Optional[List[str]], typer.Option(help="Serve only these variants (repeatable), e.g. keras, tflite-int8.")] = None,
):
    """A local web page: upload an image, see the top-5 and latency of every exported format."""
    from .serve import serve as serve_run
    if not 0 <= port <= 65535:
        raise CifarEdgeError(f"--port {port} is not a port; use 0..65535")
    serve_run(run, host, port, threads, list(variant or ()),
              ready=lambda url: stdout.print(f"serving {run} at {url}  (Ctrl-C stops)"), public=public)


@app.command()
@friendly
def formats(as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
            markdown: Annotated[bool, typer.Option("--markdown", help=MARKDOWN_HELP)] = False):
    """The export format table: formats, their options, and the named variants."""
    from .formats import FORMATS, variants
    if as_json:
        _print_json({"formats": [{"name": f.name, "suffix": f.suffix, "options": sorted(f.options),
                                  "runtimes": list(f.runtimes), "description": f.description} for f in FORMATS.values()],
                     "variants": [{"name": name, "format": v.fmt.name,
                                   "options": dict(sorted(v.opts.changed().items()))}
                                  for name, v in variants().items()]})
        return
    t = Table(title="export formats")
    for col in ("format", "suffix", "options", "runtimes", "description"):
        t.add_column(col)
    for f in FORMATS.values():
        t.add_row(f.name, f.suffix, ", ".join(sorted(f.options)) or "-", ", ".join(f.runtimes), f.description)
    v = Table(title="variants (export --variant NAME, export --all, bench)")
    v.add_column("variant")
    v.add_column("format")
    v.add_column("options")
    for name, variant in variants().items():
        opts = variant.opts
        v.add_row(name, variant.fmt.name, ", ".join(f"{k}={val}" for k, val in sorted(opts.changed().items())) or "defaults")
    if markdown:
        typer.echo(_markdown(t) + "\n\n" + _markdown(v))
        return
    _print_table(t)
    if not stdout.is_terminal:
        typer.echo("")                                 # piped: a blank line between the two tables
    _print_table(v)


@app.command()
@friendly
def models(
    pattern: Annotated[str, typer.Argument(help="Glob over model names.")] = "*",
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help=MARKDOWN_HELP + " Without the weights column, which "
                                           "says what this machine has.")] = False,
):
    """List the model registry: parameters, FLOPs, input size, recipe, weights available here."""
    from .models import count_flops, list_models
    rows = []
    with _results_only(as_json):
        for spec in list_models(pattern):
            m = spec.build(100)
            rows.append({"name": spec.name, "params": int(m.count_params()), "flops": int(count_flops(m)),
                         "input_size": spec.input_size, "family": spec.family,
                         "recipe": {k: v for k, v in spec.settings.items() if k in ("optimizer", "lr", "schedule", "batch_size")},
                         "weights": spec.available_weights(), "description": spec.description})
    if as_json:
        _print_json({"classes": 100, "models": rows})
        return
    t = Table(title="cifar-edge models (100 classes)")
    for col in ("name", "params", "MFLOPs", "input", "recipe", "weights", "description"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], f"{r['params']:,}", f"{r['flops'] / 1e6:.1f}", f"{r['input_size']}px",
                  ", ".join(f"{k}={v}" for k, v in r["recipe"].items()), r["weights"], r["description"])
    if markdown:
        typer.echo(_markdown(t, leave_out=("weights",)))
        return
    _print_table(t)


@weights_app.command("import-tflite")
@friendly
def weights_import_tflite(
    tflite: Annotated[Path, typer.Argument(help="An int8/uint8 MobileNetV2 1.0 .tflite, e.g. ../shared/weights/mobilenet_v2_1.0_224_imagenet_tflite_quant/mobilenet_v2_1.0_224_quant.tflite.")],
    out: Annotated[Path, typer.Option(help="Keras weights file to write (.h5); pass it to `train --weights`.")] = Path("mobilenetv2_1.0_imagenet_from_tflite.h5"),
):
    """Rebuild Keras MobileNetV2 1.0 ImageNet weights from a quantized .tflite (offline machines)."""
    from .models.tflite_import import save_imported_backbone
    info = save_imported_backbone(tflite, out)
    stdout.print(f"{info['convs']} convolutions (+ BN as identity with the folded bias) from {tflite} -> {out}")
    stdout.print(f"use it: cifar-edge train --weights {out} on MobileNetV2 at --alpha 1.0 (see `cifar-edge models`)")


@data_app.command("info")
@friendly
def data_info(
    source: Annotated[str, typer.Argument(help="cifar100, cifar10, synthetic, or a path.")] = "cifar100",
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="MD5-check official files.")] = True,
):
    """Load a dataset and describe it (sizes, classes, source)."""
    from .data import load_dataset
    ds = load_dataset(source, verify=verify)
    summary = ds.summary()
    t = Table(title=f"data: {source}")
    t.add_column("field")
    t.add_column("value")
    for k, v in summary.items():
        t.add_row(k, str(v))
    t.add_row("class names", ", ".join(ds.class_names[:12]) + (" ..." if ds.num_classes > 12 else ""))
    _print_table(t)


@data_app.command("verify")
@friendly
def data_verify(path: Annotated[Path, typer.Argument(help="Official CIFAR folder or .tar.gz (or a folder holding them).")]):
    """Check official CIFAR files against their published MD5 sums."""
    from .data.verify import verify_files
    rows = verify_files(path)
    t = Table(title=f"MD5 check: {path}")
    for col in ("file", "md5", "status"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["file"], r["md5"], r["status"])
    _print_table(t)
    if any(r["status"] != "ok" for r in rows):
        raise CifarEdgeError(f"{sum(r['status'] != 'ok' for r in rows)} file(s) failed the MD5 check; download them again")


@app.command()
@friendly
def quickstart(
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder (replaced on every quickstart).")] = Path("runs/quickstart"),
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 4,
):
    """The toolkit in a few minutes: train on real data where it can be had, export float and int8
    TFLite and ONNX, bench them, and print each file's top-1, size and latency."""
    from .quickstart import run_quickstart
    from .runs import RunFolder
    r = run_quickstart(out_dir, epochs=epochs)
    m = r["metrics"]
    stdout.print(f"data: {r['data']}")
    stdout.print(f"trained {r['model']} for {r['epochs']} epochs on up to {r['train_images']:,} images: top-1 "
                 f"{m['top1']:.2%} on {m['n']:,} {m['split']} images (Keras)")
    images = next((f["images"] for f in r["files"] if f["status"] == "ok"), 0)
    stdout.print(f"files in {Path(r['export_dir'])} (.tflite run on LiteRT, .onnx on onnxruntime; top-1 on "
                 f"{images:,} test images, the Keras model {r['keras_top1']:.2%}):")
    t = Table()
    for col in ("file", "top-1", "MB", "ms", "size", "latency"):
        t.add_column(col, justify="left" if col == "file" else "right")
    for f in r["files"]:
        if f["status"] != "ok":
            t.add_row(f["variant"], f["status"], "-", "-", "-", f["reason"][:80])
            continue
        t.add_row(Path(f["file"]).name, f"{f['top1']:.2%}", f"{f['size_bytes'] / 1e6:.2f}", f"{f['latency_ms']:.3f}",
                  f"{f.get('size_vs_float', 1):.2f}x", f"{f.get('latency_vs_float', 1):.2f}x")
    _print_table(t)
    stdout.print(f"ms: median latency of one image, 1 thread; size, latency: as a fraction of the float .tflite "
                 f"(bench took {r['bench_seconds']:.0f} s; every figure in {Path(r['run']) / 'bench' / 'bench.md'})")
    if r["synthetic"]:
        stdout.print("these figures are on SYNTHETIC data: set CIFAR_EDGE_DATA or go online for real CIFAR-100")
    stdout.print("next:")
    for command, what in r["next"]:
        stdout.print(f"  # {what}\n  {command}")
    if r["export_failures"]:
        raise CifarEdgeError(f"{len(r['export_failures'])} file(s) failed their check "
                             f"({', '.join(r['export_failures'])}); the reasons are in {RunFolder(r['run']).manifest}")


def main():
    app(prog_name="cifar-edge")


if __name__ == "__main__":
    sys.exit(main())
