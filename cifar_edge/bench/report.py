"""`cifar-edge report RUN`: the run on one self-contained HTML page (training curves and
metrics, exports, bench table and plots), images inlined as base64 so the page can be
mailed or attached to a CI build and still show everything."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from ..export import read_manifest
from ..fileio import read_json, write_text
from ..runs import RunFolder
from .gpu import HEADERS as GPU_HEADERS, gpu_table
from .outputs import JSON, cell, columns, summary_lines
from .plots import ACCURACY_LATENCY, DRIFT, SIZES

REPORT = "report.html"
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1400px;color:#222;
padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:12px;margin:.6em 0}th,td{border:1px solid #ddd;padding:3px 6px;
text-align:right;white-space:nowrap}th{background:#f3f3f3}td.l,th.l{text-align:left}td.notes{white-space:normal;
text-align:left;max-width:28em}tr.skipped{color:#888}tr.failed{color:#b00}img{max-width:100%;margin:.5em 0;
border:1px solid #eee}.muted{color:#666}ul.facts{padding-left:1.2em}.wide{overflow-x:auto}
"""
_LEFT = ("variant", "runtime", "status", "file", "metric", "setting")


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(headers, rows, classes=None) -> str:
    head = "".join(f'<th class="{"l" if h in _LEFT else ""}">{html.escape(str(h))}</th>' for h in headers)
    body = []
    for k, row in enumerate(rows):
        tds = "".join(f'<td class="{"notes" if h == "notes" else "l" if h in _LEFT else ""}">{html.escape(str(v))}</td>'
                      for h, v in zip(headers, row))
        body.append(f'<tr class="{classes[k] if classes else ""}">{tds}</tr>')
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _training(run: RunFolder) -> list[str]:
    out = ["<h2>Training</h2>"]
    config = read_json(run.config) if run.config.is_file() else {}
    train = config.get("train", {})
    facts = {k: train.get(k) for k in ("model", "data", "epochs", "batch_size", "optimizer", "lr", "schedule")
             if train.get(k) is not None}
    if config.get("optimize"):
        facts["optimize"] = config["optimize"].get("method")
        facts["parent"] = config.get("parent")
    if facts:
        out.append(_table(["setting", "value"], list(facts.items())))
    if run.metrics.is_file():
        m = read_json(run.metrics)
        keys = [k for k in ("split", "n", "top1", "top5", "loss", "macro_f1", "epochs_run", "train_seconds",
                            "images_per_second") if m.get(k) is not None]
        out.append(_table(["metric", "value"], [(k, f"{m[k]:.4f}" if isinstance(m[k], float) else m[k]) for k in keys]))
    else:
        out.append('<p class="muted">no metrics.json: the run has not finished training.</p>')
    for name, alt in (("curves.png", "training curves"), ("confusion.png", "confusion matrix")):
        found = next((p for p in (run.root / name, run.root / "evaluation" / name) if p.is_file()), None)
        if found:
            out.append(_img(found, alt))
    return out


def _exports(run: RunFolder) -> list[str]:
    out = ["<h2>Exports</h2>"]
    entries = list(read_manifest(run.export_dir).values())
    if not entries:
        return out + [f'<p class="muted">no export.json: run <code>cifar-edge export {html.escape(str(run.root))} '
                      "--all</code> (or the bench, which exports).</p>"]
    rows = [(e["variant"], e["file"], f"{e['size_bytes'] / 1e6:.3f}", f"{e['gzip_bytes'] / 1e6:.3f}",
             f"{e['parity']['top1_agreement']:.2%}", f"{e['parity']['max_abs_diff']:.3g}",
             "; ".join(f"{a['top1']:.2%} ({split}, {a['images']})" for split, a in (e.get("accuracy") or {}).items()),
             e["sha256"][:12]) for e in entries]
    return out + [_table(["variant", "file", "MB", "gzip MB", "agreement", "max |diff|", "top-1 (split, images)", "sha256"],
                         rows)]


def _bench(run: RunFolder) -> list[str]:
    out = ["<h2>Bench</h2>"]
    folder = run.bench_dir
    if not (folder / JSON).is_file():
        return out + [f'<p class="muted">no bench.json: run <code>cifar-edge bench {html.escape(str(run.root))}'
                      "</code>.</p>"]
    result = read_json(folder / JSON)
    out.append('<ul class="facts">' + "".join(f"<li>{html.escape(ln)}</li>" for ln in summary_lines(result)) + "</ul>")
    cols = [c for c in columns(tuple(result["config"].get("batches") or (32, 64))) if "m" in c.show]
    out.append('<div class="wide">' + _table([c.header for c in cols], [[cell(c, r) for c in cols]
                                                                       for r in result["rows"]],
                                             [r["status"] for r in result["rows"]]) + "</div>")
    if result.get("gpu"):
        adapter, rows, advice = gpu_table(result["gpu"])
        out += ["<h3>GPU path (LiteRT's GPU accelerator)</h3>", f"<p>{html.escape(adapter)}</p>",
                _table(list(GPU_HEADERS), rows),
                '<ul class="facts">' + "".join(f"<li>{html.escape(a)}</li>" for a in advice) + "</ul>"]
    for name, alt in ((ACCURACY_LATENCY, "accuracy vs latency"), (SIZES, "file sizes"), (DRIFT, "int8 drift")):
        if (folder / name).is_file():
            out.append(_img(folder / name, alt))
    return out


def write_report(run_dir) -> Path:
    """Write RUN/report.html (atomically) and return its path."""
    run = RunFolder(run_dir)
    run.require_model()
    title = f"cifar-edge report: {run.root.name}"
    body = [f"<h1>{html.escape(title)}</h1>", f'<p class="muted">{html.escape(str(run.root.resolve()))}</p>',
            *_training(run), *_exports(run), *_bench(run)]
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    path = run.root / REPORT
    write_text(path, page)
    return path
