"""``UpSampling1D/2D/3D``: each spatial axis stretched by an integer factor (repeats, or bilinear in 2D)."""

from __future__ import annotations

import numpy as np

from lamina import ops
from lamina.autodiff import record, unwrap
from lamina.layers.flatten import standardize_data_format
from lamina.layers.layer import InputSpec, Layer
from lamina.layers.spatial_arguments import spatial_axes, standardize_tuple


def _positive_factors(size, n: int) -> tuple:
    """Keras's ``size`` rule: an int or ``n`` ints, each ``> 0``."""
    factors = standardize_tuple(size, n, "size")
    if any(f == 0 for f in factors):
        raise ValueError(f"The `size` argument must be a tuple of {n} integers. Received size={size}, "
                         f"including values {{0}} that do not satisfy `value > 0`")
    return tuple(int(f) for f in factors)


def _bilinear_matrix(n: int, factor: int) -> np.ndarray:
    """``W`` (``n * factor`` by ``n``) with ``out = W @ in`` along one axis: half-pixel centres,
    ``src = (i + 0.5) / factor - 0.5`` clamped to ``[0, n - 1]``, linear between its two neighbours."""
    src = np.clip((np.arange(n * factor) + 0.5) / factor - 0.5, 0.0, n - 1)
    low = np.floor(src).astype(np.int64)
    high = np.minimum(low + 1, n - 1)
    frac = src - low
    w = np.zeros((n * factor, n))
    rows = np.arange(n * factor)
    np.add.at(w, (rows, low), 1.0 - frac)
    np.add.at(w, (rows, high), frac)
    return w


def _bicubic_matrix(n: int, factor: int) -> np.ndarray:
    """Cubic convolution (``a = -0.75``) on the four neighbours of ``src = (i + 0.5) / factor - 0.5``,
    indices past an edge clamped to it: the weights of torch's ``bicubic`` (``align_corners=False``),
    which Keras's torch backend uses."""
    a = -0.75
    src = (np.arange(n * factor) + 0.5) / factor - 0.5
    low = np.floor(src)
    w = np.zeros((n * factor, n))
    rows = np.arange(n * factor)
    for offset in (-1, 0, 1, 2):
        d = np.abs(src - (low + offset))
        near = ((a + 2) * d - (a + 3)) * d * d + 1
        far = a * (((d - 5) * d + 8) * d - 4)
        weight = np.where(d <= 1, near, np.where(d < 2, far, 0.0))
        np.add.at(w, (rows, np.clip(low + offset, 0, n - 1).astype(np.int64)), weight)
    return w


def _lanczos_matrix(n: int, factor: int, radius: float) -> np.ndarray:
    """Lanczos weights ``radius * sin(pi x) sin(pi x / radius) / (pi x)^2`` (``|x| <= radius``) of each
    input entry at distance ``x`` from ``src = (i + 0.5) / factor - 0.5``, each row normalised to sum 1:
    Keras's ``scale_and_translate`` without antialiasing (its torch backend has no lanczos)."""
    src = (np.arange(n * factor) + 0.5) / factor - 0.5
    x = np.abs(src[:, None] - np.arange(n)[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        w = radius * np.sin(np.pi * x) * np.sin(np.pi * x / radius) / (np.pi * x) ** 2
    w = np.where(x > 1e-3, w, 1.0)
    w = np.where(x > radius, 0.0, w)
    return w / w.sum(axis=1, keepdims=True)


_MATRICES = {
    "bilinear": _bilinear_matrix,
    "bicubic": _bicubic_matrix,
    "lanczos3": lambda n, factor: _lanczos_matrix(n, factor, 3.0),
    "lanczos5": lambda n, factor: _lanczos_matrix(n, factor, 5.0),
}


def _along_axis(x, w: np.ndarray, axis: int):
    """``w`` applied to ``x``'s ``axis`` (a linear map; the gradient applies ``w.T``)."""
    xv = np.asarray(unwrap(x))
    w = w.astype(xv.dtype)
    out = np.moveaxis(np.tensordot(w, xv, axes=([1], [axis])), 0, axis)
    return record(out, (x,), lambda g: (np.moveaxis(np.tensordot(w.T, g, axes=([1], [axis])), 0, axis),))


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


_INTERPOLATIONS = ("nearest", *_MATRICES)


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
            inputs = _along_axis(inputs, _MATRICES[self.interpolation](shape[axis], factor), axis)
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
