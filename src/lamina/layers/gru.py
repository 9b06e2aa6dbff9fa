"""``GRUCell`` and ``GRU`` (Cho et al., 2014), Keras's gate order ``z, r, h``.

    z = recurrent_activation(x_z + h_{t-1} @ U_z + b_z);  r = recurrent_activation(x_r + h_{t-1} @ U_r + b_r)
    reset_after=True:   hh = activation(x_h + r * (h_{t-1} @ U_h + b'_h))   (separate recurrent bias b')
    reset_after=False:  hh = activation(x_h + (r * h_{t-1}) @ U_h)
    h_t = z * h_{t-1} + (1 - z) * hh
"""

from __future__ import annotations

import numpy as np

from lamina import activations, ops, scratch
from lamina.autodiff import unwrap
from lamina.layers import rnn_accel
from lamina.layers.lstm import _gate_inputs, check_use_cudnn
from lamina.layers.rnn import CellRNN, cell_kwargs, forward_cell_properties
from lamina.layers.rnn_cells import CELL_PROPERTIES, BaseRNNCell, split_gates


class GRUCell(BaseRNNCell):
    """One GRU step; state ``h``, output ``h``.

    ``reset_after=True`` (the default, cuDNN-compatible) applies the reset gate after the recurrent matmul and
    keeps two biases, ``bias (2, 3 units)``: row 0 for the inputs, row 1 for the recurrent projection;
    ``reset_after=False`` applies it before, with one ``bias (3 units,)``.
    Weights: ``kernel (features, 3 units)``, ``recurrent_kernel (units, 3 units)``, ``bias``.
    """

    _gates = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0, recurrent_dropout=0.0,
                 reset_after=True, seed=None, **kwargs):
        implementation = kwargs.pop("implementation", 2)
        super().__init__(units, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
                         bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
                         recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint,
                         dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed, **kwargs)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.reset_after = bool(reset_after)
        self.implementation = 1 if self.recurrent_dropout else implementation
        if self.implementation == 1:
            self.dropout_mask_count = 3  # one mask per gate
        self.state_size = self.units

    def _bias_shape(self) -> tuple:
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def call(self, inputs, states, training=False):
        h_prev = states[0] if isinstance(states, (list, tuple)) else states
        u = self.units
        dp = self.get_dropout_mask(inputs) if training and 0 < self.dropout < 1 else None
        rec = self.get_recurrent_dropout_mask(h_prev) if training and 0 < self.recurrent_dropout < 1 else None
        x = _gate_inputs(inputs, dp, self.kernel, 3)
        input_bias = recurrent_bias = None
        if self.bias is not None:
            input_bias, recurrent_bias = (self.bias[0], self.bias[1]) if self.reset_after else (self.bias, None)
            x = ops.add(x, input_bias)
        x_z, x_r, x_h = ops.split(x, 3, axis=-1)
        rec_masks = rec if isinstance(rec, (list, tuple)) else [rec] * 3
        if self.reset_after:
            inner = _gate_inputs(h_prev, rec, self.recurrent_kernel, 3)
            if recurrent_bias is not None:
                inner = ops.add(inner, recurrent_bias)
            r_z, r_r, r_h = ops.split(inner, 3, axis=-1)
        else:
            kernel_zr, kernel_h = self.recurrent_kernel[:, :2 * u], self.recurrent_kernel[:, 2 * u:]
            zr_masks = None if rec is None else (rec_masks[:2] if isinstance(rec, (list, tuple)) else rec)
            r_z, r_r = ops.split(_gate_inputs(h_prev, zr_masks, kernel_zr, 2), 2, axis=-1)
        z = self.recurrent_activation(ops.add(x_z, r_z))
        r = self.recurrent_activation(ops.add(x_r, r_r))
        if self.reset_after:
            hh = self.activation(ops.add(x_h, ops.multiply(r, r_h)))
        else:
            h_in = h_prev if rec is None else ops.multiply(h_prev, rec_masks[2])
            hh = self.activation(ops.add(x_h, ops.matmul(ops.multiply(r, h_in), kernel_h)))
        h = ops.add(ops.multiply(z, h_prev), ops.multiply(ops.subtract(1.0, z), hh))
        return h, ([h] if isinstance(states, (list, tuple)) else h)

    def _fused_call_owner(self):
        return GRUCell

    def _fused_weights(self):
        kernel, recurrent_kernel = unwrap(self.kernel), unwrap(self.recurrent_kernel)
        if self.bias is None:
            return kernel, recurrent_kernel, None, None
        bias = unwrap(self.bias)
        return (kernel, recurrent_kernel, bias[0], bias[1]) if self.reset_after else \
            (kernel, recurrent_kernel, bias, None)

    def _bias_gradient(self, d_input_bias, d_recurrent_bias):
        return np.stack([d_input_bias, d_recurrent_bias]) if self.reset_after else d_input_bias

    def _kernel(self, recurrent_kernel, recurrent_bias, steps, batch, dtype):
        act, rec = self._fused_activations()
        if not self.reset_after:
            return GRUResetBeforeKernel(recurrent_kernel, recurrent_bias, steps, batch, dtype, act, rec)
        defaults = self.activation is activations.tanh and self.recurrent_activation is activations.sigmoid
        compiled = rnn_accel.kernels(dtype) if defaults else None
        if compiled is not None:
            return CompiledGRUKernel(recurrent_kernel, recurrent_bias, steps, batch, dtype, act, rec, compiled)
        return GRUKernel(recurrent_kernel, recurrent_bias, steps, batch, dtype, act, rec)

    def _config(self) -> dict:
        config = super()._config()
        config["recurrent_activation"] = activations.serialize(self.recurrent_activation)
        config["reset_after"] = self.reset_after
        return config


class GRUKernel:
    """The fused loop's step for ``GRUCell(reset_after=True)`` (see ``rnn_scan``)."""

    def __init__(self, recurrent_kernel, recurrent_bias, steps, batch, dtype, activation, recurrent_activation):
        units = recurrent_kernel.shape[0]
        self.rk, self.rb, self.dtype, self.units = recurrent_kernel, recurrent_bias, dtype, units
        self.act, self.act_d = activation
        self.rec, self.rec_d = recurrent_activation
        self.state_shapes = [(batch, units)]
        # z and r side by side, hh apart: each block contiguous, so the activations run on whole arrays (several
        # times faster than on a strided column block of one (batch, 3 units) array)
        self.zr = scratch.empty((steps, batch, 2 * units), dtype=dtype)
        self.hh = scratch.empty((steps, batch, units), dtype=dtype)
        self.inner_h = scratch.empty((steps, batch, units), dtype=dtype)  # h_{t-1} @ U_h + b'_h
        self.prev = scratch.empty((steps, batch, units), dtype=dtype)
        self.d_inner = scratch.empty((steps, batch, 3 * units), dtype=dtype)

    def step(self, t, zx, states):
        h = states[0]
        u = self.units
        self.prev[t] = h
        inner = h @ self.rk
        if self.rb is not None:
            inner += self.rb
        zr, hh = self.zr[t], self.hh[t]
        np.add(zx[:, :2 * u], inner[:, :2 * u], out=zr)
        self.rec(zr)
        inner_h = self.inner_h[t]
        inner_h[...] = inner[:, 2 * u:]
        np.multiply(zr[:, u:], inner_h, out=hh)
        hh += zx[:, 2 * u:]
        self.act(hh)
        new = np.subtract(h, hh)  # h_t = hh + z * (h_{t-1} - hh)
        new *= zr[:, :u]
        new += hh
        return [new]

    def step_back(self, t, d_new, dz):
        dh = d_new[0]
        u = self.units
        z, r, hh = self.zr[t][:, :u], self.zr[t][:, u:], self.hh[t]
        d_z, d_r, d_h = split_gates(dz, 3)
        np.multiply(dh * (self.prev[t] - hh), self.rec_d(z), out=d_z)
        np.multiply(dh * (1 - z), self.act_d(hh), out=d_h)
        np.multiply(d_h * self.inner_h[t], self.rec_d(r), out=d_r)
        di = self.d_inner[t]
        di[...] = dz
        di[:, 2 * self.units:] *= r
        return [dh * z + di @ self.rk.T]

    def recurrent_gradients(self, dxp, steps=slice(None)):
        """``(d_recurrent_kernel, d_recurrent_bias or None)`` from the steps ``steps`` alone."""
        flat = self.d_inner[steps].reshape(-1, 3 * self.units)
        d_rb = flat.sum(axis=0) if self.rb is not None else None
        return self.prev[steps].reshape(-1, self.units).T @ flat, d_rb


class CompiledGRUKernel(GRUKernel):
    """``GRUKernel`` with its gate arithmetic compiled (``rnn_accel``; tanh, sigmoid).

    Without a mask the whole sequence is one compiled call forward and one backward (``forward_sequence``,
    ``backward_sequence``, as ``CompiledLSTMKernel``'s), their matmuls NumPy's own BLAS called from the compiled
    loop. With a mask (or where that BLAS is not reachable) the steps are ``GRUKernel``'s forward and one compiled
    loop per step backward."""

    def __init__(self, recurrent_kernel, recurrent_bias, steps, batch, dtype, activation, recurrent_activation,
                 compiled):
        super().__init__(recurrent_kernel, recurrent_bias, steps, batch, dtype, activation, recurrent_activation)
        self.backward_gates = compiled["gru_backward"]
        self.gemm = rnn_accel.blas_gemm(dtype)
        if self.gemm is None or "gru_sequence" not in compiled:  # no whole-sequence loop: step by step
            self.forward_sequence = self.backward_sequence = self.infer_from_table = None
        else:
            self.rk_c = np.ascontiguousarray(recurrent_kernel, dtype=dtype)  # its pointer goes to BLAS
            self.rk_t = np.ascontiguousarray(self.rk_c.T)  # BLAS is faster on it than on a transposed view
            self.rb_c = np.zeros(3 * self.units, dtype=dtype) if recurrent_bias is None else \
                np.ascontiguousarray(recurrent_bias, dtype=dtype)
            self.whole_forward, self.whole_backward = compiled["gru_sequence"], compiled["gru_sequence_backward"]
            self.whole_infer, self.whole_infer_table = compiled["gru_sequence_infer"], \
                compiled["gru_sequence_infer_table"]

    def forward_sequence(self, xp, states, return_sequences: bool, keep: bool):
        """Every step in one compiled call (``scan_forward`` without a mask), on blocks of the batch rows on
        threads (``rnn_accel.in_row_blocks``); its ``(outputs, last, states)``."""
        h = np.array(states[0], dtype=self.dtype, order="C")  # the loop's own, overwritten
        outputs = np.empty((xp.shape[0] if return_sequences else 0,) + h.shape, dtype=self.dtype)
        xp = np.ascontiguousarray(xp, dtype=self.dtype)
        if not keep:  # inference: nothing saved for a backward pass; each block's h overwritten in place
            rnn_accel.in_row_blocks(h.shape[0], lambda a, b: self.whole_infer(
                *self.gemm, xp, self.rk_c, self.rb_c, h[a:b], outputs, a, b), rnn_accel.INFER_BLOCK_ROWS)
            return (outputs if return_sequences else None), h, [h]
        for (a, b), h_b in rnn_accel.in_row_blocks(h.shape[0], lambda a, b: self.whole_forward(
                *self.gemm, xp, self.rk_c, self.rb_c, h[a:b], self.zr, self.hh, self.inner_h, self.prev, outputs,
                keep, a, b)):
            h[a:b] = h_b  # a block's final state may be the loop's other buffer
        return (outputs if return_sequences else None), h, [h]

    def infer_from_table(self, table, ids, states, return_sequences: bool):
        """``forward_sequence(table[ids], states, return_sequences, keep=False)`` without making that (T, batch,
        3 units) array (see ``CompiledLSTMKernel.infer_from_table``)."""
        h = np.array(states[0], dtype=self.dtype, order="C")  # the loop's own, overwritten
        outputs = np.empty((ids.shape[0] if return_sequences else 0,) + h.shape, dtype=self.dtype)
        rnn_accel.in_row_blocks(h.shape[0], lambda a, b: self.whole_infer_table(
            *self.gemm, table, ids, self.rk_c, self.rb_c, h[a:b], outputs, a, b), rnn_accel.INFER_BLOCK_ROWS)
        return (outputs if return_sequences else None), h, [h]

    def backward_sequence(self, xp_shape, d_outputs, d_last, d_states):
        """Every step back in one compiled call (``scan_backward`` without a mask), on blocks of rows as
        ``forward_sequence``; its ``(dxp, d_states0)``."""
        dh = np.zeros(self.state_shapes[0], dtype=self.dtype) if d_states[0] is None else \
            np.array(d_states[0], dtype=self.dtype, order="C")
        if d_last is not None:
            dh += d_last
        d_outputs = np.empty((0,) + dh.shape, dtype=self.dtype) if d_outputs is None else \
            np.ascontiguousarray(d_outputs, dtype=self.dtype)
        dz = scratch.empty(xp_shape, self.dtype)
        for (a, b), dh_b in rnn_accel.in_row_blocks(dh.shape[0], lambda a, b: self.whole_backward(
                *self.gemm, self.rk_t, self.zr, self.hh, self.inner_h, self.prev, d_outputs, dh[a:b], dz,
                self.d_inner, a, b)):
            dh[a:b] = dh_b
        return dz, [dh]

    def step_back(self, t, d_new, dz):
        d_prev = np.empty(self.state_shapes[0], dtype=self.dtype)
        di = self.d_inner[t]
        self.backward_gates(self.zr[t], self.hh[t], self.prev[t], self.inner_h[t], d_new[0], dz, di, d_prev)
        d_prev += di @ self.rk.T
        return [d_prev]


class GRUResetBeforeKernel:
    """The fused loop's step for ``GRUCell(reset_after=False)`` (see ``rnn_scan``)."""

    def __init__(self, recurrent_kernel, recurrent_bias, steps, batch, dtype, activation, recurrent_activation):
        units = recurrent_kernel.shape[0]
        self.rk_zr, self.rk_h = recurrent_kernel[:, :2 * units], recurrent_kernel[:, 2 * units:]
        self.dtype, self.units = dtype, units
        self.act, self.act_d = activation
        self.rec, self.rec_d = recurrent_activation
        self.state_shapes = [(batch, units)]
        self.gates = scratch.empty((steps, batch, 3 * units), dtype=dtype)  # z, r, hh
        self.reset_h = scratch.empty((steps, batch, units), dtype=dtype)  # r * h_{t-1}
        self.prev = scratch.empty((steps, batch, units), dtype=dtype)

    def step(self, t, zx, states):
        h = states[0]
        u = self.units
        self.prev[t] = h
        g = self.gates[t]
        np.add(zx[:, :2 * u], h @ self.rk_zr, out=g[:, :2 * u])
        self.rec(g[:, :2 * u])
        z, r, hh = split_gates(g, 3)
        rh = self.reset_h[t]
        np.multiply(r, h, out=rh)
        np.add(zx[:, 2 * u:], rh @ self.rk_h, out=hh)
        self.act(hh)
        return [hh + z * (h - hh)]

    def step_back(self, t, d_new, dz):
        dh = d_new[0]
        h = self.prev[t]
        z, r, hh = split_gates(self.gates[t], 3)
        d_z, d_r, d_h = split_gates(dz, 3)
        np.multiply(dh * (h - hh), self.rec_d(z), out=d_z)
        np.multiply(dh * (1 - z), self.act_d(hh), out=d_h)
        d_rh = d_h @ self.rk_h.T
        np.multiply(d_rh * h, self.rec_d(r), out=d_r)
        return [dh * z + d_rh * r + dz[:, :2 * self.units] @ self.rk_zr.T]

    def recurrent_gradients(self, dxp, steps=slice(None)):
        """``(d_recurrent_kernel, None)`` from the steps ``steps`` alone (``dxp`` holds those steps' gradients)."""
        u = self.units
        prev = self.prev[steps].reshape(-1, u)
        d_zr = prev.T @ dxp[..., :2 * u].reshape(-1, 2 * u)
        d_h = self.reset_h[steps].reshape(-1, u).T @ dxp[..., 2 * u:].reshape(-1, u)
        return np.concatenate([d_zr, d_h], axis=1), None


class GRU(CellRNN):
    """Gated Recurrent Unit layer (``GRUCell`` over time); arguments as ``GRUCell`` and ``RNN``.

    Returns the last output ``(batch, units)``, or every output with ``return_sequences``; with
    ``return_state`` also the final state. ``use_cudnn`` is accepted for Keras's API.
    """

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
                 dropout=0.0, recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, unroll=False, reset_after=True, use_cudnn="auto", **kwargs):
        cell = GRUCell(units, activation=activation, recurrent_activation=recurrent_activation, use_bias=use_bias,
                       kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
                       bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
                       recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
                       kernel_constraint=kernel_constraint, recurrent_constraint=recurrent_constraint,
                       bias_constraint=bias_constraint, dropout=dropout, recurrent_dropout=recurrent_dropout,
                       reset_after=reset_after, seed=seed, implementation=kwargs.pop("implementation", 2),
                       **cell_kwargs(kwargs, "gru_cell"))
        super().__init__(cell, return_sequences=return_sequences, return_state=return_state,
                         go_backwards=go_backwards, stateful=stateful, unroll=unroll,
                         activity_regularizer=activity_regularizer, **kwargs)
        self.use_cudnn = check_use_cudnn(use_cudnn)


forward_cell_properties(GRU, CELL_PROPERTIES + ("recurrent_activation", "reset_after"))
