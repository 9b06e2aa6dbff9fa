"""Probabilistic metrics: crossentropies, KL divergence and Poisson, averaged over all samples seen.

Each is the weighted mean of the matching loss function of :mod:`lamina.losses` (the same formula,
clipping and label handling).
"""

from __future__ import annotations

from lamina import losses
from lamina.metrics import metrics_utils as mu
from lamina.metrics.reduction_metrics import LossMetric, Mean


class KLDivergence(LossMetric):
    """Weighted mean of ``sum(y * log(y / p), -1)`` (both clipped to ``[epsilon, 1]``)."""

    def __init__(self, name: str = "kl_divergence", dtype=None):
        super().__init__(fn=losses.kl_divergence, name=name, dtype=dtype)


class Poisson(LossMetric):
    """Weighted mean of ``mean(p - y * log(p + epsilon), -1)``."""

    def __init__(self, name: str = "poisson", dtype=None):
        super().__init__(fn=losses.poisson, name=name, dtype=dtype)


class BinaryCrossentropy(LossMetric):
    """Weighted mean of :func:`lamina.losses.binary_crossentropy` (labels 0/1, last axis averaged).

    Args:
        name, dtype: as for every metric.
        from_logits: ``y_pred`` holds logits rather than probabilities.
        label_smoothing: move the labels toward 0.5 by this fraction.
    """

    _config_keys = ("from_logits", "label_smoothing")

    def __init__(self, name: str = "binary_crossentropy", dtype=None, from_logits: bool = False,
                 label_smoothing: float = 0):
        super().__init__(losses.binary_crossentropy, name=name, dtype=dtype, from_logits=from_logits,
                         label_smoothing=label_smoothing)
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing
        self._direction = "down"


class CategoricalCrossentropy(LossMetric):
    """Weighted mean of :func:`lamina.losses.categorical_crossentropy` (one-hot labels along ``axis``).

    Args:
        name, dtype: as for every metric.
        from_logits: ``y_pred`` holds logits rather than probabilities.
        label_smoothing: mix the one-hot labels with the uniform distribution by this fraction.
        axis: the class axis.
    """

    _config_keys = ("from_logits", "label_smoothing", "axis")

    def __init__(self, name: str = "categorical_crossentropy", dtype=None, from_logits: bool = False,
                 label_smoothing: float = 0, axis: int = -1):
        super().__init__(losses.categorical_crossentropy, name=name, dtype=dtype, from_logits=from_logits,
                         label_smoothing=label_smoothing, axis=axis)
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing
        self.axis = axis
        self._direction = "down"


class SparseCategoricalCrossentropy(LossMetric):
    """Weighted mean of :func:`lamina.losses.sparse_categorical_crossentropy` (integer labels).

    Entries labelled ``ignore_class`` score 0. As in Keras 3.15, they leave the mean's denominator
    only when a ``sample_weight`` is given (their weight becomes 0); without one they still count
    as samples, so the mean is taken over every entry.

    Args:
        name, dtype: as for every metric.
        from_logits: ``y_pred`` holds logits rather than probabilities.
        ignore_class: a label whose entries are left out (see above); None keeps all.
        axis: the class axis of ``y_pred``.
    """

    _config_keys = ("from_logits", "ignore_class", "axis")

    def __init__(self, name: str = "sparse_categorical_crossentropy", dtype=None, from_logits: bool = False,
                 ignore_class: int | None = None, axis: int = -1):
        super().__init__(losses.sparse_categorical_crossentropy, name=name, dtype=dtype,
                         from_logits=from_logits, ignore_class=ignore_class, axis=axis)
        self.from_logits = from_logits
        self.ignore_class = ignore_class
        self.axis = axis
        self._direction = "down"

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        if self.ignore_class is None or sample_weight is None:
            super().update_state(y_true, y_pred, sample_weight=sample_weight)
            return
        y_true = mu.to_array(y_true, arg="y_true")
        values = mu.to_array(self._fn(y_true, mu.to_array(y_pred, arg="y_pred"), **self._fn_kwargs))
        # The loss checked that the labels hold exactly one entry per value.
        valid = (y_true != self.ignore_class).reshape(values.shape).astype(self.dtype)
        sw = mu.to_array(sample_weight, arg="sample_weight").astype(self.dtype, copy=False)
        valid, sw = mu.squeeze_or_expand_to_same_rank(valid, sw)
        if sw.ndim < valid.ndim:
            sw = sw.reshape(sw.shape + (1,) * (valid.ndim - sw.ndim))  # per-sample weights, per entry
        sw = mu.broadcast_weight(sw, valid.shape, self.name) * valid
        Mean.update_state(self, values, sample_weight=sw)
