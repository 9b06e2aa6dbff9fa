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


_FLOATX_VALUES = ("bfloat16", "float16", "float32", "float64")  # what Keras accepts


def floatx() -> str:
    """The default float dtype name, ``"float32"`` unless changed."""
    return _FLOATX


def set_floatx(value: str) -> None:
    """Set the default float dtype; ``"bfloat16"`` loads ml_dtypes (the ``lowp`` extra)."""
    global _FLOATX
    if value not in _FLOATX_VALUES:
        raise ValueError(f"Unknown `floatx` value: {value}. Expected one of {set(_FLOATX_VALUES)}. "
                         f"Received: value={value!r}")
    if value == "bfloat16":
        standardize_dtype(value)
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


# Dtypes NumPy lacks, supplied by the ml_dtypes package (the one JAX uses): the ``lowp`` extra.
_ML_DTYPES = frozenset({"bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"})
_ML_DTYPES_LOADED = [False]


def require_ml_dtypes(dtype: str):
    """Import ml_dtypes (which registers bfloat16 and the float8 types with NumPy) or say which extra
    provides it; returns the module."""
    try:
        import ml_dtypes  # lazy: optional extra, needed only for bfloat16 / float8 arrays
    except ImportError:
        raise ImportError(f"The dtype '{dtype}' needs the ml_dtypes package (NumPy has no {dtype}): install it "
                          f"with `pip install 'lamina[lowp]'`. Received: dtype={dtype!r}") from None
    _ML_DTYPES_LOADED[0] = True
    return ml_dtypes


def standardize_dtype(dtype) -> str:
    """The canonical name of ``dtype`` (a name, NumPy dtype or scalar type); None means ``floatx()``.

    ``"bfloat16"`` and the float8 names are valid too: naming one loads ml_dtypes, after which
    NumPy understands the name everywhere (``np.zeros(3, "bfloat16")``)."""
    if dtype is None:
        return _FLOATX
    # Keras's name for text; lamina holds text in NumPy str/object arrays
    if dtype is str or (isinstance(dtype, str) and dtype == "string"):
        return "string"
    if hasattr(dtype, "name") and not isinstance(dtype, str):
        dtype = dtype.name
    if isinstance(dtype, str) and dtype in _ML_DTYPES:
        if not _ML_DTYPES_LOADED[0]:
            require_ml_dtypes(dtype)
        return dtype
    try:
        return np.dtype(dtype).name
    except TypeError:
        raise ValueError(f"Invalid dtype: expected a dtype name such as 'float32', 'bfloat16' or 'int32'. "
                         f"Received: dtype={dtype!r}") from None


def is_float_dtype(dtype) -> bool:
    """True for float16/32/64, bfloat16 and the float8 types (NumPy counts only the first three as
    floating: ml_dtypes' bfloat16 has kind ``'V'``)."""
    name = getattr(dtype, "name", None) if not isinstance(dtype, str) else dtype
    if name is None:
        name = standardize_dtype(dtype)
    return name.startswith("float") or name == "bfloat16"


# ----------------------------------------------------------------------------- autocast
# The dtype float variables are read in while a mixed-precision layer calls (None: as stored).
# A one-slot list: autodiff.unwrap reads it on every variable read, so the check is one index.
_AUTOCAST: list = [None]
_AUTOCAST_SCOPES: list = []  # the entered scopes, innermost last


def get_autocast_scope():
    """The active :class:`AutocastScope`, or None."""
    return _AUTOCAST_SCOPES[-1] if _AUTOCAST_SCOPES else None


class AutocastScope:
    """Inside ``with AutocastScope("float16"):`` float variables created with ``autocast=True`` read as
    float16 (``variable.value``, and every op given the variable); ``AutocastScope(None)`` turns the
    casting off. Variables keep their stored dtype: only reads are cast, and gradients return to it."""

    def __init__(self, dtype):
        if dtype is not None:
            dtype = standardize_dtype(dtype)
            if not is_float_dtype(dtype):
                raise ValueError("`AutocastScope` can only be used with a floating-point target dtype, such as "
                                 f"'float16'. Received: dtype={dtype}")
        self.dtype = dtype

    def maybe_cast(self, value):
        """``value`` in this scope's dtype if it is a float array, else unchanged."""
        if self.dtype is not None and is_float_dtype(value.dtype) and value.dtype.name != self.dtype:
            return value.astype(self.dtype)
        return value

    def __enter__(self):
        _AUTOCAST_SCOPES.append(self)
        _AUTOCAST[0] = self.dtype
        return self

    def __exit__(self, *exc):
        _AUTOCAST_SCOPES.pop()  # scopes nest: this one is the innermost
        _AUTOCAST[0] = _AUTOCAST_SCOPES[-1].dtype if _AUTOCAST_SCOPES else None
        return False


# ----------------------------------------------------------------------------- keras.config settings
# The public functions live in lamina.config (keras.config's names); the state lives here with floatx.

_BACKEND_NAME = "lamina"
_IMAGE_DATA_FORMAT = "channels_last"
_INTERACTIVE_LOGGING = True
_TRACEBACK_FILTERING = True
_SAFE_MODE: bool | None = None  # None: each load call's own safe_mode argument decides
_DTYPE_POLICY = None  # the DTypePolicy set by keras.config.set_dtype_policy; None: follow floatx
_FLOATX_DTYPE_POLICY = None  # while none is set: the floatx policy handed out (one object, as in Keras)


def global_dtype_policy():
    """The dtype policy set globally (``lamina.dtype_policies`` reads it), or None when none is set."""
    return _DTYPE_POLICY


def set_global_dtype_policy(policy) -> None:
    global _DTYPE_POLICY
    _DTYPE_POLICY = policy


def floatx_dtype_policy():
    """The policy made for floatx while no policy is set (None before the first read or a clear)."""
    return _FLOATX_DTYPE_POLICY


def set_floatx_dtype_policy(policy) -> None:
    global _FLOATX_DTYPE_POLICY
    _FLOATX_DTYPE_POLICY = policy


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
    ``free_memory`` is accepted for Keras's signature. A dtype policy set globally is forgotten too
    (Keras keeps it in the global state this clears)."""
    global _DTYPE_POLICY, _FLOATX_DTYPE_POLICY
    naming.reset_uids()
    _DTYPE_POLICY = _FLOATX_DTYPE_POLICY = None


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


def standardize_shape(shape) -> tuple:
    """``shape`` (any iterable of sizes) as a tuple of non-negative Python ints and None (unknown), as
    Keras's ``backend.standardize_shape``: a size given as a string or float, a negative one or one that
    is not an integer raises."""
    if shape is None or isinstance(shape, str) or not hasattr(shape, "__iter__"):
        raise ValueError(f"A shape must be a tuple or list of sizes (ints or None). Received: shape={shape!r}")
    sizes = []
    for d in shape:
        if d is None:
            sizes.append(None)
            continue
        if isinstance(d, (str, float, bool, np.floating)):
            raise ValueError(f"A shape's sizes must be ints or None; found {d!r} ({type(d).__name__}). "
                             f"Received: shape={tuple(shape)!r}")
        try:
            size = int(d)  # NumPy integers and 0-d integer arrays
        except (TypeError, ValueError):
            raise ValueError(f"A shape's sizes must be ints or None; found {d!r} ({type(d).__name__}). "
                             f"Received: shape={shape!r}") from None
        if size < 0:
            raise ValueError(f"A shape's sizes must not be negative. Received: shape={tuple(shape)!r}")
        sizes.append(size)
    return tuple(sizes)
