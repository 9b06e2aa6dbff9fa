"""``Merge``: the private base of the elementwise merge layers (Add, Subtract, Multiply, Average).

A merge layer takes a list of tensors with a common batch size. Their non-batch shapes must be
broadcast-compatible (right-aligned, sizes equal or 1); an input of lower rank is given size-1 axes
after the batch axis first, as Keras does, so ``(batch, 3)`` merges with ``(batch, 4, 3)``.
"""

from __future__ import annotations

import numpy as np

from lamina import backend, ops
from lamina.autodiff import unwrap
from lamina.layers.keras_tensor import KerasTensor
from lamina.layers.layer import Layer, shape_of


def _is_shape(s) -> bool:
    return isinstance(s, (tuple, list)) and all(d is None or isinstance(d, (int, np.integer)) for d in s)


def _describe(x) -> str:
    """A short word for a mask or input in a message: its shape, not its values."""
    if isinstance(x, (list, tuple)):
        return f"a {type(x).__name__} of {len(x)}"
    if x is None:
        return "None"
    return f"a {type(x).__name__} of shape {shape_of(x)}"


def as_bool_mask(mask) -> np.ndarray:
    """A mask (bool, 0/1 numbers, Variable or Tensor) as a boolean array."""
    return np.asarray(unwrap(mask)).astype(bool)


def attached_masks(inputs: list) -> list | None:
    """The masks attached to ``inputs`` (one entry per input), or None if none has one.

    Read in ``call``, so a merge sees the masks whether a model runs it through ``__call__`` or calls
    ``call`` directly."""
    masks = [backend.get_keras_mask(x) for x in inputs]
    return masks if any(m is not None for m in masks) else None


def attach_mask(out, mask):
    """``out`` with ``mask`` attached (unless it already has one); returns ``out``."""
    if mask is not None and backend.get_keras_mask(out) is None:
        backend.set_keras_mask(out, mask)
    return out


def symbolic_mask(shape) -> KerasTensor:
    """The mask of a symbolic call: a boolean placeholder of ``shape``."""
    return KerasTensor(shape, dtype="bool")


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

    # ------------------------------------------------------------------ masks

    def _mask_list(self, inputs, mask):
        """``mask`` as a list with one entry per input, or None; Keras's errors otherwise."""
        if mask is None:
            return None
        if not isinstance(mask, (tuple, list)):
            raise ValueError(
                f"`mask` should be a list. {type(self).__name__} layer '{self.name}' takes one mask per input. "
                f"Received: mask={_describe(mask)}"
            )
        if not isinstance(inputs, (tuple, list)):
            raise ValueError(
                f"`inputs` should be a list. {type(self).__name__} layer '{self.name}' merges a list of tensors. "
                f"Received: inputs={_describe(inputs)}"
            )
        if len(mask) != len(inputs):
            raise ValueError(
                f"The lists `inputs` and `mask` should have the same length. Received: inputs of length "
                f"{len(inputs)}, and mask of length {len(mask)}"
            )
        return list(mask)

    def compute_mask(self, inputs, mask=None):
        """The OR of the inputs' masks (a step is kept if any input keeps it); None if any input has none."""
        masks = self._mask_list(inputs, mask)
        if masks is None or any(m is None for m in masks):
            return None
        if any(isinstance(m, KerasTensor) for m in masks):
            return symbolic_mask(self._broadcast_shape([(None,) + tuple(m.shape) for m in masks]))
        out = as_bool_mask(masks[0])
        for m in masks[1:]:
            out = np.logical_or(out, as_bool_mask(m))
        return out

    def _graph_mask(self, inputs: list, masks: list):
        """:meth:`compute_mask` as graph ops on symbolic inputs and their masks (None entries: no mask),
        so a model can return the output's mask: here the OR of the masks, None if an input has none."""
        if any(m is None for m in masks):
            return None
        out = masks[0]
        for m in masks[1:]:
            out = ops.logical_or(out, m)
        return out

    # ------------------------------------------------------------------ call

    def __call__(self, inputs, *args, **kwargs):
        out = super().__call__(inputs, *args, **kwargs)
        if isinstance(out, KerasTensor) and isinstance(inputs, (list, tuple)) and \
                all(isinstance(x, KerasTensor) for x in inputs):
            masks = attached_masks(list(inputs))  # a symbolic Masking output carries its mask's graph node
            if masks is not None:
                attach_mask(out, self._graph_mask(list(inputs), masks))
        return out

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(
                f"A merge layer ({type(self).__name__} '{self.name}') should be called on a list of "
                f"inputs. Received: a single tensor of shape {np.shape(unwrap(inputs))}"
            )
        inputs = list(inputs)
        masks = attached_masks(inputs)
        shapes = [tuple(np.shape(unwrap(x))) for x in inputs]
        self._broadcast_shape(self._check_list(shapes))
        ndims = [len(s) for s in shapes]
        top = max(ndims)
        if min(ndims) != top:
            # Keras's rule: a lower-rank input gets new axes right after the batch axis.
            inputs = [ops.reshape(x, (s[0],) + (1,) * (top - len(s)) + s[1:]) if len(s) < top and s else x
                      for x, s in zip(inputs, shapes, strict=True)]
        if masks is None:
            return self._merge_function(inputs)
        bools = [None if m is None else as_bool_mask(m) for m in masks]
        out = self._masked_merge(inputs, bools) if min(ndims) == top else self._merge_function(inputs)
        return attach_mask(out, self.compute_mask(inputs, bools))

    def _masked_merge(self, inputs, masks):
        """The merge when some inputs carry masks (boolean, the input's shape without the last axis).
        Sums and averages ignore masks, as in Keras; Maximum, Minimum and Multiply override this."""
        return self._merge_function(inputs)

    def _merge_with_or_mask(self, op, inputs, masks):
        """Keras's rule for Maximum and Minimum, which have no identity element: at each step a masked
        entry takes the other operand's value, so ``op`` only ever compares kept values."""
        out, out_mask = None, None
        for x, m in zip(inputs, masks, strict=True):
            shape = np.shape(unwrap(x))
            m = None if m is None else np.broadcast_to(m[..., None], shape)
            if out is None:
                out, out_mask = x, m
                continue
            if m is not None:
                x = ops.where(m, x, out)
            if out_mask is not None:
                out = ops.where(out_mask, out, x)
            out_mask = None if m is None or out_mask is None else np.logical_or(out_mask, m)
            out = op(out, x)
        return out
