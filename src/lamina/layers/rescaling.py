"""``Rescaling``: ``inputs * scale + offset`` (e.g. pixel values ``[0, 255]`` mapped to ``[0, 1]``)."""

from __future__ import annotations

import numpy as np

from lamina import backend, ops
from lamina.autodiff import unwrap
from lamina.layers.layer import Layer
from lamina.saving.object_config import serialize_value


def _config_value(value):
    """A ``scale``/``offset`` read from a config: Keras writes arrays as ``__numpy__`` entries."""
    if isinstance(value, dict) and value.get("class_name") == "__numpy__":
        inner = value.get("config", {})
        return np.asarray(inner.get("value"), dtype=inner.get("dtype"))
    return value


class Rescaling(Layer):
    """``y = x * scale + offset`` in the layer's compute dtype, in training and inference alike; integer
    inputs are cast first. ``scale`` and ``offset`` are numbers or arrays that broadcast against the
    input (per channel: the last axis). When ``keras.config.image_data_format()`` is
    ``"channels_first"`` an array ``scale`` of rank below 3 gets trailing unit axes, as in Keras, so a
    per-channel scale meets axis ``-3`` of ``(channels, height, width)`` images.
    """

    _tf_data_inputs = "compute_dtype"  # runs inside tf.data, inputs cast as Keras's DataLayer (tf_data_bridge)

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        for argument, value in (("scale", scale), ("offset", offset)):
            try:
                np.asarray(value, dtype="float64")
            except (TypeError, ValueError):
                raise ValueError(f"Rescaling: argument `{argument}` must be a number or an array of numbers. "
                                 f"Received: {argument}={value!r}") from None
        self.scale = scale
        self.offset = offset
        self.supports_masking = True
        self._build_at_init()

    def call(self, inputs):
        dtype = self.compute_dtype
        scale = np.asarray(self.scale, dtype=dtype)
        offset = np.asarray(self.offset, dtype=dtype)
        if scale.ndim and backend.image_data_format() == "channels_first":
            scale = scale.reshape(scale.shape + (1,) * (3 - scale.ndim))
        shape = np.shape(unwrap(inputs))
        try:
            np.broadcast_shapes(shape, scale.shape, offset.shape)
        except ValueError:
            raise ValueError(f"Rescaling layer '{self.name}': `scale` (shape {scale.shape}) and `offset` (shape "
                             f"{offset.shape}) must broadcast against the inputs (per channel: the last axis). "
                             f"Received: inputs of shape {shape}") from None
        if np.asarray(unwrap(inputs)).dtype != np.dtype(dtype):
            inputs = ops.cast(inputs, dtype)
        return ops.add(ops.multiply(inputs, scale), offset)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(scale=serialize_value(self.scale), offset=serialize_value(self.offset))
        return config

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        config = dict(config)
        config["scale"] = _config_value(config["scale"])
        config["offset"] = _config_value(config.get("offset", 0.0))
        return cls(**config)
