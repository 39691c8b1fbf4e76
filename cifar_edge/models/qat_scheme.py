"""tfmot's 8-bit QAT scheme with depthwise kernels fake-quantized per channel, as the TFLite
converter quantizes them after training.

tfmot 0.8 gives DepthwiseConv2D the Conv2D weight quantizer, which keeps one range per
*last* kernel axis; a depthwise kernel (kh, kw, channels, multiplier) has the multiplier
there (1 in MobileNetV2), so all channels share one range.  Post-training int8 keeps one
range per channel.  On MobileNetV2 with imported (BatchNorm-folded) weights, whose depthwise
channels span very different ranges, the shared range sent the QAT model 3.65 points below
its float parent while PTQ lost nothing.  Here the kernel is viewed as (kh, kw, 1,
channels x multiplier), TFLite's own depthwise layout, for the per-axis fake-quant and back,
so every output channel gets its range, and the converter reads them as per-channel scales.
"""
from __future__ import annotations

from .._tf import keras, tf

import tensorflow_model_optimization as tfmot  # noqa: E402 - after _tf selected tf_keras
from tensorflow_model_optimization.python.core.quantization.keras import quantizers  # noqa: E402
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (  # noqa: E402
    prune_preserve_quantize_registry as _pqat_registry)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E402
    default_8bit_quantize_registry as _registry)


class DepthwisePerChannelQuantizer(quantizers.LastValueQuantizer):
    """Symmetric int8 fake-quant with one range per output channel of a depthwise kernel."""

    def __init__(self):
        super().__init__(num_bits=8, per_axis=True, symmetric=True, narrow_range=True)

    def build(self, tensor_shape, name, layer):
        channels = int(tensor_shape[2]) * int(tensor_shape[3])
        return {
            "min_var": layer.add_weight(name + "_min", shape=(channels,), trainable=False,
                                        initializer=keras.initializers.Constant(-6.0)),
            "max_var": layer.add_weight(name + "_max", shape=(channels,), trainable=False,
                                        initializer=keras.initializers.Constant(6.0)),
        }

    def __call__(self, inputs, training, weights, **kwargs):
        kh, kw, channels, multiplier = inputs.shape
        flat = tf.reshape(inputs, (kh, kw, 1, channels * multiplier))
        # the base class by name: ``super()`` would give the method a closure AutoGraph refuses to convert
        out = quantizers.LastValueQuantizer.__call__(self, flat, training, weights, **kwargs)
        return tf.reshape(out, (kh, kw, channels, multiplier))

    def get_config(self):
        return {}


class DepthwisePerChannelQuantizeConfig(_registry.Default8BitQuantizeConfig):
    """tfmot's DepthwiseConv2D config (kernel and activation) with the per-channel kernel quantizer."""

    def __init__(self, weight_attrs=("depthwise_kernel",), activation_attrs=("activation",), quantize_output=False):
        super().__init__(list(weight_attrs), list(activation_attrs), quantize_output)
        self.weight_quantizer = DepthwisePerChannelQuantizer()


class _Registry(_registry.Default8BitQuantizeRegistry):
    """tfmot's 8-bit registry, depthwise per channel."""

    def __init__(self):
        super().__init__()
        self._layer_quantize_map[keras.layers.DepthwiseConv2D] = DepthwisePerChannelQuantizeConfig()


class _PrunePreserveRegistry(_pqat_registry.Default8bitPrunePreserveQuantizeRegistry):
    """tfmot's prune-preserving registry (which keeps no depthwise sparsity anyway), depthwise per channel."""

    def get_quantize_config(self, layer):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            return DepthwisePerChannelQuantizeConfig()
        return super().get_quantize_config(layer)


class PerChannelQuantizeScheme(tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme):
    """tfmot's default 8-bit scheme (QAT), or its prune-preserving one (PQAT), depthwise
    kernels per channel."""

    def __init__(self, preserve_sparsity: bool = False):
        super().__init__()
        self.preserve_sparsity = preserve_sparsity

    def get_quantize_registry(self):
        return _PrunePreserveRegistry() if self.preserve_sparsity else _Registry()


CUSTOM_OBJECTS = {"DepthwisePerChannelQuantizeConfig": DepthwisePerChannelQuantizeConfig,
                  "DepthwisePerChannelQuantizer": DepthwisePerChannelQuantizer}
