"""Checks on an exported file: does it agree with the Keras model it came from, which classes
moved most when it was quantized, and what the file itself weighs."""
from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_facts(path) -> dict:
    """Size, gzip size (what an app store download costs) and SHA-256 of a file."""
    data = Path(path).read_bytes()
    return {"size_bytes": len(data), "gzip_bytes": len(gzip.compress(data, compresslevel=9)),
            "sha256": hashlib.sha256(data).hexdigest()}


def agreement(reference: np.ndarray, exported: np.ndarray) -> dict:
    """Max abs diff of outputs and top-1 agreement between two runs on the same images."""
    return {"images": int(len(reference)), "max_abs_diff": float(np.max(np.abs(reference - exported))),
            "top1_agreement": float(np.mean(reference.argmax(1) == exported.argmax(1)))}


def per_class_accuracy(outputs: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    hits = np.bincount(labels, weights=outputs.argmax(1) == labels, minlength=num_classes)
    counts = np.bincount(labels, minlength=num_classes)
    return np.divide(hits, counts, out=np.full(num_classes, np.nan), where=counts > 0)


def class_drift(reference: np.ndarray, exported: np.ndarray, labels, class_names, top: int = 5) -> list[dict]:
    """The classes whose accuracy moved most against the float model, largest move first."""
    ref = per_class_accuracy(reference, labels, len(class_names))
    exp = per_class_accuracy(exported, labels, len(class_names))
    counts = np.bincount(np.asarray(labels), minlength=len(class_names))
    delta = exp - ref
    order = [i for i in np.argsort(-np.abs(np.nan_to_num(delta)), kind="stable") if counts[i] > 0]
    return [{"class": class_names[i], "index": int(i), "images": int(counts[i]), "float_top1": float(ref[i]),
             "export_top1": float(exp[i]), "delta": float(delta[i])} for i in order[:top] if delta[i] != 0]


def top1(outputs: np.ndarray, labels) -> float:
    return float(np.mean(outputs.argmax(1) == np.asarray(labels)))
