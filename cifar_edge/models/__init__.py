"""Models: the registry and the built-in architectures."""
from .registry import ModelSpec, count_flops, get_model_spec, list_models, register_model

__all__ = ["ModelSpec", "count_flops", "get_model_spec", "list_models", "register_model"]
