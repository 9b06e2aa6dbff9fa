"""``ProgbarLogger``: prints the progress bar and epoch metrics during fit / evaluate / predict."""

from __future__ import annotations

from lamina.callbacks._io import print_msg
from lamina.callbacks.callback import Callback
from lamina.callbacks.progbar import Progbar


class ProgbarLogger(Callback):
    """Prints ``Epoch i/N`` and a live progress bar with the metrics to stdout.

    Reads ``verbose`` (``"auto"`` means 1), ``epochs`` and ``steps`` from the params the trainer sets.
    Inside ``fit`` the validation pass is silent: its ``val_`` metrics appear on the epoch's final line.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0
        self.progbar: Progbar | None = None
        self.target: int | None = None
        self.verbose = 1
        self.epochs = 1
        self._called_in_fit = False

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else verbose
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def on_train_begin(self, logs=None):
        self._called_in_fit = True  # validation inside fit draws no bar of its own

    def on_train_end(self, logs=None):
        self._called_in_fit = False  # so a later evaluate() with this logger draws again

    def on_test_begin(self, logs=None):
        if not self._called_in_fit:
            self._reset_progbar()
            self._maybe_init_progbar()

    def on_predict_begin(self, logs=None):
        self._reset_progbar()
        self._maybe_init_progbar()

    def on_epoch_begin(self, epoch, logs=None):
        self._reset_progbar()
        self._maybe_init_progbar()
        if self.verbose and self.epochs > 1:
            print_msg(f"Epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch, logs=None):
        self._update_progbar(batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        if not self._called_in_fit:
            self._update_progbar(batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._update_progbar(batch, None)  # predictions are not metrics

    def on_epoch_end(self, epoch, logs=None):
        self._finalize_progbar(logs)

    def on_test_end(self, logs=None):
        if not self._called_in_fit:
            self._finalize_progbar(logs)

    def on_predict_end(self, logs=None):
        self._finalize_progbar(logs)

    def _reset_progbar(self) -> None:
        self.seen = 0
        self.progbar = None

    def _maybe_init_progbar(self) -> None:
        if self.progbar is None:
            # Trainer logs already hold running averages, so every metric is shown as given.
            self.progbar = Progbar(
                target=self.target, verbose=self.verbose, unit_name="step", stateless_metrics=()
            )

    def _update_progbar(self, batch: int, logs) -> None:
        self._maybe_init_progbar()
        self.seen = batch + 1
        if self.verbose == 1:
            self.progbar.update(self.seen, list(logs.items()) if logs else None, finalize=False)

    def _finalize_progbar(self, logs) -> None:
        self._maybe_init_progbar()
        if self.target is None:
            # Unknown length (a generator): the first epoch teaches it.
            self.target = self.seen
            self.progbar.target = self.target
        self.progbar.update(self.target, list(logs.items()) if logs else None, finalize=True)
