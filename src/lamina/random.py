"""``keras.random``: random draws with Keras's names, arguments and defaults, on NumPy generators.

``seed`` decides where a draw comes from, as in Keras:

- ``None``: lamina's global generator (``backend.rng()``), which ``lamina.utils.set_random_seed``
  resets, so unseeded code repeats exactly after seeding;
- an int: a fresh generator built from it, so the same int gives the same values on every call
  (stateless);
- a :class:`SeedGenerator`: a generator built from its state, which then advances, so successive
  calls differ yet repeat from one run to the next. ``normal(s, seed=7)`` equals the first
  ``normal(s, seed=SeedGenerator(7))``.

The streams are NumPy's, not bit-equal to Keras's backends; the distributions are the same.
"""

from __future__ import annotations

import numpy as np

from lamina import backend
from lamina.autodiff import Variable, record, unwrap
from lamina.naming import auto_name

_SEED_MASK = 0xFFFFFFFF  # seeds are uint32 values, as in Keras (larger and negative ints wrap)


class SeedGenerator:
    """The state of a seeded random stream: ``[seed, counter]``, in a non-trainable Variable
    (``state``) so that it is saved and restored with the layer that owns it.

    Pass it as ``seed=`` to any function here; each call uses the current state and advances it.

    Args:
        seed: an int; None picks one from lamina's global generator.
        name: the generator's name (default ``seed_generator``, ``seed_generator_1``, ...).
    """

    def __init__(self, seed: int | None = None, name: str | None = None, **kwargs):
        if kwargs:
            raise ValueError(f"Unrecognized keyword arguments: {kwargs}")
        self.name = auto_name(type(self).__name__) if name is None else name
        self._initial_seed = seed
        if seed is None:
            seed = int(backend.rng().integers(1, 10**9))  # from the global generator: set_random_seed governs it
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"Argument `seed` must be an integer. Received: seed={seed}")
        self.state = Variable(np.array([int(seed) & _SEED_MASK, 0], dtype=np.uint32), trainable=False,
                              name="seed_generator_state", dtype="uint32")
        self.state.path = f"{self.name}/seed_generator_state"

    def next(self, ordered: bool = True) -> np.ndarray:
        """The current state (a copy), then advance it: the counter by one, or (``ordered=False``) to a
        scrambled successor, Keras's ``(state + 1) * 5387 % 933199``."""
        current = self.state.numpy()
        if ordered:
            self.state.assign(current + np.array([0, 1], dtype=np.uint32))
        else:
            self.state.assign(((current.astype(np.int64) + 1) * 5387 % 933199).astype(np.uint32))
        return current

    def get_config(self) -> dict:
        return {"seed": self._initial_seed, "name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> SeedGenerator:
        return cls(**config)

    def __repr__(self):
        return f"<SeedGenerator name={self.name}, state={self.state.numpy().tolist()}>"


def _generator(seed) -> np.random.Generator:
    """The generator a draw with ``seed=`` uses (see the module docstring)."""
    if seed is None:
        return backend.rng()
    if isinstance(seed, SeedGenerator):
        return np.random.default_rng(seed.next().tolist())
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return np.random.default_rng([int(seed) & _SEED_MASK, 0])  # the state SeedGenerator(seed) starts at
    raise ValueError("Argument `seed` must be either an integer or an instance of `SeedGenerator`. "
                     f"Received: seed={seed} (of type {type(seed)})")


def _shape(shape, fn: str) -> tuple:
    """``shape`` as a tuple of non-negative ints (an int is a 1-D shape)."""
    dims = (shape,) if isinstance(shape, (int, np.integer)) else shape
    try:
        dims = tuple(dims)
    except TypeError:
        dims = None
    if dims is None or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0 for d in dims):
        raise ValueError(f"`keras.random.{fn}` expects `shape` to be a tuple of non-negative integers. "
                         f"Received: shape={shape!r}")
    return tuple(int(d) for d in dims)


def _dtype(dtype, fn: str, kind: str) -> np.dtype:
    """``dtype`` (None: floatx) checked to be of ``kind``: "float" or "int"."""
    name = backend.standardize_dtype(dtype)
    dt = np.dtype(name)
    ok = backend.is_float_dtype(dt) if kind == "float" else np.issubdtype(dt, np.integer)  # bfloat16 too
    if not ok:
        article = "a floating point" if kind == "float" else "an integer"
        raise ValueError(f"`keras.random.{fn}` requires {article} `dtype`. Received: dtype={dtype} ")
    return dt


def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None) -> np.ndarray:
    """Samples of N(mean, stddev²)."""
    dims, dt = _shape(shape, "normal"), _dtype(dtype, "normal", "float")
    return _generator(seed).normal(loc=mean, scale=stddev, size=dims).astype(dt)


def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None) -> np.ndarray:
    """Samples of U[minval, maxval)."""
    dims, dt = _shape(shape, "uniform"), _dtype(dtype, "uniform", "float")
    return _generator(seed).uniform(low=minval, high=maxval, size=dims).astype(dt)


def randint(shape, minval, maxval, dtype="int32", seed=None) -> np.ndarray:
    """Integers drawn uniformly from [minval, maxval)."""
    dims, dt = _shape(shape, "randint"), _dtype(dtype, "randint", "int")
    if np.any(np.asarray(minval) >= np.asarray(maxval)):
        raise ValueError("`keras.random.randint` needs minval < maxval (maxval is excluded). "
                         f"Received: minval={minval}, maxval={maxval}")
    return _generator(seed).integers(minval, maxval, size=dims).astype(dt)


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None) -> np.ndarray:
    """Samples of N(mean, stddev²) restricted to [mean - 2·stddev, mean + 2·stddev] (redrawn until inside)."""
    dims, dt = _shape(shape, "truncated_normal"), _dtype(dtype, "truncated_normal", "float")
    rng = _generator(seed)
    z = rng.standard_normal(dims)
    outside = np.abs(z) > 2.0
    while np.any(outside):  # each pass keeps ~95 % of what it redraws
        z[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(z) > 2.0
    return (mean + stddev * z).astype(dt)


def gamma(shape, alpha, dtype=None, seed=None) -> np.ndarray:
    """Samples of Gamma(alpha, scale 1): density x^(alpha-1) e^(-x) / Γ(alpha)."""
    dims, dt = _shape(shape, "gamma"), _dtype(dtype, "gamma", "float")
    if np.any(np.asarray(alpha) <= 0):
        raise ValueError(f"`keras.random.gamma` needs alpha > 0. Received: alpha={alpha}")
    return _generator(seed).gamma(alpha, 1.0, size=dims).astype(dt)


def binomial(shape, counts, probabilities, dtype=None, seed=None) -> np.ndarray:
    """Successes in ``counts`` trials of probability ``probabilities`` each (floatx by default, as Keras)."""
    dims, dt = _shape(shape, "binomial"), backend.standardize_dtype(dtype)
    p = np.asarray(probabilities, dtype=np.float64)
    if np.any(np.asarray(counts) < 0) or not np.all((p >= 0) & (p <= 1)):
        raise ValueError("`keras.random.binomial` needs counts >= 0 and 0 <= probabilities <= 1. "
                         f"Received: counts={counts}, probabilities={probabilities}")
    return _generator(seed).binomial(counts, p, size=dims).astype(dt)


def beta(shape, alpha, beta, dtype=None, seed=None) -> np.ndarray:
    """Samples of Beta(alpha, beta) on [0, 1]."""
    dims, dt = _shape(shape, "beta"), _dtype(dtype, "beta", "float")
    if np.any(np.asarray(alpha) <= 0) or np.any(np.asarray(beta) <= 0):
        raise ValueError(f"`keras.random.beta` needs alpha > 0 and beta > 0. Received: alpha={alpha}, beta={beta}")
    return _generator(seed).beta(alpha, beta, size=dims).astype(dt)


def categorical(logits, num_samples, dtype="int32", seed=None) -> np.ndarray:
    """``num_samples`` class indices per row of ``logits`` (batch, classes), drawn with probabilities
    softmax(logits); result shape (batch, num_samples)."""
    z = np.asarray(unwrap(logits), dtype=np.float64)
    if z.ndim != 2 or z.shape[1] == 0:
        raise ValueError("`logits` should be a 2-D tensor with shape [batch_size, num_classes]. "
                         f"Received: logits={logits}")
    dt = _dtype(dtype, "categorical", "int")
    p = np.exp(z - z.max(axis=1, keepdims=True))  # a row's -inf logits get probability 0
    cdf = np.cumsum(p, axis=1)
    cdf /= cdf[:, -1:]
    u = _generator(seed).random((z.shape[0], int(num_samples)))
    idx = np.empty(u.shape, dtype=np.int64)
    for i in range(len(z)):  # inverse CDF: the first class whose cumulative probability exceeds u
        idx[i] = np.searchsorted(cdf[i], u[i], side="right")
    return np.minimum(idx, z.shape[1] - 1).astype(dt)


def dropout(inputs, rate, noise_shape=None, seed=None):
    """Zero each entry with probability ``rate`` and scale the rest by 1 / (1 - rate), so the mean is
    kept. ``noise_shape`` (None entries take the input's size) shares one draw along axes of size 1.
    Differentiable: the gradient is the same mask times the same scale."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.number)) or not 0 <= rate <= 1:
        raise ValueError(f"`keras.random.dropout` expects `rate` between 0 and 1. Received: rate={rate!r}")
    if rate == 0:
        return inputs
    xv = np.asarray(unwrap(inputs))
    if not np.issubdtype(xv.dtype, np.floating):
        xv = xv.astype(backend.floatx())
    keep = 1.0 - float(rate)
    mask_shape = xv.shape if noise_shape is None else _noise_shape(noise_shape, xv.shape)
    kept = _generator(seed).random(mask_shape) < keep
    scale = np.where(kept, 1.0 / keep if keep else 0.0, 0.0).astype(xv.dtype)
    return record(xv * scale, (inputs,), lambda g: (g * scale,))


def _noise_shape(noise_shape, shape: tuple) -> tuple:
    dims = tuple(s if n is None else n for n, s in zip(noise_shape, shape, strict=False))
    if len(tuple(noise_shape)) != len(shape) or any(n not in (1, s) for n, s in zip(dims, shape, strict=True)):
        raise ValueError("`keras.random.dropout`: `noise_shape` must have the input's rank, each entry None, 1 "
                         f"or the input's size. Received: noise_shape={noise_shape}, input shape={shape}")
    return dims


def shuffle(x, axis=0, seed=None):
    """``x`` with its slices along ``axis`` in a random order (whole slices move). Differentiable."""
    xv = np.asarray(unwrap(x))
    if xv.ndim == 0 or not -xv.ndim <= axis < xv.ndim:
        raise ValueError(f"`keras.random.shuffle` needs an axis of `x` (rank {xv.ndim}). Received: axis={axis}")
    perm = _generator(seed).permutation(xv.shape[axis])
    inverse = np.argsort(perm)
    return record(np.take(xv, perm, axis=axis), (x,), lambda g: (np.take(g, inverse, axis=axis),))


__all__ = ["SeedGenerator", "beta", "binomial", "categorical", "dropout", "gamma", "normal", "randint", "shuffle",
           "truncated_normal", "uniform"]
