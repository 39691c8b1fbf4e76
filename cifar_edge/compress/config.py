"""OptimizeConfig: the settings of one compression run, checked up front so a bad flag
fails in a second with a fix, not after minutes of fine-tuning."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import CifarEdgeError, check_finite, unknown_choice

# qat: quantization-aware training; prune: magnitude pruning; pqat: QAT that keeps a
# pruned parent's zeros; cluster: weight clustering (weight sharing).
METHODS = ("qat", "prune", "pqat", "cluster")
from ..runs import QUANTIZED  # noqa: E402,F401 - the run spine owns it; compress and bench read it from there
FLAGS = {"sparsity": "prune", "clusters": "cluster"}    # fields whose `optimize` flag has another name


def flag(field: str) -> str:
    """The command-line flag that sets ``field``."""
    return "--" + FLAGS.get(field, field).replace("_", "-")


@dataclass
class OptimizeConfig:
    method: str
    epochs: int = 2
    sparsity: float = 0.5              # prune: fraction of zeros reached in every prunable kernel
    clusters: int = 16                 # cluster: distinct values per kernel
    lr: float | None = None            # None: the parent's learning rate / its divisor (run.lr_divisor)
    batch_size: int | None = None      # None: the parent's
    limit: int | None = None           # fine-tune on only N training images, stratified (smoke runs)
    seed: int = 0
    frequency: int | None = None       # prune: steps between mask updates; None: fitted to the run
    max_drop: float = 10.0             # fail when top-1 ends more than this many points below the parent's

    def validate(self) -> "OptimizeConfig":
        def bad(field, got, fix):
            raise CifarEdgeError(f"{flag(field)} {got} is invalid; {fix}")
        check_finite(self, flag)
        if self.method not in METHODS:
            raise unknown_choice("optimization method", self.method, METHODS)
        if self.epochs < 1:
            bad("epochs", self.epochs, "fine-tune for 1 or more epochs")
        if not 0 < self.sparsity < 1:
            bad("sparsity", self.sparsity, "use a fraction between 0 and 1, e.g. 0.5 for half the weights zero")
        if self.clusters < 2:
            bad("clusters", self.clusters, "use 2 or more clusters, e.g. 16")
        if self.lr is not None and not self.lr > 0:
            bad("lr", self.lr, "use a positive learning rate")
        if self.batch_size is not None and self.batch_size < 1:
            bad("batch_size", self.batch_size, "use 1 or more")
        if self.limit is not None and self.limit < 1:
            bad("limit", self.limit, "use 1 or more images")
        if self.frequency is not None and self.frequency < 1:
            bad("frequency", self.frequency, "use 1 or more steps between pruning updates")
        if not 0 <= self.max_drop <= 100:
            bad("max_drop", self.max_drop, "use top-1 points in 0..100, e.g. 10")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_saved(cls, saved: dict) -> "OptimizeConfig":
        """The settings an optimize run saved in its config.json ("optimize"), resolved as that run
        used them (its lr, batch and pruning frequency), so a resume repeats them exactly."""
        return cls(method=saved["method"], epochs=saved["epochs"], sparsity=saved.get("sparsity") or 0.5,
                   clusters=saved.get("clusters") or 16, lr=saved["lr"], batch_size=saved["batch_size"],
                   limit=saved.get("limit"), seed=saved.get("seed", 0), frequency=saved.get("frequency"),
                   max_drop=saved.get("max_drop", 10.0))
