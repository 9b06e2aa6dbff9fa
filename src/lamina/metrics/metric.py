"""The ``Metric`` base class: state held in non-trainable Variables, updated batch by batch."""

from __future__ import annotations

from typing import Any

import numpy as np

from lamina import backend, dtype_policies, initializers
from lamina.autodiff import Variable
from lamina.naming import auto_name


def _initial_value(initializer, shape: tuple, dtype: str) -> np.ndarray:
    if initializer is None or (isinstance(initializer, str) and initializer.lower() == "zeros"):
        return np.zeros(shape, dtype=dtype)
    if isinstance(initializer, str) and initializer.lower() == "ones":
        return np.ones(shape, dtype=dtype)
    if isinstance(initializer, (int, float, np.ndarray, list, tuple)):
        return np.broadcast_to(np.asarray(initializer, dtype=dtype), shape).copy()
    if isinstance(initializer, str):
        initializer = initializers.get(initializer)
    if callable(initializer):
        return np.asarray(initializer(shape, dtype=dtype), dtype=dtype)
    raise ValueError(
        "Metric.add_variable: `initializer` must be 'zeros', 'ones', a number, an array or a callable "
        f"initializer(shape, dtype). Received: initializer={initializer!r}"
    )


class Metric:
    """Encapsulates a statistic accumulated over batches.

    Subclasses create their state in ``__init__`` with :meth:`add_variable`, accumulate it in
    ``update_state(y_true, y_pred, sample_weight=None)`` and report it in ``result()``.
    ``reset_state()`` zeroes every state variable. ``m(y_true, y_pred)`` updates then returns the
    result. State lives in non-trainable :class:`lamina.Variable` s, so it is visible in ``variables``
    and can be saved; metrics work on plain arrays and never need a GradientTape.

    Args:
        dtype: dtype of the state and of the result; ``None`` means ``backend.floatx()``.
        name: the metric's name (the key it gets in training logs).
    """

    def __init__(self, dtype=None, name: str | None = None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Metric `name` must be a string or None. Received: name={name!r}")
        self._variables: list[Variable] = []
        self._metrics: list[Metric] = []
        self.name = name or auto_name(self.__class__.__name__)
        # A dtype name, policy name or DTypePolicy: state and result in its compute dtype. None is
        # floatx, not the global policy (as in Keras).
        self._dtype_policy = dtype_policies.get(dtype or backend.floatx())
        self._dtype = self._dtype_policy.compute_dtype

    @property
    def dtype(self) -> str:
        return self._dtype

    def __setattr__(self, name: str, value: Any) -> None:
        # Sub-metrics and Variables assigned as attributes, alone or inside lists, tuples and dicts,
        # contribute their state (Keras's tracking).
        if isinstance(value, (Metric, Variable, list, tuple, dict)) and name not in ("_metrics", "_variables") \
                and "_metrics" in self.__dict__:
            self._track(value)
        super().__setattr__(name, value)

    def _track(self, value) -> None:
        if isinstance(value, Metric):
            if value is not self and all(m is not value for m in self._metrics):
                self._metrics.append(value)
        elif isinstance(value, Variable):
            if all(v is not value for v in self._variables):
                self._variables.append(value)
        elif isinstance(value, (list, tuple, dict)):
            for item in value.values() if isinstance(value, dict) else value:
                self._track(item)

    def add_variable(self, shape=(), initializer="zeros", dtype=None, aggregation: str = "sum",
                     name: str | None = None) -> Variable:
        """Create a non-trainable state variable (path ``"<metric name>/<name>"``) and track it."""
        if "_variables" not in self.__dict__:
            raise RuntimeError(
                f"{self.__class__.__name__}: call `super().__init__()` in `__init__` before "
                "`add_variable()`."
            )
        shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        dtype = backend.standardize_dtype(dtype or self._dtype)
        # autocast=False: metrics update their state in place through `.value`, which must be the stored
        # array even when a metric is updated inside a mixed-precision layer's call.
        var = Variable(_initial_value(initializer, shape, dtype), trainable=False, name=name or "variable",
                       dtype=dtype, autocast=False)
        var.path = f"{self.name.replace('/', '>')}/{var.name}"
        var.aggregation = aggregation
        self._variables.append(var)
        return var

    def add_weight(self, shape=(), initializer=None, dtype=None, name: str | None = None) -> Variable:
        """Alias of :meth:`add_variable` (older Keras spelling)."""
        return self.add_variable(shape=shape, initializer=initializer, dtype=dtype, name=name)

    @property
    def variables(self) -> list[Variable]:
        out = list(self._variables)
        for m in self._metrics:
            out.extend(m.variables)
        return out

    def reset_state(self) -> None:
        """Zero every state variable (called at the start of each epoch)."""
        for v in self.variables:
            v.value[...] = 0

    # Keras's stateless forms: the state comes in (and the new state goes out) as a list of arrays, one
    # per variable; the metric's own variables end as they began.

    def stateless_update_state(self, metric_variables, *args, **kwargs) -> list[np.ndarray]:
        """The variables' values after ``update_state(*args, **kwargs)`` starting from ``metric_variables``."""
        return self._run_stateless(metric_variables, lambda: self.update_state(*args, **kwargs))[1]

    def stateless_result(self, metric_variables):
        """``result()`` computed from ``metric_variables`` instead of the metric's state."""
        return self._run_stateless(metric_variables, self.result)[0]

    def stateless_reset_state(self) -> list[np.ndarray]:
        """The variables' values after ``reset_state()``."""
        return self._run_stateless(None, self.reset_state)[1]

    def _run_stateless(self, metric_variables, fn):
        variables = self.variables
        if metric_variables is not None and len(metric_variables) != len(variables):
            raise ValueError(f"Argument `metric_variables` must be a list of arrays corresponding 1:1 to "
                             f"{type(self).__name__}().variables ({len(variables)} of them). "
                             f"Received: a list of length {len(metric_variables)}")
        saved = [v.numpy() for v in variables]
        try:
            for v, value in zip(variables, metric_variables or ()):
                v.assign(value)
            out = fn()
            if isinstance(out, np.ndarray):  # may be a view of a state variable that is restored below
                out = out.copy()
            return out, [v.numpy() for v in variables]
        finally:
            for v, value in zip(variables, saved):
                v.assign(value)

    def update_state(self, *args, **kwargs) -> None:
        raise NotImplementedError(f"{self.__class__.__name__} must implement `update_state()`.")

    def result(self):
        raise NotImplementedError(f"{self.__class__.__name__} must implement `result()`.")

    def __call__(self, *args, **kwargs):
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config: dict) -> Metric:
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{self.__class__.__name__} name={self.name}>"

    __str__ = __repr__
