"""``Flatten``: ``(batch, d1, d2, ...)`` becomes ``(batch, d1 * d2 * ...)``."""

from __future__ import annotations

import math

import numpy as np

from lamina import backend, ops
from lamina.autodiff import unwrap
from lamina.layers.layer import InputSpec, Layer


def standardize_data_format(data_format, owner: str) -> str:
    """``None`` means the global image layout, ``keras.config.image_data_format()``."""
    if data_format is None:
        return backend.image_data_format()
    value = str(data_format).lower()
    if value not in ("channels_last", "channels_first"):
        raise ValueError(
            f"The `data_format` argument of {owner} must be one of 'channels_first', 'channels_last'. "
            f"Received: data_format={data_format!r}"
        )
    return value


class Flatten(Layer):
    """Flattens every axis but the batch axis; an input of shape ``(batch,)`` becomes ``(batch, 1)``.

    With ``data_format="channels_first"`` the channel axis is moved last first, so the element order
    matches a channels-last model's.
    """

    def __init__(self, data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format, "Flatten")
        self.input_spec = InputSpec(min_ndim=1)

    def call(self, inputs):
        shape = np.shape(unwrap(inputs))
        if self.data_format == "channels_first" and len(shape) > 2:
            inputs = ops.transpose(inputs, (0, *range(2, len(shape)), 1))
        return ops.reshape(inputs, (shape[0], math.prod(shape[1:])))

    def compute_output_shape(self, input_shape):
        rest = tuple(input_shape[1:])
        flat = None if any(d is None for d in rest) else math.prod(rest)
        return (input_shape[0], flat)

    def get_config(self) -> dict:
        config = super().get_config()
        config["data_format"] = self.data_format
        return config
