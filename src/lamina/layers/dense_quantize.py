"""Quantized ``Dense``: int8, int4 and float8 weights, their calls, and saving them (Keras's layout).

Scales follow Keras's convention (:mod:`lamina.quantizers.quantizers`): ``q = round(w * scale)``, so the
float kernel is ``q / scale``.

* **int8**: ``_kernel`` int8 ``(input_dim, units)``, ``kernel_scale`` ``(units,)`` (abs-max over each
  output column). By default the inputs are quantized too, per row (``x_q = round(x * s_x)``), and
  ``y = (x_q @ q) / (s_x * kernel_scale)``.
* **int4**: ``_kernel`` int8 ``(input_dim, ceil(units / 2))`` holding two values per byte. Per channel
  (``block_size`` None / -1): ``kernel_scale`` ``(units,)``, symmetric in ``[-8, 7]``. Grouped:
  ``kernel_scale`` and ``kernel_zero`` ``(n_groups, units)``, ``g_idx`` ``(input_dim,)`` the group of
  each input row; the float kernel is ``(q - zero[g]) * scale[g]``.
* **float8**: the float kernel stays; inputs and kernel pass through float8_e4m3fn (and the output
  gradient through float8_e5m2) with delayed scaling: ``*_scale`` and ``*_amax_history`` variables the
  optimizer overwrites with the values the backward pass computes.

Training: the integer kernel is frozen; the input gradient is ``g @ float_kernel.T`` (the
straight-through rule: input quantization counts as identity), and with LoRA the factors train.

NumPy has no integer BLAS, so integer products run as float32 matmuls of integer-valued arrays (exact
while ``input_dim * 127 * 127 < 2**24``, i.e. ``input_dim <= 1040``; beyond, within float32 rounding),
widening the int8 kernel ``_CAST_COLUMNS`` columns at a time so that no float copy of it is kept.
"""

from __future__ import annotations

import math

import numpy as np

from lamina import dtype_policies, ops
from lamina.autodiff import record, recording, unwrap
from lamina.dtype_policies.quantized import QUANTIZATION_MODES, QuantizedFloat8DTypePolicy
from lamina.layers.dense_float8 import float8_call
from lamina.quantizers import quantizers
from lamina.quantizers.quantization_config import (
    Int4QuantizationConfig,
    QuantizationConfig,
    get_block_size_for_layer,
    validate_and_resolve_config,
)

# Below this many input rows the grouped int4 product sums per-group matmuls (no float kernel); at 32 rows
# one dequantized kernel was already faster (2048 x 2048, groups of 128, one OpenBLAS thread).
_GROUP_SUM_ROWS = 16
_CAST_COLUMNS = 2048  # int8 kernel columns widened to float32 per matmul: bounds the temporary copy

# The variables each mode saves, in order ("kernel" is `_kernel`); a missing optional one is skipped.
VARIABLE_SERIALIZATION_SPEC = {
    None: ("kernel", "bias"),
    "int8": ("kernel", "bias", "kernel_scale"),
    "int4": ("kernel", "bias", "kernel_scale", "kernel_zero", "g_idx"),
    "float8": ("kernel", "bias", "inputs_scale", "inputs_amax_history", "kernel_scale", "kernel_amax_history",
               "outputs_grad_scale", "outputs_grad_amax_history"),
}


def int_matmul(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``x @ q`` in float32 for an integer kernel ``q`` (int8, or unpacked int4), widening ``q`` in column
    blocks so that the float copy never exceeds ``input_dim * _CAST_COLUMNS`` values. (Smaller,
    cache-sized blocks measured slower: OpenBLAS is slow on narrow right-hand sides.)"""
    x = x.astype(np.float32, copy=False)
    units = q.shape[-1]
    if units <= _CAST_COLUMNS:
        return x @ q.astype(np.float32)
    out = np.empty(x.shape[:-1] + (units,), np.float32)
    for start in range(0, units, _CAST_COLUMNS):
        stop = min(start + _CAST_COLUMNS, units)
        out[..., start:stop] = x @ q[:, start:stop].astype(np.float32)
    return out


def dequantize_groups(q: np.ndarray, scale, zero, block_size: int) -> np.ndarray:
    """``(q - zero[g]) * scale[g]`` for consecutive groups of ``block_size`` rows (the last may be short),
    computed in place on one float32 copy of ``q``."""
    w = q.astype(np.float32)
    rows, full = q.shape[0], (q.shape[0] // block_size) * block_size
    groups = w[:full].reshape(full // block_size, block_size, q.shape[1])  # no full group: an empty view
    groups -= zero[:full // block_size, None, :]
    groups *= scale[:full // block_size, None, :]
    if full < rows:
        w[full:] -= zero[-1]
        w[full:] *= scale[-1]
    return w


def grouped_int4_matmul(x: np.ndarray, q: np.ndarray, scale, zero, g_idx, block_size: int) -> np.ndarray:
    """``x @ ((q - zero[g]) * scale[g])`` (``g_idx[i]`` the group of row ``i``). Fewer than
    ``_GROUP_SUM_ROWS`` input rows: per group of kernel rows ``r``, ``(x_r @ q_r) * scale_g - sum(x_r) *
    zero_g * scale_g``, with no float kernel; more: one dequantized kernel and one matmul (faster there)."""
    x = x.astype(np.float32, copy=False)
    rows = q.shape[0]
    if not np.array_equal(g_idx, np.arange(rows) // block_size):  # not consecutive blocks: dequantize by index
        return x @ quantizers.dequantize_with_sz_map(q, scale, zero, g_idx, group_axis=0)
    if x.size // max(x.shape[-1], 1) >= _GROUP_SUM_ROWS:
        return x @ dequantize_groups(q, scale, zero, block_size)
    offset = scale * zero.astype(np.float32)
    out = np.zeros(x.shape[:-1] + (q.shape[1],), np.float32)
    for group, start in enumerate(range(0, rows, block_size)):
        xs = x[..., start:start + block_size]
        out += (xs @ q[start:start + block_size].astype(np.float32)) * scale[group]
        out -= xs.sum(axis=-1, keepdims=True) * offset[group]
    return out


class DenseQuantization:
    """The quantization half of :class:`~lamina.layers.dense.Dense` (a mixin: it reads Dense's attributes)."""

    # ------------------------------------------------------------------ quantize

    def quantize(self, mode=None, type_check=True, config=None) -> None:
        """Replace the float kernel by a quantized one (``mode``: ``"int8"``, ``"int4"`` or ``"float8"``;
        ``config``: a :class:`~lamina.quantizers.QuantizationConfig`), and set the layer's dtype policy to
        ``"<mode>_from_<policy>"``. Subclasses are refused unless ``type_check=False`` (their ``call``
        may not be Dense's)."""
        config = validate_and_resolve_config(mode, config)
        mode = config.mode
        self._check_quantize_args(mode)
        # Dense mixes this class in directly (its MRO's second entry); a subclass of Dense sits one further.
        if type_check and type(self).__mro__[1] is not DenseQuantization:
            raise self._not_implemented_error(self.quantize)
        self.quantization_config = config
        float_kernel = self._kernel.numpy()
        kernel_shape = float_kernel.shape
        if mode == "int8":
            self._quantize_int8(float_kernel, kernel_shape, config)
        elif mode == "int4":
            self._quantize_int4(float_kernel, kernel_shape, config)
        else:
            self.quantized_build(kernel_shape, mode)
        if self.dtype_policy.quantization_mode is None:
            name = mode
            if mode == "int4":
                block_size = get_block_size_for_layer(self, config)
                name = f"int4/{-1 if block_size is None else block_size}"
            self.dtype_policy = dtype_policies.get(f"{name}_from_{self.dtype_policy.name}")

    def _check_quantize_args(self, mode) -> None:
        if not self.built:
            raise ValueError(f"Cannot quantize a layer that isn't yet built. Layer '{self.name}' (of type "
                             f"'{type(self).__name__}') is not built yet: call it on data or build() it first.")
        if getattr(self, "_is_quantized", False):
            raise ValueError(f"Layer '{self.name}' is already quantized with dtype_policy="
                             f"'{self.dtype_policy.name}'. Received: mode={mode}")
        if mode == "int8" and self.compute_dtype == "float16":
            raise ValueError(f"Quantization mode='{mode}' doesn't work well with compute_dtype='float16'. Consider "
                             "loading the layer with another dtype policy, such as 'mixed_bfloat16' or 'float32', "
                             "before calling `quantize()`.")

    def _replace_kernel(self) -> None:
        """Drop the float ``_kernel`` variable (it is replaced by a quantized one)."""
        old = self.__dict__.pop("_kernel")
        self._variables[:] = [v for v in self._variables if v is not old]

    def _quantize_int8(self, float_kernel, kernel_shape, config) -> None:
        quantizer = QuantizationConfig.weight_quantizer_or_default(config, quantizers.AbsMaxQuantizer(axis=0))
        q, scale = quantizer(float_kernel, to_numpy=True)
        self._replace_kernel()
        self.quantized_build(kernel_shape, "int8", config)
        self._kernel.assign(q)
        self.kernel_scale.assign(np.squeeze(scale, axis=0))

    def _quantize_int4(self, float_kernel, kernel_shape, config) -> None:
        block_size = config.block_size if isinstance(config, Int4QuantizationConfig) else None
        zero = None
        if block_size is None or block_size == -1:
            default = quantizers.AbsMaxQuantizer(axis=0, value_range=(-8, 7), output_dtype="int8")
            q, scale = QuantizationConfig.weight_quantizer_or_default(config, default)(float_kernel, to_numpy=True)
            scale = np.squeeze(scale, axis=0)
        else:
            q, scale, zero = quantizers.abs_max_quantize_grouped_with_zero_point(float_kernel, block_size=block_size)
        packed, _, _ = quantizers.pack_int4(q, axis=-1)
        self._replace_kernel()
        self.quantized_build(kernel_shape, "int4", config)
        self._kernel.assign(packed)
        self.kernel_scale.assign(scale)
        if zero is not None:
            self.kernel_zero.assign(zero)

    # ------------------------------------------------------------------ build

    def quantized_build(self, kernel_shape, mode, config=None) -> None:
        """Create the variables of ``mode`` for a ``(input_dim, units)`` kernel (zeros / ones: a load or
        :meth:`quantize` fills them)."""
        if mode == "int8":
            self._int8_build(kernel_shape, config)
        elif mode == "int4":
            self._int4_build(kernel_shape, config)
        elif mode == "float8":
            self._float8_build()
        else:
            raise self._quantization_mode_error(mode)
        self._is_quantized = True

    def _int8_build(self, kernel_shape, config=None) -> None:
        self.inputs_quantizer = QuantizationConfig.activation_quantizer_or_default(config,
                                                                                   quantizers.AbsMaxQuantizer())
        self._kernel = self.add_weight(name="kernel", shape=kernel_shape, initializer="zeros", dtype="int8",
                                       trainable=False)
        self.kernel_scale = self.add_weight(name="kernel_scale", shape=(self.units,), initializer="ones",
                                            trainable=False)

    def _int4_build(self, kernel_shape, config=None) -> None:
        self.inputs_quantizer = QuantizationConfig.activation_quantizer_or_default(config, None)
        input_dim, units = kernel_shape
        self._kernel = self.add_weight(name="kernel", shape=(input_dim, (units + 1) // 2), initializer="zeros",
                                       dtype="int8", trainable=False)
        block_size = get_block_size_for_layer(self, config)
        self._int4_block_size = block_size
        grouped = block_size is not None and block_size > 0
        scale_shape = (math.ceil(input_dim / block_size), self.units) if grouped else (self.units,)
        self.kernel_scale = self.add_weight(name="kernel_scale", shape=scale_shape, initializer="ones",
                                            trainable=False)
        if grouped:
            self.kernel_zero = self.add_weight(name="kernel_zero", shape=scale_shape, initializer="zeros",
                                               dtype="int8", trainable=False)
            self.g_idx = self.add_weight(name="g_idx", shape=(input_dim,), dtype="float32", trainable=False,
                                         initializer=lambda shape, dtype=None: np.arange(input_dim) // block_size)
        self._orig_input_dim, self._orig_output_dim = input_dim, units

    def _float8_build(self) -> None:
        quantizers.lowp_dtype("float8_e4m3fn")  # fail now, with the install hint, when ml_dtypes is missing
        length = getattr(self.dtype_policy, "amax_history_length",
                         QuantizedFloat8DTypePolicy.default_amax_history_length)
        for name in ("inputs", "kernel", "outputs_grad"):
            # Trainable so that the backward pass can hand the optimizer their new values, which it assigns
            # (overwrite_with_gradient) instead of stepping.
            scale = self.add_weight(name=f"{name}_scale", shape=(), initializer="ones", dtype="float32",
                                    trainable=True, autocast=False)
            history = self.add_weight(name=f"{name}_amax_history", shape=(length,), initializer="zeros",
                                      dtype="float32", trainable=True, autocast=False)
            scale.overwrite_with_gradient = history.overwrite_with_gradient = True
            setattr(self, f"{name}_scale", scale)
            setattr(self, f"{name}_amax_history", history)

    # ------------------------------------------------------------------ call

    def quantized_call(self, inputs, training=None, logits=False):
        """The call of the layer's quantization mode (``logits``: without the activation)."""
        mode = self.quantization_mode
        if mode == "int8":
            return self._int8_call(inputs, training, logits)
        if mode == "int4":
            return self._int4_call(inputs, training, logits)
        if mode == "float8":
            return self._float8_call(inputs, training, logits)
        raise self._quantization_mode_error(mode)

    def _int8_call(self, inputs, training=None, logits=False):
        y = self._integer_matmul(inputs, self._kernel._value, self.kernel_scale._value)
        return self._finish(inputs, y, logits)

    def _int4_call(self, inputs, training=None, logits=False):
        q = quantizers.unpack_int4(self._kernel._value, self._orig_output_dim, axis=-1)
        block_size = getattr(self, "_int4_block_size", None)
        if block_size in (None, -1):
            return self._finish(inputs, self._integer_matmul(inputs, q, self.kernel_scale._value), logits)
        x = unwrap(inputs)
        scale, zero, groups = self.kernel_scale._value, self.kernel_zero._value, self.g_idx._value

        def vjp(g):
            float_kernel = quantizers.dequantize_with_sz_map(q, scale, zero, groups, group_axis=0)
            return (self._input_grad(g, float_kernel, x),)

        y = grouped_int4_matmul(x, q, scale, zero, groups, block_size).astype(self.compute_dtype, copy=False)
        return self._finish(inputs, record(y, (inputs,), vjp), logits)

    def _integer_matmul(self, inputs, q: np.ndarray, kernel_scale: np.ndarray):
        """``(x_q @ q) / (s_x * kernel_scale)`` (``x`` as is without an inputs quantizer), recorded with the
        straight-through input gradient ``g @ (q / kernel_scale).T``."""
        x = unwrap(inputs)
        if self.inputs_quantizer is not None:
            # Integer-valued floats: the quantizer's round and clip, without an int8 round trip.
            xq, x_scale = self.inputs_quantizer(x, axis=-1)
            y = int_matmul(xq, q) / (kernel_scale * x_scale.astype(np.float32, copy=False))
        else:
            y = int_matmul(x, q) / kernel_scale
        y = y.astype(self.compute_dtype, copy=False)

        def vjp(g):
            return (self._input_grad(g, q.astype(np.float32) / kernel_scale, x),)

        return record(y, (inputs,), vjp)

    @staticmethod
    def _input_grad(g, float_kernel: np.ndarray, x: np.ndarray) -> np.ndarray:
        return (g @ float_kernel.T).astype(x.dtype, copy=False)

    def _finish(self, inputs, y, logits=False):
        """Add the LoRA path ``(alpha / rank) * (x @ a) @ b``, the bias and (unless ``logits``) the
        activation, as recorded ops."""
        if self.lora_enabled:
            lora = ops.matmul(ops.matmul(inputs, self.lora_kernel_a), self.lora_kernel_b)
            y = ops.add(y, ops.multiply(lora, np.float32(self.lora_alpha / self.lora_rank)))
            if unwrap(y).dtype.name != self.compute_dtype:
                y = ops.cast(y, self.compute_dtype)
        if self.bias is not None:
            y = ops.add(y, self.bias)
        return y if logits or self.activation is None else self.activation(y)

    def _float8_call(self, inputs, training=None, logits=False):
        if self.lora_enabled:
            raise NotImplementedError(f"Dense '{self.name}': float8 quantization does not support LoRA. "
                                      "Received: lora_enabled=True")
        return float8_call(self, inputs, bool(training) and recording(), logits)

    # ------------------------------------------------------------------ kernel views

    def _unpacked_kernel(self):
        """The stored kernel as ``(input_dim, units)``: int4 unpacked, else ``_kernel`` itself."""
        if self.quantization_mode == "int4":
            return quantizers.unpack_int4(self._kernel._value, self._orig_output_dim, axis=-1)
        return self._kernel

    def _dequantized_kernel(self) -> np.ndarray:
        """The float kernel a quantized layer computes with."""
        mode = self.quantization_mode
        if mode == "int8":
            return self._kernel._value.astype(np.float32) / self.kernel_scale._value
        if mode == "int4":
            q = self._unpacked_kernel()
            if getattr(self, "_int4_block_size", None) in (None, -1):
                return q.astype(np.float32) / self.kernel_scale._value
            return quantizers.dequantize_with_sz_map(q, self.kernel_scale._value, self.kernel_zero._value,
                                                     self.g_idx._value, group_axis=0)
        return self._kernel._value

    def _get_kernel_with_merged_lora(self):
        """``(kernel, kernel_scale, kernel_zero)`` to save: LoRA merged into the kernel (requantized with
        fresh scales for int8 / int4); scale and zero are None where the mode has none."""
        mode = self.quantization_mode
        if mode not in ("int8", "int4"):
            kernel = self._effective_kernel() if self.lora_enabled else self._kernel._value
            return kernel, None, None
        zero = getattr(self, "kernel_zero", None)
        if not self.lora_enabled:
            return self._kernel._value, self.kernel_scale._value, None if zero is None else zero._value
        merged = self._effective_kernel()  # dequantized, plus the LoRA delta
        block_size = getattr(self, "_int4_block_size", None)
        zero = None
        if mode == "int4" and block_size not in (None, -1):
            q, scale, zero = quantizers.abs_max_quantize_grouped_with_zero_point(merged, block_size=block_size)
        else:
            value_range = (-8, 7) if mode == "int4" else (-127, 127)
            q, scale = quantizers.abs_max_quantize(merged, axis=0, value_range=value_range)
            scale = np.squeeze(scale, axis=0)
        if mode == "int4":
            q = quantizers.pack_int4(q, axis=-1)[0]
        return q, scale, zero

    # ------------------------------------------------------------------ saving

    @property
    def variable_serialization_spec(self) -> dict:
        """Mode → the variable names saved, in order (None: not quantized)."""
        return {mode: list(names) for mode, names in VARIABLE_SERIALIZATION_SPEC.items()}

    def _saved_values(self) -> dict:
        mode = self.quantization_mode
        if mode not in VARIABLE_SERIALIZATION_SPEC:
            raise self._quantization_mode_error(mode)
        kernel, scale, zero = self._get_kernel_with_merged_lora()
        values = {"kernel": kernel, "kernel_zero": zero}
        if mode in ("int8", "int4"):
            values["kernel_scale"] = scale
        out, index = {}, 0
        for name in VARIABLE_SERIALIZATION_SPEC[mode]:
            value = values[name] if name in values else getattr(self, name, None)
            if value is None:
                continue
            out[str(index)] = np.array(unwrap(value))
            index += 1
        return out

    def _saved_targets(self) -> list:
        """The variables a store's ``"0"``, ``"1"``... load into, in the mode's order."""
        mode = self.quantization_mode
        if mode not in VARIABLE_SERIALIZATION_SPEC:
            raise self._quantization_mode_error(mode)
        targets = []
        for name in VARIABLE_SERIALIZATION_SPEC[mode]:
            var = self._kernel if name == "kernel" else getattr(self, name, None)
            if var is not None:
                targets.append(var)
        return targets

    # ------------------------------------------------------------------ errors

    def _not_implemented_error(self, attr, msg=None):
        attr_name, attr_type = (attr.__name__, "method") if callable(attr) else (str(attr), "attribute")
        return NotImplementedError(f"Layer {type(self).__name__} does not have a `{attr_name}` {attr_type} "
                                   f"implemented.{'' if msg is None else ' ' + msg}")

    @staticmethod
    def _quantization_mode_error(mode):
        return NotImplementedError(f"Invalid quantization mode. Expected one of {QUANTIZATION_MODES}. "
                                   f"Received: quantization_mode={mode}")
