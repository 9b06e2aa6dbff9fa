"""``PReLU``: a leaky ReLU whose negative slope ``alpha`` is learned, per unit or shared over axes."""

from __future__ import annotations

import numpy as np

from lamina import constraints, initializers, regularizers
from lamina.autodiff import record, unwrap
from lamina.layers.layer import InputSpec, Layer


def prelu(x, alpha):
    """``x if x > 0 else alpha * x`` as one primitive; the gradient at 0 is ``alpha`` (leaky_relu's choice).

    ``d/dx = 1 if x > 0 else alpha``; ``d/dalpha = 0 if x > 0 else x`` (summed over broadcast axes
    by the engine).
    """
    xv, av = unwrap(x), unwrap(alpha)
    pos = xv > 0
    out = np.where(pos, xv, av * xv)
    return record(out, (x, alpha), lambda g: (np.where(pos, g, g * av), np.where(pos, 0, g * xv)))


class PReLU(Layer):
    """Parametric ReLU: ``f(x) = x if x >= 0 else alpha * x``, with ``alpha`` a weight.

    ``alpha`` has the input's shape without the batch axis; ``shared_axes`` (1-based, counting the
    batch axis as 0) are given size 1 so one slope is shared along them, e.g. ``[1, 2]`` for one
    slope per channel of ``(batch, height, width, channels)`` images.
    """

    def __init__(self, alpha_initializer="Zeros", alpha_regularizer=None, alpha_constraint=None,
                 shared_axes: int | list[int] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        self.alpha_constraint = constraints.get(alpha_constraint)
        if shared_axes is None:
            self.shared_axes = None
        else:
            axes = list(shared_axes) if isinstance(shared_axes, (list, tuple)) else [shared_axes]
            if not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) and a >= 1 for a in axes):
                raise ValueError(
                    "`shared_axes` of a PReLU layer must be an int or a list of ints >= 1 (axis 0 is the "
                    f"batch axis, which is always shared). Received: shared_axes={shared_axes!r}"
                )
            self.shared_axes = [int(a) for a in axes]

    def build(self, input_shape) -> None:
        ndim = len(input_shape)
        shared = set(self.shared_axes or ())
        bad = [a for a in shared if a >= ndim]
        if bad:
            raise ValueError(
                f"PReLU layer '{self.name}': `shared_axes` {self.shared_axes} refer to axes beyond the "
                f"input's rank {ndim}. Received: input_shape={input_shape}"
            )
        param_shape = []
        for i in range(1, ndim):
            if i in shared:
                param_shape.append(1)
            elif input_shape[i] is None:
                raise ValueError(
                    f"PReLU layer '{self.name}' needs a known size for every axis not in `shared_axes`; "
                    f"axis {i} is unknown. Received: input_shape={input_shape}"
                )
            else:
                param_shape.append(int(input_shape[i]))
        self.alpha = self.add_weight(shape=param_shape, name="alpha", initializer=self.alpha_initializer,
                                     regularizer=self.alpha_regularizer, constraint=self.alpha_constraint)
        axes = {i: input_shape[i] for i in range(1, ndim) if i not in shared}
        self.input_spec = InputSpec(ndim=ndim, axes=axes)
        self.built = True

    def call(self, inputs):
        return prelu(inputs, self.alpha)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "alpha_initializer": initializers.serialize(self.alpha_initializer),
            "alpha_regularizer": regularizers.serialize(self.alpha_regularizer),
            "alpha_constraint": constraints.serialize(self.alpha_constraint),
            "shared_axes": self.shared_axes,
        })
        return config
