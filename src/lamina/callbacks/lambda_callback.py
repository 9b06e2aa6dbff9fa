"""``LambdaCallback``: a callback built from plain functions."""

from __future__ import annotations

from collections.abc import Callable

from lamina.callbacks.callback import Callback

_HOOKS = frozenset(name for name in vars(Callback) if name.startswith("on_"))


class LambdaCallback(Callback):
    """Calls the functions you pass at the matching hooks.

    ``on_epoch_begin``/``on_epoch_end`` get ``(epoch, logs)``; ``on_train_begin``/``on_train_end`` get
    ``(logs)``; batch hooks get ``(batch, logs)`` (``logs`` by keyword). Any other hook of
    ``Callback`` can be given by name through ``**kwargs``, e.g. ``on_test_end=fn``; other keyword
    arguments become attributes of the callback (``custom_method=fn``), as in Keras, except names
    starting with ``on_`` that are no hook (a typo such as ``on_epoch_ends``), which raise TypeError.

    Example:

        LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]))
    """

    def __init__(
        self,
        on_epoch_begin: Callable | None = None,
        on_epoch_end: Callable | None = None,
        on_train_begin: Callable | None = None,
        on_train_end: Callable | None = None,
        on_train_batch_begin: Callable | None = None,
        on_train_batch_end: Callable | None = None,
        **kwargs: Callable,
    ):
        super().__init__()
        # An ``on_*`` name that is no hook is a typo (``on_epoch_ends``) that would never be called.
        unknown = sorted(name for name in kwargs if name.startswith("on_") and name not in _HOOKS)
        if unknown:
            raise TypeError(
                "LambdaCallback: keyword arguments named `on_*` must be `Callback` hooks "
                f"({', '.join(sorted(_HOOKS))}). Received: {', '.join(unknown)}"
            )
        extras = {name: value for name, value in kwargs.items() if name not in _HOOKS}
        kwargs = {name: fn for name, fn in kwargs.items() if name in _HOOKS}
        self.__dict__.update(extras)
        hooks = dict(
            on_epoch_begin=on_epoch_begin,
            on_epoch_end=on_epoch_end,
            on_train_begin=on_train_begin,
            on_train_end=on_train_end,
            on_train_batch_begin=on_train_batch_begin,
            on_train_batch_end=on_train_batch_end,
            **kwargs,
        )
        for name, fn in hooks.items():
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError(f"LambdaCallback: `{name}` must be callable. Received: {name}={fn!r}")
            # An instance attribute shadows the no-op method; CallbackList sees it as an override.
            setattr(self, name, fn)
