"""Turning ``fit``/``evaluate``/``predict`` inputs into batches.

Arrays (single, lists or dicts for multi-input/output models) are validated once, converted to
float32 once and, when shuffling, permuted once per epoch so that each batch is a cheap slice.
Python generators and other iterables of ``(x, y)`` or ``(x, y, sample_weight)`` batches stream.
Rectangular nested Python lists of numbers count as one array (``[[0.1, 0.2], [0.3, 0.4]]``); a
model with several inputs takes a list or dict of arrays.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator

import numpy as np

from lamina import backend
from lamina.autodiff import Tensor, Variable, unwrap


def _map(fn, s):
    if s is None:
        return None
    if isinstance(s, dict):
        return {k: fn(v) for k, v in s.items()}
    if isinstance(s, (list, tuple)):
        return [fn(v) for v in s]
    return fn(s)


def slice_all(s, sl: slice):
    """``s[sl]`` for every array in a structure (None stays None)."""
    if s is None:
        return None
    if isinstance(s, dict):
        return {k: v[sl] for k, v in s.items()}
    if isinstance(s, (list, tuple)):
        return [v[sl] for v in s]
    return s[sl]


def take_all(s, idx: np.ndarray):
    """Rows ``idx`` of every array in a structure (None stays None)."""
    if s is None:
        return None
    if isinstance(s, dict):
        return {k: v.take(idx, axis=0) for k, v in s.items()}
    if isinstance(s, (list, tuple)):
        return [v.take(idx, axis=0) for v in s]
    return s.take(idx, axis=0)


def _leaves(s) -> list:
    if s is None:
        return []
    if isinstance(s, dict):
        return list(s.values())
    if isinstance(s, (list, tuple)):
        return list(s)
    return [s]


def is_array_like(x) -> bool:
    if isinstance(x, (np.ndarray, Tensor, Variable)):
        return True
    if isinstance(x, dict):
        return all(is_array_like(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return len(x) > 0 and all(isinstance(v, (np.ndarray, Tensor, Variable)) for v in x)
    return False


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def is_nested_list_data(x) -> bool:
    """A (nested) Python list or tuple whose first leaf is a number or string: one array's worth of
    data, as opposed to a list of arrays (several inputs) or a list of ``(x, y)`` batches."""
    if not isinstance(x, (list, tuple)):
        return False
    node = x
    while isinstance(node, (list, tuple)):
        if not node:
            return True
        node = node[0]
    return isinstance(node, (numbers.Number, np.generic, str, bytes))


def _ragged_detail(rows) -> str:
    lengths = [len(r) if isinstance(r, (list, tuple)) else None for r in rows]
    describe = lambda n: "a single value" if n is None else f"{n} values"
    for i, n in enumerate(lengths):
        if n != lengths[0]:
            return f"row 0 has {describe(lengths[0])} but row {i} has {describe(n)}"
    return "the rows differ in length further down"


def nested_list_to_array(x, what: str, name: str) -> np.ndarray:
    """One array from a rectangular nested list; a ragged one is an error naming the first odd row."""
    try:
        arr = np.asarray(x)
    except ValueError:
        arr = None
    if arr is None or arr.dtype.kind == "O":
        raise ValueError(
            f"`{name}` passed to {what} is a nested Python list that is not rectangular "
            f"({_ragged_detail(x)}), so it cannot be read as one array. Pad or trim the rows to one "
            f"length, or pass a NumPy array. Received: {name}={_short(x)}"
        )
    return arr


def lists_to_arrays(s, what: str, name: str):
    """``s`` with nested Python lists of numbers (whole, or as dict values) turned into arrays."""
    if is_nested_list_data(s):
        return nested_list_to_array(s, what, name)
    if isinstance(s, dict):
        return {k: nested_list_to_array(v, what, f"{name}[{k!r}]") if is_nested_list_data(v) else v
                for k, v in s.items()}
    return s


def _iterable(x) -> bool:
    try:
        iter(x)
    except TypeError:
        return False
    return True


def as_input(x, what: str, name: str = "x") -> tuple[object, bool]:
    """``(x, True)`` for array data (nested lists become arrays), ``(x, False)`` for an iterable of
    batches; anything else is a ValueError that says what ``what`` accepts."""
    x = lists_to_arrays(x, what, name)
    if is_array_like(x):
        return x, True
    if isinstance(x, dict):
        key, value = next((k, v) for k, v in x.items() if not is_array_like(v))
        raise ValueError(
            f"`{name}` passed to {what} is a dict, so each of its values must be an array (one per model "
            f"input). Received: {name}[{key!r}] of type {type(value).__name__}"
        )
    if isinstance(x, (str, bytes)) or not _iterable(x):
        raise ValueError(
            f"`{name}` passed to {what} must be a NumPy array (a list or dict of arrays for a model with "
            "several inputs), a nested list of numbers, or an iterable of batches such as a generator. "
            f"Received: {name}={_short(x)} of type {type(x).__name__}"
        )
    return x, False


def require_arrays(s, what: str, name: str):
    """``s`` (nested lists converted) when it is array data; else a ValueError."""
    s = lists_to_arrays(s, what, name)
    if not is_array_like(s):
        raise ValueError(
            f"`{name}` passed to {what} must be a NumPy array (a list or dict of arrays for a model with "
            f"several inputs or outputs). Received: {name}={_short(s)} of type {type(s).__name__}"
        )
    return s


def check_positive_int(value, what: str, name: str = "batch_size") -> None:
    """A positive integer or None (a batch size or a step count)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0):
        raise ValueError(
            f"`{name}` passed to {what} must be a positive integer (or None for the default). "
            f"Received: {name}={value!r}"
        )


def to_array(x, what: str, name: str = "x", float_cast: bool = True) -> np.ndarray:
    """A NumPy array for one input; floats become floatx, non-numeric data is a TypeError."""
    arr = np.asarray(unwrap(x))
    if arr.dtype.kind in "OUSV":
        raise TypeError(
            f"`{name}` passed to {what} must be numeric (floats or integers). "
            f"Received: an array of dtype {arr.dtype}"
        )
    if float_cast and arr.dtype.kind in "fiub" and arr.dtype.name != backend.floatx():
        arr = arr.astype(backend.floatx())
    return arr


_NAN_ADVICE = "which would make the loss NaN. Clean or impute the data first."


def check_finite(x, what: str, name: str = "x", advice: str = _NAN_ADVICE) -> None:
    """A ValueError at the first NaN or inf (its index and value); one cheap pass when all is well."""
    for i, arr in enumerate(_leaves(x)):
        # A finite sum proves every entry finite (NaN or inf would propagate) in one pass with no
        # temporary; only a non-finite sum (bad data, or an overflow of huge values) is looked at closely.
        if arr.dtype.kind == "f" and not np.isfinite(np.add.reduce(arr, axis=None)) and not np.isfinite(arr).all():
            bad = np.argwhere(~np.isfinite(arr))[0]
            where = f" (input {i})" if len(_leaves(x)) > 1 else ""
            raise ValueError(
                f"`{name}`{where} passed to {what} contains NaN or inf values, {advice} "
                f"Received: {arr[tuple(bad)]} at index {tuple(bad.tolist())}"
            )


def check_class_weight(class_weight, what: str) -> None:
    """``{class index: finite weight}``; the first bad key or weight is named."""
    if not isinstance(class_weight, dict):
        raise ValueError(
            f"`class_weight` passed to {what} must be a dict mapping class indices to weights, e.g. "
            f"{{0: 1.0, 1: 5.0}}. Received: class_weight of type {type(class_weight).__name__}"
        )
    for key, weight in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, numbers.Real) or not math.isfinite(key) \
                or key != int(key) or key < 0:
            raise ValueError(
                f"`class_weight` passed to {what} must have class indices (integers from 0) as keys. "
                f"Received: key {key!r}"
            )
        try:
            value = float(weight)
        except (TypeError, ValueError):
            value = None
        if value is None or not math.isfinite(value):
            raise ValueError(
                f"`class_weight` passed to {what} has the weight {weight!r} for class {key!r}; every class "
                "weight must be a finite number (a NaN or inf weight would turn every model weight into "
                f"NaN at the first step). Received: class_weight[{key!r}]={weight!r}"
            )


def check_batch_dims(x, y=None, sample_weight=None, what: str = "fit") -> None:
    """Every array has a first (batch) dimension."""
    for name, s in (("x", x), ("y", y), ("sample_weight", sample_weight)):
        for arr in _leaves(s):
            if np.ndim(arr) == 0:
                raise ValueError(
                    f"`{name}` passed to {what} needs a batch (first) dimension: one row per sample. "
                    f"Received: a scalar {name}={_short(unwrap(arr))}"
                )


def require_samples(x, y=None, sample_weight=None, what: str = "fit") -> int:
    """The number of samples, which must be the same for all arrays and at least one."""
    check_batch_dims(x, y, sample_weight, what)
    n = num_samples(x, y, sample_weight, what)
    if n == 0:
        shapes = [tuple(np.shape(a)) for a in _leaves(x)]
        raise ValueError(
            f"`x` passed to {what} has no samples, and {what} needs at least one. "
            f"Received: x of shape {shapes[0] if len(shapes) == 1 else shapes}"
        )
    return n


def num_samples(x, y=None, sample_weight=None, what: str = "fit") -> int:
    sizes = {}
    for name, s in (("x", x), ("y", y), ("sample_weight", sample_weight)):
        for arr in _leaves(s):
            sizes.setdefault(name, set()).add(int(np.shape(arr)[0]) if np.ndim(arr) else 1)
    all_sizes = set().union(*sizes.values()) if sizes else set()
    if len(all_sizes) > 1:
        detail = ", ".join(f"{k} sizes: {sorted(v)}" for k, v in sizes.items())
        raise ValueError(
            f"Data passed to {what} must all have the same number of samples (first dimension). "
            f"Received: {detail}"
        )
    return all_sizes.pop() if all_sizes else 0


class ArrayBatches:
    """Batches of in-memory arrays; one permutation (and one gather) per epoch when shuffling."""

    def __init__(self, x, y=None, sample_weight=None, batch_size: int = 32, shuffle: bool = False,
                 steps: int | None = None, what: str = "fit", rng=None, shard: tuple[int, int] | None = None):
        self.x, self.y, self.sw = x, y, sample_weight
        self.n = num_samples(x, y, sample_weight, what)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.rng = rng
        # Data-parallel: (rank, world). Step i covers the global slice of batch_size * world samples
        # of the epoch's (shared) order; this rank takes its contiguous part of it.
        self.shard = shard
        world = shard[1] if shard else 1
        full = math.ceil(self.n / (self.batch_size * world)) if self.n else 0
        self.steps = full if steps is None else min(int(steps), full)

    def __len__(self) -> int:
        return self.steps

    def epoch(self) -> Iterator[tuple]:
        x, y, sw = self.x, self.y, self.sw
        rank, world = self.shard or (0, 1)
        if self.shuffle == "batch":
            # Keras's "batch" shuffle: whole (global) batches in random order, samples within in
            # order; under a strategy each rank takes its part of each global batch.
            order = (self.rng or backend.rng()).permutation(self.steps)
            bs = self.batch_size
            for b in order:
                start = b * bs * world + rank * bs
                sl = slice(min(start, self.n), min(start + bs, self.n))
                yield slice_all(x, sl), slice_all(y, sl), slice_all(sw, sl)
            return
        bs = self.batch_size
        if self.shuffle:
            # One permutation per epoch; each batch gathers its rows, which is cheaper than gathering
            # the whole epoch up front and leaves the batch hot in cache for the first matmul.
            perm = (self.rng or backend.rng()).permutation(self.n)
            for i in range(self.steps):
                start = i * bs * world + rank * bs
                idx = perm[min(start, self.n):min(start + bs, self.n)]
                yield take_all(x, idx), take_all(y, idx), take_all(sw, idx)
            return
        for i in range(self.steps):
            start = i * bs * world + rank * bs
            sl = slice(min(start, self.n), min(start + bs, self.n))
            yield slice_all(x, sl), slice_all(y, sl), slice_all(sw, sl)


class IterableBatches:
    """Batches from a generator or iterable of ``x``, ``(x, y)`` or ``(x, y, sample_weight)``."""

    def __init__(self, source: Iterable, steps: int | None = None, what: str = "fit"):
        self.source = source
        self.steps = steps
        self.what = what
        self._iterator = None
        self._one_shot = iter(source) is source  # a generator: cannot restart

    def __len__(self):
        return self.steps

    def epoch(self) -> Iterator[tuple]:
        if self._iterator is None or not self._one_shot or self.steps is None:
            if self._one_shot and self._iterator is not None and self.steps is None:
                return  # an exhausted generator gives no further epochs
            self._iterator = iter(self.source)
        count = 0
        while self.steps is None or count < self.steps:
            try:
                item = next(self._iterator)
            except StopIteration:
                if not self._one_shot and self.steps is not None and count == 0:
                    return
                if not self._one_shot and self.steps is not None:
                    self._iterator = iter(self.source)
                    continue
                return
            yield unpack(item, self.what)
            count += 1


def unpack(item, what: str) -> tuple:
    if isinstance(item, tuple):
        if len(item) == 1:
            return item[0], None, None
        if len(item) == 2:
            return item[0], item[1], None
        if len(item) == 3:
            return item
        raise ValueError(
            f"Batches given to {what} must be x, (x,), (x, y) or (x, y, sample_weight). "
            f"Received: a tuple of length {len(item)}"
        )
    return item, None, None


def split_validation(x, y, sw, fraction: float):
    """Keras's validation_split: the LAST ``fraction`` of the samples, taken before shuffling."""
    if not 0 < fraction < 1:
        raise ValueError(f"`validation_split` must be between 0 and 1 (exclusive). Received: {fraction}")
    n = num_samples(x, y, sw)
    cut = int(n * (1 - fraction))
    if cut == 0 or cut == n:
        raise ValueError(
            f"validation_split={fraction} leaves an empty training or validation set for {n} samples."
        )
    head = lambda s: _map(lambda a: a[:cut], s)
    tail = lambda s: _map(lambda a: a[cut:], s)
    return (head(x), head(y), head(sw)), (tail(x), tail(y), tail(sw))


def class_weights_to_sample_weights(y, class_weight: dict) -> np.ndarray:
    """Per-sample weights from ``{class: weight}``: the class is y, argmax(y) if one-hot."""
    y = np.asarray(unwrap(y))
    if y.ndim == 2 and y.shape[1] > 1:
        classes = np.argmax(y, axis=1)
    else:
        classes = np.round(y.reshape(len(y), -1)[:, 0]).astype(np.int64)
    # Classes without an entry (every class, for an empty dict) weigh 1, as in Keras.
    size = max(max(class_weight, default=-1) + 1, classes.max() + 1 if len(classes) else 0)
    table = np.ones(int(size), dtype=backend.floatx())
    for k, w in class_weight.items():
        table[int(k)] = w
    return table[classes]
