"""Learning-rate schedules: the rate as a function of the optimizer's step (Keras names and configs).

A schedule passed as an optimizer's ``learning_rate`` is called with the optimizer's iteration
count before every update. Values are computed in float32 in the same order as Keras, so they
match Keras's to float32 rounding. ``step`` may be a scalar or an array of steps.
"""

from __future__ import annotations

import difflib
import math

import numpy as np

from lamina.autodiff import unwrap

_F32 = np.float32


def _f32_step(step) -> np.ndarray:
    return np.asarray(unwrap(step)).astype(_F32)


def _out(x):
    """A 0-d result as a NumPy scalar, an array result as is."""
    x = np.asarray(x)
    return x[()] if x.ndim == 0 else x


def _cos32(x) -> np.ndarray:
    """float32 cosine rounded once from float64 (closer to Keras-on-torch than NumPy's float32 cos)."""
    return np.cos(np.asarray(x, np.float64)).astype(_F32)


def _pow32(base, exponent) -> np.ndarray:
    """float32 ``base ** exponent`` (scalars or arrays, rounded to float32 first), computed in float64
    and rounded once (Keras computes a float32 power)."""
    base = np.asarray(base, _F32).astype(np.float64)
    return np.power(base, np.asarray(exponent, _F32).astype(np.float64)).astype(_F32)


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or value <= 0:
        raise ValueError(f"Argument `{name}` must be > 0. Received: {name}={value!r}")


def _check_rate(name: str, value):
    """``value`` checked to be a number; a scalar Variable or array (``opt.learning_rate``, as Keras
    accepts) is read as its current float value."""
    raw = unwrap(value)
    if isinstance(raw, np.ndarray) and raw.ndim == 0 and raw.dtype.kind == "f":
        value = float(raw)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"Argument `{name}` must be a number. Received: {name}={value!r}")
    return value


class LearningRateSchedule:
    """Base class: subclasses implement ``__call__(step)`` and ``get_config()``."""

    def __call__(self, step):
        raise NotImplementedError(
            f"Learning rate schedule '{type(self).__name__}' must override `__call__(self, step)`."
        )

    def get_config(self) -> dict:
        raise NotImplementedError(
            f"Learning rate schedule '{type(self).__name__}' must override `get_config()` in order to be "
            "serializable."
        )

    @classmethod
    def from_config(cls, config: dict) -> LearningRateSchedule:
        return cls(**config)


class _StepDecay(LearningRateSchedule):
    """What ExponentialDecay and InverseTimeDecay share: arguments, checks, config, and the
    progress ``p = step / decay_steps`` (floored with ``staircase=True``)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float,
                 staircase: bool = False, name: str | None = None):
        initial_learning_rate = _check_rate("initial_learning_rate", initial_learning_rate)
        _check_rate("decay_rate", decay_rate)
        _check_positive("decay_steps", decay_steps)
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name if name is not None else type(self).__name__

    def _progress(self, step):
        p = _f32_step(step) / _F32(self.decay_steps)
        return np.floor(p) if self.staircase else p

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class ExponentialDecay(_StepDecay):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``; with ``staircase=True`` the
    exponent is floored, so the rate drops in steps every ``decay_steps``."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float,
                 staircase: bool = False, name: str = "ExponentialDecay"):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def __call__(self, step):
        return _out(_F32(self.initial_learning_rate) * _pow32(self.decay_rate, self._progress(step)))

class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` for ``step <= boundaries[0]``, ``values[i]`` for
    ``boundaries[i-1] < step <= boundaries[i]``, ``values[-1]`` after the last boundary."""

    def __init__(self, boundaries, values, name: str = "PiecewiseConstant"):
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                "The length of boundaries should be 1 less than the length of values. Received: "
                f"boundaries={boundaries} of length {len(boundaries)}, and values={values} of length "
                f"{len(values)}."
            )
        self.boundaries = boundaries
        self.values = values
        self.name = name

    def __call__(self, step):
        step = np.asarray(unwrap(step))
        values = np.asarray(self.values)
        if values.dtype == np.float64:
            values = values.astype(_F32)
        # Like Keras, boundaries take the step's dtype (an integer step truncates float boundaries).
        bounds = np.asarray(self.boundaries).astype(step.dtype)
        index = np.searchsorted(bounds, step, side="left")
        return _out(values[index])

    def get_config(self) -> dict:
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """``(lr0 - end) * (1 - step / decay_steps) ** power + end``, the step capped at ``decay_steps``;
    with ``cycle=True`` the horizon grows to the next multiple of ``decay_steps`` instead."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, end_learning_rate: float = 0.0001,
                 power: float = 1.0, cycle: bool = False, name: str = "PolynomialDecay"):
        initial_learning_rate = _check_rate("initial_learning_rate", initial_learning_rate)
        _check_positive("decay_steps", decay_steps)
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.end_learning_rate = end_learning_rate
        self.power = power
        self.cycle = cycle
        self.name = name

    def __call__(self, step):
        step = _f32_step(step)
        horizon = _F32(self.decay_steps)
        if self.cycle:
            mult = np.where(step == 0, _F32(1), np.ceil(step / _F32(self.decay_steps)))
            horizon = horizon * mult
        else:
            step = np.minimum(step, horizon)
        p = step / horizon
        lr0, end = _F32(self.initial_learning_rate), _F32(self.end_learning_rate)
        return _out((lr0 - end) * _pow32(_F32(1) - p, self.power) + end)

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "end_learning_rate": self.end_learning_rate, "power": self.power, "cycle": self.cycle,
                "name": self.name}


class InverseTimeDecay(_StepDecay):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)`` (the ratio floored with
    ``staircase=True``)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float,
                 staircase: bool = False, name: str = "InverseTimeDecay"):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def __call__(self, step):
        return _out(_F32(self.initial_learning_rate) / (_F32(1) + _F32(self.decay_rate) * self._progress(step)))

class CosineDecay(LearningRateSchedule):
    """Cosine decay (SGDR without restarts), optionally after a linear warmup.

    Without warmup: ``lr0 * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps)) + alpha)`` with
    ``s = min(step, decay_steps)``. With ``warmup_target``: the rate rises linearly from
    ``initial_learning_rate`` to ``warmup_target`` over ``warmup_steps``, then decays from
    ``warmup_target`` over ``decay_steps``.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int, alpha: float = 0.0,
                 name: str = "CosineDecay", warmup_target: float | None = None, warmup_steps: int = 0):
        initial_learning_rate = _check_rate("initial_learning_rate", initial_learning_rate)
        _check_positive("decay_steps", decay_steps)
        if warmup_target is not None:
            _check_rate("warmup_target", warmup_target)
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, (int, float, np.integer)) or \
                warmup_steps < 0:
            raise ValueError(f"Argument `warmup_steps` must be >= 0. Received: warmup_steps={warmup_steps!r}")
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.alpha = alpha
        self.name = name
        self.warmup_steps = warmup_steps
        self.warmup_target = warmup_target

    def _decay(self, step, decay_steps, from_lr):
        fraction = step / decay_steps
        cosine = _F32(0.5) * (_F32(1.0) + _cos32(_F32(math.pi) * fraction))
        decayed = _F32(1 - self.alpha) * cosine + _F32(self.alpha)
        return from_lr * decayed

    def __call__(self, step):
        lr0 = _F32(self.initial_learning_rate)
        decay_steps = _F32(self.decay_steps)
        step = _f32_step(step)
        if self.warmup_target is None:
            return _out(self._decay(np.minimum(step, decay_steps), decay_steps, lr0))
        target = _F32(self.warmup_target)
        warmup_steps = _F32(self.warmup_steps)
        step = np.minimum(step, decay_steps + warmup_steps)
        with np.errstate(divide="ignore", invalid="ignore"):  # the warmup branch is unused when 0 steps
            warm = (target - lr0) * (step / warmup_steps) + lr0
        decay = self._decay(step - warmup_steps, decay_steps, target)
        return _out(np.where(step < warmup_steps, warm, decay))

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR, Loshchilov & Hutter 2017).

    The first period lasts ``first_decay_steps``; each next period is ``t_mul`` times longer and
    starts from ``m_mul`` times the previous peak; within a period the rate falls as in
    :class:`CosineDecay` down to ``alpha * initial_learning_rate``.
    """

    def __init__(self, initial_learning_rate: float, first_decay_steps: int, t_mul: float = 2.0,
                 m_mul: float = 1.0, alpha: float = 0.0, name: str = "SGDRDecay"):
        initial_learning_rate = _check_rate("initial_learning_rate", initial_learning_rate)
        _check_positive("first_decay_steps", first_decay_steps)
        self.initial_learning_rate = initial_learning_rate
        self.first_decay_steps = first_decay_steps
        self._t_mul = t_mul
        self._m_mul = m_mul
        self.alpha = alpha
        self.name = name

    def __call__(self, step):
        fraction = _f32_step(step) / _F32(self.first_decay_steps)
        t_mul, m_mul, alpha = _F32(self._t_mul), _F32(self._m_mul), _F32(self.alpha)
        if t_mul == 1:
            restart = np.floor(fraction)
            fraction = fraction - restart
        else:
            restart = np.floor(np.log(_F32(1.0) - fraction * (_F32(1.0) - t_mul)) / np.log(t_mul))
            period_start = (_F32(1.0) - _pow32(t_mul, restart)) / (_F32(1.0) - t_mul)
            fraction = (fraction - period_start) / _pow32(t_mul, restart)
        m_fac = _pow32(m_mul, restart)
        cosine = _F32(0.5) * m_fac * (_F32(1.0) + _cos32(_F32(math.pi) * fraction))
        decayed = (_F32(1) - alpha) * cosine + alpha
        return _out(_F32(self.initial_learning_rate) * decayed)

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate,
                "first_decay_steps": self.first_decay_steps, "t_mul": self._t_mul, "m_mul": self._m_mul,
                "alpha": self.alpha, "name": self.name}


_SCHEDULES = {cls.__name__: cls for cls in (ExponentialDecay, PiecewiseConstantDecay, PolynomialDecay,
                                            InverseTimeDecay, CosineDecay, CosineDecayRestarts)}


def serialize(learning_rate_schedule: LearningRateSchedule) -> dict:
    """The schedule as a Keras-format dict: ``{"module", "class_name", "config", "registered_name"}``."""
    if not isinstance(learning_rate_schedule, LearningRateSchedule):
        raise ValueError("`serialize` expects a LearningRateSchedule. "
                         f"Received: {learning_rate_schedule!r}")
    cls = type(learning_rate_schedule)
    builtin = _SCHEDULES.get(cls.__name__) is cls
    return {
        "module": "keras.optimizers.schedules" if builtin else cls.__module__,
        "class_name": cls.__name__,
        "config": learning_rate_schedule.get_config(),
        "registered_name": None if builtin else cls.__name__,
    }


def deserialize(config: dict, custom_objects: dict | None = None) -> LearningRateSchedule:
    """A schedule from :func:`serialize`'s dict (``custom_objects`` maps names to custom classes)."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError("`deserialize` expects a dict with 'class_name' and 'config'. "
                         f"Received: {config!r}")
    name = config["class_name"]
    custom = dict(custom_objects or {})
    cls = custom.get(name) or custom.get(config.get("registered_name") or "") or _SCHEDULES.get(name)
    if cls is None:
        close = difflib.get_close_matches(name, list(_SCHEDULES), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"Unknown learning rate schedule: '{name}'. Valid names: {sorted(_SCHEDULES)}."
                         f"{hint} Received: class_name={name!r}")
    return cls.from_config(dict(config.get("config", {})))
