"""Dynamic loss scaling around another optimizer, for float16 training (Keras's ``LossScaleOptimizer``).

A float16 gradient below ~6e-8 rounds to zero. The training step multiplies the loss by a scale
``s`` (:meth:`LossScaleOptimizer.scale_loss`), so every backward intermediate is ``s`` times larger and
stays representable; :meth:`LossScaleOptimizer.apply` divides the gradients by ``s`` before the wrapped
optimizer uses them. ``s`` adapts:

* a step whose gradients hold an inf or NaN is skipped (weights and the wrapped optimizer untouched),
  ``s`` is halved and the count of good steps restarts at 0;
* after ``dynamic_growth_steps`` consecutive finite steps, ``s`` is doubled and the count restarts.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from lamina.autodiff import unwrap
from lamina.optimizers.optimizer import Optimizer, _overwrites

# The base optimizer's arguments, with their defaults: a config written by older Keras versions lists
# them all; only these defaults are accepted (the wrapped optimizer is where they take effect).
_BASE_DEFAULTS = {
    "weight_decay": None,
    "clipnorm": None,
    "global_clipnorm": None,
    "clipvalue": None,
    "use_ema": False,
    "ema_momentum": 0.99,
    "ema_overwrite_frequency": None,
    "loss_scale_factor": None,
    "gradient_accumulation_steps": None,
}


def _check_base_args(kwargs: dict) -> None:
    """Pop the base optimizer's arguments from ``kwargs``; any but its default is an error."""
    for arg, default in _BASE_DEFAULTS.items():
        if arg not in kwargs:
            continue
        value = kwargs.pop(arg)
        if value is not default and value != default:
            raise ValueError(f"LossScaleOptimizer does not support `{arg}`. Instead, set `{arg}` on the "
                             f"`inner_optimizer`. Received: {arg}={value!r}")


class LossScaleOptimizer(Optimizer):
    """Wraps ``inner_optimizer`` with dynamic loss scaling (see the module docstring).

    Args:
        inner_optimizer: the :class:`~lamina.optimizers.Optimizer` that updates the weights. Its own
            ``loss_scale_factor`` is cleared (the loss would otherwise be scaled twice).
        initial_scale: the first loss scale, a float > 0. Defaults to ``2**15``: a scale too high is
            halved within a few steps, one too low only doubles every ``dynamic_growth_steps``.
        dynamic_growth_steps: int >= 1, finite steps between doublings. Defaults to 2000.
        name: the prefix of the wrapper's variable paths; default ``loss_scale_optimizer``.

    ``variables`` are the wrapper's (``iteration``, ``learning_rate``, ``step_counter``,
    ``dynamic_scale``) followed by the wrapped optimizer's, as in Keras; ``iterations`` and
    ``learning_rate`` are the wrapped optimizer's. ``model.compile`` wraps the optimizer in one
    automatically for a model whose dtype policy is ``mixed_float16`` (``auto_scale_loss=True``).
    """

    # lamina.optimizers.serialize / deserialize, set by that package once it has defined them: this
    # module sits below the package that imports it, so it cannot import them itself.
    _serialize_inner = None
    _deserialize_inner = None

    def __init__(self, inner_optimizer, initial_scale=2.0**15, dynamic_growth_steps=2000, name=None, **kwargs):
        if not kwargs.pop("dynamic", True):
            raise ValueError("LossScaleOptimizer no longer supports `dynamic=False`. Instead, simply set "
                             "`loss_scale_factor` directly on the `inner_optimizer`. Received: dynamic=False")
        _check_base_args(kwargs)
        if kwargs:
            raise ValueError(f"LossScaleOptimizer does not support arguments: `{'`, `'.join(kwargs)}`. "
                             f"Received: {kwargs}")
        if not isinstance(inner_optimizer, Optimizer):
            raise ValueError("LossScaleOptimizer expects a lamina optimizer to wrap. "
                             f"Received: inner_optimizer={inner_optimizer!r}")
        if isinstance(initial_scale, bool) or not isinstance(initial_scale, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(initial_scale)) or initial_scale <= 0:
            raise ValueError(f"Argument `initial_scale` must be a finite number > 0. "
                             f"Received: initial_scale={initial_scale!r}")
        if isinstance(dynamic_growth_steps, bool) or not isinstance(dynamic_growth_steps, (int, np.integer)) \
                or dynamic_growth_steps < 1:
            raise ValueError(f"Argument `dynamic_growth_steps` must be an integer >= 1. "
                             f"Received: dynamic_growth_steps={dynamic_growth_steps!r}")
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = inner_optimizer
        self.initial_scale = initial_scale
        self.dynamic_growth_steps = int(dynamic_growth_steps)
        inner_optimizer.loss_scale_factor = None

    # The savers read `_slot_groups` to lay slots out in Keras's variable order: the slots are the
    # wrapped optimizer's (this wrapper has none of its own; the base constructor's `{}` is dropped).
    @property
    def _slot_groups(self):
        inner = self.__dict__.get("inner_optimizer")
        return inner._slot_groups if inner is not None else {}

    @_slot_groups.setter
    def _slot_groups(self, value) -> None:
        pass

    def build(self, variables) -> None:
        """Create ``step_counter`` and ``dynamic_scale``, then build the wrapped optimizer."""
        if self.built:
            return
        variables = list(variables)
        self.step_counter = self._own_variable(0, "step_counter", "int64")
        self.dynamic_scale = self._own_variable(np.float32(self.initial_scale), "dynamic_scale", "float32")
        self.inner_optimizer.build(variables)
        self._trainable_variables = variables
        self._index = {id(v): i for i, v in enumerate(variables)}
        self.built = True

    @property
    def variables(self) -> list:
        return self._variables + self.inner_optimizer.variables

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        self.inner_optimizer.learning_rate = value

    def _current_learning_rate(self):
        return self.inner_optimizer._current_learning_rate()

    def _use_flat_buffer(self, buffer) -> None:
        self.inner_optimizer._use_flat_buffer(buffer)

    def scale_loss(self, loss):
        """``loss * scale``: the current dynamic scale once built, else ``initial_scale``."""
        scale = self.dynamic_scale._value if self.built else np.float32(self.initial_scale)
        return loss * scale

    @staticmethod
    def check_finite(grads) -> bool:
        """True when no gradient (``None`` ones skipped) holds an inf or NaN."""
        return all(bool(np.isfinite(unwrap(g)).all()) for g in grads if g is not None)

    def apply(self, grads, trainable_variables=None) -> None:
        """Unscale the gradients and let the wrapped optimizer apply them; or, if any is not finite,
        skip the step. Then adjust the scale (see the module docstring)."""
        grads = list(grads)
        if not self.built:
            if trainable_variables is None:
                raise ValueError("When passing `grads` without `variables`, the optimizer must already be "
                                 "built on a list of variables. Call `optimizer.build(trainable_variables)` "
                                 "first.")
            self.build(trainable_variables)
        counter, scale = self.step_counter, self.dynamic_scale
        if not self.check_finite(grads):
            counter._value[...] = 0
            scale._value[...] = scale._value * np.float32(0.5)
            return
        tvs = self._trainable_variables if trainable_variables is None else list(trainable_variables)
        s = scale._value
        # A variable overwritten with its "gradient" receives a value, not a gradient: never unscaled.
        unscaled = [g if g is None or _overwrites(v) else np.divide(unwrap(g), s)
                    for g, v in zip(grads, tvs, strict=False)]
        self.inner_optimizer.apply(unscaled, trainable_variables)
        if int(counter._value) == self.dynamic_growth_steps - 1:
            counter._value[...] = 0
            scale._value[...] = s * np.float32(2.0)
        else:
            counter._value[...] = counter._value + 1

    def apply_gradients(self, grads_and_vars):
        pairs = list(grads_and_vars)
        if pairs:
            grads, variables = zip(*pairs, strict=True)
            self.apply(list(grads), list(variables))
        return self.iterations

    def finalize_variable_values(self, var_list) -> None:
        self.inner_optimizer.finalize_variable_values(var_list)

    def _build_checkpoint(self) -> dict:
        return {"own": super()._build_checkpoint(), "inner": self.inner_optimizer._build_checkpoint()}

    def _undo_build(self, checkpoint: dict) -> None:
        inner = self.inner_optimizer
        super()._undo_build(checkpoint["own"])
        inner._undo_build(checkpoint["inner"])

    def _skip_loading_message(self, saved: int) -> str:
        msg = (f"Skipping variable loading for optimizer '{self.name}', because it has "
               f"{len(self.variables)} variables whereas the saved optimizer has {saved} variables.")
        if not self.built:
            msg += " This is likely because the optimizer has not been called/built yet."
        return msg

    def set_weights(self, weights) -> None:
        """Set every variable in :attr:`variables` order (the wrapper's, then the wrapped optimizer's)."""
        if not self.built:
            super().set_weights(weights)  # raises the base class's "not yet built" error
        weights = list(weights)
        variables = self.variables
        if len(weights) != len(variables):
            raise ValueError(f"Optimizer '{self.name}' has {len(variables)} variables (its own and those of "
                             f"'{self.inner_optimizer.name}'). Received: {len(weights)} weights")
        for var, w in zip(variables, weights, strict=True):
            var.assign(np.asarray(unwrap(w), dtype=var.dtype))

    def save_own_variables(self, store) -> None:
        for i, var in enumerate(self.variables):
            store[str(i)] = var.numpy()

    def load_own_variables(self, store) -> None:
        variables = self.variables
        if len(store.keys()) != len(variables):
            warnings.warn(self._skip_loading_message(len(store.keys())), stacklevel=2)
            return
        for i, var in enumerate(variables):
            var.assign(np.asarray(store[str(i)], dtype=var.dtype))

    def get_config(self) -> dict:
        """Only ``name``, the wrapped optimizer (serialized) and the two scaling arguments, as Keras."""
        return {
            "name": self.name,
            "inner_optimizer": self._serialize_inner(self.inner_optimizer),
            "initial_scale": self.initial_scale,
            "dynamic_growth_steps": self.dynamic_growth_steps,
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> LossScaleOptimizer:
        config = dict(config)
        inner = config.pop("inner_optimizer", None)
        if not isinstance(inner, Optimizer):
            inner = cls._deserialize_inner(inner, custom_objects=custom_objects)
        return cls(inner, **config)

    def __repr__(self) -> str:
        return f"<LossScaleOptimizer name={self.name}, inner_optimizer={self.inner_optimizer!r}>"
