"""Turning ``fit``/``evaluate``/``predict`` inputs into batches: :class:`EpochIterator`.

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
from lamina.py_dataset import PyDataset

# A None inside a list or dict of inputs is an optional input left out (``Input(optional=True)``):
# the helpers below keep it in place; the model says whether that input may be missing.


def _map(fn, s):
    """``fn`` on every array of a (nested) list/tuple/dict structure; lists and tuples come back as lists."""
    if s is None:
        return None
    if isinstance(s, dict):
        return {k: None if v is None else _map(fn, v) for k, v in s.items()}
    if isinstance(s, (list, tuple)):
        return [None if v is None else _map(fn, v) for v in s]
    return fn(s)


def slice_all(s, sl: slice):
    """``s[sl]`` for every array in a structure (None stays None)."""
    if s is None:
        return None
    if isinstance(s, (dict, list, tuple)):
        return _map(lambda v: v[sl], s)
    return s[sl]


def take_all(s, idx: np.ndarray):
    """Rows ``idx`` of every array in a structure (None stays None)."""
    if s is None:
        return None
    if isinstance(s, (dict, list, tuple)):
        return _map(lambda v: v.take(idx, axis=0), s)
    return s.take(idx, axis=0)


def _leaves(s) -> list:
    if s is None:
        return []
    if isinstance(s, dict):
        return [leaf for v in s.values() for leaf in _leaves(v)]
    if isinstance(s, (list, tuple)):
        return [leaf for v in s for leaf in _leaves(v)]
    return [s]


def _is_array(x) -> bool:
    """One array: NumPy's, lamina's, or an object that converts itself (``__array__``: a torch tensor
    from a DataLoader, a pandas frame), which Keras accepts as array data too."""
    return isinstance(x, (np.ndarray, Tensor, Variable)) or (
        hasattr(type(x), "__array__") and not isinstance(x, (list, tuple, dict, str, bytes)))


def is_array_like(x) -> bool:
    if _is_array(x):
        return True
    if isinstance(x, dict):
        return all(v is None or is_array_like(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        # arrays only: a list of tuples is a list of (x, y) batches. (A dict's values may nest, as the
        # targets of nested outputs do: {"a": (y1, y2), "b": {"b1": y1}}.)
        return len(x) > 0 and all(v is None or _is_array(v) for v in x)
    return False


def _as_numpy(s):
    """``s`` with every leaf that only converts itself (``__array__``) made a NumPy array; structures that
    hold none come back as they are."""
    leaves = _leaves(s)
    if all(isinstance(v, (np.ndarray, Tensor, Variable)) for v in leaves):
        return s
    convert = (lambda v: v if isinstance(v, (np.ndarray, Tensor, Variable)) else np.asarray(v))
    return convert(s) if not isinstance(s, (dict, list, tuple)) else _map(convert, s)


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
    return _as_numpy(s)


def check_positive_int(value, what: str, name: str = "batch_size") -> None:
    """A positive integer or None (a batch size or a step count)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0):
        raise ValueError(
            f"`{name}` passed to {what} must be a positive integer (or None for the default). "
            f"Received: {name}={value!r}"
        )


def _is_text(arr: np.ndarray) -> bool:
    """A str/bytes array, or an object array holding only str/bytes."""
    if arr.dtype.kind in "US":
        return True
    return arr.dtype.kind == "O" and arr.size > 0 and all(isinstance(v, (str, bytes)) for v in arr.flat)


def to_array(x, what: str, name: str = "x", float_cast: bool = True, text: bool = False) -> np.ndarray:
    """A NumPy array for one input; floats become floatx, non-numeric data is a TypeError. With ``text`` (a
    model whose first layer reads tokens: TextVectorization, StringLookup, IntegerLookup) text and integer
    arrays pass as they are (integer ids keep their precision)."""
    arr = np.asarray(unwrap(x))
    if arr.dtype.kind == "V" and backend.is_float_dtype(arr.dtype):  # ml_dtypes' bfloat16 / float8
        return arr.astype(backend.floatx()) if float_cast else arr
    if text and (arr.dtype.kind in "iu" or _is_text(arr)):
        return arr
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


class PyDatasetBatches:
    """Batches of a :class:`~lamina.utils.PyDataset`, read by index: ``len()`` batches an epoch (in a
    fresh random order when ``shuffle``), between its ``on_epoch_begin`` and ``on_epoch_end``.

    ``steps`` (steps_per_epoch) takes that many batches an epoch, carrying on where the last epoch
    stopped and ending an epoch early at the end of the dataset, as Keras does. An endless dataset
    (``num_batches`` None) needs ``steps``: without it an epoch would never end.
    """

    def __init__(self, dataset: PyDataset, steps: int | None = None, shuffle=False, what: str = "fit"):
        self.dataset, self.what = dataset, what
        self.shuffle = bool(shuffle)
        _ = dataset.workers  # read as Keras's adapter does: warns once if the subclass skipped super().__init__
        count = dataset.num_batches
        if count is None and steps is None:
            raise ValueError(
                f"The PyDataset given to {what} is endless (its `num_batches` is None), so {what} needs "
                f"`steps_per_epoch` (`steps` for evaluate/predict) to know where an epoch ends. "
                f"Received: {type(dataset).__name__} with num_batches=None and no step count"
            )
        if count is not None and (isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count <= 0):
            raise ValueError(f"`len()` of the PyDataset given to {what} must be a positive integer (the number "
                             f"of batches). Received: {count!r} from {type(dataset).__name__}")
        self.count = count
        self.steps = steps if count is None else min(steps or count, count)
        self._order, self._position = None, None  # the dataset pass in progress, carried across epochs

    def __len__(self):
        return self.steps

    def _next_index(self) -> int | None:
        """The next batch index of the current pass over the dataset; None where the pass has ended."""
        if self.count is not None and self._position >= self.count:
            return None
        index = self._position if self._order is None else int(self._order[self._position])
        self._position += 1
        return index

    def epoch(self) -> Iterator[tuple]:
        self.dataset.on_epoch_begin()
        try:
            if self._position is None or (self.count is not None and self._position >= self.count):
                # a new pass: in a fresh random order when shuffling (fit's default), else in index order
                self._order = backend.rng().permutation(self.count) if self.shuffle and self.count else None
                self._position = 0
            for _ in range(self.steps):
                index = self._next_index()
                if index is None:
                    break  # the data ran out before steps_per_epoch: the epoch ends here, as in Keras
                yield self._standardize(self.dataset[index], index)
        finally:
            self.dataset.on_epoch_end()

    def _standardize(self, batch, index: int) -> tuple:
        if isinstance(batch, (dict, np.ndarray, Tensor)):
            return batch, None, None
        if isinstance(batch, list):
            batch = tuple(batch)
        if not isinstance(batch, tuple) or len(batch) not in (1, 2, 3):
            raise ValueError(
                f"PyDataset.__getitem__() must return a batch: x, a dict of inputs, or a tuple (x,), (x, y) or "
                f"(x, y, sample_weight). Received: {_short(batch)} of type {type(batch).__name__} for index {index}"
            )
        return unpack(batch, self.what)


def unpack(item, what: str) -> tuple:
    """``(x, y, sample_weight)`` of one streamed batch; a list counts as a tuple, as in Keras (a torch
    DataLoader yields ``[x, y]``)."""
    if isinstance(item, list):
        item = tuple(item)
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


def same_kind(error: Exception) -> type:
    """TypeError or ValueError, as ``error`` is, to re-raise it with context (subclasses may take
    other constructor arguments)."""
    return TypeError if isinstance(error, TypeError) else ValueError


def per_output(s, names) -> list:
    """A target, prediction or sample-weight structure as one entry per output (``names``, in
    output order): a dict by output name (in its own order if a name is missing), a list or tuple
    as given when there are several outputs, anything else as the single output's entry."""
    if s is None:
        return []
    if isinstance(s, dict):
        return [s[n] for n in names if n in s] if all(n in s for n in names) else list(s.values())
    if isinstance(s, (list, tuple)) and len(names) > 1:
        return list(s)
    if isinstance(s, (list, tuple)) and len(s) == 1 and hasattr(s[0], "shape"):
        return list(s)  # a one-output model built with outputs=[y] predicts [array]
    return [s]


def _require_all(x, y, sample_weight, what: str) -> tuple:
    """The default array preparation: nested lists become arrays, anything else is a ValueError."""
    return (require_arrays(x, what, "x"), None if y is None else require_arrays(y, what, "y"),
            None if sample_weight is None else require_arrays(sample_weight, what, "sample_weight"))


class EpochIterator:
    """The batches of one epoch for every loop: fit, its validation, evaluate, predict and the
    ``*_on_batch`` forms (Keras's ``EpochIterator``). The choice between array data and a stream of
    batches is made here, once.

    Array data (an array, a list or dict of arrays, a nested list of numbers) goes through
    ``prepare_arrays(x, y, sample_weight, what)`` once (the model's conversion and checks), then
    loses its last ``validation_split`` fraction to :attr:`validation`, gets ``class_weight`` as
    sample weights, and is served ``batch_size`` rows a step (all rows in one batch when None),
    permuted each epoch when ``shuffle`` (``"batch"``: whole batches in random order). ``shard``
    (rank, world) takes this process's part of each global batch; ``block(n)`` (a slice) keeps one
    contiguous block of the rows (predict under a strategy).

    A generator or other iterable yields ``x``, ``(x, y)`` or ``(x, y, sample_weight)`` batches; each
    goes through ``prepare_batch(x, y, sample_weight, what)`` (a failure names the batch) and gets
    ``class_weight`` as sample weights when it carries none. Targets and weights come with the
    batches, so ``y`` and ``sample_weight`` must be None; ``shuffle`` does not apply.

    ``steps_per_epoch`` caps an epoch (a stream that restarts, or a generator that continues, serves
    the next epochs). ``arrays`` forces the kind (True: array data only; False: a stream) instead of
    deciding from ``x``; ``targets(y)`` splits targets per output (class weights read the first).
    ``rng`` is the shuffling Generator, or a function making it, called only for array data.
    """

    __slots__ = ("what", "shuffle", "class_weight", "steps_per_epoch", "validation", "arrays", "x", "y",
                 "sample_weight", "source", "rng", "_targets", "_n", "_batches", "_batching", "_prepare_batch")

    def __init__(self, x, y=None, sample_weight=None, batch_size=None, steps_per_epoch=None, shuffle=False,
                 class_weight=None, *, what: str = "fit", arrays: bool | None = None, validation_split=0.0,
                 prepare_arrays=None, prepare_batch=None, targets=None, rng=None, shard=None, block=None):
        self.what = what
        self.shuffle = shuffle
        self.class_weight = class_weight
        self.steps_per_epoch = steps_per_epoch
        self.validation = None  # the held-out (x, y, sample_weight) of validation_split
        self._targets = targets or _leaves
        self._n = None
        self._batches = None
        if arrays is None:
            x, arrays = as_input(x, what)
        self.arrays = bool(arrays)
        if self.arrays:
            self._init_arrays(x, y, sample_weight, validation_split, prepare_arrays or _require_all, block)
            self.rng = rng() if callable(rng) else rng
            self._batching = (batch_size, shard)
        else:
            self._init_stream(x, y, sample_weight, validation_split, prepare_batch)

    def _init_arrays(self, x, y, sample_weight, validation_split, prepare, block) -> None:
        x, y, sample_weight = prepare(x, y, sample_weight, self.what)
        if validation_split:
            (x, y, sample_weight), self.validation = split_validation(x, y, sample_weight, validation_split)
        if self.class_weight is not None:
            sample_weight = class_weights_to_sample_weights(self._targets(y)[0], self.class_weight)
        if block is not None:
            self._n = num_samples(x, y, sample_weight, self.what)
            if self._n:
                part = block(self._n)
                x, y, sample_weight = (slice_all(s, part) for s in (x, y, sample_weight))
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.source = None

    def _init_stream(self, x, y, sample_weight, validation_split, prepare_batch) -> None:
        for name, value, what in (("y", y, "targets"), ("sample_weight", sample_weight, "weights")):
            if value is not None:
                raise ValueError(
                    f"When `x` is a generator or iterable of batches, `{name}` must be None ({what} come with "
                    f"each batch). Received: {name} of type {type(value).__name__}"
                )
        if validation_split:
            raise ValueError("`validation_split` is only supported for array inputs.")
        self.x, self.y, self.sample_weight = x, None, None
        self.source = x
        self.rng = None
        self._prepare_batch = prepare_batch
        if isinstance(x, PyDataset):
            self._batches = PyDatasetBatches(x, steps=self.steps_per_epoch, shuffle=self.shuffle, what=self.what)
        else:
            self._batches = IterableBatches(x, steps=self.steps_per_epoch, what=self.what)

    def _array_batches(self) -> ArrayBatches:
        # Made at first use: the *_on_batch forms take the data whole and never need it.
        if self._batches is None:
            batch_size, shard = self._batching
            if batch_size is None:
                batch_size = max(num_samples(self.x, self.y, self.sample_weight, self.what), 1)
            self._batches = ArrayBatches(self.x, self.y, self.sample_weight, batch_size=batch_size,
                                         shuffle=self.shuffle, steps=self.steps_per_epoch, what=self.what,
                                         rng=self.rng, shard=shard)
        return self._batches

    @property
    def n(self) -> int | None:
        """The number of samples in array data (all rows, before any ``block``); None for a stream."""
        if self._n is None and self.arrays:
            self._n = num_samples(self.x, self.y, self.sample_weight, self.what)
        return self._n

    @property
    def steps(self) -> int | None:
        """Steps per epoch: None for a stream without ``steps_per_epoch`` (it runs until it ends)."""
        return self._array_batches().steps if self.arrays else self._batches.steps

    num_batches = steps  # Keras's name

    @property
    def data(self):
        """The data as the loops were given it: ``(x, y, sample_weight)`` for arrays, else the stream."""
        return (self.x, self.y, self.sample_weight) if self.arrays else self.source

    def one_batch(self) -> tuple:
        """All of the array data as one ``(x, y, sample_weight)`` batch (the ``*_on_batch`` forms)."""
        if not self.arrays:
            raise TypeError(f"{self.what} takes array data as one batch, not a stream of batches. "
                            f"Received: x of type {type(self.source).__name__}")
        return self.x, self.y, self.sample_weight

    def enumerate_epoch(self, epoch: int | None = None):
        """``(step, (x, y, sample_weight))`` for each batch of one epoch. ``epoch`` (counted from 0)
        only names a bad streamed batch: "Batch 2 of epoch 1 given to fit is invalid: ..."."""
        if self.arrays:
            return enumerate(self._array_batches().epoch())  # plain slices: no per-step layer of our own
        return self._stream_epoch(epoch)

    def _stream_epoch(self, epoch):
        prepare, class_weight = self._prepare_batch, self.class_weight
        for step, (x, y, sample_weight) in enumerate(self._batches.epoch()):
            if prepare is not None:
                try:
                    x, y, sample_weight = prepare(x, y, sample_weight, self.what)
                except (ValueError, TypeError) as error:
                    where = f"Batch {step}" if epoch is None else f"Batch {step} of epoch {epoch + 1}"
                    raise same_kind(error)(f"{where} given to {self.what} is invalid: {error}") from error
            if class_weight is not None and sample_weight is None:
                sample_weight = class_weights_to_sample_weights(self._targets(y)[0], class_weight)
            yield step, (x, y, sample_weight)


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
