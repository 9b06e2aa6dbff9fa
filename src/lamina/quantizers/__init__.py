"""``keras.quantizers``: abs-max quantizers, int4 packing, float8 scaling and quantization configs."""

from __future__ import annotations

import inspect

from lamina.naming import to_snake_case
from lamina.quantizers.quantization_config import (
    Float8QuantizationConfig,
    Int4QuantizationConfig,
    Int8QuantizationConfig,
    QuantizationConfig,
    deserialize_quantizer,
    serialize_quantizer,
)
from lamina.quantizers.quantizers import (
    AbsMaxQuantizer,
    Quantizer,
    abs_max_quantize,
    abs_max_quantize_grouped_with_zero_point,
    compute_float8_amax_history,
    compute_float8_scale,
    dequantize_with_sz_map,
    pack_int4,
    quantize_and_dequantize,
    unpack_int4,
)
from lamina.saving import object_registry

ALL_OBJECTS = (Quantizer, AbsMaxQuantizer, QuantizationConfig, Int8QuantizationConfig, Int4QuantizationConfig,
               Float8QuantizationConfig)
ALL_OBJECTS_DICT = {cls.__name__: cls for cls in ALL_OBJECTS}
object_registry.register_builtins("quantizers", dict(ALL_OBJECTS_DICT))
ALL_OBJECTS_DICT.update({to_snake_case(name): cls for name, cls in list(ALL_OBJECTS_DICT.items())})  # get() by name


def serialize(quantizer) -> dict | None:
    """A quantizer or quantization config as ``{"module", "class_name", "config", "registered_name"}``
    (None stays None)."""
    return serialize_quantizer(quantizer)


def deserialize(config: dict, custom_objects: dict | None = None):
    """The quantizer or config a :func:`serialize` dict describes (None stays None)."""
    if config is None:
        return None
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"quantizers.deserialize expects a dict with 'class_name' and 'config'. Received: {config!r}")
    if custom_objects:
        with object_registry.CustomObjectScope(custom_objects):
            return deserialize_quantizer(config)
    return deserialize_quantizer(config)


def get(identifier, **kwargs):
    """A quantizer from None, a config dict, a class name, a class (built with ``kwargs``) or an instance."""
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        return deserialize(identifier)
    obj = ALL_OBJECTS_DICT.get(identifier) if isinstance(identifier, str) else identifier
    if inspect.isclass(obj):
        return obj(**kwargs)
    if callable(obj):
        return obj
    raise ValueError(f"Could not interpret quantizer identifier. Received: identifier={identifier!r}")


__all__ = [
    "ALL_OBJECTS", "ALL_OBJECTS_DICT", "AbsMaxQuantizer", "Float8QuantizationConfig", "Int4QuantizationConfig",
    "Int8QuantizationConfig", "QuantizationConfig", "Quantizer", "abs_max_quantize",
    "abs_max_quantize_grouped_with_zero_point", "compute_float8_amax_history", "compute_float8_scale",
    "deserialize", "dequantize_with_sz_map", "get", "pack_int4", "quantize_and_dequantize", "serialize",
    "unpack_int4",
]
