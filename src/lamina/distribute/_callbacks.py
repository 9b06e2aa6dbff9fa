"""Callback handling under data parallelism: who keeps which callback, and a synchronised NaN stop."""

from __future__ import annotations

import math

from lamina.callbacks import (
    ActivationHealth,
    Callback,
    CSVLogger,
    ModelCheckpoint,
    ProgbarLogger,
    TerminateOnNaN,
)
from lamina.callbacks._io import print_msg

# Callbacks that print or write files: they run on rank 0 only. Everything else (History,
# EarlyStopping, ReduceLROnPlateau, LearningRateScheduler, user callbacks) runs on every rank, so
# that every rank changes the learning rate and stops at the same epoch: the epoch logs they read
# are the reduced, identical ones. A custom callback opts into chief-only with `_chief_only = True`.
CHIEF_ONLY = (ProgbarLogger, ModelCheckpoint, CSVLogger, ActivationHealth)


class SyncedTerminateOnNaN(TerminateOnNaN):
    """``TerminateOnNaN`` whose decision is the same on every rank.

    Each rank's batch loss is local, so one rank could stop while the others wait for it in the
    next allreduce. A NaN/Inf loss on any rank makes that rank's gradients non-finite, and so the
    averaged gradients on every rank: the stop is decided on those.
    """

    def __init__(self, original: TerminateOnNaN, strategy, chief: bool):
        super().__init__(raise_error=original.raise_error)
        self._strategy = strategy
        self._chief = chief

    def on_batch_end(self, batch, logs=None):
        if self._strategy._grads_finite:
            return
        loss = (logs or {}).get("loss", math.nan)
        where = f"Batch {batch} of epoch {self._epoch + 1}"
        if self.raise_error:
            raise RuntimeError(
                f"{where}: invalid loss {loss} (NaN or Inf gradients on at least one rank). "
                "Terminating training immediately."
            )
        if self._chief:
            print_msg(f"{where}: invalid loss (NaN or Inf gradients on at least one rank), "
                      "terminating training")
        self.model.stop_training = True


def filter_callbacks(callbacks: list, strategy) -> list:
    chief = strategy.is_chief
    strategy._check_finite = False
    strategy._grads_finite = True
    out = []
    for cb in callbacks:
        if isinstance(cb, TerminateOnNaN) and not isinstance(cb, SyncedTerminateOnNaN):
            strategy._check_finite = True
            out.append(SyncedTerminateOnNaN(cb, strategy, chief))
            continue
        if not chief:
            if isinstance(cb, CHIEF_ONLY) or getattr(cb, "_chief_only", False):
                continue
            if isinstance(cb, Callback) and isinstance(getattr(cb, "verbose", None), int):
                cb.verbose = 0  # EarlyStopping & co. print their notices on rank 0 only
        out.append(cb)
    return out
