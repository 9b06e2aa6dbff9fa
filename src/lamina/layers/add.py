"""``Add``: the elementwise sum of a list of tensors."""

from __future__ import annotations

from lamina import ops
from lamina.layers.base_merge import Merge


class Add(Merge):
    """``Add()([x1, x2, ...])`` returns ``x1 + x2 + ...`` (shapes broadcast as in Keras)."""

    def _merge_function(self, inputs):
        out = inputs[0]
        for x in inputs[1:]:
            out = ops.add(out, x)
        return out


def add(inputs, **kwargs):
    """Functional form: ``add([x1, x2])`` is ``Add(**kwargs)([x1, x2])``."""
    return Add(**kwargs)(inputs)
