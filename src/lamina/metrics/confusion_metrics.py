"""Confusion-matrix metrics: TP/FP/TN/FN counts, Precision, Recall, AUC and the "X at Y" rates
(SensitivityAtSpecificity, SpecificityAtSensitivity, PrecisionAtRecall, RecallAtPrecision).

Each keeps weighted counts per threshold (a prediction ``p`` is positive at threshold ``t`` when
``p > t``; a label is positive when nonzero), filled by one histogram per batch
(:func:`metrics_utils.confusion_counts`), never a (thresholds x samples) matrix.
"""

from __future__ import annotations

import numpy as np

from lamina import backend
from lamina.metrics import metrics_utils as mu
from lamina.metrics.metric import Metric

_COUNTS = ("tp", "fp", "tn", "fn")


def _check_class_id(class_id, who: str):
    if class_id is not None and (isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer))
                                 or class_id < 0):
        raise ValueError(f"{who}: `class_id` must be a non-negative integer. Received: class_id={class_id!r}")


def _check_top_k(top_k, who: str):
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer))
                              or top_k < 1):
        raise ValueError(f"{who}: `top_k` must be a positive integer. Received: top_k={top_k!r}")


class _ConfusionMatrixConditionCount(Metric):
    """Weighted count of one confusion-matrix cell at each threshold (default 0.5)."""

    _cell = "tp"

    def __init__(self, thresholds=None, name: str | None = None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.init_thresholds = thresholds
        self.thresholds = mu.parse_thresholds(thresholds, 0.5)
        self._thresholds_distributed_evenly = mu.is_evenly_distributed(self.thresholds)
        self.accumulator = self.add_variable(shape=(len(self.thresholds),), initializer="zeros",
                                             name="accumulator")

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        counts = mu.confusion_counts(
            y_true, y_pred, self.thresholds, evenly=self._thresholds_distributed_evenly,
            sample_weight=sample_weight, dtype=self.dtype, who=self.name,
        )
        self.accumulator.value[...] += counts[_COUNTS.index(self._cell)]

    def result(self) -> np.ndarray:
        acc = self.accumulator.value
        return np.array(acc[0]) if len(self.thresholds) == 1 else acc.copy()

    def get_config(self) -> dict:
        return {**super().get_config(), "thresholds": self.init_thresholds}


class TruePositives(_ConfusionMatrixConditionCount):
    """Weighted count of positives predicted positive (``p > threshold``)."""

    _cell = "tp"


class FalsePositives(_ConfusionMatrixConditionCount):
    """Weighted count of negatives predicted positive (``p > threshold``)."""

    _cell = "fp"


class TrueNegatives(_ConfusionMatrixConditionCount):
    """Weighted count of negatives predicted negative (``p <= threshold``)."""

    _cell = "tn"


class FalseNegatives(_ConfusionMatrixConditionCount):
    """Weighted count of positives predicted negative (``p <= threshold``)."""

    _cell = "fn"


class _PrecisionRecall(Metric):
    """Shared state handling of Precision and Recall: TP plus one error count per threshold."""

    _other = "false_positives"

    def __init__(self, thresholds=None, top_k: int | None = None, class_id: int | None = None,
                 name: str | None = None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        who = self.__class__.__name__
        _check_top_k(top_k, who)
        _check_class_id(class_id, who)
        self._direction = "up"
        self.init_thresholds = thresholds
        self.top_k = top_k
        self.class_id = class_id
        # With top_k and no thresholds, every top-k entry counts as positive.
        default = 0.5 if top_k is None else mu.NEG_INF
        if thresholds is None:
            self.thresholds = [default]
        else:
            self.thresholds = mu.parse_thresholds(thresholds, default)
        self._thresholds_distributed_evenly = mu.is_evenly_distributed(self.thresholds)
        n = len(self.thresholds)
        self.true_positives = self.add_variable(shape=(n,), initializer="zeros", name="true_positives")
        setattr(self, self._other,
                self.add_variable(shape=(n,), initializer="zeros", name=self._other))

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        tp, fp, _, fn = mu.confusion_counts(
            y_true, y_pred, self.thresholds, evenly=self._thresholds_distributed_evenly,
            top_k=self.top_k, class_id=self.class_id, sample_weight=sample_weight,
            dtype=self.dtype, who=self.name,
        )
        self.true_positives.value[...] += tp
        getattr(self, self._other).value[...] += fp if self._other == "false_positives" else fn

    def result(self) -> np.ndarray:
        tp = self.true_positives.value
        out = mu.divide_no_nan(tp, tp + getattr(self, self._other).value)
        return np.array(out[0]) if len(self.thresholds) == 1 else out

    def get_config(self) -> dict:
        return {**super().get_config(), "thresholds": self.init_thresholds, "top_k": self.top_k,
                "class_id": self.class_id}


class Precision(_PrecisionRecall):
    """``TP / (TP + FP)`` over all batches, at each threshold.

    Args:
        thresholds: a float or list of floats in [0, 1]; one result per threshold (default 0.5, or
            "every top-k entry" when ``top_k`` is set). Use 0 with logits.
        top_k: only the ``top_k`` highest predictions of each sample can count as positive.
        class_id: compute the binary metric of this one class (last axis of ``y_pred``).
        name, dtype: as for every metric.
    """

    _other = "false_positives"


class Recall(_PrecisionRecall):
    """``TP / (TP + FN)`` over all batches, at each threshold (arguments as :class:`Precision`)."""

    _other = "false_negatives"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # tanh form: no overflow for large |x|, no RuntimeWarning.
    half = np.asarray(0.5, dtype=x.dtype)
    return half * np.tanh(half * x) + half


class AUC(Metric):
    """Area under the ROC or precision-recall curve, from counts at ``num_thresholds`` thresholds.

    Thresholds are ``[-eps, 1/(n-1), ..., (n-2)/(n-1), 1+eps]`` (or ``[-eps, *thresholds, 1+eps]``).
    ROC: x = FP/(FP+TN), y = TP/(TP+FN); PR: x = recall, y = precision. "interpolation" sums
    trapezoids (for PR, Davis & Goadrich's interpolation of TP and FP, not of precision);
    "minoring"/"majoring" use the lower/upper of each interval's end heights.

    Args:
        num_thresholds: number of thresholds (> 1) when ``thresholds`` is None.
        curve: "ROC", "PR" or "PRGAIN".
        summation_method: "interpolation", "minoring" or "majoring".
        name, dtype: as for every metric.
        thresholds: explicit thresholds in [0, 1] (then ``num_thresholds = len + 2``).
        multi_label: keep counts per label (y_pred of rank 2) and average the label AUCs.
        num_labels: number of labels when ``multi_label`` (else inferred at the first update).
        label_weights: per-label weights: weighted average of label AUCs (multi_label) or weights
            on the flattened predictions.
        from_logits: apply a sigmoid to ``y_pred`` first.
    """

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC", summation_method: str = "interpolation",
                 name: str | None = None, dtype=None, thresholds=None, multi_label: bool = False,
                 num_labels: int | None = None, label_weights=None, from_logits: bool = False):
        self._direction = "up"
        # Keras's parsers and messages: "ROC"/"roc", "interpolation"/"Interpolation", or the enum members.
        curve = mu.AUCCurve.from_str(curve).value
        summation_method = mu.AUCSummationMethod.from_str(summation_method).value
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            inner = sorted(mu.parse_thresholds(thresholds, 0.5))
            self.num_thresholds = len(inner) + 2
            self._thresholds_distributed_evenly = mu.is_evenly_distributed([0.0] + inner + [1.0])
        else:
            if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, (int, np.integer)) \
                    or num_thresholds <= 1:
                raise ValueError(
                    "AUC: Argument `num_thresholds` must be an integer > 1. "
                    f"Received: num_thresholds={num_thresholds!r}"
                )
            self.num_thresholds = int(num_thresholds)
            inner = [(i + 1) * 1.0 / (self.num_thresholds - 1) for i in range(self.num_thresholds - 2)]
            self._thresholds_distributed_evenly = True
        # Endpoints just outside [0, 1] so every prediction in [0, 1] is above the first, below the last.
        eps = backend.epsilon()
        self._thresholds = np.array([0.0 - eps] + inner + [1.0 + eps])
        self.curve = curve
        self.summation_method = summation_method
        super().__init__(name=name, dtype=dtype)
        self.multi_label = bool(multi_label)
        self.num_labels = num_labels
        self.label_weights = None if label_weights is None else np.asarray(label_weights, dtype=self.dtype)
        self._from_logits = bool(from_logits)
        self._built = False
        if self.multi_label:
            if num_labels:
                self._build((None, num_labels))
        else:
            if num_labels:
                raise ValueError(
                    "AUC: `num_labels` is used only with `multi_label=True`. "
                    f"Received: num_labels={num_labels}"
                )
            self._build(None)

    @property
    def thresholds(self) -> list[float]:
        """The thresholds, including the two endpoints just outside [0, 1]."""
        return [float(t) for t in self._thresholds]

    def _build(self, shape) -> None:
        if self.multi_label:
            if len(shape) != 2:
                raise ValueError(
                    f"AUC: `y_pred` must have rank 2 when `multi_label=True`. Received: y_pred.shape={shape}"
                )
            self._num_labels = shape[1]
            vshape = (self.num_thresholds, self._num_labels)
        else:
            vshape = (self.num_thresholds,)
        self._build_input_shape = shape
        self.true_positives = self.add_variable(shape=vshape, initializer="zeros", name="true_positives")
        self.false_positives = self.add_variable(shape=vshape, initializer="zeros", name="false_positives")
        self.true_negatives = self.add_variable(shape=vshape, initializer="zeros", name="true_negatives")
        self.false_negatives = self.add_variable(shape=vshape, initializer="zeros", name="false_negatives")
        self._built = True

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        y_pred = mu.float_array(y_pred, "y_pred").astype(self.dtype, copy=False)
        if not self._built:
            self._build(y_pred.shape)
        if self._from_logits:
            y_pred = _sigmoid(y_pred)
        tp, fp, tn, fn = mu.confusion_counts(
            y_true, y_pred, self._thresholds, evenly=self._thresholds_distributed_evenly,
            sample_weight=sample_weight, multi_label=self.multi_label,
            label_weights=None if self.multi_label else self.label_weights,
            dtype=self.dtype, who=self.name,
        )
        if self.multi_label and tp.shape != self.true_positives.shape:
            raise ValueError(
                f"{self.name}: expected {self._num_labels} labels in `y_pred` (multi_label). "
                f"Received: y_pred.shape={y_pred.shape}"
            )
        self.true_positives.value[...] += tp
        self.false_positives.value[...] += fp
        self.true_negatives.value[...] += tn
        self.false_negatives.value[...] += fn

    def _average(self, per_label: np.ndarray) -> np.ndarray:
        """Sum the per-threshold terms; for multi_label, average label AUCs (weighted if asked)."""
        if not self.multi_label:
            return per_label.sum(axis=0)
        by_label = per_label.sum(axis=0)
        if self.label_weights is None:
            return by_label.mean()
        return mu.divide_no_nan((by_label * self.label_weights).sum(), self.label_weights.sum())

    def interpolate_pr_auc(self) -> np.ndarray:
        """PR-AUC with TP and FP linear between thresholds (Davis & Goadrich 2006, section 4).

        On each interval precision = (TP_A + s (P - P_A)) / P with P = TP + FP and slope
        s = dTP/dP; its integral over recall is s (dTP + c log(P_A / P_B)) / (TP + FN), where
        c = TP_B - s P_B. Intervals with P = 0 at an end use constant precision (log term 0).
        """
        tp, fp, fn = self.true_positives.value, self.false_positives.value, self.false_negatives.value
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        slope = mu.divide_no_nan(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        both_positive = (p[:-1] > 0) & (p[1:] > 0)
        ratio = np.where(both_positive, mu.divide_no_nan(p[:-1], np.maximum(p[1:], 0)), 1)
        log_ratio = np.log(np.where(ratio > 0, ratio, 1)).astype(self.dtype)
        increments = mu.divide_no_nan(slope * (dtp + intercept * log_ratio), np.maximum(tp[1:] + fn[1:], 0))
        return np.asarray(self._average(increments), dtype=self.dtype)

    def result(self) -> np.ndarray:
        if not self._built:
            return np.zeros((), dtype=self.dtype)
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self.interpolate_pr_auc()
        tp, fp = self.true_positives.value, self.false_positives.value
        tn, fn = self.true_negatives.value, self.false_negatives.value
        recall = mu.divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = mu.divide_no_nan(fp, fp + tn), recall
        elif self.curve == "PR":
            x, y = recall, mu.divide_no_nan(tp, tp + fp)
        else:
            # Precision-recall gain (Flach & Kull 2015): gains relative to the positive base rate.
            # No true positives: recall gain 0, precision gain 1; negative recall gain clipped to 0.
            scale = mu.divide_no_nan(tp + fn, tn + fp)
            recall_gain = 1.0 - scale * mu.divide_no_nan(fn, tp)
            precision_gain = 1.0 - scale * mu.divide_no_nan(fp, tp)
            recall_gain = np.maximum(np.where(tp == 0, 0.0, recall_gain), 0.0).astype(self.dtype)
            precision_gain = np.where(tp == 0, 1.0, precision_gain).astype(self.dtype)
            x, y = recall_gain, precision_gain
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / np.asarray(2, dtype=self.dtype)
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return np.asarray(self._average((x[:-1] - x[1:]) * heights), dtype=self.dtype)

    def reset_state(self) -> None:
        if self._built:
            super().reset_state()

    def get_config(self) -> dict:
        label_weights = self.label_weights
        config = {
            "num_thresholds": self.num_thresholds,
            "curve": self.curve,
            "summation_method": self.summation_method,
            "multi_label": self.multi_label,
            "num_labels": self.num_labels,
            "label_weights": None if label_weights is None else label_weights.tolist(),
            "from_logits": self._from_logits,
        }
        if self._init_from_thresholds:
            config["thresholds"] = self.thresholds[1:-1]
        return {**super().get_config(), **config}


class SensitivitySpecificityBase(Metric):
    """Shared state of the "X at Y" metrics: TP/FP/TN/FN counts at ``num_thresholds`` thresholds.

    Thresholds are ``[0, 1/(n-1), ..., 1]`` (``[0.5]`` when ``n == 1``), filled with the same
    bucketed counts as :class:`AUC`. :meth:`result` is the best value of one rate among the
    thresholds where another rate reaches ``value`` (0 when none does).
    """

    def __init__(self, value: float, num_thresholds: int = 200, class_id: int | None = None,
                 name: str | None = None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._direction = "up"
        who = self.__class__.__name__
        if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, (int, np.integer)) \
                or num_thresholds <= 0:
            raise ValueError(
                f"{who}: Argument `num_thresholds` must be an integer > 0. Received: num_thresholds={num_thresholds!r}"
            )
        _check_class_id(class_id, who)
        self.value = value
        self.class_id = class_id
        if num_thresholds == 1:
            self.thresholds = [0.5]
            self._thresholds_distributed_evenly = False
        else:
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self.thresholds = [0.0] + inner + [1.0]
            self._thresholds_distributed_evenly = True
        n = len(self.thresholds)
        self.true_positives = self.add_variable(shape=(n,), initializer="zeros", name="true_positives")
        self.false_positives = self.add_variable(shape=(n,), initializer="zeros", name="false_positives")
        self.true_negatives = self.add_variable(shape=(n,), initializer="zeros", name="true_negatives")
        self.false_negatives = self.add_variable(shape=(n,), initializer="zeros", name="false_negatives")

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        tp, fp, tn, fn = mu.confusion_counts(
            y_true, y_pred, self.thresholds, evenly=self._thresholds_distributed_evenly,
            class_id=self.class_id, sample_weight=sample_weight, dtype=self.dtype, who=self.name,
        )
        self.true_positives.value[...] += tp
        self.false_positives.value[...] += fp
        self.true_negatives.value[...] += tn
        self.false_negatives.value[...] += fn

    def _rates(self) -> dict[str, np.ndarray]:
        tp, fp = self.true_positives.value, self.false_positives.value
        tn, fn = self.true_negatives.value, self.false_negatives.value
        return {"sensitivity": mu.divide_no_nan(tp, tp + fn), "specificity": mu.divide_no_nan(tn, tn + fp),
                "precision": mu.divide_no_nan(tp, tp + fp)}

    def _max_where_reached(self, constrained: np.ndarray, dependent: np.ndarray) -> np.ndarray:
        """``max(dependent)`` over the thresholds where ``constrained >= value``; 0 where none is."""
        feasible = constrained >= np.asarray(self.value, dtype=constrained.dtype)
        return np.asarray(np.max(np.where(feasible, dependent, 0), initial=0), dtype=self.dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "class_id": self.class_id}


def _check_rate(value, arg: str, who: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0 <= value <= 1:
        raise ValueError(f"{who}: Argument `{arg}` must be in the range [0, 1]. Received: {arg}={value!r}")


class SensitivityAtSpecificity(SensitivitySpecificityBase):
    """Best sensitivity ``TP / (TP + FN)`` among thresholds whose specificity ``TN / (TN + FP)``
    is at least ``specificity``.

    Args:
        specificity: the required specificity, in [0, 1].
        num_thresholds: how many thresholds to try (1 means just 0.5).
        class_id: compute the binary metric of this one class (last axis of ``y_pred``).
        name, dtype: as for every metric.
    """

    def __init__(self, specificity: float, num_thresholds: int = 200, class_id: int | None = None,
                 name: str | None = None, dtype=None):
        _check_rate(specificity, "specificity", "SensitivityAtSpecificity")
        self.specificity = specificity
        self.num_thresholds = num_thresholds
        super().__init__(specificity, num_thresholds=num_thresholds, class_id=class_id, name=name, dtype=dtype)

    def result(self) -> np.ndarray:
        rates = self._rates()
        return self._max_where_reached(rates["specificity"], rates["sensitivity"])

    def get_config(self) -> dict:
        return {**super().get_config(), "num_thresholds": self.num_thresholds, "specificity": self.specificity}


class SpecificityAtSensitivity(SensitivitySpecificityBase):
    """Best specificity ``TN / (TN + FP)`` among thresholds whose sensitivity ``TP / (TP + FN)``
    is at least ``sensitivity`` (other arguments as :class:`SensitivityAtSpecificity`)."""

    def __init__(self, sensitivity: float, num_thresholds: int = 200, class_id: int | None = None,
                 name: str | None = None, dtype=None):
        _check_rate(sensitivity, "sensitivity", "SpecificityAtSensitivity")
        self.sensitivity = sensitivity
        self.num_thresholds = num_thresholds
        super().__init__(sensitivity, num_thresholds=num_thresholds, class_id=class_id, name=name, dtype=dtype)

    def result(self) -> np.ndarray:
        rates = self._rates()
        return self._max_where_reached(rates["sensitivity"], rates["specificity"])

    def get_config(self) -> dict:
        return {**super().get_config(), "num_thresholds": self.num_thresholds, "sensitivity": self.sensitivity}


class PrecisionAtRecall(SensitivitySpecificityBase):
    """Best precision ``TP / (TP + FP)`` among thresholds whose recall ``TP / (TP + FN)`` is at
    least ``recall`` (other arguments as :class:`SensitivityAtSpecificity`)."""

    def __init__(self, recall: float, num_thresholds: int = 200, class_id: int | None = None,
                 name: str | None = None, dtype=None):
        _check_rate(recall, "recall", "PrecisionAtRecall")
        self.recall = recall
        self.num_thresholds = num_thresholds
        super().__init__(recall, num_thresholds=num_thresholds, class_id=class_id, name=name, dtype=dtype)

    def result(self) -> np.ndarray:
        rates = self._rates()
        return self._max_where_reached(rates["sensitivity"], rates["precision"])

    def get_config(self) -> dict:
        return {**super().get_config(), "num_thresholds": self.num_thresholds, "recall": self.recall}


class RecallAtPrecision(SensitivitySpecificityBase):
    """Best recall ``TP / (TP + FN)`` among thresholds whose precision ``TP / (TP + FP)`` is at
    least ``precision`` (other arguments as :class:`SensitivityAtSpecificity`)."""

    def __init__(self, precision: float, num_thresholds: int = 200, class_id: int | None = None,
                 name: str | None = None, dtype=None):
        _check_rate(precision, "precision", "RecallAtPrecision")
        self.precision = precision
        self.num_thresholds = num_thresholds
        super().__init__(precision, num_thresholds=num_thresholds, class_id=class_id, name=name, dtype=dtype)

    def result(self) -> np.ndarray:
        rates = self._rates()
        return self._max_where_reached(rates["precision"], rates["sensitivity"])

    def get_config(self) -> dict:
        return {**super().get_config(), "num_thresholds": self.num_thresholds, "precision": self.precision}
