"""``Cropping1D/2D/3D``: entries dropped at the start and end of each spatial axis."""

from __future__ import annotations

import builtins

import numpy as np

from lamina import ops
from lamina.autodiff import unwrap
from lamina.layers.flatten import standardize_data_format
from lamina.layers.layer import InputSpec, Layer
from lamina.layers.spatial_arguments import spatial_axes, standardize_pairs, standardize_tuple


class _Cropping(Layer):
    """Keeps ``[before : length - after]`` of each of the ``rank`` spatial axes (``cropping[i]``)."""

    rank = 0

    def _finish(self, data_format) -> None:
        self.data_format = standardize_data_format(data_format, type(self).__name__)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def _pairs(self) -> tuple:
        return self.cropping

    def _cropped(self, shape, what: str) -> list:
        """``shape`` with its spatial axes cropped; each must keep at least one entry."""
        out = list(shape)
        for axis, (before, after) in zip(spatial_axes(self.data_format, self.rank), self._pairs()):
            if out[axis] is None:
                continue
            out[axis] -= before + after
            if out[axis] <= 0:
                raise ValueError(self._too_much(what, shape))
        return out

    def _too_much(self, what: str, shape) -> str:
        return (f"{type(self).__name__} '{self.name}': Values in `cropping` argument should be smaller than the "
                f"corresponding spatial dimension of the input. Received: {what}={tuple(shape)}, "
                f"cropping={self.cropping}")

    def call(self, inputs):
        shape = np.shape(unwrap(inputs))
        self._cropped(shape, "inputs.shape")
        index = [builtins.slice(None)] * len(shape)
        for axis, (before, after) in zip(spatial_axes(self.data_format, self.rank), self._pairs()):
            index[axis] = builtins.slice(before, shape[axis] - after)
        return ops.getitem(inputs, tuple(index))

    def compute_output_shape(self, input_shape):
        return tuple(self._cropped(input_shape, "input_shape"))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(cropping=self.cropping, data_format=self.data_format)
        return config


class Cropping1D(_Cropping):
    """``cropping``: an int (both ends) or ``(start, end)`` entries dropped from the steps axis of
    ``(batch, steps, features)``."""

    rank = 1

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(**kwargs)
        self.cropping = standardize_tuple(cropping, 2, "cropping", allow_zero=True)
        self._finish(None)

    def _pairs(self) -> tuple:
        return (self.cropping,)

    def _too_much(self, what: str, shape) -> str:
        return (f"`cropping` parameter of `Cropping1D` layer must be smaller than the input length "
                f"(layer '{self.name}'). Received: {what}={tuple(shape)}, cropping={self.cropping}")

    def get_config(self) -> dict:
        config = super().get_config()
        del config["data_format"]  # Keras's Cropping1D has no data_format
        return config


class Cropping2D(_Cropping):
    """``cropping``: an int, ``(rows, cols)`` (symmetric) or ``((top, bottom), (left, right))``."""

    rank = 2

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.cropping = standardize_pairs(cropping, 2, "cropping", "Cropping2D",
                                          "((top_crop, bottom_crop), (left_crop, right_crop))")
        self._finish(data_format)


class Cropping3D(_Cropping):
    """``cropping``: an int, 3 ints (symmetric) or 3 ``(start, end)`` pairs for the 3 spatial axes."""

    rank = 3

    def __init__(self, cropping=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.cropping = standardize_pairs(cropping, 3, "cropping", "Cropping3D",
                                          "((left_dim1_crop, right_dim1_crop), (left_dim2_crop, right_dim2_crop), "
                                          "(left_dim3_crop, right_dim3_crop))")
        self._finish(data_format)
