"""Quantization configs: which quantizers a layer's ``quantize(mode, config=...)`` uses.

``Int8QuantizationConfig`` quantizes weights per output channel and, by default, the inputs per row
at call time (dynamic int8 inputs); ``Int4QuantizationConfig`` is weight-only by default and groups
``block_size`` input rows per scale (None / -1: one scale per output channel).
"""

from __future__ import annotations

from lamina.dtype_policies.dtype_policy_map import DTypePolicyMap
from lamina.dtype_policies.quantized import QUANTIZATION_MODES, check_quantization_mode
from lamina.quantizers.quantizers import AbsMaxQuantizer
from lamina.saving.object_registry import builtin_objects, get_registered_object


def serialize_quantizer(obj):
    """A quantizer (or config) as Keras writes it (None stays None)."""
    if obj is None:
        return None
    cls = type(obj)
    return {"module": "keras.quantizers", "class_name": cls.__name__, "config": obj.get_config(),
            "registered_name": cls.__name__}


def deserialize_quantizer(config):
    """A quantizer from its :func:`serialize_quantizer` dict, looked up among the classes the package registers."""
    if config is None or not isinstance(config, dict):
        return config
    name = config.get("registered_name") or config.get("class_name")
    cls = get_registered_object(name, None, builtin_objects("quantizers"))
    if cls is None:
        raise ValueError(f"Unknown quantizer class {name!r}: expected a lamina quantizer or a registered custom "
                         f"class. Received: config={config!r}")
    inner = dict(config.get("config") or {})
    if isinstance(inner.get("value_range"), list):
        inner["value_range"] = tuple(inner["value_range"])  # JSON turns the tuple into a list
    return cls.from_config(inner)


class QuantizationConfig:
    """Base class of quantization configs: a ``weight_quantizer`` and an ``activation_quantizer``."""

    def __init__(self, weight_quantizer=None, activation_quantizer=None):
        self.weight_quantizer = weight_quantizer
        self.activation_quantizer = activation_quantizer

    @property
    def mode(self) -> str:
        raise NotImplementedError("QuantizationConfig is a base class: use Int8QuantizationConfig, "
                                  "Int4QuantizationConfig or Float8QuantizationConfig.")

    def get_config(self) -> dict:
        return {"weight_quantizer": serialize_quantizer(self.weight_quantizer),
                "activation_quantizer": serialize_quantizer(self.activation_quantizer)}

    @classmethod
    def from_config(cls, config: dict):
        return cls(weight_quantizer=deserialize_quantizer(config.get("weight_quantizer")),
                   activation_quantizer=deserialize_quantizer(config.get("activation_quantizer")))

    @staticmethod
    def weight_quantizer_or_default(config, default):
        if config is not None and config.weight_quantizer is not None:
            return config.weight_quantizer
        return default

    @staticmethod
    def activation_quantizer_or_default(config, default):
        # A config decides, even when it says None (weight-only); no config: the mode's default.
        return config.activation_quantizer if config is not None else default


class Int8QuantizationConfig(QuantizationConfig):
    """Int8: weights per output channel; ``activation_quantizer="default"`` quantizes inputs per row
    (``AbsMaxQuantizer()``), None keeps float inputs (weight-only)."""

    def __init__(self, weight_quantizer=None, activation_quantizer="default"):
        if isinstance(activation_quantizer, str) and activation_quantizer == "default":
            activation_quantizer = AbsMaxQuantizer()
        super().__init__(weight_quantizer, activation_quantizer)
        if weight_quantizer is not None and weight_quantizer.output_dtype != "int8":
            raise ValueError("Int8QuantizationConfig requires a weight_quantizer with output_dtype='int8'. "
                             f"Received: output_dtype={weight_quantizer.output_dtype!r}")

    @property
    def mode(self) -> str:
        return "int8"


class Int4QuantizationConfig(QuantizationConfig):
    """Int4 (two values per int8 byte). ``block_size``: input rows per group (asymmetric, with zero
    points); None or -1: symmetric, one scale per output channel. Weight-only unless an
    ``activation_quantizer`` is given (per-channel mode only)."""

    def __init__(self, weight_quantizer=None, activation_quantizer="default", block_size=128):
        if isinstance(activation_quantizer, str) and activation_quantizer == "default":
            activation_quantizer = None
        super().__init__(weight_quantizer, activation_quantizer)
        if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, int)
                                       or (block_size != -1 and block_size <= 0)):
            raise ValueError(f"block_size must be None, -1, or a positive integer. Received: block_size={block_size!r}")
        self.block_size = block_size
        if block_size is not None and block_size > 0 and (weight_quantizer is not None
                                                          or activation_quantizer is not None):
            raise ValueError("Int4 sub-channel quantization (block_size > 0) does not support custom quantizers: "
                             "set block_size to None or -1 for per-channel quantization, or drop the quantizers. "
                             f"Received: block_size={block_size}")
        if weight_quantizer is not None:
            if tuple(weight_quantizer.value_range) != (-8, 7):
                raise ValueError("Int4QuantizationConfig requires a weight_quantizer with value_range=(-8, 7). "
                                 f"Received: value_range={weight_quantizer.value_range}")
            if weight_quantizer.output_dtype != "int8":
                raise ValueError("Int4QuantizationConfig requires a weight_quantizer with output_dtype='int8'. "
                                 f"Received: output_dtype={weight_quantizer.output_dtype!r}")

    @property
    def mode(self) -> str:
        return "int4"

    def get_config(self) -> dict:
        return {**super().get_config(), "block_size": self.block_size}

    @classmethod
    def from_config(cls, config: dict):
        # A config without block_size predates it: those models were per-channel.
        return cls(weight_quantizer=deserialize_quantizer(config.get("weight_quantizer")),
                   activation_quantizer=deserialize_quantizer(config.get("activation_quantizer")),
                   block_size=config.get("block_size"))


class Float8QuantizationConfig(QuantizationConfig):
    """Float8 training (delayed scaling); takes no custom quantizers."""

    def __init__(self):
        super().__init__(None, None)

    @property
    def mode(self) -> str:
        return "float8"

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls()


_DEFAULT_CONFIGS = {"int8": Int8QuantizationConfig, "int4": Int4QuantizationConfig,
                    "float8": Float8QuantizationConfig}


def validate_and_resolve_config(mode, config) -> QuantizationConfig:
    """The config ``quantize(mode, config)`` runs with: ``config`` checked against ``mode``, or the mode's
    default config. A string ``config`` is read as the mode (Keras's older spelling)."""
    if isinstance(config, str):
        mode, config = config, None
    if mode is not None:
        check_quantization_mode(mode)
    if config is None:
        if mode is None:
            raise ValueError("You must provide either `mode` or `config` to `quantize`. Received: mode=None, "
                             "config=None")
        return _DEFAULT_CONFIGS[mode]()
    if not isinstance(config, QuantizationConfig):
        raise ValueError("Argument `config` must be an instance of `QuantizationConfig`. "
                         f"Received: config={config!r} (of type {type(config).__name__})")
    if mode is not None and config.mode != mode:
        raise ValueError(f"Contradictory arguments: mode='{mode}' but config.mode='{config.mode}'")
    check_quantization_mode(config.mode)
    return config


def get_block_size_for_layer(layer, config):
    """The int4 group size for ``layer``: the config's, else its Int4DTypePolicy's (-1 read as None), else
    None (per-channel, as models saved before group sizes existed)."""
    if config is not None and isinstance(config, Int4QuantizationConfig):
        return config.block_size
    policy = getattr(layer, "dtype_policy", None)
    if isinstance(policy, DTypePolicyMap):
        policy = policy[layer.path]
    block_size = getattr(policy, "block_size", None)
    return None if block_size in (None, -1) else block_size


__all__ = ["QUANTIZATION_MODES", "Float8QuantizationConfig", "Int4QuantizationConfig", "Int8QuantizationConfig",
           "QuantizationConfig", "get_block_size_for_layer", "validate_and_resolve_config"]
