"""``Identity``: returns its input unchanged (a placeholder layer)."""

from __future__ import annotations

from lamina.layers.layer import Layer


class Identity(Layer):
    """``Identity()(x)`` is ``x`` itself (any structure of tensors); no weights, built at construction."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self._build_at_init()

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape
