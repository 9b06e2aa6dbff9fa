"""Loading a Keras-layout weights file into a built model, as one all-or-nothing step.

Everything is read and checked before anything changes (:func:`h5_weights.plan_load`), then every
assignment is made — and undone if one fails (a custom layer's ``load_own_variables`` may refuse its
arrays). The optimizer's state (``optimizer/vars``) is handled here:

* its slot variables exist only once it is built, so the unbuilt optimizer of a compiled model is
  built to receive the state — and put back unbuilt when the load fails or loads no state into it;
* a state that does not fit the optimizer (a file saved with Adam, 10 arrays, loaded into a model
  compiled with SGD) is skipped with Keras's warning by ``load_weights``, which loads the layers'
  weights as Keras does; ``load_model``, whose optimizer comes from the same file, refuses it;
* a state that would wreck training at the first step — a negative ``iteration``, a negative or
  non-finite learning rate, a non-finite slot — is a :class:`FileFormatError` naming the variable.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np

from lamina.saving import h5_weights, state_walk
from lamina.saving.errors import FileFormatError

_GROUP = "optimizer"


def load_weights(model, source, filename, max_bytes: int, include_optimizer: bool = True,
                 skip_mismatch: bool = False, strict_optimizer: bool = False, skip=()) -> None:
    """Read ``source`` (path, bytes, file object, or an open :class:`h5_weights.H5Reader`, left open)
    into ``model``: all checked, then all assigned.

    ``strict_optimizer``: a saved optimizer state that does not fit the model's optimizer is a
    :class:`FileFormatError` (else a warning, and the optimizer keeps its state). ``skip``: objects
    (layers, the optimizer) left as they are, with everything they hold (Keras's ``objects_to_skip``).
    """
    entries = h5_weights.state_entries(model, include_optimizer=False, skip=skip)
    opt = getattr(model, "optimizer", None)
    keep_optimizer = include_optimizer and all(o is not opt for o in skip)
    with _OptimizerLoad(model if keep_optimizer else None) as optimizer_load:
        with _reader(source, filename, max_bytes) as reader:
            plan = h5_weights.plan_load(entries, reader, skip_mismatch=skip_mismatch)
            plan += optimizer_load.plan(reader, strict=strict_optimizer)
        apply_all_or_nothing(plan)


def _reader(source, filename, max_bytes: int):
    """A reader for ``source``: a given reader as it is (its owner closes it), else a new one closed on exit."""
    if isinstance(source, h5_weights.H5Reader) or hasattr(source, "dataset_meta"):  # also a ShardedReader
        return contextlib.nullcontext(source)
    return h5_weights.H5Reader(source, filename, max_bytes)


def apply_all_or_nothing(plan: list) -> None:
    """Make :func:`h5_weights.plan_load`'s assignments; if one fails, restore the earlier ones and re-raise."""
    done = []
    try:
        for target, value in plan:
            done.append(_snapshot(target, value))
            h5_weights.apply_plan([(target, value)])
    except BaseException:
        for target, previous in done[::-1]:
            if isinstance(previous, list):  # a layer that loads its own way but cannot save so: its variables
                for var, arr in previous:
                    var.assign(arr)
            else:
                h5_weights.apply_plan([(target, previous)])
        raise


def _snapshot(target, value) -> tuple:
    """What ``target`` holds before ``value`` is assigned: its array, its saved store, or (for a layer whose
    own ``load_own_variables`` has no ``save_own_variables`` beside it) its variables' arrays."""
    if not isinstance(value, dict):
        return target, target.numpy()
    if hasattr(target, "save_own_variables"):
        previous: dict = {}
        target.save_own_variables(previous)
        return target, previous
    return target, [(v, v.numpy()) for v in target._variables]


class _OptimizerLoad:
    """The optimizer part of one load: builds the optimizer if it must, plans its state, and undoes
    the build on exit unless a state was loaded into it and the whole load succeeded."""

    def __init__(self, model):
        opt = getattr(model, "optimizer", None)
        usable = opt is not None and getattr(model, "compiled", False) and model.built
        self.model = model
        self.opt = opt if usable else None
        self.loaded = False
        self._checkpoint = None

    def __enter__(self):
        if self.opt is not None and not self.opt.built:
            self._checkpoint = self.opt._build_checkpoint()
            self.opt.build(self.model.trainable_weights)
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._checkpoint is not None and (exc_type is not None or not self.loaded):
            self.opt._undo_build(self._checkpoint)
        return False

    def plan(self, reader, strict: bool) -> list:
        """The ``(variable, array)`` assignments for the optimizer's state; [] when there is none to load."""
        if self.opt is None:
            return []
        group = _optimizer_group(reader)
        if group is None:
            return []
        keys = list(reader.keys(group))
        entry = self._entry(len(keys))
        problem = _mismatch(entry, reader, group)
        if problem is not None and (not strict or self._quantized_since(keys, entry)):
            warnings.warn(problem, stacklevel=6)  # points at the user's model.load_weights(...) call
            return []
        plan = h5_weights.plan_load([entry], reader)  # strict and mismatched: raises, naming the problem
        check_state(plan, self.opt, reader.filename)
        self.loaded = bool(plan)
        return plan

    def _quantized_since(self, keys: list, entry: state_walk.Entry) -> bool:
        """Whether a whole saved state ("0".."n-1") of another size comes from before the model was
        quantized: it then covers float variables the quantized layers no longer have, and even
        load_model only warns and skips it, as Keras does. (Other misfits stay errors there.)"""
        if len(keys) == len(entry.variables) or sorted(keys) != sorted(map(str, range(len(keys)))):
            return False
        return any(getattr(layer.dtype_policy, "quantization_mode", None) is not None
                   for layer in self.model._flatten_layers())

    def _entry(self, saved: int) -> state_walk.Entry:
        """The optimizer's variables in Keras's order — or only ``iteration`` and ``learning_rate`` when
        the file holds just those (Keras writes no slots for an optimizer that never took a step)."""
        opt = self.opt
        variables = state_walk.optimizer_variables_keras_order(opt, state_walk.keras_trainable_variables(self.model))
        slot_ids = {id(s) for group, _, _ in opt._slot_groups.values() for s in group}
        base = [v for v in variables if id(v) not in slot_ids]
        if saved != len(variables) and saved == len(base):
            variables = base
        return state_walk.Entry(_GROUP, opt.name, variables, opt)


def _optimizer_group(reader):
    try:
        return reader.group(_GROUP)
    except FileFormatError:
        raise
    except Exception as e:  # corrupt HDF5 internals surface as many error types
        raise FileFormatError(reader.filename, f"the optimizer state could not be read ({type(e).__name__}: {e}).") \
            from None


def _mismatch(entry: state_walk.Entry, reader, group) -> str | None:
    """Why the saved state does not fit the optimizer (Keras's warning for a count), or None."""
    opt = entry.owner
    saved = len(reader.keys(group))
    if saved != len(entry.variables):
        return opt._skip_loading_message(saved)
    for i, var in enumerate(entry.variables):
        shape, _, _ = reader.dataset_meta(group, str(i), f"{_GROUP}/vars/{i}")
        if shape != tuple(var.shape):
            return (f"Skipping variable loading for optimizer '{opt.name}', because the saved optimizer's "
                    f"variable {i} has shape {shape} whereas '{var.path}' has shape {tuple(var.shape)}.")
    return None


def check_state(plan: list, opt, filename) -> None:
    """Refuse an optimizer state that would turn the weights into NaN at the first step.

    ``plan``: ``(variable, array)`` pairs for ``opt``'s variables. The step count must be >= 0, the
    learning rate finite and >= 0 (as the optimizer's constructor requires), every float finite.
    """
    for var, value in plan:
        what = f"the optimizer state's variable '{var.path}'"
        arr = np.asarray(value)
        if var is opt._iterations and arr.size and int(arr.min()) < 0:
            raise FileFormatError(filename, f"{what} is {int(arr.min())}, but a step count cannot be negative. "
                                            f"Received: iteration={int(arr.min())}")
        if arr.dtype.kind != "f":
            continue
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise FileFormatError(filename, f"{what} holds {bad} non-finite value(s) (NaN or inf): the first "
                                            f"training step would turn every weight into NaN. Received: "
                                            f"{var.name}={arr.flat[int(np.argmin(np.isfinite(arr)))]}")
        if var is opt._learning_rate and arr.size and float(arr.min()) < 0:
            raise FileFormatError(filename, f"{what} is {float(arr.min())}, but a learning rate cannot be "
                                            f"negative. Received: learning_rate={float(arr.min())}")
