"""Symbolic tensors for the Functional API.

``Input(shape=(784,))`` returns a :class:`KerasTensor`: a shape and dtype with no data. Calling a
layer on one records a :class:`Node` (the layer, its input and output tensors) and returns new
KerasTensors; ``Model(inputs, outputs)`` later walks those nodes to run the graph on real arrays.
"""

from __future__ import annotations

import itertools

import numpy as np

_COUNTER = itertools.count()


class KerasTensor:
    """A placeholder with a shape (``None`` for unknown dims) and a dtype, but no value."""

    def __init__(self, shape, dtype="float32", name=None, history=None):
        self.shape = tuple(None if d is None else int(d) for d in shape)
        self.dtype = np.dtype(dtype).name
        self.name = name or f"keras_tensor_{next(_COUNTER)}"
        # (layer, node_index, tensor_index) of the call that produced this tensor.
        self._keras_history = history

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"

    def __array__(self, *args, **kwargs):
        raise TypeError(
            "A symbolic KerasTensor has no value: it only describes the inputs of a Functional "
            "model. Build a Model(inputs, outputs) and call it on real data. "
            f"Received: {self!r}"
        )

    def __bool__(self):
        raise TypeError("A symbolic KerasTensor cannot be used as a Python bool.")

    # Arithmetic on symbolic tensors would need op layers; point users at the merge layers.
    def _no_op(self, *args):
        raise TypeError(
            "Arithmetic on symbolic KerasTensors is not supported; use the layers "
            "Add, Subtract, Multiply, Average or Concatenate, or a custom Layer. "
            f"Received: {self!r}"
        )

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _no_op
    __truediv__ = __matmul__ = __getitem__ = __neg__ = _no_op


class Node:
    """One call of a layer inside a Functional graph."""

    def __init__(self, layer, call_inputs, input_tensors, output_tensors, call_kwargs=None):
        self.layer = layer
        self.call_inputs = call_inputs  # the nested structure the layer was called with
        self.input_tensors = input_tensors  # flat list of KerasTensors
        self.output_tensors = output_tensors  # flat list of KerasTensors
        self.call_kwargs = call_kwargs or {}

    @property
    def parent_nodes(self) -> list[Node]:
        out = []
        for t in self.input_tensors:
            layer, node_index, _ = t._keras_history
            out.append(layer._inbound_nodes[node_index])
        return out


def flatten(structure) -> list:
    """The leaves of a nested list/tuple/dict structure, dicts in key order as given."""
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in flatten(item)]
    if isinstance(structure, dict):
        return [leaf for item in structure.values() for leaf in flatten(item)]
    return [structure]


def pack_like(structure, flat: list):
    """Rebuild ``structure``'s nesting with the values of ``flat`` (the inverse of flatten)."""
    it = iter(flat)

    def build(s):
        if isinstance(s, (list, tuple)):
            return type(s)(build(x) for x in s)
        if isinstance(s, dict):
            return {k: build(v) for k, v in s.items()}
        return next(it)

    return build(structure)


def map_structure(fn, structure):
    return pack_like(structure, [fn(x) for x in flatten(structure)])


def is_symbolic(structure) -> bool:
    return any(isinstance(x, KerasTensor) for x in flatten(structure))
