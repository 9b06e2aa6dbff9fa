"""Regression metrics: mean squared / absolute (percentage / logarithmic) error and RMSE."""

from __future__ import annotations

import numpy as np

from lamina import backend
from lamina.metrics import metrics_utils as mu
from lamina.metrics.reduction_metrics import Mean, MeanMetricWrapper


def _aligned(y_true, y_pred, who: str):
    y_pred = mu.float_array(y_pred, "y_pred")
    y_true = mu.to_array(y_true, arg="y_true").astype(y_pred.dtype, copy=False)
    y_true, y_pred = mu.squeeze_or_expand_to_same_rank(y_true, y_pred)
    mu.check_same_shape(y_true, y_pred, who)
    return y_true, y_pred


def mean_squared_error(y_true, y_pred) -> np.ndarray:
    """``mean((y_true - y_pred)**2, axis=-1)``, in y_pred's float dtype."""
    y_true, y_pred = _aligned(y_true, y_pred, "mean_squared_error")
    return np.mean(np.square(y_true - y_pred), axis=-1)


def mean_absolute_error(y_true, y_pred) -> np.ndarray:
    """``mean(|y_true - y_pred|, axis=-1)``, in y_pred's float dtype."""
    y_true, y_pred = _aligned(y_true, y_pred, "mean_absolute_error")
    return np.mean(np.abs(y_true - y_pred), axis=-1)


def mean_absolute_percentage_error(y_true, y_pred) -> np.ndarray:
    """``100 * mean(|y_true - y_pred| / max(|y_true|, epsilon), axis=-1)``."""
    y_true, y_pred = _aligned(y_true, y_pred, "mean_absolute_percentage_error")
    eps = np.asarray(backend.epsilon(), dtype=y_pred.dtype)
    diff = np.abs((y_true - y_pred) / np.maximum(np.abs(y_true), eps))
    return np.asarray(100.0, dtype=y_pred.dtype) * np.mean(diff, axis=-1)


def mean_squared_logarithmic_error(y_true, y_pred) -> np.ndarray:
    """``mean((log(max(y_pred, eps) + 1) - log(max(y_true, eps) + 1))**2, axis=-1)``."""
    y_true, y_pred = _aligned(y_true, y_pred, "mean_squared_logarithmic_error")
    eps = np.asarray(backend.epsilon(), dtype=y_pred.dtype)
    # log(x + 1), not log1p: Keras's rounding is the contract (they differ only for x near 0).
    first = np.log(np.maximum(y_pred, eps) + 1)
    second = np.log(np.maximum(y_true, eps) + 1)
    return np.mean(np.square(first - second), axis=-1)


class MeanSquaredError(MeanMetricWrapper):
    """The weighted mean of :func:`mean_squared_error` over all samples seen."""

    def __init__(self, name: str = "mean_squared_error", dtype=None):
        super().__init__(fn=mean_squared_error, name=name, dtype=dtype)
        self._direction = "down"

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}


class MeanAbsoluteError(MeanMetricWrapper):
    """The weighted mean of :func:`mean_absolute_error` over all samples seen."""

    def __init__(self, name: str = "mean_absolute_error", dtype=None):
        super().__init__(fn=mean_absolute_error, name=name, dtype=dtype)
        self._direction = "down"

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}


class MeanAbsolutePercentageError(MeanMetricWrapper):
    """The weighted mean of :func:`mean_absolute_percentage_error` over all samples seen."""

    def __init__(self, name: str = "mean_absolute_percentage_error", dtype=None):
        super().__init__(fn=mean_absolute_percentage_error, name=name, dtype=dtype)
        self._direction = "down"

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}


class MeanSquaredLogarithmicError(MeanMetricWrapper):
    """The weighted mean of :func:`mean_squared_logarithmic_error` over all samples seen."""

    def __init__(self, name: str = "mean_squared_logarithmic_error", dtype=None):
        super().__init__(fn=mean_squared_logarithmic_error, name=name, dtype=dtype)
        self._direction = "down"

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}


class RootMeanSquaredError(Mean):
    """``sqrt(weighted mean of (y_pred - y_true)**2)`` over all elements seen (per sample averaged)."""

    def __init__(self, name: str = "root_mean_squared_error", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._direction = "down"

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        y_true = mu.to_array(y_true, arg="y_true").astype(self.dtype, copy=False)
        y_pred = mu.to_array(y_pred, arg="y_pred").astype(self.dtype, copy=False)
        y_true, y_pred = mu.squeeze_or_expand_to_same_rank(y_true, y_pred)
        mu.check_same_shape(y_true, y_pred, self.name)
        super().update_state(np.square(y_pred - y_true), sample_weight=sample_weight)

    def result(self) -> np.ndarray:
        return np.sqrt(super().result())
