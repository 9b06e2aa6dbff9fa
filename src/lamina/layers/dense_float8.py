"""Float8 ``Dense`` call (delayed scaling, as Keras): needs the optional ``ml_dtypes`` (``lamina[lowp]``).

Forward: ``y = qdq(x; s_x, e4m3) @ qdq(kernel; s_k, e4m3) + bias`` where
``qdq(v; s) = float(cast_float8(clip(v / s, ±max))) * s``. Backward: the output gradient passes through
``qdq(g; s_g, e5m2)``; the input and kernel gradients pass the qdq straight through. While training,
each ``*_scale`` and ``*_amax_history`` variable receives as its "gradient" its next value
(``scale = max(history) / dtype_max``; the history rolled with the new ``max|v|`` at index 0), which
the optimizer assigns (``overwrite_with_gradient``).
"""

from __future__ import annotations

import numpy as np

from lamina import ops
from lamina.autodiff import record, unwrap
from lamina.quantizers import quantizers

_E4M3, _E5M2 = "float8_e4m3fn", "float8_e5m2"


def _qdq_forward(layer, value, prefix: str, training: bool):
    """``qdq(value)`` recorded over ``(value, scale, history)``: gradient straight through to ``value``,
    and (training) the next scale and history to the two variables."""
    scale, history = getattr(layer, f"{prefix}_scale"), getattr(layer, f"{prefix}_amax_history")
    v = np.asarray(unwrap(value))
    out = quantizers.quantize_and_dequantize(v, scale._value, _E4M3, layer.compute_dtype)
    if training:
        new_scale = quantizers.compute_float8_scale(history._value.max(), scale._value, quantizers.float8_max(_E4M3))
        new_history = quantizers.compute_float8_amax_history(v, history._value)
    else:
        new_scale = new_history = None
    return record(out, (value, scale, history), lambda g: (g, new_scale, new_history))


def _qdq_output_gradient(layer, y):
    """Identity forward; the backward quantizes the output gradient to e5m2 and updates its scale."""
    scale, history = layer.outputs_grad_scale, layer.outputs_grad_amax_history

    def vjp(g):
        new_scale = quantizers.compute_float8_scale(history._value.max(), scale._value, quantizers.float8_max(_E5M2))
        qdq = quantizers.quantize_and_dequantize(g, scale._value, _E5M2, layer.compute_dtype)
        return qdq.astype(g.dtype, copy=False), new_scale, quantizers.compute_float8_amax_history(g, history._value)

    return record(unwrap(y), (y, scale, history), vjp)


def _through_bfloat16(x: np.ndarray) -> np.ndarray:
    return x.astype(quantizers.lowp_dtype("bfloat16")).astype(x.dtype)


def float8_call(layer, inputs, training: bool, logits: bool = False):
    """The float8 forward of a Dense ``layer`` (see the module docstring)."""
    x = _qdq_forward(layer, inputs, "inputs", training)
    kernel = _qdq_forward(layer, layer._kernel, "kernel", training)
    y = _qdq_output_gradient(layer, ops.matmul(x, kernel))
    if layer.bias is not None:
        bias = layer.bias
        if layer.compute_dtype == "float32":
            # Keras rounds a float32 bias through bfloat16 here (for XLA's fused bias add), and the cast's
            # backward rounds the bias gradient the same way; both kept so that a float8 layer matches Keras.
            bias = record(_through_bfloat16(bias._value), (bias,), lambda g: (_through_bfloat16(g),))
        y = ops.add(y, bias)
    return y if logits or layer.activation is None else layer.activation(y)
