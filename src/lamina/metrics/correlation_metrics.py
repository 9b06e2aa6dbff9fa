"""Correlation metrics: Pearson's and Lin's concordance correlation, per sample, averaged over batches."""

from __future__ import annotations

import numpy as np

from lamina import backend
from lamina.autodiff import unwrap
from lamina.losses import squeeze_or_expand_to_same_rank
from lamina.metrics.reduction_metrics import MeanMetricWrapper


def _pair(y_true, y_pred):
    """Both as float arrays of y_pred's float dtype (floatx for lists and integers), ranks aligned."""
    y_pred = np.asarray(unwrap(y_pred))
    if not np.issubdtype(y_pred.dtype, np.floating):
        y_pred = y_pred.astype(backend.floatx())
    y_true = np.asarray(unwrap(y_true), dtype=y_pred.dtype)
    return squeeze_or_expand_to_same_rank(y_true, y_pred)


def pearson_correlation(y_true, y_pred, axis=-1):
    """Pearson's correlation along ``axis``: ``mean(z(y_true) * z(y_pred))`` with ``z`` the standard
    score (population standard deviation). A constant slice has no correlation: NaN, as in Keras."""
    y_true, y_pred = _pair(y_true, y_pred)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = y_true - y_true.mean(axis=axis, keepdims=True)
        p = y_pred - y_pred.mean(axis=axis, keepdims=True)
        t = t / t.std(axis=axis, keepdims=True)
        p = p / p.std(axis=axis, keepdims=True)
        return (t * p).mean(axis=axis)


def concordance_correlation(y_true, y_pred, axis=-1):
    """Lin's concordance correlation along ``axis``::

        2 cov(t, p) / (var(t) + var(p) + (mean(t) - mean(p))^2 + epsilon)

    (population moments): 1 only when the predictions equal the targets, not merely correlate."""
    y_true, y_pred = _pair(y_true, y_pred)
    t_mean = y_true.mean(axis=axis, keepdims=True)
    p_mean = y_pred.mean(axis=axis, keepdims=True)
    t_var = y_true.var(axis=axis, keepdims=True)
    p_var = y_pred.var(axis=axis, keepdims=True)
    covar = (y_true - t_mean) * (y_pred - p_mean)
    norm = t_var + p_var + np.square(t_mean - p_mean)
    eps = np.asarray(backend.epsilon(), dtype=y_pred.dtype)
    return (2 * covar / (norm + eps)).mean(axis=axis)


class PearsonCorrelation(MeanMetricWrapper):
    """Weighted mean over samples of :func:`pearson_correlation` along ``axis``."""

    def __init__(self, name: str = "pearson_correlation", dtype=None, axis: int = -1):
        super().__init__(pearson_correlation, name=name, dtype=dtype, axis=axis)
        self.axis = axis
        self._direction = "up"

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "axis": self.axis}


class ConcordanceCorrelation(MeanMetricWrapper):
    """Weighted mean over samples of :func:`concordance_correlation` along ``axis``."""

    def __init__(self, name: str = "concordance_correlation", dtype=None, axis: int = -1):
        super().__init__(concordance_correlation, name=name, dtype=dtype, axis=axis)
        self.axis = axis
        self._direction = "up"

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "axis": self.axis}
