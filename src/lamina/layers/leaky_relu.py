"""``LeakyReLU``: ``x`` for ``x >= 0``, ``negative_slope * x`` otherwise (layer default 0.3)."""

from __future__ import annotations

import warnings

from lamina import activations
from lamina.layers.layer import Layer
from lamina.layers.relu import _check_non_negative


class LeakyReLU(Layer):
    """Leaky rectified linear unit: ``f(x) = x if x > 0 else negative_slope * x``.

    The layer's default slope is 0.3, as in Keras (the ``leaky_relu`` function's is 0.2). The legacy
    argument ``alpha`` is accepted, with a deprecation warning, as Keras does.
    """

    def __init__(self, negative_slope: float = 0.3, **kwargs):
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
            warnings.warn("Argument `alpha` is deprecated. Use `negative_slope` instead.", stacklevel=2)
        super().__init__(**kwargs)
        _check_non_negative("LeakyReLU", "negative_slope", negative_slope)
        self.negative_slope = negative_slope
        self.supports_masking = True
        self._build_at_init()

    def call(self, inputs):
        return activations.leaky_relu(inputs, negative_slope=self.negative_slope)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config["negative_slope"] = self.negative_slope
        return config
