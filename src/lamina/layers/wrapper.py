"""``Wrapper``: the base of layers that hold one inner layer and change how it is applied."""

from __future__ import annotations

from lamina.layers.layer import Layer
from lamina.saving.object_config import deserialize_layer, serialize_layer


class Wrapper(Layer):
    """Base class for layers wrapping ``layer`` (Keras's ``TimeDistributed``/``Bidirectional`` style);
    subclasses define ``call``. The inner layer's weights are the wrapper's; its config is saved inside
    the wrapper's under ``"layer"``."""

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise ValueError(
                f"Layer {layer} supplied to Wrapper isn't a supported layer type. Please ensure wrapped layer "
                f"is a valid Keras layer. Received: layer of type {type(layer).__name__}"
            )
        super().__init__(**kwargs)
        self.layer = layer

    def build(self, input_shape=None) -> None:
        if not self.layer.built:
            self.layer._maybe_build(input_shape)
        self.built = True

    def get_config(self) -> dict:
        config = super().get_config()
        config["layer"] = serialize_layer(self.layer)
        return config

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None):
        config = dict(config)
        layer = deserialize_layer(config.pop("layer"), custom_objects)
        return cls(layer, **config)
