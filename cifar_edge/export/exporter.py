"""`cifar-edge export`: turn a run's model into the files of the format table, check each
against the Keras model, and record everything in an ``export.json`` manifest.

Every exporter is wrapped the same way (:func:`_export_one`): the file is written to a temp
name, run and compared with Keras, and renamed into place only when it passes (float files:
top-1 agreement; quantized files: top-1 drop within the budget beyond noise, above an agreement
floor); a failed or interrupted export leaves nothing behind, not even an earlier file of the variant.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import console
from ..data import limit_images, prepare_images
from ..errors import CifarEdgeError
from ..fileio import atomic_path, read_json, remove_stale_system_temps, remove_stale_temps, write_json, write_text
from ..formats import (FORMATS, MODEL_VARIANT, QAT_INT8_ONLY, ExportContext, ExportOptions, Format, Variant, get_variant, keras_runner,
                       qat_allows, validate)
from ..runs import MANIFEST, RunFolder, as_loaded, ends_in_softmax, inside_run, load_model, run_data
from ..versions import versions
from .parity import accuracy_gate, agreement, class_drift, file_facts, overall_drift, per_class_accuracy, points, top1

ANDROID_MODEL = Path("model.tflite")     # the file the Android app (examples/android) loads from its assets


@dataclass(frozen=True)
class ExportConfig:
    calibration_images: int = 500     # training images for int8 calibration
    check_images: int = 1000          # held-out images for the parity check
    min_agreement: float = 0.99       # top-1 agreement with Keras, float and fp16 files
    min_agreement_int8: float = 0.50  # quantized files: below this agreement a file is broken (accuracy gates the rest)
    data: str | None = None           # data source override (default: the run's)
    max_drop: float = 1.0             # quantized files: top-1 points they may lose against Keras (beyond noise)
    repair: bool = True               # one int8 file missing max_drop: search for one within it (formats with FloatLayers)

    def validate(self):
        if not 0 <= self.max_drop <= 100:
            raise CifarEdgeError(f"--max-drop {self.max_drop} is invalid; give top-1 points in 0..100, e.g. 0.5")
        if self.calibration_images < 0 or self.check_images < 1:
            raise CifarEdgeError("--calibration-images must be >= 0 and --check-images >= 1")
        for name in ("min_agreement", "min_agreement_int8"):
            if not 0 <= getattr(self, name) <= 1:
                raise CifarEdgeError(f"--{name.replace('_', '-')} {getattr(self, name)} is invalid; use a fraction in 0..1")
        return self


@dataclass
class _Check:
    """Held-out images, their labels and the reference outputs every export is compared with."""
    images: np.ndarray                # normalized float32
    labels: np.ndarray
    split: str
    keras: np.ndarray                 # this run's Keras outputs
    drift_reference: np.ndarray       # the float parent's outputs (pruned/QAT runs) or keras
    drift_source: str = MODEL_VARIANT
    calibration_labels: np.ndarray | None = None   # labels of ctx.calibration: the repair search selects on them


def resolve_variants(names=None, fmt: str | None = None, opts: ExportOptions | None = None,
                     all_variants: bool = False) -> list[Variant]:
    """Variants by name, one format + options, or every variant of the table; validated up front."""
    from ..formats import get_format, variants
    if (all_variants or names) and opts is not None and opts.set_options():
        flags = ", ".join("--" + o.replace("_", "-") for o in sorted(opts.set_options()))
        raise CifarEdgeError(f"{'--all' if all_variants else '--variant'} names its own options; drop {flags}")
    if names and fmt is not None:
        raise CifarEdgeError("--variant names its own format; drop --format (or drop --variant)")
    if all_variants:
        if fmt is not None and fmt != "all":
            raise CifarEdgeError("--all exports every format; drop --format (or drop --all)")
        chosen = list(variants().values())
    elif names:
        chosen = [get_variant(n) for n in names]
    else:
        if fmt is None:
            raise CifarEdgeError(f"nothing to export: pass --format {'|'.join(FORMATS)} or --all")
        chosen = [Variant(get_format(fmt), opts or ExportOptions())]
    for v in chosen:
        validate(v.fmt, v.opts)
    return chosen


def _calibration(data, n: int, norm, size) -> tuple[np.ndarray, np.ndarray]:
    if n == 0 or len(data.x_train) == 0:
        raise CifarEdgeError("int8 export needs calibration images and none are available; pass "
                             "--calibration-images 100 or more (and --data with training images)")
    if n < 100:
        console.warn(f"calibrating int8 on only {n} images; 100 or more give steadier ranges")
    x, y = limit_images(data.x_train, data.y_train, n)
    return prepare_images(x, norm, size), np.asarray(y)


def _parent_outputs(config, images):
    """The float parent's outputs, for drift of a pruned/QAT/clustered run, if it is still there."""
    parent = config.get("parent")
    if not parent:
        return None
    try:
        model = load_model(RunFolder(parent).require_model())
    except CifarEdgeError:
        return None
    return keras_runner(model).predict(images)


def prepare(loaded, cfg: ExportConfig, calibrate: bool) -> tuple[ExportContext, _Check]:
    """What every export of a run shares: the exporter's context (with calibration images
    when ``calibrate``) and the held-out images with the Keras outputs files are checked against."""
    data = run_data(loaded, cfg.data)
    size, norm = loaded.input_size, loaded.norm
    qat = loaded.quantization_aware
    calibration, calibration_labels = _calibration(data, cfg.calibration_images, norm, size) if calibrate else (None, None)
    ctx = ExportContext(
        model=loaded.model, class_names=loaded.class_names, norm=norm, input_size=size, calibration=calibration,
        qat=qat, output_is_logits=not ends_in_softmax(loaded.config),
        name=f"{loaded.config['train']['model']} ({loaded.run.root.name})")
    x, y, split = data.held_out()
    x, y = limit_images(x, y, cfg.check_images)
    images = prepare_images(x, norm, size)
    reference = keras_runner(loaded.model).predict(images)
    parent = _parent_outputs(loaded.config, images)
    check = _Check(images, y, split, reference, reference if parent is None else parent,
                   MODEL_VARIANT if parent is None else f"parent float {MODEL_VARIANT}", calibration_labels)
    return ctx, check


def export_run(run_dir, variants: list[Variant], out_dir=None,
               cfg: ExportConfig = ExportConfig(), command: str = "", android_dir=None,
               failures: dict | None = None) -> list[dict]:
    """Export ``variants`` of the run's model into ``out_dir`` (default RUN/export); returns
    the manifest entries written.  Raises CifarEdgeError when an export fails its check,
    unless ``failures`` is given: then each variant's error goes there ({variant: message})
    and the others go on (problems of the whole run still raise)."""
    cfg.validate()
    loaded = as_loaded(run_dir)
    out = Path(out_dir) if out_dir else loaded.run.export_dir
    remove_stale_temps(out)          # half-written files of an export that was killed
    remove_stale_system_temps()      # and its work folders (SavedModel, LiteRT probe) in the system temp
    qat = loaded.quantization_aware
    variants = _applicable(loaded, variants)
    if qat:
        refused = [v.name for v in variants if not qat_allows(v.fmt, v.opts)]
        if refused and len(refused) == len(variants):
            raise CifarEdgeError(f"{QAT_INT8_ONLY}: export it with --int8")
        if refused:
            console.warn(f"skipping {', '.join(refused)}: {QAT_INT8_ONLY}")
            variants = [v for v in variants if qat_allows(v.fmt, v.opts)]
    if android_dir is not None and (len(variants) != 1 or variants[0].fmt.suffix != ANDROID_MODEL.suffix):
        raise CifarEdgeError(f"--android takes exactly one {ANDROID_MODEL.suffix} file: use --format "
                             f"{_formats_with(lambda f: f.suffix == ANDROID_MODEL.suffix)} (not --all)")
    for v in variants:
        if qat and v.opts.float_layers and v.fmt.float_layers.qat_refusal:
            raise CifarEdgeError(f"a quantization-aware run's {v.fmt.name} file {v.fmt.float_layers.qat_refusal}; use "
                                 "--float-layers with --format "
                                 f"{_formats_with(lambda f: f.float_layers is not None and not f.float_layers.qat_refusal)}")
    ctx, check = prepare(loaded, cfg, calibrate=qat or any(v.opts.calibrated for v in variants))
    variants = [v.with_options(resolve_float_layers(ctx.for_options(v.opts), v.fmt, v.opts)) for v in variants]
    repair = cfg.repair and len(variants) == 1 and repairable(ctx, variants[0])
    entries = []
    with console.progress("export", len(variants)) as advance:
        for variant in variants:
            name = variant.name
            error = None
            try:
                try:
                    entries.append(_export_one(ctx, variant, out, check, cfg, loaded, command))
                except ExportCheckFailed as e:
                    if not (repair and e.figures["gate"]["failed_on"] == "drop"):
                        raise
                    console.info(f"{name} misses the {cfg.max_drop:g}-point budget: searching for a file within it "
                                 "(--no-repair to skip)")
                    repaired = _repaired(ctx, check, variant, cfg, loaded.run.root, refused=e)
                    entries.append(_export_one(ctx, repaired, out, check, cfg, loaded, command))   # failures: as asked
            except CifarEdgeError as e:
                error = e
            except Exception as e:  # noqa: BLE001 - with ``failures``, one broken converter must not stop the rest
                if failures is None:
                    raise
                error = CifarEdgeError(f"{name}: the exporter failed ({type(e).__name__}: {str(e).strip()[:160]})")
            if error is not None:
                _record_failure(out / MANIFEST, name, str(error), getattr(error, "figures", {}), command)
                if failures is None:
                    raise error
                failures[name] = str(error)
                console.warn(f"{name}: {error}")
            advance(variant=name)
    if not entries:
        return entries
    write_text(out / "labels.txt", "\n".join(loaded.class_names) + "\n")
    if android_dir is not None:
        _drop_into_app(out / entries[0]["file"], loaded.class_names, Path(android_dir))
    return entries


def _applicable(loaded, variants):
    """The variants this run's source can be made into: the others are skipped, saying why (all of
    them refused: one error)."""
    from ..source_models import refusal
    refused = {v.name: refusal(loaded.config, v.fmt.name, v.opts) for v in variants}
    refused = {name: why for name, why in refused.items() if why}
    if refused and len(refused) == len(variants):
        name, why = next(iter(refused.items()))
        raise CifarEdgeError(f"{name} cannot be made from this imported {loaded.source} model: {why}")
    for name, why in refused.items():
        console.warn(f"skipping {name}: {why}")
    return [v for v in variants if v.name not in refused]


def _formats_with(test) -> str:
    """The names of the formats that pass ``test``, for an error's advice."""
    return " or ".join(f.name for f in FORMATS.values() if test(f))


def repairable(ctx, variant: Variant) -> bool:
    """Whether the repair search takes this variant: int8 with float I/O of a format that can keep
    layers in float (:class:`~cifar_edge.formats.FloatLayers`), nothing kept in float yet,
    quantized here (not converted from another file, not a QAT run's where the format cannot)."""
    fmt, opts = variant.fmt, variant.opts
    return (fmt.float_layers is not None and opts.quantization == "int8" and opts.io == "float"
            and not opts.float_layers and not opts.from_tflite and not (ctx.qat and fmt.float_layers.qat_refusal))


def resolve_float_layers(ctx, fmt: Format, opts: ExportOptions) -> ExportOptions:
    """``opts`` with its --float-layers names (node names, or the Keras layer names diagnose and
    the repair log show) resolved to the converter's node names; an unknown name is an error
    listing the valid ones."""
    if not opts.float_layers:
        return opts
    import dataclasses
    from ..formats import match_float_layers
    return dataclasses.replace(opts, float_layers=match_float_layers(ctx, fmt, opts))


def _selection(ctx, check: _Check) -> _Check:
    """The images the repair search chooses among candidates on: the calibration images (training
    images), never the held-out ones the winner's figures are reported on."""
    reference = keras_runner(ctx.model).predict(ctx.calibration)
    return _Check(ctx.calibration, check.calibration_labels, "calibration (train)", reference, reference)


def _repaired(ctx, check: _Check, variant: Variant, cfg: ExportConfig, run, refused=None) -> Variant:
    """The variant the repair search picks on the selection images; its candidates go with the
    entry, whose figures export then measures on the held-out check images."""
    from .repair import no_winner_error, search
    fmt, base = variant.fmt, variant.opts
    source = ctx.quantizable()
    selection = _selection(ctx, check)
    winner, candidates, ranking = search(source, selection, cfg.max_drop, base, cfg.min_agreement_int8, fmt)
    ctx.repair = {"max_drop": cfg.max_drop,
                  "selection": {"split": selection.split, "images": int(len(selection.labels)),
                                "float_top1": top1(selection.keras, selection.labels),
                                "note": "candidates are chosen on these images, drop <= max_drop with no noise allowance"},
                  "refused": None if refused is None else refused.figures.get("gate"),
                  "candidates": candidates,
                  "ranking": [{k: r[k] for k in ("rank", "layer", "node", "op", "added_nsr", "accumulated_nsr")}
                              for r in ranking[:20]]}
    if winner is None:
        error = no_winner_error(candidates, cfg.max_drop, cfg.min_agreement_int8, run)
        error.figures = {"repair": ctx.repair, **({"gate": refused.figures["gate"]} if refused is not None else {})}
        raise error                     # export_run records it under the variant asked for
    return variant.with_options(winner)


def _export_one(ctx, variant: Variant, out: Path, check: _Check, cfg: ExportConfig, loaded, command: str) -> dict:
    fmt, opts, name, target = variant.fmt, variant.opts, variant.name, out / variant.file_name
    quantized = opts.quantized or ctx.qat
    threshold = cfg.min_agreement_int8 if quantized else cfg.min_agreement
    console.info(f"exporting {name} ...")
    t0 = time.perf_counter()
    source = ctx.for_options(opts)
    with atomic_path(target) as tmp:
        if ctx.repair is not None and opts in source.measured:     # the repair's winner: the bytes it measured
            Path(tmp).write_bytes(source.measured[opts])
        else:
            fmt.export(source, tmp, opts)
        seconds = time.perf_counter() - t0
        if fmt.probe is not None:
            fmt.probe(tmp, name)
        runner = fmt.open(tmp)
        try:
            outputs = runner.predict(check.images)
        except (RuntimeError, ValueError) as e:   # LiteRT invoke / onnxruntime failures
            raise CifarEdgeError(f"{name} was written but fails to run ({str(e).splitlines()[0][:120]}); "
                                 "nothing was kept: export it again or choose other options") from None
        parity = {**agreement(check.keras, outputs), "split": check.split, "threshold": threshold,
                  "runtime": fmt.runtime, "keras_top1": top1(check.keras, check.labels)}
        accuracy = {check.split: file_accuracy(outputs, check.labels, ctx.class_names, fmt.runtime)}
        if quantized:
            parity["gate"] = accuracy_gate(check.keras, outputs, check.labels, cfg.max_drop, cfg.min_agreement_int8)
            if not parity["gate"]["passes"]:
                raise ExportCheckFailed(parity, refusal(name, check.split, parity["gate"],
                                                        _advice(ctx, variant, loaded.run.root, cfg)))
        elif parity["top1_agreement"] < threshold:
            raise ExportCheckFailed(parity,
                f"{name} agrees with Keras on only {parity['top1_agreement']:.1%} of {parity['images']} "
                f"{check.split} images (needs {threshold:.0%}); nothing was written. A float file should match "
                "its model: export it again, or report the converter's error")
        facts = file_facts(fmt.files(tmp), root=tmp)
    entry = {"variant": name, "format": fmt.name, "file": target.name, "options": opts.to_dict(), **facts,
             "export_seconds": round(seconds, 2), "parity": parity, "accuracy": accuracy,
             "calibration_images": 0 if ctx.calibration is None else len(ctx.calibration),
             "notes": runner.notes, "run": str(loaded.run.root),
             "optimize": loaded.config.get("optimize"), "command": command, "versions": versions()}
    if ctx.repair is not None:
        measured = next((c for c in ctx.repair["candidates"] if c.get("variant") == name and c.get("meets")), {})
        entry["repair"] = {**ctx.repair, "check": {"split": check.split, **parity.get("gate", {}),
                                                   "note": "the winner's figures on the held-out check images, "
                                                           "which the search never saw"},
                           "written_is_measured": measured.get("sha256") == facts["sha256"]}
    if source.identity_split:
        entry["identity_split"] = {"layers": list(source.identity_split),
                                   "why": "dirac convs quantized as conv(W - I) + input: the learned weights set "
                                          "their own int8 scale (same float function)"}
    if opts.quantized or opts.quantization == "fp16" or ctx.qat or loaded.config.get("optimize"):
        entry["drift"] = {"against": check.drift_source,
                          "float_top1": top1(check.drift_reference, check.labels),
                          "overall": overall_drift(check.drift_reference, outputs, check.labels),
                          "classes": class_drift(check.drift_reference, outputs, check.labels, ctx.class_names),
                          "test": "exact McNemar on the changed predictions; a class is significant below "
                                  "p = 0.05 / classes (Bonferroni)"}
    _record(out / MANIFEST, entry)
    console.info(f"  {target}  {facts['size_bytes'] / 1e6:.2f} MB (gzip {facts['gzip_bytes'] / 1e6:.2f} MB), "
                 f"agreement {parity['top1_agreement']:.2%}, max |diff| {parity['max_abs_diff']:.3g}, "
                 f"{seconds:.1f} s")
    return entry


def refusal(name: str, split: str, gate: dict, advice: str) -> str:
    """One line that says why a quantized file was refused, with the figures behind it."""
    figures = (f"Keras {gate['source_top1']:.2%} -> file {gate['file_top1']:.2%} top-1 on {gate['images']} {split} "
               f"images: {points(gate['drop_points'])}, McNemar p = {gate['p_value']:.2g}, agreement "
               f"{gate['agreement']:.1%}")
    if gate["failed_on"] == "agreement":
        why = (f"{name} agrees with Keras on only {gate['agreement']:.1%} of its predictions (floor "
               f"{gate['min_agreement']:.1%}): the file is broken, not merely imprecise ({figures})")
    else:
        why = f"{name} misses the {gate['max_drop']:g}-point budget ({figures})"
    return f"{why}; nothing was written. {advice}"


def _advice(ctx, variant: Variant, run, cfg: ExportConfig) -> str:
    """The command that reaches the budget, true for this variant."""
    fmt, opts = variant.fmt, variant.opts
    qat = f"train quantization-aware (`cifar-edge optimize {run} --qat`) and export that run"
    if ctx.repair is not None:
        return f"The repair's winner missed it on the check images: {qat}, or allow a larger --max-drop"
    if repairable(ctx, variant):
        return (f"Reach it with `cifar-edge export {run} --format {fmt.name} --int8 --max-drop {cfg.max_drop:g}` "
                f"(keeps the worst layers in float), or {qat}")
    if opts.quantization == "dynamic":
        return (f"Dynamic range quantizes the weights alone (no calibration to improve): export "
                f"`--format {fmt.name} --int8` (it repairs itself) or --fp16, or {qat}")
    if opts.quantization == "int8" and opts.io != "float":
        return (f"Integer I/O adds no error of its own: find the layers with `cifar-edge export {run} --format "
                f"{fmt.name} --int8 --max-drop {cfg.max_drop:g}`, use more --calibration-images, or {qat}")
    return f"Use more --calibration-images, `--format {fmt.name} --int8 --max-drop {cfg.max_drop:g}`, or {qat}"


def file_accuracy(outputs, labels, class_names, runtime: str) -> dict:
    """A file's accuracy on one split, as export.json keeps it: the one top-1 of that file and
    split, which bench reuses (or replaces with a figure over more images)."""
    from ..evaluate.metrics import classification_metrics, to_probabilities
    m = classification_metrics(to_probabilities(outputs), labels, class_names)
    return {"top1": m["top1"], "top5": m["top5"], "images": m["n"], "runtime": runtime,
            "per_class_top1": [float(v) for v in per_class_accuracy(outputs, labels, len(class_names))]}


def split_accuracy(entry: dict | None, split: str) -> dict | None:
    """The accuracy export.json holds for ``entry``'s file on ``split`` (None: not measured)."""
    return ((entry or {}).get("accuracy") or {}).get(split)


class ExportCheckFailed(CifarEdgeError):
    """An exported file that ran but failed its parity check; ``figures`` says by how much."""

    def __init__(self, figures: dict, message: str):
        super().__init__(message)
        self.figures = figures


def _record(manifest: Path, entry: dict):
    """Add or replace this file's entry in export.json (rewritten atomically); a success
    clears the variant's earlier failure."""
    exports, failed = _read(manifest.parent)
    exports[entry["file"]] = entry
    failed.pop(entry["variant"], None)
    write_json(manifest, {"exports": exports, "failures": failed})


def _record_failure(manifest: Path, variant: str, reason: str, figures: dict, command: str):
    """Note in export.json why this export of ``variant`` wrote no file.  A file an earlier
    export of the variant left goes, with its entry: a variant is exported or failed, never both."""
    exports, failed = _read(manifest.parent)
    for file, entry in list(exports.items()):
        if entry.get("variant") == variant:
            stale = manifest.parent / file
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink(missing_ok=True)
            del exports[file]
    failed[variant] = {"variant": variant, "reason": reason, "parity": figures or None,
                       "gate": (figures or {}).get("gate"), "command": command}
    write_json(manifest, {"exports": exports, "failures": failed})


def _read(out_dir) -> tuple[dict, dict]:
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return {}, {}
    try:
        doc = read_json(path)
        exports, failures = dict(doc["exports"]), dict(doc.get("failures") or {})
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CifarEdgeError(f"{path} is corrupt; delete it and export again") from None
    for entry in exports.values():
        _current_options(entry)
    return exports, failures


def _current_options(entry):
    """An entry's options as this version writes them: an older export.json held the quantization
    mode as four booleans (``int8``, ``fp16``, ``dynamic``, ``int16x8``); they read as the one field."""
    if isinstance(entry, dict) and isinstance(entry.get("options"), dict):
        try:
            entry["options"] = ExportOptions.from_dict(entry["options"]).to_dict()
        except (TypeError, ValueError):
            pass                      # an edited entry: its other fields decide whether it is used


def read_manifest(out_dir) -> dict:
    """{file name: entry} of an export folder's export.json ({} when there is none): only the
    entries every reader can rely on, whose file lies inside the folder; each other entry is
    skipped with a warning naming it (an export.json may be edited, or come with a run from anyone)."""
    entries = {}
    for key, entry in _read(out_dir)[0].items():
        problem = _entry_problem(out_dir, entry)
        if problem:
            console.warn(f"{Path(out_dir) / MANIFEST}: skipping entry '{key}': {problem}")
        else:
            entries[key] = entry
    return entries


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _entry_problem(out_dir, entry) -> str | None:
    """Why a manifest entry cannot be used (missing or mistyped fields, a file outside), or None."""
    if not isinstance(entry, dict):
        return f"a JSON {type(entry).__name__}, not an object; export it again"
    missing = [k for k in ("variant", "format", "file", "sha256") if not isinstance(entry.get(k), str)]
    missing += [k for k in ("size_bytes", "gzip_bytes") if not _number(entry.get(k))]
    parity = entry.get("parity")
    if not (isinstance(parity, dict) and _number(parity.get("top1_agreement")) and _number(parity.get("max_abs_diff"))):
        missing.append("parity")
    accuracy = entry.get("accuracy") or {}
    if not (isinstance(accuracy, dict) and all(isinstance(a, dict) and _number(a.get("top1")) and _number(a.get("images"))
                                               for a in accuracy.values())):
        missing.append("accuracy")
    if missing:
        return f"no valid {', '.join(missing)}; it was edited or written by another tool: export it again"
    try:
        inside_run(out_dir, entry["file"], MANIFEST)
    except CifarEdgeError as e:
        return str(e)
    return None


def read_failures(out_dir) -> dict:
    """{variant: {reason, parity}} of the variants whose last export failed."""
    return _read(out_dir)[1]


def _drop_into_app(model_file: Path, class_names, assets: Path):
    """Copy the model and labels into an Android app's assets, as the app loads them."""
    with atomic_path(assets / ANDROID_MODEL) as tmp:
        shutil.copyfile(model_file, tmp)
    write_text(assets / "labels.txt", "\n".join(class_names) + "\n")
    console.info(f"  copied to {assets / ANDROID_MODEL} and {assets / 'labels.txt'}")
