"""The format registry: formats are modules that register themselves, and OpenVINO, added that
way, is named by no other library module; its IR exports, agrees with Keras and opens by path."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import cifar_edge
from cifar_edge.formats import BACKENDS, FORMATS, format_of, open_model, variants

PACKAGE = Path(cifar_edge.__file__).parent


def test_every_format_is_a_module_and_openvino_is_named_only_by_its_own():
    assert set(FORMATS) >= {"keras", "tflite", "onnx", "openvino"}
    for name in FORMATS:
        assert (PACKAGE / "formats" / f"{name}.py").is_file(), name
    mentions = [p.relative_to(PACKAGE) for p in PACKAGE.rglob("*.py")
                if re.search("openvino", p.read_text(), re.IGNORECASE) and p.name != "openvino.py"]
    assert mentions == [], mentions
    assert {"openvino-float32", "openvino-int8"} <= set(variants())
    assert set(BACKENDS["openvino"].formats) == {"openvino", "onnx", "tflite"}
    assert "openvino" in FORMATS["tflite"].runtimes and "openvino" in FORMATS["onnx"].runtimes


def test_every_variant_is_named_by_the_one_rule_and_carries_its_name():
    """A table's names follow variant_name's rule, so a variant built from flags (`--format tflite
    --int8`) and the same one named from the table (`--variant tflite-int8`) are one file."""
    from cifar_edge.export import resolve_variants
    from cifar_edge.formats import ExportOptions, Variant, variant_name
    for name, v in variants().items():
        assert v.name == name == variant_name(v.fmt, v.opts) and v.file_name == name + v.fmt.suffix
    (from_flags,) = resolve_variants(fmt="tflite", opts=ExportOptions(quantization="int8"))
    assert from_flags == variants()["tflite-int8"]
    kept = from_flags.with_options(ExportOptions(quantization="int8", float_layers=("s1_conv",)))
    assert kept.name == "tflite-int8-selective" and isinstance(kept, Variant)


def test_openvino_ir_export_agrees_and_every_runtime_reads_the_files(exported_run):
    from cifar_edge.formats.openvino import read_ir_metadata
    from cifar_edge.runs import load_run
    run, by = exported_run
    out = Path(run) / "export"
    assert by["openvino-float32"]["parity"]["top1_agreement"] >= 0.99
    assert by["openvino-int8"]["options"]["quantization"] == "int8" and by["openvino-int8"]["size_bytes"] < by["openvino-float32"]["size_bytes"]
    ir = out / by["openvino-float32"]["file"]
    assert sorted(p.name for p in ir.iterdir()) == ["model.bin", "model.xml"] and format_of(ir).name == "openvino"
    assert read_ir_metadata(ir)["labels"] == load_run(run).class_names
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)
    litert = open_model(out / "tflite-int8.tflite").run(x)
    on_openvino = open_model(out / "tflite-int8.tflite", runtime="openvino")
    assert on_openvino.placement["nodes"] > 0
    assert np.mean(on_openvino.run(x).argmax(1) == litert.argmax(1)) >= 0.75   # the same int8 file on two runtimes
    float_onnx = open_model(out / "onnx-float32.onnx")
    assert np.allclose(open_model(out / "onnx-float32.onnx", runtime="openvino").run(x), float_onnx.run(x), atol=1e-3)
