"""``Softmax``: ``exp(x - max) / sum(exp(x - max))`` along ``axis``, with an optional mask."""

from __future__ import annotations

import numpy as np

from lamina import activations, ops
from lamina.autodiff import unwrap
from lamina.layers.layer import Layer


def _large_negative(dtype) -> float:
    # Masked logits are replaced by a number whose exp underflows to 0 but that stays finite.
    return -3e4 if np.dtype(dtype) == np.float16 else -1e9


class Softmax(Layer):
    """Softmax along ``axis`` (an int or a list of ints).

    ``call(inputs, mask=None)``: where ``mask`` (broadcastable to ``inputs``; 1/True keeps) is 0, the
    input is replaced by a large negative number before the softmax and the output is set to 0.
    """

    def __init__(self, axis: int | list[int] = -1, **kwargs):
        super().__init__(**kwargs)
        ok = isinstance(axis, int) or (
            isinstance(axis, (list, tuple)) and axis and all(isinstance(a, int) for a in axis)
        )
        if not ok or isinstance(axis, bool):
            raise ValueError(
                f"The `axis` of a Softmax layer must be an int or a list of ints. Received: axis={axis!r}"
            )
        self.axis = list(axis) if isinstance(axis, tuple) else axis
        self.supports_masking = True
        self._build_at_init()

    def call(self, inputs, mask=None):
        axis = tuple(self.axis) if isinstance(self.axis, list) else self.axis
        if mask is None:
            return activations.softmax(inputs, axis=axis)
        mask = np.asarray(unwrap(mask))
        in_shape = tuple(np.shape(unwrap(inputs)))
        if mask.ndim > len(in_shape):
            raise ValueError(
                f"The `mask` of Softmax layer '{self.name}' must be broadcastable to the inputs and must not "
                f"have more dimensions than they do ({mask.ndim} > {len(in_shape)}). "
                f"Received: inputs.shape={in_shape}, mask.shape={mask.shape}"
            )
        if not all(m in (1, i) for m, i in zip(mask.shape[::-1], in_shape[::-1], strict=False)):
            raise ValueError(
                f"The `mask` of Softmax layer '{self.name}' must be broadcastable to the inputs: each mask "
                "dimension must be 1 or match the input's, counted from the last. "
                f"Received: inputs.shape={in_shape}, mask.shape={mask.shape}"
            )
        if mask.dtype != np.bool_:
            mask = mask > 0.5
        dtype = np.asarray(unwrap(inputs)).dtype
        masked = ops.where(mask, inputs, np.asarray(_large_negative(dtype), dtype=dtype))
        out = activations.softmax(masked, axis=axis)
        return ops.where(mask, out, np.zeros((), dtype=dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config["axis"] = self.axis
        return config
