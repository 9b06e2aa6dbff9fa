"""The fused recurrence of the built-in cells: a loop over time on plain arrays, and its backward pass.

A built-in cell's step is split in two. The input projection ``x_t @ kernel + bias`` of every timestep is
one matmul over the whole (time-major) sequence (``project``); the recurrence ``scan_forward`` then
loops over time doing only ``h @ recurrent_kernel`` and the gate arithmetic of the cell's *kernel* object
(``LSTMKernel``...), which keeps what its backward needs in preallocated ``(T, batch, ...)`` arrays.
Backpropagation through time (``scan_backward``) is a reverse loop over the same arrays: no tape node per
step, no recursion, no per-step Python object kept alive, so a sequence of 10,000 steps trains like one of 10.
The weight gradients are summed over time once at the end, again as single matmuls.

Masks follow Keras's ``rnn`` loop: at a masked step every state keeps its previous value and the output
repeats the previous output (zeros before the first kept step, or zeros throughout with
``zero_output_for_mask``). For a built-in cell the output of a step is its new first state ``h``.

A kernel object provides ``step(t, zx, states) -> new_states`` (the output is ``new_states[0]``),
``step_back(t, d_new_states, dzx_out) -> d_prev_states`` (writing the gradient of the step's projected
input into ``dzx_out``) and ``recurrent_gradients(dzx, steps=slice(None)) -> (d_recurrent_kernel, d_recurrent_bias
or None)`` (from the steps ``steps`` alone, ``dzx`` holding theirs);
optionally ``begin_forward(zx)``, run once before the loop, which may rewrite the projected inputs in place
(they are the call's own array), and ``begin_backward(dzx)``, run once before the reverse loop, which may
fill ``dzx`` with per-step factors that ``step_back`` then multiplies in place; and ``forward_sequence(xp, states,
return_sequences, keep)`` / ``backward_sequence(xp_shape, d_outputs, d_last, d_states)``, which (without a mask)
replace the two loops by one compiled call each, with the loops' results (see ``CompiledLSTMKernel``; its
``infer_from_inputs`` also makes each step's input projection inside that call, which ``RNN`` uses at inference
without a mask or input dropout; the default LSTM trains in ``lstm_training``'s loops instead). After the
backward loop, :func:`weight_gradients` gives the weights' and inputs' gradients, on blocks of timesteps on
threads where that pays.
"""

from __future__ import annotations

import numpy as np

from lamina import activations, row_split
from lamina.autodiff import Tensor, record, unwrap
from lamina.layers import rnn_accel


def _sigmoid_into(x, out):
    # exp(-x) overflows to inf for very negative x and the result is the exact limit 0: ``scan_forward`` runs
    # its loop with that flag muted (once, not per call).
    np.negative(x, out=out)
    np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


def _copy_into(x, out=None):
    if out is None or out is x:
        return x
    np.copyto(out, x)
    return out


def _tanh_derivative(y, out=None):
    out = np.square(y, out=out)
    return np.subtract(1, out, out=out)


def _sigmoid_derivative(y, out=None):
    out = np.subtract(1, y, out=out)
    out *= y
    return out


def _relu_derivative(y, out=None):
    if out is None:
        return (y > 0).astype(y.dtype)
    np.copyto(out, y > 0)
    return out


def _linear_derivative(y, out=None):
    if out is None:
        return 1
    out[...] = 1
    return out


# activation -> (apply(x, out=x): activation(x) written into out, in place by default;
#                derivative(y, out=None): the derivative from the activation's output y, written into out if given)
_FUSED = {
    activations.tanh: (lambda x, out=None: np.tanh(x, out=x if out is None else out), _tanh_derivative),
    activations.sigmoid: (lambda x, out=None: _sigmoid_into(x, x if out is None else out), _sigmoid_derivative),
    activations.relu: (lambda x, out=None: np.maximum(x, 0, out=x if out is None else out), _relu_derivative),
    activations.linear: (_copy_into, _linear_derivative),
}


def activation_pair(fn):
    """``(apply, derivative_from_output)`` for the activations the fused loop knows, else None
    (any other activation runs the cell's own ``call`` step by step on the tape)."""
    try:
        return _FUSED.get(fn)
    except TypeError:  # an unhashable callable
        return None


def _matmul_3d(x, w):
    """``x @ w`` for a (T, batch, n) ``x`` as one 2-D matmul: NumPy runs a stacked matmul as T small ones."""
    return np.matmul(x.reshape(-1, x.shape[-1]), w).reshape(x.shape[:-1] + (w.shape[-1],))


def project(xt: np.ndarray, kernel: np.ndarray, bias, drop) -> np.ndarray:
    """``x_t @ kernel + bias`` for every timestep in one matmul (per gate block with per-gate dropout masks)."""
    if drop is None and bias is not None:
        fused = rnn_accel.matmul_bias(xt.reshape(-1, xt.shape[-1]), kernel, bias)  # None: not applicable here
        if fused is not None:
            return fused.reshape(xt.shape[:-1] + (kernel.shape[-1],))
    if drop is None:
        xp = _matmul_3d(xt, kernel)
    elif all(m is drop[0] for m in drop):
        xp = _matmul_3d(xt * drop[0], kernel)
    else:
        width = kernel.shape[1] // len(drop)
        xp = np.concatenate([_matmul_3d(xt * m, kernel[:, i * width:(i + 1) * width]) for i, m in enumerate(drop)],
                            axis=-1)
    if bias is not None:
        xp += bias
    return xp


def project_backward(xt, kernel, drop, dxp, with_bias: bool):
    """Gradients of :func:`project` for its input, kernel and bias."""
    steps, batch, features = xt.shape
    flat = dxp.reshape(steps * batch, dxp.shape[-1])
    d_bias = flat.sum(axis=0) if with_bias else None
    if drop is None:
        d_kernel = xt.reshape(-1, features).T @ flat
        dx = _matmul_3d(dxp, kernel.T)
    elif all(m is drop[0] for m in drop):
        d_kernel = (xt * drop[0]).reshape(-1, features).T @ flat
        dx = _matmul_3d(dxp, kernel.T)
        dx *= drop[0]
    else:
        width = kernel.shape[1] // len(drop)
        blocks = [slice(i * width, (i + 1) * width) for i in range(len(drop))]
        d_kernel = np.concatenate([(xt * m).reshape(-1, features).T @ flat[:, b] for m, b in zip(drop, blocks)],
                                  axis=1)
        dx = sum(np.matmul(dxp[..., b], kernel[:, b].T) * m for m, b in zip(drop, blocks))
    return dx, d_kernel, d_bias


def weight_gradients(kernel, xt, weights, drop, dxp, with_bias: bool):
    """``(dxt, d_kernel, d_bias, d_recurrent_kernel, d_recurrent_bias)`` after the backward loop:
    :func:`project_backward` and the kernel's ``recurrent_gradients``. Where a split pays
    (:func:`lamina.row_split.workers` on the T x batch rows) they run on blocks of timesteps on threads, BLAS held
    at one thread, the weight gradients summed over the blocks: the recurrent loops split the same way, so
    OpenBLAS's own threads stay asleep instead of spinning against the blocks' between the calls."""
    steps = dxp.shape[0]
    workers = min(row_split.workers(steps * dxp.shape[1]), steps) if drop is None else 1

    def block(a, b):
        d_rk, d_rb = kernel.recurrent_gradients(dxp[a:b], slice(a, b))
        return project_backward(xt[a:b], weights, drop, dxp[a:b], with_bias) + (d_rk, d_rb)

    parts = row_split.spans(steps, workers)
    results = row_split.run([lambda a=a, b=b: block(a, b) for a, b in parts], workers)
    if len(results) == 1:
        return results[0]
    summed = [None if r[0] is None else sum(r[1:], r[0]) for r in zip(*[p[1:] for p in results])]
    return (np.concatenate([p[0] for p in results]), *summed)


def scan_forward(kernel, xp: np.ndarray, states0: list, mask, return_sequences: bool, zero_output_for_mask: bool,
                 keep: bool = True):
    """Run ``kernel`` over the time-major projected inputs ``xp`` (T, batch, ...).

    ``mask`` is None or a (T, batch, 1) boolean array. Returns ``(outputs, last_output, states)``: the
    (T, batch, units) outputs when ``return_sequences`` (else None), the last output and the final states.
    Without ``keep`` (no backward pass will follow) the kernel was made with two slots per buffer instead of
    T, used in turn: inference on a long sequence needs no memory per step.
    """
    steps = xp.shape[0]
    prepare = getattr(kernel, "begin_forward", None)
    if prepare is not None:  # a kernel may rewrite the projected inputs in place once, vectorized over time
        prepare(xp)
    whole = getattr(kernel, "forward_sequence", None)
    if whole is not None and mask is None:  # a kernel may run every step in one compiled call
        return whole(xp, states0, return_sequences, keep)
    states = list(states0)
    y = np.zeros_like(states[0])
    outputs = np.empty((steps,) + y.shape, dtype=y.dtype) if return_sequences else None
    with np.errstate(over="ignore"):  # see _sigmoid_into
        for t in range(steps):
            new = kernel.step(t if keep else t & 1, xp[t], states)
            if mask is None:
                states, y = new, new[0]
            else:
                m = mask[t]
                states = [np.where(m, n, s) for n, s in zip(new, states)]
                y = np.where(m, new[0], 0 if zero_output_for_mask else y)
            if outputs is not None:
                outputs[t] = y
    return outputs, y, states


def scan_backward(kernel, xp_shape, d_outputs, d_last, d_states: list, mask, zero_output_for_mask: bool):
    """Backpropagation through time for ``scan_forward``; returns ``(d_xp, d_states0)``.

    ``d_outputs`` (T, batch, units) or None, ``d_last`` (batch, units) or None, ``d_states`` one array or None
    per final state.
    """
    whole = getattr(kernel, "backward_sequence", None)
    if whole is not None and mask is None:  # the compiled counterpart of the kernel's ``forward_sequence``
        return whole(xp_shape, d_outputs, d_last, d_states)
    steps = xp_shape[0]
    dxp = np.empty(xp_shape, dtype=kernel.dtype)
    prepare = getattr(kernel, "begin_backward", None)
    if prepare is not None:  # a kernel may precompute, vectorized over time, what its steps multiply by
        prepare(dxp)
    ds = [np.zeros(s, dtype=kernel.dtype) if d is None else np.asarray(d, dtype=kernel.dtype)
          for d, s in zip(d_states, kernel.state_shapes)]
    gy = None if d_last is None else np.asarray(d_last, dtype=kernel.dtype)  # d loss / d y_t; None is zero
    for t in range(steps - 1, -1, -1):
        if d_outputs is not None:
            gy = d_outputs[t] if gy is None else gy + d_outputs[t]
        if mask is None:
            ds = kernel.step_back(t, ds if gy is None else [ds[0] + gy] + ds[1:], dxp[t])
            gy = None
            continue
        m = mask[t]
        keep = ~m
        new_h = ds[0] if gy is None else ds[0] + gy
        d_new = [np.where(m, new_h, 0)] + [np.where(m, d, 0) for d in ds[1:]]
        carry = [np.where(keep, d, 0) for d in ds]
        gy = None if zero_output_for_mask or gy is None else np.where(keep, gy, 0)
        ds = [d + c for d, c in zip(kernel.step_back(t, d_new, dxp[t]), carry)]
    return dxp, ds


def record_outputs(outputs: list, parents: tuple, vjp):
    """``outputs`` as recorded Tensors sharing one backward pass ``vjp(list of gradients or None)``, which
    returns one gradient per parent; plain arrays when nothing needs a gradient.

    One output is one node. Several (an output and final states) hang off a hidden hub node holding them
    all, flattened: each output's vjp places its gradient in its section of the hub's gradient, so the
    expensive ``vjp`` runs once however many outputs the loss reads.
    """
    if len(outputs) == 1:
        return [record(outputs[0], parents, lambda g: vjp([g]))]
    sizes = [o.size for o in outputs]
    ends = np.cumsum(sizes)
    flat = np.concatenate([o.reshape(-1) for o in outputs])
    total = flat.size

    def hub_vjp(g):
        return vjp([g[e - s:e].reshape(o.shape) for e, s, o in zip(ends, sizes, outputs)])

    hub = record(flat, parents, hub_vjp)
    if not isinstance(hub, Tensor):
        return list(outputs)

    def section(i):
        def section_vjp(g):
            full = np.zeros(total, dtype=flat.dtype)
            full[ends[i] - sizes[i]:ends[i]] = np.asarray(g).reshape(-1)
            return (full,)
        return section_vjp

    return [record(o, (hub,), section(i)) for i, o in enumerate(outputs)]


def time_slices(x) -> list:
    """``x[:, t]`` for every timestep, recorded so that the backward pass costs O(T), not O(T^2).

    Slicing a recorded ``x`` T times the ordinary way gives T nodes whose gradients are each as large as
    ``x``. Here the slices write their gradients into one shared buffer and only the first slice to run
    hands that buffer on, so ``x`` receives it once, complete: the slices are children of ``x``'s hidden
    pass-through node, which the backward walk reaches only after all of them.
    """
    value = np.asarray(unwrap(x))
    slices = [value[:, t] for t in range(value.shape[1])]
    acc = np.zeros_like(value)
    through = record(value, (x,), lambda g: (g,))
    if not isinstance(through, Tensor):
        return slices
    handed = [False]

    def slice_vjp(t):
        def vjp(g):
            acc[:, t] += g
            if handed[0]:
                return (None,)
            handed[0] = True
            return (acc,)
        return vjp

    return [record(s, (through,), slice_vjp(t)) for t, s in enumerate(slices)]
