"""``Minimum``: the elementwise minimum of a list of tensors."""

from __future__ import annotations

from lamina import ops
from lamina.layers.base_merge import Merge


class Minimum(Merge):
    """``Minimum()([x1, x2, ...])`` returns ``min(x1, x2, ...)`` elementwise (shapes broadcast as in
    Keras); on ties the gradient goes to the earliest input. A masked
    entry (from ``Masking``) never wins: it takes the other inputs' value, as in Keras."""

    def _merge_function(self, inputs):
        out = inputs[0]
        for x in inputs[1:]:
            out = ops.minimum(out, x)
        return out

    def _masked_merge(self, inputs, masks):
        return self._merge_with_or_mask(ops.minimum, inputs, masks)


def minimum(inputs, **kwargs):
    """Functional form: ``minimum([x1, x2])`` is ``Minimum(**kwargs)([x1, x2])``."""
    return Minimum(**kwargs)(inputs)
