"""Every activation of ``keras.activations``, with Keras's formulas, argument names and defaults.

Each function takes an array, list, Tensor or Variable. Outside a :class:`~lamina.GradientTape` it
returns a plain ``ndarray`` (no graph); under a tape it records one node with a hand-derived
vector-Jacobian product, so an activation costs one graph node however many NumPy calls it makes.

Dtypes: a floating input keeps its dtype (float32 in, float32 out; float64 in, float64 out);
integer and boolean inputs and Python numbers become ``floatx()``. A few activations whose float32
formula would cancel (``gelu``, ``mish``, ``tanh_shrink``, ``sparsemax``, ``squareplus``) evaluate
in float64 and round once, so they are accurate to the last bit or two of float32.

Numerics: inputs of +-1e4 give finite results and raise no NumPy floating-point warnings (even
under ``np.errstate(all="raise")``), except ``exponential(x)``, which is ``inf`` where ``exp(x)``
exceeds the dtype's range (x > 88.7 in float32), silently as in Keras.

Non-finite inputs: NaN stays NaN in every activation (a vector activation makes the whole slice
NaN, as softmax does). ``+-inf`` gives what Keras gives: the limit where the formula reaches it
(``relu(inf) = inf``, ``sigmoid(-inf) = 0``) and NaN where it meets ``inf - inf``, ``0 * inf`` or
``inf / inf`` (``silu(-inf)``, ``softsign(+-inf)``, a softmax slice holding ``+inf``), with two
exceptions where lamina keeps the limit: ``gelu(+inf) = inf`` (Keras's torch kernel gives NaN,
its NumPy backend's formula inf) and ``squareplus(-inf) = 0`` (Keras's formula cancels there, as it
does for large negative finite x). None of this raises a NumPy warning.

Kinks: the derivative at a kink is the one-sided value that is zero where one side is zero:
``relu'(0) = 0``, ``relu6'(0) = relu6'(6) = 0``, ``hard_tanh'(+-1) = 0``, ``hard_sigmoid'(+-3) = 0``,
``sparse_sigmoid'(+-1) = 0``, ``hard_shrink'(+-t) = soft_shrink'(+-t) = 0``, ``threshold'(t) = 0``;
``leaky_relu'(0)`` is the negative slope and ``elu'(0) = alpha`` (the left branch, as at relu).

``FUSED`` maps an activation whose derivative is a function of its output to a pair
``(forward_inplace(z) -> y, grad_from_output(y, g) -> dz)``, for layers that fuse
matmul + bias + activation into one graph node (see the ``FUSED`` comment below).
"""

from __future__ import annotations

import difflib
import math
import types
import warnings
from collections.abc import Callable

import numpy as np

from lamina import backend, special
from lamina.autodiff import Tensor, Variable, record, unwrap
from lamina.saving.object_config import deserialize_layer, serialize_function, serialize_value
from lamina.saving.object_registry import builtin_objects, get_registered_object

__all__ = [
    "FUSED",
    "celu",
    "deserialize",
    "elu",
    "exponential",
    "gelu",
    "get",
    "glu",
    "hard_shrink",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "hard_tanh",
    "leaky_relu",
    "linear",
    "log_sigmoid",
    "log_softmax",
    "mish",
    "relu",
    "relu6",
    "selu",
    "serialize",
    "sigmoid",
    "silu",
    "soft_shrink",
    "softmax",
    "softplus",
    "softsign",
    "sparse_plus",
    "sparse_sigmoid",
    "sparsemax",
    "squareplus",
    "swish",
    "tanh",
    "tanh_shrink",
    "threshold",
]

# SELU's constants (Klambauer et al., 2017), to double precision.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

# ----------------------------------------------------------------------------- helpers


def _floating(x) -> np.ndarray:
    """The array behind ``x``, as a floating ndarray (ints, bools and Python numbers -> floatx)."""
    v = unwrap(x)
    if type(v) is np.ndarray and v.dtype.kind == "f":
        return v
    v = np.asarray(v)
    if v.dtype.kind != "f" or (v.dtype == np.float64 and not isinstance(unwrap(x), (np.ndarray, np.generic))):
        v = v.astype(backend.floatx())
    return v


def _array(out, dtype) -> np.ndarray:
    """``out`` as an ndarray of ``dtype`` (NumPy turns 0-d results into scalars; undo that)."""
    if type(out) is not np.ndarray or out.dtype != dtype:
        out = np.asarray(out, dtype=dtype)
    return out


def _unary(x, forward: Callable, backward: Callable):
    """Record an elementwise primitive.

    ``forward(v)`` computes the output from the floating array ``v``; ``backward(v, out, g)`` returns
    dL/dx from the upstream gradient ``g``. Gradients are cast to the input's dtype so a float32
    graph stays float32 even where the derivative is evaluated in float64.
    """
    v = _floating(x)
    if v.ndim == 0:
        # NumPy returns scalars (not 0-d arrays) from 0-d arithmetic, which breaks ``out=`` calls:
        # run a 0-d input as shape (1,) and give the shape back.
        v1 = v.reshape(1)
        out = _array(forward(v1), v.dtype).reshape(())

        def vjp0(g):
            return (_array(backward(v1, out.reshape(1), np.reshape(g, 1)), v.dtype).reshape(()),)

        return record(out, (x,), vjp0)
    out = _array(forward(v), v.dtype)

    def vjp(g):
        return (_array(backward(v, out, g), v.dtype),)

    return record(out, (x,), vjp)


def _check_number(fn: str, name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        expected = "a number or None" if allow_none else "a number"
        raise TypeError(f"{fn}: `{name}` must be {expected}. Received: {name}={value!r}")


def _check_axis(fn: str, v: np.ndarray, axis, allow_multi: bool = False):
    """Validate ``axis`` for an input of ``v``'s rank; returns it normalised (non-negative)."""
    nd = v.ndim
    if nd == 0:
        raise ValueError(f"{fn} needs an input of rank >= 1 to apply along an axis. Received: a scalar input")
    if allow_multi and axis is None:
        return None
    axes = axis if (allow_multi and isinstance(axis, (tuple, list))) else (axis,)
    out = []
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or not -nd <= a < nd:
            raise ValueError(
                f"{fn}: `axis` must be an integer in [{-nd}, {nd}) for an input of rank {nd}"
                f"{' (or a tuple of such, or None)' if allow_multi else ''}. "
                f"Received: axis={axis!r} for an input of shape {v.shape}"
            )
        out.append(int(a) % nd)
    if len(set(out)) != len(out):
        raise ValueError(f"{fn}: `axis` repeats an axis. Received: axis={axis!r}")
    return tuple(out) if isinstance(axis, (tuple, list)) else out[0]


# ----------------------------------------------------------------------------- kernels
# Shared by the public functions and by FUSED; ``out`` may be ``x`` itself (in-place use).


def _relu_into(x, out):
    return np.maximum(x, 0, out=out)


def _sigmoid_into(x, out):
    # 1 / (1 + exp(-x)): for x << 0 exp(-x) overflows to inf and the result is the correct 0; for
    # x >> 0 it underflows to 0 and the result is 1. Both are exact limits, so the flags are muted.
    # Unlike (1 + tanh(x/2)) / 2 this keeps full relative precision in the left tail.
    with np.errstate(over="ignore", under="ignore"):
        np.negative(x, out=out)
        np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


def _tanh_into(x, out):
    return np.tanh(x, out=out)


def _softmax_into(x, axis, out):
    # Shift by the max so exp never overflows; initial=-inf lets an empty axis pass through.
    # ndarray methods rather than np.max/np.sum: same reductions without the Python wrappers,
    # which matters for single-sample inference. A slice holding +inf (or all -inf) meets
    # inf - inf: it becomes nan, as in Keras, without NumPy's invalid-value warning.
    m = x.max(axis=axis, keepdims=True, initial=-np.inf)
    with np.errstate(under="ignore", invalid="ignore"):
        np.subtract(x, m, out=out)
        np.exp(out, out=out)
    out /= out.sum(axis=axis, keepdims=True)
    return out


def _log_softmax(x, axis):
    m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    with np.errstate(under="ignore", invalid="ignore"):  # inf - inf -> nan, as in _softmax_into
        shifted = x - m
        lse = np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
    shifted -= lse
    return shifted


def _softplus(v):
    # log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow, exact for large |x|.
    with np.errstate(under="ignore"):
        return np.maximum(v, 0) + np.log1p(np.exp(-np.abs(v)))


def _sigmoid(v):
    return _sigmoid_into(v, np.empty_like(v))


def _elu(x, alpha):
    # alpha * expm1(min(x, 0)) on the negative side: the positive branch never reaches expm1, so
    # it cannot overflow (the "double where" done with one minimum).
    neg = np.expm1(np.minimum(x, 0))
    neg *= alpha
    return np.where(x > 0, x, neg)


# ----------------------------------------------------------------------------- rectifiers


def relu(x, negative_slope: float = 0.0, max_value: float | None = None, threshold: float = 0.0):
    """Rectified linear unit: ``max(x, 0)`` with the defaults.

    In general ``y = x if x > threshold else 0``, then clipped to ``[0, max_value]`` when
    ``max_value`` is given, minus ``negative_slope * max(threshold - x, 0)``. With only
    ``negative_slope`` set this is ``leaky_relu``. The gradient at each kink is 0 (relu'(0) = 0).
    """
    if negative_slope == 0.0 and max_value is None and threshold == 0.0:
        return _unary(x, lambda v: _relu_into(v, None), lambda v, out, g: g * (v > 0))
    _check_number("relu", "negative_slope", negative_slope)
    _check_number("relu", "max_value", max_value, allow_none=True)
    _check_number("relu", "threshold", threshold)
    if negative_slope != 0.0 and max_value is None and threshold == 0.0:
        return leaky_relu(x, negative_slope=negative_slope)
    slope, thr = float(negative_slope), float(threshold)
    top = None if max_value is None else float(max_value)

    def forward(v):
        y = np.where(v <= thr, 0, v) if thr != 0.0 else np.maximum(v, 0)  # NaN fails <=: stays NaN
        if top is not None:
            y = np.clip(y, 0, top)
        if slope != 0.0:
            y = y - slope * np.maximum(thr - v, 0)
        return y

    def backward(v, out, g):
        passing = v > thr
        if top is not None:
            passing &= (v > 0) & (v < top)
        d = passing.astype(v.dtype)
        if slope != 0.0:
            d += slope * (v < thr)
        return g * d

    return _unary(x, forward, backward)


def leaky_relu(x, negative_slope: float = 0.2):
    """Leaky ReLU: ``x if x > 0 else negative_slope * x``; the gradient at 0 is ``negative_slope``."""
    _check_number("leaky_relu", "negative_slope", negative_slope)
    s = float(negative_slope)
    return _unary(
        x,
        lambda v: np.where(v > 0, v, v * s),
        lambda v, out, g: g * np.where(v > 0, 1.0, s).astype(v.dtype),
    )


def relu6(x):
    """``min(max(x, 0), 6)``; the gradient is 1 on the open interval (0, 6), else 0."""
    return _unary(x, lambda v: np.clip(v, 0, 6), lambda v, out, g: g * ((v > 0) & (v < 6)))


def elu(x, alpha: float = 1.0):
    """Exponential linear unit: ``x if x > 0 else alpha * (exp(x) - 1)``.

    Evaluated with ``expm1`` on ``min(x, 0)``, so large positive inputs never reach the exponential.
    """
    _check_number("elu", "alpha", alpha)
    a = float(alpha)
    return _unary(
        x,
        lambda v: _elu(v, a),
        lambda v, out, g: g * np.where(v > 0, 1, out + a),
    )


def selu(x):
    """Scaled ELU: ``scale * elu(x, alpha)``, alpha = 1.67326324..., scale = 1.05070098..."""
    return _unary(
        x,
        lambda v: _SELU_SCALE * _elu(v, _SELU_ALPHA),
        lambda v, out, g: g * np.where(v > 0, _SELU_SCALE, out + _SELU_SCALE * _SELU_ALPHA),
    )


def celu(x, alpha: float = 1.0):
    """Continuously differentiable ELU: ``max(x, 0) + alpha * (exp(min(x, 0) / alpha) - 1)``."""
    _check_number("celu", "alpha", alpha)
    if alpha == 0:
        raise ValueError(f"celu: `alpha` must be non-zero (it divides the input). Received: alpha={alpha!r}")
    a = float(alpha)

    def forward(v):
        neg = np.minimum(v, 0) / a
        return np.maximum(v, 0) + a * np.expm1(neg)

    def backward(v, out, g):
        with np.errstate(under="ignore"):
            return g * np.where(v > 0, 1, np.exp(np.minimum(v, 0) / a))

    return _unary(x, forward, backward)


def threshold(x, threshold: float, default_value: float):
    """``x if x > threshold else default_value`` (NaN stays NaN)."""
    _check_number("threshold", "threshold", threshold)
    _check_number("threshold", "default_value", default_value)
    t, d = float(threshold), float(default_value)
    # Test the replaced side: NaN fails every comparison, so it falls through unchanged.
    return _unary(x, lambda v: np.where(v <= t, d, v), lambda v, out, g: g * (v > t))


# ----------------------------------------------------------------------------- sigmoid family


def sigmoid(x):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, relatively accurate in both tails."""
    return _unary(x, _sigmoid, lambda v, out, g: g * out * (1 - out))


def hard_sigmoid(x):
    """Piecewise-linear sigmoid: ``clip(x / 6 + 1/2, 0, 1)``; gradient 1/6 on (-3, 3)."""
    def forward(v):
        y = v / 6
        y += 0.5
        return np.clip(y, 0, 1, out=y)

    return _unary(x, forward, lambda v, out, g: g * ((v > -3) & (v < 3)) / 6)


def sparse_sigmoid(x):
    """``0 if x <= -1, 1 if x >= 1, else (x + 1) / 2``; gradient 1/2 on (-1, 1)."""
    def forward(v):
        y = v + 1
        y *= 0.5
        return np.clip(y, 0, 1, out=y)

    return _unary(x, forward, lambda v, out, g: g * ((v > -1) & (v < 1)) * 0.5)


def log_sigmoid(x):
    """``log(sigmoid(x)) = -softplus(-x) = min(x, 0) - log1p(exp(-|x|))``, finite everywhere."""
    def forward(v):
        with np.errstate(under="ignore"):
            return np.minimum(v, 0) - np.log1p(np.exp(-np.abs(v)))

    return _unary(x, forward, lambda v, out, g: g * _sigmoid(-v))


def silu(x):
    """Sigmoid linear unit (swish): ``x * sigmoid(x)``."""
    def forward(v):
        with np.errstate(invalid="ignore"):  # silu(-inf) = -inf * 0 = nan, as in Keras
            return v * _sigmoid(v)

    def backward(v, out, g):
        s = _sigmoid(v)
        with np.errstate(invalid="ignore"):  # nan at +-inf (inf * 0)
            return g * s * (1 + v * (1 - s))

    return _unary(x, forward, backward)


swish = silu


def hard_silu(x):
    """Hard swish: ``x * hard_sigmoid(x)`` = 0 below -3, x above 3, ``x (x + 3) / 6`` between."""
    def forward(v):
        y = v / 6
        y += 0.5
        np.clip(y, 0, 1, out=y)
        with np.errstate(invalid="ignore"):  # hard_silu(-inf) = -inf * 0 = nan, as in Keras
            y *= v
        return y

    def backward(v, out, g):
        return g * np.where(v < -3, 0, np.where(v > 3, 1, (2 * v + 3) / 6))

    return _unary(x, forward, backward)


hard_swish = hard_silu


def glu(x, axis: int = -1):
    """Gated linear unit: split ``x`` in halves ``a, b`` along ``axis``; ``a * sigmoid(b)``."""
    v = _floating(x)
    ax = _check_axis("glu", v, axis)
    n = v.shape[ax]
    if n % 2:
        raise ValueError(
            f"glu splits its input in two equal halves along `axis`, so that axis needs an even size. "
            f"Received: x.shape={v.shape} with axis={axis}"
        )
    a, b = np.split(v, 2, axis=ax)
    s = _sigmoid(b)
    with np.errstate(invalid="ignore"):  # +-inf * sigmoid(-inf) = inf * 0 = nan, as in Keras
        out = _array(a * s, v.dtype)

    def vjp(g):
        with np.errstate(invalid="ignore"):
            return (np.concatenate([g * s, g * a * s * (1 - s)], axis=ax).astype(v.dtype, copy=False),)

    return record(out, (x,), vjp)


# ----------------------------------------------------------------------------- smooth units


def tanh(x):
    """Hyperbolic tangent ``(e^x - e^-x) / (e^x + e^-x)``."""
    return _unary(x, lambda v: np.tanh(v), lambda v, out, g: g * (1 - out * out))


def tanh_shrink(x):
    """``x - tanh(x)``, evaluated in float64 with a Taylor series (x^3/3 - 2x^5/15 + 17x^7/315)
    near 0, where the subtraction would cancel."""
    def forward(v):
        z = v.astype(np.float64)
        with np.errstate(under="ignore"):
            z2 = z * z
            series = z * z2 * (1 / 3 + z2 * (-2 / 15 + z2 * (17 / 315)))
            return np.where(np.abs(z) < 1e-2, series, z - np.tanh(z)).astype(v.dtype)

    def backward(v, out, g):
        t = np.tanh(v)
        return g * t * t

    return _unary(x, forward, backward)


def hard_tanh(x):
    """``clip(x, -1, 1)``; the gradient is 1 on (-1, 1), else 0."""
    return _unary(x, lambda v: np.clip(v, -1, 1), lambda v, out, g: g * ((v > -1) & (v < 1)))


def softplus(x):
    """``log(1 + exp(x))`` as ``max(x, 0) + log1p(exp(-|x|))``: no overflow, no cancellation."""
    return _unary(x, _softplus, lambda v, out, g: g * _sigmoid(v))


def softsign(x):
    """``x / (1 + |x|)``; derivative ``1 / (1 + |x|)^2``."""
    def forward(v):
        with np.errstate(invalid="ignore"):  # softsign(+-inf) = inf / inf = nan, as in Keras
            return v / (1 + np.abs(v))

    def backward(v, out, g):
        d = 1 + np.abs(v)
        with np.errstate(over="ignore"):  # d * d -> inf for huge |x|: the derivative is 0
            return g / (d * d)

    return _unary(x, forward, backward)


def squareplus(x, b: float = 4):
    """``(x + sqrt(x^2 + b)) / 2``, for ``b >= 0``.

    ``sqrt(x^2 + b)`` is ``hypot(x, sqrt(b))`` (no overflow of x^2), and for x < 0, where the sum
    cancels, the equal form ``b / (2 (sqrt(x^2 + b) - x))`` is used. Evaluated in float64.
    """
    _check_number("squareplus", "b", b)
    if b < 0:
        raise ValueError(f"squareplus: `b` must be >= 0 (it sits under a square root). Received: b={b!r}")
    bb = float(b)
    root_b = math.sqrt(bb)

    def forward(v):
        z = v.astype(np.float64)
        r = np.hypot(z, root_b)
        # Only unused branches fail: z = 0 with b = 0 divides by 0 in ``neg``, and z = -inf gives
        # -inf + inf in ``pos`` and z = +inf gives inf - inf in ``neg``.
        with np.errstate(all="ignore"):
            neg = bb / (2 * (r - z))
            pos = (z + r) / 2
        return np.where(z >= 0, pos, neg).astype(v.dtype)

    def backward(v, out, g):
        z = v.astype(np.float64)
        r = np.hypot(z, root_b)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = 0.5 * (1 + z / r)
        return g * np.where(r == 0, 0.5, d)  # b = 0 leaves the derivative at 0 undefined; take 1/2

    return _unary(x, forward, backward)


def sparse_plus(x):
    """``0 if x <= -1, x if x >= 1, else (x + 1)^2 / 4``: a once-differentiable softplus."""
    def forward(v):
        q = v + 1
        q *= q
        q *= 0.25
        return np.where(v <= -1, 0, np.where(v < 1, q, v))

    return _unary(x, forward, lambda v, out, g: g * np.where(v <= -1, 0, np.where(v < 1, (v + 1) / 2, 1)))


def gelu(x, approximate: bool = False):
    """Gaussian error linear unit ``x * Phi(x)``.

    Exact (the default here, as in ``keras.activations.gelu``): ``x/2 * erfc(-x / sqrt(2))``.
    ``approximate=True``: ``x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))``, evaluated as
    ``x * sigmoid(2u)`` so the left tail does not cancel. Both run in float64 internally.
    """
    if approximate:
        def forward(v):
            z = v.astype(np.float64)
            u = _SQRT_2_OVER_PI * (z + 0.044715 * z * z * z)
            with np.errstate(invalid="ignore"):  # -inf * 0 is nan, as in Keras
                return (z * _sigmoid(2 * u)).astype(v.dtype)

        def backward(v, out, g):
            z = v.astype(np.float64)
            u = _SQRT_2_OVER_PI * (z + 0.044715 * z * z * z)
            du = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * z * z)
            s = _sigmoid(2 * u)
            with np.errstate(invalid="ignore"):  # nan at +-inf (inf * 0)
                return g * (s + z * 2 * s * (1 - s) * du)

        return _unary(x, forward, backward)

    def forward_exact(v):
        z = v.astype(np.float64)
        # -inf * 0 is nan, as in Keras; the left tail underflows to float32's exact answer, 0.
        with np.errstate(invalid="ignore", under="ignore"):
            return (z * (0.5 * special.erfc(-z * _SQRT_HALF))).astype(v.dtype)

    def backward_exact(v, out, g):
        z = v.astype(np.float64)
        with np.errstate(under="ignore"):
            pdf = _INV_SQRT_2PI * np.exp(-0.5 * z * z)
        with np.errstate(invalid="ignore"):  # -inf * 0 is nan
            return g * (0.5 * special.erfc(-z * _SQRT_HALF) + z * pdf)

    return _unary(x, forward_exact, backward_exact)


def mish(x):
    """``x * tanh(softplus(x))``.

    With ``e = exp(x)``, ``tanh(softplus(x)) = n / (n + 2)`` where ``n = e (e + 2)``: one
    exponential, no cancellation, evaluated in float64 (and exactly 1 for x > 20).
    """
    def parts(v):
        z = v.astype(np.float64)
        with np.errstate(under="ignore"):
            e = np.exp(np.minimum(z, 20.0))
        n = e * (e + 2)
        return z, e, n

    def forward(v):
        z, _, n = parts(v)
        with np.errstate(invalid="ignore"):  # mish(-inf) = -inf * 0 = nan, as in Keras
            return (z * (n / (n + 2))).astype(v.dtype)

    def backward(v, out, g):
        z, e, n = parts(v)
        t = n / (n + 2)
        one_minus_t2 = (2 / (n + 2)) * (1 + t)  # 1 - t^2 without cancellation near t = 1
        with np.errstate(invalid="ignore"):  # nan at +-inf (inf * 0)
            return g * (t + z * one_minus_t2 * (e / (1 + e)))

    return _unary(x, forward, backward)


def exponential(x):
    """``exp(x)``; ``inf`` where the true value exceeds the dtype's range, silently as in Keras."""
    def forward(v):
        with np.errstate(over="ignore", under="ignore"):
            return np.exp(v)

    return _unary(x, forward, lambda v, out, g: g * out)


def linear(x):
    """The identity: returns ``x`` unchanged."""
    return x


# ----------------------------------------------------------------------------- shrinkage


def hard_shrink(x, threshold: float = 0.5):
    """``x if |x| > threshold else 0`` (NaN stays NaN)."""
    _check_number("hard_shrink", "threshold", threshold)
    t = float(threshold)
    # Test the zeroed side: NaN fails every comparison, so it falls through unchanged.
    return _unary(x, lambda v: np.where(np.abs(v) <= t, 0, v), lambda v, out, g: g * (np.abs(v) > t))


def soft_shrink(x, threshold: float = 0.5):
    """``x - threshold if x > threshold, x + threshold if x < -threshold, else 0`` (NaN stays NaN)."""
    _check_number("soft_shrink", "threshold", threshold)
    t = float(threshold)

    def forward(v):
        # Test the zeroed side: NaN fails every comparison, so it falls through unchanged.
        return np.where(np.abs(v) <= t, 0, v - np.copysign(t, v))

    return _unary(x, forward, lambda v, out, g: g * (np.abs(v) > t))


# ----------------------------------------------------------------------------- along an axis


def softmax(x, axis: int = -1):
    """``exp(x) / sum(exp(x))`` along ``axis`` (an int, a tuple of ints, or None for all axes).

    Shift-invariant and overflow-free: the maximum is subtracted first. As Keras does, warns when
    the axis has size 1 (the output is then always 1).
    """
    v = _floating(x)
    ax = _check_axis("softmax", v, axis, allow_multi=True)
    if isinstance(ax, int) and v.shape[ax] == 1:
        warnings.warn(
            f"softmax over axis {axis} of an input of shape {v.shape}: that axis has size 1, so every "
            "output is 1. Did you mean sigmoid?",
            stacklevel=2,
        )
    out = _softmax_into(v, ax, np.empty_like(v))

    def vjp(g):
        gy = g * out
        return (gy - out * np.sum(gy, axis=ax, keepdims=True),)

    return record(out, (x,), vjp)


def log_softmax(x, axis: int = -1):
    """``x - logsumexp(x)`` along ``axis`` (an int, a tuple of ints, or None), shifted by the max."""
    v = _floating(x)
    ax = _check_axis("log_softmax", v, axis, allow_multi=True)
    out = _array(_log_softmax(v, ax), v.dtype)

    def vjp(g):
        with np.errstate(under="ignore"):
            p = np.exp(out)
        return (g - p * np.sum(g, axis=ax, keepdims=True),)

    return record(out, (x,), vjp)


def sparsemax(x, axis: int = -1):
    """Sparsemax (Martins & Astudillo, 2016): the Euclidean projection of ``x`` onto the simplex.

    ``y = max(x - tau, 0)`` with ``tau = (sum of the k largest entries - 1) / k`` and ``k`` the
    largest index with ``1 + k * x_(k) > sum of the k largest``. Outputs are >= 0 and sum to 1.
    Evaluated in float64. A ``-inf`` entry gets 0; a slice holding NaN or ``+inf``, or only ``-inf``,
    is all NaN (as in softmax). Note: Keras 3.15 sums the wrong quantity for ``tau`` whenever more than
    one entry is in the support (keras-team/keras#23425, fixed upstream); lamina follows the paper.
    The Jacobian is ``diag(s) - s s^T / k`` with ``s`` the support indicator.
    """
    v = _floating(x)
    ax = _check_axis("sparsemax", v, axis)
    z = np.moveaxis(v, ax, -1).astype(np.float64)
    n = z.shape[-1]
    if z.size == 0:
        out = np.zeros_like(v)
        support = out > 0
    else:
        # A slice holding NaN or +inf, or only -inf, has no projection: it becomes NaN, as softmax
        # makes it (those slices are computed on zeros, so no inf - inf warns). Other -inf entries
        # are simply outside the support.
        undefined = np.any(np.isnan(z) | (z == np.inf), axis=-1, keepdims=True)
        undefined |= np.all(z == -np.inf, axis=-1, keepdims=True)
        if undefined.any():
            z = np.where(undefined, 0.0, z)
        zs = -np.sort(-z, axis=-1)
        cs = np.cumsum(zs, axis=-1)
        ks = np.arange(1, n + 1, dtype=np.float64)
        k = np.sum(1 + ks * zs > cs, axis=-1, keepdims=True)  # k >= 1 always (the largest entry)
        tau = (np.take_along_axis(cs, k - 1, axis=-1) - 1) / k
        out64 = np.where(undefined, np.nan, np.maximum(z - tau, 0))
        out = np.moveaxis(out64, -1, ax).astype(v.dtype)
        support = np.moveaxis(out64 > 0, -1, ax)

    def vjp(g):
        gs = g * support
        k_eff = np.maximum(np.sum(support, axis=ax, keepdims=True), 1)
        return (gs - support * (np.sum(gs, axis=ax, keepdims=True) / k_eff).astype(gs.dtype),)

    return record(out, (x,), vjp)


# ----------------------------------------------------------------------------- fusion table
# FUSED[fn] = (forward_inplace, grad_from_output) for activations whose derivative can be written
# with the output alone, so a fused Dense node need not keep the pre-activation z:
#   forward_inplace(z) -> y      may overwrite z (and usually returns it); same values as fn(z)
#   grad_from_output(y, g) -> dz  dL/dz from the output y and upstream gradient g; g is not modified
# Only the default arguments are covered (e.g. elu with alpha=1). softmax and log_softmax act on
# the last axis, the one Dense produces.


def _fwd_relu(z):
    return _relu_into(z, z)


def _fwd_sigmoid(z):
    return _sigmoid_into(z, z)


def _fwd_tanh(z):
    return _tanh_into(z, z)


def _fwd_softmax(z):
    return _softmax_into(z, -1, z)


def _fwd_log_softmax(z):
    return _log_softmax(z, -1)


def _fwd_linear(z):
    return z


def _fwd_elu(z):
    return _elu(z, 1.0)


def _fwd_selu(z):
    y = _elu(z, _SELU_ALPHA)
    y *= _SELU_SCALE
    return y


def _fwd_leaky_relu(z):
    return np.multiply(z, np.where(z > 0, 1.0, 0.2).astype(z.dtype), out=z)


def _fwd_relu6(z):
    return np.clip(z, 0, 6, out=z)


def _fwd_hard_tanh(z):
    return np.clip(z, -1, 1, out=z)


def _fwd_hard_sigmoid(z):
    z /= 6
    z += 0.5
    return np.clip(z, 0, 1, out=z)


def _fwd_softplus(z):
    return _softplus(z)


def _fwd_exponential(z):
    with np.errstate(over="ignore", under="ignore"):
        return np.exp(z, out=z)


def _softmax_grad(y, g):
    gy = g * y
    gy -= y * np.sum(gy, axis=-1, keepdims=True)
    return gy


def _log_softmax_grad(y, g):
    with np.errstate(under="ignore"):
        p = np.exp(y)
    return g - p * np.sum(g, axis=-1, keepdims=True)


def _softplus_grad(y, g):
    # sigmoid(x) = 1 - exp(-softplus(x)) = -expm1(-y): accurate for y near 0 too.
    with np.errstate(under="ignore"):
        return g * -np.expm1(-y)


FUSED: dict[Callable, tuple[Callable, Callable]] = {
    relu: (_fwd_relu, lambda y, g: g * (y > 0)),
    sigmoid: (_fwd_sigmoid, lambda y, g: g * (y * (1 - y))),
    tanh: (_fwd_tanh, lambda y, g: g * (1 - y * y)),
    softmax: (_fwd_softmax, _softmax_grad),
    linear: (_fwd_linear, lambda y, g: g),
    log_softmax: (_fwd_log_softmax, _log_softmax_grad),
    elu: (_fwd_elu, lambda y, g: g * np.where(y > 0, 1, y + 1)),
    selu: (_fwd_selu, lambda y, g: g * np.where(y > 0, _SELU_SCALE, y + _SELU_SCALE * _SELU_ALPHA)),
    leaky_relu: (_fwd_leaky_relu, lambda y, g: g * np.where(y > 0, 1.0, 0.2).astype(y.dtype)),
    relu6: (_fwd_relu6, lambda y, g: g * ((y > 0) & (y < 6))),
    hard_tanh: (_fwd_hard_tanh, lambda y, g: g * ((y > -1) & (y < 1))),
    hard_sigmoid: (_fwd_hard_sigmoid, lambda y, g: g * ((y > 0) & (y < 1)) / 6),
    softplus: (_fwd_softplus, _softplus_grad),
    exponential: (_fwd_exponential, lambda y, g: g * y),
}


# ----------------------------------------------------------------------------- get / serialize

_BUILTINS: dict[str, Callable] = {
    fn.__name__: fn
    for fn in (
        celu, elu, exponential, gelu, glu, hard_shrink, hard_sigmoid, hard_silu, hard_tanh, leaky_relu,
        linear, log_sigmoid, log_softmax, mish, relu, relu6, selu, sigmoid, silu, soft_shrink, softmax,
        softplus, softsign, sparse_plus, sparse_sigmoid, sparsemax, squareplus, tanh, tanh_shrink,
        threshold,
    )
}
# Aliases resolve to the same function object, so serialize() writes the canonical name.
_ALL: dict[str, Callable] = {**_BUILTINS, "swish": silu, "hard_swish": hard_silu}
_NAME_OF: dict[int, str] = {id(fn): name for name, fn in _BUILTINS.items()}


def _unknown(identifier: str) -> ValueError:
    names = sorted(_ALL)
    close = difflib.get_close_matches(identifier, names, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ValueError(
        f"Unknown activation function '{identifier}'.{hint} Valid names are: {', '.join(names)}. "
        "For a custom function pass the callable itself, or register it with "
        f"`lamina.saving.register_keras_serializable()`. Received: identifier={identifier!r}"
    )


def _lookup(name: str, custom_objects: dict | None = None) -> Callable:
    # As in Keras, custom objects (argument, active scope, registry) come before the built-ins.
    obj = get_registered_object(name, custom_objects, _ALL)
    if obj is None:
        raise _unknown(name)
    return obj


def serialize(activation) -> str | dict:
    """The Keras 3 config of an activation.

    A built-in activation serializes to its name (``"relu"``; aliases to the canonical name, so
    ``swish`` gives ``"silu"``). Another named function gives Keras's function dict
    ``{"module": "builtins", "class_name": "function", "config": NAME, "registered_name": "function"}``,
    NAME being its registered name where it was registered. A callable object with ``get_config``
    gives ``{"module", "class_name", "config", "registered_name"}``.
    """
    name = _NAME_OF.get(id(activation))
    if name is not None:
        return name
    if isinstance(activation, types.FunctionType):
        if activation.__name__ == "<lambda>":
            raise ValueError(
                "serialize: a lambda has no name to save it under. Define it with `def`, pass it in "
                f"custom_objects when loading, or register it. Received: activation={activation!r}"
            )
        return serialize_function(activation)
    if callable(activation) and hasattr(activation, "get_config"):
        return serialize_value(activation)  # a layer (ReLU()) as Keras writes layers, else its class's entry
    raise ValueError(
        "serialize expects an activation function (a built-in, a named function or a callable object "
        f"with get_config). Received: activation={activation!r}"
    )


def deserialize(config, custom_objects: dict | None = None) -> Callable:
    """The activation for a config from :func:`serialize` (a name or a Keras-style dict)."""
    if isinstance(config, str):
        return _lookup(config, custom_objects)
    if isinstance(config, dict):
        if "class_name" not in config or "config" not in config:
            raise ValueError(
                "deserialize: an activation config dict needs 'class_name' and 'config' keys. "
                f"Received: config={config!r}"
            )
        if config["class_name"] == "function":
            inner = config["config"]
            if not isinstance(inner, str):
                raise ValueError(
                    "deserialize: a function config names the function with a string. "
                    f"Received: config={config!r}"
                )
            return _lookup(inner, custom_objects)
        reg = config.get("registered_name") or config["class_name"]
        try:
            cls = _lookup(reg, custom_objects)
        except ValueError:
            if _is_builtin_layer(config):  # a layer given as activation, e.g. Dense(activation=ReLU())
                return deserialize_layer(config, custom_objects)
            cls = _lookup(config["class_name"], custom_objects)
        if not isinstance(cls, type):
            return cls  # a registered function stands for itself
        if not hasattr(cls, "from_config"):
            # As Keras: a class without from_config cannot be rebuilt (its constructor may not take its config).
            raise TypeError(f"Unable to reconstruct an instance of '{config['class_name']}' because the class is "
                            f"missing a `from_config()` method. Received: config={config!r:.200}")
        return cls.from_config(config["config"] or {})
    raise ValueError(
        "deserialize expects an activation name or a config dict from serialize(). "
        f"Received: config={config!r}"
    )


def _is_builtin_layer(config: dict) -> bool:
    """Whether an activation entry names one of lamina's layers (module ``keras.layers`` or none)."""
    module = config.get("module")
    parts = module.split(".") if isinstance(module, str) else []
    from_layers = module is None or (parts[0] in ("keras", "lamina") and "layers" in parts)
    return from_layers and config["class_name"] in builtin_objects("layers")


def get(identifier) -> Callable:
    """An activation from a name, a config dict, a callable (returned as is) or None (linear)."""
    if identifier is None:
        return linear
    if isinstance(identifier, (str, dict)):
        return deserialize(identifier)
    if callable(identifier) and not isinstance(identifier, (Tensor, Variable, np.ndarray)):
        return identifier
    raise ValueError(
        "Could not interpret activation function identifier: expected a name such as 'relu', a "
        f"config dict, a callable or None. Received: identifier={identifier!r}"
    )
