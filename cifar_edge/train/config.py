"""TrainConfig: every setting of a training run in one object, saved as the run's
config.json so the run can be repeated or resumed exactly."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..data.augment import AugmentConfig
from ..errors import CifarEdgeError, check_finite
from ..models.registry import BASE_RECIPE

OPTIMIZERS = ("sgd", "sgd-l2", "adamw")
SCHEDULES = ("onecycle", "triangle", "cosine", "exponential", "plateau", "constant")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
PRECISIONS = ("auto", "float32", "bf16")

# What a model's recipe does not set (and, after a switch of optimizer, what it set for its own).
_FALLBACK = {k: v for group, values in BASE_RECIPE.items() if group != "compression" for k, v in values.items()}
# What only the sgd-l2 optimizer can do (train/optim.py); another optimizer takes the fallback (neutral) value.
_SGD_L2_ONLY = ("bn_bias_lr", "logit_scale", "lookahead", "whiten_bias_epochs")
_OPTIMIZER_KEYS = {"lr", "momentum", "nesterov", "weight_decay", "schedule", "warmup_epochs"}
# Runs shorter than this many steps get a smaller batch (and, at a per-sample lr, a lower lr).
MIN_STEPS = 400    # airbench's full CIFAR-10 run takes 488
MIN_BATCH = 64


@dataclass
class TrainConfig:
    model: str | None = None             # None: the registry's default model
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
    whiten_bias_epochs: int | None = None  # sgd-l2: the whitened stem's bias trains this many epochs
    bn_bias_lr: float | None = None      # sgd-l2: learning-rate multiplier of BatchNorm biases
    logit_scale: float | None = None     # sgd-l2: the head trains as if its logits were scaled by this
    lookahead: bool | None = None        # sgd-l2: airbench's lookahead (weights and BN statistics)
    alternate_flip: bool | None = None   # each image's mirror alternates epoch by epoch (else random)
    tta: bool | None = None              # also score 6-view test-time augmentation into metrics.json
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

    def __post_init__(self):
        if self.model is None:
            from ..models import default_model
            self.model = default_model()

    def resolved(self, n_train: int | None = None) -> "TrainConfig":
        """Fill unset fields from the model's recipe, then the fallbacks; validate.

        sgd-l2 recipes give a per-sample learning rate: a batch other than the recipe's scales
        the lr with it.  Given ``n_train`` (training images), a run that would make fewer than
        MIN_STEPS steps at the recipe's batch gets a smaller one, so short runs on small data
        still take enough steps to learn."""
        from ..models import get_model_spec
        spec = get_model_spec(self.model)
        # Another optimizer than the recipe's takes the fallback lr, momentum, decay and schedule:
        # the recipe's were tuned for its own optimizer (sgd-l2's lr 1.5 diverges AdamW).
        recipe = spec.settings
        if self.optimizer is not None and self.optimizer != recipe.get("optimizer", _FALLBACK["optimizer"]):
            recipe = {k: v for k, v in recipe.items() if k not in _OPTIMIZER_KEYS}
        values = {}
        for k, v in _FALLBACK.items():
            mine = getattr(self, k)
            values[k] = mine if mine is not None else recipe.get(k, v)
        if values["optimizer"] == "sgd-l2":
            recipe_batch = recipe.get("batch_size", values["batch_size"])
            if self.batch_size is None and n_train:
                while values["batch_size"] > MIN_BATCH and n_train * self.epochs / values["batch_size"] < MIN_STEPS:
                    values["batch_size"] //= 2
            if self.lr is None and values["batch_size"] != recipe_batch:
                values["lr"] = values["lr"] * values["batch_size"] / recipe_batch
        else:
            for k in _SGD_L2_ONLY:
                neutral = _FALLBACK[k]
                if getattr(self, k) is None:
                    values[k] = neutral
                elif getattr(self, k) != neutral:
                    raise CifarEdgeError(f"--{k.replace('_', '-')} needs --optimizer sgd-l2 (the run uses "
                                         f"{values['optimizer']}); drop it or switch optimizer")
        spec.check_options(self.model_options)
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
        if self.bn_bias_lr is not None and not self.bn_bias_lr > 0:
            bad("bn_bias_lr", self.bn_bias_lr, "use a positive multiplier (1: as every other variable)")
        if self.logit_scale is not None and not self.logit_scale > 0:
            bad("logit_scale", self.logit_scale, "use a positive scale (1: off)")
        if self.whiten_bias_epochs is not None and self.whiten_bias_epochs < 0:
            bad("whiten_bias_epochs", self.whiten_bias_epochs, "use 0 or more")
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
        from ..models import list_models, model_options
        spec = next((s for s in list_models() if s.name == d.get("model")), None)
        if spec is not None and spec.upgrade_config is not None:
            d = spec.upgrade_config(d)      # written by an older cifar-edge
        for option in model_options():      # JSON gives lists; the model wants tuples
            if option.kind == "ints" and option.name in d.get("model_options", {}):
                d["model_options"][option.name] = tuple(d["model_options"][option.name])
        return cls(**d)
