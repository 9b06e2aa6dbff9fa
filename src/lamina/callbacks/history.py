"""``History``: records the epoch logs; ``fit`` returns it."""

from __future__ import annotations

from lamina.callbacks.callback import Callback


class History(Callback):
    """Collects every epoch's logs: ``history.history["loss"]`` is the list of epoch losses.

    Attributes:
        history: dict mapping each metric name to its list of per-epoch values.
        epoch: list of the epoch indices seen in the current ``fit``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:
            # Keep model.history pointing at the latest state, as Keras does.
            self.model.history = self
