"""Stateful metrics with Keras 3's names, arguments, configs and values.

A metric accumulates state over batches (``update_state``), reports it (``result``) and starts
over (``reset_state``). Metrics run on plain NumPy arrays, need no GradientTape and are vectorised:
they run every training step.

``get`` resolves strings, classes, instances, callables and config dicts. ``resolve_accuracy``
and ``get_metric`` apply ``compile()``'s rule for the string "accuracy" (binary, categorical or
sparse categorical, chosen from the shapes of the targets and predictions).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable

from lamina.losses import (
    binary_crossentropy,
    binary_focal_crossentropy,
    categorical_crossentropy,
    categorical_focal_crossentropy,
    categorical_hinge,
    hinge,
    huber,
    kl_divergence,
    log_cosh,
    poisson,
    sparse_categorical_crossentropy,
    squared_hinge,
)
from lamina.metrics.accuracy_metrics import (
    Accuracy,
    BinaryAccuracy,
    CategoricalAccuracy,
    SparseCategoricalAccuracy,
    SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy,
    accuracy,
    binary_accuracy,
    categorical_accuracy,
    sparse_categorical_accuracy,
    sparse_top_k_categorical_accuracy,
    top_k_categorical_accuracy,
)
from lamina.metrics.confusion_metrics import (
    AUC,
    FalseNegatives,
    FalsePositives,
    Precision,
    PrecisionAtRecall,
    Recall,
    RecallAtPrecision,
    SensitivityAtSpecificity,
    SpecificityAtSensitivity,
    TrueNegatives,
    TruePositives,
)
from lamina.metrics.correlation_metrics import (
    ConcordanceCorrelation,
    PearsonCorrelation,
    concordance_correlation,
    pearson_correlation,
)
from lamina.metrics.f_score_metrics import F1Score, FBetaScore
from lamina.metrics.hinge_metrics import CategoricalHinge, Hinge, SquaredHinge
from lamina.metrics.iou_metrics import BinaryIoU, IoU, MeanIoU, OneHotIoU, OneHotMeanIoU
from lamina.metrics.metric import Metric
from lamina.metrics.probabilistic_metrics import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    KLDivergence,
    Poisson,
    SparseCategoricalCrossentropy,
)
from lamina.metrics.reduction_metrics import Mean, MeanMetricWrapper, Sum
from lamina.metrics.regression_metrics import (
    CosineSimilarity,
    LogCoshError,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredError,
    MeanSquaredLogarithmicError,
    R2Score,
    RootMeanSquaredError,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    mean_squared_logarithmic_error,
)
from lamina.naming import to_snake_case
from lamina.saving.object_registry import register_builtins

_CLASSES = (
    Metric, Mean, Sum, MeanMetricWrapper,
    MeanSquaredError, RootMeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError,
    MeanSquaredLogarithmicError, CosineSimilarity, LogCoshError, R2Score,
    AUC, FalseNegatives, FalsePositives, Precision, PrecisionAtRecall, Recall, RecallAtPrecision,
    SensitivityAtSpecificity, SpecificityAtSensitivity, TrueNegatives, TruePositives,
    Hinge, SquaredHinge, CategoricalHinge,
    KLDivergence, Poisson, BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy,
    Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
    TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy,
    F1Score, FBetaScore,
    ConcordanceCorrelation, PearsonCorrelation,
    IoU, BinaryIoU, MeanIoU, OneHotIoU, OneHotMeanIoU,
)

# Every string ``get`` accepts: class names, their snake_case forms, and Keras's short aliases.
ALL_OBJECTS: dict[str, type] = {cls.__name__: cls for cls in _CLASSES}
ALL_OBJECTS.update({to_snake_case(cls.__name__): cls for cls in _CLASSES})
ALL_OBJECTS.update({
    "bce": BinaryCrossentropy, "BCE": BinaryCrossentropy,
    "mse": MeanSquaredError, "MSE": MeanSquaredError,
    "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError,
    "mape": MeanAbsolutePercentageError, "MAPE": MeanAbsolutePercentageError,
    "msle": MeanSquaredLogarithmicError, "MSLE": MeanSquaredLogarithmicError,
    "acc": Accuracy,
})

# The stateless metric functions, by name (MeanMetricWrapper configs refer to them this way); as in
# keras.metrics, the probabilistic, hinge, huber and log-cosh ones are the loss functions.
FUNCTIONS: dict[str, Callable] = {
    f.__name__: f for f in (
        accuracy, binary_accuracy, categorical_accuracy, sparse_categorical_accuracy,
        top_k_categorical_accuracy, sparse_top_k_categorical_accuracy,
        mean_squared_error, mean_absolute_error, mean_absolute_percentage_error,
        mean_squared_logarithmic_error,
        binary_crossentropy, binary_focal_crossentropy, categorical_crossentropy,
        categorical_focal_crossentropy, sparse_categorical_crossentropy, kl_divergence, poisson,
        hinge, squared_hinge, categorical_hinge, huber, log_cosh,
        pearson_correlation, concordance_correlation,
    )
}
register_builtins("metric_functions", FUNCTIONS)  # MeanMetricWrapper configs name these


def serialize(metric) -> dict:
    """Keras's serialized form: ``{"module", "class_name", "config", "registered_name"}``."""
    if isinstance(metric, Metric):
        return {"module": "keras.metrics", "class_name": metric.__class__.__name__,
                "config": metric.get_config(), "registered_name": None}
    if callable(metric) and hasattr(metric, "__name__"):
        return {"module": "builtins", "class_name": "function", "config": metric.__name__,
                "registered_name": "function"}
    raise TypeError(f"serialize expects a Metric instance or a metric function. Received: {metric!r}")


def deserialize(config, custom_objects: dict | None = None):
    """Rebuild a metric (or metric function) from :func:`serialize`'s output or a class name."""
    custom_objects = custom_objects or {}
    if isinstance(config, str):
        return get(custom_objects.get(config, config))
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(
            "deserialize expects a dict with 'class_name' and 'config' keys. "
            f"Received: config={config!r}"
        )
    class_name = config["class_name"]
    inner = config.get("config", {})
    if class_name == "function":
        name = inner
        if name in custom_objects:
            return custom_objects[name]
        if name in FUNCTIONS:
            return FUNCTIONS[name]
        raise ValueError(
            f"Unknown metric function {name!r}. Known: {sorted(FUNCTIONS)}. Received: config={config!r}"
        )
    cls = custom_objects.get(class_name) or custom_objects.get(config.get("registered_name") or "") \
        or ALL_OBJECTS.get(class_name)
    if cls is None:
        _unknown(class_name)
    return cls.from_config(inner or {})


def _unknown(identifier):
    names = sorted(set(ALL_OBJECTS))
    close = difflib.get_close_matches(str(identifier), names, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"Could not interpret metric identifier.{hint} Valid names: {', '.join(names)}. "
        f"Received: identifier={identifier!r}"
    )


def get(identifier):
    """A metric from a name, class, instance, callable or config dict (None gives None).

    Strings name a class (``"auc"``, ``"Precision"``, ``"mse"``, ...) and give a fresh instance with
    default arguments; classes are instantiated; instances and plain callables pass through.
    """
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = ALL_OBJECTS.get(identifier)
        if cls is None or cls is Metric or cls is MeanMetricWrapper:
            _unknown(identifier)
        return cls()
    if inspect.isclass(identifier):
        if issubclass(identifier, Metric):
            return identifier()
        raise ValueError(f"Could not interpret metric identifier: a class that is not a Metric. "
                         f"Received: identifier={identifier!r}")
    if callable(identifier):
        return identifier
    raise ValueError(
        "Could not interpret metric identifier: expected a name, a Metric class or instance, a "
        f"callable or a config dict. Received: identifier={identifier!r}"
    )


def _loss_name(loss) -> str:
    """``"binary_crossentropy"`` for the string, a loss function or a ``BinaryCrossentropy()``."""
    if loss is None:
        return ""
    if isinstance(loss, str):
        return loss
    if inspect.isfunction(loss):
        return loss.__name__
    return to_snake_case(type(loss).__name__)


def resolve_accuracy(loss=None, y_true_shape=None, y_pred_shape=None, name: str = "accuracy") -> Metric:
    """The metric ``compile(metrics=["accuracy"])`` means, Keras 3's rule:

    * binary when predictions have one unit (``y_pred.shape[-1] == 1``) -> :class:`BinaryAccuracy`;
    * sparse when targets have lower rank than predictions, or a trailing 1 against several units
      -> :class:`SparseCategoricalAccuracy`;
    * otherwise (one-hot targets) -> :class:`CategoricalAccuracy`.

    Keras 3 decides from the shapes alone and so does this function when they are given; the loss
    is consulted only when a shape is unknown (None): a binary/sparse/categorical crossentropy
    picks the matching accuracy. The metric is named ``name`` ("accuracy"; Keras keeps the string
    the user wrote, so "acc" gives "acc").
    """
    if y_true_shape is not None and y_pred_shape is not None:
        y_true_shape, y_pred_shape = tuple(y_true_shape), tuple(y_pred_shape)
        if not y_pred_shape or not y_true_shape:
            raise ValueError(
                "resolve_accuracy: targets and predictions need at least one axis. "
                f"Received: y_true_shape={y_true_shape}, y_pred_shape={y_pred_shape}"
            )
        is_binary = y_pred_shape[-1] == 1
        is_sparse = len(y_true_shape) < len(y_pred_shape) or (y_true_shape[-1] == 1 and y_pred_shape[-1] > 1)
    else:
        loss_name = _loss_name(loss).lower()
        if "sparse_categorical" in loss_name:
            is_binary, is_sparse = False, True
        elif "categorical" in loss_name:
            is_binary, is_sparse = False, False
        elif "binary" in loss_name:
            is_binary, is_sparse = True, False
        else:
            raise ValueError(
                "resolve_accuracy: cannot choose binary, categorical or sparse categorical accuracy "
                "without the target and prediction shapes (or a crossentropy loss). "
                f"Received: loss={loss!r}, y_true_shape={y_true_shape}, y_pred_shape={y_pred_shape}"
            )
    if is_binary:
        return BinaryAccuracy(name=name)
    if is_sparse:
        return SparseCategoricalAccuracy(name=name)
    return CategoricalAccuracy(name=name)


def get_metric(identifier, y_true_shape=None, y_pred_shape=None, loss=None) -> Metric:
    """One entry of ``compile(metrics=[...])`` as a Metric, as Keras's compile does.

    "accuracy"/"acc" (any case) go through :func:`resolve_accuracy`; other identifiers through
    :func:`get`. A string keeps its spelling as the metric's name ("mse" logs as "mse"); plain
    functions are wrapped in a :class:`MeanMetricWrapper` named after them.
    """
    if identifier is None:
        raise ValueError("Expected a metric. Received: identifier=None")
    if str(identifier).lower() in ("accuracy", "acc"):
        return resolve_accuracy(loss, y_true_shape, y_pred_shape, name=str(identifier))
    metric = get(identifier)
    if isinstance(identifier, str):
        name = identifier
    else:
        fallback = getattr(metric, "__name__", type(metric).__name__)
        name = getattr(metric, "name", None) or to_snake_case(fallback)
    if not isinstance(metric, Metric):
        metric = MeanMetricWrapper(metric, name=name)
    metric.name = name
    return metric


__all__ = [
    "AUC", "Accuracy", "BinaryAccuracy", "BinaryCrossentropy", "CategoricalAccuracy", "CategoricalCrossentropy",
    "CategoricalHinge", "CosineSimilarity", "F1Score", "FBetaScore", "FalseNegatives", "FalsePositives",
    "Hinge", "KLDivergence", "LogCoshError", "Mean", "MeanAbsoluteError", "MeanAbsolutePercentageError",
    "MeanMetricWrapper", "MeanSquaredError", "MeanSquaredLogarithmicError", "Metric", "Poisson", "Precision",
    "PrecisionAtRecall", "R2Score", "Recall", "RecallAtPrecision", "RootMeanSquaredError",
    "SensitivityAtSpecificity", "SparseCategoricalAccuracy", "SparseCategoricalCrossentropy",
    "SparseTopKCategoricalAccuracy", "SpecificityAtSensitivity", "SquaredHinge", "Sum",
    "TopKCategoricalAccuracy", "TrueNegatives", "TruePositives",
    "accuracy", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
    "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy",
    "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error",
    "binary_crossentropy", "binary_focal_crossentropy", "categorical_crossentropy",
    "categorical_focal_crossentropy", "sparse_categorical_crossentropy", "kl_divergence", "poisson",
    "hinge", "squared_hinge", "categorical_hinge", "huber", "log_cosh",
    "ConcordanceCorrelation", "PearsonCorrelation", "concordance_correlation", "pearson_correlation",
    "IoU", "BinaryIoU", "MeanIoU", "OneHotIoU", "OneHotMeanIoU",
    "get", "serialize", "deserialize", "resolve_accuracy", "get_metric",
]
