"""The Android app's model contract, tested on both sides (issue "examples").

Kotlin side: the app's plain-Kotlin `contract` package (examples/android/app/src/main/java/
dev/cifaredge/classifier/contract) is compiled with kotlinc and its JVM tests
(examples/android/contract-tests) run against golden vectors that cifar-edge's reference
pipeline writes here from real CIFAR images and every exported .tflite variant.  Python side:
the same steps, as examples/python does them from the file's metadata alone, must equal the
reference pipeline on every variant.  Changing either side (a Kotlin mutation, a different
normalization in Python) is shown to break a test.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cifar_edge.runs import load_run
from cifar_edge.formats.tflite import open_litert, to_input
from conftest import ROOT
from golden import app_normalization, top5, write_crops, write_variant

CONTRACT = ROOT / "examples" / "android" / "app" / "src" / "main" / "java" / "dev" / "cifaredge" / "classifier" / "contract"
KOTLIN_TESTS = ROOT / "examples" / "android" / "contract-tests" / "ContractTests.kt"
IMAGES = 48


def kotlin_home() -> Path | None:
    """The Kotlin compiler: $KOTLIN_HOME, the project's .tools (what .ci/run installs), or PATH."""
    candidates = [os.environ.get("KOTLIN_HOME"), ROOT / ".tools" / "node_modules" / "kotlin-compiler"]
    if shutil.which("kotlinc"):
        candidates.append(Path(shutil.which("kotlinc")).resolve().parents[1])
    return next((Path(c) for c in candidates if c and (Path(c) / "lib" / "kotlin-stdlib.jar").is_file()), None)


@pytest.fixture(scope="module")
def kotlin():
    home = kotlin_home()
    if home is None or not shutil.which("java"):
        pytest.skip("kotlinc or java missing: `npm install --prefix .tools kotlin-compiler` (as .ci/run does)")
    return home


def compile_contract(home: Path, out: Path, sources=None) -> list[str]:
    """Compile the contract and its tests; the classpath to run them."""
    sources = sources or sorted(CONTRACT.glob("*.kt"))
    lib = home / "lib"
    jar = out / "contract-tests.jar"
    r = subprocess.run([str(home / "bin" / "kotlinc"), *map(str, sources), str(KOTLIN_TESTS),
                        "-cp", str(lib / "kotlin-test.jar"), "-d", str(jar), "-nowarn"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return [str(jar), str(lib / "kotlin-stdlib.jar"), str(lib / "kotlin-test.jar")]


def run_kotlin_tests(classpath: list[str], golden: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["java", "-cp", os.pathsep.join(classpath), "ContractTestsKt", str(golden)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def classpath(kotlin, tmp_path_factory):
    return compile_contract(kotlin, tmp_path_factory.mktemp("kotlin"))


@pytest.fixture(scope="module")
def tflite_variants(exported_run):
    run, exported = exported_run
    return {name: run / "export" / e["file"] for name, e in exported.items() if e["format"] == "tflite"}


@pytest.fixture(scope="module")
def golden(exported_run, tflite_variants, cifar10_real, tmp_path_factory):
    from ai_edge_litert.tools import flatbuffer_utils
    run, _ = exported_run
    pixels = cifar10_real[2][:IMAGES]
    root = tmp_path_factory.mktemp("golden")
    for name, path in tflite_variants.items():
        write_variant(root, name, path, run / "export" / "labels.txt", pixels, app_normalization(path))
    write_crops(root)
    bare = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_variants["tflite-float32"].read_bytes()))
    bare.metadata = []
    (root / "no_metadata.tflite").write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(bare)))
    return root


def test_kotlin_contract_reproduces_python_on_every_exported_variant(classpath, golden, tflite_variants):
    r = run_kotlin_tests(classpath, golden)
    assert r.returncode == 0, r.stdout + r.stderr
    passed = [line for line in r.stdout.splitlines() if line.startswith("PASS")]
    assert len(passed) == 3 + 4 * len(tflite_variants), r.stdout    # crops, presence, bad input + 4 per variant
    for name in tflite_variants:
        assert f"PASS {name}: input bytes ({IMAGES} images)" in r.stdout
        assert f"PASS {name}: CompiledModel tensor buffers" in r.stdout
    assert {"tflite-float32", "tflite-int8-io-int8", "tflite-int8-io-uint8"} <= set(tflite_variants)


def test_a_python_side_change_breaks_the_kotlin_tests(classpath, golden, exported_run, tflite_variants, tmp_path):
    """Goldens written with a slightly different normalization must fail the Kotlin tests."""
    run, _ = exported_run
    norm = app_normalization(tflite_variants["tflite-int8-io-uint8"])
    changed = replace(norm, std=tuple(s * 1.01 for s in norm.std))
    pixels = np.fromfile(golden / "tflite-int8-io-uint8" / "pixels.bin", np.uint8).reshape(IMAGES, 32, 32, 3)
    write_variant(tmp_path, "tflite-int8-io-uint8", tflite_variants["tflite-int8-io-uint8"],
                  run / "export" / "labels.txt", pixels, changed)
    for name in ("crops.txt", "no_metadata.tflite"):
        shutil.copyfile(golden / name, tmp_path / name)
    r = run_kotlin_tests(classpath, tmp_path)
    assert r.returncode == 1, r.stdout
    assert "FAIL tflite-int8-io-uint8: spec read from the model" in r.stdout
    assert "FAIL tflite-int8-io-uint8: input bytes" in r.stdout


def test_a_kotlin_side_change_breaks_the_kotlin_tests(kotlin, golden, tmp_path):
    """An app that feeds the channels as BGR fails on the goldens."""
    mutated = tmp_path / "src"
    mutated.mkdir()
    for src in CONTRACT.glob("*.kt"):
        text = src.read_text()
        if src.name == "Preprocessing.kt":
            before = "val channel = (p shr (16 - 8 * c)) and 0xFF"
            assert before in text
            text = text.replace(before, "val channel = (p shr (8 * c)) and 0xFF")
        (mutated / src.name).write_text(text)
    out = tmp_path / "out"
    out.mkdir()
    r = run_kotlin_tests(compile_contract(kotlin, out, sorted(mutated.glob("*.kt"))), golden)
    assert r.returncode == 1, r.stdout
    assert "FAIL tflite-float32: input bytes" in r.stdout


def _example(monkeypatch, name: str):
    import importlib
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "python"))
    return importlib.import_module(name)


def test_python_example_pipeline_equals_the_reference_on_every_variant(exported_run, tflite_variants, cifar10_real,
                                                                      monkeypatch):
    """examples/python reads everything from the file's metadata; cifar-edge uses the run's
    config.json.  Every exported file takes raw pixels (its graph normalizes), and predictions
    are equal, variant by variant."""
    from cifar_edge.formats.tflite import folded_normalization
    example = _example(monkeypatch, "classify_litert")
    run, _ = exported_run
    norm = load_run(run).norm
    pixels = cifar10_real[2][:200]
    for name, path in tflite_variants.items():
        clf = example.Classifier(str(path), threads=1)
        ref = open_litert(path, threads=1)
        detail = clf.input
        ours = np.concatenate([clf.scores(p)[None] for p in pixels])
        theirs = ref.predict(norm.apply_numpy(pixels), batch_size=1)
        raw = {np.dtype(np.float32): pixels.astype(np.float32), np.dtype(np.uint8): pixels,
               np.dtype(np.int8): (pixels.astype(np.int16) - 128).astype(np.int8)}[np.dtype(detail["dtype"])]
        for i, p in enumerate(pixels[:20]):
            assert np.array_equal(clf.encode(p), raw[i:i + 1]), name
            reference = to_input(norm.apply_numpy(p[None]), detail, folded_normalization(path))
            assert np.allclose(reference, raw[i:i + 1], atol=1e-3), name
        assert np.allclose(ours, theirs, atol=1e-5), name
        assert np.array_equal(ours.argmax(1), theirs.argmax(1)), name
        assert all(np.array_equal(top5(a), top5(b)) for a, b in zip(ours, theirs)), name
