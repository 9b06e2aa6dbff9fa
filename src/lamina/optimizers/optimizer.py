"""The optimizer base class: slot variables, clipping, weight decay, EMA, and the update loop.

Keras 3's ``BaseOptimizer`` contract (argument names, defaults, ``variables`` order, config keys),
with a NumPy engine built for small models on CPUs:

* every slot group made by :meth:`Optimizer.add_optimizer_variables` lives in ONE flat buffer; the
  slot ``Variable`` s are views into it, in Keras's order;
* when the trainable variables are the model's :class:`~lamina.optimizers.flat_buffer.FlatBuffer`
  (handed over by the trainer), or otherwise consecutive views into one buffer, a step updates all of
  them with a handful of vectorised calls on the flat arrays; otherwise it runs the same array code
  once per variable. The math is elementwise, so both paths give identical numbers;
* scratch buffers are allocated once at ``build``; the hot loop writes with ``out=``;
* moment slots are flushed to zero below 1e-30 every few steps (see :meth:`_flush_subnormals`).

Scalar coefficients are computed in the variables' dtype in the same order as Keras on the torch
backend, so results agree with Keras to float32 rounding.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from lamina import backend
from lamina.autodiff import Variable, unwrap
from lamina.naming import auto_name
from lamina.optimizers import _accel
from lamina.optimizers import schedules as _schedules
from lamina.optimizers.flat_buffer import FlatBuffer

# Flush moment slots below this magnitude to zero: far below anything that moves a float32
# result (a 1e-30 moment changes an update by < 1e-26), far above the float32 subnormal range
# (< 1.2e-38) where NumPy arithmetic runs several times slower.
_FLUSH_BELOW = 1e-30
# Steps between flushes. From 1e-30 a moment decaying by 0.9 per step needs ~175 steps to turn
# subnormal (by 0.5 per step, ~27), so 16 keeps them out of the slow range for any usual beta.
_FLUSH_EVERY = 16

def _check_number(name: str, value, *, allow_none: bool = True, minimum: float | None = 0.0,
                  strict: bool = False):
    """Validate a numeric hyperparameter; returns it unchanged."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"Argument `{name}` must be a number. Received: {name}={value!r}")
    if not math.isfinite(float(value)) or (minimum is not None and (
            value < minimum or (strict and value == minimum))):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise ValueError(f"Argument `{name}` must be a finite number {bound}. Received: {name}={value!r}")
    return value


def _span(arrays: Sequence[np.ndarray], sizes: Sequence[int], total: int, dtype) -> np.ndarray | None:
    """A 1-D view covering ``arrays`` if they are consecutive C-contiguous views of one buffer, else None.

    This is how the optimizer recognises the model's flat weight (or gradient) buffer, so it can
    update all weights with one call per formula term instead of one per variable.
    """
    a0 = arrays[0]
    if len(arrays) == 1:
        return a0.reshape(-1) if a0.flags.c_contiguous and a0.dtype == dtype else None
    base = a0.base
    if not isinstance(base, np.ndarray) or base.dtype != dtype or not base.flags.c_contiguous:
        return None
    itemsize = base.itemsize
    start = expected = a0.__array_interface__["data"][0]
    for a, n in zip(arrays, sizes, strict=True):
        if a.base is not base or not a.flags.c_contiguous or a.__array_interface__["data"][0] != expected:
            return None
        expected += n * itemsize
    flat = base.reshape(-1)
    offset, rem = divmod(start - flat.__array_interface__["data"][0], itemsize)
    if rem or offset < 0 or offset + total > flat.size:
        return None
    return flat[offset:offset + total]


class _Layout:
    """Where each of a list of same-dtype variables sits inside a flat buffer of ``total`` items."""

    def __init__(self, variables: Sequence[Variable]):
        self.dtype = variables[0].dtype
        self.shapes = [v.shape for v in variables]
        self.sizes = [int(np.prod(s, dtype=np.int64)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes, dtype=np.int64)]).tolist()
        self.total = self.offsets[-1]

    def views(self, flat: np.ndarray) -> list[np.ndarray]:
        parts = zip(self.offsets[:-1], self.sizes, self.shapes, strict=True)
        return [flat[o:o + n].reshape(s) for o, n, s in parts]


class Optimizer:
    """Base class of all optimizers (Keras 3 API).

    Subclass it for a custom optimizer the Keras way: create slots in ``build`` with
    :meth:`add_optimizer_variables` (after ``super().build(variables)``), implement
    ``update_step(gradient, variable, learning_rate)`` with in-place ``self.assign*`` calls, and
    extend ``get_config``.

    Args:
        learning_rate: float >= 0, a :class:`~lamina.optimizers.schedules.LearningRateSchedule`, or a
            zero-argument callable returning the rate.
        weight_decay: if set, each step first multiplies the weights by ``1 - weight_decay * lr``.
        clipnorm: clip each gradient to this L2 norm. clipvalue: clip each element to
            ``[-clipvalue, clipvalue]``. global_clipnorm: scale all gradients so their joint L2
            norm is at most this. At most one of the three may be set.
        use_ema, ema_momentum, ema_overwrite_frequency: keep an exponential moving average of the
            weights (``avg = m * avg + (1 - m) * w``, ``m = 0`` on the first step) and copy it into
            the weights every ``ema_overwrite_frequency`` steps or at ``finalize_variable_values``.
        loss_scale_factor: gradients are divided by it before use (see :meth:`scale_loss`).
        gradient_accumulation_steps: apply the mean gradient once every this many calls (>= 2).
        name: the prefix of the optimizer's variable paths; default the snake-cased class name made
            unique as Keras does (``adam``, then ``adam_1``, ...).

    ``learning_rate`` reads as Keras's: the ``learning_rate`` Variable (``float(opt.learning_rate)``,
    ``.value``, ``.assign``) or a schedule's current value; ``iterations`` is a Variable compared by
    value (``opt.iterations == 0``). A variable with ``overwrite_with_gradient = True`` gets no slots
    and is assigned its gradient at each step instead of being updated.
    """

    # Number of flat scratch buffers the built-in update kernels need.
    _n_scratch = 2
    # Names of slot groups whose values decay geometrically toward zero (flushed periodically).
    _decaying_slots: tuple[str, ...] = ()

    def __init__(
        self,
        learning_rate,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        loss_scale_factor: float | None = None,
        gradient_accumulation_steps: int | None = None,
        name: str | None = None,
        **kwargs,
    ):
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.", stacklevel=2)
        if kwargs:
            raise ValueError(
                f"Argument(s) not recognized by {type(self).__name__}: {sorted(kwargs)}. Received: {kwargs}"
            )
        self.name = name if name is not None else auto_name(type(self).__name__)
        self.weight_decay = _check_number("weight_decay", weight_decay)
        self.clipnorm = _check_number("clipnorm", clipnorm)
        self.clipvalue = _check_number("clipvalue", clipvalue)
        self.global_clipnorm = _check_number("global_clipnorm", global_clipnorm)
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
                f"Received: clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}"
            )
        self.use_ema = bool(use_ema)
        if use_ema:
            _check_number("ema_momentum", ema_momentum, allow_none=False, minimum=None)
            if not 0 <= ema_momentum <= 1:
                raise ValueError(f"`ema_momentum` must be in the range [0, 1]. Received: "
                                 f"ema_momentum={ema_momentum}")
            freq = ema_overwrite_frequency
            if freq and (not isinstance(freq, (int, np.integer)) or freq < 1):  # 0, like None: never
                raise ValueError("`ema_overwrite_frequency` must be an integer >= 1 or None. "
                                 f"Received: ema_overwrite_frequency={ema_overwrite_frequency}")
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = _check_number("loss_scale_factor", loss_scale_factor, strict=True)
        if gradient_accumulation_steps is not None and (
                isinstance(gradient_accumulation_steps, bool)
                or not isinstance(gradient_accumulation_steps, (int, np.integer))
                or gradient_accumulation_steps < 2):
            raise ValueError("`gradient_accumulation_steps` must be an integer >= 2. "
                             f"Received: gradient_accumulation_steps={gradient_accumulation_steps}")
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.built = False
        self._variables: list[Variable] = []
        self._trainable_variables: list[Variable] = []
        self._index: dict[int, int] = {}
        self._layout: _Layout | None = None
        self._slot_groups: dict[str, tuple[list[Variable], list[np.ndarray], np.ndarray | None]] = {}
        self._exclude_ids: set[int] = set()
        self._exclude_pattern: re.Pattern | None = None
        self._param_cache: tuple[list[np.ndarray], np.ndarray | None] | None = None
        self._grad_span_cache: tuple[list[np.ndarray], np.ndarray | None] | None = None
        self._flat_buffer: FlatBuffer | None = None  # the model's, from the trainer (_use_flat_buffer)
        self._flat_full = False  # the buffer holds exactly the built variables, in order

        self._iterations = self._own_variable(0, "iteration", "int64")
        self._learning_rate = None
        self._set_learning_rate(learning_rate)

    # ----------------------------------------------------------------------------- variables

    def _own_variable(self, value, name: str, dtype) -> Variable:
        var = Variable(value, trainable=False, name=name, dtype=dtype)
        var.path = f"{self.name}/{name}"
        self._variables.append(var)
        return var

    @property
    def variables(self) -> list[Variable]:
        """All optimizer state in Keras's order: iteration, learning_rate (if a float), slots."""
        return self._variables[:]

    @property
    def iterations(self):
        """The number of update steps applied (a ``Variable``; with gradient accumulation, the
        number of accumulated updates, as an int)."""
        if self.gradient_accumulation_steps:
            return np.int64(self._iterations._value // self.gradient_accumulation_steps)
        return self._iterations

    def _step_count(self) -> int:
        """Update steps taken so far (what Keras's ``iterations`` property returns)."""
        it = int(self._iterations._value)
        return it // self.gradient_accumulation_steps if self.gradient_accumulation_steps else it

    def add_variable(self, shape, initializer="zeros", dtype=None, aggregation: str = "none",
                     layout=None, name: str | None = None) -> Variable:
        """A new non-trainable optimizer variable, tracked in :attr:`variables`."""
        dtype = backend.standardize_dtype(dtype)
        shape = tuple(int(d) for d in shape)
        var = self._own_variable(self._initial_value(initializer, shape, dtype), name or "variable", dtype)
        return var

    @staticmethod
    def _initial_value(initializer, shape, dtype) -> np.ndarray:
        if isinstance(initializer, str):
            if initializer == "zeros":
                return np.zeros(shape, dtype)
            if initializer == "ones":
                return np.ones(shape, dtype)
            from lamina import initializers  # an optional sibling module; imported only when needed

            initializer = initializers.get(initializer)
        if isinstance(initializer, (int, float, np.number)):
            return np.full(shape, initializer, dtype)
        if callable(initializer):
            return np.asarray(unwrap(initializer(shape, dtype=dtype)), dtype=dtype)
        raise ValueError(f"Could not interpret initializer for an optimizer variable. "
                         f"Received: initializer={initializer!r}")

    def add_variable_from_reference(self, reference_variable, name: str | None = None,
                                    initializer="zeros") -> Variable:
        """A slot shaped like ``reference_variable``, named ``{path with '/'->'_'}_{name}``."""
        name = name or "var"
        ref = getattr(reference_variable, "path", None)
        if ref is None:
            ref = str(reference_variable.name).replace(":", "_")
        return self.add_variable(shape=reference_variable.shape, initializer=initializer,
                                 dtype=reference_variable.dtype, name=f"{ref.replace('/', '_')}_{name}")

    def add_optimizer_variables(self, trainable_variables, name, initializer="zeros"):
        """One slot per variable for each name in ``name`` (a str or list of str).

        Slots are interleaved per variable (``v1_a, v1_b, v2_a, v2_b``) as in Keras. For the
        variables the optimizer was built on, each group is backed by one flat buffer.
        Returns a list of slots, or a tuple of lists when ``name`` is a list.
        """
        names = [name] if isinstance(name, str) else list(name)
        inits = list(initializer) if isinstance(initializer, (list, tuple)) else [initializer] * len(names)
        if len(inits) != len(names):
            raise ValueError("`initializer` must be one initializer or one per name. "
                             f"Received: {len(inits)} initializers for {len(names)} names")
        groups = self._add_slot_groups(list(trainable_variables), names, inits, skip_overwrite=True)
        return groups[0] if isinstance(name, str) else groups

    def _add_slot_groups(self, tvars: list, names: list, inits: list, skip_overwrite: bool) -> tuple:
        """The slot lists of :meth:`add_optimizer_variables`; ``None`` in place of the slot of a
        variable with ``overwrite_with_gradient`` when ``skip_overwrite`` (as Keras: never used)."""
        flat_ok = (self._layout is not None and len(tvars) == len(self._trainable_variables)
                   and all(a is b for a, b in zip(tvars, self._trainable_variables, strict=True)))
        groups: tuple[list[Variable], ...] = tuple([] for _ in names)
        for var in tvars:
            skip = skip_overwrite and _overwrites(var)
            for k, (n, init) in enumerate(zip(names, inits, strict=True)):
                groups[k].append(None if skip else self.add_variable_from_reference(var, name=n, initializer=init))
        for n, group in zip(names, groups, strict=True):
            if flat_ok:
                flat = np.empty(self._layout.total, self._layout.dtype)
                views = self._layout.views(flat)
                for slot, view in zip(group, views, strict=True):
                    slot._rebind(view)
            else:
                flat, views = None, [None if s is None else s._value for s in group]
            self._slot_groups[n] = (group, views, flat)
        return groups

    def build(self, variables: Sequence[Variable]) -> None:
        """Record the variables to train and create the optimizer's slots for them."""
        if self.built:
            return
        variables = list(variables)
        for v in variables:
            if not isinstance(v, Variable):
                raise ValueError(f"{type(self).__name__}.build expects lamina Variables. "
                                 f"Received: an object of type {type(v).__name__}")
        self._trainable_variables = variables[:]
        self._index = {id(v): i for i, v in enumerate(variables)}
        dtypes = {np.dtype(v.dtype) for v in variables}
        # A variable overwritten by its gradient has no slots, so slot groups cannot mirror a flat layout.
        uniform = len(dtypes) == 1 and all(v.size > 0 and not _overwrites(v) for v in variables)
        self._layout = _Layout(variables) if uniform else None
        if self._layout is not None:
            self._scratch_flat = [np.empty(self._layout.total, self._layout.dtype)
                                  for _ in range(max(self._n_scratch, 2))]
            self._scratch = list(zip(*(self._layout.views(f) for f in self._scratch_flat), strict=True))
            self._gbuf_flat = np.empty(self._layout.total, self._layout.dtype)
            self._gbuf = self._layout.views(self._gbuf_flat)
            self._mask_flat = np.empty(self._layout.total, bool)
        else:
            self._scratch_flat = None
            self._scratch = [tuple(np.empty(v.shape, v.dtype) for _ in range(max(self._n_scratch, 2)))
                             for v in variables]
            self._gbuf_flat = None
            self._gbuf = [np.empty(v.shape, v.dtype) for v in variables]
        if self.use_ema:
            self._model_variables_moving_average = self.add_optimizer_variables(variables, "average")
        if self.gradient_accumulation_steps:
            # Keras gives every variable an accumulator, overwrite_with_gradient ones included.
            self._accumulated_gradients = self._add_slot_groups(variables, ["gradient_accumulator"], ["zeros"],
                                                                skip_overwrite=False)[0]
        self.built = True
        if self._flat_buffer is not None:
            self._flat_full = self._flat_buffer.covers(variables)

    def _use_flat_buffer(self, buffer: FlatBuffer) -> None:
        """Take the model's flat weight/gradient buffer (the trainer calls this before the first step).

        While it holds exactly the variables this optimizer was built on and they still hold its views,
        a step updates ``buffer.weights`` directly, from ``buffer.grads`` when the gradients passed are
        its ``grad_views``: identity checks, no address arithmetic.
        """
        self._flat_buffer = buffer
        self._flat_full = self.built and buffer.covers(self._trainable_variables)

    def _slots(self, names: Sequence[str]) -> None:
        """Tell the update loop which slot groups (in this order) the kernel ``_update`` takes."""
        self._kernel_slots = tuple(names)
        self._kernel_flat = tuple(self._slot_groups[n][2] for n in names)
        if any(f is None for f in self._kernel_flat):
            self._kernel_flat = None
        self._kernel_views = [tuple(self._slot_groups[n][1][i] for n in names)
                              for i in range(len(self._trainable_variables))]

    def set_weights(self, weights: Sequence) -> None:
        """Set every optimizer variable, in :attr:`variables` order."""
        if not self.built:
            raise ValueError("You are calling `set_weights()` on an optimizer that has not yet been built. "
                             "Call `optimizer.build(trainable_variables)` first.")
        if len(weights) != len(self._variables):
            raise ValueError(f"Optimizer '{self.name}' has {len(self._variables)} variables. "
                             f"Received: {len(weights)} weights")
        for var, w in zip(self._variables, weights, strict=True):
            var.assign(np.asarray(unwrap(w), dtype=var.dtype))

    def save_own_variables(self, store) -> None:
        """Write the state into ``store`` under keys "0", "1", ... (the .keras layout)."""
        for i, var in enumerate(self._variables):
            store[str(i)] = var.numpy()

    def load_own_variables(self, store) -> None:
        """Read the state written by :meth:`save_own_variables` (warns and skips on a count mismatch)."""
        if len(store.keys()) != len(self._variables):
            warnings.warn(self._skip_loading_message(len(store.keys())), stacklevel=2)
            return
        for i, var in enumerate(self._variables):
            var.assign(np.asarray(store[str(i)], dtype=var.dtype))

    # Loading support (lamina.saving): Keras's skip warning, and undoing a build made only to load a state.

    def _skip_loading_message(self, saved: int) -> str:
        """Keras's warning when a saved state of ``saved`` variables does not fit this optimizer."""
        msg = (f"Skipping variable loading for optimizer '{self.name}', because it has "
               f"{len(self._variables)} variables whereas the saved optimizer has {saved} variables.")
        if not self.built:
            msg += " This is likely because the optimizer has not been called/built yet."
        return msg

    def _build_checkpoint(self) -> dict:
        """What :meth:`_undo_build` needs: the attributes, with the containers ``build`` adds to copied."""
        return {k: (v.copy() if isinstance(v, (list, dict, set)) else v) for k, v in vars(self).items()}

    def _undo_build(self, checkpoint: dict) -> None:
        """Back to the unbuilt optimizer of :meth:`_build_checkpoint` (a load built it, then failed)."""
        vars(self).clear()
        vars(self).update(checkpoint)

    # --------------------------------------------------------------------------- learning rate

    def _set_learning_rate(self, learning_rate) -> None:
        if isinstance(learning_rate, _schedules.LearningRateSchedule) or (
                callable(learning_rate) and not isinstance(learning_rate, Variable)):
            if isinstance(self._learning_rate, Variable):
                self._variables.remove(self._learning_rate)
            self._learning_rate = learning_rate
            return
        lr = unwrap(learning_rate)
        if isinstance(lr, np.ndarray) and lr.ndim == 0:
            lr = lr.item()
        _check_number("learning_rate", lr, allow_none=False)
        if isinstance(self._learning_rate, Variable):
            self._learning_rate.assign(np.asarray(lr, dtype=self._learning_rate.dtype))
        elif self._learning_rate is None:
            self._learning_rate = self._own_variable(lr, "learning_rate", backend.floatx())
        else:
            raise TypeError(
                "This optimizer was created with a `LearningRateSchedule` object as its `learning_rate` "
                "argument, hence its learning rate is not settable. Create the optimizer with a float "
                f"`learning_rate` to set it. Received: learning_rate={learning_rate!r}"
            )

    @property
    def learning_rate(self):
        """The learning rate, as Keras gives it: the ``learning_rate`` Variable when it was a float
        (``float(opt.learning_rate)``, ``opt.learning_rate.value``); a schedule's value at
        :attr:`iterations`; a callable's result.

        Settable to a float (as ReduceLROnPlateau does), a schedule or a callable.
        """
        lr = self._learning_rate
        return lr if isinstance(lr, Variable) else self._current_learning_rate()

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        self._set_learning_rate(value)

    def _current_learning_rate(self):
        lr = self._learning_rate
        if isinstance(lr, Variable):
            return lr._value
        if isinstance(lr, _schedules.LearningRateSchedule):
            return lr(self._iterations._value)
        return unwrap(lr())

    # --------------------------------------------------------------------------- weight decay

    def exclude_from_weight_decay(self, var_list=None, var_names=None) -> None:
        """Exempt variables (by object, or by a substring/regex of their name) from weight decay."""
        if self.built:
            raise ValueError("`exclude_from_weight_decay()` can only be configured before the optimizer "
                             f"is built. Received: a call on built optimizer '{self.name}'")
        self._exclude_ids = {id(v) for v in var_list} if var_list else set()
        self._exclude_pattern = re.compile("|".join(set(var_names))) if var_names else None

    def _use_weight_decay(self, variable) -> bool:
        if id(variable) in self._exclude_ids:
            return False
        return not (self._exclude_pattern is not None and self._exclude_pattern.search(variable.name))

    # ------------------------------------------------------------------------------ updates

    def scale_loss(self, loss):
        """Multiply ``loss`` by ``loss_scale_factor`` (if set) before taking gradients."""
        return loss * self.loss_scale_factor if self.loss_scale_factor is not None else loss

    def apply_gradients(self, grads_and_vars: Iterable) -> Variable:
        """Apply ``(gradient, variable)`` pairs; returns :attr:`iterations`."""
        pairs = list(grads_and_vars)
        if pairs:
            grads, variables = zip(*pairs, strict=True)
            self.apply(list(grads), list(variables))
        return self._iterations

    def stateless_apply(self, optimizer_variables: Sequence, grads: Sequence, trainable_variables: Sequence) -> tuple:
        """Keras's functional ``apply``: one step from the given values of :attr:`variables` and of the
        variables the optimizer was built on; returns ``(new trainable values, new optimizer values)``
        as arrays, leaving every variable as it was."""
        if not self.built:
            raise ValueError(f"To call `stateless_apply`, {type(self).__name__} must be built (i.e. its variables "
                             "must have been created). You can build it via `optimizer.build(trainable_variables)`.")
        own, weights = self.variables, self._trainable_variables
        if len(optimizer_variables) != len(own) or len(trainable_variables) != len(weights):
            raise ValueError(f"`stateless_apply` expects one value per optimizer variable ({len(own)}) and per "
                             f"variable the optimizer was built with ({len(weights)}). Received: "
                             f"{len(optimizer_variables)} and {len(trainable_variables)} values")
        every = own + weights
        saved = [np.array(v._value, copy=True) for v in every]
        try:
            for v, value in zip(every, list(optimizer_variables) + list(trainable_variables), strict=True):
                v.assign(np.asarray(unwrap(value), dtype=v.dtype))
            self.apply(grads)
            return [np.array(v._value, copy=True) for v in weights], [np.array(v._value, copy=True) for v in own]
        finally:  # the step ran on the real variables: put their values back
            for v, value in zip(every, saved, strict=True):
                v._value[...] = value

    def apply(self, grads: Sequence, trainable_variables: Sequence[Variable] | None = None) -> None:
        """Update ``trainable_variables`` (default: those the optimizer was built on) in place.

        ``None`` gradients are skipped (with a warning, as in Keras). Gradients are cast to their
        variable's dtype. After the update each variable's ``constraint`` is applied.
        """
        grads = list(grads)
        if not grads:
            return
        variables = self._variables_to_update(grads, trainable_variables)
        if any(g is None for g in grads):
            grads, variables = self._drop_missing_gradients(grads, variables)
        grads = [self._as_gradient(g, v) for g, v in zip(grads, variables, strict=True)]
        if any(_overwrites(v) for v in variables):
            grads, variables = self._overwrite_with_gradients(grads, variables)
        if variables:
            self._apply_updates(grads, variables)
        self._iterations._value += 1
        if self._decaying_slots and int(self._iterations._value) % _FLUSH_EVERY == 0:
            self._flush_subnormals()

    def _apply_updates(self, grads: list[np.ndarray], variables: list[Variable]) -> None:
        """Unscale, (accumulate,) clip, decay and update; then the moving averages and constraints."""
        if self.loss_scale_factor is not None:
            grads = [g / np.asarray(self.loss_scale_factor, g.dtype) for g in grads]
        if self.gradient_accumulation_steps:
            self._accumulate_and_maybe_update(grads, variables)
        else:
            self._clip_decay_update(grads, variables)
        if self.use_ema:
            self._update_moving_averages()
        for v in variables:
            constraint = getattr(v, "constraint", None)
            if constraint is not None:
                v.assign(constraint(v))

    def _overwrite_with_gradients(self, grads: list, variables: list) -> tuple[list, list]:
        """Assign each ``overwrite_with_gradient`` variable its gradient; return the other pairs.

        Such a "gradient" is a new value computed in the backward pass (float8 scales, say), so it
        skips loss unscaling, clipping, weight decay and the update rule. With gradient accumulation
        the variable takes the elementwise maximum of the accumulated gradients on update steps.
        """
        steps = self.gradient_accumulation_steps
        rest_g, rest_v = [], []
        for g, v in zip(grads, variables, strict=True):
            if not _overwrites(v):
                rest_g.append(g)
                rest_v.append(v)
            elif not steps:
                v.assign(g)
            else:
                acc = self._accumulated_gradients[self._index[id(v)]].value
                if (int(self._iterations._value) + 1) % steps == 0:
                    v.assign(np.maximum(g, acc))
                    acc.fill(0)
                else:
                    np.maximum(g, acc, out=acc)
        return rest_g, rest_v

    def _variables_to_update(self, grads: list, trainable_variables) -> list[Variable]:
        """The variables ``apply`` updates (building the optimizer on them the first time), checked."""
        if trainable_variables is None:
            if not self.built:
                raise ValueError("When passing `grads` without `variables`, the optimizer must already be "
                                 "built on a list of variables. Call `optimizer.build(trainable_variables)` "
                                 "first.")
            if len(grads) != len(self._trainable_variables):
                raise ValueError(f"Expected one gradient per variable of optimizer '{self.name}' "
                                 f"({len(self._trainable_variables)}). Received: {len(grads)} gradients")
            return self._trainable_variables
        variables = list(trainable_variables)
        if len(variables) != len(grads):
            raise ValueError(f"Expected as many gradients as variables. Received: {len(grads)} gradients "
                             f"for {len(variables)} variables")
        if not self.built:
            self.build(variables)
        index = self._index
        for v in variables:
            if id(v) not in index:
                raise ValueError(f"Unknown variable: {getattr(v, 'path', v)}. This optimizer can only be "
                                 "called for the variables it was originally built with. When working "
                                 "with a new set of variables, create a new optimizer instance.")
        return variables

    @staticmethod
    def _drop_missing_gradients(grads: list, variables: list) -> tuple[list, list]:
        """The pairs with a gradient; warns (as Keras) about the variables without one."""
        missing = [v.path for g, v in zip(grads, variables, strict=True) if g is None]
        pairs = [(g, v) for g, v in zip(grads, variables, strict=True) if g is not None]
        if not pairs:
            raise ValueError(f"No gradients provided for any variable. Received: None for {missing}")
        warnings.warn(f"Gradients do not exist for variables {missing} when minimizing the loss. "
                      "If using `model.compile()`, did you forget to provide a `loss` argument?",
                      stacklevel=3)
        return [g for g, _ in pairs], [v for _, v in pairs]

    @staticmethod
    def _as_gradient(g, v) -> np.ndarray:
        if type(g) is np.ndarray and g.dtype == v.dtype and g.shape == v.shape:
            return g  # the per-step common case, checked without conversions
        g = np.asarray(unwrap(g))
        if g.shape != v.shape:
            raise ValueError(f"Gradient for variable '{v.path}' has the wrong shape: expected {v.shape}. "
                             f"Received: gradient.shape={g.shape}")
        if g.dtype != v.dtype:
            g = g.astype(v.dtype)
        return g

    def _param_span(self) -> np.ndarray | None:
        """The flat view over all built variables, if they sit consecutively in one buffer."""
        buffer = self._flat_buffer
        if self._flat_full and buffer.is_bound():
            return buffer.weights
        # A plain list of variables (a custom loop): recognise consecutive views by their addresses.
        values = [v._value for v in self._trainable_variables]
        cache = self._param_cache
        if cache is not None and len(cache[0]) == len(values) and all(
                a is b for a, b in zip(cache[0], values, strict=True)):
            return cache[1]
        lay = self._layout
        flat = _span(values, lay.sizes, lay.total, lay.dtype)
        self._param_cache = (values, flat)  # holds the arrays, so their ids cannot be reused
        return flat

    def _clip_decay_update(self, grads: list[np.ndarray], variables: list[Variable]) -> None:
        """Clip, apply weight decay, then run the update kernel (fused when the layout allows)."""
        full = self._layout is not None and len(variables) == len(self._trainable_variables) and all(
            a is b for a, b in zip(variables, self._trainable_variables, strict=True))
        idx = range(len(variables)) if full else [self._index[id(v)] for v in variables]
        clipped = self._clip_into_buffers(grads, idx)
        lr = self._current_learning_rate()
        pflat = self._param_span() if full else None

        if self.weight_decay is not None:
            dt = variables[0].dtype.type
            factor = dt(1) - dt(self.weight_decay) * dt(lr)
            if pflat is not None and not self._exclude_ids and self._exclude_pattern is None:
                pflat *= factor
            else:
                for v in variables:
                    if self._use_weight_decay(v):
                        vt = v.dtype.type
                        v.value[...] *= vt(1) - vt(self.weight_decay) * vt(lr)
        self._run_update(grads, variables, idx, lr, pflat, clipped)

    def _run_update(self, grads, variables, idx, lr, pflat, clipped: bool) -> None:
        if type(self).update_step is not Optimizer.update_step:
            # A custom optimizer written the Keras way: one update_step per variable.
            for g, v in zip(grads, variables, strict=True):
                self.update_step(g, v, np.asarray(lr, v.dtype))
            return
        self._begin_step()
        coeffs = self._coefficients(lr, variables[0].dtype)
        if pflat is not None and self._kernel_flat is not None:
            lay = self._layout
            if clipped:
                gflat = self._gbuf_flat
            elif self._flat_full and pflat is self._flat_buffer.weights and self._flat_buffer.holds_grads(grads):
                gflat = self._flat_buffer.grads
            else:
                # A training step that reuses the same gradient views each time (the model's
                # flat gradient buffer) is recognised once, not re-derived from addresses per step.
                cache = self._grad_span_cache
                if cache is not None and len(cache[0]) == len(grads) and all(
                        a is b for a, b in zip(cache[0], grads, strict=True)):
                    gflat = cache[1]
                else:
                    gflat = _span(grads, lay.sizes, lay.total, lay.dtype)
                    self._grad_span_cache = (list(grads), gflat)  # holds the arrays: ids stay unique
                if gflat is None:
                    for g, view in zip(grads, self._gbuf, strict=True):
                        np.copyto(view, g)
                    gflat = self._gbuf_flat
            self._update(pflat, gflat, self._kernel_flat, self._scratch_flat, coeffs)
            return
        by_dtype = {variables[0].dtype: coeffs}
        for g, v, i in zip(grads, variables, idx, strict=True):
            c = by_dtype.get(v.dtype)
            if c is None:
                c = by_dtype[v.dtype] = self._coefficients(lr, v.dtype)
            self._update(v.value, g, self._kernel_views[i], self._scratch[i], c)

    def _clip_gradients(self, grads: Sequence) -> list[np.ndarray]:
        """The gradients clipped by ``clipnorm``, ``global_clipnorm`` or ``clipvalue`` (Keras's hook;
        new arrays, the inputs are left as they are)."""
        grads = [np.asarray(unwrap(g)) for g in grads]
        if any(g.dtype.kind != "f" for g in grads):
            grads = [g.astype(backend.floatx()) if g.dtype.kind != "f" else g for g in grads]
        outs = [np.empty_like(g) for g in grads]
        self._clip_into(grads, outs)
        return grads

    def _clip_into_buffers(self, grads: list[np.ndarray], idx: Sequence[int]) -> bool:
        """Clip into the gradient buffers of variables ``idx`` (replacing the entries of ``grads``);
        True if anything was written."""
        if not (self.clipnorm or self.global_clipnorm or self.clipvalue):
            return False  # the usual step: no clipping, no buffer list to build
        return self._clip_into(grads, [self._gbuf[i] for i in idx])

    def _clip_into(self, grads: list[np.ndarray], outs: list[np.ndarray]) -> bool:
        """Clip ``grads`` into ``outs``, replacing the entries of ``grads``; True if anything was written."""
        if self.clipnorm:
            for k, (g, out) in enumerate(zip(grads, outs, strict=True)):
                dt = g.dtype.type
                l2sum = dt(np.vdot(g, g))
                l2norm = np.sqrt(l2sum) if l2sum > 0 else l2sum
                np.multiply(g, dt(self.clipnorm), out=out)
                out /= max(l2norm, dt(self.clipnorm))
                grads[k] = out
            return True
        if self.global_clipnorm:
            dt = grads[0].dtype.type
            use_norm = np.sqrt(dt(sum(dt(np.vdot(g, g)) for g in grads)))
            with np.errstate(divide="ignore", invalid="ignore"):
                # Keras's form: finite norm -> clip * min(1/norm, 1/clip); inf/nan norm -> nan.
                clip = self.global_clipnorm
                scale = dt(clip) * np.minimum(dt(1) / use_norm, dt(1.0 / clip))
                scale = scale + (use_norm - use_norm)
            for k, (g, out) in enumerate(zip(grads, outs, strict=True)):
                np.multiply(g, scale.astype(g.dtype), out=out)
                grads[k] = out
            return True
        if self.clipvalue:
            for k, (g, out) in enumerate(zip(grads, outs, strict=True)):
                np.clip(g, -self.clipvalue, self.clipvalue, out=out)
                grads[k] = out
            return True
        return False

    def _accumulate_and_maybe_update(self, grads, variables) -> None:
        steps = self.gradient_accumulation_steps
        accs = [self._accumulated_gradients[self._index[id(v)]].value for v in variables]
        if (int(self._iterations._value) + 1) % steps == 0:
            means = [(g + a) / np.asarray(steps, g.dtype) for g, a in zip(grads, accs, strict=True)]
            self._clip_decay_update(means, variables)
            for a in accs:
                a.fill(0)
        else:
            for g, a in zip(grads, accs, strict=True):
                a += g

    def _update_moving_averages(self) -> None:
        first = self._step_count() == 0
        averages = self._model_variables_moving_average
        for var, avg, s in zip(self._trainable_variables, averages, self._scratch, strict=True):
            if avg is None:  # overwrite_with_gradient: no average kept
                continue
            dt = var.dtype.type
            m = dt(0.0) if first else dt(self.ema_momentum)
            a = avg.value
            a *= m
            np.multiply(var.value, dt(1) - m, out=s[0])
            a += s[0]
        freq = self.ema_overwrite_frequency
        if freq and (self._step_count() + 1) % freq == 0:
            self._overwrite_model_variables_with_average_value(self._trainable_variables)

    def _overwrite_model_variables_with_average_value(self, trainable_variables) -> None:
        averages = self._model_variables_moving_average
        if len(trainable_variables) != len(averages):
            raise ValueError(f"The number of model variables to override ({len(trainable_variables)}) does "
                             f"not match the number of averages in the optimizer ({len(averages)}).")
        for var, avg in zip(trainable_variables, averages, strict=True):
            if avg is not None:
                var.assign(avg.value)

    def finalize_variable_values(self, var_list: Sequence[Variable]) -> None:
        """At the end of training: with ``use_ema``, copy the moving averages into the weights."""
        if self.use_ema:
            self._overwrite_model_variables_with_average_value(list(var_list))

    def _flush_subnormals(self) -> None:
        """Set moment values below 1e-30 in magnitude to exactly zero.

        A weight whose gradient stays zero has moments that decay geometrically into float32
        subnormals, which make NumPy arithmetic several times slower. Values this small change an
        update by less than float32 can represent next to any weight, so results do not move.
        """
        groups = [self._slot_groups[n] for n in self._decaying_slots if n in self._slot_groups]
        fused = _accel.kernel("flush")
        for _, views, flat in groups:
            if flat is not None and fused is not None and flat.dtype == np.float32 and flat.size >= _accel.MIN_SIZE:
                fused(flat, np.float32(_FLUSH_BELOW))  # one pass instead of three; same result
                continue
            if flat is not None:
                tmp, mask = self._scratch_flat[0], self._mask_flat
                np.abs(flat, out=tmp)
                np.less(tmp, _FLUSH_BELOW, out=mask)
                np.putmask(flat, mask, 0)
                continue
            for view in views:
                if view is not None and view.dtype.itemsize >= 4:  # float16 has no values this small to flush
                    view[np.abs(view) < _FLUSH_BELOW] = 0

    # Keras's hooks for custom optimizers -------------------------------------------------------

    def update_step(self, gradient, variable, learning_rate):
        """Update one variable in place (override in a custom optimizer)."""
        raise NotImplementedError(f"{type(self).__name__} must implement `update_step(gradient, variable, "
                                  "learning_rate)`.")

    def _begin_step(self) -> None:
        """Once per update step, before ``_coefficients`` (state shared by all variables)."""

    def _coefficients(self, lr, dtype) -> tuple:
        """Per-step scalars for ``_update``, in ``dtype`` (built-in optimizers)."""
        raise NotImplementedError

    def _update(self, p, g, slots, scratch, c) -> None:
        """In-place update of parameter array ``p`` from gradient ``g`` (built-in optimizers)."""
        raise NotImplementedError

    def assign(self, variable, value) -> None:
        variable.assign(value)

    def assign_add(self, variable, value) -> None:
        variable.assign_add(value)

    def assign_sub(self, variable, value) -> None:
        variable.assign_sub(value)

    # ------------------------------------------------------------------------------ config

    def get_config(self) -> dict:
        """The constructor arguments, with Keras's keys (a schedule is serialized to a dict)."""
        lr = self._learning_rate
        if isinstance(lr, _schedules.LearningRateSchedule):
            lr_config = _schedules.serialize(lr)
        elif isinstance(lr, Variable):
            lr_config = float(lr._value)
        else:
            raise ValueError(f"Optimizer '{self.name}' has a plain callable learning rate, which cannot be "
                             "serialized; use a LearningRateSchedule subclass instead. "
                             f"Received: learning_rate={lr!r}")
        return {
            "name": self.name,
            "learning_rate": lr_config,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
            "use_ema": self.use_ema,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": self.ema_overwrite_frequency,
            "loss_scale_factor": self.loss_scale_factor,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> Optimizer:
        """A new optimizer (without state) from :meth:`get_config`'s output."""
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = _schedules.deserialize(config["learning_rate"],
                                                             custom_objects=custom_objects)
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}, learning_rate={float(self._current_learning_rate()):g}>"


def _overwrites(variable) -> bool:
    """Is ``variable`` assigned its gradient instead of updated (Keras's ``overwrite_with_gradient``)?"""
    return bool(getattr(variable, "overwrite_with_gradient", False))


def _pow(base: float, step, dt) -> np.floating:
    """``dt(base) ** dt(step)`` rounded once from float64: the float32 power Keras computes."""
    return dt(math.pow(float(dt(base)), float(dt(step))))

