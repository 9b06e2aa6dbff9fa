"""Weight regularizers with Keras 3's names, defaults, formulas and config keys.

A regularizer maps a weight to a scalar penalty that is added to the loss. Penalties are built from
``lamina.ops`` so they are differentiable under a ``GradientTape``, and keep the weight's dtype.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np

from lamina import backend, ops
from lamina.saving.object_config import deserialize_object, get_object, serialize_object


def _validate_factor(value, name: str, owner: str) -> float:
    """A penalty factor: a finite, non-negative number (as Keras checks)."""
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(
            f"{owner}: argument `{name}` must be a non-negative finite float. Received: {name}={value!r}"
        )
    return float(value)


def _as_float_tensor(x):
    """``x`` as an array/Tensor/Variable with a float dtype (integers become floatx)."""
    x = ops.convert_to_tensor(x)
    if not np.issubdtype(np.dtype(ops.dtype(x)), np.floating):
        x = ops.cast(x, backend.floatx())
    return x


class Regularizer:
    """Base class: subclasses implement ``__call__(x) -> scalar penalty`` and ``get_config()``."""

    def __call__(self, x):
        return 0.0

    def get_config(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} does not implement get_config().")

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self) -> str:
        try:
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        except NotImplementedError:
            args = ""
        return f"{type(self).__name__}({args})"


class L1L2(Regularizer):
    """``l1 * sum(|x|) + l2 * sum(x^2)``; each term only when its factor is non-zero."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        # None means 0 here (Keras): L1L2(l2=0.1) has no L1 term.
        self.l1 = _validate_factor(0.0 if l1 is None else l1, "l1", "L1L2")
        self.l2 = _validate_factor(0.0 if l2 is None else l2, "l2", "L1L2")

    def __call__(self, x):
        x = _as_float_tensor(x)
        dt = ops.dtype(x)
        penalty = np.zeros((), dtype=dt)
        if self.l1 != 0.0:
            penalty = ops.add(penalty, ops.multiply(np.asarray(self.l1, dt), ops.sum(ops.abs(x))))
        if self.l2 != 0.0:
            penalty = ops.add(penalty, ops.multiply(np.asarray(self.l2, dt), ops.sum(ops.square(x))))
        return penalty

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}


class L1(Regularizer):
    """``l1 * sum(|x|)``."""

    def __init__(self, l1: float = 0.01):
        self.l1 = _validate_factor(0.01 if l1 is None else l1, "l1", "L1")

    def __call__(self, x):
        x = _as_float_tensor(x)
        return ops.multiply(np.asarray(self.l1, ops.dtype(x)), ops.sum(ops.abs(x)))

    def get_config(self) -> dict:
        return {"l1": self.l1}


class L2(Regularizer):
    """``l2 * sum(x^2)`` (no factor 1/2, as in Keras)."""

    def __init__(self, l2: float = 0.01):
        self.l2 = _validate_factor(0.01 if l2 is None else l2, "l2", "L2")

    def __call__(self, x):
        x = _as_float_tensor(x)
        return ops.multiply(np.asarray(self.l2, ops.dtype(x)), ops.sum(ops.square(x)))

    def get_config(self) -> dict:
        return {"l2": self.l2}


class OrthogonalRegularizer(Regularizer):
    """Pushes the rows (``mode="rows"``) or columns of a 2-D weight towards mutual orthogonality.

    With v_i the L2-normalised rows (or columns), n of them:
    ``factor * 0.5 * sum_{i != j} |v_i . v_j| / (n (n - 1) / 2)``. Normalisation divides by
    ``max(||v||, epsilon)`` as Keras does, so zero rows stay finite. A single row (n = 1) has no
    pairs and gives 0 (Keras divides 0 by 0 there and returns NaN).
    """

    def __init__(self, factor: float = 0.01, mode: str = "rows"):
        self.factor = _validate_factor(factor, "factor", "OrthogonalRegularizer")
        if mode not in ("rows", "columns"):
            raise ValueError(
                f"OrthogonalRegularizer: `mode` must be 'rows' or 'columns'. Received: mode={mode!r}"
            )
        self.mode = mode

    def __call__(self, x):
        x = _as_float_tensor(x)
        if len(ops.shape(x)) != 2:
            raise ValueError(
                f"OrthogonalRegularizer needs a rank-2 weight. Received: inputs.shape={ops.shape(x)}"
            )
        dt = ops.dtype(x)
        if self.mode == "columns":
            x = ops.transpose(x)
        n = ops.shape(x)[0]
        if n < 2:
            return np.zeros((), dtype=dt)
        eps = backend.epsilon()
        # 1 / max(||v||, eps) written as 1 / sqrt(max(||v||^2, eps^2)): no division by zero.
        sq = ops.sum(ops.square(x), axis=1, keepdims=True)
        v = ops.divide(x, ops.sqrt(ops.maximum(sq, np.asarray(eps * eps, dt))))
        product = ops.matmul(v, ops.transpose(v))
        off_diagonal = ops.multiply(product, (1.0 - np.eye(n)).astype(dt))
        scale = np.asarray(self.factor * 0.5 / (n * (n - 1) / 2.0), dt)
        return ops.multiply(scale, ops.sum(ops.abs(off_diagonal)))

    def get_config(self) -> dict:
        return {"factor": self.factor, "mode": self.mode}


# Keras's snake_case aliases (in Keras 3 they are the classes themselves).
l1 = L1
l2 = L2
l1_l2 = L1L2
orthogonal_regularizer = OrthogonalRegularizer

_BUILTINS = (Regularizer, L1, L2, L1L2, OrthogonalRegularizer)

ALL_OBJECTS_DICT: dict[str, Callable] = {
    **{cls.__name__: cls for cls in _BUILTINS},
    "regularizer": Regularizer, "l1": L1, "l2": L2, "l1l2": L1L2,
    "orthogonal_regularizer": OrthogonalRegularizer,
    "l1_l2": L1L2,
}


def serialize(regularizer) -> dict | None:
    """The Keras 3 config dict of ``regularizer``."""
    return serialize_object(regularizer, "keras.regularizers", _BUILTINS)


def deserialize(config, custom_objects: dict | None = None) -> Regularizer | Callable:
    """A regularizer from a Keras 3 / Keras 2 config dict or a name."""
    if config == "l1_l2" and "l1_l2" not in (custom_objects or {}):
        # The bare name 'l1_l2' means l1 = l2 = 0.01, as Keras documents (Keras 2 did this; Keras 3's
        # get() rejects the name, and its other names give the class defaults, here 0 and 0).
        return L1L2(l1=0.01, l2=0.01)
    return deserialize_object(config, "regularizer", ALL_OBJECTS_DICT, custom_objects)


def get(identifier) -> Regularizer | Callable | None:
    """A regularizer from a name ("l2", "L1L2", ...), a config dict, an instance, a class or a
    callable ``f(weight) -> scalar``. None gives None."""
    return get_object(identifier, "regularizer", "Regularizer", deserialize)


__all__ = [
    "L1", "L1L2", "L2", "OrthogonalRegularizer", "Regularizer", "deserialize", "get", "l1", "l1_l2", "l2",
    "orthogonal_regularizer", "serialize",
]
