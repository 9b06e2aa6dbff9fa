"""Optional compiled gate arithmetic for the fused LSTM loop's backward pass (numba, imported lazily).

One LSTM step backward is a matmul and about a dozen small elementwise NumPy calls; on a batch of 64 x 64
units each call costs more in overhead than in arithmetic. ``lstm_backward`` does a step's gate arithmetic
in one compiled loop; the matmul stays NumPy's (BLAS). The forward step stays NumPy's too: its sigmoids and
tanh are faster in NumPy's vectorized loops than as scalar calls in a compiled one.

``gru_backward`` does the same for a ``reset_after`` GRU step.

Used only for ``activation="tanh"`` with ``recurrent_activation="sigmoid"`` (the defaults) on float32 or
float64, when numba is installed (the ``fast`` extra) and ``LAMINA_ACCELERATE`` is not ``0``. The results
agree with the NumPy path to rounding (``tests/test_recurrent.py`` checks both ways against each other);
``exp`` and ``tanh`` come from a different math library, so not bit for bit.
"""

from __future__ import annotations

import os

import numpy as np

_KERNELS: dict | None = None


def _compile() -> dict:
    import numba  # optional extra (lamina[fast]), imported on first use only

    # Serial on purpose, as the optimizers' kernels: parallel threads would fight OpenBLAS's for the cores.
    @numba.njit(cache=True, fastmath=False, nogil=True, error_model="numpy")
    def lstm_backward(z, prev_c, act_c, dh, dc_in, dz, dc_out):  # pragma: no cover - compiled
        """Gradients of one step: ``dz`` for the gates' pre-activations, ``dc_out`` for ``c_{t-1}``."""
        units = prev_c.shape[1]
        for b in range(z.shape[0]):
            for k in range(units):
                i = z[b, k]
                f = z[b, units + k]
                o = z[b, 2 * units + k]
                g = z[b, 3 * units + k]
                a = act_c[b, k]
                dhk = dh[b, k]
                dc = dc_in[b, k] + dhk * o * (1.0 - a * a)
                dz[b, k] = dc * g * (i * (1.0 - i))
                dz[b, units + k] = dc * prev_c[b, k] * (f * (1.0 - f))
                dz[b, 2 * units + k] = dhk * a * (o * (1.0 - o))
                dz[b, 3 * units + k] = dc * i * (1.0 - g * g)
                dc_out[b, k] = dc * f

    @numba.njit(cache=True, fastmath=False, nogil=True, error_model="numpy")
    def gru_backward(zr, hh, prev, inner_h, dh, dz, di, d_prev):  # pragma: no cover - compiled
        """Gradients of one ``reset_after`` GRU step: ``dz`` for the gates' pre-activations (z, r, hh), ``di``
        for the recurrent projection ``h_{t-1} @ U + b'`` and ``d_prev`` the direct part ``dh * z``."""
        units = prev.shape[1]
        for b in range(zr.shape[0]):
            for k in range(units):
                z = zr[b, k]
                r = zr[b, units + k]
                a = hh[b, k]
                dhk = dh[b, k]
                d_z = dhk * (prev[b, k] - a) * (z * (1.0 - z))
                d_h = dhk * (1.0 - z) * (1.0 - a * a)
                d_r = d_h * inner_h[b, k] * (r * (1.0 - r))
                dz[b, k] = d_z
                dz[b, units + k] = d_r
                dz[b, 2 * units + k] = d_h
                di[b, k] = d_z
                di[b, units + k] = d_r
                di[b, 2 * units + k] = d_h * r
                d_prev[b, k] = dhk * z

    return {"lstm_backward": lstm_backward, "gru_backward": gru_backward}


def kernels(dtype) -> dict | None:
    """The compiled LSTM and GRU kernels for arrays of ``dtype``, or None (numba absent, switched off, other dtype)."""
    global _KERNELS
    if np.dtype(dtype) not in (np.float32, np.float64):
        return None
    if os.environ.get("LAMINA_ACCELERATE", "1").lower() in ("0", "false", "no", "off"):
        return None
    if _KERNELS is None:
        try:
            _KERNELS = _compile()
        except ImportError:
            _KERNELS = {}
    return _KERNELS or None
