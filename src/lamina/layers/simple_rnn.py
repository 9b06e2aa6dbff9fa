"""``SimpleRNNCell`` and ``SimpleRNN``: ``h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)``."""

from __future__ import annotations

import numpy as np

from lamina import ops, scratch
from lamina.layers.rnn import CellRNN, cell_kwargs, forward_cell_properties
from lamina.layers.rnn_cells import CELL_PROPERTIES, BaseRNNCell


class SimpleRNNCell(BaseRNNCell):
    """One step of a fully connected RNN whose output is its next state.

    ``h_t = activation(x_t @ kernel + bias + h_{t-1} @ recurrent_kernel)``, with ``dropout`` applied to
    ``x_t`` and ``recurrent_dropout`` to ``h_{t-1}`` while training (one mask per sequence).
    Weights: ``kernel (features, units)``, ``recurrent_kernel (units, units)``, ``bias (units,)``.
    """

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 **kwargs):
        super().__init__(units, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
                         bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
                         recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint,
                         dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed, **kwargs)
        self.state_size = self.units

    def call(self, sequence, states, training=False):
        prev = states[0] if isinstance(states, (list, tuple)) else states
        dp_mask = self.get_dropout_mask(sequence)
        rec_mask = self.get_recurrent_dropout_mask(prev)
        if training and dp_mask is not None:
            sequence = ops.multiply(sequence, dp_mask)
        h = ops.matmul(sequence, self.kernel)
        if self.bias is not None:
            h = ops.add(h, self.bias)
        if training and rec_mask is not None:
            prev = ops.multiply(prev, rec_mask)
        output = self.activation(ops.add(h, ops.matmul(prev, self.recurrent_kernel)))
        return output, ([output] if isinstance(states, (list, tuple)) else output)

    def _fused_call_owner(self):
        return SimpleRNNCell

    def _kernel(self, recurrent_kernel, recurrent_bias, steps, batch, dtype):
        return SimpleRNNKernel(recurrent_kernel, steps, batch, dtype, self._fused_activations()[0])


class SimpleRNNKernel:
    """The fused loop's step for ``SimpleRNNCell`` (see ``rnn_scan``)."""

    def __init__(self, recurrent_kernel, steps, batch, dtype, activation):
        units = recurrent_kernel.shape[0]
        self.rk, self.dtype = recurrent_kernel, dtype
        self.apply, self.derivative = activation
        self.state_shapes = [(batch, units)]
        self.prev = scratch.empty((steps, batch, units), dtype=dtype)
        self.new = scratch.empty((steps, batch, units), dtype=dtype)

    def step(self, t, zx, states):
        h = states[0]
        self.prev[t] = h
        a = self.new[t]
        np.matmul(h, self.rk, out=a)
        a += zx
        return [self.apply(a)]

    def step_back(self, t, d_new, dzx):
        np.multiply(d_new[0], self.derivative(self.new[t]), out=dzx)
        return [dzx @ self.rk.T]

    def recurrent_gradients(self, dxp, steps=slice(None)):
        """``(d_recurrent_kernel, None)`` from the steps ``steps`` alone (``dxp`` holds those steps' gradients)."""
        units = self.rk.shape[0]
        return self.prev[steps].reshape(-1, units).T @ dxp.reshape(-1, units), None


class SimpleRNN(CellRNN):
    """A fully connected RNN layer (``SimpleRNNCell`` over time); arguments as ``SimpleRNNCell`` and ``RNN``.

    Returns the last output ``(batch, units)``, or every output with ``return_sequences``; with
    ``return_state`` also the final state.
    """

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, seed=None, **kwargs):
        cell = SimpleRNNCell(units, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                             recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
                             kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
                             bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
                             recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint,
                             dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed,
                             **cell_kwargs(kwargs, "simple_rnn_cell"))
        super().__init__(cell, return_sequences=return_sequences, return_state=return_state,
                         go_backwards=go_backwards, stateful=stateful, unroll=unroll,
                         activity_regularizer=activity_regularizer, **kwargs)


forward_cell_properties(SimpleRNN, CELL_PROPERTIES)
