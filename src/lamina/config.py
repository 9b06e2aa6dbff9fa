"""``keras.config``: the global settings, under Keras's names.

The values live in :mod:`lamina.backend` (next to the global random generator); these functions
read and change them, with Keras's defaults and its validation.
"""

from __future__ import annotations

import logging

from lamina import backend as _backend
from lamina.backend import backend, epsilon, floatx, image_data_format, set_image_data_format
from lamina.dtype_policies.dtype_policy import dtype_policy, set_dtype_policy


def set_floatx(value: str) -> None:
    """Set the default float dtype (``"float32"`` by default).

    Keras accepts ``"bfloat16"``, ``"float16"``, ``"float32"`` and ``"float64"``; bfloat16 arrays
    come from ml_dtypes (install ``lamina[lowp]``). Layers made afterwards use it, unless a global
    dtype policy was set with :func:`set_dtype_policy`.
    """
    _backend.set_floatx(value)  # checks the value with Keras's message


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


# Python logging levels by Keras's names (keras.src.utils.io_utils.set_logging_verbosity).
_LOG_LEVELS = {"FATAL": logging.FATAL, "ERROR": logging.ERROR, "WARNING": logging.WARNING, "INFO": logging.INFO,
               "DEBUG": logging.DEBUG}


def set_logging_verbosity(level: str) -> None:
    """The least severe records the ``lamina`` logger passes on: ``"FATAL"``, ``"ERROR"``,
    ``"WARNING"``, ``"INFO"`` or ``"DEBUG"`` (Keras's names). With interactive logging disabled the
    progress lines and callback messages are ``INFO`` records of that logger: ``"WARNING"`` or above
    silences them, ``"INFO"`` lets them through to the handlers Python's ``logging`` is configured with."""
    if level not in _LOG_LEVELS:
        raise ValueError(f"set_logging_verbosity: the level must be one of {list(_LOG_LEVELS)}. "
                         f"Received: level={level!r}")
    logging.getLogger("lamina").setLevel(_LOG_LEVELS[level])


# The lint mode compile(lint=None) takes. It lives here, not in lamina.backend: compile alone reads it.
_LINT_MODES = ("raise", "warn", "off")
_LINT_MODE = ["raise"]


def set_lint_mode(mode: str) -> None:
    """What ``compile`` and ``fit`` do with the activation doctor's findings when ``compile`` is not
    given ``lint=``: ``"raise"`` (the default: errors raise ``ModelError``, warnings and hints warn),
    ``"warn"`` (errors become warnings too) or ``"off"`` (no checks). ``compile(lint=...)`` still decides
    for its model.

    For running Keras code you cannot edit (a third-party model builder, another library's tests) whose
    models lamina's lint would refuse, e.g. a one-unit softmax: ``lamina.config.set_lint_mode("warn")``
    keeps every finding visible without stopping the code.
    """
    if mode not in _LINT_MODES:
        raise ValueError(f"set_lint_mode: the mode must be one of {list(_LINT_MODES)}. Received: mode={mode!r}")
    _LINT_MODE[0] = mode


def lint_mode() -> str:
    """The mode set by :func:`set_lint_mode` (``"raise"`` unless changed)."""
    return _LINT_MODE[0]


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
    "backend", "disable_interactive_logging", "disable_traceback_filtering", "dtype_policy",
    "enable_interactive_logging", "enable_traceback_filtering", "enable_unsafe_deserialization", "epsilon", "floatx",
    "image_data_format",
    "is_interactive_logging_enabled", "is_traceback_filtering_enabled", "lint_mode", "set_epsilon", "set_floatx",
    "set_dtype_policy", "set_image_data_format", "set_lint_mode", "set_logging_verbosity",
]
