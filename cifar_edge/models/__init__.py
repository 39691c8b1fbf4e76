"""Models: the registry and the built-in architectures."""
from .registry import ModelSpec, count_flops, get_model_spec, list_models, register_model


def register_custom_objects():
    """Import every built-in model module, so the layer classes they register with keras
    (ConvNeXt's GELU, LayerScale, StochasticDepth) are known before any model is loaded."""
    from .registry import _load_builtin
    _load_builtin()


__all__ = ["ModelSpec", "count_flops", "get_model_spec", "list_models", "register_custom_objects", "register_model"]
