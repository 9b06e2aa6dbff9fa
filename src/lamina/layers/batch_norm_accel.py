"""Optional compiled batch normalization in training (numba, imported lazily): channels-last rows ``(n, C)``.

NumPy's form of a training step's batch normalization is memory-bound: the mean, the centred copy, the
variance, the scaled copy, gamma and beta are each a pass over a feature map (a convnet's first map is
16 MB at batch 64), and the backward keeps ``xhat`` and makes four more. Here the forward is two passes
(the per-channel sums, then ``y``) and the backward two (``sum g`` and ``sum g (x - mean)``, then ``dx``);
``xhat`` is never stored, since the backward recomputes ``x - mean`` from ``x``, which the layer before
keeps anyway.

    forward:  mean = sum x / n,  var = sum (x - mean)^2 / n,  y = gamma (x - mean) / sqrt(var + eps) + beta
    backward: dbeta = sum g,  dgamma = s sum g (x - mean),  with s = 1 / sqrt(var + eps)
              dx = gamma s (g - dbeta / n - (x - mean) s^2 sum g (x - mean) / n)

The sums accumulate in float64, shifted by the first row (``var = E[(x - k)^2] - E[x - k]^2``, exact in
float64 for feature maps whose mean is far from zero), so they are more accurate than the float32 NumPy
path's (``tests/test_batch_norm_accel.py`` compares both with float64). Used for float32 and float64 when
numba is installed (the ``fast`` extra) and ``LAMINA_ACCELERATE`` is not ``0``.
"""

from __future__ import annotations

import numpy as np

from lamina.accel import CompiledOnce


def _compile() -> dict:
    import numba  # optional extra (lamina[fast]), imported on first use only

    jit = numba.njit(cache=True, fastmath=False, nogil=True, error_model="numpy")
    return {"forward": jit(_forward_py()), "backward": jit(_backward_py())}


def _forward_py():
    def forward(x2, gamma, beta, epsilon, y):  # pragma: no cover - compiled
        """``y`` (written) and ``(mean, var, s)`` in float64 for the rows ``x2 (n, C)``."""
        n, channels = x2.shape
        shift = x2[0].astype(np.float64)
        total, squares = np.zeros(channels), np.zeros(channels)
        for i in range(n):  # one short loop over the channels per row: the compiler vectorizes it
            row = x2[i]
            for c in range(channels):
                d = row[c] - shift[c]
                total[c] += d
                squares[c] += d * d
        offset = total / n
        mean = shift + offset
        var = np.maximum(squares / n - offset * offset, 0.0)
        s = 1.0 / np.sqrt(var + epsilon)
        scale, centre, shift_out = (gamma * s).astype(x2.dtype), mean.astype(x2.dtype), beta.astype(x2.dtype)
        for i in range(n):
            row, out = x2[i], y[i]
            for c in range(channels):
                out[c] = (row[c] - centre[c]) * scale[c] + shift_out[c]
        return mean, var, s

    return forward


def _backward_py():
    def backward(g2, x2, mean, s, gamma, dx, need_x):  # pragma: no cover - compiled
        """``(dgamma, dbeta)`` in float64; ``dx`` written when ``need_x``."""
        n, channels = x2.shape
        centre = mean.astype(x2.dtype)
        sum_g, sum_gx = np.zeros(channels), np.zeros(channels)
        for i in range(n):
            grow, row = g2[i], x2[i]
            for c in range(channels):
                gv = grow[c]
                sum_g[c] += gv
                sum_gx[c] += gv * (row[c] - centre[c])
        if need_x:
            a = (gamma * s).astype(x2.dtype)
            b = (-sum_g / n).astype(x2.dtype)
            k = (-sum_gx * s * s / n).astype(x2.dtype)
            for i in range(n):
                grow, row, out = g2[i], x2[i], dx[i]
                for c in range(channels):
                    out[c] = a[c] * (grow[c] + b[c] + k[c] * (row[c] - centre[c]))
        return sum_gx * s, sum_g

    return backward


_COMPILED = CompiledOnce(_compile)


def train_channels_last(x2: np.ndarray, gamma, beta, epsilon: float, need_x: bool):
    """``(y2, mean, var, vjp)`` of a training batch normalization of the C-contiguous rows ``x2 (n, C)``
    (float32 or float64, n >= 1), ``vjp(g2) -> (dx2 or None, dgamma, dbeta)`` in ``x2``'s dtype; None when
    the compiled kernels are off or absent (the caller takes the NumPy path)."""
    fns = _COMPILED.get()
    if not fns:
        return None
    dtype, channels = x2.dtype, x2.shape[1]
    gamma64 = np.ones(channels) if gamma is None else np.asarray(gamma, np.float64)
    beta64 = np.zeros(channels) if beta is None else np.asarray(beta, np.float64)
    y2 = np.empty_like(x2)
    mean, var, s = fns["forward"](x2, gamma64, beta64, float(epsilon), y2)

    def vjp(g):
        g2 = np.ascontiguousarray(np.asarray(g, dtype).reshape(-1, channels))
        dx2 = np.empty_like(x2) if need_x else np.empty((0, channels), dtype)
        dgamma, dbeta = fns["backward"](g2, x2, mean, s, gamma64, dx2, need_x)
        return (dx2 if need_x else None), dgamma.astype(dtype), dbeta.astype(dtype)

    return y2, mean.astype(dtype), var.astype(dtype), vjp
