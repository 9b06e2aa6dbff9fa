"""``BaseConv``: what ``Conv1D``, ``Conv2D`` and ``Conv3D`` share (Keras's arguments, checks, messages,
weights, output shape, config and LoRA).

``y = activation(conv(x, kernel) + bias)`` with ``kernel`` of shape ``(*kernel_size, channels / groups,
filters)``; the convolution itself is :mod:`lamina.conv_kernels` (channels-last; a channels-first input
is transposed on the way in and out). Under a tape, convolution + bias + a fused activation (those of
:data:`lamina.activations.FUSED`) is one graph node; another activation follows as its own op.
"""

from __future__ import annotations

import numpy as np

from lamina import activations, backend, constraints, initializers, ops, regularizers
from lamina.autodiff import needs_gradient, record, recording, unwrap
from lamina.conv_kernels import conv_backward, conv_forward, plan
from lamina.layers.flatten import standardize_data_format
from lamina.layers.layer import InputSpec, Layer
from lamina.layers.lora import add_lora_factors, assign_saved_arrays, checked_lora_rank
from lamina.layers.spatial_arguments import standardize_tuple


def _count(value, name: str, message: str):
    """A positive integer argument (an integral float is accepted), else Keras's message."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(message.format(value=value))
    return int(value)


def conv_output_shape(input_shape, filters, kernel_size, strides, padding, data_format, dilation_rate) -> tuple:
    """Keras's output shape of a convolution: ``valid`` ``floor((n - d * (k - 1) - 1) / s) + 1`` (an error
    when not positive), ``same`` and ``causal`` ``ceil(n / s)``; unknown sizes stay ``None``."""
    input_shape = tuple(input_shape)
    first = data_format == "channels_first"
    spatial = input_shape[2:] if first else input_shape[1:-1]
    sizes = []
    for n, k, s, d in zip(spatial, kernel_size, strides, dilation_rate):
        if n is None:
            sizes.append(None)
            continue
        size = plan(n, k, s, d, "valid" if padding == "valid" else "same")[0]
        if size <= 0:
            channels = input_shape[1] if first else input_shape[-1]
            raise ValueError(
                "Computed output size would be zero or negative. Received "
                f"`inputs shape={input_shape}`, `kernel shape={(*kernel_size, channels, filters)}`, "
                f"`dilation_rate={dilation_rate}`, `strides={strides}`, `padding={padding}`."
            )
        sizes.append(size)
    if first:
        return (input_shape[0], filters, *sizes)
    return (input_shape[0], *sizes, filters)


class BaseConv(Layer):
    """An N-D convolution layer (``rank`` spatial axes); see the module docstring."""

    rank = 0

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 groups=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, lora_rank=None,
                 lora_alpha=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        rank, owner = self.rank, type(self).__name__
        self.filters = None if filters is None else _count(
            filters, "filters", "Invalid value for argument `filters`. Expected a strictly positive value. "
                                "Received filters={value}.")
        self.groups = _count(groups, "groups", "The number of groups must be a positive integer. "
                                               "Received: groups={value}.")
        if self.filters is not None and self.filters % self.groups:
            raise ValueError("The number of filters must be evenly divisible by the number of groups. "
                             f"Received: groups={self.groups}, filters={self.filters}.")
        self.kernel_size = standardize_tuple(kernel_size, rank, "kernel_size")
        self.strides = standardize_tuple(strides, rank, "strides")
        self.dilation_rate = standardize_tuple(dilation_rate, rank, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError("`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                             f"Received: strides={self.strides} and dilation_rate={self.dilation_rate}")
        allowed = ("valid", "same", "causal") if rank == 1 else ("valid", "same")
        if not isinstance(padding, str) or padding.lower() not in allowed:
            raise ValueError(f"The `padding` argument of {owner} must be one of {', '.join(map(repr, allowed))} "
                             f"(case-insensitive). Received: padding={padding!r}")
        self.padding = padding.lower()
        self.data_format = standardize_data_format(
            backend.image_data_format() if data_format is None else data_format, owner)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha if lora_alpha is not None else lora_rank
        self.lora_enabled = False
        self.input_spec = InputSpec(min_ndim=rank + 2)

    # ------------------------------------------------------------------ weights

    def _channel_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 1

    def build(self, input_shape) -> None:
        input_shape = tuple(input_shape)
        owner = f"{type(self).__name__} '{self.name}'"
        if len(input_shape) != self.rank + 2:
            raise ValueError(f"{owner} expects inputs of rank {self.rank + 2} (batch, {self.rank} spatial "
                             f"axes, channels). Received: input_shape={input_shape}")
        channels = input_shape[self._channel_axis()]
        if channels is None:
            raise ValueError(f"The channel dimension of the inputs to {owner} must be known "
                             f"(data_format='{self.data_format}'). Received: input_shape={input_shape}")
        if channels % self.groups:
            raise ValueError("The number of input channels must be evenly divisible by the number of groups. "
                             f"Received groups={self.groups}, but the input has {channels} channels (full input "
                             f"shape is {input_shape}).")
        self.compute_output_shape(input_shape)  # Keras's error for a kernel larger than the input
        self._kernel = self.add_weight(name="kernel", shape=(*self.kernel_size, channels // self.groups,
                                                             self.filters),
                                       initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
                                       constraint=self.kernel_constraint)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer,
                                        regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        self.input_spec = InputSpec(min_ndim=self.rank + 2, axes={self._channel_axis(): channels})
        if self._build_shapes is None:  # a direct build(shape) is saved as the build config, as Keras does
            self._build_shapes = input_shape
        self.built = True
        if self.lora_rank:
            self.enable_lora(self.lora_rank, lora_alpha=self.lora_alpha)

    @property
    def kernel(self):
        """The ``kernel`` variable, or with LoRA enabled the merged array
        ``kernel + (lora_alpha / lora_rank) * lora_kernel_a @ lora_kernel_b``."""
        if not self.built:
            raise AttributeError(f"{type(self).__name__} '{self.name}' has no kernel until it is built. Call it "
                                 "on data or call `build(input_shape)` first.")
        return self._merged_kernel() if self.lora_enabled else self._kernel

    # ------------------------------------------------------------------ shapes and call

    def compute_output_shape(self, input_shape):
        return conv_output_shape(input_shape, self.filters, self.kernel_size, self.strides, self.padding,
                                 self.data_format, self.dilation_rate)

    def _pads(self, spatial) -> list:
        if self.padding == "causal":
            return [(d * (k - 1), 0) for k, d in zip(self.kernel_size, self.dilation_rate)]
        return [plan(n, k, s, d, self.padding)[1:]
                for n, k, s, d in zip(spatial, self.kernel_size, self.strides, self.dilation_rate)]

    def convolution_op(self, inputs, kernel):
        """Keras's hook: the convolution of ``inputs`` (in ``data_format``) with ``kernel``, no bias. A
        subclass may override it (e.g. to standardize the kernel); ``call`` then goes through it."""
        if self.padding == "causal":
            widths = [(0, 0)] * (self.rank + 2)
            widths[1 if self.data_format == "channels_last" else 2] = self._pads((None,))[0]
            inputs, padding = ops.pad(inputs, widths), "valid"
        else:
            padding = self.padding
        return ops.conv(inputs, kernel, strides=self.strides, padding=padding, data_format=self.data_format,
                        dilation_rate=self.dilation_rate)

    def _overridden_op(self) -> bool:
        return type(self).convolution_op is not BaseConv.convolution_op

    def _call_through_op(self, inputs):
        """``convolution_op(inputs, kernel) + bias`` with ops (a subclass's own convolution_op)."""
        out = self.convolution_op(inputs, self.kernel)
        if self.use_bias:
            shape = (self.filters,) + (1,) * self.rank if self.data_format == "channels_first" else (self.filters,)
            out = ops.add(out, ops.reshape(self.bias, shape))
        return out

    def call(self, inputs):
        if self._overridden_op():
            return self.activation(self._call_through_op(inputs))
        fused = activations.FUSED.get(self.activation)
        out = self._conv_node(inputs, fused)
        return out if fused is not None else self.activation(out)

    def call_logits(self, inputs):
        """The output before the activation: convolution plus bias."""
        return self._call_through_op(inputs) if self._overridden_op() else self._conv_node(inputs, None)

    def _conv_node(self, inputs, fused):
        """conv + bias (+ the fused activation) as one recorded node, on a channels-last view."""
        first = self.data_format == "channels_first"
        self.compute_output_shape(np.shape(unwrap(inputs)))  # Keras's message for a too-small input
        if first:
            inputs = ops.transpose(inputs, (0, *range(2, self.rank + 2), 1))
        taped = recording()
        kernel = self._recorded_lora_kernel() if (self.lora_enabled and taped) else (
            self._merged_kernel() if self.lora_enabled else self._kernel)
        x = np.asarray(unwrap(inputs))
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(self.compute_dtype)
        kv = np.asarray(unwrap(kernel))
        kv = kv if kv.dtype == x.dtype else kv.astype(x.dtype)
        geometry = (self.strides, self._pads(x.shape[1:-1]), self.dilation_rate, self.groups)
        y = conv_forward(x, kv, *geometry)
        bias = self.bias
        if bias is not None:
            y += np.asarray(bias._value, dtype=y.dtype)
        if fused is not None:
            y = fused[0](y)
        if taped:
            y = self._record(y, inputs, x, kernel, kv, bias, fused, geometry)
        if first:
            y = ops.transpose(y, (0, self.rank + 1, *range(1, self.rank + 1)))
        return y

    @staticmethod
    def _record(y, inputs, x, kernel, kv, bias, fused, geometry):
        """Tape node of conv + bias + fused activation: ``dz = act'(y) * g``, ``dbias = sum(dz)``,
        ``(dx, dkernel) = conv_backward(dz)``."""
        need_x = needs_gradient(inputs)
        kernel_dtype = np.asarray(unwrap(kernel)).dtype

        def vjp(g):
            g = np.asarray(g, dtype=y.dtype)
            dz = fused[1](y, g) if fused is not None else g
            dx, dk = conv_backward(dz, x, kv, *geometry, need_dx=need_x)
            grads = (dx, dk.astype(kernel_dtype, copy=False))
            if bias is not None:
                grads += (dz.reshape(-1, dz.shape[-1]).sum(axis=0).astype(bias.dtype, copy=False),)
            return grads

        parents = (inputs, kernel) if bias is None else (inputs, kernel, bias)
        return record(y, parents, vjp)

    # ------------------------------------------------------------------ LoRA

    def enable_lora(self, rank, lora_alpha=None, a_initializer="he_uniform", b_initializer="zeros") -> None:
        """Freeze ``kernel`` and train ``lora_kernel_a`` ``(*kernel_size, in/groups, rank)`` and
        ``lora_kernel_b`` ``(rank, filters)`` instead; the kernel used is
        ``kernel + (lora_alpha / rank) * (a @ b)`` (``a`` flattened to ``(-1, rank)``)."""
        rank = checked_lora_rank(self, rank, self.kernel_constraint, "kernel", "kernel_constraint",
                                 "build(input_shape)")
        self.lora_kernel_a, self.lora_kernel_b = add_lora_factors(
            self, self._kernel, "lora_kernel", (*self._kernel.shape[:-1], rank), (rank, self.filters), rank,
            lora_alpha, a_initializer, b_initializer, self.kernel_regularizer)

    def _merged_kernel(self) -> np.ndarray:
        base = self._kernel._value
        a = self.lora_kernel_a._value
        delta = (self.lora_alpha / self.lora_rank) * (a.reshape(-1, a.shape[-1]) @ self.lora_kernel_b._value)
        return (base + delta.reshape(base.shape)).astype(base.dtype, copy=False)

    def _recorded_lora_kernel(self):
        """The merged kernel as a node over ``(kernel, a, b)``: ``da = s * g @ b^T``, ``db = s * a^T @ g``
        (``g`` and ``a`` flattened to ``(-1, filters)`` and ``(-1, rank)``)."""
        a, b, s = self.lora_kernel_a._value, self.lora_kernel_b._value, self.lora_alpha / self.lora_rank
        a2 = a.reshape(-1, a.shape[-1])

        def vjp(g):
            g2 = np.asarray(g, dtype="float32").reshape(-1, b.shape[-1])
            return g, (s * (g2 @ b.T)).reshape(a.shape).astype(a.dtype), (s * (a2.T @ g2)).astype(b.dtype)

        return record(self._merged_kernel(), (self._kernel, self.lora_kernel_a, self.lora_kernel_b), vjp)

    # Saving as Keras does: with LoRA on, the kernel written is the merged one and loading resets the
    # factors to zero. `save_own_variables` / `load_own_variables` exist only then (the weight walker
    # asks `hasattr`), so a plain convolution keeps the checked variable-by-variable path.
    @property
    def save_own_variables(self):
        if not self.lora_enabled:
            raise AttributeError("save_own_variables")
        return self._save_merged

    @property
    def load_own_variables(self):
        if not self.lora_enabled:
            raise AttributeError("load_own_variables")
        return self._load_merged

    def _save_merged(self, store) -> None:
        store["0"] = self._merged_kernel()
        if self.bias is not None:
            store["1"] = np.array(self.bias._value)

    def _load_merged(self, store) -> None:
        targets = [self._kernel] + ([self.bias] if self.bias is not None else [])
        assign_saved_arrays(self, store, targets, (self.lora_kernel_a, self.lora_kernel_b))

    # ------------------------------------------------------------------ config

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "groups": self.groups,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        })
        if self.lora_rank:
            config["lora_rank"] = self.lora_rank
            config["lora_alpha"] = self.lora_alpha
        return config
