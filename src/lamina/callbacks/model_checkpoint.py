"""``ModelCheckpoint``: save the model or its weights during training."""

from __future__ import annotations

import os
import warnings

from lamina.callbacks._io import print_msg
from lamina.callbacks._save_freq import SaveEveryNBatches
from lamina.callbacks.monitor_callback import MonitorCallback


class ModelCheckpoint(SaveEveryNBatches, MonitorCallback):
    """Saves the model (``model.save``) or its weights (``model.save_weights``) every epoch or every
    ``save_freq`` batches, optionally only when ``monitor`` improves.

    ``filepath`` may hold format fields filled from the 1-based ``epoch``, the 1-based ``batch``
    (batch-level saving) and the log keys, e.g. ``"ckpt/{epoch:02d}-{val_loss:.2f}.keras"``. It must
    end in ``.weights.h5`` when ``save_weights_only=True`` and in ``.keras`` otherwise (``.h5`` is
    accepted for Keras's legacy format). Writing is left to the model, which writes atomically, so an
    interrupted run never leaves a half-written checkpoint.

    Args:
        filepath: where to save; may contain format fields.
        monitor: the log key compared when ``save_best_only=True``.
        verbose: 1 prints a line for each save decision.
        save_best_only: save only when ``monitor`` improves on the best value so far.
        save_weights_only: save only the weights.
        mode: ``"auto"``, ``"min"`` or ``"max"``.
        save_freq: ``"epoch"`` or an integer number of batches.
        initial_value_threshold: the best value to beat before the first save (with
            ``save_best_only``).
    """

    def __init__(
        self,
        filepath,
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        save_freq="epoch",
        initial_value_threshold: float | None = None,
    ):
        super().__init__(monitor, mode, initial_value_threshold)
        try:
            filepath = os.fspath(filepath)
        except TypeError:
            raise TypeError(
                f"ModelCheckpoint: `filepath` must be a string or path. Received: filepath={filepath!r}"
            ) from None
        self.verbose = verbose
        self.filepath = filepath
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.save_freq = save_freq
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen: int | None = None
        self._current_epoch = 0

        valid_int = isinstance(save_freq, int) and not isinstance(save_freq, bool) and save_freq >= 1
        if save_freq != "epoch" and not valid_int:
            raise ValueError(
                f"Unrecognized save_freq: {save_freq!r}. Expected save_freq are 'epoch' or a positive "
                f"integer number of batches. Received: save_freq={save_freq!r}"
            )
        if valid_int:
            # Listen to batch ends only when saving by batch count: CallbackList skips callbacks
            # without the hook, so an epoch-saving checkpoint adds nothing to the training step
            # (the trainer then need not build, convert and pass batch logs for it).
            self.on_train_batch_end = self._save_on_batch_end
        if save_weights_only:
            if not filepath.endswith(".weights.h5"):
                raise ValueError(
                    "When using `save_weights_only=True` in `ModelCheckpoint`, the filepath provided must "
                    f"end in `.weights.h5` (Keras weights format). Received: filepath={filepath}"
                )
        elif not filepath.endswith((".keras", ".h5")):
            raise ValueError(
                "The filepath provided must end in `.keras` (Keras model format); to save only the weights "
                "pass `save_weights_only=True` and a `.weights.h5` path. "
                f"Received: filepath={filepath}"
            )

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def _save_on_batch_end(self, batch, logs=None):
        if self._should_save_on_batch(batch):
            self._save_model(epoch=self._current_epoch, batch=batch, logs=logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        if self.save_freq == "epoch":
            self._save_model(epoch=epoch, batch=None, logs=logs)

    def _should_save_model(self, epoch: int, logs: dict, filepath: str) -> bool:
        if not self.save_best_only:
            if self.verbose > 0:
                print_msg(f"\nEpoch {epoch + 1}: saving model to {filepath}")
            return True
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.", stacklevel=3)
            return True
        if not self._is_scalar(current):
            warnings.warn(
                "Can save best model only when `monitor` is a scalar value. "
                f"Received: {current}. Falling back to `save_best_only=False`.",
                stacklevel=3,
            )
            return True
        if self.monitor_op is None:
            self._set_monitor_op()  # batch-level saving can come before the first epoch end
        best_str = "None" if self.best is None else f"{self.best:.5f}"
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                print_msg(
                    f"\nEpoch {epoch + 1}: {self.monitor} improved from {best_str} to {current:.5f}, "
                    f"saving model to {filepath}"
                )
            self.best = current
            return True
        if self.verbose > 0:
            print_msg(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best_str}")
        return False

    def _save_model(self, epoch: int, batch: int | None, logs) -> None:
        logs = logs or {}
        filepath = self._get_file_path(epoch, batch, logs)
        if not self._should_save_model(epoch, logs, filepath):
            return
        if os.path.isdir(filepath):
            raise OSError(
                "Please specify a non-directory filepath for ModelCheckpoint. "
                f"Filepath used is an existing directory: {filepath}"
            )
        dirname = os.path.dirname(filepath)
        if dirname:
            os.makedirs(dirname, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(filepath, overwrite=True)
        else:
            self.model.save(filepath, overwrite=True)
        if self.verbose > 0:
            print_msg(f"\nEpoch {epoch + 1}: finished saving model to {filepath}")

    def _get_file_path(self, epoch: int, batch: int | None, logs: dict) -> str:
        """``filepath`` with its fields filled: ``epoch`` and ``batch`` are 1-based, the rest from logs."""
        fields = dict(logs)
        fields["epoch"] = epoch + 1
        if batch is not None and "batch" not in logs:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except KeyError as e:
            raise KeyError(
                f'Failed to format this callback filepath: "{self.filepath}". Reason: {e} is not a log key. '
                f"Available keys: {', '.join(sorted(fields))}"
            ) from None
