"""Golden vectors for the Android app's Kotlin model contract, written by cifar-edge's own
reference pipeline (the normalization the file's metadata asks of an app, runtimes.to_input/
from_output, the LiteRT interpreter).  Layout, read by examples/android/contract-tests/ContractTests.kt:

    ROOT/crops.txt                 "w h x y side" per line: centre squares of odd photo sizes
    ROOT/no_metadata.tflite        a bare converted model (the app must refuse it clearly)
    ROOT/<variant>/model.tflite    the exported file, as the app gets it
    ROOT/<variant>/labels.txt
    ROOT/<variant>/spec.txt        key=value: input_size/type/scale/zero_point, mean, std, output ...
    ROOT/<variant>/pixels.bin      N x S x S x 3 uint8 RGB (real CIFAR images)
    ROOT/<variant>/input.bin       N input tensors as the interpreter takes them (little-endian)
    ROOT/<variant>/output.bin      N raw output tensors as the interpreter wrote them
    ROOT/<variant>/scores.bin      N x C float32 logits after dequantization
    ROOT/<variant>/top5.txt        N lines of class indices, best first (ties: lower index first)
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from cifar_edge.formats.tflite import from_output, to_input

KOTLIN_TYPES = {"float32": "FLOAT32", "int8": "INT8", "uint8": "UINT8"}
PHOTO_SIZES = [(32, 32), (640, 480), (480, 640), (333, 100), (101, 100), (1, 7), (4032, 3024)]


def _number(v) -> str:
    return repr(float(v))


def top5(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-scores, kind="stable")[:5]


def app_normalization(model: Path):
    """The normalization an app applies before the file's input: the ``cifar_edge`` entry's
    mean/std (the identity for exported files, whose graph normalizes)."""
    from cifar_edge.data import Normalization
    from cifar_edge.formats.tflite import read_metadata
    facts = read_metadata(model)["cifar_edge"]
    return Normalization(tuple(facts["mean"]), tuple(facts["std"]))


def write_variant(root: Path, name: str, model: Path, labels: Path, pixels: np.ndarray, norm) -> Path:
    from ai_edge_litert.interpreter import Interpreter
    out = root / name
    out.mkdir(parents=True)
    shutil.copyfile(model, out / "model.tflite")
    shutil.copyfile(labels, out / "labels.txt")
    interp = Interpreter(model_path=str(model), num_threads=1)
    interp.allocate_tensors()
    inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
    spec = {"input_size": int(inp["shape"][1]), "input_type": KOTLIN_TYPES[np.dtype(inp["dtype"]).name],
            "mean": ",".join(map(_number, norm.mean)), "std": ",".join(map(_number, norm.std)),
            "output_type": KOTLIN_TYPES[np.dtype(outp["dtype"]).name], "num_classes": int(outp["shape"][1])}
    for prefix, detail in (("input", inp), ("output", outp)):
        if np.issubdtype(detail["dtype"], np.integer):
            spec[f"{prefix}_scale"] = _number(detail["quantization"][0])
            spec[f"{prefix}_zero_point"] = int(detail["quantization"][1])
    inputs, raws, scores, ranks = [], [], [], []
    for image in pixels:
        x = to_input(norm.apply_numpy(image[None]), inp)
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        raw = interp.get_tensor(outp["index"])
        y = from_output(raw, outp)[0]
        inputs.append(x.astype(x.dtype.newbyteorder("<")).tobytes())
        raws.append(raw.astype(raw.dtype.newbyteorder("<")).tobytes())
        scores.append(y.astype("<f4").tobytes())
        ranks.append(" ".join(map(str, top5(y))))
    (out / "spec.txt").write_text("".join(f"{k}={v}\n" for k, v in spec.items()))
    (out / "pixels.bin").write_bytes(np.ascontiguousarray(pixels, np.uint8).tobytes())
    (out / "input.bin").write_bytes(b"".join(inputs))
    (out / "output.bin").write_bytes(b"".join(raws))
    (out / "scores.bin").write_bytes(b"".join(scores))
    (out / "top5.txt").write_text("\n".join(ranks) + "\n")
    return out


def write_crops(root: Path):
    from cifar_edge.images import center_square
    lines = [" ".join(map(str, (w, h, *center_square(w, h)))) for w, h in PHOTO_SIZES]
    (root / "crops.txt").write_text("\n".join(lines) + "\n")
