"""``keras.config``: the global settings, under Keras's names.

The values live in :mod:`lamina.backend` (next to the global random generator); these functions
read and change them, with Keras's defaults and its validation.
"""

from __future__ import annotations

from lamina import backend as _backend
from lamina.backend import backend, epsilon, floatx, image_data_format, set_image_data_format

_FLOATX_VALUES = ("bfloat16", "float16", "float32", "float64")  # what Keras accepts


def set_floatx(value: str) -> None:
    """Set the default float dtype (``"float32"`` by default).

    Keras accepts ``"bfloat16"``, ``"float16"``, ``"float32"`` and ``"float64"``; lamina computes
    in the NumPy ones (bfloat16 only where its backend supports it).
    """
    if value not in _FLOATX_VALUES:
        raise ValueError(f"Unknown `floatx` value: {value}. Expected one of {set(_FLOATX_VALUES)}. "
                         f"Received: value={value!r}")
    try:
        _backend.set_floatx(value)
    except ValueError:
        raise ValueError(f"set_floatx: lamina cannot compute in {value} (NumPy has no such dtype); use "
                         f"'float16', 'float32' or 'float64'. Received: value={value!r}") from None


def set_epsilon(value: float) -> None:
    """Set the fuzz factor added to denominators (default 1e-7)."""
    _backend.set_epsilon(value)


def enable_interactive_logging() -> None:
    """Progress bars and callback messages go to stdout (the default)."""
    _backend.set_interactive_logging(True)


def disable_interactive_logging() -> None:
    """Progress bars and callback messages go to the ``lamina`` logger (Python's ``logging``, level
    INFO) as plain lines instead of being drawn on stdout: for jobs whose output is a log file."""
    _backend.set_interactive_logging(False)


def is_interactive_logging_enabled() -> bool:
    """True unless :func:`disable_interactive_logging` was called."""
    return _backend.interactive_logging()


def enable_traceback_filtering() -> None:
    """Record that tracebacks may be filtered (Keras's default).

    lamina shows every frame either way: its errors are raised where the bad argument is checked,
    with no framework frames to hide. The flag is kept for code that sets and reads it.
    """
    _backend.set_traceback_filtering(True)


def disable_traceback_filtering() -> None:
    """Record that tracebacks must not be filtered (lamina never filters them; see above)."""
    _backend.set_traceback_filtering(False)


def is_traceback_filtering_enabled() -> bool:
    """The flag set by :func:`enable_traceback_filtering` / :func:`disable_traceback_filtering`."""
    return _backend.traceback_filtering()


def enable_unsafe_deserialization() -> None:
    """Turn safe mode off for every later load, whatever its ``safe_mode`` argument says.

    Lambdas, Lambda layers and classes from modules named in a file are then rebuilt, which runs
    code stored in the file: call this only for files whose source you trust.
    """
    _backend.set_safe_mode_override(False)


__all__ = [
    "backend", "disable_interactive_logging", "disable_traceback_filtering", "enable_interactive_logging",
    "enable_traceback_filtering", "enable_unsafe_deserialization", "epsilon", "floatx", "image_data_format",
    "is_interactive_logging_enabled", "is_traceback_filtering_enabled", "set_epsilon", "set_floatx",
    "set_image_data_format",
]
