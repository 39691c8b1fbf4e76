"""The bench's files: bench.json (everything), bench.csv (one flat line per row), bench.md
(the table a person reads, with the machine, its peak and the plots) and the terminal table.
The columns are defined once here, so the CSV, the Markdown and the terminal agree."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..fileio import write_csv, write_json, write_text
from .gpu import gpu_lines
from .reference import ROUNDS

JSON, CSV, MD = "bench.json", "bench.csv", "bench.md"


@dataclass(frozen=True)
class Column:
    header: str
    get: Callable           # row -> raw value (None when not measured)
    fmt: str = "{}"         # how the tables show a value
    show: str = "tm"        # in the terminal (t) and Markdown/HTML (m) tables; every column is in the CSV


def _lat(key):
    return lambda r: (r.get("latency") or {}).get(key)


def _tput(batch):
    return lambda r: next((t["images_per_s"] for t in r.get("throughput") or [] if t["batch"] == batch), None)


def _ref(key, same_engine_only=False):
    """A field of the reference CLI's result; its ratio only where both ran XNNPACK."""
    def get(r):
        ref = r.get("reference") or {}
        return None if same_engine_only and not ref.get("same_engine") else ref.get(key)
    return get


def _pct(key):
    return lambda r: None if r.get(key) is None else 100 * r[key]


def _mb(key):
    return lambda r: None if r.get(key) is None else r[key] / 1e6


def _placement(r):
    """``XNNPACK 21/21``: the engine and how many of the graph's nodes it took; the ops that fell
    back to builtin kernels after it (``+ CUMSUM x1 builtin``)."""
    p = r.get("placement")
    if not p:
        return None
    if "nodes" not in p:
        return p["engine"]
    if "delegated" not in p:      # the runtime tells only that some of its nodes fell back
        return f"{p['engine']}: not all {p['nodes']} nodes"
    text = f"{p['engine']} {p['delegated']}/{p['nodes']}"
    if p.get("fallback") and p["delegated"]:
        text += " + " + ", ".join(f"{op} x{n}" for op, n in p["fallback_ops"].items()) + \
            f" {p.get('fallback_engine', 'builtin')}"
    return text


def _adapter(r):
    """The GPU adapter a row ran on (a GPU accelerator's or the browser's WebGPU), marked when it
    is software: the CPU emulating a GPU, whose latency is no device's."""
    a = (r.get("placement") or {}).get("adapter")
    if not a:
        return None
    return f"{a['name']}{' (software)' if a.get('software') else ''}"


def _footprint(key, scale=1024):
    return lambda r: None if not r.get("footprint") else r["footprint"][key] / scale


def _fits(r):
    f = (r.get("footprint") or {}).get("fits")
    if not f:
        return None
    return f"RAM {f['ram'] or '> 1 MB'}, flash {f['flash'] or '> 2 MB'}"


def columns(batches=(32, 64)) -> list[Column]:
    return [
        Column("variant", lambda r: r["name"]),
        Column("runtime", lambda r: r["backend"]),
        Column("threads", lambda r: r["threads"]),
        Column("status", lambda r: r["status"]),
        Column("top-1 %", _pct("top1"), "{:.2f}"),
        Column("top-5 %", _pct("top5"), "{:.2f}", show="m"),
        Column("drop pts", lambda r: r.get("top1_drop_points"), "{:+.2f}"),
        Column("agree Keras %", _pct("agreement_keras"), "{:.2f}"),
        Column("agree file %", _pct("agreement_file"), "{:.2f}", show="m"),
        Column("max |diff| file", lambda r: r.get("max_abs_diff_file"), "{:.2g}", show="m"),
        Column("MB", _mb("size_bytes"), "{:.3f}"),
        Column("gzip MB", _mb("gzip_bytes"), "{:.3f}", show="m"),
        Column("p50 ms", _lat("p50_ms"), "{:.3f}"),
        Column("p90 ms", _lat("p90_ms"), "{:.3f}", show="m"),
        Column("p99 ms", _lat("p99_ms"), "{:.3f}"),
        Column("IQR/p50", _lat("iqr_rel"), "{:.1%}"),
        *[Column(f"img/s @{b}", _tput(b), "{:,.0f}", "tm" if b == max(batches) else "m") for b in batches],
        Column("load ms", lambda r: r.get("load_ms"), "{:.1f}", show="m"),
        Column("1st ms", lambda r: r.get("first_inference_ms"), "{:.2f}", show="m"),
        Column("RSS MB", lambda r: r.get("peak_rss_delta_mb"), "{:.1f}"),
        Column("GOPS", lambda r: r.get("gops"), "{:.1f}", show="m"),
        Column("% peak", _pct("peak_fraction"), "{:.0f}"),
        Column("peak GOPS", lambda r: r.get("peak_gops"), "{:.0f}", show="m"),
        Column("ref ms", _ref("median_ms"), "{:.3f}", show="m"),
        Column("ours/ref", _ref("ratio", same_engine_only=True), "{:.2f}"),
        Column("placement", _placement, show="m"),
        Column("GPU adapter", _adapter, show="m"),
        Column("arena KB", _footprint("arena_bytes"), "{:.1f}", show="m"),
        Column("flash KB", _footprint("flash_bytes"), "{:.1f}", show="m"),
        Column("MCU fits", _fits, show="m"),
        Column("notes", lambda r: "; ".join(filter(None, [r.get("reason"), *r.get("notes", [])]))),
        # CSV only
        Column("run", lambda r: r["run"], show=""),
        Column("method", lambda r: r["method"], show=""),
        Column("format", lambda r: r["format"], show=""),
        Column("precision", lambda r: r["precision"], show=""),
        Column("io", lambda r: r["io"], show=""),
        Column("file", lambda r: r["file"], show=""),
        Column("engine", lambda r: r.get("engine"), show=""),
        Column("export", lambda r: r.get("export"), show=""),
        Column("device", lambda r: r["device"], show=""),
        Column("images", lambda r: r.get("images"), show=""),
        Column("agreement images", lambda r: r.get("agreement_images"), show=""),
        Column("split", lambda r: r.get("split"), show=""),
        Column("mean ms", _lat("mean_ms"), show=""),
        Column("min ms", _lat("min_ms"), show=""),
        Column("MAD/p50", _lat("mad_rel"), show=""),
        Column("timed runs", _lat("runs"), show=""),
        Column("FLOPs/image", lambda r: r.get("flops"), show=""),
        Column("GOPS batch", lambda r: r.get("gops_batch"), show=""),
        Column("% peak batch", _pct("peak_fraction_batch"), show=""),
        Column("peak kind", lambda r: r.get("peak_kind"), show=""),
        Column("ref agrees", _ref("agrees"), show=""),
        Column("sha256", lambda r: r.get("sha256"), show=""),
    ]


def cell(col: Column, row: dict) -> str:
    v = col.get(row)
    if v is None or v == "":
        return "-" if col.header != "notes" else ""
    try:
        return col.fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def _batches(result) -> tuple:
    return tuple(result["config"].get("batches") or (32, 64))


def write_outputs(result: dict, out: Path) -> dict:
    """bench.json, bench.csv, the plots and bench.md in ``out``; returns {name: path}."""
    from . import plots
    cols = columns(_batches(result))
    paths = {"json": out / JSON, "csv": out / CSV, "md": out / MD}
    write_json(paths["json"], result)
    write_csv(paths["csv"], [c.header for c in cols], [[c.get(r) for c in cols] for r in result["rows"]])
    paths.update(plots.write_plots(result, out))
    write_text(paths["md"], markdown(result, {k: Path(v).name for k, v in paths.items() if k.startswith("plot_")}))
    return paths


def summary_lines(result: dict) -> list[str]:
    """Machine, peak and method in a few lines (Markdown and the HTML report start with them)."""
    m, p, c = result["machine"], result["peak"], result["config"]
    peaks = ", ".join(f"{kind} {p[kind][t]:.0f} GOPS @{t} thread{'s' * (t != '1')}"
                      for kind in ("float32", "int8") for t in p.get(kind, {}) if p[kind][t])
    load = m.get("load_before")
    lines = [f"machine: {m['cpu']}, {m['cores']} cores ({', '.join(m['simd']) or 'no SIMD flags read'}), "
             f"GPU: {'yes' if m.get('gpu') else 'none'}"
             + (f", load average {load[0]:.2f} before / {m['load_after'][0]:.2f} after" if load else ""),
             f"measured peak: {peaks} ({p['method']})",
             f"latency: single image, {c['warmup']} warm-up then {c['runs']} timed runs per row, p50/p90/p99 "
             f"with IQR/p50 as noise; throughput: median of timed batches at {', '.join(map(str, c['batches']))}; "
             f"accuracy: {'all' if not c['limit'] else c['limit']} test images (stratified)",
             f"bench took {result['seconds']:.0f} s"]
    if load and load[0] > 0.5 * m["cores"]:
        lines.append(f"warning: the machine was busy (load {load[0]:.2f} on {m['cores']} cores): latencies are "
                     "inflated and noisy; re-run on a quiet machine for publishable numbers")
    return lines


def markdown(result: dict, plots: dict) -> str:
    cols = [c for c in columns(_batches(result)) if "m" in c.show]
    rows = result["rows"]
    out = [f"# Bench of {result['run']}", "", *[f"- {ln}" for ln in summary_lines(result)], "",
           "| " + " | ".join(c.header for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(cell(c, r).replace("|", "\\|") for c in cols) + " |" for r in rows]
    refs = [r["reference"] for r in rows if (r.get("reference") or {}).get("ratio") and r["reference"]["same_engine"]]
    if refs:
        agree = sum(x["agrees"] for x in refs)
        out += ["", f"LiteRT's own benchmark CLI agrees within 25% on {agree} of {len(refs)} XNNPACK rows "
                    f"(ours/theirs {min(x['ratio'] for x in refs):.2f}..{max(x['ratio'] for x in refs):.2f}; "
                    f"{sum(x.get('rounds', 1) > 1 for x in refs)} disagreed at first and were measured again, "
                    f"both sides, up to {ROUNDS} rounds: medians compared)."]
    out += gpu_lines(result.get("gpu"))
    out += op_profiles(rows)
    out += ["", *[f"![{name}]({file})" for name, file in plots.items()], ""]
    return "\n".join(out)


def op_profiles(rows: list, top: int = 5) -> list[str]:
    """bench --profile-ops: per row, where the time goes by op type and the slowest nodes."""
    profiled = [r for r in rows if r.get("op_profile")]
    if not profiled:
        return []
    out = ["", "## Per-op profile", "",
           "Mean time per single-image inference, from each runtime's own profiler; LiteRT has none in Python, so "
           "each of its ops is cut out into a one-op model, fed the tensors it sees in the whole model and timed "
           "alone. The sum is near the row's p50, not equal to it: a profiler leaves out the runtime's work "
           "between ops, an op timed alone adds one invoke's overhead and loses fusion across ops.", "",
           "| variant | runtime | threads | ops total ms | by op type | slowest nodes (kernel) |", "|---|---|---|---|---|---|"]
    for r in profiled:
        p = r["op_profile"]
        kinds = ", ".join(f"{op} {ms:.3f} ({ms / p['total_ms']:.0%})" if p["total_ms"] else f"{op} {ms:.3f}"
                          for op, ms in list(p["by_op"].items())[:top])
        if p.get("untimed"):
            kinds += f"; {len(p['untimed'])} op(s) not timed ({p['untimed'][0]['reason']})"
        slow = ", ".join(f"{n['node']} {n['ms']:.3f} ({n['kernel']})" for n in p["slowest"][:3])
        out.append(f"| {r['name']} | {r['backend']} | {r['threads']} | {p['total_ms']:.3f} | {kinds} | "
                   f"{slow.replace('|', '/')} |")
    return out


def rich_table(result: dict):
    """The terminal table (the CLI prints it)."""
    from rich.table import Table
    cols = [c for c in columns(_batches(result)) if "t" in c.show]
    t = Table(title=f"bench of {result['run']}  ({result['seconds']:.0f} s)")
    for c in cols:
        t.add_column(c.header, justify="left" if c.header in ("method", "variant", "runtime", "status", "notes")
                     else "right", overflow="fold")
    style = {"ok": None, "skipped": "dim", "failed": "red"}
    for r in result["rows"]:
        t.add_row(*[cell(c, r) for c in cols], style=style.get(r["status"]))
    return t
