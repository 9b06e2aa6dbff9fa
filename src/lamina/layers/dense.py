"""``Dense``: ``activation(inputs @ kernel + bias)``, with kernel shape ``(input_dim, units)``."""

from __future__ import annotations

import numpy as np

from lamina import activations, constraints, initializers, regularizers
from lamina.autodiff import needs_gradient, record, recording, unwrap
from lamina.layers.dense_quantize import DenseQuantization
from lamina.layers.layer import InputSpec, Layer
from lamina.layers.lora import add_lora_factors, assign_saved_arrays, checked_lora_rank
from lamina.quantizers import deserialize as deserialize_quantization_config
from lamina.quantizers import serialize as serialize_quantization_config


class Dense(DenseQuantization, Layer):
    """A densely connected layer.

    Fused activations are the 14 in :data:`lamina.activations.FUSED`, whose derivative is a function
    of their output: linear, relu, relu6, leaky_relu, elu, selu, sigmoid, hard_sigmoid, tanh,
    hard_tanh, softplus, exponential, softmax and log_softmax, each with its default arguments
    (given by name or as the function; ``ops.sigmoid`` etc. are the same functions).

    Outside a tape ``call`` is matmul, in-place bias add, then the activation (in place when fused).
    Under a tape, matmul + bias + a fused activation is ONE graph node with a hand-derived backward;
    any other activation (gelu, silu, ...) is applied as its own op after a matmul + bias node.

    LoRA (:meth:`enable_lora`, or ``lora_rank`` at construction): the built ``kernel`` is frozen and
    the layer computes with ``kernel + (lora_alpha / lora_rank) * lora_kernel_a @ lora_kernel_b``,
    training only the two low-rank factors (and the bias).

    Quantization (:meth:`quantize`, or a ``"<mode>_from_<policy>"`` dtype such as
    ``"int8_from_float32"``): see :mod:`lamina.layers.dense_quantize`. The variable is ``_kernel``;
    ``kernel`` reads it (int4 unpacked, LoRA merged).
    """

    @property
    def activation(self):
        return self._activation

    @activation.setter
    def activation(self, value) -> None:
        # Read as a function everywhere (the call, the compiled step, the lint): None, set after
        # construction as Keras allows, is the identity, as at construction.
        self._activation = activations.get(value)

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 lora_rank=None, lora_alpha=None, quantization_config=None, **kwargs):
        if isinstance(units, float) and units.is_integer():
            units = int(units)
        if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units <= 0:
            raise ValueError(
                "Received an invalid value for `units` of Dense, expected a positive integer. "
                f"Received: units={units!r}"
            )
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.input_spec = InputSpec(min_ndim=2)
        self.supports_masking = True
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha if lora_alpha is not None else lora_rank
        self.lora_enabled = False
        self.quantization_config = quantization_config

    def build(self, input_shape) -> None:
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"The last dimension of the inputs to Dense layer '{self.name}' must be known. "
                f"Received: input_shape={input_shape}"
            )
        mode = self.quantization_mode
        if mode is not None:
            self.quantized_build((input_dim, self.units), mode, self.quantization_config)
        if mode not in ("int8", "int4"):  # those build an integer `_kernel` of their own
            self._kernel = self.add_weight(name="kernel", shape=(input_dim, self.units),
                                           initializer=self.kernel_initializer,
                                           regularizer=self.kernel_regularizer,
                                           constraint=self.kernel_constraint)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.units,), initializer=self.bias_initializer,
                                        regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        self.input_spec = InputSpec(min_ndim=2, axes={-1: input_dim})
        if self._build_shapes is None:  # a direct build(shape): saved as the build config, as Keras does
            self._build_shapes = tuple(input_shape)
        self.built = True
        if self.lora_rank:
            self.enable_lora(self.lora_rank, lora_alpha=self.lora_alpha)

    @property
    def kernel(self):
        """The kernel ``(input_dim, units)``: the ``_kernel`` variable (int4: unpacked to int8 values), or
        with LoRA enabled the merged array ``kernel + (alpha / rank) * a @ b``."""
        if not self.built:
            raise AttributeError(f"Dense '{self.name}' has no kernel until it is built. Call it on data or call "
                                 "`build(input_shape)` first.")
        if self.lora_enabled:
            return self._effective_kernel()
        return self._unpacked_kernel()

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def call(self, inputs, training=None):
        if self.quantization_mode is not None:
            return self.quantized_call(inputs, training)
        if recording():
            return self._call_recorded(inputs, self.activation)
        x = inputs if isinstance(inputs, np.ndarray) else unwrap(inputs)
        fused = activations.FUSED.get(self.activation)
        y = dense_forward(x, self._effective_kernel(), None if self.bias is None else self.bias._value, fused)
        return y if fused is not None else self.activation(y)

    def call_logits(self, inputs):
        """The pre-activation output ``inputs @ kernel + bias`` (for losses computed from logits)."""
        if self.quantization_mode is not None:
            return self.quantized_call(inputs, logits=True)
        if recording():
            return self._call_recorded(inputs, activations.linear)
        bias = None if self.bias is None else self.bias._value
        return dense_forward(unwrap(inputs), self._effective_kernel(), bias, None)

    def _call_recorded(self, inputs, activation):
        """One graph node for matmul + bias (+ activation when its gradient needs only the output)."""
        kernel, bias = (self._recorded_lora_kernel() if self.lora_enabled else self._kernel), self.bias
        kernel_value = unwrap(kernel)
        x = unwrap(inputs)
        fused = activations.FUSED.get(activation)
        y = dense_forward(x, kernel_value, None if bias is None else bias._value, fused)
        grad_from_output = fused[1] if fused is not None else None
        need_x = needs_gradient(inputs)

        def vjp(g):
            return dense_backward(g, x, y, kernel_value, bias is not None, grad_from_output, need_x)

        parents = (inputs, kernel, bias) if bias is not None else (inputs, kernel)
        out = record(y, parents, vjp if bias is not None else (lambda g: vjp(g)[:2]))
        if fused is None:
            out = activation(out)
        return out

    # ------------------------------------------------------------------ LoRA

    def enable_lora(self, rank, lora_alpha=None, a_initializer="he_uniform", b_initializer="zeros") -> None:
        """Freeze ``kernel`` and add trainable ``lora_kernel_a`` ``(input_dim, rank)`` and
        ``lora_kernel_b`` ``(rank, units)``; the effective kernel is
        ``kernel + (lora_alpha / rank) * lora_kernel_a @ lora_kernel_b`` (``lora_alpha`` defaults to
        ``rank``). With ``b`` initialised to zeros the layer's output is unchanged at first."""
        rank = checked_lora_rank(self, rank, self.kernel_constraint, "kernel", "kernel_constraint",
                                 "build(input_shape)")
        if self.quantization_mode == "int4":
            input_dim, units = self._orig_input_dim, self._orig_output_dim  # `_kernel` is packed
        else:
            input_dim, units = self._kernel.shape
        self.lora_kernel_a, self.lora_kernel_b = add_lora_factors(
            self, self._kernel, "lora_kernel", (input_dim, rank), (rank, units), rank, lora_alpha,
            a_initializer, b_initializer, self.kernel_regularizer)

    def _lora_scale(self) -> float:
        return self.lora_alpha / self.lora_rank

    def _effective_kernel(self) -> np.ndarray:
        """The float kernel (a quantized one dequantized); with LoRA, a fresh array ``kernel + (alpha / rank)
        * a @ b`` in the float kernel's dtype."""
        base = self._kernel._value if self.quantization_mode is None else self._dequantized_kernel()
        if not self.lora_enabled:
            return base
        delta = self._lora_scale() * (self.lora_kernel_a._value @ self.lora_kernel_b._value)
        return (base + delta).astype(base.dtype, copy=False)

    def _recorded_lora_kernel(self):
        """The effective kernel as a graph node over ``(kernel, lora_kernel_a, lora_kernel_b)``:
        ``dK = g``, ``da = s * g @ b.T``, ``db = s * a.T @ g`` with ``s = alpha / rank``."""
        a, b, s = self.lora_kernel_a._value, self.lora_kernel_b._value, self._lora_scale()

        def vjp(g):
            g32 = g.astype("float32", copy=False)
            return g, (s * (g32 @ b.T)).astype(a.dtype, copy=False), (s * (a.T @ g32)).astype(b.dtype, copy=False)

        return record(self._effective_kernel(), (self._kernel, self.lora_kernel_a, self.lora_kernel_b), vjp)

    # Saving as Keras does: with LoRA on, the kernel written is the merged one (requantized when the
    # layer is quantized) and loading resets the factors to zero; a quantized layer writes its variables
    # in Keras's order (`variable_serialization_spec`). `save_own_variables` exists only then (the weight
    # walker asks `hasattr`), so a plain Dense keeps the checked variable-by-variable path.
    @property
    def save_own_variables(self):
        if not self.lora_enabled and self.quantization_mode is None:
            raise AttributeError("save_own_variables")
        return self._save_spec

    def _save_spec(self, store) -> None:
        if self.built:
            store.update(self._saved_values())

    def load_own_variables(self, store) -> None:
        """Assign ``store["0"]``, ``store["1"]``... to the variables of the layer's mode, in Keras's order."""
        if not self.built:
            return
        factors = (self.lora_kernel_a, self.lora_kernel_b) if self.lora_enabled else ()
        assign_saved_arrays(self, store, self._saved_targets(), factors)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "quantization_config": serialize_quantization_config(self.quantization_config),
        })
        if self.lora_rank:
            config["lora_rank"] = self.lora_rank
            config["lora_alpha"] = self.lora_alpha
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        config["quantization_config"] = deserialize_quantization_config(config.get("quantization_config"))
        return super().from_config(config)


def dense_forward(x: np.ndarray, kernel: np.ndarray, bias, fused) -> np.ndarray:
    """``act(x @ kernel + bias)`` for a fused activation pair ``fused = (forward, grad)`` (None: linear).

    The one forward of a Dense layer under a tape and in the compiled step; the bias add and the
    activation run in place on the fresh matmul output."""
    z = x @ kernel
    if bias is not None:
        z += bias
    return fused[0](z) if fused is not None else z


def dense_backward(g, x, y, kernel, has_bias: bool, grad_from_output, need_x: bool, dk_out=None, db_out=None):
    """``(dx, dkernel, dbias)`` of :func:`dense_forward` given the output ``y`` and its gradient ``g``:
    ``dz = act'(y) * g``, ``dx = dz @ kernel.T``, ``dkernel = x.T @ dz``, ``dbias = sum(dz)`` (leading
    axes flattened). ``dk_out`` / ``db_out`` receive the weight gradients in place when given (the
    compiled step writes them straight into the optimizer's flat buffer)."""
    dz = grad_from_output(y, g) if grad_from_output is not None else g
    x2 = x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x
    dz2 = dz.reshape(-1, dz.shape[-1]) if dz.ndim != 2 else dz
    dx = (dz @ kernel.T) if need_x else None
    dk = np.matmul(x2.T, dz2, out=dk_out)
    db = np.add.reduce(dz2, axis=0, out=db_out) if has_bias else None  # np.sum without its wrapper
    return dx, dk, db
