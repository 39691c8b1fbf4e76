"""Which parent runs each method can start from, decided from the parent's config.json
before anything heavy is loaded, so a wrong pairing fails at once with what to run instead."""
from __future__ import annotations

from pathlib import Path

from ..errors import CifarEdgeError
from ..runs import optimize_method, source_kind
from .config import QUANTIZED


def parent_method(config: dict) -> str | None:
    """The optimization that produced the parent run, or None for a plain training run."""
    return optimize_method(config)


def check_parent(method: str, root: Path, config: dict):
    """Raise CifarEdgeError when ``method`` cannot start from the run at ``root``."""
    from ..source_models import KINDS
    kind = source_kind(config)
    if kind != "trained" and not getattr(KINDS.get(kind), "tfmot", False):
        raise CifarEdgeError(f"--{method} cannot start from {root}, an imported {kind} model: tfmot 0.8 fine-tunes "
                             "tf_keras models only (a Keras 3, plain SavedModel, ONNX or PyTorch model has no tf_keras "
                             "layers to wrap); export it with --int8 (PTQ) and repair it with --max-drop instead")
    before = parent_method(config)
    origin = config.get("parent") or "its float parent"
    if method == "pqat" and before != "prune":
        what = f"a {before} run" if before else "not pruned"
        raise CifarEdgeError(f"--pqat keeps a pruned model's zeros, but {root} is {what}; run --prune on a "
                             "trained run first and pass that pruned run")
    if before in QUANTIZED:
        if method == "qat":
            raise CifarEdgeError(f"{root} is already quantization-aware ({before}); export it as is, or run "
                                 f"--qat on {origin}")
        raise CifarEdgeError(f"--{method} cannot start from {root}: it is quantization-aware ({before}) and tfmot "
                             f"cannot {method} a quantized model; run --{method} on {origin}, then --qat on "
                             "the result")
