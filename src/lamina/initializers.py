"""Weight initializers with Keras 3's names, defaults, formulas and config keys.

Every initializer is called as ``init(shape, dtype=None)`` and returns a NumPy array of ``dtype``
(``backend.floatx()`` by default).

Randomness. ``seed=None`` draws from the global generator ``lamina.backend.rng()`` at call time, so
``lamina.utils.set_random_seed(s)`` followed by building a model gives bit-identical weights, and
two calls of one unseeded instance give different values. (Keras instead fixes a hidden seed when an
unseeded initializer is constructed, so its repeated calls repeat themselves and it warns about it.)
An integer seed behaves as in Keras: each call restarts a generator from that seed, so a seeded
instance returns the same values on every call. A Keras ``SeedGenerator`` config as ``seed`` gives
a deterministic stream: successive calls differ, as in Keras.

Also holds the private (de)serialization helpers shared by ``regularizers`` and ``constraints``.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable

import numpy as np

from lamina import backend
from lamina.autodiff import Tensor, Variable, unwrap
from lamina.saving.object_config import deserialize_object, serialize_object

# The standard deviation of a standard normal truncated to (-2, 2). VarianceScaling divides its
# target stddev by it so that the *truncated* samples have exactly the requested variance.
_TRUNCATED_STDDEV = 0.87962566103423978


# ----------------------------------------------------------------------------- shared helpers
# Used by regularizers.py and constraints.py as well; the format is Keras 3's
# ``serialize_keras_object``: {"module", "class_name", "config", "registered_name"}.


def _check_number(value, name: str, owner: str, *, minimum: float | None = None, strict: bool = False):
    """``value`` as a finite real number, else a ValueError naming ``owner``'s argument ``name``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum}"
        raise ValueError(
            f"{owner}: argument `{name}` must be a finite number{bound}. Received: {name}={value!r}"
        )
    return value


def _standardize_shape(shape, owner: str) -> tuple[int, ...]:
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if dims is None or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0 for d in dims
    ):
        raise ValueError(
            f"{owner}: `shape` must be a tuple of non-negative integers (fully known, no None). "
            f"Received: shape={shape!r}"
        )
    return tuple(int(d) for d in dims)


def _standardize_dtype(dtype, owner: str, float_only: bool) -> np.dtype:
    try:
        dt = np.dtype(backend.standardize_dtype(dtype))  # bfloat16 / float8 load ml_dtypes here
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: unknown dtype. Received: dtype={dtype!r}") from None
    if float_only and not backend.is_float_dtype(dt):
        raise ValueError(
            f"{owner} produces random floats: expected a floating dtype such as 'float32' or 'bfloat16'. "
            f"Received: dtype={dtype!r}"
        )
    return dt


def _work_dtype(dt: np.dtype):
    """The dtype to draw in: float64 only when float64 is asked for (float16 is drawn in float32)."""
    return np.float64 if dt == np.float64 else np.float32


def compute_fans(shape, input_axes=None, output_axes=None) -> tuple[int, int]:
    """``(fan_in, fan_out)`` for a weight shape, as Keras computes them.

    Rank 0: (1, 1). Rank 1: (n, n). Rank 2 ``(in, out)``: (in, out). Rank >= 3, a convolution kernel
    ``(*spatial, in_channels, out_channels)``: each channel count times the receptive-field size
    ``prod(spatial)``. ``input_axes`` and ``output_axes`` (both given) choose the axes explicitly.
    """
    shape = tuple(shape)
    if input_axes is not None and output_axes is not None:
        return int(math.prod(shape[a] for a in input_axes)), int(math.prod(shape[a] for a in output_axes))
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return int(shape[0]), int(shape[0])
    if len(shape) == 2:
        return int(shape[0]), int(shape[1])
    receptive = math.prod(shape[:-2])
    return int(shape[-2] * receptive), int(shape[-1] * receptive)


# ----------------------------------------------------------------------------- base classes


class Initializer:
    """Base class: subclasses implement ``__call__(shape, dtype=None)`` and ``get_config()``."""

    def __call__(self, shape, dtype=None) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement `__call__(shape, dtype=None)`.")

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def clone(self):
        return self.__class__.from_config(self.get_config())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class RandomInitializer(Initializer):
    """Base of the random initializers: holds and validates ``seed`` (see the module docstring)."""

    def __init__(self, seed=None):
        self._init_seed = seed
        self._stream = None
        if seed is None:
            self.seed = None
        elif isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
            # NumPy seeds must be non-negative; wrap a negative one (Keras accepts any int).
            self.seed = int(seed) % (1 << 64)
        elif isinstance(seed, dict) and seed.get("class_name") == "SeedGenerator":
            # A Keras SeedGenerator: a reproducible stream, a new draw on every call.
            inner = (seed.get("config") or {}).get("seed")
            self.seed = None if inner is None else int(inner) % (1 << 64)
            self._stream = np.random.default_rng(self.seed)
        else:
            raise ValueError(
                f"{type(self).__name__}: `seed` must be None or an integer. Received: seed={seed!r}"
            )

    def _rng(self) -> np.random.Generator:
        if self._stream is not None:
            return self._stream
        if self.seed is None:
            return backend.rng()  # looked up per call: set_seed replaces the global generator
        return np.random.default_rng(self.seed)

    def _prepare(self, shape, dtype):
        owner = type(self).__name__
        return _standardize_shape(shape, owner), _standardize_dtype(dtype, owner, float_only=True)

    def get_config(self) -> dict:
        return {"seed": self._init_seed}


def _normal(rng, shape, mean, stddev, dt) -> np.ndarray:
    out = rng.standard_normal(shape, dtype=_work_dtype(dt))
    return (out * stddev + mean).astype(dt, copy=False)


def _truncated_normal(rng, shape, mean, stddev, dt) -> np.ndarray:
    """Normal samples with every draw outside (-2, 2) standard deviations redrawn until none is."""
    z = rng.standard_normal(shape, dtype=_work_dtype(dt))
    bad = np.abs(z) >= 2.0
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()), dtype=z.dtype)
        bad = np.abs(z) >= 2.0
    return (z * stddev + mean).astype(dt, copy=False)


def _uniform(rng, shape, minval, maxval, dt) -> np.ndarray:
    u = rng.random(shape, dtype=_work_dtype(dt))
    return (u * (maxval - minval) + minval).astype(dt, copy=False)


# ----------------------------------------------------------------------------- constant initializers


class Zeros(Initializer):
    """All zeros."""

    def __call__(self, shape, dtype=None) -> np.ndarray:
        shape = _standardize_shape(shape, "Zeros")
        return np.zeros(shape, dtype=_standardize_dtype(dtype, "Zeros", float_only=False))


class Ones(Initializer):
    """All ones."""

    def __call__(self, shape, dtype=None) -> np.ndarray:
        shape = _standardize_shape(shape, "Ones")
        return np.ones(shape, dtype=_standardize_dtype(dtype, "Ones", float_only=False))


class Constant(Initializer):
    """Every entry equal to ``value`` (a scalar, or an array broadcastable to the shape)."""

    def __init__(self, value=0.0):
        if isinstance(value, dict) and value.get("class_name") == "__numpy__":  # Keras's array form
            value = np.asarray(value["config"]["value"], dtype=value["config"].get("dtype"))
        arr = np.asarray(unwrap(value))
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"Constant: `value` must be a number or numeric array. Received: value={value!r}")
        self.value = arr.item() if arr.ndim == 0 else arr

    def __call__(self, shape, dtype=None) -> np.ndarray:
        shape = _standardize_shape(shape, "Constant")
        dt = _standardize_dtype(dtype, "Constant", float_only=False)
        try:
            return np.array(np.broadcast_to(np.asarray(self.value, dtype=dt), shape))
        except ValueError:
            raise ValueError(
                f"Constant: a value of shape {np.shape(self.value)} cannot fill shape {shape}. "
                f"Received: shape={shape}"
            ) from None

    def get_config(self) -> dict:
        if isinstance(self.value, np.ndarray):
            return {"value": {"class_name": "__numpy__",
                              "config": {"value": self.value.tolist(), "dtype": self.value.dtype.name}}}
        return {"value": self.value}


class Identity(Initializer):
    """``gain`` times the identity matrix (2-D shapes only; rectangular shapes get ``eye(n, m)``)."""

    def __init__(self, gain: float = 1.0):
        self.gain = _check_number(gain, "gain", "Identity")

    def __call__(self, shape, dtype=None) -> np.ndarray:
        shape = _standardize_shape(shape, "Identity")
        if len(shape) != 2:
            raise ValueError(
                f"Identity initializer can only build 2-D matrices. Received: shape={shape} "
                f"of rank {len(shape)}"
            )
        dt = _standardize_dtype(dtype, "Identity", float_only=False)
        return (self.gain * np.eye(*shape, dtype=dt)).astype(dt, copy=False)

    def get_config(self) -> dict:
        # Keras 3 drops `gain` from this config; keeping it makes the round trip exact, and Keras
        # accepts it on load.
        return {"gain": self.gain}


# ----------------------------------------------------------------------------- random initializers


class RandomNormal(RandomInitializer):
    """Samples from N(mean, stddev^2)."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed=None):
        self.mean = _check_number(mean, "mean", "RandomNormal")
        self.stddev = _check_number(stddev, "stddev", "RandomNormal", minimum=0)
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None) -> np.ndarray:
        shape, dt = self._prepare(shape, dtype)
        return _normal(self._rng(), shape, self.mean, self.stddev, dt)

    def get_config(self) -> dict:
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class TruncatedNormal(RandomInitializer):
    """N(mean, stddev^2) with samples beyond 2 stddev from the mean redrawn.

    The result's standard deviation is about 0.88 * stddev (the truncation removes the tails).
    """

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed=None):
        self.mean = _check_number(mean, "mean", "TruncatedNormal")
        self.stddev = _check_number(stddev, "stddev", "TruncatedNormal", minimum=0)
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None) -> np.ndarray:
        shape, dt = self._prepare(shape, dtype)
        return _truncated_normal(self._rng(), shape, self.mean, self.stddev, dt)

    def get_config(self) -> dict:
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class RandomUniform(RandomInitializer):
    """Samples from U[minval, maxval)."""

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed=None):
        self.minval = _check_number(minval, "minval", "RandomUniform")
        self.maxval = _check_number(maxval, "maxval", "RandomUniform")
        if self.maxval < self.minval:
            raise ValueError(
                f"RandomUniform: `minval` must not exceed `maxval`. Received: minval={minval}, "
                f"maxval={maxval}"
            )
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None) -> np.ndarray:
        shape, dt = self._prepare(shape, dtype)
        return _uniform(self._rng(), shape, self.minval, self.maxval, dt)

    def get_config(self) -> dict:
        return {**super().get_config(), "minval": self.minval, "maxval": self.maxval}


class VarianceScaling(RandomInitializer):
    """Samples whose variance is ``scale / n``, with n from the weight's fans.

    ``n`` is fan_in, fan_out or (fan_in + fan_out) / 2 for ``mode`` "fan_in" / "fan_out" / "fan_avg"
    (at least 1). "truncated_normal": stddev = sqrt(scale / n) / 0.8796..., truncated at 2 stddev,
    so the truncated samples have variance scale / n; "untruncated_normal": stddev = sqrt(scale / n);
    "uniform": U[-limit, limit] with limit = sqrt(3 * scale / n). "normal" means "truncated_normal".
    """

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal",
                 seed=None, input_axes=None, output_axes=None):
        owner = type(self).__name__
        self.scale = _check_number(scale, "scale", owner, minimum=0, strict=True)
        if mode not in self._MODES:
            raise ValueError(f"{owner}: `mode` must be one of {list(self._MODES)}. Received: mode={mode!r}")
        dist = distribution.lower() if isinstance(distribution, str) else distribution
        dist = "truncated_normal" if dist == "normal" else dist
        if dist not in self._DISTRIBUTIONS:
            raise ValueError(
                f"{owner}: `distribution` must be one of {list(self._DISTRIBUTIONS)} (or 'normal'). "
                f"Received: distribution={distribution!r}"
            )
        for name, axes in (("input_axes", input_axes), ("output_axes", output_axes)):
            if axes is not None and not (
                isinstance(axes, (list, tuple)) and all(isinstance(a, numbers.Integral) for a in axes)
            ):
                raise ValueError(
                    f"{owner}: `{name}` must be None or a list of ints. Received: {name}={axes!r}"
                )
        self.mode = mode
        self.distribution = dist
        self.input_axes = input_axes
        self.output_axes = output_axes
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None) -> np.ndarray:
        shape, dt = self._prepare(shape, dtype)
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, n)
        rng = self._rng()
        if self.distribution == "truncated_normal":
            return _truncated_normal(rng, shape, 0.0, math.sqrt(variance) / _TRUNCATED_STDDEV, dt)
        if self.distribution == "untruncated_normal":
            return _normal(rng, shape, 0.0, math.sqrt(variance), dt)
        limit = math.sqrt(3.0 * variance)
        return _uniform(rng, shape, -limit, limit, dt)

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale, "mode": self.mode,
                "distribution": self.distribution, "input_axes": self.input_axes,
                "output_axes": self.output_axes}


class _FixedVarianceScaling(VarianceScaling):
    """A VarianceScaling with fixed scale, mode and distribution: the named schemes below."""

    _SETTINGS: tuple[float, str, str]

    def __init__(self, seed=None, input_axes=None, output_axes=None):
        scale, mode, distribution = self._SETTINGS
        super().__init__(scale=scale, mode=mode, distribution=distribution, seed=seed,
                         input_axes=input_axes, output_axes=output_axes)

    def get_config(self) -> dict:
        return {"seed": self._init_seed, "input_axes": self.input_axes, "output_axes": self.output_axes}


class GlorotUniform(_FixedVarianceScaling):
    """Glorot/Xavier uniform: U[-limit, limit], limit = sqrt(6 / (fan_in + fan_out)). Dense's default."""

    _SETTINGS = (1.0, "fan_avg", "uniform")


class GlorotNormal(_FixedVarianceScaling):
    """Glorot/Xavier normal: truncated normal with stddev sqrt(2 / (fan_in + fan_out)) after truncation."""

    _SETTINGS = (1.0, "fan_avg", "truncated_normal")


class HeNormal(_FixedVarianceScaling):
    """He normal: truncated normal with stddev sqrt(2 / fan_in) after truncation."""

    _SETTINGS = (2.0, "fan_in", "truncated_normal")


class HeUniform(_FixedVarianceScaling):
    """He uniform: U[-limit, limit], limit = sqrt(6 / fan_in)."""

    _SETTINGS = (2.0, "fan_in", "uniform")


class LecunNormal(_FixedVarianceScaling):
    """LeCun normal: truncated normal with stddev sqrt(1 / fan_in) after truncation."""

    _SETTINGS = (1.0, "fan_in", "truncated_normal")


class LecunUniform(_FixedVarianceScaling):
    """LeCun uniform: U[-limit, limit], limit = sqrt(3 / fan_in)."""

    _SETTINGS = (1.0, "fan_in", "uniform")


class Orthogonal(RandomInitializer):
    """``gain`` times a random orthogonal matrix (Saxe et al., 2014).

    The shape is flattened to ``(prod(shape[:-1]), shape[-1])``; the Q factor of a Gaussian matrix,
    sign-corrected by diag(R) so the distribution is uniform (Haar), gives orthonormal columns, or
    orthonormal rows when there are fewer rows than columns. QR runs in float64.
    """

    def __init__(self, gain: float = 1.0, seed=None):
        self.gain = _check_number(gain, "gain", "Orthogonal")
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None) -> np.ndarray:
        shape, dt = self._prepare(shape, dtype)
        if len(shape) < 2:
            raise ValueError(
                f"Orthogonal initializer needs a shape of rank >= 2. Received: shape={shape} "
                f"of rank {len(shape)}"
            )
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = self._rng().standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
        if rows < cols:
            q = q.T
        return np.ascontiguousarray((self.gain * q).reshape(shape), dtype=dt)  # q.T is a strided view

    def get_config(self) -> dict:
        return {**super().get_config(), "gain": self.gain}


# Keras's snake_case aliases.
zeros = Zeros
ones = Ones
constant = Constant
identity = Identity
random_normal = RandomNormal
truncated_normal = TruncatedNormal
random_uniform = RandomUniform
variance_scaling = VarianceScaling
glorot_uniform = GlorotUniform
glorot_normal = GlorotNormal
he_normal = HeNormal
he_uniform = HeUniform
lecun_normal = LecunNormal
lecun_uniform = LecunUniform
orthogonal = Orthogonal

_BUILTINS = (Initializer, Zeros, Ones, Constant, Identity, RandomNormal, TruncatedNormal, RandomUniform,
             VarianceScaling, GlorotUniform, GlorotNormal, HeNormal, HeUniform, LecunNormal, LecunUniform,
             Orthogonal)

ALL_OBJECTS_DICT: dict[str, type] = {
    **{cls.__name__: cls for cls in _BUILTINS},
    "initializer": Initializer, "zeros": Zeros, "ones": Ones, "constant": Constant, "identity": Identity,
    "random_normal": RandomNormal, "truncated_normal": TruncatedNormal, "random_uniform": RandomUniform,
    "variance_scaling": VarianceScaling, "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
    "he_normal": HeNormal, "he_uniform": HeUniform, "lecun_normal": LecunNormal,
    "lecun_uniform": LecunUniform, "orthogonal": Orthogonal,
    # Keras's extra aliases.
    "IdentityInitializer": Identity, "OrthogonalInitializer": Orthogonal, "normal": RandomNormal,
    "uniform": RandomUniform, "one": Ones, "zero": Zeros,
}


def serialize(initializer) -> dict | None:
    """The Keras 3 config dict of ``initializer`` (``{"module", "class_name", "config", ...}``)."""
    return serialize_object(initializer, "keras.initializers", _BUILTINS)


def deserialize(config, custom_objects: dict | None = None) -> Initializer | Callable:
    """An initializer from a Keras 3 / Keras 2 config dict or a name."""
    return deserialize_object(config, "initializer", ALL_OBJECTS_DICT, custom_objects)


def get(identifier) -> Initializer | Callable | None:
    """An initializer from a name ("glorot_uniform" or "GlorotUniform"), a config dict, an instance,
    a class, a callable ``f(shape, dtype=None)``, or an array (returned as-is for its own shape).
    None gives None."""
    if identifier is None:
        return None
    if isinstance(identifier, (str, dict)):
        return deserialize(identifier)
    if isinstance(identifier, (np.ndarray, np.generic, Tensor, Variable)):
        fixed = np.asarray(unwrap(identifier))

        def initialize_fn(shape, dtype=None):
            shape = _standardize_shape(shape, "initializer")
            if shape != fixed.shape:
                raise ValueError(
                    f"An array used as an initializer fills only its own shape {fixed.shape}. "
                    f"Received: shape={shape}"
                )
            return fixed.astype(_standardize_dtype(dtype, "initializer", float_only=False))

        return initialize_fn
    if inspect.isclass(identifier):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(
        f"Could not interpret initializer identifier: expected a name, config dict, Initializer or "
        f"callable. Received: {identifier!r}"
    )


__all__ = [
    "Constant", "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "Identity", "Initializer",
    "LecunNormal", "LecunUniform", "Ones", "Orthogonal", "RandomNormal", "RandomUniform",
    "TruncatedNormal", "VarianceScaling", "Zeros", "compute_fans", "constant", "deserialize", "get",
    "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "identity", "lecun_normal",
    "lecun_uniform", "ones", "orthogonal", "random_normal", "random_uniform", "serialize",
    "truncated_normal", "variance_scaling", "zeros",
]
