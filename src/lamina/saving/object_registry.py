"""The registry of user classes and functions that configs may name (custom layers, losses...).

Lookups consult, in order: the ``custom_objects`` passed to the call, the objects of any active
:class:`CustomObjectScope` (``load_model(custom_objects=...)`` opens one so nested configs — an
activation inside a layer config — see them too), the global registry filled by
:func:`register_keras_serializable`, then the caller's table of built-ins.
"""

from __future__ import annotations

import threading

_GLOBAL_CUSTOM_OBJECTS: dict[str, object] = {}
# lamina's own classes by family ("layers" → {"Dense": Dense, "Sequential": Sequential, ...}), filled by
# each family's package as it imports, so that deserialization can find them without importing up.
_BUILTIN_OBJECTS: dict[str, dict[str, object]] = {}
_GLOBAL_CUSTOM_NAMES: dict[object, str] = {}
_SCOPE = threading.local()


def register_keras_serializable(package: str = "Custom", name: str | None = None):
    """Decorator: make a class or function loadable by name as ``"package>name"``."""
    if not isinstance(package, str) or ">" in package:
        raise ValueError(f"`package` must be a string without '>'. Received: package={package!r}")

    def decorator(obj):
        key = f"{package}>{name or obj.__name__}"
        if hasattr(obj, "get_config") is False and isinstance(obj, type):
            raise ValueError(f"Cannot register {obj.__name__}: a class must define get_config().")
        _GLOBAL_CUSTOM_OBJECTS[key] = obj
        _GLOBAL_CUSTOM_NAMES[obj] = key
        return obj

    return decorator


def register_builtins(family: str, objects: dict[str, object]) -> None:
    """Make lamina's own ``objects`` (name → class) known to deserialization under ``family``."""
    _BUILTIN_OBJECTS.setdefault(family, {}).update(objects)


def builtin_objects(family: str) -> dict[str, object]:
    """lamina's own objects of ``family`` by name (a live table: don't edit it)."""
    return _BUILTIN_OBJECTS.get(family, {})


def get_registered_name(obj) -> str:
    """``"package>name"`` for a registered object, else its ``__name__`` (or its class name)."""
    return _GLOBAL_CUSTOM_NAMES.get(obj, getattr(obj, "__name__", type(obj).__name__))


def _scoped() -> dict:
    stack = getattr(_SCOPE, "stack", None)
    merged: dict = {}
    for d in stack or ():
        merged.update(d)
    return merged


def get_registered_object(name: str, custom_objects: dict | None = None, module_objects: dict | None = None):
    """Look ``name`` up in ``custom_objects``, active scopes, the registry, then ``module_objects``."""
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    scoped = _scoped()
    if name in scoped:
        return scoped[name]
    if name in _GLOBAL_CUSTOM_OBJECTS:
        return _GLOBAL_CUSTOM_OBJECTS[name]
    if module_objects and name in module_objects:
        return module_objects[name]
    return None


def registered_by_bare_name(name: str, custom_objects: dict | None = None):
    """The one custom or registered object whose key is ``"package>name"`` for this bare ``name``, or None.

    Keras 3.6 and older wrote a registered function by its bare name; this finds it among objects the
    program registered itself (nothing is imported). Two different objects matching is an error.
    """
    suffix = f">{name}"
    found = {}
    for table in (custom_objects or {}, _scoped(), _GLOBAL_CUSTOM_OBJECTS):
        for key, obj in table.items():
            if isinstance(key, str) and key.endswith(suffix):
                found.setdefault(id(obj), (key, obj))
    if len(found) > 1:
        keys = sorted(key for key, _ in found.values())
        raise ValueError(f"The config names '{name}' without a package, and several registered objects "
                         f"match it: {keys}. Pass the one meant in custom_objects={{'{name}': ...}}. "
                         f"Received: name={name!r}")
    return next(iter(found.values()))[1] if found else None


def get_custom_objects() -> dict:
    """The global registry (``"package>name"`` → object); editable, as in Keras."""
    return _GLOBAL_CUSTOM_OBJECTS


def is_registered(obj) -> bool:
    return obj in _GLOBAL_CUSTOM_NAMES


class CustomObjectScope:
    """``with CustomObjectScope({"MyLayer": MyLayer}): ...`` — make objects visible to every lookup."""

    def __init__(self, custom_objects: dict | None = None):
        if custom_objects is not None and not isinstance(custom_objects, dict):
            raise TypeError(f"custom_objects must be a dict. Received: {type(custom_objects).__name__}")
        self.custom_objects = dict(custom_objects or {})

    def __enter__(self):
        if not hasattr(_SCOPE, "stack"):
            _SCOPE.stack = []
        _SCOPE.stack.append(self.custom_objects)
        return self

    def __exit__(self, *exc):
        _SCOPE.stack.pop()
        return False


custom_object_scope = CustomObjectScope


# ----------------------------------------------------------------------------- shared objects


class ObjectSharingScope:
    """``with ObjectSharingScope(): ...`` — an object met twice while serializing (a layer used by a
    model and by a wrapper, one activation object given to two layers) is written twice with the same
    ``shared_object_id``; deserializing in a scope then builds it once and hands the same object to
    every entry that carries that id."""

    def __enter__(self):
        if not hasattr(_SCOPE, "sharing"):
            _SCOPE.sharing = []
        # id → (object, its config) while serializing; id → object while deserializing. The object is
        # kept so that its id cannot be reused by another object during the scope.
        _SCOPE.sharing.append(({}, {}))
        return self

    def __exit__(self, *exc):
        _SCOPE.sharing.pop()
        return False


def _sharing():
    stack = getattr(_SCOPE, "sharing", None)
    return stack[-1] if stack else None


def record_serialized(obj, config: dict) -> None:
    """Within a sharing scope: note ``obj``'s ``config``; on its second serialization mark both
    configs with the same ``shared_object_id`` (the first in place, so it must be the one written)."""
    scope = _sharing()
    if scope is None:
        return
    seen = scope[0].get(id(obj))
    if seen is None:
        scope[0][id(obj)] = (obj, config)
        return
    config["shared_object_id"] = seen[1]["shared_object_id"] = id(obj)


def shared_object(config):
    """Within a sharing scope: the object already built for ``config``'s ``shared_object_id``, else None."""
    scope, key = _sharing(), _shared_id(config)
    return None if scope is None or key is None else scope[1].get(key)


def record_deserialized(config, obj) -> None:
    """Within a sharing scope: remember ``obj`` as the object of ``config``'s ``shared_object_id``."""
    scope, key = _sharing(), _shared_id(config)
    if scope is not None and key is not None:
        scope[1][key] = obj


def _shared_id(config):
    """A config's ``shared_object_id`` when it is an integer (a file may hold anything there), else None."""
    key = config.get("shared_object_id") if isinstance(config, dict) else None
    return key if isinstance(key, int) and not isinstance(key, bool) else None
