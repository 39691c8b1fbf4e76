"""Learning-rate schedules, all functions of the optimizer step, so a resumed run picks up
exactly where the killed one stopped (the step count is restored with the optimizer)."""
from __future__ import annotations

import math

from .._tf import keras, tf


@keras.utils.register_keras_serializable("cifar_edge")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak`` over ``warmup_steps``, then linear decay to zero."""

    def __init__(self, peak, total_steps, warmup_steps):
        self.peak, self.total_steps, self.warmup_steps = float(peak), int(total_steps), int(max(1, warmup_steps))

    def __call__(self, step):
        s = tf.cast(step, tf.float32)
        up = s / self.warmup_steps
        down = (self.total_steps - s) / max(1, self.total_steps - self.warmup_steps)
        return self.peak * tf.maximum(0.0, tf.where(s < self.warmup_steps, up, down))

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


@keras.utils.register_keras_serializable("cifar_edge")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then cosine decay to zero."""

    def __init__(self, peak, total_steps, warmup_steps):
        self.peak, self.total_steps, self.warmup_steps = float(peak), int(total_steps), int(max(1, warmup_steps))

    def __call__(self, step):
        s = tf.cast(step, tf.float32)
        progress = tf.clip_by_value((s - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps), 0.0, 1.0)
        cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
        return self.peak * tf.where(s < self.warmup_steps, s / self.warmup_steps, cosine)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


@keras.utils.register_keras_serializable("cifar_edge")
class Triangle(keras.optimizers.schedules.LearningRateSchedule):
    """airbench's schedule: ``start`` x peak at step 0, linearly up to ``peak`` at
    ``peak_step``, linearly down to ``end`` x peak at the last step."""

    def __init__(self, peak, total_steps, peak_step, start=0.2, end=0.07):
        self.peak, self.total_steps = float(peak), int(max(1, total_steps))
        self.peak_step = int(min(max(1, peak_step), self.total_steps))
        self.start, self.end = float(start), float(end)

    def __call__(self, step):
        s = tf.minimum(tf.cast(step, tf.float32), float(self.total_steps))
        up = self.start + (1.0 - self.start) * s / self.peak_step
        down = 1.0 + (self.end - 1.0) * (s - self.peak_step) / max(1, self.total_steps - self.peak_step)
        return self.peak * tf.where(s < self.peak_step, up, down)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "peak_step": self.peak_step,
                "start": self.start, "end": self.end}


def make_schedule(name: str, lr: float, epochs: int, steps_per_epoch: int, warmup_epochs: float,
                  decay_rate: float = 0.9):
    """A schedule object, or a plain float for 'constant' and 'plateau' (which
    ReduceLROnPlateau then adjusts)."""
    total = epochs * steps_per_epoch
    warm = warmup_epochs * epochs if warmup_epochs < 1 else warmup_epochs   # < 1: a fraction of the run
    warm_steps = int(round(warm * steps_per_epoch))
    if name == "onecycle":
        return OneCycle(lr, total, warm_steps)
    if name == "triangle":
        return Triangle(lr, total, warm_steps)
    if name == "cosine":
        return WarmupCosine(lr, total, warm_steps)
    if name == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(lr, steps_per_epoch, decay_rate)
    return float(lr)
