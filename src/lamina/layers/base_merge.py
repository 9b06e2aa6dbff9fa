"""``Merge``: the private base of the elementwise merge layers (Add, Subtract, Multiply, Average).

A merge layer takes a list of tensors with a common batch size. Their non-batch shapes must be
broadcast-compatible (right-aligned, sizes equal or 1); an input of lower rank is given size-1 axes
after the batch axis first, as Keras does, so ``(batch, 3)`` merges with ``(batch, 4, 3)``.
"""

from __future__ import annotations

import numpy as np

from lamina import ops
from lamina.autodiff import unwrap
from lamina.layers.layer import Layer


def _is_shape(s) -> bool:
    return isinstance(s, (tuple, list)) and all(d is None or isinstance(d, (int, np.integer)) for d in s)


class Merge(Layer):
    """Base class: subclasses define ``_merge_function(list_of_tensors)``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def _expects_list(self) -> bool:
        return True

    def _merge_function(self, inputs):
        raise NotImplementedError

    # ------------------------------------------------------------------ shapes

    def _check_list(self, input_shape) -> list:
        if not isinstance(input_shape, (list, tuple)) or not input_shape or not all(
            _is_shape(s) for s in input_shape
        ) or _is_shape(input_shape):
            raise ValueError(
                f"A merge layer ({type(self).__name__} '{self.name}') should be called on a list of "
                f"inputs. Received: input_shape={input_shape} (not a list of shapes)"
            )
        return [tuple(s) for s in input_shape]

    def _broadcast_shape(self, shapes: list) -> tuple:
        """The merged shape without the batch axis; raises on mismatched batch sizes or axes."""
        batch = {s[0] for s in shapes if s} - {None}
        if len(batch) > 1:
            raise ValueError(
                f"{type(self).__name__} layer '{self.name}' cannot merge tensors with different batch "
                f"sizes. Received: input_shape={shapes}"
            )
        out: tuple = tuple(shapes[0][1:])
        for s in shapes[1:]:
            a, b = (out, tuple(s[1:])) if len(out) >= len(s) - 1 else (tuple(s[1:]), out)
            merged = list(a[:len(a) - len(b)])
            for i, j in zip(a[len(a) - len(b):], b, strict=True):
                known = {d for d in (i, j) if d is not None and d != 1}
                if len(known) > 1:
                    raise ValueError(
                        f"{type(self).__name__} layer '{self.name}': inputs have incompatible shapes "
                        f"(each axis must match or be 1). Received: input_shape={shapes}"
                    )
                merged.append(known.pop() if known else (None if None in (i, j) else 1))
            out = tuple(merged)
        return out

    def build(self, input_shape) -> None:
        shapes = self._check_list(input_shape)
        self._broadcast_shape(shapes)
        self.built = True

    def compute_output_shape(self, input_shape):
        shapes = self._check_list(input_shape)
        rest = self._broadcast_shape(shapes)
        batch = {s[0] for s in shapes if s} - {None}
        return (batch.pop() if batch else None,) + rest

    # ------------------------------------------------------------------ call

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(
                f"A merge layer ({type(self).__name__} '{self.name}') should be called on a list of "
                f"inputs. Received: a single tensor of shape {np.shape(unwrap(inputs))}"
            )
        inputs = list(inputs)
        shapes = [tuple(np.shape(unwrap(x))) for x in inputs]
        self._broadcast_shape(self._check_list(shapes))
        ndims = [len(s) for s in shapes]
        top = max(ndims)
        if min(ndims) != top:
            # Keras's rule: a lower-rank input gets new axes right after the batch axis.
            inputs = [ops.reshape(x, (s[0],) + (1,) * (top - len(s)) + s[1:]) if len(s) < top and s else x
                      for x, s in zip(inputs, shapes, strict=True)]
        return self._merge_function(inputs)
