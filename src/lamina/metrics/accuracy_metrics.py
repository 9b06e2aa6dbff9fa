"""Accuracy metrics: exact match, thresholded binary, argmax (categorical/sparse) and top-k.

All are vectorised NumPy: class predictions come from one ``argmax`` (no one-hot matrices), and
"is the target among the top k" counts the scores strictly above the target's score (no sort).
"""

from __future__ import annotations

import numpy as np

from lamina import backend
from lamina.metrics import metrics_utils as mu
from lamina.metrics.reduction_metrics import MeanMetricWrapper


def accuracy(y_true, y_pred) -> np.ndarray:
    """Elementwise ``1.0 if y_true == y_pred else 0.0`` (floatx), after rank alignment."""
    y_pred = mu.to_array(y_pred, arg="y_pred")
    y_true = mu.to_array(y_true, arg="y_true").astype(y_pred.dtype, copy=False)
    y_true, y_pred = mu.squeeze_or_expand_to_same_rank(y_true, y_pred)
    mu.check_same_shape(y_true, y_pred, "accuracy")
    return np.equal(y_true, y_pred).astype(backend.floatx())


def binary_accuracy(y_true, y_pred, threshold: float = 0.5) -> np.ndarray:
    """Elementwise ``y_true == (y_pred > threshold)`` as floatx 1.0/0.0."""
    y_pred = mu.to_array(y_pred, arg="y_pred")
    y_true = mu.to_array(y_true, arg="y_true")
    y_true, y_pred = mu.squeeze_or_expand_to_same_rank(y_true, y_pred)
    mu.check_same_shape(y_true, y_pred, "binary_accuracy")
    # The threshold takes y_pred's float dtype, as a float32 tensor would under Keras's promotion.
    thr = np.asarray(threshold, dtype=y_pred.dtype if y_pred.dtype.kind == "f" else backend.floatx())
    y_pred = np.greater(y_pred, thr).astype(y_true.dtype)
    return np.equal(y_true, y_pred).astype(backend.floatx())


def _argmax_labels(y_pred: np.ndarray, who: str) -> np.ndarray:
    if y_pred.ndim < 1 or y_pred.shape[-1] == 0:
        raise ValueError(
            f"{who}: `y_pred` must have a class axis last, shape (..., num_classes). "
            f"Received: y_pred.shape={y_pred.shape}"
        )
    return np.argmax(y_pred, axis=-1)


def categorical_accuracy(y_true, y_pred) -> np.ndarray:
    """Per sample ``argmax(y_true) == argmax(y_pred)`` (one-hot labels), floatx 1.0/0.0."""
    y_true = mu.to_array(y_true, arg="y_true")
    y_pred = mu.to_array(y_pred, arg="y_pred")
    mu.check_same_shape(y_true, y_pred, "categorical_accuracy",
                        " (one-hot labels; use sparse_categorical_accuracy for integer labels)")
    matches = _argmax_labels(y_true, "categorical_accuracy") == _argmax_labels(y_pred, "categorical_accuracy")
    return matches.astype(backend.floatx())


def sparse_categorical_accuracy(y_true, y_pred) -> np.ndarray:
    """Per sample ``y_true == argmax(y_pred)`` (integer labels), floatx 1.0/0.0.

    As in Keras: labels of y_pred's rank with a trailing 1 lose it (and the matches get the labels'
    shape back); otherwise labels and ``argmax(y_pred)`` broadcast against each other, so labels of
    lower rank work wherever NumPy broadcasting allows; a trailing 1 is squeezed from the result.
    Labels with more axes than ``argmax(y_pred)`` are refused: Keras broadcasts ``(N, 1, 1)``
    against ``(N,)`` into an ``(N, 1, N)`` grid of matches, a silently wrong accuracy.
    """
    y_pred = mu.to_array(y_pred, arg="y_pred")
    y_true = mu.to_array(y_true, arg="y_true")
    if y_pred.dtype.kind == "f":
        # Keras compares in y_pred's float dtype; labels are small integers, exact in float32.
        y_true = y_true.astype(y_pred.dtype, copy=False)
    labels_shape = y_true.shape
    squeezed = y_true.ndim == y_pred.ndim and y_true.ndim > 0 and y_true.shape[-1] == 1
    if squeezed:
        y_true = y_true[..., 0]
    predicted = _argmax_labels(y_pred, "sparse_categorical_accuracy")
    if y_true.ndim > predicted.ndim:
        raise ValueError(
            "sparse_categorical_accuracy: `y_true` must hold one integer label per sample, shape "
            "y_pred.shape[:-1] (or that shape with a trailing 1); for one-hot labels use categorical_accuracy. "
            f"Received: y_true.shape={labels_shape}, y_pred.shape={y_pred.shape}"
        )
    try:
        matches = np.equal(y_true, predicted)
    except ValueError:
        raise ValueError(
            "sparse_categorical_accuracy: `y_true` must hold integer labels broadcastable to "
            "y_pred.shape[:-1] (or that shape with a trailing 1); for one-hot labels use "
            f"categorical_accuracy. Received: y_true.shape={labels_shape}, y_pred.shape={y_pred.shape}"
        ) from None
    if squeezed:
        if matches.size != int(np.prod(labels_shape)):
            raise ValueError(
                "sparse_categorical_accuracy: the matches of labels with a trailing 1 must fit the "
                f"labels' shape. Received: y_true.shape={labels_shape}, y_pred.shape={y_pred.shape}"
            )
        matches = matches.reshape(labels_shape)
    if matches.ndim > 1 and matches.shape[-1] == 1:
        matches = matches[..., 0]
    return matches.astype(backend.floatx())


def _in_top_k(targets: np.ndarray, y_pred: np.ndarray, k: int, who: str) -> np.ndarray:
    """``targets`` among the ``k`` best scores: fewer than ``k`` scores lie strictly above it.

    Ties at the k-th score count as a hit (the target's score is >= the k-th largest), as in Keras.
    """
    num_classes = y_pred.shape[-1]
    flat = y_pred.reshape(-1, num_classes)
    t = targets.reshape(-1).astype(np.int64)
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        raise ValueError(
            f"{who}: labels must lie in [0, {num_classes}). Received: labels from {t.min()} to {t.max()}"
        )
    target_score = flat[np.arange(flat.shape[0]), t]
    above = np.count_nonzero(flat > target_score[:, None], axis=-1)
    return (above < k).reshape(targets.shape)


def _check_k(k, who: str) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{who}: `k` must be a positive integer. Received: k={k!r}")
    return int(k)


def top_k_categorical_accuracy(y_true, y_pred, k: int = 5) -> np.ndarray:
    """Per sample: is ``argmax(y_true)`` (one-hot labels) among the ``k`` highest scores? floatx 1.0/0.0."""
    k = _check_k(k, "top_k_categorical_accuracy")
    y_true = mu.to_array(y_true, arg="y_true")
    y_pred = mu.to_array(y_pred, arg="y_pred")
    mu.check_same_shape(y_true, y_pred, "top_k_categorical_accuracy",
                        " (one-hot labels; use sparse_top_k_categorical_accuracy for integer labels)")
    labels = _argmax_labels(y_true, "top_k_categorical_accuracy")
    return _in_top_k(labels, y_pred, k, "top_k_categorical_accuracy").astype(backend.floatx())


def sparse_top_k_categorical_accuracy(y_true, y_pred, k: int = 5,
                                      from_sorted_ids: bool = False) -> np.ndarray:
    """Per sample: is the integer label among the ``k`` highest scores? floatx 1.0/0.0.

    With ``from_sorted_ids=True``, ``y_pred`` holds class ids sorted best first, shape (N, >= k).
    """
    who = "sparse_top_k_categorical_accuracy"
    k = _check_k(k, who)
    y_pred = mu.to_array(y_pred, arg="y_pred")
    y_true = mu.to_array(y_true, arg="y_true")
    if y_pred.ndim < 1:
        raise ValueError(f"{who}: `y_pred` must have rank >= 1. Received: y_pred.shape={y_pred.shape}")
    if y_true.ndim == y_pred.ndim and y_true.ndim > 0 and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    if y_true.shape != y_pred.shape[:-1]:
        raise ValueError(
            f"{who}: `y_true` must hold one integer label per sample, shape y_pred.shape[:-1]. "
            f"Received: y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}"
        )
    if from_sorted_ids:
        hits = np.any(y_pred[..., :k] == y_true[..., None], axis=-1)
    else:
        hits = _in_top_k(y_true, y_pred, k, who)
    return hits.astype(backend.floatx())


class Accuracy(MeanMetricWrapper):
    """How often predictions equal labels exactly: the weighted mean of :func:`accuracy`."""

    def __init__(self, name: str = "accuracy", dtype=None):
        super().__init__(fn=accuracy, name=name, dtype=dtype)
        self._direction = "up"

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}


class BinaryAccuracy(MeanMetricWrapper):
    """How often ``y_pred > threshold`` matches the binary label (weighted mean of :func:`binary_accuracy`).

    Args:
        name: the metric's name.
        dtype: dtype of the state and result.
        threshold: predictions above it count as 1 (use 0 for logits).
    """

    def __init__(self, name: str = "binary_accuracy", dtype=None, threshold: float = 0.5):
        super().__init__(fn=binary_accuracy, name=name, dtype=dtype, threshold=threshold)
        self.threshold = threshold
        self._direction = "up"

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "threshold": self.threshold}


class CategoricalAccuracy(MeanMetricWrapper):
    """How often ``argmax(y_pred)`` matches one-hot labels (logits work too)."""

    def __init__(self, name: str = "categorical_accuracy", dtype=None):
        super().__init__(fn=categorical_accuracy, name=name, dtype=dtype)
        self._direction = "up"

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """How often ``argmax(y_pred)`` matches integer labels (logits work too)."""

    def __init__(self, name: str = "sparse_categorical_accuracy", dtype=None):
        super().__init__(fn=sparse_categorical_accuracy, name=name, dtype=dtype)
        self._direction = "up"

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}


class TopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the one-hot target is among the ``k`` highest predictions (ties count as hits)."""

    def __init__(self, k: int = 5, name: str = "top_k_categorical_accuracy", dtype=None):
        _check_k(k, "TopKCategoricalAccuracy")
        super().__init__(fn=top_k_categorical_accuracy, name=name, dtype=dtype, k=k)
        self.k = k
        self._direction = "up"

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "k": self.k}


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the integer target is among the ``k`` highest predictions (ties count as hits).

    With ``from_sorted_ids=True``, ``y_pred`` holds class ids sorted best first.
    """

    def __init__(self, k: int = 5, name: str = "sparse_top_k_categorical_accuracy", dtype=None,
                 from_sorted_ids: bool = False):
        _check_k(k, "SparseTopKCategoricalAccuracy")
        super().__init__(fn=sparse_top_k_categorical_accuracy, name=name, dtype=dtype, k=k,
                         from_sorted_ids=from_sorted_ids)
        self.k = k
        self.from_sorted_ids = from_sorted_ids
        self._direction = "up"

    def get_config(self) -> dict:
        config = {"name": self.name, "dtype": self.dtype, "k": self.k}
        if self.from_sorted_ids:
            config["from_sorted_ids"] = True
        return config
