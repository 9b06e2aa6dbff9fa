"""``Conv1DTranspose``, ``Conv2DTranspose``, ``Conv3DTranspose``: transposed ("de-") convolutions.

The kernel has shape ``(*kernel_size, filters, in_channels)``, Keras's layout. Along one axis of size ``n``
with stride ``s`` and effective kernel ``e = dilation * (k - 1) + 1`` the output has
``(n - 1) * s + max(e, s)`` cells with ``padding="valid"`` and ``n * s`` with ``"same"``; an
``output_padding`` (each entry ``< s``) makes it ``(n - 1) * s + e + output_padding`` (valid) or
``(n - 1) * s + e % 2 + output_padding`` (same). See :mod:`lamina.conv_variant_kernels` for the numbers.
"""

from __future__ import annotations

from lamina import constraints, initializers, regularizers
from lamina.conv_variant_kernels import conv_transpose, transpose_output_size
from lamina.layers.conv_variant_base import ConvVariant, positive_count
from lamina.layers.spatial_arguments import standardize_tuple


class BaseConvTranspose(ConvVariant):
    """Shared arguments, weights, output shape and config of the transposed convolutions."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.filters = positive_count(filters, "filters")
        self._set_common(kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias)
        self.output_padding = None if output_padding is None else standardize_tuple(
            output_padding, self._rank, "output_padding", allow_zero=True)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        for i, (op, s) in enumerate(zip(self.output_padding or (), self.strides)):
            if op >= s:
                raise ValueError(
                    f"`output_padding` must be strictly less than `strides` for all dimensions. At dimension {i}, "
                    f"`output_padding` is {op} but `strides` is {s}. Received: output_padding="
                    f"{self.output_padding}, strides={self.strides}"
                )
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                "`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                f"Received: strides={self.strides} and dilation_rate={self.dilation_rate}"
            )

    def build(self, input_shape) -> None:
        self._check_rank(input_shape)
        channels = int(self._channels(input_shape))
        self.kernel = self.add_weight(name="kernel", shape=(*self.kernel_size, self.filters, channels),
                                      initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self._add_bias(self.filters)
        self._set_input_spec(channels)
        self.built = True

    def _pre_activation(self, inputs):
        return conv_transpose(inputs, self.kernel, self.strides, self.padding, self.output_padding,
                              self.dilation_rate)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        pads = self.output_padding or (None,) * self._rank
        spatial = tuple(transpose_output_size(n, k, s, d, self.padding, op) for n, k, s, d, op in
                        zip(self._spatial(input_shape), self.kernel_size, self.strides, self.dilation_rate, pads))
        return self._shape_with(input_shape, spatial, self.filters)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(self._common_config())
        config.update({
            "filters": self.filters,
            "output_padding": self.output_padding,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        })
        return config


class Conv1DTranspose(BaseConvTranspose):
    """1D transposed convolution: ``(batch, steps, channels)`` → ``(batch, new_steps, filters)``."""

    _rank = 1

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(filters, kernel_size, strides, padding, output_padding, data_format, dilation_rate,
                         activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                         bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint, **kwargs)


class Conv2DTranspose(BaseConvTranspose):
    """2D transposed convolution: ``(batch, rows, cols, channels)`` → ``(batch, new_rows, new_cols, filters)``."""

    _rank = 2

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", output_padding=None,
                 data_format=None, dilation_rate=(1, 1), activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(filters, kernel_size, strides, padding, output_padding, data_format, dilation_rate,
                         activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                         bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint, **kwargs)


class Conv3DTranspose(BaseConvTranspose):
    """3D transposed convolution. As Keras, ``data_format`` comes before ``output_padding`` here."""

    _rank = 3

    def __init__(self, filters, kernel_size, strides=(1, 1, 1), padding="valid", data_format=None,
                 output_padding=None, dilation_rate=(1, 1, 1), activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(filters, kernel_size, strides, padding, output_padding, data_format, dilation_rate,
                         activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                         bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint, **kwargs)


Convolution1DTranspose = Conv1DTranspose
Convolution2DTranspose = Conv2DTranspose
Convolution3DTranspose = Conv3DTranspose
