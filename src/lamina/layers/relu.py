"""``ReLU``: the rectified linear unit as a layer, with Keras's optional cap, slope and threshold."""

from __future__ import annotations

from lamina import activations
from lamina.layers.layer import Layer


def _check_non_negative(layer: str, name: str, value, allow_none: bool = False) -> None:
    """Keras's wording (its tests match it), then what lamina accepts."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        head = (f"The {name} value of a Leaky ReLU layer cannot be None or negative value" if layer == "LeakyReLU"
                else f"{name} of a {layer} layer cannot be {'' if allow_none else 'None or '}a negative value")
        raise ValueError(
            f"{head}. Expected a number >= 0{' or None' if allow_none else ''} for the `{name}` of a {layer} layer. "
            f"Received: {name}={value!r}"
        )


class ReLU(Layer):
    """Rectified linear unit.

    ``f(x) = max_value`` for ``x >= max_value``; ``x`` for ``threshold <= x < max_value``;
    ``negative_slope * (x - threshold)`` otherwise. The defaults give ``max(x, 0)``.
    """

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0,
                 threshold: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        _check_non_negative("ReLU", "max_value", max_value, allow_none=True)
        _check_non_negative("ReLU", "negative_slope", negative_slope)
        _check_non_negative("ReLU", "threshold", threshold)
        self.max_value = max_value
        self.negative_slope = negative_slope
        self.threshold = threshold
        self.supports_masking = True
        self._build_at_init()

    def call(self, inputs):
        return activations.relu(inputs, negative_slope=self.negative_slope, max_value=self.max_value,
                                threshold=self.threshold)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"max_value": self.max_value, "negative_slope": self.negative_slope,
                       "threshold": self.threshold})
        return config
