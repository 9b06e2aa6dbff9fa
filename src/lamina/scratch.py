"""Reused scratch arrays: ``empty(shape, dtype)`` is ``np.empty``, but hands back an array made for an earlier
call once nothing but this pool refers to it.

Arrays of a few MB are mapped from the operating system and unmapped on release, so a loop that makes and
drops them pays the page faults of touching them anew every time: a training step of Embedding -> LSTM(64) at
batch 64 makes about 20 MB of step buffers (2-4 ms of a 6.5 ms step), and a convnet's feature maps made on the
block threads of :mod:`lamina.row_split` faulted 46,000 pages per 10,000-image predict. A buffer is free again
when the pool holds its only reference: a live view of it (numpy views refer to their base), a tape closure,
a plan node or a caller still using it keeps it out. Only large arrays are pooled (smaller ones come from
malloc's reused heap anyway), and free ones beyond a byte budget are dropped, oldest first.
"""

from __future__ import annotations

import math
import sys
import threading

import numpy as np

MIN_BYTES = 1 << 18  # smaller arrays: plain np.empty (malloc reuses its heap for them)
BUDGET_BYTES = 128 << 20  # free arrays kept at most, in bytes (a training step of the LSTM uses ~20 MB)

_POOL: list = []  # most recently handed out first
_LOCK = threading.Lock()


def empty(shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape`` and ``dtype``, like ``np.empty``; a large one is a free
    array of the pool where one of that shape and dtype exists, else a new one the pool keeps for later."""
    dtype = np.dtype(dtype)
    if math.prod(shape) * dtype.itemsize < MIN_BYTES:  # the common small case first: a latency path's arrays
        return np.empty(shape, dtype=dtype)
    shape = tuple(int(n) for n in shape)
    with _LOCK:
        for i in range(len(_POOL)):
            if _POOL[i].shape == shape and _POOL[i].dtype == dtype and _free(i):
                _POOL.insert(0, _POOL.pop(i))
                return _POOL[0]
        _trim()
        _POOL.insert(0, np.empty(shape, dtype=dtype))
        return _POOL[0]


def _free(i: int) -> bool:
    """Does only the pool refer to its i-th array? (Its references: the pool's list and this call's argument.)"""
    return sys.getrefcount(_POOL[i]) == 2


def _trim() -> None:
    """Drop free arrays, oldest first, while the free ones together exceed the budget."""
    free = [i for i in range(len(_POOL)) if _free(i)]
    held = sum(_POOL[i].nbytes for i in free)
    for i in reversed(free):  # oldest first; deleting from the end keeps the earlier indices valid
        if held <= BUDGET_BYTES:
            break
        held -= _POOL[i].nbytes
        del _POOL[i]


def clear() -> None:
    """Forget every pooled array (the ones in use stay with their users)."""
    with _LOCK:
        _POOL.clear()
