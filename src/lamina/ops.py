"""The public op set: a subset of ``keras.ops`` on NumPy, differentiable under a GradientTape.

Each primitive computes with plain NumPy and calls :func:`lamina.autodiff.record` with its
vector-Jacobian product; outside a tape that call returns the plain array, so these ops cost one
NumPy call plus a flag check. Inputs may be arrays, Python numbers, lists, Tensors or Variables.
Binary ops broadcast as NumPy does; the tape sums each gradient back to its input's shape.

Values outside an op's domain behave as in NumPy, warnings included (``log(0) = -inf``,
``sqrt(-1) = nan``, ``1 / 0 = inf``), and so do their gradients (``sqrt'(0) = log'(0) = inf``).

Kinks: ``relu'(0) = 0``, ``abs'(0) = 0``, ``maximum``/``minimum`` send the gradient to the first
argument on ties, ``max``/``min`` share it equally between tied entries, ``clip`` passes it inside
the closed interval. Comparisons, ``sign``, ``argmax`` and the constructors have no gradient.

``relu``, ``sigmoid``, ``softmax``, ``log_softmax`` and ``softplus`` are the activations of the
same name (one implementation, in :mod:`lamina.activations`).
"""

from __future__ import annotations

import builtins

import numpy as np

from lamina import activations, backend, special
from lamina.autodiff import Tensor, Variable, needs_gradient, record, unwrap

# ----------------------------------------------------------------------------- conversion


def convert_to_tensor(x, dtype=None, sparse=None):
    """An ``ndarray`` for ``x`` (Python floats become floatx); Tensors and Variables pass through."""
    if isinstance(x, (Tensor, Variable)):
        if dtype is not None and backend.standardize_dtype(dtype) != x.dtype.name:
            return cast(x, dtype)
        return x
    if dtype is not None:
        return np.asarray(x, dtype=backend.standardize_dtype(dtype))
    arr = np.asarray(x)
    if arr.dtype == np.float64 and not isinstance(x, np.ndarray):
        arr = arr.astype(backend.floatx())
    return arr


def convert_to_numpy(x) -> np.ndarray:
    """The value of ``x`` as a NumPy array (no graph)."""
    return np.asarray(unwrap(x))


def is_tensor(x) -> bool:
    """True for an ``ndarray``, Tensor or Variable; False for Python numbers and lists."""
    return isinstance(x, (np.ndarray, Tensor, Variable))


def shape(x) -> tuple:
    """``np.shape(x)``: the shape as a tuple of ints (``()`` for a number)."""
    return tuple(np.shape(unwrap(x)))


def dtype(x) -> str:
    """The dtype name of ``x``, e.g. ``"float32"``; a Python float is ``"float64"``, as in NumPy."""
    return np.asarray(unwrap(x)).dtype.name


def cast(x, dtype):
    """``x.astype(dtype)`` (floats to ints truncate toward 0); the gradient passes through unchanged
    when the result is floating, and an integer or bool result is a constant."""
    xv = unwrap(x)
    dt = backend.standardize_dtype(dtype)
    out = np.asarray(xv).astype(dt)
    if np.issubdtype(out.dtype, np.floating):
        return record(out, (x,), lambda g: (g,))
    return out


# ----------------------------------------------------------------------------- arithmetic


def add(a, b):
    """``a + b``."""
    return record(np.add(unwrap(a), unwrap(b)), (a, b), lambda g: (g, g))


def subtract(a, b):
    """``a - b``."""
    return record(np.subtract(unwrap(a), unwrap(b)), (a, b), lambda g: (g, -g))


def multiply(a, b):
    """``a * b``; gradients ``g * b`` and ``g * a``."""
    av, bv = unwrap(a), unwrap(b)
    return record(np.multiply(av, bv), (a, b), lambda g: (g * bv, g * av))


def divide(a, b):
    """``a / b`` (true division, ``np.true_divide``); ``x / 0`` is ``+-inf`` or ``nan`` as in NumPy."""
    av, bv = unwrap(a), unwrap(b)
    out = np.true_divide(av, bv)
    return record(out, (a, b), lambda g: (g / bv, -g * out / bv))


true_divide = divide


def negative(x):
    """``-x``."""
    return record(np.negative(unwrap(x)), (x,), lambda g: (-g,))


def power(a, b):
    """``a ** b`` (``np.power``); d/da = ``b * a^(b-1)``, d/db = ``a^b * log(a)`` where ``a > 0`` and 0
    elsewhere (the log is undefined there)."""
    av, bv = unwrap(a), unwrap(b)
    out = np.power(av, bv)

    def vjp(g):
        ga = g * bv * np.power(av, np.subtract(bv, 1))
        gb = None
        if needs_gradient(b):
            with np.errstate(divide="ignore", invalid="ignore"):
                gb = np.where(av > 0, g * out * np.log(np.where(av > 0, av, 1)), 0)
        return ga, gb

    return record(out, (a, b), vjp)


def matmul(a, b):
    """``a @ b`` (``np.matmul``: batched over leading axes, a 1-D operand is a vector). ``dot`` is the
    same op, which agrees with ``np.dot`` up to 2-D. A gradient no input needs is never computed."""
    av, bv = unwrap(a), unwrap(b)
    out = np.matmul(av, bv)
    need_a, need_b = needs_gradient(a), needs_gradient(b)

    def vjp(g):
        ga = gb = None
        if need_a:
            ga = np.matmul(g, np.swapaxes(bv, -1, -2)) if np.ndim(bv) > 1 else np.multiply.outer(g, bv)
        if need_b:
            if np.ndim(av) > 1:
                gb = np.matmul(np.swapaxes(av, -1, -2), g) if np.ndim(g) > 1 else np.multiply.outer(av, g)
                if np.ndim(bv) == 2 and gb.ndim > 2:
                    gb = gb.reshape(-1, *gb.shape[-2:]).sum(axis=0)
            else:
                gb = np.multiply.outer(av, g)
        return ga, gb

    return record(out, (a, b), vjp)


dot = matmul


def square(x):
    """``x * x``; derivative ``2x``."""
    xv = unwrap(x)
    return record(np.square(xv), (x,), lambda g: (2 * g * xv,))


def sqrt(x):
    """``np.sqrt(x)``; derivative ``1 / (2 sqrt(x))``, ``inf`` at 0; ``nan`` for x < 0."""
    out = np.sqrt(unwrap(x))
    return record(out, (x,), lambda g: (g / (2 * out),))


def exp(x):
    """``np.exp(x)``; overflows to ``inf`` past the dtype's range (x > 88.7 in float32)."""
    out = np.exp(unwrap(x))
    return record(out, (x,), lambda g: (g * out,))


def expm1(x):
    """``exp(x) - 1`` without cancellation near 0 (``np.expm1``)."""
    out = np.expm1(unwrap(x))
    return record(out, (x,), lambda g: (g * (out + 1),))


def log(x):
    """Natural logarithm ``np.log(x)``: ``-inf`` at 0, ``nan`` below; derivative ``1 / x``."""
    xv = unwrap(x)
    return record(np.log(xv), (x,), lambda g: (g / xv,))


def log1p(x):
    """``log(1 + x)`` without cancellation near 0 (``np.log1p``); derivative ``1 / (1 + x)``."""
    xv = unwrap(x)
    return record(np.log1p(xv), (x,), lambda g: (g / (1 + xv),))


def abs(x):
    """``|x|``; the derivative is ``sign(x)``, so ``abs'(0) = 0``."""
    xv = unwrap(x)
    return record(np.abs(xv), (x,), lambda g: (g * np.sign(xv),))


absolute = abs


def sign(x):
    """``np.sign(x)``: -1, 0 or 1 (``nan`` for nan). A constant: no gradient flows through it."""
    return np.sign(unwrap(x))


def tanh(x):
    """``np.tanh(x)``; derivative ``1 - tanh(x)^2``."""
    out = np.tanh(unwrap(x))
    return record(out, (x,), lambda g: (g * (1 - out * out),))


def sin(x):
    """``np.sin(x)`` (radians); derivative ``cos(x)``."""
    xv = unwrap(x)
    return record(np.sin(xv), (x,), lambda g: (g * np.cos(xv),))


def cos(x):
    """``np.cos(x)`` (radians); derivative ``-sin(x)``."""
    xv = unwrap(x)
    return record(np.cos(xv), (x,), lambda g: (-g * np.sin(xv),))


def maximum(a, b):
    """Elementwise ``np.maximum(a, b)`` (nan if either is nan); on ties the gradient goes to ``a``."""
    av, bv = unwrap(a), unwrap(b)
    out = np.maximum(av, bv)
    mask = av >= bv
    return record(out, (a, b), lambda g: (g * mask, g * ~mask))


def minimum(a, b):
    """Elementwise ``np.minimum(a, b)`` (nan if either is nan); on ties the gradient goes to ``a``."""
    av, bv = unwrap(a), unwrap(b)
    out = np.minimum(av, bv)
    mask = av <= bv
    return record(out, (a, b), lambda g: (g * mask, g * ~mask))


def clip(x, x_min, x_max):
    """``np.clip(x, x_min, x_max)``; the gradient is 1 on the closed interval ``[x_min, x_max]``, else 0
    (no gradient flows to the bounds)."""
    xv = unwrap(x)
    out = np.clip(xv, unwrap(x_min), unwrap(x_max))
    return record(out, (x,), lambda g: (g * ((xv >= x_min) & (xv <= x_max)),))


def where(condition, x1=None, x2=None):
    """``np.where(condition, x1, x2)``, the gradient routed to the branch taken; with only
    ``condition``, the indices of its true entries (``np.nonzero``)."""
    cond = np.asarray(unwrap(condition)).astype(bool)
    if x1 is None and x2 is None:
        return np.nonzero(cond)
    v1, v2 = unwrap(x1), unwrap(x2)
    out = np.where(cond, v1, v2)
    return record(out, (x1, x2), lambda g: (np.where(cond, g, 0), np.where(cond, 0, g)))


def erf(x):
    """The error function ``2/sqrt(pi) * integral_0^x exp(-t^2) dt``, to float32 precision or better.

    Evaluated in float64 by :func:`lamina.special.erf` and cast back (ints become floatx);
    ``erf(+-inf) = +-1``. Derivative ``2/sqrt(pi) * exp(-x^2)``.
    """
    xv = np.asarray(unwrap(x))
    dt = xv.dtype if np.issubdtype(xv.dtype, np.floating) else np.dtype(backend.floatx())
    x64 = xv.astype(np.float64)
    out = special.erf(x64).astype(dt)

    def vjp(g):
        with np.errstate(over="ignore", under="ignore"):  # x^2 -> inf and exp -> 0: the exact limit
            return (g * (special.TWO_OVER_SQRT_PI * np.exp(-(x64 * x64))).astype(dt),)

    return record(out, (x,), vjp)


# ----------------------------------------------------------------------------- reductions


def _norm_axis(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(a % ndim if ndim else 0 for a in axis)


def _expand_to(g, shape, axis, keepdims):
    """Re-insert reduced axes so ``g`` broadcasts against the input of a reduction."""
    if not keepdims and shape:
        for a in sorted(_norm_axis(axis, len(shape))):
            g = np.expand_dims(g, a)
    return g


def sum(x, axis=None, keepdims=False):
    """``np.sum`` over ``axis`` (an int, a tuple, or None for all); the gradient broadcasts back."""
    xv = unwrap(x)
    out = np.sum(xv, axis=axis, keepdims=keepdims)
    shp = np.shape(xv)
    return record(out, (x,), lambda g: (np.broadcast_to(_expand_to(g, shp, axis, keepdims), shp),))


def mean(x, axis=None, keepdims=False):
    """``np.mean`` over ``axis``, keeping a floating input's dtype (integers give float64, as in
    NumPy); the gradient is ``g / n`` for the ``n`` entries averaged."""
    xv = np.asarray(unwrap(x))
    out = np.mean(xv, axis=axis, keepdims=keepdims)
    if xv.dtype != out.dtype and np.issubdtype(xv.dtype, np.floating):
        out = out.astype(xv.dtype)
    shp = xv.shape
    n = builtins.max(1, int(np.prod([shp[a] for a in _norm_axis(axis, len(shp))])) if shp else 1)
    return record(out, (x,), lambda g: (np.broadcast_to(_expand_to(g, shp, axis, keepdims) / n, shp),))


def _extreme(fn, x, axis, keepdims, initial):
    xv = unwrap(x)
    if initial is None:
        out = fn(xv, axis=axis, keepdims=keepdims)
    else:
        out = fn(xv, axis=axis, keepdims=keepdims, initial=unwrap(initial))
    shp = np.shape(xv)

    def vjp(g):
        o = _expand_to(out, shp, axis, keepdims)
        mask = xv == o
        # A slice whose extreme is ``initial`` (no entry reaches it) has no maximal entry: gradient 0.
        count = np.maximum(np.sum(mask, axis=axis, keepdims=True), 1)
        return (_expand_to(g, shp, axis, keepdims) * mask / count,)

    return record(out, (x,), vjp)


def max(x, axis=None, keepdims=False, initial=None):
    """``np.max`` over ``axis`` (all axes when None), starting from ``initial`` when given (required
    for an empty slice). On ties the gradient is shared equally between the maximal entries; a slice
    whose maximum is ``initial`` passes none. A nan in a slice makes its maximum nan."""
    return _extreme(np.max, x, axis, keepdims, initial)


def min(x, axis=None, keepdims=False, initial=None):
    """``np.min`` over ``axis``, as :func:`max` (ties share the gradient, ``initial`` as a floor)."""
    return _extreme(np.min, x, axis, keepdims, initial)


amax, amin = max, min


def argmax(x, axis=None, keepdims=False):
    """``np.argmax``: the index of the largest entry (the first on ties, the first nan if any);
    over the flattened input when ``axis`` is None. No gradient."""
    return np.argmax(unwrap(x), axis=axis, keepdims=keepdims)


def argmin(x, axis=None, keepdims=False):
    """``np.argmin``: the index of the smallest entry (the first on ties, the first nan if any). No
    gradient."""
    return np.argmin(unwrap(x), axis=axis, keepdims=keepdims)


def logsumexp(x, axis=None, keepdims=False):
    """``log(sum(exp(x)))`` over ``axis``, shifted by the maximum so it cannot overflow; ``-inf`` for a
    slice that is all ``-inf``, ``inf`` for one holding ``inf``. Gradient ``softmax(x)``."""
    xv = unwrap(x)
    m = np.max(xv, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    s = np.exp(xv - m)
    tot = np.sum(s, axis=axis, keepdims=True)
    with np.errstate(divide="ignore"):  # log(0) = -inf is the exact answer for an all -inf slice
        out_k = np.log(tot) + m
    out = out_k if keepdims else np.squeeze(out_k, axis=axis)
    shp = np.shape(xv)
    return record(out, (x,), lambda g: (_expand_to(g, shp, axis, keepdims) * (s / tot),))


# ----------------------------------------------------------------------------- shapes


def reshape(x, newshape):
    """``np.reshape(x, newshape)`` (one dimension may be -1)."""
    xv = unwrap(x)
    shp = np.shape(xv)
    return record(np.reshape(xv, newshape), (x,), lambda g: (np.reshape(g, shp),))


def transpose(x, axes=None):
    """``np.transpose(x, axes)``: axes reversed when None, else permuted as listed."""
    xv = unwrap(x)
    out = np.transpose(xv, axes)
    inv = None if axes is None else np.argsort(axes)
    return record(out, (x,), lambda g: (np.transpose(g, inv),))


def expand_dims(x, axis):
    """``np.expand_dims(x, axis)``: a new axis of size 1 at ``axis``."""
    xv = unwrap(x)
    shp = np.shape(xv)
    return record(np.expand_dims(xv, axis), (x,), lambda g: (np.reshape(g, shp),))


def squeeze(x, axis=None):
    """``np.squeeze(x, axis)``: drops size-1 axes (all of them when ``axis`` is None)."""
    xv = unwrap(x)
    shp = np.shape(xv)
    return record(np.squeeze(xv, axis), (x,), lambda g: (np.reshape(g, shp),))


def broadcast_to(x, shape):
    """``np.broadcast_to(x, shape)`` (a read-only view); the gradient is summed back to ``x``'s shape."""
    return record(np.broadcast_to(unwrap(x), shape), (x,), lambda g: (g,))


def concatenate(xs, axis=0):
    """``np.concatenate(xs, axis)``; the gradient is split back into the pieces."""
    vals = [unwrap(x) for x in xs]
    out = np.concatenate(vals, axis=axis)
    splits = np.cumsum([np.shape(v)[axis] for v in vals])[:-1]
    return record(out, tuple(xs), lambda g: tuple(np.split(g, splits, axis=axis)))


def stack(xs, axis=0):
    """``np.stack(xs, axis)``: joins same-shape arrays along a new axis."""
    vals = [unwrap(x) for x in xs]
    out = np.stack(vals, axis=axis)

    def vjp(g):
        return tuple(np.squeeze(p, axis) for p in np.split(g, len(vals), axis=axis))

    return record(out, tuple(xs), vjp)


def take(x, indices, axis=None):
    """``np.take(x, indices, axis)`` (over the flattened input when ``axis`` is None); a repeated index
    accumulates its gradients."""
    xv = unwrap(x)
    idx = np.asarray(unwrap(indices))
    out = np.take(xv, idx, axis=axis)
    shp = np.shape(xv)

    def vjp(g):
        full = np.zeros(shp, dtype=g.dtype)
        if axis is None:
            np.add.at(full.reshape(-1), idx.reshape(-1), g.reshape(-1))
        else:
            moved = np.moveaxis(full, axis, 0)
            gm = np.moveaxis(g, list(range(axis, axis + idx.ndim)), list(range(idx.ndim)))
            np.add.at(moved, idx.reshape(-1), gm.reshape((-1,) + moved.shape[1:]))
        return (full,)

    return record(out, (x,), vjp)


def getitem(x, key):
    """``x[key]`` with NumPy indexing (``Tensor.__getitem__``); repeated fancy indices accumulate
    their gradients."""
    xv = unwrap(x)
    key = unwrap(key) if isinstance(key, (Tensor, Variable)) else key
    out = xv[key]
    shp = np.shape(xv)

    def vjp(g):
        full = np.zeros(shp, dtype=np.asarray(g).dtype)
        np.add.at(full, key, g)
        return (full,)

    return record(out, (x,), vjp)


def one_hot(x, num_classes, axis=-1, dtype=None):
    """``eye(num_classes)[x]`` with the class axis at ``axis`` (dtype floatx by default). As in Keras,
    an index outside ``[0, num_classes)`` (e.g. -1 for "no class") gives a row of zeros. No gradient."""
    idx = np.asarray(unwrap(x)).astype(np.int64)
    # One extra all-zero row takes every out-of-range index (NumPy indexing would wrap -1 to the last class).
    eye = np.eye(num_classes + 1, num_classes, dtype=backend.standardize_dtype(dtype))
    out = eye[np.where((idx >= 0) & (idx < num_classes), idx, num_classes)]
    if axis != -1:
        out = np.moveaxis(out, -1, axis)
    return out


def zeros(shape, dtype=None):
    """``np.zeros(shape)``, dtype floatx by default."""
    return np.zeros(shape, dtype=backend.standardize_dtype(dtype))


def ones(shape, dtype=None):
    """``np.ones(shape)``, dtype floatx by default."""
    return np.ones(shape, dtype=backend.standardize_dtype(dtype))


def zeros_like(x, dtype=None):
    """``np.zeros_like(x)``: ``x``'s shape, and its dtype unless ``dtype`` is given."""
    return np.zeros_like(unwrap(x), dtype=dtype)


def ones_like(x, dtype=None):
    """``np.ones_like(x)``: ``x``'s shape, and its dtype unless ``dtype`` is given."""
    return np.ones_like(unwrap(x), dtype=dtype)


def equal(a, b):
    """Elementwise ``a == b`` as a bool array (nan equals nothing)."""
    return np.equal(unwrap(a), unwrap(b))


def not_equal(a, b):
    """Elementwise ``a != b`` as a bool array (nan differs from everything)."""
    return np.not_equal(unwrap(a), unwrap(b))


def greater(a, b):
    """Elementwise ``a > b`` as a bool array (False wherever a nan is involved)."""
    return np.greater(unwrap(a), unwrap(b))


def less(a, b):
    """Elementwise ``a < b`` as a bool array (False wherever a nan is involved)."""
    return np.less(unwrap(a), unwrap(b))


def arange(start, stop=None, step=1, dtype=None):
    """``np.arange(start, stop, step)``; without ``dtype`` NumPy's choice (int64 for ints, float64 for
    floats)."""
    return np.arange(start, stop, step, dtype=dtype)


def stop_gradient(x):
    """The value of ``x`` as a plain array: a constant the tape does not differentiate through."""
    return unwrap(x)


# ----------------------------------------------------------------------------- nn ops


def relu(x):
    """``max(x, 0)``; ``relu'(0) = 0`` (:func:`lamina.activations.relu` with its defaults)."""
    return activations.relu(x)


# Same signatures as keras.ops, so the activations themselves serve: one implementation, and
# Dense(activation=ops.sigmoid) is recognised (fused, serialized by name) like the activation.
sigmoid = activations.sigmoid
softmax = activations.softmax
log_softmax = activations.log_softmax
softplus = activations.softplus


# ----------------------------------------------------------------------------- operators
# Tensor and Variable arithmetic dispatch to the primitives above.


def _install_operators(cls):
    cls.__add__ = lambda a, b: add(a, b)
    cls.__radd__ = lambda a, b: add(b, a)
    cls.__sub__ = lambda a, b: subtract(a, b)
    cls.__rsub__ = lambda a, b: subtract(b, a)
    cls.__mul__ = lambda a, b: multiply(a, b)
    cls.__rmul__ = lambda a, b: multiply(b, a)
    cls.__truediv__ = lambda a, b: divide(a, b)
    cls.__rtruediv__ = lambda a, b: divide(b, a)
    cls.__matmul__ = lambda a, b: matmul(a, b)
    cls.__rmatmul__ = lambda a, b: matmul(b, a)
    cls.__pow__ = lambda a, b: power(a, b)
    cls.__rpow__ = lambda a, b: power(b, a)
    cls.__neg__ = lambda a: negative(a)
    cls.__pos__ = lambda a: a
    cls.__abs__ = lambda a: abs(a)
    cls.__getitem__ = lambda a, k: getitem(a, k)
    cls.__lt__ = lambda a, b: np.less(unwrap(a), unwrap(b))
    cls.__le__ = lambda a, b: np.less_equal(unwrap(a), unwrap(b))
    cls.__gt__ = lambda a, b: np.greater(unwrap(a), unwrap(b))
    cls.__ge__ = lambda a, b: np.greater_equal(unwrap(a), unwrap(b))
    cls.T = property(lambda a: transpose(a))
    cls.reshape = lambda a, *s: reshape(a, s[0] if len(s) == 1 else s)
    cls.sum = lambda a, axis=None, keepdims=False: sum(a, axis, keepdims)
    cls.mean = lambda a, axis=None, keepdims=False: mean(a, axis, keepdims)


_install_operators(Tensor)
_install_operators(Variable)
