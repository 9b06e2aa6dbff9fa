"""``timeseries_dataset_from_array``: sliding windows over a time series, served as batches ``fit`` takes.

Keras returns a ``tf.data.Dataset`` (or a grain dataset); lamina returns a :class:`TimeseriesDataset`, a
:class:`~lamina.py_dataset.PyDataset` whose batch ``i`` is cut from the array when asked for (windows are
never all materialised), so ``fit``, ``evaluate`` and ``predict`` take it and a ``for`` loop iterates it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from lamina.py_dataset import PyDataset


def _check_positive(name: str, value, length: int) -> None:
    if value <= 0:
        raise ValueError(f"`{name}` must be higher than 0. Received: {name}={value}")
    if value >= length:
        raise ValueError(f"`{name}` must be lower than the length of the data. Received: {name}={value}, "
                         f"for data of length {length}")


def _check_bounds(start_index, end_index, length: int) -> None:
    """Keras's checks (a start or end of 0 or None means "from the start" / "to the end")."""
    if start_index:
        if start_index < 0:
            raise ValueError(f"`start_index` must be 0 or greater. Received: start_index={start_index}")
        if start_index >= length:
            raise ValueError(f"`start_index` must be lower than the length of the data. Received: "
                             f"start_index={start_index}, for data of length {length}")
    if end_index:
        if start_index and end_index <= start_index:
            raise ValueError(f"`end_index` must be higher than `start_index`. Received: start_index={start_index}, "
                             f"and end_index={end_index}")
        if end_index >= length:
            raise ValueError(f"`end_index` must be lower than the length of the data. Received: "
                             f"end_index={end_index}, for data of length {length}")
        if end_index <= 0:
            raise ValueError(f"`end_index` must be higher than 0. Received: end_index={end_index}")


class TimeseriesDataset(PyDataset):
    """Windows ``data[start + p + k * sampling_rate]`` (``k < sequence_length``) for each start position
    ``p``, with the target ``targets[start + p]``, ``batch_size`` windows per batch (one window per item
    when it is None). With ``shuffle`` the windows come in a random order, redrawn every epoch of ``fit``
    and every new ``for`` loop; the order is fixed by ``seed``."""

    def __init__(self, data, targets, positions: np.ndarray, sequence_length: int, sampling_rate: int,
                 batch_size, shuffle: bool, seed: int, start_index: int):
        super().__init__()
        self.data = data
        self.targets = targets
        self.sequence_length = int(sequence_length)
        self.sampling_rate = int(sampling_rate)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self._positions = positions
        self._start = int(start_index)
        self._offsets = np.arange(self.sequence_length) * self.sampling_rate
        self._rng = np.random.RandomState(seed)
        self._order = self._draw() if shuffle else positions
        self._passes = 0

    def _draw(self) -> np.ndarray:
        order = self._positions.copy()
        self._rng.shuffle(order)
        return order

    def __len__(self) -> int:
        n = len(self._positions)
        return n if self.batch_size is None else math.ceil(n / self.batch_size)

    def __getitem__(self, index):
        if not -len(self) <= index < len(self):
            raise IndexError(f"TimeseriesDataset has {len(self)} batches. Received: index={index}")
        index %= len(self)
        if self.batch_size is None:
            starts = self._order[index] + self._start
            windows = self.data[starts + self._offsets]
        else:
            starts = self._order[index * self.batch_size:(index + 1) * self.batch_size] + self._start
            windows = self.data[starts[:, None] + self._offsets]
        if self.targets is None:
            return windows
        return windows, self.targets[starts]

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self._order = self._draw()

    def __iter__(self):
        if self._passes and self.shuffle:  # a new pass over a shuffled dataset: a new order, as tf.data's
            self._order = self._draw()
        self._passes += 1
        for i in range(len(self)):
            yield self[i]

    def take(self, count: int):
        """The first ``count`` batches of a new pass (an iterator), as ``tf.data.Dataset.take``."""
        return itertools.islice(iter(self), count)


def timeseries_dataset_from_array(data, targets, sequence_length, sequence_stride=1, sampling_rate=1, batch_size=128,
                                  shuffle=False, seed=None, start_index=None, end_index=None, format="tf"):
    """Sliding windows over ``data`` (an array with time on its first axis), with Keras's arguments.

    Window ``i`` starts at ``start_index + i * sequence_stride`` and holds ``sequence_length`` steps
    ``sampling_rate`` apart; its target is ``targets[start]`` (the step the window starts at: pass
    ``targets = data[sequence_length:]`` to predict the step after each window). Only steps in
    ``[start_index, end_index)`` are used. ``format`` ("tf" or "grain") is accepted for Keras's signature;
    both give a :class:`TimeseriesDataset`.
    """
    data = np.asarray(data)
    if data.ndim == 0:
        raise ValueError(f"`data` must be an array with time on its first axis. Received: a scalar {data!r}")
    length = len(data)
    _check_bounds(start_index, end_index, length)
    _check_positive("sampling_rate", sampling_rate, length)
    _check_positive("sequence_stride", sequence_stride, length)
    if format not in ("tf", "grain"):
        raise ValueError(f'`format` should be either "tf" or "grain". Received: format={format}')
    if isinstance(sequence_length, bool) or not isinstance(sequence_length, (int, np.integer)) or sequence_length < 1:
        raise ValueError(f"`sequence_length` must be a positive integer. Received: sequence_length={sequence_length!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ValueError(f"`batch_size` must be a positive integer or None. Received: batch_size={batch_size!r}")
    start = start_index or 0
    end = end_index or length
    count = end - start - (sequence_length - 1) * sampling_rate
    if targets is not None:
        targets = np.asarray(targets)
        count = min(count, len(targets))
    positions = np.arange(0, max(count, 0), sequence_stride)
    if seed is None:
        # as Keras: drawn from NumPy's global generator (set_random_seed fixes it), only when shuffling
        seed = np.random.randint(1e6) if shuffle else 0
    return TimeseriesDataset(data, targets, positions, sequence_length, sampling_rate, batch_size,
                             bool(shuffle), int(seed), start)
