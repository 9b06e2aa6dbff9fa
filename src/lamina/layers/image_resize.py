"""Image resizing shared by ``Resizing``, ``CenterCrop`` and ``UpSampling2D``: each spatial axis is a
linear map ``out = W @ in`` (``W`` of shape ``(n_out, n_in)``), so the gradient applies ``W.T``.

The weights are those of Keras's torch backend (``torch.nn.functional.interpolate``, half-pixel
centres, ``align_corners=False``) for ``nearest``, ``bilinear`` and ``bicubic``; ``lanczos3`` and
``lanczos5``, which the torch backend lacks, follow Keras's NumPy/JAX ``scale_and_translate``.
With ``s = n_in / n_out``, output entry ``i`` samples the input at ``c = (i + 0.5) * s``:

- ``nearest``: input ``min(floor(c), n_in - 1)`` (torch's ``nearest-exact``);
- ``bilinear`` / ``bicubic``: the triangle / cubic (``a = -0.75``) kernel at ``src = c - 0.5``,
  ``src`` clamped at 0 for bilinear, neighbour indices clamped to the edges for bicubic;
- with ``antialias``: torch's separable filter, the kernel (cubic with ``a = -0.5``) stretched by
  ``max(s, 1)``, cut to the input and each row normalised to sum 1;
- ``lanczos{3,5}``: ``r sin(pi x) sin(pi x / r) / (pi x)^2`` at ``x = |src - j| / k`` with
  ``k = max(s, 1)`` when antialiasing (else 1), each row normalised.

Two known departures from torch: with ``antialias`` and an output of size 1 on the *other* axis, torch
repeats its first output row (a torch bug) where these weights give each row its own value; and where
``(i + 0.5) * s`` lies within float32 rounding of an integer (e.g. 4 → 218 rows), torch's ``nearest``
may pick the neighbouring pixel.
"""

from __future__ import annotations

import functools

import numpy as np

from lamina import ops
from lamina.autodiff import record, unwrap

RESIZE_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos3", "lanczos5")


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    # torch's arithmetic: the scale in float32, the product in double, rounded to float32, floored;
    # the same roundings pick the same pixel where (i + 0.5) * s falls on (or next to) an integer.
    scale = np.float64(np.float32(n_in) / np.float32(n_out))
    src = ((np.arange(n_out) + 0.5) * scale).astype(np.float32)
    return np.minimum(np.floor(src).astype(np.int64), n_in - 1)


def _cubic(d: np.ndarray, a: float) -> np.ndarray:
    """Keys's cubic convolution kernel with parameter ``a`` at distances ``d >= 0``."""
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = a * (((d - 5) * d + 8) * d - 4)
    return np.where(d < 1, near, np.where(d < 2, far, 0.0))


def _bilinear(n_in: int, n_out: int) -> np.ndarray:
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    low = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    frac = src - low
    w = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(w, (rows, low), 1.0 - frac)
    np.add.at(w, (rows, high), frac)
    return w


def _bicubic(n_in: int, n_out: int) -> np.ndarray:
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    low = np.floor(src)
    w = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    for offset in (-1, 0, 1, 2):
        weight = _cubic(np.abs(src - (low + offset)), -0.75)
        np.add.at(w, (rows, np.clip(low + offset, 0, n_in - 1).astype(np.int64)), weight)
    return w


def _antialiased(n_in: int, n_out: int, interpolation: str) -> np.ndarray:
    scale = n_in / n_out
    half = 1.0 if interpolation == "bilinear" else 2.0  # half the kernel's width
    support = half * max(scale, 1.0)
    inv = 1.0 / max(scale, 1.0)
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = scale * (i + 0.5)
        start = max(int(centre - support + 0.5), 0)  # int() truncates toward zero, as torch's cast
        stop = min(int(centre + support + 0.5), n_in)
        d = np.abs((np.arange(start, stop) - centre + 0.5) * inv)
        weights = np.maximum(1.0 - d, 0.0) if interpolation == "bilinear" else _cubic(d, -0.5)
        total = weights.sum()
        w[i, start:stop] = weights / total if total != 0 else weights
    return w


def _lanczos(n_in: int, n_out: int, radius: float, antialias: bool) -> np.ndarray:
    scale = n_in / n_out
    src = (np.arange(n_out) + 0.5) * scale - 0.5
    x = np.abs(src[:, None] - np.arange(n_in)[None, :]) / (max(scale, 1.0) if antialias else 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = radius * np.sin(np.pi * x) * np.sin(np.pi * x / radius) / (np.pi * x) ** 2
    w = np.where(x > 1e-3, w, 1.0)
    w = np.where(x > radius, 0.0, w)
    total = w.sum(axis=1, keepdims=True)
    return np.where(np.abs(total) > 1000 * np.finfo(np.float32).eps, w / np.where(total != 0, total, 1), 0.0)


@functools.lru_cache(maxsize=64)
def resize_matrix(n_in: int, n_out: int, interpolation: str, antialias: bool = False) -> np.ndarray:
    """``W`` (``n_out`` by ``n_in``, float64, read-only: cached, as a model resizes same-sized images call
    after call) resizing one axis from ``n_in`` to ``n_out`` entries."""
    w = _resize_matrix(n_in, n_out, interpolation, antialias)
    w.flags.writeable = False
    return w


def _resize_matrix(n_in: int, n_out: int, interpolation: str, antialias: bool) -> np.ndarray:
    if interpolation == "nearest":
        w = np.zeros((n_out, n_in))
        w[np.arange(n_out), _nearest_index(n_in, n_out)] = 1.0
        return w
    if interpolation in ("lanczos3", "lanczos5"):
        return _lanczos(n_in, n_out, float(interpolation[-1]), antialias)
    if antialias:
        return _antialiased(n_in, n_out, interpolation)
    return _bilinear(n_in, n_out) if interpolation == "bilinear" else _bicubic(n_in, n_out)


def along_axis(x, w: np.ndarray, axis: int):
    """``w`` applied to ``x``'s ``axis`` (a linear map; the gradient applies ``w.T``)."""
    xv = np.asarray(unwrap(x))
    w = w.astype(xv.dtype)
    out = np.moveaxis(np.tensordot(w, xv, axes=([1], [axis])), 0, axis)
    return record(out, (x,), lambda g: (np.moveaxis(np.tensordot(w.T, g, axes=([1], [axis])), 0, axis),))


def take_along(x, index: np.ndarray, axis: int):
    """``x``'s entries ``index`` along ``axis`` (nearest resizing); the gradient adds each output entry back
    to the input entry it came from."""
    xv = np.asarray(unwrap(x))
    out = np.take(xv, index, axis=axis)

    def vjp(g):
        grad = np.zeros(xv.shape, dtype=g.dtype)
        np.add.at(np.moveaxis(grad, axis, 0), index, np.moveaxis(g, axis, 0))
        return (grad,)

    return record(out, (x,), vjp)


def crop_box(height: int, width: int, target_height: int, target_width: int) -> tuple[int, int, int, int]:
    """``(top, left, crop_height, crop_width)``: the largest centred window with the target's aspect ratio."""
    crop_height = max(min(height, int(float(width * target_height) / target_width)), 1)
    crop_width = max(min(width, int(float(height * target_width) / target_height)), 1)
    return int(float(height - crop_height) / 2), int(float(width - crop_width) / 2), crop_height, crop_width


def pad_margins(height: int, width: int, target_height: int, target_width: int) -> tuple[int, int]:
    """Rows and columns added on each side to reach the target's aspect ratio (as Keras: the same
    margin both sides, rounded down)."""
    pad_height = max(height, int(float(width * target_height) / target_width))
    pad_width = max(width, int(float(height * target_width) / target_height))
    return int(float(pad_height - height) / 2), int(float(pad_width - width) / 2)


def spatial_axes_2d(ndim: int, data_format: str) -> tuple[int, int]:
    """The (height, width) axes of a rank-3 (one image) or rank-4 (batch) array."""
    return (ndim - 2, ndim - 1) if data_format == "channels_first" else (ndim - 3, ndim - 2)


def crop_to_window(images, top: int, left: int, height: int, width: int, data_format: str):
    """``images[..., top:top + height, left:left + width, ...]`` on the spatial axes (differentiable)."""
    h_axis, w_axis = spatial_axes_2d(len(np.shape(unwrap(images))), data_format)
    key = [slice(None)] * len(np.shape(unwrap(images)))
    key[h_axis] = slice(top, top + height)
    key[w_axis] = slice(left, left + width)
    return ops.getitem(images, tuple(key))


def resize_images(images, size, interpolation: str = "bilinear", antialias: bool = False,
                  crop_to_aspect_ratio: bool = False, pad_to_aspect_ratio: bool = False,
                  fill_value: float = 0.0, data_format: str = "channels_last"):
    """Floating ``images`` (rank 3 or 4, already checked) resized to ``size = (height, width)``,
    after an optional centred crop or constant padding to the target's aspect ratio."""
    h_axis, w_axis = spatial_axes_2d(len(np.shape(unwrap(images))), data_format)
    shape = np.shape(unwrap(images))
    height, width = shape[h_axis], shape[w_axis]
    if crop_to_aspect_ratio:
        top, left, crop_h, crop_w = crop_box(height, width, *size)
        images = crop_to_window(images, top, left, crop_h, crop_w, data_format)
    elif pad_to_aspect_ratio:
        rows, cols = pad_margins(height, width, *size)
        widths = [(0, 0)] * len(shape)
        widths[h_axis], widths[w_axis] = (rows, rows), (cols, cols)
        if rows or cols:
            images = ops.pad(images, widths, constant_values=fill_value)
    if antialias and interpolation not in ("bilinear", "bicubic", "lanczos3", "lanczos5"):
        antialias = False  # Keras ignores antialias for nearest
    shape = np.shape(unwrap(images))
    for axis, n_out in zip((h_axis, w_axis), size):
        if shape[axis] == n_out and interpolation != "nearest" and not antialias:
            continue  # the identity (Keras's resize leaves such an axis as it is)
        if interpolation == "nearest":
            images = take_along(images, _nearest_index(shape[axis], n_out), axis)
        else:
            images = along_axis(images, resize_matrix(shape[axis], n_out, interpolation, antialias), axis)
    return images
