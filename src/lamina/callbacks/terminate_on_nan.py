"""``TerminateOnNaN``: stop training as soon as the loss turns NaN or infinite."""

from __future__ import annotations

import math

import numpy as np

from lamina.callbacks._io import print_msg
from lamina.callbacks.callback import Callback


class TerminateOnNaN(Callback):
    """Stops training when a batch's ``loss`` is NaN or +-inf.

    By default it prints ``Batch 12 of epoch 3: invalid loss nan, terminating training`` (the batch
    index is 0-based as in the logs, the epoch 1-based as in the ``Epoch 3/10`` header) and sets
    ``model.stop_training = True``, so ``fit`` ends cleanly and every ``on_train_end`` still runs.

    Args:
        raise_error: raise a ``RuntimeError`` at once instead (``on_train_end`` hooks do not run, so a
            ``BackupAndRestore`` backup is kept).
    """

    def __init__(self, raise_error: bool = False):
        super().__init__()
        self.raise_error = raise_error
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        if isinstance(loss, float):
            finite = math.isfinite(loss)
        else:
            finite = bool(np.all(np.isfinite(np.asarray(loss, dtype=np.float64))))
        if finite:
            return
        if self.raise_error:
            raise RuntimeError(  # Keras's wording, with the epoch added
                f"NaN or Inf loss encountered at batch {batch} of epoch {self._epoch + 1}. Loss value: {loss}. "
                "Terminating training immediately."
            )
        print_msg(f"Batch {batch} of epoch {self._epoch + 1}: invalid loss {loss}, terminating training")
        self.model.stop_training = True
