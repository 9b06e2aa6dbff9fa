"""Saving and loading: the object registry (and, with the files issue, the .keras format)."""

from lamina.saving.object_registry import (
    get_registered_name,
    get_registered_object,
    register_keras_serializable,
)

__all__ = ["get_registered_name", "get_registered_object", "register_keras_serializable"]
