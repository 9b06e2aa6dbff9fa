"""The public op set: a subset of ``keras.ops`` on NumPy, differentiable under a GradientTape.

Each primitive computes with plain NumPy and calls :func:`lamina.autodiff.record` with its
vector-Jacobian product; outside a tape that call returns the plain array, so these ops cost one
NumPy call plus a flag check. Inputs may be arrays, Python numbers, lists, Tensors or Variables.

Kinks: ``relu'(0) = 0``, ``abs'(0) = 0``, ``maximum``/``minimum`` send the gradient to the first
argument on ties, ``clip`` passes the gradient inside the closed interval.
"""

from __future__ import annotations

import builtins
import math

import numpy as np

from lamina import backend
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
    return isinstance(x, (np.ndarray, Tensor, Variable))


def shape(x) -> tuple:
    return tuple(np.shape(unwrap(x)))


def dtype(x) -> str:
    return np.asarray(unwrap(x)).dtype.name


def cast(x, dtype):
    xv = unwrap(x)
    dt = backend.standardize_dtype(dtype)
    out = np.asarray(xv).astype(dt)
    if np.issubdtype(out.dtype, np.floating):
        return record(out, (x,), lambda g: (g,))
    return out


# ----------------------------------------------------------------------------- arithmetic


def add(a, b):
    return record(np.add(unwrap(a), unwrap(b)), (a, b), lambda g: (g, g))


def subtract(a, b):
    return record(np.subtract(unwrap(a), unwrap(b)), (a, b), lambda g: (g, -g))


def multiply(a, b):
    av, bv = unwrap(a), unwrap(b)
    return record(np.multiply(av, bv), (a, b), lambda g: (g * bv, g * av))


def divide(a, b):
    av, bv = unwrap(a), unwrap(b)
    out = np.true_divide(av, bv)
    return record(out, (a, b), lambda g: (g / bv, -g * out / bv))


true_divide = divide


def negative(x):
    return record(np.negative(unwrap(x)), (x,), lambda g: (-g,))


def power(a, b):
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
    """Matrix product; the gradient of an input that needs none is never computed."""
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
    xv = unwrap(x)
    return record(np.square(xv), (x,), lambda g: (2 * g * xv,))


def sqrt(x):
    out = np.sqrt(unwrap(x))
    return record(out, (x,), lambda g: (g / (2 * out),))


def exp(x):
    out = np.exp(unwrap(x))
    return record(out, (x,), lambda g: (g * out,))


def expm1(x):
    out = np.expm1(unwrap(x))
    return record(out, (x,), lambda g: (g * (out + 1),))


def log(x):
    xv = unwrap(x)
    return record(np.log(xv), (x,), lambda g: (g / xv,))


def log1p(x):
    xv = unwrap(x)
    return record(np.log1p(xv), (x,), lambda g: (g / (1 + xv),))


def abs(x):  # noqa: A001 - Keras's name
    xv = unwrap(x)
    return record(np.abs(xv), (x,), lambda g: (g * np.sign(xv),))


absolute = abs


def sign(x):
    return np.sign(unwrap(x))


def tanh(x):
    out = np.tanh(unwrap(x))
    return record(out, (x,), lambda g: (g * (1 - out * out),))


def sin(x):
    xv = unwrap(x)
    return record(np.sin(xv), (x,), lambda g: (g * np.cos(xv),))


def cos(x):
    xv = unwrap(x)
    return record(np.cos(xv), (x,), lambda g: (-g * np.sin(xv),))


def maximum(a, b):
    av, bv = unwrap(a), unwrap(b)
    out = np.maximum(av, bv)
    mask = av >= bv
    return record(out, (a, b), lambda g: (g * mask, g * ~mask))


def minimum(a, b):
    av, bv = unwrap(a), unwrap(b)
    out = np.minimum(av, bv)
    mask = av <= bv
    return record(out, (a, b), lambda g: (g * mask, g * ~mask))


def clip(x, x_min, x_max):
    xv = unwrap(x)
    out = np.clip(xv, unwrap(x_min), unwrap(x_max))
    return record(out, (x,), lambda g: (g * ((xv >= x_min) & (xv <= x_max)),))


def where(condition, x1=None, x2=None):
    cond = np.asarray(unwrap(condition)).astype(bool)
    if x1 is None and x2 is None:
        return np.nonzero(cond)
    v1, v2 = unwrap(x1), unwrap(x2)
    out = np.where(cond, v1, v2)
    return record(out, (x1, x2), lambda g: (np.where(cond, g, 0), np.where(cond, 0, g)))


def erf(x):
    """The error function, accurate to float32 precision (see :func:`_erfc64`)."""
    xv = np.asarray(unwrap(x))
    dt = xv.dtype if np.issubdtype(xv.dtype, np.floating) else np.dtype(backend.floatx())
    x64 = xv.astype(np.float64)
    out = np.where(x64 >= 0, 1 - _erfc64(x64), _erfc64(-x64) - 1).astype(dt)
    coef = 2 / math.sqrt(math.pi)
    return record(out, (x,), lambda g: (g * (coef * np.exp(-(x64 * x64))).astype(dt),))


def _erfc64(x):
    """erfc(x) in float64 with relative error below 1.2e-7 everywhere (Numerical Recipes' erfcc).

    Uses the Chebyshev-fitted form erfc(x) = t*exp(-x^2 + P(t)), t = 1/(1 + |x|/2), which keeps
    its relative accuracy deep in the tail where ``1 - erf`` would cancel.
    """
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    with np.errstate(under="ignore"):
        r = t * np.exp(poly)
    return np.where(x >= 0, r, 2.0 - r)


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


def sum(x, axis=None, keepdims=False):  # noqa: A001 - Keras's name
    xv = unwrap(x)
    out = np.sum(xv, axis=axis, keepdims=keepdims)
    shp = np.shape(xv)
    return record(out, (x,), lambda g: (np.broadcast_to(_expand_to(g, shp, axis, keepdims), shp),))


def mean(x, axis=None, keepdims=False):
    xv = np.asarray(unwrap(x))
    out = np.mean(xv, axis=axis, keepdims=keepdims)
    if xv.dtype != out.dtype and np.issubdtype(xv.dtype, np.floating):
        out = out.astype(xv.dtype)
    shp = xv.shape
    n = builtins.max(1, int(np.prod([shp[a] for a in _norm_axis(axis, len(shp))])) if shp else 1)
    return record(out, (x,), lambda g: (np.broadcast_to(_expand_to(g, shp, axis, keepdims) / n, shp),))


def _extreme(fn, x, axis, keepdims):
    xv = unwrap(x)
    out = fn(xv, axis=axis, keepdims=keepdims)
    shp = np.shape(xv)

    def vjp(g):
        o = _expand_to(out, shp, axis, keepdims)
        mask = xv == o
        count = np.sum(mask, axis=axis, keepdims=True)
        return (_expand_to(g, shp, axis, keepdims) * mask / count,)

    return record(out, (x,), vjp)


def max(x, axis=None, keepdims=False, initial=None):  # noqa: A001
    """Maximum; on ties the gradient is shared equally between the maximal entries."""
    return _extreme(np.max, x, axis, keepdims)


def min(x, axis=None, keepdims=False, initial=None):  # noqa: A001
    return _extreme(np.min, x, axis, keepdims)


amax, amin = max, min


def argmax(x, axis=None, keepdims=False):
    return np.argmax(unwrap(x), axis=axis, keepdims=keepdims)


def argmin(x, axis=None, keepdims=False):
    return np.argmin(unwrap(x), axis=axis, keepdims=keepdims)


def logsumexp(x, axis=None, keepdims=False):
    xv = unwrap(x)
    m = np.max(xv, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    s = np.exp(xv - m)
    tot = np.sum(s, axis=axis, keepdims=True)
    out_k = np.log(tot) + m
    out = out_k if keepdims else np.squeeze(out_k, axis=axis)
    shp = np.shape(xv)
    return record(out, (x,), lambda g: (_expand_to(g, shp, axis, keepdims) * (s / tot),))


# ----------------------------------------------------------------------------- shapes


def reshape(x, newshape):
    xv = unwrap(x)
    shp = np.shape(xv)
    return record(np.reshape(xv, newshape), (x,), lambda g: (np.reshape(g, shp),))


def transpose(x, axes=None):
    xv = unwrap(x)
    out = np.transpose(xv, axes)
    inv = None if axes is None else np.argsort(axes)
    return record(out, (x,), lambda g: (np.transpose(g, inv),))


def expand_dims(x, axis):
    xv = unwrap(x)
    shp = np.shape(xv)
    return record(np.expand_dims(xv, axis), (x,), lambda g: (np.reshape(g, shp),))


def squeeze(x, axis=None):
    xv = unwrap(x)
    shp = np.shape(xv)
    return record(np.squeeze(xv, axis), (x,), lambda g: (np.reshape(g, shp),))


def broadcast_to(x, shape):
    return record(np.broadcast_to(unwrap(x), shape), (x,), lambda g: (g,))


def concatenate(xs, axis=0):
    vals = [unwrap(x) for x in xs]
    out = np.concatenate(vals, axis=axis)
    splits = np.cumsum([np.shape(v)[axis] for v in vals])[:-1]
    return record(out, tuple(xs), lambda g: tuple(np.split(g, splits, axis=axis)))


def stack(xs, axis=0):
    vals = [unwrap(x) for x in xs]
    out = np.stack(vals, axis=axis)

    def vjp(g):
        return tuple(np.squeeze(p, axis) for p in np.split(g, len(vals), axis=axis))

    return record(out, tuple(xs), vjp)


def take(x, indices, axis=None):
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
    idx = np.asarray(unwrap(x)).astype(np.int64)
    eye = np.eye(num_classes, dtype=backend.standardize_dtype(dtype))
    out = eye[idx]
    if axis != -1:
        out = np.moveaxis(out, -1, axis)
    return out


def zeros(shape, dtype=None):
    return np.zeros(shape, dtype=backend.standardize_dtype(dtype))


def ones(shape, dtype=None):
    return np.ones(shape, dtype=backend.standardize_dtype(dtype))


def zeros_like(x, dtype=None):
    return np.zeros_like(unwrap(x), dtype=dtype)


def ones_like(x, dtype=None):
    return np.ones_like(unwrap(x), dtype=dtype)


def equal(a, b):
    return np.equal(unwrap(a), unwrap(b))


def not_equal(a, b):
    return np.not_equal(unwrap(a), unwrap(b))


def greater(a, b):
    return np.greater(unwrap(a), unwrap(b))


def less(a, b):
    return np.less(unwrap(a), unwrap(b))


def arange(start, stop=None, step=1, dtype=None):
    return np.arange(start, stop, step, dtype=dtype)


def stop_gradient(x):
    return unwrap(x)


# ----------------------------------------------------------------------------- nn ops


def relu(x):
    """max(x, 0); the gradient at 0 is 0. One implementation: the activation of the same name."""
    from lamina.activations import relu as fn

    return fn(x)


def sigmoid(x):
    """1 / (1 + exp(-x)), overflow-free (see :func:`lamina.activations.sigmoid`)."""
    from lamina.activations import sigmoid as fn

    return fn(x)


def softmax(x, axis=-1):
    """exp(x - max) / sum(exp(x - max)) along ``axis`` (see :func:`lamina.activations.softmax`)."""
    from lamina.activations import softmax as fn

    return fn(x, axis=axis)


def log_softmax(x, axis=-1):
    """x - logsumexp(x) along ``axis`` (see :func:`lamina.activations.log_softmax`)."""
    from lamina.activations import log_softmax as fn

    return fn(x, axis=axis)


def softplus(x):
    """log(1 + exp(x)) without overflow (see :func:`lamina.activations.softplus`)."""
    from lamina.activations import softplus as fn

    return fn(x)


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
