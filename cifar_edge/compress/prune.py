"""Magnitude pruning with a schedule fitted to the run's length.

tfmot's default schedule updates the mask every 100 steps; a short fine-tune has fewer
steps than that and would prune nothing.  Here the mask is updated ~20 times, and the
target sparsity is reached at ~75% of the run so the last quarter recovers accuracy with a
fixed mask.
"""
from __future__ import annotations

from .. import console
from .._tf import keras
from ..errors import CifarEdgeError
from ..models.tfmot_compat import tfmot
from .measure import KERNEL_LAYERS

RAMP = 0.75          # fraction of the run over which sparsity ramps from 0 to the target
UPDATES = 20         # mask updates over the run, when --frequency is not given


def schedule_steps(total_steps: int, frequency: int | None) -> tuple[int, int]:
    """(frequency, end_step) with end_step a multiple of frequency inside the run: tfmot
    updates the mask only on steps where ``step % frequency == 0`` up to ``end_step``,
    so a misaligned end would stop short of the target sparsity."""
    frequency = frequency or max(1, total_steps // UPDATES)
    end = int(RAMP * (total_steps - 1)) // frequency * frequency
    if end < 1:
        raise CifarEdgeError(f"{total_steps} training steps are too few to prune with a mask update every "
                             f"{frequency} steps; use more --epochs or images, or a smaller --frequency")
    return frequency, end


def prune(model, sparsity: float, total_steps: int, frequency: int | None = None):
    """Return (pruning-wrapped model, callbacks for fit, schedule facts for the config)."""
    frequency, end = schedule_steps(total_steps, frequency)
    schedule = tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=sparsity,
                                                    begin_step=0, end_step=end, frequency=frequency)
    wrap = lambda layer: tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)  # noqa: E731
    callbacks, facts = [tfmot.sparsity.keras.UpdatePruningStep()], {"frequency": frequency, "end_step": end}
    try:
        return wrap(model), callbacks, facts
    except ValueError:          # a layer tfmot's registry does not list (a notebook's leading Rescaling)
        from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry
        unlisted = [f"{layer.name} ({type(layer).__name__})" for layer in model.layers
                    if not PruneRegistry.supports(layer)]
        console.info(f"not pruning the whole model (tfmot does not know {', '.join(unlisted[:3]) or 'a layer'}): "
                     "pruning the Conv2D/DepthwiseConv2D/Dense layers only")
    try:
        kernels_only = lambda layer: wrap(layer) if isinstance(layer, KERNEL_LAYERS) else layer  # noqa: E731
        return keras.models.clone_model(model, clone_function=kernels_only), callbacks, facts
    except ValueError as e:
        raise CifarEdgeError(f"tfmot cannot prune this model ({str(e).splitlines()[0][-160:]}); use --qat or "
                             "--cluster instead") from None


def strip(model):
    """The plain Keras model with the zeros baked into its kernels."""
    return tfmot.sparsity.keras.strip_pruning(model)
