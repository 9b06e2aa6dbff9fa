"""Optional compiled transforms of Winograd's F(4x4, 3x3) (numba, imported lazily), for ``lamina.conv_kernels``.

F(2x2, 3x3) (``lamina.conv_accel``) multiplies 16 numbers per 2x2 output tile, 4 per output; F(4x4, 3x3)
multiplies 36 per 4x4 tile, 2.25 per output, so its 36 matrix products ``(tiles, C) @ (C, F)`` do 44 % fewer
flops on maps of 8 outputs or more, at a larger rounding error (about 6x im2col's in float32 here, where
F(2x2, 3x3)'s is im2col's). With the interpolation points 0, 1, -1, 2, -2 and infinity:

    B^T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
           [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
    G   = [[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6, 1/6, -1/6], [1/24, 1/12, 1/6], [1/24, -1/12, 1/6], [0, 0, 1]]
    A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]

A tile ``Y = A^T [U . V] A`` with ``V = B^T d B`` for its 6x6 input tile ``d`` and ``U = G k G^T``. The
backward is that algorithm transposed: with ``D = A dY A^T`` per 4x4 tile of the output gradient, the kernel's
gradient is ``G^T [sum over tiles of V . D] G`` (36 products ``(C, tiles) @ (tiles, F)``) and the input tile's
``B [sum over filters of U . D] B^T`` (36 products ``(tiles, F) @ (F, C)``), added into overlapping 6x6 windows:
no 2x2-tile pass over the padded gradient as the input gradient of F(2x2, 3x3) takes. ``tests/test_conv_accel.py``
checks all three against float64 im2col.
"""

from __future__ import annotations

import numpy as np

from lamina.accel import CompiledOnce

# float32 constants: an integer literal times a float32 array element is float64 arithmetic in numba
_F2, _F4, _F5, _F8 = np.float32(2), np.float32(4), np.float32(5), np.float32(8)

WINOGRAD_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                       [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])


def _compile() -> dict:
    import numba  # optional extra (lamina[fast]), imported on first use only

    jit = numba.njit(cache=True, fastmath=False, nogil=True, error_model="numpy")
    rows_at = jit(_rows_py())  # shared by both output transforms (numba inlines a compiled function it calls)
    return {"input": jit(_input_py()), "output": jit(_output_py(rows_at)),
            "output_pool": jit(_output_pool_py(rows_at)), "grad_tiles": jit(_grad_tiles_py()),
            "input_grad": jit(_input_grad_py())}


def _input_py():
    def input_tiles(xp, b0, nb, th, tw, v):  # pragma: no cover - compiled
        """``v[6 i + k, t, c] = (B^T d B)[i, k]`` for the 6x6 tile ``d`` of image ``b0 + t // (th tw)`` at rows
        ``4 ty ..``, columns ``4 tx ..`` (``xp`` is padded so that every tile lies inside it). Short loops over
        the channels with one small scratch tile, which the compiler vectorizes."""
        nc = xp.shape[3]
        tmp = np.empty((6, 6, nc), xp.dtype)
        t = 0
        for b in range(b0, b0 + nb):
            for ty in range(th):
                r = 4 * ty
                for tx in range(tw):
                    q = 4 * tx
                    for k in range(6):  # rows: B^T d
                        for c in range(nc):
                            d0 = xp[b, r, q + k, c]
                            d1 = xp[b, r + 1, q + k, c]
                            d2 = xp[b, r + 2, q + k, c]
                            d3 = xp[b, r + 3, q + k, c]
                            d4 = xp[b, r + 4, q + k, c]
                            d5 = xp[b, r + 5, q + k, c]
                            tmp[0, k, c] = _F4 * d0 - _F5 * d2 + d4
                            tmp[1, k, c] = d3 + d4 - _F4 * (d1 + d2)
                            tmp[2, k, c] = d4 - d3 + _F4 * (d1 - d2)
                            tmp[3, k, c] = d4 - d2 + _F2 * (d3 - d1)
                            tmp[4, k, c] = d4 - d2 - _F2 * (d3 - d1)
                            tmp[5, k, c] = _F4 * d1 - _F5 * d3 + d5
                    for i in range(6):  # columns: (B^T d) B
                        for c in range(nc):
                            a0 = tmp[i, 0, c]
                            a1 = tmp[i, 1, c]
                            a2 = tmp[i, 2, c]
                            a3 = tmp[i, 3, c]
                            a4 = tmp[i, 4, c]
                            a5 = tmp[i, 5, c]
                            v[6 * i, t, c] = _F4 * a0 - _F5 * a2 + a4
                            v[6 * i + 1, t, c] = a3 + a4 - _F4 * (a1 + a2)
                            v[6 * i + 2, t, c] = a4 - a3 + _F4 * (a1 - a2)
                            v[6 * i + 3, t, c] = a4 - a2 + _F2 * (a3 - a1)
                            v[6 * i + 4, t, c] = a4 - a2 - _F2 * (a3 - a1)
                            v[6 * i + 5, t, c] = _F4 * a1 - _F5 * a3 + a5
                    t += 1

    return input_tiles


def _rows_py():
    def rows_at(m, t, tmp):  # pragma: no cover - compiled
        """``tmp (4, 6, F)`` = ``A^T m_t``, the rows of tile ``t``'s output transform (``m[6 i + k, t]`` its 6x6)."""
        nf = tmp.shape[2]
        for k in range(6):
            for f in range(nf):
                m0 = m[k, t, f]
                m1 = m[6 + k, t, f]
                m2 = m[12 + k, t, f]
                m3 = m[18 + k, t, f]
                m4 = m[24 + k, t, f]
                m5 = m[30 + k, t, f]
                tmp[0, k, f] = m0 + m1 + m2 + m3 + m4
                tmp[1, k, f] = m1 - m2 + _F2 * (m3 - m4)
                tmp[2, k, f] = m1 + m2 + _F4 * (m3 + m4)
                tmp[3, k, f] = m1 - m2 + _F8 * (m3 - m4) + m5

    return rows_at


def _output_py(rows_at):
    def output_tiles(m, b0, nb, th, tw, y):  # pragma: no cover - compiled
        """``y``'s 4x4 tile ``(ty, tx)`` of image ``b0 + ..`` is ``A^T m_t A``; cells past ``y``'s edge are dropped."""
        oh, ow, nf = y.shape[1], y.shape[2], y.shape[3]
        tmp = np.empty((4, 6, nf), m.dtype)
        t = 0
        for b in range(b0, b0 + nb):
            for ty in range(th):
                r = 4 * ty
                for tx in range(tw):
                    q = 4 * tx
                    rows_at(m, t, tmp)  # rows: A^T m
                    for i in range(min(4, oh - r)):  # columns: (A^T m) A, the cells inside y
                        yr = y[b, r + i]
                        for j in range(min(4, ow - q)):
                            out = yr[q + j]
                            for f in range(nf):
                                a1 = tmp[i, 1, f]
                                a2 = tmp[i, 2, f]
                                a3 = tmp[i, 3, f]
                                a4 = tmp[i, 4, f]
                                if j == 0:
                                    out[f] = tmp[i, 0, f] + a1 + a2 + a3 + a4
                                elif j == 1:
                                    out[f] = a1 - a2 + _F2 * (a3 - a4)
                                elif j == 2:
                                    out[f] = a1 + a2 + _F4 * (a3 + a4)
                                else:
                                    out[f] = a1 - a2 + _F8 * (a3 - a4) + tmp[i, 5, f]
                    t += 1

    return output_tiles


def _output_pool_py(rows_at):
    def output_pool_tiles(m, nb, th, tw, bias, relu, yp):  # pragma: no cover - compiled
        """:func:`output_tiles` followed by a 2x2 max pooling of stride 2, the bias and (``relu``) the relu, for
        inference: each 4x4 output tile holds four whole pooling windows, so only the pooled cells
        ``yp (nb, oh // 2, ow // 2, F)`` are written (``max(z + b) = max(z) + b``, rounding being monotonic).
        Returns True when a pooled cell is NaN (the caller then takes the unfused path, whose NaN rule it keeps)."""
        ph, pw, nf = yp.shape[1], yp.shape[2], yp.shape[3]
        tmp = np.empty((4, 6, nf), m.dtype)
        best = np.empty(nf, m.dtype)
        zero = m.dtype.type(0)
        nan = False
        t = 0
        for b in range(nb):
            for ty in range(th):
                for tx in range(tw):
                    rows_at(m, t, tmp)  # rows: A^T m
                    for i2 in range(2):
                        pr = 2 * ty + i2
                        if pr >= ph:
                            break
                        for j2 in range(2):
                            pc = 2 * tx + j2
                            if pc >= pw:
                                break
                            for f in range(nf):  # the window's four cells: rows 2 i2 + (0, 1), columns 2 j2 + (0, 1)
                                r0, r1 = tmp[2 * i2], tmp[2 * i2 + 1]
                                if j2 == 0:
                                    c00 = r0[0, f] + r0[1, f] + r0[2, f] + r0[3, f] + r0[4, f]
                                    c01 = r0[1, f] - r0[2, f] + _F2 * (r0[3, f] - r0[4, f])
                                    c10 = r1[0, f] + r1[1, f] + r1[2, f] + r1[3, f] + r1[4, f]
                                    c11 = r1[1, f] - r1[2, f] + _F2 * (r1[3, f] - r1[4, f])
                                else:
                                    c00 = r0[1, f] + r0[2, f] + _F4 * (r0[3, f] + r0[4, f])
                                    c01 = r0[1, f] - r0[2, f] + _F8 * (r0[3, f] - r0[4, f]) + r0[5, f]
                                    c10 = r1[1, f] + r1[2, f] + _F4 * (r1[3, f] + r1[4, f])
                                    c11 = r1[1, f] - r1[2, f] + _F8 * (r1[3, f] - r1[4, f]) + r1[5, f]
                                best[f] = max(max(c00, c01), max(c10, c11)) + bias[f]
                            for f in range(nf):
                                v = best[f]
                                if v != v:
                                    nan = True
                                yp[b, pr, pc, f] = max(v, zero) if relu else v
                    t += 1
        return nan

    return output_pool_tiles


def _grad_tiles_py():
    def grad_tiles(dyp, th, tw, d):  # pragma: no cover - compiled
        """``d[6 i + k, t, f] = (A g A^T)[i, k]`` for the 4x4 tile ``g`` of the output gradient ``dyp`` (zero-padded
        to whole tiles) at rows ``4 ty``, columns ``4 tx``: the gradient reaching ``U . V`` in the forward."""
        nf = dyp.shape[3]
        tmp = np.empty((6, 4, nf), dyp.dtype)
        t = 0
        for b in range(dyp.shape[0]):
            for ty in range(th):
                r = 4 * ty
                for tx in range(tw):
                    q = 4 * tx
                    for k in range(4):  # rows: A g
                        for f in range(nf):
                            g0 = dyp[b, r, q + k, f]
                            g1 = dyp[b, r + 1, q + k, f]
                            g2 = dyp[b, r + 2, q + k, f]
                            g3 = dyp[b, r + 3, q + k, f]
                            tmp[0, k, f] = g0
                            tmp[1, k, f] = g0 + g1 + g2 + g3
                            tmp[2, k, f] = g0 - g1 + g2 - g3
                            tmp[3, k, f] = g0 + _F2 * g1 + _F4 * g2 + _F8 * g3
                            tmp[4, k, f] = g0 - _F2 * g1 + _F4 * g2 - _F8 * g3
                            tmp[5, k, f] = g3
                    for i in range(6):  # columns: (A g) A^T
                        for f in range(nf):
                            a0 = tmp[i, 0, f]
                            a1 = tmp[i, 1, f]
                            a2 = tmp[i, 2, f]
                            a3 = tmp[i, 3, f]
                            d[6 * i, t, f] = a0
                            d[6 * i + 1, t, f] = a0 + a1 + a2 + a3
                            d[6 * i + 2, t, f] = a0 - a1 + a2 - a3
                            d[6 * i + 3, t, f] = a0 + _F2 * a1 + _F4 * a2 + _F8 * a3
                            d[6 * i + 4, t, f] = a0 - _F2 * a1 + _F4 * a2 - _F8 * a3
                            d[6 * i + 5, t, f] = a3
                    t += 1

    return grad_tiles


def _input_grad_py():
    def input_grad(dv, b0, nb, th, tw, dxp):  # pragma: no cover - compiled
        """Adds ``B dv_t B^T`` (6x6) for every tile ``t`` and channel into the padded input's gradient ``dxp`` at
        rows ``4 ty ..``, columns ``4 tx ..`` (neighbouring tiles overlap by two rows or columns)."""
        nc = dxp.shape[3]
        tmp = np.empty((6, 6, nc), dv.dtype)
        t = 0
        for b in range(b0, b0 + nb):
            for ty in range(th):
                r = 4 * ty
                for tx in range(tw):
                    q = 4 * tx
                    for k in range(6):  # rows: B dv
                        for c in range(nc):
                            a0 = dv[k, t, c]
                            a1 = dv[6 + k, t, c]
                            a2 = dv[12 + k, t, c]
                            a3 = dv[18 + k, t, c]
                            a4 = dv[24 + k, t, c]
                            a5 = dv[30 + k, t, c]
                            tmp[0, k, c] = _F4 * a0
                            tmp[1, k, c] = _F4 * (a2 - a1 + a5) + _F2 * (a4 - a3)
                            tmp[2, k, c] = -_F5 * a0 - _F4 * (a1 + a2) - a3 - a4
                            tmp[3, k, c] = a1 - a2 + _F2 * (a3 - a4) - _F5 * a5
                            tmp[4, k, c] = a0 + a1 + a2 + a3 + a4
                            tmp[5, k, c] = a5
                    for i in range(6):  # columns: (B dv) B^T, added in place
                        row = dxp[b - b0, r + i]
                        for c in range(nc):
                            a0 = tmp[i, 0, c]
                            a1 = tmp[i, 1, c]
                            a2 = tmp[i, 2, c]
                            a3 = tmp[i, 3, c]
                            a4 = tmp[i, 4, c]
                            a5 = tmp[i, 5, c]
                            row[q, c] += _F4 * a0
                            row[q + 1, c] += _F4 * (a2 - a1 + a5) + _F2 * (a4 - a3)
                            row[q + 2, c] += -_F5 * a0 - _F4 * (a1 + a2) - a3 - a4
                            row[q + 3, c] += a1 - a2 + _F2 * (a3 - a4) - _F5 * a5
                            row[q + 4, c] += a0 + a1 + a2 + a3 + a4
                            row[q + 5, c] += a5
                    t += 1

    return input_grad


_COMPILED = CompiledOnce(_compile)


def kernels() -> dict | None:
    """The compiled transforms, or None (numba absent, or ``LAMINA_ACCELERATE=0``)."""
    return _COMPILED.get() or None
