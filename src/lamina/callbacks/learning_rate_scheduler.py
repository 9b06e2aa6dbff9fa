"""``LearningRateScheduler``: set the learning rate from a function of the epoch."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np

from lamina.callbacks._io import get_learning_rate, get_optimizer, print_msg
from lamina.callbacks.callback import Callback


def _takes_two_args(fn: Callable) -> bool:
    """Whether ``fn`` accepts ``(epoch, lr)``; the older API passed only ``epoch``."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: assume the current API
        return True
    try:
        sig.bind(0, 0.0)
        return True
    except TypeError:
        return False


class LearningRateScheduler(Callback):
    """At each epoch start, sets ``optimizer.learning_rate = schedule(epoch, lr)``.

    ``epoch`` is 0-based and ``lr`` is the current rate as a float; a ``schedule(epoch)`` of one
    argument is accepted too. The schedule must return a float. Each epoch's ``learning_rate`` is
    added to the logs.

    Args:
        schedule: ``(epoch, lr) -> new_lr``.
        verbose: 1 prints the rate set at each epoch.
    """

    def __init__(self, schedule: Callable, verbose: int = 0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(
                "LearningRateScheduler: `schedule` must be a function (epoch, lr) -> new_lr. "
                f"Received: schedule={schedule!r}"
            )
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = get_optimizer("LearningRateScheduler", self.model)
        if _takes_two_args(self.schedule):
            lr = self.schedule(epoch, get_learning_rate(optimizer))
        else:
            lr = self.schedule(epoch)
        # A 0-d float array (what lamina.ops returns outside a tape) counts as a float.
        if isinstance(lr, np.ndarray) and lr.ndim == 0 and np.issubdtype(lr.dtype, np.floating):
            lr = lr[()]
        if not isinstance(lr, (float, np.floating)):
            raise ValueError(
                "The output of the `schedule` function should be a float. "
                f"Received: {lr!r} of type {type(lr).__name__} at epoch {epoch}"
            )
        optimizer.learning_rate = float(lr)
        if self.verbose > 0:
            print_msg(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = get_learning_rate(get_optimizer("LearningRateScheduler", self.model))
