"""``sgd-l2``: Nesterov SGD as airbench94 runs it (in torch), for tf_keras.

Three things keras' SGD cannot say:

* the weight decay is an L2 term added to the gradient, so it passes through the momentum,
  and it applies to every trainable variable (BatchNorm biases included);
* some variables take a larger or smaller step (``multipliers``, by variable-name suffix):
  BatchNorm biases x64, and the head x(1/9)^2, which is exactly airbench's "logits x 1/9"
  on a plain Dense layer, so the saved model needs no extra layer;
* some variables stop training from a given step on (``freeze_from``): the whitened stem's
  kernel never trains, its bias only for the first epochs.

Variables are matched by name suffix once, in ``build``, and looked up by keras' variable key,
so every replica of a mirrored variable gets the same treatment.  The momentum step is keras'
Nesterov form, equal to torch's at a constant lr (here it changes slowly, by the schedule).

``lookahead_total_steps`` (the run's step count T) > 0 adds airbench's lookahead, in the graph: every ``lookahead_every``
steps the weights *and* the BatchNorm statistics are pulled towards a slow copy with
decay 0.95^5 (t/T)^3 and replaced by it; at step T they become the slow copy.  The slow
copy lives in optimizer slots, so the crash backup carries it and a resumed run is exact.
"""
from __future__ import annotations

from .._tf import keras, tf


def _name(variable) -> str:
    return variable.name.split(":")[0]


@keras.utils.register_keras_serializable("cifar_edge")
class ScaledSGD(keras.optimizers.SGD):
    def __init__(self, learning_rate=0.01, momentum=0.85, nesterov=True, l2=0.0, multipliers=None,
                 freeze_from=None, lookahead_total_steps=0, lookahead_every=5, name="ScaledSGD", **kwargs):
        super().__init__(learning_rate, momentum=momentum, nesterov=nesterov, name=name, **kwargs)
        self.l2 = float(l2)
        self.multipliers = {str(k): float(v) for k, v in (multipliers or {}).items()}
        self.freeze_from = {str(k): int(v) for k, v in (freeze_from or {}).items()}
        self.lookahead_total_steps = int(lookahead_total_steps)
        self.lookahead_every = int(lookahead_every)
        self._statistics = []          # non-trainable float variables the lookahead also blends
        self._multiplier_of, self._freeze_of = {}, {}

    def track_statistics(self, model):
        """Blend ``model``'s non-trainable float variables (BatchNorm statistics) too.  Call
        before the first step."""
        self._statistics = [v for v in model.non_trainable_variables if v.dtype.is_floating]

    @staticmethod
    def _match(table: dict, variable):
        name = _name(variable)
        for suffix, value in table.items():
            if name.endswith(suffix):
                return value
        return None

    def build(self, var_list):
        super().build(var_list)
        if getattr(self, "_lookahead_built", False):
            return
        self._lookahead_built = True
        self._multiplier_of, self._freeze_of = {}, {}
        for var in var_list:
            self._multiplier_of[self._var_key(var)] = self._match(self.multipliers, var)
            self._freeze_of[self._var_key(var)] = self._match(self.freeze_from, var)
        self.slow = []
        if self.lookahead_total_steps:
            for var in list(var_list) + list(self._statistics):
                self.slow.append(self.add_variable_from_reference(var, "slow", initial_value=tf.convert_to_tensor(var)))
        self._slow_pairs = list(zip(list(var_list) + list(self._statistics), self.slow))

    def update_step(self, gradient, variable):
        multiplier = self._multiplier_of.get(self._var_key(variable))
        if multiplier is not None:
            gradient = gradient * tf.cast(multiplier, gradient.dtype)
        if self.l2:
            gradient = gradient + tf.cast(self.l2, gradient.dtype) * tf.cast(tf.convert_to_tensor(variable),
                                                                             gradient.dtype)
        frozen_from = self._freeze_of.get(self._var_key(variable))
        if frozen_from is None:
            return super().update_step(gradient, variable)

        def step():
            super(ScaledSGD, self).update_step(gradient, variable)
            return tf.constant(True)
        tf.cond(self.iterations < frozen_from, step, lambda: tf.constant(False))

    def _distributed_apply_gradients_fn(self, distribution, grads_and_vars, **kwargs):
        done = super()._distributed_apply_gradients_fn(distribution, grads_and_vars, **kwargs)
        if not self.lookahead_total_steps:
            return done
        with tf.control_dependencies([done]):
            step = tf.identity(self.iterations)        # airbench's current_steps, after this step
        total = float(self.lookahead_total_steps)
        t = tf.cast(step, tf.float32)
        decay = 0.95 ** 5 * (tf.minimum(t, total) / total) ** 3

        def blend(var, slow, d):
            d = tf.cast(d, slow.dtype)
            mixed = d * slow + (1.0 - d) * tf.cast(tf.convert_to_tensor(var), slow.dtype)
            slow.assign(mixed)
            return var.assign(tf.cast(mixed, var.dtype))

        def copy(var, slow):
            return var.assign(tf.cast(tf.convert_to_tensor(slow), var.dtype))

        def each(fn, *args):
            for var, slow in self._slow_pairs:
                distribution.extended.update(var, fn, args=(slow, *args), group=False)
            return tf.constant(True)

        blended = tf.cond(tf.equal(step % self.lookahead_every, 0), lambda: each(blend, decay),
                          lambda: tf.constant(False))
        with tf.control_dependencies([blended]):     # at step T: blend (when due), then take the slow copy
            tf.cond(step >= self.lookahead_total_steps, lambda: each(copy), lambda: tf.constant(False))
        return done

    def get_config(self):
        config = super().get_config()
        config.update({"l2": self.l2, "multipliers": self.multipliers, "freeze_from": self.freeze_from,
                       "lookahead_total_steps": self.lookahead_total_steps, "lookahead_every": self.lookahead_every})
        return config
