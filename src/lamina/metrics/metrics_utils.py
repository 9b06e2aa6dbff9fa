"""Shared helpers for metrics: input conversion, rank alignment, safe division, confusion counts.

Metrics are never differentiated, so everything here is plain NumPy on the values behind
Tensors/Variables: no tape, no graph.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from lamina import backend
from lamina.autodiff import unwrap

# The "minus infinity" Keras uses for predictions outside the top k (finite, so products stay finite).
NEG_INF = -1e10


class AUCCurve(StrEnum):
    """AUC's curves; members equal their strings (``AUCCurve.PR == "PR"``), so AUC keeps plain strings."""

    ROC = "ROC"
    PR = "PR"
    PRGAIN = "PRGAIN"

    @staticmethod
    def from_str(key: str) -> AUCCurve:
        for member in AUCCurve:
            if key in (member.value, member.value.lower()):
                return member
        raise ValueError(f'Invalid AUC curve value: "{key}". Expected values are ["PR", "ROC", "PRGAIN"]')


class AUCSummationMethod(StrEnum):
    """AUC's Riemann sums; members equal their strings, as :class:`AUCCurve`'s do."""

    INTERPOLATION = "interpolation"
    MAJORING = "majoring"
    MINORING = "minoring"

    @staticmethod
    def from_str(key: str) -> AUCSummationMethod:
        for member in AUCSummationMethod:
            if key in (member.value, member.value.capitalize()):
                return member
        raise ValueError(
            f'Invalid AUC summation method value: "{key}". '
            'Expected values are ["interpolation", "majoring", "minoring"]'
        )


def to_array(x, dtype=None, arg: str = "value") -> np.ndarray:
    """The plain ndarray behind ``x``; Python float lists become floatx (as everywhere in lamina)."""
    v = unwrap(x)
    try:
        arr = np.asarray(v) if dtype is None else np.asarray(v, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"Metric argument `{arg}` must be array-like (NumPy array, list, lamina Tensor). "
            f"Received: {arg}={x!r:.80}"
        ) from err
    if dtype is None and arr.dtype == np.float64 and not isinstance(v, np.ndarray):
        arr = arr.astype(backend.floatx())
    if arr.dtype == object:
        raise TypeError(f"Metric argument `{arg}` must hold numbers. Received: {arg}={x!r:.80}")
    return arr


def float_array(x, arg: str) -> np.ndarray:
    """``x`` as an array with a floating dtype (integers and booleans become floatx)."""
    arr = to_array(x, arg=arg)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(backend.floatx())
    return arr


def squeeze_or_expand_to_same_rank(x1: np.ndarray, x2: np.ndarray, expand_rank_1: bool = True):
    """Keras's rank alignment: when ranks differ by one and the longer has a trailing 1, fix it.

    A rank-1 partner is expanded (``(N,)`` with ``(N, 1)`` becomes ``(N, 1)`` twice) unless
    ``expand_rank_1`` is False; otherwise the trailing 1 is squeezed away.
    """
    r1, r2 = x1.ndim, x2.ndim
    if r1 == r2:
        return x1, x2
    if r1 == r2 + 1 and x1.shape[-1] == 1:
        if r2 == 1 and expand_rank_1:
            x2 = x2[..., None]
        else:
            x1 = x1[..., 0]
    elif r2 == r1 + 1 and x2.shape[-1] == 1:
        if r1 == 1 and expand_rank_1:
            x1 = x1[..., None]
        else:
            x2 = x2[..., 0]
    return x1, x2


def check_same_shape(y_true: np.ndarray, y_pred: np.ndarray, who: str, hint: str = "") -> None:
    """Raise a ValueError naming the metric when the aligned label and prediction shapes differ."""
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"{who}: `y_true` and `y_pred` must have the same shape{hint}. "
            f"Received: y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}"
        )


def broadcast_weight(sample_weight: np.ndarray, shape: tuple, who: str) -> np.ndarray:
    """``np.broadcast_to`` with an error in the user's terms."""
    try:
        return np.broadcast_to(sample_weight, shape)
    except ValueError:
        raise ValueError(
            f"{who}: `sample_weight` must be broadcastable to shape {shape}. "
            f"Received: sample_weight.shape={sample_weight.shape}"
        ) from None


def divide_no_nan(num, den):
    """``num / den`` with 0 where ``den == 0`` (and no RuntimeWarning)."""
    num, den = np.broadcast_arrays(np.asarray(num), np.asarray(den))
    out = np.zeros(num.shape, dtype=np.result_type(num, den))
    np.divide(num, den, out=out, where=den != 0)
    return out


def parse_thresholds(thresholds, default: float) -> list[float]:
    """Keras's threshold argument: None -> [default]; a float or a list of floats in [0, 1]."""
    if thresholds is None:
        return [float(default)]
    values = list(thresholds) if isinstance(thresholds, (list, tuple, np.ndarray)) else [thresholds]
    bad = [t for t in values if t is None or not np.isscalar(t) or isinstance(t, str) or not (0 <= t <= 1)]
    if bad:
        # Keras's wording (its tests match it): the offending values only.
        raise ValueError(f"Threshold values must be in [0, 1]. Received: {bad}")
    if not values:
        raise ValueError(f"Threshold values must be in [0, 1]; at least one is needed. Received: {thresholds!r}")
    return [float(t) for t in values]


def is_evenly_distributed(thresholds) -> bool:
    """True for ``[0, 1/(n-1), ..., 1]`` with n >= 3 (within epsilon): the bucketed fast path applies."""
    n = len(thresholds)
    if n < 3:
        return False
    even = np.arange(n, dtype=np.float32) / (n - 1)
    return bool(np.allclose(thresholds, even, atol=backend.epsilon()))


def top_k_mask(x: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` largest entries along the last axis (all of them when k >= size)."""
    n = x.shape[-1]
    if k >= n:
        return np.ones(x.shape, dtype=bool)
    # A stable sort keeps the lowest index among tied scores, so ties resolve deterministically.
    idx = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    mask = np.zeros(x.shape, dtype=bool)
    np.put_along_axis(mask, idx, True, axis=-1)
    return mask


def _reverse_cumsum(h: np.ndarray) -> np.ndarray:
    return np.cumsum(h[::-1], axis=0)[::-1]


def confusion_counts(y_true, y_pred, thresholds, *, evenly: bool = False, top_k=None, class_id=None,
                     sample_weight=None, multi_label: bool = False, label_weights=None,
                     dtype="float32", who: str = "metric"):
    """Weighted true/false positive/negative counts at each threshold: four arrays of shape (T,).

    (T, L) with ``multi_label``. A prediction counts as positive at threshold ``t`` when ``p > t``;
    labels are positive when nonzero. Vectorised without a (T, N) comparison matrix:

    * evenly spaced thresholds (Keras's fast path, reproduced bucket for bucket): each prediction goes
      to bucket ``ceil(p * (T - 1)) - 1``; counts at threshold i are the weights of buckets >= i.
    * other thresholds: ``k = #{t < p}`` (a sorted search); counts at threshold i are the weights
      with ``k > i``. Both are a histogram plus a reverse cumulative sum, O(N log T + T).
    """
    y_true = to_array(y_true, arg="y_true").astype(dtype, copy=False)
    y_pred = to_array(y_pred, arg="y_pred").astype(dtype, copy=False)
    thr = np.asarray(thresholds, dtype=dtype)
    y_pred, y_true = squeeze_or_expand_to_same_rank(y_pred, y_true)
    check_same_shape(y_true, y_pred, who)
    if sample_weight is not None:
        sw = to_array(sample_weight, arg="sample_weight").astype(dtype, copy=False)[..., None]
        _, sw = squeeze_or_expand_to_same_rank(y_true, sw, expand_rank_1=False)
    else:
        sw = None
    if top_k is not None:
        y_pred = np.where(top_k_mask(y_pred, int(top_k)), y_pred, np.asarray(NEG_INF, dtype))
    if class_id is not None:
        if y_pred.ndim < 2:
            raise ValueError(
                f"{who}: When class_id is provided, y_pred must be a 2D array with shape "
                f"(num_samples, num_classes), found shape: {y_pred.shape}"
            )
        if not 0 <= class_id < y_pred.shape[-1]:
            raise ValueError(
                f"{who}: `class_id` must lie in [0, {y_pred.shape[-1]}). Received: class_id={class_id}"
            )
        y_true = y_true[..., class_id, None]
        y_pred = y_pred[..., class_id, None]
    if multi_label and y_pred.ndim != 2:
        raise ValueError(
            f"{who}: `y_pred` must have rank 2 when `multi_label=True`. Received: y_pred.shape={y_pred.shape}"
        )
    weights = None
    if sw is not None:
        weights = broadcast_weight(sw, y_pred.shape, who)
    if label_weights is not None:
        lw = broadcast_weight(np.asarray(label_weights, dtype)[None], y_pred.shape, who)
        weights = lw if weights is None else weights * lw

    n_thr = thr.shape[0]
    positive = y_true != 0
    if evenly:
        # Keras clips to [0, 1] first, then buckets with float32 arithmetic: reproduce exactly.
        p = np.clip(y_pred, 0.0, 1.0)
        bucket = np.ceil(p * np.asarray(n_thr - 1, dtype)) - 1
        if thr[0] < 0.0 or thr[-1] > 1.0:
            # Endpoints carry an epsilon: every prediction lies above the first threshold.
            bucket = np.maximum(bucket, 0)
        # Histogram index = bucket + 1 in [0, T]; index 0 (bucket -1: predictions <= the first
        # threshold) collects what no threshold counts.
        idx = bucket.astype(np.int64) + 1
    else:
        order = np.argsort(thr, kind="stable")
        idx = np.searchsorted(thr[order], y_pred, side="left")  # #{t < p}: the same histogram index
    w = None if weights is None else weights.astype(np.float64)
    if multi_label:
        n_labels = y_pred.shape[1]
        idx = idx * n_labels + np.arange(n_labels)
        size = (n_thr + 1) * n_labels
        wt = positive if w is None else np.where(positive, w, 0.0)
        wf = ~positive if w is None else np.where(positive, 0.0, w)
        h_t = np.bincount(idx.ravel(), wt.ravel().astype(np.float64), size).reshape(n_thr + 1, n_labels)
        h_f = np.bincount(idx.ravel(), wf.ravel().astype(np.float64), size).reshape(n_thr + 1, n_labels)
    else:
        flat_idx = idx.ravel()
        pos = positive.ravel()
        if w is None:
            h_t = np.bincount(flat_idx[pos], minlength=n_thr + 1).astype(np.float64)
            h_f = np.bincount(flat_idx[~pos], minlength=n_thr + 1).astype(np.float64)
        else:
            wr = w.ravel()
            h_t = np.bincount(flat_idx[pos], wr[pos], minlength=n_thr + 1)
            h_f = np.bincount(flat_idx[~pos], wr[~pos], minlength=n_thr + 1)
    total_t = h_t.sum(axis=0)
    total_f = h_f.sum(axis=0)
    tp = _reverse_cumsum(h_t[1:])
    fp = _reverse_cumsum(h_f[1:])
    if not evenly:
        # Counts were computed for sorted thresholds; put them back in the user's order.
        inv = np.empty_like(order)
        inv[order] = np.arange(n_thr)
        tp, fp = tp[inv], fp[inv]
    fn = total_t - tp
    tn = total_f - fp
    return tuple(a.astype(dtype) for a in (tp, fp, tn, fn))
