"""``MaxPooling1D/2D/3D``: the largest value of each window (see ``lamina.layers.pooling``)."""

from __future__ import annotations

from lamina.layers.pooling import BasePooling


class MaxPooling1D(BasePooling):
    """Max over windows of ``pool_size`` steps (default 2), moved by ``strides`` (default: ``pool_size``)."""

    _dims = 1

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, padding=padding, data_format=data_format, name=name, **kwargs)


class MaxPooling2D(BasePooling):
    """Max over ``pool_size`` windows (default ``(2, 2)``); the gradient goes to each window's first maximum."""

    _dims = 2

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, padding=padding, data_format=data_format, name=name, **kwargs)


class MaxPooling3D(BasePooling):
    """Max over ``pool_size`` windows (default ``(2, 2, 2)``)."""

    _dims = 3

    def __init__(self, pool_size=(2, 2, 2), strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, padding=padding, data_format=data_format, name=name, **kwargs)


MaxPool1D, MaxPool2D, MaxPool3D = MaxPooling1D, MaxPooling2D, MaxPooling3D  # Keras's short aliases
