"""FTRL-Proximal: "Follow The Regularized Leader", the online-learning optimizer of ad click models."""

from __future__ import annotations

import numpy as np

from lamina.optimizers.optimizer import Optimizer


def _check_sign(name: str, value, *, positive: bool) -> None:
    """Keras's FTRL argument checks: ``positive`` asks for >= 0, otherwise for <= 0."""
    if positive and value < 0.0:
        raise ValueError(f"`{name}` needs to be positive or zero. Received: {name}={value}.")
    if not positive and value > 0.0:
        raise ValueError(f"`{name}` needs to be negative or zero. Received: {name}={value}.")


class Ftrl(Optimizer):
    """FTRL-Proximal (McMahan et al., 2013), with the L2 shrinkage and ``beta`` of Keras's version.

    With ``p = -learning_rate_power`` (0.5 by default: per-weight rates ``lr / sqrt(n)``), per step::

        g_s = g + 2 * l2_shrinkage * w
        n_new = n + g**2
        z += g_s - (n_new**p - n**p) / lr * w
        w = (clip(z, -l1, l1) - z) / (n_new**p / lr + 2 * (l2 + beta / (2 * lr)))
        n = n_new

    so a weight is exactly zero while ``|z| <= l1``. ``n`` (the "accumulator") starts at
    ``initial_accumulator_value``, ``z`` (the "linear" slot) at zero.

    Args:
        learning_rate: float >= 0 or a schedule. Defaults to 0.001.
        learning_rate_power: <= 0; how the per-weight rate decays with the accumulated squares (-0.5).
        initial_accumulator_value: >= 0 (0.1).
        l1_regularization_strength, l2_regularization_strength: >= 0 (0.0).
        l2_shrinkage_regularization_strength: >= 0; an L2 penalty added to the gradient (0.0).
        beta: the ``beta`` of the paper's per-coordinate rates (0.0).
        (and the common optimizer arguments, see :class:`Optimizer`)
    """

    _n_scratch = 3

    def __init__(self, learning_rate=0.001, learning_rate_power: float = -0.5,
                 initial_accumulator_value: float = 0.1, l1_regularization_strength: float = 0.0,
                 l2_regularization_strength: float = 0.0, l2_shrinkage_regularization_strength: float = 0.0,
                 beta: float = 0.0,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, use_ema=use_ema,
                         ema_momentum=ema_momentum, ema_overwrite_frequency=ema_overwrite_frequency,
                         loss_scale_factor=loss_scale_factor,
                         gradient_accumulation_steps=gradient_accumulation_steps, **kwargs)
        _check_sign("initial_accumulator_value", initial_accumulator_value, positive=True)
        _check_sign("learning_rate_power", learning_rate_power, positive=False)
        _check_sign("l1_regularization_strength", l1_regularization_strength, positive=True)
        _check_sign("l2_regularization_strength", l2_regularization_strength, positive=True)
        _check_sign("l2_shrinkage_regularization_strength", l2_shrinkage_regularization_strength, positive=True)
        self.learning_rate_power = learning_rate_power
        self.initial_accumulator_value = initial_accumulator_value
        self.l1_regularization_strength = l1_regularization_strength
        self.l2_regularization_strength = l2_regularization_strength
        self.l2_shrinkage_regularization_strength = l2_shrinkage_regularization_strength
        self.beta = beta

    def build(self, variables) -> None:
        if self.built:
            return
        super().build(variables)
        self._accumulators, self._linears = self.add_optimizer_variables(
            variables, ["accumulator", "linear"], initializer=[float(self.initial_accumulator_value), "zeros"])
        self._slots(["accumulator", "linear"])

    def _coefficients(self, lr, dtype) -> tuple:
        dt = np.dtype(dtype).type
        lr = dt(lr)
        l2 = dt(self.l2_regularization_strength) + dt(self.beta) / (dt(2.0) * lr)
        l1 = dt(self.l1_regularization_strength)
        return (dt(-self.learning_rate_power), lr, dt(2 * self.l2_shrinkage_regularization_strength), -l1, l1,
                dt(2) * l2)

    def _update(self, p, g, slots, scratch, c) -> None:
        power, lr, shrink, lo, hi, two_l2 = c
        acc, linear = slots
        new_acc, new_pow, s = scratch[0], scratch[1], scratch[2]
        np.multiply(g, g, out=new_acc)
        new_acc += acc
        np.power(new_acc, power, out=new_pow)
        # acc is replaced by new_acc below, so it serves as scratch for (n_new**p - n**p) / lr * w.
        np.power(acc, power, out=acc)
        np.subtract(new_pow, acc, out=acc)
        acc /= lr
        acc *= p
        np.multiply(p, shrink, out=s)
        s += g
        s -= acc
        linear += s
        new_pow /= lr  # the quadratic term
        new_pow += two_l2
        np.clip(linear, lo, hi, out=s)
        s -= linear
        np.divide(s, new_pow, out=p)
        np.copyto(acc, new_acc)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "learning_rate_power": self.learning_rate_power,
            "initial_accumulator_value": self.initial_accumulator_value,
            "l1_regularization_strength": self.l1_regularization_strength,
            "l2_regularization_strength": self.l2_regularization_strength,
            "l2_shrinkage_regularization_strength": self.l2_shrinkage_regularization_strength,
            "beta": self.beta,
        })
        return config
