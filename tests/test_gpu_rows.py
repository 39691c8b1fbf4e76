"""GPU bench rows that run without a GPU: LiteRT's GPU accelerator (WebGPU over Vulkan) on Mesa's
software driver, and WebGPU in headless Chromium (SwiftShader).  Agreement with the file's CPU
runtime, whole-graph placement, refused ops named, the adapter reported, the GPU summary; and a
row with no adapter is skipped naming the install command.  Where no adapter exists the tests
skip with that command (.ci/run installs it)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cifar_edge.bench import BenchConfig, bench_run
from cifar_edge.data import prepare_images
from cifar_edge.errors import CifarEdgeError
from cifar_edge.formats import BACKENDS, Unavailable, open_backend, open_model
from cifar_edge.formats._litert import MESA_INSTALL
from cifar_edge.runs import load_run, run_data

FILES = ("tflite-float32", "tflite-fp16", "tflite-int8")
PARITY = {"litert-gpu": 0.98, "litert-gpu-f32": 0.99}     # default precision (fp16 kernels), enforce_f32


@pytest.fixture(scope="module")
def gpu_bench(exported_run, tmp_path_factory):
    """The float32, fp16 and int8 files on LiteRT's CPU interpreter and its GPU accelerator."""
    run, _ = exported_run
    cfg = BenchConfig(runs=5, warmup=1, limit=200, threads=(1,), variants=FILES, siblings=False, export=False,
                      runtimes=("litert", *PARITY), reference=False)
    out = tmp_path_factory.mktemp("gpu-bench")
    result = bench_run(run, cfg, out_dir=out, command="test")
    skipped = [r for r in result["rows"] if r["backend"] in PARITY and r["status"] == "skipped"]
    if skipped:
        assert MESA_INSTALL in skipped[0]["reason"], skipped[0]["reason"]
        pytest.skip(skipped[0]["reason"])
    return result, out


def test_litert_gpu_rows_agree_with_the_cpu_and_take_the_whole_graph(gpu_bench):
    result, _ = gpu_bench
    gpu = [r for r in result["rows"] if r["backend"] in PARITY]
    assert sorted((r["variant"], r["backend"]) for r in gpu) == sorted((f, b) for f in FILES for b in PARITY)
    for r in gpu:
        assert r["status"] == "ok", (r["variant"], r["backend"], r["reason"])
        assert r["agreement_images"] >= 200 and r["agreement_file"] >= PARITY[r["backend"]], r
        p = r["placement"]
        assert p["fully_accelerated"] and p["delegated"] == p["nodes"] > 0 and p["fallback"] == 0, p
        assert p["adapter"]["name"], p
        if p["adapter"]["software"]:          # no device figures: brief latency, no batches, said in the notes
            assert r["throughput"] == [] and any("not a device figure" in n for n in r["notes"])
    f32 = {r["variant"]: r for r in gpu if r["backend"] == "litert-gpu-f32"}
    assert f32["tflite-float32"]["max_abs_diff_file"] < 1e-3         # real f32 kernels: rounding only


def test_the_gpu_summary_says_placement_parity_and_what_to_ship(gpu_bench):
    result, out = gpu_bench
    summary = result["gpu"]
    assert [f["variant"] for f in summary["files"]] == list(FILES)
    for f in summary["files"]:
        assert f["whole_graph"] is True and f["refused"] == []
        assert f["fp16_parity"]["agreement"] >= 0.98 and f["fp16_parity"]["max_abs_diff"] >= 0
    assert summary["ship"]["gpu"] in ("tflite-fp16", "tflite-float32") and summary["ship"]["cpu"] == "tflite-int8"
    md = (out / "bench.md").read_text()
    assert "## GPU path" in md and f"ship for a phone's GPU: {summary['ship']['gpu']}" in md


def test_an_op_the_gpu_refuses_is_named_and_runs_on_the_cpu(tmp_path):
    """LOCAL_RESPONSE_NORMALIZATION has no GPU kernel: the row says so, and the graph still runs."""
    from cifar_edge._tf import tf

    @tf.function(input_signature=[tf.TensorSpec((1, 8, 8, 4), tf.float32)])
    def lrn(x):           # a classifier's shape, (1, classes), as the runners read outputs
        return tf.reduce_mean(tf.nn.local_response_normalization(tf.nn.relu(x)), axis=[1, 2])
    path = tmp_path / "lrn.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([lrn.get_concrete_function()], lrn).convert())
    try:
        runner = open_backend(BACKENDS["litert-gpu"], path, None)
    except Unavailable as e:      # no adapter: it names the install command
        pytest.skip(str(e))
    try:
        p = runner.placement
        assert p["fully_accelerated"] is False and list(p["refused"]) == ["LOCAL_RESPONSE_NORMALIZATION"], p
        assert p["fallback"] >= 1 and p["delegated"] + p["fallback"] == p["nodes"] == 3, p      # as LiteRT logs it
        assert "LOCAL_RESPONSE_NORMALIZATION refused" in runner.notes[0]
        x = np.random.default_rng(0).normal(size=(1, 8, 8, 4)).astype(np.float32)
        interp = tf.lite.Interpreter(model_path=str(path))
        interp.allocate_tensors()
        interp.set_tensor(interp.get_input_details()[0]["index"], x)
        interp.invoke()
        np.testing.assert_allclose(runner.run(x), interp.get_tensor(interp.get_output_details()[0]["index"]),
                                   atol=1e-2)
    finally:
        runner.close()


def test_a_graph_with_run_time_shapes_is_refused_naming_its_reshapes(tmp_path):
    """ConvNeXt's case: tf_keras' Dense on a 4-D tensor reshapes to a shape computed at run time;
    the GPU accelerator refuses the whole graph ("static-sized tensors") and names no op, so the
    row's reason names the RESHAPEs.  A graph of convolutions has none."""
    from cifar_edge._tf import keras
    from cifar_edge._tf import tf
    from cifar_edge.formats._litert import runtime_shaped_ops

    def convert(model, name):
        path = tmp_path / name
        path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
        return path

    x = keras.Input((8, 8, 4))
    dense = convert(keras.Model(x, keras.layers.GlobalAveragePooling2D()(keras.layers.Dense(6)(x))), "dense4d.tflite")
    conv = convert(keras.Model(x, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(6, 1)(x))), "conv.tflite")
    assert runtime_shaped_ops(dense) == {"RESHAPE": 2} and runtime_shaped_ops(conv) == {}
    try:
        runner = open_backend(BACKENDS["litert-gpu"], dense, None)
    except Unavailable as e:      # no adapter: it names the install command
        pytest.skip(str(e))
    except CifarEdgeError as e:
        assert "static-sized" in str(e) and "RESHAPE x2" in str(e), e
    else:
        runner.close()
        pytest.fail("LiteRT's GPU accelerator took a graph with run-time shapes; the RESHAPE naming is moot")


def test_without_an_adapter_the_row_is_skipped_naming_the_install_command(exported_run, monkeypatch):
    """No Vulkan driver (the loader pointed at none): Unavailable, so the bench keeps a skipped row."""
    run, by = exported_run
    monkeypatch.setenv("VK_ICD_FILENAMES", "/nonexistent/icd.json")
    try:
        runner = open_backend(BACKENDS["litert-gpu"], Path(run) / "export" / by["tflite-float32"]["file"], None)
    except Unavailable as e:
        assert MESA_INSTALL in str(e) and "no WebGPU adapter" in str(e)
    else:
        runner.close()
        pytest.skip("an adapter beyond Vulkan's (GL) exists here: the no-adapter path cannot be provoked")


@pytest.mark.parametrize("runtime, variants", [("onnxruntime-web-webgpu", ("onnx-float32",)),
                                               ("litert-web-webgpu", ("tflite-float32", "tflite-int8"))])
def test_webgpu_in_chromium_agrees_with_the_files_own_runtime(exported_run, runtime, variants):
    """onnxruntime-web's WebGPU EP and LiteRT.js's webgpu accelerator, on the adapter Chromium offers
    (SwiftShader here): agreement with the file's own runtime, the adapter and, for LiteRT.js,
    whole-graph placement."""
    pytest.importorskip("playwright", reason="Playwright missing: pip install 'cifar-edge[test]'")
    run, by = exported_run
    loaded = load_run(run)
    x, _, _ = run_data(loaded).held_out()
    images = prepare_images(x[:50], loaded.norm, loaded.input_size)     # a software adapter: ~0.5-2 s an image
    for variant in variants:
        path = Path(run) / "export" / by[variant]["file"]
        try:
            web = open_backend(BACKENDS[runtime], path, None)
        except Unavailable as e:       # Chromium, the npm package or a WebGPU adapter missing
            pytest.skip(f"{e} (.ci/run installs Chromium and the npm packages)")
        try:
            ours, own = web.predict(images), open_model(path).predict(images)
            times = web.timer(images[:1], 3, 1)
        finally:
            web.close()
        assert np.mean(ours.argmax(1) == own.argmax(1)) >= 0.99, variant
        if variant.endswith("float32"):
            assert np.max(np.abs(ours - own)) < 1e-3
        assert web.placement["adapter"]["name"] and "WebGPU" in web.notes[0]
        assert len(times) == 3 and all(t > 0 for t in times)
        if runtime == "litert-web-webgpu":
            assert web.placement["fully_accelerated"] and web.placement["delegated"] == web.placement["nodes"]
