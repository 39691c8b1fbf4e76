"""`cifar-edge diagnose RUN`: why an int8 file loses accuracy, in one command.

It quantizes the run's model as the variant would be (one calibration, the export's
calibration images), ranks every quantized layer by the error it adds and the error it
carries (held-out and calibration images), and links the result to per-class drift on the
held-out check images, with exact McNemar p-values so only moves beyond noise are findings.
Written to RUN/export/diagnose/<variant>.json and .png; the CLI prints the worst layers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import console
from ..errors import CifarEdgeError
from ..fileio import write_json
from ..formats import FORMATS, ExportOptions, Variant, get_variant, plot_layers
from ..runs import as_loaded
from .exporter import ExportConfig, prepare
from .parity import class_drift, overall_drift, top1

DIAGNOSE_DIR = "diagnose"


def _diagnosable(fmt) -> bool:
    return fmt.float_layers is not None and fmt.float_layers.diagnose is not None


def default_variant() -> str:
    """The plain int8 variant of the first format that can diagnose its layers."""
    return Variant(next(f for f in FORMATS.values() if _diagnosable(f)), ExportOptions(quantization="int8")).name


def diagnose_run(run_dir, variant: str | None = None, cfg: ExportConfig = ExportConfig(), images: int = 200,
                 out_dir=None) -> dict:
    """Diagnose ``variant`` (an int8 variant with float I/O, default :func:`default_variant`) of the
    run; returns the report written to ``out_dir`` (default RUN/export/diagnose)."""
    variant = variant or default_variant()
    chosen = get_variant(variant)
    fmt, opts = chosen.fmt, chosen.opts
    if not _diagnosable(fmt) or opts.quantization != "int8" or opts.io != "float":
        plain = default_variant()
        raise CifarEdgeError(f"diagnose takes an int8 variant with float I/O of "
                             f"{' or '.join(f.name for f in FORMATS.values() if _diagnosable(f))} (e.g. {plain}), not "
                             f"{variant}; integer I/O adds no error of its own beyond the {plain} file's")
    if images < 1:
        raise CifarEdgeError(f"--images {images} is invalid; use 1 or more held-out images")
    cfg.validate()
    loaded = as_loaded(run_dir)
    ctx, check = prepare(loaded, cfg, calibrate=True)
    ctx = ctx.for_options(opts)          # the model the int8 file converts from
    out = Path(out_dir) if out_dir else loaded.run.export_dir / DIAGNOSE_DIR
    console.info(f"diagnosing {variant} of {loaded.run.root}: calibrating on {len(ctx.calibration)} images ...")
    pick = lambda x: x[np.linspace(0, len(x) - 1, min(images, len(x))).astype(int)]  # noqa: E731 - spread, stable
    ranking, int8 = fmt.float_layers.diagnose(ctx, opts, pick(check.images), pick(ctx.calibration), check.images)
    classes = class_drift(check.drift_reference, int8, check.labels, ctx.class_names, top=len(ctx.class_names))
    report = {
        "run": str(loaded.run.root), "variant": variant, "format": fmt.name, "split": check.split, "check_images": int(len(check.labels)),
        "layer_images": {"held_out": int(min(images, len(check.images))),
                         "calibration": int(min(images, len(ctx.calibration)))},
        "calibration_images": int(len(ctx.calibration)),
        "float_top1": top1(check.drift_reference, check.labels), "int8_top1": top1(int8, check.labels),
        "drift_against": check.drift_source,
        "overall": overall_drift(check.drift_reference, int8, check.labels),
        "drift_findings": [c for c in classes if c["significant"]],
        "classes_moved": len(classes),
        "metric": "noise/signal: per-channel RMS(int8 - float) / std(float), averaged over channels; added: "
                  "the layer's own quantization on the same quantized input (TFLite NumericVerify); accumulated: "
                  "the tensor when the whole model runs in int8",
        "layers": ranking,
    }
    report["plot"] = plot_layers(ranking, out / f"{variant}.png",
                                 f"{variant} of {loaded.run.root.name}: worst layers by the error they add")
    write_json(out / f"{variant}.json", report)
    report["json"] = str(out / f"{variant}.json")
    return report

