"""``UpSampling1D/2D/3D``: each spatial axis stretched by an integer factor (repeats, or bilinear in 2D)."""

from __future__ import annotations

import numpy as np

from lamina import ops
from lamina.autodiff import unwrap
from lamina.layers.flatten import standardize_data_format
from lamina.layers.image_resize import RESIZE_INTERPOLATIONS, along_axis, resize_matrix
from lamina.layers.layer import InputSpec, Layer
from lamina.layers.spatial_arguments import spatial_axes, standardize_tuple


def _positive_factors(size, n: int) -> tuple:
    """Keras's ``size`` rule: an int or ``n`` ints, each ``> 0``."""
    factors = standardize_tuple(size, n, "size")
    if any(f == 0 for f in factors):
        raise ValueError(f"The `size` argument must be a tuple of {n} integers. Received size={size}, "
                         f"including values {{0}} that do not satisfy `value > 0`")
    return tuple(int(f) for f in factors)


class _UpSampling(Layer):
    """Repeats each entry of spatial axis ``i`` ``size[i]`` times."""

    rank = 0

    def _finish(self, data_format) -> None:
        self.data_format = standardize_data_format(data_format, type(self).__name__)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def _factors(self) -> tuple:
        return self.size

    def call(self, inputs):
        for axis, factor in zip(spatial_axes(self.data_format, self.rank), self._factors()):
            inputs = ops.repeat(inputs, factor, axis=axis)
        return inputs

    def compute_output_shape(self, input_shape):
        out = list(input_shape)
        for axis, factor in zip(spatial_axes(self.data_format, self.rank), self._factors()):
            out[axis] = None if out[axis] is None else out[axis] * factor
        return tuple(out)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(size=self.size, data_format=self.data_format)
        return config


class UpSampling1D(_UpSampling):
    """``(batch, steps, features)`` → ``(batch, steps * size, features)``, each step repeated."""

    rank = 1

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(size, int) or isinstance(size, bool):
            raise TypeError(f"UpSampling1D: Expected an integer value for `size`, got {type(size)}. "
                            f"Received: size={size!r}")
        if size <= 0:
            raise ValueError(f"UpSampling1D: Argument `size` should be a positive integer. Received: size={size}")
        self.size = size
        self._finish(None)

    def _factors(self) -> tuple:
        return (self.size,)

    def get_config(self) -> dict:
        config = super().get_config()
        del config["data_format"]  # Keras's UpSampling1D has no data_format
        return config


_INTERPOLATIONS = RESIZE_INTERPOLATIONS


class UpSampling2D(_UpSampling):
    """Rows and columns stretched by ``size = (rows, cols)``: repeated (``"nearest"``) or
    interpolated with half-pixel centres (``"bilinear"``, ``"bicubic"``, ``"lanczos3"``, ``"lanczos5"``)."""

    rank = 2

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.size = _positive_factors(size, 2)
        self.interpolation = str(interpolation).lower()
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"UpSampling2D: Invalid value for argument `interpolation`, expected one of "
                             f"{_INTERPOLATIONS}. "
                             f"Received: interpolation={interpolation!r}")
        self._finish(data_format)

    def call(self, inputs):
        if self.interpolation == "nearest":
            return super().call(inputs)
        shape = np.shape(unwrap(inputs))
        for axis, factor in zip(spatial_axes(self.data_format, 2), self.size):
            inputs = along_axis(inputs, resize_matrix(shape[axis], shape[axis] * factor, self.interpolation), axis)
        return inputs

    def get_config(self) -> dict:
        config = super().get_config()
        config["interpolation"] = self.interpolation
        return config


class UpSampling3D(_UpSampling):
    """The 3 spatial axes stretched by ``size = (dim1, dim2, dim3)``, each entry repeated."""

    rank = 3

    def __init__(self, size=(2, 2, 2), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.size = _positive_factors(size, 3)
        self._finish(data_format)
