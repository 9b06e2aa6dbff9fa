"""``Multiply``: the elementwise product of a list of tensors."""

from __future__ import annotations

import numpy as np

from lamina import ops
from lamina.autodiff import unwrap
from lamina.layers.base_merge import Merge


class Multiply(Merge):
    """``Multiply()([x1, x2, ...])`` returns ``x1 * x2 * ...`` (shapes broadcast as in Keras).

    With masks (from ``Masking``), as in Keras: a masked entry counts as 1; where every input has a mask,
    entries that no input keeps are 0.
    """

    def _merge_function(self, inputs):
        out = inputs[0]
        for x in inputs[1:]:
            out = ops.multiply(out, x)
        return out

    def _masked_merge(self, inputs, masks):
        out, kept = None, None
        for x, m in zip(inputs, masks, strict=True):
            xv = unwrap(x)
            if m is not None:
                m = np.broadcast_to(m[..., None], np.shape(xv))
                x = ops.where(m, x, np.ones((), dtype=xv.dtype))
                kept = m if kept is None else np.logical_or(kept, m)
            out = x if out is None else ops.multiply(out, x)
        if all(m is not None for m in masks):
            out = ops.where(kept, out, np.zeros((), dtype=np.asarray(unwrap(out)).dtype))
        return out


def multiply(inputs, **kwargs):
    """Functional form: ``multiply([x1, x2])`` is ``Multiply(**kwargs)([x1, x2])``."""
    return Multiply(**kwargs)(inputs)
