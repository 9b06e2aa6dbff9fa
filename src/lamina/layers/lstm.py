"""``LSTMCell`` and ``LSTM`` (Hochreiter & Schmidhuber, 1997), Keras's gate order ``i, f, c, o``.

    z = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias          (batch, 4 * units)
    i, f, o = recurrent_activation(z_i, z_f, z_o);  g = activation(z_c)
    c_t = f * c_{t-1} + i * g;   h_t = o * activation(c_t)
"""

from __future__ import annotations

import numpy as np

from lamina import activations, ops, scratch
from lamina.layers import rnn_accel
from lamina.layers.lstm_training import LSTMSequenceTrainer
from lamina.layers.rnn import CellRNN, cell_kwargs, forward_cell_properties
from lamina.layers.rnn_cells import CELL_PROPERTIES, BaseRNNCell


class LSTMCell(BaseRNNCell):
    """One LSTM step; states ``[h, c]``, output ``h``.

    ``unit_forget_bias=True`` starts the forget gate's bias at 1 (the rest from ``bias_initializer``).
    ``dropout`` masks ``x_t`` and ``recurrent_dropout`` masks ``h_{t-1}`` while training; with recurrent dropout
    (or ``implementation=1``) each gate gets its own masks, as in Keras.
    Weights: ``kernel (features, 4 units)``, ``recurrent_kernel (units, 4 units)``, ``bias (4 units,)``.
    """

    _gates = 4
    _gate_order = (0, 1, 3, 2)  # the fused loop's layout: i, f, o, c

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, **kwargs):
        implementation = kwargs.pop("implementation", 2)
        super().__init__(units, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
                         bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
                         recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint,
                         dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed, **kwargs)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.implementation = 1 if self.recurrent_dropout else implementation
        if self.implementation == 1:
            self.dropout_mask_count = 4  # one mask per gate
        self.state_size = [self.units, self.units]

    def _bias_init(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        units, init = self.units, self.bias_initializer

        def forget_ones(shape, dtype=None):
            return np.concatenate([np.asarray(init((units,), dtype=dtype)), np.ones((units,), dtype=dtype),
                                   np.asarray(init((2 * units,), dtype=dtype))])

        return forget_ones

    def call(self, inputs, states, training=False):
        h_prev, c_prev = states[0], states[1]
        dp = self.get_dropout_mask(inputs) if training and 0 < self.dropout < 1 else None
        rec = self.get_recurrent_dropout_mask(h_prev) if training and 0 < self.recurrent_dropout < 1 else None
        z = _gate_inputs(inputs, dp, self.kernel, 4)
        z = ops.add(z, _gate_inputs(h_prev, rec, self.recurrent_kernel, 4))
        if self.bias is not None:
            z = ops.add(z, self.bias)
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
        i, f, o = self.recurrent_activation(z_i), self.recurrent_activation(z_f), self.recurrent_activation(z_o)
        c = ops.add(ops.multiply(f, c_prev), ops.multiply(i, self.activation(z_c)))
        h = ops.multiply(o, self.activation(c))
        return h, [h, c]

    def _fused_call_owner(self):
        return LSTMCell

    def _default_activations(self) -> bool:
        return self.activation is activations.tanh and self.recurrent_activation is activations.sigmoid

    def _kernel(self, recurrent_kernel, recurrent_bias, steps, batch, dtype):
        act, rec = self._fused_activations()
        defaults = self._default_activations()
        compiled = rnn_accel.kernels(dtype) if defaults else None
        if compiled is not None:
            return CompiledLSTMKernel(recurrent_kernel, steps, batch, dtype, act, rec, compiled)
        if defaults:
            return TanhLSTMKernel(recurrent_kernel, steps, batch, dtype, act, rec)
        return LSTMKernel(recurrent_kernel, steps, batch, dtype, act, rec)

    def _sequence_trainer(self, kernel, recurrent_kernel, input_bias, dtype):
        """The compiled training loops (``lstm_training``) for these fused-order weights, or None where they do not
        run: other activations or dtypes, no numba, no reachable BLAS."""
        compiled = rnn_accel.kernels(dtype) if self._default_activations() else None
        gemm = rnn_accel.blas_gemm(dtype) if compiled is not None else None
        if gemm is None or kernel.dtype != dtype or recurrent_kernel.dtype != dtype \
                or (input_bias is not None and input_bias.dtype != dtype):
            return None
        return LSTMSequenceTrainer(kernel, recurrent_kernel, input_bias, compiled, gemm)

    def _config(self) -> dict:
        config = super()._config()
        config["recurrent_activation"] = activations.serialize(self.recurrent_activation)
        config["unit_forget_bias"] = self.unit_forget_bias
        return config


def _gate_inputs(x, masks, kernel, gates: int):
    """``x @ kernel``; with a list of per-gate masks, ``(x * mask_k) @ kernel_k`` for each gate block ``k``."""
    if masks is None:
        return ops.matmul(x, kernel)
    if not isinstance(masks, (list, tuple)):
        return ops.matmul(ops.multiply(x, masks), kernel)
    blocks = ops.split(kernel, gates, axis=1)
    return ops.concatenate([ops.matmul(ops.multiply(x, m), k) for m, k in zip(masks, blocks)], axis=-1)


class LSTMKernel:
    """The fused loop's step for ``LSTMCell`` (see ``rnn_scan``): keeps the gates, ``c_{t-1}``, ``h_{t-1}`` and
    ``activation(c_t)`` of every step for the backward pass.

    Its weights come with the gate blocks in the order ``i, f, o, c`` (``LSTMCell._gate_order``): the three
    ``recurrent_activation`` gates are one contiguous block, activated (and differentiated) by one call each.
    """

    def __init__(self, recurrent_kernel, steps, batch, dtype, activation, recurrent_activation):
        units = recurrent_kernel.shape[0]
        self.rk, self.dtype, self.units = recurrent_kernel, dtype, units
        self.act, self.act_d = activation
        self.rec, self.rec_d = recurrent_activation
        self.state_shapes = [(batch, units), (batch, units)]
        self.gates = scratch.empty((steps, batch, 4 * units), dtype=dtype)
        self.prev_h = scratch.empty((steps, batch, units), dtype=dtype)
        self.prev_c = scratch.empty((steps, batch, units), dtype=dtype)
        self.act_c = scratch.empty((steps, batch, units), dtype=dtype)
        # column blocks of the gates: i, f, o, c, and the three sigmoid-like gates together
        self.blocks = tuple(slice(k * units, (k + 1) * units) for k in range(4)) + (slice(0, 3 * units),)

    def step(self, t, zx, states):
        h, c = states
        i, f, o, g, sig = self.blocks
        self.prev_h[t] = h
        self.prev_c[t] = c
        z = self.gates[t]
        np.matmul(h, self.rk, out=z)
        z += zx
        self.rec(z[:, sig])
        self.act(z[:, g])
        c_new = z[:, f] * c
        c_new += z[:, i] * z[:, g]
        ac = self.act(c_new, self.act_c[t])
        return [z[:, o] * ac, c_new]

    def begin_backward(self, dz):
        """Every step's factors at once: ``dz`` gets, per gate block, what multiplies the step's ``dc`` (i, f, c)
        or ``dh`` (o) to give the gate's pre-activation gradient; ``self.dc_from_dh = o * act'(c_t)``."""
        i, f, o, g, sig = self.blocks
        z = self.gates
        self.rec_d(z[..., sig], out=dz[..., sig])
        dz[..., i] *= z[..., g]
        dz[..., f] *= self.prev_c
        dz[..., o] *= self.act_c
        self.act_d(z[..., g], out=dz[..., g])
        dz[..., g] *= z[..., i]
        self.dc_from_dh = self.act_d(self.act_c, out=np.empty_like(self.act_c))
        self.dc_from_dh *= z[..., o]

    def step_back(self, t, d_new, dz):
        dh, dc = d_new
        i, f, o, g, sig = self.blocks
        dc = dc + dh * self.dc_from_dh[t]
        dz[:, i] *= dc
        dz[:, f] *= dc
        dz[:, g] *= dc
        dz[:, o] *= dh
        return [dz @ self.rk.T, dc * self.gates[t][:, f]]

    def recurrent_gradients(self, dxp, steps=slice(None)):
        """``(d_recurrent_kernel, None)`` from the steps ``steps`` alone (``dxp`` holds those steps' gradients)."""
        return self.prev_h[steps].reshape(-1, self.units).T @ dxp.reshape(-1, dxp.shape[-1]), None


class TanhLSTMKernel(LSTMKernel):
    """``LSTMKernel`` for ``activation=tanh``, ``recurrent_activation=sigmoid``, with all four gates activated by
    one ``tanh`` over the whole, contiguous gate row: ``sigmoid(z) = 0.5 * tanh(z / 2) + 0.5``.

    The halving is folded into the weights once per call (the sigmoid gates' columns of the recurrent kernel
    and of the projected inputs), the affine ``0.5 * t + 0.5`` is one scale and one shift by per-column
    vectors. Elementwise NumPy calls on a column block of a row-major (batch, 4 units) array are strided and
    several times slower than on the whole array; the gate values are the same as ``LSTMKernel``'s (to rounding).
    """

    def __init__(self, recurrent_kernel, steps, batch, dtype, activation, recurrent_activation):
        super().__init__(recurrent_kernel, steps, batch, dtype, activation, recurrent_activation)
        units = self.units
        self.scale = np.full(4 * units, 0.5, dtype=dtype)  # tanh's argument per column: z / 2 or z
        self.scale[3 * units:] = 1
        self.shift = np.full(4 * units, 0.5, dtype=dtype)
        self.shift[3 * units:] = 0
        self.rk_scaled = recurrent_kernel * self.scale

    def begin_forward(self, xp):
        xp *= self.scale  # the projected inputs are this call's own array, used by nothing else

    def step(self, t, zx, states):
        h, c = states
        i, f, o, g, _ = self.blocks
        self.prev_h[t] = h
        self.prev_c[t] = c
        z = self.gates[t]
        np.matmul(h, self.rk_scaled, out=z)
        z += zx
        np.tanh(z, out=z)
        z *= self.scale  # 0.5 * tanh(z / 2) + 0.5 on the sigmoid gates, tanh(z) on the candidate
        z += self.shift
        c_new = z[:, f] * c
        c_new += z[:, i] * z[:, g]
        ac = np.tanh(c_new, out=self.act_c[t])
        return [z[:, o] * ac, c_new]


class CompiledLSTMKernel(LSTMKernel):
    """The default LSTM with its gate arithmetic compiled (``rnn_accel``).

    Without a mask the whole sequence is one compiled call forward and one backward (``forward_sequence``,
    ``backward_sequence``), their matmuls NumPy's own BLAS called from the compiled loop. With a mask (or where
    that BLAS is not reachable) each step is one NumPy matmul and one compiled loop, the new states written into
    two preallocated slots used in turn (a step reads the other slot's states), so a step allocates nothing."""

    def __init__(self, recurrent_kernel, steps, batch, dtype, activation, recurrent_activation, compiled):
        super().__init__(recurrent_kernel, steps, batch, dtype, activation, recurrent_activation)
        self.forward_gates = compiled["lstm_forward"]
        self.backward_gates = compiled["lstm_backward"]
        self.rk_t = np.ascontiguousarray(recurrent_kernel.T)  # BLAS is ~1.5x faster on it than on a transposed view
        self.slots = np.empty((2, 2, batch, self.units), dtype=dtype)  # [slot][h, c]
        self.gemm = rnn_accel.blas_gemm(dtype)
        if self.gemm is None or "lstm_sequence" not in compiled:  # no whole-sequence loop: step by step
            self.forward_sequence = self.backward_sequence = self.infer_from_table = self.infer_from_inputs = None
        else:
            self.rk = np.ascontiguousarray(recurrent_kernel)  # the compiled loop hands its pointer to BLAS
            self.whole_forward, self.whole_backward = compiled["lstm_sequence"], compiled["lstm_sequence_backward"]
            self.whole_infer, self.whole_infer_table = compiled["lstm_sequence_infer"], \
                compiled["lstm_sequence_infer_table"]
            self.whole_infer_x = compiled["lstm_sequence_infer_x"]

    def step(self, t, zx, states):
        h, c = states
        z = self.gates[t]
        np.matmul(h, self.rk, out=z)
        h_new, c_new = self.slots[t & 1]
        self.forward_gates(z, zx, h, c, self.prev_h[t], self.prev_c[t], self.act_c[t], h_new, c_new)
        return [h_new, c_new]

    def forward_sequence(self, xp, states, return_sequences: bool, keep: bool):
        """Every step in one compiled call (``scan_forward`` without a mask), on blocks of the batch rows on
        threads (``rnn_accel.in_row_blocks``); its ``(outputs, last, states)``."""
        h, c = (np.array(s, dtype=self.dtype, order="C") for s in states)  # the loop's own, overwritten
        outputs = np.empty((xp.shape[0] if return_sequences else 0,) + h.shape, dtype=self.dtype)
        xp = np.ascontiguousarray(xp)
        if not keep:  # inference: nothing saved for a backward pass; each block's h, c overwritten in place
            rnn_accel.in_row_blocks(h.shape[0], lambda a, b: self.whole_infer(
                *self.gemm, xp, self.rk, h[a:b], c[a:b], outputs, a, b), rnn_accel.INFER_BLOCK_ROWS)
            return (outputs if return_sequences else None), h, [h, c]
        for (a, b), (h_b, c_b) in rnn_accel.in_row_blocks(h.shape[0], lambda a, b: self.whole_forward(
                *self.gemm, xp, self.rk, h[a:b], c[a:b], self.gates, self.prev_h, self.prev_c, self.act_c,
                outputs, keep, a, b)):
            h[a:b], c[a:b] = h_b, c_b  # a block's final states may be the loop's other buffers
        return (outputs if return_sequences else None), h, [h, c]

    def infer_from_inputs(self, xt, kernel, bias, states, return_sequences: bool):
        """``forward_sequence(xt @ kernel + bias, ..., keep=False)`` with each step's projection made inside the
        compiled loop, per block of rows (``lstm_sequence_infer_x``): no (T, batch, 4 units) array of projected
        inputs. ``xt``: the time-major inputs (T, batch, features), C-contiguous; ``bias`` a vector (zeros without
        one). Training runs ``lstm_training``'s loops instead."""
        h, c = (np.array(s, dtype=self.dtype, order="C") for s in states)  # the loop's own, overwritten
        outputs = np.empty((xt.shape[0] if return_sequences else 0,) + h.shape, dtype=self.dtype)
        kernel, bias = np.ascontiguousarray(kernel), np.ascontiguousarray(bias)
        rnn_accel.in_row_blocks(h.shape[0], lambda a, b: self.whole_infer_x(
            *self.gemm, xt, kernel, bias, self.rk, h[a:b], c[a:b], outputs, a, b), rnn_accel.INFER_BLOCK_ROWS)
        return (outputs if return_sequences else None), h, [h, c]

    def infer_from_table(self, table, ids, states, return_sequences: bool):
        """``forward_sequence(table[ids], states, return_sequences, keep=False)`` without making that (T, batch,
        4 units) array: each step reads row ``ids[t, b]`` of ``table`` (vocabulary, 4 units; an Embedding's
        table times the kernel, plus the bias). ``ids``: (T, batch) indices into ``table``, C-contiguous."""
        h, c = (np.array(s, dtype=self.dtype, order="C") for s in states)  # the loop's own, overwritten
        outputs = np.empty((ids.shape[0] if return_sequences else 0,) + h.shape, dtype=self.dtype)
        rnn_accel.in_row_blocks(h.shape[0], lambda a, b: self.whole_infer_table(
            *self.gemm, table, ids, self.rk, h[a:b], c[a:b], outputs, a, b), rnn_accel.INFER_BLOCK_ROWS)
        return (outputs if return_sequences else None), h, [h, c]

    def backward_sequence(self, xp_shape, d_outputs, d_last, d_states):
        """Every step back in one compiled call (``scan_backward`` without a mask), on blocks of rows as
        ``forward_sequence``; its ``(dxp, d_states0)``."""
        dh, dc = (np.zeros(shape, dtype=self.dtype) if d is None else np.array(d, dtype=self.dtype, order="C")
                  for d, shape in zip(d_states, self.state_shapes))
        if d_last is not None:
            dh += d_last
        d_outputs = np.empty((0,) + dh.shape, dtype=self.dtype) if d_outputs is None else \
            np.ascontiguousarray(d_outputs, dtype=self.dtype)
        dz = scratch.empty(xp_shape, self.dtype)
        for (a, b), (dh_b, dc_b) in rnn_accel.in_row_blocks(dh.shape[0], lambda a, b: self.whole_backward(
                *self.gemm, self.rk_t, self.gates, self.prev_c, self.act_c, d_outputs, dh[a:b], dc[a:b], dz, a, b)):
            dh[a:b], dc[a:b] = dh_b, dc_b
        return dz, [dh, dc]

    def begin_backward(self, dz):
        """Nothing to precompute: each compiled step does its own."""
        self.slots = np.empty_like(self.slots)  # the forward's slots may be the outputs handed out

    def step_back(self, t, d_new, dz):
        dh, dc = d_new
        dh_prev, dc_prev = self.slots[t & 1]
        self.backward_gates(self.gates[t], self.prev_c[t], self.act_c[t], dh, dc, dz, dc_prev)
        np.matmul(dz, self.rk_t, out=dh_prev)
        return [dh_prev, dc_prev]


class LSTM(CellRNN):
    """Long Short-Term Memory layer (``LSTMCell`` over time); arguments as ``LSTMCell`` and ``RNN``.

    Returns the last output ``(batch, units)``, or every output with ``return_sequences``; with
    ``return_state`` also the final ``h`` and ``c``. ``use_cudnn`` is accepted for Keras's API (lamina runs
    on the CPU).
    """

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
                 dropout=0.0, recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, unroll=False, use_cudnn="auto", **kwargs):
        cell = LSTMCell(units, activation=activation, recurrent_activation=recurrent_activation, use_bias=use_bias,
                        kernel_initializer=kernel_initializer, unit_forget_bias=unit_forget_bias,
                        recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
                        kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
                        bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
                        recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint, dropout=dropout,
                        recurrent_dropout=recurrent_dropout, seed=seed,
                        implementation=kwargs.pop("implementation", 2), **cell_kwargs(kwargs, "lstm_cell"))
        super().__init__(cell, return_sequences=return_sequences, return_state=return_state,
                         go_backwards=go_backwards, stateful=stateful, unroll=unroll,
                         activity_regularizer=activity_regularizer, **kwargs)
        self.use_cudnn = check_use_cudnn(use_cudnn)


def check_use_cudnn(use_cudnn):
    if use_cudnn not in ("auto", True, False):
        raise ValueError("Invalid valid received for argument `use_cudnn`. Expected one of {'auto', True, False}. "
                         f"Received: use_cudnn={use_cudnn}")
    return use_cudnn


forward_cell_properties(LSTM, CELL_PROPERTIES + ("recurrent_activation", "unit_forget_bias"))
