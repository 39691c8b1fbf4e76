"""The bench's figures, in the evaluation plots' style (bare Figures, Agg, atomic writes):
accuracy against latency with the Pareto front, file sizes, and per-class int8 drift."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..evaluate.plots import _save
from ..formats import on_software_gpu

ACCURACY_LATENCY, SIZES, DRIFT = "accuracy_latency.png", "sizes.png", "int8_drift.png"


def pareto_front(latency, accuracy) -> list[int]:
    """Indices of the points no other point beats on both (lower latency, higher accuracy),
    fastest first."""
    order = sorted(range(len(latency)), key=lambda i: (latency[i], -accuracy[i]))
    front, best = [], -np.inf
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
    return front


def _label(r) -> str:
    return f"{r['name']} {r['backend']}" + (f" t{r['threads']}" if r.get("threads") else "")


def _empty(path, text):
    fig = Figure(figsize=(5, 2))
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=11)
    return _save(fig, path, tight=False)


def plot_accuracy_latency(rows, path):
    pts = [r for r in rows if r["status"] == "ok" and r.get("top1") is not None and r["latency"]["p50_ms"]
           and not on_software_gpu(r.get("placement"))]        # a CPU emulating a GPU: no device's latency
    if not pts:
        return _empty(path, "no row measured both accuracy and latency")
    lat = [r["latency"]["p50_ms"] for r in pts]
    acc = [100 * r["top1"] for r in pts]
    backends = sorted({r["backend"] for r in pts})
    markers = {"float32": "o", "fp16": "s", "dynamic": "D", "int8": "^"}
    fig = Figure(figsize=(9, 5.5))
    ax = fig.add_subplot()
    for j, b in enumerate(backends):
        for prec, m in markers.items():
            idx = [i for i, r in enumerate(pts) if r["backend"] == b and r["precision"] == prec]
            if idx:
                ax.scatter([lat[i] for i in idx], [acc[i] for i in idx], marker=m, color=f"C{j % 10}", alpha=0.75,
                           label=f"{b} {prec}")
    front = pareto_front(lat, acc)
    ax.step([lat[i] for i in front], [acc[i] for i in front], where="post", color="black", linewidth=1,
            label="Pareto front")
    for i in front:
        ax.scatter(lat[i], acc[i], s=120, facecolors="none", edgecolors="black")
        ax.annotate(_label(pts[i]), (lat[i], acc[i]), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("single-image latency p50 (ms, log scale)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title("Accuracy vs latency (circled: Pareto front)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def plot_sizes(rows, path):
    files = {}
    for r in rows:
        if r.get("size_bytes"):
            files.setdefault(r["name"], (r["size_bytes"], r["gzip_bytes"]))
    if not files:
        return _empty(path, "no exported file to size")
    names = list(files)
    size = np.array([s for s, _ in files.values()]) / 1e6
    gz = np.array([g for _, g in files.values()]) / 1e6
    y = np.arange(len(names))
    fig = Figure(figsize=(8, 0.45 * len(names) + 1.2))
    ax = fig.add_subplot()
    ax.barh(y - 0.2, size, height=0.4, label="file", color="C0")
    ax.barh(y + 0.2, gz, height=0.4, label="gzip -9 (download)", color="C2")
    for yi, s in zip(y, size):
        ax.text(s, yi - 0.2, f" {s:.2f}", va="center", fontsize=7)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("MB")
    ax.set_title("Model file sizes")
    ax.legend(fontsize=8)
    return _save(fig, path)


def drift_series(result) -> list[tuple[str, np.ndarray]]:
    """(label, per-class top-1 change in points vs the float model) for each quantized file,
    taken from its first measured row."""
    floats = {run["method"]: run["float"] for run in result["runs"] if run.get("float")}
    out, seen = [], set()
    for r in result["rows"]:
        ref = floats.get(r["method"])
        if r["precision"] not in ("int8", "int16x8", "dynamic") or r["name"] in seen or not r.get("per_class_top1") or not ref:
            continue
        seen.add(r["name"])
        out.append((r["name"], 100 * (np.array(r["per_class_top1"]) - np.array(ref["per_class_top1"]))))
    return out


def plot_int8_drift(result, path):
    series = drift_series(result)
    names = next((run["class_names"] for run in result["runs"] if run.get("class_names")), None)
    if not series or not names:
        return _empty(path, "no quantized file was measured")
    c = len(names)
    x = np.arange(c)
    width = 0.8 / len(series)
    fig = Figure(figsize=(max(7.0, 0.35 * c * max(1, len(series) / 3) + 2), 4.2))
    ax = fig.add_subplot()
    for k, (label, delta) in enumerate(series):
        ax.bar(x - 0.4 + width * (k + 0.5), np.nan_to_num(delta), width=width, label=label, color=f"C{k % 10}")
    ax.axhline(0, color="black", linewidth=0.8)
    if c <= 40:
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("top-1 change vs float (points)")
    ax.set_title("Per-class drift of the quantized files")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def write_plots(result, out) -> dict:
    rows = result["rows"]
    return {"plot_accuracy_latency": plot_accuracy_latency(rows, out / ACCURACY_LATENCY),
            "plot_sizes": plot_sizes(rows, out / SIZES),
            "plot_int8_drift": plot_int8_drift(result, out / DRIFT)}
