"""Window pooling shared by ``MaxPooling*`` and ``AveragePooling*``: argument checks, output shapes,
and the forward/backward kernels on strided views (no Python loop over output positions).

For one spatial axis of size ``n``, window ``k`` and stride ``s``: ``"valid"`` gives
``floor((n - k) / s) + 1`` windows; ``"same"`` gives ``ceil(n / s)`` windows over an input padded by
``max((out - 1) * s + k - n, 0)`` in total, the smaller half before. Padded cells never win a max and
never count in a mean (the mean divides by the number of real cells in the window).
"""

from __future__ import annotations

import numpy as np

from lamina import ops
from lamina.autodiff import record, unwrap
from lamina.layers.flatten import standardize_data_format
from lamina.layers.layer import InputSpec, Layer
from lamina.layers.spatial_arguments import standardize_tuple


def _plan(n: int, k: int, s: int, padding: str) -> tuple[int, int, int]:
    """(windows, pad before, pad after) along one axis."""
    if padding == "valid":
        return (n - k) // s + 1, 0, 0
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2, total - total // 2


def _windows(xp: np.ndarray, pool: tuple, strides: tuple, out: tuple) -> np.ndarray:
    """View of shape ``(batch, *out, channels, *pool)`` over the padded channels-last ``xp``."""
    dims = len(pool)
    view = np.lib.stride_tricks.sliding_window_view(xp, pool, axis=tuple(range(1, dims + 1)))
    index = (slice(None),) + tuple(slice(0, o * s, s) for o, s in zip(out, strides))
    return view[index]


def _offsets(pool: tuple):
    """Each window offset with its flat index in the window."""
    return enumerate(np.ndindex(*pool))


def _scatter(grad: np.ndarray, offset: tuple, strides: tuple, out: tuple, values: np.ndarray) -> None:
    """``grad[:, offset + i * strides, :] += values[:, i, :]`` for all output positions ``i``."""
    index = (slice(None),) + tuple(slice(o, o + n * s, s) for o, n, s in zip(offset, out, strides))
    grad[index] += values


def pool(x, pool_size: tuple, strides: tuple, padding: str, mode: str):
    """Max or average pooling of a channels-last ``x``; the gradient is recorded on the tape."""
    xv = np.asarray(unwrap(x))
    if not np.issubdtype(xv.dtype, np.floating):
        xv = xv.astype("float32")
    spatial = xv.shape[1:-1]
    plans = [_plan(n, k, s, padding) for n, k, s in zip(spatial, pool_size, strides)]
    out = tuple(p[0] for p in plans)
    if min(out, default=1) <= 0:
        raise ValueError(
            f"Pooling with pool_size={pool_size}, strides={strides} and padding='{padding}' leaves no window "
            f"in an input of spatial shape {spatial}. Received: input_shape={xv.shape}"
        )
    widths = [(0, 0)] + [(p[1], p[2]) for p in plans] + [(0, 0)]
    padded = any(p[1] or p[2] for p in plans)
    fill = -np.inf if mode == "max" else 0
    xp = np.pad(xv, widths, constant_values=fill) if padded else xv
    win = _windows(xp, pool_size, strides, out)
    flat = win.reshape(win.shape[: xv.ndim] + (-1,))
    if mode == "max":
        arg = np.argmax(flat, axis=-1)  # the first maximal cell wins ties, as torch's kernels
        result = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
        count = None
    else:
        ones = np.pad(np.ones((1, *spatial, 1), xv.dtype), widths) if padded else np.ones((1, *spatial, 1), xv.dtype)
        count = _windows(ones, pool_size, strides, out).reshape(1, *out, 1, -1).sum(axis=-1)
        result = flat.sum(axis=-1) / count
        arg = None
    result = result.astype(xv.dtype)

    def vjp(g):
        grad = np.zeros(xp.shape, dtype=xv.dtype)
        g = np.asarray(g, dtype=xv.dtype)
        share = g / count if mode == "average" else None
        # one pass per window offset (k**d of them), each a strided add over all positions
        for j, offset in _offsets(pool_size):
            _scatter(grad, offset, strides, out, share if mode == "average" else np.where(arg == j, g, 0))
        if padded:
            grad = grad[(slice(None),) + tuple(slice(p[1], p[1] + n) for p, n in zip(plans, spatial))]
        return (grad,)

    return record(result, (x,), vjp)


class BasePooling(Layer):
    """Shared arguments, output shape and config of the max and average pooling layers."""

    _dims = 0
    _mode = "max"

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.pool_size = standardize_tuple(pool_size, self._dims, "pool_size")
        strides = pool_size if strides is None else strides
        self.strides = standardize_tuple(strides, self._dims, "strides", allow_zero=True)
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(
                f"The `padding` argument of {type(self).__name__} must be one of 'valid', 'same'. "
                f"Received: padding={padding!r}"
            )
        self.padding = padding
        self.data_format = standardize_data_format(data_format, type(self).__name__)
        self.input_spec = InputSpec(ndim=self._dims + 2)
        self._build_at_init()

    def call(self, inputs):
        if 0 in self.strides:
            raise ValueError(f"{type(self).__name__} needs strides > 0. Received: strides={self.strides}")
        first = self.data_format == "channels_first"
        if first:
            inputs = ops.transpose(inputs, (0, *range(2, self._dims + 2), 1))
        out = pool(inputs, self.pool_size, self.strides, self.padding.lower(), self._mode)
        if first:
            out = ops.transpose(out, (0, self._dims + 1, *range(1, self._dims + 1)))
        return out

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        first = self.data_format == "channels_first"
        spatial = input_shape[2:] if first else input_shape[1:-1]
        padding = self.padding.lower()
        sizes = []
        for n, k, s in zip(spatial, self.pool_size, self.strides):
            if n is None:
                sizes.append(None)
                continue
            size = _plan(n, k, max(s, 1), padding)[0]
            if size <= 0:
                raise ValueError(
                    "Computed output size would be negative. Received: "
                    f"`inputs.shape={input_shape}` and `pool_size={self.pool_size}`."
                )
            sizes.append(size)
        if first:
            return (input_shape[0], input_shape[1], *sizes)
        return (input_shape[0], *sizes, input_shape[-1])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"pool_size": self.pool_size, "padding": self.padding, "strides": self.strides,
                       "data_format": self.data_format})
        return config


