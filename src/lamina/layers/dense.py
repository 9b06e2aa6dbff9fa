"""``Dense``: ``activation(inputs @ kernel + bias)``, with kernel shape ``(input_dim, units)``."""

from __future__ import annotations

import numpy as np

from lamina import activations, constraints, initializers, regularizers
from lamina.autodiff import needs_gradient, record, recording, unwrap
from lamina.layers.layer import InputSpec, Layer


class Dense(Layer):
    """A densely connected layer.

    Fused activations are the 14 in :data:`lamina.activations.FUSED`, whose derivative is a function
    of their output: linear, relu, relu6, leaky_relu, elu, selu, sigmoid, hard_sigmoid, tanh,
    hard_tanh, softplus, exponential, softmax and log_softmax, each with its default arguments
    (given by name or as the function; ``ops.sigmoid`` etc. are the same functions).

    Outside a tape ``call`` is matmul, in-place bias add, then the activation (in place when fused).
    Under a tape, matmul + bias + a fused activation is ONE graph node with a hand-derived backward;
    any other activation (gelu, silu, ...) is applied as its own op after a matmul + bias node.
    """

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
        if lora_rank is not None:
            raise ValueError(f"Dense: LoRA is not supported by lamina. Received: lora_rank={lora_rank}")
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

    def build(self, input_shape) -> None:
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"The last dimension of the inputs to Dense layer '{self.name}' must be known. "
                f"Received: input_shape={input_shape}"
            )
        self.kernel = self.add_weight(name="kernel", shape=(input_dim, self.units),
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.units,), initializer=self.bias_initializer,
                                        regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        self.input_spec = InputSpec(min_ndim=2, axes={-1: input_dim})
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def call(self, inputs, training=None):
        if recording():
            return self._call_recorded(inputs, self.activation)
        x = inputs if isinstance(inputs, np.ndarray) else unwrap(inputs)
        fused = activations.FUSED.get(self.activation)
        y = dense_forward(x, self.kernel._value, None if self.bias is None else self.bias._value, fused)
        return y if fused is not None else self.activation(y)

    def call_logits(self, inputs):
        """The pre-activation output ``inputs @ kernel + bias`` (for losses computed from logits)."""
        if recording():
            return self._call_recorded(inputs, activations.linear)
        return dense_forward(unwrap(inputs), self.kernel._value, None if self.bias is None else self.bias._value, None)

    def _call_recorded(self, inputs, activation):
        """One graph node for matmul + bias (+ activation when its gradient needs only the output)."""
        kernel, bias = self.kernel, self.bias
        x = unwrap(inputs)
        fused = activations.FUSED.get(activation)
        y = dense_forward(x, kernel._value, None if bias is None else bias._value, fused)
        grad_from_output = fused[1] if fused is not None else None
        need_x = needs_gradient(inputs)

        def vjp(g):
            return dense_backward(g, x, y, kernel._value, bias is not None, grad_from_output, need_x)

        parents = (inputs, kernel, bias) if bias is not None else (inputs, kernel)
        out = record(y, parents, vjp if bias is not None else (lambda g: vjp(g)[:2]))
        if fused is None:
            out = activation(out)
        return out

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
            "quantization_config": None,
        })
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        config.pop("quantization_config", None)
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
