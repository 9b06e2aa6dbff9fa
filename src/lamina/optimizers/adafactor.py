"""Adafactor: Adam-like steps scaled to the weights' size, with second moments factored by row and column."""

from __future__ import annotations

import numpy as np

from lamina.autodiff import unwrap
from lamina.optimizers.optimizer import Optimizer, _overwrites, _pow


def _rms(x: np.ndarray) -> np.floating:
    """Root mean square of all elements."""
    return np.sqrt(np.mean(np.square(x)))


class Adafactor(Optimizer):
    """Adafactor (Shazeer & Stern, 2018), as Keras implements it.

    Per step ``t`` (from 1), for a weight ``w`` with gradient ``g``::

        rho = min(lr, 1 / sqrt(t))             alpha = max(epsilon_2, rms(w)) * rho
        s = g**2 + epsilon_1                    b = 1 - t**beta_2_decay
        v = b * v + (1 - b) * s                 (a weight of rank < 2)
        r = b * r + (1 - b) * mean(s, -1)       c = b * c + (1 - b) * mean(s, -2)
        v = (r / mean(r, -1))[..., None] * c[..., None, :]     (rank >= 2: the last two axes factored)
        u = g / sqrt(v);  w -= alpha * u / max(1, rms(u) / clip_threshold)

    The row and column statistics ``r`` and ``c`` are slot variables; a weight of rank < 2 gets two
    scalar placeholders instead, so the variable list (and a saved state) matches Keras's.

    Args:
        learning_rate: float >= 0 or a schedule. Defaults to 0.001.
        beta_2_decay: exponent of the second-moment decay schedule (-0.8).
        epsilon_1: added to the squared gradients (1e-30). epsilon_2: lower bound of the step's
            scale ``rms(w)`` (1e-3).
        clip_threshold: the update's RMS is clipped to this (1.0); independent of ``clipnorm``.
        relative_step: cap a constant learning rate by ``1 / sqrt(t)`` (True). The step size
            ``rho`` is capped that way in any case, so the flag does not change the numbers.
        (and the common optimizer arguments, see :class:`Optimizer`)
    """

    def __init__(self, learning_rate=0.001, beta_2_decay: float = -0.8, epsilon_1: float = 1e-30,
                 epsilon_2: float = 1e-3, clip_threshold: float = 1.0, relative_step: bool = True,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, use_ema=use_ema,
                         ema_momentum=ema_momentum, ema_overwrite_frequency=ema_overwrite_frequency,
                         loss_scale_factor=loss_scale_factor,
                         gradient_accumulation_steps=gradient_accumulation_steps, **kwargs)
        self.beta_2_decay = beta_2_decay
        self.epsilon_1 = epsilon_1
        self.epsilon_2 = epsilon_2
        self.clip_threshold = clip_threshold
        self.relative_step = relative_step

    def build(self, variables) -> None:
        if self.built:
            return
        super().build(variables)
        self._r, self._c, self._v = [], [], []
        for var in variables:
            if len(var.shape) < 2:
                # Unused placeholders, kept (as Keras does, int scalars named like the weight) so that
                # the variable list, and a .keras file's optimizer state, line up with Keras's.
                self._r.append(self._own_variable(0, var.name, "int32"))
                self._c.append(self._own_variable(0, var.name, "int32"))
            elif _overwrites(var):
                self._r.append(None)
                self._c.append(None)
            else:
                shape = tuple(var.shape)
                self._r.append(self.add_variable(shape[:-1], dtype=var.dtype, name=var.name))
                self._c.append(self.add_variable(shape[:-2] + shape[-1:], dtype=var.dtype, name=var.name))
            self._v.append(None if _overwrites(var) else self.add_variable_from_reference(var, name="velocity"))

    def update_step(self, gradient, variable, learning_rate):
        """One Adafactor step for ``variable`` (the formula in the class docstring), in its dtype."""
        dt = variable.dtype.type
        g = np.asarray(unwrap(gradient), dtype=variable.dtype)
        i = self._index[id(variable)]
        t = dt(self._step_count() + 1)
        cap = dt(1) / np.sqrt(t)
        rho = min(dt(learning_rate), cap)  # relative_step's extra cap is the same min, so it is folded in
        w = variable.value
        alpha = max(dt(self.epsilon_2), _rms(w)) * rho
        sq = np.square(g)
        sq += dt(self.epsilon_1)
        beta = dt(1) - _pow(t, self.beta_2_decay, dt)
        one_beta = dt(1) - beta
        v = self._v[i].value
        if w.ndim >= 2:
            r, c = self._r[i].value, self._c[i].value
            r[...] = beta * r + one_beta * np.mean(sq, axis=-1)
            c[...] = beta * c + one_beta * np.mean(sq, axis=-2)
            v[...] = np.expand_dims(r / np.mean(r, axis=-1, keepdims=True), -1) * np.expand_dims(c, -2)
        else:
            v[...] = beta * v + one_beta * sq
        u = g / np.sqrt(v)
        u /= max(dt(1), _rms(u) / dt(self.clip_threshold))
        w -= alpha * u

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"beta_2_decay": self.beta_2_decay, "epsilon_1": self.epsilon_1, "epsilon_2": self.epsilon_2,
                       "clip_threshold": self.clip_threshold, "relative_step": self.relative_step})
        return config
