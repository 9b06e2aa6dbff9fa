"""``Sequential``: a plain stack of layers, each feeding the next."""

from __future__ import annotations

import contextlib
import inspect

import numpy as np

from lamina import activations, conv_accel, row_split
from lamina.autodiff import Tensor, recording
from lamina.conv_kernels import conv_forward, pad_input, winograd_max_pool
from lamina.layers import deserialize, serialize
from lamina.layers.activation import Activation
from lamina.layers.average_pooling import AveragePooling1D, AveragePooling2D, AveragePooling3D
from lamina.layers.base_conv import BaseConv
from lamina.layers.batch_normalization import BatchNormalization
from lamina.layers.conv import Conv1D, Conv2D, Conv3D
from lamina.layers.dense import Dense
from lamina.layers.dropout import Dropout
from lamina.layers.flatten import Flatten
from lamina.layers.global_pooling import (
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GlobalMaxPooling3D,
)
from lamina.layers.input_layer import InputLayer
from lamina.layers.keras_tensor import KerasTensor, is_symbolic
from lamina.layers.layer import Layer, _to_shape_struct, carry_mask, mask_work, shape_of
from lamina.layers.max_pooling import MaxPooling1D, MaxPooling2D, MaxPooling3D
from lamina.layers.relu import ReLU
from lamina.layers.rnn import embedding_fed_step
from lamina.models.functional import Functional
from lamina.models.model import Model


def _check_single_input(layer) -> None:
    """A layer of a stack takes one input: a ``call`` with more required positional arguments cannot be
    fed by the layer before it (Keras's rule)."""
    try:
        params = list(inspect.signature(layer.call).parameters.values())
    except (TypeError, ValueError):  # a builtin or C-level call: nothing to read
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p.name for p in positional if p.default is p.empty]
    if len(required) > 1:
        raise ValueError(
            "Layers added to a Sequential model can only have a single required positional argument, the "
            f"input tensor. Layer {type(layer).__name__} has multiple required positional arguments: {required}"
        )


def _fits(shape: tuple, configured: tuple) -> bool:
    """Whether ``shape`` agrees with the configured input shape (None matches any size)."""
    return len(shape) == len(configured) and all(a is None or b is None or a == b for a, b in zip(shape, configured))


_MAX_POOLS = (MaxPooling1D, MaxPooling2D, MaxPooling3D)


def _relu_after_max_pool(conv, pool):
    """A relu convolution then a max pooling, with the relu run after the pooling on the smaller array:
    max commutes with the monotone relu, so the values are the same (NaN included). With numba, the bias,
    the max and the relu are one compiled pass over the convolution's output (:func:`_compiled_pool`)."""

    def run(x):
        if conv.activation is not activations.relu:  # changed since the plan was made
            return pool.call(conv.call(x))
        y = _compiled_pool(conv, pool, x)
        if y is not None:
            return y
        y = pool.call(conv.call_logits(x))
        return np.maximum(y, 0, out=y)

    return run


def _compiled_pool(conv, pool, x, relu: bool = True):
    """``relu(max_pool(conv(x) + bias))`` (``relu=False``: without the relu) through
    :func:`lamina.conv_accel.max_pool` for a plain channels-last ``Conv1D``/``Conv2D`` and a "valid" pooling, or
    None (the layers' own calls then run); a 3x3 convolution on few channels and a 2x2 pooling as one pass
    (:func:`lamina.conv_accel.conv_max_pool`)."""
    if type(conv) not in (Conv1D, Conv2D) or conv.data_format != "channels_last" or conv.lora_enabled \
            or pool.data_format != "channels_last" or pool.padding.lower() != "valid" or 0 in pool.strides \
            or conv_accel.kernels() is None:
        return None
    kernel = conv._kernel._value
    if x.dtype != kernel.dtype or x.dtype.kind != "f":
        return None
    conv.compute_output_shape(x.shape)  # Keras's message for a too-small input
    pads, bias = conv._pads(x.shape[1:-1]), None if conv.bias is None else conv.bias._value
    if conv_accel.conv_pool_fits(kernel.shape, conv.strides, conv.dilation_rate, conv.groups, pool.pool_size,
                                 pool.strides, "valid"):
        out = conv_accel.conv_max_pool(pad_input(x, pads), kernel, bias, relu=relu, keep_arg=False)
        if out is not None:  # else (a NaN) the convolution's map, then the pooling
            return out[0]
    if type(conv) is Conv2D and tuple(pool.pool_size) == tuple(pool.strides) == (2, 2) \
            and tuple(conv.strides) == tuple(conv.dilation_rate) == (1, 1) and conv.groups == 1:
        out = winograd_max_pool(x, kernel, pads, bias, relu=relu)  # F(4x4, 3x3) with the pooling in its output
        if out is not None:
            return out
    z = conv_forward(x, kernel, conv.strides, pads, conv.dilation_rate, conv.groups)
    out = conv_accel.max_pool(z, pool.pool_size, pool.strides, bias, relu=relu, keep_arg=False)
    return None if out is None else out[0]


def _is_relu(layer) -> bool:
    """An ``Activation("relu")``, or a ``ReLU`` layer with a slope and a threshold of at least 0 (its constructor
    refuses negative ones; an attribute set later may not): a non-decreasing function."""
    if type(layer) is Activation:
        return layer.activation is activations.relu
    return type(layer) is ReLU and layer.negative_slope >= 0 and layer.threshold >= 0


def _normalized_max_pool(conv, norm, act, pool):
    """A linear convolution, BatchNormalization, relu and max pooling at inference, with the pooling moved
    first, onto the convolution's output (through :func:`_compiled_pool`, so a fused kernel never writes the
    full map), and the normalization and relu then run on the pooled array, a quarter of the size. Each cell of
    the normalization is ``x * scale + shift`` (see ``batch_norm_inference``), so while no channel's scale is
    negative every step is non-decreasing, rounding included, and the window's maximum goes through them
    unchanged: the values are the layers' own. Otherwise, or in training, the layers run in their order."""

    def run(x, training=None):
        gamma = None if norm.gamma is None else norm.gamma._value
        if training or conv.activation is not activations.linear or not _is_relu(act) \
                or not (gamma is None or np.all(gamma >= 0)) or norm.axis % len(x.shape) != len(x.shape) - 1:
            y = norm.call(conv.call(x), training=training)
            return pool.call(act.call(y))
        y = _compiled_pool(conv, pool, x, relu=False)
        if y is None:
            y = pool.call(conv.call(x))
        return act.call(norm.call(y, training=False))

    return run


# Layers whose inference ``call`` treats the batch's rows independently and changes no state, so that
# blocks of rows may run on threads at once (exact types: a subclass may override ``call``).
_ROW_WISE = (Conv1D, Conv2D, Conv3D, *_MAX_POOLS, AveragePooling1D, AveragePooling2D, AveragePooling3D,
             GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D, GlobalMaxPooling1D,
             GlobalMaxPooling2D, GlobalMaxPooling3D, Flatten, Dropout, Dense, BatchNormalization, Activation, ReLU)


# Layers whose inference works row by row with memory of the rows' features only: next to steps that work in
# blocks of rows, predict may give them a whole chunk (:meth:`Sequential._predicts_in_blocks`).
_ROWS_ONLY = (Dense, Activation, Dropout, Flatten, ReLU)


def _row_wise(layer) -> bool:
    """May ``layer`` run on blocks of rows on several threads at inference? Its type is in :data:`_ROW_WISE`,
    full precision, no LoRA or quantization, and a built-in activation (lamina's are all row-wise)."""
    activation = getattr(layer, "activation", None)
    return type(layer) in _ROW_WISE and not layer._lowp_call and not getattr(layer, "lora_enabled", False) \
        and getattr(layer, "quantization_mode", None) is None \
        and (activation is None or getattr(activation, "__module__", None) == activations.__name__)


def _split_over_threads(steps: list):
    """The plan's ``steps`` (row-wise, see :func:`_row_wise`) as one step that, at inference on a batch
    large enough, runs them on blocks of rows on several threads (:func:`lamina.row_split.split_rows`);
    in training mode (Dropout's draws, BatchNormalization's batch statistics) on the whole batch."""

    def serial(x, training=None):
        for call, has_training in steps:
            x = call(x, training=training) if has_training else call(x)
        return x

    def run(x, training=None):
        workers = 0 if training else conv_accel.split_workers(len(x))
        # a call this small on one thread: waking BLAS's threads costs more than they share
        small = workers == 1 and x.size <= row_split.SMALL_CALL
        with row_split.blas_held() if small else contextlib.nullcontext():
            if workers == 0 or workers == 1 and len(x) <= 2 * row_split.BLOCK_ROWS:
                return serial(x, training)
            return row_split.split_rows(serial, x, workers)

    run.in_blocks = True  # predict may hand it more rows than a batch: its memory is a block's
    return run


def _inference_plan(stack: list, masks: bool) -> list:
    """``[(function, takes_training)]`` for the graph-free inference path: each layer's ``call``; its
    ``__call__`` for a mixed-precision or 16-bit layer and for every layer of a stack that makes masks;
    a relu convolution and the max pooling after it as one step; runs of row-wise layers as one step
    split over threads (:func:`_split_over_threads`)."""
    plan, i = [], 0
    while i < len(stack):
        layer = stack[i]
        if layer._lowp_call or masks:
            plan.append((layer, layer._call_has_training, 0))
        elif isinstance(layer, BaseConv) and layer.activation is activations.relu and i + 1 < len(stack) \
                and isinstance(stack[i + 1], _MAX_POOLS) and not stack[i + 1]._lowp_call:
            fused = _relu_after_max_pool(layer, stack[i + 1])
            plan.append((fused, False, 2 if _row_wise(layer) and _row_wise(stack[i + 1]) else 0))
            i += 1
        elif isinstance(layer, BaseConv) and layer.activation is activations.linear and i + 3 < len(stack) \
                and type(stack[i + 1]) is BatchNormalization and _is_relu(stack[i + 2]) \
                and isinstance(stack[i + 3], _MAX_POOLS) and not any(s._lowp_call for s in stack[i + 1:i + 4]):
            fused = _normalized_max_pool(*stack[i:i + 4])
            plan.append((fused, True, 2 if all(_row_wise(s) for s in stack[i:i + 4]) else 0))
            i += 3
        elif i + 1 < len(stack) and not stack[i + 1]._lowp_call \
                and (fed := embedding_fed_step(layer, stack[i + 1])) is not None:
            plan.append((fed, True, 0))  # Embedding -> LSTM/GRU reading an embeddings @ kernel table
            i += 1
        else:
            kind = (2 if isinstance(layer, BaseConv) else 1) if _row_wise(layer) else 0
            plan.append((layer.call, layer._call_has_training, kind))
        i += 1
    return _group_row_wise(plan)


def _group_row_wise(plan: list) -> list:
    """``plan`` of ``(function, takes_training, row_wise)`` (0: not row-wise, 1: row-wise, 2: a row-wise
    convolution) with each run of row-wise steps holding a convolution merged into one
    :func:`_split_over_threads` step (a stack of Dense layers keeps OpenBLAS's own threads);
    ``[(function, takes_training)]``."""
    out, run, conv = [], [], False
    for call, has_training, row_wise in [*plan, (None, False, 0)]:
        if row_wise:
            run.append((call, has_training))
            conv = conv or row_wise == 2
            continue
        if conv:
            out.append((_split_over_threads(run), True))
        else:
            out.extend(run)
        run, conv = [], False
        if call is not None:
            out.append((call, has_training))
    return out


class Sequential(Model):
    """``Sequential([Dense(128, activation="relu", input_shape=(784,)), Dense(10)])``.

    The model builds as soon as its input shape is known (an ``Input``, or ``input_shape=`` /
    ``input_dim=`` on the first layer), otherwise on its first call.
    """

    def __init__(self, layers=None, trainable: bool = True, name: str | None = None, **kwargs):
        Model.__init__(self, trainable=trainable, name=name, **kwargs)
        self._input_layer: InputLayer | None = None
        self._stack: list[Layer] = []
        # Names and ids of what is tracked, so add() stays O(1) however long the stack (a 40,000-layer
        # file loads in linear time); see _name_taken() and _track().
        self._stack_names: set[str] = set()
        self._tracked_ids: set[int] = set()
        self._plan = None  # [(layer.call, takes_training)] for the graph-free inference path
        # The symbolic graph of the stack, once the input shape is known (see `inputs`, `_functional`).
        self._graph_inputs: list[KerasTensor] = []
        self._graph_outputs: list[KerasTensor] = []
        self._functional_cache = None
        if layers is not None:
            if not isinstance(layers, (list, tuple)):
                raise TypeError(f"Sequential expects a list of layers. Received: {type(layers).__name__}")
            for layer in layers:
                self.add(layer, rebuild=False)
            self._maybe_build_graph()

    _layers_reserved = "`Sequential.layers` attribute is reserved and cannot be assigned. Use `add()` and " \
                       "`pop()` to change the layers in this model."

    @property
    def layers(self) -> list[Layer]:
        return list(self._stack)

    @property
    def inputs(self) -> list[KerasTensor]:
        """The graph's input tensor (a list of one), once the input shape is known; unbuilt, there is
        none and reading it is an AttributeError, as in Keras (``hasattr(model, "inputs")`` is False)."""
        if not self._graph_inputs:
            raise AttributeError(f"Sequential model '{self.name}' has no inputs yet: it is not built. Give it an "
                                 "Input, call build(input_shape) or call it on data first.")
        return self._graph_inputs

    @property
    def outputs(self) -> list[KerasTensor]:
        """The graph's output tensor (a list of one), once built; see :attr:`inputs`."""
        if not self._graph_outputs:
            raise AttributeError(f"Sequential model '{self.name}' has no outputs yet: it is not built.")
        return self._graph_outputs

    @property
    def _functional(self):
        """The built stack as a :class:`Functional` model over the same layers and graph (Keras keeps one in
        a built Sequential); None until the input shape is known. Made on first use, then kept until the
        graph changes."""
        if not self._graph_outputs:
            return None
        cached = self._functional_cache
        if cached is None or cached.outputs[0] is not self._graph_outputs[0]:
            cached = Functional(self._graph_inputs[0], self._graph_outputs[0], name=f"{self.name}_functional")
            object.__setattr__(self, "_functional_cache", cached)  # not a tracked sub-layer
        return cached

    def add(self, layer, rebuild: bool = True) -> None:
        """Append ``layer`` (or an ``Input`` tensor, which sets the input shape)."""
        if isinstance(layer, KerasTensor):
            layer = layer._keras_history[0]
        if not isinstance(layer, Layer):
            raise ValueError(
                "Only instances of `lamina.layers.Layer` can be added to a Sequential model. "
                f"Received: {layer!r} (of type {type(layer).__name__})"
            )
        if isinstance(layer, InputLayer):
            if self._input_layer is not None and not self._stack:
                raise ValueError(
                    f"Sequential model '{self.name}' has already been configured to use input shape "
                    f"{self._input_layer.batch_shape}; it takes one Input, as its first entry. "
                    f"Received: another input layer '{layer.name}'"
                )
            if self._input_layer is not None or self._stack:
                raise ValueError(
                    f"Sequential model '{self.name}' already has layers; an Input/InputLayer can only "
                    f"be the first entry. Received: {layer.name}"
                )
            self._input_layer = layer
        else:
            if self._name_taken(layer.name):
                raise ValueError(
                    f"All layers added to a Sequential model should have unique names. Name "
                    f"'{layer.name}' is already the name of a layer in this model."
                )
            if self._input_layer is None and not self._stack and layer._input_shape_arg is not None:
                self._input_layer = InputLayer(shape=layer._input_shape_arg)
            self._stack.append(layer)
            self._stack_names.add(layer.name)
            self._plan = None
            self._track(layer)
        if rebuild:
            self._maybe_build_graph()

    def _name_taken(self, name: str) -> bool:
        # The set can only be stale after a layer was renamed: confirm a hit against the stack itself.
        return name in self._stack_names and any(existing.name == name for existing in self._stack)

    def _track(self, layer: Layer) -> None:
        # Attribute assignments (Layer.__setattr__) append to _layers behind our back, never remove:
        # a length mismatch means the id set must be refreshed, which happens O(1) times per model.
        if len(self._tracked_ids) != len(self._layers):
            self._tracked_ids = {id(la) for la in self._layers}
        if id(layer) not in self._tracked_ids:
            self._layers.append(layer)
            self._tracked_ids.add(id(layer))

    def pop(self, rebuild: bool = True) -> Layer:
        if not self._stack:
            raise TypeError("There are no layers in the model.")
        layer = self._stack.pop()
        self._layers.remove(layer)
        self._tracked_ids.discard(id(layer))
        self._stack_names = {la.name for la in self._stack}
        self._plan = None
        self.built = False
        if rebuild:
            self._maybe_build_graph()
        return layer

    def _maybe_build_graph(self) -> None:
        if self._input_layer is not None:
            self._build_graph(self._input_layer.batch_shape)

    def _build_graph(self, batch_shape) -> None:
        """Run the layers symbolically from an Input: builds weights and records output shapes."""
        if self._input_layer is None or self._input_layer.batch_shape != tuple(batch_shape):
            self._input_layer = InputLayer(batch_shape=tuple(batch_shape))
        x = self._input_layer.output_tensor
        self._graph_inputs = [x]
        for layer in self._stack:
            _check_single_input(layer)
            x = layer(x)
        self._graph_outputs = [x] if self._stack else []
        self._plan = None
        self._build_shapes = tuple(batch_shape)
        self.built = True

    def build(self, input_shape=None) -> None:
        if input_shape is None:
            if self._input_layer is None:
                raise ValueError(
                    f"Sequential model '{self.name}' cannot be built without an input shape. "
                    "Give the first layer input_shape=..., start with keras.Input(shape), or call build(shape)."
                )
            input_shape = self._input_layer.batch_shape
        self._require_layers(input_shape)
        if self._input_layer is not None and not _fits(tuple(input_shape), self._input_layer.batch_shape):
            raise ValueError(
                f"Sequential model '{self.name}' has already been configured to use input shape "
                f"{self._input_layer.batch_shape}. You cannot build it with another. Received: "
                f"input_shape={tuple(input_shape)}"
            )
        self._build_graph(tuple(input_shape))

    def _maybe_build(self, input_shape) -> None:
        if not self.built:
            self._require_layers(input_shape)
            self._build_graph((None,) + tuple(input_shape)[1:])
            self._shape_from_data = True  # no Input was given: later batches may differ (_take_new_sizes)

    def _require_layers(self, input_shape) -> None:
        if not self._stack:
            raise ValueError(
                f"Sequential model '{self.name}' cannot be built because it has no layers. Call "
                f"`model.add(layer)`. Received: input_shape={tuple(input_shape)}"
            )

    @property
    def input_shape(self):
        if not self._graph_inputs:
            raise AttributeError(f"Sequential model '{self.name}' has no defined input shape yet.")
        return self._graph_inputs[0].shape

    @property
    def output_shape(self):
        if not self._graph_outputs:
            raise AttributeError(f"Sequential model '{self.name}' has no defined output shape yet.")
        return self._graph_outputs[0].shape

    def __call__(self, *args, **kwargs):
        if self._call_plan is not None and args:
            out = self._compiled_call(args[0], kwargs)
            if out is not None:
                return out
        if args and type(args[0]) is np.ndarray and self.built and not recording():
            # The inference hot path: a float array of the right shape runs straight through.
            x = args[0]
            want = self._want_shape
            if x.dtype == self._np_dtype and x.ndim == len(want) and x.shape[1:] == want[1:]:
                return self._run_plain(x, kwargs.get("training"))
        if args and isinstance(args[0], dict) and not is_symbolic(args[0]):
            return self._run_structure(args[0], kwargs.get("training"))
        if args and isinstance(args[0], (np.ndarray, list, tuple)) and not isinstance(args[0], KerasTensor):
            x = Layer._convert_inputs(self, args[0])
            if isinstance(x, (list, tuple)) and len(x) == 1 and isinstance(x[0], np.ndarray):
                x = x[0]  # [array] is the one input, as Keras's Functional (and lamina's) reads it
            if isinstance(x, (list, tuple)):
                return self._run_structure(x, kwargs.get("training"))
            if isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.dtype.name != self.dtype:
                x = x.astype(self.dtype)
            if not self.built:
                self._maybe_build(shape_of(x))
            x = self._standardize_rank(x)
            self._check_input(x)
            return self._run(x, training=kwargs.get("training"))
        return super().__call__(*args, **kwargs)

    def _standardize_rank(self, x):
        """Keras's rank standardization for the one Input: data with one axis less than the Input whose
        last axis is 1 gains that axis (``fit(np.array([1, 2]))`` for ``input_shape=(1,)``); one axis more
        of size 1 is dropped. Anything else is left for the shape check to name."""
        want = self._graph_inputs[0].shape if self._graph_inputs else None
        if want is None or x.__class__ is np.ndarray and x.ndim == len(want):  # the per-batch common case
            return x
        if not isinstance(x, (np.ndarray, Tensor)):
            return x
        shape = shape_of(x)
        if len(shape) == len(want) - 1 and want[-1] == 1:
            return x[..., None]
        if len(shape) == len(want) + 1 and shape[-1] == 1:
            return x[..., 0]
        return x

    def _run_structure(self, x, training=None):
        """Several inputs (a list or dict of arrays) have no single Input to build a graph from: each
        layer is called on what the previous one returned, as Keras's Sequential then does."""
        for layer in self._stack:
            x = layer(x, training=training) if layer._call_has_training else layer(x)
        return x

    def _check_input(self, x) -> None:
        want = self._graph_inputs[0].shape if self._graph_inputs else None
        if want is None:
            return
        shp = shape_of(x)
        # The batch axis is free, as in Keras: Input(batch_size=4) still predicts 16 rows at once.
        mismatch = len(shp) != len(want) or any(w is not None and w != s for w, s in zip(want[1:], shp[1:]))
        if (mismatch or self.__dict__.get("_relaxed")) and len(shp) == len(want) \
                and self.__dict__.get("_shape_from_data"):
            self._take_new_sizes(tuple(shp))
            return
        if mismatch:
            first = self._stack[0].name if self._stack else self.name
            raise ValueError(
                f"Input 0 of layer '{first}' in Sequential model '{self.name}' is incompatible: "
                f"expected shape={want}, found shape={shp}. Received: input_shape={shp}"
            )

    def _take_new_sizes(self, shape: tuple) -> None:
        """A model built from its first batch (no Input given) takes later batches whose other sizes
        differ, as Keras's does, provided its layers take them: the layers run symbolically on this
        batch's shape (each checks what it needs, a Dense its feature size, raising its own error), then
        the graph is rebuilt with None for every size seen to vary. Each distinct shape is checked once."""
        seen = self.__dict__.setdefault("_sizes_seen", set())
        if shape[1:] in seen:
            return
        want = tuple(self._want_shape)
        try:
            self._build_graph((None,) + shape[1:])
        except ValueError:
            self._build_graph(want)
            raise
        self._build_graph((None,) + tuple(w if w == s else None for w, s in zip(want[1:], shape[1:])))
        seen.add(shape[1:])
        self._relaxed = True  # the input no longer pins the sizes: the plain path would skip the layers' checks

    def call(self, inputs, training=None):
        if not isinstance(inputs, (np.ndarray, Tensor)):
            inputs = Layer._convert_inputs(self, inputs)
        return self._run(inputs, training=training)

    @property
    def _want_shape(self) -> tuple:
        return self._graph_inputs[0].shape if self._graph_inputs else (None,)

    @property
    def _np_dtype(self):
        dt = self.__dict__.get("_np_dtype_cache")
        if dt is None:
            dt = self.__dict__["_np_dtype_cache"] = np.dtype(self.dtype)
        return dt

    def _inference_steps(self) -> list:
        """The graph-free inference plan (:func:`_inference_plan`), made on first use."""
        plan = self._plan
        if plan is None:
            # A mixed-precision or 16-bit layer runs through __call__: it casts its weights and outputs; so do
            # all layers of a stack that makes masks (Embedding(mask_zero=True)): __call__ passes them on.
            masks = any(mask_work(layer) for layer in self._stack)
            plan = self._plan = _inference_plan(self._stack, masks)
        return plan

    def _predicts_in_blocks(self) -> bool:
        """Does inference run the stack on blocks of rows of its own (steps split over threads, whose memory is a
        block's or the rows' features whatever the rows handed to them)? Then predict may hand it more rows
        than a batch."""
        if not self.built or self.__dict__.get("_relaxed"):
            return False
        plan = self._inference_steps()
        blocks = [getattr(call, "in_blocks", False) for call, _ in plan]
        # the others only per-row work whose memory is the rows' features (a Dense head, say)
        return any(blocks) and all(b or isinstance(getattr(call, "__self__", None), _ROWS_ONLY)
                                   for b, (call, _) in zip(blocks, plan, strict=True))

    def _run_plain(self, x, training=None):
        """Outside a tape: call each built layer's ``call`` directly (shapes were checked at the input)."""
        plan = self._inference_steps()
        for call, has_training in plan:
            x = call(x, training=training) if has_training else call(x)
        return x

    def _run(self, x, training=None, logits: bool = False):
        """Apply the stack; with ``logits=True`` the last layer returns its pre-activation if it can."""
        if not logits and self.built and type(x) is np.ndarray and not recording() \
                and not self.__dict__.get("_relaxed"):
            return self._run_plain(x, training)
        last = len(self._stack) - 1
        for i, layer in enumerate(self._stack):
            if logits and i == last and hasattr(layer, "call_logits"):
                return carry_mask(layer, x, layer.call_logits(x))
            x = layer(x, training=training) if layer._call_has_training else layer(x)
        return x

    # ------------------------------------------------------------------ config

    def get_config(self) -> dict:
        layers = []
        if self._input_layer is not None:
            layers.append(serialize(self._input_layer))
        for layer in self._stack:
            cfg = serialize(layer)
            build = layer.get_build_config()
            if build is not None:
                cfg["build_config"] = build
            layers.append(cfg)
        config = {"name": self.name, "trainable": self.trainable, "layers": layers}
        if self._build_shapes is not None:
            config["build_input_shape"] = self._build_shapes
        return config

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        layer_cfgs = config["layers"] if isinstance(config, dict) else config
        model = cls(name=config.get("name") if isinstance(config, dict) else None,
                    trainable=config.get("trainable", True) if isinstance(config, dict) else True)
        for cfg in layer_cfgs:
            layer = deserialize(cfg, custom_objects=custom_objects)
            model.add(layer, rebuild=False)
        if model._input_layer is not None:
            model._maybe_build_graph()
        elif isinstance(config, dict) and config.get("build_input_shape") is not None:
            model.build(_to_shape_struct(config["build_input_shape"]))
        return model
