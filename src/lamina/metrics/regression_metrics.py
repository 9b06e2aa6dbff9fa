"""Regression metrics: mean squared / absolute (percentage / logarithmic) error, RMSE, cosine
similarity, log-cosh error and the coefficient of determination (R2Score)."""

from __future__ import annotations

import warnings

import numpy as np

from lamina import backend, losses
from lamina.metrics import metrics_utils as mu
from lamina.metrics.metric import Metric
from lamina.metrics.reduction_metrics import LossMetric, Mean, MeanMetricWrapper


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


def _l2_normalize(x: np.ndarray, axis: int) -> np.ndarray:
    # x / sqrt(max(sum x^2, eps^2)): Keras's normalize (x * min(rsqrt(sum x^2), 1 / eps)); a zero vector stays zero.
    eps = np.asarray(backend.epsilon(), dtype=x.dtype)
    square_sum = np.sum(np.square(x), axis=axis, keepdims=True)
    return x / np.sqrt(np.maximum(square_sum, eps * eps))


def cosine_similarity(y_true, y_pred, axis: int = -1) -> np.ndarray:
    """``sum(l2_normalize(y_true) * l2_normalize(y_pred), axis)``: 1 parallel, 0 orthogonal, -1 opposite.

    The metric's sign: the loss :func:`lamina.losses.cosine_similarity` is its negative.
    """
    y_true, y_pred = _aligned(y_true, y_pred, "cosine_similarity")
    if y_pred.ndim == 0 or not -y_pred.ndim <= axis < y_pred.ndim:
        raise ValueError(
            f"cosine_similarity: `axis` must index an axis of y_pred (rank {y_pred.ndim}). Received: axis={axis}"
        )
    return np.sum(_l2_normalize(y_true, axis) * _l2_normalize(y_pred, axis), axis=axis)


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


class CosineSimilarity(MeanMetricWrapper):
    """The weighted mean of :func:`cosine_similarity` along ``axis`` over all samples seen.

    Keras's config leaves ``axis`` out (so its round trip forgets a non-default axis); lamina's
    config carries ``axis`` only when it is not -1, so the default config is Keras's exactly.
    """

    def __init__(self, name: str = "cosine_similarity", dtype=None, axis: int = -1):
        super().__init__(fn=cosine_similarity, name=name, dtype=dtype, axis=axis)
        self.axis = axis
        self._direction = "up"

    def get_config(self) -> dict:
        config = {"name": self.name, "dtype": self.dtype}
        if self.axis != -1:
            config["axis"] = self.axis
        return config


class LogCoshError(LossMetric):
    """The weighted mean of ``mean(log(cosh(y_pred - y_true)), -1)`` over all samples seen."""

    def __init__(self, name: str = "logcosh", dtype=None):
        super().__init__(fn=losses.log_cosh, name=name, dtype=dtype)
        self._direction = "down"


_CLASS_AGGREGATIONS = (None, "uniform_average", "variance_weighted_average")


class R2Score(Metric):
    """Coefficient of determination ``1 - SS_res / SS_tot`` per output column, over all batches.

    ``SS_res = sum(w (y - p)^2)`` and ``SS_tot = sum(w y^2) - sum(w y)^2 / sum(w)`` per column
    (a column with ``SS_tot = 0`` and ``SS_res > 0`` scores 0). With ``num_regressors = k > 0``
    the adjusted score ``1 - (1 - R2) (n - 1) / (n - k - 1)`` is returned, ``n`` counting every
    element seen, as Keras counts; when ``k >= n - 1`` a warning says the plain score is returned.

    Args:
        class_aggregation: None (one score per column), "uniform_average" (their mean) or
            "variance_weighted_average" (weighted by each column's ``SS_tot``).
        num_regressors: ``k`` of the adjusted score; 0 gives the plain score.
        name, dtype: as for every metric.

    Inputs have shape (batch, outputs); the state is built at the first update.
    """

    def __init__(self, class_aggregation: str | None = "uniform_average", num_regressors: int = 0,
                 name: str = "r2_score", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._direction = "up"
        if class_aggregation not in _CLASS_AGGREGATIONS:
            raise ValueError(
                "Invalid value for argument `class_aggregation`. Expected one of "
                f"{_CLASS_AGGREGATIONS}. Received: class_aggregation={class_aggregation}"
            )
        if isinstance(num_regressors, bool) or not isinstance(num_regressors, (int, np.integer)) \
                or num_regressors < 0:
            raise ValueError(
                "Invalid value for argument `num_regressors`. Expected an integer >= 0. "
                f"Received: num_regressors={num_regressors!r}"
            )
        self.class_aggregation = class_aggregation
        self.num_regressors = int(num_regressors)
        self.num_samples = self.add_variable(shape=(), initializer="zeros", name="num_samples")
        self._built = False

    def _build(self, shape: tuple) -> None:
        n = shape[-1]
        self.squared_sum = self.add_variable(shape=(n,), initializer="zeros", name="squared_sum")
        self.sum = self.add_variable(shape=(n,), initializer="zeros", name="sum")
        self.total_mse = self.add_variable(shape=(n,), initializer="zeros", name="residual")
        self.count = self.add_variable(shape=(n,), initializer="zeros", name="count")
        self._built = True

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        y_true = mu.to_array(y_true, arg="y_true").astype(self.dtype, copy=False)
        y_pred = mu.to_array(y_pred, arg="y_pred").astype(self.dtype, copy=False)
        y_true, y_pred = mu.squeeze_or_expand_to_same_rank(y_true, y_pred)
        if y_true.ndim != 2 or y_pred.ndim != 2:
            raise ValueError(
                f"{self.name}: R2Score expects 2D inputs with shape (batch_size, output_dim). "
                f"Received: y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}"
            )
        mu.check_same_shape(y_true, y_pred, self.name)
        if not self._built:
            self._build(y_pred.shape)
        elif y_pred.shape[-1] != self.sum.shape[0]:
            raise ValueError(
                f"{self.name}: expected {self.sum.shape[0]} output columns, as in earlier batches. "
                f"Received: y_pred.shape={y_pred.shape}"
            )
        if sample_weight is None:
            sw = np.ones(y_true.shape, dtype=self.dtype)
        else:
            sw = mu.to_array(sample_weight, arg="sample_weight").astype(self.dtype, copy=False)
            if sw.ndim == 1:
                sw = sw[:, None]  # one weight per sample, shared by its columns
            sw = mu.broadcast_weight(sw, y_true.shape, self.name)
        weighted = y_true * sw
        self.sum.value[...] += weighted.sum(axis=0)
        self.squared_sum.value[...] += (y_true * weighted).sum(axis=0)
        self.total_mse.value[...] += (np.square(y_true - y_pred) * sw).sum(axis=0)
        self.count.value[...] += sw.sum(axis=0)
        self.num_samples.value[...] += y_true.size

    def _adjusted(self, r2: np.ndarray) -> np.ndarray:
        n, k = float(self.num_samples.value), self.num_regressors
        if k > n - 1:
            warnings.warn(f"{self.name}: more independent predictors (num_regressors={k}) than data points "
                          f"({n:g}) in the adjusted R2 score; returning the standard R2 score.", stacklevel=3)
            return r2
        if k == n - 1:
            warnings.warn(f"{self.name}: division by zero in the adjusted R2 score (num_regressors={k} = "
                          f"data points - 1); returning the standard R2 score.", stacklevel=3)
            return r2
        return (1.0 - (1.0 - r2) * (n - 1.0) / (n - k - 1.0)).astype(self.dtype)

    def result(self) -> np.ndarray:
        if not self._built:
            return np.zeros((), dtype=self.dtype)
        with np.errstate(divide="ignore", invalid="ignore"):
            # Keras's arithmetic, unguarded: an empty column gives NaN, a constant one +-inf (-> 0).
            mean = self.sum.value / self.count.value
            total = self.squared_sum.value - self.sum.value * mean
            raw = 1 - self.total_mse.value / total
        raw = np.where(np.isinf(raw), 0.0, raw).astype(self.dtype)
        if self.class_aggregation == "uniform_average":
            r2 = np.mean(raw)
        elif self.class_aggregation == "variance_weighted_average":
            with np.errstate(divide="ignore", invalid="ignore"):
                r2 = np.sum(total * raw) / np.sum(total)
        else:
            r2 = raw
        r2 = np.asarray(r2, dtype=self.dtype)
        return self._adjusted(r2) if self.num_regressors else r2

    def get_config(self) -> dict:
        return {**super().get_config(), "class_aggregation": self.class_aggregation,
                "num_regressors": self.num_regressors}
