"""``LayerNormalization``: normalise each sample over ``axis`` (the features), then scale and shift."""

from __future__ import annotations

import warnings

import numpy as np

from lamina import constraints, initializers, ops, regularizers
from lamina.autodiff import needs_gradient, record, unwrap
from lamina.layers.layer import Layer


def layer_norm(x, gamma, beta, axes: tuple, epsilon: float, rms_scaling: bool = False):
    """Layer normalisation over ``axes`` as one primitive (``gamma``/``beta`` broadcast over ``x``).

    ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta`` with the biased variance over ``axes``;
    with ``rms_scaling`` (Keras's deprecated variant) ``y = gamma * x / sqrt(var + epsilon)``: the
    input is scaled by its variance but not centred, and there is no ``beta``.

    Backward with ``s = (var + eps)**-0.5``, ``d = g * gamma`` and ``N`` the size of ``axes``:
    ``dx = s / N * (N d - sum(d) - xhat * sum(d * xhat))`` for the centred form and
    ``dx = d * s - s**3 / N * (x - mean) * sum(d * x)`` for ``rms_scaling``;
    ``dgamma = sum(g * xhat)``, ``dbeta = sum(g)`` over the other axes.
    """
    xv = np.asarray(unwrap(x))
    ndim = xv.ndim
    n = int(np.prod([xv.shape[a] for a in axes]))
    mean = np.mean(xv, axis=axes, keepdims=True)
    diff = xv - mean
    var = np.mean(np.square(diff), axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(var + epsilon)
    xhat = (xv if rms_scaling else diff) * inv
    pshape = [xv.shape[i] if i in axes else 1 for i in range(ndim)]
    gv = None if gamma is None else np.reshape(unwrap(gamma), pshape)
    y = xhat * gv if gv is not None else xhat
    if beta is not None:
        y = y + np.reshape(unwrap(beta), pshape)
    other = tuple(i for i in range(ndim) if i not in axes)
    need_x = needs_gradient(x)

    def param_grad(v, p):
        return np.reshape(np.sum(v, axis=other), np.shape(unwrap(p)))

    def vjp(g):
        dx = None
        if need_x:
            d = g * gv if gv is not None else g
            if rms_scaling:
                dx = d * inv - (inv ** 3 / n) * diff * np.sum(d * xv, axis=axes, keepdims=True)
            else:
                dx = (inv / n) * (n * d - np.sum(d, axis=axes, keepdims=True)
                                  - xhat * np.sum(d * xhat, axis=axes, keepdims=True))
        grads = [dx]
        if gamma is not None:
            grads.append(param_grad(g * xhat, gamma))
        if beta is not None:
            grads.append(param_grad(g, beta))
        return tuple(grads)

    return record(y, (x,) + tuple(p for p in (gamma, beta) if p is not None), vjp)


class LayerNormalization(Layer):
    """Layer normalisation (Ba et al., 2016): each sample is normalised over ``axis``.

    ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta``, mean and (biased) variance taken over
    ``axis`` (an int or a list of ints); ``gamma`` and ``beta`` have the shape of those axes.
    ``rms_scaling=True`` is Keras's deprecated variant: ``y = gamma * x / sqrt(var + epsilon)``.
    """

    def __init__(self, axis: int | list[int] = -1, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer="zeros", gamma_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 **kwargs):
        rms_scaling = kwargs.pop("rms_scaling", False)
        if rms_scaling:
            warnings.warn(
                "You passed `rms_scaling=True`, which is deprecated (as in Keras): it scales the input by "
                "its variance, not its root mean square. For RMS normalization use RMSNormalization.",
                stacklevel=2,
            )
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)) and axis and all(
            isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axis
        ):
            self.axis = [int(a) for a in axis]
        elif isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
            self.axis = int(axis)
        else:
            raise TypeError(
                "Expected an int or a list/tuple of ints for the argument 'axis' of LayerNormalization. "
                f"Received: axis={axis!r}"
            )
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.floating)) or epsilon <= 0:
            raise ValueError(
                "The `epsilon` of a LayerNormalization layer must be a number > 0. "
                f"Received: epsilon={epsilon!r}"
            )
        self.epsilon = epsilon
        self.center = center
        self.scale = scale
        self.rms_scaling = bool(rms_scaling)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.supports_masking = True
        self.gamma = self.beta = None

    def _check_axes(self, input_shape) -> None:
        ndim = len(input_shape)
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        for a in axes:
            if not -ndim <= a < ndim:
                raise ValueError(
                    f"LayerNormalization layer '{self.name}': axis {a} is out of bounds for input shape "
                    f"{input_shape}. Received: axis={self.axis}"
                )

    def build(self, input_shape) -> None:
        self._check_axes(input_shape)
        if isinstance(self.axis, list):
            self.axis = sorted(self.axis)
            shape = tuple(input_shape[a] for a in self.axis)
        else:
            shape = (input_shape[self.axis],)
            self.axis = [self.axis]
        if any(d is None for d in shape):
            raise ValueError(
                f"LayerNormalization layer '{self.name}' needs known sizes on axes {self.axis}. "
                f"Received: input_shape={input_shape}"
            )
        if self.scale or self.rms_scaling:
            self.gamma = self.add_weight(name="gamma", shape=shape, initializer=self.gamma_initializer,
                                         regularizer=self.gamma_regularizer, constraint=self.gamma_constraint,
                                         autocast=False)
        if self.center and not self.rms_scaling:
            self.beta = self.add_weight(name="beta", shape=shape, initializer=self.beta_initializer,
                                        regularizer=self.beta_regularizer, constraint=self.beta_constraint,
                                        autocast=False)
        self.built = True

    def call(self, inputs):
        xv = np.asarray(unwrap(inputs))
        if not np.issubdtype(xv.dtype, np.floating):
            inputs = ops.cast(inputs, self.compute_dtype)
        ndim = xv.ndim
        axes = tuple(sorted(a % ndim for a in self.axis))
        return layer_norm(inputs, self.gamma, self.beta, axes, float(self.epsilon), self.rms_scaling)

    def compute_output_shape(self, input_shape):
        self._check_axes(input_shape)
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "rms_scaling": self.rms_scaling,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
        })
        return config
