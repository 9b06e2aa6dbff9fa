"""``GroupNormalization``: channels split into groups, each sample normalised within each group."""

from __future__ import annotations

import numpy as np

from lamina import constraints, initializers, ops, regularizers
from lamina.autodiff import unwrap
from lamina.layers.layer import InputSpec, Layer


class GroupNormalization(Layer):
    """Group normalisation (Wu & He, 2018). The ``C`` channels of axis ``axis`` form ``groups`` groups of
    ``C / groups`` consecutive channels; for each sample and group, mean and (biased) variance are taken
    over the group's channels and every other non-batch axis, and

    ``y = (x - mean) / sqrt(var + epsilon) * gamma + beta`` (``gamma``, ``beta`` per channel).

    ``groups=1`` is layer normalisation over all non-batch axes, ``groups=-1`` (one channel per group)
    instance normalisation. The statistics are computed in at least float32 and the layer does not
    cast its inputs (Keras's ``autocast=False``); the output has the compute dtype.
    """

    def __init__(self, groups=32, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, **kwargs):
        if isinstance(groups, bool) or not isinstance(groups, int) or (groups <= 0 and groups != -1):
            raise ValueError("Received an invalid value for argument `groups`, expected a positive integer (or "
                             f"`-1` for instance normalization). Received: groups={groups}")
        super().__init__(**kwargs)
        self.supports_masking = True
        self.autocast = False
        self.groups = groups
        self.axis = axis
        self.epsilon = epsilon
        self.center = center
        self.scale = scale
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.gamma = self.beta = None

    def build(self, input_shape) -> None:
        self._check_axis(input_shape)
        dim = input_shape[self.axis]
        if dim is None:
            raise ValueError(f"Axis {self.axis} of input tensor should have a defined dimension but the layer "
                             f"received an input with shape {tuple(input_shape)}.")
        if self.groups == -1:
            self.groups = dim
        if dim < self.groups:
            raise ValueError(f"Number of groups ({self.groups}) cannot be more than the number of channels "
                             f"({dim}).")
        if dim % self.groups != 0:
            raise ValueError(f"Number of groups ({self.groups}) must be a multiple of the number of channels "
                             f"({dim}).")
        self.input_spec = InputSpec(ndim=len(input_shape), axes={self.axis: dim})
        if self.scale:
            self.gamma = self.add_weight(shape=(dim,), name="gamma", initializer=self.gamma_initializer,
                                         regularizer=self.gamma_regularizer, constraint=self.gamma_constraint,
                                         autocast=False)
        if self.center:
            self.beta = self.add_weight(shape=(dim,), name="beta", initializer=self.beta_initializer,
                                        regularizer=self.beta_regularizer, constraint=self.beta_constraint,
                                        autocast=False)
        self.built = True

    def _check_axis(self, input_shape) -> None:
        ndim = len(input_shape)
        for a in (self.axis if isinstance(self.axis, (list, tuple)) else [self.axis]):
            if a >= ndim or a < -ndim:
                raise ValueError(f"Axis {a} is out of bounds for input shape {tuple(input_shape)}. "
                                 f"Received: axis={self.axis}")

    def call(self, inputs):
        xv = np.asarray(unwrap(inputs))
        in_dtype = xv.dtype if np.issubdtype(xv.dtype, np.floating) else np.dtype(self.compute_dtype)
        work = np.result_type(in_dtype, np.float32)  # float16 statistics overflow: at least float32
        if xv.dtype != work:
            inputs = ops.cast(inputs, work)
        shape = xv.shape
        axis = self.axis % len(shape)
        # (..., C, ...) → (..., groups, C / groups, ...): statistics over all but the batch and group axes
        grouped = ops.reshape(inputs, (*shape[:axis], self.groups, shape[axis] // self.groups, *shape[axis + 1:]))
        axes = tuple(i for i in range(1, len(shape) + 1) if i != axis)
        mean, variance = ops.moments(grouped, axes=axes, keepdims=True)
        inv = ops.rsqrt(ops.add(variance, np.asarray(self.epsilon, work)))
        per_channel = [1] * (len(shape) + 1)
        per_channel[axis], per_channel[axis + 1] = self.groups, shape[axis] // self.groups
        if self.gamma is not None:
            inv = ops.multiply(inv, ops.cast(ops.reshape(self.gamma, per_channel), work))
        out = ops.subtract(ops.multiply(grouped, inv), ops.multiply(mean, inv))
        if self.beta is not None:
            out = ops.add(out, ops.cast(ops.reshape(self.beta, per_channel), work))
        out = ops.reshape(out, shape)
        if np.dtype(self.compute_dtype) != work:
            out = ops.cast(out, self.compute_dtype)
        return out

    def compute_output_shape(self, input_shape):
        self._check_axis(input_shape)
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "groups": self.groups,
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
        })
        return config
