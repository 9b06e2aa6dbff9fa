"""Global pooling: ``GlobalAveragePooling1D/2D/3D`` and ``GlobalMaxPooling1D/2D/3D``.

Each reduces every spatial axis of a ``(batch, *spatial, channels)`` input (``channels_first``:
``(batch, channels, *spatial)``) to one value per channel: the mean, or the maximum.
"""

from __future__ import annotations

from lamina import ops
from lamina.layers.flatten import standardize_data_format
from lamina.layers.layer import InputSpec, Layer


class _GlobalPooling(Layer):
    """Shared arguments, output shape and config of the global pooling layers."""

    _dims = 0

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format, type(self).__name__)
        self.keepdims = keepdims
        self.input_spec = InputSpec(ndim=self._dims + 2)
        self._build_at_init()

    def _axes(self) -> tuple:
        start = 1 if self.data_format == "channels_last" else 2
        return tuple(range(start, start + self._dims))

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        channel = input_shape[-1] if self.data_format == "channels_last" else input_shape[1]
        if not self.keepdims:
            return (input_shape[0], channel)
        ones = (1,) * (len(input_shape) - 2)
        if self.data_format == "channels_last":
            return (input_shape[0], *ones, channel)
        return (input_shape[0], channel, *ones)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"data_format": self.data_format, "keepdims": self.keepdims})
        return config


class _GlobalAverage(_GlobalPooling):
    def call(self, inputs):
        return ops.mean(inputs, axis=self._axes(), keepdims=self.keepdims)


class _GlobalMax(_GlobalPooling):
    def call(self, inputs):
        # ties share the gradient equally, as torch.amax's backward does
        return ops.max(inputs, axis=self._axes(), keepdims=self.keepdims)


class GlobalAveragePooling1D(_GlobalAverage):
    """Mean over the steps axis. With ``mask`` (``(batch, steps)``, True keeps a step) the mean runs over
    the kept steps only: ``sum(x * m) / sum(m)``. The output carries no mask."""

    _dims = 1

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(data_format=data_format, keepdims=keepdims, **kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return super().call(inputs)
        axis = self._axes()[0]
        keep = ops.expand_dims(ops.cast(mask, "bool"), 2 if self.data_format == "channels_last" else 1)
        inputs = ops.where(keep, inputs, 0)
        count = ops.sum(ops.cast(keep, inputs.dtype), axis=axis, keepdims=self.keepdims)
        return ops.sum(inputs, axis=axis, keepdims=self.keepdims) / count

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def _may_start_mask(self) -> bool:
        return False  # the pooled output has no time axis left to mask


class GlobalAveragePooling2D(_GlobalAverage):
    """Mean over both spatial axes."""

    _dims = 2


class GlobalAveragePooling3D(_GlobalAverage):
    """Mean over the three spatial axes."""

    _dims = 3


class GlobalMaxPooling1D(_GlobalMax):
    """Maximum over the steps axis. As in Keras it does not support masking: masked steps count too, and a
    masked input gets Keras's warning that the mask is dropped."""

    _dims = 1


class GlobalMaxPooling2D(_GlobalMax):
    """Maximum over both spatial axes."""

    _dims = 2


class GlobalMaxPooling3D(_GlobalMax):
    """Maximum over the three spatial axes."""

    _dims = 3


# Keras's short aliases
GlobalAvgPool1D = GlobalAveragePooling1D
GlobalAvgPool2D = GlobalAveragePooling2D
GlobalAvgPool3D = GlobalAveragePooling3D
GlobalMaxPool1D = GlobalMaxPooling1D
GlobalMaxPool2D = GlobalMaxPooling2D
GlobalMaxPool3D = GlobalMaxPooling3D
