"""The quantization half of :class:`~lamina.layers.embedding.Embedding`: int8 and int4 tables, as Keras's.

* int8: each row ``r`` of the table is stored as ``q[r] = round(e[r] * s[r])`` in int8 with one scale
  ``s[r] = 127 / max|e[r]|`` (``embeddings_scale``, shape ``(input_dim,)``); a lookup gives ``q[i] / s[i]``.
* int4: the same with values in ``[-8, 7]``, two per byte (``pack_int4`` along the output axis); with a
  ``block_size`` (an :class:`~lamina.quantizers.Int4QuantizationConfig` or an ``int4/<block>`` policy) each
  block of ``block_size`` columns of a row has its own scale and zero point (``embeddings_zero``, ``g_idx``).

The quantized table is frozen; LoRA factors (float32) still train: ``q[i] / s[i] + (alpha / rank) * a[i] @ b``.
"""

from __future__ import annotations

import math

import numpy as np

from lamina import dtype_policies
from lamina.autodiff import record, unwrap
from lamina.layers.dense_quantize import DenseQuantization
from lamina.quantizers import quantizers
from lamina.quantizers.quantization_config import (
    Int4QuantizationConfig,
    QuantizationConfig,
    get_block_size_for_layer,
    validate_and_resolve_config,
)

MODES = ("int8", "int4")
VARIABLE_SERIALIZATION_SPEC = {None: ["embeddings"], "int8": ["embeddings", "embeddings_scale"],
                               "int4": ["embeddings", "embeddings_scale", "embeddings_zero", "g_idx"]}


class EmbeddingQuantization:
    """Mixed into Embedding: ``quantize``, the quantized variables, lookups and saving."""

    _check_quantize_args = DenseQuantization._check_quantize_args  # built, not yet quantized, not float16
    _not_implemented_error = DenseQuantization._not_implemented_error

    @staticmethod
    def _quantization_mode_error(mode):
        return NotImplementedError(f"Invalid quantization mode. Expected one of {MODES}. "
                                   f"Received: quantization_mode={mode}")

    # ------------------------------------------------------------------ quantize

    def quantize(self, mode=None, type_check=True, config=None) -> None:
        """Replace the float table by an int8 or int4 one and set the dtype policy to ``"<mode>_from_<policy>"``.
        Subclasses are refused unless ``type_check=False`` (their ``call`` may not be Embedding's)."""
        config = validate_and_resolve_config(mode, config)
        mode = config.mode
        self._check_quantize_args(mode)
        if mode not in MODES:
            raise self._quantization_mode_error(mode)
        if type_check and type(self).__mro__[1] is not EmbeddingQuantization:
            raise self._not_implemented_error(self.quantize)
        self.quantization_config = config
        table = np.asarray(self._embeddings.numpy())
        block_size = config.block_size if isinstance(config, Int4QuantizationConfig) else None
        values = self._quantized_values(table, mode, config, block_size)
        old = self.__dict__.pop("_embeddings")
        self._variables[:] = [v for v in self._variables if v is not old]
        self.quantized_build(table.shape, mode, config)
        for name, value in zip(("_embeddings", "embeddings_scale", "embeddings_zero"), values, strict=False):
            if value is not None:
                getattr(self, name).assign(value)
        if self.dtype_policy.quantization_mode is None:
            name = mode if mode == "int8" else f"int4/{-1 if block_size in (None, -1) else block_size}"
            self.dtype_policy = dtype_policies.get(f"{name}_from_{self.dtype_policy.name}")

    @staticmethod
    def _quantized_values(table, mode, config, block_size):
        """``(stored table, scale, zero or None)`` of a float ``(input_dim, output_dim)`` table."""
        if mode == "int8":
            quantizer = QuantizationConfig.weight_quantizer_or_default(config, quantizers.AbsMaxQuantizer(axis=-1))
            q, scale = quantizer(table, to_numpy=True)
            return q, np.squeeze(scale, axis=-1), None
        zero = None
        if block_size is None or block_size == -1:
            default = quantizers.AbsMaxQuantizer(axis=-1, value_range=(-8, 7), output_dtype="int8")
            q, scale = QuantizationConfig.weight_quantizer_or_default(config, default)(table, to_numpy=True)
            scale = np.squeeze(scale, axis=-1)
        else:  # groups of columns: quantized along the output axis, which the grouped quantizer takes first
            q, scale, zero = quantizers.abs_max_quantize_grouped_with_zero_point(table.T, block_size=block_size)
            q, scale, zero = np.asarray(q).T, np.asarray(scale).T, np.asarray(zero).T
        packed, _, _ = quantizers.pack_int4(q, axis=-1)
        return packed, scale, zero

    # ------------------------------------------------------------------ build

    def quantized_build(self, embeddings_shape, mode, config=None) -> None:
        """Create the variables of ``mode`` (zeros / ones: a load or :meth:`quantize` fills them)."""
        if mode not in MODES:
            raise self._quantization_mode_error(mode)
        input_dim, output_dim = embeddings_shape
        packed = output_dim if mode == "int8" else (output_dim + 1) // 2
        self._embeddings = self.add_weight(name="embeddings", shape=(input_dim, packed), initializer="zeros",
                                           dtype="int8", trainable=False)
        block_size = get_block_size_for_layer(self, config) if mode == "int4" else None
        self._int4_block_size = block_size
        grouped = block_size is not None and block_size > 0
        scale_shape = (input_dim, math.ceil(output_dim / block_size)) if grouped else (input_dim,)
        self.embeddings_scale = self.add_weight(name="embeddings_scale", shape=scale_shape, initializer="ones",
                                                trainable=False)
        if grouped:
            self.embeddings_zero = self.add_weight(name="embeddings_zero", shape=scale_shape, initializer="zeros",
                                                   dtype="int8", trainable=False)
            self.g_idx = self.add_weight(name="g_idx", shape=(output_dim,), dtype="float32", trainable=False,
                                         initializer=lambda shape, dtype=None: np.arange(output_dim) // block_size)
        self._orig_output_dim = output_dim
        self._is_quantized = True

    # ------------------------------------------------------------------ call

    def _unpacked_table(self) -> np.ndarray:
        """The stored integer table, int4 unpacked to one int8 value per entry."""
        q = np.asarray(unwrap(self._embeddings))
        if self.quantization_mode == "int4":
            q = np.asarray(quantizers.unpack_int4(q, self._orig_output_dim, axis=-1))
        return q

    def _dequantized_rows(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` of the table, back in floats: ``q[i] / s[i]`` (grouped int4: per block, with zeros)."""
        dtype = self._compute_np_dtype or np.dtype("float32")
        rows = self._unpacked_table()[idx].astype(dtype)
        scale = np.asarray(unwrap(self.embeddings_scale))[idx]
        if self.quantization_mode == "int4" and getattr(self, "_int4_block_size", None) not in (None, -1):
            zero = np.asarray(unwrap(self.embeddings_zero))[idx]
            g_idx = np.asarray(unwrap(self.g_idx))
            return np.asarray(quantizers.dequantize_with_sz_map(rows, scale, zero, g_idx, group_axis=-1)).astype(dtype)
        return (rows / scale[..., None]).astype(dtype, copy=False)

    def quantized_call(self, inputs, training=None):
        mode = self.quantization_mode
        if mode not in MODES:
            raise self._quantization_mode_error(mode)
        idx = self._indices(inputs)
        out = self._dequantized_rows(idx)
        if not self.lora_enabled:
            return out
        a, b, s = self.lora_embeddings_a, self.lora_embeddings_b, self.lora_alpha / self.lora_rank
        a_rows = a._value[idx]
        y = (out + s * (a_rows @ b._value)).astype(out.dtype, copy=False)

        def vjp(g):
            g32 = g.astype("float32", copy=False)
            g2 = g32.reshape(-1, g32.shape[-1])
            da = np.zeros(a._value.shape, "float32")
            np.add.at(da, idx.reshape(-1), s * (g2 @ b._value.T))
            return da, s * (a_rows.reshape(-1, a_rows.shape[-1]).T @ g2)

        return record(y, (a, b), vjp)

    # ------------------------------------------------------------------ saving

    @property
    def variable_serialization_spec(self) -> dict:
        """Mode → the variable names saved, in order (None: not quantized)."""
        return {mode: list(names) for mode, names in VARIABLE_SERIALIZATION_SPEC.items()}

    def _merged_quantized(self):
        """``(table, scale, zero)`` to save: with LoRA on, the float table plus the LoRA delta, quantized again."""
        scale = np.asarray(unwrap(self.embeddings_scale))
        zero = getattr(self, "embeddings_zero", None)
        if not self.lora_enabled:
            return np.asarray(unwrap(self._embeddings)), scale, None if zero is None else np.asarray(unwrap(zero))
        idx = np.arange(self.input_dim)
        merged = self._dequantized_rows(idx).astype("float32") + (self.lora_alpha / self.lora_rank) * (
            self.lora_embeddings_a._value @ self.lora_embeddings_b._value)
        block = getattr(self, "_int4_block_size", None)
        return self._quantized_values(merged, self.quantization_mode, None, block)

    def _saved_quantized(self) -> dict:
        table, scale, zero = self._merged_quantized()
        values = {"embeddings": table, "embeddings_scale": scale, "embeddings_zero": zero,
                  "g_idx": None if not hasattr(self, "g_idx") else np.asarray(unwrap(self.g_idx))}
        out, index = {}, 0
        for name in VARIABLE_SERIALIZATION_SPEC[self.quantization_mode]:
            if values[name] is not None:
                out[str(index)] = np.array(values[name])
                index += 1
        return out

    def _load_targets(self) -> list:
        """The variables a store's ``"0"``, ``"1"``... load into, in the mode's order."""
        mode = self.quantization_mode
        if mode not in VARIABLE_SERIALIZATION_SPEC:
            raise self._quantization_mode_error(mode)
        names = VARIABLE_SERIALIZATION_SPEC[mode]
        return [v for v in (self._embeddings if n == "embeddings" else getattr(self, n, None) for n in names)
                if v is not None]
