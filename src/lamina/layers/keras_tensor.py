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
        # "string": text inputs (Input(dtype="string")), NumPy str/object arrays at run time
        text = dtype is str or (isinstance(dtype, str) and dtype == "string")
        self.dtype = "string" if text else np.dtype(dtype).name
        self.name = name or f"keras_tensor_{next(_COUNTER)}"
        # (layer, node_index, tensor_index) of the call that produced this tensor.
        self._keras_history = history

    @property
    def ndim(self) -> int:
        return len(self.shape)

    # Keras's KerasTensor describes sparse and ragged tensors too; lamina's arrays are always dense.
    @property
    def sparse(self) -> bool:
        return False

    @property
    def ragged(self) -> bool:
        return False

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"

    def __array__(self, *args, **kwargs):
        raise TypeError(
            "A symbolic KerasTensor has no value: it only describes the inputs of a Functional "
            "model. Build a Model(inputs, outputs) and call it on real data. In a model's definition, "
            "operators (x + y, x[:, 0]) and most lamina.ops functions make graph nodes; the activations "
            "(ops.sigmoid, ops.softmax, ...) and ops whose output shape depends on the values (ops.nonzero) "
            "do not: use layers.Activation or a Layer of your own for them. "
            f"Received: {self!r}"
        )

    def __bool__(self):
        raise TypeError("A symbolic KerasTensor cannot be used as a Python bool.")

    def __iter__(self):
        raise TypeError(f"Iterating over a symbolic KerasTensor is not supported. Received: {self!r}")

    # Operators record an op node (lamina.layers.op_layer), as Keras 3 records an Operation; the
    # names are the lamina ops (and Keras's op classes): ``x / y`` is TrueDivide, ``x[k]`` GetItem.
    def __add__(self, other):
        return _op("add", self, other)

    def __radd__(self, other):
        return _op("add", other, self)

    def __sub__(self, other):
        return _op("subtract", self, other)

    def __rsub__(self, other):
        return _op("subtract", other, self)

    def __mul__(self, other):
        return _op("multiply", self, other)

    def __rmul__(self, other):
        return _op("multiply", other, self)

    def __truediv__(self, other):
        return _op("true_divide", self, other)

    def __rtruediv__(self, other):
        return _op("true_divide", other, self)

    def __floordiv__(self, other):
        return _op("floor_divide", self, other)

    def __rfloordiv__(self, other):
        return _op("floor_divide", other, self)

    def __mod__(self, other):
        return _op("mod", self, other)

    def __rmod__(self, other):
        return _op("mod", other, self)

    def __pow__(self, other):
        return _op("power", self, other)

    def __rpow__(self, other):
        return _op("power", other, self)

    def __matmul__(self, other):
        return _op("matmul", self, other)

    def __rmatmul__(self, other):
        return _op("matmul", other, self)

    def __neg__(self):
        return _op("negative", self)

    def __abs__(self):
        return _op("absolute", self)

    def __lt__(self, other):
        return _op("less", self, other)

    def __le__(self, other):
        return _op("less_equal", self, other)

    def __gt__(self, other):
        return _op("greater", self, other)

    def __ge__(self, other):
        return _op("greater_equal", self, other)

    # As in Keras, ``!=`` builds NotEqual but ``==`` stays identity: KerasTensors are dict keys and list
    # members, and ``__hash__`` must keep working.
    def __ne__(self, other):
        return _op("not_equal", self, other)

    def __and__(self, other):
        return _op("logical_and", self, other)

    def __rand__(self, other):
        return _op("logical_and", other, self)

    def __or__(self, other):
        return _op("logical_or", self, other)

    def __ror__(self, other):
        return _op("logical_or", other, self)

    def __xor__(self, other):
        return _op("logical_xor", self, other)

    def __rxor__(self, other):
        return _op("logical_xor", other, self)

    def __invert__(self):
        return _op("logical_not", self)

    def __getitem__(self, key):
        return _op("get_item", self, key)

    def __round__(self, ndigits=None):
        return _op("round", self, ndigits or 0)

    __hash__ = object.__hash__


# op_layer builds on Layer, whose module imports this one, so it registers its node builder here when
# it loads (lamina's models package imports it, so ``import lamina`` always does).
_OP_BUILDER: list = []


def register_op_builder(build) -> None:
    """Set the function ``build(op_name, args, kwargs)`` that records an op node on KerasTensors."""
    _OP_BUILDER[:] = [build]


def _op(name: str, *args):
    if not _OP_BUILDER:
        raise TypeError(f"Operators on symbolic KerasTensors need lamina.layers.op_layer, which is not loaded; "
                        f"import lamina first. Received: ops.{name} on {args!r:.120}")
    return _OP_BUILDER[0](name, args, {})


class Node:
    """One call of a layer inside a Functional graph."""

    def __init__(self, layer, call_inputs, input_tensors, output_tensors, call_kwargs=None, call_args=()):
        self.layer = layer
        self.call_inputs = call_inputs  # the nested structure the layer was called with (first argument)
        self.call_args = tuple(call_args)  # the positional arguments after the first (``layer(x, mask)``)
        self.input_tensors = input_tensors  # flat list of KerasTensors, of every positional argument
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
        if isinstance(s, tuple) and hasattr(type(s), "_fields"):  # a namedtuple takes its fields one by one
            return type(s)(*[build(x) for x in s])
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


# Sizes that stand for an unknown (None) size in compute_output_spec: two distinct primes, so that an
# output size computed from an unknown input size differs between the two runs.
_FILLS = (83, 89)


def compute_output_spec(fn, *args, **kwargs):
    """What ``fn(*args, **kwargs)`` returns, with every output array given as a KerasTensor (Keras's
    ``backend.compute_output_spec``); the arguments' KerasTensors stand for arrays of their shape and dtype.

    ``fn`` runs on arrays of ones, an unknown size filled with 83, then, when there is one, again with 89:
    an output size that differs between the two runs depends on an unknown size and is None. The
    variables of ``fn``'s object (a layer's or metric's, or those of the object a bound method belongs to)
    are put back afterwards, so the call leaves no state behind (Keras runs it stateless); a layer it
    builds stays built. The arrays are real: a huge known shape costs its memory.
    """
    owner = getattr(fn, "__self__", fn)
    variables = list(getattr(owner, "variables", None) or [])
    saved = [np.array(v.numpy(), copy=True) for v in variables]
    unknown = any(isinstance(x, KerasTensor) and None in x.shape for x in flatten((args, kwargs)))
    try:
        first = _filled_call(fn, args, kwargs, _FILLS[0])
        second = _filled_call(fn, args, kwargs, _FILLS[1]) if unknown else first
    finally:
        for v, value in zip(variables, saved, strict=True):
            v.assign(value)
    specs = [_spec(a, b) for a, b in zip(flatten(first), flatten(second), strict=True)]
    return pack_like(first, specs)


def _filled_call(fn, args, kwargs, fill: int):
    """``fn`` called with each KerasTensor replaced by ones of its shape (None sizes = ``fill``)."""
    def real(x):
        if isinstance(x, KerasTensor):
            return np.ones(tuple(fill if d is None else d for d in x.shape), dtype=x.dtype)
        return x

    return fn(*map_structure(real, list(args)), **{k: map_structure(real, v) for k, v in kwargs.items()})


def _spec(a, b):
    """A KerasTensor for the output ``a`` of the first run (``b``, the second run's, where sizes differ
    gives None); anything that is not an array passes through."""
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        return a
    shape = tuple(int(d) if d == e else None for d, e in zip(np.shape(a), np.shape(b), strict=True))
    return KerasTensor(shape, dtype=np.dtype(a.dtype).name)
