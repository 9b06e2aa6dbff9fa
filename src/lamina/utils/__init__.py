"""Utilities with Keras's names: seeding, label encoding, normalisation, the interactive-logging switches."""

from __future__ import annotations

import random

import numpy as np

from lamina import backend

# keras.utils spells these too (keras.src.utils.io_utils); ``as`` marks them as re-exports
from lamina.backend import clear_session as clear_session
from lamina.config import disable_interactive_logging as disable_interactive_logging
from lamina.config import enable_interactive_logging as enable_interactive_logging
from lamina.config import is_interactive_logging_enabled as is_interactive_logging_enabled
from lamina.config import set_logging_verbosity as set_logging_verbosity
from lamina.model_visualization import plot_model as plot_model
from lamina.py_dataset import PyDataset as PyDataset
from lamina.utils.sequence_utils import pad_sequences as pad_sequences
from lamina.utils.timeseries_dataset_utils import timeseries_dataset_from_array as timeseries_dataset_from_array

Sequence = PyDataset  # Keras's older name, kept as an alias there too


def set_random_seed(seed: int) -> None:
    """Seed Python's, NumPy's and lamina's generators: same seed, bit-identical weights and runs."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"set_random_seed expects an integer seed. Received: seed={seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % (2**32))
    backend.set_seed(int(seed))


def to_categorical(x, num_classes: int | None = None) -> np.ndarray:
    """One-hot encode integer class labels: shape (..., num_classes), float32."""
    x = np.asarray(x)
    if x.size and not np.issubdtype(x.dtype, np.integer):
        if not np.all(np.equal(np.mod(x, 1), 0)):
            raise ValueError(f"to_categorical expects integer class labels. Received: dtype={x.dtype}")
        x = x.astype(np.int64)
    if x.ndim > 1 and x.shape[-1] == 1:
        x = x.reshape(x.shape[:-1])
    if num_classes is None:
        num_classes = int(x.max()) + 1 if x.size else 0
    if x.size and (x.min() < 0 or x.max() >= num_classes):
        raise ValueError(
            f"to_categorical: labels must lie in [0, {num_classes}). "
            f"Received: labels from {x.min()} to {x.max()}"
        )
    out = np.zeros(x.shape + (num_classes,), dtype=backend.floatx())
    np.put_along_axis(out, x[..., None].astype(np.int64), 1, axis=-1)
    return out


def normalize(x, axis: int = -1, order: int = 2) -> np.ndarray:
    """Scale ``x`` to unit ``order``-norm along ``axis`` (zero vectors stay zero)."""
    x = np.asarray(x)
    norm = np.linalg.norm(x, ord=order, axis=axis, keepdims=True)
    norm = np.where(norm == 0, 1, norm)
    return (x / norm).astype(x.dtype if np.issubdtype(x.dtype, np.floating) else backend.floatx())


# keras.utils also spells the object-registration API of keras.saving (guides decorate custom layers
# with @keras.utils.register_keras_serializable).
_FROM_SAVING = frozenset({
    "CustomObjectScope", "custom_object_scope", "deserialize_keras_object", "get_custom_objects",
    "get_registered_name", "get_registered_object", "register_keras_serializable", "serialize_keras_object",
})


def __getattr__(name: str):
    # keras.utils.Progbar lives with the callbacks, which load on first use.
    if name == "Progbar":
        from lamina.callbacks.progbar import Progbar  # lazy: import cost of lamina.callbacks

        return Progbar
    if name in _FROM_SAVING:
        from lamina import saving  # lazy: import cost, as for Progbar (saving loads the file formats)

        return getattr(saving, name)
    raise AttributeError(f"module 'lamina.utils' has no attribute {name!r}")
