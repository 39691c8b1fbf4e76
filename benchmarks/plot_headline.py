"""The README's picture: top-1 against 1-thread latency and against file size, for every file of
the default CNN (bench_cifar10) and of MobileNetV2 at 96 px (int8_mobilenetv2_96), read from the
recorded results, so the picture changes only when a result does.

    python benchmarks/plot_headline.py [--out benchmarks/results/headline.png]

Each file is shown on its own runtime (LiteRT for .tflite, onnxruntime for .onnx, OpenVINO for
the IR), 1 thread, as measured; the Keras model has no 1-thread row and is left out.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
OWN_RUNTIME = {"tflite": "litert", "onnx": "onnxruntime", "openvino": "openvino"}


def bench_table(markdown: str) -> list[dict]:
    """The rows of the bench table (bench.md) that bench_cifar10.md records, as dicts by column."""
    lines = [line for line in markdown.splitlines() if line.startswith("| variant | runtime |")]
    if not lines:
        raise SystemExit("error: no bench table ('| variant | runtime | ...') in the results; run "
                         "benchmarks/bench_cifar10.py first")
    rows, start = [], markdown.splitlines().index(lines[0])
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    for line in markdown.splitlines()[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def default_cnn_points(results: Path = RESULTS) -> list[dict]:
    """Each file of the default CNN's bench on its own runtime at 1 thread (2,000 CIFAR-10 test images)."""
    points = []
    for r in bench_table((results / "bench_cifar10.md").read_text()):
        fmt = r["variant"].split("-")[0]
        if r["status"] == "ok" and r["threads"] == "1" and r["runtime"] == OWN_RUNTIME.get(fmt):
            points.append({"file": r["variant"], "top1": float(r["top-1 %"]), "mb": float(r["MB"]),
                           "ms": float(r["p50 ms"]), "int": "int" in r["variant"] or "dynamic" in r["variant"]})
    return points


def mobilenet_points(results: Path = RESULTS) -> list[dict]:
    """Each file of MobileNetV2-96's int8 study (2,000 held-out CIFAR-100 images, LiteRT, 1 thread);
    the --max-drop winner is left out when it is the plain int8 file again."""
    rows = json.loads((results / "int8_mobilenetv2_96.json").read_text())["rows"]
    points, seen = [], set()
    for name, r in rows.items():
        key = (r["top1"], r["size_bytes"])
        if key in seen:
            continue
        seen.add(key)
        points.append({"file": name, "top1": 100 * r["top1"], "mb": r["size_bytes"] / 1e6,
                       "ms": r["latency_ms_1thread"], "int": name != "float32"})
    return points


def _labels(points: list[dict], key: str) -> list[tuple]:
    """(x, y, points up) of each point's label: the names of a cluster of files (top-1 within 0.2
    points, ``key`` within 1.6x) stand one above another over it, lowest top-1 first, instead of
    on top of each other."""
    places = [None] * len(points)
    order = sorted(range(len(points)), key=lambda i: points[i][key])
    clusters = []
    for i in order:
        c = clusters[-1] if clusters else None
        if c and points[i][key] < 1.6 * points[c[0]][key] and all(abs(points[i]["top1"] - points[j]["top1"]) <= 0.2 for j in c):
            c.append(i)
        else:
            clusters.append([i])
    for c in clusters:
        top = max(points[j]["top1"] for j in c)
        for k, j in enumerate(sorted(c, key=lambda j: (points[j]["top1"], points[j][key]))):
            places[j] = (points[c[0]][key], top, 6 + 11 * k if len(c) > 1 else 4)
    return places


def plot(out: Path, results: Path = RESULTS) -> dict:
    """Draw both models' files on a 2 x 2 grid (latency, size) into ``out``; returns the points drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    panels = {"default CNN (cnn), CIFAR-10, 2,000 test images": default_cnn_points(results),
              "MobileNetV2 96 px (ImageNet weights), CIFAR-100, 2,000 held out": mobilenet_points(results)}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    for row, (title, points) in zip(axes, panels.items()):
        for ax, key, label in ((row[0], "ms", "latency, ms per image (1 thread, p50; log)"),
                               (row[1], "mb", "file size, MB (log)")):
            places = _labels(points, key)
            for p, (x, y, up) in zip(points, places):
                ax.scatter(p[key], p["top1"], s=36, marker="o" if p["int"] else "s",
                           color="tab:orange" if p["int"] else "tab:blue", zorder=3)
                ax.annotate(p["file"], (x, y), textcoords="offset points", xytext=(6, up), fontsize=7)
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            span = max(p[key] for p in points) / min(p[key] for p in points)
            ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g") if span < 10
                                         else matplotlib.ticker.NullFormatter())
            ax.set_xlabel(label)
            ax.set_ylabel("top-1 %")
            ax.set_title(title, fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            low, high = min(p["top1"] for p in points), max(p["top1"] for p in points)
            ax.set_ylim(low - 0.3, high + 0.3 + 0.012 * max(up for _, _, up in places))
            ax.margins(x=0.25)
    fig.suptitle("every exported file: top-1 against latency and size (blue squares float, orange circles "
                 "quantized; 2-core AMD EPYC)", fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return panels


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "headline.png", help="PNG to write")
    args = parser.parse_args(argv)
    panels = plot(args.out)
    print(f"{args.out}: {', '.join(f'{len(p)} files' for p in panels.values())}")


if __name__ == "__main__":
    main()
