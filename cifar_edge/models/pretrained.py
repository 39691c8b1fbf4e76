"""What the transfer families share: their fine-tuning recipe, their ``--weights`` option, and
what they say when pretrained weights cannot be had or do not fit (one wording for every
family, so `--weights` errors read the same whichever model refuses)."""
from __future__ import annotations

from pathlib import Path

from ..errors import CifarEdgeError
from .registry import ModelOption

# Fine-tuning from ImageNet weights: AdamW at a low rate; 96 px keeps a CPU epoch short.
TRANSFER_RECIPE = {
    "optimizer": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "schedule": "cosine", "warmup_epochs": 0.5,
                  "batch_size": 64, "label_smoothing": 0.1},
}


def _weights_value(weights: str) -> str:
    """imagenet / none as they are; a path made absolute, so a resumed run finds it from anywhere."""
    return weights if weights in ("imagenet", "none") else str(Path(weights).expanduser().resolve())


WEIGHTS = ModelOption("weights", str, "imagenet, none, or a keras weights file (`cifar-edge weights import-tflite`).",
                      parse=_weights_value)

OFFLINE_FIX = "on an offline machine pass --weights PATH or --weights none"


def weights_file(weights: str, accepted: str) -> Path:
    """``weights`` as an existing file, or the error naming what ``--weights`` accepts."""
    path = Path(weights)
    if not path.is_file():
        raise CifarEdgeError(f"--weights {weights}: no such file; pass imagenet, none, or {accepted}")
    return path


def download_failed(arch: str, error: Exception, fix: str = OFFLINE_FIX) -> CifarEdgeError:
    """keras raises a bare Exception when a weights download fails; this is the line we print."""
    return CifarEdgeError(f"ImageNet weights for {arch} could not be downloaded ({str(error)[:80]}); {fix}")


def does_not_fit(weights, arch: str, error: Exception, fix: str) -> CifarEdgeError:
    return CifarEdgeError(f"{weights} does not fit {arch} ({str(error).splitlines()[0][:100]}); {fix}")
