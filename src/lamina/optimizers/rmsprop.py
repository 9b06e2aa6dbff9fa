"""RMSprop: divide the gradient by a running RMS of recent gradients."""

from __future__ import annotations

import numpy as np

from lamina.optimizers.optimizer import Optimizer


class RMSprop(Optimizer):
    """RMSprop (Hinton, lecture 6e).

    ``v = rho * v + (1 - rho) * g**2``; the step is ``lr * g / sqrt(v + epsilon)``. With
    ``centered=True`` a running mean ``a`` of the gradient is kept and ``v - a**2`` (an estimate of the
    variance) replaces ``v``. With ``momentum > 0``: ``b = momentum * b + step``, ``w -= b``; otherwise
    ``w -= step``.

    Args:
        learning_rate: float >= 0 or a schedule. Defaults to 0.001.
        rho: decay of the squared-gradient average (0.9). momentum: (0.0). epsilon: (1e-7).
        centered: normalise by the estimated variance instead of the second moment (False).
        (and the common optimizer arguments, see :class:`Optimizer`)
    """

    _n_scratch = 2
    _decaying_slots = ("velocity", "momentum", "average_gradient")

    def __init__(self, learning_rate=0.001, rho: float = 0.9, momentum: float = 0.0, epsilon: float = 1e-7,
                 centered: bool = False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, use_ema=use_ema,
                         ema_momentum=ema_momentum, ema_overwrite_frequency=ema_overwrite_frequency,
                         loss_scale_factor=loss_scale_factor,
                         gradient_accumulation_steps=gradient_accumulation_steps, **kwargs)
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = centered

    def build(self, variables) -> None:
        if self.built:
            return
        super().build(variables)
        self._velocities = self.add_optimizer_variables(variables, "velocity")
        names = ["velocity"]
        self._momentums = []
        if self.momentum > 0:
            self._momentums = self.add_optimizer_variables(variables, "momentum")
            names.append("momentum")
        self._average_gradients = []
        if self.centered:
            self._average_gradients = self.add_optimizer_variables(variables, "average_gradient")
            names.append("average_gradient")
        self._slots(names)

    def _coefficients(self, lr, dtype) -> tuple:
        dt = np.dtype(dtype).type
        return dt(lr), dt(self.rho), dt(1 - self.rho), dt(self.epsilon), dt(self.momentum)

    def _update(self, p, g, slots, scratch, c) -> None:
        lr, rho, one_rho, eps, mu = c
        v = slots[0]
        s0, s1 = scratch[0], scratch[1]
        v *= rho
        np.multiply(g, g, out=s0)
        s0 *= one_rho
        v += s0
        np.add(v, eps, out=s0)
        if self.centered:
            a = slots[-1]
            a *= rho
            np.multiply(g, one_rho, out=s1)
            a += s1
            np.multiply(a, a, out=s1)
            s0 -= s1
        np.sqrt(s0, out=s0)
        np.multiply(g, lr, out=s1)
        s1 /= s0
        if self.momentum > 0:
            b = slots[1]
            b *= mu
            b += s1
            p -= b
        else:
            p -= s1

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                       "centered": self.centered})
        return config
