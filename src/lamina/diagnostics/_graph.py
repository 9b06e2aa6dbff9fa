"""A model's layer graph as the doctor reads it: nodes in topological order, with producers and
consumers of every symbolic tensor, and what each layer does to its input (its *role*)."""

from __future__ import annotations

# Module-level: diagnostics sits above layers and activations (which never import it), and
# importing lamina.layers.keras_tensor loads the whole lamina.layers package anyway.
from lamina import activations, layers
from lamina.layers.input_layer import InputLayer
from lamina.layers.keras_tensor import KerasTensor, flatten, pack_like

# Roles of a layer, as far as linearity and activation go.
TRANSPARENT = "transparent"  # passes values through unchanged at inference (Dropout, Flatten, ...)
AFFINE = "affine"  # Dense or a convolution with a linear activation
AFFINE_ACT = "affine+act"  # Dense or a convolution with a non-linear activation
ACT = "act"  # an activation layer (Activation, ReLU, Softmax, ...)
NORM = "norm"  # BatchNormalization: affine at inference
LINEAR_MERGE = "linear-merge"  # Add, Subtract, Average, Concatenate
LINEAR_OP = "linear-op"  # a linear map without weights: average pooling, padding, cropping, up-sampling, ...
OTHER = "other"  # anything else, including unknown custom layers: treated as non-linear

SATURATING = ("sigmoid", "tanh", "hard_sigmoid", "hard_tanh")
RELU_FAMILY = ("relu", "relu6", "leaky_relu", "prelu", "elu", "selu")

# Keras's convolution classes (matched by name on the class hierarchy, so the doctor needs no import of
# each one, and a class lamina does not have yet is simply never matched).
CONV_CLASSES = frozenset({
    "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
    "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D",
})
PLAIN_CONV = ("Conv1D", "Conv2D", "Conv3D")  # kernel (*kernel_size, in_channels // groups, filters)
# Weightless layers that are linear maps (identity at inference for SpatialDropout).
_LINEAR_OP_CLASSES = tuple(
    getattr(layers, name) for name in (
        "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "GlobalAveragePooling1D",
        "GlobalAveragePooling2D", "GlobalAveragePooling3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
        "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D", "Permute",
        "RepeatVector",
    ) if hasattr(layers, name)
)
_TRANSPARENT_CLASSES = (layers.Dropout, layers.Flatten, layers.Reshape, layers.InputLayer) + tuple(
    getattr(layers, name) for name in ("SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D")
    if hasattr(layers, name)
)


def conv_class(layer) -> str | None:
    """The Keras convolution class ``layer`` is (``"Conv2D"``, ``"DepthwiseConv2D"``, ...), or None."""
    for cls in type(layer).__mro__:
        if cls.__name__ in CONV_CLASSES and cls.__module__.startswith("lamina."):
            return cls.__name__
    return None


def is_conv(layer) -> bool:
    return conv_class(layer) is not None


def channel_axis(layer) -> int:
    """The axis holding a layer's channels (units): 1 for ``data_format="channels_first"``, else -1."""
    return 1 if getattr(layer, "data_format", None) == "channels_first" else -1


def fn_name(fn) -> str | None:
    """The canonical name of an activation function (``swish`` -> ``silu``); None if it has none."""
    if fn is None:
        return "linear"
    name = activations._NAME_OF.get(id(fn))
    return name if name is not None else getattr(fn, "__name__", None)


def activation_of(layer) -> str | None:
    """The name of the activation a layer applies last (``"linear"`` for none), or None when the
    layer does not apply one (or is unknown)."""
    if isinstance(layer, (layers.Dense, layers.Activation)) or is_conv(layer):
        return fn_name(layer.activation)
    if isinstance(layer, layers.ReLU):
        return "relu" if not layer.negative_slope else "leaky_relu"
    if isinstance(layer, layers.LeakyReLU):
        return "leaky_relu"
    if isinstance(layer, layers.PReLU):
        return "prelu"
    if isinstance(layer, layers.ELU):
        return "elu"
    if isinstance(layer, layers.Softmax):
        return "softmax"
    return None


def is_affine(layer) -> bool:
    """A layer that applies an affine map, then its ``activation``: Dense or a convolution."""
    return isinstance(layer, layers.Dense) or is_conv(layer)


def role_of(layer) -> str:
    if isinstance(layer, _TRANSPARENT_CLASSES):
        return TRANSPARENT
    if is_affine(layer):
        return AFFINE if fn_name(layer.activation) == "linear" else AFFINE_ACT
    if isinstance(layer, layers.Activation):
        return TRANSPARENT if fn_name(layer.activation) == "linear" else ACT
    if activation_of(layer) is not None:
        return ACT
    if isinstance(layer, layers.BatchNormalization):
        return NORM
    if isinstance(layer, (layers.Add, layers.Subtract, layers.Average, layers.Concatenate)):
        return LINEAR_MERGE
    if isinstance(layer, _LINEAR_OP_CLASSES):
        return LINEAR_OP
    return OTHER


class GNode:
    """One call of a layer: the layer and its flat symbolic input and output tensors."""

    __slots__ = ("layer", "node", "inputs", "outputs")

    def __init__(self, layer, node):
        self.layer = layer
        self.node = node
        self.inputs = list(node.input_tensors)
        self.outputs = list(node.output_tensors)

    def __repr__(self):
        return f"<GNode {self.layer.name}>"


class Graph:
    """The nodes reachable from a model's outputs, parents first.

    Works for ``Sequential`` (once it knows its input shape) and Functional models; a subclassed
    model has no symbolic graph and gives an empty one (``graph.known`` is False).
    """

    def __init__(self, model):
        self.inputs = list(getattr(model, "inputs", None) or [])
        self.outputs = list(getattr(model, "outputs", None) or [])
        self.known = bool(self.inputs and self.outputs)
        self.nodes: list[GNode] = []
        self.producer: dict[int, GNode] = {}
        self.consumers: dict[int, list[GNode]] = {}
        if not self.known:
            return
        input_ids = {id(t) for t in self.inputs}
        seen: set[int] = set()
        stack = [(t, False) for t in reversed(self.outputs)]
        while stack:  # iterative post-order DFS: a node after all of its parents
            tensor, done = stack.pop()
            if id(tensor) in input_ids or tensor._keras_history is None:
                continue
            layer, node_index, _ = tensor._keras_history
            node = layer._inbound_nodes[node_index]
            if isinstance(layer, InputLayer):
                continue
            if done:
                if id(node) not in seen:
                    seen.add(id(node))
                    self.nodes.append(GNode(layer, node))
                continue
            if id(node) in seen:
                continue
            stack.append((tensor, True))
            for parent in reversed(node.input_tensors):
                stack.append((parent, False))
        for g in self.nodes:
            for t in g.outputs:
                self.producer[id(t)] = g
            for t in g.inputs:
                self.consumers.setdefault(id(t), []).append(g)

    def parents(self, g: GNode) -> list[GNode]:
        return [self.producer[id(t)] for t in g.inputs if id(t) in self.producer]

    def children(self, g: GNode) -> list[GNode]:
        out = []
        for t in g.outputs:
            out.extend(self.consumers.get(id(t), []))
        return out

    def output_nodes(self) -> list[GNode | None]:
        return [self.producer.get(id(t)) for t in self.outputs]

    def is_output(self, g: GNode) -> bool:
        ids = {id(t) for t in self.outputs}
        return any(id(t) in ids for t in g.outputs)

    def head(self, output_index: int = 0) -> GNode | None:
        """The node that sets output ``output_index``'s activation: walk back through transparent
        layers (Dropout, Flatten, Reshape, linear Activation) from the output."""
        if output_index >= len(self.outputs):
            return None
        g = self.producer.get(id(self.outputs[output_index]))
        while g is not None and role_of(g.layer) == TRANSPARENT:
            parents = self.parents(g)
            if len(parents) != 1:
                return None
            g = parents[0]
        return g

    def run(self, flat_inputs: list, training: bool = False, visit=None) -> list:
        """Evaluate the graph on arrays, node by node (plain NumPy outside a tape).

        ``visit(gnode, args, outputs)`` is called after each node; for a Dense or convolution layer
        with an activation (and a ``call_logits``) the node runs as matmul/convolution + bias, then the
        activation, so ``visit`` receives ``outputs`` as ``[z, a]`` (pre-activation, activation).
        """
        values = {id(t): x for t, x in zip(self.inputs, flat_inputs)}
        for g in self.nodes:
            layer = g.node.layer
            call_inputs = g.node.call_inputs
            args = pack_like(call_inputs, [values[id(t)] if isinstance(t, KerasTensor) else t
                                           for t in flatten(call_inputs)])
            kwargs = dict(g.node.call_kwargs)
            # the positional arguments after the first (layer(x, y)) are tensors of the graph too
            more = [pack_like(a, [values[id(t)] if isinstance(t, KerasTensor) else t for t in flatten(a)])
                    for a in g.node.call_args]
            if layer._call_has_training and "training" not in kwargs:
                kwargs["training"] = training
            if more:
                out = layer(args, *more, **kwargs)
                if visit is not None:
                    visit(g, args, [out])
            elif role_of(layer) == AFFINE_ACT and hasattr(layer, "call_logits"):
                z = layer.call_logits(args)
                a = layer.activation(z)
                if visit is not None:
                    visit(g, args, [z, a])
                out = a
            else:
                out = layer(args, **kwargs)
                if visit is not None:
                    visit(g, args, [out])
            outs = flatten(out) if len(g.outputs) > 1 else [out]
            for t, v in zip(g.outputs, outs):
                values[id(t)] = v
        return [values[id(t)] for t in self.outputs]


def unit_axis(graph: Graph, g: GNode) -> tuple[int, str]:
    """``(axis, word)``: the axis of ``g``'s output that holds its units and what they are called.

    A convolution's (or pooling layer's) channel axis (``"channels"``; axis 1 for
    ``data_format="channels_first"``), a Dense layer's last axis (``"units"``); for an activation layer,
    that of the nearest layer upstream that decides it (through dropout and other activations; a
    BatchNormalization decides by its ``axis``)."""
    cur = g
    while cur is not None:
        layer = cur.layer
        if isinstance(layer, layers.BatchNormalization):
            shape = cur.outputs[0].shape if cur.outputs else None
            return layer.axis, "channels" if shape is not None and len(shape) > 2 else "units"
        if is_conv(layer) or (hasattr(layer, "data_format") and not isinstance(layer, layers.Flatten)):
            return channel_axis(layer), "channels"
        if is_affine(layer) or isinstance(layer, (layers.Flatten, layers.Reshape)):
            return -1, "units"
        if role_of(layer) not in (TRANSPARENT, ACT):
            break
        parents = graph.parents(cur)
        cur = parents[0] if len(parents) == 1 else None
    return -1, "units"


def flatten_inputs(model, x) -> list:
    """The model's inputs as a flat list in ``model.inputs`` order."""
    if hasattr(model, "_flatten_inputs"):
        return model._flatten_inputs(x)
    return [x]


def layer_label(layer) -> str:
    return f"'{layer.name}' ({type(layer).__name__})"
