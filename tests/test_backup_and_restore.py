"""BackupAndRestore (Keras 3's semantics): an interrupted ``fit`` resumes at the epoch after the last backup,
with the weights and optimizer state of that backup; every backup file is written atomically."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import lamina
from lamina import callbacks, layers
from lamina.saving.errors import FileFormatError

X = np.random.default_rng(0).random((10, 3)).astype("float32")
Y = np.random.default_rng(1).random((10, 1)).astype("float32")


class Interrupt(callbacks.Callback):
    """Raises after ``epochs`` epoch ends, or after ``batches`` batch ends (counted across epochs)."""

    def __init__(self, epochs=None, batches=None):
        super().__init__()
        self.epochs, self.batches = epochs, batches
        self.seen_epochs = self.seen_batches = 0

    def on_epoch_end(self, epoch, logs=None):
        self.seen_epochs += 1
        if self.seen_epochs == self.epochs:
            raise RuntimeError("interrupted")

    def on_train_batch_end(self, batch, logs=None):
        self.seen_batches += 1
        if self.seen_batches == self.batches:
            raise RuntimeError("interrupted")


def _model():
    model = lamina.Sequential([layers.Input((3,)), layers.Dense(4, activation="relu"), layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


def _fit(model, cbs, epochs):
    return model.fit(X, Y, batch_size=4, epochs=epochs, shuffle=False, verbose=0, callbacks=cbs)


def test_resumes_at_the_epoch_after_the_last_backup_with_its_weights(tmp_path):
    backup = str(tmp_path / "backup")
    model = _model()
    initial = [w.copy() for w in model.get_weights()]
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit(model, [callbacks.BackupAndRestore(backup), Interrupt(epochs=3)], epochs=6)
    assert sorted(os.listdir(backup)) == ["latest.weights.h5", "training_metadata.json"]
    with open(os.path.join(backup, "training_metadata.json")) as f:
        assert json.load(f) == {"epoch": 3, "batch": 0}

    fresh = _model()  # a new process: new weights, an unbuilt optimizer
    history = _fit(fresh, [callbacks.BackupAndRestore(backup)], epochs=6)
    assert history.epoch == [3, 4, 5]
    assert len(history.history["loss"]) == 3
    assert not os.path.exists(backup)  # deleted once training completed

    # The same as 6 uninterrupted epochs (shuffle=False): the weights and Adam's state came back.
    straight = _model()
    straight.set_weights(initial)
    _fit(straight, [], epochs=6)
    for a, b in zip(straight.get_weights(), fresh.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_later_fit_without_the_callback_starts_at_its_own_initial_epoch(tmp_path):
    backup = str(tmp_path / "backup")
    model = _model()
    with pytest.raises(RuntimeError):
        _fit(model, [callbacks.BackupAndRestore(backup), Interrupt(epochs=2)], epochs=4)
    assert _fit(model, [callbacks.BackupAndRestore(backup)], epochs=4).epoch == [2, 3]
    assert _fit(model, [], epochs=2).epoch == [0, 1]  # the resume point is used once, not kept


def test_step_backups_restart_the_partly_run_epoch_like_keras(tmp_path):
    backup = str(tmp_path / "backup")
    model = _model()
    cb = callbacks.BackupAndRestore(backup, save_freq=1)
    with pytest.raises(RuntimeError):
        _fit(model, [cb, Interrupt(batches=5)], epochs=3)  # 3 batches per epoch: stops in epoch 1, batch 1
    assert (cb._current_epoch, cb._last_batch_seen) == (1, 1)
    with open(os.path.join(backup, "training_metadata.json")) as f:
        assert json.load(f) == {"epoch": 1, "batch": 1}
    history = _fit(model, [cb], epochs=3)
    assert history.epoch == [1, 2]  # Keras restarts epoch 1 from its first batch


def test_save_freq_counts_batches_across_epochs(tmp_path):
    saves = []

    class Counting(callbacks.BackupAndRestore):
        def _save_model(self):
            saves.append((self._current_epoch, self._last_batch_seen))
            super()._save_model()

    _fit(_model(), [Counting(str(tmp_path / "b"), save_freq=2)], epochs=2)  # 3 batches per epoch, 6 in all
    assert saves == [(0, 1), (1, 0), (1, 2)]


def test_corrupt_latest_backup_falls_back_to_the_previous_one(tmp_path):
    backup = str(tmp_path / "backup")
    model = _model()
    cb = callbacks.BackupAndRestore(backup, double_checkpoint=True)
    with pytest.raises(RuntimeError):
        _fit(model, [cb, Interrupt(epochs=2)], epochs=5)
    assert sorted(os.listdir(backup)) == ["latest.weights.h5", "latest.weights.h5.bkp",
                                          "training_metadata.json", "training_metadata.json.bkp"]
    with open(cb._weights_path, "w") as f:
        f.write("0")
    history = _fit(model, [cb], epochs=5)
    assert history.epoch == [1, 2, 3, 4]  # the previous backup was taken after epoch 0


def test_corrupt_backup_without_a_previous_one_is_a_clear_error(tmp_path):
    backup = str(tmp_path / "backup")
    model = _model()
    cb = callbacks.BackupAndRestore(backup)
    with pytest.raises(RuntimeError):
        _fit(model, [cb, Interrupt(epochs=1)], epochs=3)
    with open(cb._training_metadata_path, "w") as f:
        f.write("{not json")
    with pytest.raises(FileFormatError, match="training_metadata.json"):
        _fit(model, [cb], epochs=3)


def test_both_backups_unreadable_is_a_clear_error(tmp_path):
    backup = str(tmp_path / "backup")
    model = _model()
    cb = callbacks.BackupAndRestore(backup, double_checkpoint=True)
    with pytest.raises(RuntimeError):
        _fit(model, [cb, Interrupt(epochs=2)], epochs=4)
    for path in (cb._weights_path, cb._prev_weights_path):
        with open(path, "w") as f:
            f.write("0")
    with pytest.raises(FileFormatError, match="could restore neither the latest backup"):
        _fit(model, [cb], epochs=4)


def test_a_crash_while_writing_leaves_the_previous_backup_whole(tmp_path, monkeypatch):
    backup = str(tmp_path / "backup")
    model = _model()
    cb = callbacks.BackupAndRestore(backup)
    with pytest.raises(RuntimeError):
        _fit(model, [cb, Interrupt(epochs=1)], epochs=3)
    with open(cb._weights_path, "rb") as f:
        good = f.read()

    import lamina.saving.h5_weights as h5_weights

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies while the weights are being serialized

    monkeypatch.setattr(h5_weights, "write_h5", crash)
    with pytest.raises(KeyboardInterrupt):
        _fit(model, [cb], epochs=3)
    with open(cb._weights_path, "rb") as f:
        assert f.read() == good
    assert sorted(os.listdir(backup)) == ["latest.weights.h5", "training_metadata.json"]  # no stray temp file


def test_keeps_the_backup_when_asked_and_never_removes_other_files(tmp_path):
    backup = tmp_path / "backup"
    _fit(_model(), [callbacks.BackupAndRestore(backup, delete_checkpoint=False)], epochs=2)
    assert sorted(os.listdir(backup)) == ["latest.weights.h5", "training_metadata.json"]
    (backup / "notes.txt").write_text("mine")
    _fit(_model(), [callbacks.BackupAndRestore(backup)], epochs=2)
    assert os.listdir(backup) == ["notes.txt"]


def test_nan_stop_with_raise_error_keeps_the_backup(tmp_path):
    backup = str(tmp_path / "backup")
    model = _model()

    class Poison(callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                kernel = self.model.layers[0].kernel
                kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))

    with pytest.raises(RuntimeError, match="NaN or Inf loss"):
        _fit(model, [callbacks.BackupAndRestore(backup), Poison(), callbacks.TerminateOnNaN(raise_error=True)], 3)
    assert os.path.exists(os.path.join(backup, "latest.weights.h5"))


@pytest.mark.parametrize("backup_dir", ["", None])
def test_empty_backup_dir_is_refused(backup_dir):
    with pytest.raises(ValueError, match="Empty `backup_dir` argument passed"):
        callbacks.BackupAndRestore(backup_dir)


@pytest.mark.parametrize("save_freq", ["batch", 0.15, 0, -1, True])
def test_invalid_save_freq_is_refused(save_freq):
    with pytest.raises(ValueError, match=r"Invalid value for argument `save_freq`.*Received: save_freq="):
        callbacks.BackupAndRestore("somewhere", save_freq=save_freq)


def test_unbuilt_model_is_refused(tmp_path):
    class Unbuilt:
        built = False
        name = "m"

    cb = callbacks.BackupAndRestore(str(tmp_path))
    cb.set_model(Unbuilt())
    with pytest.raises(ValueError, match="must be built"):
        cb.on_train_begin()
