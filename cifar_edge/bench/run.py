"""`bench_run`: every variant of a run (and of its optimize runs) on every runtime that can
load it, measured the same way, written to RUN/bench as JSON, CSV, Markdown and plots."""
from __future__ import annotations

import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

from .. import console
from ..data import limit_images, prepare_images
from ..errors import CifarEdgeError
from ..export import file_accuracy
from ..versions import versions
from ..models import count_flops
from ..formats import default_threads, gpu_missing, model_runner
from ..runs import QUANTIZED, RunFolder, load_run, run_data
from .config import BenchConfig
from .gpu import gpu_summary
from .measure import Context, row_count, target_rows
from .peak import measure_peak
from .targets import RunRef, Target, collect_runs, prepare_targets

def bench_run(run_dir, cfg: BenchConfig = BenchConfig(), out_dir=None, command: str = "") -> dict:
    """Bench ``run_dir``; returns the bench.json content (also written, with the other outputs,
    to ``out_dir``, default RUN/bench)."""
    from .outputs import write_outputs
    cfg.validate()
    started = time.perf_counter()
    refs = collect_runs(run_dir, cfg.with_runs, cfg.siblings)        # no model: require_model's error
    phone = None
    if cfg.device:
        from .android import connect
        phone = connect(cfg.device, cfg.benchmark_binary)             # fail before minutes of work
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    console.info(f"measuring this machine's GEMM peak (threads {', '.join(map(str, _peak_threads(cfg)))}) ...")
    peak = measure_peak(_peak_threads(cfg))
    rows, runs, main_float = [], [], None
    for ref in refs:
        run_rows, own_float, class_names = _bench_one(ref, cfg, peak, phone, main_float, command,
                                                      strict=ref is refs[0])
        rows += run_rows
        runs.append({"path": str(ref.root), "method": ref.label, "float": own_float, "class_names": class_names})
        main_float = main_float or own_float
    result = {
        "schema": 1, "run": str(refs[0].root), "runs": runs,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
        "config": cfg.to_dict(), "machine": _machine(load), "peak": peak,
        "versions": versions(), "seconds": None, "rows": rows,
    }
    result["gpu"] = gpu_summary(rows)
    result["machine"]["load_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_outputs(result, Path(out_dir) if out_dir else RunFolder(refs[0].root).bench_dir)
    return result


def _peak_threads(cfg: BenchConfig) -> tuple:
    return tuple(sorted(set(cfg.thread_counts) | {default_threads()}))


def _test_images(loaded, limit):
    """The test split (else the held-out split), ``limit`` images stratified, normalized."""
    data = run_data(loaded)
    if data.x_test is not None and len(data.x_test):
        x, y, split = data.x_test, data.y_test, "test"
    else:
        x, y, split = data.held_out()
    x, y = limit_images(x, y, limit)
    return prepare_images(x, loaded.norm, loaded.input_size), y, split


def _bench_one(ref: RunRef, cfg: BenchConfig, peak: dict, phone, parent_float: dict | None, command: str,
               strict: bool):
    """(rows, its float model's accuracy, class names) of one run.  An extra run that cannot be
    loaded gives one failed row per variant; the run asked for (``strict``) raises instead."""
    try:
        loaded = load_run(ref.root)
        targets = prepare_targets(ref, cfg.chosen_variants(), cfg.export, cfg.export_cfg, command, loaded=loaded)
    except CifarEdgeError as e:
        if strict:
            raise
        return _unusable(ref, cfg, str(e)), None, None
    images, labels, split = _test_images(loaded, cfg.limit)
    console.info(f"benching {ref.root} ({ref.label}): {len(labels)} {split} images, {len(targets)} variants")
    model = model_runner(loaded)          # the reference: Keras, or an import's own runtime
    keras_outputs, runtime = model.predict(images), model.runtime
    own = {**file_accuracy(keras_outputs, labels, loaded.class_names, runtime),
           "source": f"{ref.label} Keras model" if loaded.source == "trained" else f"imported {loaded.source} model ({runtime})"}
    # config.json's FLOPs: count_flops cannot see through a QAT model's quantize wrappers.
    # A QAT model is already fake-quantized: its int8 loss shows only against the float parent.
    float_ref = parent_float if ref.method in QUANTIZED and parent_float else own
    ctx = Context(cfg, peak, images, labels, split, loaded.class_names, _flops(loaded), float_ref, phone,
                  keras_outputs=keras_outputs)
    rows = []
    total = sum(row_count(t, ctx) for t in targets if t.status == "ok")
    with console.progress(f"bench {ref.root.name}", total) as advance:
        for t in targets:
            rows += target_rows(ref, t, ctx, advance)
    return rows, own, list(loaded.class_names)


def _flops(loaded) -> int | None:
    """config.json's FLOPs, else counted on the tf_keras model; None for an import without one."""
    if loaded.config.get("flops"):
        return loaded.config["flops"]
    return count_flops(loaded.keras) if loaded.keras is not None else None


def _unusable(ref: RunRef, cfg: BenchConfig, reason: str) -> list[dict]:
    from .measure import base_row
    console.warn(f"{ref.root}: {reason}")
    rows = []
    for v in cfg.chosen_variants():
        rows.append(base_row(ref, Target(v.name, v.fmt, v.opts, status="failed", reason=reason)))
    return rows


def _machine(load) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = next((ln.split(":", 1)[1].split() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("flags")), [])
    except OSError:
        flags = []
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp")
            if f in flags]
    return {"cpu": cpu, "cores": default_threads(), "simd": simd, "platform": platform.platform(),
            "load_before": load, "gpu": gpu_missing() is None}
