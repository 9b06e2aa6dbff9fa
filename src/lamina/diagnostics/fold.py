"""``fold(model)``: an equivalent inference model with linear layers multiplied together.

Walking the layers in order, every affine step is accumulated into one map ``x -> x @ W + b``
(computed in float64, stored in the model's dtype):

* a Dense layer with no (linear) activation: ``W <- W @ K``, ``b <- b @ K + bias``;
* BatchNormalization on the last axis, at inference ``y = gamma * (x - mean) / sqrt(var + eps) +
  beta``: ``W <- W * s``, ``b <- b * s + (beta - mean * s)`` with ``s = gamma / sqrt(var + eps)``;
* Dropout (the identity at inference) and linear Activation layers: nothing.

A Conv1D/2D/3D with no activation followed by BatchNormalization over its channel axis (the last
axis, or axis 1 with ``data_format="channels_first"``) becomes one convolution: with
``s_c = gamma_c / sqrt(var_c + eps)`` per output channel ``c``, ``kernel[..., c] <- kernel[..., c] * s_c``
and ``bias_c <- beta_c + (bias_c - mean_c) * s_c`` (a convolution is linear in its kernel, and the
normalisation scales each output channel). An activation layer right after it becomes its activation.

The accumulated map is emitted as one Dense layer when it reaches a Dense layer with a non-linear
activation (which absorbs it, keeping its activation), or a non-affine layer; an activation layer
right after the emitted Dense becomes that Dense's activation. Other layers are copied with their
weights. ``Dense(relu) -> BatchNormalization -> Dense`` folds the normalisation into the next Dense.
"""

from __future__ import annotations

import numpy as np

from lamina.autodiff import unwrap
from lamina.diagnostics._graph import PLAIN_CONV, Graph, activation_of, channel_axis, conv_class, fn_name
from lamina.layers import Activation, BatchNormalization, Dense, Dropout, Input, ReLU
from lamina.models.sequential import Sequential

__all__ = ["fold"]


def _chain_layers(model) -> list:
    """The model's layers in order, if they form a single chain; else a ValueError."""
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


class _Plan:
    """The folded model's layers, built up one source layer at a time.

    ``steps`` holds ``("dense", W, b, activation, name)``, ``("conv", layer, kernel, bias, name)`` or
    ``("copy", layer)``; ``pending`` is the affine map not yet emitted, ``(W, b, [source layers])`` with W
    of shape (width, width') in float64; ``pending_conv`` a linear convolution waiting for a
    BatchNormalization, ``[layer, kernel, bias, folded]`` in float64.
    """

    def __init__(self):
        self.steps: list = []
        self.pending = None
        self.pending_conv = None

    def affine(self, W, b, source) -> None:
        if self.pending_conv is not None:
            self.flush_conv()
        if self.pending is None:
            self.pending = (W, b, [source])
        else:
            W0, b0, src = self.pending
            self.pending = (W0 @ W, b0 @ W + b, src + [source])

    def flush(self, activation="linear") -> bool:
        """Emit the pending map; True if it was emitted as a Dense (or a convolution)."""
        if self.pending_conv is not None:
            return self.flush_conv(activation)
        if self.pending is None:
            return False
        W, b, src = self.pending
        self.pending = None
        if not any(isinstance(s, Dense) for s in src):
            self.steps.extend(("copy", s) for s in src)  # a BatchNormalization alone stays as it is
            return False
        names = [s.name for s in src if isinstance(s, Dense)]
        self.steps.append(("dense", W, b, activation, names[-1] if len(names) == 1 else f"{names[-1]}_folded"))
        return True

    def add_dense(self, layer) -> None:
        if layer.quantization_mode is not None:  # its integer kernel and input rounding are no affine map
            raise ValueError(f"fold cannot merge Dense '{layer.name}': it is quantized. Fold the float model, then "
                             f"quantize the folded one. Received: quantization_mode={layer.quantization_mode!r}")
        kernel = np.array(unwrap(layer.kernel), dtype=np.float64)  # with LoRA on, the merged kernel
        bias = layer.bias.numpy().astype(np.float64) if layer.bias is not None else np.zeros(layer.units)
        self.affine(kernel, bias, layer)
        if fn_name(layer.activation) != "linear":
            self.flush(layer.activation)

    def add_batch_norm(self, layer) -> None:
        """x ↦ gamma (x - mean) / sqrt(var + eps) + beta, an affine map on the last axis."""
        if self.pending_conv is not None:  # a BatchNormalization that is not over the convolution's channels
            self.flush_conv()
        scale, shift = _batch_norm_affine(layer)
        if self.pending is None:  # start from the identity on the normalised axis (its size is scale's)
            self.pending = (np.eye(scale.size), np.zeros(scale.size), [])
        W0, b0, src = self.pending
        self.pending = (W0 * scale, b0 * scale + shift, src + [layer])

    def add_conv(self, layer) -> None:
        """A Conv1D/2D/3D: kept, and held back while linear so a BatchNormalization can join it."""
        self.flush()
        if fn_name(layer.activation) != "linear":
            self.steps.append(("copy", layer))
            return
        kernel = np.array(unwrap(layer.kernel), dtype=np.float64)  # with LoRA on, the merged kernel
        bias = layer.bias.numpy().astype(np.float64) if layer.bias is not None else np.zeros(kernel.shape[-1])
        self.pending_conv = [layer, kernel, bias, []]

    def takes_conv_batch_norm(self, layer) -> bool:
        """Whether ``layer`` is a BatchNormalization over the channels of the pending convolution."""
        if self.pending_conv is None or not isinstance(layer, BatchNormalization):
            return False
        shape = layer._build_shapes
        if not isinstance(shape, tuple) or not shape:
            return False
        conv = self.pending_conv[0]
        return layer.axis % len(shape) == channel_axis(conv) % len(shape)

    def add_conv_batch_norm(self, layer) -> None:
        """kernel[..., c] *= s_c and bias_c = beta_c + (bias_c - mean_c) s_c, s = gamma / sqrt(var + eps)."""
        scale, shift = _batch_norm_affine(layer)
        conv, kernel, bias, folded = self.pending_conv
        self.pending_conv = [conv, kernel * scale, bias * scale + shift, folded + [layer]]

    def flush_conv(self, activation="linear") -> bool:
        conv, kernel, bias, folded = self.pending_conv
        self.pending_conv = None
        if not folded:  # nothing joined it: the layer as it was (an activation after it stays a layer)
            self.steps.append(("copy", conv))
            return False
        self.steps.append(("conv", conv, kernel, bias, activation, f"{conv.name}_folded"))
        return True

    def add_other(self, layer) -> None:
        """A non-affine layer: an activation right after an emitted Dense (or folded convolution)
        becomes its activation."""
        if (self.pending is not None or self.pending_conv is not None) and _is_plain_activation(layer):
            if self.flush(layer.activation if isinstance(layer, Activation) else "relu"):
                return
        else:
            self.flush()
        self.steps.append(("copy", layer))


def _batch_norm_affine(layer) -> tuple[np.ndarray, np.ndarray]:
    """BatchNormalization at inference as ``x * scale + shift`` per channel, in float64:
    ``scale = gamma / sqrt(var + eps)``, ``shift = beta - mean * scale``."""
    var = layer.moving_variance.numpy().astype(np.float64)
    mean = layer.moving_mean.numpy().astype(np.float64)
    gamma = layer.gamma.numpy().astype(np.float64) if layer.gamma is not None else np.ones_like(var)
    beta = layer.beta.numpy().astype(np.float64) if layer.beta is not None else np.zeros_like(var)
    scale = gamma / np.sqrt(var + layer.epsilon)
    return scale, beta - mean * scale


def _is_plain_activation(layer) -> bool:
    """An Activation layer, or a ReLU with Keras's defaults: foldable into the Dense before it."""
    if activation_of(layer) is None:
        return False
    return isinstance(layer, Activation) or (
        isinstance(layer, ReLU) and layer.max_value is None and not layer.negative_slope and not layer.threshold)


def _is_identity(layer) -> bool:
    """Layers that do nothing at inference."""
    return isinstance(layer, Dropout) or (isinstance(layer, Activation) and fn_name(layer.activation) == "linear")


def fold(model):
    """An inference-only ``Sequential`` equal to ``model`` (to float32 rounding) with consecutive
    linear layers merged and BatchNormalization folded into the adjacent Dense or the convolution
    before it.

    The result is not compiled. Raises ``ValueError`` for models that are not a single chain of
    layers (merges, several inputs or outputs, subclassed models).
    """
    # (an unbuilt Sequential has no `inputs` yet, as in Keras: _chain_layers says it must be built)
    if not hasattr(model, "layers") or not (isinstance(model, Sequential) or hasattr(model, "inputs")):
        raise TypeError(f"fold expects a lamina Model. Received: {type(model).__name__}")
    plan = _Plan()
    for layer in _chain_layers(model):
        if _is_identity(layer):
            continue
        if isinstance(layer, Dense):
            plan.add_dense(layer)
        elif conv_class(layer) in PLAIN_CONV:
            plan.add_conv(layer)
        elif plan.takes_conv_batch_norm(layer):
            plan.add_conv_batch_norm(layer)
        elif isinstance(layer, BatchNormalization) and _on_last_axis(layer):
            plan.add_batch_norm(layer)
        else:
            plan.add_other(layer)
    plan.flush()
    return _build(model, plan.steps)


def _build(model, steps: list):
    """The Sequential that ``steps`` describe, with its weights set."""
    dtype = np.dtype(model.dtype)
    new_layers, weights = [], []
    for step in steps:
        if step[0] == "dense":
            _, W, b, act, name = step
            new_layers.append(Dense(W.shape[1], activation=act, name=name))
            weights.append([W.astype(dtype), b.astype(dtype)])
        elif step[0] == "conv":
            _, conv, kernel, bias, act, name = step
            config = dict(conv.get_config(), activation=act, use_bias=True, name=name)
            config.pop("lora_rank", None)  # the folded kernel already holds the LoRA update
            config.pop("lora_alpha", None)
            new_layers.append(type(conv).from_config(config))
            weights.append([kernel.astype(dtype), bias.astype(dtype)])
        else:
            layer = step[1]
            new_layers.append(_copy(layer))
            weights.append([w.numpy() for w in layer.weights])
    in_shape = tuple(model.inputs[0].shape[1:])
    folded = Sequential([Input(shape=in_shape)] + new_layers, name=f"{model.name}_folded")
    for layer, ws in zip(folded.layers, weights):
        if ws:
            layer.set_weights(ws)
    return folded
