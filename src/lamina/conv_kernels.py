"""Convolution kernels on NumPy arrays (channels_last), shared by the conv layers and ``ops.conv``.

Layout: ``x`` is ``(batch, *spatial, channels)``; ``kernel`` is ``(*kernel_size, channels / groups,
filters)``. A convolution (cross-correlation, as in Keras) is

    y[b, o, f] = sum_{k, c} xp[b, o * s + k * d, c] * kernel[k, c, f]

over the padded input ``xp``. It runs as im2col + one matrix product: the windows of ``xp`` are
copied into ``cols`` of shape ``(batch, *out, *kernel_size, channels)`` (a C-contiguous buffer), so
``y = cols.reshape(M, K) @ kernel.reshape(K, filters)`` with ``M = batch * prod(out)`` and
``K = prod(kernel_size) * channels``. Backward: ``dkernel = cols^T @ dy`` and
``dx = col2im(dy @ kernel^T)`` (col2im is the adjoint of im2col: a scatter-add, done one kernel offset at
a time). ``cols`` is recomputed in the backward pass rather than kept, large batches run in chunks so
that ``cols`` stays below :data:`CHUNK_BYTES`, and the scratch buffers are reused between calls.
float32 stays float32 throughout.

With numba (``lamina.conv_accel``), a 2D 3x3 stride-1 convolution with at least
:data:`WINOGRAD_MIN_CHANNELS` input channels and filters runs as Winograd's F(2x2, 3x3) instead
(:func:`_winograd`): 16 products ``(tiles, C) @ (C, F)`` replace the ``(M, 9 C) @ (9 C, F)`` one, 2.25x fewer
multiplications; and so does its input gradient, itself such a convolution (of ``dy`` padded by 2 with the
kernel turned 180 degrees and its channel axes swapped); the kernel gradient is F(3x3, 2x2) on the same
input tiles (:func:`_winograd_kernel_grad`). The transforms' coefficients are 0, +-1 and +-1/2: the
results equal im2col's to float32 rounding (``tests/test_conv_accel.py``).
"""

from __future__ import annotations

import math
import threading

import numpy as np

from lamina import conv_accel, scratch, winograd_accel
from lamina.autodiff import needs_gradient, record, unwrap

# Largest ``cols`` buffer (bytes) built at once; bigger batches are processed in chunks of samples. Small
# enough that a chunk's ``cols`` is still in cache when the matrix product reads it (MNIST convnet, second
# layer, one thread: forward 3.3 ms at 4 MB against 4.6 ms at 64 MB); at least one sample per chunk.
CHUNK_BYTES = 4 * 2**20


def plan(n: int, k: int, s: int, d: int, padding: str) -> tuple[int, int, int]:
    """``(out, before, after)`` along one axis of size ``n`` for kernel ``k``, stride ``s``, dilation ``d``.

    With ``eff = d * (k - 1) + 1``: ``"valid"``: ``out = floor((n - eff) / s) + 1``, no padding;
    ``"same"``: ``out = ceil(n / s)``, ``max((out - 1) * s + eff - n, 0)`` zeros in total, the smaller half
    before; ``"causal"``: ``d * (k - 1)`` zeros before, then as ``"valid"``. ``out`` may be ``<= 0`` (the
    caller reports it)."""
    eff = d * (k - 1) + 1
    if padding == "valid":
        return (n - eff) // s + 1, 0, 0
    if padding == "causal":
        return (n - 1) // s + 1, eff - 1, 0
    if padding == "same":
        out = -(-n // s)
        total = max((out - 1) * s + eff - n, 0)
        return out, total // 2, total - total // 2
    raise ValueError(f"Unknown padding {padding!r}: expected one of 'valid', 'same', 'causal'. "
                     f"Received: padding={padding!r}")


def pad_input(x: np.ndarray, pads) -> np.ndarray:
    """``x`` with zeros added on its spatial axes; ``pads`` holds one ``(before, after)`` per spatial axis.
    ``x`` itself (no copy) when every pad is zero."""
    pads = [tuple(p) for p in pads]
    if not any(b or a for b, a in pads):
        return x
    return np.pad(x, [(0, 0), *pads, (0, 0)])


def _window_view(xp: np.ndarray, kernel_size, strides, dilation, out) -> np.ndarray:
    """A read-only strided view ``(batch, *out, *kernel_size, channels)`` over ``xp`` (no copy)."""
    st = xp.strides
    spatial = st[1:-1]
    shape = (xp.shape[0], *out, *kernel_size, xp.shape[-1])
    strides_ = (st[0], *(s * a for s, a in zip(strides, spatial)), *(d * a for d, a in zip(dilation, spatial)), st[-1])
    return np.lib.stride_tricks.as_strided(xp, shape, strides_, writeable=False)


def _offset_slices(offset, strides, dilation, out) -> tuple:
    """The slices of a padded input read by kernel offset ``offset`` at every output position."""
    return (slice(None),) + tuple(slice(k * d, k * d + (o - 1) * s + 1, s)
                                  for k, s, d, o in zip(offset, strides, dilation, out)) + (slice(None),)


def im2col(xp: np.ndarray, kernel_size, strides, dilation, out, buffer: np.ndarray | None = None) -> np.ndarray:
    """The windows of the padded channels-last ``xp`` as a C-contiguous array
    ``(batch, *out, *kernel_size, channels)``: ``cols[b, o, k, c] = xp[b, o * s + k * d, c]``.
    ``buffer`` (optional) is a C-contiguous array of that shape and dtype to fill instead of allocating."""
    shape = (xp.shape[0], *out, *kernel_size, xp.shape[-1])
    cols = np.empty(shape, xp.dtype) if buffer is None else buffer
    dims = len(kernel_size)
    if xp.shape[-1] > 1 or xp.shape[0] * math.prod(out) <= 2048:
        # channel rows: one copy of the whole strided view is fastest (3x the per-offset copies at 2-4 channels);
        # so it is for one small image (28x28: 40 us against 53 us, the per-offset loop's Python overhead)
        np.copyto(cols, _window_view(xp, kernel_size, strides, dilation, out))
        return cols
    # one channel: one strided block copy per kernel offset (k**dims of them), 3x faster than the view copy
    lead = (slice(None),) * (dims + 1)
    for offset in np.ndindex(*kernel_size):
        cols[lead + offset] = xp[_offset_slices(offset, strides, dilation, out)]
    return cols


def col2im(dcols: np.ndarray, padded_shape, kernel_size, strides, dilation, out) -> np.ndarray:
    """The adjoint of :func:`im2col`: ``dxp = zeros(padded_shape)`` with each ``dcols[b, o, k, c]`` added at
    ``dxp[b, o * s + k * d, c]``; one strided add per kernel offset."""
    dxp = np.zeros(tuple(padded_shape), dcols.dtype)
    _col2im_add(dcols, dxp, kernel_size, strides, dilation, out)
    return dxp


def _col2im_add(dcols: np.ndarray, dxp: np.ndarray, kernel_size, strides, dilation, out) -> None:
    """:func:`col2im`'s scatter-add into an existing ``dxp``."""
    lead = (slice(None),) * (len(kernel_size) + 1)
    for offset in np.ndindex(*kernel_size):
        dxp[_offset_slices(offset, strides, dilation, out)] += dcols[lead + offset]


_WORK = threading.local()


def _workspace(role: str, shape: tuple, dtype) -> np.ndarray:
    """A reused C-contiguous scratch array of ``shape`` (one per role, dtype and thread). Fresh buffers of
    MBs cost page faults on every call, more than the copy that fills them; these stay mapped, each as
    large as the largest chunk seen (about :data:`CHUNK_BYTES`, or one sample's share when that is more)."""
    pool = _WORK.__dict__.setdefault("pool", {})
    size, key = math.prod(shape), (role, np.dtype(dtype))
    buf = pool.get(key)
    if buf is None or buf.size < size:
        buf = pool[key] = np.empty(size, dtype)
    return buf[:size].reshape(shape)


def _padded(x: np.ndarray, pads) -> np.ndarray:
    """:func:`pad_input` into the ``xp`` workspace (``x`` itself when unpadded)."""
    if not any(b or a for b, a in pads):
        return x
    shape = (x.shape[0], *(n + b + a for n, (b, a) in zip(x.shape[1:-1], pads)), x.shape[-1])
    xp = _workspace("xp", shape, x.dtype)
    xp.fill(0)
    xp[(slice(None), *(slice(b, b + n) for (b, _), n in zip(pads, x.shape[1:-1])))] = x
    return xp


def _cols(xb: np.ndarray, ksize, strides, dilation, outs) -> np.ndarray:
    """:func:`im2col` into the ``cols`` workspace."""
    shape = (xb.shape[0], *outs, *ksize, xb.shape[-1])
    return im2col(xb, ksize, strides, dilation, outs, buffer=_workspace("cols", shape, xb.dtype))


def _as_float(a) -> np.ndarray:
    a = np.asarray(unwrap(a))
    return a if np.issubdtype(a.dtype, np.floating) else a.astype("float32")


def _geometry(x: np.ndarray, kernel: np.ndarray, strides, pads, dilation, groups: int):
    """Checked ``(padded shape, out)`` for a convolution."""
    dims = x.ndim - 2
    ksize = kernel.shape[:-2]
    if kernel.ndim != x.ndim or len(strides) != dims or len(pads) != dims or len(dilation) != dims:
        raise ValueError(f"A {dims}D convolution needs a kernel of rank {dims + 2} and {dims} strides, pads and "
                         f"dilations. Received: input shape={x.shape}, kernel shape={kernel.shape}, "
                         f"strides={strides}, pads={pads}, dilation={dilation}")
    channels = x.shape[-1]
    if channels % groups or kernel.shape[-2] * groups != channels or kernel.shape[-1] % groups:
        raise ValueError(f"The input's {channels} channels must equal the kernel's {kernel.shape[-2]} input channels "
                         f"times groups={groups}, and the kernel's {kernel.shape[-1]} filters must divide by groups. "
                         f"Received: input shape={x.shape}, kernel shape={kernel.shape}")
    padded = (x.shape[0], *(n + b + a for n, (b, a) in zip(x.shape[1:-1], pads)), channels)
    out = tuple((n - d * (k - 1) - 1) // s + 1 for n, k, s, d in zip(padded[1:-1], ksize, strides, dilation))
    if min(out, default=1) <= 0:
        raise ValueError(f"The convolution leaves no output position: kernel_size={tuple(ksize)}, strides={strides}, "
                         f"dilation={dilation} on a padded input of spatial shape {padded[1:-1]}. "
                         f"Received: input shape={x.shape}")
    return padded, out


def _chunk(batch: int, per_sample: int, itemsize: int) -> int:
    """Samples per chunk so that one chunk's ``cols`` stays under :data:`CHUNK_BYTES`."""
    return max(1, min(batch, CHUNK_BYTES // max(per_sample * itemsize, 1)))


def _grouped_kernel(kernel: np.ndarray, groups: int) -> np.ndarray:
    """``(groups, K_g, F_g)`` from ``(*ksize, C_g, F)``: group ``g`` owns filters ``g*F_g:(g+1)*F_g``."""
    kdim = math.prod(kernel.shape[:-1])
    fg = kernel.shape[-1] // groups
    return kernel.reshape(kdim, groups, fg).transpose(1, 0, 2)


def _grouped_cols(cols2: np.ndarray, kprod: int, groups: int) -> np.ndarray:
    """``(groups, M, kprod * C_g)`` (a copy) from ``cols2`` of shape ``(M, kprod * C)``."""
    m = cols2.shape[0]
    cg = cols2.shape[1] // kprod // groups
    return cols2.reshape(m, kprod, groups, cg).transpose(2, 0, 1, 3).reshape(groups, m, kprod * cg)


def _matmul_into(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out[...] = a @ b``. ``np.dot(out=)`` writes straight from BLAS; ``np.matmul(out=)`` is several
    times slower here (NumPy 2.4), so it is never used with ``out``."""
    if out.flags.c_contiguous and out.dtype == a.dtype == b.dtype:
        np.dot(a, b, out=out)
    else:
        out[...] = a @ b


# Fewest input channels (and filters) for Winograd: below, its 16 thin products lose to im2col's one.
WINOGRAD_MIN_CHANNELS = 8
# Fewest 2x2 output tiles in a call: below, the kernel's transform and the 16 calls cost more than they save
# (one 13x13x32 image through Conv2D(64, 3): about 150 us slower; eight images: even).
WINOGRAD_MIN_TILES = 256


def _winograd_fits(x: np.ndarray, kernel: np.ndarray, strides, dilation, groups: int, out) -> bool:
    """Does the convolution take :func:`_winograd` (2D, 3x3, stride 1, no dilation, one group, enough
    channels and output tiles, numba)?"""
    return (kernel.ndim == 4 and kernel.shape[:2] == (3, 3) and tuple(strides) == (1, 1)
            and tuple(dilation) == (1, 1) and groups == 1 and min(kernel.shape[2:]) >= WINOGRAD_MIN_CHANNELS
            and x.shape[0] * ((out[0] + 1) // 2) * ((out[1] + 1) // 2) >= WINOGRAD_MIN_TILES
            and x.dtype in (np.float32, np.float64) and conv_accel.kernels() is not None)


def _tile_transform(left: np.ndarray, a: np.ndarray, dtype) -> np.ndarray:
    """``left a[:, :, j] left^T`` for every trailing index ``j`` of ``a (k, k, ...)``, as ``(n * n, ...)`` in
    ``dtype``: one product ``kron(left, left) @ a`` in float64 (the transposes of per-pair small products cost
    0.5 ms for a 3x3x32x64 kernel; this, 60 us)."""
    n, k = left.shape
    out = np.kron(left, left) @ a.reshape(k * k, -1).astype(np.float64)
    return out.reshape(n * n, *a.shape[2:]).astype(dtype)


_KERNELS_SEEN: dict = {}  # (id(g), id(kernel), dtype) -> (a copy of the kernel, its transform), oldest first
KERNELS_KEPT_BYTES = 32 << 20  # at most this much kept (a 3x3x512x512 kernel and its F(4x4) transform: 47 MB, not kept)


def _tiles_input(xp: np.ndarray, x: np.ndarray, top: int, left: int) -> None:
    """``xp`` (a chunk's padded tile area) = ``x``'s rows and columns that fit, placed at ``(top, left)``, zeros
    around them: only the border is zeroed, not the whole area first (one pass over it fewer)."""
    h, w = min(x.shape[1], xp.shape[1] - top), min(x.shape[2], xp.shape[2] - left)
    xp[:, :top] = 0
    xp[:, top + h:] = 0
    xp[:, top:top + h, :left] = 0
    xp[:, top:top + h, left + w:] = 0
    xp[:, top:top + h, left:left + w] = x[:, :h, :w]


def _kernel_transform(g: np.ndarray, kernel: np.ndarray, dtype) -> np.ndarray:
    """:func:`_tile_transform` of ``kernel``, the kept one while the kernel's values have not changed: predict
    calls the same convolution for block after block of rows (comparing the values costs 4 us, the transform
    60). Identity only finds the entry; equal values decide, so a changed or recycled array is transformed anew."""
    key = (id(g), id(kernel), np.dtype(dtype))
    kept = _KERNELS_SEEN.get(key)
    if kept is not None and kept[0].shape == kernel.shape and np.array_equal(kept[0], kernel):
        return kept[1]
    u = _tile_transform(g, kernel, dtype)
    _KERNELS_SEEN.pop(key, None)
    size = kernel.nbytes + u.nbytes
    if size <= KERNELS_KEPT_BYTES:
        while _KERNELS_SEEN and size + sum(a.nbytes + b.nbytes for a, b in _KERNELS_SEEN.values()) > KERNELS_KEPT_BYTES:
            _KERNELS_SEEN.pop(next(iter(_KERNELS_SEEN)), None)  # the oldest
        _KERNELS_SEEN[key] = (np.array(kernel, copy=True), u)
    return u


# G of F(2x2, 3x3): the kernel's transform U = G k G^T, per (input channel, filter)
_WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])


def _winograd(x: np.ndarray, kernel: np.ndarray, pads, y: np.ndarray) -> None:
    """``y (batch, oh, ow, F)`` = the 3x3 stride-1 convolution of ``x`` padded by ``pads``, by Winograd's
    F(2x2, 3x3): each 2x2 output tile is ``A^T [U . V] A`` with ``V = B^T d B`` for its 4x4 input tile ``d``
    and ``U = G k G^T``; the 16 products ``U . V`` summed over channels are 16 matrix products
    ``(tiles, C) @ (C, F)``. Chunks of images keep the padded tiles, ``V`` and the products near
    :data:`CHUNK_BYTES`. Where its products are fewer (:func:`_f4_wins`), F(4x4, 3x3) instead: 6x6 input tiles
    at a stride of 4, 36 products (:mod:`lamina.winograd_accel`)."""
    oh, ow = y.shape[1:3]
    if WINOGRAD_4X4 and _f4_wins(oh, ow) and winograd_accel.kernels() is not None:
        fns = winograd_accel.kernels()
        output = fns["output"]
        _winograd_tiles(x, _kernel_transform(winograd_accel.WINOGRAD_G, kernel, x.dtype), pads, (oh, ow), 4,
                        fns["input"], lambda m, b0, nb, th, tw: output(m, 0, nb, th, tw, y[b0:b0 + nb]))
    else:
        fns = conv_accel.kernels()
        output = fns["winograd_output"]
        _winograd_tiles(x, _kernel_transform(_WINOGRAD_G, kernel, x.dtype), pads, (oh, ow), 2, fns["winograd_input"],
                        lambda m, b0, nb, th, tw: output(m, 0, nb, th, tw, y[b0:b0 + nb]))


def winograd_max_pool(x: np.ndarray, kernel: np.ndarray, pads, bias, relu: bool):
    """``relu?(max_pool_2x2(conv3x3(x) + bias))`` at inference, or None: the F(4x4, 3x3) convolution with the
    pooling, bias and relu done by its output transform (``winograd_accel``'s ``output_pool``), so the
    convolution's map is never written. None where F(4x4, 3x3) would not run this convolution (see
    :func:`_winograd_fits`, :func:`_f4_wins`) or a pooled cell is NaN: the caller then takes the unfused path."""
    if x.ndim != 4 or kernel.ndim != 4 or kernel.shape[:2] != (3, 3) or x.dtype != kernel.dtype:
        return None
    oh, ow = (x.shape[1] + sum(pads[0]) - 2, x.shape[2] + sum(pads[1]) - 2)
    # the cheap refusals first: one image's inference comes here on its way to im2col
    if x.shape[0] * ((oh + 1) // 2) * ((ow + 1) // 2) < WINOGRAD_MIN_TILES or min(oh, ow) < 2 \
            or not (WINOGRAD_4X4 and _f4_wins(oh, ow)) or winograd_accel.kernels() is None \
            or not _winograd_fits(x, kernel, (1, 1), (1, 1), 1, (oh, ow)):
        return None
    fns = winograd_accel.kernels()
    output_pool = fns["output_pool"]
    b = np.zeros(kernel.shape[-1], x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    yp = scratch.empty((x.shape[0], oh // 2, ow // 2, kernel.shape[-1]), x.dtype)
    nan = []

    def emit(m, b0, nb, th, tw):
        if output_pool(m, nb, th, tw, b, relu, yp[b0:b0 + nb]):
            nan.append(b0)

    _winograd_tiles(x, _kernel_transform(winograd_accel.WINOGRAD_G, kernel, x.dtype), pads, (oh, ow), 4, fns["input"],
                    emit)
    return None if nan else yp


def _winograd_tiles(x: np.ndarray, u: np.ndarray, pads, out: tuple, size: int, input_fn, output_fn) -> None:
    """The chunked loop of :func:`_winograd` for an output map ``out = (oh, ow)`` in tiles of ``size`` (2 or 4;
    input tiles ``size + 2``) and the transformed kernel ``u (n, C, F)``: per chunk of images, the padded
    input, ``V`` (``input_fn``), the ``n`` products ``V_i @ U_i``, and ``output_fn(m, b0, nb, th, tw)`` with
    the chunk's products."""
    nb_all, (oh, ow) = x.shape[0], out
    th, tw = -(-oh // size), -(-ow // size)
    n, channels, filters = u.shape
    (top, _), (left, _) = pads
    tile_rows, tile_cols = size * th + 2, size * tw + 2
    per_image = (n * th * tw * (channels + filters) + tile_rows * tile_cols * channels) * x.itemsize
    step = max(1, min(nb_all, CHUNK_BYTES // per_image))
    for b0 in range(0, nb_all, step):
        nb = min(step, nb_all - b0)
        # the padding, then zeros past the end so that every input tile lies inside (a few rows / columns)
        xp = _workspace("wxp", (nb, tile_rows, tile_cols, channels), x.dtype)
        _tiles_input(xp, x[b0:b0 + nb], top, left)
        v = _workspace("wv", (n, nb * th * tw, channels), x.dtype)
        m = _workspace("wm", (n, nb * th * tw, filters), x.dtype)
        input_fn(xp, 0, nb, th, tw, v)
        # The n products in one batched call: 36 calls of np.dot each took the GIL, which the block threads of
        # row_split then passed around (predict of 10,000 MNIST images on two threads: 0.120 s -> 0.098 s; at
        # one thread the products alone ran at 200 GF/s one by one, 250 batched).
        np.matmul(v, u, out=m)
        output_fn(m, b0, nb, th, tw)


# F(4x4, 3x3) (:mod:`lamina.winograd_accel`) where its 36 products per 4x4 tile are fewer than this share of
# F(2x2, 3x3)'s 16 per 2x2 tile (its transforms cost more per tile): an 11x11 map 324 against 576 (taken), a
# 13x13 one 576 against 784 (not: measured even).
WINOGRAD_4X4 = True
F4_PRODUCT_SHARE = 0.7


def _f4_wins(oh: int, ow: int) -> bool:
    return 36 * -(-oh // 4) * -(-ow // 4) <= F4_PRODUCT_SHARE * 16 * -(-oh // 2) * -(-ow // 2)


def _winograd_f4_backward(dy: np.ndarray, x: np.ndarray, kernel: np.ndarray, pads, need_dx: bool):
    """``(dx or None, dkernel)`` of an F(4x4, 3x3) :func:`_winograd` convolution, by the transposed algorithm:
    ``D = A g A^T`` per 4x4 tile of ``dy``; ``dk = G^T [sum over tiles of V . D] G`` on the forward's input
    tiles ``V``; ``dx`` from ``B [D @ U^T] B^T`` added into the padded input's 6x6 windows, then cropped."""
    fns = winograd_accel.kernels()
    nb_all, oh, ow, filters = dy.shape
    th, tw = -(-oh // 4), -(-ow // 4)
    channels = x.shape[-1]
    dtype = dy.dtype
    g = winograd_accel.WINOGRAD_G
    (top, _), (left, _) = pads
    tile_rows, tile_cols = 4 * th + 2, 4 * tw + 2
    h, w = min(x.shape[1], tile_rows - top), min(x.shape[2], tile_cols - left)
    then = None
    if need_dx:
        ut = np.ascontiguousarray(_kernel_transform(g, kernel, dtype).transpose(0, 2, 1))  # U^T per position: (F, C)
        dx = scratch.empty(x.shape, dtype)
        if (h, w) != x.shape[1:3]:
            dx.fill(0)  # rows or columns no tile reaches

        def then(v, d, xp, b0, nb):
            dv = v  # the input tiles are no longer needed: their buffer takes the tiles' gradients
            np.matmul(d, ut, out=dv)  # in one call, as the forward's (see _winograd_tiles)
            xp.fill(0)
            fns["input_grad"](dv, 0, nb, th, tw, xp)
            dx[b0:b0 + nb, :h, :w] = xp[:, top:top + h, left:left + w]

    per_image = (36 * th * tw * (2 * channels + filters) + 2 * tile_rows * tile_cols * channels
                 + 16 * th * tw * filters) * x.itemsize
    # twice the forward's budget: its 72 products gain more from long ones than from cache (a 64-image block
    # of 13x13x32 -> 64: 2.4 ms in 4 MB chunks, 2.1 ms in 8 MB)
    step = max(1, min(nb_all, 2 * CHUNK_BYTES // per_image))
    acc = _gradient_tiles(dy, x, pads, 4, fns["input"], fns["grad_tiles"], step, then)
    dk = _tile_transform(g.T, acc.reshape(6, 6, channels, filters), dtype)  # G^T M G: (9, C, F)
    return (dx if need_dx else None), dk.reshape(3, 3, channels, filters)


def _gradient_tiles(dy: np.ndarray, x: np.ndarray, pads, size: int, input_fn, grad_fn, step: int, then=None):
    """The chunked loop of both Winograd kernel gradients, for output tiles of ``size`` (2 or 4): per chunk of
    ``step`` images, the input tiles ``V`` (``input_fn``), the output gradient's tiles ``D`` (``grad_fn``, on
    ``dy`` zero-padded to whole tiles), and ``acc[i] += V_i^T D_i``; then ``then(v, d, xp, b0, nb)`` with the
    chunk's buffers, where given. Returns ``acc`` ((size + 2)^2, C, F)."""
    nb_all, oh, ow, filters = dy.shape
    th, tw = -(-oh // size), -(-ow // size)
    n, channels, dtype = (size + 2) ** 2, x.shape[-1], dy.dtype
    (top, _), (left, _) = pads
    acc = np.zeros((n, channels, filters), dtype)
    part = np.empty((n, channels, filters), dtype)
    for b0 in range(0, nb_all, step):
        nb = min(step, nb_all - b0)
        xp = _workspace("wxp", (nb, size * th + 2, size * tw + 2, channels), dtype)
        _tiles_input(xp, x[b0:b0 + nb], top, left)
        dyp = _workspace("wdy", (nb, size * th, size * tw, filters), dtype)
        if (size * th, size * tw) != (oh, ow):
            dyp.fill(0)
        dyp[:, :oh, :ow] = dy[b0:b0 + nb]
        v = _workspace("wv", (n, nb * th * tw, channels), dtype)
        d = _workspace("wm", (n, nb * th * tw, filters), dtype)
        input_fn(xp, 0, nb, th, tw, v)
        grad_fn(dyp, th, tw, d)
        np.matmul(v.transpose(0, 2, 1), d, out=part)  # in one call, as the forward's (see _winograd_tiles)
        acc += part
        if then is not None:
            then(v, d, xp, b0, nb)
    return acc


def _winograd_input_grad(dy: np.ndarray, kernel: np.ndarray, x_shape: tuple, pads) -> np.ndarray:
    """``dx`` of a :func:`_winograd` convolution: the convolution of ``dy`` padded by 2 with the kernel turned
    180 degrees, channels and filters swapped, which is the gradient of the padded input; then cropped."""
    (top, bottom), (left, right) = pads
    padded = (x_shape[0], x_shape[1] + top + bottom, x_shape[2] + left + right, x_shape[3])
    flipped = np.ascontiguousarray(kernel[::-1, ::-1].transpose(0, 1, 3, 2))
    dxp = scratch.empty(padded, dy.dtype)
    _winograd(dy, flipped, ((2, 2), (2, 2)), dxp)
    if top or bottom or left or right:
        return np.ascontiguousarray(dxp[:, top:top + x_shape[1], left:left + x_shape[2]])
    return dxp


# A'^T of F(3x3, 2x2), the kernel gradient's output transform: dk = A'^T M A' per (channel, filter)
_WINOGRAD_AT_DK = np.array([[1, 1, 1, 0], [0, 1, -1, 0], [0, 1, 1, 1]])


def _winograd_kernel_grad(dy: np.ndarray, x: np.ndarray, pads, dtype) -> np.ndarray:
    """``dkernel (3, 3, C, F)`` of a :func:`_winograd` convolution by F(3x3, 2x2) on the forward's 4x4 input
    tiles: ``dk = A'^T [sum over tiles of V . D] A'`` with ``D = G' g G'^T`` for each 2x2 tile ``g`` of
    ``dy`` (zero-padded to even sizes), i.e. 16 products ``V_i^T (C, tiles) @ D_i (tiles, F)``."""
    fns = conv_accel.kernels()
    nb_all, oh, ow, filters = dy.shape
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    channels = x.shape[-1]
    tile_rows, tile_cols = 2 * th + 2, 2 * tw + 2
    per_image = (16 * th * tw * (channels + filters) + tile_rows * tile_cols * channels
                 + 4 * th * tw * filters) * x.itemsize
    step = max(1, min(nb_all, CHUNK_BYTES // per_image))
    acc = _gradient_tiles(dy, x, pads, 2, fns["winograd_input"], fns["winograd_grad_tiles"], step)
    return _tile_transform(_WINOGRAD_AT_DK, acc.reshape(4, 4, channels, filters), dtype).reshape(3, 3, channels,
                                                                                                  filters)


def conv_forward(x, kernel, strides, pads, dilation, groups: int = 1, out: np.ndarray | None = None) -> np.ndarray:
    """``y (batch, *out, filters)`` of the convolution of channels-last ``x`` padded by ``pads``
    (see the module docstring); ``out`` (optional) is a C-contiguous array of that shape to write into."""
    x, kernel = _as_float(x), _as_float(kernel)
    dtype = np.result_type(x.dtype, kernel.dtype)
    x, kernel = x.astype(dtype, copy=False), kernel.astype(dtype, copy=False)
    strides, dilation = tuple(strides), tuple(dilation)
    padded, outs = _geometry(x, kernel, strides, pads, dilation, groups)
    ksize = kernel.shape[:-2]
    kprod, filters = math.prod(ksize), kernel.shape[-1]
    y = scratch.empty((x.shape[0], *outs, filters), dtype) if out is None else out
    if _winograd_fits(x, kernel, strides, dilation, groups, outs) and y.flags.c_contiguous:
        _winograd(x, kernel, pads, y)
        return y
    y2 = y.reshape(-1, filters)
    per = math.prod(outs)
    step = _chunk(x.shape[0], per * kprod * x.shape[-1], x.itemsize)
    k2 = kernel.reshape(-1, filters) if groups == 1 else _grouped_kernel(kernel, groups)
    for start in range(0, x.shape[0], step):
        xb = _padded(x[start:start + step], pads)
        cols = _cols(xb, ksize, strides, dilation, outs).reshape(xb.shape[0] * per, -1)
        rows = slice(start * per, (start + xb.shape[0]) * per)
        if groups == 1:
            _matmul_into(cols, k2, y2[rows])
        else:
            part = np.matmul(_grouped_cols(cols, kprod, groups), k2)  # (groups, m, F_g)
            y2[rows] = part.transpose(1, 0, 2).reshape(-1, filters)
    return y


def _dcols(g2: np.ndarray, k2: np.ndarray, groups: int, kprod: int, shape: tuple) -> np.ndarray:
    """``dcols = dy @ kernel^T`` shaped ``(batch, *out, *kernel_size, channels)`` in the workspace."""
    dcols = _workspace("dcols", shape, g2.dtype)
    if groups == 1:
        _matmul_into(g2, k2.T, dcols.reshape(g2.shape[0], -1))
        return dcols
    m = g2.shape[0]
    gg = g2.reshape(m, groups, -1).transpose(1, 0, 2)
    part = np.matmul(gg, k2.transpose(0, 2, 1))  # (groups, m, kprod * C_g)
    dcols.reshape(m, kprod, groups, -1)[...] = part.reshape(groups, m, kprod, -1).transpose(1, 2, 0, 3)
    return dcols


def _col2im_by_offset(g2: np.ndarray, kernel: np.ndarray, dxp: np.ndarray, strides, dilation, outs) -> None:
    """``col2im(g2 @ kernel^T)`` into ``dxp`` (groups = 1) one kernel offset at a time: each offset's
    ``g2 @ kernel[offset]^T`` is a contiguous ``(M, channels)`` block added at its strided place. Same
    arithmetic as one big ``dcols`` product, but no ``(M, K)`` buffer and no strided reads of it."""
    ksize, channels = kernel.shape[:-2], kernel.shape[-2]
    block = _workspace("dcols", (g2.shape[0], channels), g2.dtype)
    shaped = block.reshape(dxp.shape[0], *outs, channels)
    for offset in np.ndindex(*ksize):
        _matmul_into(g2, kernel[offset].T, block)
        dxp[_offset_slices(offset, strides, dilation, outs)] += shaped


def conv_backward(dy, x, kernel, strides, pads, dilation, groups: int = 1, need_dx: bool = True,
                  dk_out: np.ndarray | None = None):
    """``(dx, dkernel)`` of :func:`conv_forward` for the output gradient ``dy``: ``dkernel = cols^T @ dy``,
    ``dx = col2im(dy @ kernel^T)`` cropped to ``x``'s shape (``None`` unless ``need_dx``). ``dk_out``
    (optional, any shape with the kernel's size) receives ``dkernel`` in place and is returned."""
    x, kernel = _as_float(x), _as_float(kernel)
    dtype = np.result_type(x.dtype, kernel.dtype)
    x, kernel = x.astype(dtype, copy=False), kernel.astype(dtype, copy=False)
    strides, dilation = tuple(strides), tuple(dilation)
    padded, outs = _geometry(x, kernel, strides, pads, dilation, groups)
    ksize = kernel.shape[:-2]
    kprod, filters = math.prod(ksize), kernel.shape[-1]
    per = math.prod(outs)
    dy2 = np.asarray(unwrap(dy), dtype=dtype).reshape(-1, filters)
    step = _chunk(x.shape[0], per * kprod * x.shape[-1], x.itemsize)
    k2 = _grouped_kernel(kernel, groups) if groups > 1 else kernel.reshape(-1, filters)
    # dkernel: grouped, accumulated as (groups, F_g, K_g); else as (K, filters), from whichever product
    # OpenBLAS runs faster: cols^T @ dy when K <= filters (1.5-2x at K = 9), else (dy^T @ cols)^T
    dkt = np.zeros((groups, filters // groups, k2.shape[-2]) if groups > 1 else k2.shape, dtype)
    if _winograd_fits(x, kernel, strides, dilation, groups, outs):
        dyv = dy2.reshape(x.shape[0], *outs, filters)
        if WINOGRAD_4X4 and _f4_wins(*outs) and winograd_accel.kernels() is not None:
            dx, dk = _winograd_f4_backward(dyv, x, kernel, pads, need_dx)
        else:
            dx = _winograd_input_grad(dyv, kernel, x.shape, pads) if need_dx else None
            dk = _winograd_kernel_grad(dyv, x, pads, dtype)
        if dk_out is not None:
            np.copyto(dk_out.reshape(dk.shape), dk)
            return dx, dk_out
        return dx, dk
    dx = scratch.empty(x.shape, dtype) if need_dx else None
    unpadded = not any(b or a for b, a in pads)
    crop = (slice(None),) + tuple(slice(b, b + n) for (b, _), n in zip(pads, x.shape[1:-1])) + (slice(None),)
    for start in range(0, x.shape[0], step):
        xb = _padded(x[start:start + step], pads)
        nb = xb.shape[0]
        cols = _cols(xb, ksize, strides, dilation, outs).reshape(nb * per, -1)
        g2 = dy2[start * per:(start + nb) * per]
        if groups > 1:
            gg = g2.reshape(-1, groups, filters // groups).transpose(1, 0, 2)  # (groups, m, F_g)
            dkt += np.matmul(gg.transpose(0, 2, 1), _grouped_cols(cols, kprod, groups))
        elif cols.shape[1] <= filters:
            dkt += cols.T @ g2
        else:
            dkt += (g2.T @ cols).T
        if need_dx:
            # unpadded: scatter straight into dx; padded: into a zeroed padded workspace, then crop
            dxp = dx[start:start + nb] if unpadded else _workspace("dxp", xb.shape, dtype)
            dxp.fill(0)
            if groups > 1:
                dcols = _dcols(g2, k2, groups, kprod, (nb, *outs, *ksize, x.shape[-1]))
                _col2im_add(dcols, dxp, ksize, strides, dilation, outs)
            else:
                _col2im_by_offset(g2, kernel, dxp, strides, dilation, outs)
            if not unpadded:
                dx[start:start + nb] = dxp[crop]
    dk = dkt.transpose(2, 0, 1) if groups > 1 else dkt  # (K_g, groups, F_g) or (K, filters)
    if dk_out is not None:
        np.copyto(dk_out.reshape(dk.shape), dk)
        return dx, dk_out
    return dx, np.ascontiguousarray(dk).reshape(kernel.shape)


def conv(x, kernel, strides, pads, dilation, groups: int = 1):
    """:func:`conv_forward` recorded on the tape: a Tensor when ``x`` or ``kernel`` needs a gradient."""
    xv, kv = _as_float(x), _as_float(kernel)
    y = conv_forward(xv, kv, strides, pads, dilation, groups)
    need_x = needs_gradient(x)

    def vjp(g):
        dx, dk = conv_backward(g, xv, kv, strides, pads, dilation, groups, need_dx=need_x)
        return (None if dx is None else dx.astype(xv.dtype, copy=False)), dk.astype(kv.dtype, copy=False)

    return record(y, (x, kernel), vjp)
