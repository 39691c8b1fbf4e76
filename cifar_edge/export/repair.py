"""`export --format tflite|onnx --int8 --max-drop POINTS`: the smallest, fastest int8-ish
file within POINTS of the float model's top-1 on the held-out check images.

The search, cheapest file first:

1. plain int8;
2. selective int8: the layers the diagnosis ranks worst kept in float, one more at a time
   (TFLite: the converter's denylist, ranked by `diagnose`'s per-layer error; ONNX:
   onnxruntime's ``nodes_to_exclude``, ranked with its QDQ debugging helpers, each node with
   the unweighted nodes that feed it, so its input is not quantized either);
3. TFLite only: 16-bit activations with 8-bit weights (int16x8), whole model.

Every candidate's drop, size, 1-thread latency and float layers go into the winner's
``export.json`` entry (``repair``); the winner is exported, checked and recorded like any
other variant.  A candidate meets the budget only if it also passes the parity check export applies after;
when nothing meets it, the error names the best drop reached.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import console
from ..errors import CifarEdgeError
from ..formats import ExportOptions, get_format, variant_name
from ..formats.onnx import open_onnxruntime
from ..formats.tflite import check_litert_loads, open_litert
from ..timing import latency
from .parity import agreement, top1

MAX_FLOAT_LAYERS = 12        # selective candidates tried before int16x8
LATENCY_RUNS = 50
DIAGNOSIS_IMAGES = 100


@dataclass
class _Backend:
    """What the search needs of a format: its file for some options, a runner on those bytes,
    the ranking of layers to keep in float, and whole-model fallbacks after the selective files."""
    make: Callable[[ExportOptions], bytes]
    open: Callable[[bytes], object]
    rank: Callable[[np.ndarray], list]
    fallbacks: list


def _backend(ctx, base: ExportOptions, fmt: str) -> _Backend:
    if fmt == "onnx":
        from ..formats.onnx import quantized_onnx, rank_nodes
        return _Backend(lambda opts: quantized_onnx(ctx, opts), lambda data: open_onnxruntime(data, threads=1),
                        lambda sample: rank_nodes(ctx, base, sample), [])
    from ..formats._quant_error import rank_layers
    from ..formats.tflite import calibrated_model, convert

    def open_checked(data):
        check_litert_loads(data)
        return open_litert(data, threads=1)
    return _Backend(lambda opts: convert(ctx, opts), open_checked,
                    lambda sample: rank_layers(ctx.model, calibrated_model(ctx), sample, per_channel=base.per_channel),
                    [(ExportOptions(int16x8=True, per_channel=base.per_channel), "int16x8")])


def measure_candidate(runner, data: bytes, check, float_top1: float) -> dict:
    """Top-1 drop (points) on the check images, size and 1-thread latency of a candidate file."""
    outputs = runner.predict(check.images)
    timing = latency(runner.run, check.images[:1], runs=LATENCY_RUNS, warmup=5)
    acc = top1(outputs, check.labels)
    return {"top1": acc, "agreement": agreement(check.keras, outputs)["top1_agreement"], "drop_points": round(100 * (float_top1 - acc), 3), "size_bytes": len(data),
            "latency_ms_1thread": round(timing["p50_ms"], 4), "runtime": runner.runtime}


def search(ctx, check, max_drop: float, base: ExportOptions, min_agreement: float,
           fmt: str = "tflite") -> tuple[ExportOptions | None, list[dict], list]:
    """(winning options or None, every candidate tried, the diagnosis ranking).  A candidate
    meets the budget only if it would also pass export's parity check (``min_agreement``)."""
    backend = _backend(ctx, base, fmt)
    float_top1 = top1(check.keras, check.labels)
    candidates = []

    def attempt(opts: ExportOptions, label: str) -> dict:
        row = {"candidate": label, "variant": variant_name(get_format(fmt), opts),
               "float_layers": list(opts.float_layers), "quantization": opts.quantization}
        try:
            data = backend.make(opts)
            row.update(measure_candidate(backend.open(data), data, check, float_top1))
        except CifarEdgeError as e:       # a candidate the runtime cannot run is one that does not meet the budget
            row.update(error=str(e), meets=False)
            candidates.append(row)
            console.warn(f"  {label}: {e}")
            return row
        row["meets"] = row["drop_points"] <= max_drop and row["agreement"] >= min_agreement
        candidates.append(row)
        console.info(f"  {label}: top-1 {row['top1']:.2%} ({-row['drop_points']:+.2f} points), "
                     f"agreement {row['agreement']:.1%}, "
                     f"{row['size_bytes'] / 1e6:.2f} MB, {row['latency_ms_1thread']:.2f} ms")
        return row

    console.info(f"repair: float top-1 {float_top1:.2%} on {len(check.labels)} {check.split} images; "
                 f"budget {max_drop:g} points")
    winner = None
    if attempt(base, "int8")["meets"]:
        winner = base
    ranking = []
    if winner is None:
        sample = check.images[np.linspace(0, len(check.images) - 1, min(DIAGNOSIS_IMAGES, len(check.images))).astype(int)]
        ranking = backend.rank(sample)
        kept: list[str] = []
        for row in ranking[:MAX_FLOAT_LAYERS]:
            kept.extend(n for n in [*row.get("with", []), row["node"]] if n not in kept)
            opts = dataclasses.replace(base, float_layers=tuple(kept))
            if attempt(opts, f"int8, {len(kept)} layer(s) in float (+{row['layer']})")["meets"]:
                winner = opts
                break
    for opts, label in backend.fallbacks:
        if winner is None and attempt(opts, label)["meets"]:
            winner = opts
    return winner, candidates, ranking


def no_winner_error(candidates: list[dict], max_drop: float, min_agreement: float) -> CifarEdgeError:
    ran = [c for c in candidates if "error" not in c]
    if not ran:
        return CifarEdgeError(f"none of the {len(candidates)} int8 candidates could be run: {candidates[0]['error']}")
    best = min(ran, key=lambda c: c["drop_points"])
    return CifarEdgeError(
        f"no int8 file is within {max_drop:g} points of float with {min_agreement:.0%} agreement: the best, "
        f"{best['candidate']}, loses {best['drop_points']:.2f} points at {best['agreement']:.1%} agreement "
        f"({len(candidates)} candidates tried, all in export.json); train the model "
        "quantization-aware (`cifar-edge optimize RUN --qat`) and export that run, or allow a larger --max-drop")
