"""int8 diagnosis and repair on a model where int8 really hurts.

The model: cnn-tiny trained on the learnable synthetic data, then two input channels of its
``s2_conv`` scaled up 100x, with the BatchNorm before it scaling the same channels down 100x
(through a ReLU, which commutes with a positive scale).  The float function is unchanged,
but every output channel of ``s2_conv`` now has a weight range 100x wider than its other
weights need, so per-channel int8 weights crush them: a real, planted quantization fault.
"""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from cifar_edge.cli import app
from cifar_edge.errors import CifarEdgeError
from cifar_edge.export import ExportConfig, export_run, read_failures, read_manifest, resolve_variants
from cifar_edge.export.exporter import prepare
from cifar_edge.formats import ExportOptions
from cifar_edge.export.parity import class_drift, mcnemar_p, overall_drift, top1
from cifar_edge.formats._quant_error import channel_nsr, rank_layers
from cifar_edge.formats.tflite import calibrated_model, convert
from cifar_edge.runs import load_run
from cifar_edge.formats.tflite import open_litert
from conftest import FAST_EXPORT, train_tiny

SCALE, CHANNELS = 100.0, [0, 1]
FAST = ExportConfig(**FAST_EXPORT)


def plant_fault(run):
    """Rewrite the run's model with the function-preserving rescaling described above."""
    loaded = load_run(run)
    model = loaded.model
    bn, conv = model.get_layer("s1_bn"), model.get_layer("s2_conv")
    gamma, beta, mean, var = bn.get_weights()
    gamma[CHANNELS] /= SCALE
    beta[CHANNELS] /= SCALE
    bn.set_weights([gamma, beta, mean, var])
    weights = conv.get_weights()
    weights[0][:, :, CHANNELS, :] *= SCALE
    conv.set_weights(weights)
    for path in (run / "model.keras", run / "model.h5"):
        model.save(path)


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    run = train_tiny(tmp_path_factory.mktemp("faulty") / "run", epochs=3, limit=1500)
    plant_fault(run)
    return run


@pytest.fixture(scope="module")
def quantized(faulty_run):
    loaded = load_run(faulty_run)
    ctx, check = prepare(loaded, FAST, calibrate=True)
    base = ExportOptions(quantization="int8")
    calibrated = calibrated_model(ctx)
    ranking = rank_layers(ctx.model, calibrated, check.images[:60])

    def accuracy(opts):
        return top1(open_litert(convert(ctx, opts), threads=1).predict(check.images), check.labels)
    return ctx, check, base, ranking, accuracy


def test_the_planted_fault_keeps_float_and_breaks_int8(quantized):
    ctx, check, base, _, accuracy = quantized
    float_top1 = top1(check.keras, check.labels)
    assert float_top1 > 0.6                               # learnable data, learned
    assert accuracy(base) < float_top1 - 0.05             # int8 hurts for real


def test_diagnosis_ranks_the_faulty_layer_first_and_its_top3_beat_random_layers(quantized):
    _, check, base, ranking, accuracy = quantized
    assert ranking[0]["layer"] == "s2_conv" and ranking[0]["op"] == "CONV_2D"
    assert all(r["added_nsr"] is not None and r["accumulated_nsr"] is not None for r in ranking[:3])
    assert [r["rank"] for r in ranking] == list(range(1, len(ranking) + 1))
    top3 = accuracy(dataclasses.replace(base, float_layers=tuple(r["node"] for r in ranking[:3])))
    rng = np.random.default_rng(0)
    nodes = [r["node"] for r in ranking]
    random3 = [accuracy(dataclasses.replace(base, float_layers=tuple(rng.choice(nodes, 3, replace=False))))
               for _ in range(6)]
    plain = accuracy(base)
    assert top3 - plain > 0.05
    assert top3 > np.mean(random3) + 0.02, (top3, random3)


def test_max_drop_search_writes_the_cheapest_file_within_budget_and_records_every_candidate(faulty_run, tmp_path):
    out = tmp_path / "export"
    cfg = dataclasses.replace(FAST, max_drop=2.0)
    entries = export_run(faulty_run, resolve_variants(fmt="tflite", opts=ExportOptions(quantization="int8")), out_dir=out, cfg=cfg)
    (entry,) = entries
    repair = entry["repair"]
    assert repair["candidates"][0]["candidate"] == "int8" and not repair["candidates"][0]["meets"]
    winner = repair["candidates"][-1]
    assert winner["meets"] and winner["drop_points"] <= 2.0
    assert entry["variant"] == winner["variant"] == "tflite-int8-selective"
    assert entry["options"]["float_layers"] == winner["float_layers"] and winner["float_layers"]
    for c in repair["candidates"]:
        assert {"drop_points", "size_bytes", "latency_ms_1thread", "float_layers", "sha256"} <= set(c)
        assert c["split"] == "calibration (train)"              # chosen on images the reported figure never uses
    # plain int8 was refused on the check images first; the winner's figures are the check images'
    assert repair["refused"]["failed_on"] == "drop" and repair["refused"]["drop_points"] > 2.0
    assert repair["selection"]["split"] == "calibration (train)" and repair["selection"]["images"] == 200
    assert repair["check"]["split"] == entry["parity"]["split"] and repair["check"]["images"] == entry["parity"]["images"]
    assert repair["check"]["file_top1"] == pytest.approx(entry["accuracy"][entry["parity"]["split"]]["top1"])
    # the file on disk is the very file the search measured (normalization folded, metadata in)
    assert repair["written_is_measured"] and entry["sha256"] == winner["sha256"]
    assert (out / entry["file"]).is_file()


def test_an_unreachable_budget_says_so_with_the_best_figure_and_recommends_qat(faulty_run, tmp_path, monkeypatch):
    import cifar_edge.export.repair as repair
    monkeypatch.setattr(repair, "MAX_FLOAT_LAYERS", 0)      # only the whole-model candidates: both hit the fault
    cfg = dataclasses.replace(FAST, max_drop=0.5)
    with pytest.raises(CifarEdgeError, match=r"no int8 file is within 0.5 points of Keras with at least 50% agreement "
                                             r"on the calibration \(train\) images: the best, .*, loses [0-9.]+ points at "
                                             r"[0-9.]+% agreement, McNemar p = .*optimize .*faulty.* --qat"):
        export_run(faulty_run, resolve_variants(fmt="tflite", opts=ExportOptions(quantization="int8")),
                   out_dir=tmp_path / "e", cfg=cfg)
    failure = read_failures(tmp_path / "e")["tflite-int8"]
    assert [c["candidate"] for c in failure["parity"]["repair"]["candidates"]] == ["int8", "int16x8"]
    assert failure["gate"]["failed_on"] == "drop" and failure["gate"]["p_value"] < 0.05   # the check figures too
    assert not list((tmp_path / "e").glob("*.tflite"))


def test_export_all_goes_on_past_failing_variants_and_exits_non_zero_naming_them(faulty_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(faulty_run, run)
    result = CliRunner().invoke(app, ["export", str(run), "--all", "--calibration-images", "200",
                                      "--check-images", "300"])
    assert result.exit_code == 1, result.output
    manifest, failures = read_manifest(run / "export"), read_failures(run / "export")
    assert {"tflite-int8", "tflite-int8-io-int8", "tflite-int8-io-uint8"} <= set(failures)
    assert "onnx-float32" in {e["variant"] for e in manifest.values()}        # after the failures in table order
    assert failures["tflite-int8"]["parity"]["top1_agreement"] < 0.9
    assert "tflite-int8" in result.output and "failed" in result.output
    assert not [p for p in (run / "export").iterdir() if p.name.startswith(".")]   # nothing half-written


def test_diagnose_cli_writes_json_and_plot_and_names_the_faulty_layer(faulty_run):
    result = CliRunner().invoke(app, ["diagnose", str(faulty_run), "--images", "40", "--calibration-images", "200",
                                      "--check-images", "300"])
    assert result.exit_code == 0, result.output
    report = json.loads((faulty_run / "export" / "diagnose" / "tflite-int8.json").read_text())
    assert report["layers"][0]["layer"] == "s2_conv"
    assert (faulty_run / "export" / "diagnose" / "tflite-int8.png").stat().st_size > 1000
    assert report["overall"]["significant"] and report["overall"]["lost"] > report["overall"]["gained"]
    assert "s2_conv" in result.output


def test_mcnemar_is_exact_and_drift_within_noise_is_not_significant():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(3, 0) == pytest.approx(0.25)               # 2 * 0.5**3
    assert mcnemar_p(10, 0) == pytest.approx(2 * 0.5 ** 10)
    labels = np.repeat(np.arange(10), 10)                       # 10 images a class
    ref = np.eye(10)[labels]
    exp = ref.copy()
    exp[[0, 1, 2]] = np.eye(10)[[5, 5, 5]]                      # class 0 loses 3 of 10: -0.3
    rows = class_drift(ref, exp, labels, [str(i) for i in range(10)])
    assert rows[0]["delta"] == pytest.approx(-0.3) and rows[0]["lost"] == 3 and not rows[0]["significant"]
    exp[labels == 1] = np.eye(10)[9]                            # class 1 loses all 10
    rows = class_drift(ref, exp, labels, [str(i) for i in range(10)])
    assert rows[0]["class"] == "1" and rows[0]["significant"]
    assert overall_drift(ref, exp, labels)["lost"] == 13


def test_channel_nsr_sees_a_crushed_channel_that_whole_tensor_error_hides():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(500, 8)).astype(np.float32)
    ref[:, 0] *= 1000
    crushed = ref.copy()
    crushed[:, 1:] = 0                                          # what a 1000x wider scale does to them
    assert channel_nsr(ref, crushed) > 0.8
    assert np.sqrt(np.mean((crushed - ref) ** 2)) / ref.std() < 0.01


def test_onnx_max_drop_keeps_the_worst_ranked_nodes_in_float_and_recovers(faulty_run, tmp_path):
    import onnx
    out = tmp_path / "onnx"
    cfg = dataclasses.replace(FAST, max_drop=2.0)
    (entry,) = export_run(faulty_run, resolve_variants(fmt="onnx", opts=ExportOptions(quantization="int8")), out_dir=out, cfg=cfg)
    repair = entry["repair"]
    assert repair["candidates"][0]["candidate"] == "int8" and not repair["candidates"][0]["meets"]
    assert repair["ranking"][0]["layer"] == "s2_conv", repair["ranking"][:3]    # onnxruntime's QDQ errors find the fault
    winner = repair["candidates"][-1]
    assert winner["meets"] and entry["variant"] == winner["variant"] == "onnx-int8-selective"
    assert entry["options"]["float_layers"] == winner["float_layers"]
    assert repair["written_is_measured"] and entry["sha256"] == winner["sha256"]
    tried = [frozenset(c["float_layers"]) for c in repair["candidates"]]
    assert len(tried) == len(set(tried))                          # no set of float nodes measured twice
    # the convs kept in float really are: their weights are float initializers, not dequantized int8
    graph = onnx.load(str(out / entry["file"])).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    kept = [n for n in graph.node if n.name in winner["float_layers"] and n.op_type == "Conv"]
    quantized = [n for n in graph.node if n.op_type == "Conv" and n.name not in winner["float_layers"]]
    assert kept and quantized
    assert not any(n.input[1] in dequantized for n in kept) and all(n.input[1] in dequantized for n in quantized)


def test_the_gate_judges_accuracy_beyond_noise_and_keeps_a_floor_for_broken_files():
    from cifar_edge.export.parity import accuracy_gate
    labels = np.repeat(np.arange(10), 50)                       # 500 images
    ref = np.eye(10)[labels]
    ref[::2] = np.eye(10)[(labels[::2] + 1) % 10]               # the source model: 50% top-1
    near = ref.copy()
    flip = np.flatnonzero(ref.argmax(1) == labels)[:7]          # 7 right answers turn wrong ...
    near[flip] = np.eye(10)[(labels[flip] + 3) % 10]
    back = np.flatnonzero(ref.argmax(1) != labels)[:1]          # ... 1 wrong one turns right: -1.2 points
    near[back] = np.eye(10)[labels[back]]
    gate = accuracy_gate(ref, near, labels, max_drop=1.0, min_agreement=0.5)
    assert gate["drop_points"] == pytest.approx(1.2) and gate["p_value"] > 0.05 and gate["passes"]   # noise
    worse = near.copy()
    more = np.flatnonzero(near.argmax(1) == labels)[:20]
    worse[more] = np.eye(10)[(labels[more] + 3) % 10]
    gate = accuracy_gate(ref, worse, labels, max_drop=1.0, min_agreement=0.5)
    assert gate["failed_on"] == "drop" and gate["p_value"] < 0.05
    assert accuracy_gate(ref, near, labels, max_drop=1.0, min_agreement=0.5, strict=True)["failed_on"] == "drop"
    broken = np.eye(10)[np.zeros_like(labels)]                   # one class for every image
    gate = accuracy_gate(ref, broken, labels, max_drop=100, min_agreement=0.5)
    assert gate["failed_on"] == "agreement" and not gate["passes"]


def _zero_weights(tflite_bytes: bytes) -> bytes:
    """Every int8 weight of the graph zeroed: a file that runs and answers at chance."""
    from ai_edge_litert import schema_py_generated as tfl
    from ai_edge_litert.tools import flatbuffer_utils

    from cifar_edge.formats._tflite_metadata import pack_model
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))
    for tensor in model.subgraphs[0].tensors:
        data = model.buffers[tensor.buffer].data
        if tensor.type == tfl.TensorType.INT8 and data is not None and len(data):
            model.buffers[tensor.buffer].data = np.zeros_like(data)
    return pack_model(model)


def test_a_broken_int8_file_is_refused_by_the_floor_and_its_stale_file_goes(faulty_run, tmp_path, monkeypatch):
    import cifar_edge.formats._tflite_convert as tc
    out, variants = tmp_path / "e", resolve_variants(fmt="tflite", opts=ExportOptions(quantization="int8"))
    lax = dataclasses.replace(FAST, max_drop=100.0, min_agreement_int8=0.0, repair=False)
    (entry,) = export_run(faulty_run, variants, out_dir=out, cfg=lax)
    assert (out / entry["file"]).is_file()
    convert = tc.convert
    monkeypatch.setattr(tc, "convert", lambda ctx, opts: _zero_weights(convert(ctx, opts)))
    with pytest.raises(CifarEdgeError, match=r"tflite-int8 agrees with Keras on only [0-9.]+% of its predictions "
                                             r"\(floor 50.0%\): the file is broken.*Keras [0-9.]+% -> file [0-9.]+% "
                                             r"top-1 on [0-9]+ val images: loses [0-9.]+ points, McNemar p = "):
        export_run(faulty_run, variants, out_dir=out, cfg=dataclasses.replace(lax, min_agreement_int8=0.5))
    # a budget of 100 points lets any accuracy through; the floor still catches the broken file
    assert read_manifest(out) == {} and not (out / entry["file"]).exists()      # exported or failed, never both
    failure = read_failures(out)["tflite-int8"]
    assert failure["gate"]["failed_on"] == "agreement" and failure["gate"]["agreement"] < 0.5
    assert {"source_top1", "file_top1", "drop_points", "p_value", "images"} <= set(failure["gate"])


def test_refusals_name_the_figures_and_advice_true_for_the_variant(faulty_run, tmp_path):
    out = tmp_path / "e"
    strict = dataclasses.replace(FAST, repair=False)
    with pytest.raises(CifarEdgeError, match=r"tflite-int8 misses the 1-point budget \(Keras [0-9.]+% -> file [0-9.]+% "
                                             r"top-1 on [0-9]+ val images: loses [0-9.]+ points, McNemar p = .*"
                                             r"--format tflite --int8 --max-drop 1`.*--qat"):
        export_run(faulty_run, resolve_variants(fmt="tflite", opts=ExportOptions(quantization="int8")), out_dir=out, cfg=strict)
    try:
        export_run(faulty_run, resolve_variants(fmt="tflite", opts=ExportOptions(quantization="dynamic")), out_dir=out,
                   cfg=dataclasses.replace(strict, max_drop=0.0))
    except CifarEdgeError as e:                     # whether the dynamic file passes depends on the fault's reach
        assert "calibration-images" not in str(e) and "weights alone" in str(e), str(e)
    failure = read_failures(out)["tflite-int8"]
    assert failure["gate"]["failed_on"] == "drop" and failure["gate"]["drop_points"] > 1


def test_float_layers_take_diagnose_names_and_refuse_unknown_ones(faulty_run, tmp_path):
    from cifar_edge.export.parity import sha256
    out = tmp_path / "e"
    lax = dataclasses.replace(FAST, max_drop=100.0, min_agreement_int8=0.0)
    (plain,) = export_run(faulty_run, resolve_variants(fmt="tflite", opts=ExportOptions(quantization="int8")), out_dir=out, cfg=lax)
    (kept,) = export_run(faulty_run, resolve_variants(fmt="tflite", opts=ExportOptions(quantization="int8", float_layers=("s2_conv",))),
                         out_dir=out, cfg=lax)
    assert kept["options"]["float_layers"] and all("s2_conv" in n for n in kept["options"]["float_layers"])
    assert sha256(out / kept["file"]) != sha256(out / plain["file"])
    assert kept["accuracy"]["val"]["top1"] > plain["accuracy"]["val"]["top1"]          # s2_conv is the fault
    with pytest.raises(CifarEdgeError, match=r"--float-layers s2_cnv: no such layer in the tflite model \(did you mean "
                                             r"s2_conv\?\); valid names .*s1_conv.*s2_conv"):
        export_run(faulty_run, resolve_variants(fmt="tflite", opts=ExportOptions(quantization="int8", float_layers=("s2_cnv",))),
                   out_dir=out, cfg=lax)
    with pytest.raises(CifarEdgeError, match=r"--float-layers nothing: no such layer in the onnx model"):
        export_run(faulty_run, resolve_variants(fmt="onnx", opts=ExportOptions(quantization="int8", float_layers=("nothing",))),
                   out_dir=out, cfg=lax)
