"""``Masking``: marks the timesteps whose features all equal ``mask_value`` as padding."""

from __future__ import annotations

import numpy as np

from lamina import backend, ops
from lamina.autodiff import unwrap
from lamina.layers.keras_tensor import KerasTensor
from lamina.layers.layer import Layer


class Masking(Layer):
    """A timestep ``t`` of ``x`` (shape ``(batch, timesteps, ..., features)``) is kept where
    ``any(x[..., t, :] != mask_value)``; the output is ``x`` on kept timesteps and 0 on masked ones.

    ``compute_mask(x)`` returns that boolean mask (``x``'s shape without the last axis; True keeps); the
    output carries it (``backend.get_keras_mask``) through the layers that support masking (Dense,
    Dropout, the activations...) to those that read it (merges, GlobalAveragePooling1D, BatchNormalization,
    the losses and metrics); on a symbolic input the mask is a graph node a model can return.
    """

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(mask_value, dict) and mask_value.get("config") is not None:
            # Keras writes an array mask_value as a serialized tensor: {"class_name": "__tensor__", ...}
            mask_value = np.asarray(mask_value["config"].get("value"),
                                    dtype=mask_value["config"].get("dtype"))
        try:
            value = np.asarray(mask_value)
        except (TypeError, ValueError):
            value = None
        if value is None or value.dtype.kind not in "biuf":
            raise ValueError(
                f"The `mask_value` of a Masking layer must be a number (or an array of numbers broadcastable "
                f"to the features). Received: mask_value={mask_value!r}"
            )
        self.mask_value = mask_value
        self.supports_masking = True
        self._build_at_init()

    def _keep(self, inputs, keepdims: bool) -> np.ndarray:
        return np.any(np.not_equal(unwrap(inputs), unwrap(self.mask_value)), axis=-1, keepdims=keepdims)

    def compute_mask(self, inputs, mask=None):
        if isinstance(inputs, KerasTensor):
            # Graph ops on the symbolic input: a model can return the mask, a merge layer combine it.
            return ops.any(ops.not_equal(inputs, unwrap(self.mask_value)), axis=-1)
        return self._keep(inputs, keepdims=False)

    def __call__(self, inputs, *args, **kwargs):
        out = super().__call__(inputs, *args, **kwargs)
        if isinstance(out, KerasTensor) and isinstance(inputs, KerasTensor):
            backend.set_keras_mask(out, self.compute_mask(inputs))  # as call() does for arrays
        return out

    def call(self, inputs):
        keep = self._keep(inputs, keepdims=True)
        # ``where`` routes the gradient to the kept timesteps only; masked ones get none.
        out = ops.where(keep, inputs, np.zeros((), dtype=np.asarray(unwrap(inputs)).dtype))
        backend.set_keras_mask(out, keep[..., 0])  # set in call, as Keras does: a model's fast path keeps it
        return out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        value = unwrap(self.mask_value)
        if isinstance(value, (np.ndarray, np.generic)):
            arr = np.asarray(value)
            # Keras's spelling of an array in a config; a 0-d array is a plain number.
            value = arr.item() if arr.ndim == 0 else {
                "class_name": "__numpy__", "config": {"value": arr.tolist(), "dtype": arr.dtype.name}}
        config["mask_value"] = value
        return config
