"""Optional compiled gate arithmetic for the fused LSTM and GRU loops (numba, imported lazily).

One LSTM step is a matmul and about a dozen small elementwise NumPy calls; on a batch of 64 x 64 units each
call costs more in overhead than in arithmetic. ``lstm_forward`` and ``lstm_backward`` do a step's gate
arithmetic (forward: the sigmoid and tanh gates, the cell and the output; backward: the gates' pre-activation
gradients) in one compiled loop each; the matmuls stay NumPy's (its BLAS, under its thread settings).
``lstm_sequence`` / ``lstm_sequence_backward`` (and ``gru_sequence`` / ``gru_sequence_backward`` for a
``reset_after`` GRU) run every step of a sequence in one call, calling that same BLAS (``blas_gemm``) from the
compiled loop, so no Python runs between steps; their ``*_sequence_infer`` twins (no tape: inference) keep
nothing for a backward pass. ``gru_backward`` does the backward gate arithmetic of one ``reset_after`` GRU step;
``scatter_add_rows`` is ``Embedding``'s gradient; ``matmul_bias`` is the input projection ``x @ W + b`` as one
BLAS call.

The compiled loops vectorize (SIMD) only on arithmetic: ``math.tanh`` is a scalar libm call, many times
slower than NumPy's vectorized ``tanh``. So in float32 ``tanh`` is a rational function, odd degree-13 over
even degree-6 polynomial on [-7.9053, 7.9053] (beyond it the value there, 1 to float32 rounding; NaN stays
NaN), the minimax form common to CPU math libraries (Eigen's, XLA's), within 4e-7 of the exact tanh;
``sigmoid(x) = tanh(x / 2) / 2 + 1 / 2``. float64 uses ``math.tanh`` (exact to rounding, slower).

Used only for ``activation="tanh"`` with ``recurrent_activation="sigmoid"`` (the defaults) on float32 or
float64, when numba is installed (the ``fast`` extra) and ``LAMINA_ACCELERATE`` is not ``0``. The results
agree with the NumPy path to rounding in float64 and to 1e-6 in float32 (``tests/test_recurrent.py`` checks
both ways against each other).
"""

from __future__ import annotations

import math
import os

import numpy as np

from lamina.accel import CompiledOnce, enabled

# Exact float32 constants: with a float32 array, a Python float in the arithmetic would make it float64.
_ONE, _HALF = np.float32(1.0), np.float32(0.5)
_CONTRACT = {"contract"}  # the one fast-math liberty taken: a * b + c as one fused multiply-add (no NaN/inf
# assumptions, no reassociation)
_CLIP = np.float32(7.90531110763549805)  # |x| beyond which tanh(x) is 1 to float32 rounding
_P1, _P3, _P5, _P7, _P9, _P11, _P13 = (np.float32(v) for v in (
    4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
    -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16))
_Q0, _Q2, _Q4, _Q6 = (np.float32(v) for v in (
    4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06))


def _compile() -> dict:
    """dtype -> the compiled kernels for arrays of that dtype (float32: the rational tanh; float64: libm's)."""
    import numba  # optional extra (lamina[fast]), imported on first use only

    shared = _others(numba)
    out = {}
    for dtype, tanh in _tanh_functions(numba).items():
        kernels = _lstm_steps(numba, tanh)
        kernels.update(_lstm_sequences(numba, kernels["lstm_forward"], kernels["lstm_backward"]))
        kernels["lstm_sequence_infer"] = _lstm_inference(numba, tanh)
        kernels.update(_gru_sequences(numba, tanh, shared["gru_backward"]))
        out[dtype] = {**kernels, **shared}
    return out


def _tanh_functions(numba) -> dict:
    """dtype -> the compiled loops' tanh. Passed into the kernels' factories rather than dispatched on type
    inside them: numba inlines, fuses and vectorizes a plain compiled function it calls (through a typed
    ``overload`` the same loop ran 3-4x slower)."""
    # Fused multiply-adds (``_CONTRACT``): the polynomials 4x faster, and rounded once instead of twice.
    @numba.njit(error_model="numpy", fastmath=_CONTRACT)
    def rational_tanh(x):  # pragma: no cover - compiled
        y = min(max(x, -_CLIP), _CLIP)
        y2 = y * y
        p = y * (_P1 + y2 * (_P3 + y2 * (_P5 + y2 * (_P7 + y2 * (_P9 + y2 * (_P11 + y2 * _P13))))))
        q = _Q0 + y2 * (_Q2 + y2 * (_Q4 + y2 * _Q6))
        return p / q if x == x else x  # NaN in, NaN out (the clip would hide it)

    @numba.njit(error_model="numpy")
    def libm_tanh(x):  # pragma: no cover - compiled
        return math.tanh(x)

    return {np.dtype(np.float32): rational_tanh, np.dtype(np.float64): libm_tanh}


def _lstm_steps(numba, tanh) -> dict:
    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def lstm_forward(z, zx, h, c, prev_h, prev_c, act_c, h_new, c_new):  # pragma: no cover - compiled
        """One step after ``z = h @ recurrent_kernel``: ``z += zx`` activated in place (gate blocks i, f, o
        sigmoid, c tanh), ``c_new = f * c + i * g``, ``act_c = tanh(c_new)``, ``h_new = o * act_c``; ``h`` and
        ``c`` copied to ``prev_h`` and ``prev_c`` for the backward pass."""
        # Short loops over one row and few arrays each, from index 0: LLVM vectorizes (SIMD) a loop only when
        # it can check at run time that its arrays do not overlap, and gives up beyond a handful of them or on
        # some offset ranges (2-6x slower here when it did).
        units = c.shape[1]
        for b in range(z.shape[0]):
            zb, xb, cb, cn, ac = z[b], zx[b], c[b], c_new[b], act_c[b]
            for k in range(units):
                prev_h[b, k] = h[b, k]
            for k in range(units):
                prev_c[b, k] = cb[k]
            for k in range(3 * units):
                zb[k] = _HALF * tanh(_HALF * (zb[k] + xb[k])) + _HALF  # sigmoid
            zg, xg = zb[3 * units:], xb[3 * units:]
            for k in range(units):
                zg[k] = tanh(zg[k] + xg[k])
            zi, zf, zo = zb[:units], zb[units:2 * units], zb[2 * units:3 * units]
            for k in range(units):
                cn[k] = zf[k] * cb[k] + zi[k] * zg[k]
            for k in range(units):
                ac[k] = tanh(cn[k])
            hb = h_new[b]
            for k in range(units):
                hb[k] = zo[k] * ac[k]

    return {"lstm_forward": lstm_forward, "lstm_backward": _lstm_backward(numba)}


def _lstm_backward(numba):
    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def lstm_backward(z, prev_c, act_c, dh, dc_in, dz, dc_out):  # pragma: no cover - compiled
        """Gradients of one step: ``dz`` for the gates' pre-activations, ``dc_out`` for ``c_{t-1}``."""
        units = prev_c.shape[1]
        for b in range(z.shape[0]):  # loops over few arrays each, as in lstm_forward
            zb, dzb, dc, ac, dhb = z[b], dz[b], dc_out[b], act_c[b], dh[b]
            zi, zf, zo, zg = zb[:units], zb[units:2 * units], zb[2 * units:3 * units], zb[3 * units:]
            for k in range(units):
                dc[k] = dhb[k] * zo[k] * (_ONE - ac[k] * ac[k])
            dcb = dc_in[b]
            for k in range(units):
                dc[k] += dcb[k]
            dzo = dzb[2 * units:3 * units]
            for k in range(units):
                dzo[k] = dhb[k] * ac[k] * (zo[k] * (_ONE - zo[k]))
            dzi = dzb[:units]
            for k in range(units):
                dzi[k] = dc[k] * zg[k] * (zi[k] * (_ONE - zi[k]))
            dzf, pc = dzb[units:2 * units], prev_c[b]
            for k in range(units):
                dzf[k] = dc[k] * pc[k] * (zf[k] * (_ONE - zf[k]))
            dzg = dzb[3 * units:]
            for k in range(units):
                dzg[k] = dc[k] * zi[k] * (_ONE - zg[k] * zg[k])
            for k in range(units):
                dc[k] *= zf[k]

    return lstm_backward


def _lstm_sequences(numba, lstm_forward, lstm_backward) -> dict:
    # The whole sequence in one compiled call, when NumPy's own BLAS is reachable (``blas_gemm``): no Python
    # between steps. ``gemm`` is its ``cblas_?gemm`` (row-major; ``one``/``zero`` its alpha/beta, typed as the
    # arrays), passed as an argument so that the compiled code holds no address and can be cached.

    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def lstm_sequence(gemm, one, zero, xp, rk, h, c, gates, prev_h, prev_c, act_c, outputs,
                      keep):  # pragma: no cover - compiled
        """Every step of ``lstm_forward`` after its ``z = h @ rk``; ``h`` and ``c`` (the initial states, the
        kernel's own copies) end as the final states. ``outputs`` (T or 0, batch, units) gets every ``h``; the
        step buffers have T slots with ``keep``, else 2 used in turn."""
        batch, units = h.shape
        width = 4 * units
        h_new, c_new = np.empty_like(h), np.empty_like(c)
        for t in range(xp.shape[0]):
            s = t if keep else t & 1
            z = gates[s]
            gemm(101, 111, 111, batch, width, units, one, h.ctypes.data, units, rk.ctypes.data, width, zero,
                 z.ctypes.data, width)  # row-major z = h @ rk
            lstm_forward(z, xp[t], h, c, prev_h[s], prev_c[s], act_c[s], h_new, c_new)
            if outputs.shape[0]:
                outputs[t] = h_new
            h, h_new = h_new, h
            c, c_new = c_new, c
        return h, c

    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def lstm_sequence_backward(gemm, one, zero, rk_t, gates, prev_c, act_c, d_outputs, dh, dc,
                               dz):  # pragma: no cover - compiled
        """Backpropagation through every step of ``lstm_sequence``: ``dz`` (T, batch, 4 units) gets the gates'
        pre-activation gradients; ``dh``, ``dc`` (the final states' gradients, the kernel's own copies) end as
        the initial states'. ``d_outputs`` (T or 0, batch, units): the gradients of every ``h``. ``rk_t``: the
        recurrent kernel transposed, C-contiguous (BLAS is ~1.5x faster on it than on ``rk`` read transposed)."""
        batch, units = dh.shape
        width = 4 * units
        dh_prev, dc_prev = np.empty_like(dh), np.empty_like(dc)
        for t in range(dz.shape[0] - 1, -1, -1):
            if d_outputs.shape[0]:
                dh += d_outputs[t]
            lstm_backward(gates[t], prev_c[t], act_c[t], dh, dc, dz[t], dc_prev)
            gemm(101, 111, 111, batch, units, width, one, dz[t].ctypes.data, width, rk_t.ctypes.data, units, zero,
                 dh_prev.ctypes.data, units)  # row-major dh_prev = dz_t @ rk_t
            dh, dh_prev = dh_prev, dh
            dc, dc_prev = dc_prev, dc
        return dh, dc

    return {"lstm_sequence": lstm_sequence, "lstm_sequence_backward": lstm_sequence_backward}


def _lstm_inference(numba, tanh):
    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def lstm_infer_step(z, zx, c, h):  # pragma: no cover - compiled
        """``lstm_forward``'s arithmetic with nothing kept for a backward pass: ``c`` and ``h`` overwritten with
        the new states (``z = h @ rk`` is already computed, so ``h`` is free)."""
        units = c.shape[1]
        for b in range(z.shape[0]):  # loops over few arrays each, as in lstm_forward
            zb, xb, cb, hb = z[b], zx[b], c[b], h[b]
            for k in range(3 * units):
                zb[k] = _HALF * tanh(_HALF * (zb[k] + xb[k])) + _HALF  # sigmoid
            zg, xg = zb[3 * units:], xb[3 * units:]
            for k in range(units):
                zg[k] = tanh(zg[k] + xg[k])
            zi, zf, zo = zb[:units], zb[units:2 * units], zb[2 * units:3 * units]
            for k in range(units):
                cb[k] = zf[k] * cb[k] + zi[k] * zg[k]
            for k in range(units):
                hb[k] = zo[k] * tanh(cb[k])

    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def lstm_sequence_infer(gemm, one, zero, xp, rk, h, c, outputs):  # pragma: no cover - compiled
        """``lstm_sequence`` for inference: the same steps, no step buffers; ``h`` and ``c`` (the kernel's own
        copies of the initial states) end as the final states."""
        batch, units = h.shape
        width = 4 * units
        z = np.empty((batch, width), dtype=h.dtype)
        for t in range(xp.shape[0]):
            gemm(101, 111, 111, batch, width, units, one, h.ctypes.data, units, rk.ctypes.data, width, zero,
                 z.ctypes.data, width)  # row-major z = h @ rk
            lstm_infer_step(z, xp[t], c, h)
            if outputs.shape[0]:
                outputs[t] = h

    return lstm_sequence_infer


def _gru_sequences(numba, tanh, gru_backward) -> dict:
    # As ``_lstm_sequences``, for a ``reset_after`` GRU (gate blocks z, r, hh; the recurrent bias ``rb`` added
    # to ``h @ rk`` before the reset gate multiplies its hh block).

    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def gru_forward(inner, zx, rb, h, zr, hh, inner_h, prev, h_new):  # pragma: no cover - compiled
        """One step after ``inner = h @ rk``: ``zr = sigmoid(zx + (inner + rb))`` on the z, r blocks,
        ``inner_h = inner + rb`` on the hh block, ``hh = tanh(r * inner_h + zx)``, ``h_new = (h - hh) * z + hh``;
        ``h`` copied to ``prev`` for the backward pass."""
        units = h.shape[1]
        for b in range(h.shape[0]):  # short loops over few arrays each (see lstm_forward)
            ib, xb, zrb, hb, ihb, hhb = inner[b], zx[b], zr[b], h[b], inner_h[b], hh[b]
            for k in range(units):
                prev[b, k] = hb[k]
            for k in range(2 * units):
                zrb[k] = _HALF * tanh(_HALF * (xb[k] + (ib[k] + rb[k]))) + _HALF  # sigmoid
            for k in range(units):
                ihb[k] = ib[2 * units + k] + rb[2 * units + k]
            for k in range(units):
                hhb[k] = tanh(zrb[units + k] * ihb[k] + xb[2 * units + k])
            hn = h_new[b]
            for k in range(units):
                hn[k] = (hb[k] - hhb[k]) * zrb[k] + hhb[k]

    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def gru_sequence(gemm, one, zero, xp, rk, rb, h, zr, hh, inner_h, prev, outputs,
                     keep):  # pragma: no cover - compiled
        """Every step of ``gru_forward`` after its ``inner = h @ rk``; ``h`` (the initial state, the kernel's own
        copy) ends as the final state. ``outputs`` (T or 0, batch, units) gets every ``h``; the step buffers have
        T slots with ``keep``, else 2 used in turn."""
        batch, units = h.shape
        width = 3 * units
        inner = np.empty((batch, width), dtype=h.dtype)
        h_new = np.empty_like(h)
        for t in range(xp.shape[0]):
            s = t if keep else t & 1
            gemm(101, 111, 111, batch, width, units, one, h.ctypes.data, units, rk.ctypes.data, width, zero,
                 inner.ctypes.data, width)  # row-major inner = h @ rk
            gru_forward(inner, xp[t], rb, h, zr[s], hh[s], inner_h[s], prev[s], h_new)
            if outputs.shape[0]:
                outputs[t] = h_new
            h, h_new = h_new, h
        return h

    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def gru_sequence_backward(gemm, one, zero, rk_t, zr, hh, inner_h, prev, d_outputs, dh, dz,
                              d_inner):  # pragma: no cover - compiled
        """Backpropagation through every step of ``gru_sequence``: ``dz`` (T, batch, 3 units) gets the gates'
        pre-activation gradients, ``d_inner`` those of every ``h @ rk + rb``; ``dh`` (the final state's gradient,
        the kernel's own copy) ends as the initial state's. ``rk_t``: the recurrent kernel transposed, C-contiguous."""
        batch, units = dh.shape
        width = 3 * units
        dh_prev = np.empty_like(dh)
        for t in range(dz.shape[0] - 1, -1, -1):
            if d_outputs.shape[0]:
                dh += d_outputs[t]
            gru_backward(zr[t], hh[t], prev[t], inner_h[t], dh, dz[t], d_inner[t], dh_prev)
            gemm(101, 111, 111, batch, units, width, one, d_inner[t].ctypes.data, width, rk_t.ctypes.data, units,
                 one, dh_prev.ctypes.data, units)  # row-major dh_prev += d_inner_t @ rk_t
            dh, dh_prev = dh_prev, dh
        return dh

    return {"gru_sequence": gru_sequence, "gru_sequence_backward": gru_sequence_backward,
            "gru_sequence_infer": _gru_inference(numba, tanh)}


def _gru_inference(numba, tanh):
    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def gru_infer_step(inner, zx, rb, h):  # pragma: no cover - compiled
        """``gru_forward``'s arithmetic with nothing kept for a backward pass: the gates overwrite ``inner``
        (z, r, then hh), the new state ``h``."""
        units = h.shape[1]
        for b in range(h.shape[0]):  # short loops over few arrays each (see lstm_forward)
            ib, xb, hb = inner[b], zx[b], h[b]
            for k in range(2 * units):
                ib[k] = _HALF * tanh(_HALF * (xb[k] + (ib[k] + rb[k]))) + _HALF  # sigmoid
            ir, ihh, xh = ib[units:2 * units], ib[2 * units:], xb[2 * units:]
            rh = rb[2 * units:]
            for k in range(units):
                ihh[k] = tanh(ir[k] * (ihh[k] + rh[k]) + xh[k])
            for k in range(units):
                hb[k] = (hb[k] - ihh[k]) * ib[k] + ihh[k]

    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def gru_sequence_infer(gemm, one, zero, xp, rk, rb, h, outputs):  # pragma: no cover - compiled
        """``gru_sequence`` for inference: the same steps, no step buffers; ``h`` (the kernel's own copy of the
        initial state) ends as the final state."""
        batch, units = h.shape
        width = 3 * units
        inner = np.empty((batch, width), dtype=h.dtype)
        for t in range(xp.shape[0]):
            gemm(101, 111, 111, batch, width, units, one, h.ctypes.data, units, rk.ctypes.data, width, zero,
                 inner.ctypes.data, width)  # row-major inner = h @ rk
            gru_infer_step(inner, xp[t], rb, h)
            if outputs.shape[0]:
                outputs[t] = h

    return gru_sequence_infer


def _others(numba) -> dict:
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
                d_z = dhk * (prev[b, k] - a) * (z * (_ONE - z))
                d_h = dhk * (_ONE - z) * (_ONE - a * a)
                d_r = d_h * inner_h[b, k] * (r * (_ONE - r))
                dz[b, k] = d_z
                dz[b, units + k] = d_r
                dz[b, 2 * units + k] = d_h
                di[b, k] = d_z
                di[b, units + k] = d_r
                di[b, 2 * units + k] = d_h * r
                d_prev[b, k] = dhk * z

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def scatter_add_rows(ids, g, out):  # pragma: no cover - compiled
        """``out[ids[n]] += g[n]`` for every n in order (``np.add.at``'s sums, bit for bit): the gradient of an
        embedding lookup, which feeds the recurrent layers."""
        for n in range(ids.shape[0]):
            row, gn = out[ids[n]], g[n]
            for k in range(gn.shape[0]):
                row[k] += gn[k]

    return {"gru_backward": gru_backward, "scatter_add_rows": scatter_add_rows}


_GEMM: dict = {}


def blas_gemm(dtype):
    """``(gemm, one, zero)``: the ``cblas_sgemm`` / ``cblas_dgemm`` of the BLAS NumPy itself runs on (the
    OpenBLAS its wheels bundle, 64-bit integers), as a ctypes function, so that a compiled loop multiplies
    with NumPy's library under NumPy's thread settings; None where it is not found (another NumPy build:
    the loops then run step by step, each matmul NumPy's)."""
    dtype = np.dtype(dtype)
    if dtype not in _GEMM:
        _GEMM[dtype] = _find_gemm(dtype)
    return _GEMM[dtype]


def _find_gemm(dtype):
    import ctypes  # lazy: only with the compiled loops
    import glob  # lazy: as above

    root = os.path.dirname(os.path.dirname(np.__file__))
    scalar = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    name = "scipy_cblas_sgemm64_" if dtype == np.float32 else "scipy_cblas_dgemm64_"
    i32, i64, ptr = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
    prototype = ctypes.CFUNCTYPE(None, i32, i32, i32, i64, i64, i64, scalar, ptr, i64, ptr, i64, scalar, ptr, i64)
    for path in sorted(glob.glob(os.path.join(root, "numpy.libs", "libscipy_openblas64_*"))
                       + glob.glob(os.path.join(root, "numpy", ".dylibs", "libscipy_openblas64_*"))):
        try:
            address = ctypes.cast(getattr(ctypes.CDLL(path), name), ctypes.c_void_p).value
        except (OSError, AttributeError):
            continue
        return prototype(address), dtype.type(1), dtype.type(0)
    return None


def matmul_bias(x, w, bias):
    """``x @ w + bias`` for C-contiguous 2-D ``x``, ``w`` and 1-D ``bias`` of one float dtype, as one BLAS call
    (the bias broadcast into the output first, then ``gemm`` with beta 1): one pass over the (often large)
    output fewer than a matmul and an add. None where that BLAS is not reachable or the arrays don't fit."""
    dtype = x.dtype
    if not (enabled() and dtype in (np.float32, np.float64) and w.dtype == dtype and bias.dtype == dtype
            and x.ndim == 2 and w.ndim == 2 and bias.shape == (w.shape[1],) and x.shape[1] == w.shape[0]
            and x.flags.c_contiguous and w.flags.c_contiguous and 0 not in x.shape + w.shape):
        return None
    gemm = blas_gemm(dtype)
    if gemm is None:
        return None
    gemm, one, _ = gemm
    (m, k), n = x.shape, w.shape[1]
    out = np.empty((m, n), dtype=dtype)
    out[...] = bias
    gemm(101, 111, 111, m, n, k, one, x.ctypes.data, k, w.ctypes.data, n, one, out.ctypes.data, n)
    return out


_COMPILED = CompiledOnce(_compile)


def kernels(dtype) -> dict | None:
    """The compiled LSTM and GRU kernels for arrays of ``dtype``, or None (numba absent, switched off, other dtype)."""
    compiled = _COMPILED.get() if np.dtype(dtype) in (np.float32, np.float64) else None
    return compiled.get(np.dtype(dtype)) if compiled else None
