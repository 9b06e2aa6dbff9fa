"""``get`` / ``serialize`` / ``deserialize``: a dtype policy from any of its spellings, and back to a config."""

from __future__ import annotations

import numpy as np

from lamina.dtype_policies.dtype_policy import (
    POLICY_CLASSES,
    DTypePolicy,
    FloatDTypePolicy,
    dtype_policy,
    policy_from_name,
)
from lamina.saving import object_registry


def serialize(policy: DTypePolicy) -> dict:
    """``{"module", "class_name", "config", "registered_name"}``, as Keras writes a policy."""
    if not isinstance(policy, DTypePolicy):
        raise TypeError(f"dtype_policies.serialize expects a DTypePolicy. Received: {policy!r}")
    cls = type(policy)
    builtin = POLICY_CLASSES.get(cls.__name__) is cls
    return {"module": "keras" if cls in (DTypePolicy, FloatDTypePolicy) else "keras.dtype_policies",
            "class_name": cls.__name__, "config": policy.get_config(),
            "registered_name": None if builtin else object_registry.get_registered_name(cls)}


def deserialize(config: dict, custom_objects: dict | None = None) -> DTypePolicy:
    """The policy a :func:`serialize` dict (or a ``{"class_name", "config"}`` dict) describes."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError("dtype_policies.deserialize expects a dict with 'class_name' and 'config'. "
                         f"Received: config={config!r}")
    name = config.get("registered_name") or config["class_name"]
    cls = object_registry.get_registered_object(name, custom_objects, POLICY_CLASSES)
    if cls is None:
        raise ValueError(f"Unknown dtype policy class '{config['class_name']}': expected one of "
                         f"{sorted(POLICY_CLASSES)} or a registered custom class. Received: config={config!r}")
    inner = dict(config.get("config") or {})
    if getattr(cls, "_is_policy_map", False):  # a DTypePolicyMap: its values are serialized policies
        return cls.from_config(inner, custom_objects=custom_objects)
    return cls.from_config(inner)


def get(identifier) -> DTypePolicy:
    """A policy from None (the global one), a name, a serialized dict, a dtype, or a policy."""
    if identifier is None:
        return dtype_policy()
    if isinstance(identifier, DTypePolicy):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        return policy_from_name(identifier)
    try:
        name = np.dtype(getattr(identifier, "name", identifier)).name
    except TypeError:
        name = None
    if name is None:
        raise ValueError("Cannot interpret `dtype` argument: expected a string or a DTypePolicy. "
                         f"Received: dtype={identifier!r}")
    return DTypePolicy(name)
