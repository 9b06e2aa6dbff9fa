"""One object ⇄ its Keras 3 config dict, for the families built from configs (initializers,
regularizers, constraints, activations, losses...), and the table of built-in layer classes.

This module sits at the bottom of the ladder with the registry: it imports nothing of lamina but
:mod:`lamina.saving.object_registry`, so every family can use it. Whole-model (de)serialization,
which knows every family, is :mod:`lamina.saving.serialization_lib`.
"""

from __future__ import annotations

import difflib
import inspect
import types
from collections.abc import Callable, Sequence

import numpy as np

from lamina.saving.object_registry import (
    _GLOBAL_CUSTOM_NAMES,
    builtin_objects,
    get_registered_name,
    get_registered_object,
    record_deserialized,
    record_serialized,
    shared_object,
)


def closest_name_hint(name: str, names) -> str:
    """A ' Did you mean ...?' hint for a misspelt ``name`` (case-insensitive), or ''."""
    lowered = {n.lower(): n for n in names}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
    return f" Did you mean '{lowered[match[0]]}'?" if match else ""


def unknown_name_error(kind: str, name: str, objects: dict) -> ValueError:
    names = sorted(objects)
    return ValueError(
        f"Unknown {kind}: '{name}'.{closest_name_hint(name, names)} Valid names: {names}. "
        f"Received: identifier={name!r}"
    )


def serialize_function(fn) -> dict:
    """A plain function as Keras 3 writes it, whatever its family (initializer, loss, activation...).

    Keras serializes the function's ``types.FunctionType`` class: module "builtins", registered name
    "function", and the function's own (registered) name in "config".
    """
    return {"module": "builtins", "class_name": "function", "config": get_registered_name(fn),
            "registered_name": "function"}


def serialize_object(obj, public_module: str, builtins: Sequence[type]):
    """``obj`` in Keras 3's serialized form; None stays None."""
    if obj is None:
        return None
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return serialize_function(obj)
    if inspect.isclass(obj) or not hasattr(obj, "get_config"):
        raise TypeError(
            f"Cannot serialize {obj!r}: expected an instance with a `get_config()` method or a "
            f"function. Received: {type(obj).__name__}"
        )
    cls = type(obj)
    builtin = cls in builtins
    return {
        "module": public_module if builtin else cls.__module__,
        "class_name": cls.__name__,
        "config": obj.get_config(),
        "registered_name": None if builtin else get_registered_name(cls),
    }


def deserialize_object(config, kind: str, objects: dict, custom_objects: dict | None = None):
    """Build an object from a Keras 3 (or legacy Keras 2) config dict or a bare name.

    Names resolve through ``custom_objects``, then the ``register_keras_serializable`` registry,
    then the module's own objects.
    """
    if isinstance(config, str):
        cls = get_registered_object(config, custom_objects, objects)
        if cls is None:
            raise unknown_name_error(kind, config, objects)
        return cls() if inspect.isclass(cls) else cls
    if not isinstance(config, dict) or "class_name" not in config:
        raise TypeError(
            f"Could not deserialize {kind}: expected a name or a dict with a 'class_name' key. "
            f"Received: {config!r}"
        )
    class_name = config["class_name"]
    inner = config.get("config") or {}
    registered = config.get("registered_name")
    if class_name == "function":
        fn_name = inner if isinstance(inner, str) else registered
        # Keras writes "function" (the class's name) as registered_name: only another name is a key.
        fn = get_registered_object(registered, custom_objects) if registered not in (None, "function") else None
        fn = fn or get_registered_object(fn_name, custom_objects)
        if fn is None:
            raise ValueError(
                f"Could not deserialize {kind} function '{fn_name}': pass it in `custom_objects`. "
                f"Received: {config!r}"
            )
        return fn
    cls = get_registered_object(registered, custom_objects) if registered else None
    cls = cls or get_registered_object(class_name, custom_objects, objects)
    if cls is None:
        raise unknown_name_error(kind, class_name, objects)
    if not isinstance(inner, dict):
        raise TypeError(f"{class_name}: the 'config' entry must be a dict. Received: config={inner!r}")
    try:
        return cls.from_config(inner) if hasattr(cls, "from_config") else cls(**inner)
    except TypeError as err:
        raise TypeError(
            f"{class_name} could not be built from its config ({err}). Received: config={inner!r}"
        ) from None


# ------------------------------------------------------------------------------ any config value


def serialize_value(value, instance: Callable | None = None):
    """A config value in Keras 3's JSON-ready form, as ``serialize_keras_object`` writes it.

    Plain values stay; lists, tuples (kept tuples: JSON makes them lists) and dicts are walked; bytes,
    slices, ``...`` and arrays become Keras's ``__bytes__`` / ``__slice__`` / ``__ellipsis__`` /
    ``__numpy__`` entries (NumPy scalars plain numbers). Any other value goes to ``instance`` when it is
    given (the whole-model serializer, which knows every family); else a named function becomes its function
    entry, an object with ``get_config`` its ``{"module", "class_name", "config", "registered_name"}`` entry
    (:func:`serialize_layer` for layers, :func:`serialize_instance` for the rest), and anything else is
    returned as it is.

    A container that needs no change is returned itself (see :func:`_serialize_container`).
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple, dict)):
        return _serialize_container(value, instance)
    marker = _marker_entry(value, instance)
    if marker is not None:
        return marker
    if instance is not None:
        return instance(value)
    if isinstance(value, types.FunctionType):
        if value.__name__ == "<lambda>":
            raise ValueError(
                "Cannot serialize a Python lambda: lamina does not write code into files (loading it back would "
                "mean running code stored in the file, i.e. arbitrary code execution). Define it with `def` and "
                f"register it with @lamina.saving.register_keras_serializable(). Received: {value!r}")
        return serialize_function(value)
    if hasattr(value, "get_config") and not inspect.isclass(value):
        layer_cls = builtin_objects("layers").get("Layer")
        return serialize_layer(value) if layer_cls and isinstance(value, layer_cls) else serialize_instance(value)
    return value


def _serialize_container(value, instance):
    """The list / tuple / dict with its items serialized. One whose items all come back unchanged is
    returned itself, not copied: a config already written for a shared object keeps its identity, so that
    the ``shared_object_id`` added to it later (see
    :func:`~lamina.saving.object_registry.record_serialized`) lands in the result."""
    if isinstance(value, dict):
        out = {k: serialize_value(v, instance) for k, v in value.items()}
        return value if all(out[k] is v for k, v in value.items()) else out
    items = [serialize_value(v, instance) for v in value]
    if all(a is b for a, b in zip(items, value)):
        return value
    return tuple(items) if isinstance(value, tuple) else items


def _marker_entry(value, instance):
    """Keras's special entry for bytes, a slice, ``...`` or a NumPy value; None for anything else."""
    if isinstance(value, bytes):
        return {"class_name": "__bytes__", "config": {"value": value.decode("utf-8")}}
    if isinstance(value, slice):
        return {"class_name": "__slice__", "config": {k: serialize_value(getattr(value, k), instance)
                                                       for k in ("start", "stop", "step")}}
    if value is Ellipsis:
        return {"class_name": "__ellipsis__", "config": {}}
    if isinstance(value, np.ndarray) and value.ndim:
        return {"class_name": "__numpy__", "config": {"value": value.tolist(), "dtype": value.dtype.name}}
    if isinstance(value, (np.ndarray, np.generic)):
        return value.item()
    return None


def serialize_instance(obj) -> dict:
    """An object with ``get_config`` that no family claims: its class's module and name, its config
    (values serialized too) and its registered name (the class name when it was not registered)."""
    cls = type(obj)
    config = obj.get_config()
    if not isinstance(config, dict):
        raise TypeError(f"The get_config() method of {cls.__name__} must return a dict. "
                        f"Received: {type(config).__name__}: {config!r:.200}")
    out = {"module": cls.__module__, "class_name": cls.__name__, "config": serialize_value(config),
           "registered_name": _GLOBAL_CUSTOM_NAMES.get(cls) or cls.__name__}
    record_serialized(obj, out)
    return out


# ----------------------------------------------------------------------------- small utilities


def get_object(identifier, kind: str, class_name: str, deserialize: Callable):
    """``get`` for regularizers and constraints: None, a name or dict (via ``deserialize``), a class
    (instantiated with its defaults), or any callable (returned as-is)."""
    if identifier is None:
        return None
    if isinstance(identifier, (str, dict)):
        return deserialize(identifier)
    if isinstance(identifier, type):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(
        f"Could not interpret {kind} identifier: expected a name, config dict, {class_name} or "
        f"callable. Received: {identifier!r}"
    )


# ------------------------------------------------------------------------------------ layers
_MODEL_CLASSES = ("Functional", "Sequential", "Model")


def _layer_module(cls: type, builtin: bool) -> str:
    """The ``module`` Keras 3 writes for a layer class, so that Keras finds lamina's files' classes."""
    if not builtin:
        return cls.__module__
    if cls.__name__ == "Functional":
        return "keras.src.models.functional"  # where Keras 3 looks for it
    return "keras" if cls.__name__ in ("Sequential", "Model") else "keras.layers"


def serialize_layer(layer) -> dict:
    """Keras 3's layer entry: module, class_name, config, registered_name (+ build_config).

    Models and input layers carry no build_config: their structure is in the config itself.
    """
    cls = type(layer)
    registered = _GLOBAL_CUSTOM_NAMES.get(cls)
    builtin = builtin_objects("layers").get(cls.__name__) is cls
    # The config's values are serialized too (a custom layer's get_config may return a sub-layer or an
    # activation object, as in Keras); a built-in layer's config is already plain and comes back as it is.
    out = {"module": _layer_module(cls, builtin), "class_name": cls.__name__,
           "config": serialize_value(layer.get_config()),
           "registered_name": registered if registered else (None if builtin else cls.__name__)}
    input_layer = builtin_objects("layers").get("InputLayer")
    structural = hasattr(layer, "_stack") or hasattr(layer, "_nodes") or (
        input_layer is not None and isinstance(layer, input_layer))
    build = layer.get_build_config() if layer.built and not structural else None
    if build is not None:
        out["build_config"] = build
    record_serialized(layer, out)
    return out


def _is_model_config(cls, name: str, inner: dict) -> bool:
    model = builtin_objects("layers").get("Model")
    return hasattr(cls, "_nodes") or name in _MODEL_CLASSES or (
        isinstance(cls, type) and model is not None and issubclass(cls, model) and "layers" in inner)


def deserialize_layer(config: dict, custom_objects: dict | None = None):
    """A layer from ``serialize_layer``'s dict (Keras 3 or Keras 2 style: class_name + config)."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError("Not a layer configuration: Expected a dictionary containing a 'config' key and a "
                         f"'class_name' key naming the layer class. Received: config={config!r:.200}")
    shared = shared_object(config)
    if shared is not None:
        return shared
    name = config["class_name"]
    table = builtin_objects("layers")
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
    if _is_model_config(cls, name, inner):
        if name == "Model" or cls.__name__ == "Model":
            cls = table["Functional"]
        layer = cls.from_config(inner, custom_objects=custom_objects)
    else:
        layer = cls.from_config(inner)
    if "build_config" in config and not layer.built:
        layer.build_from_config(config["build_config"])
    record_deserialized(config, layer)
    return layer
