"""Adagrad: per-weight learning rates from the sum of squared gradients."""

from __future__ import annotations

import numpy as np

from lamina.optimizers.optimizer import Optimizer


class Adagrad(Optimizer):
    """Adagrad (Duchi et al., 2011).

    ``acc += g**2``; ``w -= lr * g / sqrt(acc + epsilon)``, with ``acc`` starting at
    ``initial_accumulator_value``.

    Args:
        learning_rate: float >= 0 or a schedule. Defaults to 0.001.
        initial_accumulator_value: starting value of the accumulators (0.1). epsilon: (1e-7).
        (and the common optimizer arguments, see :class:`Optimizer`)
    """

    _n_scratch = 2

    def __init__(self, learning_rate=0.001, initial_accumulator_value: float = 0.1, epsilon: float = 1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, use_ema=use_ema,
                         ema_momentum=ema_momentum, ema_overwrite_frequency=ema_overwrite_frequency,
                         loss_scale_factor=loss_scale_factor,
                         gradient_accumulation_steps=gradient_accumulation_steps, **kwargs)
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def build(self, variables) -> None:
        if self.built:
            return
        super().build(variables)
        self._accumulators = self.add_optimizer_variables(variables, "accumulator",
                                                          initializer=float(self.initial_accumulator_value))
        self._slots(["accumulator"])

    def _coefficients(self, lr, dtype) -> tuple:
        dt = np.dtype(dtype).type
        return dt(lr), dt(self.epsilon)

    def _update(self, p, g, slots, scratch, c) -> None:
        lr, eps = c
        (acc,) = slots
        s0, s1 = scratch[0], scratch[1]
        np.multiply(g, g, out=s0)
        acc += s0
        np.add(acc, eps, out=s0)
        np.sqrt(s0, out=s0)
        np.multiply(g, lr, out=s1)
        s1 /= s0
        p -= s1

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"initial_accumulator_value": self.initial_accumulator_value, "epsilon": self.epsilon})
        return config
