"""Latency and throughput of one loaded model, measured the same way for every runtime:
warm-up runs first, then many timed repetitions, summarized by percentiles (medians, not
means, so one preemption does not move the figure) and a noise indicator."""
from __future__ import annotations

import time

import numpy as np


def summarize(ms) -> dict:
    """Percentiles of per-run times in milliseconds, plus how noisy they were: IQR/median
    and MAD/median (0.05 means the middle half of the runs lies within about 5%)."""
    ms = np.asarray(ms, np.float64)
    p25, p50, p75, p90, p99 = np.percentile(ms, [25, 50, 75, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": float(ms.mean()),
            "min_ms": float(ms.min()), "max_ms": float(ms.max()), "iqr_rel": float((p75 - p25) / p50) if p50 else 0.0,
            "mad_rel": float(np.median(np.abs(ms - p50)) / p50) if p50 else 0.0, "runs": int(len(ms))}


def timed(fn, *args) -> float:
    """Milliseconds one call takes."""
    t0 = time.perf_counter_ns()
    fn(*args)
    return (time.perf_counter_ns() - t0) / 1e6


def latency(run, x1: np.ndarray, runs: int, warmup: int, timer=None, budget_s: float | None = None,
            min_runs: int = 30) -> dict:
    """Single-image latency of ``run(x1)``: ``warmup`` untimed calls, then ``runs`` timed ones
    (by ``timer(x, runs, warmup)`` when the runtime times itself, e.g. inside a browser page).
    With ``budget_s``, timing stops once that much time has passed and ``min_runs`` are in."""
    if timer is not None:
        if budget_s is not None:          # size the page's loop from one timed call
            one = float(np.median(timer(x1, 3, min(warmup, 3))))
            runs = max(min(runs, min_runs), min(runs, int(budget_s * 1e3 / max(one, 1e-3))))
        return {**summarize(list(timer(x1, runs, warmup))), "warmup": warmup}
    for _ in range(warmup):
        run(x1)
    times, start = [], time.perf_counter()
    while len(times) < runs and (budget_s is None or len(times) < min_runs or time.perf_counter() - start < budget_s):
        times.append(timed(run, x1))
    return {**summarize(times), "warmup": warmup}


def throughput(run, images: np.ndarray, batch: int, reps: int = 10, budget_s: float = 1.5, timer=None) -> dict:
    """Images per second at one batch size: the median of ``reps`` timed batches (at least 3
    when ``budget_s`` runs out first).  One untimed batch first, since a runtime may re-plan its
    buffers for a new batch size; when that batch alone outlasts the budget, it is the figure."""
    x = np.ascontiguousarray(images[np.resize(np.arange(len(images)), batch)])   # repeats when fewer
    if timer is not None:
        med = float(np.median(timer(x, max(3, reps // 2), 1)))
        return {"batch": batch, "images_per_s": batch / (med / 1e3), "batch_ms": med, "reps": max(3, reps // 2)}
    first = timed(run, x)
    if first > budget_s * 1e3:       # a batch slower than the budget: re-planning is noise beside it
        return {"batch": batch, "images_per_s": batch / (first / 1e3), "batch_ms": first, "reps": 1}
    times, start = [], time.perf_counter()
    while len(times) < reps and (len(times) < 3 or time.perf_counter() - start < budget_s):
        times.append(timed(run, x))
    med = float(np.median(times))
    return {"batch": batch, "images_per_s": batch / (med / 1e3), "batch_ms": med, "reps": len(times)}
