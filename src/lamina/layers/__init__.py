"""Layers with Keras's names; ``serialize``/``deserialize`` turn them into config dicts and back."""

from __future__ import annotations

import difflib

from lamina.layers.activation import Activation
from lamina.layers.add import Add, add
from lamina.layers.average import Average, average
from lamina.layers.batch_normalization import BatchNormalization
from lamina.layers.concatenate import Concatenate, concatenate
from lamina.layers.dense import Dense
from lamina.layers.dropout import Dropout
from lamina.layers.elu import ELU
from lamina.layers.flatten import Flatten
from lamina.layers.input_layer import Input, InputLayer
from lamina.layers.keras_tensor import KerasTensor
from lamina.layers.layer import InputSpec, Layer
from lamina.layers.layer_normalization import LayerNormalization
from lamina.layers.leaky_relu import LeakyReLU
from lamina.layers.multiply import Multiply, multiply
from lamina.layers.prelu import PReLU
from lamina.layers.relu import ReLU
from lamina.layers.reshape import Reshape
from lamina.layers.softmax import Softmax
from lamina.layers.subtract import Subtract, subtract

__all__ = [
    "ELU", "Activation", "Add", "Average", "BatchNormalization", "Concatenate", "Dense", "Dropout", "Flatten",
    "Input", "InputLayer", "InputSpec", "KerasTensor", "Layer", "LayerNormalization", "LeakyReLU", "Multiply",
    "PReLU", "ReLU", "Reshape", "Softmax", "Subtract", "add", "average", "concatenate", "deserialize",
    "multiply", "serialize", "subtract",
]


def _builtin_classes() -> dict[str, type]:
    from lamina import models

    table = {name: obj for name, obj in globals().items() if isinstance(obj, type) and issubclass(obj, Layer)}
    table.update({"Sequential": models.Sequential, "Functional": models.Functional, "Model": models.Model})
    return table


def serialize(layer: Layer) -> dict:
    """Keras 3's layer entry: module, class_name, config, registered_name (+ build_config)."""
    from lamina.saving.object_registry import _GLOBAL_CUSTOM_NAMES

    cls = type(layer)
    registered = _GLOBAL_CUSTOM_NAMES.get(cls)
    builtin = _builtin_classes().get(cls.__name__) is cls
    if cls.__name__ == "Functional" and builtin:
        module = "keras.src.models.functional"  # where Keras 3 looks for it
    elif cls.__name__ in ("Sequential", "Model") and builtin:
        module = "keras"
    else:
        module = "keras.layers" if builtin else cls.__module__
    out = {"module": module, "class_name": cls.__name__, "config": layer.get_config(),
           "registered_name": registered if registered else (None if builtin else cls.__name__)}
    build = layer.get_build_config() if layer.built and not hasattr(layer, "_stack") and not hasattr(
        layer, "_nodes") and not isinstance(layer, InputLayer) else None
    if build is not None:
        out["build_config"] = build
    return out


def deserialize(config: dict, custom_objects: dict | None = None) -> Layer:
    """A layer from ``serialize``'s dict (Keras 3 or Keras 2 style: class_name + config)."""
    from lamina.saving.object_registry import get_registered_object

    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"A layer config must be a dict with 'class_name' and 'config'. Received: {config!r:.200}")
    name = config["class_name"]
    table = _builtin_classes()
    cls = get_registered_object(config.get("registered_name") or name, custom_objects, table)
    if cls is None:
        cls = get_registered_object(name, custom_objects, table)
    if cls is None:
        close = difflib.get_close_matches(name, list(table), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(
            f"Unknown layer: '{name}'. Register custom layers with "
            "@lamina.saving.register_keras_serializable() or pass them in custom_objects." + hint
            + f" Received: class_name={name!r}"
        )
    inner = config.get("config", {})
    if hasattr(cls, "_nodes") or name in ("Functional", "Sequential", "Model") or (
            isinstance(cls, type) and issubclass(cls, _builtin_classes()["Model"]) and "layers" in inner):
        if name == "Model" or (cls.__name__ == "Model"):
            cls = table["Functional"]
        layer = cls.from_config(inner, custom_objects=custom_objects)
    else:
        layer = cls.from_config(inner)
    if "build_config" in config and not layer.built:
        layer.build_from_config(config["build_config"])
    return layer
