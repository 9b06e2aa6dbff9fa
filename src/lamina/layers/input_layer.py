"""``Input`` and ``InputLayer``: the entry points of a Functional or Sequential model."""

from __future__ import annotations

import warnings

import numpy as np

from lamina import backend
from lamina.layers.keras_tensor import KerasTensor, Node
from lamina.layers.layer import Layer


def _standard_shape(shape, what: str) -> tuple:
    """``shape`` as a tuple of Python ints and Nones (NumPy integers accepted, as Keras does)."""
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise ValueError(f"Input `{what}` must be a tuple of ints. Received: {what}={shape!r}") from None
    out = []
    for d in shape:
        if d is None:
            out.append(None)
        elif isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) and d >= 0:
            out.append(int(d))
        else:
            raise ValueError(f"Input `{what}` must contain non-negative integers or None. Received: {what}={shape}")
    return tuple(out)


def _check_against_tensor(tensor, shape, batch_size, batch_shape, dtype, sparse) -> None:
    """Arguments given next to ``input_tensor`` must describe that tensor."""
    if not isinstance(tensor, KerasTensor):
        raise ValueError(
            "Argument `input_tensor` must be a KerasTensor. "
            f"Received invalid type: input_tensor={tensor!r:.100} (of type {type(tensor).__name__})"
        )
    wrong = None
    if batch_size is not None and (not tensor.shape or tensor.shape[0] != batch_size):
        wrong = "batch_size"
    elif shape is not None and _standard_shape(shape, "shape") != tensor.shape[1:]:
        wrong = "shape"
    elif batch_shape is not None and _standard_shape(batch_shape, "batch_shape") != tensor.shape:
        wrong = "batch_shape"
    elif dtype is not None and backend.standardize_dtype(dtype) != tensor.dtype:
        wrong = "dtype"
    elif sparse is not None and bool(sparse) != tensor.sparse:
        wrong = "sparse"
    if wrong is not None:
        given = {"batch_size": batch_size, "shape": shape, "batch_shape": batch_shape, "dtype": dtype,
                 "sparse": sparse}[wrong]
        raise ValueError(
            f"When providing the `input_tensor` argument, you cannot provide an incompatible `{wrong}` "
            f"argument. Received: {wrong}={given!r} for input_tensor={tensor!r}"
        )


def _batch_shape_of(shape, batch_size, batch_shape) -> tuple:
    if shape is not None and batch_shape is not None:
        raise ValueError("You cannot pass both `shape` and `batch_shape` at the same time. "
                         f"Received: shape={shape}, batch_shape={batch_shape}")
    if batch_size is not None and batch_shape is not None:
        raise ValueError("You cannot pass both `batch_size` and `batch_shape` at the same time. "
                         f"Received: batch_size={batch_size}, batch_shape={batch_shape}")
    if shape is None and batch_shape is None:
        raise ValueError("You must pass a `shape` argument. Received: shape=None")
    if batch_shape is not None:
        return _standard_shape(batch_shape, "batch_shape")
    return (batch_size,) + _standard_shape(shape, "shape")


class InputLayer(Layer):
    """Holds the symbolic input tensor of a model; ``shape`` excludes the batch dimension.

    ``input_tensor`` wraps an existing KerasTensor instead of making one. lamina has no sparse or
    ragged tensors: ``sparse=True`` and ``ragged=True`` are ValueErrors, as on Keras backends without them.
    """

    def __init__(self, shape=None, batch_size=None, dtype=None, sparse=None, ragged=None, batch_shape=None,
                 input_tensor=None, optional=False, name=None, **kwargs):
        if "input_shape" in kwargs:
            warnings.warn("Argument `input_shape` is deprecated. Use `shape` instead.", UserWarning, stacklevel=2)
            shape = kwargs.pop("input_shape")
        if "batch_input_shape" in kwargs:  # Keras 2 configs
            batch_shape = kwargs.pop("batch_input_shape")
        if dtype is not None and isinstance(dtype, dict):
            dtype = dtype.get("config", {}).get("name")
        if input_tensor is not None:
            _check_against_tensor(input_tensor, shape, batch_size, batch_shape, dtype, sparse)
            batch_shape, dtype = input_tensor.shape, input_tensor.dtype
        else:
            batch_shape = _batch_shape_of(shape, batch_size, batch_shape)
        for flag, value in (("sparse", sparse), ("ragged", ragged)):
            if value:
                raise ValueError(f"`{flag}=True` is not supported with lamina (NumPy arrays only, no {flag} "
                                 f"tensors). Received: {flag}={value}")
        # a text input keeps the default policy, as in Keras: "string" names its tensor's dtype only
        super().__init__(name=name, dtype=None if dtype == "string" else dtype, **kwargs)
        self._batch_shape = batch_shape
        self.sparse = False
        self.ragged = False
        self.optional = optional
        self.built = True
        self._input_dtype = backend.standardize_dtype(dtype) if dtype is not None else backend.floatx()
        if input_tensor is None:
            input_tensor = KerasTensor(batch_shape, dtype=self._input_dtype, name=self.name)
        input_tensor._keras_history = (self, 0, 0)
        self._inbound_nodes.append(Node(self, [], [], [input_tensor]))
        self.output_tensor = input_tensor

    @property
    def batch_shape(self) -> tuple:
        return self._batch_shape

    def call(self):
        """An InputLayer computes nothing: the model feeds its input in directly (Keras returns None too)."""
        return None

    def compute_output_shape(self, input_shape):
        return self._batch_shape

    def get_config(self) -> dict:
        return {"batch_shape": self._batch_shape, "dtype": self._input_dtype, "sparse": self.sparse,
                "ragged": self.ragged, "name": self.name, "optional": self.optional}


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None,
          tensor=None, optional=False, ragged=None) -> KerasTensor:
    """A symbolic input of ``shape`` (batch dimension excluded) to build a Functional model;
    ``tensor`` wraps an existing KerasTensor."""
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse, ragged=ragged,
                       batch_shape=batch_shape, name=name, input_tensor=tensor, optional=optional)
    return layer.output_tensor
