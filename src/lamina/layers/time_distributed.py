"""``TimeDistributed``: applies one layer to every temporal slice ``x[:, t]`` of its input."""

from __future__ import annotations

import inspect

from lamina import backend, ops
from lamina.layers.layer import Layer
from lamina.layers.wrapper import Wrapper


class TimeDistributed(Wrapper):
    """``output[:, t] = layer(inputs[:, t])`` for every timestep ``t`` of a ``(batch, time, ...)`` input,
    the inner layer (and its weights) shared by all timesteps.

    As Keras, the inner layer is called once per timestep (not on a ``(batch * time, ...)`` reshape),
    so a layer with batch statistics (``BatchNormalization`` in training) sees each timestep's batch.
    """

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise ValueError(
                "Please initialize `TimeDistributed` layer with a `lamina.layers.Layer` instance. "
                f"Received: {layer}"
            )
        super().__init__(layer, **kwargs)
        self.supports_masking = True

    def _get_child_input_shape(self, input_shape):
        if not isinstance(input_shape, (tuple, list)) or len(input_shape) < 3:
            raise ValueError(
                "`TimeDistributed` Layer should be passed an `input_shape` with at least 3 dimensions, "
                f"received: {input_shape}"
            )
        return (input_shape[0], *input_shape[2:])

    def build(self, input_shape) -> None:
        super().build(self._get_child_input_shape(tuple(input_shape)))

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        child = tuple(self.layer.compute_output_shape(self._get_child_input_shape(input_shape)))
        return (child[0], input_shape[1], *child[1:])

    def call(self, inputs, training=None, mask=None):
        shape = tuple(ops.shape(inputs))
        if len(shape) < 3:
            raise ValueError(f"`TimeDistributed` layer '{self.name}' expects inputs of rank >= 3 "
                             f"(batch, time, ...). Received: inputs.shape={shape}")
        if mask is None:
            mask = backend.get_keras_mask(inputs)
        if mask is not None:
            _check_mask(mask, shape)
        kwargs = {}
        params = inspect.signature(self.layer.call).parameters
        if self.layer._call_has_training:
            kwargs["training"] = training
        slices = ops.unstack(inputs, axis=1)
        outputs = []
        for t, x_t in enumerate(slices):
            if mask is not None and "mask" in params:
                kwargs["mask"] = ops.convert_to_numpy(mask)[:, t]
            outputs.append(self.layer.call(x_t, **kwargs))
        return ops.stack(outputs, axis=1)


def _check_mask(mask, input_shape) -> None:
    mask_shape = tuple(ops.shape(mask))
    if len(mask_shape) < 2:
        raise ValueError(
            "The `mask` passed to the `TimeDistributed` layer must be at least 2D (e.g., `(batch_size, "
            f"timesteps)`), but it has {len(mask_shape)} dimension(s). Received: mask.shape={mask_shape}"
        )
    if mask_shape[:2] != input_shape[:2]:
        raise ValueError(
            f"The `mask` passed to the `TimeDistributed` layer has a shape {mask_shape} that is incompatible "
            f"with the input shape {input_shape}. The first two dimensions of the mask (batch size and "
            f"timesteps) must match the input's first two dimensions. Received: mask.shape={mask_shape}"
        )
