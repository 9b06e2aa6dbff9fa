"""``BackupAndRestore``: resume an interrupted ``fit`` from its last backup."""

from __future__ import annotations

import contextlib
import json
import os

from lamina.callbacks._save_freq import SaveEveryNBatches
from lamina.callbacks.callback import Callback
from lamina.saving.atomic import write_bytes_atomic
from lamina.saving.errors import FileFormatError

_WEIGHTS = "latest.weights.h5"
_METADATA = "training_metadata.json"


class BackupAndRestore(SaveEveryNBatches, Callback):
    """Backs up the training state in ``backup_dir`` and restores it when ``fit`` is run again.

    Each backup writes the model's weights (with the optimizer's state) to ``latest.weights.h5`` and
    ``{"epoch": e, "batch": b}`` to ``training_metadata.json``, every file atomically (a temporary
    file renamed into place), so a process killed mid-write leaves the previous backup whole. At
    ``on_train_begin`` the backup, if any, is loaded and ``fit`` starts at epoch ``e`` (the epochs
    completed); as in Keras a partly run epoch is run again from its first batch. When ``fit``
    finishes, the backup files are removed (``delete_checkpoint=True``); an exception leaves them
    for the next run.

    Args:
        backup_dir: folder for the backup, used by this callback alone.
        save_freq: ``"epoch"`` (back up at each epoch end) or a positive integer ``n`` (every ``n``
            training batches).
        double_checkpoint: also keep the previous backup (``*.bkp``), restored when the latest one
            cannot be read.
        delete_checkpoint: remove the backup when training completes.
    """

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint: bool = False,
                 delete_checkpoint: bool = True):
        super().__init__()
        if not backup_dir:
            raise ValueError(f"Empty `backup_dir` argument passed. Received: backup_dir={backup_dir!r}")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError(
                "Invalid value for argument `save_freq`. Expected either 'epoch' or a positive integer "
                f"(a number of batches). Received: save_freq={save_freq!r}"
            )
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.double_checkpoint = double_checkpoint
        self.delete_checkpoint = delete_checkpoint
        self._weights_path = os.path.join(self.backup_dir, _WEIGHTS)
        self._training_metadata_path = os.path.join(self.backup_dir, _METADATA)
        self._prev_weights_path = self._weights_path + ".bkp"
        self._prev_training_metadata_path = self._training_metadata_path + ".bkp"
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = 0
        self._current_epoch = 0

    # ------------------------------------------------------------------ restore

    def on_train_begin(self, logs=None):
        if not getattr(self.model, "built", True):
            raise ValueError(
                "To use the BackupAndRestore callback, your model must be built before you call `fit()`. "
                f"Build it by calling it on a batch of data or with `model.build(input_shape)`. "
                f"Received: unbuilt model {getattr(self.model, 'name', self.model)!r}"
            )
        try:
            self._restore()
        except (OSError, FileFormatError) as error:
            if not os.path.exists(self._prev_weights_path):
                raise
            # The latest backup is unreadable: fall back to the one before it.
            _copy_atomic(self._prev_weights_path, self._weights_path)
            if os.path.exists(self._prev_training_metadata_path):
                _copy_atomic(self._prev_training_metadata_path, self._training_metadata_path)
            elif os.path.exists(self._training_metadata_path):
                os.remove(self._training_metadata_path)
            try:
                self._restore()
            except (OSError, FileFormatError) as second:
                raise FileFormatError(
                    self._weights_path,
                    f"BackupAndRestore could restore neither the latest backup ({error}) nor the previous one "
                    f"({second}). Received: backup_dir={self.backup_dir!r}",
                ) from second

    def _restore(self) -> None:
        if os.path.exists(self._weights_path):
            self.model.load_weights(self._weights_path)
        if os.path.exists(self._training_metadata_path):
            with open(self._training_metadata_path, encoding="utf-8") as f:
                try:
                    epoch = json.load(f)["epoch"]
                except (ValueError, KeyError, TypeError) as error:
                    raise FileFormatError(
                        self._training_metadata_path,
                        f"BackupAndRestore expected its metadata (JSON with an integer 'epoch'). Received: {error!r}",
                    ) from error
            if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
                raise FileFormatError(
                    self._training_metadata_path,
                    f"BackupAndRestore expected a non-negative integer epoch. Received: epoch={epoch!r}",
                )
            self._current_epoch = epoch
            # fit reads this once, after on_train_begin, as the epoch to start from (Keras's attribute).
            self.model._initial_epoch = epoch

    # ------------------------------------------------------------------ backup

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1
        self._last_batch_seen = 0
        if self.save_freq == "epoch":
            self._save_model()

    def on_train_batch_end(self, batch, logs=None):
        if self._should_save_on_batch(batch):
            self._save_model()

    def _save_model(self) -> None:
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint:
            for path, prev in ((self._weights_path, self._prev_weights_path),
                               (self._training_metadata_path, self._prev_training_metadata_path)):
                if os.path.exists(path):
                    _copy_atomic(path, prev)
        self.model.save_weights(self._weights_path, overwrite=True)  # atomic (saving.atomic)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        write_bytes_atomic(self._training_metadata_path, json.dumps(metadata).encode("utf-8"))

    def on_train_end(self, logs=None):
        if not self.delete_checkpoint:
            return
        # Only the files this callback writes, then the folder if nothing else is left in it.
        for path in (self._weights_path, self._training_metadata_path,
                     self._prev_weights_path, self._prev_training_metadata_path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        with contextlib.suppress(OSError):  # absent, or holding other files: leave it
            os.rmdir(self.backup_dir)


def _copy_atomic(src: str, dst: str) -> None:
    with open(src, "rb") as f:
        write_bytes_atomic(dst, f.read())
