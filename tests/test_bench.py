"""Bench: every variant of the format table on every runtime that can load it, outputs that
parse, rows that say why they were skipped or failed, the CI gate's exit codes, the phone path
on a recorded benchmark_model transcript, and a self-contained HTML report.  Behaviour, not
timings: the machine running the tests is busy."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cifar_edge.bench import BenchConfig, bench_run, gate, write_report
from cifar_edge.bench.android import (benchmark_command, connect, parse_benchmark_model, parse_device,
                                      parse_devices, pick_serial, to_measurement)
from cifar_edge.formats import BACKENDS, variants
from cifar_edge.bench.targets import collect_runs, prepare_targets
from cifar_edge.cli import app
from cifar_edge.errors import CifarEdgeError
from cifar_edge.fileio import read_json, write_json
from conftest import train_tiny
from cifar_edge.runs import RunFolder

DATA = Path(__file__).parent / "data" / "benchmark_model"
FAST = dict(runs=10, warmup=2, limit=200, threads=(1,))
cli = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("bench") / "run", epochs=1)


# Rows on a software GPU (LiteRT's GPU accelerator on lavapipe, WebGPU on SwiftShader) take about
# a minute each at 200 images: tests/test_gpu_rows.py runs them on a few files instead.
SOFTWARE_GPU_ROWS = ("litert-gpu", "litert-gpu-f32", "onnxruntime-web-webgpu", "litert-web-webgpu")


@pytest.fixture(scope="module")
def benched(run):
    """The full bench (every variant, every runtime but SOFTWARE_GPU_ROWS; exports them first) at a small size."""
    runtimes = tuple(b for b in BACKENDS if b not in SOFTWARE_GPU_ROWS)
    return bench_run(run, BenchConfig(**FAST, runtimes=runtimes), command="test")


def _copy(run: Path, dest: Path) -> Path:
    """A copy of the run with its exports (export.json still vouches for them), without bench/."""
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("bench", "report.html"))
    return dest


# --------------------------------------------------------------------------- the full bench
def test_every_output_is_written_and_parses(run, benched):
    out = run / "bench"
    data = json.loads((out / "bench.json").read_text())
    assert data["rows"] == json.loads(json.dumps(benched["rows"]))
    with open(out / "bench.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == len(data["rows"]) and {"variant", "runtime", "p50 ms", "top-1 %"} <= set(lines[0])
    md = (out / "bench.md").read_text()
    assert md.count("\n|") >= len(data["rows"]) + 1 and "measured peak" in md
    for png in ("accuracy_latency.png", "sizes.png", "int8_drift.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.size[0] > 200, png
        assert f"]({png})" in md


def test_every_variant_appears_and_every_row_says_why(benched):
    rows = benched["rows"]
    assert {r["variant"] for r in rows} == set(variants())
    for r in rows:
        assert r["status"] in ("ok", "skipped", "failed"), r
        if r["status"] != "ok":
            assert r["reason"], r
    for name in variants():    # each file ran on each CPU runtime of its format
        cpu = [r for r in rows if r["variant"] == name and r["device"] == "cpu"]
        assert cpu and all(r["status"] == "ok" for r in cpu), [(r["backend"], r["reason"]) for r in cpu]
    gpu = [r for r in rows if r["device"] == "gpu"]
    assert {r["backend"] for r in gpu} == {b.name for b in BACKENDS.values()
                                           if b.device == "gpu" and b.name not in SOFTWARE_GPU_ROWS}
    if not benched["machine"]["gpu"]:
        assert all(r["status"] == "skipped" and "no GPU" in r["reason"] for r in gpu)
    tflite = {r["backend"] for r in rows if r["format"] == "tflite"}
    assert {"litert", "litert-no-xnnpack", "litert-compiled"} <= tflite


def test_rows_carry_the_measurements(benched):
    ok = [r for r in benched["rows"] if r["status"] == "ok"]
    for r in ok:
        lat = r["latency"]
        assert lat["runs"] == FAST["runs"] and 0 < lat["min_ms"] <= lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
        assert lat["iqr_rel"] >= 0 and lat["mad_rel"] >= 0 and r["threads"] >= 1
        if BACKENDS[r["backend"]].batched:     # (TFLite Micro runs one image at a time, as on the device)
            assert [t["batch"] for t in r["throughput"]] == [32, 64] and all(t["images_per_s"] > 0 for t in r["throughput"])
        assert 0 <= r["top1"] <= r["top5"] <= 1 and r["images"] == 200 and r["split"] == "test"
        assert r["size_bytes"] > r["gzip_bytes"] > 0 and len(r["sha256"]) == 64
        assert r["load_ms"] > 0 and r["first_inference_ms"] > 0
        assert r["flops"] > 0 and r["gops"] > 0
        if r["device"] == "cpu":       # (the machine's peak is not a browser's or an MCU interpreter's)
            assert r["peak_gops"] > 0 and r["peak_fraction"] > 0
        assert r["peak_kind"] == ("int8" if r["precision"] in ("int8", "int16x8", "dynamic") else "float32")
        assert r["peak_rss_delta_mb"] is None or r["peak_rss_delta_mb"] >= 0
        assert r["top1_drop_points"] == pytest.approx(100 * (benched["runs"][0]["float"]["top1"] - r["top1"]))
    peak = benched["peak"]
    assert peak["float32"]["1"] > 0 and peak["int8"]["1"] > 0 and peak["method"]
    # LiteRT's own CLI timed every .tflite on the XNNPACK rows too; both figures and their ratio are kept.
    refs = [r["reference"] for r in ok if r["format"] == "tflite" and r["backend"] == "litert"]
    assert len(refs) == sum(v.fmt.name == "tflite" for v in variants().values()) and all(x.get("ratio", 0) > 0 and x["median_ms"] > 0 and x["threads"] == 1 for x in refs)


def test_report_is_one_self_contained_page(run, benched):
    path = write_report(run)
    page = path.read_text()
    assert path == run / "report.html" and page.startswith("<!DOCTYPE html>")
    links = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page, flags=re.I)
    assert links and all(v.startswith("data:image/png;base64,") for v in links)   # nothing loaded from elsewhere
    assert not re.search(r"<(script|link|iframe)\b|url\(", page, flags=re.I)
    assert page.count('src="data:image/png;base64,') >= 4                     # curves + the three bench plots
    for name in variants():
        assert name in page
    result = cli.invoke(app, ["report", str(run)])
    assert result.exit_code == 0 and "report.html" in result.output


# --------------------------------------------------------------------------- files and runs
def test_a_corrupt_file_fails_its_rows_and_the_rest_go_on(run, benched, tmp_path):
    copy = _copy(run, tmp_path / "copy")
    (copy / "export" / "tflite-fp16.tflite").write_bytes(b"not a flatbuffer" * 64)
    pruned = _copy(run, tmp_path / "elsewhere" / "pruned")          # an intact run, added with --with
    write_json(pruned / "config.json", {**read_json(pruned / "config.json"), "optimize": {"method": "prune"}})
    cfg = dict(FAST, variants=("tflite-fp16", "tflite-int8"), runtimes=("litert", "litert-compiled"), reference=False)
    rows = bench_run(copy, BenchConfig(**cfg, export=False, with_runs=(str(pruned),)))["rows"]
    fp16 = [r for r in rows if r["name"] == "tflite-fp16"]
    assert len(fp16) == 2 and all(r["status"] == "failed" and "corrupt" in r["reason"] for r in fp16)
    assert all("SHA-256 differs" in " ".join(r["notes"]) for r in fp16)
    others = [r for r in rows if r["name"] != "tflite-fp16"]
    assert {r["name"] for r in others} == {"tflite-int8", "prune:tflite-fp16", "prune:tflite-int8"}
    assert all(r["status"] == "ok" and r["export"] == "reused" for r in others)
    # Left to export (the default), the bench notices the changed bytes and exports the file again.
    rows = bench_run(copy, BenchConfig(**dict(cfg, variants=("tflite-fp16",), runtimes=("litert",))))["rows"]
    assert rows[0]["status"] == "ok" and rows[0]["export"].startswith("re-exported: its SHA-256 differs")


def test_optimize_runs_are_found_beside_the_run_and_with_adds_more(run, tmp_path):
    base = _copy(run, tmp_path / "base")
    qat = _copy(run, tmp_path / "base-qat")
    config = read_json(qat / "config.json")
    write_json(qat / "config.json", {**config, "parent": str(base.resolve()), "optimize": {"method": "qat"}})
    other = _copy(run, tmp_path / "elsewhere" / "pruned")
    refs = collect_runs(base, with_runs=[str(other)])
    assert [(r.root.name, r.label) for r in refs] == [("base", "trained"), ("base-qat", "qat"), ("pruned", "pruned")]
    assert [r.root.name for r in collect_runs(base, siblings=False)] == ["base"]
    # A QAT run exports int8 files only: its float variants are skipped with the reason, int8 ones reused.
    targets = {t.variant: t for t in prepare_targets(refs[1], BenchConfig().chosen_variants(), export=False)}
    assert targets["tflite-float32"].status == "skipped" and "int8 files only" in targets["tflite-float32"].reason
    assert targets["tflite-int8"].status == "ok" and targets["tflite-int8"].source == "reused"
    with pytest.raises(CifarEdgeError, match="no such run folder"):
        collect_runs(base, with_runs=[str(tmp_path / "nope")])


def test_a_run_without_a_model_fails_with_the_run_folders_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CifarEdgeError) as expected:
        RunFolder(tmp_path / "empty").require_model()
    result = cli.invoke(app, ["bench", str(tmp_path / "empty")])
    assert result.exit_code == 2 and f"error: {expected.value}" in result.output


@pytest.mark.parametrize("args, expected", [
    (["--runtime", "litert-compile"], "did you mean 'litert-compiled'"),
    (["--runtime", "onnxruntim"], "did you mean 'onnxruntime'"),
    (["--variant", "tflite-int9"], "did you mean 'tflite-int8'"),
    (["--format", "tflit"], "did you mean 'tflite'"),
    (["--device", "androd"], "did you mean 'android'"),
    (["--threads", "1,x"], "--threads"),
    (["--fail-under", "150"], "percent"),
])
def test_bad_names_fail_fast_with_a_suggestion(run, args, expected):
    result = cli.invoke(app, ["bench", str(run), *args])
    assert result.exit_code == 2 and expected in result.output, result.output


# --------------------------------------------------------------------------- the CI gate
def test_gate_exit_codes_name_the_variant(run, benched, tmp_path):
    base = ["bench", str(run), "--variant", "keras", "--variant", "tflite-int8", "--runtime", "keras",
            "--runtime", "litert", "--threads", "1", "--runs", "5", "--warmup", "1", "--limit", "200",
            "--no-reference", "--out", str(tmp_path / "gate")]
    failing = cli.invoke(app, [*base, "--fail-under", "99.9"])
    assert failing.exit_code == 1, failing.output
    assert re.search(r"gate failed: tflite-int8: top-1 [\d.]+% on litert is under --fail-under 99.9%", failing.output)
    assert "gate failed: keras:" in failing.output
    passing = cli.invoke(app, [*base, "--fail-under", "1", "--max-int8-drop", "100"])
    assert passing.exit_code == 0, passing.output
    assert (tmp_path / "gate" / "bench.json").is_file()


def test_gate_rules():
    def row(variant, status="ok", top1=0.8, drop=0.0, precision="int8", backend="litert", reason=""):
        return {"variant": variant, "name": variant, "method": "trained", "status": status, "top1": top1,
                "top1_drop_points": drop, "precision": precision, "backend": backend, "reason": reason,
                "drop_against": "trained Keras model"}
    rows = [row("keras", precision="float32"), row("tflite-int8", drop=2.5), row("tflite-int8", drop=0.5),
            row("tflite-int8", status="skipped", top1=None, backend="keras-gpu", reason="no GPU"),
            row("onnx-int8", status="failed", top1=None, reason="export failed: parity")]
    assert gate(rows) == []
    problems = gate(rows, max_int8_drop=2.0)
    assert problems[0].startswith("tflite-int8: top-1 drops 2.50 points")
    assert problems[1].startswith("onnx-int8: no top-1 measured (export failed: parity")
    assert gate(rows[:4], fail_under=80, max_int8_drop=3) == []
    assert gate(rows[:4], fail_under=80.5)[0].startswith("keras: top-1 80.00%")
    phone_only = [row("tflite-fp16", top1=None, precision="fp16", backend="android-gpu")]
    assert gate(phone_only, fail_under=50)[0].startswith("tflite-fp16: no top-1 measured (its rows measure latency")
    assert gate([row("tflite-dynamic", precision="dynamic", drop=3.0)], max_int8_drop=2.0)
    with pytest.raises(CifarEdgeError, match="percentage points"):
        gate(rows, max_int8_drop=-1)


# --------------------------------------------------------------------------- phones
def test_benchmark_model_transcripts_parse_into_row_fields():
    cpu = parse_benchmark_model((DATA / "android_cpu.txt").read_text())
    assert (cpu["init_us"], cpu["first_inference_us"], cpu["inference_avg_us"]) == (33409, 10423, 920.81)
    assert cpu["inference"]["median"] == 905 and cpu["inference"]["count"] == 1086 and cpu["threads"] == 4
    assert (cpu["memory_init_mb"], cpu["memory_overall_mb"]) == (5.4, 9.4)
    m = to_measurement(cpu)
    assert m["latency"]["p50_ms"] == pytest.approx(0.905) and m["latency"]["p95_ms"] == pytest.approx(1.012)
    assert m["load_ms"] == pytest.approx(33.409) and m["first_inference_ms"] == pytest.approx(10.423)
    assert m["peak_rss_delta_mb"] == 9.4 and "completely executed" in m["notes"][0]
    gpu = parse_benchmark_model((DATA / "android_gpu.txt").read_text())
    assert any("Replacing 31 out of 33 node(s)" in n for n in gpu["notes"])
    with pytest.raises(CifarEdgeError, match="ANEURALNETWORKS_BAD_DATA.*Failed to apply NNAPI delegate"):
        parse_benchmark_model((DATA / "android_nnapi_failed.txt").read_text())
    old = "INFO: Inference timings in us: Init: 1200, First inference: 900, Warmup (avg): 850.5, Inference (avg): 800"
    assert to_measurement(parse_benchmark_model(old))["latency"]["p50_ms"] == 0.8     # no stats line: the average


def test_benchmark_model_commands():
    assert benchmark_command("adb", "R58M", "/data/local/tmp/cifar_edge/m.tflite", "android-cpu", 4, 200, 20) == [
        "adb", "-s", "R58M", "shell", "/data/local/tmp/benchmark_model", "--graph=/data/local/tmp/cifar_edge/m.tflite",
        "--num_threads=4", "--num_runs=200", "--warmup_runs=20", "--use_xnnpack=true"]
    gpu = benchmark_command("adb", "R58M", "g", "android-gpu-fp32", 1, 50, 5)
    assert gpu[-2:] == ["--use_gpu=true", "--gpu_precision_loss_allowed=false"]
    assert benchmark_command("adb", "R58M", "g", "android-nnapi", 1, 50, 5)[-1] == "--use_nnapi=true"
    assert parse_device("android") is None and parse_device("android:R58M") == "R58M"


def test_missing_adb_and_missing_phones_are_clear_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("ANDROID_HOME", raising=False)
    monkeypatch.delenv("ANDROID_SDK_ROOT", raising=False)
    with pytest.raises(CifarEdgeError, match="needs adb, which is not on PATH"):
        connect("android")
    listing = "List of devices attached\nR58M\tdevice\nemu-5554\tunauthorized\n\n"
    devices = parse_devices(listing)
    assert devices == {"R58M": "device", "emu-5554": "unauthorized"}
    with pytest.raises(CifarEdgeError, match="no Android device is attached"):
        pick_serial({}, None)
    with pytest.raises(CifarEdgeError, match="2 Android devices are attached"):
        pick_serial(devices, None)
    with pytest.raises(CifarEdgeError, match="accept the USB debugging prompt"):
        pick_serial(devices, "emu-5554")
    with pytest.raises(CifarEdgeError, match="XYZ is not attached"):
        pick_serial(devices, "XYZ")
    assert pick_serial(devices, "R58M") == "R58M"


FAKE_ADB = """#!/bin/sh
# A recorded phone: answers as adb and benchmark_model do, and logs every call.
echo "$*" >> "{log}"
if [ "$1" = devices ]; then printf 'List of devices attached\\nFAKE123\\tdevice\\n\\n'; exit 0; fi
shift 2
case "$*" in
  push*) echo "pushed" ;;
  "shell ls "*) echo /data/local/tmp/benchmark_model ;;
  *--use_gpu=true*) cat "{data}/android_gpu.txt" ;;
  *--use_nnapi=true*) cat "{data}/android_nnapi_failed.txt"; exit 1 ;;
  *--use_xnnpack=true*) cat "{data}/android_cpu.txt" ;;
esac
"""


def test_device_rows_from_a_recorded_phone(run, benched, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(FAKE_ADB.format(log=tmp_path / "adb.log", data=DATA))
    adb.chmod(adb.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cfg = BenchConfig(**dict(FAST, threads=()), variants=("tflite-int8",), reference=False, device="android:FAKE123",
                      runtimes=("litert", "android-cpu", "android-gpu-fp16", "android-nnapi"))
    rows = {(r["backend"], r["threads"]): r for r in bench_run(run, cfg, out_dir=tmp_path / "out")["rows"]}
    assert set(rows) == {("litert", 1), ("litert", os.cpu_count()), ("android-cpu", 1), ("android-cpu", 4),
                         ("android-gpu-fp16", 1), ("android-nnapi", 1)}
    cpu = rows[("android-cpu", 4)]
    assert cpu["status"] == "ok" and cpu["latency"]["p50_ms"] == pytest.approx(0.905) and cpu["device"] == "android"
    assert cpu["top1"] == rows[("litert", 1)]["top1"] and "host LiteRT run" in " ".join(cpu["notes"])
    assert rows[("android-gpu-fp16", 1)]["status"] == "ok"
    nnapi = rows[("android-nnapi", 1)]
    assert nnapi["status"] == "failed" and "Failed to apply NNAPI delegate" in nnapi["reason"]
    calls = (tmp_path / "adb.log").read_text()
    assert "-s FAKE123 push" in calls and "tflite-int8.tflite /data/local/tmp/cifar_edge/tflite-int8.tflite" in calls
    assert "--num_threads=4 --num_runs=10 --warmup_runs=2 --use_xnnpack=true" in calls
    assert "--use_gpu=true --gpu_precision_loss_allowed=true" in calls


def test_reference_disagreement_is_measured_again_and_every_round_kept():
    from cifar_edge.bench import reference

    def tool(ms):
        return {"tool": "litert-benchmark", "median_ms": ms, "avg_ms": ms, "p95_ms": ms * 1.2, "runs": 50}

    def never():
        raise AssertionError("measured again although it should not be")

    theirs, ours = iter([tool(1.1), tool(1.0)]), iter([1.0, 1.05])
    shared = [tool(1.0)]                                   # the tool's first run, shared with other rows
    result = reference.agreement(2.0, lambda: next(ours), shared, lambda: next(theirs), same_engine=True)
    assert result["rounds"] == 3 and result["agrees"]
    assert result["ours_p50_rounds_ms"] == [2.0, 1.0, 1.05] and result["theirs_median_rounds_ms"] == [1.0, 1.1, 1.0]
    assert result["ratio"] == pytest.approx(1.05 / 1.0) and len(shared) == 3
    assert reference.agreement(1.1, never, [tool(1.0)], never, same_engine=True)["rounds"] == 1
    other_engine = reference.agreement(3.0, never, [tool(1.0)], never, same_engine=False)
    assert other_engine["rounds"] == 1 and not other_engine["agrees"]
    still_off = reference.agreement(3.0, lambda: 3.0, [tool(1.0)], lambda: tool(1.0), same_engine=True)
    assert still_off["rounds"] == reference.ROUNDS and not still_off["agrees"]


def test_compiled_model_runs_batches_of_a_graph_whose_output_keeps_batch_1():
    """A Dense on a 4-D tensor (ConvNeXt's pointwise convs) converts to a reshape that
    CompiledModel does not resize: a batch written into it overran the output buffer and
    aborted the bench (heap corruption).  It now runs image by image, says so, and agrees
    with the interpreter."""
    from cifar_edge._tf import keras, tf
    import numpy as np

    from cifar_edge.formats.tflite import open_compiled
    from cifar_edge.formats.tflite import open_litert
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.Dense(6)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    images = np.random.default_rng(0).normal(0, 1, (9, 8, 8, 3)).astype(np.float32)
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "m.tflite"
        path.write_bytes(data)
        compiled = open_compiled(path, threads=1)
        got = compiled.predict(images, batch_size=4)
        expected = open_litert(path, threads=1).predict(images)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert any("image by image" in n for n in compiled.notes), compiled.notes


def test_a_gpu_provider_that_does_not_start_skips_its_row_instead_of_timing_the_cpu(tmp_path, monkeypatch):
    """onnxruntime drops an execution provider it cannot start (no CUDA/TensorRT libraries)
    with a warning and runs the session on the CPU; a GPU row must then say so, not publish
    CPU figures under a GPU name.  The provider here is one no onnxruntime has."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from cifar_edge.formats import Unavailable
    from cifar_edge.formats import onnx as onnx_format
    from cifar_edge.formats.onnx import ProviderMissing, open_onnxruntime
    graph = helper.make_graph([helper.make_node("Relu", ["image"], ["logits"])], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 3])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    fake = "FakeGpuExecutionProvider"
    with pytest.warns(UserWarning, match=fake), pytest.raises(ProviderMissing, match=f"could not start {fake}"):
        open_onnxruntime(path, providers=(fake, "CPUExecutionProvider"))
    x = np.array([[-1.0, 0.5, 2.0]], np.float32)
    assert open_onnxruntime(path).run(x).tolist() == [[0.0, 0.5, 2.0]]        # the CPU row is untouched
    monkeypatch.setattr(onnx_format, "gpu_missing", lambda: None)             # as on a GPU machine
    monkeypatch.setattr(ort, "get_available_providers", lambda: [fake, "CPUExecutionProvider"])
    with pytest.warns(UserWarning), pytest.raises(Unavailable, match=f"could not start {fake}"):
        onnx_format._on_gpu(path, fake)


def test_a_rows_budget_stops_predicting_when_the_first_batch_says_time_is_up(monkeypatch):
    """Agreement on a slow runtime covers as many images as fit the budget, never fewer than
    MIN_AGREEMENT_IMAGES, judged by the first batch (a fake clock: 10 ms an image)."""
    from cifar_edge.bench import measure
    clock = {"t": 0.0}
    monkeypatch.setattr(measure.time, "perf_counter", lambda: clock["t"])

    def predict(x):
        clock["t"] += 0.01 * len(x)
        return np.zeros((len(x), 3), np.float32)

    images = np.zeros((2000, 4), np.float32)
    assert len(measure._within(predict, images, budget_s=4.0)) == 400
    assert len(measure._within(predict, images, budget_s=0.5)) == measure.MIN_AGREEMENT_IMAGES
    assert len(measure._within(predict, images, budget_s=100.0)) == 2000


def test_a_files_own_runtime_is_its_first_row_then_devices_in_order():
    from cifar_edge.formats import HOST_DEVICES, backends_for, get_format
    for fmt in ("tflite", "onnx"):
        backends = backends_for(get_format(fmt))
        assert backends[0].name == get_format(fmt).runtime
        order = [HOST_DEVICES.index(b.device) for b in backends[1:]]
        assert order == sorted(order), [b.name for b in backends]
