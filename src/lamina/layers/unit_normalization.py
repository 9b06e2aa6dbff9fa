"""``UnitNormalization``: each sample scaled to unit L2 norm over ``axis``."""

from __future__ import annotations

import numpy as np

from lamina import ops
from lamina.autodiff import record, unwrap
from lamina.layers.layer import Layer

_EPSILON = 1e-12


def unit_normalize(x, axes: tuple):
    """``x / max(||x||, 1e-12)`` with the 2-norm over all of ``axes`` at once (sum of squares; one
    primitive). Backward: ``(g - y * sum(g * y)) / ||x||`` where the norm exceeds the floor, ``g / 1e-12``
    where it does not (there the output is ``x / 1e-12``, linear in ``x``)."""
    xv = np.asarray(unwrap(x))
    n = np.sqrt(np.sum(np.square(xv), axis=axes, keepdims=True))
    above = n > _EPSILON
    d = np.where(above, n, _EPSILON).astype(xv.dtype)
    y = xv / d

    def vjp(g):
        return (np.where(above, g - y * np.sum(g * y, axis=axes, keepdims=True), g) / d,)

    return record(y, (x,), vjp)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class UnitNormalization(Layer):
    """``y = x / max(||x||_2, 1e-12)``, the norm taken over ``axis`` (an int or a list of ints); the
    floor keeps an all-zero sample at zero."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)) and all(_is_int(a) for a in axis):
            self.axis = [int(a) for a in axis]
        elif _is_int(axis):
            self.axis = int(axis)
        else:
            raise TypeError("Invalid value for `axis` argument: expected an int or a list/tuple of ints. "
                            f"Received: axis={axis}")
        self.supports_masking = True
        self._build_at_init()

    def _axes(self) -> list:
        return self.axis if isinstance(self.axis, list) else [self.axis]

    def call(self, inputs):
        shape = np.shape(unwrap(inputs))
        self._check_axes(len(shape), shape)
        if not np.issubdtype(np.asarray(unwrap(inputs)).dtype, np.floating):
            inputs = ops.cast(inputs, self.compute_dtype)
        return unit_normalize(inputs, tuple(a % len(shape) for a in self._axes()))

    def _check_axes(self, ndim: int, shape) -> None:
        for a in self._axes():
            if a >= ndim or a < -ndim:
                raise ValueError(f"Axis {self.axis} is out of bounds for input shape {tuple(shape)}.")

    def compute_output_shape(self, input_shape):
        self._check_axes(len(input_shape), input_shape)
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config["axis"] = self.axis
        return config
