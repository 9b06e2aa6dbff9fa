"""Activation-health statistics: dead and saturated units, activation spread, gradient norms, and the
first layer and op that produced a NaN or inf.

Definitions (per layer with an activation, over a sample of rows):

* **dead** (ReLU family: relu, relu6, leaky_relu, prelu, elu, selu): the fraction of units (last
  axis) whose activation was never > 0 on any sample row — they pass no gradient (leaky/elu units a
  tiny one) and, for plain relu, cannot recover. For a convolution (and an activation layer after
  one) the units are its channels (the last axis, or axis 1 with ``data_format="channels_first"``):
  a channel is dead when it is never > 0 at any sample row and any spatial position.
* **saturated** (sigmoid, tanh, hard_sigmoid, hard_tanh): the fraction of pre-activations (every
  unit, row and, for a convolution, spatial position) on the
  flat part of the curve, ``|z| > FLAT[name]``: 5 for sigmoid (slope < 0.0067, 2.7 % of its peak
  0.25), 2.5 for tanh (slope < 0.027, 2.7 % of its peak 1), 3 for hard_sigmoid and 1 for hard_tanh
  (slope exactly 0 beyond).
  An output layer whose sigmoid/softmax the loss reads as logits is marked ``paired_with_loss``: its
  gradient at the logits is ``p - y`` (no flat part), so its saturation is confidence, not a warning.
* **mean**, **std**: of the activations.
* **gradient norm**: the L2 norm of the loss gradient over each layer's trainable weights, from one
  forward + backward pass with the model's compiled loss (inference mode: Dropout off, moving
  BatchNormalization statistics, nothing updated); **ratio**: first weighted layer's norm over the
  last's.

Recurrent layers (SimpleRNN, LSTM, GRU, Bidirectional) are looked inside by
:mod:`lamina.diagnostics.recurrent_health` (gate saturation, gradient flow through time), in the same pass
(``measure(..., recurrent={})``).
"""

from __future__ import annotations

import math

import numpy as np

from lamina.autodiff import GradientTape, stop_recording, unwrap
from lamina.diagnostics import recurrent_health as rh
from lamina.diagnostics._graph import (
    ACT,
    AFFINE_ACT,
    RELU_FAMILY,
    Graph,
    activation_of,
    flatten_inputs,
    is_conv,
    role_of,
    unit_axis,
)
from lamina.layers.keras_tensor import flatten
from lamina.models import data as data_lib

__all__ = ["FLAT", "SAMPLE_ROWS", "activation_stats", "gradient_norms", "gradient_ratio", "keep_sample",
           "locate_nonfinite", "measure"]

SAMPLE_ROWS = 1024  # rows of the training data fit keeps for ActivationHealth (a random subset)
FLAT = {"sigmoid": 5.0, "tanh": 2.5, "hard_sigmoid": 3.0, "hard_tanh": 1.0}


def keep_sample(model, x, y, rows: int = SAMPLE_ROWS) -> None:
    """Store a random subset of ``rows`` training rows as ``model._fit_sample = (x, y)``.

    Uses its own fixed-seed generator so it never moves lamina's global random stream (training
    stays reproducible with or without the doctor).
    """
    if not data_lib.is_array_like(x):
        model._fit_sample = None
        return
    n = int(np.shape(data_lib._leaves(x)[0])[0])
    if n <= rows:
        idx = np.arange(n)
    else:
        idx = np.sort(np.random.default_rng(0).choice(n, rows, replace=False))
    model._fit_sample = (data_lib.slice_all(x, idx), data_lib.slice_all(y, idx) if y is not None else None)


def _prepare(model, x) -> list:
    flat = flatten_inputs(model, x)
    out = []
    for a in flat:
        a = np.asarray(a)
        if a.dtype.kind == "f" and a.dtype.name != model.dtype:
            a = a.astype(model.dtype)
        out.append(a)
    return out


def _dead_fraction(a: np.ndarray, axis: int) -> float:
    """The fraction of units along ``axis`` that are never > 0 over every other axis (rows, positions)."""
    if a.ndim < 2:
        return float(np.mean(a <= 0)) if a.size else 0.0
    per_unit = np.moveaxis(a, axis, -1).reshape(-1, a.shape[axis])
    return float(np.mean(per_unit.max(axis=0) <= 0))


def _stats_visitor(stats: dict, graph: Graph, head=None, head_pre: dict | None = None):
    """A ``Graph.run`` visitor that records each activation layer's statistics into ``stats`` (and
    the pre-activation of the ``head`` node into ``head_pre["z"]``, as computed: possibly a Tensor)."""
    def visit(g, args, outs):
        layer = g.layer
        r = role_of(layer)
        if r not in (ACT, AFFINE_ACT):
            return
        if r == AFFINE_ACT:  # [z, a] when the graph split the layer; a layer without call_logits gives [a]
            pre = outs[0] if len(outs) == 2 else None
        else:
            pre = args[0] if isinstance(args, list) else args
        if head_pre is not None and g is head and pre is not None:
            head_pre["z"] = pre
            head_pre["name"] = layer.name if layer.name not in stats else f"{layer.name}:{len(stats)}"
        act = activation_of(layer)
        a = np.asarray(unwrap(outs[-1]))
        if a.size == 0:
            return
        with np.errstate(all="ignore"):
            entry = {"activation": act, "mean": float(np.mean(a, dtype=np.float64)),
                     "std": float(np.std(a, dtype=np.float64))}
            axis, word = unit_axis(graph, g)
            if word != "units":
                entry["units"] = word
            if act in RELU_FAMILY:
                entry["dead"] = _dead_fraction(a, axis)
            if act in FLAT and pre is not None:
                entry["saturated"] = float(np.mean(np.abs(np.asarray(unwrap(pre))) > FLAT[act]))
        name = layer.name if layer.name not in stats else f"{layer.name}:{len(stats)}"
        stats[name] = entry

    return visit


def _visitors(*visits):
    """One ``Graph.run`` visitor that calls each of ``visits`` (None entries skipped)."""
    visits = [v for v in visits if v is not None]

    def visit(g, args, outs):
        for v in visits:
            v(g, args, outs)

    return visit


def activation_stats(model, x, graph: Graph | None = None, recurrent: dict | None = None) -> dict:
    """``{layer name: {"activation", "mean", "std", ["dead"], ["saturated"]}}`` for every layer with a
    non-linear activation, in model order, from one inference pass over ``x``.

    Given a dict, ``recurrent`` is filled with each recurrent layer's gate saturation (no gradient flow: that
    needs labels; see :mod:`lamina.diagnostics.recurrent_health`)."""
    graph = graph or Graph(model)
    if not graph.known:
        return {}
    stats: dict[str, dict] = {}
    nodes: list = []
    with stop_recording(), np.errstate(all="ignore"):
        graph.run(_prepare(model, x), training=False,
                  visit=_visitors(_stats_visitor(stats, graph), None if recurrent is None else rh.collector(nodes)))
    if recurrent is not None:
        recurrent.update(rh.report(nodes))
    return stats


def _weighted_layers(model, graph: Graph | None) -> list:
    layers = []
    source = [g.layer for g in graph.nodes] if graph is not None and graph.known else list(model.layers)
    for layer in source:
        if layer not in layers and layer.trainable_weights:
            layers.append(layer)
    return layers


def _norms(layers, trainable, grads) -> dict[str, float]:
    by_id = {id(v): g for v, g in zip(trainable, grads)}
    out = {}
    for layer in layers:
        total = 0.0
        for v in layer.trainable_weights:
            g = by_id.get(id(v))
            if g is not None:
                g64 = np.asarray(g, dtype=np.float64).ravel()
                total += float(np.dot(g64, g64))
        out[layer.name] = math.sqrt(total)
    return out


def gradient_norms(model, x, y, graph: Graph | None = None) -> dict[str, float]:
    """``{layer name: ||dloss/dweights||}`` for every layer with trainable weights, in model order.

    One forward + backward pass with the compiled loss (from logits where ``fit`` would use them),
    in inference mode, without updating anything.
    """
    graph = graph or Graph(model)
    layers = _weighted_layers(model, graph)
    if not layers or y is None or not getattr(model, "_output_losses", None):
        return {}
    trainable = [v for layer in layers for v in layer.trainable_weights]
    logits = model._decide_logits() if hasattr(model, "_decide_logits") else False
    model._clear_losses()
    try:
        with np.errstate(all="ignore"), GradientTape() as tape:
            pred = model._forward(x, training=False, logits=logits)
            loss, _ = model._compute_loss(y, pred, None, logits)
        if loss is None or not hasattr(loss, "parents"):
            return {}
        grads = tape.gradient(loss, trainable)
    finally:
        model._clear_losses()
    return _norms(layers, trainable, grads)


def measure(model, x, y=None, graph: Graph | None = None, recurrent: dict | None = None) -> tuple[dict, dict]:
    """``(activation_stats, gradient_norms)`` from ONE forward + backward pass over ``x`` (what
    ``ActivationHealth`` runs per epoch): the statistics are read off the recorded forward pass,
    whose output (the logits where ``fit`` uses them) feeds the compiled loss.

    Given a dict, ``recurrent`` is filled with each recurrent layer's gate saturation and gradient flow
    through time (:func:`lamina.diagnostics.recurrent_health.report`) from the same backward pass: the loss's
    gradient at each recurrent layer's input (the layer's own backpropagation through time; the model's float
    inputs are watched for a layer that reads one) and at its outputs (for a replay to carry back in time)."""
    graph = graph or Graph(model)
    layers = _weighted_layers(model, graph)
    if not graph.known or y is None or not layers or not getattr(model, "_output_losses", None):
        return activation_stats(model, x, graph, recurrent), gradient_norms(model, x, y, graph) if y is not None else {}
    logits = bool(model._decide_logits()) and len(graph.outputs) == 1
    head = graph.producer.get(id(graph.outputs[0]))
    stats: dict[str, dict] = {}
    head_pre: dict = {}
    trainable = [v for layer in layers for v in layer.trainable_weights]
    nodes: list = []
    visit = _visitors(_stats_visitor(stats, graph, head, head_pre),
                      None if recurrent is None else rh.collector(nodes, graph))
    flat = _prepare(model, x)
    model._clear_losses()
    try:
        with np.errstate(all="ignore"), GradientTape() as tape:
            if recurrent is not None and any(rh.is_recurrent(g.layer) for g in graph.nodes):
                # a recurrent layer may read a model input: its gradient there is the flow through time
                tape.watch([a for a in flat if a.dtype.kind == "f"])
            outs = graph.run(flat, training=False, visit=visit)
            if logits and "z" in head_pre:
                pred = head_pre["z"]
                # The loss reads the logits (sigmoid/softmax + crossentropy): its gradient there is p - y, so
                # a saturated output is a confident one, not a vanishing gradient.
                stats[head_pre["name"]]["paired_with_loss"] = True
            else:
                logits, pred = False, outs[0] if len(outs) == 1 else outs
            loss, _ = model._compute_loss(y, pred, None, logits)
        if loss is None or not hasattr(loss, "parents"):
            if recurrent is not None:
                recurrent.update(rh.report(nodes))
            return stats, {}
        grads = tape.gradient(loss, trainable + rh.gradient_sources(nodes))
    finally:
        model._clear_losses()
    if recurrent is not None:
        recurrent.update(rh.report(nodes, grads[len(trainable):]))
    return stats, _norms(layers, trainable, grads[:len(trainable)])


def gradient_ratio(norms: dict[str, float]) -> float:
    """First weighted layer's gradient norm over the last's (nan when undefined)."""
    values = list(norms.values())
    if len(values) < 2 or not values[-1] or not all(math.isfinite(v) for v in (values[0], values[-1])):
        return float("nan")
    return values[0] / values[-1]


def _bad(a) -> str | None:
    a = np.asarray(a)
    if a.dtype.kind != "f":
        return None
    if np.isnan(a).any():
        return "nan"
    if np.isinf(a).any():
        return "inf"
    return None


def locate_nonfinite(model, x, y=None, graph: Graph | None = None) -> dict | None:
    """Rerun ``x`` through the model layer by layer and name the first layer and op that produced a
    NaN or inf; None when every value (and the loss, given ``y``) is finite.

    Returns ``{"layer", "op", "value", "message"}``.
    """
    graph = graph or Graph(model)
    # Weights that already hold NaN/inf: an earlier update diverged.
    for layer in ([g.layer for g in graph.nodes] if graph.known else model.layers):
        for v in layer.weights:
            bad = _bad(v.value)
            if bad:
                return {"layer": layer.name, "op": f"weight '{v.name}'", "value": bad,
                        "message": f"layer '{layer.name}' ({type(layer).__name__}): its weight '{v.name}' holds "
                                   f"{bad} (an earlier update diverged; lower the learning rate or clip gradients)"}
    found: list[dict] = []

    def visit(g, args, outs):
        if found:
            return
        layer = g.layer
        affine_op = "convolution + bias" if is_conv(layer) else "matmul + bias"
        ops_ = [affine_op, f"activation {activation_of(layer)}"] if len(outs) == 2 else [
            f"{type(layer).__name__}.call" + (f" ({activation_of(layer)})" if activation_of(layer) else "")]
        for op, value in zip(ops_, outs):
            bad = _bad(value)
            if bad:
                biggest = _max_abs(args)
                found.append({"layer": layer.name, "op": op, "value": bad,
                              "message": f"layer '{layer.name}' ({type(layer).__name__}): {op} produced {bad} "
                                         f"(largest |input| {biggest:.3g})"})
                return

    if graph.known:
        with stop_recording(), np.errstate(all="ignore"):
            preds = graph.run(_prepare(model, x), training=False, visit=visit)
        if found:
            return found[0]
        if y is not None and getattr(model, "_output_losses", None):
            with stop_recording(), np.errstate(all="ignore"):
                loss, _ = model._compute_loss(y, preds if len(preds) > 1 else preds[0], None, False)
            bad = _bad(loss)
            if bad:
                name = getattr(model._output_losses[0].loss, "name", "loss")
                return {"layer": None, "op": f"loss '{name}'", "value": bad,
                        "message": f"every layer's output is finite; the loss '{name}' produced {bad} (check the "
                                   "labels and sample weights for extreme values)"}
    return None


def _max_abs(args) -> float:
    vals = [np.asarray(a) for a in flatten(args)]
    best = 0.0
    with np.errstate(all="ignore"):
        for v in vals:
            if v.size and v.dtype.kind == "f":
                finite = v[np.isfinite(v)]
                if finite.size:
                    best = max(best, float(np.max(np.abs(finite))))
    return best
