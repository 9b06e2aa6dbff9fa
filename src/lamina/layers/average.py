"""``Average``: the elementwise mean of a list of tensors."""

from __future__ import annotations

from lamina import ops
from lamina.layers.base_merge import Merge


class Average(Merge):
    """``Average()([x1, ..., xn])`` returns ``(x1 + ... + xn) / n`` (shapes broadcast as in Keras)."""

    def _merge_function(self, inputs):
        out = inputs[0]
        for x in inputs[1:]:
            out = ops.add(out, x)
        return ops.divide(out, len(inputs))


def average(inputs, **kwargs):
    """Functional form: ``average([x1, x2])`` is ``Average(**kwargs)([x1, x2])``."""
    return Average(**kwargs)(inputs)
