"""``Dot``: the per-sample dot product of two tensors along one axis of each."""

from __future__ import annotations

import math

import numpy as np

from lamina import backend, ops
from lamina.autodiff import record, unwrap
from lamina.layers.base_merge import Merge


def l2_normalize(x, axis: int):
    """``y = x / max(||x||, eps)`` with ``||x|| = sqrt(sum(x**2, axis))`` and ``eps = backend.epsilon()``.

    vjp: ``(g - y * sum(g * y, axis)) / ||x||`` where ``||x|| > eps``, else ``g / eps`` (the floor is a
    constant), so a zero vector maps to zero with a finite gradient.
    """
    xv = unwrap(x)
    norm = np.sqrt(np.sum(np.square(xv), axis=axis, keepdims=True))
    eps = np.asarray(backend.epsilon(), dtype=xv.dtype)
    above = norm > eps
    denom = np.where(above, norm, eps)
    out = xv / denom

    def vjp(g):
        return ((g - np.where(above, out * np.sum(g * out, axis=axis, keepdims=True), 0)) / denom,)

    return record(out, (x,), vjp)


class Dot(Merge):
    """``Dot(axes)([x, y])``: for each sample ``b``, ``tensordot(x[b], y[b])`` over axis ``axes[0]`` of
    ``x`` and ``axes[1]`` of ``y`` (an int is used for both; negative counts from the end; the batch
    axis 0 cannot be one). The output is ``(batch,) + x's other axes + y's other axes``, at least
    ``(batch, 1)``. ``normalize=True`` L2-normalizes both along their axis first (cosine similarity).
    """

    def __init__(self, axes, normalize: bool = False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axes, int):
            if not isinstance(axes, (list, tuple)):
                raise TypeError(
                    f"Invalid type for argument `axes`: it should be a list or an int. Received: axes={axes}"
                )
            if len(axes) != 2:
                raise ValueError(
                    f"Invalid format for argument `axes`: it should contain two elements. Received: axes={axes}"
                )
            if not all(isinstance(a, int) for a in axes):
                raise ValueError(
                    "Invalid format for argument `axes`: list elements should be integers. "
                    f"Received: axes={axes}"
                )
        self.axes = axes
        self.normalize = normalize

    def _pair(self, shapes) -> tuple:
        """The two shapes; raises unless there are exactly two."""
        if not isinstance(shapes, (list, tuple)) or len(shapes) != 2 or not all(
                isinstance(s, (list, tuple)) for s in shapes):
            raise ValueError(
                f"A `Dot` layer should be called on a list of 2 inputs. Received: input_shape={shapes}"
            )
        return tuple(shapes[0]), tuple(shapes[1])

    def _resolved_axes(self, shape1: tuple, shape2: tuple) -> tuple[int, int]:
        """``axes`` as two non-negative axes, checked against the shapes."""
        wanted = (self.axes, self.axes) if isinstance(self.axes, int) else tuple(self.axes)
        axes = []
        for a, s in zip(wanted, (shape1, shape2), strict=True):
            if not -len(s) <= a < len(s) or a % len(s) == 0:
                raise ValueError(
                    f"Dot layer '{self.name}': each of `axes` must name a non-batch axis of its input "
                    f"(axis 0, the batch axis, cannot be one). Received: axes={self.axes}, "
                    f"input shapes {shape1} and {shape2}"
                )
            axes.append(a % len(s))
        d1, d2 = shape1[axes[0]], shape2[axes[1]]
        if d1 is not None and d2 is not None and d1 != d2:
            raise ValueError(
                f"Incompatible input shapes: axis values {d1} (at axis {axes[0]}) != {d2} (at axis {axes[1]}). "
                f"Full input shapes: {shape1}, {shape2}"
            )
        return axes[0], axes[1]

    def build(self, input_shape) -> None:
        shape1, shape2 = self._pair(input_shape)
        self._resolved_axes(shape1, shape2)
        self.built = True

    def compute_output_shape(self, input_shape):
        shape1, shape2 = self._pair(input_shape)
        a1, a2 = self._resolved_axes(shape1, shape2)
        out = tuple(d for i, d in enumerate(shape1) if i != a1) + tuple(
            d for i, d in enumerate(shape2) if i not in (0, a2))
        return out if len(out) > 1 else out + (1,)

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            got = f"{len(inputs)} inputs" if isinstance(inputs, (list, tuple)) else "a single tensor"
            raise ValueError(f"A `Dot` layer should be called on exactly 2 inputs. Received: {got}")
        x, y = inputs
        shape1, shape2 = tuple(np.shape(unwrap(x))), tuple(np.shape(unwrap(y)))
        if shape1[:1] != shape2[:1]:
            raise ValueError(
                f"Dot layer '{self.name}' cannot take the dot product of inputs with different batch sizes. "
                f"Received: input shapes {shape1} and {shape2}"
            )
        a1, a2 = self._resolved_axes(shape1, shape2)
        if self.normalize:
            x, y = l2_normalize(x, a1), l2_normalize(y, a2)
        return _batch_dot(x, y, shape1, shape2, a1, a2)

    def compute_mask(self, inputs, mask=None):
        return None

    def _graph_mask(self, inputs: list, masks: list):
        return None  # a dot product has no mask

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"axes": self.axes, "normalize": self.normalize})
        return config


def _batch_dot(x, y, shape1: tuple, shape2: tuple, a1: int, a2: int):
    """Contract ``x``'s axis ``a1`` with ``y``'s axis ``a2`` sample by sample, as one batched matmul:
    ``x`` becomes ``(batch, m, d)`` and ``y`` ``(batch, d, n)``."""
    rest1 = tuple(d for i, d in enumerate(shape1) if i not in (0, a1))
    rest2 = tuple(d for i, d in enumerate(shape2) if i not in (0, a2))
    batch, depth = shape1[0], shape1[a1]
    x = ops.transpose(x, [i for i in range(len(shape1)) if i != a1] + [a1])
    y = ops.transpose(y, [0, a2] + [i for i in range(1, len(shape2)) if i != a2])
    out = ops.matmul(ops.reshape(x, (batch, math.prod(rest1), depth)),
                     ops.reshape(y, (batch, depth, math.prod(rest2))))
    return ops.reshape(out, (batch,) + (rest1 + rest2 or (1,)))


def dot(inputs, axes=-1, **kwargs):
    """Functional form: ``dot([x1, x2], axes)`` is ``Dot(axes, **kwargs)([x1, x2])``."""
    return Dot(axes=axes, **kwargs)(inputs)
