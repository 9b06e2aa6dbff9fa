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

import inspect
import weakref

import numpy as np

from lamina import backend, constraints, initializers, regularizers
from lamina.autodiff import Tensor, Variable, recording, unwrap
from lamina.layers.keras_tensor import KerasTensor, Node, flatten, is_symbolic, map_structure
from lamina.naming import auto_name


def dtype_policy_config(dtype: str) -> dict:
    """Keras 3 writes a layer's dtype as a serialized DTypePolicy."""
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": dtype},
            "registered_name": None}


def dtype_from_config(dtype) -> str | None:
    if dtype is None:
        return None
    if isinstance(dtype, dict):
        cfg = dtype.get("config", {})
        name = cfg.get("name", backend.floatx())
        # "mixed_float16" style policies compute in their second half; lamina keeps float32.
        return name.split("_")[-1] if name.startswith("mixed") else name
    return backend.standardize_dtype(dtype)


def shape_of(x) -> tuple:
    """The shape of an array-like or KerasTensor (lists of numbers count as arrays)."""
    if isinstance(x, KerasTensor):
        return x.shape
    return tuple(np.shape(unwrap(x)))


# A class's ``call`` function -> whether it takes ``training``: inspect.signature costs ~50 us, paid once
# per class instead of once per layer (rebuilding a 20,000-layer model spent a second on it).
_TAKES_TRAINING: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _call_takes_training(layer) -> bool:
    if "call" in layer.__dict__:  # an instance's own call
        return "training" in inspect.signature(layer.call).parameters
    fn = type(layer).call
    try:
        return _TAKES_TRAINING[fn]
    except (KeyError, TypeError):  # TypeError: not weak-referenceable, computed each time
        takes = "training" in inspect.signature(layer.call).parameters
    try:
        _TAKES_TRAINING[fn] = takes
    except TypeError:
        pass
    return takes


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
        self._dtype = dtype_from_config(dtype) or backend.floatx()
        self.autocast = autocast
        self._trainable = trainable
        self.built = False
        self._variables: list[Variable] = []
        self._layers: list[Layer] = []
        self._inbound_nodes: list[Node] = []
        self._losses: list = []
        self._build_shapes = None
        self.input_spec: InputSpec | None = None
        self.supports_masking = False
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self._call_has_training = _call_takes_training(self)
        self._tracking = True

    # ------------------------------------------------------------------ tracking

    def __setattr__(self, name, value):
        # Most attributes hold neither layers nor variables: one isinstance check lets them through.
        if isinstance(value, _MAY_TRACK) and self.__dict__.get("_tracking") and not name.startswith("__"):
            for item in value if isinstance(value, (list, tuple)) else (value,):
                if isinstance(item, Layer) and item is not self and item not in self._layers:
                    self._layers.append(item)
                elif isinstance(item, Variable) and all(item is not v for v in self._variables):
                    self._variables.append(item)
        object.__setattr__(self, name, value)

    @property
    def dtype(self) -> str:
        return self._dtype

    @property
    def compute_dtype(self) -> str:
        return self._dtype

    @property
    def variable_dtype(self) -> str:
        return self._dtype

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
        dtype = backend.standardize_dtype(dtype or self._dtype)
        if initializer is None:
            initializer = "glorot_uniform" if np.issubdtype(np.dtype(dtype), np.floating) else "zeros"
        init = initializers.get(initializer)
        value = init(shape, dtype=dtype) if callable(init) else np.asarray(init, dtype=dtype)
        var = Variable(value, trainable=trainable and self._trainable, name=name or "variable",
                       dtype=dtype, regularizer=regularizers.get(regularizer),
                       constraint=constraints.get(constraint))
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
        own_t = [v for v in self._variables if v.trainable]
        own_n = [v for v in self._variables if not v.trainable]
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
        return self._flat_weights()

    @property
    def trainable_weights(self) -> list[Variable]:
        return [v for v in self._flat_weights() if v.trainable] if self.trainable else []

    trainable_variables = trainable_weights

    @property
    def non_trainable_weights(self) -> list[Variable]:
        if not self.trainable:
            return self._flat_weights()
        return [v for v in self._flat_weights() if not v.trainable]

    non_trainable_variables = non_trainable_weights

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
        out = self.call(dummy, **({"training": False} if self._call_has_training else {}))

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
        if is_symbolic(inputs):
            return self._symbolic_call(inputs, args, kwargs)
        inputs = self._convert_inputs(inputs)
        if not self.built:
            self._maybe_build(map_structure(shape_of, inputs) if not isinstance(inputs, (np.ndarray, Tensor))
                              else inputs.shape)
        elif self.input_spec is not None and isinstance(inputs, (np.ndarray, Tensor)):
            self._check_input_spec(inputs.shape)
        if not self._call_has_training:
            kwargs.pop("training", None)
        out = self.call(inputs, *args, **kwargs)
        if self.activity_regularizer is not None and recording():
            self._losses.append(self.activity_regularizer(out) / max(1, shape_of(out)[0] if shape_of(out) else 1))
        return out

    def _convert_inputs(self, inputs):
        """Arrays of numbers only; floats cast to this layer's dtype (Keras's autocast)."""
        def conv(x):
            if isinstance(x, (Tensor, Variable)):
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
            if kind == "f":
                if self.autocast and x.dtype.name != self._dtype:
                    mask = backend.get_keras_mask(x)
                    x = x.astype(self._dtype)
                    if mask is not None:  # the cast copy keeps the mask, as in Keras
                        backend.set_keras_mask(x, mask)
            elif kind in "iub":
                pass
            else:
                raise TypeError(
                    f"Layer '{self.name}' expects numeric inputs (floats or integers). "
                    f"Received: an array of dtype {x.dtype}"
                )
            return x

        if isinstance(inputs, np.ndarray) and inputs.dtype.name == self._dtype:
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

    def _expects_list(self) -> bool:
        """True for layers whose ``call`` takes a list of tensors (merge layers, multi-input models)."""
        return False

    def call(self, inputs, *args, **kwargs):
        return inputs

    def _symbolic_call(self, inputs, args, kwargs):
        # The graph records one input structure and plain keyword arguments: anything else would be
        # dropped from the node and the model would compute something else, silently.
        extra = [k for k, v in kwargs.items() if any(isinstance(t, KerasTensor) for t in flatten(v))]
        if args or extra:
            got = f"{len(args)} more positional argument(s)" if args else f"symbolic keyword argument(s) {extra}"
            raise ValueError(
                f"Layer '{self.name}' was called on symbolic inputs with {got}; a Functional graph records "
                f"the first argument only. Pass several tensors as one list, e.g. layer([x, y]). Received: {got}"
            )
        flat_in = [t for t in flatten(inputs) if isinstance(t, KerasTensor)]
        shapes = map_structure(lambda t: t.shape if isinstance(t, KerasTensor) else shape_of(t), inputs)
        if isinstance(shapes, tuple) and not isinstance(inputs, KerasTensor):
            shapes = list(shapes)
        if not self.built:
            self._maybe_build(shapes)
        elif isinstance(shapes, tuple):
            self._check_input_spec(shapes)
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
        node = Node(self, inputs, flat_in, outs, dict(kwargs))
        self._inbound_nodes.append(node)
        if single:
            return outs[0]
        return _pack_shapes(out_shapes_struct, outs)

    def _output_dtype(self) -> str:
        return self._dtype

    # ------------------------------------------------------------------ config

    def get_config(self) -> dict:
        config = {"name": self.name, "trainable": self.trainable, "dtype": dtype_policy_config(self._dtype)}
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
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


_MAY_TRACK = (Layer, Variable, list, tuple)


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
            return [build(v) for v in s]
        return next(it)

    return build(struct)


def _to_shape_struct(shape):
    """JSON turns shape tuples into lists: turn them back (lists of shapes stay lists)."""
    if isinstance(shape, dict):
        return {k: _to_shape_struct(v) for k, v in shape.items()}
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple, dict)):
        return [_to_shape_struct(s) for s in shape]
    return tuple(shape)


__all__ = ["InputSpec", "Layer"]
