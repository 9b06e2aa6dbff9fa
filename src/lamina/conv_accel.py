"""Optional compiled kernels for convnets (numba, imported lazily): max pooling with the window's winner kept.

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

Also here: Winograd's transforms (used by ``lamina.conv_kernels``) and the gate of the batch-parallel
inference of Sequential's convolution stacks (:func:`inference_workers`; the split is :mod:`lamina.row_split`).
"""

from __future__ import annotations

import math

import numpy as np

from lamina import row_split
from lamina.accel import CompiledOnce


def _compile() -> dict:
    import numba  # optional extra (lamina[fast]), imported on first use only

    # Serial on purpose, as the optimizers' kernels: parallel threads would fight OpenBLAS's for the cores.
    jit = numba.njit(cache=True, fastmath=False, nogil=True, error_model="numpy")
    return {"pool_forward": jit(_pool_forward_py()), "pool_backward": jit(_pool_backward_py()),
            "winograd_input": jit(_winograd_input_py()), "winograd_output": jit(_winograd_output_py()),
            "winograd_grad_tiles": jit(_winograd_grad_tiles_py())}


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
    y = np.empty((z2.shape[0], *out, z2.shape[-1]), z.dtype)
    arg = np.empty(y.shape if keep_arg else (0, 0, 0, 0), np.uint8)
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
    dz = np.empty(z2_shape, y.dtype) if exact else np.zeros(z2_shape, y.dtype)
    db = np.zeros(z2_shape[-1], np.float64)
    fns["pool_backward"](g2, _as_2d(arg), _as_2d(y), relu, *pool2, *strides2, disjoint, dz, db)
    return dz.reshape(z_shape), db


# ---------------------------------------------------------------- batch-parallel inference
def inference_workers(rows: int) -> int:
    """Threads to split ``rows`` inference rows of a convolution stack over (:func:`lamina.row_split.workers`),
    or 0 (do not split, not even serially in blocks) when numba's kernels are off or absent."""
    return 0 if kernels() is None else row_split.workers(rows)
