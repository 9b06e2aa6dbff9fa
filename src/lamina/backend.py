"""The array module and global numeric settings.

lamina has one backend: NumPy, reached through the name ``xp`` so that a CuPy-like module could
slot in (Chainer's pattern). Also holds floatx, epsilon and the global random generator.
"""

from __future__ import annotations

import weakref

import numpy as np

from lamina import naming

xp = np

_FLOATX = "float32"
_EPSILON = 1e-7
_RNG = np.random.default_rng()
_SEED: int | None = None


def floatx() -> str:
    """The default float dtype name, ``"float32"`` unless changed."""
    return _FLOATX


def set_floatx(value: str) -> None:
    global _FLOATX
    if value not in ("float16", "float32", "float64"):
        raise ValueError(
            f"Unknown floatx type: expected one of 'float16', 'float32', 'float64'. Received: {value!r}"
        )
    _FLOATX = str(value)


def epsilon() -> float:
    """The fuzz factor used in numeric expressions (Keras's default 1e-7)."""
    return _EPSILON


def set_epsilon(value: float) -> None:
    global _EPSILON
    _EPSILON = float(value)


def rng() -> np.random.Generator:
    """The global generator used for initializers, dropout and shuffling when no seed is given."""
    return _RNG


def set_seed(seed: int | None) -> None:
    """Reset the global generator; the same seed gives bit-identical weights and training runs."""
    global _RNG, _SEED
    _SEED = None if seed is None else int(seed)
    _RNG = np.random.default_rng(_SEED)


def make_rng(seed: int | None) -> np.random.Generator:
    """A generator for an object with its own ``seed=`` argument, else the global one."""
    return _RNG if seed is None else np.random.default_rng(seed)


def standardize_dtype(dtype) -> str:
    if dtype is None:
        return _FLOATX
    if hasattr(dtype, "name") and not isinstance(dtype, str):
        dtype = dtype.name
    return np.dtype(dtype).name


# ----------------------------------------------------------------------------- keras.config settings
# The public functions live in lamina.config (keras.config's names); the state lives here with floatx.

_BACKEND_NAME = "lamina"
_IMAGE_DATA_FORMAT = "channels_last"
_INTERACTIVE_LOGGING = True
_TRACEBACK_FILTERING = True
_SAFE_MODE: bool | None = None  # None: each load call's own safe_mode argument decides


def backend() -> str:
    """The backend name lamina presents: ``"lamina"``.

    Not ``"numpy"``: code that tests ``backend() == "numpy"`` does so to skip training, which lamina
    supports; and not the name of a framework lamina does not load (torch, jax, tensorflow).
    """
    return _BACKEND_NAME


def image_data_format() -> str:
    """``"channels_last"`` (Keras's default) or ``"channels_first"``."""
    return _IMAGE_DATA_FORMAT


def set_image_data_format(data_format: str) -> None:
    global _IMAGE_DATA_FORMAT
    value = str(data_format).lower()
    if value not in ("channels_first", "channels_last"):
        raise ValueError(
            "The `data_format` argument must be one of {'channels_first', 'channels_last'}. "
            f"Received: data_format={data_format}"
        )
    _IMAGE_DATA_FORMAT = value


def interactive_logging() -> bool:
    """True: the progress bar and callback messages go to stdout; False: to the ``lamina`` logger."""
    return _INTERACTIVE_LOGGING


def set_interactive_logging(enabled: bool) -> None:
    global _INTERACTIVE_LOGGING
    _INTERACTIVE_LOGGING = bool(enabled)


def traceback_filtering() -> bool:
    return _TRACEBACK_FILTERING


def set_traceback_filtering(enabled: bool) -> None:
    global _TRACEBACK_FILTERING
    _TRACEBACK_FILTERING = bool(enabled)


def safe_mode_override() -> bool | None:
    """False once unsafe deserialization is enabled globally, else None (the caller's argument rules)."""
    return _SAFE_MODE


def set_safe_mode_override(value: bool | None) -> None:
    global _SAFE_MODE
    _SAFE_MODE = None if value is None else bool(value)


def effective_safe_mode(safe_mode: bool) -> bool:
    """The safe_mode a load runs with: the global override if set (Keras's precedence), else the argument."""
    return safe_mode if _SAFE_MODE is None else _SAFE_MODE


def clear_session(free_memory: bool = True) -> None:
    """Keras's ``clear_session``: reset the global state that names objects, so a fresh model's layers
    are named ``dense``, ``dense_1``, ... again. lamina keeps no graph or device state to free;
    ``free_memory`` is accepted for Keras's signature."""
    naming.reset_uids()


# Keras keeps a tensor's mask on the tensor (``x._keras_mask``); NumPy arrays and lamina Tensors take no
# new attributes, so their masks live here by ``id`` and leave when the array is freed.
_MASKS: dict[int, object] = {}


def set_keras_mask(x, mask) -> None:
    """Attach ``mask`` (a boolean array, True keeps) to the array ``x``; ``None`` removes it.

    A Python number or NumPy scalar holds no mask (it cannot be weakly referenced): the call is a no-op."""
    key = id(x)
    if mask is None:
        _MASKS.pop(key, None)
        return
    try:
        weakref.finalize(x, _MASKS.pop, key, None)
    except TypeError:
        return
    _MASKS[key] = mask


def get_keras_mask(x):
    """The mask attached to ``x`` by ``set_keras_mask`` (a ``Masking`` layer's output has one), else None."""
    return _MASKS.get(id(x)) if _MASKS else None
