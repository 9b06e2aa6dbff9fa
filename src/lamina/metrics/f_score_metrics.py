"""F-scores: FBetaScore and F1Score, the weighted harmonic mean of precision and recall per class."""

from __future__ import annotations

import numpy as np

from lamina import backend
from lamina.metrics import metrics_utils as mu
from lamina.metrics.metric import Metric

_AVERAGES = (None, "micro", "macro", "weighted")


def _check_arguments(average, beta, threshold) -> None:
    # Keras's messages, word for word: its tests match them.
    if average not in _AVERAGES:
        raise ValueError(
            "Invalid `average` argument value. Expected one of: {None, 'micro', 'macro', 'weighted'}. "
            f"Received: average={average}"
        )
    if not isinstance(beta, float):  # Keras refuses an int beta too
        raise ValueError(
            f"Invalid `beta` argument value. It should be a Python float. Received: beta={beta} of type '{type(beta)}'"
        )
    if beta <= 0.0:
        raise ValueError(f"Invalid `beta` argument value. It should be > 0. Received: beta={beta}")
    if threshold is not None:
        if not isinstance(threshold, float):
            raise ValueError(
                "Invalid `threshold` argument value. It should be a Python float. "
                f"Received: threshold={threshold} of type '{type(threshold)}'"
            )
        if threshold > 1.0 or threshold <= 0.0:
            raise ValueError(
                "Invalid `threshold` argument value. It should verify 0 < threshold <= 1. "
                f"Received: threshold={threshold}"
            )


class FBetaScore(Metric):
    """F-beta score over all batches: ``(1 + b^2) P R / (b^2 P + R)`` with ``b = beta``.

    Per class (the last axis): ``P = TP / (TP + FP + eps)``, ``R = TP / (TP + FN + eps)`` and the
    score ``(1 + b^2) P R / (b^2 P + R + eps)``. Predictions become 0/1 first: ``p > threshold``,
    or, with ``threshold=None``, 1 for each sample's largest score(s) (if nonzero).

    Args:
        average: None (one score per class), "micro" (one score from counts pooled over classes),
            "macro" (mean of class scores) or "weighted" (class scores weighted by their support,
            the weighted number of true labels).
        beta: weight of recall against precision (a float > 0).
        threshold: a float in (0, 1], or None for "argmax".
        name, dtype: as for every metric.

    Inputs have shape (batch, classes); the state is built at the first update.
    """

    def __init__(self, average: str | None = None, beta: float = 1.0, threshold: float | None = None,
                 name: str = "fbeta_score", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._direction = "up"
        _check_arguments(average, beta, threshold)
        self.average = average
        self.beta = beta
        self.threshold = threshold
        # micro pools every class into scalar counts; the other modes keep one count per class.
        self.axis = None if average == "micro" else 0
        self._built = False

    @staticmethod
    def _check_shapes(y_true_shape: tuple, y_pred_shape: tuple) -> None:
        shapes = f"Received input shapes: y_pred.shape={y_pred_shape} and y_true.shape={y_true_shape}."
        if len(y_pred_shape) != 2 or len(y_true_shape) != 2:
            raise ValueError(f"FBetaScore expects 2D inputs with shape (batch_size, output_dim). {shapes}")
        if y_pred_shape[-1] is None or y_true_shape[-1] is None:
            raise ValueError(
                "FBetaScore expects 2D inputs with shape (batch_size, output_dim), with output_dim fully "
                f"defined (not None). {shapes}"
            )

    def _build(self, y_true_shape: tuple, y_pred_shape: tuple) -> None:
        self._check_shapes(y_true_shape, y_pred_shape)
        num_classes = y_pred_shape[-1]
        shape = () if self.average == "micro" else (num_classes,)
        self.true_positives = self.add_variable(shape=shape, initializer="zeros", name="true_positives")
        self.false_positives = self.add_variable(shape=shape, initializer="zeros", name="false_positives")
        self.false_negatives = self.add_variable(shape=shape, initializer="zeros", name="false_negatives")
        self.intermediate_weights = self.add_variable(shape=shape, initializer="zeros",
                                                      name="intermediate_weights")
        self._num_classes = num_classes
        self._built = True

    def _binarize(self, y_pred: np.ndarray) -> np.ndarray:
        if self.threshold is None:
            top = np.max(y_pred, axis=-1, keepdims=True)
            # Ties at the maximum all count; an all-zero row predicts nothing.
            return ((y_pred >= top) & (np.abs(y_pred) > 1e-9)).astype(self.dtype)
        return (y_pred > np.asarray(self.threshold, dtype=self.dtype)).astype(self.dtype)

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        y_true = mu.to_array(y_true, arg="y_true").astype(self.dtype, copy=False)
        y_pred = mu.to_array(y_pred, arg="y_pred").astype(self.dtype, copy=False)
        self._check_shapes(y_true.shape, y_pred.shape)
        mu.check_same_shape(y_true, y_pred, self.name)
        if not self._built:
            self._build(y_true.shape, y_pred.shape)
        if y_pred.shape[-1] != self._num_classes:
            raise ValueError(
                f"{self.name}: expected {self._num_classes} classes, as in earlier batches. "
                f"Received: y_pred.shape={y_pred.shape}"
            )
        y_pred = self._binarize(y_pred)
        if sample_weight is not None:
            sw = mu.to_array(sample_weight, arg="sample_weight").astype(self.dtype, copy=False)
            if sw.ndim == 1:
                sw = sw[:, None]  # one weight per sample, shared by its classes
            sw = mu.broadcast_weight(sw, y_true.shape, self.name)
        else:
            sw = None

        def weighted_sum(values: np.ndarray) -> np.ndarray:
            return (values if sw is None else values * sw).sum(axis=self.axis)

        self.true_positives.value[...] += weighted_sum(y_pred * y_true)
        self.false_positives.value[...] += weighted_sum(y_pred * (1 - y_true))
        self.false_negatives.value[...] += weighted_sum((1 - y_pred) * y_true)
        self.intermediate_weights.value[...] += weighted_sum(y_true)

    def result(self) -> np.ndarray:
        if not self._built:
            return np.zeros((), dtype=self.dtype)
        eps = np.asarray(backend.epsilon(), dtype=self.dtype)
        tp, fp, fn = self.true_positives.value, self.false_positives.value, self.false_negatives.value
        precision = tp / (tp + fp + eps)
        recall = tp / (tp + fn + eps)
        b2 = np.asarray(self.beta ** 2, dtype=self.dtype)
        score = precision * recall / (b2 * precision + recall + eps) * (1 + b2)
        if self.average == "weighted":
            support = self.intermediate_weights.value
            score = np.sum(score * (support / (np.sum(support) + eps)))
        elif self.average is not None:  # micro (already a scalar) and macro
            score = np.mean(score)
        return np.asarray(score, dtype=self.dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "average": self.average, "beta": self.beta, "threshold": self.threshold}


class F1Score(FBetaScore):
    """F-1 score ``2 P R / (P + R)`` over all batches: :class:`FBetaScore` with ``beta=1``.

    Args:
        average: None, "micro", "macro" or "weighted" (see :class:`FBetaScore`).
        threshold: a float in (0, 1], or None for "argmax".
        name, dtype: as for every metric.
    """

    def __init__(self, average: str | None = None, threshold: float | None = None, name: str = "f1_score",
                 dtype=None):
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name, dtype=dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        del config["beta"]
        return config
