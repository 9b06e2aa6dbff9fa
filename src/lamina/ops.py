"""The public op set: the NumPy-like, math, core and nn-basics part of ``keras.ops`` on NumPy,
differentiable under a GradientTape, with Keras's names, signatures and defaults.

Each primitive computes with plain NumPy and calls :func:`lamina.autodiff.record` with its
vector-Jacobian product; outside a tape that call returns the plain array, so these ops cost one
NumPy call plus a flag check. Inputs may be arrays, Python numbers, lists, Tensors or Variables.
Binary ops broadcast as NumPy does; the tape sums each gradient back to its input's shape. Many
composite ops (``tensordot``, ``quantile``, ``layer_normalization``, ...) are written with the
primitives and get their gradients from them; ops that only move entries (``flip``, ``tile``,
``sort``, ``pad``, ...) share one rule, :func:`_selection`.

Dtypes follow Keras where an op chooses one: constructors default to floatx (``zeros``, ``full``,
``eye``, ``linspace``), ``arange`` and ``array`` of Python ints give int32, indices (``argmax``,
``argsort``, ``top_k``, ``nonzero``) are int32, float-valued functions of ints or bools (``mean``,
``std``, ``sqrt``-like, ``log2``, ``floor``) give floatx, and sums of bools or narrow ints are int32.
A floating input keeps its dtype (float64 stays float64). Mixed-dtype arithmetic promotes as NumPy
does (int32 + float32 is float64; Keras gives float32).

Values outside an op's domain behave as in NumPy, warnings included (``log(0) = -inf``,
``sqrt(-1) = nan``, ``1 / 0 = inf``), and so do their gradients (``sqrt'(0) = log'(0) = inf``).

Kinks: ``relu'(0) = 0``, ``abs'(0) = 0``, ``maximum``/``minimum`` send the gradient to the first
argument on ties, ``max``/``min`` share it equally between tied entries, ``clip`` passes it inside
the closed interval; ``std`` and the 2-norm have gradient 0 where they are 0; ``prod`` and
``cumprod`` are exact at zeros. Comparisons, ``sign``, ``floor``/``ceil``/``round``, ``argmax`` and
the constructors have no gradient.

``relu``, ``sigmoid``, ``softmax``, ``log_softmax``, ``softplus`` and the other activations with
Keras's signatures are the activations of the same name (one implementation, in
:mod:`lamina.activations`); ``ops.gelu`` defaults to the tanh approximation, as ``keras.ops.gelu``.
"""

from __future__ import annotations

import builtins
import inspect

import numpy as np

from lamina import activations, backend, conv_kernels, conv_variant_kernels, special
from lamina.autodiff import Tensor, Variable, needs_gradient, record, stop_recording, unwrap

# ----------------------------------------------------------------------------- conversion


def convert_to_tensor(x, dtype=None, sparse=None, ragged=None):
    """An ``ndarray`` for ``x``; Tensors and Variables pass through. Python data takes Keras's dtypes:
    floats become floatx, ints int32 (int64 if a value does not fit). ``sparse=True`` and
    ``ragged=True`` are refused: lamina's arrays are dense."""
    if sparse or ragged:
        raise ValueError(f"`convert_to_tensor`: sparse and ragged tensors are not supported. "
                         f"Received: sparse={sparse}, ragged={ragged}")
    if isinstance(x, (Tensor, Variable)):
        if dtype is not None and backend.standardize_dtype(dtype) != x.dtype.name:
            return cast(x, dtype)
        return x
    if dtype is not None:
        return np.asarray(x, dtype=backend.standardize_dtype(dtype))
    arr = np.asarray(x)
    if not isinstance(x, np.ndarray):
        arr = _python_data(arr)
    return arr


def _python_data(arr: np.ndarray) -> np.ndarray:
    """Keras's dtypes for an array NumPy made from Python data: float64 to floatx, int64 to int32."""
    if arr.dtype == np.float64:
        return arr.astype(backend.floatx())
    if arr.dtype == np.int64 and (arr.size == 0 or (arr.min() >= -(2**31) and arr.max() < 2**31)):
        return arr.astype(np.int32)
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
    if backend.is_float_dtype(out.dtype):  # bfloat16 too, which NumPy does not count as floating
        src = np.asarray(xv).dtype
        back = src if backend.is_float_dtype(src) else None  # the gradient returns in the input's dtype
        return record(out, (x,), lambda g: (g if back is None else np.asarray(g).astype(back, copy=False),))
    return out


# ----------------------------------------------------------------------------- arithmetic


def add(x1, x2):
    """``x1 + x2``."""
    return record(np.add(unwrap(x1), unwrap(x2)), (x1, x2), lambda g: (g, g))


def subtract(x1, x2):
    """``x1 - x2``."""
    return record(np.subtract(unwrap(x1), unwrap(x2)), (x1, x2), lambda g: (g, -g))


def multiply(x1, x2):
    """``x1 * x2``; gradients ``g * x2`` and ``g * x1``."""
    av, bv = unwrap(x1), unwrap(x2)
    return record(np.multiply(av, bv), (x1, x2), lambda g: (g * bv, g * av))


def divide(x1, x2):
    """``x1 / x2`` (true division, ``np.true_divide``); ``x / 0`` is ``+-inf`` or ``nan`` as in NumPy."""
    av, bv = unwrap(x1), unwrap(x2)
    out = np.true_divide(av, bv)
    return record(out, (x1, x2), lambda g: (g / bv, -g * out / bv))


true_divide = divide


def negative(x):
    """``-x``."""
    return record(np.negative(unwrap(x)), (x,), lambda g: (-g,))


def power(x1, x2):
    """``x1 ** x2`` (``np.power``); d/dx1 = ``x2 * x1^(x2-1)``, d/dx2 = ``x1^x2 * log(x1)`` where ``x1 > 0`` and 0
    elsewhere (the log is undefined there)."""
    av, bv = unwrap(x1), unwrap(x2)
    out = np.power(av, bv)

    def vjp(g):
        ga = g * bv * np.power(av, np.subtract(bv, 1))
        gb = None
        if needs_gradient(x2):
            with np.errstate(divide="ignore", invalid="ignore"):
                gb = np.where(av > 0, g * out * np.log(np.where(av > 0, av, 1)), 0)
        return ga, gb

    return record(out, (x1, x2), vjp)


def matmul(x1, x2):
    """``x1 @ x2`` (``np.matmul``: batched over leading axes, a 1-D operand is a vector). ``dot`` is the
    same op, which agrees with ``np.dot`` up to 2-D. A gradient no input needs is never computed."""
    av, bv = unwrap(x1), unwrap(x2)
    out = np.matmul(av, bv)
    need_a, need_b = needs_gradient(x1), needs_gradient(x2)

    def vjp(g):
        ga = gb = None
        if need_a:
            if np.ndim(bv) == 1:
                ga = np.multiply.outer(g, bv)
            elif np.ndim(av) == 1:  # vector @ (batched) matrix: x2 @ g per batch entry, summed by the tape
                ga = np.matmul(bv, np.expand_dims(g, -1))[..., 0]
            else:
                ga = np.matmul(g, np.swapaxes(bv, -1, -2))
        if need_b:
            if np.ndim(bv) == 1 and np.ndim(av) > 1:  # matrix @ vector: sum x1's rows weighted by g
                gb = np.tensordot(av, g, axes=(list(range(av.ndim - 1)), list(range(np.ndim(g)))))
            elif np.ndim(av) > 1:
                gb = np.matmul(np.swapaxes(av, -1, -2), g)
                if np.ndim(bv) == 2 and gb.ndim > 2:
                    gb = gb.reshape(-1, *gb.shape[-2:]).sum(axis=0)
            else:
                gb = np.multiply.outer(av, g) if np.ndim(g) <= 1 else np.expand_dims(av, -1) * np.expand_dims(g, -2)
        return ga, gb

    return record(out, (x1, x2), vjp)


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


def maximum(x1, x2):
    """Elementwise ``np.maximum(x1, x2)`` (nan if either is nan); on ties the gradient goes to ``x1``."""
    av, bv = unwrap(x1), unwrap(x2)
    out = np.maximum(av, bv)
    mask = av >= bv
    return record(out, (x1, x2), lambda g: (g * mask, g * ~mask))


def minimum(x1, x2):
    """Elementwise ``np.minimum(x1, x2)`` (nan if either is nan); on ties the gradient goes to ``x1``."""
    av, bv = unwrap(x1), unwrap(x2)
    out = np.minimum(av, bv)
    mask = av <= bv
    return record(out, (x1, x2), lambda g: (g * mask, g * ~mask))


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


def _axes(axis):
    """A list of axes as a tuple (Keras takes ``axis=[1, 2]``; NumPy's reductions want a tuple)."""
    return tuple(int(a) for a in axis) if isinstance(axis, (list, tuple)) else axis


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
    """``np.sum`` over ``axis`` (an int, a tuple, or None for all); the gradient broadcasts back.
    As in Keras, bool and integers narrower than 64 bits sum to int32 (NumPy would give int64)."""
    axis = _axes(axis)
    xv = unwrap(x)
    out = np.sum(xv, axis=axis, keepdims=keepdims, dtype=_sum_dtype(np.asarray(xv)))
    shp = np.shape(xv)
    return record(out, (x,), lambda g: (np.broadcast_to(_expand_to(g, shp, axis, keepdims), shp),))


def mean(x, axis=None, keepdims=False):
    """``np.mean`` over ``axis``, keeping a floating input's dtype (integers and bools give floatx,
    as in Keras); the gradient is ``g / n`` for the ``n`` entries averaged."""
    axis = _axes(axis)
    xv = _float_of(unwrap(x))
    out = np.mean(xv, axis=axis, keepdims=keepdims)
    if xv.dtype != out.dtype and np.issubdtype(xv.dtype, np.floating):
        out = out.astype(xv.dtype)
    shp = xv.shape
    n = builtins.max(1, int(np.prod([shp[a] for a in _norm_axis(axis, len(shp))])) if shp else 1)
    return record(out, (x,), lambda g: (np.broadcast_to(_expand_to(g, shp, axis, keepdims) / n, shp),))


def _extreme(fn, x, axis, keepdims, initial):
    axis = _axes(axis)
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
    return np.argmax(unwrap(x), axis=axis, keepdims=keepdims).astype(np.int32)


def argmin(x, axis=None, keepdims=False):
    """``np.argmin``: the index of the smallest entry (the first on ties, the first nan if any). No
    gradient."""
    return np.argmin(unwrap(x), axis=axis, keepdims=keepdims).astype(np.int32)


def logsumexp(x, axis=None, keepdims=False):
    """``log(sum(exp(x)))`` over ``axis``, shifted by the maximum so it cannot overflow; ``-inf`` for a
    slice that is all ``-inf``, ``inf`` for one holding ``inf``. Gradient ``softmax(x)``."""
    axis = _axes(axis)
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


def stack(x, axis=0):
    """``np.stack(x, axis)``: joins the same-shape arrays of the sequence ``x`` along a new axis."""
    xs = x
    vals = [unwrap(v) for v in xs]
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
    if axis is not None:
        axis = int(axis) % (len(shp) or 1)  # the vjp counts index axes from it

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


def one_hot(x, num_classes, axis=-1, dtype=None, sparse=False):
    """``eye(num_classes)[x]`` with the class axis at ``axis`` (dtype floatx by default). As in Keras,
    an index outside ``[0, num_classes)`` (e.g. -1 for "no class") gives a row of zeros. No gradient.
    ``sparse=True`` is refused: lamina's arrays are dense."""
    if sparse:
        raise ValueError("`one_hot`: sparse outputs are not supported. Received: sparse=True")
    idx = np.asarray(unwrap(x)).astype(np.int64)
    # One extra all-zero row takes every out-of-range index (NumPy indexing would wrap -1 to the last class).
    eye = np.eye(num_classes + 1, num_classes, dtype=backend.standardize_dtype(dtype))
    out = eye[np.where((idx >= 0) & (idx < num_classes), idx, num_classes)]
    if axis != -1:
        out = np.moveaxis(out, -1, axis)
    return out


def equal(x1, x2):
    """Elementwise ``x1 == x2`` as a bool array (nan equals nothing)."""
    return np.equal(unwrap(x1), unwrap(x2))


def not_equal(x1, x2):
    """Elementwise ``x1 != x2`` as a bool array (nan differs from everything)."""
    return np.not_equal(unwrap(x1), unwrap(x2))


def greater(x1, x2):
    """Elementwise ``x1 > x2`` as a bool array (False wherever a nan is involved)."""
    return np.greater(unwrap(x1), unwrap(x2))


def less(x1, x2):
    """Elementwise ``x1 < x2`` as a bool array (False wherever a nan is involved)."""
    return np.less(unwrap(x1), unwrap(x2))


def stop_gradient(variable):
    """The value of ``variable`` as a plain array: a constant the tape does not differentiate through."""
    return unwrap(variable)


# ----------------------------------------------------------------------------- dtype helpers
# Keras's rules where an op chooses the dtype: integer results default to int32, float results of
# integer or bool inputs to floatx; a floating input keeps its dtype (float64 stays float64).


def _float_of(v) -> np.ndarray:
    """``v`` as a floating array: its own dtype if floating, else floatx."""
    v = np.asarray(v)
    if np.issubdtype(v.dtype, np.floating):
        return v
    return v.astype(backend.floatx())


def _check_int(op: str, name: str, value) -> int:
    """``value`` as an int, else a ValueError that names the op and argument."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"`{op}`: argument `{name}` must be an integer. Received: {name}={value!r}")
    return int(value)


def _check_axis(op: str, axis, ndim: int) -> int:
    """An int axis in ``[-ndim, ndim)`` made non-negative, else a ValueError naming the op."""
    axis = _check_int(op, "axis", axis)
    if not -builtins.max(ndim, 1) <= axis < builtins.max(ndim, 1):
        raise ValueError(f"`{op}`: axis {axis} is out of bounds for an input of rank {ndim}. Received: axis={axis}")
    return axis % builtins.max(ndim, 1)


def _selection(x, fn):
    """Record ``fn(x)`` for an ``fn`` that only moves, copies or drops entries (flip, roll, tile,
    sort, take_along_axis, ...). Its gradient is found by applying ``fn`` to the entries' flat
    indices and summing ``g`` back onto the index each output entry came from."""
    xv = np.asarray(unwrap(x))
    out = fn(xv)

    def vjp(g):
        g = np.asarray(g)
        idx = fn(np.arange(xv.size).reshape(xv.shape))
        grad = np.bincount(np.ravel(idx), weights=np.broadcast_to(g, np.shape(idx)).ravel(), minlength=xv.size)
        return (grad.reshape(xv.shape).astype(g.dtype, copy=False),)

    return record(out, (x,), vjp)


# ----------------------------------------------------------------------------- creation


def array(x, dtype=None):
    """A new array holding ``x`` (a copy). Without ``dtype``, as Keras: Python floats become floatx
    and Python ints int32 (int64 if a value does not fit); arrays keep their dtype."""
    if dtype is not None:
        return np.array(unwrap(x), dtype=backend.standardize_dtype(dtype))
    if isinstance(x, (np.ndarray, Tensor, Variable, np.generic)):
        return np.array(unwrap(x))
    return _python_data(np.array(x))


def full(shape, fill_value, dtype=None):
    """An array of ``shape`` filled with ``fill_value``, dtype floatx by default."""
    return np.full(shape, unwrap(fill_value), dtype=backend.standardize_dtype(dtype))


def full_like(x, fill_value, dtype=None):
    """``x``'s shape filled with ``fill_value``, in ``x``'s dtype unless ``dtype`` is given (so an
    int ``x`` truncates a float fill, as in NumPy and Keras)."""
    dt = None if dtype is None else backend.standardize_dtype(dtype)
    return np.full_like(np.asarray(unwrap(x)), unwrap(fill_value), dtype=dt)


def zeros(shape, dtype=None):
    """``np.zeros(shape)``, dtype floatx by default."""
    return np.zeros(shape, dtype=backend.standardize_dtype(dtype))


def ones(shape, dtype=None):
    """``np.ones(shape)``, dtype floatx by default."""
    return np.ones(shape, dtype=backend.standardize_dtype(dtype))


def zeros_like(x, dtype=None):
    """``np.zeros_like(x)``: ``x``'s shape, and its dtype unless ``dtype`` is given."""
    return full_like(x, 0, dtype)


def ones_like(x, dtype=None):
    """``np.ones_like(x)``: ``x``'s shape, and its dtype unless ``dtype`` is given."""
    return full_like(x, 1, dtype)


def empty(shape, dtype=None):
    """An array of ``shape`` (floatx by default). Its entries are zeros here, never stale memory."""
    return zeros(shape, dtype)


def empty_like(x, dtype=None):
    """``x``'s shape and dtype (or ``dtype``), filled with zeros."""
    return zeros_like(x, dtype)


def eye(N, M=None, k=0, dtype=None):
    """A 2-D array with ones on the ``k``-th diagonal (``N`` rows, ``M`` columns, ``M = N`` when None),
    dtype floatx by default."""
    N = _check_int("eye", "N", N)
    M = N if M is None else _check_int("eye", "M", M)
    return np.eye(N, M, k=_check_int("eye", "k", k), dtype=backend.standardize_dtype(dtype))


def identity(n, dtype=None):
    """The ``n x n`` identity matrix, dtype floatx by default."""
    return eye(n, dtype=dtype)


def tri(N, M=None, k=0, dtype=None):
    """Ones at and below the ``k``-th diagonal, zeros above (``np.tri``), dtype floatx by default."""
    N = _check_int("tri", "N", N)
    M = N if M is None else _check_int("tri", "M", M)
    return np.tri(N, M, k=_check_int("tri", "k", k), dtype=backend.standardize_dtype(dtype))


def arange(start, stop=None, step=None, dtype=None):
    """``np.arange(start, stop, step)``. Without ``dtype``, as Keras: int32 when every argument is an
    int, floatx when any is a float."""
    if step is None:
        step = 1
    if dtype is None:
        args = [unwrap(a) for a in (start, stop, step) if a is not None]
        is_float = builtins.any(np.issubdtype(np.asarray(a).dtype, np.floating) for a in args)
        dtype = backend.floatx() if is_float else "int32"
    if stop is None:
        start, stop = 0, start
    if step == 0:
        raise ValueError(f"`arange`: argument `step` must be nonzero. Received: step={step}")
    return np.arange(unwrap(start), unwrap(stop), unwrap(step), dtype=backend.standardize_dtype(dtype))


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    """``num`` evenly spaced values from ``start`` to ``stop`` (included when ``endpoint``), dtype
    floatx by default; an integer ``dtype`` floors the values. ``retstep=True`` also returns the
    step. Array ``start``/``stop`` give one sequence per entry, along ``axis``."""
    num = _check_int("linspace", "num", num)
    if num < 0:
        raise ValueError(f"`linspace`: argument `num` must be non-negative. Received: num={num}")
    out, step = np.linspace(unwrap(start), unwrap(stop), num, endpoint=endpoint, retstep=True, axis=axis)
    dt = backend.standardize_dtype(dtype)
    out = (np.floor(out) if np.issubdtype(np.dtype(dt), np.integer) else out).astype(dt)
    return (out, step) if retstep else out


def logspace(start, stop, num=50, endpoint=True, base=10, dtype=None, axis=0):
    """``base ** linspace(start, stop, num)``, dtype floatx by default."""
    exps = linspace(start, stop, num, endpoint=endpoint, dtype="float64", axis=axis)
    return np.power(base, exps).astype(backend.standardize_dtype(dtype))


def geomspace(start, stop, num=50, endpoint=True, dtype=None, axis=0):
    """``num`` values from ``start`` to ``stop`` in geometric progression (``np.geomspace``), dtype
    floatx by default."""
    num = _check_int("geomspace", "num", num)
    out = np.geomspace(unwrap(start), unwrap(stop), num, endpoint=endpoint, axis=axis)
    return out.astype(backend.standardize_dtype(dtype))


def meshgrid(*x, indexing="xy"):
    """Coordinate arrays from 1-D coordinate vectors (``np.meshgrid``; ``indexing`` ``"xy"`` or
    ``"ij"``). No gradient."""
    if indexing not in ("xy", "ij"):
        raise ValueError(f"`meshgrid`: argument `indexing` must be 'xy' or 'ij'. Received: indexing={indexing!r}")
    return list(np.meshgrid(*[unwrap(v) for v in x], indexing=indexing))


def copy(x):
    """A copy of ``x``; the gradient passes through."""
    return record(np.array(unwrap(x)), (x,), lambda g: (g,))


# ----------------------------------------------------------------------------- shape queries


def ndim(x) -> int:
    """The number of axes of ``x`` (0 for a number)."""
    return np.ndim(unwrap(x))


def size(x):
    """The number of entries of ``x``, as an int64 scalar array (Keras returns a tensor)."""
    return np.asarray(np.size(unwrap(x)), dtype=np.int64)


# ----------------------------------------------------------------------------- rearranging


def ravel(x):
    """``x`` flattened to 1-D (row-major)."""
    return reshape(x, (-1,))


def swapaxes(x, axis1, axis2):
    """``np.swapaxes(x, axis1, axis2)``; its own inverse, so the gradient swaps back."""
    return record(np.swapaxes(unwrap(x), axis1, axis2), (x,), lambda g: (np.swapaxes(g, axis1, axis2),))


def moveaxis(x, source, destination):
    """``np.moveaxis(x, source, destination)`` (ints or sequences of ints); the gradient moves back."""
    out = np.moveaxis(unwrap(x), source, destination)
    return record(out, (x,), lambda g: (np.moveaxis(g, destination, source),))


def flip(x, axis=None):
    """``x`` with the order of entries reversed along ``axis`` (all axes when None)."""
    return record(np.flip(unwrap(x), axis), (x,), lambda g: (np.flip(g, axis),))


def fliplr(x):
    """``flip(x, axis=1)``; ``x`` must have at least 2 axes."""
    if ndim(x) < 2:
        raise ValueError(f"`fliplr`: the input must have at least 2 axes. Received: x.shape={shape(x)}")
    return flip(x, 1)


def flipud(x):
    """``flip(x, axis=0)``; ``x`` must have at least 1 axis."""
    if ndim(x) < 1:
        raise ValueError(f"`flipud`: the input must have at least 1 axis. Received: x.shape={shape(x)}")
    return flip(x, 0)


def roll(x, shift, axis=None):
    """Entries shifted by ``shift`` along ``axis`` (over the flattened input when None), wrapping
    around; the gradient rolls back by ``-shift``."""
    shift = unwrap(shift)
    out = np.roll(unwrap(x), shift, axis)
    return record(out, (x,), lambda g: (np.roll(g, np.negative(shift), axis),))


def rot90(array, k=1, axes=(0, 1)):
    """``array`` rotated by ``k`` quarter turns in the plane of ``axes`` (``np.rot90``)."""
    if ndim(array) < 2:
        raise ValueError(f"`rot90`: the input must have at least 2 axes. Received: array.shape={shape(array)}")
    out = np.rot90(unwrap(array), k, axes)
    return record(out, (array,), lambda g: (np.rot90(g, -k, axes),))


def tile(x, repeats):
    """``x`` repeated ``repeats[i]`` times along axis ``i`` (``np.tile``); each copy's gradient is
    summed back."""
    reps = np.atleast_1d(unwrap(repeats)).tolist()
    return _selection(x, lambda v: np.tile(v, reps))


def repeat(x, repeats, axis=None):
    """Each entry repeated ``repeats`` times along ``axis`` (over the flattened input when None);
    ``repeats`` may give a count per entry."""
    reps = unwrap(repeats)
    return _selection(x, lambda v: np.repeat(v, reps, axis=axis))


def _split_points(op, n, indices_or_sections, even):
    """The start offsets of the pieces of an axis of length ``n``."""
    if isinstance(indices_or_sections, (int, np.integer)):
        sections = int(indices_or_sections)
        if sections <= 0:
            raise ValueError(f"`{op}`: the number of sections must be positive. "
                             f"Received: indices_or_sections={sections}")
        if even and n % sections:
            raise ValueError(f"`{op}`: an axis of length {n} does not split into {sections} equal sections. "
                             f"Received: indices_or_sections={sections}")
        size_, extra = divmod(n, sections)
        bounds = np.cumsum([0] + [size_ + 1] * extra + [size_] * (sections - extra))
        return bounds.tolist()
    return [0] + [int(i) for i in indices_or_sections] + [n]


def _split(op, x, indices_or_sections, axis, even):
    nd = ndim(x)
    axis = _check_axis(op, axis, nd)
    n = shape(x)[axis]
    bounds = _split_points(op, n, indices_or_sections, even)
    lead = (builtins.slice(None),) * axis
    return [getitem(x, lead + (builtins.slice(a, b),)) for a, b in zip(bounds[:-1], bounds[1:])]


def split(x, indices_or_sections, axis=0):
    """``x`` cut along ``axis`` into ``indices_or_sections`` equal pieces (an int) or at the given
    indices (a list); a list of arrays, each differentiable."""
    return _split("split", x, indices_or_sections, axis, even=True)


def array_split(x, indices_or_sections, axis=0):
    """As :func:`split`, but an int need not divide the axis: the first pieces get one extra entry."""
    return _split("array_split", x, indices_or_sections, axis, even=False)


def hsplit(x, indices_or_sections):
    """:func:`split` along axis 1 (axis 0 for a 1-D input)."""
    return split(x, indices_or_sections, axis=0 if ndim(x) == 1 else 1)


def vsplit(x, indices_or_sections):
    """:func:`split` along axis 0 (the input needs at least 2 axes)."""
    if ndim(x) < 2:
        raise ValueError(f"`vsplit`: the input must have at least 2 axes. Received: x.shape={shape(x)}")
    return split(x, indices_or_sections, axis=0)


def dsplit(x, indices_or_sections):
    """:func:`split` along axis 2 (the input needs at least 3 axes)."""
    if ndim(x) < 3:
        raise ValueError(f"`dsplit`: the input must have at least 3 axes. Received: x.shape={shape(x)}")
    return split(x, indices_or_sections, axis=2)


def unstack(x, num=None, axis=0):
    """The slices of ``x`` along ``axis``, as a list (``num``, when given, must equal that length)."""
    nd = ndim(x)
    axis = _check_axis("unstack", axis, nd)
    n = shape(x)[axis]
    if num is not None and num != n:
        raise ValueError(f"`unstack`: axis {axis} has length {n}, not num={num}. Received: num={num}")
    lead = (builtins.slice(None),) * axis
    return [getitem(x, lead + (i,)) for i in range(n)]


def _atleast_2d(x):
    s = shape(x)
    return reshape(x, (1,) * (2 - len(s)) + s) if len(s) < 2 else x


def _atleast_3d(x):
    s = shape(x)
    if len(s) == 0:
        return reshape(x, (1, 1, 1))
    if len(s) == 1:
        return reshape(x, (1, s[0], 1))
    if len(s) == 2:
        return reshape(x, s + (1,))
    return x


def hstack(xs):
    """Joins arrays along axis 1 (axis 0 for 1-D ones), as ``np.hstack``."""
    xs = list(xs)
    return concatenate(xs, axis=0 if builtins.all(ndim(x) <= 1 for x in xs) else 1) if xs else np.hstack(())


def vstack(xs):
    """Joins arrays along axis 0, 1-D ones as rows (``np.vstack``)."""
    return concatenate([_atleast_2d(x) for x in xs], axis=0)


def dstack(xs):
    """Joins arrays along axis 2, lower-rank ones made 3-D first (``np.dstack``)."""
    return concatenate([_atleast_3d(x) for x in xs], axis=2)


def append(x1, x2, axis=None):
    """``x2`` appended to ``x1`` along ``axis`` (both flattened when None)."""
    if axis is None:
        return concatenate([ravel(x1), ravel(x2)], axis=0)
    return concatenate([x1, x2], axis=axis)


_PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")


def pad(x, pad_width, mode="constant", constant_values=None):
    """``np.pad``: ``pad_width`` is ``((before, after), ...)`` per axis (or one pair or number for
    all). Modes ``constant`` (``constant_values``, default 0), ``edge``, ``reflect``, ``symmetric``,
    ``wrap``; the gradient of a copied entry goes back to its source."""
    if mode not in _PAD_MODES:
        raise ValueError(f"`pad`: argument `mode` must be one of {_PAD_MODES}. Received: mode={mode!r}")
    if mode != "constant":
        if constant_values is not None:
            raise ValueError(f"`pad`: argument `constant_values` only applies to mode 'constant'. "
                             f"Received: mode={mode!r}, constant_values={constant_values!r}")
        return _selection(x, lambda v: np.pad(v, pad_width, mode=mode))
    xv = np.asarray(unwrap(x))
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (xv.ndim, 2))
    if np.any(widths < 0):
        raise ValueError(f"`pad`: pad widths must be non-negative. Received: pad_width={pad_width}")
    out = np.pad(xv, widths, mode="constant", constant_values=0 if constant_values is None else constant_values)
    inner = tuple(builtins.slice(int(b), int(b) + n) for (b, _), n in zip(widths, xv.shape))
    return record(out, (x,), lambda g: (g[inner],))


def tril(x, k=0):
    """``x`` with the entries above the ``k``-th diagonal of its last two axes set to 0."""
    xv = unwrap(x)
    return record(np.tril(xv, k), (x,), lambda g: (np.tril(g, k),))


def triu(x, k=0):
    """``x`` with the entries below the ``k``-th diagonal of its last two axes set to 0."""
    xv = unwrap(x)
    return record(np.triu(xv, k), (x,), lambda g: (np.triu(g, k),))


def diagonal(x, offset=0, axis1=0, axis2=1):
    """The ``offset``-th diagonal of the planes ``(axis1, axis2)``, moved to the last axis."""
    if ndim(x) < 2:
        raise ValueError(f"`diagonal`: the input must have at least 2 axes. Received: x.shape={shape(x)}")
    return _selection(x, lambda v: np.diagonal(v, offset, axis1, axis2).copy())


def diag(x, k=0):
    """A 1-D ``x`` placed on the ``k``-th diagonal of a square matrix, or the ``k``-th diagonal of a
    2-D ``x`` (``np.diag``)."""
    nd = ndim(x)
    if nd == 2:
        return diagonal(x, k)
    if nd != 1:
        raise ValueError(f"`diag`: the input must be 1-D or 2-D. Received: x.shape={shape(x)}")
    return record(np.diag(unwrap(x), k), (x,), lambda g: (np.diagonal(g, k).copy(),))


def diagflat(x, k=0):
    """The flattened ``x`` placed on the ``k``-th diagonal of a square matrix."""
    return diag(ravel(x), k)


def trace(x, offset=0, axis1=0, axis2=1):
    """The sum of the ``offset``-th diagonal over the planes ``(axis1, axis2)``."""
    return sum(diagonal(x, offset, axis1, axis2), axis=-1)


def take_along_axis(x, indices, axis=None):
    """``np.take_along_axis``: ``x``'s entries at ``indices`` along ``axis`` (the flattened ``x`` when
    None); ``indices`` broadcasts against ``x`` on the other axes, negative ones count from the end."""
    idx = np.asarray(unwrap(indices))
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"`take_along_axis`: argument `indices` must be integers. Received: dtype={idx.dtype}")
    if axis is None:
        return _selection(x, lambda v: np.take_along_axis(v.reshape(-1), idx.reshape(-1), 0))
    xs = shape(x)
    axis = _check_axis("take_along_axis", axis, len(xs))
    bshape = list(np.broadcast_shapes(xs[:axis] + (1,) + xs[axis + 1:], idx.shape[:axis] + (1,) + idx.shape[axis + 1:]))
    bshape_x, bshape_i = list(bshape), list(bshape)
    bshape_x[axis], bshape_i[axis] = xs[axis], idx.shape[axis]
    idx = np.broadcast_to(idx, bshape_i)
    xb = broadcast_to(x, tuple(bshape_x)) if tuple(bshape_x) != xs else x
    return _selection(xb, lambda v: np.take_along_axis(v, idx, axis))


# ----------------------------------------------------------------------------- more reductions


def var(x, axis=None, keepdims=False):
    """The population variance ``mean((x - mean(x))^2)`` over ``axis`` (no Bessel correction, as in
    NumPy and Keras); integer inputs give floatx. Gradient ``2 (x - mean) / n``."""
    axis = _axes(axis)
    xv = _float_of(unwrap(x))
    mu = np.mean(xv, axis=axis, keepdims=True)
    d = xv - mu
    out = np.mean(d * d, axis=axis, keepdims=keepdims).astype(xv.dtype, copy=False)
    shp = xv.shape
    n = builtins.max(1, int(np.prod([shp[a] for a in _norm_axis(axis, len(shp))])) if shp else 1)
    return record(out, (x,), lambda g: (_expand_to(g, shp, axis, keepdims) * (2 * d / n),))


def std(x, axis=None, keepdims=False):
    """``sqrt(var(x))`` over ``axis``; integer inputs give floatx. Gradient ``(x - mean) / (n std)``,
    taken as 0 where ``std = 0`` (a kink: every direction raises it)."""
    axis = _axes(axis)
    xv = _float_of(unwrap(x))
    mu = np.mean(xv, axis=axis, keepdims=True)
    d = xv - mu
    out_k = np.sqrt(np.mean(d * d, axis=axis, keepdims=True)).astype(xv.dtype, copy=False)
    out = out_k if keepdims else np.squeeze(out_k, axis=axis)
    shp = xv.shape
    n = builtins.max(1, int(np.prod([shp[a] for a in _norm_axis(axis, len(shp))])) if shp else 1)

    def vjp(g):
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(out_k > 0, d / (n * out_k), 0)
        return (_expand_to(g, shp, axis, keepdims) * scale,)

    return record(out, (x,), vjp)


def _sum_dtype(v):
    """Keras's accumulator dtype: bool and ints narrower than 64 bits sum in int32 (uint32 for
    unsigned), other dtypes in their own."""
    if v.dtype == np.bool_ or (np.issubdtype(v.dtype, np.signedinteger) and v.dtype.itemsize <= 4):
        return np.dtype("int32")
    if np.issubdtype(v.dtype, np.unsignedinteger) and v.dtype.itemsize <= 4:
        return np.dtype("uint32")
    return v.dtype


def prod(x, axis=None, keepdims=False, dtype=None):
    """The product of entries over ``axis``. Gradient: the product of the *other* entries, computed
    from prefix and suffix products, so it is exact where an entry is 0."""
    axis = _axes(axis)
    xv = np.asarray(unwrap(x))
    dt = _sum_dtype(xv) if dtype is None else np.dtype(backend.standardize_dtype(dtype))
    xv = xv.astype(dt, copy=False)
    out = np.prod(xv, axis=axis, keepdims=keepdims, dtype=dt)
    shp = xv.shape

    def vjp(g):
        axes = _norm_axis(axis, len(shp))
        rest = [a for a in range(len(shp)) if a not in axes]
        moved = np.transpose(xv, rest + list(axes))
        flat = moved.reshape(moved.shape[:len(rest)] + (-1,))
        ones_ = np.ones(flat.shape[:-1] + (1,), dtype=flat.dtype)
        before = np.cumprod(np.concatenate([ones_, flat[..., :-1]], axis=-1), axis=-1)
        after = np.flip(np.cumprod(np.concatenate([ones_, np.flip(flat, -1)[..., :-1]], axis=-1), axis=-1), -1)
        others = np.transpose((before * after).reshape(moved.shape), np.argsort(rest + list(axes)))
        return (_expand_to(g, shp, axis, keepdims) * others,)

    return record(out, (x,), vjp)


def _scan_axis(x, axis):
    """``(xv, axis)`` with the input flattened when ``axis`` is None (Keras's cumsum/cumprod)."""
    xv = np.asarray(unwrap(x))
    if axis is None:
        return xv.reshape(-1), 0
    return xv, _check_axis("cumsum", axis, xv.ndim)


def cumsum(x, axis=None, dtype=None):
    """Running sums along ``axis`` (over the flattened input when None); bool and narrow ints sum in
    int32. Gradient: the reversed running sum of ``g``."""
    xv, ax = _scan_axis(x, axis)
    dt = _sum_dtype(xv) if dtype is None else np.dtype(backend.standardize_dtype(dtype))
    out = np.cumsum(xv, axis=ax, dtype=dt)
    shp = np.shape(unwrap(x))
    return record(out, (x,), lambda g: (np.flip(np.cumsum(np.flip(g, ax), axis=ax), ax).reshape(shp),))


def cumprod(x, axis=None, dtype=None):
    """Running products along ``axis`` (over the flattened input when None). The gradient runs a
    reverse scan ``s_i = g_i + x_{i+1} s_{i+1}`` times the product before ``i``, so it needs no
    division and is exact where an entry is 0."""
    xv, ax = _scan_axis(x, axis)
    dt = _sum_dtype(xv) if dtype is None else np.dtype(backend.standardize_dtype(dtype))
    xv = xv.astype(dt, copy=False)
    out = np.cumprod(xv, axis=ax, dtype=dt)
    shp = np.shape(unwrap(x))

    def vjp(g):
        xm, gm = np.moveaxis(xv, ax, 0), np.moveaxis(np.broadcast_to(g, out.shape), ax, 0)
        s = np.zeros_like(gm, dtype=np.result_type(gm, xm))
        if len(xm):
            s[-1] = gm[-1]
        for i in range(len(xm) - 2, -1, -1):
            s[i] = gm[i] + xm[i + 1] * s[i + 1]
        before = np.cumprod(np.concatenate([np.ones_like(xm[:1]), xm[:-1]]), axis=0)
        return (np.moveaxis(before * s, 0, ax).reshape(shp),)

    return record(out, (x,), vjp)


def any(x, axis=None, keepdims=False):
    """Whether any entry over ``axis`` is nonzero (bool). No gradient."""
    axis = _axes(axis)
    return np.any(unwrap(x), axis=axis, keepdims=keepdims)


def all(x, axis=None, keepdims=False):
    """Whether every entry over ``axis`` is nonzero (bool). No gradient."""
    axis = _axes(axis)
    return np.all(unwrap(x), axis=axis, keepdims=keepdims)


def count_nonzero(x, axis=None):
    """The number of nonzero entries over ``axis``, as int32. No gradient."""
    axis = _axes(axis)
    return np.asarray(np.count_nonzero(unwrap(x), axis=axis), dtype=np.int32)


def average(x, axis=None, weights=None):
    """The mean of ``x`` over ``axis``, weighted by ``weights`` (the shape of ``x``, or 1-D along a
    single ``axis``): ``sum(w x) / sum(w)``. Integer inputs give floatx."""
    x = x if np.issubdtype(np.asarray(unwrap(x)).dtype, np.floating) else _float_of(unwrap(x))
    if weights is None:
        return mean(x, axis=axis)
    w = weights if np.issubdtype(np.asarray(unwrap(weights)).dtype, np.floating) else _float_of(unwrap(weights))
    if ndim(w) == 1 and ndim(x) > 1:
        if not isinstance(axis, (int, np.integer)):
            raise ValueError(f"`average`: 1-D weights need a single int axis. Received: axis={axis}")
        ax = _check_axis("average", axis, ndim(x))
        w = reshape(w, tuple(shape(w)[0] if i == ax else 1 for i in range(ndim(x))))
    return divide(sum(multiply(x, w), axis=axis), sum(multiply(ones_like(x), w), axis=axis))


def ptp(x, axis=None, keepdims=False):
    """``max(x) - min(x)`` over ``axis`` (peak to peak)."""
    return subtract(max(x, axis=axis, keepdims=keepdims), min(x, axis=axis, keepdims=keepdims))


def _quantile_weights(q, n, method):
    """For each quantile ``q``, the two sorted positions it falls between and their weights."""
    pos = np.asarray(q, dtype=np.float64) * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = pos - lo
    if method == "lower":
        frac = np.zeros_like(frac)
    elif method == "higher":
        lo, frac = np.ceil(pos).astype(np.int64), np.zeros_like(frac)
    elif method == "nearest":
        near = np.where(frac > 0.5, hi, np.where(frac < 0.5, lo, np.where(lo % 2 == 0, lo, hi)))
        lo, frac = near, np.zeros_like(frac)
    elif method == "midpoint":
        frac = np.where(frac > 0, 0.5, 0.0)
    return lo, hi, frac


_QUANTILE_METHODS = ("linear", "lower", "higher", "midpoint", "nearest")


def quantile(x, q, axis=None, method="linear", keepdims=False):
    """The ``q``-th quantiles (``q`` in [0, 1], a number or 1-D) of ``x`` over ``axis``, as
    ``np.quantile``; a 1-D ``q`` adds a leading axis. The gradient goes to the one or two sorted
    entries each quantile interpolates between. Integer inputs give floatx."""
    if method not in _QUANTILE_METHODS:
        raise ValueError(f"`quantile`: argument `method` must be one of {_QUANTILE_METHODS}. "
                         f"Received: method={method!r}")
    qv = np.asarray(unwrap(q), dtype=np.float64)
    if np.any((qv < 0) | (qv > 1)):
        raise ValueError(f"`quantile`: argument `q` must lie in [0, 1]. Received: q={qv.tolist()}")
    x = x if np.issubdtype(np.asarray(unwrap(x)).dtype, np.floating) else _float_of(unwrap(x))
    nd = ndim(x)
    axes = _norm_axis(axis, nd)
    rest = [a for a in range(nd) if a not in axes]
    moved = transpose(x, rest + list(axes)) if nd else x
    flat = reshape(moved, tuple(shape(x)[a] for a in rest) + (-1,))
    srt = sort(flat, axis=-1)
    n = shape(flat)[-1]
    lo, hi, frac = _quantile_weights(qv.reshape(-1), n, method)
    dt = np.asarray(unwrap(srt)).dtype
    last = ndim(srt) - 1
    lo_v, hi_v = take(srt, lo, axis=last), take(srt, hi, axis=last)
    out = add(multiply(lo_v, (1 - frac).astype(dt)), multiply(hi_v, frac.astype(dt)))  # q along the last axis
    if keepdims:
        kshape = tuple(1 if a in axes else shape(x)[a] for a in range(nd))
        out = reshape(moveaxis(out, -1, 0), (len(lo),) + kshape)
    else:
        out = moveaxis(out, -1, 0)
    return reshape(out, shape(out)[1:]) if qv.ndim == 0 else out


def percentile(x, q, axis=None, method="linear", keepdims=False):
    """:func:`quantile` with ``q`` in percent ([0, 100])."""
    return quantile(x, np.divide(unwrap(q), 100.0), axis=axis, method=method, keepdims=keepdims)


def median(x, axis=None, keepdims=False):
    """The median over ``axis`` (the mean of the two middle entries for an even count)."""
    return quantile(x, 0.5, axis=axis, keepdims=keepdims)


# ----------------------------------------------------------------------------- elementwise math
# Integer and bool inputs of float-valued functions compute in floatx, as in Keras.


def _unary_float(x, fn, dfn):
    """Record ``fn(x)`` computed in floating point; ``dfn(xv, out)`` is the derivative."""
    xv = _float_of(unwrap(x))
    out = fn(xv)
    return record(out, (x,), lambda g: (g * dfn(xv, out),))


def reciprocal(x):
    """``1 / x``; derivative ``-1 / x^2``."""
    return _unary_float(x, np.reciprocal, lambda v, o: -(o * o))


def rsqrt(x):
    """``1 / sqrt(x)``; derivative ``-x^(-3/2) / 2``."""
    return _unary_float(x, lambda v: 1 / np.sqrt(v), lambda v, o: -0.5 * o / v)


def cbrt(x):
    """The real cube root (negative for negative x); derivative ``1 / (3 cbrt(x)^2)``, inf at 0."""
    return _unary_float(x, np.cbrt, lambda v, o: 1 / (3 * o * o))


def log2(x):
    """Base-2 logarithm; derivative ``1 / (x ln 2)``."""
    return _unary_float(x, np.log2, lambda v, o: 1 / (v * np.log(2)))


def log10(x):
    """Base-10 logarithm; derivative ``1 / (x ln 10)``."""
    return _unary_float(x, np.log10, lambda v, o: 1 / (v * np.log(10)))


def exp2(x):
    """``2 ** x``; derivative ``2^x ln 2``."""
    return _unary_float(x, np.exp2, lambda v, o: o * np.log(2))


def tan(x):
    """``np.tan(x)`` (radians); derivative ``1 + tan(x)^2``."""
    return _unary_float(x, np.tan, lambda v, o: 1 + o * o)


def sinh(x):
    """Hyperbolic sine; derivative ``cosh(x)``."""
    return _unary_float(x, np.sinh, lambda v, o: np.cosh(v))


def cosh(x):
    """Hyperbolic cosine; derivative ``sinh(x)``."""
    return _unary_float(x, np.cosh, lambda v, o: np.sinh(v))


def arcsin(x):
    """Inverse sine on [-1, 1] (nan outside); derivative ``1 / sqrt(1 - x^2)``, inf at +-1."""
    return _unary_float(x, np.arcsin, lambda v, o: 1 / np.sqrt(1 - v * v))


def arccos(x):
    """Inverse cosine on [-1, 1] (nan outside); derivative ``-1 / sqrt(1 - x^2)``."""
    return _unary_float(x, np.arccos, lambda v, o: -1 / np.sqrt(1 - v * v))


def arctan(x):
    """Inverse tangent; derivative ``1 / (1 + x^2)``."""
    return _unary_float(x, np.arctan, lambda v, o: 1 / (1 + v * v))


def arcsinh(x):
    """Inverse hyperbolic sine; derivative ``1 / sqrt(x^2 + 1)``."""
    return _unary_float(x, np.arcsinh, lambda v, o: 1 / np.sqrt(v * v + 1))


def arccosh(x):
    """Inverse hyperbolic cosine for x >= 1 (nan below); derivative ``1 / sqrt(x^2 - 1)``."""
    return _unary_float(x, np.arccosh, lambda v, o: 1 / np.sqrt(v * v - 1))


def arctanh(x):
    """Inverse hyperbolic tangent on (-1, 1); derivative ``1 / (1 - x^2)``."""
    return _unary_float(x, np.arctanh, lambda v, o: 1 / (1 - v * v))


def deg2rad(x):
    """Degrees to radians: ``x * pi / 180``."""
    return _unary_float(x, np.deg2rad, lambda v, o: np.pi / 180)


def rad2deg(x):
    """Radians to degrees: ``x * 180 / pi``."""
    return _unary_float(x, np.rad2deg, lambda v, o: 180 / np.pi)


def sinc(x):
    """The normalized sinc ``sin(pi x) / (pi x)`` (1 at 0); derivative ``(cos(pi x) - sinc(x)) / x``,
    0 at x = 0."""
    def d(v, o):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(v == 0, 0, (np.cos(np.pi * v) - o) / np.where(v == 0, 1, v))
    return _unary_float(x, np.sinc, d)


def erfc(x):
    """The complementary error function ``1 - erf(x)``, accurate in the right tail where
    ``1 - erf`` would cancel. Derivative ``-2/sqrt(pi) exp(-x^2)``."""
    xv = _float_of(unwrap(x))
    x64 = xv.astype(np.float64)
    out = special.erfc(x64).astype(xv.dtype)

    def vjp(g):
        with np.errstate(over="ignore", under="ignore"):
            return (g * (-special.TWO_OVER_SQRT_PI * np.exp(-(x64 * x64))).astype(xv.dtype),)

    return record(out, (x,), vjp)


def fabs(x):
    """``|x|`` as a float (integer inputs give floatx); ``fabs'(0) = 0``."""
    if np.issubdtype(np.asarray(unwrap(x)).dtype, np.floating):
        return abs(x)
    return np.abs(_float_of(unwrap(x)))


def _constant_unary(fn, x, keep_int=True):
    """A piecewise-constant function: no gradient (as :func:`sign`)."""
    xv = np.asarray(unwrap(x))
    if not keep_int:
        xv = _float_of(xv)
    return fn(xv)


def floor(x):
    """The largest integer <= x, as a float (integer inputs give floatx). Piecewise constant: no
    gradient."""
    return _constant_unary(np.floor, x, keep_int=False)


def ceil(x):
    """The smallest integer >= x, as a float (integer inputs give floatx). No gradient."""
    return _constant_unary(np.ceil, x, keep_int=False)


def trunc(x):
    """``x`` rounded toward 0; integer inputs are returned unchanged. No gradient."""
    return _constant_unary(np.trunc, x)


def round(x, decimals=0):
    """``x`` rounded to ``decimals`` places, halves to even (``np.round``); integer inputs keep their
    dtype. No gradient."""
    decimals = _check_int("round", "decimals", decimals)
    return _constant_unary(lambda v: np.round(v, decimals), x)


def nan_to_num(x, nan=0.0, posinf=None, neginf=None):
    """``nan`` replaced by ``nan``, infinities by ``posinf``/``neginf`` (the dtype's extremes when
    None); the gradient passes where the entry was finite, else 0."""
    xv = np.asarray(unwrap(x))
    out = np.nan_to_num(xv, nan=nan, posinf=posinf, neginf=neginf)
    return record(out, (x,), lambda g: (np.where(np.isfinite(xv), g, 0),))


# ----------------------------------------------------------------------------- binary math


def _binary_float(a, b):
    """Both operands as floating arrays (integers in floatx)."""
    return _float_of(unwrap(a)), _float_of(unwrap(b))


def mod(x1, x2):
    """``x1 mod x2`` with the sign of ``x2`` (``np.mod``); integers stay integers. Gradients 1 and
    ``-floor(x1 / x2)`` (the jumps have none)."""
    av, bv = unwrap(x1), unwrap(x2)
    out = np.mod(av, bv)
    return record(out, (x1, x2), lambda g: (g, -g * np.floor_divide(av, bv)))


def fmod(x1, x2):
    """The C remainder with the sign of ``x1`` (``np.fmod``); gradients 1 and ``-trunc(x1 / x2)``."""
    av, bv = unwrap(x1), unwrap(x2)
    out = np.fmod(av, bv)
    return record(out, (x1, x2), lambda g: (g, -g * np.trunc(np.true_divide(av, bv))))


def floor_divide(x1, x2):
    """``floor(x1 / x2)`` (``np.floor_divide``); integers stay integers. No gradient."""
    return np.floor_divide(unwrap(x1), unwrap(x2))


def divide_no_nan(x1, x2):
    """``x1 / x2``, and 0 where ``x2 == 0`` (value and gradients). Integer inputs give floatx."""
    av, bv = _binary_float(x1, x2)
    zero = bv == 0
    safe = np.where(zero, 1, bv)
    out = np.where(zero, 0, av / safe)
    return record(out, (x1, x2), lambda g: (np.where(zero, 0, g / safe), np.where(zero, 0, -g * out / safe)))


def arctan2(x1, x2):
    """The angle of the point ``(x2, x1)`` in (-pi, pi]; gradients ``x2 / r^2`` and ``-x1 / r^2``
    (0 at the origin)."""
    av, bv = _binary_float(x1, x2)
    out = np.arctan2(av, bv)

    def vjp(g):
        r2 = av * av + bv * bv
        safe = np.where(r2 == 0, 1, r2)
        return np.where(r2 == 0, 0, g * bv / safe), np.where(r2 == 0, 0, -g * av / safe)

    return record(out, (x1, x2), vjp)


def hypot(x1, x2):
    """``sqrt(x1^2 + x2^2)`` without overflow; gradients ``x1 / h``, ``x2 / h`` (0 at the origin)."""
    av, bv = _binary_float(x1, x2)
    out = np.hypot(av, bv)
    safe = np.where(out == 0, 1, out)
    return record(out, (x1, x2), lambda g: (g * av / safe, g * bv / safe))


def logaddexp(x1, x2):
    """``log(exp(x1) + exp(x2))`` without overflow; gradients ``sigmoid(x1 - x2)`` and
    ``sigmoid(x2 - x1)``."""
    av, bv = _binary_float(x1, x2)
    out = np.logaddexp(av, bv)

    def vjp(g):
        with np.errstate(invalid="ignore", over="ignore"):
            wa = np.exp(av - out)
            wb = np.exp(bv - out)
        return g * wa, g * wb

    return record(out, (x1, x2), vjp)


def logaddexp2(x1, x2):
    """``log2(2^x1 + 2^x2)`` without overflow; gradients ``2^(x1 - out)`` and ``2^(x2 - out)``."""
    av, bv = _binary_float(x1, x2)
    out = np.logaddexp2(av, bv)
    return record(out, (x1, x2), lambda g: (g * np.exp2(av - out), g * np.exp2(bv - out)))


def fmax(x1, x2):
    """Elementwise maximum that ignores a nan when the other entry is a number (``np.fmax``); on
    ties the gradient goes to ``x1``."""
    av, bv = unwrap(x1), unwrap(x2)
    out = np.fmax(av, bv)
    take_a = (av >= bv) | np.isnan(bv)
    return record(out, (x1, x2), lambda g: (g * take_a, g * ~take_a))


def fmin(x1, x2):
    """Elementwise minimum that ignores a nan when the other entry is a number (``np.fmin``)."""
    av, bv = unwrap(x1), unwrap(x2)
    out = np.fmin(av, bv)
    take_a = (av <= bv) | np.isnan(bv)
    return record(out, (x1, x2), lambda g: (g * take_a, g * ~take_a))


def heaviside(x1, x2):
    """The step function: 0 for ``x1 < 0``, ``x2`` at 0, 1 above; floating (floatx for integers).
    No gradient."""
    av, bv = _binary_float(x1, x2)
    return np.heaviside(av, bv).astype(np.result_type(av, bv))


def ldexp(x1, x2):
    """``x1 * 2 ** x2`` for integer ``x2``; gradient ``2 ** x2`` for ``x1``."""
    av, bv = _float_of(unwrap(x1)), np.asarray(unwrap(x2))
    if not np.issubdtype(bv.dtype, np.integer):
        raise ValueError(f"`ldexp`: argument `x2` must be integers. Received: dtype={bv.dtype}")
    out = np.ldexp(av, bv)
    return record(out, (x1,), lambda g: (g * np.ldexp(np.ones_like(av), bv),))


def nextafter(x1, x2):
    """The next representable float after ``x1`` towards ``x2``. No gradient."""
    av, bv = _binary_float(x1, x2)
    return np.nextafter(av, bv)


# ----------------------------------------------------------------------------- comparisons and logic
# All return bool arrays (or integers for the bitwise ops) and have no gradient.


def greater_equal(x1, x2):
    """Elementwise ``x1 >= x2`` as a bool array (False wherever a nan is involved)."""
    return np.greater_equal(unwrap(x1), unwrap(x2))


def less_equal(x1, x2):
    """Elementwise ``x1 <= x2`` as a bool array (False wherever a nan is involved)."""
    return np.less_equal(unwrap(x1), unwrap(x2))


def logical_and(x1, x2):
    """Elementwise ``x1 and x2`` on truth values (nonzero is true)."""
    return np.logical_and(unwrap(x1), unwrap(x2))


def logical_or(x1, x2):
    """Elementwise ``x1 or x2`` on truth values."""
    return np.logical_or(unwrap(x1), unwrap(x2))


def logical_xor(x1, x2):
    """Elementwise exclusive or on truth values."""
    return np.logical_xor(unwrap(x1), unwrap(x2))


def logical_not(x):
    """Elementwise ``not x`` on truth values."""
    return np.logical_not(unwrap(x))


def isnan(x):
    """Where ``x`` is nan (always False for integers)."""
    return np.isnan(unwrap(x))


def isinf(x):
    """Where ``x`` is +-inf."""
    return np.isinf(unwrap(x))


def isfinite(x):
    """Where ``x`` is neither inf nor nan."""
    return np.isfinite(unwrap(x))


def isneginf(x):
    """Where ``x`` is -inf."""
    return np.isneginf(np.asarray(unwrap(x)))


def isposinf(x):
    """Where ``x`` is +inf."""
    return np.isposinf(np.asarray(unwrap(x)))


def isreal(x):
    """Where ``x`` has no imaginary part (everywhere, for real dtypes)."""
    return np.isreal(unwrap(x))


def signbit(x):
    """Where the sign bit is set (true for -0.0 and negative numbers)."""
    return np.signbit(unwrap(x))


def isclose(x1, x2, rtol=1e-5, atol=1e-8, equal_nan=False):
    """Where ``|x1 - x2| <= atol + rtol |x2|`` (``np.isclose``)."""
    return np.isclose(unwrap(x1), unwrap(x2), rtol=rtol, atol=atol, equal_nan=equal_nan)


def allclose(x1, x2, rtol=1e-5, atol=1e-8, equal_nan=False):
    """Whether :func:`isclose` holds everywhere, as a bool scalar array."""
    return np.asarray(np.allclose(unwrap(x1), unwrap(x2), rtol=rtol, atol=atol, equal_nan=equal_nan))


def isin(x1, x2, assume_unique=False, invert=False):
    """Where an entry of ``x1`` occurs in ``x2``."""
    return np.isin(unwrap(x1), unwrap(x2), assume_unique=assume_unique, invert=invert)


def _integer_args(op, *xs):
    # Python ints stay Python ints, so NumPy keeps the array's dtype (int32 & 3 is int32).
    vals = [v if isinstance(v, (int, np.integer)) else np.asarray(unwrap(v)) for v in xs]
    for i, v in enumerate(vals):
        dt = np.asarray(v).dtype
        if not (np.issubdtype(dt, np.integer) or dt == np.bool_):
            raise ValueError(f"`{op}`: arguments must be integers or bools. Received: argument {i} of dtype {dt}")
    return vals


def bitwise_and(x, y):
    """Elementwise bitwise AND of integers or bools."""
    return np.bitwise_and(*_integer_args("bitwise_and", x, y))


def bitwise_or(x, y):
    """Elementwise bitwise OR of integers or bools."""
    return np.bitwise_or(*_integer_args("bitwise_or", x, y))


def bitwise_xor(x, y):
    """Elementwise bitwise XOR of integers or bools."""
    return np.bitwise_xor(*_integer_args("bitwise_xor", x, y))


def bitwise_invert(x):
    """Elementwise bitwise NOT (``~x``) of integers or bools."""
    return np.invert(*_integer_args("bitwise_invert", x))


bitwise_not = bitwise_invert


def bitwise_left_shift(x, y):
    """``x << y`` for integers."""
    return np.left_shift(*_integer_args("bitwise_left_shift", x, y))


def bitwise_right_shift(x, y):
    """``x >> y`` for integers (arithmetic shift for signed ones)."""
    return np.right_shift(*_integer_args("bitwise_right_shift", x, y))


left_shift, right_shift = bitwise_left_shift, bitwise_right_shift


def gcd(x1, x2):
    """Elementwise greatest common divisor of integers."""
    return np.gcd(*_integer_args("gcd", x1, x2))


def lcm(x1, x2):
    """Elementwise least common multiple of integers."""
    return np.lcm(*_integer_args("lcm", x1, x2))


# ----------------------------------------------------------------------------- products


def _einsum_parse(subscripts, shapes):
    """``(inputs, output)`` letter strings with any ``...`` spelled out as capital letters."""
    spec = subscripts.replace(" ", "")
    lhs, arrow, rhs = spec.partition("->")
    ins = lhs.split(",")
    if len(ins) != len(shapes):
        raise ValueError(f"`einsum`: the subscripts name {len(ins)} operands but {len(shapes)} were given. "
                         f"Received: subscripts={subscripts!r}")
    n_ell = builtins.max([len(s) - (len(t) - 3) for t, s in zip(ins, shapes) if "..." in t], default=0)
    ell = "".join(chr(ord("A") + i) for i in range(n_ell))
    full = []
    for t, s in zip(ins, shapes):
        if "..." in t:
            k = len(s) - (len(t) - 3)
            t = t.replace("...", ell[n_ell - k:])
        full.append(t)
    if not arrow:
        letters = "".join(full)
        rhs = ell + "".join(sorted(c for c in set(letters) if c.islower() and letters.count(c) == 1))
    else:
        rhs = rhs.replace("...", ell)
    return full, rhs


def einsum(subscripts, *operands, **kwargs):
    """Einstein summation (``np.einsum``), e.g. ``einsum("ij,jk->ik", a, b)``; ``...`` broadcasts.
    The gradient of each operand is another einsum of ``g`` with the other operands. An operand
    that repeats a letter (a diagonal, ``"ii->i"``) gets none: differentiating it raises. Keyword
    arguments (``optimize=...``) go to ``np.einsum``."""
    vals = [unwrap(v) for v in operands]
    ins, rhs = _einsum_parse(subscripts, [np.shape(v) for v in vals])  # checks the operand count first
    out = np.einsum(subscripts, *vals, **kwargs)

    def vjp(g):
        grads = []
        for i, (t, v) in enumerate(zip(ins, vals)):
            if not needs_gradient(operands[i]):
                grads.append(None)
                continue
            if len(set(t)) != len(t):
                raise ValueError(f"`einsum`: no gradient for operand {i}, whose subscripts repeat a letter. "
                                 f"Received: subscripts={subscripts!r}")
            others = [u for j, u in enumerate(ins) if j != i]
            seen = set(rhs).union(*others)
            kept = "".join(c for c in t if c in seen)
            spec = ",".join([rhs] + others) + "->" + kept
            gk = np.einsum(spec, g, *[u for j, u in enumerate(vals) if j != i])
            gk = np.expand_dims(gk, [k for k, c in enumerate(t) if c not in seen]) if len(kept) < len(t) else gk
            grads.append(np.broadcast_to(gk, np.shape(v)))
        return tuple(grads)

    return record(out, tuple(operands), vjp)


def tensordot(x1, x2, axes=2):
    """The sum of products over the last ``axes`` axes of ``x1`` and first of ``x2``, or over the
    listed pairs ``axes=(a1, a2)`` (``np.tensordot``)."""
    n1, n2 = ndim(x1), ndim(x2)
    if isinstance(axes, (int, np.integer)):
        a1, a2 = list(range(n1 - int(axes), n1)), list(range(int(axes)))
    else:
        a1, a2 = (np.atleast_1d(a).tolist() for a in axes)
        a1, a2 = [a % n1 for a in a1], [a % n2 for a in a2]
    r1 = [a for a in range(n1) if a not in a1]
    r2 = [a for a in range(n2) if a not in a2]
    s1, s2 = shape(x1), shape(x2)
    k = int(np.prod([s1[a] for a in a1]))
    left = reshape(transpose(x1, r1 + a1), (-1, k))
    right = reshape(transpose(x2, a2 + r2), (k, -1))
    return reshape(matmul(left, right), tuple(s1[a] for a in r1) + tuple(s2[a] for a in r2))


def outer(x1, x2):
    """The outer product of the flattened inputs: ``out[i, j] = x1[i] * x2[j]``."""
    return multiply(reshape(x1, (-1, 1)), reshape(x2, (1, -1)))


def inner(x1, x2):
    """The sum of products over the last axes (a number for two vectors)."""
    if ndim(x1) == 0 or ndim(x2) == 0:
        return multiply(x1, x2)
    return tensordot(x1, x2, axes=([-1], [-1]))


def vdot(x1, x2):
    """The dot product of the flattened inputs."""
    return sum(multiply(ravel(x1), ravel(x2)))


def kron(x1, x2):
    """The Kronecker product (``np.kron``): blocks ``x1[i, j] * x2``."""
    nd = builtins.max(ndim(x1), ndim(x2))
    a = reshape(x1, (1,) * (nd - ndim(x1)) + shape(x1))
    b = reshape(x2, (1,) * (nd - ndim(x2)) + shape(x2))
    sa, sb = shape(a), shape(b)
    a = reshape(a, tuple(v for s in sa for v in (s, 1)))
    b = reshape(b, tuple(v for s in sb for v in (1, s)))
    return reshape(multiply(a, b), tuple(p * q for p, q in zip(sa, sb)))


def cross(x1, x2, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """The cross product of 3-vectors lying along ``axisa`` of ``x1`` and ``axisb`` of ``x2``, the
    result's along ``axisc`` (``axis``, when given, sets all three); the others broadcast."""
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = moveaxis(x1, axisa, -1), moveaxis(x2, axisb, -1)
    for name, v in (("x1", a), ("x2", b)):
        if shape(v)[-1] != 3:
            raise ValueError(f"`cross`: vectors must have 3 components. Received: {name}.shape={shape(v)}")
    ax, ay, az = unstack(a, axis=ndim(a) - 1)
    bx, by, bz = unstack(b, axis=ndim(b) - 1)
    c = stack([subtract(multiply(ay, bz), multiply(az, by)), subtract(multiply(az, bx), multiply(ax, bz)),
               subtract(multiply(ax, by), multiply(ay, bx))], axis=-1)
    return moveaxis(c, -1, axisc)


# ----------------------------------------------------------------------------- sorting and searching


def sort(x, axis=-1):
    """``x`` sorted ascending along ``axis`` (nan last); the gradient follows each entry to where it
    came from."""
    xv = np.asarray(unwrap(x))
    if axis is None:
        return sort(ravel(x), axis=0)
    order = np.argsort(xv, axis=axis, kind="stable")
    return _selection(x, lambda v: np.take_along_axis(v, order, axis))


def argsort(x, axis=-1):
    """The indices that sort ``x`` along ``axis`` (stable: ties keep their order), as int32."""
    xv = np.asarray(unwrap(x))
    if axis is None:
        xv, axis = xv.reshape(-1), 0
    return np.argsort(xv, axis=axis, kind="stable").astype(np.int32)


def argpartition(x, kth, axis=-1):
    """Indices that put the ``kth`` smallest entry in its sorted place along ``axis``, smaller ones
    before it and larger ones after (``np.argpartition``), as int32."""
    return np.argpartition(unwrap(x), kth, axis=axis).astype(np.int32)


def top_k(x, k, sorted=True):
    """The ``k`` largest entries along the last axis and their int32 indices, largest first (ties:
    the lower index first), as ``(values, indices)``. The gradient goes to the chosen entries."""
    xv = np.asarray(unwrap(x))
    k = _check_int("top_k", "k", k)
    if xv.ndim == 0 or not 0 <= k <= xv.shape[-1]:
        raise ValueError(f"`top_k`: argument `k` must be in [0, {xv.shape[-1] if xv.ndim else 0}] (the last axis). "
                         f"Received: k={k}")
    order = np.argsort(-xv if not np.issubdtype(xv.dtype, np.unsignedinteger) else ~xv, axis=-1, kind="stable")
    idx = order[..., :k]
    if not sorted:
        idx = np.sort(idx, axis=-1)
    values = _selection(x, lambda v: np.take_along_axis(v, idx, -1))
    return values, idx.astype(np.int32)


def in_top_k(targets, predictions, k):
    """For each row, whether the score of class ``targets[i]`` is among the ``k`` largest of
    ``predictions[i]`` (a tie with the k-th largest counts, as in Keras). No gradient."""
    t = np.asarray(unwrap(targets)).astype(np.int64)
    p = np.asarray(unwrap(predictions))
    if p.ndim != 2 or t.shape != p.shape[:1]:
        raise ValueError(f"`in_top_k`: expected `predictions` of shape (batch, classes) and `targets` of shape "
                         f"(batch,). Received: targets.shape={t.shape}, predictions.shape={p.shape}")
    k = _check_int("in_top_k", "k", k)
    if k <= 0:
        return np.zeros(t.shape, bool)
    kth = -np.sort(-p, axis=-1)[:, builtins.min(k, p.shape[-1]) - 1]
    return np.take_along_axis(p, t[:, None], -1)[:, 0] >= kth


def searchsorted(sorted_sequence, values, side="left"):
    """Where to insert each of ``values`` into the 1-D ascending ``sorted_sequence`` to keep it sorted
    (int32)."""
    seq = np.asarray(unwrap(sorted_sequence))
    if seq.ndim != 1:
        raise ValueError(f"`searchsorted`: `sorted_sequence` must be 1-D. Received: sorted_sequence.shape={seq.shape}")
    if side not in ("left", "right"):
        raise ValueError(f"`searchsorted`: argument `side` must be 'left' or 'right'. Received: side={side!r}")
    return np.searchsorted(seq, unwrap(values), side=side).astype(np.int32)


def digitize(x, bins):
    """The index of the bin each entry of ``x`` falls in (``np.digitize``, ``bins`` 1-D), as int32."""
    return np.digitize(unwrap(x), unwrap(bins)).astype(np.int32)


def bincount(x, weights=None, minlength=0, sparse=False):
    """How often each non-negative integer occurs in ``x`` (summing ``weights`` instead when given);
    a 2-D ``x`` counts each row. int32 counts, or the weights' dtype."""
    if sparse:
        raise ValueError("`bincount`: sparse outputs are not supported. Received: sparse=True")
    xv = np.asarray(unwrap(x))
    if not np.issubdtype(xv.dtype, np.integer) or (xv.size and xv.min() < 0):
        raise ValueError(f"`bincount`: `x` must hold non-negative integers. Received: dtype={xv.dtype}")
    w = None if weights is None else np.asarray(unwrap(weights))
    length = builtins.max(int(minlength), int(xv.max()) + 1 if xv.size else 0)
    dt = np.int32 if w is None else w.dtype
    if xv.ndim == 1:
        return np.bincount(xv, weights=w, minlength=length).astype(dt)
    rows = [np.bincount(r, weights=None if w is None else w[i], minlength=length) for i, r in enumerate(xv)]
    return np.stack(rows).astype(dt) if rows else np.zeros((0, length), dt)


def nonzero(x):
    """The indices of the nonzero entries, one int32 array per axis (``np.nonzero``)."""
    return tuple(i.astype(np.int32) for i in np.nonzero(unwrap(x)))


def unique(x, sorted=True, return_index=False, return_inverse=False, return_counts=False, axis=None, size=None,
           fill_value=None):
    """The distinct values of ``x`` in ascending order (``np.unique``), optionally with the index of
    each value's first occurrence, the inverse indices and the counts (int32). ``size`` pads with
    ``fill_value`` (default: the smallest value) or truncates to that many values. ``sorted=False``
    is not supported: NumPy always sorts."""
    if not sorted:
        raise ValueError("`unique`: only sorted results are supported. Received: sorted=False")
    vals, first, inv, counts = np.unique(unwrap(x), return_index=True, return_inverse=True, return_counts=True,
                                         axis=axis)
    if size is not None:
        n = _check_int("unique", "size", size)
        fill = vals.min(initial=0) if fill_value is None else fill_value
        vals = np.concatenate([vals[:n], np.full((builtins.max(0, n - len(vals)),) + vals.shape[1:], fill, vals.dtype)])
        counts = np.concatenate([counts[:n], np.zeros(builtins.max(0, n - len(counts)), counts.dtype)])
        first = np.concatenate([first[:n], np.zeros(builtins.max(0, n - len(first)), first.dtype)])
    out = (vals,)
    if return_index:
        out += (first.astype(np.int32),)
    if return_inverse:
        out += (inv.reshape(np.shape(unwrap(x)) if axis is None else -1).astype(np.int32),)
    if return_counts:
        out += (counts.astype(np.int32),)
    return out[0] if len(out) == 1 else out


# ----------------------------------------------------------------------------- norms


def _vector_norm(x, ord, axis, keepdims):
    xv = _float_of(unwrap(x))
    xf = x if np.issubdtype(np.asarray(unwrap(x)).dtype, np.floating) else xv
    if ord is None or ord == 2:
        out = np.sqrt(np.sum(xv * xv, axis=axis, keepdims=True))

        def vjp(g):
            safe = np.where(out == 0, 1, out)
            return (_expand_to(g, xv.shape, axis, keepdims) * np.where(out == 0, 0, xv / safe),)

        return record(out if keepdims else np.squeeze(out, axis), (xf,), vjp)
    if ord in (np.inf, float("inf")):
        return max(abs(xf), axis=axis, keepdims=keepdims)
    if ord in (-np.inf, float("-inf")):
        return min(abs(xf), axis=axis, keepdims=keepdims)
    if ord == 0:
        return np.sum(xv != 0, axis=axis, keepdims=keepdims).astype(xv.dtype)
    if ord == 1:
        return sum(abs(xf), axis=axis, keepdims=keepdims)
    return power(sum(power(abs(xf), float(ord)), axis=axis, keepdims=keepdims), 1.0 / ord)


def _matrix_norm(x, ord, axis, keepdims):
    r, c = axis
    xf = x if np.issubdtype(np.asarray(unwrap(x)).dtype, np.floating) else _float_of(unwrap(x))
    if ord in (None, "fro"):
        return _vector_norm(xf, 2, axis, keepdims)
    if ord in (1, -1):
        s = sum(abs(xf), axis=r, keepdims=True)
        red = max if ord == 1 else min
        return red(s, axis=c, keepdims=True) if keepdims else squeeze(red(s, axis=c, keepdims=True), axis)
    if ord in (np.inf, -np.inf):
        s = sum(abs(xf), axis=c, keepdims=True)
        red = max if ord == np.inf else min
        return red(s, axis=r, keepdims=True) if keepdims else squeeze(red(s, axis=r, keepdims=True), axis)
    if ord in ("nuc", 2, -2):
        return _svd_norm(xf, ord, axis, keepdims)
    raise ValueError(f"`norm`: invalid `ord` for a matrix norm. Received: ord={ord!r}")


def _svd_norm(x, ord, axis, keepdims):
    """Nuclear (sum of singular values) or spectral (largest / smallest) norm; gradient ``U V^T`` or
    ``u v^T`` of the singular vectors chosen (defined where the singular values are distinct)."""
    xv = np.asarray(unwrap(x))
    nd = xv.ndim
    r, c = (a % nd for a in axis)
    rest = [a for a in range(nd) if a not in (r, c)]
    m = np.transpose(xv, rest + [r, c])
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    if ord == "nuc":
        val, gmat = s.sum(-1), np.matmul(u, vt)
    else:
        k = 0 if ord == 2 else -1
        val = s[..., k]
        gmat = u[..., :, k, None] * vt[..., k, None, :]
    out = val.astype(xv.dtype)
    if keepdims:
        out = np.expand_dims(out, sorted((r, c)))
    inv = np.argsort(rest + [r, c])

    def vjp(g):
        gv = np.squeeze(g, tuple(sorted((r, c)))) if keepdims else g
        return (np.transpose(gmat * np.asarray(gv)[..., None, None], inv).astype(xv.dtype),)

    return record(out, (x,), vjp)


def norm(x, ord=None, axis=None, keepdims=False):
    """A vector norm (``axis`` an int, or None for a 1-D input) or matrix norm (``axis`` a pair, or
    None for a 2-D input), as ``np.linalg.norm``. ``ord=None`` is the 2-norm / Frobenius norm of
    all entries when ``axis`` is None. Integer inputs give floatx. The 2-norm's gradient
    ``x / ||x||`` is taken as 0 at ``x = 0``."""
    nd = ndim(x)
    if axis is None:
        if ord is None:
            return _vector_norm(x, 2, None, keepdims)
        axis = (0,) if nd == 1 else (0, 1) if nd == 2 else None
        if axis is None:
            raise ValueError(f"`norm`: `ord` needs a 1-D or 2-D input or an explicit axis. "
                             f"Received: x.shape={shape(x)}")
    if isinstance(axis, (int, np.integer)):
        axis = (int(axis),)
    axis = tuple(_check_axis("norm", a, nd) for a in axis)
    if len(axis) == 1:
        if isinstance(ord, str):
            raise ValueError(f"`norm`: ord={ord!r} is a matrix norm; it needs two axes. Received: axis={axis}")
        return _vector_norm(x, ord, axis[0], keepdims)
    if len(axis) == 2:
        return _matrix_norm(x, ord, axis, keepdims)
    raise ValueError(f"`norm`: `axis` must name one or two axes. Received: axis={axis}")


# ----------------------------------------------------------------------------- core: control flow


def cond(pred, true_fn, false_fn):
    """``true_fn()`` if ``pred`` else ``false_fn()`` (eager, so only the branch taken runs)."""
    return true_fn() if bool(np.asarray(unwrap(pred))) else false_fn()


def switch(index, branches, *operands):
    """``branches[index](*operands)``, the index clipped to the valid range as in Keras."""
    if not branches:
        raise ValueError("`switch`: argument `branches` must hold at least one function. Received: branches=[]")
    i = int(np.clip(int(np.asarray(unwrap(index))), 0, len(branches) - 1))
    return branches[i](*operands)


def while_loop(cond, body, loop_vars, maximum_iterations=None):
    """Runs ``loop_vars = body(*loop_vars)`` while ``cond(*loop_vars)`` holds (at most
    ``maximum_iterations`` times); ``loop_vars`` is one value or a tuple/list, returned alike."""
    is_seq = isinstance(loop_vars, (tuple, list))
    state = tuple(loop_vars) if is_seq else (loop_vars,)
    i = 0
    while (maximum_iterations is None or i < maximum_iterations) and bool(np.asarray(unwrap(cond(*state)))):
        state = body(*state)
        state = tuple(state) if isinstance(state, (tuple, list)) else (state,)
        i += 1
    return state if is_seq else state[0]


def fori_loop(lower, upper, body_fun, init_val):
    """``val = body_fun(i, val)`` for ``i`` in ``range(lower, upper)``, starting from ``init_val``."""
    val = init_val
    for i in range(int(unwrap(lower)), int(unwrap(upper))):
        val = body_fun(i, val)
    return val


def _stack_tree(items):
    """Stack a list of outputs (arrays, or tuples/lists/dicts of them) along a new first axis."""
    first = items[0]
    if first is None:
        return None
    if isinstance(first, dict):
        return {k: _stack_tree([it[k] for it in items]) for k in first}
    if isinstance(first, (tuple, list)):
        return type(first)(_stack_tree(list(parts)) for parts in zip(*items))
    return stack(items, axis=0)


def _index_tree(xs, i):
    if isinstance(xs, dict):
        return {k: _index_tree(v, i) for k, v in xs.items()}
    if isinstance(xs, (tuple, list)):
        return type(xs)(_index_tree(v, i) for v in xs)
    return getitem(xs, i)


def _tree_len(xs):
    if isinstance(xs, dict):
        return _tree_len(next(iter(xs.values())))
    if isinstance(xs, (tuple, list)):
        return _tree_len(xs[0])
    return shape(xs)[0]


def map(f, xs):
    """``f`` applied to each slice of ``xs`` along its first axis (``xs`` may be a tuple, list or dict
    of arrays), the results stacked."""
    n = _tree_len(xs)
    if n == 0:
        raise ValueError("`map`: `xs` must have at least one slice along its first axis. Received: length 0")
    return _stack_tree([f(_index_tree(xs, i)) for i in range(n)])


def vectorized_map(function, elements):
    """As :func:`map` (run slice by slice: NumPy has no vectorizing transform)."""
    return map(function, elements)


def scan(f, init, xs=None, length=None, reverse=False, unroll=1):
    """``carry, y = f(carry, x)`` over the slices of ``xs`` (or ``length`` times with ``x = None``),
    in reverse when ``reverse``; returns the last carry and the stacked ``y``. ``unroll`` is
    accepted and has no effect."""
    n = _tree_len(xs) if xs is not None else length
    if n is None:
        raise ValueError("`scan`: give `xs` or `length`. Received: xs=None, length=None")
    if xs is not None and length is not None and length != n:
        raise ValueError(f"`scan`: `length` must match the first axis of `xs` ({n}). Received: length={length}")
    carry, ys = init, []
    for i in (range(n - 1, -1, -1) if reverse else range(n)):
        carry, y = f(carry, None if xs is None else _index_tree(xs, i))
        ys.append(y)
    if reverse:
        ys.reverse()
    return carry, (_stack_tree(ys) if ys else None)


def associative_scan(f, elems, reverse=False, axis=0):
    """Inclusive scan of the associative ``f`` along ``axis`` (sequential here): ``out[i] =
    f(out[i-1], elems[i])``, from the end when ``reverse``."""
    xs = moveaxis(elems, axis, 0)
    n = shape(xs)[0]
    order = range(n - 1, -1, -1) if reverse else range(n)
    acc, outs = None, [None] * n
    for i in order:
        acc = xs[i] if acc is None else f(acc, xs[i])
        outs[i] = acc
    return moveaxis(stack(outs, axis=0), 0, axis) if n else elems


# ----------------------------------------------------------------------------- core: indexing


def get_item(x, key):
    """``x[key]`` (see :func:`getitem`)."""
    return getitem(x, key)


def _start_slices(op, xshape, start_indices, sizes):
    starts = [int(s) for s in np.asarray(unwrap(start_indices)).reshape(-1)]
    if len(starts) != len(xshape) or len(sizes) != len(xshape):
        raise ValueError(f"`{op}`: need one start index and size per axis of the input (rank {len(xshape)}). "
                         f"Received: start_indices={starts}, shape={list(sizes)}")
    for s, n, d in zip(starts, sizes, xshape):
        if s < 0 or s + n > d:
            raise ValueError(f"`{op}`: the slice [{s}, {s + n}) does not fit in an axis of length {d}. "
                             f"Received: start_indices={starts}, shape={list(sizes)}")
    return tuple(builtins.slice(s, s + n) for s, n in zip(starts, sizes))


def slice(inputs, start_indices, shape):
    """The block of ``inputs`` of size ``shape`` starting at ``start_indices`` (-1 in ``shape``:
    to the end of that axis)."""
    xs = np.shape(unwrap(inputs))
    starts = [int(s) for s in np.asarray(unwrap(start_indices)).reshape(-1)]
    sizes = [d - s if n == -1 else int(n) for n, d, s in zip(shape, xs, starts)]
    return getitem(inputs, _start_slices("slice", xs, starts, sizes + list(shape)[len(sizes):]))


def slice_update(inputs, start_indices, updates):
    """A copy of ``inputs`` with the block at ``start_indices`` replaced by ``updates``; the gradient
    of the overwritten entries goes to ``updates``."""
    xv = np.asarray(unwrap(inputs))
    uv = np.asarray(unwrap(updates))
    region = _start_slices("slice_update", xv.shape, start_indices, uv.shape)
    out = xv.copy()
    out[region] = uv

    def vjp(g):
        gx = np.array(g, copy=True)
        gx[region] = 0
        return gx, g[region]

    return record(out, (inputs, updates), vjp)


def _index_tuple(op, indices, rank):
    idx = np.asarray(unwrap(indices))
    if not np.issubdtype(idx.dtype, np.integer) or idx.ndim < 1 or idx.shape[-1] > rank:
        raise ValueError(f"`{op}`: `indices` must be integers of shape (..., k) with k <= {rank}. "
                         f"Received: indices.shape={idx.shape}, dtype={idx.dtype}")
    return tuple(np.moveaxis(idx, -1, 0))


def scatter(indices, values, shape):
    """A zero array of ``shape`` with ``values`` added at ``indices`` (shape ``(..., k)``, each row
    the first ``k`` coordinates); repeated indices add up, as in Keras."""
    vv = np.asarray(unwrap(values))
    shp = tuple(int(s) for s in shape)
    key = _index_tuple("scatter", indices, len(shp))
    out = np.zeros(shp, dtype=vv.dtype)
    np.add.at(out, key, vv)
    return record(out, (values,), lambda g: (g[key],))


def scatter_update(inputs, indices, updates, reduction=None):
    """A copy of ``inputs`` with ``updates`` written at ``indices`` (shape ``(..., k)``); with
    ``reduction="add"`` they are added instead. For a repeated index without reduction the last
    update wins, and its gradient is then ambiguous: each such update receives it."""
    if reduction not in (None, "add"):
        raise ValueError(f"`scatter_update`: argument `reduction` must be None or 'add'. "
                         f"Received: reduction={reduction!r}")
    xv = np.asarray(unwrap(inputs))
    key = _index_tuple("scatter_update", indices, xv.ndim)
    uv = np.asarray(unwrap(updates)).astype(xv.dtype, copy=False)
    out = xv.copy()
    if reduction is None:
        out[key] = uv
    else:
        np.add.at(out, key, uv)

    def vjp(g):
        gx = np.array(g, copy=True)
        if reduction is None:
            gx[key] = 0
        return gx, g[key]

    return record(out, (inputs, updates), vjp)


def _segment_ids(op, data, segment_ids, num_segments):
    ids = np.asarray(unwrap(segment_ids))
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer) or len(ids) != shape(data)[0]:
        raise ValueError(f"`{op}`: `segment_ids` must be 1-D integers, one per row of `data` "
                         f"({shape(data)[0]} rows). Received: segment_ids.shape={ids.shape}, dtype={ids.dtype}")
    n = int(ids.max(initial=-1)) + 1 if num_segments is None else int(num_segments)
    return ids, n


def segment_sum(data, segment_ids, num_segments=None, sorted=False):
    """The sum of the rows of ``data`` that share a segment id (``num_segments`` rows; ids outside
    ``[0, num_segments)`` are dropped). Gradient: each row gets its segment's ``g``."""
    ids, n = _segment_ids("segment_sum", data, segment_ids, num_segments)
    dv = np.asarray(unwrap(data))
    keep = (ids >= 0) & (ids < n)
    out = np.zeros((n,) + dv.shape[1:], dtype=dv.dtype)
    np.add.at(out, ids[keep], dv[keep])

    def vjp(g):
        full = np.zeros(dv.shape, dtype=np.asarray(g).dtype)
        full[keep] = g[ids[keep]]
        return (full,)

    return record(out, (data,), vjp)


def _segment_extreme(op, ufunc, data, segment_ids, num_segments):
    ids, n = _segment_ids(op, data, segment_ids, num_segments)
    dv = np.asarray(unwrap(data))
    keep = (ids >= 0) & (ids < n)
    if np.issubdtype(dv.dtype, np.floating):
        fill = -np.inf if ufunc is np.maximum else np.inf
    else:
        info = np.iinfo(dv.dtype)
        fill = info.min if ufunc is np.maximum else info.max
    out = np.full((n,) + dv.shape[1:], fill, dtype=dv.dtype)
    ufunc.at(out, ids[keep], dv[keep])

    def vjp(g):
        hit = np.zeros(dv.shape, bool)
        hit[keep] = dv[keep] == out[ids[keep]]
        count = np.zeros(out.shape)
        np.add.at(count, ids[keep], hit[keep])
        full = np.zeros(dv.shape, dtype=np.asarray(g).dtype)
        full[keep] = np.where(hit[keep], g[ids[keep]] / np.maximum(count[ids[keep]], 1), 0)
        return (full,)

    return record(out, (data,), vjp)


def segment_max(data, segment_ids, num_segments=None, sorted=False):
    """The elementwise maximum of the rows sharing a segment id (an empty segment holds the dtype's
    lowest value, -inf for floats); tied maxima share the gradient equally."""
    return _segment_extreme("segment_max", np.maximum, data, segment_ids, num_segments)


def segment_min(data, segment_ids, num_segments=None, sorted=False):
    """The elementwise minimum of the rows sharing a segment id (inf for an empty float segment)."""
    return _segment_extreme("segment_min", np.minimum, data, segment_ids, num_segments)


def select(condlist, choicelist, default=0):
    """For each entry, the value from the first ``choicelist[i]`` whose ``condlist[i]`` holds, else
    ``default`` (``np.select``); the gradient goes to the choice taken."""
    if len(condlist) != len(choicelist) or not condlist:
        raise ValueError(f"`select`: `condlist` and `choicelist` must be non-empty and of the same length. "
                         f"Received: {len(condlist)} conditions and {len(choicelist)} choices")
    out = default
    for c, v in zip(reversed(condlist), reversed(choicelist)):
        out = where(c, v, out)
    return out


def saturate_cast(x, dtype):
    """:func:`cast` with values first clipped to the range of ``dtype``, so nothing wraps around or
    overflows (``saturate_cast(300.0, "uint8") = 255``)."""
    dt = np.dtype(backend.standardize_dtype(dtype))
    xv = np.asarray(unwrap(x))
    if np.issubdtype(dt, np.integer):
        lo, hi = np.iinfo(dt).min, np.iinfo(dt).max
        if np.issubdtype(xv.dtype, np.integer) and np.can_cast(xv.dtype, dt):
            return xv.astype(dt)
        if np.issubdtype(xv.dtype, np.integer):
            src = np.iinfo(xv.dtype)
            return np.clip(xv, builtins.max(lo, src.min), builtins.min(hi, src.max)).astype(dt)
        # Clip in float64, where the int32 bounds are exact (float32 would round 2^31 - 1 up).
        return np.clip(np.nan_to_num(xv.astype(np.float64)), lo, hi).astype(dt)
    if np.issubdtype(dt, np.floating) and np.issubdtype(xv.dtype, np.floating) and dt.itemsize < xv.dtype.itemsize:
        info = np.finfo(dt)
        return cast(clip(x, float(info.min), float(info.max)), dt.name)
    return cast(x, dt.name)


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


# ----------------------------------------------------------------------------- nn: normalization


def _as_float_input(x):
    """``x`` itself if floating (keeps its graph), else its value in floatx."""
    return x if np.issubdtype(np.asarray(unwrap(x)).dtype, np.floating) else _float_of(unwrap(x))


def moments(x, axes, keepdims=False, synchronized=False):
    """``(mean, variance)`` of ``x`` over ``axes`` (population variance). ``synchronized`` (a
    multi-device option) changes nothing on one process."""
    x = _as_float_input(x)
    axes = tuple(axes) if isinstance(axes, (list, tuple)) else axes
    return mean(x, axis=axes, keepdims=keepdims), var(x, axis=axes, keepdims=keepdims)


def _along(v, axis, nd):
    """A vector ``v`` reshaped to broadcast along ``axis`` of a rank-``nd`` input."""
    if v is None or ndim(v) != 1 or nd <= 1:
        return v
    return reshape(v, tuple(-1 if i == axis % nd else 1 for i in range(nd)))


def batch_normalization(x, mean, variance, axis, offset=None, scale=None, epsilon=1e-3):
    """``(x - mean) / sqrt(variance + epsilon) * scale + offset``, the vectors lying along
    ``axis``."""
    x = _as_float_input(x)
    nd = ndim(x)
    inv = rsqrt(add(_along(variance, axis, nd), epsilon))
    if scale is not None:
        inv = multiply(inv, _along(scale, axis, nd))
    out = multiply(subtract(x, _along(mean, axis, nd)), inv)
    return out if offset is None else add(out, _along(offset, axis, nd))


def layer_normalization(x, gamma=None, beta=None, axis=-1, epsilon=None, **kwargs):
    """``(x - mean) / sqrt(var + epsilon) * gamma + beta`` with the statistics over ``axis`` (an int
    or list) of each example; the keyword ``rms_scaling=True`` divides by ``sqrt(var + epsilon)``
    without centring (and ignores ``beta``), as Keras. ``epsilon`` defaults to ``backend.epsilon()``."""
    rms_scaling = kwargs.pop("rms_scaling", False)
    if kwargs:
        raise ValueError(f"`layer_normalization`: unexpected keyword arguments. Received: {sorted(kwargs)}")
    x = _as_float_input(x)
    eps = backend.epsilon() if epsilon is None else epsilon
    nd = ndim(x)
    axes = sorted(a % nd for a in ([axis] if isinstance(axis, int) else axis))
    bshape = tuple(shape(x)[i] if i in axes else 1 for i in range(nd))

    def fit(v):
        return v if v is None or shape(v) == bshape[axes[0]:] or axes == [nd - 1] else reshape(v, bshape)

    mu, v = moments(x, axes, keepdims=True)
    if rms_scaling:
        out = multiply(x, rsqrt(add(v, eps)))
        return out if gamma is None else multiply(out, fit(gamma))
    out = multiply(subtract(x, mu), rsqrt(add(v, eps)))
    if gamma is not None:
        out = multiply(out, fit(gamma))
    return out if beta is None else add(out, fit(beta))


def rms_normalization(x, scale=None, axis=-1, epsilon=None):
    """``x / sqrt(mean(x^2) + epsilon) * scale`` with the mean over ``axis``; ``epsilon`` defaults to
    ``backend.epsilon()``."""
    x = _as_float_input(x)
    eps = backend.epsilon() if epsilon is None else epsilon
    out = multiply(x, rsqrt(add(mean(square(x), axis=axis, keepdims=True), eps)))
    return out if scale is None else multiply(out, scale)


def normalize(x, axis=-1, order=2, epsilon=None):
    """``x`` divided by its ``order``-norm over ``axis``, the norm floored at ``epsilon`` (default
    ``backend.epsilon()``) so a zero vector stays zero."""
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"Argument `order` must be an int >= 1. Received: order={order}")
    x = _as_float_input(x)
    if ndim(x) == 0:
        x = expand_dims(x, 0)
    eps = backend.epsilon() if epsilon is None else epsilon
    if order == 2:
        # Keras's L2 case: x * min(rsqrt(sum of squares over every axis given), 1/eps). Flooring the sum
        # at eps² first is the same value, and a zero row then gets a zero gradient rather than nan.
        squares = sum(square(x), axis=axis, keepdims=True)
        return multiply(x, rsqrt(maximum(squares, eps * eps)))
    return divide(x, maximum(norm(x, ord=order, axis=axis, keepdims=True), eps))


def psnr(x1, x2, max_val):
    """Peak signal-to-noise ratio ``20 log10(max_val) - 10 log10(mean((x1 - x2)^2))`` in dB."""
    if shape(x1) != shape(x2):
        raise ValueError(f"Input shapes {shape(x1)} and {shape(x2)} must match for PSNR calculation. ")
    x1, x2 = _as_float_input(x1), _as_float_input(x2)
    mse = mean(square(subtract(x1, x2)))
    dt = np.asarray(unwrap(mse)).dtype
    return subtract((20 * np.log10(unwrap(max_val))).astype(dt), multiply(np.asarray(10, dt), log10(mse)))


def multi_hot(inputs, num_classes=None, axis=-1, dtype=None, sparse=False, **kwargs):
    """For each row of integer labels, a vector of ``num_classes`` with 1 at every label present
    (a 1-D input is one row). No gradient."""
    if sparse:
        raise ValueError("`multi_hot`: sparse outputs are not supported. Received: sparse=True")
    if num_classes is None:
        num_classes = kwargs.pop("num_tokens", None)
    if num_classes is None:
        raise ValueError("`multi_hot`: argument `num_classes` must be given. Received: num_classes=None")
    idx = np.asarray(unwrap(inputs))
    squeeze_ = idx.ndim == 1
    hot = one_hot(idx[None] if squeeze_ else idx, num_classes, axis=-1, dtype=dtype)
    out = np.max(hot, axis=-2)
    out = out[0] if squeeze_ else out
    return np.moveaxis(out, -1, axis) if axis != -1 else out


def gelu(x, approximate=True):
    """The GELU activation, by default its tanh approximation as in ``keras.ops.gelu`` (the
    activation :func:`lamina.activations.gelu` defaults to the exact form)."""
    return activations.gelu(x, approximate=approximate)


# Same signatures as keras.ops (only the annotations differ): the activations serve.
celu = activations.celu
elu = activations.elu
glu = activations.glu
hard_shrink = activations.hard_shrink
hard_sigmoid = activations.hard_sigmoid
hard_silu = activations.hard_silu
hard_swish = activations.hard_swish
hard_tanh = activations.hard_tanh
leaky_relu = activations.leaky_relu
log_sigmoid = activations.log_sigmoid
relu6 = activations.relu6
selu = activations.selu
silu = activations.silu
swish = activations.swish
soft_shrink = activations.soft_shrink
softsign = activations.softsign
sparse_plus = activations.sparse_plus
sparse_sigmoid = activations.sparse_sigmoid
sparsemax = activations.sparsemax
squareplus = activations.squareplus
tanh_shrink = activations.tanh_shrink
threshold = activations.threshold


# ----------------------------------------------------------------------------- nn: depthwise and separable conv


def _conv_variant_args(op: str, x, kernel, strides, padding, data_format, dilation_rate):
    """Checked ``(channels-last x, strides, padding, dilation)`` for ``depthwise_conv``/``separable_conv``."""
    xv, kv = unwrap(x), unwrap(kernel)
    dims = np.ndim(xv) - 2
    if dims < 1 or np.ndim(kv) != dims + 2:
        raise ValueError(f"`{op}` needs inputs of rank 3 to 5 and a kernel of the same rank. "
                         f"Received: inputs.shape={np.shape(xv)}, kernel.shape={np.shape(kv)}")
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"`{op}`: `padding` must be one of 'valid', 'same'. Received: padding={padding!r}")
    data_format = backend.image_data_format() if data_format is None else str(data_format).lower()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"`{op}`: `data_format` must be one of 'channels_first', 'channels_last'. "
                         f"Received: data_format={data_format!r}")

    def spread(value, name):
        values = (value,) * dims if isinstance(value, (int, np.integer)) else tuple(value)
        if len(values) != dims or builtins.any(int(v) != v or v <= 0 for v in values):  # ops.any shadows it
            raise ValueError(f"`{op}`: `{name}` must be a positive int or {dims} of them. Received: {name}={value}")
        return tuple(int(v) for v in values)

    if data_format == "channels_first":
        x = transpose(x, (0, *range(2, dims + 2), 1))
    return x, spread(strides, "strides"), padding.lower(), spread(dilation_rate, "dilation_rate"), data_format


def _channels_back(y, data_format):
    if data_format == "channels_first":
        dims = np.ndim(unwrap(y)) - 2
        return transpose(y, (0, dims + 1, *range(1, dims + 1)))
    return y


def depthwise_conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """Depthwise convolution (``keras.ops.depthwise_conv``): ``kernel`` ``(*k, C, M)``; output channel
    ``c * M + m`` is input channel ``c`` convolved with ``kernel[..., c, m]``."""
    x, strides, padding, dilation, data_format = _conv_variant_args(
        "depthwise_conv", inputs, kernel, strides, padding, data_format, dilation_rate)
    return _channels_back(conv_variant_kernels.depthwise_conv(x, kernel, strides, padding, dilation), data_format)


def separable_conv(inputs, depthwise_kernel, pointwise_kernel, strides=1, padding="valid", data_format=None,
                   dilation_rate=1):
    """Separable convolution (``keras.ops.separable_conv``): :func:`depthwise_conv`, then a 1x1
    convolution with ``pointwise_kernel`` ``(1, ..., 1, C * M, filters)``."""
    x, strides, padding, dilation, data_format = _conv_variant_args(
        "separable_conv", inputs, depthwise_kernel, strides, padding, data_format, dilation_rate)
    y = conv_variant_kernels.separable_conv(x, depthwise_kernel, pointwise_kernel, strides, padding, dilation)
    return _channels_back(y, data_format)


def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """N-D convolution (``keras.ops.conv``, cross-correlation): ``kernel`` ``(*k, C / groups, filters)``,
    ``groups = C / kernel.shape[-2]``; ``padding`` ``"same"`` pads ``max((out - 1) * s + d * (k - 1) + 1 - n, 0)``
    zeros, the smaller half before (see :mod:`lamina.conv_kernels`)."""
    x, strides, padding, dilation, data_format = _conv_variant_args(
        "conv", inputs, kernel, strides, padding, data_format, dilation_rate)
    shape, kshape = np.shape(unwrap(x)), np.shape(unwrap(kernel))
    if kshape[-2] <= 0 or shape[-1] % kshape[-2] or kshape[-1] % (shape[-1] // kshape[-2] or 1):
        raise ValueError(f"`conv`: the input's channels must be a multiple of the kernel's input channels (their "
                         f"ratio is the number of groups, which must divide the kernel's filters). Received: input "
                         f"channels={shape[-1]}, kernel.shape={kshape}")
    pads = [conv_kernels.plan(n, k, s, d, padding)[1:] for n, k, s, d in zip(shape[1:-1], kshape, strides, dilation)]
    y = conv_kernels.conv(x, kernel, strides, pads, dilation, shape[-1] // kshape[-2])
    return _channels_back(y, data_format)


def conv_transpose(inputs, kernel, strides=1, padding="valid", output_padding=None, data_format=None,
                   dilation_rate=1):
    """N-D transposed convolution (``keras.ops.conv_transpose``), the input-gradient of :func:`conv`:
    ``kernel`` ``(*k, filters, C)``; output sizes as Keras's (see :mod:`lamina.conv_variant_kernels`)."""
    x, strides, padding, dilation, data_format = _conv_variant_args(
        "conv_transpose", inputs, kernel, strides, padding, data_format, dilation_rate)
    if output_padding is not None:
        extra = (output_padding,) * len(strides) if isinstance(output_padding, (int, np.integer)) else output_padding
        extra = tuple(extra)
        if len(extra) != len(strides) or builtins.any(int(v) != v or v < 0 for v in extra):
            raise ValueError(f"`conv_transpose`: `output_padding` must be None, a non-negative int or "
                             f"{len(strides)} of them. Received: output_padding={output_padding}")
        output_padding = tuple(int(v) for v in extra)
    y = conv_variant_kernels.conv_transpose(x, kernel, strides, padding, output_padding, dilation)
    return _channels_back(y, data_format)


# ----------------------------------------------------------------------------- nan-ignoring reductions
# Each treats nan entries as absent; a slice that is all nan gives what NumPy gives (nan, or 0 for a
# sum, 1 for a product, -1 for an arg-extreme) without warnings, and nan entries get no gradient.


def _nan_mask(x):
    return np.isnan(np.asarray(unwrap(x)))


def nansum(x, axis=None, keepdims=False):
    """The sum over ``axis`` of the entries that are not nan."""
    return sum(where(_nan_mask(x), 0, x), axis=axis, keepdims=keepdims)


def nanprod(x, axis=None, keepdims=False):
    """The product over ``axis`` of the entries that are not nan."""
    return prod(where(_nan_mask(x), 1, x), axis=axis, keepdims=keepdims)


def nancumsum(x, axis=None, dtype=None):
    """Running sums along ``axis`` with nan counted as 0."""
    return cumsum(where(_nan_mask(x), 0, x), axis=axis, dtype=dtype)


def nancumprod(x, axis=None, dtype=None):
    """Running products along ``axis`` with nan counted as 1."""
    return cumprod(where(_nan_mask(x), 1, x), axis=axis, dtype=dtype)


def _nan_count(x, axis, keepdims):
    return np.sum(~_nan_mask(x), axis=_axes(axis), keepdims=keepdims)


def nanmean(x, axis=None, keepdims=False):
    """The mean over ``axis`` of the entries that are not nan (nan for an all-nan slice)."""
    x = _as_float_input(x)
    count = _nan_count(x, axis, keepdims)
    total = nansum(x, axis=axis, keepdims=keepdims)
    dt = np.asarray(unwrap(total)).dtype
    out = divide(total, np.maximum(count, 1).astype(dt))
    return where(count == 0, np.asarray(np.nan, dt), out)


def nanvar(x, axis=None, keepdims=False):
    """The population variance over ``axis`` of the entries that are not nan."""
    x = _as_float_input(x)
    mask = _nan_mask(x)
    mu = nanmean(x, axis=axis, keepdims=True)
    d = where(mask, 0, subtract(x, where(np.isnan(np.asarray(unwrap(mu))), 0, mu)))
    count = _nan_count(x, axis, keepdims)
    dt = np.asarray(unwrap(d)).dtype
    out = divide(sum(square(d), axis=axis, keepdims=keepdims), np.maximum(count, 1).astype(dt))
    return where(count == 0, np.asarray(np.nan, dt), out)


def nanstd(x, axis=None, keepdims=False):
    """``sqrt(nanvar(x))``; as :func:`std`, its gradient is 0 where the spread is 0."""
    v = nanvar(x, axis=axis, keepdims=keepdims)
    vv = np.asarray(unwrap(v))
    positive = vv > 0
    root = sqrt(where(positive, v, np.asarray(1, vv.dtype)))
    return where(positive | np.isnan(vv), where(np.isnan(vv), v, root), np.asarray(0, vv.dtype))


def _nan_extreme(fn, fill, x, axis, keepdims):
    axis = _axes(axis)
    x = _as_float_input(x)
    mask = _nan_mask(x)
    dt = np.asarray(unwrap(x)).dtype
    out = fn(where(mask, np.asarray(fill, dt), x), axis=axis, keepdims=keepdims)
    return where(np.all(mask, axis=axis, keepdims=keepdims), np.asarray(np.nan, dt), out)


def nanmax(x, axis=None, keepdims=False):
    """The maximum over ``axis`` ignoring nan (nan for an all-nan slice); ties share the gradient."""
    return _nan_extreme(max, -np.inf, x, axis, keepdims)


def nanmin(x, axis=None, keepdims=False):
    """The minimum over ``axis`` ignoring nan (nan for an all-nan slice)."""
    return _nan_extreme(min, np.inf, x, axis, keepdims)


def _nan_arg(fn, fill, x, axis, keepdims):
    xv = _float_of(unwrap(x))
    mask = np.isnan(xv)
    out = fn(np.where(mask, fill, xv), axis=axis, keepdims=keepdims).astype(np.int32)
    return np.where(np.all(mask, axis=axis, keepdims=keepdims), np.int32(-1), out)


def nanargmax(x, axis=None, keepdims=False):
    """The index of the largest entry ignoring nan (int32; -1 for an all-nan slice)."""
    return _nan_arg(np.argmax, -np.inf, x, axis, keepdims)


def nanargmin(x, axis=None, keepdims=False):
    """The index of the smallest entry ignoring nan (int32; -1 for an all-nan slice)."""
    return _nan_arg(np.argmin, np.inf, x, axis, keepdims)



def _nan_sorted_quantile(x, q, axis, method, keepdims, op):
    """:func:`quantile` over the entries that are not nan: each slice's own count sets its positions
    (nan sorts last, so the first ``count`` sorted entries are the numbers)."""
    if method not in _QUANTILE_METHODS:
        raise ValueError(f"`{op}`: argument `method` must be one of {_QUANTILE_METHODS}. Received: method={method!r}")
    qv = np.asarray(unwrap(q), dtype=np.float64)
    if np.any((qv < 0) | (qv > 1)):
        raise ValueError(f"`{op}`: argument `q` must lie in [0, 1]. Received: q={qv.tolist()}")
    x = _as_float_input(x)
    nd = ndim(x)
    axes = _norm_axis(axis, nd)
    rest = [a for a in range(nd) if a not in axes]
    flat = reshape(transpose(x, rest + list(axes)) if nd else x, tuple(shape(x)[a] for a in rest) + (-1,))
    srt = sort(flat, axis=-1)
    count = np.sum(~np.isnan(np.asarray(unwrap(flat))), axis=-1)  # per slice
    dt = np.asarray(unwrap(srt)).dtype
    outs = []
    for qi in qv.reshape(-1):
        lo, hi, frac = _quantile_weights(qi, np.maximum(count, 1), method)
        lo_v = take_along_axis(srt, lo[..., None], axis=ndim(srt) - 1)
        hi_v = take_along_axis(srt, hi[..., None], axis=ndim(srt) - 1)
        val = add(multiply(lo_v, (1 - frac)[..., None].astype(dt)), multiply(hi_v, frac[..., None].astype(dt)))
        outs.append(where((count == 0)[..., None], np.asarray(np.nan, dt), val))  # all nan: nan
    out = concatenate(outs, axis=-1)  # q along the last axis
    if keepdims:
        kshape = tuple(1 if a in axes else shape(x)[a] for a in range(nd))
        out = reshape(moveaxis(out, -1, 0), (len(outs),) + kshape)
    else:
        out = moveaxis(out, -1, 0)
    return reshape(out, shape(out)[1:]) if qv.ndim == 0 else out


def nanquantile(x, q, axis=None, method="linear", keepdims=False):
    """:func:`quantile` ignoring nan entries (nan for an all-nan slice)."""
    return _nan_sorted_quantile(x, q, axis, method, keepdims, "nanquantile")


def nanpercentile(x, q, axis=None, method="linear", keepdims=False):
    """:func:`nanquantile` with ``q`` in percent ([0, 100])."""
    return _nan_sorted_quantile(x, np.divide(unwrap(q), 100.0), axis, method, keepdims, "nanpercentile")


def nanmedian(x, axis=None, keepdims=False):
    """The median over ``axis`` ignoring nan entries (nan for an all-nan slice)."""
    return _nan_sorted_quantile(x, 0.5, axis, "linear", keepdims, "nanmedian")


def segment_prod(data, segment_ids, num_segments=None, sorted=False):
    """The elementwise product of the rows that share a segment id (1 for an empty segment). The
    gradient of a row is ``g`` times the product of the *other* rows of its segment, counted without
    division, so it is exact where an entry is 0."""
    ids, n = _segment_ids("segment_prod", data, segment_ids, num_segments)
    dv = np.asarray(unwrap(data))
    keep = (ids >= 0) & (ids < n)
    out = np.ones((n,) + dv.shape[1:], dtype=dv.dtype)
    np.multiply.at(out, ids[keep], dv[keep])

    def vjp(g):
        full = np.zeros(dv.shape, dtype=np.asarray(g).dtype)
        for seg in np.unique(ids[keep]):
            rows = np.nonzero(ids == seg)[0]
            block = dv[rows]
            ones_ = np.ones((1,) + block.shape[1:], block.dtype)
            before = np.cumprod(np.concatenate([ones_, block[:-1]]), axis=0)
            after = np.flip(np.cumprod(np.concatenate([ones_, np.flip(block, 0)[:-1]]), axis=0), 0)
            full[rows] = g[seg] * before * after
        return (full,)

    return record(out, (data,), vjp)


# ----------------------------------------------------------------------------- more array functions


def diff(a, n=1, axis=-1):
    """The ``n``-th discrete difference along ``axis``: ``a[i + 1] - a[i]``, applied ``n`` times."""
    n = _check_int("diff", "n", n)
    if n < 0:
        raise ValueError(f"`diff`: argument `n` must be non-negative. Received: n={n}")
    axis = _check_axis("diff", axis, ndim(a))
    lead = (builtins.slice(None),) * axis
    for _ in range(n):
        a = subtract(getitem(a, lead + (builtins.slice(1, None),)), getitem(a, lead + (builtins.slice(None, -1),)))
    return a


def trapezoid(y, x=None, dx=1.0, axis=-1):
    """The integral of ``y`` along ``axis`` by the trapezoidal rule, at sample points ``x`` (1-D or
    ``y``'s shape) or spacing ``dx``."""
    y = _as_float_input(y)
    axis = _check_axis("trapezoid", axis, ndim(y))
    lead = (builtins.slice(None),) * axis
    upper = getitem(y, lead + (builtins.slice(1, None),))
    mids = multiply(add(upper, getitem(y, lead + (builtins.slice(None, -1),))), 0.5)
    if x is None:
        steps = dx
    elif ndim(x) == 1:
        steps = _along(diff(x), axis, ndim(y))
    else:
        steps = diff(x, axis=axis)
    return sum(multiply(mids, steps), axis=axis)


def vander(x, N=None, increasing=False):
    """The Vandermonde matrix of the 1-D ``x``: columns ``x ** (N-1), ..., x, 1`` (reversed when
    ``increasing``), ``N = len(x)`` by default."""
    if ndim(x) != 1:
        raise ValueError(f"`vander`: `x` must be 1-D. Received: x.shape={shape(x)}")
    N = shape(x)[0] if N is None else _check_int("vander", "N", N)
    powers = np.arange(N) if increasing else np.arange(N - 1, -1, -1)
    xv = np.asarray(unwrap(x))
    return power(expand_dims(x, 1), powers.astype(xv.dtype if np.issubdtype(xv.dtype, np.floating) else np.int64))


def corrcoef(x):
    """The Pearson correlation matrix of the rows of ``x`` (each row a variable, ``np.corrcoef``)."""
    x = _as_float_input(x)
    x2 = x if ndim(x) == 2 else reshape(x, (1, -1))
    c = subtract(x2, mean(x2, axis=1, keepdims=True))
    cov = matmul(c, transpose(c))
    d = sqrt(diagonal(cov))
    return clip(divide(divide(cov, expand_dims(d, 1)), expand_dims(d, 0)), -1.0, 1.0)


_CORRELATE_MODES = ("valid", "same", "full")


def correlate(x1, x2, mode="valid"):
    """The cross-correlation ``out[k] = sum_n x1[n + k] x2[n]`` of two 1-D arrays (``np.correlate``,
    ``mode`` ``valid``, ``same`` or ``full``)."""
    if mode not in _CORRELATE_MODES:
        raise ValueError(f"`correlate`: argument `mode` must be one of {_CORRELATE_MODES}. Received: mode={mode!r}")
    if ndim(x1) != 1 or ndim(x2) != 1:
        raise ValueError(f"`correlate`: inputs must be 1-D. Received: x1.shape={shape(x1)}, x2.shape={shape(x2)}")
    n, m = shape(x1)[0], shape(x2)[0]
    if m > n:  # NumPy swaps the operands and reverses the result
        return flip(correlate(x2, x1, mode), 0)
    left = {"valid": 0, "same": m // 2, "full": m - 1}[mode]
    right = {"valid": 0, "same": m - 1 - m // 2, "full": m - 1}[mode]
    padded = pad(x1, ((left, right),))
    windows = n + left + right - m + 1
    idx = np.arange(windows)[:, None] + np.arange(m)[None, :]
    return matmul(take(padded, idx, axis=0), x2)


def cdist(x, y):
    """The Euclidean distances between the rows of ``x`` (``(..., m, d)``) and of ``y``
    (``(..., n, d)``), shape ``(..., m, n)``; the gradient at a zero distance is 0."""
    if ndim(x) < 2 or ndim(y) < 2:
        raise ValueError(f"`cdist`: inputs must have rank >= 2. Received: x.shape={shape(x)}, y.shape={shape(y)}")
    if shape(x)[-1] != shape(y)[-1]:
        raise ValueError(f"`cdist`: the last axes must match. Received: x.shape={shape(x)}, y.shape={shape(y)}")
    return norm(subtract(expand_dims(x, -2), expand_dims(y, -3)), axis=-1)


def unravel_index(indices, shape):
    """The coordinates in an array of ``shape`` of flat ``indices``, one int32 array per axis."""
    return tuple(i.astype(np.int32) for i in np.unravel_index(np.asarray(unwrap(indices)), tuple(shape)))


def histogram(x, bins=10, range=None):
    """Counts of ``x``'s entries in ``bins`` equal bins over ``range`` (default: its min to max), and
    the ``bins + 1`` edges (``np.histogram``). No gradient."""
    xv = np.asarray(unwrap(x))
    if xv.ndim != 1:
        raise ValueError(f"`histogram`: `x` must be 1-D. Received: x.shape={xv.shape}")
    bins = _check_int("histogram", "bins", bins)
    if bins < 1:
        raise ValueError(f"`histogram`: argument `bins` must be positive. Received: bins={bins}")
    counts, edges = np.histogram(xv, bins=bins, range=range)
    return counts.astype(xv.dtype if np.issubdtype(xv.dtype, np.floating) else backend.floatx()), edges


def _window(op, fn, x, *args):
    value = unwrap(x)
    n = _check_int(op, "x", value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value)
    return fn(n, *args).astype(backend.floatx())


def bartlett(x):
    """The Bartlett (triangular) window of ``x`` points, floatx."""
    return _window("bartlett", np.bartlett, x)


def blackman(x):
    """The Blackman window of ``x`` points, floatx."""
    return _window("blackman", np.blackman, x)


def hamming(x):
    """The Hamming window of ``x`` points, floatx."""
    return _window("hamming", np.hamming, x)


def hanning(x):
    """The Hann window of ``x`` points, floatx."""
    return _window("hanning", np.hanning, x)


def kaiser(x, beta):
    """The Kaiser window of ``x`` points with shape ``beta``, floatx."""
    return _window("kaiser", np.kaiser, x, float(unwrap(beta)))


# ----------------------------------------------------------------------------- complex parts
# lamina's arrays are real: these are the identities NumPy gives for real inputs (values for
# complex inputs are NumPy's; gradients are for real inputs only).


def real(x):
    """The real part (``x`` itself for a real input)."""
    return record(np.real(unwrap(x)), (x,), lambda g: (g,))


def imag(x):
    """The imaginary part (zeros for a real input). No gradient."""
    return np.imag(unwrap(x))


def conjugate(x):
    """The complex conjugate (``x`` itself for a real input)."""
    return record(np.conjugate(unwrap(x)), (x,), lambda g: (g,))


conj = conjugate


def angle(x):
    """The argument of each entry in radians (pi for a negative real, 0 otherwise); floating. No
    gradient."""
    xv = np.asarray(unwrap(x))
    return np.angle(xv if np.iscomplexobj(xv) else _float_of(xv)).astype(
        xv.dtype if np.issubdtype(xv.dtype, np.floating) else np.dtype(backend.floatx()))


# ----------------------------------------------------------------------------- special functions


def erfinv(x):
    """The inverse error function on [-1, 1] (``+-inf`` at ``+-1``, nan outside), to float32
    precision or better: Giles' rational approximation refined by two Newton steps on
    :func:`lamina.special.erf` in float64. Derivative ``sqrt(pi)/2 exp(erfinv(x)^2)``."""
    xv = _float_of(unwrap(x))
    x64 = xv.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = -np.log((1.0 - x64) * (1.0 + x64))
        small = w < 5.0
        ws = np.where(small, w - 2.5, np.sqrt(np.where(small, 5.0, w)) - 3.0)
        p_small = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
                   -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)
        p_big = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
                 -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)
        coeffs = np.where(small[..., None], p_small, p_big)
        p = np.zeros_like(ws)
        for k in range(9):
            p = p * ws + coeffs[..., k]
        y = p * x64
        inner = np.abs(x64) < 1
        for _ in range(2):  # Newton on erf(y) - x: erf' = 2/sqrt(pi) exp(-y^2)
            step = (special.erf(y) - x64) / (special.TWO_OVER_SQRT_PI * np.exp(-y * y))
            y = np.where(inner, y - step, y)
        y = np.where(np.abs(x64) == 1, np.copysign(np.inf, x64), np.where(np.abs(x64) > 1, np.nan, y))
    out = y.astype(xv.dtype)

    def vjp(g):
        with np.errstate(over="ignore"):
            return (g * (np.exp(y * y) / special.TWO_OVER_SQRT_PI).astype(xv.dtype),)

    return record(out, (x,), vjp)


# ----------------------------------------------------------------------------- nn: crossentropies
# Per-example values, no reduction over the batch (the losses in :mod:`lamina.losses` reduce).


def binary_crossentropy(target, output, from_logits=False):
    """``-(t log p + (1 - t) log(1 - p))`` elementwise, ``p`` clipped to ``[eps, 1 - eps]``; with
    ``from_logits``, ``max(z, 0) - z t + log(1 + exp(-|z|))`` (no overflow), whose gradient
    ``sigmoid(z) - t`` is exact at ``z = 0`` too."""
    if shape(target) != shape(output):
        raise ValueError(f"Arguments `target` and `output` must have the same shape. "
                         f"Received: target.shape={shape(target)}, output.shape={shape(output)}")
    output = _as_float_input(output)
    dt = np.asarray(unwrap(output)).dtype
    if not from_logits:
        eps = backend.epsilon()
        p = clip(output, eps, 1.0 - eps)
        t = target if np.asarray(unwrap(target)).dtype == dt else cast(target, dt.name)
        return negative(add(multiply(t, log(p)), multiply(subtract(1.0, t), log(subtract(1.0, p)))))
    z = np.asarray(unwrap(output))
    t = np.asarray(unwrap(target)).astype(dt)
    out = (np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).astype(dt)
    return record(out, (target, output), lambda g: (-g * z, g * (activations.sigmoid(z) - t)))


def categorical_crossentropy(target, output, from_logits=False, axis=-1):
    """``-sum(t log p)`` over ``axis``: ``p = output / sum(output)`` clipped to ``[eps, 1 - eps]``,
    or ``log_softmax(output)`` with ``from_logits``."""
    if shape(target) != shape(output):
        raise ValueError(f"Arguments `target` and `output` must have the same shape. "
                         f"Received: target.shape={shape(target)}, output.shape={shape(output)}")
    if ndim(target) < 1:
        raise ValueError(f"Arguments `target` and `output` must be at least rank 1. "
                         f"Received: target.shape={shape(target)}, output.shape={shape(output)}")
    log_prob = _log_probabilities(_as_float_input(output), from_logits, axis)
    dt = np.asarray(unwrap(log_prob)).dtype
    t = target if np.asarray(unwrap(target)).dtype == dt else cast(target, dt.name)
    return negative(sum(multiply(t, log_prob), axis=axis))


def _log_probabilities(output, from_logits, axis):
    if from_logits:
        return log_softmax(output, axis=axis)
    eps = backend.epsilon()
    return log(clip(divide(output, sum(output, axis=axis, keepdims=True)), eps, 1.0 - eps))


def sparse_categorical_crossentropy(target, output, from_logits=False, axis=-1):
    """:func:`categorical_crossentropy` with integer class ids as ``target`` (a trailing size-1 class
    axis is dropped); ``-log p[target]``."""
    t = np.asarray(unwrap(target)).astype(np.int64)
    if ndim(output) < 1:
        raise ValueError(f"Argument `output` must be at least rank 1. Received: output.shape={shape(output)}")
    ax = _check_axis("sparse_categorical_crossentropy", axis, ndim(output))
    if t.ndim == ndim(output) and t.shape[ax] == 1:
        t = np.squeeze(t, ax)
    expected = shape(output)[:ax] + shape(output)[ax + 1:]
    if t.shape != expected:
        raise ValueError(f"Arguments `target` and `output` must have the same shape up until the last dimension: "
                         f"target.shape={t.shape}, output.shape={shape(output)}")
    n = shape(output)[ax]
    if t.size and (t.min() < 0 or t.max() >= n):
        raise ValueError(f"`sparse_categorical_crossentropy`: class ids must lie in [0, {n}). "
                         f"Received: target values from {t.min()} to {t.max()}")
    log_prob = _log_probabilities(_as_float_input(output), from_logits, ax)
    return negative(squeeze(take_along_axis(log_prob, np.expand_dims(t, ax), axis=ax), ax))



def dot_product_attention(query, key, value, bias=None, mask=None, scale=None, is_causal=False,
                          flash_attention=None, attn_logits_soft_cap=None):
    """Scaled dot-product attention on ``(batch, length, heads, head_dim)`` inputs:
    ``softmax(q k^T * scale + bias) v`` per head, ``scale = 1 / sqrt(head_dim)`` by default. A bool
    ``mask`` (broadcast to ``(batch, heads, q_len, kv_len)``, True = attend) and ``is_causal`` (query
    ``i`` sees keys ``<= i``) set the excluded logits to a large negative number, as Keras; fewer
    key/value heads than query heads are shared by groups. ``attn_logits_soft_cap`` maps the logits
    to ``cap * tanh(logits / cap)``. ``flash_attention=True`` is refused (no such kernel here)."""
    if flash_attention:
        raise ValueError("`dot_product_attention`: flash attention is not available on NumPy. "
                         "Received: flash_attention=True")
    if ndim(query) != 4 or ndim(key) != 4 or ndim(value) != 4:
        raise ValueError(f"`dot_product_attention` only supports 4D inputs. Received: query.shape={shape(query)}, "
                         f"key.shape={shape(key)}, value.shape={shape(value)}.")
    if bias is not None and mask is not None:
        raise ValueError("Only one of `bias` and `mask` can be provided. Received both.")
    n_q, n_kv = shape(query)[2], shape(key)[2]
    if n_q % n_kv:
        raise ValueError(f"`dot_product_attention`: the query heads ({n_q}) must be a multiple of the key/value "
                         f"heads. Received: key.shape={shape(key)}")
    if n_kv != n_q:
        key, value = repeat(key, n_q // n_kv, axis=2), repeat(value, n_q // n_kv, axis=2)
    query, key, value = _as_float_input(query), _as_float_input(key), _as_float_input(value)
    dt = np.asarray(unwrap(query)).dtype
    s = (1.0 / np.sqrt(shape(query)[-1])) if scale is None else float(unwrap(scale))
    logits = multiply(einsum("btnh,bsnh->bnts", query, key), np.asarray(s, dt))
    if attn_logits_soft_cap is not None:
        cap = np.asarray(attn_logits_soft_cap, dt)
        logits = multiply(tanh(divide(logits, cap)), cap)
    if bias is not None:
        logits = add(logits, bias)
    keep = None if mask is None else np.asarray(unwrap(mask)).astype(bool)
    if is_causal:
        causal = np.tril(np.ones((shape(query)[1], shape(key)[1]), bool))
        keep = causal if keep is None else keep & causal
    if keep is not None:
        large_negative = np.asarray(-0.7 * (65500.0 if dt == np.float16 else 3.38953e38), dt)
        logits = where(np.broadcast_to(keep, shape(logits)), logits, large_negative)
    weights = softmax(logits, axis=-1)
    return einsum("bnts,bsnh->btnh", weights, value)


# ----------------------------------------------------------------------------- function transforms


def _torch_style_grad(grad_fn) -> bool:
    """Is ``grad_fn`` written ``grad_fn(*args, upstream)`` (torch) rather than ``grad_fn(upstream)``?"""
    params = inspect.signature(grad_fn).parameters.values()
    if builtins.any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) != 1


def custom_gradient(f):
    """Decorator: ``f(*args)`` returns ``(output, grad_fn)`` and the decorated function returns
    ``output``, whose gradient is ``grad_fn``'s instead of the one its ops would record. ``grad_fn``
    is called as ``grad_fn(*args, upstream=g)`` when it accepts ``upstream`` (Keras's torch
    convention) and as ``grad_fn(g)`` otherwise (JAX/TensorFlow), and returns one gradient per
    argument (a single one for one argument). Inside ``f`` nothing is recorded."""

    def wrapped(*args):
        with stop_recording():  # f's own ops must not be differentiated: grad_fn replaces them
            out, grad_fn = f(*[unwrap(a) for a in args])
        out = unwrap(out)
        takes_upstream = _torch_style_grad(grad_fn)

        def vjp(g):
            with stop_recording():
                grads = grad_fn(*[unwrap(a) for a in args], upstream=g) if takes_upstream else grad_fn(g)
            grads = tuple(grads) if isinstance(grads, (tuple, list)) else (grads,)
            if len(grads) != len(args):
                raise ValueError(f"`custom_gradient`: `grad_fn` must return one gradient per argument ({len(args)}). "
                                 f"Received: {len(grads)} gradients")
            return tuple(None if gr is None else unwrap(gr) for gr in grads)

        return record(out, tuple(args), vjp)

    wrapped.__name__ = getattr(f, "__name__", "custom_gradient")
    wrapped.__doc__ = getattr(f, "__doc__", None)
    return wrapped


def vectorize(pyfunc, *, excluded=None, signature=None):
    """``pyfunc`` applied entry by entry over its broadcast array arguments (``np.vectorize``
    without a ``signature``; arguments whose position or name is in ``excluded`` pass through).
    Gradients flow through ``pyfunc``'s ops."""
    if signature is not None:
        raise ValueError(f"`vectorize`: a `signature` is not supported. Received: signature={signature!r}")
    excluded = set(excluded or ())

    def wrapped(*args, **kwargs):
        pos = [i for i in range(len(args)) if i not in excluded]
        names = [k for k in kwargs if k not in excluded]
        arrays = [args[i] for i in pos] + [kwargs[k] for k in names]
        out_shape = np.broadcast_shapes(*[shape(a) for a in arrays]) if arrays else ()
        flat = [ravel(broadcast_to(a, out_shape)) for a in arrays]
        results = []
        for j in range(int(np.prod(out_shape))):
            a2, k2 = list(args), dict(kwargs)
            for slot, col in zip(pos + names, flat):
                item = getitem(col, j)
                if isinstance(slot, int):
                    a2[slot] = item
                else:
                    k2[slot] = item
            results.append(pyfunc(*a2, **k2))
        if not results:
            return np.zeros(out_shape, dtype=backend.floatx())
        return reshape(stack(results), out_shape)

    return wrapped


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
    cls.__floordiv__ = lambda a, b: floor_divide(a, b)
    cls.__rfloordiv__ = lambda a, b: floor_divide(b, a)
    cls.__mod__ = lambda a, b: mod(a, b)
    cls.__rmod__ = lambda a, b: mod(b, a)
    # &, |, ^, ~ on bool (logical) or integer (bitwise) values, as NumPy and Keras tensors do.
    cls.__and__ = cls.__rand__ = lambda a, b: np.bitwise_and(unwrap(a), unwrap(b))
    cls.__or__ = cls.__ror__ = lambda a, b: np.bitwise_or(unwrap(a), unwrap(b))
    cls.__xor__ = cls.__rxor__ = lambda a, b: np.bitwise_xor(unwrap(a), unwrap(b))
    cls.__invert__ = lambda a: np.invert(unwrap(a))
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
