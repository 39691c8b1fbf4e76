"""The model registry: name -> builder, default input size, preprocessing and recipe.

Models register themselves with ``@register_model``; the CLI, training and export all look
models up here, so adding an architecture is one decorated function.
"""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..data.pipeline import Normalization
from ..errors import CifarEdgeError

# Per-channel CIFAR statistics (0..255): the custom CNN trains from scratch on these.
CIFAR_NORM = Normalization((125.3, 123.0, 113.9), (63.0, 62.1, 66.7))


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable            # builder(num_classes, input_shape, **options) -> keras.Model
    input_size: int              # default square input resolution
    normalization: Normalization
    description: str
    recipe: dict = field(default_factory=dict)   # default TrainConfig overrides
    family: str = "cnn"
    weights_info: Callable | None = None          # () -> which pretrained weights this machine has
    blocks: Callable | None = None                # model -> backbone layer names per block, bottom to top

    def available_weights(self) -> str:
        return self.weights_info() if self.weights_info else "none: trained from scratch"

    def build(self, num_classes: int, input_size: int | None = None, **options):
        size = input_size or self.input_size
        try:
            return self.builder(num_classes=num_classes, input_shape=(size, size, 3), **options)
        except (TypeError, ValueError) as e:
            raise CifarEdgeError(f"cannot build model '{self.name}' with {options or 'defaults'}: {e}") from None


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, input_size: int, normalization: Normalization, description: str,
                   recipe: dict | None = None, family: str = "cnn", weights_info: Callable | None = None,
                   blocks: Callable | None = None):
    def deco(builder):
        _REGISTRY[name] = ModelSpec(name, builder, input_size, normalization, description, recipe or {}, family,
                                    weights_info, blocks)
        return builder
    return deco


def get_model_spec(name: str) -> ModelSpec:
    _load_builtin()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise CifarEdgeError(f"unknown model '{name}'; {hint}available: {', '.join(sorted(_REGISTRY))} "
                             "(see `cifar-edge models`)")
    return _REGISTRY[name]


def list_models(pattern: str = "*") -> list[ModelSpec]:
    _load_builtin()
    return [_REGISTRY[n] for n in sorted(_REGISTRY) if fnmatch.fnmatch(n, pattern)]


def _load_builtin():
    from . import zoo  # noqa: F401 - registers the built-in models


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
