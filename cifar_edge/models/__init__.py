"""Models: the registry, and one module per family that registers its models."""
from .registry import (BASE_RECIPE, ModelOption, ModelSpec, count_flops, default_model, flat_recipe, get_model_spec,
                       list_models, model_options, register_model)


def register_custom_objects():
    """Import every family module, so the layer classes they register with keras
    (ConvNeXt's GELU, LayerScale, StochasticDepth) are known before any model is loaded."""
    list_models()


__all__ = ["BASE_RECIPE", "ModelOption", "ModelSpec", "count_flops", "default_model", "flat_recipe", "get_model_spec",
           "list_models", "model_options", "register_custom_objects", "register_model"]
