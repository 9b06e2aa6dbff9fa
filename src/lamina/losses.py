"""Losses with Keras 3's names, arguments, defaults, reduction and sample-weight semantics.

Two layers, as in Keras:

* **functions** (``mean_squared_error(y_true, y_pred)``, ...) return one loss per sample: the
  element-wise loss reduced over the last axis (or ``axis``), so ``(batch, d)`` gives ``(batch,)``;
* **classes** (``MeanSquaredError()``, ...) are :class:`Loss` objects whose ``__call__(y_true,
  y_pred, sample_weight=None)`` casts both inputs to the loss dtype, aligns their ranks, calls the
  function, weights the per-sample losses and reduces them (``reduction=``):

  - ``"sum_over_batch_size"`` / ``"mean"``: ``sum(loss * w) / size(loss * w)`` — the divisor is the
    number of elements of the weighted losses, *not* the sum of the weights;
  - ``"mean_with_sample_weight"``: ``sum(loss * w) / sum(w)``;
  - ``"sum"``: ``sum(loss * w)``;  ``"none"`` / ``None``: the weighted losses themselves.

Everything is differentiable under a :class:`~lamina.GradientTape`. The crossentropies are fused
primitives with hand-derived gradients, stable for logits of any size: softmax crossentropy is
``logsumexp(z) - sum(y * z)`` with gradient ``sum(y) * softmax(z) - y``, the sparse form gathers
the label's logit by index (no one-hot matrix) with gradient ``softmax(z) - onehot(y)``, and sigmoid
crossentropy is ``max(z, 0) - z * y + log1p(exp(-|z|))`` with gradient ``sigmoid(z) - y``. From
probabilities they follow Keras: divide by the sum over the class axis (categorical), clip to
``[epsilon, 1 - epsilon]``, then take the log. Circle loss and CTC are fused the same way: CTC runs
the forward-backward algorithm in log space and its gradient is ``softmax(z) - posterior``.
"""

from __future__ import annotations

import difflib
import inspect
import math
import warnings
from collections.abc import Callable

import numpy as np

from lamina import backend, dtype_policies, ops
from lamina.autodiff import Tensor, Variable, needs_gradient, record, unwrap
from lamina.naming import auto_name
from lamina.saving.object_config import serialize_function
from lamina.saving.object_registry import get_registered_name, get_registered_object

__all__ = [
    "Loss", "LossFunctionWrapper",
    "BinaryCrossentropy", "BinaryFocalCrossentropy", "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy", "SparseCategoricalCrossentropy", "MeanSquaredError",
    "MeanAbsoluteError", "MeanAbsolutePercentageError", "MeanSquaredLogarithmicError", "Huber",
    "LogCosh", "Hinge", "SquaredHinge", "CategoricalHinge", "KLDivergence", "Poisson",
    "CosineSimilarity", "Dice", "Tversky", "CategoricalGeneralizedCrossEntropy", "Circle", "CTC",
    "binary_crossentropy", "binary_focal_crossentropy", "categorical_crossentropy",
    "categorical_focal_crossentropy", "sparse_categorical_crossentropy", "mean_squared_error",
    "mean_absolute_error", "mean_absolute_percentage_error", "mean_squared_logarithmic_error", "huber",
    "log_cosh", "hinge", "squared_hinge", "categorical_hinge", "kl_divergence", "poisson",
    "cosine_similarity", "dice", "tversky", "categorical_generalized_cross_entropy", "circle", "ctc",
    "mse", "MSE", "mae", "MAE", "mape", "MAPE", "msle", "MSLE", "kld", "KLD", "bce", "BCE",
    "get", "serialize", "deserialize",
]

_REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)

# ----------------------------------------------------------------------------- input handling


def _shape(x) -> tuple:
    v = unwrap(x)
    return v.shape if isinstance(v, np.ndarray) else tuple(np.shape(v))


def _is_float(dt) -> bool:
    return np.issubdtype(dt, np.floating)


def _to_float(x, dtype=None):
    """``x`` as a float array (or the Tensor/Variable itself): ``dtype`` if given, else its own float
    dtype; Python numbers, lists and integer arrays become floatx (float32)."""
    if isinstance(x, (Tensor, Variable)):
        if dtype is not None and x.dtype != dtype:
            return ops.cast(x, dtype)
        if dtype is None and not _is_float(x.dtype):
            return ops.cast(x, backend.floatx())
        return x
    if dtype is not None:
        return np.asarray(x, dtype=dtype)
    arr = np.asarray(x)
    if not _is_float(arr.dtype) or (arr.dtype == np.float64 and not isinstance(x, np.ndarray)):
        arr = arr.astype(backend.floatx())
    return arr


def _pair(y_true, y_pred):
    """Keras's opening move: y_pred to a float tensor, y_true cast to y_pred's dtype."""
    y_pred = _to_float(y_pred)
    return _to_float(y_true, y_pred.dtype), y_pred


def _check_broadcast(name: str, y_true, y_pred) -> None:
    try:
        np.broadcast_shapes(_shape(y_true), _shape(y_pred))
    except ValueError:
        raise ValueError(
            f"In loss {name}, y_true and y_pred must have the same batch size and broadcastable "
            f"shapes. Received: y_true.shape={_shape(y_true)}, y_pred.shape={_shape(y_pred)}"
        ) from None


def _check_same_shape(name: str, y_true, y_pred, what: str) -> None:
    st, sp = _shape(y_true), _shape(y_pred)
    if st == sp:
        return
    hint = ""
    looks_sparse = len(st) == len(sp) - 1 or (len(st) == len(sp) >= 1 and st[-1] == 1 and sp[-1] > 1)
    if "categorical" in name and looks_sparse and st[:1] == sp[:1]:
        hint = (" y_true looks like integer class indices: use sparse_categorical_crossentropy, "
                "or one-hot encode the labels with keras.utils.to_categorical.")
    elif st[:1] != sp[:1] and st and sp:
        hint = " The batch sizes differ."
    raise ValueError(
        f"In loss {name}, y_true and y_pred must have the same shape ({what}).{hint} "
        f"Received: y_true.shape={st}, y_pred.shape={sp}"
    )


def squeeze_or_expand_to_same_rank(x1, x2, expand_rank_1: bool = True):
    """Align ranks that differ by one through a trailing axis of size 1 (Keras's rule).

    A rank-1 partner is expanded (``(n,)`` with ``(n, 1)`` gives two ``(n, 1)``) when
    ``expand_rank_1``; otherwise the size-1 axis of the higher-rank input is squeezed.
    """
    r1, r2 = len(_shape(x1)), len(_shape(x2))
    if r1 == r2:
        return x1, x2
    if r1 == r2 + 1 and _shape(x1)[-1] == 1:
        if r2 == 1 and expand_rank_1:
            x2 = ops.expand_dims(x2, -1)
        else:
            x1 = ops.squeeze(x1, -1)
    if r2 == r1 + 1 and _shape(x2)[-1] == 1:
        if r1 == 1 and expand_rank_1:
            x1 = ops.expand_dims(x1, -1)
        else:
            x2 = ops.squeeze(x2, -1)
    return x1, x2


def _check_axis(name: str, axis, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"In loss {name}, `axis` must be an int. Received: axis={axis!r}")
    if ndim == 0 or not -ndim <= axis < ndim:
        raise ValueError(
            f"In loss {name}, `axis` is out of range for y_pred of rank {ndim}. Received: axis={axis}"
        )
    return int(axis) % ndim


def _eps_bounds(dtype):
    """epsilon and 1 - epsilon as scalars of ``dtype`` (what torch.clip compares against)."""
    eps = backend.epsilon()
    return np.asarray(eps, dtype=dtype), np.asarray(1.0 - eps, dtype=dtype)


# ----------------------------------------------------------------------------- fused primitives


def _sigmoid_bce_logits(y, z):
    """Element-wise ``-y log sigmoid(z) - (1 - y) log(1 - sigmoid(z))`` from logits.

    Computed as ``max(z, 0) - z * y + log1p(exp(-|z|))``: no exp can overflow. Gradient
    ``sigmoid(z) - y`` w.r.t. ``z`` and ``-z`` w.r.t. ``y``.
    """
    yv, zv = unwrap(y), unwrap(z)
    with np.errstate(under="ignore"):
        out = np.maximum(zv, 0) - zv * yv + np.log1p(np.exp(-np.abs(zv)))
    need_y = needs_gradient(y)

    def vjp(g):
        sig = np.tanh(zv * 0.5)
        sig *= 0.5
        sig += 0.5
        return (-g * zv if need_y else None), g * (sig - yv)

    return record(out, (y, z), vjp)


def _bce_probs(y, p):
    """Element-wise ``-(y log c + (1 - y) log(1 - c))`` with ``c = clip(p, eps, 1 - eps)``.

    Gradient w.r.t. ``p``: ``(c - y) / (c (1 - c))`` inside the clip interval, 0 outside.
    """
    yv, pv = unwrap(y), unwrap(p)
    lo, hi = _eps_bounds(pv.dtype)
    c = np.clip(pv, lo, hi)
    log_c, log_1mc = np.log(c), np.log1p(-c)
    out = -(yv * log_c + (1 - yv) * log_1mc)
    need_y = needs_gradient(y)

    def vjp(g):
        inside = (pv >= lo) & (pv <= hi)
        gp = g * (c - yv) / (c * (1 - c)) * inside
        return (g * (log_1mc - log_c) if need_y else None), gp

    return record(out, (y, p), vjp)


def _softmax_ce_logits(y, z, axis: int):
    """``-sum(y * log_softmax(z), axis)``; gradient ``sum(y) * softmax(z) - y`` w.r.t. ``z``."""
    yv, zv = unwrap(y), unwrap(z)
    shifted = zv - zv.max(axis=axis, keepdims=True)
    with np.errstate(under="ignore"):
        e = np.exp(shifted)
    s = e.sum(axis=axis, keepdims=True)
    logp = shifted - np.log(s)
    out = -(yv * logp).sum(axis=axis)
    need_y = needs_gradient(y)

    def vjp(g):
        gk = np.expand_dims(g, axis)
        gz = gk * (e / s * yv.sum(axis=axis, keepdims=True) - yv)
        return (-gk * logp if need_y else None), gz

    return record(out, (y, z), vjp)


def _softmax_ce_probs(y, p, axis: int):
    """``-sum(y * log(clip(p / sum(p, axis), eps, 1 - eps)), axis)`` (Keras's probability path).

    With ``q = p / S`` and ``c = clip(q)``: ``dL/dq = -y / c`` inside the clip interval, and
    ``dL/dp = (dL/dq - sum(dL/dq * q)) / S``.
    """
    yv, pv = unwrap(y), unwrap(p)
    lo, hi = _eps_bounds(pv.dtype)
    s = pv.sum(axis=axis, keepdims=True)
    q = pv / s
    c = np.clip(q, lo, hi)
    log_c = np.log(c)
    out = -(yv * log_c).sum(axis=axis)
    need_y = needs_gradient(y)

    def vjp(g):
        gk = np.expand_dims(g, axis)
        gq = -gk * yv / c * ((q >= lo) & (q <= hi))
        gp = (gq - (gq * q).sum(axis=axis, keepdims=True)) / s
        return (-gk * log_c if need_y else None), gp

    return record(out, (y, p), vjp)


def _sparse_ce(labels: np.ndarray, z, axis: int, from_logits: bool):
    """Crossentropy of integer ``labels`` against logits or probabilities ``z`` along ``axis``.

    The label's entry is gathered by index, never through a one-hot matrix. From logits:
    ``logsumexp(z) - z[label]`` with gradient ``softmax(z) - onehot(label)``. From probabilities:
    ``-log(clip(p[label] / sum(p)))`` whose gradient w.r.t. ``p_k`` is
    ``dL/dc * (onehot_k - q[label]) / S`` with ``dL/dc = -1 / c`` inside the clip interval.
    """
    zv = unwrap(z)
    moved = np.moveaxis(zv, axis, -1) if axis != zv.ndim - 1 else zv
    k = moved.shape[-1]
    z2 = moved.reshape(-1, k)
    lab = labels.reshape(-1)
    rows = np.arange(lab.size)
    if from_logits:
        shifted = z2 - z2.max(axis=1, keepdims=True)
        with np.errstate(under="ignore"):
            e = np.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        out = np.log(s[:, 0]) - shifted[rows, lab]
    else:
        lo, hi = _eps_bounds(z2.dtype)
        s = z2.sum(axis=1, keepdims=True)
        q_l = z2[rows, lab] / s[:, 0]
        c = np.clip(q_l, lo, hi)
        out = -np.log(c)
    out = out.reshape(labels.shape)

    def vjp(g):
        g2 = np.reshape(g, -1)
        if from_logits:
            grad = e / s
            grad[rows, lab] -= 1
            grad *= g2[:, None]
        else:
            dc = -g2 / c * ((q_l >= lo) & (q_l <= hi))
            grad = np.broadcast_to((-dc * q_l / s[:, 0])[:, None], z2.shape).copy()
            grad[rows, lab] += dc / s[:, 0]
        grad = grad.reshape(moved.shape)
        return (np.moveaxis(grad, -1, axis) if axis != zv.ndim - 1 else grad,)

    return record(out, (z,), vjp)


# ----------------------------------------------------------------------------- probabilistic losses


def binary_crossentropy(y_true, y_pred, from_logits: bool = False, label_smoothing: float = 0.0,
                        axis: int = -1):
    """Mean over ``axis`` of ``-(y log p + (1 - y) log(1 - p))``.

    ``label_smoothing`` moves targets toward 0.5: ``y (1 - s) + s / 2``. From logits the loss is the
    fused, stable ``max(z, 0) - z y + log1p(exp(-|z|))``; from probabilities ``p`` is clipped to
    ``[epsilon, 1 - epsilon]``. y_true and y_pred must have the same shape.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    _check_same_shape("binary_crossentropy", y_true, y_pred, "one target per prediction")
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    bce = _sigmoid_bce_logits(y_true, y_pred) if from_logits else _bce_probs(y_true, y_pred)
    return ops.mean(bce, axis=axis)


def binary_focal_crossentropy(y_true, y_pred, apply_class_balancing: bool = False, alpha: float = 0.25,
                              gamma: float = 2.0, from_logits: bool = False, label_smoothing: float = 0.0,
                              axis: int = -1):
    """Mean over ``axis`` of ``(1 - p_t)^gamma * bce`` with ``p_t = y p + (1 - y)(1 - p)``.

    With ``apply_class_balancing`` each term is also weighted by ``y alpha + (1 - y)(1 - alpha)``.
    ``bce`` is the clipped binary crossentropy; logits go through a sigmoid first (as Keras).
    """
    y_true, y_pred = _pair(y_true, y_pred)
    _check_same_shape("binary_focal_crossentropy", y_true, y_pred, "one target per prediction")
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        y_pred = ops.sigmoid(y_pred)
    bce = _bce_probs(y_true, y_pred)
    p_t = y_true * y_pred + (1 - y_true) * (1 - y_pred)
    focal = ops.power(1.0 - p_t, gamma) * bce
    if apply_class_balancing:
        focal = (y_true * alpha + (1 - y_true) * (1 - alpha)) * focal
    return ops.mean(focal, axis=axis)


def _smooth_categorical(y_true, label_smoothing, dtype):
    # Keras spreads the smoothing mass over the size of y_true's last axis, whatever `axis` is.
    k = _shape(y_true)[-1]
    return y_true * (1.0 - label_smoothing) + np.asarray(label_smoothing / k, dtype=dtype)


def _warn_single_class(name: str, y_pred) -> None:
    if _shape(y_pred) and _shape(y_pred)[-1] == 1:
        warnings.warn(
            f"In loss {name}, expected y_pred.shape to be (batch_size, num_classes) with "
            f"num_classes > 1. Received: y_pred.shape={_shape(y_pred)}. Consider using "
            "'binary_crossentropy' if you only have 2 classes.",
            SyntaxWarning, stacklevel=3,
        )


def categorical_crossentropy(y_true, y_pred, from_logits: bool = False, label_smoothing: float = 0.0,
                             axis: int = -1):
    """``-sum(y * log p, axis)`` for one-hot (or soft) targets ``y_true`` of y_pred's shape.

    ``label_smoothing`` s gives targets ``y (1 - s) + s / num_classes``. From logits: the fused
    ``-sum(y * log_softmax(z))`` with gradient ``softmax(z) - y``. From probabilities: divided by
    their sum along ``axis``, clipped to ``[epsilon, 1 - epsilon]``, then logged (as Keras).
    """
    y_true, y_pred = _pair(y_true, y_pred)
    _check_same_shape("categorical_crossentropy", y_true, y_pred, "one-hot or probability targets")
    axis = _check_axis("categorical_crossentropy", axis, len(_shape(y_pred)))
    _warn_single_class("categorical_crossentropy", y_pred)
    if label_smoothing:
        y_true = _smooth_categorical(y_true, label_smoothing, unwrap(y_pred).dtype)
    if from_logits:
        return _softmax_ce_logits(y_true, y_pred, axis)
    return _softmax_ce_probs(y_true, y_pred, axis)


def categorical_focal_crossentropy(y_true, y_pred, alpha: float = 0.25, gamma: float = 2.0,
                                   from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1):
    """``sum(alpha (1 - p)^gamma * -y log p, axis)`` with ``p`` normalised and clipped as in
    :func:`categorical_crossentropy` (softmax first when ``from_logits``)."""
    y_true, y_pred = _pair(y_true, y_pred)
    _check_broadcast("categorical_focal_crossentropy", y_true, y_pred)
    axis = _check_axis("categorical_focal_crossentropy", axis, len(_shape(y_pred)))
    _warn_single_class("categorical_focal_crossentropy", y_pred)
    if label_smoothing:
        y_true = _smooth_categorical(y_true, label_smoothing, unwrap(y_pred).dtype)
    if from_logits:
        y_pred = ops.softmax(y_pred, axis=axis)
    eps = backend.epsilon()
    out = ops.clip(y_pred / ops.sum(y_pred, axis=axis, keepdims=True), eps, 1.0 - eps)
    cce = -y_true * ops.log(out)
    return ops.sum(ops.power(1.0 - out, gamma) * alpha * cce, axis=axis)


def _sparse_labels(name: str, y_true, y_pred, axis: int, ignore_class):
    """Validate and convert sparse labels; returns (int labels, valid mask or None)."""
    sp, st = _shape(y_pred), _shape(y_true)
    if len(sp) < 1:
        raise ValueError(f"In loss {name}, y_pred must be at least rank 1. Received: y_pred.shape={sp}")
    axis = _check_axis(name, axis, len(sp))
    lab = np.asarray(unwrap(y_true))
    if len(st) == len(sp) and st[axis] == 1:
        lab = np.squeeze(lab, axis=axis)
    expected = sp[:axis] + sp[axis + 1:]
    if lab.shape != expected:
        if len(st) == len(sp) and st == sp:
            detail = (" y_true has the shape of y_pred, which looks like one-hot labels: use "
                      "categorical_crossentropy for those, or pass class indices.")
        else:
            detail = ""
        raise ValueError(
            f"In loss {name}, expected y_true to hold integer class indices of shape {expected} "
            f"(or with a trailing axis of size 1), i.e. y_pred's shape without the class axis.{detail} "
            f"Received: y_true.shape={st}, y_pred.shape={sp}"
        )
    if ignore_class is not None:
        valid = lab != ignore_class
        lab = np.where(valid, lab, 0)
    else:
        valid = None
    with np.errstate(invalid="ignore"):  # NaN/inf labels cast to garbage and are reported below
        ilab = lab.astype(np.intp, copy=False)
    if lab.dtype.kind == "f" and (ilab != lab).any():
        bad = lab[ilab != lab].reshape(-1)[0]
        raise ValueError(
            f"In loss {name}, y_true must hold integer class indices. Received: a label value of {bad}"
        )
    k = sp[axis]
    # One unsigned comparison finds both negatives (they wrap to huge values) and labels >= k.
    if ilab.size and (ilab.view(np.uintp) >= k).any():
        raise ValueError(
            f"In loss {name}, class indices in y_true must lie in [0, {k}) for y_pred with {k} "
            f"classes. Received: labels from {ilab.min()} to {ilab.max()}"
        )
    return ilab, valid, axis


def _sparse_categorical_crossentropy_masked(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    name = "sparse_categorical_crossentropy"
    y_pred = _to_float(y_pred)
    lab, valid, axis = _sparse_labels(name, y_true, y_pred, axis, ignore_class)
    res = _sparse_ce(lab, y_pred, axis, from_logits)
    if valid is not None:
        # Ignored entries were scored against class 0; zero them (their gradient is 0 too).
        res = ops.where(valid, res, np.asarray(0, dtype=unwrap(res).dtype))
    return res, valid


def sparse_categorical_crossentropy(y_true, y_pred, from_logits: bool = False,
                                    ignore_class: int | None = None, axis: int = -1):
    """Crossentropy of integer class indices ``y_true`` against ``y_pred`` along ``axis``:
    ``-log p[label]`` (``logsumexp(z) - z[label]`` from logits).

    ``y_true`` has y_pred's shape without the class axis, optionally with a size-1 axis in its place;
    integer or integral float dtype. Entries equal to ``ignore_class`` get loss 0 (and, through a
    Loss class, are left out of the mean's denominator, as Keras).
    """
    return _sparse_categorical_crossentropy_masked(y_true, y_pred, from_logits, ignore_class, axis)[0]


def kl_divergence(y_true, y_pred):
    """``sum(y * log(y / p), -1)`` with both clipped to ``[epsilon, 1]``."""
    y_true, y_pred = _pair(y_true, y_pred)
    _check_broadcast("kl_divergence", y_true, y_pred)
    eps = backend.epsilon()
    y_true = ops.clip(y_true, eps, 1)
    y_pred = ops.clip(y_pred, eps, 1)
    return ops.sum(y_true * ops.log(y_true / y_pred), axis=-1)


def poisson(y_true, y_pred):
    """``mean(p - y * log(p + epsilon), -1)``."""
    y_true, y_pred = _pair(y_true, y_pred)
    _check_broadcast("poisson", y_true, y_pred)
    return ops.mean(y_pred - y_true * ops.log(y_pred + backend.epsilon()), axis=-1)


def categorical_generalized_cross_entropy(y_true, y_pred, q: float):
    """Generalised crossentropy for integer labels: ``(1 - p[label]^q) / q``, ``0 < q < 1``."""
    y_pred = _to_float(y_pred)
    name = "categorical_generalized_cross_entropy"
    lab, _, axis = _sparse_labels(name, y_true, y_pred, -1, None)
    p = _gather_last(y_pred, lab)
    return (1 - ops.power(p, q)) / q


def _gather_last(x, idx: np.ndarray):
    """``x[..., idx]`` row by row (take_along_axis on the last axis), differentiable."""
    xv = unwrap(x)
    ii = idx[..., None]
    out = np.take_along_axis(xv, ii, axis=-1)[..., 0]

    def vjp(g):
        full = np.zeros_like(xv)
        np.put_along_axis(full, ii, np.asarray(g)[..., None], axis=-1)
        return (full,)

    return record(out, (x,), vjp)


# ----------------------------------------------------------------------------- regression losses


def _regression_pair(name, y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    _check_broadcast(name, y_true, y_pred)
    return y_true, y_pred


def mean_squared_error(y_true, y_pred):
    """``mean((y - p)^2, -1)``."""
    y_true, y_pred = _regression_pair("mean_squared_error", y_true, y_pred)
    return ops.mean(ops.square(y_true - y_pred), axis=-1)


def mean_absolute_error(y_true, y_pred):
    """``mean(|y - p|, -1)``."""
    y_true, y_pred = _regression_pair("mean_absolute_error", y_true, y_pred)
    return ops.mean(ops.abs(y_true - y_pred), axis=-1)


def mean_absolute_percentage_error(y_true, y_pred):
    """``100 * mean(|y - p| / max(|y|, epsilon), -1)``."""
    y_true, y_pred = _regression_pair("mean_absolute_percentage_error", y_true, y_pred)
    denom = ops.maximum(ops.abs(y_true), np.asarray(backend.epsilon(), dtype=unwrap(y_pred).dtype))
    return 100.0 * ops.mean(ops.abs((y_true - y_pred) / denom), axis=-1)


def mean_squared_logarithmic_error(y_true, y_pred):
    """``mean((log(max(p, eps) + 1) - log(max(y, eps) + 1))^2, -1)``; ``log1p`` keeps small values exact."""
    y_true, y_pred = _regression_pair("mean_squared_logarithmic_error", y_true, y_pred)
    eps = backend.epsilon()
    first = ops.log1p(ops.maximum(y_pred, eps))
    second = ops.log1p(ops.maximum(y_true, eps))
    return ops.mean(ops.square(first - second), axis=-1)


def _l2_normalize(x, axis):
    # x / max(||x||, eps), written as x * rsqrt(max(sum x^2, eps^2)) as Keras's ops.normalize does.
    eps = backend.epsilon()
    sq = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x / ops.sqrt(ops.maximum(sq, eps * eps))


def cosine_similarity(y_true, y_pred, axis: int = -1):
    """``-sum(l2_normalize(y) * l2_normalize(p), axis)``: -1 for parallel vectors, 0 for orthogonal."""
    y_true, y_pred = _regression_pair("cosine_similarity", y_true, y_pred)
    return -ops.sum(_l2_normalize(y_true, axis) * _l2_normalize(y_pred, axis), axis=axis)


def huber(y_true, y_pred, delta: float = 1.0):
    """``mean(0.5 e^2 if |e| <= delta else delta |e| - 0.5 delta^2, -1)`` with ``e = p - y``."""
    y_true, y_pred = _regression_pair("huber", y_true, y_pred)
    dt = unwrap(y_pred).dtype
    delta = np.asarray(delta, dtype=dt)
    err = y_pred - y_true
    abs_err = ops.abs(err)
    quad = 0.5 * ops.square(err)
    lin = delta * abs_err - 0.5 * np.square(delta)
    return ops.mean(ops.where(unwrap(abs_err) <= delta, quad, lin), axis=-1)


def log_cosh(y_true, y_pred):
    """``mean(log(cosh(p - y)), -1)``, computed as ``x + softplus(-2x) - log 2`` (no overflow)."""
    y_true, y_pred = _regression_pair("log_cosh", y_true, y_pred)
    x = y_pred - y_true
    return ops.mean(x + ops.softplus(x * -2.0) - math.log(2.0), axis=-1)


# ----------------------------------------------------------------------------- hinge losses


def _hinge_labels(y_true):
    # Keras maps labels that are all 0/1 to -1/+1 and leaves any other labels alone.
    yv = unwrap(y_true)
    if np.all((yv == 0) | (yv == 1)):
        return 2.0 * y_true - 1.0
    return y_true


def hinge(y_true, y_pred):
    """``mean(max(1 - y p, 0), -1)`` with labels in {-1, 1} (0/1 labels are converted)."""
    y_true, y_pred = _pair(y_true, y_pred)
    _check_broadcast("hinge", y_true, y_pred)
    return ops.mean(ops.relu(1.0 - _hinge_labels(y_true) * y_pred), axis=-1)


def squared_hinge(y_true, y_pred):
    """``mean(max(1 - y p, 0)^2, -1)`` with labels in {-1, 1} (0/1 labels are converted)."""
    y_true, y_pred = _pair(y_true, y_pred)
    _check_broadcast("squared_hinge", y_true, y_pred)
    return ops.mean(ops.square(ops.relu(1.0 - _hinge_labels(y_true) * y_pred)), axis=-1)


def categorical_hinge(y_true, y_pred):
    """``max(max((1 - y) p) - sum(y p) + 1, 0)`` over the last axis, for one-hot ``y_true``."""
    y_true, y_pred = _pair(y_true, y_pred)
    _check_broadcast("categorical_hinge", y_true, y_pred)
    pos = ops.sum(y_true * y_pred, axis=-1)
    neg = ops.max((1.0 - y_true) * y_pred, axis=-1)
    return ops.relu(neg - pos + 1.0)


# ----------------------------------------------------------------------------- segmentation losses


def dice(y_true, y_pred, axis=None):
    """``1 - 2 sum(y p) / (sum(y) + sum(p) + epsilon)`` over ``axis`` (all axes by default)."""
    y_true, y_pred = _pair(y_true, y_pred)
    _check_broadcast("dice", y_true, y_pred)
    inter = ops.sum(y_true * y_pred, axis=axis)
    total = ops.sum(y_true, axis=axis) + ops.sum(y_pred, axis=axis) + backend.epsilon()
    return 1 - 2.0 * inter / total


def tversky(y_true, y_pred, alpha: float = 0.5, beta: float = 0.5, axis=None):
    """``1 - TP / (TP + alpha FP + beta FN + epsilon)`` with soft counts over ``axis``."""
    y_true, y_pred = _pair(y_true, y_pred)
    _check_broadcast("tversky", y_true, y_pred)
    tp = ops.sum(y_true * y_pred, axis=axis)
    fp = ops.sum((1 - y_pred) * y_true, axis=axis)
    fn = ops.sum(y_pred * (1 - y_true), axis=axis)
    return 1 - tp / (tp + fp * alpha + fn * beta + backend.epsilon())


def _masked_logsumexp(x: np.ndarray, mask: np.ndarray):
    """Row-wise ``log(sum(exp(x)))`` over the entries where ``mask`` holds (``-inf`` for an empty row),
    and the softmax weights of those entries (0 elsewhere)."""
    xm = np.where(mask, x, -np.inf)
    top = np.max(xm, axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0)
    with np.errstate(under="ignore", divide="ignore"):
        e = np.where(mask, np.exp(xm - top), 0)
        total = e.sum(axis=1, keepdims=True)
        lse = np.log(total) + top
        weights = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    return lse[:, 0], weights


def _pos_neg_masks(labels, ref_labels, remove_diagonal: bool):
    """Pairs of equal labels (positives, minus the diagonal if asked) and of different labels."""
    labels = np.asarray(labels).reshape(-1, 1)
    ref_labels = np.asarray(ref_labels).reshape(1, -1)
    positive = labels == ref_labels
    negative = ~positive
    if remove_diagonal:
        positive = positive & ~np.eye(labels.size, ref_labels.size, dtype=bool)
    return positive, negative


def _circle_terms(dist, positive, negative, gamma, margin):
    """Circle loss's weighted distances and their derivatives with respect to the distance."""
    pos_w = np.maximum((margin + dist) * positive, 0)
    neg_w = np.maximum((1 + margin - dist) * negative, 0)
    pos_d, neg_d = margin - dist, 1 - margin - dist
    a = -gamma * pos_w * pos_d
    b = gamma * neg_w * neg_d
    da = -gamma * ((margin + dist > 0) * pos_d - pos_w)
    db = -gamma * ((1 + margin - dist > 0) * neg_d + neg_w)
    return a, b, da, db


def circle(y_true, y_pred, ref_labels=None, ref_embeddings=None, remove_diagonal: bool = True,
           gamma: float = 80, margin: float = 0.4):
    """Circle loss (Sun et al., 2020) of integer labels and L2-normalised embeddings, one value per row.

    With cosine distances ``d = max(1 - y_pred @ ref.T, 0)`` and ``m = margin``::

        p = logsumexp_{positives}(-gamma * max(m + d, 0) * (m - d))
        n = logsumexp_{negatives}(gamma * max(1 + m - d, 0) * (1 - m - d))
        loss = softplus(p + n)

    Positives are reference rows with the same label (the row itself excluded when
    ``remove_diagonal``), negatives those with another label. The references default to the batch.
    """
    y_pred = _to_float(y_pred)
    dt = unwrap(y_pred).dtype
    labels = np.asarray(unwrap(y_true)).astype(np.int32)
    ref = y_pred if ref_embeddings is None else _to_float(ref_embeddings, dt)
    ref_lab = labels if ref_labels is None else np.asarray(unwrap(ref_labels)).astype(np.int32)
    pv, rv = unwrap(y_pred), unwrap(ref)
    if pv.ndim != 2 or rv.ndim != 2 or pv.shape[1] != rv.shape[1]:
        raise ValueError(
            "In loss circle, y_pred and ref_embeddings must be embeddings of shape (batch_size, dim) with "
            f"the same dim. Received: y_pred.shape={pv.shape}, ref_embeddings.shape={rv.shape}"
        )
    if labels.size != pv.shape[0] or ref_lab.size != rv.shape[0]:
        raise ValueError(
            "In loss circle, there must be one label per embedding. Received: "
            f"y_true.shape={labels.shape}, y_pred.shape={pv.shape}, ref_labels.shape={ref_lab.shape}, "
            f"ref_embeddings.shape={rv.shape}"
        )
    positive, negative = _pos_neg_masks(labels, ref_lab, remove_diagonal)
    sim = pv @ rv.T
    dist = np.maximum(1 - sim, 0)
    a, b, da, db = _circle_terms(dist, positive, negative, gamma, margin)
    p, wp = _masked_logsumexp(a, positive)
    n, wn = _masked_logsumexp(b, negative)
    x = p + n
    with np.errstate(over="ignore", under="ignore"):
        out = (np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))).astype(dt)
    same = ref_embeddings is None

    def vjp(g):
        with np.errstate(under="ignore", over="ignore"):
            sig = np.where(np.isfinite(x), 0.5 * np.tanh(0.5 * np.nan_to_num(x)) + 0.5, (x > 0) * 1.0)
        gx = (np.asarray(g) * sig)[:, None]
        g_dist = gx * (wp * da + wn * db)
        g_sim = -g_dist * (1 - sim > 0)
        g_pred = (g_sim @ rv).astype(dt)
        g_ref = (g_sim.T @ pv).astype(dt)
        if same:
            return None, g_pred + g_ref
        return None, g_pred, g_ref

    if same:
        return record(out, (y_true, y_pred), vjp)
    return record(out, (y_true, y_pred, ref), vjp)


def _circle_masked(y_true, y_pred, **kwargs):
    # Keras masks the rows whose loss is 0 out of the mean (they have nothing left to learn).
    loss = circle(y_true, y_pred, **kwargs)
    return loss, unwrap(loss) > 0


def _ctc_alpha(logp, ext, T):
    """Forward log-probabilities ``alpha[t, b, s]`` over the extended label sequences ``ext``."""
    B, S = ext.shape
    rows = np.arange(B)[:, None]
    # s may come from s - 2 when s is a label position (odd) whose label differs from l'_{s-2}: the
    # blank between them may be skipped. By position, not value, so a 0 inside the labels (which
    # Keras counts as a label when it precedes the last non-zero one) behaves as in torch's ctc_loss.
    skip = np.zeros((B, S), dtype=bool)
    skip[:, 3::2] = ext[:, 3::2] != ext[:, 1:-2:2]
    alpha = np.full((T, B, S), -np.inf)
    alpha[0, :, :2] = logp[:, 0][rows, ext[:, :2]]
    for t in range(1, T):
        prev = alpha[t - 1]
        acc = prev.copy()
        acc[:, 1:] = np.logaddexp(acc[:, 1:], prev[:, :-1])
        acc[:, 2:] = np.where(skip[:, 2:], np.logaddexp(acc[:, 2:], prev[:, :-2]), acc[:, 2:])
        alpha[t] = acc + logp[:, t][rows, ext]
    return alpha, skip


def _ctc_beta(logp, ext, skip, ends, T):
    """Backward log-probabilities ``beta[t, b, s]`` (each including the emission at ``t``)."""
    B, S = ext.shape
    rows = np.arange(B)[:, None]
    beta = np.full((T, B, S), -np.inf)
    last = logp[:, T - 1][rows, ext]
    for i, end in enumerate(ends):
        beta[T - 1, i, max(end - 1, 0):end + 1] = last[i, max(end - 1, 0):end + 1]
    for t in range(T - 2, -1, -1):
        nxt = beta[t + 1]
        acc = nxt.copy()
        acc[:, :-1] = np.logaddexp(acc[:, :-1], nxt[:, 1:])
        acc[:, :-2] = np.where(skip[:, 2:], np.logaddexp(acc[:, :-2], nxt[:, 2:]), acc[:, :-2])
        beta[t] = acc + logp[:, t][rows, ext]
    return beta


def _ctc_labels(y_true, y_pred) -> np.ndarray:
    lab = np.asarray(unwrap(y_true))
    if lab.ndim != 2:
        raise ValueError(
            "Targets `y_true` are expected to be a tensor of shape `(batch_size, max_length)` in integer "
            f"format. Received: y_true.shape={lab.shape}"
        )
    if len(_shape(y_pred)) != 3:
        raise ValueError(
            "Logits `y_pred` are expected to be a tensor of shape `(batch_size, max_length, num_classes)`. "
            f"Received: y_pred.shape={_shape(y_pred)}"
        )
    lab = lab.astype(np.int64)
    n_classes = _shape(y_pred)[2]
    if lab.size and (lab.min() < 0 or lab.max() >= n_classes):
        raise ValueError(
            f"In loss ctc, labels must lie in [0, {n_classes}) (0 is the blank). "
            f"Received: labels from {lab.min()} to {lab.max()}"
        )
    return lab


def ctc(y_true, y_pred):
    """Connectionist Temporal Classification loss ``-log p(labels | logits)``, one value per sample.

    ``y_true``: ``(batch, max_label_length)`` integer labels, 0 the blank, padded with 0 (a sample's
    label length is its count of non-zero entries, read from the front). ``y_pred``: ``(batch, time,
    classes)`` unnormalised logits, all ``time`` steps used. ``p`` sums the softmax probabilities of
    every alignment that collapses to the labels (the forward-backward algorithm, in log space).
    The gradient w.r.t. the logits is ``softmax(y_pred) - posterior(label at each step)``; an
    impossible alignment (labels longer than time allows) gives ``inf`` and a zero gradient.
    """
    y_pred = _to_float(y_pred)
    lab = _ctc_labels(y_true, y_pred)
    zv = unwrap(y_pred)
    dt = zv.dtype
    B, T, _ = zv.shape
    lengths = (lab != 0).sum(axis=1)
    L = lab.shape[1]
    packed = np.zeros((B, L), dtype=np.int64)
    for i, n in enumerate(lengths):
        packed[i, :n] = lab[i, :n]
    ext = np.zeros((B, 2 * L + 1), dtype=np.int64)
    ext[:, 1::2] = packed
    ends = 2 * lengths
    z64 = zv.astype(np.float64)
    logp = z64 - np.logaddexp.reduce(z64, axis=2, keepdims=True) if T else z64
    if T == 0:
        return np.full((B,), np.inf, dtype=dt)
    with np.errstate(under="ignore"):
        alpha, skip = _ctc_alpha(logp, ext, T)
        rows = np.arange(B)
        loglik = np.logaddexp(alpha[T - 1, rows, ends], np.where(ends > 0, alpha[T - 1, rows, ends - 1], -np.inf))
    out = (-loglik).astype(dt)

    def vjp(g):
        with np.errstate(under="ignore", invalid="ignore"):
            beta = _ctc_beta(logp, ext, skip, ends, T)
            emit = np.take_along_axis(logp, np.broadcast_to(ext[:, None, :], (B, T, ext.shape[1])), axis=2)
            post = np.exp(alpha.transpose(1, 0, 2) + beta.transpose(1, 0, 2) - emit - loglik[:, None, None])
        post = np.where(np.isfinite(loglik)[:, None, None], np.nan_to_num(post), 0.0)
        occupancy = np.zeros_like(logp)
        for i in range(B):
            np.add.at(occupancy[i].T, ext[i], post[i].T)
        grad = (np.exp(logp) - occupancy) * np.isfinite(loglik)[:, None, None]
        return None, (np.asarray(g, dtype=np.float64)[:, None, None] * grad).astype(dt)

    return record(out, (y_true, y_pred), vjp)


# ----------------------------------------------------------------------------- reduction


def standardize_reduction(reduction, name: str | None = None):
    """Check ``reduction`` against Keras's set; a clear ValueError otherwise."""
    if reduction not in _REDUCTIONS:
        where = f" of loss '{name}'" if name else ""
        raise ValueError(
            f"Invalid value for argument `reduction`{where}. Expected one of "
            f"{[r for r in _REDUCTIONS]}. Received: reduction={reduction!r}"
        )
    return reduction


def _mask_to_weight(sample_weight, mask, dtype, reduction):
    """Fold a boolean mask into the sample weights (Keras's ``apply_mask``).

    For the mean reductions valid entries get weight ``total / valid`` so that the later division
    by the element count yields a mean over the valid entries only.
    """
    if mask is None:
        return sample_weight
    mask = np.asarray(unwrap(mask)).astype(bool)
    if reduction in ("mean", "sum_over_batch_size"):
        valid = int(mask.sum())
        scale = mask.size / valid if valid else 0.0
        float_mask = np.where(mask, np.asarray(scale, dtype=dtype), np.asarray(0, dtype=dtype))
    else:
        float_mask = mask.astype(dtype)
    if sample_weight is None:
        return float_mask
    float_mask, sample_weight = squeeze_or_expand_to_same_rank(float_mask, sample_weight)
    return sample_weight * float_mask


def reduce_weighted_values(values, sample_weight=None, mask=None, reduction="sum_over_batch_size",
                           dtype=None):
    """Weight per-sample ``values`` by ``sample_weight`` (and ``mask``) and reduce them, as Keras.

    The weights' rank is aligned with the values' through a trailing size-1 axis, then they
    broadcast. ``"sum_over_batch_size"``/``"mean"`` divide the weighted sum by the number of
    weighted elements, ``"mean_with_sample_weight"`` by the sum of the weights (0 when it is 0).
    """
    reduction = standardize_reduction(reduction)
    values = _to_float(values, dtype)
    dt = unwrap(values).dtype
    if sample_weight is not None:
        sample_weight = _to_float(sample_weight, dt)
    sample_weight = _mask_to_weight(sample_weight, mask, dt, reduction)
    if sample_weight is not None:
        values, sample_weight = squeeze_or_expand_to_same_rank(values, sample_weight)
        try:
            np.broadcast_shapes(_shape(values), _shape(sample_weight))
        except ValueError:
            raise ValueError(
                "`sample_weight` must broadcast against the per-sample losses of shape "
                f"{_shape(values)} (e.g. shape (batch_size,) or (batch_size, 1)). "
                f"Received: sample_weight.shape={_shape(sample_weight)}"
            ) from None
        values = values * sample_weight
    shp = _shape(values)
    if reduction is None or reduction == "none" or shp == () or shp == (0,):
        return values
    total = ops.sum(values)
    if reduction == "sum":
        return total
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        divisor = ops.sum(sample_weight)
    else:
        divisor = np.asarray(math.prod(shp), dtype=dt)
    if float(unwrap(divisor)) == 0.0:
        return np.zeros((), dtype=dt)  # Keras's divide_no_nan
    return ops.divide(total, divisor)


# ----------------------------------------------------------------------------- Loss classes

def _keras_mask(x):
    """The mask a layer attached to ``x`` (or to the array behind it), else None."""
    mask = backend.get_keras_mask(x)
    return mask if mask is not None or not isinstance(x, (Tensor, Variable)) else backend.get_keras_mask(unwrap(x))


class Loss:
    """Base class of losses: subclasses implement ``call(y_true, y_pred)`` → per-sample losses.

    ``__call__(y_true, y_pred, sample_weight=None)`` casts both inputs to ``dtype`` (floatx by
    default), calls ``call``, weights and reduces (see :func:`reduce_weighted_values`).
    """

    def __init__(self, name: str | None = None, reduction: str | None = "sum_over_batch_size", dtype=None):
        self.name = name or auto_name(type(self).__name__)
        self.reduction = standardize_reduction(reduction, self.name)
        # A dtype name, policy name ("mixed_float16") or DTypePolicy: the loss computes in its compute
        # dtype. None is floatx, not the global policy (as in Keras).
        self._dtype_policy = dtype_policies.get(dtype or backend.floatx())
        self._dtype = self._dtype_policy.compute_dtype

    @property
    def dtype(self) -> str:
        return self._dtype

    def __call__(self, y_true, y_pred, sample_weight=None):
        in_mask = _keras_mask(y_pred)  # read before the cast: a cast copy carries no mask
        y_pred = _to_float(y_pred, self._dtype)
        y_true = _to_float(y_true, self._dtype)
        losses, mask = self._call_with_mask(y_true, y_pred)
        if mask is None:
            mask = _keras_mask(losses)
        if in_mask is not None:
            mask = in_mask if mask is None else np.logical_and(in_mask, mask)
        return reduce_weighted_values(losses, sample_weight=sample_weight, mask=mask,
                                      reduction=self.reduction, dtype=self._dtype)

    def _call_with_mask(self, y_true, y_pred):
        return self.call(y_true, y_pred), None

    def call(self, y_true, y_pred):
        raise NotImplementedError(f"{type(self).__name__} must implement call(y_true, y_pred).")

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} reduction={self.reduction!r}>"


class LossFunctionWrapper(Loss):
    """A :class:`Loss` around a per-sample loss function ``fn(y_true, y_pred, **kwargs)``.

    Before calling ``fn`` the ranks of y_true and y_pred are aligned (``(n,)`` against ``(n, 1)``).
    """

    def __init__(self, fn: Callable, reduction: str | None = "sum_over_batch_size", name: str | None = None,
                 dtype=None, **kwargs):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not callable(fn):
            raise ValueError(f"LossFunctionWrapper expects a callable `fn`. Received: fn={fn!r}")
        self.fn = fn
        self._fn_kwargs = kwargs

    def _call_with_mask(self, y_true, y_pred):
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        masked = _MASKED_FNS.get(self.fn)
        if masked is not None:
            return masked(y_true, y_pred, **self._fn_kwargs)
        return self.fn(y_true, y_pred, **self._fn_kwargs), None

    def call(self, y_true, y_pred):
        return self._call_with_mask(y_true, y_pred)[0]

    def get_config(self) -> dict:
        config = super().get_config()
        config["fn"] = serialize(self.fn)
        config.update(self._fn_kwargs)
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        if "fn" in config:
            config["fn"] = deserialize(config["fn"])
        return cls(**config)

    def __repr__(self) -> str:
        return f"<LossFunctionWrapper({getattr(self.fn, '__name__', self.fn)}, kwargs={self._fn_kwargs})>"


_MASKED_FNS: dict[Callable, Callable] = {
    sparse_categorical_crossentropy: _sparse_categorical_crossentropy_masked,
    circle: _circle_masked,
}


class _BuiltinWrapper(LossFunctionWrapper):
    """A built-in loss class: its config is name, reduction and the function's keyword arguments
    (no ``fn``: the class itself names the function).

    Where Keras's config leaves an argument out (``delta`` of Huber, ``axis`` of CosineSimilarity
    and SparseCategoricalCrossentropy) it is still written, so a non-default value survives a round
    trip; Keras's constructors accept these keys, so the config still loads there.
    """

    def get_config(self) -> dict:
        return {**Loss.get_config(self), **self._fn_kwargs}


class MeanSquaredError(_BuiltinWrapper):
    """Mean of squares of errors: ``mean((y - p)^2)``."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
        super().__init__(mean_squared_error, name=name, reduction=reduction, dtype=dtype)


class MeanAbsoluteError(_BuiltinWrapper):
    """Mean of absolute errors: ``mean(|y - p|)``."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error", dtype=None):
        super().__init__(mean_absolute_error, name=name, reduction=reduction, dtype=dtype)


class MeanAbsolutePercentageError(_BuiltinWrapper):
    """``100 * mean(|y - p| / max(|y|, epsilon))``."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_percentage_error", dtype=None):
        super().__init__(mean_absolute_percentage_error, name=name, reduction=reduction, dtype=dtype)


class MeanSquaredLogarithmicError(_BuiltinWrapper):
    """``mean((log(p + 1) - log(y + 1))^2)`` (values below epsilon are raised to epsilon)."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_logarithmic_error", dtype=None):
        super().__init__(mean_squared_logarithmic_error, name=name, reduction=reduction, dtype=dtype)


class CosineSimilarity(_BuiltinWrapper):
    """Negative cosine similarity along ``axis``: ``-sum(l2_normalize(y) * l2_normalize(p))``."""

    def __init__(self, axis=-1, reduction="sum_over_batch_size", name="cosine_similarity", dtype=None):
        super().__init__(cosine_similarity, name=name, reduction=reduction, dtype=dtype, axis=axis)
        self.axis = axis


class Huber(_BuiltinWrapper):
    """Huber loss: quadratic for errors up to ``delta``, linear beyond."""

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss", dtype=None):
        super().__init__(huber, name=name, reduction=reduction, dtype=dtype, delta=delta)
        self.delta = delta


class LogCosh(_BuiltinWrapper):
    """``mean(log(cosh(p - y)))``."""

    def __init__(self, reduction="sum_over_batch_size", name="log_cosh", dtype=None):
        super().__init__(log_cosh, name=name, reduction=reduction, dtype=dtype)


class Hinge(_BuiltinWrapper):
    """``mean(max(1 - y p, 0))`` with labels in {-1, 1} (0/1 labels are converted)."""

    def __init__(self, reduction="sum_over_batch_size", name="hinge", dtype=None):
        super().__init__(hinge, name=name, reduction=reduction, dtype=dtype)


class SquaredHinge(_BuiltinWrapper):
    """``mean(max(1 - y p, 0)^2)`` with labels in {-1, 1} (0/1 labels are converted)."""

    def __init__(self, reduction="sum_over_batch_size", name="squared_hinge", dtype=None):
        super().__init__(squared_hinge, name=name, reduction=reduction, dtype=dtype)


class CategoricalHinge(_BuiltinWrapper):
    """``max(max((1 - y) p) - sum(y p) + 1, 0)`` for one-hot labels."""

    def __init__(self, reduction="sum_over_batch_size", name="categorical_hinge", dtype=None):
        super().__init__(categorical_hinge, name=name, reduction=reduction, dtype=dtype)


class KLDivergence(_BuiltinWrapper):
    """Kullback-Leibler divergence ``sum(y log(y / p))``."""

    def __init__(self, reduction="sum_over_batch_size", name="kl_divergence", dtype=None):
        super().__init__(kl_divergence, name=name, reduction=reduction, dtype=dtype)


class Poisson(_BuiltinWrapper):
    """``mean(p - y log(p + epsilon))``."""

    def __init__(self, reduction="sum_over_batch_size", name="poisson", dtype=None):
        super().__init__(poisson, name=name, reduction=reduction, dtype=dtype)


class BinaryCrossentropy(_BuiltinWrapper):
    """Crossentropy of binary targets against probabilities or logits (``from_logits=True``)."""

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="binary_crossentropy", dtype=None):
        super().__init__(binary_crossentropy, name=name, reduction=reduction, dtype=dtype,
                         from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing
        self.axis = axis


class BinaryFocalCrossentropy(_BuiltinWrapper):
    """Binary crossentropy down-weighting easy examples by ``(1 - p_t)^gamma``."""

    def __init__(self, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False,
                 label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="binary_focal_crossentropy", dtype=None):
        super().__init__(binary_focal_crossentropy, name=name, reduction=reduction, dtype=dtype,
                         from_logits=from_logits, label_smoothing=label_smoothing, axis=axis,
                         apply_class_balancing=apply_class_balancing, alpha=alpha, gamma=gamma)
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing
        self.axis = axis
        self.apply_class_balancing = apply_class_balancing
        self.alpha = alpha
        self.gamma = gamma


class CategoricalCrossentropy(_BuiltinWrapper):
    """Crossentropy of one-hot (or soft) targets against probabilities or logits."""

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="categorical_crossentropy", dtype=None):
        super().__init__(categorical_crossentropy, name=name, reduction=reduction, dtype=dtype,
                         from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing
        self.axis = axis


class CategoricalFocalCrossentropy(_BuiltinWrapper):
    """Categorical crossentropy weighted by ``alpha (1 - p)^gamma``."""

    def __init__(self, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_focal_crossentropy", dtype=None):
        super().__init__(categorical_focal_crossentropy, name=name, reduction=reduction, dtype=dtype,
                         from_logits=from_logits, label_smoothing=label_smoothing, axis=axis,
                         alpha=alpha, gamma=gamma)
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing
        self.axis = axis
        self.alpha = alpha
        self.gamma = gamma


class SparseCategoricalCrossentropy(_BuiltinWrapper):
    """Crossentropy of integer class indices against probabilities or logits.

    Entries whose label equals ``ignore_class`` contribute nothing and are left out of the mean.
    """

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size", axis=-1,
                 name="sparse_categorical_crossentropy", dtype=None):
        super().__init__(sparse_categorical_crossentropy, name=name, reduction=reduction, dtype=dtype,
                         from_logits=from_logits, ignore_class=ignore_class, axis=axis)
        self.from_logits = from_logits
        self.ignore_class = ignore_class
        self.axis = axis


class Dice(_BuiltinWrapper):
    """Dice loss ``1 - 2 |y p| / (|y| + |p|)`` over ``axis`` (all axes by default)."""

    def __init__(self, reduction="sum_over_batch_size", name="dice", axis=None, dtype=None):
        super().__init__(dice, name=name, reduction=reduction, dtype=dtype, axis=axis)
        self.axis = axis


class Tversky(_BuiltinWrapper):
    """Tversky loss ``1 - TP / (TP + alpha FP + beta FN)``; alpha = beta = 0.5 is Dice."""

    def __init__(self, alpha=0.5, beta=0.5, reduction="sum_over_batch_size", name="tversky", axis=None,
                 dtype=None):
        super().__init__(tversky, name=name, reduction=reduction, dtype=dtype, alpha=alpha, beta=beta,
                         axis=axis)
        self.alpha = alpha
        self.beta = beta
        self.axis = axis


class CategoricalGeneralizedCrossEntropy(_BuiltinWrapper):
    """Generalised crossentropy ``(1 - p[label]^q) / q`` for integer labels, robust to label noise."""

    def __init__(self, q=0.5, reduction="sum_over_batch_size", name="categorical_generalized_cross_entropy",
                 dtype=None):
        if not 0 < q < 1:
            raise ValueError(
                f"In loss CategoricalGeneralizedCrossEntropy, `q` must lie in the open interval (0, 1). "
                f"Received: q={q!r}"
            )
        super().__init__(categorical_generalized_cross_entropy, name=name, reduction=reduction, dtype=dtype,
                         q=q)
        self.q = q


class Circle(_BuiltinWrapper):
    """Circle loss of integer labels and L2-normalised embeddings (see :func:`circle`).

    Rows whose loss is 0 are masked out of the reduction, as in Keras.
    """

    def __init__(self, gamma=80.0, margin=0.4, remove_diagonal=True, reduction="sum_over_batch_size",
                 name="circle", dtype=None):
        super().__init__(circle, name=name, reduction=reduction, dtype=dtype, gamma=gamma, margin=margin,
                         remove_diagonal=remove_diagonal)
        self.gamma = gamma
        self.margin = margin
        self.remove_diagonal = remove_diagonal


class CTC(_BuiltinWrapper):
    """Connectionist Temporal Classification loss of padded integer labels and logits (see :func:`ctc`)."""

    def __init__(self, reduction="sum_over_batch_size", name="ctc", dtype=None):
        super().__init__(ctc, name=name, reduction=reduction, dtype=dtype)


# Short names, as in Keras 2 and Keras 3's legacy namespace.
mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error
mape = MAPE = mean_absolute_percentage_error
msle = MSLE = mean_squared_logarithmic_error
kld = KLD = kl_divergence
bce = BCE = binary_crossentropy


# ----------------------------------------------------------------------------- get / serialize

_CLASSES = [
    Loss, LossFunctionWrapper, KLDivergence, Poisson, BinaryCrossentropy, BinaryFocalCrossentropy,
    CategoricalCrossentropy, CategoricalFocalCrossentropy, SparseCategoricalCrossentropy,
    MeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError, MeanSquaredLogarithmicError,
    CosineSimilarity, LogCosh, Huber, Hinge, SquaredHinge, CategoricalHinge, Dice, Tversky,
    CategoricalGeneralizedCrossEntropy, Circle, CTC,
]
_FUNCTIONS = [
    kl_divergence, poisson, binary_crossentropy, binary_focal_crossentropy, categorical_crossentropy,
    categorical_focal_crossentropy, sparse_categorical_crossentropy, mean_squared_error,
    mean_absolute_error, mean_absolute_percentage_error, mean_squared_logarithmic_error,
    cosine_similarity, log_cosh, huber, hinge, squared_hinge, categorical_hinge, dice, tversky,
    categorical_generalized_cross_entropy, circle, ctc,
]
ALL_OBJECTS: dict[str, object] = {obj.__name__: obj for obj in _CLASSES + _FUNCTIONS}
ALL_OBJECTS.update({
    "bce": binary_crossentropy, "BCE": binary_crossentropy, "kld": kl_divergence, "KLD": kl_divergence,
    "mae": mean_absolute_error, "MAE": mean_absolute_error, "mse": mean_squared_error,
    "MSE": mean_squared_error, "mape": mean_absolute_percentage_error,
    "MAPE": mean_absolute_percentage_error, "msle": mean_squared_logarithmic_error,
    "MSLE": mean_squared_logarithmic_error,
})
_BUILTIN_CLASSES = frozenset(_CLASSES)


def _lookup(name: str, custom_objects: dict | None = None):
    """``name`` in ``custom_objects``, then the global custom-object registry, then the built-ins."""
    obj = get_registered_object(name, custom_objects, ALL_OBJECTS)
    if obj is not None:
        return obj
    close = difflib.get_close_matches(name, list(ALL_OBJECTS), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ValueError(
        f"Unknown loss: '{name}'.{hint} Valid names are: {sorted(ALL_OBJECTS, key=str.lower)}. "
        f"Received: identifier={name!r}"
    )


def serialize(loss) -> dict | None:
    """A loss as Keras's serialized dict: ``{"module", "class_name", "config", "registered_name"}``."""
    if loss is None:
        return None
    if isinstance(loss, Loss):
        cls = type(loss)
        if cls is LossFunctionWrapper:
            module, registered = "keras.src.losses.losses", "LossFunctionWrapper"
        elif cls in _BUILTIN_CLASSES:
            module, registered = "keras.losses", None
        else:
            module, registered = cls.__module__, get_registered_name(cls)
        return {"module": module, "class_name": cls.__name__, "config": loss.get_config(),
                "registered_name": registered}
    if callable(loss):
        if getattr(loss, "__name__", None) is None:
            raise ValueError(f"Cannot serialize loss {loss!r}: it has no name. Received: loss={loss!r}")
        return serialize_function(loss)
    raise ValueError(f"Cannot serialize a loss from {type(loss).__name__}. Received: loss={loss!r}")


def deserialize(config, custom_objects: dict | None = None):
    """The loss function or :class:`Loss` instance described by ``config`` (see :func:`serialize`).

    Also accepts a plain name (``"mse"``, ``"Huber"``) and the legacy ``{"class_name", "config"}``.
    """
    if isinstance(config, str):
        obj = _lookup(config, custom_objects)
        return obj() if inspect.isclass(obj) else obj
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(
            "A serialized loss must be a name or a dict with 'class_name' and 'config'. "
            f"Received: config={config!r}"
        )
    class_name, inner = config["class_name"], config.get("config")
    # A registered name ("package>Name") wins; built-ins carry None or "function" there.
    registered = config.get("registered_name")
    keyed = isinstance(registered, str) and registered != "function"
    found = get_registered_object(registered, custom_objects) if keyed else None
    if class_name == "function":
        return found if found is not None else _lookup(inner, custom_objects)
    cls = found if found is not None else _lookup(class_name, custom_objects)
    if not (inspect.isclass(cls) and issubclass(cls, Loss)):
        raise ValueError(f"'{class_name}' is not a Loss class. Received: config={config!r}")
    return cls.from_config(dict(inner or {}))


def get(identifier):
    """A loss from a name, a serialized dict, a :class:`Loss` class or instance, or a callable.

    Names of classes give instances with default arguments; names of functions give the function.
    """
    if identifier is None:
        return None
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, dict):
        obj = deserialize(identifier)
    elif isinstance(identifier, str):
        obj = _lookup(identifier)
    else:
        obj = identifier
    if inspect.isclass(obj):
        if not issubclass(obj, Loss):
            raise ValueError(f"Could not interpret loss identifier: {obj!r} is not a Loss class. "
                             f"Received: identifier={identifier!r}")
        return obj()
    if callable(obj):
        return obj
    raise ValueError(
        "Could not interpret loss identifier: expected a loss name, a config dict, a Loss or a callable. "
        f"Received: identifier={identifier!r}"
    )
