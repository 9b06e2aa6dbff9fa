"""``Functional``: a model defined by a graph of layer calls on symbolic ``Input`` s.

Built by ``Model(inputs=..., outputs=...)``. At construction the graph is walked from the outputs
back to the inputs (iteratively) and its nodes sorted topologically once; calling the model runs
those nodes in order on real arrays — plain NumPy outside a tape.
"""

from __future__ import annotations

import warnings

import numpy as np

from lamina import ops, tree
from lamina.autodiff import Tensor, Variable, recording, unwrap
from lamina.layers import deserialize
from lamina.layers.input_layer import InputLayer
from lamina.layers.keras_tensor import KerasTensor, flatten, pack_like
from lamina.layers.layer import Layer, carry_mask, mask_work, shape_of
from lamina.layers.op_layer import OpLayer, from_keras_entry, is_op_entry
from lamina.models.model import Model


def _check_symbolic(structure, what: str) -> None:
    for t in flatten(structure):
        if not isinstance(t, KerasTensor):
            raise ValueError(
                f"All `{what}` values must be KerasTensors: the symbolic tensors of keras.Input(...) or of "
                f"calling layers on them. Received: {what} including invalid value {t!r:.80} of type "
                f"{type(t).__name__}"
            )


def _reroot(inputs, outputs) -> tuple:
    """A model cut from the middle of a graph (``Model(x1, x2)``, x1 a layer's output): each input that
    is not a ``keras.Input`` gets an Input of its shape and dtype, and the layers between are called
    again on those (new nodes, the same layers and weights), as Keras's ``clone_graph_nodes`` does."""
    flat_in = flatten(inputs)
    values: dict[int, KerasTensor] = {}
    new_inputs = []
    for t in flat_in:
        fresh = t
        if not isinstance(t._keras_history[0], InputLayer):
            fresh = InputLayer(batch_shape=t.shape, dtype=t.dtype, name=f"{t.name}CLONE").output_tensor
        values[id(t)] = fresh
        new_inputs.append(fresh)

    def value(s):
        return pack_like(s, [values.get(id(t), t) if isinstance(t, KerasTensor) else t for t in flatten(s)])

    order, _, _ = _build_map(flat_in, flatten(outputs))
    for node in order:
        if _is_input_node(node):
            continue
        more = [value(a) for a in node.call_args]
        out = node.layer(value(node.call_inputs), *more, **node.call_kwargs)
        for t, v in zip(node.output_tensors, flatten(out) if len(node.output_tensors) > 1 else [out]):
            values[id(t)] = v
    return pack_like(inputs, new_inputs), value(outputs)


def _describe_value(x) -> str:
    return f"array of shape {shape_of(x)}" if hasattr(x, "shape") else f"{x!r:.80}"


def _several_batches(inputs, rank: int) -> bool:
    """A list or tuple of two or more arrays that each have the input's full rank: several inputs
    (not rows of one batch, which have one axis less)."""
    return isinstance(inputs, (list, tuple)) and len(inputs) > 1 and all(
        isinstance(x, (np.ndarray, Tensor)) and np.ndim(unwrap(x)) == rank for x in inputs)


class Functional(Model):
    """A model built from ``inputs`` and ``outputs`` symbolic tensors (lists, dicts or single)."""

    def __init__(self, inputs, outputs, name: str | None = None, trainable: bool = True, **kwargs):
        _check_symbolic(inputs, "inputs")
        _check_symbolic(outputs, "outputs")
        if not all(isinstance(t._keras_history[0], InputLayer) for t in flatten(inputs)):
            inputs, outputs = _reroot(inputs, outputs)
        Model.__init__(self, name=name, trainable=trainable, **kwargs)
        self._inputs_struct = inputs
        self._outputs_struct = outputs
        self.inputs = flatten(inputs)
        self.outputs = flatten(outputs)
        self._nodes = self._sort_nodes()
        # Every graph node's layer, op nodes included (Keras's ``operations``); ``layers`` leaves out the
        # op nodes, as in Keras, so weight lists and file paths match. Set without layer tracking.
        object.__setattr__(self, "_operations", keras_layer_order(self))
        self._layers = [op for op in self._operations if not isinstance(op, OpLayer)]
        _check_unique_names(self.name, [op.name for op in self._operations])
        self.built = True
        self._build_shapes = [t.shape for t in self.inputs] if len(self.inputs) > 1 else self.inputs[0].shape
        self._warned_structure = False

    def _sort_nodes(self) -> list:
        """Nodes reachable from the outputs, parents first (iterative DFS, no recursion)."""
        input_ids = {id(t) for t in self.inputs}
        order, seen = [], set()
        for output in self.outputs:  # one output at a time, so that a disconnected one can be named
            self._walk_from(output, input_ids, order, seen)
        return [n for n in order if not isinstance(n.layer, InputLayer)]

    def _walk_from(self, output: KerasTensor, input_ids: set, order: list, seen: set) -> None:
        stack = [(output, False)]
        while stack:
            tensor, done = stack.pop()
            layer, node_index, _ = tensor._keras_history
            node = layer._inbound_nodes[node_index]
            if done:
                if id(node) not in seen:
                    seen.add(id(node))
                    order.append(node)
                continue
            if id(node) in seen:
                continue
            if id(tensor) in input_ids:
                continue
            if isinstance(layer, InputLayer):
                path = next((".".join(map(str, p)) for p, leaf in tree.flatten_with_path(self._outputs_struct)
                             if leaf is output), "")
                raise ValueError(
                    f"Output with path `{path}` is not connected to `inputs`. Graph disconnected: cannot obtain "
                    f"value for tensor {tensor.name} (from input layer '{layer.name}'), which is not among the "
                    f"model's inputs {[t.name for t in self.inputs]}. Received: inputs={self.inputs}"
                )
            stack.append((tensor, True))
            for parent in reversed(node.input_tensors):
                stack.append((parent, False))

    @property
    def input_shape(self):
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    def _expects_list(self) -> bool:
        return len(self.inputs) > 1

    def _flatten_inputs(self, inputs) -> list:
        """The given inputs as one entry per model input, in ``self.inputs`` order. A structure other
        than the model's is read where Keras reads it, with its warning (once per model) or error."""
        struct = self._inputs_struct
        if isinstance(inputs, dict):
            if isinstance(struct, dict):
                missing = [k for k in struct if k not in inputs]
                if missing:
                    raise ValueError(f"Model '{self.name}' is missing inputs {missing}. Received keys: {list(inputs)}")
                if any(k not in struct for k in inputs):
                    self._structure_mismatch(inputs)
                return _pick_like(self.name, struct, inputs)
            names = [t._keras_history[0].name for t in self.inputs]
            if all(n in inputs for n in names):
                return [inputs[n] for n in names]
            raise ValueError(
                f"Model '{self.name}' takes inputs named {names}. Received: dict with keys {list(inputs)}"
            )
        if isinstance(struct, dict) and len(self.inputs) > 1:
            return self._flatten_unnamed(inputs)
        flat = list(inputs) if isinstance(inputs, (list, tuple)) and len(self.inputs) > 1 else [inputs]
        if len(flat) > 1 and any(map(_holds_arrays, flat)):
            flat = self._flatten_nested(inputs)
        if len(self.inputs) == 1 and _several_batches(inputs, len(self.inputs[0].shape)):
            flat = list(inputs)  # several whole inputs for a one-input model: refused below, as Keras does
        if isinstance(inputs, (list, tuple)) and len(self.inputs) == 1 and len(inputs) == 1 and (inputs[0] is None or (
                not np.isscalar(inputs[0]) and np.ndim(unwrap(inputs[0])) >= 1
                and isinstance(inputs[0], (np.ndarray, Tensor)))):
            flat = [inputs[0]]
        if len(flat) != len(self.inputs):
            raise ValueError(
                f"Model '{self.name}' expects {len(self.inputs)} input(s). Received: {len(flat)} input arrays"
            )
        return flat

    def _flatten_nested(self, inputs) -> list:
        """Nested inputs (``([a], b)``) in leaf order, as Keras reads them: a model built on such a
        structure takes it as it is; a flat list of Inputs takes it with Keras's structure warning."""
        if not any(isinstance(t, (list, tuple, dict)) for t in self._inputs_struct):
            self._structure_mismatch(inputs)
        return tree.flatten(inputs)

    def _flatten_unnamed(self, inputs) -> list:
        """A list or tuple given to a model whose inputs are a dict: Keras reads it in the dict's sorted
        key order, so a dict whose keys are not sorted cannot take one."""
        keys = list(self._inputs_struct)
        if not isinstance(inputs, (list, tuple)) or len(inputs) != len(keys):
            got = len(inputs) if isinstance(inputs, (list, tuple)) else 1
            raise ValueError(
                f"Model '{self.name}' expects {len(keys)} named input(s) with keys {keys}, but it received "
                f"{got} input tensors. Pass inputs as a dict, e.g. "
                f"model({{{', '.join(repr(k) + ': ...' for k in keys)}}}). Received: {type(inputs).__name__}"
            )
        if keys != sorted(keys):
            self._structure_mismatch(inputs, fail=True)
        self._structure_mismatch(inputs)
        return list(inputs)

    def _structure_mismatch(self, inputs, fail: bool = False) -> None:
        """Keras's warning (or, with ``fail``, error) for inputs structured unlike the model's; the warning
        is given once per model, not at every batch."""
        expected = tree.map_structure(lambda t: t.name, self._inputs_struct)
        received = tree.map_structure(lambda x: "None" if x is None else f"Tensor(shape={shape_of(x)})", inputs)
        message = ("The structure of `inputs` doesn't match the expected structure.\n"
                   f"Expected: {expected}\nReceived: inputs={received}")
        if fail:
            raise ValueError(message)
        if not getattr(self, "_warned_structure", False):
            self._warned_structure = True
            warnings.warn(message, UserWarning, stacklevel=3)

    def _input_path(self, tensor: KerasTensor) -> str:
        """Where ``tensor`` sits in the constructor's inputs, Keras-style (``0.foo``; ``''`` at the top)."""
        for path, leaf in tree.flatten_with_path(self._inputs_struct):
            if leaf is tensor:
                return ".".join(str(p) for p in path)
        return ""

    def _adjust_ranks(self, flat: list) -> list:
        """Keras's rank standardization: an input with one axis more than its Input whose last axis is 1
        loses it; one with one axis less gains a last axis of 1 when the Input's last axis is 1."""
        out = list(flat)
        for i, (x, t) in enumerate(zip(flat, self.inputs)):
            if x is None or isinstance(x, KerasTensor):
                continue
            rank, want = len(shape_of(x)), len(t.shape)
            if rank == want:
                continue
            if rank == want + 1 and shape_of(x)[-1] == 1:
                out[i] = ops.squeeze(x, axis=-1)
            elif rank == want - 1 and t.shape and t.shape[-1] == 1:
                out[i] = ops.expand_dims(x, axis=-1)
            else:
                raise ValueError(
                    f"Invalid input shape for input {_describe_value(x)} with name '{t.name}' and path "
                    f"'{self._input_path(t)}'. Expected shape {t.shape}, but input has incompatible shape "
                    f"{shape_of(x)}"
                )
        return out

    def _check_inputs(self, flat: list) -> None:
        spec = self.input_spec
        for i, (x, t) in enumerate(zip(flat, self.inputs)):
            if x is None:  # an optional input left out
                self._require_optional(t)
                continue
            shp = shape_of(x)
            want = t.shape
            if spec is not None and getattr(spec, "shape", None) is not None and len(self.inputs) == 1:
                want = tuple(spec.shape)  # a manual input_spec, as Keras's model.input_spec = InputSpec(shape=...)
            # The batch axis is free, as in Keras: Input(batch_size=4) still predicts 16 rows at once.
            ok = len(shp) == len(want) and all(w is None or w == s for w, s in zip(want[1:], shp[1:]))
            if not ok:
                layer = t._keras_history[0]
                raise ValueError(
                    f"Input {i} of model '{self.name}' (input layer '{layer.name}') is incompatible: "
                    f"expected shape={want}, found shape={shp}. Received: input_shape={shp}"
                )

    def __call__(self, *args, **kwargs):
        if self._call_plan is not None and args:
            out = self._compiled_call(args[0], kwargs)
            if out is not None:
                return out
        if args and not any(isinstance(a, KerasTensor) for a in flatten(args[0])):
            inputs = args[0]
            flat = [self._convert_one(x, t) for x, t in zip(self._flatten_inputs(inputs), self.inputs)]
            flat = self._adjust_ranks(flat)
            self._check_inputs(flat)
            return self._run(flat, training=kwargs.get("training"))
        return super().__call__(*args, **kwargs)

    def _convert_one(self, x, tensor: KerasTensor):
        """``x`` as an array of its Input's dtype, as Keras converts each input (an int32 Input gets
        int32 values, a float16 one float16); Tensors under a tape pass as they are. None passes to
        the layers of an ``Input(optional=True)``, and is an error for any other input."""
        if x is None:
            self._require_optional(tensor)
            return None
        if not isinstance(x, np.ndarray):
            x = Layer._convert_inputs(self, x)
        if isinstance(x, np.ndarray) and x.dtype.name != tensor.dtype and x.dtype.kind in "fiub":
            return x.astype(tensor.dtype)
        return x

    def _require_optional(self, tensor: KerasTensor) -> None:
        """None may stand for an ``Input(optional=True)`` only."""
        layer = tensor._keras_history[0]
        if not getattr(layer, "optional", False):
            raise ValueError(
                f"The input '{layer.name}' of model '{self.name}' is not optional, but None was passed. "
                "Pass an array, or build the model with Input(..., optional=True). Received: None"
            )

    def _check_optional_inputs(self, x) -> None:
        """Data for fit/evaluate/predict: a None must stand for an optional input (checked before the
        sample counts, which skip the missing inputs)."""
        if x is None or not isinstance(x, (list, tuple, dict)):
            return
        for value, tensor in zip(self._flatten_inputs(x), self.inputs):
            if value is None:
                self._require_optional(tensor)

    def compute_output_shape(self, input_shape):
        """The outputs' shapes for inputs of ``input_shape`` (a shape, or a list or dict of them like the
        inputs): the graph run on zeros with the unknown dimensions as 2, then as 3; a dimension that
        differs between the two runs is unknown."""
        def is_shape(s):
            return isinstance(s, (tuple, list)) and all(d is None or isinstance(d, int) for d in s)

        if is_shape(input_shape):
            shapes = [input_shape]
        elif isinstance(input_shape, (list, tuple)) and len(input_shape) == 1 and len(self.inputs) == 1:
            shapes = list(input_shape)
        else:
            shapes = self._flatten_inputs(input_shape)
        if len(shapes) != len(self.inputs) or not all(map(is_shape, shapes)):
            raise ValueError(f"Model '{self.name}' expects {len(self.inputs)} input shape(s). "
                             f"Received: input_shape={input_shape}")
        runs = []
        for size in (2, 3):
            dummy = [np.zeros([size if d is None else d for d in shape], dtype=t.dtype)
                     for shape, t in zip(shapes, self.inputs)]
            runs.append([tuple(np.shape(unwrap(o))) for o in flatten(self._run(dummy, training=False))])
        merged = [tuple(x if x == y else None for x, y in zip(a, b)) for a, b in zip(*runs)]
        return pack_like(self._outputs_struct, merged)

    def call(self, inputs, training=None):
        flat = self._flatten_inputs(inputs)
        return self._run(flat, training=training)

    def _run(self, flat_inputs: list, training=None, logits: bool = False):
        """Evaluate the graph; with ``logits=True`` output layers that can give pre-activations do."""
        values = {id(t): x for t, x in zip(self.inputs, flat_inputs)}
        out_ids = {id(t) for t in self.outputs} if logits else ()
        plain = not recording()
        def value(s):
            return pack_like(s, [values[id(t)] if isinstance(t, KerasTensor) else t for t in flatten(s)])

        for node in self._nodes:
            layer = node.layer
            args = value(node.call_inputs)
            more = value(list(node.call_args)) if node.call_args else ()
            kwargs = dict(node.call_kwargs)
            if layer._call_has_training and "training" not in kwargs:
                kwargs["training"] = training
            if logits and any(id(t) in out_ids for t in node.output_tensors) and hasattr(layer, "call_logits"):
                out = carry_mask(layer, args, layer.call_logits(args))
            elif plain and layer.built and type(args) is np.ndarray and not layer._lowp_call and \
                    (args.dtype.kind != "f" or args.dtype == layer._input_np_dtype) and not mask_work(layer, args):
                # Inference: the graph's shapes were checked at the inputs; skip __call__'s checks (not its
                # dtype work: a mixed-precision layer, or a float input in another dtype, goes through it).
                if not layer._call_has_training:
                    kwargs.pop("training", None)
                out = layer.call(args, *more, **kwargs)
            else:
                out = layer(args, *more, **kwargs)
            outs = flatten(out) if len(node.output_tensors) > 1 else [out]
            for t, v in zip(node.output_tensors, outs):
                values[id(t)] = v
        results = [values[id(t)] for t in self.outputs]
        return pack_like(self._outputs_struct, results)

    @property
    def input(self):
        """The inputs as given to the constructor (a tensor, list or dict), as in Keras."""
        return self._inputs_struct

    @property
    def output(self):
        """The outputs as given to the constructor (a tensor, or a nested list, tuple or dict)."""
        return self._outputs_struct

    @property
    def operations(self) -> list:
        """The layers and op nodes (``x + y``, ``ops.mean(x)``) of the graph, in ``layers``' order."""
        return list(self._operations)

    # ------------------------------------------------------------------ config

    def _node_ids(self) -> dict[int, int]:
        """Each graph node's index among its layer's calls that belong to this model (Keras's node index)."""
        node_ids = {}
        for layer in self._operations:
            idx = 0
            for node in layer._inbound_nodes:
                if node in self._nodes or isinstance(layer, InputLayer):
                    node_ids[id(node)] = idx
                    idx += 1
        return node_ids

    def get_config(self) -> dict:
        from lamina.layers import serialize  # lazy: layers' package imports models

        node_ids = self._node_ids()

        def history(t: KerasTensor) -> list:
            layer, node_index, tensor_index = t._keras_history
            return [layer.name, node_ids.get(id(layer._inbound_nodes[node_index]), 0), tensor_index]

        def encode(s):
            if isinstance(s, KerasTensor):
                return {"class_name": "__keras_tensor__",
                        "config": {"shape": list(s.shape), "dtype": s.dtype, "keras_history": history(s)}}
            if isinstance(s, (list, tuple)):
                return [encode(x) for x in s]
            if isinstance(s, dict):
                return {k: encode(v) for k, v in s.items()}
            return _encode_constant(s)

        def refs(struct):
            if isinstance(struct, KerasTensor):
                return history(struct)
            if isinstance(struct, dict):
                return {k: refs(v) for k, v in struct.items()}
            if isinstance(struct, tuple):  # kept in a config dict (to_json makes it a list), as Keras
                return tuple(refs(x) for x in struct)
            return [refs(x) for x in struct]

        layer_configs = []
        for layer in self._operations:
            op = isinstance(layer, OpLayer)
            cfg = layer.keras_entry() if op else serialize(layer)
            cfg["name"] = layer.name
            calls = [] if isinstance(layer, InputLayer) else [n for n in layer._inbound_nodes if n in self._nodes]
            # An op node's call_inputs are its positional arguments (Keras's ``Add()(x, y)``).
            cfg["inbound_nodes"] = [{"args": encode(n.call_inputs) if op else
                                     [encode(n.call_inputs), *encode(list(n.call_args))],
                                     "kwargs": encode(n.call_kwargs)} for n in calls]
            layer_configs.append(cfg)
        return {"name": self.name, "trainable": self.trainable, "layers": layer_configs,
                "input_layers": refs(self._inputs_struct), "output_layers": refs(self._outputs_struct)}

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        """The model a :meth:`get_config` dict (Keras 3's, or Keras 2's ``[name, node, tensor]`` refs)
        describes. A graph that cannot be connected — a cycle, a reference to a missing layer or call —
        is a ValueError saying which layer waits on which tensor."""
        if cls is not Functional and isinstance(config, dict) and "layers" not in config:
            # a subclass whose get_config returns its own __init__ arguments: rebuilt from them, as Keras does
            return cls(**config)
        name = config.get("name")
        layer_configs = config.get("layers")
        if not isinstance(layer_configs, list):
            raise ValueError(f"Functional model '{name}': the config's 'layers' must be a list of layer "
                             f"configs. Received: layers={layer_configs!r:.200}")
        graph = _GraphBuilder(name, layer_configs, custom_objects)
        graph.connect()
        inputs = graph.restore(config.get("input_layers"), "input_layers")
        outputs = graph.restore(config.get("output_layers"), "output_layers")
        # A list of one tensor (Keras 2 wrote every model's inputs and outputs so) is that tensor; a
        # deeper nesting such as [[x]] is kept.
        if isinstance(inputs, list) and len(inputs) == 1 and isinstance(inputs[0], KerasTensor):
            inputs = inputs[0]
        if isinstance(outputs, list) and len(outputs) == 1 and isinstance(outputs[0], KerasTensor):
            outputs = outputs[0]
        # A subclass (CustomModel(inputs, outputs, param=3)) gets back the arguments its get_config added.
        extra = {} if cls is Functional else {k: v for k, v in config.items() if k not in _GRAPH_KEYS}
        return cls(inputs=inputs, outputs=outputs, name=name, trainable=config.get("trainable", True), **extra)


_GRAPH_KEYS = ("name", "trainable", "layers", "input_layers", "output_layers")


def _holds_arrays(value) -> bool:
    """A dict, or a list/tuple of arrays (not a shape: compute_output_shape passes those)."""
    if isinstance(value, dict):
        return True
    return isinstance(value, (list, tuple)) and any(isinstance(v, (np.ndarray, Tensor, list, tuple, dict))
                                                     for v in value)


def _pick_like(model_name: str, struct, given) -> list:
    """The leaves of ``given`` in the order of the inputs' ``struct`` (nested dicts matched by key)."""
    if not isinstance(struct, dict):
        return [given]
    if not isinstance(given, dict):
        raise ValueError(f"Model '{model_name}' takes a dict with keys {list(struct)} here. "
                         f"Received: {type(given).__name__}")
    missing = [k for k in struct if k not in given]
    if missing:
        raise ValueError(f"Model '{model_name}' is missing inputs {missing}. Received keys: {list(given)}")
    return [leaf for k in struct for leaf in _pick_like(model_name, struct[k], given[k])]


class _Unresolved(Exception):
    """A tensor reference ``(layer, node, tensor)`` the graph has not produced (yet)."""

    def __init__(self, ref: tuple):
        super().__init__(ref)
        self.ref = ref


def _check_unique_names(model_name: str, names: list) -> None:
    """Saved graphs name layers, so two of one name would make a model that cannot be rebuilt (and, in
    a config, one of them would silently drop out of the graph)."""
    seen: set = set()
    twice = next((n for n in names if n in seen or seen.add(n)), None)
    if twice is not None:
        raise ValueError(f'The name "{twice}" is used {names.count(twice)} times in the model '
                         f"'{model_name}'. All layer names should be unique. Received: layers named {names}")


class _GraphBuilder:
    """Rebuilds a Functional graph from its layer configs: creates the layers, then calls each on the
    tensors its inbound nodes name, repeating until every call is made (a layer may be listed before
    the layers it takes input from, e.g. a shared layer)."""

    def __init__(self, model_name, layer_configs: list, custom_objects):
        self.model_name = model_name
        self.outputs_of: dict[tuple, KerasTensor] = {}
        self.todo: list[tuple[str, Layer, list, dict]] = []
        created = [from_keras_entry(cfg) if is_op_entry(cfg) else deserialize(cfg, custom_objects=custom_objects)
                   for cfg in layer_configs]
        # Nodes name layers by their entry's "name" (as Keras keys them): a custom layer whose own
        # get_config leaves `name` out gets a fresh name when made, yet its entry still carries the saved one.
        keys = [cfg.get("name") or layer.name for layer, cfg in zip(created, layer_configs)]
        _check_unique_names(self.model_name, keys)
        for key, layer, cfg in zip(keys, created, layer_configs):
            if isinstance(layer, InputLayer):
                self.outputs_of[(key, 0, 0)] = layer.output_tensor
            else:
                self.todo.append((key, layer, cfg.get("inbound_nodes", []), cfg))
        self.calls_made = {key: 0 for key, _, _, _ in self.todo}

    def tensor(self, ref) -> KerasTensor:
        key = tuple(ref)
        if key not in self.outputs_of:
            raise _Unresolved(key)
        return self.outputs_of[key]

    def decode(self, s):
        """A node's args/kwargs with each tensor reference replaced by the tensor."""
        if isinstance(s, dict) and s.get("class_name") == "__keras_tensor__":
            return self.tensor(s["config"]["keras_history"][:3])
        if isinstance(s, dict) and s.get("class_name") in _CONSTANTS and "config" in s:
            return _decode_constant(s)
        if isinstance(s, list) and len(s) == 3 and isinstance(s[0], str) and isinstance(s[1], int):
            return self.tensor(s)  # Keras-2 style [name, node, tensor]
        if isinstance(s, (list, tuple)):
            return [self.decode(x) for x in s]
        if isinstance(s, dict):
            return {k: self.decode(v) for k, v in s.items()}
        return s

    def _call_args(self, spec) -> tuple[list, dict]:
        if isinstance(spec, dict):
            return self.decode(spec.get("args", [])), self.decode(spec.get("kwargs", {}))
        refs = [self.decode(r[:3]) for r in spec]  # Keras 2: [[name, node, tensor, kwargs], ...]
        return [refs[0] if len(refs) == 1 else refs], (spec[0][3] if spec and len(spec[0]) > 3 else {})

    def _call_ready(self, key: str, layer, nodes: list, cfg: dict) -> bool:
        """Make every call of ``layer`` (named ``key`` in the nodes) whose inputs exist; True if any was made."""
        made = False
        while self.calls_made[key] < len(nodes):
            try:
                args, kwargs = self._call_args(nodes[self.calls_made[key]])
            except _Unresolved:
                break
            if "build_config" in cfg and not layer.built:
                layer.build_from_config(cfg["build_config"])
            out = layer(list(args), **kwargs) if isinstance(layer, OpLayer) else layer(*args, **kwargs)
            for i, t in enumerate(flatten(out)):
                self.outputs_of[(key, self.calls_made[key], i)] = t
            self.calls_made[key] += 1
            made = True
        return made

    def connect(self) -> None:
        progress = True
        while progress:
            progress = False
            for key, layer, nodes, cfg in self.todo:
                progress = self._call_ready(key, layer, nodes, cfg) or progress
        stuck = [(key, nodes) for key, _, nodes, _ in self.todo if self.calls_made[key] < len(nodes)]
        if stuck:
            raise ValueError(self._stuck_message(stuck))

    def _stuck_message(self, stuck: list) -> str:
        waits = {}  # layer name -> the first tensor reference it cannot get
        for key, nodes in stuck:
            try:
                self._call_args(nodes[self.calls_made[key]])
            except _Unresolved as e:
                waits[key] = e.ref
        where = f"Functional model '{self.model_name}' cannot be connected"
        cycle = _find_cycle(waits)
        if cycle:
            takes = ", ".join(f"'{a}' takes an output of '{b}'" for a, b in zip(cycle, cycle[1:] + cycle[:1]))
            refs = "; ".join(f"layer '{n}' takes tensor {list(waits[n])}" for n in cycle)
            return f"{where}: its layers form a cycle ({takes}). Received: {refs}"
        name, ref = next((n, r) for n, r in waits.items() if r[0] not in waits)
        if ref[0] not in self.calls_made and (ref[0], 0, 0) not in self.outputs_of:
            return (f"{where}. Missing node: {ref[0]} (layer '{name}' takes tensor {list(ref)}, but the model has "
                    f"no layer of that name). Received: inbound node {list(ref)}")
        why = "that layer's calls do not produce it"
        return f"{where}: layer '{name}' takes tensor {list(ref)}, but {why}. Received: inbound node {list(ref)}"

    def restore(self, struct, key: str):
        """``input_layers`` / ``output_layers`` with each ``[name, node, tensor]`` replaced by the tensor."""
        if isinstance(struct, dict):
            return {k: self.restore(v, key) for k, v in struct.items()}
        if isinstance(struct, list) and len(struct) == 3 and isinstance(struct[0], str):
            try:
                return self.tensor(struct)
            except _Unresolved:
                raise ValueError(f"Functional model '{self.model_name}': '{key}' names tensor {struct}, which "
                                 f"no layer produces. Received: {key}={struct!r:.200}") from None
        if isinstance(struct, tuple):
            return tuple(self.restore(x, key) for x in struct)
        if not isinstance(struct, list):
            raise ValueError(f"Functional model '{self.model_name}': '{key}' must hold [layer, node, tensor] "
                             f"references. Received: {key}={struct!r:.200}")
        return [self.restore(x, key) for x in struct]


_CONSTANTS = ("__slice__", "__ellipsis__", "__numpy__", "__tensor__")


def _encode_constant(value):
    """A constant argument of a node as Keras's serialization writes it (slices of ``x[:, 0]``, arrays)."""
    if isinstance(value, slice):
        return {"class_name": "__slice__", "config": {"start": _encode_constant(value.start),
                                                      "stop": _encode_constant(value.stop),
                                                      "step": _encode_constant(value.step)}}
    if value is Ellipsis:
        return {"class_name": "__ellipsis__", "config": {}}
    if isinstance(value, (Tensor, Variable, np.ndarray)):
        arr = np.asarray(unwrap(value))
        if arr.ndim == 0:
            return arr.item()
        return {"class_name": "__numpy__", "config": {"value": arr.tolist(), "dtype": arr.dtype.name}}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode_constant(entry: dict):
    cfg = entry["config"] or {}
    kind = entry["class_name"]
    if kind == "__slice__":
        return slice(*(_decode_constant(v) if isinstance(v, dict) else v for v in (cfg.get("start"), cfg.get("stop"),
                                                                                    cfg.get("step"))))
    if kind == "__ellipsis__":
        return Ellipsis
    return np.asarray(cfg["value"], dtype=cfg["dtype"])  # __numpy__, or a backend __tensor__ from Keras


def _find_cycle(waits: dict) -> list | None:
    """Layer names that wait on one another in a loop (``waits``: name -> (name, node, tensor)), or None."""
    for start in waits:
        seen: list = []
        name = start
        while name in waits and name not in seen:
            seen.append(name)
            name = waits[name][0]
        if name in seen:
            return seen[seen.index(name):]
    return None


def _build_map(inputs: list, outputs: list) -> tuple[list, dict[int, int], dict[int, Layer]]:
    """Keras's ``_build_map``, iteratively: the graph's nodes in finishing order of a depth-first walk
    from the outputs (inputs first), and each layer's first-visit index."""
    input_ids = {id(t) for t in inputs}
    finished: set[int] = set()
    order: list = []
    op_index: dict[int, int] = {}
    layers_by_id: dict[int, Layer] = {}

    def visit(tensor):
        layer, node_index, _ = tensor._keras_history
        node = layer._inbound_nodes[node_index]
        if id(node) in finished:
            return None
        if not _is_input_node(node) and id(tensor) in input_ids:
            finished.add(id(node))
            return None
        if id(layer) not in op_index:
            op_index[id(layer)] = len(op_index)
            layers_by_id[id(layer)] = layer
        return node

    def parents_of(node):
        return iter([] if _is_input_node(node) else node.input_tensors)

    for out in outputs:
        node = visit(out)
        stack = [] if node is None else [(node, parents_of(node))]
        while stack:
            current, parents = stack[-1]
            child = next((c for c in map(visit, parents) if c is not None), None)
            if child is not None:
                stack.append((child, parents_of(child)))
                continue
            stack.pop()
            finished.add(id(current))
            order.append(current)
    return order, op_index, layers_by_id


def _is_input_node(node) -> bool:
    return not node.input_tensors and type(node.layer).__name__ == "InputLayer"


def keras_layer_order(model) -> list:
    """A Functional model's layers in Keras's order: by decreasing graph depth, ties broken by the
    order of a depth-first walk from the outputs (Keras's ``_build_map``), inputs first. This order
    fixes ``layers``, ``weights`` and ``get_weights()``, so Keras's weight lists transfer as they are.
    """
    inputs = list(model.inputs)
    order, op_index, layers_by_id = _build_map(inputs, list(model.outputs))
    in_graph = {id(n) for n in order}
    node_depth: dict[int, int] = {}
    op_depth: dict[int, int] = {}
    for node in reversed(order):
        depth = max(node_depth.setdefault(id(node), 0), op_depth.get(id(node.layer), 0))
        op_depth[id(node.layer)] = depth
        node_depth[id(node)] = depth
        for parent in node.parent_nodes:
            if id(parent) in in_graph:
                node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
    for t in inputs:  # inputs not connected to any output
        layer = t._keras_history[0]
        if id(layer) not in op_depth and type(layer).__name__ == "InputLayer":
            op_depth[id(layer)] = 0
            op_index[id(layer)] = -1
            layers_by_id[id(layer)] = layer
    ids = sorted(op_depth, key=lambda i: (-op_depth[i], op_index[i]))
    return [layers_by_id[i] for i in ids]
