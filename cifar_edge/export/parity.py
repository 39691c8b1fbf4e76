"""Checks on an exported file: does it agree with the Keras model it came from, which classes
moved most when it was quantized, and what the file itself weighs."""
from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_facts(paths, root=None) -> dict:
    """Size, gzip size (what an app store download costs) and SHA-256 of an exported file, or of
    the files of a folder export together (``root``: the folder; names enter the hash)."""
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    digest, size, packed = hashlib.sha256(), 0, 0
    for p in paths:
        data = p.read_bytes()
        if root is not None and len(paths) > 1:
            digest.update(str(p.relative_to(root)).encode() + b"\0")
        digest.update(data)
        size += len(data)
        packed += len(gzip.compress(data, compresslevel=9))
    return {"size_bytes": size, "gzip_bytes": packed, "sha256": digest.hexdigest()}


def agreement(reference: np.ndarray, exported: np.ndarray) -> dict:
    """Max abs diff of outputs and top-1 agreement between two runs on the same images."""
    return {"images": int(len(reference)), "max_abs_diff": float(np.max(np.abs(reference - exported))),
            "top1_agreement": float(np.mean(reference.argmax(1) == exported.argmax(1)))}


def per_class_accuracy(outputs: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    hits = np.bincount(labels, weights=outputs.argmax(1) == labels, minlength=num_classes)
    counts = np.bincount(labels, minlength=num_classes)
    return np.divide(hits, counts, out=np.full(num_classes, np.nan), where=counts > 0)


def mcnemar_p(lost: int, gained: int) -> float:
    """Exact two-sided McNemar p-value: how likely ``lost`` images turned wrong and ``gained``
    turned right would be if the change of format moved no accuracy (a fair coin per change)."""
    from math import comb
    n = lost + gained
    if n == 0:
        return 1.0
    k = min(lost, gained)
    tail = sum(comb(n, i) for i in range(k + 1)) / 2 ** n
    return float(min(1.0, 2 * tail))


SIGNIFICANCE = 0.05    # family-wise, Bonferroni over the classes compared


def class_drift(reference: np.ndarray, exported: np.ndarray, labels, class_names, top: int = 5) -> list[dict]:
    """The classes whose accuracy moved most against the float model, largest move first,
    each with its exact McNemar p-value over its changed predictions.  ``significant`` holds
    only below 0.05 / number of classes: with 10 images a class, a move of 2 or 3 is noise."""
    labels = np.asarray(labels)
    ref_ok, exp_ok = reference.argmax(1) == labels, exported.argmax(1) == labels
    n_classes = len(class_names)
    lost = np.bincount(labels, weights=ref_ok & ~exp_ok, minlength=n_classes).astype(int)
    gained = np.bincount(labels, weights=~ref_ok & exp_ok, minlength=n_classes).astype(int)
    ref = per_class_accuracy(reference, labels, n_classes)
    exp = per_class_accuracy(exported, labels, n_classes)
    counts = np.bincount(labels, minlength=n_classes)
    delta = exp - ref
    order = [i for i in np.argsort(-np.abs(np.nan_to_num(delta)), kind="stable") if counts[i] > 0]
    rows = []
    for i in order[:top]:
        if delta[i] == 0:
            continue
        p = mcnemar_p(int(lost[i]), int(gained[i]))
        rows.append({"class": class_names[i], "index": int(i), "images": int(counts[i]), "float_top1": float(ref[i]),
                     "export_top1": float(exp[i]), "delta": float(delta[i]), "lost": int(lost[i]),
                     "gained": int(gained[i]), "p_value": p, "significant": bool(p < SIGNIFICANCE / n_classes)})
    return rows


def overall_drift(reference: np.ndarray, exported: np.ndarray, labels) -> dict:
    """Whole-file change of top-1 against the reference, with its exact McNemar p-value."""
    labels = np.asarray(labels)
    ref_ok, exp_ok = reference.argmax(1) == labels, exported.argmax(1) == labels
    lost, gained = int(np.sum(ref_ok & ~exp_ok)), int(np.sum(~ref_ok & exp_ok))
    p = mcnemar_p(lost, gained)
    return {"lost": lost, "gained": gained, "delta_points": round(100 * (gained - lost) / max(1, len(labels)), 3),
            "p_value": p, "significant": bool(p < SIGNIFICANCE)}


def top1(outputs: np.ndarray, labels) -> float:
    return float(np.mean(outputs.argmax(1) == np.asarray(labels)))


def accuracy_gate(reference: np.ndarray, exported: np.ndarray, labels, max_drop: float, min_agreement: float,
                  strict: bool = False) -> dict:
    """Whether a quantized file keeps the source model's accuracy, with the figures that say so.

    It fails on accuracy only when its top-1 falls more than ``max_drop`` points below the
    source's *and* the fall is beyond noise (exact McNemar on the changed predictions,
    p < 0.05): on a few hundred images a point or two either way is chance.  ``strict``
    (the repair search's choice among candidates) drops the noise allowance.  Agreement is
    information, except below ``min_agreement``: a file that far from its model is broken."""
    drift = overall_drift(reference, exported, labels)
    source, got = top1(reference, labels), top1(exported, labels)
    drop = round(100 * (source - got), 3)
    agree = float(np.mean(reference.argmax(1) == exported.argmax(1)))
    failed_on = ("agreement" if agree < min_agreement
                 else "drop" if drop > max_drop and (strict or drift["significant"]) else None)
    return {"source_top1": source, "file_top1": got, "drop_points": drop, "p_value": drift["p_value"],
            "lost": drift["lost"], "gained": drift["gained"], "images": int(len(labels)), "max_drop": max_drop,
            "agreement": agree, "min_agreement": min_agreement, "passes": failed_on is None, "failed_on": failed_on}


def points(drop: float) -> str:
    """A top-1 change in words, its sign included ("loses 0.50 points", "gains 0.50 points")."""
    return f"loses {drop:.2f} points" if drop > 0 else f"gains {-drop:.2f} points" if drop < 0 else "loses nothing"
