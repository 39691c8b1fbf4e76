"""The rows of one target: its file on every backend of its family and every thread count.

Each row: load time, first inference, top-1/top-5 (computed once per file and backend,
shared by its thread-count rows), single-image latency percentiles, batch throughput, peak
memory, achieved ops/s beside the machine's peak, and for .tflite files LiteRT's own CLI
as a second opinion.  A row that cannot run is kept with ``status`` skipped or failed and
the reason; the bench goes on.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import CifarEdgeError
from . import android, reference
from ..formats import HOST_DEVICES, Backend, Unavailable, backends_for, on_software_gpu, open_backend
from .config import BenchConfig
from .memory import peak_rss
from .peak import peak_for
from .targets import RunRef, Target
from ..timing import latency, throughput, timed


PROFILE_RUNS = 50       # single-image inferences a per-op profile averages
# Time budgets of one row, so that a slow file or runtime (int16x8 on LiteRT runs ~50 ms an image,
# 20x float) does not hold the whole bench: latency stops after LATENCY_BUDGET_S once it has
# MIN_RUNS runs; a runtime other than the file's own checks agreement on as many images as fit
# AGREEMENT_BUDGET_S (at least MIN_AGREEMENT_IMAGES); the file's own runtime runs them all when its
# outputs must give the file's one top-1, else (export.json holds it) as many as fit OWN_BUDGET_S.
LATENCY_BUDGET_S, MIN_RUNS = 2.0, 30
AGREEMENT_BUDGET_S, MIN_AGREEMENT_IMAGES = 4.0, 200
OWN_BUDGET_S = 10.0
THROUGHPUT_BUDGET_S = 1.0          # per batch size
SOFTWARE_GPU_RUNS = 10             # single-image runs of a row on a software GPU


@dataclass
class Context:
    """What every row of one run shares."""
    cfg: BenchConfig
    peak: dict
    images: np.ndarray            # normalized float32 test images
    labels: np.ndarray
    split: str
    class_names: list
    flops: int | None             # per image, of the run's Keras model (None: an import without one)
    float_ref: dict               # top1/top5/per_class_top1 of the float model drops are measured against
    phone: object = None          # android.Phone when --device is given
    keras_outputs: np.ndarray | None = None         # the run's Keras model on ``images``
    accuracy: dict = field(default_factory=dict)     # file -> its accuracy on this split (export.json's, one figure)
    outputs: dict = field(default_factory=dict)      # file -> its outputs on its format's own runtime
    agreement: dict = field(default_factory=dict)    # (file, backend) -> agreement fields
    references: dict = field(default_factory=dict)   # (file, threads) -> the reference CLI's runs
    remote: dict = field(default_factory=dict)       # file -> its path on the phone


def precision(opts) -> str:
    return "float32" if opts.quantization == "none" else opts.quantization


def peak_kind(opts) -> str:
    """Which GEMM peak a file is held against: int8 arithmetic (int8, dynamic-range) or float32."""
    return "int8" if opts.quantized else "float32"


def target_rows(ref: RunRef, t: Target, ctx: Context, advance=lambda n=1, **kw: None) -> list[dict]:
    cfg, rows = ctx.cfg, []
    for backend in backends_for(t.fmt, cfg.runtimes, _devices(ctx)):
        if t.status != "ok":
            rows.append(base_row(ref, t, backend, None))
            continue
        for threads in _thread_counts(backend, cfg):
            rows.append(measure_row(ref, t, backend, threads, ctx))
            advance(1, last=f"{t.variant} {backend.name}")
    if not rows:
        row = base_row(ref, t, None, None)
        row.update(status="skipped", reason=f"none of --runtime {', '.join(cfg.runtimes)} loads {t.fmt.name} files "
                                            f"(those are: {', '.join(t.fmt.runtimes)})")
        rows.append(row)
    return rows


def row_count(t: Target, ctx: Context) -> int:
    return sum(len(_thread_counts(b, ctx.cfg)) for b in backends_for(t.fmt, ctx.cfg.runtimes, _devices(ctx)))


def _devices(ctx: Context) -> tuple:
    return (*HOST_DEVICES, "android") if ctx.phone is not None else HOST_DEVICES


def _thread_counts(backend: Backend, cfg: BenchConfig) -> tuple:
    if backend.device == "android":
        return (tuple(sorted(set(cfg.threads))) or android.DEFAULT_THREADS) if backend.threaded else (1,)
    if not backend.threaded:
        return (None,)
    return cfg.thread_counts


def base_row(ref: RunRef, t: Target, backend: Backend | None = None, threads=None) -> dict:
    return {"run": ref.root.name, "method": ref.label, "name": ref.name(t.variant), "variant": t.variant,
            "format": t.fmt.name,
            "precision": precision(t.opts), "io": t.opts.io, "file": t.path.name if t.path else None,
            "backend": backend.name if backend else None, "device": backend.device if backend else None,
            "threads": threads, "status": t.status, "reason": t.reason, "export": t.source, "notes": list(t.notes),
            "size_bytes": t.facts.get("size_bytes"), "gzip_bytes": t.facts.get("gzip_bytes"),
            "sha256": t.facts.get("sha256"), "peak_kind": peak_kind(t.opts)}


def measure_row(ref: RunRef, t: Target, backend: Backend, threads, ctx: Context) -> dict:
    row = base_row(ref, t, backend, threads)
    try:
        measured = _on_phone(t, backend, threads, ctx) if backend.device == "android" else \
            _on_host(t, backend, threads, ctx)
    except Unavailable as e:
        row.update(status="skipped", reason=str(e))
    except CifarEdgeError as e:
        row.update(status="failed", reason=str(e))
    except Exception as e:  # noqa: BLE001 - a runtime's own exception fails this row, not the bench
        first = (str(e).strip().splitlines() or [""])[0][:200]
        row.update(status="failed", reason=f"{type(e).__name__}: {first}")
    else:
        row["notes"] += measured.pop("notes", [])
        row.update(measured)
        _derive(row, ctx)
    return row


def _on_host(t: Target, backend: Backend, threads, ctx: Context) -> dict:
    cfg, x1 = ctx.cfg, ctx.images[:1]
    key = (str(t.path), backend.name)
    started = time.perf_counter()
    with peak_rss() as mem:
        runner = open_backend(backend, t.path, threads)
        load_ms = (time.perf_counter() - started) * 1e3
        try:
            out = _measure(runner, t, backend, ctx, key)
        finally:
            if runner.close is not None:
                runner.close()
    out.update(load_ms=load_ms, **mem)
    if runner.placement is not None:
        out["placement"] = runner.placement
    if runner.footprint is not None:
        out["footprint"] = runner.footprint
    if cfg.profile_ops and backend.profiler is not None:
        out["op_profile"] = backend.profiler(t.path, out["threads"], x1, min(cfg.runs, PROFILE_RUNS))
    # a runtime's own tool is a second opinion on its own rows only (another runtime's latency is not its to judge)
    if cfg.reference and backend.reference is not None:
        threads_used = out["threads"]
        runs = out["latency"]["runs"]        # as many as ours, within the row's latency budget
        out["reference"] = reference.agreement(
            out["latency"]["p50_ms"], lambda: latency(runner.run, x1, runs, cfg.warmup)["p50_ms"],
            ctx.references.setdefault((str(t.path), threads_used), []),
            lambda: backend.reference.run(t.path, threads_used, runs, cfg.warmup),
            same_engine=backend.reference.same_engine(out["engine"]))
    runner = None           # the model's memory goes before the next row loads its own
    gc.collect()
    out["row_seconds"] = time.perf_counter() - started      # what this row cost the bench
    return out


def _measure(runner, t: Target, backend: Backend, ctx: Context, key) -> dict:
    """First inference, agreement (once per file and backend), latency and throughput of a loaded runner."""
    cfg, x1 = ctx.cfg, ctx.images[:1]
    first_ms = timed(runner.run, x1)
    if key not in ctx.agreement:
        ctx.agreement[key] = _agreement(t, backend, _predict(runner, t, backend, ctx), ctx)
    # A software GPU (the CPU emulating one) is timed briefly and not at batches: its figures are
    # no device's, and at ~0.1-2 s an image they would hold the bench for minutes.
    software = on_software_gpu(runner.placement)
    runs = cfg.runs if backend.max_images is None else min(cfg.runs, 20)
    runs = min(runs, SOFTWARE_GPU_RUNS) if software else runs
    lat = latency(runner.run, x1, runs, min(cfg.warmup, runs, 3 if software else runs), timer=runner.timer,
                  budget_s=LATENCY_BUDGET_S, min_runs=min(MIN_RUNS, runs))
    tput = [throughput(runner.run, ctx.images, b, reps=max(3, cfg.runs // 40), budget_s=THROUGHPUT_BUDGET_S,
                       timer=runner.timer)
            for b in cfg.batches] if backend.batched and not software else []
    return {"engine": runner.runtime, "threads": runner.threads, "first_inference_ms": first_ms,
            "latency": lat, "throughput": tput, **ctx.accuracy[str(t.path)], **ctx.agreement[key],
            "split": ctx.split, "notes": list(runner.notes)}


def _predict(runner, t: Target, backend: Backend, ctx: Context) -> np.ndarray:
    """Outputs on the split's images: as many as the row's budget allows, judged by the first
    batch; all of them on the file's own runtime while they must give its top-1."""
    images = ctx.images[:backend.max_images]
    if backend.name != t.fmt.runtime:
        return _within(runner.predict, images, AGREEMENT_BUDGET_S)
    if str(t.path) not in ctx.outputs:       # no other row ran the file on its own runtime yet
        ctx.outputs[str(t.path)] = _own_outputs(runner.predict, t, ctx)
    return ctx.outputs[str(t.path)]


def _own_outputs(predict, t: Target, ctx: Context) -> np.ndarray:
    return _within(predict, ctx.images, OWN_BUDGET_S) if _recorded(t, ctx) else predict(ctx.images)


def _within(predict, images: np.ndarray, budget_s: float) -> np.ndarray:
    """``predict`` on the first images of ``images``: as many as fit ``budget_s``, at least
    :data:`MIN_AGREEMENT_IMAGES`, judged by the first batch of 64."""
    if len(images) <= MIN_AGREEMENT_IMAGES:
        return predict(images)
    t0 = time.perf_counter()
    first = predict(images[:64])
    per_image = (time.perf_counter() - t0) / len(first)
    n = max(MIN_AGREEMENT_IMAGES, int(budget_s / max(per_image, 1e-9)))
    return np.concatenate([first, predict(images[64:n])]) if n > 64 else first


def _agreement(t: Target, backend: Backend, outputs: np.ndarray, ctx: Context) -> dict:
    """How this backend's outputs agree with the Keras model and with the file on its format's own
    runtime, on the images both ran; settles the file's one top-1 on this split first
    (:func:`file_accuracy`)."""
    own = backend.name == t.fmt.runtime
    reference = outputs if own else _reference_outputs(t, ctx)
    file_accuracy(t, reference, ctx)
    n = min(len(outputs), len(reference))     # fewer than the split's images within a row's budget
    outputs = outputs[:n]
    fields = {"agreement_keras": float(np.mean(outputs.argmax(1) == ctx.keras_outputs[:n].argmax(1))),
              "agreement_images": n}
    fields["agreement_file"] = None if own else float(np.mean(outputs.argmax(1) == reference[:n].argmax(1)))
    fields["max_abs_diff_file"] = None if own else float(np.max(np.abs(outputs - reference[:n])))
    return fields


def _reference_outputs(t: Target, ctx: Context) -> np.ndarray:
    key = str(t.path)
    if key not in ctx.outputs:
        ctx.outputs[key] = _own_outputs(t.fmt.open(t.path).predict, t, ctx)
    return ctx.outputs[key]


def _recorded(t: Target, ctx: Context) -> dict | None:
    """export.json's accuracy of the file on this split, when it covers all the bench's images."""
    from ..export import split_accuracy
    recorded = split_accuracy(t.entry, ctx.split)
    return recorded if recorded is not None and recorded["images"] >= len(ctx.labels) else None


def file_accuracy(t: Target, outputs: np.ndarray, ctx: Context) -> dict:
    """The file's top-1/top-5 on the bench split: export.json's figure when it covers at least
    as many images of this split, else measured here (on the format's own runtime) and kept in
    bench.json only: export.json has one writer, export."""
    key = str(t.path)
    if key in ctx.accuracy:
        return ctx.accuracy[key]
    from ..export import file_accuracy as measured
    recorded = _recorded(t, ctx)
    if recorded is not None:
        figures = {**recorded, "top1_source": "export.json"}
    else:
        figures = {**measured(outputs, ctx.labels, ctx.class_names, t.fmt.runtime), "top1_source": "bench"}
    ctx.accuracy[key] = figures
    return figures


def _on_phone(t: Target, backend: Backend, threads, ctx: Context) -> dict:
    phone = ctx.phone
    if str(t.path) not in ctx.remote:
        ctx.remote[str(t.path)] = phone.push(t.path)
    out = phone.benchmark(ctx.remote[str(t.path)], backend.name, threads, ctx.cfg.runs, ctx.cfg.warmup)
    out.update(engine="benchmark_model", split=ctx.split)
    host = ctx.accuracy.get(str(t.path))
    if host:
        out.update(host)
        out["notes"].append("benchmark_model feeds random inputs: top-1/top-5 are the host LiteRT run of this file")
    return out


def _derive(row: dict, ctx: Context):
    """Achieved ops/s against the machine's peak, and the top-1 drop against the float model."""
    p50 = row["latency"]["p50_ms"]
    best = max((t["images_per_s"] for t in row.get("throughput") or []), default=None)
    row["flops"] = ctx.flops
    row["gops"] = ctx.flops / (p50 / 1e3) / 1e9 if p50 and ctx.flops else None
    row["gops_batch"] = ctx.flops * best / 1e9 if best and ctx.flops else None
    if row["device"] == "cpu":
        row["peak_gops"] = peak_for(ctx.peak, row["peak_kind"], row["threads"])
        if row["peak_gops"]:
            row["peak_fraction"] = row["gops"] / row["peak_gops"] if row["gops"] else None
            row["peak_fraction_batch"] = row["gops_batch"] / row["peak_gops"] if row["gops_batch"] else None
    if row.get("top1") is not None and ctx.float_ref:
        row["top1_drop_points"] = (ctx.float_ref["top1"] - row["top1"]) * 100
        row["drop_against"] = ctx.float_ref["source"]
