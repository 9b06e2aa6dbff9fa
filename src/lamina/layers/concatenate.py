"""``Concatenate``: joins a list of tensors along ``axis``."""

from __future__ import annotations

import numpy as np

from lamina import ops
from lamina.layers.base_merge import Merge, as_bool_mask, attach_mask, attached_masks, symbolic_mask
from lamina.layers.keras_tensor import KerasTensor
from lamina.layers.layer import shape_of


class Concatenate(Merge):
    """``Concatenate(axis=-1)([x1, x2, ...])``: all inputs must have the same rank and the same sizes
    on every axis except ``axis``."""

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"The `axis` of a Concatenate layer must be an integer. Received: axis={axis!r}")
        self.axis = axis

    def _broadcast_shape(self, shapes: list) -> tuple:
        """The concatenated shape (batch axis included); raises where the inputs don't line up."""
        ranks = {len(s) for s in shapes}
        ndim = len(shapes[0])
        if len(ranks) != 1 or not -ndim <= self.axis < ndim:
            raise ValueError(
                f"Concatenate layer '{self.name}' requires inputs of the same rank with axis={self.axis} "
                f"inside it. Received: input_shape={shapes}"
            )
        axis = self.axis % ndim
        out = list(shapes[0])
        for s in shapes[1:]:
            for i, (a, b) in enumerate(zip(out, s, strict=True)):
                if i == axis:
                    out[i] = None if a is None or b is None else a + b
                elif a is None:
                    out[i] = b
                elif b is not None and a != b:
                    raise ValueError(
                        f"Concatenate layer '{self.name}' requires inputs with matching shapes except for "
                        f"the concatenation axis {self.axis}; axis {i} differs. "
                        f"Received: input_shape={shapes}"
                    )
        return tuple(out)

    def compute_output_shape(self, input_shape):
        return self._broadcast_shape(self._check_list(input_shape))

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)):
            return super().call(inputs)  # raises the "list of inputs" error
        self._broadcast_shape(self._check_list([tuple(ops.shape(x)) for x in inputs]))
        out = ops.concatenate(list(inputs), axis=self.axis)
        masks = attached_masks(list(inputs))
        return out if masks is None else attach_mask(out, self.compute_mask(inputs, masks))

    def _graph_mask(self, inputs: list, masks: list):
        """:meth:`compute_mask` as graph ops: each mask widened to its input's shape (True where an input
        has none) by a logical AND with ones of that shape, joined along ``axis``, any over the features."""
        full = []
        for x, m in zip(inputs, masks, strict=True):
            ones = ops.ones_like(x, dtype="bool")
            full.append(ones if m is None else ops.logical_and(ops.expand_dims(m, -1), ones)
                        if len(m.shape) < len(x.shape) else m)
        return ops.any(ops.concatenate(full, axis=self.axis), axis=-1)

    def compute_mask(self, inputs, mask=None):
        """Each input's mask, widened to the input's shape (all True where an input has none), joined
        along ``axis``; a position is kept if any of its features is."""
        masks = self._mask_list(inputs, mask)
        if masks is None or all(m is None for m in masks):
            return None
        shapes = [shape_of(x) for x in inputs]
        known = [m for m in masks if m is not None and not isinstance(m, KerasTensor)]
        if known:  # a symbolic input's unknown sizes (the batch) are read off a given mask
            ref = np.shape(known[0])
            shapes = [tuple(ref[i] if d is None and i < len(ref) else d for i, d in enumerate(s)) for s in shapes]
        if any(isinstance(m, KerasTensor) or (m is None and None in s) for m, s in zip(masks, shapes, strict=True)):
            return symbolic_mask(self.compute_output_shape([tuple(s) for s in shapes])[:-1])
        full = []
        for m, s in zip(masks, shapes, strict=True):
            if m is None:
                full.append(np.ones(s, dtype=bool))
                continue
            m = as_bool_mask(m)
            full.append(np.broadcast_to(m[..., None], s) if m.ndim < len(s) else m)
        return np.any(np.concatenate(full, axis=self.axis), axis=-1)

    def get_config(self) -> dict:
        config = super().get_config()
        config["axis"] = self.axis
        return config


def concatenate(inputs, axis: int = -1, **kwargs):
    """Functional form: ``concatenate([x1, x2], axis)`` is ``Concatenate(axis, **kwargs)([x1, x2])``."""
    return Concatenate(axis=axis, **kwargs)(inputs)
