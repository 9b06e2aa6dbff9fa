"""``Multiply``: the elementwise product of a list of tensors."""

from __future__ import annotations

from lamina import ops
from lamina.layers.base_merge import Merge


class Multiply(Merge):
    """``Multiply()([x1, x2, ...])`` returns ``x1 * x2 * ...`` (shapes broadcast as in Keras)."""

    def _merge_function(self, inputs):
        out = inputs[0]
        for x in inputs[1:]:
            out = ops.multiply(out, x)
        return out


def multiply(inputs, **kwargs):
    """Functional form: ``multiply([x1, x2])`` is ``Multiply(**kwargs)([x1, x2])``."""
    return Multiply(**kwargs)(inputs)
