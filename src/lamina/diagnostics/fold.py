"""``fold(model)``: an equivalent inference model with linear layers multiplied together.

Walking the layers in order, every affine step is accumulated into one map ``x -> x @ W + b``
(computed in float64, stored in the model's dtype):

* a Dense layer with no (linear) activation: ``W <- W @ K``, ``b <- b @ K + bias``;
* BatchNormalization on the last axis, at inference ``y = gamma * (x - mean) / sqrt(var + eps) +
  beta``: ``W <- W * s``, ``b <- b * s + (beta - mean * s)`` with ``s = gamma / sqrt(var + eps)``;
* Dropout (the identity at inference) and linear Activation layers: nothing.

The accumulated map is emitted as one Dense layer when it reaches a Dense layer with a non-linear
activation (which absorbs it, keeping its activation), or a non-affine layer; an activation layer
right after the emitted Dense becomes that Dense's activation. Other layers are copied with their
weights. ``Dense(relu) -> BatchNormalization -> Dense`` folds the normalisation into the next Dense.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fold"]


def _chain_layers(model) -> list:
    """The model's layers in order, if they form a single chain; else a ValueError."""
    from lamina.diagnostics._graph import Graph
    from lamina.models.sequential import Sequential

    if isinstance(model, Sequential):
        if not model.built or not model.inputs:
            raise ValueError(
                f"fold needs a built model: model '{model.name}' has no input shape yet. Give the first layer "
                "input_shape=..., start with lamina.Input(shape), or call the model on data first. "
                "Received: an unbuilt Sequential"
            )
        return model.layers
    graph = Graph(model)
    if not graph.known:
        raise ValueError(
            "fold works on Sequential and Functional models. Received: a subclassed model "
            f"'{getattr(model, 'name', model)}' ({type(model).__name__}), whose layers have no symbolic graph"
        )
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ValueError(
            f"fold needs a model with one input and one output. Received: {len(graph.inputs)} inputs and "
            f"{len(graph.outputs)} outputs"
        )
    layers, expected = [], graph.inputs[0]
    for g in graph.nodes:
        if len(g.inputs) != 1 or g.inputs[0] is not expected or len(g.outputs) != 1:
            raise ValueError(
                f"fold supports models whose layers form a single chain. Received: layer '{g.layer.name}' "
                f"({type(g.layer).__name__}) takes {len(g.inputs)} inputs or branches the graph"
            )
        layers.append(g.layer)
        expected = g.outputs[0]
    return layers


def _on_last_axis(layer) -> bool:
    shape = layer._build_shapes
    return isinstance(shape, tuple) and len(shape) >= 2 and layer.axis % len(shape) == len(shape) - 1


def _copy(layer):
    return type(layer).from_config(layer.get_config())


def fold(model):
    """An inference-only ``Sequential`` equal to ``model`` (to float32 rounding) with consecutive
    linear layers merged and BatchNormalization folded into the adjacent Dense.

    The result is not compiled. Raises ``ValueError`` for models that are not a single chain of
    layers (merges, several inputs or outputs, subclassed models).
    """
    from lamina import layers as L
    from lamina.diagnostics._graph import activation_of, fn_name
    from lamina.models.sequential import Sequential

    if not hasattr(model, "layers") or not hasattr(model, "inputs"):
        raise TypeError(f"fold expects a lamina Model. Received: {type(model).__name__}")
    layers = _chain_layers(model)
    dtype = np.dtype(model.dtype)
    in_shape = tuple(model.inputs[0].shape[1:])

    plan: list = []  # ("dense", W, b, activation, name) or ("copy", layer)
    pending = None  # (W, b, [source layers]) with W of shape (width, width') in float64

    def affine(W, b, source):
        nonlocal pending
        if pending is None:
            pending = (W, b, [source])
        else:
            W0, b0, src = pending
            pending = (W0 @ W, b0 @ W + b, src + [source])

    def flush(activation="linear"):
        """Emit the pending map; returns True if it was emitted as a Dense."""
        nonlocal pending
        if pending is None:
            return False
        W, b, src = pending
        pending = None
        if not any(isinstance(s, L.Dense) for s in src):
            plan.extend(("copy", s) for s in src)  # a BatchNormalization alone stays as it is
            return False
        names = [s.name for s in src if isinstance(s, L.Dense)]
        plan.append(("dense", W, b, activation, names[-1] if len(names) == 1 else f"{names[-1]}_folded"))
        return True

    for layer in layers:
        if isinstance(layer, L.Dropout) or (isinstance(layer, L.Activation) and fn_name(layer.activation) == "linear"):
            continue
        if isinstance(layer, L.Dense):
            K = layer.kernel.numpy().astype(np.float64)
            bias = layer.bias.numpy().astype(np.float64) if layer.bias is not None else np.zeros(layer.units)
            affine(K, bias, layer)
            if fn_name(layer.activation) != "linear":
                flush(layer.activation)
            continue
        if isinstance(layer, L.BatchNormalization) and _on_last_axis(layer):
            var = layer.moving_variance.numpy().astype(np.float64)
            mean = layer.moving_mean.numpy().astype(np.float64)
            gamma = layer.gamma.numpy().astype(np.float64) if layer.gamma is not None else np.ones_like(var)
            beta = layer.beta.numpy().astype(np.float64) if layer.beta is not None else np.zeros_like(var)
            s = gamma / np.sqrt(var + layer.epsilon)
            if pending is None:  # start from the identity on the normalised axis (its size is var's)
                pending = (np.eye(var.size), np.zeros(var.size), [])
            W0, b0, src = pending
            pending = (W0 * s, b0 * s + (beta - mean * s), src + [layer])
            continue
        # A non-affine layer: an activation right after an emitted Dense becomes its activation.
        act_name = activation_of(layer)
        simple_act = isinstance(layer, L.Activation) or (
            isinstance(layer, L.ReLU) and layer.max_value is None and not layer.negative_slope and not layer.threshold)
        if pending is not None and simple_act and act_name is not None:
            flushed_dense = flush(layer.activation if isinstance(layer, L.Activation) else "relu")
            if flushed_dense:
                continue
        else:
            flush()
        plan.append(("copy", layer))
    flush()

    new_layers = []
    weights = []
    for step in plan:
        if step[0] == "dense":
            _, W, b, act, name = step
            new_layers.append(L.Dense(W.shape[1], activation=act, name=name))
            weights.append([W.astype(dtype), b.astype(dtype)])
        else:
            layer = step[1]
            new_layers.append(_copy(layer))
            weights.append([w.numpy() for w in layer.weights])
    folded = Sequential([L.Input(shape=in_shape)] + new_layers, name=f"{model.name}_folded")
    for layer, ws in zip(folded.layers, weights):
        if ws:
            layer.set_weights(ws)
    return folded
