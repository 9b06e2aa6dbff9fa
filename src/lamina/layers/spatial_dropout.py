"""``SpatialDropout1D/2D/3D``: dropout of whole feature maps (channels) rather than single entries."""

from __future__ import annotations

from lamina.layers.dropout import Dropout
from lamina.layers.flatten import standardize_data_format
from lamina.layers.layer import InputSpec


class _SpatialDropout(Dropout):
    """While training, each (sample, channel) pair is kept with probability ``1 - rate`` (and scaled by
    ``1 / (1 - rate)``) or zeroed across every spatial position; otherwise the input passes unchanged.

    The mask has shape ``(batch, 1, ..., 1, channels)`` (``(batch, channels, 1, ..., 1)`` for
    ``channels_first``): Dropout's ``noise_shape``, fixed by the layer. Neighbouring pixels of one
    feature map are strongly correlated, so dropping them one by one would barely regularise.
    """

    rank = 0

    def __init__(self, rate, seed=None, name=None, dtype=None):
        super().__init__(rate, seed=seed, name=name, dtype=dtype)
        self.data_format = "channels_last"
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def _mask_shape(self, shape: tuple) -> tuple:
        if len(shape) != self.rank + 2:
            raise ValueError(
                f"{type(self).__name__} layer '{self.name}' expects inputs of rank {self.rank + 2} (batch, "
                f"{self.rank} spatial axes, channels). Received: input shape={shape}"
            )
        if self.data_format == "channels_first":
            return (shape[0], shape[1]) + (1,) * self.rank
        return (shape[0],) + (1,) * self.rank + (shape[-1],)

    def get_config(self) -> dict:
        # Keras's spatial dropouts keep only these keys (no noise_shape, no trainable; dtype the variable dtype)
        return {"rate": self.rate, "seed": self.seed, "name": self.name, "dtype": self.dtype}


class SpatialDropout1D(_SpatialDropout):
    """Drops whole feature maps of ``(batch, steps, channels)`` inputs: the mask is ``(batch, 1, channels)``."""

    rank = 1


class SpatialDropout2D(_SpatialDropout):
    """Drops whole feature maps of ``(batch, rows, cols, channels)`` inputs (``(batch, channels, rows,
    cols)`` for ``data_format="channels_first"``)."""

    rank = 2

    def __init__(self, rate, data_format=None, seed=None, name=None, dtype=None):
        super().__init__(rate, seed=seed, name=name, dtype=dtype)
        self.data_format = standardize_data_format(data_format, type(self).__name__)

    def get_config(self) -> dict:
        return {**super().get_config(), "data_format": self.data_format}


class SpatialDropout3D(SpatialDropout2D):
    """Drops whole feature maps of ``(batch, dim1, dim2, dim3, channels)`` inputs (channels at axis 1 for
    ``data_format="channels_first"``)."""

    rank = 3
