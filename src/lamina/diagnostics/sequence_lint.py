"""Model lint for sequences: recurrent activations, the time axis of outputs and targets, and masks.

Rules (rule id — severity), run by :func:`lamina.diagnostics.lint` with the others:

* ``recurrent-unbounded-gates`` — warning: an LSTM/GRU (or a ``RNN`` of their cells) whose
  ``recurrent_activation`` is not bounded to [-1, 1] (relu, elu, linear, ...) over ``RECURRENT_STEPS``
  timesteps or more. A gate multiplies the state at every step; a gate value above 1 compounds.
  Measured: GRU(32, recurrent_activation="relu") on the adding problem (Adam 0.01, batch 64, 3,000
  sequences, seeds 0 and 1) trains at 10 steps (validation MSE 0.004 and 0.002 after 6 epochs); at
  20 steps the first epoch's loss is 2.7e7 and 8.8e18 (NaN from the second epoch for seed 1); at
  50 and 100 steps the loss is NaN within the first epoch for both seeds. The sigmoid GRU at 100
  steps reaches 0.015 and 0.003. An LSTM's output ``o * tanh(c)`` hides it, but not its cell state:
  LSTM(32, recurrent_activation="relu") trained 20 epochs on the 50-step problem ends with cell states
  up to 6e15 and 7e7 (seeds 0 and 1), where sigmoid gates keep ``|c|`` at most the number of steps.
* ``recurrent-unbounded-state`` — hint: an unbounded ``activation`` for the state a recurrent cell
  feeds back (SimpleRNN's ``h``, an LSTM's candidate and cell output, a GRU's candidate) over
  ``RECURRENT_STEPS`` or more: nothing bounds the state once training grows the recurrent kernel.
  A hint, not a warning: a relu SimpleRNN with an identity recurrent kernel (IRNN) is a known recipe,
  and on the same task a relu SimpleRNN stayed finite at 100 steps (it learned nothing either).
* ``time-axis-dropped`` — error (given the targets): the targets have a time axis (one per step) but
  the output lost it, because the recurrent layer under the output has ``return_sequences=False``.
* ``time-axis-kept`` — error (given the targets): one target per sequence, but the output keeps
  the time axis (``return_sequences=True`` and a Dense head, which in Keras 3 applies per step).
  These two are the Keras 3 form of the old "Dense over time without TimeDistributed" mistake: a
  Dense layer on ``(batch, steps, features)`` already applies at every step, so the mistake left is
  a time axis that the targets have and the output has not, or the other way round.
* ``mask-dropped`` — warning: a masked sequence (``Embedding(mask_zero=True)`` or ``Masking``)
  reaches a layer that does not support masking (Flatten, Conv1D, GlobalMaxPooling1D, a
  ``keras.ops`` reduction, ...): the padded steps count as data there.

The number of steps is the recurrent layer's input time dimension when the model knows it; when it
is None (``Input(shape=(None, ...))``), ``fit`` reads it from the training data if the layers between
the model input and the recurrent layer keep the time axis. ``unroll=True`` does not change the
arithmetic (only how Keras builds the loop), so the rules read the number of steps, not ``unroll``.
"""

from __future__ import annotations

import numpy as np

from lamina import layers
from lamina.diagnostics._graph import Graph, fn_name, layer_label
from lamina.diagnostics.findings import Finding
from lamina.layers.base_merge import Merge
from lamina.layers.layer import Layer

__all__ = ["RECURRENT_STEPS", "mask_rules", "recurrent_rules", "target_rules"]

RECURRENT_STEPS = 20  # timesteps from which an unbounded gate or state activation is reported
# Activations whose values stay within [-1, 1]: a gate or a state made of them cannot compound past 1.
BOUNDED = frozenset({"sigmoid", "hard_sigmoid", "tanh", "hard_tanh", "softsign", "sparse_sigmoid",
                     "softmax", "sparsemax"})
# Keras's activations that are not bounded (a custom function is left alone: the doctor cannot tell).
UNBOUNDED = frozenset({"relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "hard_silu", "mish",
                       "softplus", "exponential", "linear", "squareplus", "sparse_plus", "log_sigmoid",
                       "hard_shrink", "soft_shrink", "tanh_shrink", "threshold"})


# ----------------------------------------------------------------------------- recurrent layers


def _recurrent(layer) -> bool:
    return isinstance(layer, (layers.RNN, layers.Bidirectional))


def _cells(layer) -> list:
    """The cells a recurrent layer runs (both directions of a Bidirectional, each of a stack)."""
    if isinstance(layer, layers.Bidirectional):
        return _cells(layer.forward_layer) + _cells(layer.backward_layer)
    cell = getattr(layer, "cell", None)
    if cell is None:
        return []
    return list(getattr(cell, "cells", None) or [cell])


def _steps(g) -> int | None:
    shape = g.inputs[0].shape if g.inputs else None
    return shape[1] if shape is not None and len(shape) >= 3 else None


def _keeps_time_axis(layer) -> bool:
    """Layers whose output has the input's time axis (axis 1) unchanged."""
    if _recurrent(layer):
        return bool(layer.return_sequences)
    keep = (layers.Embedding, layers.Masking, layers.Dense, layers.Dropout, layers.Activation,
            layers.BatchNormalization, layers.LayerNormalization, layers.TimeDistributed)
    return isinstance(layer, keep) or type(layer).__name__ == "SpatialDropout1D"


def _steps_from_data(graph: Graph, g, xs: list) -> int | None:
    """The length of the data's time axis reaching ``g``: walk back through layers that keep it to a model
    input, whose array's axis 1 it is."""
    inputs = {id(t): i for i, t in enumerate(graph.inputs)}
    t = g.inputs[0] if g.inputs else None
    while t is not None:
        if id(t) in inputs:
            i = inputs[id(t)]
            arr = xs[i] if i < len(xs) else None
            return int(np.shape(arr)[1]) if arr is not None and np.ndim(arr) >= 2 else None
        p = graph.producer.get(id(t))
        if p is None or not _keeps_time_axis(p.layer) or not p.inputs:
            return None
        t = p.inputs[0]
    return None


def recurrent_rules(graph: Graph, xs: list | None = None) -> list[Finding]:
    """``recurrent-unbounded-gates`` / ``recurrent-unbounded-state``. Without ``xs`` for the layers whose
    number of steps the model knows; with ``xs`` (the training inputs) for the others, from the data."""
    out = []
    for g in graph.nodes:
        if not _recurrent(g.layer):
            continue
        steps = _steps(g)
        if xs is not None:
            steps = _steps_from_data(graph, g, xs) if steps is None else None
        if steps is None or steps < RECURRENT_STEPS:
            continue
        out += _unbounded(g.layer, steps)
    return out


def _unbounded(layer, steps: int) -> list[Finding]:
    gates, state = set(), set()
    for cell in _cells(layer):
        if hasattr(cell, "recurrent_activation"):
            gates.add(fn_name(cell.recurrent_activation))
        if hasattr(cell, "activation"):
            state.add(fn_name(cell.activation))
    label, kind = layer_label(layer), _kind(layer)
    out = []
    bad = sorted(gates & UNBOUNDED)
    if bad:
        out.append(Finding(
            "recurrent-unbounded-gates", "warning", (layer.name,),
            f"Layer {label} uses recurrent_activation={bad[0]!r} for its gates over {steps} timesteps. A gate "
            "is a fraction that scales the state at every step (an LSTM's forget gate multiplies the cell state, "
            "a GRU's update gate mixes the old state in); an unbounded gate can exceed 1, and over many steps "
            "the state and its gradient grow geometrically until they overflow to inf or NaN (on the adding "
            "problem a relu-gated GRU's loss is NaN within one epoch from 20-50 steps, and a relu-gated LSTM's "
            "cell state reaches 1e15 over 50 steps; sigmoid gates keep it below the number of steps).",
            f"Keep the default recurrent_activation='sigmoid' (or 'hard_sigmoid'); put relu in a Dense layer "
            f"after the {kind} if you want it.",
        ))
    bad = sorted(state & UNBOUNDED)
    if bad:
        out.append(Finding(
            "recurrent-unbounded-state", "hint", (layer.name,),
            f"Layer {label} uses activation={bad[0]!r} for the state it feeds back over {steps} timesteps: "
            "nothing bounds that state, so once training makes the recurrent kernel stretch some direction by "
            "more than 1 per step, the states and gradients grow geometrically with the number of steps and "
            "the loss can blow up.",
            "Use the default activation='tanh'. If relu is the point (an IRNN), start recurrent_kernel at the "
            "identity (recurrent_initializer='identity'), clip the gradients (e.g. Adam(clipnorm=1.0)) and "
            "keep the learning rate small.",
        ))
    return out


def _kind(layer) -> str:
    return type(layer.forward_layer if isinstance(layer, layers.Bidirectional) else layer).__name__


# ----------------------------------------------------------------------------- masks


def _makes_mask(layer) -> bool:
    return isinstance(layer, layers.Masking) or (isinstance(layer, layers.Embedding)
                                                 and bool(getattr(layer, "mask_zero", False)))


def _mask_passes(layer) -> bool | None:
    """For a layer that supports masking and receives a mask: does its output carry one? None: unknown
    (a layer with its own ``compute_mask`` the doctor does not know), treated as ending the mask."""
    if _recurrent(layer):
        return bool(layer.return_sequences)
    if isinstance(layer, layers.Dot):
        return False
    if isinstance(layer, Merge):
        return True
    if type(layer).compute_mask is Layer.compute_mask:
        return True  # the default: the input's mask passes through (Dense, Dropout, TimeDistributed, ...)
    return None


def mask_rules(graph: Graph) -> list[Finding]:
    """``mask-dropped``: follow each mask from the layer that makes it; report the layers that drop it."""
    origin: dict[int, object] = {}  # tensor id -> the layer whose mask it carries
    out = []
    for g in graph.nodes:
        layer = g.layer
        if _makes_mask(layer):
            for t in g.outputs:
                origin[id(t)] = layer
            continue
        sources = g.inputs if isinstance(layer, Merge) else g.inputs[:1]
        source = next((origin[id(t)] for t in sources if id(t) in origin), None)
        if source is None:
            continue
        if not layer.supports_masking:
            out.append(_mask_dropped(layer, source))
        elif _mask_passes(layer):
            for t in (g.outputs if not _recurrent(layer) else g.outputs[:1]):
                origin[id(t)] = source
    return out


def _mask_effect(layer) -> str:
    name = type(layer).__name__
    if name.startswith("GlobalMaxPool"):
        return "takes the maximum over every step, padded ones included (it ignores masks, as in Keras)"
    if isinstance(layer, (layers.Flatten, layers.Reshape)):
        return "turns every step, padded ones included, into features that the next layers weigh"
    if "Conv" in name or "Pooling" in name:
        return "slides its window over the padded steps as if they were data"
    if getattr(layer, "_drops_masks_quietly", False):
        return "is a keras.ops call, and ops neither read nor pass on masks: the padded steps count in its result"
    return "does not support masking: it treats the padded steps as data"


def _mask_dropped(layer, source) -> Finding:
    how = "mask_zero=True" if isinstance(source, layers.Embedding) else "its mask_value"
    return Finding(
        "mask-dropped", "warning", (source.name, layer.name),
        f"Layer {layer_label(source)} masks the padded steps ({how}), but layer {layer_label(layer)} "
        f"{_mask_effect(layer)}; the mask stops there, so neither it nor the layers after it skip the padding, "
        "and a sequence's prediction depends on how much padding it got.",
        "Summarise a masked sequence with a layer that reads the mask: GlobalAveragePooling1D (averages the "
        "kept steps only) or an LSTM/GRU (skips masked steps). If the padding is meant to count, drop the "
        f"mask ({'mask_zero=False' if how == 'mask_zero=True' else 'remove the Masking layer'}) so the model "
        "says what it does.",
    )


# ----------------------------------------------------------------------------- targets vs the time axis


def _recurrent_under(graph: Graph, i: int):
    """The recurrent node whose output reaches output ``i`` through per-vector layers only (Dense,
    activations, dropout, normalisation), or None."""
    g = graph.producer.get(id(graph.outputs[i]))
    while g is not None:
        if _recurrent(g.layer):
            return g
        if isinstance(g.layer, (layers.Flatten, layers.Reshape)) or not _keeps_time_axis(g.layer) or \
                isinstance(g.layer, (layers.Embedding, layers.Masking)):
            return None
        parents = graph.parents(g)
        g = parents[0] if len(parents) == 1 else None
    return None


def _per_step(kind: str | None, y: np.ndarray, out_ndim: int, steps: int | None, units) -> bool:
    """Targets with a time axis, for an output ``(batch, units)`` without one."""
    if kind == "sparse":  # expected (n,) or (n, 1)
        return y.ndim >= 2 and y.shape[1] > 1 and (steps is None or y.shape[1] == steps)
    if y.ndim == out_ndim + 1:  # (n, steps, units) against (n, units)
        return steps is None or y.shape[1] == steps
    return kind != "categorical" and units == 1 and y.ndim == 2 and steps is not None and y.shape[1] == steps > 1


def _per_sequence(kind: str | None, y: np.ndarray, steps: int | None, units) -> bool:
    """One target per sequence, for an output ``(batch, steps, units)``."""
    if steps == 1:
        return False
    if kind == "sparse":
        return y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)
    if y.ndim == 1:
        return True
    return y.ndim == 2 and steps is not None and y.shape[1] != steps and y.shape[1] == units


def target_rules(graph: Graph, i: int, kind: str | None, y, xs: list | None) -> Finding | None:
    """``time-axis-dropped`` / ``time-axis-kept`` for output ``i`` and its targets ``y``; ``kind`` is the
    loss's ("binary", "categorical", "sparse", or None for the others)."""
    g = _recurrent_under(graph, i)
    shape = graph.outputs[i].shape
    if g is None or shape is None or y is None or np.ndim(y) == 0:
        return None
    y = np.asarray(y) if not hasattr(y, "shape") else y
    steps = _steps(g)
    if steps is None and xs is not None:
        steps = _steps_from_data(graph, g, xs)
    units = shape[-1]
    label, name = layer_label(g.layer), g.layer.name
    if len(shape) == 2 and not g.layer.return_sequences and _per_step(kind, y, 2, steps, units):
        return Finding(
            "time-axis-dropped", "error", (name,),
            f"The targets have a time axis (shape {tuple(y.shape)}: one per step), but the model's output "
            f"{tuple(shape)} has none: layer {label} has return_sequences=False, so it passes on its last step "
            "only and the model makes one prediction per sequence, which the loss would compare with every "
            "step's target.",
            f"Give {name} return_sequences=True: the layers after it then predict at every step (in Keras 3 a "
            "Dense layer on (batch, steps, features) already applies per step; TimeDistributed(Dense) is the "
            "same). If one target per sequence is meant, pass targets of shape (n,) or (n, units).",
        )
    if len(shape) == 3 and g.layer.return_sequences and _per_sequence(kind, y, steps, units):
        head = graph.producer.get(id(graph.outputs[i]))
        after = " and the Dense layer after it applies to each step" if isinstance(head.layer, layers.Dense) else ""
        return Finding(
            "time-axis-kept", "error", (name,),
            f"The model predicts at every step (output {tuple(shape)}: layer {label} has return_sequences=True"
            f"{after}), but the targets have one value per sequence "
            f"(shape {tuple(y.shape)}): the loss would compare each sequence's target with every step's "
            "prediction.",
            f"Set return_sequences=False on {name} (its last step summarises the sequence), or pool over time "
            "with GlobalAveragePooling1D before the output layer; keep return_sequences=True only with one "
            "target per step, shape (n, steps).",
        )
    return None
