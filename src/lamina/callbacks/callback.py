"""The ``Callback`` base class: hooks into fit / evaluate / predict."""

from __future__ import annotations

from typing import Any


class Callback:
    """Base class for callbacks; subclass it and override the hooks you need.

    Every hook is a no-op here. ``CallbackList`` checks once which hooks a callback overrides and
    calls only those, so a callback that overrides no batch hook costs nothing per batch.

    Attributes:
        params: dict of training parameters (``verbose``, ``epochs``, ``steps``), set by the trainer.
        model: the model being trained (set with ``set_model``).
    """

    def __init__(self) -> None:
        self.params: dict | None = None
        self._model: Any = None

    def set_params(self, params: dict) -> None:
        self.params = params

    def set_model(self, model: Any) -> None:
        self._model = model

    @property
    def model(self) -> Any:
        return self._model

    # Legacy aliases: the default train-batch hooks forward to these, as in Keras.
    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Backwards-compatible alias of ``on_train_batch_begin``."""

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Backwards-compatible alias of ``on_train_batch_end``."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Called at the start of epoch ``epoch`` (0-based), in training only."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Called at the end of an epoch; ``logs`` holds the epoch's metrics and ``val_`` metrics."""

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Called before training batch ``batch`` (0-based within the epoch)."""
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Called after a training batch; ``logs`` holds the metrics aggregated so far this epoch."""
        self.on_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Called before a batch of ``evaluate`` (or of validation inside ``fit``)."""

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Called after a batch of ``evaluate`` (or of validation inside ``fit``)."""

    def on_predict_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Called before a batch of ``predict``."""

    def on_predict_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Called after a batch of ``predict``."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Called once at the start of ``fit``."""

    def on_train_end(self, logs: dict | None = None) -> None:
        """Called once at the end of ``fit`` (also after an early stop)."""

    def on_test_begin(self, logs: dict | None = None) -> None:
        """Called at the start of ``evaluate`` or of a validation pass."""

    def on_test_end(self, logs: dict | None = None) -> None:
        """Called at the end of ``evaluate`` or of a validation pass."""

    def on_predict_begin(self, logs: dict | None = None) -> None:
        """Called at the start of ``predict``."""

    def on_predict_end(self, logs: dict | None = None) -> None:
        """Called at the end of ``predict``."""
