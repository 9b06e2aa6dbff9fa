"""The ``Layer`` base class: weights, building, calling (eager or symbolic), config.

A layer is called three ways, all through ``__call__``:

* on symbolic ``KerasTensor`` s (Functional API): it builds from the input shape, records a
  :class:`~lamina.layers.keras_tensor.Node` and returns symbolic outputs;
* on arrays outside a tape: ``call`` runs plain NumPy and returns an ``ndarray`` (no graph);
* on arrays under a ``GradientTape``: the same ``call``; its ops record themselves.

Subclasses override ``build(input_shape)`` (create weights with ``add_weight``), ``call`` and,
where the output shape is not obvious from a dry run, ``compute_output_shape``.
"""

from __future__ import annotations

import functools
import inspect
import threading
import warnings
import weakref

import numpy as np

from lamina import backend, constraints, dtype_policies, initializers, regularizers
from lamina.autodiff import Tensor, Variable, record, recording, unwrap
from lamina.dtype_policies import DTypePolicyMap
from lamina.layers.keras_tensor import KerasTensor, Node, flatten, is_symbolic, map_structure
from lamina.layers.tf_data_bridge import call_on_tf_tensors, holds_tf_tensor
from lamina.naming import auto_name
from lamina.random import SeedGenerator


def shape_of(x) -> tuple:
    """The shape of an array-like or KerasTensor (lists of numbers count as arrays)."""
    if isinstance(x, KerasTensor):
        return x.shape
    return tuple(np.shape(unwrap(x)))


class _CallEntry(threading.local):
    """The layer whose eager ``__call__`` is outermost on this thread (None between calls)."""

    layer = None


_CALL_ENTRY = _CallEntry()

# A class's ``call`` function -> the names of its parameters: inspect.signature costs ~50 us, paid once
# per class instead of once per layer (rebuilding a 20,000-layer model spent a second on it).
_CALL_PARAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _call_params(layer) -> frozenset:
    if "call" in layer.__dict__:  # an instance's own call
        return frozenset(inspect.signature(layer.call).parameters)
    fn = type(layer).call
    try:
        return _CALL_PARAMS[fn]
    except (KeyError, TypeError):  # TypeError: not weak-referenceable, computed each time
        params = frozenset(inspect.signature(layer.call).parameters)
    try:
        _CALL_PARAMS[fn] = params
    except TypeError:
        pass
    return params


def _input_mask(inputs):
    """The mask attached to ``inputs`` (a list of masks for a list of inputs), None where there is none."""
    if isinstance(inputs, (list, tuple)):
        masks = [backend.get_keras_mask(x) for x in inputs]
        return masks if any(m is not None for m in masks) else None
    return None if isinstance(inputs, dict) else backend.get_keras_mask(inputs)


def carry_mask(layer, inputs, out):
    """``out`` (of a direct ``call_logits``) with the mask ``__call__`` would give it: ``compute_mask`` of the
    inputs' mask, for a layer that supports masking. Returns ``out``."""
    mask = _input_mask(inputs) if backend._MASKS else None
    if mask is not None and layer.supports_masking and backend.get_keras_mask(out) is None:
        backend.set_keras_mask(out, layer.compute_mask(inputs, mask))
    return out


def mask_work(layer, x=None) -> bool:
    """Must calling ``layer`` go through ``__call__`` for masks (a model's fast path calls ``call`` directly)?

    Without ``x`` (a Sequential plans its whole stack): yes for any layer with its own ``compute_mask``, which
    may start a mask the layers after it must pass on. With ``x``: yes when ``x`` carries a mask, or for a
    user's layer with its own ``compute_mask`` (lamina's mask makers attach their masks in ``call``)."""
    own = type(layer).compute_mask is not Layer.compute_mask
    if x is None:
        return own and layer._may_start_mask()
    if backend._MASKS and _input_mask(x) is not None:
        return True
    return own and not type(layer).__module__.startswith("lamina.")


class InputSpec:
    """What a layer accepts: ``ndim``/``min_ndim`` and fixed sizes of some axes."""

    def __init__(self, ndim=None, min_ndim=None, max_ndim=None, axes=None, dtype=None, shape=None):
        self.ndim = ndim
        self.min_ndim = min_ndim
        self.max_ndim = max_ndim
        self.axes = dict(axes or {})
        self.dtype = dtype
        self.shape = shape


def _shape_for_message(value):
    """``np.shape(value)``, or a word for what has none (a ragged nested list)."""
    try:
        return np.shape(value)
    except ValueError:
        return "ragged"


class Layer:
    """Base class of all layers; subclass it for custom layers (``build``, ``call``, ``add_weight``)."""

    _drops_masks_quietly = False  # an op node (OpLayer): outside Keras's mask rules, as Keras's ops are

    def __new__(cls, *args, **kwargs):
        instance = super().__new__(cls)
        # Keras's auto-config: a subclass that keeps Layer.get_config gets its constructor's plain
        # arguments (numbers, strings, bools, None, lists/dicts of them) in its config, so
        # ``from_config`` can rebuild it. Other layers pay nothing here.
        if cls.get_config is Layer.get_config and cls.__init__ is not Layer.__init__:
            instance.__dict__["_auto_config"] = _auto_config(cls, args, kwargs)
        return instance

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own_build = cls.__dict__.get("build")
        if own_build is not None and not getattr(own_build, "_records_shape", False):
            cls.build = _recording_build(own_build)

    def __init__(self, *, activity_regularizer=None, trainable: bool = True, dtype=None,
                 autocast: bool = True, name: str | None = None, **kwargs):
        object.__setattr__(self, "_tracking", False)
        input_dim = kwargs.pop("input_dim", None)
        input_shape = kwargs.pop("input_shape", None)
        batch_input_shape = kwargs.pop("batch_input_shape", None)
        kwargs.pop("batch_size", None)
        if input_dim is not None:
            input_shape = (input_dim,)
        self._input_shape_arg = None
        if batch_input_shape is not None:
            self._input_shape_arg = tuple(batch_input_shape)[1:]
        elif input_shape is not None:
            if isinstance(input_shape, int):
                input_shape = (input_shape,)
            self._input_shape_arg = tuple(input_shape)
        if kwargs:
            raise TypeError(
                f"Unrecognized keyword arguments passed to {type(self).__name__}: {kwargs}"
            )
        if not isinstance(trainable, bool):
            raise ValueError(
                f"Expected `trainable` to be a boolean. Received: trainable={trainable!r}"
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"A layer's `name` must be a string. Received: name={name!r}")
        self.name = name or auto_name(type(self).__name__)
        self._set_dtype_policy(dtype_policies.get(dtype))
        self.autocast = autocast
        self._trainable = trainable
        self.built = False
        self._variables: list[Variable] = []
        self._layers: list[Layer] = []
        self._inbound_nodes: list[Node] = []
        self._losses: list = []
        self._build_shapes = None
        self.input_spec: InputSpec | None = None
        # As Keras: a layer that computes its own mask supports masking; others say so themselves.
        self.supports_masking = type(self).compute_mask is not Layer.compute_mask
        self.activity_regularizer = regularizers.get(activity_regularizer)
        params = _call_params(self)
        self._call_has_training = "training" in params
        self._call_has_mask = "mask" in params
        self._tracking = True

    # ------------------------------------------------------------------ tracking

    def __setattr__(self, name, value):
        # Most attributes hold neither layers nor variables: one isinstance check lets them through.
        if isinstance(value, _MAY_TRACK) and self.__dict__.get("_tracking") and not name.startswith("__"):
            for item in _tracked_items(value):
                if isinstance(item, Layer) and item is not self and item not in self._layers:
                    self._layers.append(item)
                elif isinstance(item, Variable) and all(item is not v for v in self._variables):
                    self._variables.append(item)
                elif isinstance(item, SeedGenerator):
                    tracked = self.__dict__.setdefault("_tracked_seed_generators", [])
                    if all(item is not g for g in tracked):
                        tracked.append(item)
        object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ dtypes

    def _set_dtype_policy(self, policy) -> None:
        # The dtypes are resolved once here: __call__ reads plain attributes, not the policy.
        self._dtype_policy = policy
        if isinstance(policy, DTypePolicyMap):
            policy = policy[self._policy_path()]
        self._dtype = policy.compute_dtype  # inputs are cast to it, outputs made in it
        self._variable_dtype = policy.variable_dtype
        self._compute_np_dtype = np.dtype(self._dtype) if backend.is_float_dtype(self._dtype) else None
        try:  # the inputs that need no conversion at all
            self._input_np_dtype = np.dtype(self._dtype)
        except TypeError:  # a dtype NumPy has no array type for ("string")
            self._input_np_dtype = None
        # Calls that need more than the plain path: variables read in another dtype (mixed
        # precision), or a 16-bit compute dtype whose outputs NumPy may promote back to float32.
        self._lowp_call = self._dtype != self._variable_dtype or self._dtype in ("float16", "bfloat16")

    def _policy_path(self) -> str:
        """The key a DTypePolicyMap is read with: the layer's path where it has one, else its name
        (Keras's path of a layer made outside any other)."""
        return getattr(self, "path", None) or self.name

    @property
    def dtype_policy(self):
        """The layer's :class:`~lamina.dtype_policies.DTypePolicy` (set with a policy, name or dict)."""
        return self._dtype_policy

    @dtype_policy.setter
    def dtype_policy(self, value) -> None:
        policy = dtype_policies.get(value)
        current = self._dtype_policy
        if isinstance(current, DTypePolicyMap):
            path = self._policy_path()
            if path in current:
                del current[path]
            current[path] = policy
            self._set_dtype_policy(current)
        else:
            self._set_dtype_policy(policy)
        if policy.quantization_mode is not None and self.built and not getattr(self, "_is_quantized", False):
            self.quantize(policy.quantization_mode)  # as Keras: a quantized policy on a built layer quantizes it

    @property
    def dtype(self) -> str:
        """The variable dtype (Keras's alias of ``variable_dtype``)."""
        return self._variable_dtype

    @property
    def compute_dtype(self) -> str:
        return self._dtype

    @property
    def variable_dtype(self) -> str:
        return self._variable_dtype

    @property
    def input_dtype(self) -> str:
        """The dtype float inputs are cast to: the compute dtype."""
        return self._dtype

    @property
    def quantization_mode(self) -> str | None:
        """The quantization mode of the layer's policy (``"int8"``...), None for a float policy."""
        policy = self._dtype_policy
        if policy._is_policy_map:  # read on every call of a quantizable layer: no isinstance on the ABC
            policy = policy[self._policy_path()]
        return policy.quantization_mode

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        value = bool(value)
        self._trainable = value
        for v in self._variables:
            if getattr(v, "_trainable_by_design", True):
                v.trainable = value
        for layer in self._layers:
            layer.trainable = value

    # ------------------------------------------------------------------ weights

    def add_weight(self, shape=None, initializer=None, dtype=None, trainable: bool = True,
                   regularizer=None, constraint=None, name: str | None = None, **kwargs) -> Variable:
        """Create a weight of ``shape`` initialised by ``initializer`` and track it."""
        shape = () if shape is None else tuple(int(d) for d in shape)
        dtype = backend.standardize_dtype(dtype or self._variable_dtype)
        if initializer is None:
            initializer = "glorot_uniform" if backend.is_float_dtype(dtype) else "zeros"
        init = initializers.get(initializer)
        value = init(shape, dtype=dtype) if callable(init) else np.asarray(init, dtype=dtype)
        var = Variable(value, trainable=trainable and self._trainable, name=name or "variable",
                       dtype=dtype, regularizer=regularizers.get(regularizer),
                       constraint=constraints.get(constraint), autocast=kwargs.pop("autocast", True))
        var._trainable_by_design = trainable
        var.path = f"{self.name}/{var.name}"
        self._variables.append(var)
        return var

    def add_variable(self, shape, initializer, dtype=None, trainable: bool = True, autocast: bool = True,
                     regularizer=None, constraint=None, name: str | None = None) -> Variable:
        """Keras's other name for :meth:`add_weight` (same arguments, same tracked weight)."""
        return self.add_weight(shape=shape, initializer=initializer, dtype=dtype, trainable=trainable,
                               autocast=autocast, regularizer=regularizer, constraint=constraint, name=name)

    def _flat_weights(self) -> list[Variable]:
        out, seen = [], set()
        # Keras files a weight by the trainability it was created with: a kernel frozen later (LoRA,
        # `kernel.trainable = False`) keeps its place before the bias, so get_weights() orders as Keras's.
        own_t = [v for v in self._variables if getattr(v, "_trainable_by_design", v.trainable)]
        own_n = [v for v in self._variables if not getattr(v, "_trainable_by_design", v.trainable)]
        for v in own_t + own_n:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
        for layer in self._layers:
            for v in layer._flat_weights():
                if id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
        return out

    @property
    def weights(self) -> list[Variable]:
        """All weights: this layer's trainable then non-trainable ones, then sublayers'."""
        return self._flat_weights()

    @property
    def variables(self) -> list[Variable]:
        """All state: the weights, then the states of the layer's (and its sublayers') SeedGenerators, which
        are not weights (never saved, never trained) but are the layer's variables, as in Keras."""
        out = self._flat_weights()
        seen = {id(v) for v in out}
        for layer in self._flatten_layers():
            for generator in layer._seed_generators:
                if id(generator.state) not in seen:
                    seen.add(id(generator.state))
                    out.append(generator.state)
        return out

    @property
    def _seed_generators(self) -> list:
        """The SeedGenerators set as attributes of this layer (Keras tracks them the same way)."""
        return list(self.__dict__.get("_tracked_seed_generators", ()))

    def _flatten_layers(self, include_self: bool = True, recursive: bool = True) -> list:
        """This layer (``include_self``) and the layers it tracks, depth first, each once (Keras's name)."""
        out, seen = [], set()
        stack = [self] if include_self else list(reversed(self._layers))
        while stack:
            current = stack.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            out.append(current)
            if recursive or current is self:
                stack.extend(reversed(current._layers))
        return out

    @property
    def trainable_weights(self) -> list[Variable]:
        return [v for v in self._flat_weights() if v.trainable] if self.trainable else []

    trainable_variables = trainable_weights

    @property
    def non_trainable_weights(self) -> list[Variable]:
        if not self.trainable:
            return self._flat_weights()
        return [v for v in self._flat_weights() if not v.trainable]

    @property
    def non_trainable_variables(self) -> list[Variable]:
        """``non_trainable_weights`` plus the SeedGenerator states (see ``variables``)."""
        if not self.trainable:
            return self.variables
        return [v for v in self.variables if not v.trainable]

    def get_weights(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights) -> None:
        """Replace the layer's weights with ``weights``, in ``self.weights`` order; all are checked
        (count, numeric values, shapes) before any is assigned."""
        own = self.weights
        if isinstance(weights, (str, bytes)) or not hasattr(weights, "__iter__"):
            raise ValueError(
                f"Layer '{self.name}' set_weights() expects a list of {len(own)} arrays. "
                f"Received: weights of type {type(weights).__name__}"
            )
        weights = list(weights)
        if len(weights) != len(own):
            raise ValueError(
                f"Layer '{self.name}' expects {len(own)} weight arrays, but the given list has "
                f"{len(weights)}. Received: weights of shapes {[_shape_for_message(w) for w in weights]}"
            )
        arrays = [self._weight_array(v, w) for v, w in zip(own, weights)]
        for v, arr in zip(own, arrays):
            v.assign(arr)

    def _weight_array(self, variable, value) -> np.ndarray:
        """``value`` as an array for ``variable``: numeric and of its shape, else a ValueError."""
        try:
            arr = np.asarray(unwrap(value))
        except ValueError:  # a ragged nested list
            arr = None
        if arr is None or arr.dtype.kind not in "biuf":
            got = f"an array of dtype {arr.dtype}" if arr is not None and arr.ndim else \
                f"{type(value).__name__} {value!r:.60}"
            raise ValueError(
                f"Layer '{self.name}' weight '{variable.name}' needs a numeric array of shape {variable.shape}. "
                f"Received: {got}"
            )
        if arr.shape != variable.shape:
            raise ValueError(
                f"Layer '{self.name}' weight '{variable.name}' has shape {variable.shape}. "
                f"Received: an array of shape {arr.shape}"
            )
        try:
            with np.errstate(over="raise", invalid="raise"):  # cast now: nothing is assigned until all pass
                return arr.astype(variable.dtype, copy=False)
        except FloatingPointError:
            raise ValueError(
                f"Layer '{self.name}' weight '{variable.name}' is {variable.dtype}, and the given values do not "
                f"fit in it. Received: values from {arr.min()} to {arr.max()}"
            ) from None

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(
                f"You tried to call `count_params` on layer '{self.name}', but the layer isn't "
                "built. Build it first by calling it on data or with `build(input_shape)`."
            )
        return int(sum(int(np.prod(v.shape)) for v in self.weights))

    @property
    def losses(self) -> list:
        """Regularization penalties: weight regularizers now, plus activity penalties of the last call."""
        out = list(self._losses)
        for v in self._variables:
            if v.regularizer is not None and v.trainable:
                out.append(v.regularizer(v))
        for layer in self._layers:
            out.extend(layer.losses)
        return out

    def add_loss(self, loss) -> None:
        self._losses.append(loss)

    def _clear_losses(self) -> None:
        self._losses = []
        for layer in self._layers:
            layer._clear_losses()

    # ------------------------------------------------------------------ building

    def build(self, input_shape) -> None:
        """Create the layer's weights for ``input_shape``; the base has none."""
        self.built = True

    def _build_at_init(self) -> None:
        """Mark a stateless layer built at construction, as Keras does, unless a subclass overrides
        ``build`` (its own ``build`` must still run on the first call)."""
        if type(self).build is Layer.build:
            self.built = True

    def compute_mask(self, inputs, previous_mask=None):
        """The mask of this layer's output for ``inputs``; by default the input's mask passes through."""
        return previous_mask

    def _maybe_build(self, input_shape) -> None:
        if self.built:
            return
        self._check_input_spec(input_shape)
        self._build_shapes = input_shape
        self.build(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        """Output shape for ``input_shape``; by default found by running ``call`` on zeros."""
        def concrete(shape):
            return tuple(1 if d is None else d for d in shape)

        if isinstance(input_shape, list) and input_shape and isinstance(input_shape[0], (tuple, list)):
            dummy = [np.zeros(concrete(s), dtype=self._dtype) for s in input_shape]
            batch_none = input_shape[0][0] is None if input_shape[0] else False
        else:
            dummy = np.zeros(concrete(input_shape), dtype=self._dtype)
            batch_none = bool(input_shape) and input_shape[0] is None
        out = self._stateless_call(dummy, (), {"training": False} if self._call_has_training else {})

        def to_shape(o):
            s = tuple(np.shape(unwrap(o)))
            return ((None,) + s[1:]) if (batch_none and s) else s

        return map_structure(to_shape, out)

    def _check_input_spec(self, input_shape) -> None:
        spec = self.input_spec
        if spec is None or not isinstance(input_shape, tuple):
            return
        ndim = len(input_shape)
        if spec.ndim is not None and ndim != spec.ndim:
            raise ValueError(
                f"Input 0 of layer '{self.name}' is incompatible with the layer: expected "
                f"ndim={spec.ndim}, found ndim={ndim}. Received: input_shape={input_shape}"
            )
        if spec.min_ndim is not None and ndim < spec.min_ndim:
            raise ValueError(
                f"Input 0 of layer '{self.name}' is incompatible with the layer: expected "
                f"min_ndim={spec.min_ndim}, found ndim={ndim}. Received: input_shape={input_shape}"
            )
        for axis, size in spec.axes.items():
            if size is None or ndim == 0:
                continue
            got = input_shape[axis] if -ndim <= axis < ndim else None
            if got is not None and got != size:
                expected = tuple(
                    size if (i == axis % ndim) else (None if i == 0 else d)
                    for i, d in enumerate(input_shape)
                )
                raise ValueError(
                    f"Input 0 of layer '{self.name}' is incompatible with the layer: expected "
                    f"axis {axis} of the input to have size {size}, i.e. shape {expected}. "
                    f"Received: input_shape={input_shape}"
                )

    # ------------------------------------------------------------------ calling

    def __call__(self, *args, **kwargs):
        if args:
            inputs, args = args[0], args[1:]
        elif "inputs" in kwargs:
            inputs = kwargs.pop("inputs")
        else:
            raise TypeError(f"Layer '{self.name}' was called without inputs.")
        if is_symbolic(inputs) or (args and is_symbolic(args)):
            return self._symbolic_call(inputs, args, kwargs)
        if not isinstance(inputs, (np.ndarray, Tensor)) and holds_tf_tensor(inputs):  # e.g. in tf.data's map
            return call_on_tf_tensors(self, inputs, args, kwargs)
        inputs = self._convert_inputs(inputs)
        if not self.built:
            self._maybe_build(map_structure(shape_of, inputs) if not isinstance(inputs, (np.ndarray, Tensor))
                              else inputs.shape)
        elif self.input_spec is not None and isinstance(inputs, (np.ndarray, Tensor)):
            self._check_input_spec(inputs.shape)
        if not self._call_has_training:
            kwargs.pop("training", None)
        previous_mask = self._mask_argument(inputs, kwargs) if backend._MASKS or kwargs else None
        if _CALL_ENTRY.layer is None:
            out = self._top_level_call(inputs, args, kwargs)
        elif self._lowp_call or backend._AUTOCAST_SCOPES:
            out = self._call_in_autocast_scope(inputs, args, kwargs)
        else:
            out = self.call(inputs, *args, **kwargs)
        if self.activity_regularizer is not None and recording():
            self._losses.append(self.activity_regularizer(out) / max(1, shape_of(out)[0] if shape_of(out) else 1))
        if previous_mask is not None or (self.supports_masking and type(self).compute_mask is not Layer.compute_mask):
            self._set_output_mask(inputs, out, previous_mask)
        return out

    def _may_start_mask(self) -> bool:
        """Can this layer's ``compute_mask`` make a mask where its input has none? Assumed for any layer
        with its own ``compute_mask``; a layer whose ``compute_mask`` only ends masks says no, so a stack
        holding it keeps the fast inference path."""
        return True

    def _mask_argument(self, inputs, kwargs):
        """Keras's mask rules before ``call``: the mask given as ``mask=``, else the one attached to the
        inputs, which is passed on as ``mask=`` when ``call`` takes it. Returns that mask (or None)."""
        given = kwargs.get("mask")
        if given is not None:
            return given
        mask = _input_mask(inputs) if backend._MASKS else None
        if mask is not None and self._call_has_mask:
            kwargs["mask"] = mask
        return mask

    def _set_output_mask(self, inputs, outputs, previous_mask) -> None:
        """Attach ``compute_mask(inputs, previous_mask)`` to outputs that have no mask yet; a layer that
        does not support masking drops the mask, with Keras's warning."""
        flat = flatten(outputs)
        if all(backend.get_keras_mask(o) is not None for o in flat):
            return  # call attached them (Masking, the merge layers, a nested model's last layer)
        if not self.supports_masking:
            if self._drops_masks_quietly:
                return
            warnings.warn(
                f"Layer '{self.name}' (of type {type(self).__name__}) was passed an input with a mask attached "
                "to it. However, this layer does not support masking and will therefore destroy the mask "
                "information. Downstream layers will not see the mask.", stacklevel=3)
            return
        masks = self.compute_mask(inputs, previous_mask)
        if masks is None:
            return
        for o, m in zip(flat, flatten(masks) if isinstance(masks, (list, tuple)) else [masks]):
            if m is not None and backend.get_keras_mask(o) is None:
                backend.set_keras_mask(o, m)

    def _top_level_call(self, inputs, args, kwargs):
        """``call`` as the outermost layer call, as Keras's call context does: the losses of earlier
        calls are dropped first, so ``losses`` holds this call's (its sublayers' calls are nested and
        keep adding). A layer that is a node of a functional graph is left alone: the model running the
        graph node by node (fit, evaluate) clears the losses once per step, and a shared node's two
        calls must both count."""
        _CALL_ENTRY.layer = self
        try:
            if not self._inbound_nodes:
                self._clear_losses()
            if self._lowp_call or backend._AUTOCAST_SCOPES:
                return self._call_in_autocast_scope(inputs, args, kwargs)
            return self.call(inputs, *args, **kwargs)
        finally:
            _CALL_ENTRY.layer = None

    def _call_in_autocast_scope(self, inputs, args, kwargs):
        """``call`` with float variables read in the compute dtype (Keras's AutocastScope rules: a
        mixed layer opens one, a layer inside one narrows or clears it), float outputs in the compute
        dtype."""
        current = backend.get_autocast_scope()
        scope = None
        if current is not None:
            if not self.autocast or self._compute_np_dtype is None:
                scope = backend.AutocastScope(None)
            elif current.dtype != self._dtype:
                scope = backend.AutocastScope(self._dtype)
        elif self._dtype != self._variable_dtype and self._compute_np_dtype is not None:
            scope = backend.AutocastScope(self._dtype)
        if scope is None:
            out = self.call(inputs, *args, **kwargs)
        else:
            with scope:
                out = self.call(inputs, *args, **kwargs)
        if self._lowp_call and self._compute_np_dtype is not None:
            return map_structure(self._to_compute_dtype, out)
        return out

    def _to_compute_dtype(self, x):
        """A float output NumPy promoted (float16 with a float32 constant) cast back to the compute dtype."""
        value = unwrap(x)
        if not isinstance(value, np.ndarray) or value.dtype == self._compute_np_dtype or \
                not backend.is_float_dtype(value.dtype):
            return x
        out = record(value.astype(self._compute_np_dtype), (x,), lambda g: (g.astype(value.dtype),))
        mask = backend.get_keras_mask(value)
        if mask is not None:
            backend.set_keras_mask(unwrap(out), mask)
        return out

    def _convert_inputs(self, inputs):
        """Arrays of numbers only; floats cast to this layer's dtype (Keras's autocast)."""
        def conv(x):
            if isinstance(x, Tensor):
                return self._cast_tensor(x)
            if isinstance(x, Variable):
                return x
            if not isinstance(x, np.ndarray):
                try:
                    x = np.asarray(x)
                except (ValueError, TypeError) as e:
                    raise TypeError(
                        f"Layer '{self.name}' expects numeric array inputs. Received: {type(x).__name__} "
                        f"that NumPy cannot convert ({e})"
                    ) from None
            kind = x.dtype.kind
            if kind == "f" or (kind == "V" and backend.is_float_dtype(x.dtype)):  # "V": ml_dtypes' bfloat16
                if self.autocast and x.dtype.name != self._dtype:
                    mask = backend.get_keras_mask(x)
                    x = x.astype(self._dtype)
                    if mask is not None:  # the cast copy keeps the mask, as in Keras
                        backend.set_keras_mask(x, mask)
            elif kind in "iub" or (kind in "USO" and self._takes_text()):
                pass
            else:
                raise TypeError(
                    f"Layer '{self.name}' expects numeric inputs (floats or integers). "
                    f"Received: an array of dtype {x.dtype}"
                )
            return x

        if isinstance(inputs, np.ndarray) and inputs.dtype == self._input_np_dtype:  # dtype ==: no name lookup
            return inputs
        if isinstance(inputs, (list, tuple)) and inputs and (
            all(isinstance(i, (np.ndarray, Tensor, Variable)) for i in inputs)
            or (self._expects_list() and all(isinstance(i, (list, tuple)) for i in inputs))
        ):
            # A list of tensors stays a list (merge layers, custom layers taking several inputs);
            # a nested list of numbers is one array.
            return type(inputs)(conv(i) for i in inputs)
        if isinstance(inputs, dict):
            return {k: conv(v) for k, v in inputs.items()}
        return conv(inputs)

    def _takes_text(self) -> bool:
        """A model whose Input has dtype "string", or a Sequential starting with a text layer (TextVectorization,
        StringLookup: ``_accepts_text``), is handed text arrays as they are; read only for non-numeric inputs."""
        try:
            inputs = flatten(getattr(self, "inputs", None) or [])
        except (AttributeError, ValueError):  # a subclassed model without symbolic inputs
            inputs = []
        if any(getattr(t, "dtype", None) == "string" for t in inputs):
            return True
        first = getattr(self, "layers", None)
        return isinstance(first, list) and bool(first) and getattr(first[0], "_accepts_text", False)

    def _cast_tensor(self, x):
        """A recorded float Tensor in another float dtype, cast to the compute dtype (a float32 layer
        after a mixed one); the gradient returns in the input's dtype."""
        value = x.data
        if value.dtype == self._compute_np_dtype or self._compute_np_dtype is None or not self.autocast or \
                not backend.is_float_dtype(value.dtype):
            return x
        return record(value.astype(self._compute_np_dtype), (x,), lambda g: (g.astype(value.dtype),))

    def _expects_list(self) -> bool:
        """True for layers whose ``call`` takes a list of tensors (merge layers, multi-input models)."""
        return False

    def call(self, inputs, *args, **kwargs):
        return inputs

    def _symbolic_call(self, inputs, args, kwargs):
        # The graph records every positional argument and plain keyword arguments; a tensor in a keyword
        # argument would be dropped from the node and the model would compute something else, silently.
        extra = [k for k, v in kwargs.items() if any(isinstance(t, KerasTensor) for t in flatten(v))]
        if extra:
            raise ValueError(
                f"Layer '{self.name}' was called on symbolic inputs with symbolic keyword argument(s) {extra}; "
                "a Functional graph records tensors passed positionally only, e.g. layer(x, mask). "
                f"Received: keyword argument(s) {extra}"
            )
        flat_in = [t for t in flatten([inputs, *args]) if isinstance(t, KerasTensor)]
        shapes = map_structure(lambda t: t.shape if isinstance(t, KerasTensor) else shape_of(t), inputs)
        if isinstance(shapes, tuple) and not isinstance(inputs, KerasTensor):
            shapes = list(shapes)
        if not self.built:
            self._maybe_build(shapes)
        elif isinstance(shapes, tuple):
            self._check_input_spec(shapes)
        own_shape = type(self).compute_output_shape is not Layer.compute_output_shape
        out_shapes = None
        if not own_shape and type(self).compute_output_spec is not Layer.compute_output_spec:
            # A layer that describes its outputs as KerasTensors (Keras's compute_output_spec) is not run.
            try:
                out_shapes = map_structure(lambda t: tuple(t.shape), self.compute_output_spec(inputs, *args, **kwargs))
            except NotImplementedError:  # it cannot say: run it on zeros instead
                pass
        if out_shapes is not None:
            pass
        elif args and not own_shape:
            out_shapes = self._output_shape_by_dummy_call(inputs, args, kwargs)
        else:  # as Keras, build and compute_output_shape take the first argument's shape
            out_shapes = self.compute_output_shape(shapes)
        if isinstance(out_shapes, tuple) and (not out_shapes or not isinstance(out_shapes[0], (tuple, list))):
            out_shapes_struct = out_shapes
            flat_shapes = [out_shapes]
            single = True
        else:
            out_shapes_struct = out_shapes
            flat_shapes = [s for s in _flatten_shapes(out_shapes)]
            single = False
        node_index = len(self._inbound_nodes)
        outs = [KerasTensor(s, dtype=self._output_dtype(), history=(self, node_index, i))
                for i, s in enumerate(flat_shapes)]
        node = Node(self, inputs, flat_in, outs, dict(kwargs), call_args=args)
        self._inbound_nodes.append(node)
        if backend._MASKS and self.supports_masking and type(self).compute_mask is Layer.compute_mask:
            mask = backend.get_keras_mask(inputs)  # a pass-through layer's output carries its input's mask node
            if mask is not None:
                for o in outs:
                    backend.set_keras_mask(o, mask)
        if single:
            return outs[0]
        return _pack_shapes(out_shapes_struct, outs)

    def _stateless_call(self, inputs, args, kwargs):
        """``call`` on dummy arrays, for a shape only: the variables it changes (a counter's
        ``assign_add``) get their values back, as Keras makes symbolic calls in a StatelessScope."""
        saved = [(v, np.array(v.numpy(), copy=True)) for v in self.variables]
        try:
            return self.call(inputs, *args, **kwargs)
        finally:
            for v, value in saved:
                if not np.array_equal(v.numpy(), value, equal_nan=value.dtype.kind in "fc"):
                    v.assign(value)

    def _output_shape_by_dummy_call(self, inputs, args, kwargs):
        """The output shape of ``call(inputs, *args)`` found by calling it on zeros of the symbolic
        arguments' shapes (an unknown dimension as 1; a batch of None stays None)."""
        def dummy(t):
            if not isinstance(t, KerasTensor):
                return t
            return np.zeros(tuple(1 if d is None else d for d in t.shape), dtype=t.dtype)

        first = flatten(inputs)[0] if flatten(inputs) else None
        batch_none = isinstance(first, KerasTensor) and bool(first.shape) and first.shape[0] is None
        call_kwargs = dict(kwargs)
        if self._call_has_training:
            call_kwargs.setdefault("training", False)
        else:
            call_kwargs.pop("training", None)
        out = self._stateless_call(map_structure(dummy, inputs), map_structure(dummy, list(args)), call_kwargs)

        def to_shape(o):
            s = tuple(np.shape(unwrap(o)))
            return ((None,) + s[1:]) if (batch_none and s) else s

        return map_structure(to_shape, out)

    def compute_output_spec(self, *args, **kwargs):
        """KerasTensors (shape and dtype, no graph node) for the outputs of calling the layer on
        ``inputs`` (KerasTensors or arrays); float outputs are in the compute dtype. Builds the layer."""
        inputs = args[0] if args else kwargs.pop("inputs", None)
        if inputs is None:
            raise TypeError(f"Layer '{self.name}'.compute_output_spec was called without inputs. Received: "
                            f"args={args}, kwargs={sorted(kwargs)}")
        shapes = map_structure(lambda t: t.shape if isinstance(t, KerasTensor) else shape_of(t), inputs)
        if isinstance(shapes, tuple) and not isinstance(inputs, KerasTensor):
            shapes = list(shapes)
        if not self.built:
            self._maybe_build(shapes)
        out_shapes = self.compute_output_shape(shapes)
        if isinstance(out_shapes, tuple) and (not out_shapes or not isinstance(out_shapes[0], (tuple, list))):
            return KerasTensor(out_shapes, dtype=self._output_dtype())
        return _pack_shapes(out_shapes, [KerasTensor(s, dtype=self._output_dtype())
                                         for s in _flatten_shapes(out_shapes)])

    def _output_dtype(self) -> str:
        return self._dtype

    # ------------------------------------------------------------------ config

    def get_config(self) -> dict:
        config = {"name": self.name, "trainable": self.trainable,
                  "dtype": dtype_policies.serialize(self._dtype_policy)}
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        auto = self.__dict__.get("_auto_config")
        if auto is not None and type(self).get_config is Layer.get_config:
            config.update(auto)
            params = inspect.signature(type(self).__init__).parameters
            if "name" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
                config.pop("name", None)  # __init__ could not take it back
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        try:
            return cls(**config)
        except TypeError as e:
            raise TypeError(
                f"Error when deserializing class '{cls.__name__}' using config={str(config)[:300]}. "
                f"{str(e)[:300]}"
            ) from None

    def get_build_config(self) -> dict | None:
        if self._build_shapes is not None:
            return {"input_shape": self._build_shapes}
        return None

    def build_from_config(self, config: dict | None) -> None:
        if config and "input_shape" in config and not self.built:
            shape = config["input_shape"]
            shape = _to_shape_struct(shape)
            self._maybe_build(shape)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"

    # Keras exposes input/output of a layer called once in a Functional graph.
    @property
    def input(self):
        if not self._inbound_nodes:
            raise AttributeError(f"Layer '{self.name}' has never been called and thus has no defined input.")
        node = self._inbound_nodes[0]
        return node.call_inputs

    @property
    def output(self):
        if not self._inbound_nodes:
            raise AttributeError(f"Layer '{self.name}' has never been called and thus has no defined output.")
        outs = self._inbound_nodes[0].output_tensors
        return outs[0] if len(outs) == 1 else outs


_MAY_TRACK = (Layer, Variable, SeedGenerator, list, tuple, dict)

_PLAIN = (str, int, float, bool, type(None))


def _auto_config(cls, args: tuple, kwargs: dict) -> dict | None:
    """The constructor arguments of ``cls(*args, **kwargs)`` (defaults included, ``name`` left to the base
    config) when all are plain values; None when any is not, or when they do not bind."""
    try:
        bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
    except (TypeError, ValueError):  # arguments that do not fit (pickle's bare __new__) or no signature
        return None
    bound.apply_defaults()
    params = list(bound.signature.parameters.values())
    arguments = dict(bound.arguments)
    arguments.pop(params[0].name, None)  # self
    for p in params[1:]:
        if p.kind is p.VAR_POSITIONAL:
            if arguments.pop(p.name, ()):
                return None  # *args cannot be passed back by name
        elif p.kind is p.VAR_KEYWORD:
            arguments.update(arguments.pop(p.name, {}))
    arguments.pop("name", None)

    def plain(value) -> bool:
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        return isinstance(value, _PLAIN)

    return arguments if all(plain(v) for v in arguments.values()) else None


def _tracked_items(value):
    """What an attribute holds, through nested lists, tuples and dicts (dict values; each container once,
    so a list that holds itself ends), as Keras tracks the layers of ``self.blocks = [[Dense(), ...]]``."""
    if not isinstance(value, (list, tuple, dict)):
        return (value,)
    out, seen = [], {id(value)}
    stack = [iter(value.values() if isinstance(value, dict) else value)]
    while stack:  # depth first, each container in its own order
        item = next(stack[-1], stack)
        if item is stack:  # that container is done
            stack.pop()
        elif not isinstance(item, (list, tuple, dict)):
            out.append(item)
        elif id(item) not in seen:
            seen.add(id(item))
            stack.append(iter(item.values() if isinstance(item, dict) else item))
    return out


def _flatten_shapes(s):
    if isinstance(s, dict):
        for v in s.values():
            yield from _flatten_shapes(v)
    elif isinstance(s, (list, tuple)) and s and isinstance(s[0], (list, tuple, dict)):
        for v in s:
            yield from _flatten_shapes(v)
    else:
        yield tuple(s)


def _pack_shapes(struct, flat):
    it = iter(flat)

    def build(s):
        if isinstance(s, dict):
            return {k: build(v) for k, v in s.items()}
        if isinstance(s, (list, tuple)) and s and isinstance(s[0], (list, tuple, dict)):
            # a tuple of outputs stays a tuple (a Functional's outputs=(a, b)), as the eager call returns
            return tuple(build(v) for v in s) if type(s) is tuple else [build(v) for v in s]
        return next(it)

    return build(struct)


def _recording_build(build):
    """``build`` that also remembers the input shape it was given for ``get_build_config``: a custom
    layer's ``build`` may be called directly (not via the first call), and Keras records it then too."""
    @functools.wraps(build)
    def recording_build(self, *args, **kwargs):
        result = build(self, *args, **kwargs)
        shape = args[0] if args else kwargs.get("input_shape")
        if shape is not None and self.__dict__.get("_build_shapes") is None:
            self._build_shapes = shape
        return result

    recording_build._records_shape = True
    return recording_build


def _to_shape_struct(shape):
    """JSON turns shape tuples into lists: turn them back (lists of shapes stay lists)."""
    if isinstance(shape, dict):
        return {k: _to_shape_struct(v) for k, v in shape.items()}
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple, dict)):
        return [_to_shape_struct(s) for s in shape]
    return tuple(shape)


__all__ = ["InputSpec", "Layer"]
