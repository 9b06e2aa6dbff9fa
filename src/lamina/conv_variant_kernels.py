"""Transposed, depthwise and separable convolutions on channels-last NumPy arrays, recorded on the tape.

Built on :mod:`lamina.conv_kernels` (``plan``, ``pad_input``, ``im2col``, ``col2im``). Kernel layouts are
Keras's: transposed ``(*k, filters, in_channels)``, depthwise ``(*k, in_channels, depth_multiplier)``,
pointwise ``(1, ..., 1, in_channels * depth_multiplier, filters)``.

Transposed convolution, one axis of size ``n``, stride ``s``, effective kernel ``e = d * (k - 1) + 1``:
every input cell ``i`` adds ``x[i] * K[j]`` at ``i * s + j * d`` of a "full" output of ``(n - 1) * s + e``
cells (that is ``col2im`` of ``x @ K^T``, the input-gradient of a convolution), which is then cut to
Keras's size: ``valid`` gives ``(n - 1) * s + e + output_padding`` (``output_padding`` defaults to
``max(e, s) - e``), ``same`` gives ``n * s`` without ``output_padding`` and ``(n - 1) * s + e % 2 +
output_padding`` with it. The cut starts ``e - 1 - before`` cells in, where ``before`` is the left padding
of the equivalent stride-1 convolution over the ``s``-dilated input (Keras's JAX rule, which its torch
backend copies): ``valid`` ``e - 1``; ``same`` ``min(ceil(p / 2), e - 1)`` with ``p = s + e - 2`` (or
``e + e % 2 - 2 + output_padding``). Cells past the full output are zeros.

Depthwise convolution, ``M`` the depth multiplier: ``y[..., c * M + m] = sum_j x_window[j, c] * K[j, c, m]``
(``im2col`` then one contraction per channel). Separable: depthwise, then ``y @ P`` over channels (a 1x1 convolution).
"""

from __future__ import annotations

import math

import numpy as np

from lamina.autodiff import needs_gradient, record, unwrap
from lamina.conv_kernels import CHUNK_BYTES, col2im, conv_backward, conv_forward, im2col, pad_input, plan


def _float(x) -> np.ndarray:
    v = np.asarray(unwrap(x))
    return v if np.issubdtype(v.dtype, np.floating) else v.astype("float32")


def transpose_output_size(n, k, s, d, padding: str, output_padding=None):
    """Keras's output length of a transposed convolution along one axis (``None`` stays ``None``)."""
    if n is None:
        return None
    e = d * (k - 1) + 1
    if padding == "valid":
        return (n - 1) * s + e + (max(e, s) - e if output_padding is None else output_padding)
    if output_padding is None:
        return n * s
    return (n - 1) * s + e % 2 + output_padding


def transpose_padding(k, s, d, padding: str, output_padding=None) -> tuple[int, int]:
    """``(before, after)``: the zeros around the ``s``-dilated input of the stride-1 convolution (with the
    flipped kernel) that equals the transposed convolution along one axis."""
    e = d * (k - 1) + 1
    if padding == "valid":
        return e - 1, e - 1 + (max(e, s) - e if output_padding is None else output_padding)
    total = s + e - 2 if output_padding is None else e + e % 2 - 2 + output_padding
    before = min(total // 2 + total % 2, e - 1)
    return before, total - before


def _per_axis(value, i):
    return value if value is None or isinstance(value, (int, np.integer)) else value[i]


def compute_conv_transpose_output_shape(input_shape, kernel_size, filters, strides, padding, output_padding=None,
                                        data_format="channels_last", dilation_rate=1):
    """The output shape of a transposed convolution for a full ``input_shape`` (Keras's function of this name:
    ints or per-axis tuples; ``kernel_size`` may carry trailing non-spatial entries)."""
    dims = len(input_shape) - 2
    spatial = input_shape[1:-1] if data_format == "channels_last" else input_shape[2:]
    sizes = [transpose_output_size(spatial[i], kernel_size[i], _per_axis(strides, i), _per_axis(dilation_rate, i),
                                   padding.lower(), _per_axis(output_padding, i)) for i in range(dims)]
    if data_format == "channels_last":
        return [input_shape[0], *sizes, filters]
    return [input_shape[0], filters, *sizes]


def compute_conv_transpose_padding(input_shape, kernel_shape, strides, padding, output_padding, dilation_rate):
    """:func:`transpose_padding` for every spatial axis of ``input_shape`` (``kernel_shape`` is
    ``(*k, filters, in)``)."""
    return [transpose_padding(kernel_shape[i], _per_axis(strides, i), _per_axis(dilation_rate, i),
                              padding.lower(), _per_axis(output_padding, i)) for i in range(len(input_shape) - 2)]


def _transpose_cut(n, k, s, d, padding: str, output_padding) -> tuple[int, int]:
    """(first cell of the full output kept, output length) along one axis."""
    e = d * (k - 1) + 1
    before, _ = transpose_padding(k, s, d, padding, output_padding)
    return e - 1 - before, transpose_output_size(n, k, s, d, padding, output_padding)


def _check_channels(op: str, channels: int, kernel_channels: int) -> None:
    if channels != kernel_channels:
        raise ValueError(
            f"{op}: the number of input channels must match the kernel's input channels. "
            f"Received: input channels={channels}, kernel input channels={kernel_channels}"
        )


def conv_transpose(x, kernel, strides, padding="valid", output_padding=None, dilation_rate=1):
    """Transposed convolution of a channels-last ``x`` ``(batch, *n, in)`` with ``kernel`` ``(*k, filters, in)``.

    ``strides``/``dilation_rate``/``output_padding`` are tuples (one entry per spatial axis; ``output_padding``
    may be None); ``padding`` is ``"valid"`` or ``"same"``. Returns ``(batch, *out, filters)``.
    """
    xv, kv = _float(x), _float(kernel)
    dims = xv.ndim - 2
    ks, filters, channels = kv.shape[:dims], kv.shape[-2], kv.shape[-1]
    _check_channels("conv_transpose", xv.shape[-1], channels)
    spatial = xv.shape[1:-1]
    ops_ = output_padding if output_padding is not None else (None,) * dims
    cuts = [_transpose_cut(n, k, s, d, padding, op)
            for n, k, s, d, op in zip(spatial, ks, strides, dilation_rate, ops_)]
    full = tuple((n - 1) * s + d * (k - 1) + 1 for n, k, s, d in zip(spatial, ks, strides, dilation_rate))
    if min((size for _, size in cuts), default=1) <= 0:
        raise ValueError(
            f"conv_transpose: the output would be empty. Received: input_shape={xv.shape}, "
            f"kernel_shape={kv.shape}, strides={strides}, padding={padding}, output_padding={output_padding}"
        )
    batch = xv.shape[0]
    y_full = _scatter_windows(xv, kv, strides, dilation_rate, full)
    y = np.zeros((batch, *(size for _, size in cuts), filters), dtype=y_full.dtype)
    keep = [min(size, f - start) for (start, size), f in zip(cuts, full)]
    kept = (slice(None), *(slice(a, a + n) for (a, _), n in zip(cuts, keep)))
    head = (slice(None), *(slice(0, n) for n in keep))
    y[head] = y_full[kept]
    full_shape, dtype = y_full.shape, y_full.dtype
    del y_full  # only its shape is needed by the backward pass
    need_x = needs_gradient(x)
    no_pads = [(0, 0)] * dims

    def vjp(g):
        # the gradient of a transposed convolution is a convolution (with the same kernel) of the
        # output gradient, placed back on the full output
        g_full = np.zeros(full_shape, dtype=dtype)
        g_full[kept] = np.asarray(g, dtype=dtype)[head]
        dx = conv_forward(g_full, kv, strides, no_pads, dilation_rate).astype(xv.dtype, copy=False) if need_x else None
        _, dk = conv_backward(xv, g_full, kv, strides, no_pads, dilation_rate, need_dx=False)
        return dx, dk.astype(kv.dtype, copy=False)

    return record(y, (x, kernel), vjp)


def _scatter_windows(xv, kv, strides, dilation, full):
    """The full transposed convolution: ``col2im(x @ K^T)`` onto ``(batch, *full, filters)``, in chunks of
    samples so that the ``(chunk, *n, *k, filters)`` buffer stays under ``CHUNK_BYTES``."""
    dims = xv.ndim - 2
    ks, filters, channels = kv.shape[:dims], kv.shape[-2], kv.shape[-1]
    spatial, batch = xv.shape[1:-1], xv.shape[0]
    dtype = np.result_type(xv, kv)
    k2 = kv.reshape(-1, channels).astype(dtype, copy=False)  # (prod(k) * filters, in)
    per_sample = math.prod(spatial) * k2.shape[0] * np.dtype(dtype).itemsize
    step = max(1, min(batch, CHUNK_BYTES // max(per_sample, 1)))
    y_full = np.empty((batch, *full, filters), dtype)
    for start in range(0, batch, step):
        xb = xv[start:start + step]
        dcols = (xb.reshape(-1, channels) @ k2.T).reshape(xb.shape[0], *spatial, *ks, filters)
        y_full[start:start + xb.shape[0]] = col2im(dcols, (xb.shape[0], *full, filters), ks, strides, dilation,
                                                   spatial)
    return y_full


def _depthwise_plan(xv, ks, strides, padding, dilation_rate):
    plans = [plan(n, k, s, d, padding) for n, k, s, d in zip(xv.shape[1:-1], ks, strides, dilation_rate)]
    out = tuple(p[0] for p in plans)
    if min(out, default=1) <= 0:
        raise ValueError(
            f"Computed output size would be zero or negative: depthwise_conv's kernel (size {ks}, dilation_rate "
            f"{dilation_rate}) does not fit the input with padding='{padding}'. Received: input_shape={xv.shape}"
        )
    return out, [(p[1], p[2]) for p in plans]


def depthwise_conv(x, kernel, strides, padding="valid", dilation_rate=1):
    """Depthwise convolution of a channels-last ``x`` ``(batch, *n, C)`` with ``kernel`` ``(*k, C, M)``:
    output channel ``c * M + m`` is input channel ``c`` convolved with ``kernel[..., c, m]``.

    Runs in chunks of samples so that the ``(chunk, *out, *k, C)`` window buffer stays under ``CHUNK_BYTES``;
    the backward pass rebuilds the windows rather than keeping them."""
    xv, kv = _float(x), _float(kernel)
    dims = xv.ndim - 2
    ks, channels, mult = kv.shape[:dims], kv.shape[-2], kv.shape[-1]
    _check_channels("depthwise_conv", xv.shape[-1], channels)
    out, pads = _depthwise_plan(xv, ks, strides, padding, dilation_rate)
    dtype = np.result_type(xv, kv)
    batch, taps, cells = xv.shape[0], math.prod(ks), math.prod(out)
    k3 = kv.reshape(taps, channels, mult).astype(dtype, copy=False)
    step = max(1, min(batch, CHUNK_BYTES // max(cells * taps * channels * np.dtype(dtype).itemsize, 1)))
    chunks = [slice(a, min(a + step, batch)) for a in range(0, batch, step)]

    def columns(rows):
        xp = pad_input(xv[rows].astype(dtype, copy=False), pads)
        return xp.shape, im2col(xp, ks, strides, dilation_rate, out).reshape(-1, taps, channels)

    y = np.empty((batch, *out, channels * mult), dtype)
    for rows in chunks:
        y[rows] = np.einsum("pjc,jcm->pcm", columns(rows)[1], k3).reshape(-1, *out, channels * mult)
    need_x = needs_gradient(x)
    inner = (slice(None), *(slice(b, b + n) for (b, _), n in zip(pads, xv.shape[1:-1])), slice(None))

    def vjp(g):
        g = np.asarray(g, dtype=dtype)
        dk = np.zeros(k3.shape, dtype)
        dx = np.empty(xv.shape, xv.dtype) if need_x else None
        for rows in chunks:
            g3 = g[rows].reshape(-1, channels, mult)
            padded_shape, cols = columns(rows)
            dk += np.einsum("pjc,pcm->jcm", cols, g3)
            if need_x:
                del cols  # free before the next big buffer
                dcols = np.einsum("pcm,jcm->pjc", g3, k3).reshape(-1, *out, *ks, channels)
                dx[rows] = col2im(dcols, padded_shape, ks, strides, dilation_rate, out)[inner]
        return dx, dk.reshape(kv.shape).astype(kv.dtype, copy=False)

    return record(y, (x, kernel), vjp)


def pointwise_conv(x, kernel):
    """A 1x1 convolution: ``x @ kernel`` over the channel axis, ``kernel`` ``(1, ..., 1, C, F)``."""
    xv, kv = _float(x), _float(kernel)
    k2 = kv.reshape(kv.shape[-2], kv.shape[-1])
    _check_channels("separable_conv", xv.shape[-1], k2.shape[0])
    flat = xv.reshape(-1, k2.shape[0])
    y = (flat @ k2).reshape(*xv.shape[:-1], k2.shape[1])
    need_x = needs_gradient(x)

    def vjp(g):
        g2 = np.asarray(g, dtype=y.dtype).reshape(-1, k2.shape[1])
        dx = (g2 @ k2.T).reshape(xv.shape).astype(xv.dtype, copy=False) if need_x else None
        return dx, (flat.T @ g2).reshape(kv.shape).astype(kv.dtype, copy=False)

    return record(y, (x, kernel), vjp)


def separable_conv(x, depthwise_kernel, pointwise_kernel, strides, padding="valid", dilation_rate=1):
    """Depthwise convolution then a 1x1 convolution: ``pointwise(depthwise(x, D), P)``."""
    return pointwise_conv(depthwise_conv(x, depthwise_kernel, strides, padding, dilation_rate), pointwise_kernel)
