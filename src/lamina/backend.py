"""The array module and global numeric settings.

lamina has one backend: NumPy, reached through the name ``xp`` so that a CuPy-like module could
slot in (Chainer's pattern). Also holds floatx, epsilon and the global random generator.
"""

from __future__ import annotations

import numpy as np

xp = np

_FLOATX = "float32"
_EPSILON = 1e-7
_RNG = np.random.default_rng()
_SEED: int | None = None


def floatx() -> str:
    """The default float dtype name, ``"float32"`` unless changed."""
    return _FLOATX


def set_floatx(value: str) -> None:
    global _FLOATX
    if value not in ("float16", "float32", "float64"):
        raise ValueError(
            f"Unknown floatx type: expected one of 'float16', 'float32', 'float64'. Received: {value!r}"
        )
    _FLOATX = str(value)


def epsilon() -> float:
    """The fuzz factor used in numeric expressions (Keras's default 1e-7)."""
    return _EPSILON


def set_epsilon(value: float) -> None:
    global _EPSILON
    _EPSILON = float(value)


def rng() -> np.random.Generator:
    """The global generator used for initializers, dropout and shuffling when no seed is given."""
    return _RNG


def set_seed(seed: int | None) -> None:
    """Reset the global generator; the same seed gives bit-identical weights and training runs."""
    global _RNG, _SEED
    _SEED = None if seed is None else int(seed)
    _RNG = np.random.default_rng(_SEED)


def make_rng(seed: int | None) -> np.random.Generator:
    """A generator for an object with its own ``seed=`` argument, else the global one."""
    return _RNG if seed is None else np.random.default_rng(seed)


def standardize_dtype(dtype) -> str:
    if dtype is None:
        return _FLOATX
    if hasattr(dtype, "name") and not isinstance(dtype, str):
        dtype = dtype.name
    return np.dtype(dtype).name
