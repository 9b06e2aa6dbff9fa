"""Weight constraints with Keras 3's names, defaults, formulas and config keys.

A constraint is a projection applied to a variable's value after each optimizer step:
``w_new = constraint(w)``. It works on plain NumPy arrays (no gradient flows through it) and keeps
the weight's dtype. Norms are taken along ``axis`` (an int or a list of ints; ``axis=0`` on a Dense
kernel ``(input_dim, units)`` constrains each unit's incoming weight vector), and, as in Keras,
rescaling divides by ``epsilon + norm`` so all-zero vectors stay zero.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np

from lamina import backend
from lamina.autodiff import unwrap
from lamina.saving.object_config import deserialize_object, get_object, serialize_object


def _as_float_array(w, owner: str) -> np.ndarray:
    arr = np.asarray(unwrap(w))
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{owner}: expected a numeric weight array. Received: dtype={arr.dtype}")
    return arr if arr.dtype.kind == "f" else arr.astype(backend.floatx())


def _validate_axis(axis, owner: str):
    ok = isinstance(axis, numbers.Integral) and not isinstance(axis, bool)
    if isinstance(axis, (list, tuple)):
        ok = all(isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axis)
    if not ok:
        raise ValueError(f"{owner}: `axis` must be an int or a list of ints. Received: axis={axis!r}")
    return axis


def _validate_value(value, name: str, owner: str) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0:
        raise ValueError(
            f"{owner}: `{name}` must be a non-negative finite number. Received: {name}={value!r}"
        )
    return value


def _norms(w: np.ndarray, axis, owner: str) -> np.ndarray:
    """L2 norms along ``axis`` (kept), in float64: squares of float32 weights cannot overflow there."""
    axes = tuple(axis) if isinstance(axis, (list, tuple)) else axis
    try:
        return np.sqrt(np.sum(np.square(w, dtype=np.float64), axis=axes, keepdims=True))
    except ValueError:  # np.exceptions.AxisError is a ValueError
        raise ValueError(
            f"{owner}: axis {axis} is out of range for a weight of shape {w.shape}. Received: axis={axis!r}"
        ) from None


def _rescale(w: np.ndarray, factor: np.ndarray) -> np.ndarray:
    # Multiply in at least float32: for float16 weights 1 / (epsilon + norm) of a (near-)zero vector
    # exceeds float16's range (1e7 > 65504), and 0 * inf would turn a zero vector into NaN.
    work = np.promote_types(w.dtype, np.float32)
    return (w.astype(work, copy=False) * factor.astype(work)).astype(w.dtype, copy=False)


class Constraint:
    """Base class: subclasses implement ``__call__(w) -> projected w``. The base returns ``w``."""

    def __call__(self, w):
        return w

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class MaxNorm(Constraint):
    """Caps each weight vector's L2 norm: ``w * clip(n, 0, max_value) / (epsilon + n)``."""

    def __init__(self, max_value: float = 2, axis=0):
        self.max_value = _validate_value(max_value, "max_value", "MaxNorm")
        self.axis = _validate_axis(axis, "MaxNorm")

    def __call__(self, w) -> np.ndarray:
        w = _as_float_array(w, "MaxNorm")
        norms = _norms(w, self.axis, "MaxNorm")
        return _rescale(w, np.clip(norms, 0, self.max_value) / (backend.epsilon() + norms))

    def get_config(self) -> dict:
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    """Sets negative weights to zero: ``max(w, 0)``."""

    def __call__(self, w) -> np.ndarray:
        w = _as_float_array(w, "NonNeg")
        return np.maximum(w, np.zeros((), w.dtype))


class UnitNorm(Constraint):
    """Rescales each weight vector to unit L2 norm: ``w / (epsilon + n)``."""

    def __init__(self, axis=0):
        self.axis = _validate_axis(axis, "UnitNorm")

    def __call__(self, w) -> np.ndarray:
        w = _as_float_array(w, "UnitNorm")
        return _rescale(w, 1.0 / (backend.epsilon() + _norms(w, self.axis, "UnitNorm")))

    def get_config(self) -> dict:
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    """Moves each weight vector's norm into [min_value, max_value] at speed ``rate``.

    ``desired = rate * clip(n, min_value, max_value) + (1 - rate) * n`` and
    ``w * desired / (epsilon + n)``: rate 1 enforces the bounds strictly, rate < 1 approaches them.
    """

    def __init__(self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0, axis=0):
        self.min_value = _validate_value(min_value, "min_value", "MinMaxNorm")
        self.max_value = _validate_value(max_value, "max_value", "MinMaxNorm")
        if min_value > max_value:
            raise ValueError(
                f"MinMaxNorm: `min_value` must not exceed `max_value`. Received: min_value={min_value}, "
                f"max_value={max_value}"
            )
        self.rate = _validate_value(rate, "rate", "MinMaxNorm")
        if rate > 1:
            raise ValueError(f"MinMaxNorm: `rate` must lie in [0, 1]. Received: rate={rate!r}")
        self.axis = _validate_axis(axis, "MinMaxNorm")

    def __call__(self, w) -> np.ndarray:
        w = _as_float_array(w, "MinMaxNorm")
        norms = _norms(w, self.axis, "MinMaxNorm")
        desired = self.rate * np.clip(norms, self.min_value, self.max_value) + (1 - self.rate) * norms
        return _rescale(w, desired / (backend.epsilon() + norms))

    def get_config(self) -> dict:
        return {
            "min_value": self.min_value,
            "max_value": self.max_value,
            "rate": self.rate,
            "axis": self.axis,
        }


# Keras's snake_case aliases.
max_norm = MaxNorm
non_neg = NonNeg
unit_norm = UnitNorm
min_max_norm = MinMaxNorm

_BUILTINS = (Constraint, MaxNorm, NonNeg, UnitNorm, MinMaxNorm)

ALL_OBJECTS_DICT: dict[str, Callable] = {
    **{cls.__name__: cls for cls in _BUILTINS},
    "constraint": Constraint, "max_norm": MaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm,
    "min_max_norm": MinMaxNorm,
}


def serialize(constraint) -> dict | None:
    """The Keras 3 config dict of ``constraint``."""
    return serialize_object(constraint, "keras.constraints", _BUILTINS)


def deserialize(config, custom_objects: dict | None = None) -> Constraint | Callable:
    """A constraint from a Keras 3 / Keras 2 config dict or a name."""
    return deserialize_object(config, "constraint", ALL_OBJECTS_DICT, custom_objects)


def get(identifier) -> Constraint | Callable | None:
    """A constraint from a name ("max_norm", "NonNeg", ...), a config dict, an instance, a class or a
    callable ``f(w) -> w``. None gives None."""
    return get_object(identifier, "constraint", "Constraint", deserialize)


__all__ = [
    "Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "deserialize", "get", "max_norm",
    "min_max_norm", "non_neg", "serialize", "unit_norm",
]
