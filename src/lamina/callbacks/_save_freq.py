"""The integer ``save_freq`` rule ModelCheckpoint and BackupAndRestore share: save every N batches."""

from __future__ import annotations


class SaveEveryNBatches:
    """Mixed into a callback with ``save_freq`` (``"epoch"`` or a batch count): counts the batches seen
    since the last save across epochs. ``_last_batch_seen`` is the index of the last batch seen this
    epoch, or None before the first; a batch index not above it means a new epoch restarted the
    (0-based) count."""

    save_freq: int | str
    _batches_seen_since_last_saving: int = 0
    _last_batch_seen: int | None = None

    def _should_save_on_batch(self, batch: int) -> bool:
        if self.save_freq == "epoch":
            return False
        last = self._last_batch_seen
        self._batches_seen_since_last_saving += batch + 1 if last is None or batch <= last else batch - last
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            return True
        return False
