"""Stochastic gradient descent, with optional (Nesterov) momentum."""

from __future__ import annotations

import numpy as np

from lamina.optimizers.optimizer import Optimizer


class SGD(Optimizer):
    """Gradient descent with momentum.

    Without momentum: ``w -= lr * g``. With momentum ``mu``, a velocity ``b`` per weight:
    ``b = mu * b - lr * g``, then ``w += b``, or with ``nesterov=True`` ``w += mu * b - lr * g``.

    Args:
        learning_rate: float >= 0 or a schedule. Defaults to 0.01.
        momentum: float in [0, 1]. Defaults to 0 (plain gradient descent, no slot variables).
        nesterov: use Nesterov momentum. Defaults to False.
        (and the common optimizer arguments, see :class:`Optimizer`)
    """

    _n_scratch = 1
    _decaying_slots = ("momentum",)

    def __init__(self, learning_rate=0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False,
                 ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, use_ema=use_ema,
                         ema_momentum=ema_momentum, ema_overwrite_frequency=ema_overwrite_frequency,
                         loss_scale_factor=loss_scale_factor,
                         gradient_accumulation_steps=gradient_accumulation_steps, **kwargs)
        if (isinstance(momentum, bool) or not isinstance(momentum, (int, float, np.integer, np.floating))
                or not 0 <= momentum <= 1):
            raise ValueError(f"`momentum` must be a float between [0, 1]. Received: momentum={momentum!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def build(self, variables) -> None:
        if self.built:
            return
        super().build(variables)
        self.momentums = []
        if self.momentum != 0:
            self.momentums = self.add_optimizer_variables(variables, "momentum")
            self._slots(["momentum"])
        else:
            self._slots([])

    def _coefficients(self, lr, dtype) -> tuple:
        dt = np.dtype(dtype).type
        return dt(lr), dt(self.momentum)

    def _update(self, p, g, slots, scratch, c) -> None:
        lr, mu = c
        step = scratch[0]
        np.multiply(g, lr, out=step)
        if not slots:
            p -= step
            return
        (b,) = slots
        b *= mu
        b -= step
        if self.nesterov:
            p -= step
            np.multiply(b, mu, out=step)
            p += step
        else:
            p += b

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"momentum": self.momentum, "nesterov": self.nesterov})
        return config
