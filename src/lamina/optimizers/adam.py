"""Adam: adaptive moment estimation (with the AMSGrad variant)."""

from __future__ import annotations

import numpy as np

from lamina.optimizers import _accel
from lamina.optimizers.optimizer import Optimizer, _pow


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2014), in Keras's "epsilon hat" form.

    Per step ``t`` (from 1)::

        m = b1 * m + (1 - b1) * g          v = b2 * v + (1 - b2) * g**2
        alpha = lr * sqrt(1 - b2**t) / (1 - b1**t)
        w -= alpha * m / (sqrt(v) + epsilon)

    With ``amsgrad=True``, ``v_hat = max(v_hat, v)`` replaces ``v`` in the last line.

    Args:
        learning_rate: float >= 0 or a schedule. Defaults to 0.001.
        beta_1, beta_2: decay rates of the first and second moments (0.9, 0.999).
        epsilon: added to the denominator for stability (1e-7).
        amsgrad: use the AMSGrad variant. Defaults to False.
        (and the common optimizer arguments, see :class:`Optimizer`)
    """

    _n_scratch = 2
    _decaying_slots = ("momentum", "velocity", "velocity_hat")

    def __init__(self, learning_rate=0.001, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 amsgrad: bool = False,
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
        self.amsgrad = amsgrad

    def build(self, variables) -> None:
        if self.built:
            return
        super().build(variables)
        self._momentums, self._velocities = self.add_optimizer_variables(variables, ["momentum", "velocity"])
        if self.amsgrad:
            self._velocity_hats = self.add_optimizer_variables(variables, "velocity_hat")
            self._slots(["momentum", "velocity", "velocity_hat"])
        else:
            self._slots(["momentum", "velocity"])

    def _coefficients(self, lr, dtype) -> tuple:
        dt = np.dtype(dtype).type
        t = self._step_count() + 1
        alpha = dt(lr) * np.sqrt(dt(1) - _pow(self.beta_2, t, dt)) / (dt(1) - _pow(self.beta_1, t, dt))
        return (dt(self.beta_1), dt(1 - self.beta_1), dt(self.beta_2), dt(1 - self.beta_2), dt(alpha),
                dt(self.epsilon))

    def _update(self, p, g, slots, scratch, c) -> None:
        b1, one_b1, b2, one_b2, alpha, eps = c
        m, v = slots[0], slots[1]
        if not self.amsgrad and p.ndim == 1 and p.size >= _accel.MIN_SIZE and p.dtype == np.float32:
            fused = _accel.kernel("adam")
            if fused is not None and g.dtype == np.float32 and g.flags.c_contiguous:
                fused(p, g, m, v, b1, one_b1, b2, one_b2, alpha, eps)
                return
        s0, s1 = scratch[0], scratch[1]
        m *= b1
        np.multiply(g, one_b1, out=s0)
        m += s0
        v *= b2
        np.multiply(g, g, out=s0)
        s0 *= one_b2
        v += s0
        if self.amsgrad:
            np.maximum(slots[2], v, out=slots[2])
            v = slots[2]
        np.sqrt(v, out=s0)
        s0 += eps
        np.multiply(m, alpha, out=s1)
        s1 /= s0
        p -= s1

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                       "amsgrad": self.amsgrad})
        return config
