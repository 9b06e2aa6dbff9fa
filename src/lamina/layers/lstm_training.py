"""The default LSTM's training pass as two compiled calls per block of batch rows: every step forward, then every
step back with the weight gradients.

Each step's gate pre-activations come from one product ``[x_t | h_{t-1}] @ [W; R] + b`` (K = features + units)
instead of an input projection and a recurrent product, and each row block keeps its own buffers, its steps
contiguous: ``xh`` holds every step's ``[x_t | h_{t-1}]`` (the forward writes each new ``h`` straight into the
next step's row, so no state is copied aside). Going back, the gates' gradients overwrite the gates, and every
few steps (:data:`CHUNK_STEPS`), while they are in cache, they are multiplied into the weight gradient
``xh^T dz`` (kernel and recurrent kernel at once) and the input gradient ``dz W^T``, on the block's thread; the
bias gradient is summed in the loop. So a training call hands work to the threads twice instead of three times
and never reads the gate gradients back from memory. The backward then gives the buffers back to the scratch
pool at once (the next step's forward finds them still in cache: 3-5 % of a step, one 10 MB set instead of two
at batch 64), so a second backward of the same call (a persistent tape) runs the forward loop again first.

Used by ``RNN`` for an ``LSTMCell`` with the default activations while training without a mask or input
dropout, when numba and NumPy's BLAS are reachable (:mod:`lamina.layers.rnn_accel`); elsewhere the fused
loop of :mod:`lamina.layers.rnn_scan` runs. ``tests/test_rnn_fast_paths.py`` checks the two against each other.
"""

from __future__ import annotations

import numpy as np

from lamina import row_split, scratch
from lamina.layers import rnn_accel

# Steps whose gradients go into one weight-gradient product, made while they are still in cache.
CHUNK_STEPS = 8


class LSTMSequenceTrainer:
    """One training call of an LSTM layer: :meth:`forward`, then :meth:`backward` (again for each further gradient
    of a persistent tape).

    ``kernel`` (F, 4 units), ``recurrent_kernel`` (units, 4 units) and ``bias`` (4 units, or None) have their
    gate blocks in the compiled loops' order (i, f, o, c), all of one float dtype."""

    def __init__(self, kernel, recurrent_kernel, bias, compiled: dict, gemm: tuple):
        self.dtype = kernel.dtype
        self.features, width = kernel.shape
        self.units = recurrent_kernel.shape[0]
        self.wr = np.concatenate([kernel, recurrent_kernel])  # [W; R]: one product per step
        self.bias = np.zeros(width, self.dtype) if bias is None else np.ascontiguousarray(bias)
        self.w_t = np.ascontiguousarray(kernel.T)  # BLAS is faster on these than on transposed views
        self.rk_t = np.ascontiguousarray(recurrent_kernel.T)
        self.forward_loop = compiled["lstm_train_forward"]
        self.backward_loop = compiled["lstm_train_backward"]
        self.gemm = gemm
        self.blocks: list = []  # per row block: ((lo, hi), its buffers)
        self._inputs = ()  # the forward's (xt, h0, c0), for a second backward

    def forward(self, xt, states, return_sequences: bool):
        """``(outputs, last, [h, c])`` over the time-major inputs ``xt`` (T, batch, F), any strides (the loop copies
        each step's rows into its ``xh``: a transposed view costs no copy of its own), from the initial ``states``;
        ``outputs`` (T, batch, units) only with ``return_sequences``, else None."""
        steps, batch, _ = xt.shape
        units = self.units
        h0, c0 = (np.ascontiguousarray(s, dtype=self.dtype) for s in states)
        outputs = np.empty((steps if return_sequences else 0, batch, units), dtype=self.dtype)

        self._inputs = (xt, h0, c0)
        self.blocks = rnn_accel.in_row_blocks(batch, lambda a, b: self._forward_block(a, b, outputs))
        h, c = np.empty((batch, units), self.dtype), np.empty((batch, units), self.dtype)
        for (a, b), (xh, _, cs, _) in self.blocks:
            h[a:b] = xh[steps, :, self.features:]
            c[a:b] = cs[steps]
        return (outputs if return_sequences else None), h, [h, c]

    def _forward_block(self, a, b, outputs) -> tuple:
        """The forward loop over the rows ``a:b`` of the kept inputs; returns the block's buffers from the scratch
        pool, which it filled: ``xh``, ``gates``, ``cs`` (``c_{t-1}`` per step, the final ``c`` last) and
        ``act_c`` (``tanh(c_t)``)."""
        xt, h0, c0 = self._inputs
        steps, rows, units = xt.shape[0], b - a, self.units
        buffers = (scratch.empty((steps + 1, rows, self.features + units), self.dtype),
                   scratch.empty((steps, rows, 4 * units), self.dtype),
                   scratch.empty((steps + 1, rows, units), self.dtype),
                   scratch.empty((steps, rows, units), self.dtype))
        self.forward_loop(*self.gemm[:2], xt, self.wr, self.bias, h0[a:b], c0[a:b], *buffers, outputs, a, b)
        return buffers

    def backward(self, d_outputs, d_last, d_states):
        """``(dxt, d_kernel, d_bias, d_recurrent_kernel, d_states0)`` from the gradients of the outputs
        (T, batch, units) or None, of the last output or None and of the final states (each or None); ``dxt``
        is time-major like the forward's ``xt`` (a view of a batch-major array), the weight gradients in the fused
        gate order."""
        steps, batch = self._inputs[0].shape[:2]
        units, features = self.units, self.features
        if self.blocks[0][1] is None:  # asked again (a persistent tape): the buffers went back to the pool
            no_outputs = np.empty((0, batch, units), self.dtype)
            spans = [span for span, _ in self.blocks]
            self.blocks = list(zip(spans, row_split.run(
                [lambda a=a, b=b: self._forward_block(a, b, no_outputs) for a, b in spans], len(spans))))
        dh, dc = (np.zeros((batch, units), self.dtype) if d is None else np.array(d, dtype=self.dtype, order="C")
                  for d in d_states)
        if d_last is not None:
            dh += d_last
        d_outputs = np.empty((0, batch, units), self.dtype) if d_outputs is None else \
            np.ascontiguousarray(d_outputs, dtype=self.dtype)

        def block(i):
            (a, b), (xh, gates, cs, act_c) = self.blocks[i]
            d_wr = np.zeros((features + units, 4 * units), self.dtype)
            d_bias = np.zeros(4 * units)
            dx = np.empty((steps, b - a, features), self.dtype)
            dh0, dc0 = self.backward_loop(*self.gemm, self.rk_t, self.w_t, xh, gates, cs, act_c, d_outputs,
                                          dh[a:b].copy(), dc[a:b].copy(), d_wr, d_bias, dx, CHUNK_STEPS, a, b)
            return d_wr, d_bias, dx, dh0, dc0

        # the forward's blocks, each on a thread of its own again (BLAS held at one thread meanwhile)
        results = row_split.run([lambda i=i: block(i) for i in range(len(self.blocks))], len(self.blocks))
        # The gates now hold their gradients: the buffers go back to the pool at once, so that the next step's
        # forward gets these same (cached) ones rather than a second set while this call's tape lives on.
        self.blocks = [(span, None) for span, _ in self.blocks]
        d_wr, d_bias = results[0][:2]
        for w, bias, *_ in results[1:]:  # in block order: the same sums whichever thread ran which block
            d_wr = d_wr + w
            d_bias = d_bias + bias
        dx = np.empty((batch, steps, features), self.dtype)  # batch-major, as the layer's input
        dh0, dc0 = np.empty_like(dh), np.empty_like(dc)
        for ((a, b), _), (_, _, dx_b, dh_b, dc_b) in zip(self.blocks, results):
            dx[a:b], dh0[a:b], dc0[a:b] = dx_b.transpose(1, 0, 2), dh_b, dc_b
        return dx.transpose(1, 0, 2), d_wr[:features], d_bias.astype(self.dtype), d_wr[features:], [dh0, dc0]
