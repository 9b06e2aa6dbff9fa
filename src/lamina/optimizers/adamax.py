"""Adamax: Adam with the infinity norm in place of the second moment."""

from __future__ import annotations

import numpy as np

from lamina.optimizers.optimizer import Optimizer, _pow


class Adamax(Optimizer):
    """Adamax (Kingma & Ba, 2014, section 7).

    ::

        m = b1 * m + (1 - b1) * g
        u = max(b2 * u, |g|)
        w -= lr * m / ((1 - b1**t) * (u + epsilon))

    Args:
        learning_rate: float >= 0 or a schedule. Defaults to 0.001.
        beta_1, beta_2: (0.9, 0.999). epsilon: (1e-7).
        (and the common optimizer arguments, see :class:`Optimizer`)
    """

    _n_scratch = 2
    _decaying_slots = ("momentum", "norm")

    def __init__(self, learning_rate=0.001, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, use_ema=use_ema,
                         ema_momentum=ema_momentum, ema_overwrite_frequency=ema_overwrite_frequency,
                         loss_scale_factor=loss_scale_factor,
                         gradient_accumulation_steps=gradient_accumulation_steps, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def build(self, variables) -> None:
        if self.built:
            return
        super().build(variables)
        self._m, self._u = self.add_optimizer_variables(variables, ["momentum", "norm"])
        self._slots(["momentum", "norm"])

    def _coefficients(self, lr, dtype) -> tuple:
        dt = np.dtype(dtype).type
        t = self._step_count() + 1
        return (dt(lr), dt(self.beta_1), dt(1 - self.beta_1), dt(self.beta_2), dt(self.epsilon),
                dt(1) - _pow(self.beta_1, t, dt))

    def _update(self, p, g, slots, scratch, c) -> None:
        lr, b1, one_b1, b2, eps, correction = c
        m, u = slots
        s0, s1 = scratch[0], scratch[1]
        m *= b1
        np.multiply(g, one_b1, out=s0)
        m += s0
        u *= b2
        np.abs(g, out=s0)
        np.maximum(u, s0, out=u)
        np.add(u, eps, out=s0)
        s0 *= correction
        np.multiply(m, lr, out=s1)
        s1 /= s0
        p -= s1

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon})
        return config
