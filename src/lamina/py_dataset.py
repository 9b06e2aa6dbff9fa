"""``keras.utils.PyDataset`` (alias ``Sequence``): a dataset written in Python that serves whole batches by index.

A subclass defines ``__len__`` (the number of batches) and ``__getitem__(index)`` (batch ``index`` as ``x``,
``(x,)``, ``(x, y)``, ``(x, y, sample_weight)`` or a dict of inputs); ``on_epoch_begin``/``on_epoch_end`` run
around every epoch of ``fit``/``evaluate``/``predict``. ``workers``, ``use_multiprocessing`` and
``max_queue_size`` are accepted and kept, as in Keras, but lamina reads the batches in the calling thread,
one after the other: NumPy already spreads the maths over the cores, and batches stay in index order.
"""

from __future__ import annotations

import warnings


class PyDataset:
    """Base class for a dataset of batches: define ``__len__`` and ``__getitem__`` (see the module)."""

    def __init__(self, workers: int = 1, use_multiprocessing: bool = False, max_queue_size: int = 10):
        self._workers = workers
        self._use_multiprocessing = use_multiprocessing
        self._max_queue_size = max_queue_size

    def _check_super_called(self) -> None:
        # A subclass whose __init__ forgot super().__init__(**kwargs) gets the defaults and one warning.
        missing = [n for n in ("_workers", "_use_multiprocessing", "_max_queue_size") if not hasattr(self, n)]
        if missing:
            self._workers, self._use_multiprocessing, self._max_queue_size = (
                getattr(self, "_workers", 1), getattr(self, "_use_multiprocessing", False),
                getattr(self, "_max_queue_size", 10))
            warnings.warn(
                f"{type(self).__name__} should call `super().__init__(**kwargs)` in its constructor; `**kwargs` "
                "can include `workers`, `use_multiprocessing`, `max_queue_size` (do not pass them to `fit()`). "
                f"Received: a {type(self).__name__} without {', '.join(missing)}",
                stacklevel=3,
            )

    @property
    def workers(self) -> int:
        self._check_super_called()
        return self._workers

    @workers.setter
    def workers(self, value) -> None:
        self._workers = value

    @property
    def use_multiprocessing(self) -> bool:
        self._check_super_called()
        return self._use_multiprocessing

    @use_multiprocessing.setter
    def use_multiprocessing(self, value) -> None:
        self._use_multiprocessing = value

    @property
    def max_queue_size(self) -> int:
        self._check_super_called()
        return self._max_queue_size

    @max_queue_size.setter
    def max_queue_size(self, value) -> None:
        self._max_queue_size = value

    def __getitem__(self, index):
        """Batch number ``index``."""
        raise NotImplementedError(f"{type(self).__name__} must define `__getitem__(self, index)` returning a batch.")

    @property
    def num_batches(self) -> int | None:
        """The number of batches: ``len(self)``; a subclass may return None for an endless dataset."""
        if hasattr(self, "__len__"):
            return len(self)
        raise NotImplementedError(
            f"{type(self).__name__} must define `__len__` (the number of batches) or a `num_batches` property "
            "(None for an endless dataset)."
        )

    def __iter__(self):
        # Bounded by num_batches, never by an IndexError: a finite dataset iterates exactly len() batches.
        count = self.num_batches
        index = 0
        while count is None or index < count:
            yield self[index]
            index += 1

    def on_epoch_begin(self) -> None:
        """Called before each epoch."""

    def on_epoch_end(self) -> None:
        """Called after each epoch (shuffle or augment here)."""
