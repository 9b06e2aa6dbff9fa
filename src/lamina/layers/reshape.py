"""``Reshape``: reshapes each sample to ``target_shape`` (the batch axis is kept)."""

from __future__ import annotations

import math

import numpy as np

from lamina import ops
from lamina.autodiff import unwrap
from lamina.layers.layer import Layer


class Reshape(Layer):
    """Reshape each sample to ``target_shape``; one entry may be ``-1``, inferred from the size.

    ``Reshape((3, 4))`` maps ``(batch, 12)`` to ``(batch, 3, 4)``.
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        try:
            target_shape = tuple(target_shape)
        except TypeError:
            raise ValueError(
                f"The `target_shape` of a Reshape layer must be a tuple of integers. "
                f"Received: target_shape={target_shape!r}"
            ) from None
        if any(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d < -1 for d in target_shape):
            raise ValueError(
                "Reshape layer: each dimension in `target_shape` must be a non-negative integer, or `-1` for a "
                f"single unknown dimension. Received: target_shape={target_shape}"
            )
        if target_shape.count(-1) > 1:
            raise ValueError(
                "Reshape layer: there must be at most one unknown dimension (-1) in `target_shape`. "
                f"Received: target_shape={target_shape}"
            )
        bad = [d for d in target_shape
               if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or (d <= 0 and d != -1)]
        if bad:
            raise ValueError(
                "The `target_shape` of a Reshape layer must hold positive integers and at most one -1. "
                f"Received: target_shape={target_shape}"
            )
        self.target_shape = tuple(int(d) for d in target_shape)
        self.built = True  # as in Keras: the size check runs at each call and in compute_output_shape

    def _resolve(self, sample_shape: tuple) -> tuple:
        """``target_shape`` with its -1 filled in for a sample of ``sample_shape`` (None if unknown)."""
        target = self.target_shape
        if any(d is None for d in sample_shape):
            return tuple(None if d == -1 else d for d in target)
        size = math.prod(sample_shape)
        known = math.prod(d for d in target if d != -1)
        if -1 in target:
            if known == 0 or size % known:
                raise self._size_error(sample_shape)
            return tuple(size // known if d == -1 else d for d in target)
        if known != size:
            raise self._size_error(sample_shape)
        return target

    def _size_error(self, sample_shape: tuple) -> ValueError:
        return ValueError(
            f"Reshape layer '{self.name}' cannot reshape a sample of shape {sample_shape} "
            f"({math.prod(sample_shape)} values) to target_shape={self.target_shape}: the total size "
            f"must be unchanged. Received: input_shape={(None,) + tuple(sample_shape)}, "
            f"target_shape={self.target_shape}"
        )

    def build(self, input_shape) -> None:
        self._resolve(tuple(input_shape[1:]))
        self.built = True

    def call(self, inputs):
        shape = np.shape(unwrap(inputs))
        return ops.reshape(inputs, (shape[0],) + self._resolve(tuple(shape[1:])))

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self._resolve(tuple(input_shape[1:]))

    def get_config(self) -> dict:
        config = super().get_config()
        config["target_shape"] = self.target_shape
        return config
