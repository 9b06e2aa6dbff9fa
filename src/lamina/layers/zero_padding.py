"""``ZeroPadding1D/2D/3D``: zeros added before and after each spatial axis."""

from __future__ import annotations

from lamina import ops
from lamina.layers.flatten import standardize_data_format
from lamina.layers.layer import InputSpec, Layer
from lamina.layers.spatial_arguments import spatial_axes, standardize_pairs, standardize_tuple


class _ZeroPadding(Layer):
    """Pads the ``rank`` spatial axes of a ``(batch, *spatial, channels)`` input (channels second with
    ``data_format="channels_first"``) with ``padding[i] = (before, after)`` zeros."""

    rank = 0

    def _finish(self, data_format) -> None:
        self.data_format = standardize_data_format(data_format, type(self).__name__)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def _pairs(self) -> tuple:
        return self.padding

    def _widths(self) -> list:
        widths = [(0, 0)] * (self.rank + 2)
        for axis, pair in zip(spatial_axes(self.data_format, self.rank), self._pairs()):
            widths[axis] = tuple(pair)
        return widths

    def call(self, inputs):
        return ops.pad(inputs, self._widths())

    def compute_output_shape(self, input_shape):
        out = list(input_shape)
        for axis, (before, after) in zip(spatial_axes(self.data_format, self.rank), self._pairs()):
            if out[axis] is not None:
                out[axis] += before + after
        return tuple(out)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(padding=self.padding, data_format=self.data_format)
        return config


class ZeroPadding1D(_ZeroPadding):
    """``padding``: an int (both ends) or ``(before, after)`` for the steps axis."""

    rank = 1

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = standardize_tuple(padding, 2, "padding", allow_zero=True)
        self._finish(data_format)

    def _pairs(self) -> tuple:
        return (self.padding,)


class ZeroPadding2D(_ZeroPadding):
    """``padding``: an int, ``(rows, cols)`` (symmetric) or ``((top, bottom), (left, right))``."""

    rank = 2

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = standardize_pairs(padding, 2, "padding", "ZeroPadding2D",
                                         "((top_pad, bottom_pad), (left_pad, right_pad))")
        self._finish(data_format)


class ZeroPadding3D(_ZeroPadding):
    """``padding``: an int, 3 ints (symmetric) or 3 ``(before, after)`` pairs for the 3 spatial axes."""

    rank = 3

    def __init__(self, padding=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = standardize_pairs(padding, 3, "padding", "ZeroPadding3D",
                                         "((left_dim1_pad, right_dim1_pad), (left_dim2_pad, right_dim2_pad), "
                                         "(left_dim3_pad, right_dim3_pad))")
        self._finish(data_format)
