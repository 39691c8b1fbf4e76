"""The format registry: formats are modules that register themselves; no other library module
names a format or a runtime (OpenVINO: not even in a word); a new format is one module, which the
CLI, export and bench then pick up; OpenVINO's IR exports, agrees with Keras and opens by path."""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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


# The library modules outside cifar_edge/formats/ that may name a format or a runtime, and why.
NAMING_ALLOWED = {
    "source_models": "an import kind declares the formats its own converters make (and 'onnx' is also a kind "
                     "of model one imports, 'onnxruntime' the runtime that runs it as the reference)",
    "bench/gpu.py": "the GPU summary turns LiteRT's GPU rows into a phone's advice (which .tflite to ship)",
    "_tf.py": "'keras' there is TensorFlow's module, not the format",
}


def _named(tree: ast.AST, names: set, modules: set) -> list[str]:
    """String constants (docstrings aside) that are a format, runtime or variant name, and imports
    of a format's own module: what a decision on a name needs."""
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if node.value in names or any(node.value.startswith(f + "-") for f in FORMATS):
                found.append(f"{node.lineno}: {node.value!r}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            taken = [a.name for a in node.names] if parts[-1] == "formats" else []
            if "formats" in parts[:-1] or set(taken) & modules:
                found.append(f"{node.lineno}: imports {node.module}.{','.join(taken)}")
    return found


def test_no_library_module_outside_its_own_names_a_format_or_runtime():
    """Capability hooks (FloatLayers, ReferenceTimer, packages, page_assets, device_args ...) carry
    what other modules once learned by testing a name: no module outside cifar_edge/formats/ (and
    none of the shared formats/_base.py, formats/__init__.py) holds a format, runtime or variant
    name as a string or imports a format's own module, except the few in NAMING_ALLOWED."""
    names = set(FORMATS) | set(BACKENDS) | set(variants())
    modules = {p.stem for p in (PACKAGE / "formats").glob("*.py")} - {"__init__"}
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        own = rel.startswith("formats/") and rel not in ("formats/_base.py", "formats/__init__.py")
        if own or any(rel == allowed or rel.startswith(allowed + "/") for allowed in NAMING_ALLOWED):
            continue
        found = _named(ast.parse(path.read_text()), names, modules)
        if found:
            offenders[rel] = found
    assert offenders == {}, offenders
    # the check finds what it looks for: a name test and a format module's import
    planted = ast.parse('from ..formats.tflite import open_litert\nif fmt.name == "onnx": pass\nx = "litert-gpu"')
    assert len(_named(planted, names, modules)) == 3


def test_versions_record_every_package_a_format_or_runtime_declares():
    """versions() (export.json, bench.json) is built from the registries: OpenVINO's version reaches export.json."""
    from cifar_edge.versions import CORE, packages
    declared = {p for r in (*FORMATS.values(), *BACKENDS.values()) for p in r.packages}
    assert "openvino" in FORMATS["openvino"].packages and set(packages()) == set(CORE) | declared


def test_quantization_is_one_field_and_old_manifests_read_as_it(tmp_path):
    """The quantization mode is one ExportOptions field (the CLI's --int8/--fp16/... name it and
    conflict); an export.json written with the four booleans reads as the one field."""
    from cifar_edge.errors import CifarEdgeError
    from cifar_edge.export import read_manifest
    from cifar_edge.formats import ExportOptions, quantization_from_flags
    assert quantization_from_flags(int8=True) == "int8" and quantization_from_flags() == "none"
    with pytest.raises(CifarEdgeError, match="--int8 and --fp16 conflict"):
        quantization_from_flags(int8=True, fp16=False, dynamic=False, int16x8=False) and \
            quantization_from_flags(int8=True, fp16=True, dynamic=False, int16x8=False)
    old = {"int8": False, "fp16": False, "dynamic": False, "io": "float", "opset": 17, "per_channel": True,
           "from_tflite": False, "int16x8": True, "float_layers": []}
    assert ExportOptions.from_dict(old) == ExportOptions(quantization="int16x8")
    assert ExportOptions.from_dict(ExportOptions(quantization="int8", io="uint8").to_dict()) == \
        ExportOptions(quantization="int8", io="uint8")
    (tmp_path / "tflite-int16x8.tflite").write_bytes(b"x")
    entry = {"variant": "tflite-int16x8", "format": "tflite", "file": "tflite-int16x8.tflite", "sha256": "0",
             "size_bytes": 1, "gzip_bytes": 1, "options": old, "parity": {"top1_agreement": 1.0, "max_abs_diff": 0.0},
             "accuracy": {}}
    (tmp_path / "export.json").write_text(json.dumps({"exports": {entry["file"]: entry}}))
    (read,) = read_manifest(tmp_path).values()
    assert read["options"]["quantization"] == "int16x8" and "int8" not in read["options"]
    assert variants()["tflite-int16x8"].opts == ExportOptions.from_dict(read["options"])


# A format as a newcomer would add one: this module, dropped into cifar_edge/formats/, is all of it.
# The float .tflite's bytes in an .npz, run on LiteRT: small, real, and copied from nothing.
TOY_FORMAT = '''"""A toy format: the float flatbuffer in an .npz, run on LiteRT."""
import numpy as np

from ._base import Backend, ExportOptions, Format, register
from .tflite import convert, open_litert


def export(ctx, path, opts):
    with open(path, "wb") as f:
        np.savez(f, flatbuffer=np.frombuffer(convert(ctx, opts), np.uint8))


def open_npz(path, threads=None):
    runner = open_litert(np.load(path)["flatbuffer"].tobytes(), threads)
    runner.runtime, runner.path = "npz-litert", str(path)
    return runner


register(Format("npz", ".npz", frozenset(), "the float flatbuffer in an .npz", export=export, open=open_npz,
                runtime="npz-litert", order=9, variants={"npz-float32": ExportOptions()}),
         backends=(Backend("npz-litert", ("npz",), "cpu", True, "LiteRT on the .npz's flatbuffer", open_npz),))
'''


def test_a_new_format_is_one_module_that_the_cli_export_and_bench_pick_up(tmp_path):
    """A copy of the package with one more module in formats/: `cifar-edge formats` lists it, export
    writes and checks its file, bench measures it on its runtime, in fresh processes."""
    from conftest import train_tiny
    package = tmp_path / "pkg"
    shutil.copytree(PACKAGE, package / "cifar_edge", ignore=shutil.ignore_patterns("__pycache__"))
    (package / "cifar_edge" / "formats" / "npz.py").write_text(TOY_FORMAT)
    run = train_tiny(tmp_path / "run", epochs=1, limit=300)
    env = {**os.environ, "PYTHONPATH": str(package)}

    def cli(*args):
        done = subprocess.run([sys.executable, "-m", "cifar_edge", *map(str, args)], capture_output=True, text=True,
                              env=env, cwd=package, timeout=900)      # not the checkout's cwd: the copy is imported
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    listed = json.loads(cli("formats", "--json"))
    npz = next(f for f in listed["formats"] if f["name"] == "npz")
    assert npz["runtimes"] == ["npz-litert"] and npz["suffix"] == ".npz"
    cli("export", run, "--format", "npz", "--check-images", "200")
    entry = json.loads((run / "export" / "export.json").read_text())["exports"]["npz-float32.npz"]
    assert entry["parity"]["runtime"] == "npz-litert" and entry["parity"]["top1_agreement"] >= 0.99
    cli("bench", run, "--format", "npz", "--no-export", "--limit", "100", "--runs", "5", "--warmup", "1",
        "--threads", "1", "--batch", "8", "--no-reference", "--no-siblings")
    rows = [r for r in json.loads((run / "bench" / "bench.json").read_text())["rows"] if r["variant"] == "npz-float32"]
    assert [(r["backend"], r["status"]) for r in rows] == [("npz-litert", "ok")] and rows[0]["top1"] is not None


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
