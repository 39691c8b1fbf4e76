"""TrainConfig: every setting of a training run in one object, saved as the run's
config.json so the run can be repeated or resumed exactly."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..data.augment import AugmentConfig
from ..errors import CifarEdgeError, check_finite

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "exponential", "plateau", "constant")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
PRECISIONS = ("auto", "float32", "bf16")

# Defaults when neither the flag nor the model's recipe says otherwise.
_FALLBACK = {"optimizer": "adamw", "lr": 1e-3, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4,
             "schedule": "cosine", "warmup_epochs": 1.0, "label_smoothing": 0.1, "batch_size": 128,
             "whiten": False}


@dataclass
class TrainConfig:
    model: str = "cnn"
    data: str = "cifar100"
    labels: str = "fine"                 # CIFAR-100: fine (100) or coarse (20)
    epochs: int = 10
    seed: int = 0
    val_split: float = 0.1
    batch_size: int | None = None        # None: the model's recipe
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    weight_decay: float | None = None    # decoupled (SGDW / AdamW); BN and biases excluded
    schedule: str | None = None
    warmup_epochs: float | None = None   # < 1 means a fraction of all epochs
    decay_rate: float = 0.9              # exponential schedule: factor per epoch
    label_smoothing: float | None = None
    whiten: bool | None = None           # patch-whitening init of a 2x2 stem (cnn)
    early_stopping: int = 0              # patience in epochs; 0 = off
    input_size: int | None = None        # None: the model's default
    model_options: dict = field(default_factory=dict)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    strategy: str = "auto"
    precision: str = "auto"              # auto (mixed float16 on GPU), float32, bf16
    kfold: int = 0
    mlflow: bool = False
    verify: bool = True                  # MD5-check official CIFAR files
    limit: int | None = None             # use only N training images, stratified (smoke runs)
    synthetic_classes: int | None = None
    synthetic_size: int | None = None
    head_epochs: int = 0                 # transfer models: first N epochs train only the new head
    head_lr: float | None = None         # stage 1 learning rate [default: 10 x lr]
    unfreeze: str = "all"                # stage 2: "all" backbone blocks, or how many from the top

    def resolved(self) -> "TrainConfig":
        """Fill unset fields from the model's recipe, then the fallbacks; validate."""
        from ..models import get_model_spec
        spec = get_model_spec(self.model)
        values = {}
        for k, v in _FALLBACK.items():
            mine = getattr(self, k)
            values[k] = mine if mine is not None else spec.recipe.get(k, v)
        cfg = dataclasses.replace(self, **values, input_size=self.input_size or spec.input_size)
        if cfg.head_epochs and spec.blocks is None:
            raise CifarEdgeError(f"--head-epochs needs a pretrained transfer model; '{cfg.model}' has no backbone "
                                 "blocks to freeze (see `cifar-edge models`)")
        return cfg.validate()

    def validate(self) -> "TrainConfig":
        def bad(flag, got, fix):
            raise CifarEdgeError(f"--{flag.replace('_', '-')} {got} is invalid; {fix}")
        check_finite(self)
        check_finite(self.augment)
        if self.epochs < 1:
            bad("epochs", self.epochs, "use 1 or more")
        if self.batch_size is not None and self.batch_size < 1:
            bad("batch_size", self.batch_size, "use 1 or more")
        if self.lr is not None and not self.lr > 0:
            bad("lr", self.lr, "use a positive learning rate")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            bad("optimizer", self.optimizer, f"choose one of {', '.join(OPTIMIZERS)}")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            bad("schedule", self.schedule, f"choose one of {', '.join(SCHEDULES)}")
        if self.strategy not in STRATEGIES:
            bad("strategy", self.strategy, f"choose one of {', '.join(STRATEGIES)}")
        if self.precision not in PRECISIONS:
            bad("precision", self.precision, f"choose one of {', '.join(PRECISIONS)}")
        if not 0 <= self.val_split < 1:
            bad("val_split", self.val_split, "use a fraction in [0, 1)")
        if self.label_smoothing is not None and not 0 <= self.label_smoothing < 1:
            bad("label_smoothing", self.label_smoothing, "use a value in [0, 1)")
        if self.momentum is not None and not 0 <= self.momentum < 1:
            bad("momentum", self.momentum, "use a value in [0, 1)")
        if self.warmup_epochs is not None and self.warmup_epochs < 0:
            bad("warmup_epochs", self.warmup_epochs, "use 0 or more")
        if self.weight_decay is not None and self.weight_decay < 0:
            bad("weight_decay", self.weight_decay, "use 0 or more")
        if self.kfold == 1 or self.kfold < 0:
            bad("kfold", self.kfold, "use 0 (off) or 2 or more folds")
        if self.early_stopping < 0:
            bad("early_stopping", self.early_stopping, "use 0 (off) or a patience in epochs")
        if self.limit is not None and self.limit < 1:
            bad("limit", self.limit, "use 1 or more images")
        if self.input_size is not None and self.input_size < 8:
            bad("input_size", self.input_size, "use 8 pixels or more")
        if not 0 <= self.head_epochs < self.epochs:
            bad("head_epochs", self.head_epochs, f"use 0 (one stage) up to {self.epochs - 1} (--epochs counts both stages)")
        if self.head_lr is not None and not self.head_lr > 0:
            bad("head_lr", self.head_lr, "use a positive learning rate")
        if self.unfreeze != "all" and not (str(self.unfreeze).isdigit()):
            bad("unfreeze", self.unfreeze, "use 'all' or a number of top backbone blocks")
        self.augment.validate()
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["augment"] = self.augment.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise CifarEdgeError(f"config has unknown keys {sorted(unknown)}; was it written by a newer cifar-edge?")
        d["augment"] = AugmentConfig(**d.get("augment", {}))
        for key in ("depth", "base_widths"):     # JSON gives lists; the model wants tuples
            if key in d.get("model_options", {}):
                d["model_options"][key] = tuple(d["model_options"][key])
        return cls(**d)
