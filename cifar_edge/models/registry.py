"""The model registry: name -> builder, default input size, preprocessing, recipe and options.

Each family is one module of this package that registers its models with ``@register_model``
(its builders, its recipe and the options its builders take), as timm's families do.  The
registry imports no family by name: :func:`_discover` imports every module here except the
support modules, so adding a family is adding one file.
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib
import pkgutil
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import CifarEdgeError

if TYPE_CHECKING:      # data.pipeline loads TensorFlow; the registry is read without it (the CLI)
    from ..data.pipeline import Normalization

# Modules of this package that hold no family: the registry itself and what families or
# compression share.  Names starting with "_" are support modules too.
SUPPORT_MODULES = ("registry", "head", "pretrained", "qat_scheme", "tfmot_compat", "tflite_import")

# The recipe every model's starts from, grouped by what it governs (airbench's ``hyp``): one
# place for each default.  A family's recipe overrides some of these (same groups and keys, the
# names of TrainConfig's fields); a flag overrides both.  sgd-l2's own settings (bn_bias_lr,
# logit_scale, lookahead, whiten_bias_epochs) are neutral here, so another optimizer ignores them.
BASE_RECIPE = {
    "optimizer": {"optimizer": "adamw", "lr": 1e-3, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4,
                  "schedule": "cosine", "warmup_epochs": 1.0, "batch_size": 128, "label_smoothing": 0.1,
                  "bn_bias_lr": 1.0, "lookahead": False, "whiten_bias_epochs": 0},
    "augmentation": {"alternate_flip": False},
    "network": {"whiten": False, "logit_scale": 1.0},
    "evaluation": {"tta": False},
    # What `optimize` reads from its parent's recipe; None: optimize's own divisor (compress/run.py).
    "compression": {"qat_lr_divisor": None},
}
RECIPE_GROUPS = {group: tuple(values) for group, values in BASE_RECIPE.items()}


def flat_recipe(recipe: dict) -> dict:
    """A grouped recipe as one {setting: value} dict; a setting in the wrong group (or no
    group) is a mistake in the family's file, named here rather than silently ignored."""
    flat = {}
    for group, values in recipe.items():
        if group not in RECIPE_GROUPS:
            raise ValueError(f"recipe group {group!r} is unknown; use one of {', '.join(RECIPE_GROUPS)}")
        for key, value in values.items():
            if key not in RECIPE_GROUPS[group]:
                home = next((g for g, keys in RECIPE_GROUPS.items() if key in keys), None)
                raise ValueError(f"recipe setting {key!r} does not belong in {group!r}"
                                 + (f"; it goes in {home!r}" if home else ""))
            flat[key] = value
    return flat


@dataclass(frozen=True)
class ModelOption:
    """One keyword a family's builders take, offered on the command line as ``--<flag>``.

    ``kind`` is float, int, str, bool (``--flag/--no-flag``) or "ints" (comma-separated
    whole numbers); ``parse`` turns the flag's text into the builder's value where more is
    needed (a path made absolute)."""
    name: str                       # the builder keyword, and the key in TrainConfig.model_options
    kind: object
    help: str
    flag: str = ""                  # [default: name with - for _]
    example: str = ""               # "ints": shown when the text is not whole numbers
    parse: Callable | None = None

    @property
    def cli_flag(self) -> str:
        return "--" + (self.flag or self.name.replace("_", "-"))

    def value(self, text):
        """The builder's value of what the user typed."""
        if text is None:
            return None
        if self.kind == "ints":
            try:
                text = tuple(int(d) for d in str(text).split(","))
            except ValueError:
                raise CifarEdgeError(f"{self.cli_flag} {text!r} is invalid; give whole numbers like "
                                     f"{self.example}") from None
        return self.parse(text) if self.parse else text


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable            # builder(num_classes, input_shape, **options) -> keras.Model
    input_size: int              # default square input resolution
    normalization: Normalization
    description: str
    recipe: dict = field(default_factory=dict)   # grouped default settings (RECIPE_GROUPS)
    family: str = "scratch"                       # how it trains: from scratch, or "transfer" from pretrained weights
    weights_info: Callable | None = None          # () -> which pretrained weights this machine has
    blocks: Callable | None = None                # model -> backbone layer names per block, bottom to top
    options: tuple = ()                           # ModelOption: what --<flag> the builders take
    module: str = ""                              # the family's file (module name), set on registration
    default: bool = False                         # the model `train` trains when none is named
    quickstart: dict | None = None                # settings of a few-minute run: the model `quickstart` trains
    upgrade_config: Callable | None = None        # saved train config dict -> as this version reads it

    @property
    def settings(self) -> dict:
        """The recipe as {TrainConfig field: value}."""
        return flat_recipe(self.recipe)

    def available_weights(self) -> str:
        return self.weights_info() if self.weights_info else "none: trained from scratch"

    def check_options(self, options: dict):
        """Refuse, in one line, an option that other models declare and this one does not take
        (an option nobody declares reaches the builder, which names it)."""
        mine = {o.name for o in self.options}
        for key in options:
            owners = [] if key in mine else option_owners(key)
            if owners:
                flag = next(o.cli_flag for o in model_options() if o.name == key)
                takes = ", ".join(o.cli_flag for o in self.options) or "no model options"
                raise CifarEdgeError(f"{flag} is an option of {', '.join(owners)}, not of {self.name} (the "
                                     f"{self.module} family, which takes {takes}); drop it or pick one of those models")

    def build(self, num_classes: int, input_size: int | None = None, **options):
        size = input_size or self.input_size
        try:
            return self.builder(num_classes=num_classes, input_shape=(size, size, 3), **options)
        except (TypeError, ValueError) as e:
            raise CifarEdgeError(f"cannot build model '{self.name}' with {options or 'defaults'}: {e}") from None


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, input_size: int, normalization: Normalization, description: str, recipe: dict | None = None,
                   family: str = "scratch", weights_info: Callable | None = None, blocks: Callable | None = None,
                   options: tuple = (), default: bool = False, quickstart: dict | None = None,
                   upgrade_config: Callable | None = None):
    """Decorate a builder ``builder(num_classes, input_shape, **options)`` to register it as ``name``."""
    recipe = recipe or {}
    flat_recipe(recipe)      # a misplaced setting fails when the family's file is imported

    def deco(builder):
        module = builder.__module__.rsplit(".", 1)[-1]
        _REGISTRY[name] = ModelSpec(name, builder, input_size, normalization, description, recipe, family,
                                    weights_info, blocks, tuple(options), module, default, quickstart, upgrade_config)
        return builder
    return deco


def get_model_spec(name: str) -> ModelSpec:
    _discover()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise CifarEdgeError(f"unknown model '{name}'; {hint}available: {', '.join(sorted(_REGISTRY))} "
                             "(see `cifar-edge models`)")
    return _REGISTRY[name]


def list_models(pattern: str = "*") -> list[ModelSpec]:
    _discover()
    return [_REGISTRY[n] for n in sorted(_REGISTRY) if fnmatch.fnmatch(n, pattern)]


def default_model() -> str:
    """The model a run trains when it names none: the one its family marks ``default``."""
    (name,) = [s.name for s in list_models() if s.default]
    return name


def quickstart_model() -> ModelSpec:
    """The model `cifar-edge quickstart` trains: the one its family gives ``quickstart`` settings."""
    (spec,) = [s for s in list_models() if s.quickstart]
    return spec


def model_options() -> list[ModelOption]:
    """Every family's options, one per builder keyword (families may share one, e.g.
    --dropout): what `train` offers as flags."""
    seen: dict[str, ModelOption] = {}
    for spec in list_models():
        for option in spec.options:
            seen.setdefault(option.name, option)
    return list(seen.values())


def option_owners(name: str) -> list[str]:
    """The models that take option ``name``."""
    return [s.name for s in list_models() if name in {o.name for o in s.options}]


_DISCOVERED: set[str] = set()
_READ_FOLDERS: list = [None]    # the package folders _discover last listed


def _discover():
    """Import every family module of this package (once): each registers its models.  The
    package is loaded whenever this module is, so its folders are read from sys.modules."""
    folders = tuple(sys.modules[__package__].__path__)
    if folders == _READ_FOLDERS[0]:
        return                      # every lookup calls this: read the folders again only when they change
    _READ_FOLDERS[0] = folders
    for info in pkgutil.iter_modules(folders):
        if info.name.startswith("_") or info.name in SUPPORT_MODULES or info.name in _DISCOVERED:
            continue
        _DISCOVERED.add(info.name)
        importlib.import_module(f"{__package__}.{info.name}")


def count_flops(model) -> int:
    """Multiply-adds x 2 of one forward pass for one image (conv, depthwise, dense layers)."""
    total = 0
    for layer in model.layers:
        cls = type(layer).__name__
        if cls in ("Conv2D", "DepthwiseConv2D"):
            out = layer.output_shape
            h, w = out[1], out[2]
            kh, kw = layer.kernel_size
            cin = layer.input_shape[-1]
            if cls == "Conv2D":
                total += 2 * h * w * kh * kw * (cin // layer.groups) * layer.filters
            else:
                total += 2 * h * w * kh * kw * cin * layer.depth_multiplier
        elif cls == "Dense":   # on (N, H, W, C) inputs (ConvNeXt's pointwise convs) once per position
            positions = int(np.prod(layer.output_shape[1:-1])) if len(layer.output_shape) > 2 else 1
            total += 2 * int(layer.input_shape[-1]) * layer.units * positions
    return int(total)
