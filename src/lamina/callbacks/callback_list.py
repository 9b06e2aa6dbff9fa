"""``CallbackList``: calls a list of callbacks through one object, cheaply."""

from __future__ import annotations

from typing import Any

from lamina.callbacks._io import pythonify_logs
from lamina.callbacks.callback import Callback
from lamina.callbacks.history import History
from lamina.callbacks.progbar_logger import ProgbarLogger

_BATCH_HOOKS = (
    "on_batch_begin",
    "on_batch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_batch_begin",
    "on_test_batch_end",
    "on_predict_batch_begin",
    "on_predict_batch_end",
)
_OTHER_HOOKS = (
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_begin",
    "on_train_end",
    "on_test_begin",
    "on_test_end",
    "on_predict_begin",
    "on_predict_end",
)
HOOKS = _BATCH_HOOKS + _OTHER_HOOKS

# The default train-batch hooks forward to the legacy aliases, so overriding an alias counts too.
_ALSO_NEEDED_BY = {
    "on_train_batch_begin": ("on_train_batch_begin", "on_batch_begin"),
    "on_train_batch_end": ("on_train_batch_end", "on_batch_end"),
}


def _overrides(callback: Any, hook: str) -> bool:
    """Whether ``callback`` does anything in ``hook``: a subclass method or an instance attribute
    (``LambdaCallback`` stores its functions on the instance)."""
    if hook in getattr(callback, "__dict__", {}):
        return True
    if not isinstance(callback, Callback):
        return hasattr(callback, hook)  # a duck-typed callback: trust what it offers
    return getattr(type(callback), hook) is not getattr(Callback, hook)


def _flatten(callbacks) -> list:
    if callbacks is None:
        return []
    if isinstance(callbacks, (list, tuple)):
        out = []
        for c in callbacks:
            out.extend(_flatten(c))
        return out
    return [callbacks]


class CallbackList(Callback):
    """Holds callbacks and forwards every hook to them.

    Which hooks each callback overrides is worked out once (at construction, ``append`` and every
    ``on_*_begin``), and a hook is forwarded only to the callbacks that override it, so per-batch
    dispatch to callbacks that only watch epochs costs one empty-list check. Logs are converted once
    per call (sorted keys, Python floats) and the same dict goes to every callback, so a key one
    callback adds (``learning_rate``) is seen by the ones after it.

    Args:
        callbacks: list of ``Callback`` instances (nested lists are flattened).
        add_history: append a ``History`` if none is in ``callbacks``.
        add_progbar: append a ``ProgbarLogger`` if none is in ``callbacks``.
        model: the model the callbacks act on.
        **params: training parameters passed to every callback's ``set_params``.
    """

    def __init__(
        self,
        callbacks=None,
        add_history: bool = False,
        add_progbar: bool = False,
        model: Any = None,
        **params: Any,
    ):
        super().__init__()
        self.callbacks: list = _flatten(callbacks)
        for cb in self.callbacks:
            if not all(callable(getattr(cb, hook, None)) for hook in HOOKS):
                raise TypeError(
                    "CallbackList: every callback must be a `keras.callbacks.Callback` (or provide all of "
                    f"its hooks). Received: {cb!r} of type {type(cb).__name__}"
                )
        self._history: History | None = None
        self._progbar: ProgbarLogger | None = None
        self._add_default_callbacks(add_history, add_progbar)
        self._dispatch: dict[str, list] = {}
        self._rebuild_dispatch()
        self.set_model(model)
        self.set_params(params)

    def _add_default_callbacks(self, add_history: bool, add_progbar: bool) -> None:
        for cb in self.callbacks:
            if isinstance(cb, ProgbarLogger):
                self._progbar = cb
            elif isinstance(cb, History):
                self._history = cb
        if self._history is None and add_history:
            self._history = History()
            self.callbacks.append(self._history)
        if self._progbar is None and add_progbar:
            self._progbar = ProgbarLogger()
            self.callbacks.append(self._progbar)

    def _rebuild_dispatch(self) -> None:
        for hook in HOOKS:
            needed_by = _ALSO_NEEDED_BY.get(hook, (hook,))
            self._dispatch[hook] = [
                getattr(cb, hook) for cb in self.callbacks if any(_overrides(cb, h) for h in needed_by)
            ]

    def append(self, callback: Callback) -> None:
        """Add one more callback (it gets this list's model and params)."""
        self.callbacks.append(callback)
        if self.model is not None:
            callback.set_model(self.model)
        if self.params:
            callback.set_params(self.params)
        self._rebuild_dispatch()

    def set_params(self, params: dict) -> None:
        self.params = params
        if params:
            for cb in self.callbacks:
                cb.set_params(params)

    def set_model(self, model: Any) -> None:
        if model is None:
            return
        super().set_model(model)
        if self._history is not None:
            model.history = self._history
        for cb in self.callbacks:
            cb.set_model(model)

    # Batch hooks: the hot path. Nothing is converted when no callback listens.
    def _call_batch(self, hook: str, batch: int, logs) -> None:
        fns = self._dispatch[hook]
        if fns:
            logs = pythonify_logs(logs)
            for fn in fns:
                fn(batch, logs=logs)

    def on_batch_begin(self, batch, logs=None):
        self._call_batch("on_batch_begin", batch, logs)

    def on_batch_end(self, batch, logs=None):
        self._call_batch("on_batch_end", batch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call_batch("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call_batch("on_train_batch_end", batch, logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._call_batch("on_test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        self._call_batch("on_test_batch_end", batch, logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self._call_batch("on_predict_batch_begin", batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._call_batch("on_predict_batch_end", batch, logs)

    def _call(self, hook: str, *args) -> None:
        fns = self._dispatch[hook]
        if fns:
            logs = pythonify_logs(args[-1])
            for fn in fns:
                fn(*args[:-1], logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs)

    def on_train_begin(self, logs=None):
        self._rebuild_dispatch()  # the list may have been edited in place since construction
        self._call("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs)

    def on_test_begin(self, logs=None):
        self._rebuild_dispatch()
        self._call("on_test_begin", logs)

    def on_test_end(self, logs=None):
        self._call("on_test_end", logs)

    def on_predict_begin(self, logs=None):
        self._rebuild_dispatch()
        self._call("on_predict_begin", logs)

    def on_predict_end(self, logs=None):
        self._call("on_predict_end", logs)
