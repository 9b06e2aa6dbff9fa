"""``keras.dtype_policies``: dtype policies, their global default, and get / serialize / deserialize.

Float policies live in :mod:`.dtype_policy`, the path-keyed map in :mod:`.dtype_policy_map`.
A family that sits beside them (``quantized.py``) registers its classes and its name parser when
this package loads.
"""

from __future__ import annotations

import importlib.util

# The module (not its function of the same name) is the package's ``dtype_policy``, as in Keras;
# the global-policy functions are ``keras.config.dtype_policy`` / ``set_dtype_policy``.
from lamina.dtype_policies import dtype_policy
from lamina.dtype_policies.dtype_policy import (
    POLICY_CLASSES,
    DTypePolicy,
    FloatDTypePolicy,
    register_name_parser,
    register_policy_class,
)
from lamina.dtype_policies.dtype_policy_map import DTypePolicyMap
from lamina.dtype_policies.lookup import deserialize, get, serialize

ALL_OBJECTS_DICT = POLICY_CLASSES  # Keras's name for the class table (a live view)

__all__ = [
    "ALL_OBJECTS_DICT", "DTypePolicy", "DTypePolicyMap", "FloatDTypePolicy", "deserialize", "dtype_policy", "get",
    "register_name_parser", "register_policy_class", "serialize",
]

# Quantized policies, when their module is present, register their classes and name parser on import.
if importlib.util.find_spec("lamina.dtype_policies.quantized") is not None:
    from lamina.dtype_policies import quantized  # noqa: F401
