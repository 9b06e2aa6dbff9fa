"""Nadam: Adam with Nesterov momentum."""

from __future__ import annotations

import numpy as np

from lamina.autodiff import Variable
from lamina.optimizers.optimizer import Optimizer, _pow


class Nadam(Optimizer):
    """Nadam (Dozat, 2016), with Keras's momentum schedule ``mu_t = b1 * (1 - 0.5 * 0.96**t)``.

    ::

        m = b1 * m + (1 - b1) * g              v = b2 * v + (1 - b2) * g**2
        P_t = mu_1 * ... * mu_t                 (kept in a variable)
        m_hat = mu_{t+1} * m / (1 - P_t * mu_{t+1}) + (1 - mu_t) * g / (1 - P_t)
        v_hat = v / (1 - b2**t)
        w -= lr * m_hat / (sqrt(v_hat) + epsilon)

    Args:
        learning_rate: float >= 0 or a schedule. Defaults to 0.001.
        beta_1, beta_2: (0.9, 0.999). epsilon: (1e-7).
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
        variables = list(variables)
        dtype = variables[0].dtype if variables else None
        super().build(variables)
        self._momentums, self._velocities = self.add_optimizer_variables(variables, ["momentum", "velocity"])
        self._slots(["momentum", "velocity"])
        # Keras makes this an unnamed variable ("variable", plus a global counter), created in the
        # optimizer's name scope when built from apply(); only its position matters to .keras files.
        self._u_product = Variable(1.0, trainable=False, name="variable", dtype=dtype)
        self._u_product.path = f"{self.name}/variable"
        self._variables.append(self._u_product)

    def _mu(self, t: int, dt):
        """The momentum schedule ``mu_t = b1 * (1 - 0.5 * 0.96**t)`` in dtype ``dt``."""
        return dt(self.beta_1) * (dt(1.0) - dt(0.5) * _pow(0.96, t, dt))

    def _begin_step(self) -> None:
        # Advance the running product once per step, whatever the number of variable dtypes.
        self._u_product_before = self._u_product.numpy()
        dt = self._u_product.dtype.type
        self._u_product.assign(dt(self._u_product_before) * self._mu(self._step_count() + 1, dt))

    def _coefficients(self, lr, dtype) -> tuple:
        dt = np.dtype(dtype).type
        t = self._step_count()
        b1 = dt(self.beta_1)
        u_t = self._mu(t + 1, dt)
        u_t_1 = self._mu(t + 2, dt)
        u_product_t = dt(self._u_product_before) * u_t
        u_product_t_1 = u_product_t * u_t_1
        return (dt(lr), b1, dt(1 - self.beta_1), dt(self.beta_2), dt(1 - self.beta_2), dt(self.epsilon),
                u_t_1, dt(1) - u_product_t_1, dt(1) - u_t, dt(1) - u_product_t,
                dt(1) - _pow(self.beta_2, t + 1, dt))

    def _update(self, p, g, slots, scratch, c) -> None:
        lr, b1, one_b1, b2, one_b2, eps, u_t_1, den_m, one_u_t, den_g, den_v = c
        m, v = slots
        s0, s1 = scratch[0], scratch[1]
        m *= b1
        np.multiply(g, one_b1, out=s0)
        m += s0
        v *= b2
        np.multiply(g, g, out=s0)
        s0 *= one_b2
        v += s0
        np.multiply(m, u_t_1, out=s0)
        s0 /= den_m
        np.multiply(g, one_u_t, out=s1)
        s1 /= den_g
        s0 += s1
        np.divide(v, den_v, out=s1)
        np.sqrt(s1, out=s1)
        s1 += eps
        s0 *= lr
        s0 /= s1
        p -= s0

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon})
        return config
