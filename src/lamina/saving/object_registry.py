"""The registry of user classes and functions that configs may name (custom layers, losses...)."""

from __future__ import annotations

_GLOBAL_CUSTOM_OBJECTS: dict[str, object] = {}
_GLOBAL_CUSTOM_NAMES: dict[object, str] = {}


def register_keras_serializable(package: str = "Custom", name: str | None = None):
    """Decorator: make a class or function loadable by name as ``"package>name"``."""
    def decorator(obj):
        key = f"{package}>{name or obj.__name__}"
        if hasattr(obj, "get_config") is False and isinstance(obj, type):
            raise ValueError(f"Cannot register {obj.__name__}: a class must define get_config().")
        _GLOBAL_CUSTOM_OBJECTS[key] = obj
        _GLOBAL_CUSTOM_NAMES[obj] = key
        return obj

    return decorator


def get_registered_name(obj) -> str:
    return _GLOBAL_CUSTOM_NAMES.get(obj, getattr(obj, "__name__", type(obj).__name__))


def get_registered_object(name: str, custom_objects: dict | None = None, module_objects: dict | None = None):
    """Look ``name`` up in ``custom_objects``, then the registry, then ``module_objects``."""
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    if name in _GLOBAL_CUSTOM_OBJECTS:
        return _GLOBAL_CUSTOM_OBJECTS[name]
    if module_objects and name in module_objects:
        return module_objects[name]
    return None


def is_registered(obj) -> bool:
    return obj in _GLOBAL_CUSTOM_NAMES
