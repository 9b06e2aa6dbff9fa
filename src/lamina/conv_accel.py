"""Optional compiled kernels for convnets (numba, imported lazily): max pooling with the window's winner kept,
and a small first convolution fused with it.

NumPy's max pooling (``lamina.layers.pooling``) is a few whole-array passes, but its backward has to find
each window's first maximal cell again, offset by offset, with a running mask of windows still unclaimed
(five array passes per offset). Here the forward keeps the winner's offset in the window (one byte per
output cell) and the backward is one pass writing ``g`` at the winner and zero elsewhere.

``max_pool`` also takes the bias and the relu of a convolution that only this pooling reads (the compiled
training step and Sequential's inference plan move them here): ``y = relu(max_w(z + bias))``, the bias
added cell by cell before the comparison, as the convolution would have added it, so the winners and the
values are the NumPy path's exactly; ``max_pool_backward`` then gives the bias gradient
``db[c] = sum g * (y > 0)`` in the same pass (accumulated in float64).

Shapes: 2D channels_last, ``z (batch, H, W, C)``; a 1D pooling is the 2D one on ``(batch, 1, L, C)``.
Used for "valid" max pooling on float32 or float64 when numba is installed (the ``fast`` extra) and
``LAMINA_ACCELERATE`` is not ``0``; a window holding NaN makes ``max_pool`` return None and the caller
runs the NumPy path, whose NaN rule (torch's) this kernel does not copy. ``tests/test_conv_accel.py``
checks both paths against each other.

A first convolution on few channels (the MNIST convnet's: one) is cheap in FLOPs but writes a large map that
the pooling reads back. ``conv_max_pool`` fuses a 3x3 stride-1 convolution on at most
:data:`CONV_POOL_MAX_CHANNELS` channels with the 2x2 max pooling after it: per pooled cell, its 4x4 input
patch gives the four convolution cells, vectorized over the filters, and only the maximum and its winner are
written; ``conv_max_pool_backward`` gives the kernel and bias gradients straight from the pooled gradient and
the winners (the convolution's output gradient is nonzero only there). The compiled training step and
Sequential's inference plan run it for such a pair; ``tests/test_conv_pool_fused.py`` checks it against the
unfused path.

Also here: Winograd's transforms (used by ``lamina.conv_kernels``) and the gate of the batch-parallel
inference of Sequential's convolution stacks (:func:`split_workers`; the split is :mod:`lamina.row_split`).
"""

from __future__ import annotations

import math

import numpy as np

from lamina import row_split, scratch
from lamina.accel import CompiledOnce


def _compile() -> dict:
    import numba  # optional extra (lamina[fast]), imported on first use only

    # Serial on purpose, as the optimizers' kernels: parallel threads would fight OpenBLAS's for the cores.
    jit = numba.njit(cache=True, fastmath=False, nogil=True, error_model="numpy")
    fused = numba.njit(cache=True, fastmath={"contract"}, nogil=True, error_model="numpy")
    return {"pool_forward": jit(_pool_forward_py()), "pool_backward": jit(_pool_backward_py()),
            "winograd_input": jit(_winograd_input_py()), "winograd_output": jit(_winograd_output_py()),
            "winograd_grad_tiles": jit(_winograd_grad_tiles_py()),
            # FMA contraction only (no reassociation): the fused convolution's many multiply-adds
            "conv3_pool_forward": fused(_conv3_pool_forward_py()),
            "conv3_pool_forward_one": fused(_conv3_pool_forward_one_py()),
            "conv3_pool_backward": fused(_conv3_pool_backward_py())}


def _pool_forward_py():
    """The Python source of the forward kernel (compiled by :func:`_compile`)."""

    def pool_forward(z, bias, relu, ph, pw, sh, sw, y, arg, keep_arg):  # pragma: no cover - compiled
        """``y = relu?(max over each window of z + bias)``, ``arg`` the first maximal offset (row-major);
        returns whether some window held a NaN."""
        nb, oh, ow, nc = y.shape
        best = np.empty(nc, y.dtype)
        idx = np.zeros(nc, np.uint8)
        nan = np.zeros(nc, np.bool_)
        for b in range(nb):
            for i in range(oh):
                r0 = i * sh
                for j in range(ow):
                    c0 = j * sw
                    for c in range(nc):
                        v = z[b, r0, c0, c] + bias[c]
                        best[c] = v
                        idx[c] = 0
                        nan[c] |= v != v
                    for di in range(ph):
                        for dj in range(pw):
                            if di == 0 and dj == 0:
                                continue
                            k = di * pw + dj
                            for c in range(nc):
                                v = z[b, r0 + di, c0 + dj, c] + bias[c]
                                nan[c] |= v != v
                                if v > best[c]:
                                    best[c] = v
                                    idx[c] = k
                    for c in range(nc):
                        v = best[c]
                        if relu and not v > 0:
                            v = 0.0
                        y[b, i, j, c] = v
                    if keep_arg:
                        for c in range(nc):
                            arg[b, i, j, c] = idx[c]
        return nan.any()

    return pool_forward


def _pool_backward_py():
    """The Python source of the backward kernel (compiled by :func:`_compile`)."""

    def pool_backward(g, arg, y, relu, ph, pw, sh, sw, disjoint, dz, db):  # pragma: no cover - compiled
        """``dz``: ``g`` (times ``y > 0`` under relu) at each window's winner; with ``disjoint`` every cell of
        every window is written (zeros elsewhere), else the winners are added into a zeroed ``dz``.
        ``db[c] += `` the masked ``g`` summed over all windows."""
        nb, oh, ow, nc = g.shape
        gv = np.empty(nc, g.dtype)
        for b in range(nb):
            for i in range(oh):
                r0 = i * sh
                for j in range(ow):
                    c0 = j * sw
                    for c in range(nc):
                        v = g[b, i, j, c]
                        if relu:
                            v = v * (1.0 if y[b, i, j, c] > 0 else 0.0)
                        gv[c] = v
                        db[c] += v
                    if disjoint:
                        for di in range(ph):
                            for dj in range(pw):
                                k = di * pw + dj
                                for c in range(nc):
                                    dz[b, r0 + di, c0 + dj, c] = gv[c] if arg[b, i, j, c] == k else 0.0
                    else:
                        for c in range(nc):
                            k = arg[b, i, j, c]
                            dz[b, r0 + k // pw, c0 + k % pw, c] += gv[c]

    return pool_backward



def _winograd_input_py():
    """The Python source of Winograd's input transform (compiled by :func:`_compile`)."""

    def winograd_input(xp, b0, nb, th, tw, v):  # pragma: no cover - compiled
        """``v[4 i + k, t, c] = (B^T d B)[i, k]`` for the 4x4 tile ``d`` of image ``b0 + t // (th tw)`` at
        rows ``2 ty ..``, columns ``2 tx ..`` (``xp`` is padded so that every tile is inside it), with
        ``B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]``. Written as short loops over
        the channels with one small scratch tile: the compiler vectorizes these (10x the scalar form)."""
        nc = xp.shape[3]
        tmp = np.empty((4, 4, nc), xp.dtype)
        t = 0
        for b in range(b0, b0 + nb):
            for ty in range(th):
                r = 2 * ty
                for tx in range(tw):
                    q = 2 * tx
                    for k in range(4):  # rows: B^T d
                        for c in range(nc):
                            d0 = xp[b, r, q + k, c]
                            d1 = xp[b, r + 1, q + k, c]
                            d2 = xp[b, r + 2, q + k, c]
                            d3 = xp[b, r + 3, q + k, c]
                            tmp[0, k, c] = d0 - d2
                            tmp[1, k, c] = d1 + d2
                            tmp[2, k, c] = d2 - d1
                            tmp[3, k, c] = d1 - d3
                    for i in range(4):  # columns: (B^T d) B
                        for c in range(nc):
                            a0 = tmp[i, 0, c]
                            a1 = tmp[i, 1, c]
                            a2 = tmp[i, 2, c]
                            a3 = tmp[i, 3, c]
                            v[4 * i, t, c] = a0 - a2
                            v[4 * i + 1, t, c] = a1 + a2
                            v[4 * i + 2, t, c] = a2 - a1
                            v[4 * i + 3, t, c] = a1 - a3
                    t += 1

    return winograd_input


def _winograd_output_py():
    """The Python source of Winograd's output transform (compiled by :func:`_compile`)."""

    def winograd_output(m, b0, nb, th, tw, y):  # pragma: no cover - compiled
        """``y``'s 2x2 tile ``(ty, tx)`` of image ``b0 + ..`` is ``A^T m_t A`` with
        ``A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]``; cells past ``y``'s edge are dropped."""
        oh, ow, nf = y.shape[1], y.shape[2], y.shape[3]
        t = 0
        for b in range(b0, b0 + nb):
            for ty in range(th):
                r = 2 * ty
                for tx in range(tw):
                    q = 2 * tx
                    for f in range(nf):
                        # rows: A^T m
                        s0 = m[0, t, f] + m[4, t, f] + m[8, t, f]
                        s1 = m[1, t, f] + m[5, t, f] + m[9, t, f]
                        s2 = m[2, t, f] + m[6, t, f] + m[10, t, f]
                        s3 = m[3, t, f] + m[7, t, f] + m[11, t, f]
                        u0 = m[4, t, f] - m[8, t, f] - m[12, t, f]
                        u1 = m[5, t, f] - m[9, t, f] - m[13, t, f]
                        u2 = m[6, t, f] - m[10, t, f] - m[14, t, f]
                        u3 = m[7, t, f] - m[11, t, f] - m[15, t, f]
                        y[b, r, q, f] = s0 + s1 + s2
                        if q + 1 < ow:
                            y[b, r, q + 1, f] = s1 - s2 - s3
                        if r + 1 < oh:
                            y[b, r + 1, q, f] = u0 + u1 + u2
                            if q + 1 < ow:
                                y[b, r + 1, q + 1, f] = u1 - u2 - u3
                    t += 1

    return winograd_output


def _winograd_grad_tiles_py():
    """The Python source of the output-gradient transform of the kernel gradient (compiled by :func:`_compile`)."""

    def winograd_grad_tiles(dyp, th, tw, d):  # pragma: no cover - compiled
        """``d[4 i + k, t, f] = (G g G^T)[i, k]`` for the 2x2 tile ``g`` of the (even-sized, zero-padded) output
        gradient ``dyp`` at rows ``2 ty``, columns ``2 tx``, with ``G = [[1, 0], [.5, .5], [.5, -.5], [0, -1]]``:
        F(3x3, 2x2)'s ``G`` with its last row negated, so that the input tiles are the forward's
        (:func:`winograd_input`'s ``B^T`` is F(3x3, 2x2)'s with its last row negated)."""
        nf = dyp.shape[3]
        tmp = np.empty((4, 2, nf), dyp.dtype)
        t = 0
        for b in range(dyp.shape[0]):
            for ty in range(th):
                r = 2 * ty
                for tx in range(tw):
                    q = 2 * tx
                    for k in range(2):  # rows: G g
                        for f in range(nf):
                            g0 = dyp[b, r, q + k, f]
                            g1 = dyp[b, r + 1, q + k, f]
                            tmp[0, k, f] = g0
                            tmp[1, k, f] = 0.5 * (g0 + g1)
                            tmp[2, k, f] = 0.5 * (g0 - g1)
                            tmp[3, k, f] = -g1
                    for i in range(4):  # columns: (G g) G^T
                        for f in range(nf):
                            a0 = tmp[i, 0, f]
                            a1 = tmp[i, 1, f]
                            d[4 * i, t, f] = a0
                            d[4 * i + 1, t, f] = 0.5 * (a0 + a1)
                            d[4 * i + 2, t, f] = 0.5 * (a0 - a1)
                            d[4 * i + 3, t, f] = -a1
                    t += 1

    return winograd_grad_tiles


_COMPILED = CompiledOnce(_compile)


def kernels() -> dict | None:
    """The compiled kernels, or None (numba absent, or ``LAMINA_ACCELERATE=0``)."""
    return _COMPILED.get() or None


def _as_2d(a: np.ndarray) -> np.ndarray:
    """A 1D channels-last array ``(batch, L, C)`` as ``(batch, 1, L, C)`` (a view); 2D as is."""
    return a[:, None] if a.ndim == 3 else a


def max_pool(z: np.ndarray, pool_size: tuple, strides: tuple, bias=None, relu: bool = False,
             keep_arg: bool = True):
    """``(y, arg)`` of a "valid" max pooling of the channels-last ``z`` (1D or 2D) after adding ``bias``
    (per channel, optional), then relu (optional); ``arg`` (uint8, ``y``'s shape; None unless ``keep_arg``)
    is each window's first maximal offset. None when the kernels do not apply (no numba, switched off,
    another rank or dtype, a window larger than 255 cells) or a window holds a NaN: the caller then takes
    the NumPy path."""
    fns = kernels()
    if fns is None or z.ndim not in (3, 4) or z.dtype not in (np.float32, np.float64) or len(pool_size) != z.ndim - 2:
        return None
    if math.prod(pool_size) > 255:
        return None
    z2 = np.ascontiguousarray(_as_2d(z))
    pool2, strides2 = (1, *pool_size)[-2:], (1, *strides)[-2:]
    out = tuple((n - k) // s + 1 for n, k, s in zip(z2.shape[1:3], pool2, strides2))
    if min(out) <= 0:
        return None  # the NumPy path names the error
    y = scratch.empty((z2.shape[0], *out, z2.shape[-1]), z.dtype)
    arg = scratch.empty(y.shape if keep_arg else (0, 0, 0, 0), np.uint8)
    b = np.zeros(z2.shape[-1], z.dtype) if bias is None else np.ascontiguousarray(bias, dtype=z.dtype)
    if fns["pool_forward"](z2, b, relu, *pool2, *strides2, y, arg, keep_arg):
        return None
    shape = (z.shape[0], *out[2 - (z.ndim - 2):], z.shape[-1])
    return y.reshape(shape), (arg.reshape(shape) if keep_arg else None)


def max_pool_backward(g: np.ndarray, arg: np.ndarray, y: np.ndarray, z_shape: tuple, pool_size: tuple,
                      strides: tuple, relu: bool = False):
    """``(dz, db)`` for :func:`max_pool`'s output gradient ``g``: ``dz`` of shape ``z_shape`` holds ``g``
    (times ``y > 0`` under relu) at each window's winner, zeros elsewhere; ``db`` (float64, per channel) is
    the bias gradient, the masked ``g`` summed."""
    fns = kernels()
    pool2, strides2 = (1, *pool_size)[-2:], (1, *strides)[-2:]
    g2 = np.ascontiguousarray(_as_2d(np.asarray(g, dtype=y.dtype)))
    z2_shape = (z_shape[0], 1, *z_shape[1:]) if len(z_shape) == 3 else tuple(z_shape)
    disjoint = all(s >= k for s, k in zip(strides2, pool2))
    covered = [n * s for n, s in zip(g2.shape[1:3], strides2)]
    exact = disjoint and all(s == k for s, k in zip(strides2, pool2)) and covered == list(z2_shape[1:3])
    dz = scratch.empty(z2_shape, y.dtype)
    if not exact:
        dz.fill(0)
    db = np.zeros(z2_shape[-1], np.float64)
    fns["pool_backward"](g2, _as_2d(arg), _as_2d(y), relu, *pool2, *strides2, disjoint, dz, db)
    return dz.reshape(z_shape), db


# ---------------------------------------------------------------- a 3x3 convolution fused with its 2x2 max pooling
# At most this many input channels for :func:`conv_max_pool`: above, im2col's one matrix product (or Winograd's)
# catches up. 128 images of 28x28, 32 filters, one thread (CPU ms, fused against unfused): forward 0.43 / 1.20 /
# 1.87 / 4.29 / 6.00 / 7.00 against 1.62 / 2.49 / 3.14 / 6.26 / 7.00 / 7.07 at 1 / 2 / 4 / 8 / 12 / 16 channels;
# backward (no input gradient) 0.51 / 0.93 / 1.66 / 2.86 / 4.20 / 5.84 against 1.89 / 2.84 / 4.45 / 5.46 / 5.60 /
# 5.96. At 8 channels and 64 or 128 filters (32x32, "same") it still wins by 1.2-1.9x each way.
CONV_POOL_MAX_CHANNELS = 8


def _conv3_pool_forward_py():
    """The Python source of the fused forward kernel (compiled by :func:`_compile`)."""

    def conv3_pool_forward(xp, k, bias, relu, y, arg, keep_arg):  # pragma: no cover - compiled
        """``y[b, i, j, f] = relu?(max over the 2x2 window (2i + u, 2j + v) of z + bias[f])`` where
        ``z[b, r, q, f] = sum_c sum_{s, t < 3} xp[b, r + s, q + t, c] k[s, t, c, f]``, with ``arg`` the first
        maximal ``2 u + v``, or 4 where the relu zeroed the window (its gradient is zero: the backward then
        needs no ``y``); returns whether some window held a NaN. Each window's 4x4 patch of ``xp`` is read
        once per channel into scalars, and the loop over the filters (contiguous in ``k``, ``y``) is
        vectorized: 9 kernel loads feed 36 multiply-adds."""
        nb, ph, pw, nf = y.shape
        nc = xp.shape[3]
        a0, a1, a2, a3 = np.empty(nf, y.dtype), np.empty(nf, y.dtype), np.empty(nf, y.dtype), np.empty(nf, y.dtype)
        nan = np.zeros(nf, np.bool_)
        for b in range(nb):
            for i in range(ph):
                r = 2 * i
                for j in range(pw):
                    q = 2 * j
                    a0[:] = 0.0
                    a1[:] = 0.0
                    a2[:] = 0.0
                    a3[:] = 0.0
                    for c in range(nc):
                        p00, p01, p02, p03 = xp[b, r, q, c], xp[b, r, q + 1, c], xp[b, r, q + 2, c], xp[b, r, q + 3, c]
                        p10, p11, p12, p13 = (xp[b, r + 1, q, c], xp[b, r + 1, q + 1, c], xp[b, r + 1, q + 2, c],
                                              xp[b, r + 1, q + 3, c])
                        p20, p21, p22, p23 = (xp[b, r + 2, q, c], xp[b, r + 2, q + 1, c], xp[b, r + 2, q + 2, c],
                                              xp[b, r + 2, q + 3, c])
                        p30, p31, p32, p33 = (xp[b, r + 3, q, c], xp[b, r + 3, q + 1, c], xp[b, r + 3, q + 2, c],
                                              xp[b, r + 3, q + 3, c])
                        for f in range(nf):
                            k00, k01, k02 = k[0, 0, c, f], k[0, 1, c, f], k[0, 2, c, f]
                            k10, k11, k12 = k[1, 0, c, f], k[1, 1, c, f], k[1, 2, c, f]
                            k20, k21, k22 = k[2, 0, c, f], k[2, 1, c, f], k[2, 2, c, f]
                            a0[f] += (p00 * k00 + p01 * k01 + p02 * k02 + p10 * k10 + p11 * k11 + p12 * k12
                                      + p20 * k20 + p21 * k21 + p22 * k22)
                            a1[f] += (p01 * k00 + p02 * k01 + p03 * k02 + p11 * k10 + p12 * k11 + p13 * k12
                                      + p21 * k20 + p22 * k21 + p23 * k22)
                            a2[f] += (p10 * k00 + p11 * k01 + p12 * k02 + p20 * k10 + p21 * k11 + p22 * k12
                                      + p30 * k20 + p31 * k21 + p32 * k22)
                            a3[f] += (p11 * k00 + p12 * k01 + p13 * k02 + p21 * k10 + p22 * k11 + p23 * k12
                                      + p31 * k20 + p32 * k21 + p33 * k22)
                    for f in range(nf):
                        # the bias added cell by cell before the comparison, as the convolution adds it
                        v0, v1, v2, v3 = a0[f] + bias[f], a1[f] + bias[f], a2[f] + bias[f], a3[f] + bias[f]
                        nan[f] |= (v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3)
                        best, w = v0, 0
                        if v1 > best:
                            best, w = v1, 1
                        if v2 > best:
                            best, w = v2, 2
                        if v3 > best:
                            best, w = v3, 3
                        if relu and not best > 0:
                            best, w = 0.0, 4
                        y[b, i, j, f] = best
                        if keep_arg:
                            arg[b, i, j, f] = w
        return nan.any()

    return conv3_pool_forward


def _conv3_pool_forward_one_py():
    """The Python source of the fused forward kernel for one input channel (compiled by :func:`_compile`)."""

    def conv3_pool_forward_one(xp, k, bias, relu, y, arg, keep_arg):  # pragma: no cover - compiled
        """:func:`conv3_pool_forward` for ``xp`` of one channel: the four cells' sums, the bias, the maximum and
        its winner in one loop over the filters, no accumulators in memory (1.7x faster on MNIST's layer)."""
        nb, ph, pw, nf = y.shape
        nan = np.zeros(nf, np.bool_)
        for b in range(nb):
            for i in range(ph):
                r = 2 * i
                for j in range(pw):
                    q = 2 * j
                    p00, p01, p02, p03 = xp[b, r, q, 0], xp[b, r, q + 1, 0], xp[b, r, q + 2, 0], xp[b, r, q + 3, 0]
                    p10, p11, p12, p13 = (xp[b, r + 1, q, 0], xp[b, r + 1, q + 1, 0], xp[b, r + 1, q + 2, 0],
                                          xp[b, r + 1, q + 3, 0])
                    p20, p21, p22, p23 = (xp[b, r + 2, q, 0], xp[b, r + 2, q + 1, 0], xp[b, r + 2, q + 2, 0],
                                          xp[b, r + 2, q + 3, 0])
                    p30, p31, p32, p33 = (xp[b, r + 3, q, 0], xp[b, r + 3, q + 1, 0], xp[b, r + 3, q + 2, 0],
                                          xp[b, r + 3, q + 3, 0])
                    for f in range(nf):
                        k00, k01, k02 = k[0, 0, 0, f], k[0, 1, 0, f], k[0, 2, 0, f]
                        k10, k11, k12 = k[1, 0, 0, f], k[1, 1, 0, f], k[1, 2, 0, f]
                        k20, k21, k22 = k[2, 0, 0, f], k[2, 1, 0, f], k[2, 2, 0, f]
                        v0 = (p00 * k00 + p01 * k01 + p02 * k02 + p10 * k10 + p11 * k11 + p12 * k12
                              + p20 * k20 + p21 * k21 + p22 * k22) + bias[f]
                        v1 = (p01 * k00 + p02 * k01 + p03 * k02 + p11 * k10 + p12 * k11 + p13 * k12
                              + p21 * k20 + p22 * k21 + p23 * k22) + bias[f]
                        v2 = (p10 * k00 + p11 * k01 + p12 * k02 + p20 * k10 + p21 * k11 + p22 * k12
                              + p30 * k20 + p31 * k21 + p32 * k22) + bias[f]
                        v3 = (p11 * k00 + p12 * k01 + p13 * k02 + p21 * k10 + p22 * k11 + p23 * k12
                              + p31 * k20 + p32 * k21 + p33 * k22) + bias[f]
                        nan[f] |= (v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3)
                        best, w = v0, 0
                        if v1 > best:
                            best, w = v1, 1
                        if v2 > best:
                            best, w = v2, 2
                        if v3 > best:
                            best, w = v3, 3
                        if relu and not best > 0:
                            best, w = 0.0, 4
                        y[b, i, j, f] = best
                        if keep_arg:
                            arg[b, i, j, f] = w
        return nan.any()

    return conv3_pool_forward_one


def _conv3_pool_backward_py():
    """The Python source of the fused backward kernel (compiled by :func:`_compile`)."""

    def conv3_pool_backward(g, arg, xp, dk, db):  # pragma: no cover - compiled
        """``dk += sum over windows of e_w x_patch`` and ``db += sum e`` for :func:`conv3_pool_forward`, with
        ``e = g`` at each window's winner ``w`` (0 where ``w`` is 4, the relu's zero): split into four ``e_w``
        (zero but at their own winner), the tap ``(s, t)`` of ``dk`` takes ``e_0 p[s, t] + e_1 p[s, t + 1] +
        e_2 p[s + 1, t] + e_3 p[s + 1, t + 1]`` vectorized over the filters. ``dk`` is summed per image in
        ``g``'s precision, then added into the float64 ``dk``; ``db`` is summed in float64 window by window
        (as :func:`max_pool_backward` does)."""
        nb, ph, pw, nf = g.shape
        nc = xp.shape[3]
        e0, e1, e2, e3 = np.empty(nf, g.dtype), np.empty(nf, g.dtype), np.empty(nf, g.dtype), np.empty(nf, g.dtype)
        dkb = np.empty((3, 3, nc, nf), g.dtype)
        for b in range(nb):
            dkb[:] = 0.0
            for i in range(ph):
                r = 2 * i
                for j in range(pw):
                    q = 2 * j
                    for f in range(nf):
                        v = g[b, i, j, f]
                        w = arg[b, i, j, f]
                        if w == 4:
                            v = 0.0
                        db[f] += v
                        # one statement each: a tuple assignment here stops the loop's vectorization (8x slower)
                        e0[f] = v if w == 0 else 0.0
                        e1[f] = v if w == 1 else 0.0
                        e2[f] = v if w == 2 else 0.0
                        e3[f] = v if w == 3 else 0.0
                    for c in range(nc):
                        p00, p01, p02, p03 = xp[b, r, q, c], xp[b, r, q + 1, c], xp[b, r, q + 2, c], xp[b, r, q + 3, c]
                        p10, p11, p12, p13 = (xp[b, r + 1, q, c], xp[b, r + 1, q + 1, c], xp[b, r + 1, q + 2, c],
                                              xp[b, r + 1, q + 3, c])
                        p20, p21, p22, p23 = (xp[b, r + 2, q, c], xp[b, r + 2, q + 1, c], xp[b, r + 2, q + 2, c],
                                              xp[b, r + 2, q + 3, c])
                        p30, p31, p32, p33 = (xp[b, r + 3, q, c], xp[b, r + 3, q + 1, c], xp[b, r + 3, q + 2, c],
                                              xp[b, r + 3, q + 3, c])
                        for f in range(nf):
                            u0, u1, u2, u3 = e0[f], e1[f], e2[f], e3[f]
                            dkb[0, 0, c, f] += u0 * p00 + u1 * p01 + u2 * p10 + u3 * p11
                            dkb[0, 1, c, f] += u0 * p01 + u1 * p02 + u2 * p11 + u3 * p12
                            dkb[0, 2, c, f] += u0 * p02 + u1 * p03 + u2 * p12 + u3 * p13
                            dkb[1, 0, c, f] += u0 * p10 + u1 * p11 + u2 * p20 + u3 * p21
                            dkb[1, 1, c, f] += u0 * p11 + u1 * p12 + u2 * p21 + u3 * p22
                            dkb[1, 2, c, f] += u0 * p12 + u1 * p13 + u2 * p22 + u3 * p23
                            dkb[2, 0, c, f] += u0 * p20 + u1 * p21 + u2 * p30 + u3 * p31
                            dkb[2, 1, c, f] += u0 * p21 + u1 * p22 + u2 * p31 + u3 * p32
                            dkb[2, 2, c, f] += u0 * p22 + u1 * p23 + u2 * p32 + u3 * p33
            for s in range(3):
                for t in range(3):
                    for c in range(nc):
                        for f in range(nf):
                            dk[s, t, c, f] += dkb[s, t, c, f]

    return conv3_pool_backward


def conv_pool_fits(kernel_shape: tuple, strides, dilation, groups: int, pool_size, pool_strides,
                   pool_padding: str) -> bool:
    """Does a channels-last 2D convolution and the max pooling that reads it take :func:`conv_max_pool`: a
    3x3 kernel on at most :data:`CONV_POOL_MAX_CHANNELS` channels, stride 1, no dilation, one group, then a
    "valid" 2x2 pooling of stride 2, with the kernels on? (The convolution's own padding is the caller's.)"""
    return (len(kernel_shape) == 4 and tuple(kernel_shape[:2]) == (3, 3) and kernel_shape[2] <= CONV_POOL_MAX_CHANNELS
            and tuple(strides) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1 and tuple(pool_size) == (2, 2)
            and tuple(pool_strides) == (2, 2) and pool_padding == "valid" and kernels() is not None)


def conv_max_pool(xp: np.ndarray, kernel: np.ndarray, bias=None, relu: bool = False, keep_arg: bool = True):
    """``(y, arg)``: ``y = relu?(max_pool_2x2(conv_3x3(xp, kernel) + bias))`` for the already padded
    channels-last ``xp (batch, H, W, C)`` and ``kernel (3, 3, C, F)``, computed window by window without the
    convolution's full map; ``arg`` (uint8, ``y``'s shape; None unless ``keep_arg``) is each window's first
    maximal cell, as :func:`max_pool` keeps it, or 4 where the relu zeroed the window (:func:`max_pool_backward`
    on a 2x2 pooling of stride 2 then writes zeros there, as it should). The values are the unfused path's to
    rounding (the sums run in another order), so a near-tie may pick another winner. None when the kernels do
    not apply (off, another shape or dtype, no full window) or a window holds a NaN: the caller then takes the
    unfused path."""
    fns = kernels()
    if fns is None or xp.ndim != 4 or kernel.ndim != 4 or tuple(kernel.shape[:3]) != (3, 3, xp.shape[3]) \
            or xp.dtype != kernel.dtype or xp.dtype not in (np.float32, np.float64):
        return None
    ph, pw = (xp.shape[1] - 2) // 2, (xp.shape[2] - 2) // 2
    if ph <= 0 or pw <= 0:
        return None  # the unfused path names the error
    y = scratch.empty((xp.shape[0], ph, pw, kernel.shape[3]), xp.dtype)
    arg = scratch.empty(y.shape if keep_arg else (0, 0, 0, 0), np.uint8)
    b = np.zeros(y.shape[-1], y.dtype) if bias is None else np.ascontiguousarray(bias, dtype=y.dtype)
    forward = fns["conv3_pool_forward_one" if xp.shape[3] == 1 else "conv3_pool_forward"]
    if forward(np.ascontiguousarray(xp), np.ascontiguousarray(kernel), b, relu, y, arg, keep_arg):
        return None
    return y, (arg if keep_arg else None)


def conv_max_pool_backward(g: np.ndarray, arg: np.ndarray, xp: np.ndarray, dk_out: np.ndarray | None = None):
    """``(dkernel, dbias)`` for :func:`conv_max_pool`'s output gradient ``g`` (its ``arg`` and input ``xp``):
    the convolution's output gradient is ``g`` at each window's winner (none where the relu zeroed it) and
    zero elsewhere, so ``dkernel`` sums ``g`` times the patch under the winner, ``dbias`` the masked ``g``
    (float64, per filter). ``dkernel`` is float64, or written into ``dk_out`` (any shape with its size) and that
    returned. The input's gradient is not computed (the unfused backward gives it)."""
    fns = kernels()
    dk = np.zeros((3, 3, xp.shape[3], g.shape[3]), np.float64)
    db = np.zeros(g.shape[3], np.float64)
    fns["conv3_pool_backward"](np.ascontiguousarray(g, dtype=xp.dtype), arg, np.ascontiguousarray(xp), dk, db)
    if dk_out is not None:
        np.copyto(dk_out.reshape(dk.shape), dk, casting="same_kind")
        return dk_out, db
    return dk, db


# ---------------------------------------------------------------- batch-parallel inference
def split_workers(rows: int) -> int:
    """Threads to split ``rows`` batch rows of a convolution stack over (:func:`lamina.row_split.workers`),
    or 0 (do not split, not even serially in blocks) when numba's kernels are off or absent."""
    return 0 if kernels() is None else row_split.workers(rows)
