"""Compression of a trained run (tensorflow-model-optimization): quantization-aware
training, pruning, pruning-preserving QAT and weight clustering, each written as a new run
folder that evaluate, predict and export take as is."""
from .config import METHODS, OptimizeConfig
from .run import optimize_run

__all__ = ["METHODS", "OptimizeConfig", "optimize_run"]
