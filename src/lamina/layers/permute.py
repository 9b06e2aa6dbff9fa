"""``Permute``: reorders the non-batch axes."""

from __future__ import annotations

from lamina import ops
from lamina.layers.layer import InputSpec, Layer


class Permute(Layer):
    """``dims`` is a permutation of ``1..rank`` (the batch axis, 0, stays first):
    ``Permute((2, 1))`` maps ``(batch, a, b)`` to ``(batch, b, a)``."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        self.dims = tuple(dims)
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError(
                "Invalid permutation argument `dims` for Permute Layer: the set of indices in `dims` must be "
                f"consecutive and start from 1. Received dims={dims}"
            )
        self.input_spec = InputSpec(ndim=len(self.dims) + 1)

    def call(self, inputs):
        return ops.transpose(inputs, (0, *self.dims))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *(input_shape[d] for d in self.dims))

    def get_config(self) -> dict:
        config = super().get_config()
        config["dims"] = self.dims
        return config
