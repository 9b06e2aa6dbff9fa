"""Optional compiled transforms of Winograd's F(4x4, 3x3) (numba, imported lazily), for ``lamina.conv_kernels``.

F(2x2, 3x3) (``lamina.conv_accel``) multiplies 16 numbers per 2x2 output tile, 4 per output; F(4x4, 3x3)
multiplies 36 per 4x4 tile, 2.25 per output, so its 36 matrix products ``(tiles, C) @ (C, F)`` do 44 % fewer
flops on maps of 8 outputs or more, at a larger rounding error (about 6x im2col's in float32 here, where
F(2x2, 3x3)'s is im2col's). With the interpolation points 0, 1, -1, 2, -2 and infinity:

    B^T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
           [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
    G   = [[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6, 1/6, -1/6], [1/24, 1/12, 1/6], [1/24, -1/12, 1/6], [0, 0, 1]]
    A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]

A tile ``Y = A^T [U . V] A`` with ``V = B^T d B`` for its 6x6 input tile ``d`` and ``U = G k G^T``
(``tests/test_conv_accel.py`` checks the result against float64 im2col).
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
    return {"input": jit(_input_py()), "output": jit(_output_py())}


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


def _output_py():
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
                    for k in range(6):  # rows: A^T m
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


_COMPILED = CompiledOnce(_compile)


def kernels() -> dict | None:
    """The compiled transforms, or None (numba absent, or ``LAMINA_ACCELERATE=0``)."""
    return _COMPILED.get() or None
