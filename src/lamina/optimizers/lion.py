"""Lion: sign of an interpolated momentum."""

from __future__ import annotations

import numpy as np

from lamina.optimizers.optimizer import Optimizer


class Lion(Optimizer):
    """Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms").

    ::

        w -= lr * sign(b1 * m + (1 - b1) * g)
        m = b2 * m + (1 - b2) * g

    Its momentum is not flushed toward zero: the sign of a tiny momentum still moves the weight.

    Args:
        learning_rate: float >= 0 or a schedule. Defaults to 0.001.
        beta_1: in (0, 1] (0.9). beta_2: (0.99).
        (and the common optimizer arguments, see :class:`Optimizer`)
    """

    _n_scratch = 2

    def __init__(self, learning_rate=0.001, beta_1: float = 0.9, beta_2: float = 0.99,
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
        if beta_1 <= 0 or beta_1 > 1:
            raise ValueError("Argument `beta_1` must be in the [0, 1] range. Otherwise, the optimizer "
                             f"degenerates to SignSGD. Received: beta_1={beta_1}.")

    def build(self, variables) -> None:
        if self.built:
            return
        super().build(variables)
        self._momentums = self.add_optimizer_variables(variables, "momentum")
        self._slots(["momentum"])

    def _coefficients(self, lr, dtype) -> tuple:
        dt = np.dtype(dtype).type
        return dt(lr), dt(self.beta_1), dt(1 - self.beta_1), dt(self.beta_2), dt(1 - self.beta_2)

    def _update(self, p, g, slots, scratch, c) -> None:
        lr, b1, one_b1, b2, one_b2 = c
        (m,) = slots
        s0, s1 = scratch[0], scratch[1]
        np.multiply(m, b1, out=s0)
        np.multiply(g, one_b1, out=s1)
        s0 += s1
        np.sign(s0, out=s1)  # not in place: NumPy's in-place sign is several times slower
        s1 *= lr
        p -= s1
        m *= b2
        np.multiply(g, one_b2, out=s0)
        m += s0

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2})
        return config
