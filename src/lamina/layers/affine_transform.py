"""``affine_transform``: Keras's ``ops.image.affine_transform`` on NumPy, shared by ``RandomRotation``,
``RandomZoom`` and ``RandomTranslation``.

A transform row ``[a0, a1, a2, b0, b1, b2, c0, c1]`` maps each output pixel ``(x, y)`` (column, row) back to
the input point ``x' = (a0 x + a1 y + a2) / k``, ``y' = (b0 x + b1 y + b2) / k`` with ``k = c0 x + c1 y + 1``
(``k = 1`` for the affine rows the layers make). The output takes the input's value there:

* ``"nearest"``: the pixel at ``(round(y'), round(x'))`` (ties to even, as torch and NumPy round);
* ``"bilinear"``: ``sum (1 - |y' - i|)(1 - |x' - j|) · input[i, j]`` over the four pixels around the point.

A pixel index outside ``[0, n)`` is mapped back inside by ``fill_mode`` (Keras's torch backend's
``map_coordinates`` rules): ``"reflect"`` ``(d c b a | a b c d | d c b a)``, ``"wrap"`` ``i mod n``,
``"nearest"`` clips; ``"constant"`` reads ``fill_value`` for it instead. The result is linear in the
image, so its gradient scatters the output gradient back with the same weights.
"""

from __future__ import annotations

import numpy as np

from lamina import backend
from lamina.autodiff import record, unwrap

INTERPOLATIONS = ("nearest", "bilinear")
FILL_MODES = ("constant", "nearest", "wrap", "mirror", "reflect")


def _mirror(index: np.ndarray, size: int) -> np.ndarray:
    """Reflection about the edge pixels' centres: ``(c d c b | a b c d | c b a b)``."""
    if size == 1:
        return np.zeros_like(index)
    period = size - 1
    return np.abs((index + period) % (2 * period) - period)


def _reflect(index: np.ndarray, size: int) -> np.ndarray:
    """Reflection about the image's edges: ``(d c b a | a b c d | d c b a)``, period ``2 size``."""
    folded = index % (2 * size)
    return np.where(folded < size, folded, 2 * size - 1 - folded)


_FIXERS = {
    "constant": lambda index, size: np.clip(index, 0, size - 1),  # clipped to read safely; masked after
    "nearest": lambda index, size: np.clip(index, 0, size - 1),
    "wrap": lambda index, size: index % size,
    "mirror": _mirror,
    "reflect": _reflect,
}


def _nodes(coordinate: np.ndarray, interpolation: str, size: int, fill_mode: str) -> list:
    """``(index inside [0, size), weight or None, inside or None)`` interpolating at ``coordinate`` along one
    axis; ``inside`` (constant fill only) says whether the unfixed index lay in the image."""
    if interpolation == "nearest":
        nodes = [(np.round(coordinate).astype(np.int32), None)]
    else:
        lower = np.floor(coordinate)
        upper_weight = coordinate - lower
        index = lower.astype(np.int32)
        nodes = [(index, 1 - upper_weight), (index + 1, upper_weight)]
    out = []
    for index, weight in nodes:
        if index.size and 0 <= index.min() and index.max() < size:  # all inside: nothing to fix or mask
            out.append((index, weight, None))
            continue
        inside = (index >= 0) & (index < size) if fill_mode == "constant" else None
        out.append((_FIXERS[fill_mode](index, size), weight, inside))
    return out


def _check(images: np.ndarray, transform: np.ndarray, interpolation: str, fill_mode: str) -> None:
    if interpolation not in INTERPOLATIONS:
        raise ValueError("Invalid value for argument `interpolation`. Expected of one "
                         f"{set(INTERPOLATIONS)}. Received: interpolation={interpolation}")
    if fill_mode not in FILL_MODES:
        raise ValueError(f"Invalid value for argument `fill_mode`. Expected of one {set(FILL_MODES)}. "
                         f"Received: fill_mode={fill_mode}")
    if images.ndim not in (3, 4):
        raise ValueError("Invalid images rank: expected rank 3 (single image) or rank 4 (batch of images). "
                         f"Received input with shape: images.shape={images.shape}")
    if transform.ndim not in (1, 2) or transform.shape[-1] != 8:
        raise ValueError("Invalid transform shape: expected a vector of 8 numbers (single transform) or a matrix "
                         f"of shape (batch, 8). Received input with shape: transform.shape={transform.shape}")


def _coordinates(transform: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Input rows ``y'`` and columns ``x'`` of every output pixel, each ``(batch, height, width)``."""
    dtype = transform.dtype
    y = np.arange(height, dtype=dtype)[None, :, None]
    x = np.arange(width, dtype=dtype)[None, None, :]
    a0, a1, a2, b0, b1, b2, c0, c1 = (transform[:, i, None, None] for i in range(8))
    source_y = y * b1 + x * b0 + b2
    source_x = y * a1 + x * a0 + a2
    if np.any(transform[:, 6:] != 0):  # projective rows only: affine ones skip the division
        k = c0 * x + c1 * y + 1
        source_y, source_x = source_y / k, source_x / k
    return source_y, source_x


def _corners(source_y, source_x, shape: tuple, interpolation: str, fill_mode: str) -> list:
    """``(flat pixel index, weight, inside)`` per interpolation corner; ``weight`` None means 1, ``inside``
    None means every corner reads the image."""
    batch, height, width = shape
    index_type = np.int32 if batch * height * width < 2**31 else np.int64
    base = (np.arange(batch, dtype=index_type) * (height * width))[:, None, None]
    columns = _nodes(source_x, interpolation, width, fill_mode)  # each node's index fixed once
    out = []
    for row, wy, in_y in _nodes(source_y, interpolation, height, fill_mode):
        row_start = base + row.astype(index_type) * width
        for col, wx, in_x in columns:
            weight = wy if wx is None else (wx if wy is None else wy * wx)
            inside = in_y if in_x is None else (in_x if in_y is None else in_y & in_x)
            out.append((row_start + col, weight, inside))
    return out


def _sample(pixels: np.ndarray, corners: list, fill_value, dtype) -> np.ndarray:
    """The interpolated values, ``(batch, height, width, channels)``, from the flat ``pixels``."""
    result = None
    fill = np.asarray(fill_value, dtype=dtype)
    for flat, weight, inside in corners:
        value = pixels[flat]
        if inside is not None:
            value = np.where(inside[..., None], value, fill)
        if weight is not None:
            value = value * weight[..., None].astype(dtype, copy=False)
        result = value if result is None else result + value
    return result


def _scatter(g: np.ndarray, corners: list, n_pixels: int) -> np.ndarray:
    """The gradient of ``_sample`` with respect to the flat pixels: each corner's weighted share."""
    grad = np.zeros((n_pixels, g.shape[-1]), dtype=g.dtype)
    for flat, weight, inside in corners:
        share = g if weight is None else g * weight[..., None].astype(g.dtype, copy=False)
        if inside is not None:
            share = np.where(inside[..., None], share, 0)
        np.add.at(grad, flat.reshape(-1), share.reshape(-1, g.shape[-1]))
    return grad


def affine_transform(images, transform, interpolation: str = "bilinear", fill_mode: str = "constant",
                     fill_value=0, data_format: str | None = None):
    """Applies ``transform`` (8 numbers, or ``(batch, 8)``) to an image ``(height, width, channels)`` or a
    batch ``(batch, height, width, channels)`` (channels second with ``data_format="channels_first"``).

    Integer images come back rounded, in their own dtype. The gradient reaches ``images`` (not
    ``transform``, as in Keras).
    """
    data_format = backend.image_data_format() if data_format is None else str(data_format).lower()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError("The `data_format` argument of affine_transform must be one of 'channels_first', "
                         f"'channels_last'. Received: data_format={data_format!r}")
    x = np.asarray(unwrap(images))
    matrix = np.asarray(unwrap(transform))
    if not np.issubdtype(matrix.dtype, np.floating):
        matrix = matrix.astype(backend.floatx())
    _check(x, matrix, interpolation, fill_mode)
    single = x.ndim == 3
    batched = x[None] if single else x
    if data_format == "channels_first":
        batched = np.moveaxis(batched, 1, -1)
    matrix = np.broadcast_to(matrix, (batched.shape[0], 8)) if matrix.ndim == 1 else matrix
    if matrix.shape[0] != batched.shape[0]:
        raise ValueError(f"affine_transform needs one transform per image: the batch holds {batched.shape[0]} "
                         f"images. Received: transform.shape={matrix.shape}")
    batch, height, width, channels = batched.shape
    integer = not np.issubdtype(x.dtype, np.floating)
    dtype = np.dtype(backend.floatx()) if integer else x.dtype
    corners = _corners(*_coordinates(matrix, height, width), (batch, height, width), interpolation, fill_mode)
    pixels = batched.reshape(-1, channels).astype(dtype, copy=False)
    out = _sample(pixels, corners, fill_value, dtype)
    if integer:
        out = np.round(out).astype(x.dtype)

    def restore(a: np.ndarray) -> np.ndarray:
        """From ``(batch, h, w, c)`` back to the input's layout."""
        if data_format == "channels_first":
            a = np.moveaxis(a, -1, 1)
        return a[0] if single else a

    result = np.ascontiguousarray(restore(out))

    def vjp(g):
        g = np.asarray(g, dtype=dtype)
        g = g[None] if single else g
        if data_format == "channels_first":
            g = np.moveaxis(g, 1, -1)
        grad = _scatter(np.ascontiguousarray(g), corners, batch * height * width)
        return (restore(grad.reshape(batch, height, width, channels)), None)

    return record(result, (images, transform), vjp)
