"""`export --format FORMAT --int8 --max-drop POINTS`: the smallest, fastest int8-ish
file within POINTS of the float model's top-1 on the held-out check images, for each format
that can keep layers in float (its :class:`~cifar_edge.formats.FloatLayers`).

The search, cheapest file first:

1. plain int8;
2. selective int8: the layers the format's diagnosis ranks worst kept in float, one more at a
   time (TFLite: the converter's denylist, ranked by `diagnose`'s per-layer error; ONNX:
   onnxruntime's ``nodes_to_exclude``, each node with the unweighted nodes that feed it);
3. the format's whole-model fallbacks (TFLite: 16-bit activations with 8-bit weights, int16x8).

Candidates are chosen on the selection images (the calibration images, from the training
set) and must keep their drop within the budget there with no noise allowance; the winner is
then exported, measured on the held-out check images the search never saw, and gated like
any other file, so its reported drop is not the one it was picked for.  Each candidate is
the file export writes (normalization folded, metadata in), and export writes the winner's
very bytes: the file written is the file measured (its SHA-256 is kept).  Every candidate's figures go into the winner's
``export.json`` entry (``repair``); when nothing meets the budget, the error names the best.
"""
from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import console
from ..errors import CifarEdgeError
from ..formats import ExportOptions, file_name, variant_name
from ..timing import latency
from .parity import accuracy_gate, points, top1

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


def file_bytes(ctx, fmt, opts: ExportOptions) -> bytes:
    """The file export writes for ``opts`` (normalization folded, metadata in), as bytes."""
    with tempfile.TemporaryDirectory(prefix="cifar-edge-candidate-") as work:
        path = Path(work) / file_name(fmt, opts)
        fmt.export(ctx, path, opts)
        return path.read_bytes()


def _backend(ctx, base: ExportOptions, fmt) -> _Backend:
    hooks = fmt.float_layers
    return _Backend(lambda opts: file_bytes(ctx, fmt, opts), hooks.open, lambda sample: hooks.rank(ctx, base, sample),
                    hooks.fallbacks(base))


def measure_candidate(runner, data: bytes, selection, max_drop: float, min_agreement: float) -> dict:
    """A candidate file's figures on the selection images (top-1, drop in points, agreement), its
    size, 1-thread latency and SHA-256."""
    outputs = runner.predict(selection.images)
    timing = latency(runner.run, selection.images[:1], runs=LATENCY_RUNS, warmup=5)
    gate = accuracy_gate(selection.keras, outputs, selection.labels, max_drop, min_agreement, strict=True)
    return {"top1": gate["file_top1"], "agreement": gate["agreement"], "drop_points": gate["drop_points"],
            "p_value": gate["p_value"], "meets": gate["passes"], "size_bytes": len(data),
            "latency_ms_1thread": round(timing["p50_ms"], 4), "runtime": runner.runtime,
            "sha256": hashlib.sha256(data).hexdigest()}


def search(ctx, selection, max_drop: float, base: ExportOptions, min_agreement: float,
           fmt) -> tuple[ExportOptions | None, list[dict], list]:
    """(winning options or None, every candidate tried, the diagnosis ranking), all on the
    ``selection`` images.  A candidate meets the budget when its drop there is within
    ``max_drop`` (no noise allowance) and it agrees with Keras above ``min_agreement``.  A set
    of float layers already tried is not tried again."""
    backend = _backend(ctx, base, fmt)
    float_top1 = top1(selection.keras, selection.labels)
    candidates = []

    def attempt(opts: ExportOptions, label: str) -> dict:
        row = {"candidate": label, "variant": variant_name(fmt, opts), "split": selection.split,
               "float_layers": list(opts.float_layers), "quantization": opts.quantization}
        try:
            data = backend.make(opts)
            row.update(measure_candidate(backend.open(data), data, selection, max_drop, min_agreement))
        except CifarEdgeError as e:       # a candidate the runtime cannot run is one that does not meet the budget
            row.update(error=str(e), meets=False)
            candidates.append(row)
            console.warn(f"  {label}: {e}")
            return row
        candidates.append(row)
        if row["meets"]:
            ctx.measured[opts] = data         # export writes these very bytes
        console.info(f"  candidate {len(candidates)}, {label}: top-1 {row['top1']:.2%} ({-row['drop_points']:+.2f} "
                     f"points), agreement {row['agreement']:.1%}, {row['size_bytes'] / 1e6:.2f} MB, "
                     f"{row['latency_ms_1thread']:.2f} ms")
        return row

    console.info(f"repair: Keras top-1 {float_top1:.2%} on {len(selection.labels)} {selection.split} images "
                 f"(the check images stay unseen); budget {max_drop:g} points")
    planned = 1 + MAX_FLOAT_LAYERS + len(backend.fallbacks)
    winner = None
    with console.progress("repair", planned) as advance:
        if attempt(base, "int8")["meets"]:
            winner = base
        advance(candidate=1)
        ranking = []
        if winner is None:
            images = selection.images
            sample = images[np.linspace(0, len(images) - 1, min(DIAGNOSIS_IMAGES, len(images))).astype(int)]
            ranking = backend.rank(sample)
            kept: list[str] = []
            tried: set = set()
            for row in ranking[:MAX_FLOAT_LAYERS]:
                kept.extend(n for n in [*row.get("with", []), row["node"]] if n not in kept)
                advance(candidate=len(candidates) + 1)
                if frozenset(kept) in tried:          # this node came in with an earlier one's feeders
                    continue
                tried.add(frozenset(kept))
                opts = dataclasses.replace(base, float_layers=tuple(kept))
                if attempt(opts, f"int8, {len(kept)} layer(s) in float (+{row['layer']})")["meets"]:
                    winner = opts
                    break
        for opts, label in backend.fallbacks:
            if winner is None and attempt(opts, label)["meets"]:
                winner = opts
            advance(candidate=len(candidates))
    return winner, candidates, ranking


def no_winner_error(candidates: list[dict], max_drop: float, min_agreement: float, run) -> CifarEdgeError:
    ran = [c for c in candidates if "error" not in c]
    if not ran:
        return CifarEdgeError(f"none of the {len(candidates)} int8 candidates could be run: {candidates[0]['error']}")
    best = min(ran, key=lambda c: c["drop_points"])
    return CifarEdgeError(
        f"no int8 file is within {max_drop:g} points of Keras with at least {100 * min_agreement:g}% agreement on "
        f"the {best['split']} images: the best, {best['candidate']}, {points(best['drop_points'])} at "
        f"{100 * best['agreement']:.2f}% agreement, McNemar p = {best['p_value']:.2g} ({len(candidates)} candidates "
        f"tried, all in export.json); train the model quantization-aware (`cifar-edge optimize {run} --qat`) and "
        "export that run, or allow a larger --max-drop")
