"""Quantizers and the array-level quantization formulas (NumPy; Keras's names and conventions).

Keras's convention, kept here: a *scale* multiplies the float value into the integer range, so
``q = clip(round(x * scale), lo, hi)`` and the dequantized value is ``q / scale``. For abs-max
quantization ``scale = hi / (max|x| + epsilon)`` along the reduced axis.
"""

from __future__ import annotations

import math

import numpy as np

from lamina import backend
from lamina.autodiff import unwrap

_INT_DTYPES = ("int8", "uint8")


def _array(x) -> np.ndarray:
    """The NumPy value of an array, Tensor or Variable."""
    return np.asarray(unwrap(x))


def _float_dtype(x: np.ndarray) -> str:
    """The float dtype the scales are computed in: the input's (bfloat16 included), else floatx."""
    return x.dtype.name if backend.is_float_dtype(x.dtype) else backend.floatx()


class Quantizer:
    """Base class of quantizers: ``__call__(x)`` returns the quantized value (here ``x`` unchanged)."""

    def __init__(self, output_dtype="int8"):
        self.output_dtype = output_dtype

    def __call__(self, x):
        return x

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def get_config(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} does not implement get_config().")


def abs_max_quantize(inputs, axis, value_range=(-127, 127), dtype="int8", epsilon=None, to_numpy=False):
    """``(q, scale)`` with ``scale = value_range[1] / (max(|x|, axis, keepdims) + epsilon)`` (in the input's
    float dtype) and ``q = clip(round(x * scale), *value_range)`` cast to ``dtype``.

    ``to_numpy`` is accepted for Keras's signature; lamina computes in NumPy either way."""
    del to_numpy  # lamina's arrays are NumPy arrays already
    epsilon = backend.epsilon() if epsilon is None else epsilon
    x = _array(inputs)
    float_dtype = _float_dtype(x)
    x = x.astype(float_dtype, copy=False)
    axis = tuple(axis) if isinstance(axis, (list, tuple)) else axis
    amax = np.max(np.abs(x), axis=axis, keepdims=True)
    scale = (value_range[1] / (amax + np.asarray(epsilon, float_dtype))).astype(float_dtype, copy=False)
    q = np.clip(np.round(x * scale), value_range[0], value_range[1]).astype(dtype)
    return q, scale


def abs_max_quantize_grouped_with_zero_point(inputs, block_size, value_range=(-8, 7), dtype="int8",
                                             epsilon=None, to_numpy=False):
    """Asymmetric grouped quantization of a 2D ``(input_dim, output_dim)`` array, groups of ``block_size``
    rows (the last group zero-padded): per group and column
    ``scale = (max - min + epsilon) / (hi - lo)``, ``zero = clip(round(-min / scale) + lo, lo, hi)``,
    ``q = clip(round(x / scale) + zero, lo, hi)``; dequantized ``(q - zero) * scale``.

    Returns ``(q (input_dim, output_dim), scale (n_groups, output_dim), zero (n_groups, output_dim) int8)``."""
    del to_numpy  # lamina's arrays are NumPy arrays already
    epsilon = backend.epsilon() if epsilon is None else epsilon
    x = _array(inputs)
    if x.ndim != 2:
        raise ValueError(f"Grouped quantization expects a 2D (input_dim, output_dim) array. Received: shape={x.shape}")
    _check_block_size(block_size)
    float_dtype = _float_dtype(x)
    x = x.astype(float_dtype, copy=False)
    input_dim, output_dim = x.shape
    n_groups = math.ceil(input_dim / block_size)
    lo, hi = value_range
    padded = np.zeros((n_groups * block_size, output_dim), float_dtype)
    padded[:input_dim] = x
    groups = padded.reshape(n_groups, block_size, output_dim)
    low, high = groups.min(axis=1, keepdims=True), groups.max(axis=1, keepdims=True)
    scale = ((high - low + np.asarray(epsilon, float_dtype)) / (hi - lo)).astype(float_dtype, copy=False)
    zero = np.clip(np.round(-low / scale) + lo, lo, hi)
    q = np.clip(np.round(groups / scale) + zero, lo, hi).astype(dtype)
    q = q.reshape(n_groups * block_size, output_dim)[:input_dim]
    return q, scale[:, 0, :], zero[:, 0, :].astype("int8")


def _check_block_size(block_size) -> None:
    if not isinstance(block_size, (int, np.integer)) or isinstance(block_size, bool) or block_size <= 0:
        raise ValueError(f"`block_size` must be a positive integer. Received: block_size={block_size!r}")


def dequantize_with_sz_map(weights_matrix, scale, zero, g_idx, group_axis=-1):
    """``(w - zero_g) * scale_g``, where ``scale_g = take(scale, g_idx, axis=group_axis)`` (likewise
    ``zero_g``): ``g_idx[i]`` names the group of index ``i`` along the weights' grouped axis."""
    w = _array(weights_matrix)
    scale, zero = _array(scale), _array(zero)
    groups = _array(g_idx).astype(np.int64)
    float_dtype = _float_dtype(scale)
    s = np.take(scale, groups, axis=group_axis)
    z = np.take(zero, groups, axis=group_axis).astype(float_dtype)
    return ((w.astype(float_dtype) - z) * s).astype(float_dtype, copy=False)


class AbsMaxQuantizer(Quantizer):
    """Symmetric abs-max quantizer (see :func:`abs_max_quantize`).

    Args:
        axis: the axis (or axes) reduced when computing the scale; None: ``-1``, or the ``axis`` given
            at call time.
        value_range: ``(lo, hi)`` integer range; within ``[-128, 127]`` for ``output_dtype="int8"``.
        epsilon: added to the abs-max before dividing.
        output_dtype: the integer dtype of the quantized values.
    """

    def __init__(self, axis=None, value_range=(-127, 127), epsilon=None, output_dtype="int8"):
        super().__init__(output_dtype=output_dtype)
        if axis is not None:
            axis = (axis,) if isinstance(axis, int) else tuple(axis)
        self.axis = axis
        self.value_range = tuple(value_range)
        self.epsilon = backend.epsilon() if epsilon is None else epsilon
        if output_dtype == "int8" and (self.value_range[0] < -128 or self.value_range[1] > 127):
            raise ValueError("Quantizer with output_dtype='int8' requires value_range to be within the interval "
                             f"[-128, 127]. Received: value_range={self.value_range}")

    def __call__(self, x, axis=None, to_numpy=False):
        if axis is None:
            axis = self.axis if self.axis is not None else -1
        return abs_max_quantize(x, axis, self.value_range, self.output_dtype, self.epsilon, to_numpy)

    def get_config(self) -> dict:
        config = {"value_range": self.value_range, "epsilon": self.epsilon, "output_dtype": self.output_dtype}
        if self.axis is not None:
            config["axis"] = self.axis
        return config


def pack_int4(arr, axis=0, dtype="int8"):
    """Pack int4 values (``[-8, 7]``, held in int8 or uint8) two per byte along ``axis``: element ``2k`` in
    the low nibble, ``2k + 1`` in the high nibble (an odd length is padded with a zero).

    Returns ``(packed, packed_shape, orig_len)``."""
    if dtype not in _INT_DTYPES:
        raise ValueError(f"Expected dtype to be 'int8' or 'uint8'. Received: dtype={dtype!r}")
    a = _array(arr)
    if a.dtype.name != dtype:
        raise TypeError(f"pack_int4 expects a {dtype} array. Received: dtype={a.dtype.name}")
    a = np.moveaxis(a, axis, 0)
    n = a.shape[0]
    if n % 2:
        a = np.concatenate([a, np.zeros((1,) + a.shape[1:], a.dtype)], axis=0)
    low = a[0::2].view(np.uint8) & 0x0F
    high = a[1::2].view(np.uint8) & 0x0F
    packed = np.moveaxis((low | (high << 4)).astype(np.uint8).view(dtype), 0, axis)
    packed = np.ascontiguousarray(packed)
    return packed, tuple(packed.shape), n


def unpack_int4(packed, orig_len, axis=0, dtype="int8"):
    """Undo :func:`pack_int4`: the ``orig_len`` int4 values along ``axis`` as ``dtype`` (signed
    ``[-8, 7]`` for int8, the raw nibbles ``[0, 15]`` for uint8)."""
    if dtype not in _INT_DTYPES:
        raise ValueError(f"Expected dtype to be 'int8' or 'uint8'. Received: dtype={dtype!r}")
    p = _array(packed)
    if p.dtype.name not in _INT_DTYPES:
        raise TypeError(f"unpack_int4 expects an int8 or uint8 array. Received: dtype={p.dtype.name}")
    last = axis in (-1, p.ndim - 1)
    p = p.view(np.uint8) if last else np.moveaxis(p.view(np.uint8), axis, -1)
    nibbles = np.empty(p.shape[:-1] + (2 * p.shape[-1],), np.uint8)
    np.bitwise_and(p, 0x0F, out=nibbles[..., 0::2])
    np.right_shift(p, 4, out=nibbles[..., 1::2])
    if dtype == "int8":
        np.bitwise_xor(nibbles, 8, out=nibbles)  # 0..7 → 8..15, 8..15 → 0..7; minus 8 gives -8..7
        nibbles = nibbles.view(np.int8)
        np.subtract(nibbles, np.int8(8), out=nibbles)
    nibbles = nibbles[..., :orig_len]
    return nibbles if last else np.ascontiguousarray(np.moveaxis(nibbles, -1, axis))


# ------------------------------------------------------------------ float8 (delayed scaling)


def float8_max(dtype: str) -> float:
    """The largest finite value of a float8 dtype (``"float8_e4m3fn"``: 448, ``"float8_e5m2"``: 57344)."""
    return float(_ml_dtypes().finfo(lowp_dtype(dtype)).max)


def _ml_dtypes():
    try:
        import ml_dtypes  # lazy: optional extra (lamina[lowp]); only float8 needs it
    except ImportError:
        raise ImportError("float8 quantization needs the `ml_dtypes` package: pip install 'lamina[lowp]' "
                          "(or pip install ml_dtypes).") from None
    return ml_dtypes


def lowp_dtype(name: str):
    """The NumPy dtype ``ml_dtypes`` names ``name`` (``"float8_e4m3fn"``, ``"float8_e5m2"``, ``"bfloat16"``)."""
    return np.dtype(getattr(_ml_dtypes(), name))


def compute_float8_scale(amax, scale, dtype_max, margin=0):
    """Delayed-scaling update: the new scale is ``amax * 2**margin / dtype_max``, or the old ``scale``
    where ``amax`` is zero or not finite (scales here divide: ``q = x / scale``)."""
    amax = np.asarray(unwrap(amax), np.float32)
    old = np.asarray(unwrap(scale), np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.float32(dtype_max) / amax / np.float32(2.0 ** margin)
        factor = np.where((amax > 0) & np.isfinite(amax), factor, 1.0 / old)
        return (1.0 / factor).astype(np.float32)


def compute_float8_amax_history(x, amax_history):
    """The history rolled one step left with ``max|x|`` written at index 0."""
    history = np.asarray(unwrap(amax_history))
    new = np.roll(history, -1)
    new[0] = np.max(np.abs(np.asarray(unwrap(x)))).astype(history.dtype)
    return new


def quantize_and_dequantize(inputs, scale, quantized_dtype, compute_dtype):
    """``cast(clip(x / scale, ±max), quantized_dtype)`` read back as ``compute_dtype`` and times ``scale``."""
    fdtype, top = lowp_dtype(quantized_dtype), float8_max(quantized_dtype)
    s = np.asarray(unwrap(scale)).astype(compute_dtype)
    x = np.clip(np.asarray(unwrap(inputs)).astype(compute_dtype) / s, -top, top)
    return x.astype(fdtype).astype(compute_dtype) * s
