"""``ELU``: the exponential linear unit as a layer."""

from __future__ import annotations

from lamina import activations
from lamina.layers.layer import Layer


class ELU(Layer):
    """Exponential linear unit: ``f(x) = x if x > 0 else alpha * (exp(x) - 1)``.

    Computed with ``expm1`` on ``min(x, 0)``, so large inputs cannot overflow.
    """

    def __init__(self, alpha: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise ValueError(f"The `alpha` of an ELU layer must be a number. Received: alpha={alpha!r}")
        self.alpha = alpha
        self.supports_masking = True
        self._build_at_init()

    def call(self, inputs):
        return activations.elu(inputs, alpha=self.alpha)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        # Keras 3 leaves `alpha` out of ELU's config (so a round trip loses it); lamina writes it,
        # and Keras reads it back fine since `alpha` is a constructor argument.
        config = super().get_config()
        config["alpha"] = self.alpha
        return config
