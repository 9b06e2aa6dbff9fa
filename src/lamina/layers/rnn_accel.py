"""Optional compiled gate arithmetic for the fused LSTM and GRU loops (numba, imported lazily).

One LSTM step is a matmul and about a dozen small elementwise NumPy calls; on a batch of 64 x 64 units each
call costs more in overhead than in arithmetic. ``lstm_forward`` and ``lstm_backward`` do a step's gate
arithmetic (forward: the sigmoid and tanh gates, the cell and the output; backward: the gates' pre-activation
gradients) in one compiled loop each; the matmuls stay NumPy's (its BLAS, under its thread settings).
``lstm_sequence`` / ``lstm_sequence_backward`` (and ``gru_sequence`` / ``gru_sequence_backward`` for a
``reset_after`` GRU) run every step of a sequence in one call, calling that same BLAS (``blas_gemm``) from the
compiled loop, so no Python runs between steps; their ``*_sequence_infer`` twins (no tape: inference) keep
nothing for a backward pass, and the ``*_sequence_infer_table`` ones read each step's projected inputs as rows
of a table by token id (an Embedding's table times the kernel: ``layers.rnn.EmbeddingFedRNN``);
``lstm_train_forward`` / ``lstm_train_backward`` are the training loops of ``layers.lstm_training``. The sequence
loops work on a block ``lo:hi`` of the batch rows, so that blocks run on threads at once (``in_row_blocks``,
:mod:`lamina.row_split`): a recurrence never mixes rows. ``gru_backward`` does the backward gate arithmetic of
one ``reset_after`` GRU step; ``scatter_add_rows`` is ``Embedding``'s gradient; ``matmul_bias`` is the input
projection ``x @ W + b`` as one BLAS call (per block of rows).

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

from lamina import row_split, scratch
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
        kernels.update(_lstm_inference(numba, tanh))
        kernels.update(_lstm_training(numba, tanh))
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
        # Short loops over one row and few arrays each: LLVM vectorizes (SIMD) a loop only when it can check at
        # run time that its arrays do not overlap, and gives up beyond a handful of them (2-6x slower here when
        # it did; all gates in one loop, 9x). 2-D indices (``z[b, k]``), no row views (``zb = z[b]``): each view
        # made in compiled code counts a reference up and down (atomic), which cost a third of this function.
        units = c.shape[1]
        for b in range(z.shape[0]):
            for k in range(units):
                prev_h[b, k] = h[b, k]
            for k in range(units):
                prev_c[b, k] = c[b, k]
            for k in range(3 * units):
                z[b, k] = _HALF * tanh(_HALF * (z[b, k] + zx[b, k])) + _HALF  # sigmoid
            for k in range(units):
                z[b, 3 * units + k] = tanh(z[b, 3 * units + k] + zx[b, 3 * units + k])
            for k in range(units):
                c_new[b, k] = z[b, units + k] * c[b, k] + z[b, k] * z[b, 3 * units + k]
            for k in range(units):
                act_c[b, k] = tanh(c_new[b, k])
            for k in range(units):
                h_new[b, k] = z[b, 2 * units + k] * act_c[b, k]

    return {"lstm_forward": lstm_forward, "lstm_backward": _lstm_backward(numba)}


def _lstm_backward(numba):
    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def lstm_backward(z, prev_c, act_c, dh, dc_in, dz, dc_out):  # pragma: no cover - compiled
        """Gradients of one step: ``dz`` for the gates' pre-activations, ``dc_out`` for ``c_{t-1}``."""
        units = prev_c.shape[1]
        for b in range(z.shape[0]):  # loops over few arrays each, 2-D indices, as in lstm_forward
            for k in range(units):
                dc_out[b, k] = dh[b, k] * z[b, 2 * units + k] * (_ONE - act_c[b, k] * act_c[b, k])
            for k in range(units):
                dc_out[b, k] += dc_in[b, k]
            for k in range(units):
                o = z[b, 2 * units + k]
                dz[b, 2 * units + k] = dh[b, k] * act_c[b, k] * (o * (_ONE - o))
            for k in range(units):
                i = z[b, k]
                dz[b, k] = dc_out[b, k] * z[b, 3 * units + k] * (i * (_ONE - i))
            for k in range(units):
                f = z[b, units + k]
                dz[b, units + k] = dc_out[b, k] * prev_c[b, k] * (f * (_ONE - f))
            for k in range(units):
                g = z[b, 3 * units + k]
                dz[b, 3 * units + k] = dc_out[b, k] * z[b, k] * (_ONE - g * g)
            for k in range(units):
                dc_out[b, k] *= z[b, units + k]

    return lstm_backward


def _project_rows(numba):
    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def project_rows(gemm, one, x, w, bias, out):  # pragma: no cover - compiled
        """``out = x @ w + bias`` for C-contiguous 2-D ``x``, ``w``, ``out``: the bias broadcast, then one gemm
        with beta 1 (``matmul_bias`` for one step's rows, inside a compiled loop)."""
        rows, width = out.shape
        for b in range(rows):
            for k in range(width):
                out[b, k] = bias[k]
        if x.shape[1]:
            gemm(101, 111, 111, rows, width, x.shape[1], one, x.ctypes.data, x.shape[1], w.ctypes.data, width, one,
                 out.ctypes.data, width)

    return project_rows


def _lstm_sequences(numba, lstm_forward, lstm_backward) -> dict:
    # The whole sequence in one compiled call, when NumPy's own BLAS is reachable (``blas_gemm``): no Python
    # between steps. ``gemm`` is its ``cblas_?gemm`` (row-major; ``one``/``zero`` its alpha/beta, typed as the
    # arrays), passed as an argument so that the compiled code holds no address and can be cached.

    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def lstm_sequence(gemm, one, zero, xp, rk, h, c, gates, prev_h, prev_c, act_c, outputs, keep, lo,
                      hi):  # pragma: no cover - compiled
        """Every step of ``lstm_forward`` after its ``z = h @ rk``, for the batch rows ``lo:hi`` of ``xp`` and of
        the step buffers (rows are independent: blocks of rows may run on threads at once); ``h`` and ``c``
        (that block's initial states, the kernel's own copies) end as its final states. ``outputs`` (T or 0,
        batch, units) gets every ``h``; the step buffers have T slots with ``keep``, else 2 used in turn."""
        units = h.shape[1]
        batch, width = hi - lo, 4 * units
        h_new, c_new = np.empty_like(h), np.empty_like(c)
        for t in range(xp.shape[0]):
            s = t if keep else t & 1
            z = gates[s, lo:hi]  # a row block of a C-contiguous slot: C-contiguous too
            gemm(101, 111, 111, batch, width, units, one, h.ctypes.data, units, rk.ctypes.data, width, zero,
                 z.ctypes.data, width)  # row-major z = h @ rk
            lstm_forward(z, xp[t, lo:hi], h, c, prev_h[s, lo:hi], prev_c[s, lo:hi], act_c[s, lo:hi], h_new, c_new)
            if outputs.shape[0]:
                outputs[t, lo:hi] = h_new
            h, h_new = h_new, h
            c, c_new = c_new, c
        return h, c

    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def lstm_sequence_backward(gemm, one, zero, rk_t, gates, prev_c, act_c, d_outputs, dh, dc, dz, lo,
                               hi):  # pragma: no cover - compiled
        """Backpropagation through every step of ``lstm_sequence`` for the batch rows ``lo:hi``: ``dz`` (T,
        batch, 4 units) gets the gates' pre-activation gradients; ``dh``, ``dc`` (that block's final states'
        gradients, the kernel's own copies) end as its initial states'. ``d_outputs`` (T or 0, batch, units):
        the gradients of every ``h``. ``rk_t``: the recurrent kernel transposed, C-contiguous (BLAS is ~1.5x
        faster on it than on ``rk`` read transposed)."""
        units = dh.shape[1]
        batch, width = hi - lo, 4 * units
        dh_prev, dc_prev = np.empty_like(dh), np.empty_like(dc)
        for t in range(dz.shape[0] - 1, -1, -1):
            if d_outputs.shape[0]:
                dh += d_outputs[t, lo:hi]
            dzt = dz[t, lo:hi]
            lstm_backward(gates[t, lo:hi], prev_c[t, lo:hi], act_c[t, lo:hi], dh, dc, dzt, dc_prev)
            gemm(101, 111, 111, batch, units, width, one, dzt.ctypes.data, width, rk_t.ctypes.data, units, zero,
                 dh_prev.ctypes.data, units)  # row-major dh_prev = dz_t @ rk_t
            dh, dh_prev = dh_prev, dh
            dc, dc_prev = dc_prev, dc
        return dh, dc

    return {"lstm_sequence": lstm_sequence,
            "lstm_sequence_backward": lstm_sequence_backward}


def _lstm_training(numba, tanh) -> dict:
    # The training loops of ``layers.lstm_training``: each step's gates from ONE product ``[x_t | h_{t-1}] @ [W;
    # R]`` (K = features + units), on buffers that are the row block's own (a block's steps contiguous), so that
    # the block's weight gradients are products ``[x | h]^T dz`` made every few steps on the block's thread.
    return {"lstm_train_forward": _lstm_train_forward(numba, _lstm_train_gates(numba, tanh)),
            "lstm_train_backward": _lstm_train_backward(numba, _lstm_train_gates_back(numba))}


def _lstm_train_gates(numba, tanh):
    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def lstm_gates(z, c, act_c, xh_next, offset, c_next):  # pragma: no cover - compiled
        """``z`` (all of a step's pre-activations) activated in place, ``c_next = f * c + i * g``, ``act_c =
        tanh(c_next)`` and ``h = o * act_c`` written to ``xh_next[:, offset:]`` (the next step's input row)."""
        units = c.shape[1]
        for b in range(z.shape[0]):  # short loops over few arrays each, 2-D indices (see lstm_forward)
            for k in range(3 * units):
                z[b, k] = _HALF * tanh(_HALF * z[b, k]) + _HALF  # sigmoid
            for k in range(units):
                z[b, 3 * units + k] = tanh(z[b, 3 * units + k])
            for k in range(units):
                c_next[b, k] = z[b, units + k] * c[b, k] + z[b, k] * z[b, 3 * units + k]
            for k in range(units):
                act_c[b, k] = tanh(c_next[b, k])
            for k in range(units):
                xh_next[b, offset + k] = z[b, 2 * units + k] * act_c[b, k]

    return lstm_gates


def _lstm_train_forward(numba, lstm_gates):
    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def lstm_train_forward(gemm, one, xt, wr, bias, h0, c0, xh, gates, cs, act_c, outputs, lo,
                           hi):  # pragma: no cover - compiled
        """Every step forward for the batch rows ``lo:hi`` of ``xt`` (T, batch, F). The block's buffers: ``xh``
        (T + 1, rows, F + units): step t's ``[x_t | h_{t-1}]``, the final ``h`` in slot T's last columns;
        ``cs`` (T + 1, rows, units): ``c_{t-1}``, the final ``c`` in slot T; ``gates`` (T, rows, 4 units) and
        ``act_c`` (T, rows, units). ``outputs`` (T or 0, batch, units) gets every ``h``."""
        steps, features = xt.shape[0], xt.shape[2]
        units = h0.shape[1]
        rows, width, depth = hi - lo, 4 * units, features + units
        for b in range(rows):
            for k in range(units):
                xh[0, b, features + k] = h0[b, k]
            for k in range(units):
                cs[0, b, k] = c0[b, k]
        for t in range(steps):
            for b in range(rows):
                for k in range(features):
                    xh[t, b, k] = xt[t, lo + b, k]
            z = gates[t]
            for b in range(rows):
                for k in range(width):
                    z[b, k] = bias[k]
            gemm(101, 111, 111, rows, width, depth, one, xh[t].ctypes.data, depth, wr.ctypes.data, width, one,
                 z.ctypes.data, width)  # row-major z = bias + [x_t | h] @ [W; R]
            lstm_gates(z, cs[t], act_c[t], xh[t + 1], features, cs[t + 1])
            if outputs.shape[0]:
                outputs[t, lo:hi] = xh[t + 1, :, features:]

    return lstm_train_forward


def _lstm_train_gates_back(numba):
    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def lstm_gates_back(z, c, act_c, dh, dc_in, tmp, dc_out):  # pragma: no cover - compiled
        """``lstm_backward`` with the gates' pre-activation gradients written over the gates ``z`` themselves
        (one buffer fewer to stream through the cache); ``tmp``: one row of scratch."""
        units = c.shape[1]
        for b in range(z.shape[0]):  # loops over few arrays each, ordered so that no gate is read once overwritten
            for k in range(units):
                dc_out[b, k] = dh[b, k] * z[b, 2 * units + k] * (_ONE - act_c[b, k] * act_c[b, k]) + dc_in[b, k]
            for k in range(units):
                o = z[b, 2 * units + k]
                z[b, 2 * units + k] = dh[b, k] * act_c[b, k] * (o * (_ONE - o))
            for k in range(units):
                i = z[b, k]
                tmp[k] = dc_out[b, k] * z[b, 3 * units + k] * (i * (_ONE - i))
            for k in range(units):
                g = z[b, 3 * units + k]
                z[b, 3 * units + k] = dc_out[b, k] * z[b, k] * (_ONE - g * g)
            for k in range(units):
                z[b, k] = tmp[k]
            for k in range(units):
                f = z[b, units + k]
                tmp[k] = dc_out[b, k] * f
                z[b, units + k] = dc_out[b, k] * c[b, k] * (f * (_ONE - f))
            for k in range(units):
                dc_out[b, k] = tmp[k]

    return lstm_gates_back


def _lstm_train_backward(numba, lstm_gates_back):
    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def lstm_train_backward(gemm, one, zero, rk_t, w_t, xh, gates, cs, act_c, d_outputs, dh, dc, d_wr, d_bias, dx,
                            chunk, lo, hi):  # pragma: no cover - compiled
        """Backpropagation through every step of ``lstm_train_forward`` for its block ``lo:hi``. The gates'
        pre-activation gradients overwrite ``gates``; every ``chunk`` steps, while they are in cache, they are
        multiplied into the weight gradient ``d_wr += xh^T dz`` ((F + units, 4 units), zeroed by the caller) and
        the input gradient ``dx = dz W^T`` (T, rows, F); ``d_bias`` (float64, zeroed) gets their sums. ``dh``,
        ``dc`` (the block's final states' gradients, the kernel's own copies) end as its initial states'.
        ``d_outputs`` (T or 0, batch, units): the gradients of every ``h``; ``rk_t``, ``w_t``: the recurrent
        kernel and the kernel transposed, C-contiguous."""
        units, features = dh.shape[1], w_t.shape[1]
        rows, width, depth = hi - lo, 4 * units, features + units
        dh_prev, dc_prev = np.empty_like(dh), np.empty_like(dc)
        tmp = np.empty(units, dtype=dh.dtype)
        steps = gates.shape[0]
        for t in range(steps - 1, -1, -1):
            if d_outputs.shape[0]:
                dh += d_outputs[t, lo:hi]
            dzt = gates[t]
            lstm_gates_back(dzt, cs[t], act_c[t], dh, dc, tmp, dc_prev)
            for b in range(rows):  # the bias gradient while the step's rows are in cache
                for k in range(width):
                    d_bias[k] += dzt[b, k]
            gemm(101, 111, 111, rows, units, width, one, dzt.ctypes.data, width, rk_t.ctypes.data, units, zero,
                 dh_prev.ctypes.data, units)  # row-major dh_prev = dz_t @ rk_t
            dh, dh_prev = dh_prev, dh
            dc, dc_prev = dc_prev, dc
            if t % chunk == 0:  # steps t .. t + n - 1 done: their weight and input gradients
                n = min(chunk, steps - t) * rows
                gemm(101, 112, 111, depth, width, n, one, xh[t].ctypes.data, depth, gates[t].ctypes.data, width,
                     one, d_wr.ctypes.data, width)  # row-major d_wr += xh_chunk^T dz_chunk
                gemm(101, 111, 111, n, features, width, one, gates[t].ctypes.data, width, w_t.ctypes.data,
                     features, zero, dx[t].ctypes.data, features)  # row-major dx_chunk = dz_chunk @ w_t
        return dh, dc

    return lstm_train_backward


def _lstm_inference(numba, tanh) -> dict:
    project_rows = _project_rows(numba)

    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def lstm_infer_rows(z, src, rows, c, h):  # pragma: no cover - compiled
        """``lstm_forward``'s arithmetic with nothing kept for a backward pass, row b's projected input being
        ``src[rows[b]]``: ``c`` and ``h`` overwritten with the new states (``z = h @ rk`` is already computed,
        so ``h`` is free)."""
        # One loop per row over the units, all four gates in it, on 2-D indices: row views (``z[b]``) made in
        # compiled code count a reference up and down (atomic) each, which cost a third of this arithmetic at
        # 64 units; this loop writes only c and h, so LLVM's run-time overlap checks stay few and it vectorizes.
        units = c.shape[1]
        for b in range(z.shape[0]):
            x = rows[b]
            for k in range(units):
                i = _HALF * tanh(_HALF * (z[b, k] + src[x, k])) + _HALF  # sigmoid
                f = _HALF * tanh(_HALF * (z[b, units + k] + src[x, units + k])) + _HALF
                o = _HALF * tanh(_HALF * (z[b, 2 * units + k] + src[x, 2 * units + k])) + _HALF
                g = tanh(z[b, 3 * units + k] + src[x, 3 * units + k])
                cn = f * c[b, k] + i * g
                c[b, k] = cn
                h[b, k] = o * tanh(cn)

    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def lstm_sequence_infer(gemm, one, zero, xp, rk, h, c, outputs, lo, hi):  # pragma: no cover - compiled
        """``lstm_sequence`` for inference on the batch rows ``lo:hi``: the same steps, no step buffers; ``h``
        and ``c`` (the kernel's own copies of that block's initial states) end as its final states."""
        units = h.shape[1]
        batch, width = hi - lo, 4 * units
        z = np.empty((batch, width), dtype=h.dtype)
        rows = np.arange(batch)
        for t in range(xp.shape[0]):
            gemm(101, 111, 111, batch, width, units, one, h.ctypes.data, units, rk.ctypes.data, width, zero,
                 z.ctypes.data, width)  # row-major z = h @ rk
            lstm_infer_rows(z, xp[t, lo:hi], rows, c, h)
            if outputs.shape[0]:
                outputs[t, lo:hi] = h

    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def lstm_sequence_infer_x(gemm, one, zero, xt, w, bias, rk, h, c, outputs, lo,
                              hi):  # pragma: no cover - compiled
        """``lstm_sequence_infer`` with each step's input projection ``x_t @ w + bias`` made in the loop for the
        block's rows (``project_rows``, on data in cache) rather than read from a (T, batch, 4 units) array."""
        units = h.shape[1]
        batch, width = hi - lo, 4 * units
        z = np.empty((batch, width), dtype=h.dtype)
        zx = np.empty((batch, width), dtype=h.dtype)
        rows = np.arange(batch)
        for t in range(xt.shape[0]):
            project_rows(gemm, one, xt[t, lo:hi], w, bias, zx)
            gemm(101, 111, 111, batch, width, units, one, h.ctypes.data, units, rk.ctypes.data, width, zero,
                 z.ctypes.data, width)  # row-major z = h @ rk
            lstm_infer_rows(z, zx, rows, c, h)
            if outputs.shape[0]:
                outputs[t, lo:hi] = h

    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def lstm_sequence_infer_table(gemm, one, zero, table, ids, rk, h, c, outputs, lo,
                                  hi):  # pragma: no cover - compiled
        """``lstm_sequence_infer`` with step t's projected input of row b read as ``table[ids[t, b]]``: an
        Embedding's table already multiplied by the kernel (``embeddings @ kernel + bias``, rows in range)."""
        units = h.shape[1]
        batch, width = hi - lo, 4 * units
        z = np.empty((batch, width), dtype=h.dtype)
        for t in range(ids.shape[0]):
            gemm(101, 111, 111, batch, width, units, one, h.ctypes.data, units, rk.ctypes.data, width, zero,
                 z.ctypes.data, width)  # row-major z = h @ rk
            lstm_infer_rows(z, table, ids[t, lo:hi], c, h)
            if outputs.shape[0]:
                outputs[t, lo:hi] = h

    return {"lstm_sequence_infer": lstm_sequence_infer, "lstm_sequence_infer_x": lstm_sequence_infer_x,
            "lstm_sequence_infer_table": lstm_sequence_infer_table}


def _gru_sequences(numba, tanh, gru_backward) -> dict:
    # As ``_lstm_sequences``, for a ``reset_after`` GRU (gate blocks z, r, hh; the recurrent bias ``rb`` added
    # to ``h @ rk`` before the reset gate multiplies its hh block).

    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def gru_forward(inner, zx, rb, h, zr, hh, inner_h, prev, h_new):  # pragma: no cover - compiled
        """One step after ``inner = h @ rk``: ``zr = sigmoid(zx + (inner + rb))`` on the z, r blocks,
        ``inner_h = inner + rb`` on the hh block, ``hh = tanh(r * inner_h + zx)``, ``h_new = (h - hh) * z + hh``;
        ``h`` copied to ``prev`` for the backward pass."""
        units = h.shape[1]
        for b in range(h.shape[0]):  # short loops over few arrays each, 2-D indices (see lstm_forward)
            for k in range(units):
                prev[b, k] = h[b, k]
            for k in range(2 * units):
                zr[b, k] = _HALF * tanh(_HALF * (zx[b, k] + (inner[b, k] + rb[k]))) + _HALF  # sigmoid
            for k in range(units):
                inner_h[b, k] = inner[b, 2 * units + k] + rb[2 * units + k]
            for k in range(units):
                hh[b, k] = tanh(zr[b, units + k] * inner_h[b, k] + zx[b, 2 * units + k])
            for k in range(units):
                h_new[b, k] = (h[b, k] - hh[b, k]) * zr[b, k] + hh[b, k]

    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def gru_sequence(gemm, one, zero, xp, rk, rb, h, zr, hh, inner_h, prev, outputs, keep, lo,
                     hi):  # pragma: no cover - compiled
        """Every step of ``gru_forward`` after its ``inner = h @ rk``, for the batch rows ``lo:hi`` of ``xp`` and
        of the step buffers; ``h`` (that block's initial state, the kernel's own copy) ends as its final state.
        ``outputs`` (T or 0, batch, units) gets every ``h``; the step buffers have T slots with ``keep``, else 2
        used in turn."""
        units = h.shape[1]
        batch, width = hi - lo, 3 * units
        inner = np.empty((batch, width), dtype=h.dtype)
        h_new = np.empty_like(h)
        for t in range(xp.shape[0]):
            s = t if keep else t & 1
            gemm(101, 111, 111, batch, width, units, one, h.ctypes.data, units, rk.ctypes.data, width, zero,
                 inner.ctypes.data, width)  # row-major inner = h @ rk
            gru_forward(inner, xp[t, lo:hi], rb, h, zr[s, lo:hi], hh[s, lo:hi], inner_h[s, lo:hi], prev[s, lo:hi],
                        h_new)
            if outputs.shape[0]:
                outputs[t, lo:hi] = h_new
            h, h_new = h_new, h
        return h

    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def gru_sequence_backward(gemm, one, zero, rk_t, zr, hh, inner_h, prev, d_outputs, dh, dz, d_inner, lo,
                              hi):  # pragma: no cover - compiled
        """Backpropagation through every step of ``gru_sequence`` for the batch rows ``lo:hi``: ``dz`` (T, batch,
        3 units) gets the gates' pre-activation gradients, ``d_inner`` those of every ``h @ rk + rb``; ``dh``
        (that block's final state's gradient, the kernel's own copy) ends as its initial state's. ``rk_t``: the
        recurrent kernel transposed, C-contiguous."""
        units = dh.shape[1]
        batch, width = hi - lo, 3 * units
        dh_prev = np.empty_like(dh)
        for t in range(dz.shape[0] - 1, -1, -1):
            if d_outputs.shape[0]:
                dh += d_outputs[t, lo:hi]
            dit = d_inner[t, lo:hi]
            gru_backward(zr[t, lo:hi], hh[t, lo:hi], prev[t, lo:hi], inner_h[t, lo:hi], dh, dz[t, lo:hi], dit,
                         dh_prev)
            gemm(101, 111, 111, batch, units, width, one, dit.ctypes.data, width, rk_t.ctypes.data, units,
                 one, dh_prev.ctypes.data, units)  # row-major dh_prev += d_inner_t @ rk_t
            dh, dh_prev = dh_prev, dh
        return dh

    return {"gru_sequence": gru_sequence, "gru_sequence_backward": gru_sequence_backward,
            **_gru_inference(numba, tanh)}


def _gru_inference(numba, tanh) -> dict:
    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def gru_infer_rows(inner, src, rows, rb, h):  # pragma: no cover - compiled
        """``gru_forward``'s arithmetic with nothing kept for a backward pass, row b's projected input being
        ``src[rows[b]]``: the new state overwrites ``h`` (2-D indices, no row views: see ``lstm_infer_rows``)."""
        units = h.shape[1]
        for b in range(h.shape[0]):
            x = rows[b]
            for k in range(units):
                z = _HALF * tanh(_HALF * (src[x, k] + (inner[b, k] + rb[k]))) + _HALF  # sigmoid
                r = _HALF * tanh(_HALF * (src[x, units + k] + (inner[b, units + k] + rb[units + k]))) + _HALF
                hh = tanh(r * (inner[b, 2 * units + k] + rb[2 * units + k]) + src[x, 2 * units + k])
                h[b, k] = (h[b, k] - hh) * z + hh

    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def gru_sequence_infer(gemm, one, zero, xp, rk, rb, h, outputs, lo, hi):  # pragma: no cover - compiled
        """``gru_sequence`` for inference on the batch rows ``lo:hi``: the same steps, no step buffers; ``h`` (the
        kernel's own copy of that block's initial state) ends as its final state."""
        units = h.shape[1]
        batch, width = hi - lo, 3 * units
        inner = np.empty((batch, width), dtype=h.dtype)
        rows = np.arange(batch)
        for t in range(xp.shape[0]):
            gemm(101, 111, 111, batch, width, units, one, h.ctypes.data, units, rk.ctypes.data, width, zero,
                 inner.ctypes.data, width)  # row-major inner = h @ rk
            gru_infer_rows(inner, xp[t, lo:hi], rows, rb, h)
            if outputs.shape[0]:
                outputs[t, lo:hi] = h

    @numba.njit(cache=True, fastmath=_CONTRACT, nogil=True, error_model="numpy")
    def gru_sequence_infer_table(gemm, one, zero, table, ids, rk, rb, h, outputs, lo,
                                 hi):  # pragma: no cover - compiled
        """``gru_sequence_infer`` with step t's projected input of row b read as ``table[ids[t, b]]`` (see
        ``lstm_sequence_infer_table``)."""
        units = h.shape[1]
        batch, width = hi - lo, 3 * units
        inner = np.empty((batch, width), dtype=h.dtype)
        for t in range(ids.shape[0]):
            gemm(101, 111, 111, batch, width, units, one, h.ctypes.data, units, rk.ctypes.data, width, zero,
                 inner.ctypes.data, width)  # row-major inner = h @ rk
            gru_infer_rows(inner, table, ids[t, lo:hi], rb, h)
            if outputs.shape[0]:
                outputs[t, lo:hi] = h

    return {"gru_sequence_infer": gru_sequence_infer, "gru_sequence_infer_table": gru_sequence_infer_table}


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
    output fewer than a matmul and an add; on blocks of rows on threads where a split pays
    (:func:`in_row_blocks`). None where that BLAS is not reachable or the arrays don't fit."""
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
    out = scratch.empty((m, n), dtype)  # reused once free: no page faults on a fresh large array

    def rows(a, b):  # rows a:b of the product: bias first, then gemm with beta 1
        out[a:b] = bias
        gemm(101, 111, 111, b - a, n, k, one, x[a:b].ctypes.data, k, w.ctypes.data, n, one, out[a:b].ctypes.data, n)

    in_row_blocks(m, rows)  # on threads where it pays, as the recurrent loops that read it
    return out


def in_row_blocks(batch: int, task, block_rows: int | None = None) -> list:
    """``[((lo, hi), task(lo, hi))]`` over blocks of the ``batch`` rows that together cover them, run on
    threads by :mod:`lamina.row_split` (one block, on this thread, where a split does not pay: fewer than
    2 x ``MIN_ROWS_PER_WORKER`` rows, BLAS at one thread, no threadpoolctl). The whole-sequence kernels run on
    row blocks: a recurrence mixes no rows, so each block's loop is the whole batch's restricted to it. One block
    per thread, or with ``block_rows`` blocks of about that many rows that the threads take in turn."""
    workers = row_split.workers(batch)
    blocks = workers if block_rows is None or workers == 1 else max(workers, -(-batch // block_rows))
    parts = row_split.spans(batch, blocks)
    return list(zip(parts, row_split.run([lambda a=a, b=b: task(a, b) for a, b in parts], workers)))


# Rows per block of an inference loop (``in_row_blocks``' ``block_rows``): a thread slowed by other work on the
# machine takes fewer blocks instead of holding up the call with half the batch. Predict of 10,000 sequences
# through Embedding -> LSTM(64) on two threads, medians of 7: on a quiet machine 0.101 s and 0.094 s in two
# blocks a call, 0.098 s and 0.101 s in 256-row blocks; while it was shared, 0.162 s against 0.124 s. 128 and
# 64 rows were 10-20 % slower (each step's products are smaller).
INFER_BLOCK_ROWS = 256

_COMPILED = CompiledOnce(_compile)


def kernels(dtype) -> dict | None:
    """The compiled LSTM and GRU kernels for arrays of ``dtype``, or None (numba absent, switched off, other dtype)."""
    compiled = _COMPILED.get() if np.dtype(dtype) in (np.float32, np.float64) else None
    return compiled.get(np.dtype(dtype)) if compiled else None
