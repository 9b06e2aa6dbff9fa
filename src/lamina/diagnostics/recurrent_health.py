"""Recurrent health: how saturated the gates of each SimpleRNN, LSTM and GRU layer are, and how much of the
loss's gradient reaches each timestep (gradient flow through time).

Each recurrent layer (a ``SimpleRNN``/``LSTM``/``GRU``, a generic ``RNN`` over one of their cells, and each
half of a ``Bidirectional`` over them) is *replayed* on the sample with its own weights, step by step with
lamina ops, in inference mode (no dropout), to read its gates. The replay's output is compared with the
layer's own; a layer whose replay differs is reported as skipped, never measured wrongly. The gradient at the
layer's input comes from the measuring pass itself (the layer's own backpropagation through time) when that
input feeds the layer alone; otherwise (a Bidirectional's halves share theirs) the tape differentiates the replay.
Sample rows are independent in a recurrent layer, so a long sequence is replayed on the first rows only
(``REPLAY_ROW_STEPS`` row-steps at most): the fractions and per-row means below are then those rows'.

**Gates** (names in the report), with the activation that makes each:

* LSTM: ``input`` i, ``forget`` f, ``output`` o (its ``recurrent_activation``), ``candidate``
  g = activation(z_c), and ``cell`` = activation(c_t), the squashed cell state the output gate lets out
  (h_t = o * activation(c_t)): saturated there, the cell state stops passing gradient to h_t;
* GRU: ``update`` z, ``reset`` r (``recurrent_activation``), ``candidate`` (``activation``);
* SimpleRNN: ``activation``, its output h_t = activation(x_t W + h_{t-1} U + b).

**Saturated**: the fraction of a gate's values (every unit, sample row and timestep the mask keeps) on or next to
the flat part of its activation, where its slope is almost 0 and the weights feeding it barely learn (a forget
gate stuck near 1 is also an LSTM keeping its memory: the cell's gradient then passes back unchanged). By
activation (``MARGIN`` = 0.01):

* sigmoid, hard_sigmoid (range [0, 1]): within 0.01 of 0 or 1, i.e. the gate is nearly shut or fully open
  (sigmoid's slope there is below 0.0099, 4 % of its peak; hard_sigmoid's is 0 where it is clipped to exactly
  0 or 1, which the margin includes, with a sliver of its linear part next to it);
* tanh, hard_tanh, softsign (range [-1, 1]): within 0.01 of -1 or +1 (tanh's slope there is below 0.02);
* relu: exactly 0 (the flat side: a unit that is off passes no gradient through that step); relu6: 0 or 6;
* any other activation (linear, elu, ...) has no flat part to be stuck on: not measured (absent).

**Gradient flow through time**: for the layer's input sequence x and the compiled loss L (the mean over the
sample, as the per-layer gradient norms of :mod:`lamina.diagnostics.health`), the norm reaching timestep t is

    g_t = sqrt( mean over the sample rows b that the mask keeps at t of ||dL/dx_{b,t}||^2 )

with t counted in the order the layer reads the sequence (input order reversed for ``go_backwards``, so each
half of a Bidirectional gets its own curve). x_t influences the loss only through h_t, h_{t+1}, ...: with
``return_sequences=False`` (the loss sees the last step only) g_t for early t is exactly what survives the
backward trip through the recurrence, so **ratio** = g_first / g_last is the vanishing-gradient figure. How far
it falls depends on the weights and the data: a SimpleRNN whose tanh saturates loses it fastest (over 100 steps
of inputs with standard deviation 3, one epoch from Keras's initialisation: about 1e-30 for a SimpleRNN(16)
against 4e-12 for an LSTM(16)), an LSTM keeps it while its forget gate stays near 1. A step that the mask
drops on every row has no value (nan); the ratio uses the first and last steps that have one.
"""

from __future__ import annotations

import math

import numpy as np

from lamina import activations, backend, ops
from lamina.autodiff import GradientTape, Tensor, record, stop_recording, unwrap
from lamina.diagnostics._graph import fn_name
from lamina.layers import GRUCell, LSTMCell, SimpleRNNCell
from lamina.layers.bidirectional import Bidirectional
from lamina.layers.keras_tensor import flatten
from lamina.layers.rnn import RNN
from lamina.layers.rnn_scan import time_slices

__all__ = ["GATES", "MARGIN", "REPLAY_ROW_STEPS", "collector", "gradient_sources", "is_recurrent", "replay", "report",
           "run_layer", "saturation_rule", "saturation_words", "time_norms", "time_ratio"]

MARGIN = 0.01
# At most this many (row, timestep) pairs are replayed per layer: the first rows of the sample that fit (the
# tape keeps every step's values; 1024 rows of 256 steps, a few rows of a 10,000-step sequence).
REPLAY_ROW_STEPS = 262_144
GATES = {
    "LSTM": ("input", "forget", "output", "candidate", "cell"),
    "GRU": ("update", "reset", "candidate"),
    "SimpleRNN": ("activation",),
}
_UNIT_RANGE = ("sigmoid", "hard_sigmoid")
_SYMMETRIC = ("tanh", "hard_tanh", "softsign")


def saturation_rule(fn):
    """``(words, predicate)`` for the activation ``fn`` (``predicate(values) -> bool array``), or None when the
    activation has no flat part (see the module docstring)."""
    name = fn_name(fn)
    if name in _UNIT_RANGE:
        return f"within {MARGIN} of 0 or 1", lambda v: (v <= MARGIN) | (v >= 1 - MARGIN)
    if name in _SYMMETRIC:
        return f"within {MARGIN} of -1 or +1", lambda v: np.abs(v) >= 1 - MARGIN
    if name == "relu":
        return "exactly 0", lambda v: v <= 0
    if name == "relu6":
        return "exactly 0 or 6", lambda v: (v <= 0) | (v >= 6)
    return None


def _cell_kind(cell) -> str | None:
    """``"LSTM"``, ``"GRU"`` or ``"SimpleRNN"`` for a built-in cell whose step is its own; else None."""
    for kind, cls in (("LSTM", LSTMCell), ("GRU", GRUCell), ("SimpleRNN", SimpleRNNCell)):
        if isinstance(cell, cls):
            return kind if type(cell).call is cls.call else None
    return None


def is_recurrent(layer) -> bool:
    """Does the doctor report on ``layer`` (an RNN, or a Bidirectional over RNNs)?"""
    if isinstance(layer, Bidirectional):
        return isinstance(layer.forward_layer, RNN) and isinstance(layer.backward_layer, RNN)
    return isinstance(layer, RNN)


def _gate_activations(cell, kind) -> dict:
    if kind == "LSTM":
        rec, act = cell.recurrent_activation, cell.activation
        return {"input": rec, "forget": rec, "output": rec, "candidate": act, "cell": act}
    if kind == "GRU":
        rec = cell.recurrent_activation
        return {"update": rec, "reset": rec, "candidate": cell.activation}
    return {"activation": cell.activation}


def _why_not(layer) -> str | None:
    """Why ``layer`` (an RNN) cannot be replayed, or None."""
    if _cell_kind(layer.cell) is None:
        return (f"its cell {type(layer.cell).__name__} is not a SimpleRNNCell, LSTMCell or GRUCell with its own "
                "step (a user-written or stacked cell has no gates the doctor knows)")
    if layer.stateful:
        return "it is stateful (its states carry over from the training batches; a replay from zeros would differ)"
    return None


# ------------------------------------------------------------------ the replay


class _Counts:
    """Per gate: [saturated values, values] over the kept (row, step) pairs, and each gate's rule."""

    def __init__(self, cell, kind):
        self.kind = kind
        self.activations = {g: fn_name(fn) for g, fn in _gate_activations(cell, kind).items()}
        self.rules = {g: saturation_rule(fn) for g, fn in _gate_activations(cell, kind).items()}
        self.counts = {g: [0, 0] for g, rule in self.rules.items() if rule is not None}

    def add(self, gate, value, keep) -> None:
        if gate not in self.counts:
            return
        v = np.asarray(unwrap(value))
        hit = self.rules[gate][1](v)
        c = self.counts[gate]
        if keep is None:
            c[0] += int(np.count_nonzero(hit))
            c[1] += hit.size
        else:
            c[0] += int(np.count_nonzero(hit[keep]))
            c[1] += int(np.count_nonzero(keep)) * v.shape[-1]

    def fractions(self) -> dict:
        return {g: (s / n if n else float("nan")) for g, (s, n) in self.counts.items()}


def _weights(cell, kind):
    k, rk = unwrap(cell.kernel), unwrap(cell.recurrent_kernel)
    b = None if cell.bias is None else unwrap(cell.bias)
    if kind == "GRU" and cell.reset_after and b is not None:
        return k, rk, b[0], b[1]
    return k, rk, b, None


def _split(z, count: int) -> list:
    """``z``'s last axis in ``count`` equal blocks, recorded so that their gradients fill one shared array (as
    ``rnn_scan.time_slices`` does over time): ``ops.split`` scatters each block's with ``np.add.at`` into an array
    of its own, several times slower per step. The blocks hang off a pass-through node of ``z`` that the backward
    walk reaches only after all of them, so the array it hands on is complete."""
    value = unwrap(z)
    width = value.shape[-1] // count
    blocks = [value[..., k * width:(k + 1) * width] for k in range(count)]
    through = record(value, (z,), lambda g: (g,))
    if not isinstance(through, Tensor):
        return blocks
    acc = np.zeros_like(value)
    handed = [False]

    def vjp_of(k):
        def vjp(g):
            acc[..., k * width:(k + 1) * width] += g
            if handed[0]:
                return (None,)
            handed[0] = True
            return (acc,)
        return vjp

    return [record(b, (through,), vjp_of(k)) for k, b in enumerate(blocks)]


def _lstm_step(cell, rk, _rb, xp_t, states, counts, keep):
    h, c = states
    z = ops.add(xp_t, ops.matmul(h, rk))
    z_i, z_f, z_c, z_o = _split(z, 4)
    rec, act = cell.recurrent_activation, cell.activation
    i, f, o, g = rec(z_i), rec(z_f), rec(z_o), act(z_c)
    c = ops.add(ops.multiply(f, c), ops.multiply(i, g))
    ac = act(c)
    for name, v in (("input", i), ("forget", f), ("output", o), ("candidate", g), ("cell", ac)):
        counts.add(name, v, keep)
    h = ops.multiply(o, ac)
    return h, [h, c]


def _gru_step(cell, rk, rb, xp_t, states, counts, keep):
    h = states[0]
    u = cell.units
    x_z, x_r, x_h = _split(xp_t, 3)
    rec, act = cell.recurrent_activation, cell.activation
    if cell.reset_after:
        inner = ops.matmul(h, rk)
        if rb is not None:
            inner = ops.add(inner, rb)
        r_z, r_r, r_h = _split(inner, 3)
        z, r = rec(ops.add(x_z, r_z)), rec(ops.add(x_r, r_r))
        hh = act(ops.add(x_h, ops.multiply(r, r_h)))
    else:
        r_z, r_r = _split(ops.matmul(h, rk[:, :2 * u]), 2)
        z, r = rec(ops.add(x_z, r_z)), rec(ops.add(x_r, r_r))
        hh = act(ops.add(x_h, ops.matmul(ops.multiply(r, h), rk[:, 2 * u:])))
    for name, v in (("update", z), ("reset", r), ("candidate", hh)):
        counts.add(name, v, keep)
    h = ops.add(ops.multiply(z, h), ops.multiply(ops.subtract(1.0, z), hh))
    return h, [h]


def _simple_step(cell, rk, _rb, xp_t, states, counts, keep):
    h = cell.activation(ops.add(xp_t, ops.matmul(states[0], rk)))
    counts.add("activation", h, keep)
    return h, [h]


_STEPS = {"LSTM": _lstm_step, "GRU": _gru_step, "SimpleRNN": _simple_step}


def _replay_rnn(layer, x, mask, counts: _Counts) -> list:
    """``layer`` (an RNN over a built-in cell) on ``x`` (batch, timesteps, features) from zero states:
    ``[output, *final states]`` as the layer computes them, each gate's saturation counted into ``counts``."""
    cell, kind = layer.cell, counts.kind
    kernel, rk, in_bias, rec_bias = _weights(cell, kind)
    xp = ops.matmul(x, kernel)
    if in_bias is not None:
        xp = ops.add(xp, in_bias)
    steps = time_slices(xp)
    keep_tm = None if mask is None else mask.T
    if layer.go_backwards:
        steps = steps[::-1]
        keep_tm = None if keep_tm is None else keep_tm[::-1]
    batch = np.shape(unwrap(x))[0]
    dtype = np.asarray(unwrap(xp)).dtype
    sizes = [cell.units, cell.units] if kind == "LSTM" else [cell.units]
    states = [np.zeros((batch, n), dtype=dtype) for n in sizes]
    step = _STEPS[kind]
    y, outputs = None, []
    for t, xp_t in enumerate(steps):
        keep = None if keep_tm is None else keep_tm[t]
        y_new, new = step(cell, rk, rec_bias, xp_t, states, counts, keep)
        if keep is not None:
            m = keep[:, None]
            new = [ops.where(m, n, s) for n, s in zip(new, states)]
            previous = ops.zeros_like(y_new) if y is None or layer.zero_output_for_mask else y
            y_new = ops.where(m, y_new, previous)
        states, y = new, y_new
        if layer.return_sequences:
            outputs.append(y)
    output = ops.stack(outputs, axis=1) if layer.return_sequences else y
    return [output] + states


def _merge(mode, y, y_rev) -> list:
    if mode == "concat":
        return [ops.concatenate([y, y_rev], axis=-1)]
    if mode == "sum":
        return [ops.add(y, y_rev)]
    if mode == "ave":
        return [ops.divide(ops.add(y, y_rev), 2)]
    if mode == "mul":
        return [ops.multiply(y, y_rev)]
    return [y, y_rev]


def replay(layer, xs: list, mask, counts: list) -> list:
    """The flat outputs of ``layer`` (an RNN, or a Bidirectional over two) on its input sequence, replayed with
    lamina ops: ``xs`` holds the input once per half (one entry for an RNN, two for a Bidirectional, so that
    each half's input gradient comes apart), ``counts`` a :class:`_Counts` per half."""
    if not isinstance(layer, Bidirectional):
        out = _replay_rnn(layer, xs[0], mask, counts[0])
        return out if layer.return_state else out[:1]
    fwd = _replay_rnn(layer.forward_layer, xs[0], mask, counts[0])
    bwd = _replay_rnn(layer.backward_layer, xs[1], mask, counts[1])
    y, y_rev = fwd[0], bwd[0]
    if layer.return_sequences:
        y_rev = ops.flip(y_rev, axis=1)
    return _merge(layer.merge_mode, y, y_rev) + (fwd[1:] + bwd[1:] if layer.return_state else [])


def _halves(layer) -> list:
    """``[(report name, RNN)]``: the layer itself, or a Bidirectional's two halves."""
    if isinstance(layer, Bidirectional):
        return [(f"{layer.name}/{sub.name}", sub) for sub in (layer.forward_layer, layer.backward_layer)]
    return [(layer.name, layer)]


# ------------------------------------------------------------------ gradient flow through time


def time_norms(grad_x: np.ndarray, mask, go_backwards: bool) -> list:
    """Per timestep, in reading order: the root mean square over the kept sample rows of ``||dL/dx_{b,t}||``
    (nan where the mask keeps no row)."""
    g = np.asarray(grad_x, dtype=np.float64)
    sq = np.einsum("btf,btf->bt", g, g)  # (batch, timesteps): squared norm per row and step
    if mask is None:
        per_t = np.sqrt(sq.mean(axis=0))
    else:
        kept = mask.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_t = np.where(kept > 0, np.sqrt(np.where(mask, sq, 0.0).sum(axis=0) / np.maximum(kept, 1)), np.nan)
    if go_backwards:
        per_t = per_t[::-1]
    return [float(v) for v in per_t]


def time_ratio(norms: list) -> float:
    """First over last of the per-timestep norms that have a value (nan when undefined)."""
    finite = [v for v in norms if math.isfinite(v)]
    if len(finite) < 2 or not finite[-1]:
        return float("nan")
    return finite[0] / finite[-1]


# ------------------------------------------------------------------ what measure() calls


class _Node:
    """One call of a recurrent layer seen during the measuring pass: its input, mask and outputs, and whether
    the input feeds this node alone (then the loss's gradient at the input is this layer's own)."""

    __slots__ = ("layer", "x", "mask", "outputs", "why_not", "private")

    def __init__(self, layer, x, mask, outputs, why_not, private):
        self.layer, self.x, self.mask, self.outputs, self.why_not = layer, x, mask, outputs, why_not
        self.private = private


def _mask_of(x):
    mask = backend.get_keras_mask(x)
    if mask is None:
        mask = backend.get_keras_mask(unwrap(x))
    if mask is None:
        return None
    m = np.asarray(unwrap(mask))
    if m.ndim == 3 and m.shape[-1] == 1:
        m = m[..., 0]
    return m.astype(bool)


def collector(nodes: list, graph=None):
    """A ``Graph.run`` visitor that keeps each recurrent node's input, mask and outputs in ``nodes`` (``graph``:
    the graph it runs, to tell whether a node's input feeds it alone)."""
    def visit(g, args, outs):
        layer = g.layer
        if not is_recurrent(layer):
            return
        why = None
        if g.node.call_args or g.node.call_kwargs.get("initial_state") is not None:
            why = "it was called with an initial_state or a mask tensor (only zero initial states are replayed)"
        else:
            for _, sub in _halves(layer):
                why = why or _why_not(sub)
        x = args[0] if isinstance(args, (list, tuple)) else args
        if why is None and len(np.shape(unwrap(x))) != 3:
            why = "its input is not a (batch, timesteps, features) sequence"
        private = graph is not None and len(g.inputs) == 1 and len(graph.consumers.get(id(g.inputs[0]), ())) == 1 \
            and not any(t is g.inputs[0] for t in graph.outputs)
        outputs = flatten(outs[0]) if len(outs) == 1 else list(outs)
        nodes.append(_Node(layer, x, _mask_of(x), outputs, why, private))

    return visit


def gradient_sources(nodes: list) -> list:
    """What ``measure`` asks the tape for, per node in order: its input, then each of its flat outputs."""
    return [t for n in nodes for t in [n.x, *n.outputs]]


def _entry(layer, label, kind, counts=None, norms=None, why=None) -> dict:
    entry = {"layer": label, "cell": kind, "go_backwards": bool(getattr(layer, "go_backwards", False))}
    if why is not None:
        entry["skipped"] = why
        return entry
    entry["activations"] = counts.activations
    entry["saturated"] = counts.fractions()
    if norms is not None:
        entry["grad_norm_t"] = norms
        entry["grad_ratio_t"] = time_ratio(norms)
    return entry


def _compare(replayed: list, actual: list) -> str | None:
    """Why the replay is not the layer's own output, or None when they agree (to float32 rounding)."""
    if len(replayed) != len(actual):
        return f"its replay gave {len(replayed)} outputs where the layer gave {len(actual)}"
    for r, a in zip(replayed, actual):
        r, a = np.asarray(unwrap(r)), np.asarray(unwrap(a))
        if r.shape != a.shape:
            return f"its replay gave an output of shape {r.shape} where the layer gave {a.shape}"
        tol = 1e-4 if r.dtype == np.float64 else 2e-3
        if not np.allclose(r, a, rtol=tol, atol=tol, equal_nan=True):
            return f"its replay differs from the layer's output (largest difference {np.max(np.abs(r - a)):.3g})"
    return None


def report(nodes: list, grads: list | None = None) -> dict:
    """``{name: entry}`` for every recurrent node (a Bidirectional gives one entry per half, named
    ``"bidirectional/forward_lstm"``). ``grads``: the loss's gradients at :func:`gradient_sources`, in order (None:
    no gradient flow, saturation only).

    The gradient at an RNN's input, when the input feeds that layer alone, is the layer's own backward pass
    (its fused backpropagation through time): it is used as it is, and the replay runs forward only, for the
    gates. Otherwise (a Bidirectional, whose halves share the input; an input other layers read too) the
    replay carries the gradient at the layer's outputs back through time itself, on the tape.

    Entry: ``{"layer", "cell": "LSTM" | "GRU" | "SimpleRNN" | None, "go_backwards", "activations": {gate: name},
    "saturated": {gate: fraction}, "grad_norm_t": [per timestep, reading order], "grad_ratio_t": first/last}``,
    or ``{"layer", "cell", "go_backwards", "skipped": why}`` for a layer the doctor cannot replay.
    """
    out: dict[str, dict] = {}
    at = 0
    for node in nodes:
        g_node = None if grads is None else grads[at:at + 1 + len(node.outputs)]
        at += 1 + len(node.outputs)
        for name, entry in _node_report(node, g_node).items():
            out[name if name not in out else f"{name}:{len(out)}"] = entry
    return out


def run_layer(layer, x, mask=None, output_gradients=None):
    """Replay ``layer`` (an RNN over a built-in cell, or a Bidirectional over two) on the sequence ``x``.

    Returns ``(outputs, input_gradients, counts)``: the layer's flat outputs as replayed, and given
    ``output_gradients`` (dL/d each flat output; None entries for outputs the loss does not use) dL/dx for each
    half (one array for an RNN, forward then backward for a Bidirectional; else None), and each half's gate
    counts (``counts[k].fractions()``: {gate: saturated fraction}).
    """
    halves = _halves(layer)
    counts = [_Counts(sub.cell, _cell_kind(sub.cell)) for _, sub in halves]
    x = np.asarray(unwrap(x))
    seeds = [] if output_gradients is None else [(i, g) for i, g in enumerate(output_gradients) if g is not None]
    xs = [np.array(x) for _ in halves]  # one copy per half: each half's input gradient comes apart
    with np.errstate(all="ignore"):
        if not seeds:
            with stop_recording():
                return replay(layer, xs, mask, counts), None, counts
        with GradientTape() as tape:
            tape.watch(xs)
            outs = replay(layer, xs, mask, counts)
        pairs = [(outs[i], g) for i, g in seeds if i < len(outs) and isinstance(outs[i], Tensor)]
        grads = tape.gradient([o for o, _ in pairs], xs, output_gradients=[g for _, g in pairs]) if pairs else \
            [None] * len(xs)
    return outs, [np.zeros_like(x) if g is None else g for g in grads], counts


def _node_report(node: _Node, g_node) -> dict:
    halves = _halves(node.layer)
    if node.why_not is not None:
        return {name: _entry(sub, name, _cell_kind(sub.cell), why=node.why_not) for name, sub in halves}
    x = np.asarray(unwrap(node.x))
    rows = min(x.shape[0], max(1, REPLAY_ROW_STEPS // max(x.shape[1], 1)))  # rows are independent: any subset
    mask = None if node.mask is None else node.mask[:rows]
    g_node = [None] if g_node is None else [None if g is None else np.asarray(g)[:rows] for g in g_node]
    g_x, g_out = g_node[0], g_node[1:]
    if g_x is not None and node.private and not isinstance(node.layer, Bidirectional):
        outs, _, counts = run_layer(node.layer, x[:rows], mask)
        grads = [g_x]
    else:
        outs, grads, counts = run_layer(node.layer, x[:rows], mask, g_out or None)
    why = _compare(outs, [np.asarray(unwrap(a))[:rows] for a in node.outputs])
    result = {}
    for k, (name, sub) in enumerate(halves):
        if why is not None:
            result[name] = _entry(sub, name, counts[k].kind, why=why)
            continue
        norms = None if grads is None else time_norms(grads[k], mask, sub.go_backwards)
        result[name] = _entry(sub, name, counts[k].kind, counts[k], norms)
    return result


def saturation_words(activation_name: str) -> str:
    """What "saturated" means for the activation named ``activation_name`` (for messages)."""
    rule = saturation_rule(activations.get(activation_name))
    return "saturated" if rule is None else rule[0]
