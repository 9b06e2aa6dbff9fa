"""What the transposed, depthwise and separable convolution layers share: Keras's argument checks and
messages, the channels-first round trip (the kernels work channels-last), bias, activation and config."""

from __future__ import annotations

import numpy as np

from lamina import activations, backend, ops
from lamina.autodiff import unwrap
from lamina.layers.flatten import standardize_data_format
from lamina.layers.layer import InputSpec, Layer
from lamina.layers.spatial_arguments import standardize_tuple


def positive_count(value, name: str):
    """``filters`` / ``depth_multiplier``: a strictly positive integer (``None`` allowed, as Keras)."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a strictly positive value. Received {name}={value}."
        )
    return int(value)


def standardize_conv_padding(padding, owner: str) -> str:
    """``"valid"`` or ``"same"``, case-insensitive, stored lower-case."""
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(
            f"The `padding` argument of {owner} must be one of 'valid', 'same'. Received: padding={padding!r}"
        )
    return padding.lower()


def output_size_error(input_shape, kernel_size, dilation_rate, strides, padding) -> ValueError:
    return ValueError(
        f"Computed output size would be zero or negative. Received `inputs shape={tuple(input_shape)}`, "
        f"`kernel_size={kernel_size}`, `dilation_rate={dilation_rate}`, `strides={strides}`, `padding={padding}`."
    )


def conv_output_size(n, k, s, d, padding: str):
    """Output length of a convolution along one axis (Keras's rule; ``None`` stays ``None``)."""
    if n is None:
        return None
    if padding == "same":
        return -(-n // s)
    return (n - d * (k - 1) - 1) // s + 1


class ConvVariant(Layer):
    """Base of the transposed, depthwise and separable convolution layers (``_rank`` spatial axes)."""

    _rank = 0

    def _set_common(self, kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias):
        owner = type(self).__name__
        self.rank = self._rank
        self.kernel_size = standardize_tuple(kernel_size, self._rank, "kernel_size")
        self.strides = standardize_tuple(strides, self._rank, "strides")
        self.dilation_rate = standardize_tuple(dilation_rate, self._rank, "dilation_rate")
        self.padding = standardize_conv_padding(padding, owner)
        self.data_format = standardize_data_format(
            backend.image_data_format() if data_format is None else data_format, owner)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.input_spec = InputSpec(min_ndim=self._rank + 2)

    def _channels(self, input_shape):
        return input_shape[-1] if self.data_format == "channels_last" else input_shape[1]

    def _spatial(self, input_shape) -> tuple:
        return tuple(input_shape[1:-1] if self.data_format == "channels_last" else input_shape[2:])

    def _shape_with(self, input_shape, spatial, channels) -> tuple:
        if self.data_format == "channels_last":
            return (input_shape[0], *spatial, channels)
        return (input_shape[0], channels, *spatial)

    def _check_rank(self, input_shape) -> None:
        if len(input_shape) != self._rank + 2:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' expects inputs of rank {self._rank + 2} "
                f"(batch, {self._rank} spatial axes, channels). Received: input_shape={tuple(input_shape)}"
            )
        if self._channels(input_shape) is None:
            raise ValueError(
                f"The channel dimension of the inputs to {type(self).__name__} '{self.name}' must be known. "
                f"Received: input_shape={tuple(input_shape)}"
            )

    def _add_bias(self, units: int) -> None:
        """``self.bias`` of shape ``(units,)`` with the layer's bias arguments, or None without ``use_bias``."""
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(units,), initializer=self.bias_initializer,
                                        regularizer=self.bias_regularizer, constraint=self.bias_constraint)

    def _set_input_spec(self, channels) -> None:
        axis = -1 if self.data_format == "channels_last" else 1
        self.input_spec = InputSpec(min_ndim=self._rank + 2, axes={axis: channels})

    def _to_last(self, x):
        if self.data_format == "channels_first":
            return ops.transpose(x, (0, *range(2, self._rank + 2), 1))
        return x

    def _from_last(self, y):
        if self.data_format == "channels_first":
            return ops.transpose(y, (0, self._rank + 1, *range(1, self._rank + 1)))
        return y

    def _pre_activation(self, inputs):
        """The channels-last convolution of ``inputs`` (subclasses)."""
        raise NotImplementedError

    def call_logits(self, inputs):
        """The output before the activation: convolution plus bias."""
        # the shape rule refuses, with Keras's message, a kernel that does not fit this input
        self.compute_output_shape(np.shape(unwrap(inputs)))
        y = self._pre_activation(self._to_last(inputs))
        if self.use_bias:
            y = ops.add(y, self.bias)
        return self._from_last(y)

    def call(self, inputs):
        return self.activation(self.call_logits(inputs))

    def _common_config(self) -> dict:
        return {"kernel_size": self.kernel_size, "strides": self.strides, "padding": self.padding,
                "data_format": self.data_format, "dilation_rate": self.dilation_rate,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias}
