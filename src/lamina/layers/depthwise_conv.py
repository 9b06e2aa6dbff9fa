"""``DepthwiseConv1D``, ``DepthwiseConv2D``: each input channel convolved with its own ``depth_multiplier``
kernels, no mixing across channels.

The kernel has shape ``(*kernel_size, in_channels, depth_multiplier)`` (Keras's layout); output channel
``c * depth_multiplier + m`` is input channel ``c`` convolved with ``kernel[..., c, m]``:
``y[..., c * M + m] = sum_j x_window[j, c] * kernel[j, c, m] + bias[c * M + m]``.
"""

from __future__ import annotations

from lamina import constraints, initializers, regularizers
from lamina.conv_variant_kernels import depthwise_conv
from lamina.layers.conv_variant_base import ConvVariant, conv_output_size, output_size_error, positive_count


class BaseDepthwiseConv(ConvVariant):
    """Shared arguments, weights, output shape and config of the depthwise convolutions."""

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.depth_multiplier = positive_count(depth_multiplier, "depth_multiplier")
        self._set_common(kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias)
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.depthwise_constraint = constraints.get(depthwise_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

    def build(self, input_shape) -> None:
        self._check_rank(input_shape)
        self.compute_output_shape(input_shape)  # refuses a kernel that does not fit, as Keras does at build
        channels = int(self._channels(input_shape))
        self.kernel = self.add_weight(name="kernel", shape=(*self.kernel_size, channels, self.depth_multiplier),
                                      initializer=self.depthwise_initializer,
                                      regularizer=self.depthwise_regularizer, constraint=self.depthwise_constraint)
        self._add_bias(channels * self.depth_multiplier)
        self._set_input_spec(channels)
        self.built = True

    def _pre_activation(self, inputs):
        return depthwise_conv(inputs, self.kernel, self.strides, self.padding, self.dilation_rate)

    def _conv_spatial(self, input_shape) -> tuple:
        spatial = tuple(conv_output_size(n, k, s, d, self.padding) for n, k, s, d in
                        zip(self._spatial(input_shape), self.kernel_size, self.strides, self.dilation_rate))
        if any(n is not None and n <= 0 for n in spatial):
            raise output_size_error(input_shape, self.kernel_size, self.dilation_rate, self.strides, self.padding)
        return spatial

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        channels = self._channels(input_shape)
        out = None if channels is None else channels * self.depth_multiplier
        return self._shape_with(input_shape, self._conv_spatial(input_shape), out)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(self._common_config())
        config.update({
            "depth_multiplier": self.depth_multiplier,
            "depthwise_initializer": initializers.serialize(self.depthwise_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "depthwise_regularizer": regularizers.serialize(self.depthwise_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "depthwise_constraint": constraints.serialize(self.depthwise_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        })
        return config


class DepthwiseConv1D(BaseDepthwiseConv):
    """1D depthwise convolution: ``(batch, steps, C)`` → ``(batch, new_steps, C * depth_multiplier)``."""

    _rank = 1

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate, activation,
                         use_bias, depthwise_initializer, bias_initializer, depthwise_regularizer,
                         bias_regularizer, activity_regularizer, depthwise_constraint, bias_constraint, **kwargs)


class DepthwiseConv2D(BaseDepthwiseConv):
    """2D depthwise convolution: ``(batch, rows, cols, C)`` → ``(batch, new_rows, new_cols, C * depth_multiplier)``."""

    _rank = 2

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate, activation,
                         use_bias, depthwise_initializer, bias_initializer, depthwise_regularizer,
                         bias_regularizer, activity_regularizer, depthwise_constraint, bias_constraint, **kwargs)
