"""Window pooling shared by ``MaxPooling*`` and ``AveragePooling*``: argument checks, output shapes,
and the forward/backward kernels on strided views (no Python loop over output positions).

For one spatial axis of size ``n``, window ``k`` and stride ``s``: ``"valid"`` gives
``floor((n - k) / s) + 1`` windows; ``"same"`` gives ``ceil(n / s)`` windows over an input padded by
``max((out - 1) * s + k - n, 0)`` in total, the smaller half before. Padded cells never win a max and
never count in a mean (the mean divides by the number of real cells in the window).

The kernels loop over the ``prod(pool_size)`` offsets of a window, not over positions: the cell at
offset ``o`` of every window is one strided view ``xp[o :: strides]`` of the (padded) input, so
``max = maximum(view_0, view_1, ...)`` and ``mean = (view_0 + view_1 + ...) / count`` are a few
whole-array passes. The max's gradient goes to the first maximal cell of each window in row-major
window order (Keras's and torch's tie rule): a running mask of windows still unclaimed, offset by
offset. When windows do not overlap (``strides >= pool_size``) each input cell is in at most one
window and the gradient is written in place, with no scatter-add.

With numba (``lamina.conv_accel``), a "valid" 1D/2D max pooling runs compiled instead: the forward keeps
each window's winner, the backward writes ``g`` there (the same winners, the same numbers). The compiled
training step may also hand the pooling the bias and relu of the convolution before it (``bias``,
``relu``): ``y = relu(max(z + bias))``, and :func:`pool_backward_bias` returns the bias gradient too.
"""

from __future__ import annotations

import numpy as np

from lamina import conv_accel, ops
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


def _views(xp: np.ndarray, pool: tuple, strides: tuple, out: tuple) -> list:
    """One strided view of shape ``(batch, *out, channels)`` per window offset, in row-major order:
    view ``j`` holds the ``j``-th cell of every window."""
    views = []
    for offset in np.ndindex(*pool):
        index = (slice(None),) + tuple(slice(o, o + (n - 1) * s + 1, s) for o, n, s in zip(offset, out, strides))
        views.append(xp[index])
    return views


class PoolContext:
    """What :func:`pool_backward` needs from the forward pass of :func:`pool_forward`."""

    __slots__ = ("xp", "y", "pool", "strides", "out", "crop", "count", "mode", "has_nan", "dtype", "arg", "relu",
                 "result", "in_shape")


def pool_forward(xv: np.ndarray, pool_size: tuple, strides: tuple, padding: str, mode: str, bias=None,
                 relu: bool = False):
    """``(y, context)``: max (``mode="max"``) or average pooling of a channels-last float array; with
    ``bias`` (per channel) and ``relu``, ``relu(pool(xv + bias))`` (the compiled step's fused form)."""
    if mode == "max" and padding == "valid":
        fast = conv_accel.max_pool(xv, pool_size, strides, bias, relu)
        if fast is not None:
            ctx = PoolContext()
            ctx.result, ctx.arg = fast
            ctx.relu, ctx.pool, ctx.strides, ctx.dtype, ctx.in_shape = relu, pool_size, strides, xv.dtype, xv.shape
            return ctx.result, ctx
    if bias is not None:
        xv = xv + np.asarray(bias, dtype=xv.dtype)
    y, ctx = _pool_numpy(xv, pool_size, strides, padding, mode)
    ctx.arg, ctx.relu, ctx.in_shape = None, relu, xv.shape
    # relu on a new array: the context keeps the pre-relu maxima for the winners
    ctx.result = np.maximum(y, 0) if relu else y
    return ctx.result, ctx


def _pool_numpy(xv: np.ndarray, pool_size: tuple, strides: tuple, padding: str, mode: str):
    """The NumPy path of :func:`pool_forward` (no bias, no relu)."""
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
    xp = np.pad(xv, widths, constant_values=-np.inf if mode == "max" else 0) if padded else xv
    views = _views(xp, pool_size, strides, out)
    ctx = PoolContext()
    ctx.xp, ctx.pool, ctx.strides, ctx.out, ctx.mode, ctx.dtype = xp, pool_size, strides, out, mode, xv.dtype
    ctx.crop = (slice(None),) + tuple(slice(p[1], p[1] + n) for p, n in zip(plans, spatial)) if padded else None
    y = views[0].copy() if len(views) == 1 else (np.maximum if mode == "max" else np.add)(views[0], views[1])
    reduce = np.maximum if mode == "max" else np.add
    for v in views[2:]:
        reduce(y, v, out=y)
    if mode == "max":
        ctx.count = None
        ctx.has_nan = bool(np.isnan(y).any())  # NaN windows route their gradient by torch's rule
    else:
        ctx.has_nan = False
        if padded:
            ones = np.pad(np.ones((1, *spatial, 1), xv.dtype), widths)
            ctx.count = sum(_views(ones, pool_size, strides, out))
        else:
            ctx.count = xv.dtype.type(int(np.prod(pool_size)))
        y /= ctx.count
    ctx.y = y
    return y, ctx


def _disjoint(ctx: PoolContext) -> bool:
    """Is every input cell in at most one window?"""
    return all(s >= k for s, k in zip(ctx.strides, ctx.pool))


def _covers(ctx: PoolContext) -> bool:
    """Is every (padded) input cell in exactly one window (the gradient array needs no zeroing)?"""
    return all(s == k and n * s == size for s, k, n, size in zip(ctx.strides, ctx.pool, ctx.out, ctx.xp.shape[1:-1]))


def _max_winners(ctx: PoolContext, views: list):
    """Yield ``(j, mask)``: the windows whose gradient goes to their cell at offset ``j`` (its first
    maximal cell, in row-major window order; in a window holding NaN, its last NaN, as torch's kernels,
    where each NaN met compares as the new maximum)."""
    y = ctx.y
    last = len(views) - 1
    nan_masks = _last_nan_masks(y, views) if ctx.has_nan else None
    unclaimed = None  # windows whose gradient no earlier cell took
    for j, v in enumerate(views):
        if j == last and nan_masks is None and unclaimed is not None:
            yield j, unclaimed  # the max is in every window: the cells left unclaimed hold it
            return
        win = np.equal(v, y)
        if unclaimed is None:
            unclaimed = np.logical_not(win)
        else:
            win &= unclaimed
            unclaimed ^= win
        if nan_masks is not None:
            win |= nan_masks[j]
        yield j, win


def _last_nan_masks(y: np.ndarray, views: list) -> list:
    """Per offset, the NaN windows whose last NaN sits there."""
    unclaimed = np.isnan(y)
    masks = [None] * len(views)
    for j in range(len(views) - 1, -1, -1):
        masks[j] = np.isnan(views[j]) & unclaimed
        unclaimed ^= masks[j]
    return masks


def pool_backward(g: np.ndarray, ctx: PoolContext) -> np.ndarray:
    """The gradient with respect to the input of :func:`pool_forward`, given the output's gradient ``g``."""
    g = np.asarray(g, dtype=ctx.dtype)
    if ctx.arg is not None:
        return conv_accel.max_pool_backward(g, ctx.arg, ctx.result, ctx.in_shape, ctx.pool, ctx.strides, ctx.relu)[0]
    return _backward_numpy(g * (ctx.result > 0) if ctx.relu else g, ctx)


def pool_backward_bias(g: np.ndarray, ctx: PoolContext) -> tuple:
    """``(dx, dbias)``: :func:`pool_backward` and the gradient of the ``bias`` given to :func:`pool_forward`
    (``dbias = sum of g * relu'`` per channel, float64 on the compiled path)."""
    g = np.asarray(g, dtype=ctx.dtype)
    if ctx.arg is not None:
        return conv_accel.max_pool_backward(g, ctx.arg, ctx.result, ctx.in_shape, ctx.pool, ctx.strides, ctx.relu)
    if ctx.relu:
        g = g * (ctx.result > 0)
    db = np.add.reduce(g.reshape(-1, g.shape[-1]), axis=0)
    return _backward_numpy(g, ctx), db


def _backward_numpy(g: np.ndarray, ctx: PoolContext) -> np.ndarray:
    """The NumPy path of :func:`pool_backward` (``g`` already masked by the relu)."""
    xp = ctx.xp
    grad = np.empty(xp.shape, dtype=ctx.dtype) if _covers(ctx) else np.zeros(xp.shape, dtype=ctx.dtype)
    grad_views = _views(grad, ctx.pool, ctx.strides, ctx.out)
    disjoint = _disjoint(ctx)  # each input cell is in one window at most: write, do not add
    if ctx.mode == "average":
        share = g / ctx.count
        for view in grad_views:
            if disjoint:
                np.copyto(view, share)
            else:
                view += share
    else:
        for j, win in _max_winners(ctx, _views(xp, ctx.pool, ctx.strides, ctx.out)):
            if disjoint:
                np.multiply(g, win, out=grad_views[j])
            else:
                grad_views[j] += g * win
    return grad[ctx.crop] if ctx.crop is not None else grad


def pool(x, pool_size: tuple, strides: tuple, padding: str, mode: str):
    """Max or average pooling of a channels-last ``x``; the gradient is recorded on the tape."""
    xv = np.asarray(unwrap(x))
    if not np.issubdtype(xv.dtype, np.floating):
        xv = xv.astype("float32")
    result, ctx = pool_forward(xv, pool_size, strides, padding, mode)

    def vjp(g):
        return (pool_backward(g, ctx),)

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


