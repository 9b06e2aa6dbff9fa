"""Saving and loading: Keras 3's ``.keras`` format, weights files, legacy ``.h5``, the object registry.

See :mod:`lamina.saving.saving_lib` for the format and the safety rules applied to files read.
The registry is imported eagerly (layers, losses... use it while lamina itself imports); the file
functions and ``FileFormatError`` load on first use, which keeps ``import lamina`` free of import
cycles and of h5py.
"""

import importlib

from lamina.saving.object_registry import (
    CustomObjectScope,
    custom_object_scope,
    get_custom_objects,
    get_registered_name,
    get_registered_object,
    register_keras_serializable,
)

_LAZY = {
    "FileFormatError": "errors",
    "load_model": "saving_api", "load_weights": "saving_api", "model_from_json": "saving_api",
    "save_model": "saving_api", "save_weights": "saving_api",
    "serialize_keras_object": "serialization_lib", "deserialize_keras_object": "serialization_lib",
}

__all__ = [
    "CustomObjectScope", "FileFormatError", "custom_object_scope", "deserialize_keras_object",
    "get_custom_objects", "get_registered_name", "get_registered_object", "load_model", "load_weights",
    "model_from_json", "register_keras_serializable", "save_model", "save_weights", "serialize_keras_object",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lamina.saving' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lamina.saving.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
