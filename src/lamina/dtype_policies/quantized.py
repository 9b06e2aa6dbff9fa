"""Quantized dtype policies: ``"<mode>_from_<source>"`` names (``"int8_from_float32"``).

A quantized policy computes and stores its float state as its *source* policy does (``float32``,
``mixed_bfloat16``...); its ``quantization_mode`` tells a layer (Dense) to build and call its
quantized form. ``"int4/<block_size>_from_<source>"`` names an int4 policy with a group size
(``-1``: one scale per output channel).
"""

from __future__ import annotations

from lamina.dtype_policies.dtype_policy import DTypePolicy, dtype_policy, register_name_parser, register_policy_class

# The modes lamina implements. (Keras also has "gptq" and "awq", calibration-based; lamina does not.)
QUANTIZATION_MODES = ("int8", "float8", "int4")


def check_quantization_mode(mode, compute_dtype=None) -> None:
    """Raise for a mode lamina cannot quantize to (and for int8 with a float16 compute dtype)."""
    if mode not in QUANTIZATION_MODES:
        raise ValueError(f"Invalid quantization mode. Expected one of {QUANTIZATION_MODES}. Received: mode={mode!r}")
    if mode == "int8" and compute_dtype == "float16":
        raise ValueError(f"Quantization mode='{mode}' doesn't work well with compute_dtype='float16' (int8 "
                         "scales overflow float16). Use 'mixed_bfloat16' or 'float32' instead. "
                         f"Received: compute_dtype={compute_dtype!r}")


@register_policy_class
class QuantizedDTypePolicy(DTypePolicy):
    """A policy whose layers hold quantized weights.

    Args:
        mode: ``"int8"``, ``"int4"`` or ``"float8"``.
        source_name: the float policy the layer computes in (None: the global policy's name).
    """

    def __init__(self, mode, source_name=None):
        if source_name is None:
            source_name = dtype_policy().name
        self._compute_dtype, self._variable_dtype = self._parse_name(source_name)
        check_quantization_mode(mode, self._compute_dtype)
        self._name = f"{mode}_from_{source_name}"
        self._source_name = source_name
        self._quantization_mode = mode

    @property
    def source_name(self) -> str:
        return self._source_name

    def __eq__(self, other) -> bool:
        return (super().__eq__(other) and self._quantization_mode == other._quantization_mode
                and self._source_name == other._source_name)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._name))

    def get_config(self) -> dict:
        return {"mode": self._quantization_mode, "source_name": self._source_name}


@register_policy_class
class QuantizedFloat8DTypePolicy(QuantizedDTypePolicy):
    """A float8 policy; ``amax_history_length`` is the window of recent abs-maxima the scales follow."""

    default_amax_history_length = 1024

    def __init__(self, mode, source_name=None, amax_history_length=1024):
        super().__init__(mode=mode, source_name=source_name)
        if not isinstance(amax_history_length, int) or isinstance(amax_history_length, bool):
            raise TypeError("`amax_history_length` must be an integer. "
                            f"Received: amax_history_length={amax_history_length!r}")
        self._amax_history_length = amax_history_length

    @property
    def amax_history_length(self) -> int:
        return self._amax_history_length

    def __eq__(self, other) -> bool:
        return super().__eq__(other) and self._amax_history_length == other._amax_history_length

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._name))

    def get_config(self) -> dict:
        return {**super().get_config(), "amax_history_length": self._amax_history_length}


@register_policy_class
class Int4DTypePolicy(QuantizedDTypePolicy):
    """An int4 policy with a group size: ``mode="int4/<block_size>"`` (``-1``: per output channel)."""

    def __init__(self, mode, source_name=None):
        parts = mode.split("/") if isinstance(mode, str) else []
        if len(parts) != 2 or parts[0] != "int4":
            raise ValueError(f"Invalid mode for Int4DTypePolicy: expected 'int4/<block_size>'. Received: mode={mode!r}")
        try:
            block_size = int(parts[1])
        except ValueError:
            raise ValueError("Invalid mode for Int4DTypePolicy: <block_size> must be an integer. "
                             f"Received: mode={mode!r}") from None
        if block_size < -1 or block_size == 0:
            raise ValueError("Invalid block_size in mode: expected -1 (per-channel) or a positive integer. "
                             f"Received: mode={mode!r}")
        super().__init__(mode="int4", source_name=source_name)
        self._name = f"{mode}_from_{self._source_name}"
        self.mode = "int4"
        self.block_size = block_size

    def __eq__(self, other) -> bool:
        return super().__eq__(other) and self.block_size == other.block_size

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._name))

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": f"int4/{self.block_size}"}


def quantized_policy_from_name(name: str) -> QuantizedDTypePolicy:
    """``"int8_from_float32"`` → QuantizedDTypePolicy; ``"float8_from_..."`` → QuantizedFloat8DTypePolicy;
    ``"int4/128_from_..."`` → Int4DTypePolicy."""
    parts = name.split("_from_")
    if len(parts) != 2:
        raise ValueError("Cannot read a quantized dtype policy name: expected '<mode>_from_<source policy>', "
                         f"such as 'int8_from_float32'. Received: name={name!r}")
    mode, source = parts
    if mode.startswith("float8"):
        return QuantizedFloat8DTypePolicy(mode, source)
    if mode.startswith("int4/"):
        return Int4DTypePolicy(mode, source)
    return QuantizedDTypePolicy(mode, source)


register_name_parser("_from_", quantized_policy_from_name)
