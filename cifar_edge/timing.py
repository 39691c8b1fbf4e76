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


def latency(run, x1: np.ndarray, runs: int, warmup: int, timer=None) -> dict:
    """Single-image latency of ``run(x1)``: ``warmup`` untimed calls, then ``runs`` timed ones
    (by ``timer(x, runs, warmup)`` when the runtime times itself, e.g. inside a browser page)."""
    if timer is not None:
        return {**summarize(list(timer(x1, runs, warmup))), "warmup": warmup}
    for _ in range(warmup):
        run(x1)
    return {**summarize([timed(run, x1) for _ in range(runs)]), "warmup": warmup}


def throughput(run, images: np.ndarray, batch: int, reps: int = 10, budget_s: float = 1.5, timer=None) -> dict:
    """Images per second at one batch size: the median of ``reps`` timed batches (at least 3
    when ``budget_s`` runs out first).  One untimed batch first, since a runtime may re-plan
    its buffers for a new batch size."""
    x = np.ascontiguousarray(images[np.resize(np.arange(len(images)), batch)])   # repeats when fewer
    if timer is not None:
        med = float(np.median(timer(x, max(3, reps // 2), 1)))
        return {"batch": batch, "images_per_s": batch / (med / 1e3), "batch_ms": med, "reps": max(3, reps // 2)}
    run(x)
    times, start = [], time.perf_counter()
    while len(times) < reps and (len(times) < 3 or time.perf_counter() - start < budget_s):
        times.append(timed(run, x))
    med = float(np.median(times))
    return {"batch": batch, "images_per_s": batch / (med / 1e3), "batch_ms": med, "reps": len(times)}
