"""Optimizers with Keras 3's update rules, argument names, defaults, configs and variable order.

``lamina.optimizers.get("adam")`` and friends resolve names; ``schedules`` holds the learning-rate
schedules.
"""

from __future__ import annotations

import difflib

from lamina.optimizers import schedules
from lamina.optimizers.adadelta import Adadelta
from lamina.optimizers.adafactor import Adafactor
from lamina.optimizers.adagrad import Adagrad
from lamina.optimizers.adam import Adam
from lamina.optimizers.adamax import Adamax
from lamina.optimizers.adamw import AdamW
from lamina.optimizers.ftrl import Ftrl
from lamina.optimizers.lamb import Lamb
from lamina.optimizers.lion import Lion
from lamina.optimizers.loss_scale_optimizer import LossScaleOptimizer
from lamina.optimizers.nadam import Nadam
from lamina.optimizers.optimizer import Optimizer
from lamina.optimizers.rmsprop import RMSprop
from lamina.optimizers.sgd import SGD

ALL_OBJECTS = (SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta, Adamax, Nadam, Lion, Adafactor, Ftrl,
               Lamb, LossScaleOptimizer)
ALL_OBJECTS_DICT = {cls.__name__.lower(): cls for cls in ALL_OBJECTS}

__all__ = ["SGD", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "Ftrl", "Lamb", "Lion",
           "LossScaleOptimizer", "Nadam", "Optimizer", "RMSprop", "deserialize", "get", "schedules", "serialize"]


def serialize(optimizer: Optimizer) -> dict:
    """The optimizer as a Keras-format dict: ``{"module", "class_name", "config", "registered_name"}``."""
    if not isinstance(optimizer, Optimizer):
        raise ValueError(f"`serialize` expects an Optimizer. Received: {optimizer!r}")
    cls = type(optimizer)
    builtin = ALL_OBJECTS_DICT.get(cls.__name__.lower()) is cls
    return {
        "module": "keras.optimizers" if builtin else cls.__module__,
        "class_name": cls.__name__,
        "config": optimizer.get_config(),
        "registered_name": None if builtin else cls.__name__,
    }


def _lookup(name: str, custom_objects: dict | None):
    custom = dict(custom_objects or {})
    if name in custom:
        return custom[name]
    cls = ALL_OBJECTS_DICT.get(str(name).lower())
    if cls is None:
        valid = sorted(ALL_OBJECTS_DICT)
        close = difflib.get_close_matches(str(name).lower(), valid, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"Unknown optimizer: '{name}'. Valid names are {valid}.{hint} Received: {name!r}")
    return cls


def deserialize(config: dict, custom_objects: dict | None = None) -> Optimizer:
    """An optimizer from a ``{"class_name": ..., "config": {...}}`` dict (as written by Keras or
    :func:`serialize`); built-in class names are case-insensitive."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"`deserialize` expects a dict with 'class_name' and 'config'. Received: {config!r}")
    name = config["class_name"]
    registered = config.get("registered_name")
    if custom_objects and registered in custom_objects:
        name = registered
    cls = _lookup(name, custom_objects)
    return cls.from_config(dict(config.get("config") or {}), custom_objects=custom_objects)


def get(identifier) -> Optimizer | None:
    """An optimizer from a name ("adam"), a config dict, or an Optimizer (returned as is)."""
    if identifier is None:
        return None
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        return _lookup(identifier, None)()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise ValueError(f"Could not interpret optimizer identifier: expected a name, a config dict or an "
                     f"Optimizer. Received: {identifier!r}")


# The wrapper (de)serializes the optimizer it wraps with these (its module cannot import this package).
LossScaleOptimizer._serialize_inner = staticmethod(serialize)
LossScaleOptimizer._deserialize_inner = staticmethod(deserialize)
