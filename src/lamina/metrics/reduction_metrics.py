"""Sum, Mean and MeanMetricWrapper: the (weighted) reductions most metrics are built on."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lamina import backend
from lamina.autodiff import unwrap
from lamina.metrics import metrics_utils as mu
from lamina.metrics.metric import Metric
from lamina.saving.object_registry import builtin_objects


def reduce_to_samplewise_values(values, sample_weight, reduce_fn, dtype: str, who: str):
    """Weight ``values`` and reduce them to one value per sample, as Keras does.

    Ranks are aligned; values with more axes than the weight are reduced (``reduce_fn``) over the
    extra axes; the weight multiplies them; a weight of rank > 1 is reduced over its non-batch axes
    (so it counts once per sample); finally values are reduced over every non-batch axis.
    Returns ``(values, sample_weight)`` with ``sample_weight`` None when none was given.
    """
    values = mu.to_array(values, arg="values").astype(dtype, copy=False)
    if sample_weight is not None:
        sw = mu.to_array(sample_weight, arg="sample_weight").astype(dtype, copy=False)
        values, sw = mu.squeeze_or_expand_to_same_rank(values, sw)
        w_ndim = sw.ndim
        if values.ndim > w_ndim:
            values = reduce_fn(values, axis=tuple(range(w_ndim, values.ndim)))
        sw = mu.broadcast_weight(sw, values.shape, who)
        values = values * sw
        if w_ndim > 1:
            sw = reduce_fn(sw, axis=tuple(range(1, w_ndim)))
        sample_weight = sw
    if values.ndim > 1:
        values = reduce_fn(values, axis=tuple(range(1, values.ndim)))
    return values, sample_weight


class Sum(Metric):
    """The (weighted) sum of the given values: ``total += sum(values * sample_weight)``."""

    def __init__(self, name: str = "sum", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", dtype=self.dtype, name="total")

    def update_state(self, values, sample_weight=None) -> None:
        values, _ = reduce_to_samplewise_values(values, sample_weight, np.sum, self.dtype, self.name)
        total = self.total.value
        total += values.sum(dtype=self.dtype)  # in place: the Variable keeps its buffer

    def result(self) -> np.ndarray:
        return self.total.value.copy()


class Mean(Metric):
    """The (weighted) mean of the given values: ``sum(values * w) / sum(w)`` over all batches.

    Without weights every sample counts once (values of rank > 1 are first averaged per sample).
    The result is 0 before any update.
    """

    def __init__(self, name: str = "mean", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", dtype=self.dtype, name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype=self.dtype, name="count")

    def update_state(self, values, sample_weight=None) -> None:
        if sample_weight is None and type(values) is np.ndarray and values.ndim == 1:
            # The per-step hot path (one value per sample, no weights): skip the general reduction.
            if values.dtype != self._dtype:
                values = values.astype(self._dtype)
        else:
            values, sample_weight = reduce_to_samplewise_values(
                values, sample_weight, np.mean, self.dtype, self.name
            )
        total, count = self.total.value, self.count.value
        total += values.sum(dtype=self._dtype)  # in place: the Variables keep their buffers
        if sample_weight is not None:
            count += np.sum(sample_weight, dtype=self._dtype)
        else:
            count += values.shape[0] if values.ndim >= 1 else 1

    def result(self) -> np.ndarray:
        return mu.divide_no_nan(self.total.value, self.count.value).astype(self.dtype)


def _serialize_fn(fn):
    """Keras's serialized form of a plain function (metric functions are looked up by name)."""
    name = getattr(fn, "__name__", None)
    if name is None or isinstance(fn, type):
        return fn
    return {"module": "builtins", "class_name": "function", "config": name, "registered_name": "function"}


def _deserialize_fn(fn):
    if callable(fn):
        return fn
    name = fn.get("config") if isinstance(fn, dict) else fn
    functions = builtin_objects("metric_functions")  # filled by lamina.metrics, which imports this module
    if isinstance(name, str) and name in functions:
        return functions[name]
    from lamina import losses  # lazy: a loss function used as a metric; losses load on first use

    if isinstance(name, str) and callable(getattr(losses, name, None)):
        return getattr(losses, name)
    raise ValueError(
        f"MeanMetricWrapper: unknown metric function {name!r}; known functions: {sorted(functions)}. "
        f"Received: fn={fn!r}"
    )


def _output_mask(y_pred):
    """The mask a layer attached to the model output ``y_pred`` (or to the array behind it), else None."""
    if not backend._MASKS:
        return None
    mask = backend.get_keras_mask(y_pred)
    return mask if mask is not None else backend.get_keras_mask(unwrap(y_pred))


class MeanMetricWrapper(Mean):
    """Average a per-sample function ``fn(y_true, y_pred, **kwargs)`` over all batches (a :class:`Mean`).

    Args:
        fn: the function; it returns one value per sample (or per element, averaged per sample).
        name: the metric's name.
        dtype: dtype of the state and result.
        **kwargs: passed on to ``fn`` at every call (and saved in the config).
    """

    def __init__(self, fn: Callable, name: str | None = None, dtype=None, **kwargs):
        if not callable(fn):
            raise TypeError(f"MeanMetricWrapper: `fn` must be callable. Received: fn={fn!r}")
        super().__init__(name=name, dtype=dtype)
        self._fn = fn
        self._fn_kwargs = kwargs

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        mask = _output_mask(y_pred)
        values = self._fn(y_true, y_pred, **self._fn_kwargs)
        if mask is not None:
            # As Keras: the entries the model's output mask drops get weight 0.
            m = np.asarray(mask, dtype=self.dtype)
            if sample_weight is None:
                sample_weight = m
            else:
                m, sw = mu.squeeze_or_expand_to_same_rank(m, mu.to_array(sample_weight, arg="sample_weight"))
                sample_weight = sw.astype(self.dtype, copy=False) * m
        super().update_state(values, sample_weight=sample_weight)

    def get_config(self) -> dict:
        return {**super().get_config(), "fn": _serialize_fn(self._fn), **self._fn_kwargs}

    @classmethod
    def from_config(cls, config: dict) -> MeanMetricWrapper:
        config = dict(config)
        if "fn" in config:
            config["fn"] = _deserialize_fn(config["fn"])
        return cls(**config)


class LossMetric(MeanMetricWrapper):
    """The weighted mean of a loss function (hinge, crossentropy, ...) as a metric, Keras's way.

    Inputs reach the loss function as plain arrays (a metric never records on a GradientTape).
    The config holds the name, the dtype and the attributes listed in ``_config_keys``; the loss
    function is fixed by the class, so it stays out of the config, as in Keras.
    """

    _config_keys: tuple[str, ...] = ()

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        mask = _output_mask(y_pred)
        y_pred = mu.to_array(y_pred, arg="y_pred")
        if mask is not None:
            backend.set_keras_mask(y_pred, mask)  # the converted array keeps the output's mask
        super().update_state(mu.to_array(y_true, arg="y_true"), y_pred, sample_weight=sample_weight)

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, **{k: getattr(self, k) for k in self._config_keys}}

    @classmethod
    def from_config(cls, config: dict) -> LossMetric:
        return cls(**config)
