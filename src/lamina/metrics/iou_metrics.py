"""Intersection-over-union metrics, from a confusion matrix accumulated over batches.

For class ``c`` with confusion matrix ``cm`` (rows: true class, columns: predicted class)::

    IoU_c = cm[c, c] / (sum(cm[c, :]) + sum(cm[:, c]) - cm[c, c])

The result is the mean of ``IoU_c`` over the target classes whose denominator is not 0 (0 when
none is). Labels and predictions outside ``[0, num_classes)`` and entries whose label is
``ignore_class`` add nothing. The matrix is a ``(num_classes, num_classes)`` state variable of the
metric's dtype (int32 by default, as in Keras on torch: float sample weights are then truncated).
"""

from __future__ import annotations

import warnings

import numpy as np

from lamina import backend
from lamina.autodiff import unwrap
from lamina.metrics.metric import Metric


def _labels(x, axis, sparse: bool, dtype: str) -> np.ndarray:
    """Class ids as a flat array of the metric's dtype (argmax along ``axis`` unless ``sparse``)."""
    x = np.asarray(unwrap(x))
    if not sparse:
        x = np.argmax(x, axis=axis)
    return x.astype(dtype).reshape(-1)


class _IoUBase(Metric):
    """The confusion-matrix state and its update, shared by every IoU metric."""

    def __init__(self, num_classes: int, name: str | None = None, dtype=None, ignore_class: int | None = None,
                 sparse_y_true: bool = True, sparse_y_pred: bool = True, axis: int = -1):
        super().__init__(name=name, dtype=dtype or "int32")
        self._direction = "up"
        self.num_classes = num_classes
        self.ignore_class = ignore_class
        self.sparse_y_true = sparse_y_true
        self.sparse_y_pred = sparse_y_pred
        self.axis = axis
        self.total_cm = self.add_variable(shape=(num_classes, num_classes), initializer="zeros",
                                          name="total_confusion_matrix")

    def _weights(self, sample_weight, n: int) -> np.ndarray:
        if sample_weight is None:
            return np.ones(n, dtype=self.dtype)
        w = np.asarray(unwrap(sample_weight))
        integral_dtype = np.issubdtype(np.dtype(self.dtype), np.integer)
        if integral_dtype and np.issubdtype(w.dtype, np.floating) and np.any(w != np.trunc(w)):
            warnings.warn(
                f"{type(self).__name__} '{self.name}': fractional sample weights meet a float-to-int cast "
                f"(the metric accumulates in {self.dtype}), and casting truncates them toward 0. Pass "
                "integer weights, or dtype='float32'.",
                UserWarning, stacklevel=3,
            )
        w = w.astype(self.dtype).reshape(-1) if w.ndim > 1 else w.astype(self.dtype)
        try:
            return np.broadcast_to(w, (n,))
        except ValueError:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': `sample_weight` must broadcast to the {n} flattened "
                f"labels. Received: sample_weight.shape={np.shape(unwrap(sample_weight))}"
            ) from None

    def _accumulate(self, y_true: np.ndarray, y_pred: np.ndarray, sample_weight) -> None:
        if y_true.shape != y_pred.shape:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': y_true and y_pred must hold as many labels. "
                f"Received: {y_true.size} and {y_pred.size} labels"
            )
        weights = self._weights(sample_weight, y_true.size)
        n = self.num_classes
        keep = (y_true >= 0) & (y_true < n) & (y_pred >= 0) & (y_pred < n)
        if self.ignore_class is not None:
            keep &= y_true != self.ignore_class
        flat = y_true[keep].astype(np.int64) * n + y_pred[keep].astype(np.int64)
        cm = np.zeros(n * n, dtype=self.dtype)
        np.add.at(cm, flat, weights[keep])
        self.total_cm.assign(self.total_cm.numpy() + cm.reshape(n, n))

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        """Add this batch's (weighted) label/prediction pairs to the confusion matrix."""
        y_true = _labels(y_true, self.axis, self.sparse_y_true, self.dtype)
        y_pred = _labels(y_pred, self.axis, self.sparse_y_pred, self.dtype)
        self._accumulate(y_true, y_pred, sample_weight)


class IoU(_IoUBase):
    """Mean IoU over ``target_class_ids`` (see the module docstring for the formula).

    Args:
        num_classes: the number of classes (the confusion matrix is num_classes x num_classes).
        target_class_ids: the classes whose IoUs are averaged.
        name, dtype: as for every metric (dtype defaults to int32, the confusion matrix's).
        ignore_class: a label whose entries are left out (e.g. a "void" class), or None.
        sparse_y_true, sparse_y_pred: False where the input holds scores per class (argmax along
            ``axis`` gives the class).
        axis: the class axis of non-sparse inputs.
    """

    def __init__(self, num_classes: int, target_class_ids, name: str | None = None, dtype=None,
                 ignore_class: int | None = None, sparse_y_true: bool = True, sparse_y_pred: bool = True,
                 axis: int = -1):
        super().__init__(num_classes=num_classes, name=name, dtype=dtype, ignore_class=ignore_class,
                         sparse_y_true=sparse_y_true, sparse_y_pred=sparse_y_pred, axis=axis)
        if max(target_class_ids) >= num_classes:
            # Keras's wording: its tests match it.
            raise ValueError(
                f"Target class id {max(target_class_ids)} is out of range, which is [0, {num_classes})."
            )
        self.target_class_ids = list(target_class_ids)

    def result(self):
        cm = self.total_cm.numpy().astype(np.float64)
        tp = np.diag(cm)
        denominator = (cm.sum(axis=0) + cm.sum(axis=1) - tp)[self.target_class_ids].astype(np.float32)
        tp = tp[self.target_class_ids].astype(np.float32)
        eps = np.float32(backend.epsilon())
        valid = denominator > 1e-9
        iou = np.where(valid, tp / (denominator + eps), np.float32(0))
        return np.asarray(iou.sum(axis=self.axis) / (np.float32(valid.sum()) + eps), dtype=np.float32)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes, "target_class_ids": self.target_class_ids,
                "ignore_class": self.ignore_class, "sparse_y_true": self.sparse_y_true,
                "sparse_y_pred": self.sparse_y_pred, "axis": self.axis}


class BinaryIoU(IoU):
    """IoU of a binary task: predictions ``>= threshold`` are class 1, the rest class 0.

    ``target_class_ids`` picks ``[0]``, ``[1]`` or both (their mean).
    """

    def __init__(self, target_class_ids=(0, 1), threshold: float = 0.5, name: str | None = None, dtype=None):
        super().__init__(num_classes=2, target_class_ids=target_class_ids, name=name, dtype=dtype)
        self.threshold = threshold

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        y_true = np.asarray(unwrap(y_true)).astype(self.dtype).reshape(-1)
        scores = np.asarray(unwrap(y_pred), dtype=np.float32)
        y_pred = (scores >= self.threshold).astype(self.dtype).reshape(-1)
        self._accumulate(y_true, y_pred, sample_weight)

    def get_config(self) -> dict:
        return {"target_class_ids": self.target_class_ids, "threshold": self.threshold, "name": self.name,
                "dtype": self.dtype}


class MeanIoU(IoU):
    """IoU averaged over all ``num_classes`` classes (those seen in labels or predictions)."""

    def __init__(self, num_classes: int, name: str | None = None, dtype=None, ignore_class: int | None = None,
                 sparse_y_true: bool = True, sparse_y_pred: bool = True, axis: int = -1):
        super().__init__(num_classes=num_classes, target_class_ids=list(range(num_classes)), name=name,
                         dtype=dtype, ignore_class=ignore_class, sparse_y_true=sparse_y_true,
                         sparse_y_pred=sparse_y_pred, axis=axis)

    def get_config(self) -> dict:
        return {"num_classes": self.num_classes, "name": self.name, "dtype": self.dtype,
                "ignore_class": self.ignore_class, "sparse_y_true": self.sparse_y_true,
                "sparse_y_pred": self.sparse_y_pred, "axis": self.axis}


class OneHotIoU(IoU):
    """:class:`IoU` for one-hot labels (and, unless ``sparse_y_pred``, per-class scores)."""

    def __init__(self, num_classes: int, target_class_ids, name: str | None = None, dtype=None,
                 ignore_class: int | None = None, sparse_y_pred: bool = False, axis: int = -1):
        super().__init__(num_classes=num_classes, target_class_ids=target_class_ids, name=name, dtype=dtype,
                         ignore_class=ignore_class, sparse_y_true=False, sparse_y_pred=sparse_y_pred, axis=axis)

    def get_config(self) -> dict:
        return {"num_classes": self.num_classes, "target_class_ids": self.target_class_ids, "name": self.name,
                "dtype": self.dtype, "ignore_class": self.ignore_class, "sparse_y_pred": self.sparse_y_pred,
                "axis": self.axis}


class OneHotMeanIoU(MeanIoU):
    """:class:`MeanIoU` for one-hot labels (and, unless ``sparse_y_pred``, per-class scores)."""

    def __init__(self, num_classes: int, name: str | None = None, dtype=None, ignore_class: int | None = None,
                 sparse_y_pred: bool = False, axis: int = -1):
        super().__init__(num_classes=num_classes, name=name, dtype=dtype, ignore_class=ignore_class,
                         sparse_y_true=False, sparse_y_pred=sparse_y_pred, axis=axis)

    def get_config(self) -> dict:
        return {"num_classes": self.num_classes, "name": self.name, "dtype": self.dtype,
                "ignore_class": self.ignore_class, "sparse_y_pred": self.sparse_y_pred, "axis": self.axis}
