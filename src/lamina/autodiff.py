"""Reverse-mode automatic differentiation over NumPy arrays.

micrograd's shape, with arrays: every primitive computes its output with plain NumPy and, only
while a :class:`GradientTape` records and an input needs a gradient, wraps the output in a
:class:`Tensor` that remembers its inputs and a vector-Jacobian product (``vjp``). Outside a tape
primitives return plain ``ndarray`` s, so inference builds no graph at all.

``tape.gradient`` walks the graph in reverse topological order (found iteratively, so a
1000-layer chain cannot hit the recursion limit), sums the ``vjp`` contributions of each node and
reduces every gradient back to its input's shape (undoing broadcasting).

Gradients are first order: ``vjp`` closures run on plain arrays and are not themselves recorded.
Choices at kinks are documented where the primitive is defined (``relu'(0) = 0``, ``|x|'(0) = 0``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lamina import backend
from lamina.backend import _AUTOCAST  # the autocast dtype slot, read on every variable read

# The stack of active tapes. A module-level list so the hot check is one truthiness test.
_TAPES: list[GradientTape] = []
_PAUSED = [0]


def recording() -> bool:
    """True while some :class:`GradientTape` is recording."""
    return bool(_TAPES) and not _PAUSED[0]


class Tensor:
    """An array produced while a tape recorded; it remembers how it was computed.

    ``data`` is the value (an ``ndarray``); ``parents`` the inputs of the op that made it and
    ``vjp`` maps the gradient of the output to a tuple of gradients for those inputs.
    """

    __slots__ = ("data", "parents", "vjp", "__weakref__")
    __array_priority__ = 100.0

    def __init__(self, data, parents: tuple = (), vjp: Callable | None = None):
        self.data = data
        self.parents = parents
        self.vjp = vjp

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)

    def numpy(self) -> np.ndarray:
        return self.data

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        return f"<lamina.Tensor shape={self.data.shape} dtype={self.data.dtype}>\n{self.data!r}"

    def __float__(self):
        return float(self.data)

    def __bool__(self):
        return bool(self.data)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


class Variable:
    """A mutable, named array: a layer weight or an optimizer slot.

    ``assign`` writes in place, so a variable may be a view into a larger buffer (the model's flat
    weight buffer) and stay one. Trainable variables are watched by every recording tape.

    A float variable with ``autocast=True`` reads in the dtype of the active
    :class:`~lamina.backend.AutocastScope` (a mixed-precision layer's compute dtype) while it keeps
    its own dtype for storage, updates and gradients.
    """

    __array_priority__ = 100.0
    # Keras's flag: the optimizer assigns this variable its "gradient" instead of updating it.
    overwrite_with_gradient = False

    def __init__(self, value, trainable: bool = True, name: str | None = None, dtype=None,
                 regularizer=None, constraint=None, autocast: bool = True):
        dtype = None if dtype is None else backend.standardize_dtype(dtype)
        arr = np.array(value, dtype=dtype if dtype is not None else None, copy=True)
        if dtype is None and arr.dtype == np.float64:
            arr = arr.astype(backend.floatx())
        self._value = arr
        self.trainable = bool(trainable)
        self.name = name or "variable"
        self.path = self.name
        self.regularizer = regularizer
        self.constraint = constraint
        self.autocast = bool(autocast)

    @property
    def value(self) -> np.ndarray:
        """The stored array, or under an autocast scope a float variable's value in the scope's dtype."""
        return self._value if _AUTOCAST[0] is None else self._autocast_value(_AUTOCAST[0])

    def _autocast_value(self, dtype: str) -> np.ndarray:
        arr = self._value
        if self.autocast and arr.dtype.name != dtype and backend.is_float_dtype(arr.dtype):
            with np.errstate(over="ignore"):  # out of float16's range reads as inf, as in Keras: no warning
                return arr.astype(dtype)
        return arr

    shape = property(lambda self: self._value.shape)
    dtype = property(lambda self: self._value.dtype)
    ndim = property(lambda self: self._value.ndim)
    size = property(lambda self: self._value.size)

    def numpy(self) -> np.ndarray:
        return self._value.copy()

    def assign(self, value) -> Variable:
        value = unwrap(value)
        value = np.asarray(value)
        if value.shape != self._value.shape:
            raise ValueError(
                f"Cannot assign to variable '{self.path}': expected shape {self._value.shape}. "
                f"Received: value.shape={value.shape}"
            )
        self._value[...] = value
        return self

    def assign_add(self, delta) -> Variable:
        self._value += unwrap(delta)
        return self

    def assign_sub(self, delta) -> Variable:
        self._value -= unwrap(delta)
        return self

    def _rebind(self, view: np.ndarray) -> None:
        """Point this variable at ``view`` (same shape), copying the current value into it."""
        view[...] = self._value
        self._value = view

    def __array__(self, dtype=None, copy=None):
        return self._value if dtype is None else self._value.astype(dtype)

    def __repr__(self):
        return (f"<Variable path={self.path}, shape={self._value.shape}, "
                f"dtype={self._value.dtype}, value={self._value!r}>")

    def __len__(self):
        return len(self._value)

    def __float__(self):
        return float(self._value)

    def __int__(self):
        return int(self._value)

    # Keras variables compare by value, elementwise (``optimizer.iterations == 0``). Against another
    # Variable the comparison stays by identity, so ``var in list_of_vars``, ``list.remove`` and
    # ``list.index`` keep working on variables of any shape. Hashing stays by identity too: variables
    # are dict keys (by id) and set members throughout lamina.
    def __eq__(self, other):
        return self._compare(np.equal, other)

    def __ne__(self, other):
        return self._compare(np.not_equal, other)

    def _compare(self, ufunc, other):
        # None and strings (sentinels like "auto") compare by identity, never elementwise; an object
        # that opts out of ufuncs (pytest.approx) gets its own reflected comparison.
        if other is None or isinstance(other, (Variable, str, bytes)) or \
                getattr(type(other), "__array_ufunc__", 0) is None:
            return NotImplemented
        return ufunc(self._value, unwrap(other))

    __hash__ = object.__hash__


def unwrap(x):
    """The plain value behind ``x``: a Tensor's or Variable's array, else ``x`` itself."""
    if isinstance(x, Tensor):
        return x.data
    if isinstance(x, Variable):
        return x._value if _AUTOCAST[0] is None else x._autocast_value(_AUTOCAST[0])
    if isinstance(x, (list, tuple)):
        arr = np.asarray(x)
        return arr.astype(backend.floatx()) if arr.dtype == np.float64 else arr
    return x


def needs_gradient(x) -> bool:
    """Does ``x`` need a gradient under the current tapes?"""
    if isinstance(x, Tensor):
        return True
    if isinstance(x, Variable):
        if x.trainable:
            return True
    for tape in _TAPES:
        if tape._watched and id(x) in tape._watched:
            return True
    return False


def record(out, inputs: tuple, vjp: Callable):
    """Wrap ``out`` in a Tensor node if recording and any input needs a gradient.

    ``vjp(g)`` must return one gradient (or None) per input, each broadcastable to that input.
    This is the one hook every primitive, fused kernel and loss uses.
    """
    if _TAPES and not _PAUSED[0]:
        for x in inputs:
            if needs_gradient(x):
                return Tensor(out, inputs, vjp)
    return out


def _unbroadcast(g, shape):
    """Sum ``g`` down to ``shape``: the adjoint of NumPy broadcasting."""
    g = np.asarray(g)
    if g.shape == shape:
        return g
    if g.ndim > len(shape):
        g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    axes = tuple(i for i, (gs, s) in enumerate(zip(g.shape, shape)) if s == 1 and gs != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    if g.shape != shape:
        g = np.broadcast_to(g, shape)
    return g


def _shape_of(x):
    v = unwrap(x)
    return np.shape(v)


class GradientTape:
    """Records the operations run inside its ``with`` block, for ``tape.gradient``.

    As in TensorFlow: trainable variables are watched automatically; ``tape.watch(x)`` adds
    other arrays or variables; ``persistent=True`` allows several ``gradient`` calls.
    """

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True):
        self.persistent = persistent
        self.watch_accessed_variables = watch_accessed_variables
        self._watched: dict[int, object] = {}
        self._used = False

    def __enter__(self) -> GradientTape:
        _TAPES.append(self)
        return self

    def __exit__(self, *exc):
        if self in _TAPES:
            _TAPES.remove(self)
        return False

    def watch(self, x) -> None:
        """Track ``x`` too. A watched plain ``ndarray`` is tracked through lamina ops only:
        NumPy's own operators (``x * 3``) on it cannot be intercepted; use a Variable for those."""
        for item in x if isinstance(x, (list, tuple)) else (x,):
            self._watched[id(item)] = item  # keep it alive so its id stays unique

    def stop_recording(self):
        return stop_recording()

    def gradient(self, target, sources, output_gradients=None, unconnected_gradients="none"):
        """Gradients of ``target`` (summed if a list) with respect to each of ``sources``."""
        if self._used and not self.persistent:
            raise RuntimeError(
                "A non-persistent GradientTape can only be used to compute one set of gradients. "
                "Create it with GradientTape(persistent=True) to call gradient() more than once."
            )
        self._used = True
        single = not isinstance(sources, (list, tuple))
        src_list = [sources] if single else list(sources)
        targets = target if isinstance(target, (list, tuple)) else [target]
        if output_gradients is None:
            seeds = [None] * len(targets)
        else:
            seeds = output_gradients if isinstance(output_gradients, (list, tuple)) else [output_gradients]
        grads = backward(targets, seeds)
        out = []
        for s in src_list:
            g = grads.get(id(s))
            if g is None and unconnected_gradients == "zero":
                g = np.zeros(_shape_of(s), dtype=np.asarray(unwrap(s)).dtype)
            elif g is not None:
                g = np.asarray(g)
                dt = s._value.dtype if isinstance(s, Variable) else np.asarray(unwrap(s)).dtype
                if g.dtype != dt and backend.is_float_dtype(dt):  # a mixed-precision weight's gradient
                    g = g.astype(dt)
            out.append(g)
        return out[0] if single else out


def backward(targets: Sequence, seeds: Sequence | None = None) -> dict[int, np.ndarray]:
    """Propagate from ``targets`` to every reachable node; returns ``{id(node): gradient}``."""
    order: list[Tensor] = []
    seen: set[int] = set()
    for t in targets:
        if not isinstance(t, Tensor) or id(t) in seen:
            continue
        # Iterative post-order DFS: a node is appended after all of its parents.
        stack = [(t, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            for p in node.parents:
                if isinstance(p, Tensor) and id(p) not in seen:
                    stack.append((p, False))
    grads: dict[int, np.ndarray] = {}
    for t, seed in zip(targets, seeds or [None] * len(targets)):
        if isinstance(t, Tensor):
            g = np.ones_like(t.data) if seed is None else np.asarray(unwrap(seed), dtype=t.data.dtype)
            grads[id(t)] = grads[id(t)] + g if id(t) in grads else g
    for node in reversed(order):
        g = grads.get(id(node))
        if g is None or node.vjp is None:
            continue
        pgrads = node.vjp(g)
        for p, pg in zip(node.parents, pgrads):
            if pg is None or not _tracked_leaf_or_node(p):
                continue
            pg = _unbroadcast(pg, _shape_of(p))
            k = id(p)
            if k in grads:
                grads[k] = grads[k] + pg
            else:
                grads[k] = pg
    return grads


def _tracked_leaf_or_node(p) -> bool:
    return isinstance(p, (Tensor, Variable, np.ndarray))


class stop_recording:
    """Context manager: ops inside run as plain array code even under a tape."""

    def __enter__(self):
        _PAUSED[0] += 1

    def __exit__(self, *exc):
        _PAUSED[0] -= 1
        return False


def stop_gradient(x):
    """The value of ``x`` cut off from the graph."""
    return unwrap(x)
