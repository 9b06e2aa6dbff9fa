"""``AveragePooling1D/2D/3D``: the mean of each window (see ``lamina.layers.pooling``)."""

from __future__ import annotations

from lamina.layers.pooling import BasePooling


class AveragePooling1D(BasePooling):
    """Mean over windows of ``pool_size`` steps (default 2), moved by ``strides`` (default: ``pool_size``)."""

    _dims = 1
    _mode = "average"

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, padding=padding, data_format=data_format, name=name, **kwargs)


class AveragePooling2D(BasePooling):
    """Mean over ``pool_size`` windows (default ``(2, 2)``); "same" padding divides by the real cells only."""

    _dims = 2
    _mode = "average"

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, padding=padding, data_format=data_format, name=name, **kwargs)


class AveragePooling3D(BasePooling):
    """Mean over ``pool_size`` windows (default ``(2, 2, 2)``)."""

    _dims = 3
    _mode = "average"

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, padding=padding, data_format=data_format, name=name, **kwargs)


AvgPool1D, AvgPool2D, AvgPool3D = AveragePooling1D, AveragePooling2D, AveragePooling3D  # Keras's short aliases
