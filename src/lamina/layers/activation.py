"""``Activation``: applies an activation function by name or callable."""

from __future__ import annotations

from lamina import activations
from lamina.layers.layer import Layer


class Activation(Layer):
    """``Activation('relu')(x)`` applies ``relu`` elementwise; the output shape equals the input's."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)
        self.supports_masking = True
        self._build_at_init()

    def call(self, inputs):
        return self.activation(inputs)

    def call_logits(self, inputs):
        """The identity: this layer's input is the logits of its output (for crossentropy from logits)."""
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config["activation"] = activations.serialize(self.activation)
        return config
