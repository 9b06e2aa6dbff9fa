"""``Input`` and ``InputLayer``: the entry points of a Functional or Sequential model."""

from __future__ import annotations

from lamina import backend
from lamina.layers.keras_tensor import KerasTensor, Node
from lamina.layers.layer import Layer


class InputLayer(Layer):
    """Holds the symbolic input tensor of a model; ``shape`` excludes the batch dimension."""

    def __init__(self, shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None,
                 input_tensor=None, optional=False, name=None, **kwargs):
        # Keras 2 configs name these differently.
        if "batch_input_shape" in kwargs:
            batch_shape = kwargs.pop("batch_input_shape")
        if "input_shape" in kwargs:
            shape = kwargs.pop("input_shape")
        kwargs.pop("ragged", None)
        if dtype is not None and isinstance(dtype, dict):
            dtype = dtype.get("config", {}).get("name")
        super().__init__(name=name, dtype=dtype, **kwargs)
        if shape is not None and batch_shape is not None:
            raise ValueError(
                "You cannot pass both `shape` and `batch_shape` to InputLayer. "
                f"Received: shape={shape}, batch_shape={batch_shape}"
            )
        if batch_shape is not None:
            batch_shape = tuple(batch_shape)
        elif shape is not None:
            if isinstance(shape, int):
                shape = (shape,)
            try:
                shape = tuple(shape)
            except TypeError:
                raise ValueError(f"Input `shape` must be a tuple of ints. Received: shape={shape!r}") from None
            batch_shape = (batch_size,) + shape
        else:
            raise ValueError("You must pass a `shape` argument to Input/InputLayer. Received: shape=None")
        for d in batch_shape[1:]:
            if d is not None and (not isinstance(d, int) or isinstance(d, bool) or d < 0):
                raise ValueError(
                    f"Input `shape` must contain positive integers or None. Received: shape={batch_shape[1:]}"
                )
        self._batch_shape = batch_shape
        self.sparse = bool(sparse)
        self.optional = optional
        self.built = True
        self._input_dtype = backend.standardize_dtype(dtype) if dtype is not None else backend.floatx()
        tensor = KerasTensor(batch_shape, dtype=self._input_dtype, name=self.name, history=(self, 0, 0))
        self._inbound_nodes.append(Node(self, [], [], [tensor]))
        self.output_tensor = tensor

    @property
    def batch_shape(self) -> tuple:
        return self._batch_shape

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return self._batch_shape

    def get_config(self) -> dict:
        return {"batch_shape": self._batch_shape, "dtype": self._input_dtype, "sparse": self.sparse,
                "ragged": False, "name": self.name, "optional": self.optional}


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None,
          tensor=None, optional=False) -> KerasTensor:
    """A symbolic input of ``shape`` (batch dimension excluded) to build a Functional model."""
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse,
                       batch_shape=batch_shape, name=name, optional=optional)
    return layer.output_tensor
