"""Lamb: Adam's direction, rescaled per variable by the trust ratio ``||w|| / ||update||``."""

from __future__ import annotations

import numpy as np

from lamina.optimizers.optimizer import Optimizer, _pow


class Lamb(Optimizer):
    """Lamb (You et al., 2019, arXiv:1904.00962), as Keras computes it.

    Per step ``t`` (from 1), for each variable ``w`` on its own::

        m += (1 - b1) * (g - m)            v += (1 - b2) * (g**2 - v)
        update = (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + epsilon)
        ratio = ||w|| / ||update||   (1 when either norm is 0)
        w -= ratio * lr * update

    The norms are over each whole variable (a layer's kernel, its bias), which is what lets large
    batches keep one learning rate for all layers.

    Args:
        learning_rate: float >= 0 or a schedule. Defaults to 0.001.
        beta_1, beta_2: decay rates of the first and second moments (0.9, 0.999).
        epsilon: added to the denominator for stability (1e-7).
        (and the common optimizer arguments, see :class:`Optimizer`)
    """

    _n_scratch = 2
    _decaying_slots = ("momentum", "velocity")

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
        self._momentums, self._velocities = self.add_optimizer_variables(variables, ["momentum", "velocity"])
        self._slots(["momentum", "velocity"])
        # The trust ratio takes norms per variable: never one update over the flat buffer of all of them.
        self._kernel_flat = None

    def _coefficients(self, lr, dtype) -> tuple:
        dt = np.dtype(dtype).type
        t = self._step_count() + 1
        return (dt(1 - self.beta_1), dt(1 - self.beta_2), dt(1) - _pow(self.beta_1, t, dt),
                dt(1) - _pow(self.beta_2, t, dt), dt(lr), dt(self.epsilon))

    def _update(self, p, g, slots, scratch, c) -> None:
        one_b1, one_b2, bias1, bias2, lr, eps = c
        m, v = slots[0], slots[1]
        s0, s1 = scratch[0], scratch[1]
        np.subtract(g, m, out=s0)
        s0 *= one_b1
        m += s0
        np.multiply(g, g, out=s0)
        s0 -= v
        s0 *= one_b2
        v += s0
        np.divide(v, bias2, out=s0)
        np.sqrt(s0, out=s0)
        s0 += eps
        np.divide(m, bias1, out=s1)
        s1 /= s0  # the Adam direction
        dt = p.dtype.type
        w_norm = np.sqrt(dt(np.vdot(p, p)))
        u_norm = np.sqrt(dt(np.vdot(s1, s1)))
        ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else dt(1)
        s1 *= dt(ratio) * lr
        p -= s1

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon})
        return config
