"""Adadelta: step sizes from running averages of squared gradients and squared updates."""

from __future__ import annotations

import numpy as np

from lamina.optimizers.optimizer import Optimizer


class Adadelta(Optimizer):
    """Adadelta (Zeiler, 2012).

    ::

        G = rho * G + (1 - rho) * g**2
        d = -sqrt(D + epsilon) * g / sqrt(G + epsilon)
        D = rho * D + (1 - rho) * d**2
        w += lr * d

    Args:
        learning_rate: float >= 0 or a schedule. Defaults to 0.001.
        rho: decay rate (0.95). epsilon: (1e-7).
        (and the common optimizer arguments, see :class:`Optimizer`)
    """

    _n_scratch = 2
    _decaying_slots = ("accumulated_grad", "accumulated_delta_var")

    def __init__(self, learning_rate=0.001, rho: float = 0.95, epsilon: float = 1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, use_ema=use_ema,
                         ema_momentum=ema_momentum, ema_overwrite_frequency=ema_overwrite_frequency,
                         loss_scale_factor=loss_scale_factor,
                         gradient_accumulation_steps=gradient_accumulation_steps, **kwargs)
        self.rho = rho
        self.epsilon = epsilon

    def build(self, variables) -> None:
        if self.built:
            return
        super().build(variables)
        self._accumulated_grads, self._accumulated_delta_vars = self.add_optimizer_variables(
            variables, ["accumulated_grad", "accumulated_delta_var"])
        self._slots(["accumulated_grad", "accumulated_delta_var"])

    def _coefficients(self, lr, dtype) -> tuple:
        dt = np.dtype(dtype).type
        return dt(lr), dt(self.rho), dt(1 - self.rho), dt(self.epsilon)

    def _update(self, p, g, slots, scratch, c) -> None:
        lr, rho, one_rho, eps = c
        acc_g, acc_d = slots
        s0, s1 = scratch[0], scratch[1]
        acc_g *= rho
        np.multiply(g, g, out=s0)
        s0 *= one_rho
        acc_g += s0
        np.add(acc_d, eps, out=s0)
        np.sqrt(s0, out=s0)
        s0 *= g
        np.add(acc_g, eps, out=s1)
        np.sqrt(s1, out=s1)
        s0 /= s1
        np.negative(s0, out=s0)
        acc_d *= rho
        np.multiply(s0, s0, out=s1)
        s1 *= one_rho
        acc_d += s1
        s0 *= lr
        p += s0

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"rho": self.rho, "epsilon": self.epsilon})
        return config
