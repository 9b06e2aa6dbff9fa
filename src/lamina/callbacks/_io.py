"""Private helpers shared by the callbacks: console output, log cleaning, learning-rate access."""

from __future__ import annotations

import logging
import sys
from typing import Any

import numpy as np

from lamina import backend

_LOGGER = logging.getLogger("lamina")


def print_msg(message: str, line_break: bool = True) -> None:
    """Write ``message`` to the *current* ``sys.stdout`` (so redirection and capture work) and flush.

    Consoles whose encoding cannot show the bar glyph get ``=`` instead of a crash. With interactive
    logging disabled (``lamina.config.disable_interactive_logging``) the message goes to the
    ``lamina`` logger at level INFO instead, as Keras sends it to absl logging.
    """
    if not backend.interactive_logging():
        _LOGGER.info(message.lstrip("\r").rstrip())
        return
    if line_break:
        message += "\n"
    stream = sys.stdout
    try:
        stream.write(message)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "utf-8"
        message = message.replace("\u2501", "=").encode(encoding, errors="replace").decode(encoding)
        stream.write(message)
    stream.flush()


def _to_python(value: Any) -> Any:
    if type(value) is float:  # the common case: skip every other check (np.float64 is a float subclass)
        return value
    if isinstance(value, (str, bytes)):
        return value
    if isinstance(value, np.ndarray) and value.ndim > 0:
        # float() of an ndim>0 array is deprecated in NumPy; keep vectors (CSVLogger prints them).
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def pythonify_logs(logs: dict | None) -> dict:
    """A new dict with keys sorted, nested dicts flattened and scalar values as Python floats.

    Sorting is what makes the progress bar and the CSV columns list metrics alphabetically, as Keras
    does (``accuracy`` before ``loss``, then the ``val_`` keys).
    """
    if not logs:
        return {}
    result: dict = {}
    for key in sorted(logs):
        value = logs[key]
        if isinstance(value, dict):
            result.update(pythonify_logs(value))
        else:
            result[key] = _to_python(value)
    return result


def get_optimizer(callback_name: str, model: Any) -> Any:
    """``model.optimizer``, or a ValueError that says the model must be compiled first."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise ValueError(
            f"{callback_name} needs a compiled model with an optimizer (call `model.compile(...)` first). "
            f"Received: model.optimizer=None"
        )
    if not hasattr(optimizer, "learning_rate"):
        raise ValueError(
            f"{callback_name}: the optimizer must have a `learning_rate` attribute. "
            f"Received: optimizer={optimizer!r}"
        )
    return optimizer


def get_learning_rate(optimizer: Any) -> float:
    """The optimizer's current learning rate as a Python float (it may be a Variable or an array)."""
    lr = optimizer.learning_rate
    if hasattr(lr, "numpy"):
        lr = lr.numpy()
    return float(np.asarray(lr))
