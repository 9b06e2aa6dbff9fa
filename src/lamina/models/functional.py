"""``Functional``: a model defined by a graph of layer calls on symbolic ``Input`` s.

Built by ``Model(inputs=..., outputs=...)``. At construction the graph is walked from the outputs
back to the inputs (iteratively) and its nodes sorted topologically once; calling the model runs
those nodes in order on real arrays — plain NumPy outside a tape.
"""

from __future__ import annotations

import numpy as np

from lamina.autodiff import Tensor, recording, unwrap
from lamina.layers.input_layer import InputLayer
from lamina.layers.keras_tensor import KerasTensor, flatten, pack_like
from lamina.layers.layer import Layer, shape_of
from lamina.models.model import Model


def _check_symbolic(structure, what: str) -> None:
    for t in flatten(structure):
        if not isinstance(t, KerasTensor):
            raise ValueError(
                f"All `{what}` of a Functional model must be symbolic tensors from keras.Input(...) "
                f"or from calling layers on them. Received: {type(t).__name__} {t!r:.80}"
            )


class Functional(Model):
    """A model built from ``inputs`` and ``outputs`` symbolic tensors (lists, dicts or single)."""

    def __init__(self, inputs, outputs, name: str | None = None, trainable: bool = True, **kwargs):
        _check_symbolic(inputs, "inputs")
        _check_symbolic(outputs, "outputs")
        Model.__init__(self, name=name, trainable=trainable, **kwargs)
        self._inputs_struct = inputs
        self._outputs_struct = outputs
        self.inputs = flatten(inputs)
        self.outputs = flatten(outputs)
        self._nodes = self._sort_nodes()
        self._layers = keras_layer_order(self)
        self.built = True
        self._build_shapes = [t.shape for t in self.inputs] if len(self.inputs) > 1 else self.inputs[0].shape

    def _sort_nodes(self) -> list:
        """Nodes reachable from the outputs, parents first (iterative DFS, no recursion)."""
        input_ids = {id(t) for t in self.inputs}
        order, seen, stack = [], set(), []
        for t in reversed(self.outputs):
            stack.append((t, False))
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
                raise ValueError(
                    f"Graph disconnected: cannot obtain value for tensor {tensor.name} "
                    f"(from input layer '{layer.name}'), which is not among the model's inputs "
                    f"{[t.name for t in self.inputs]}. Received: inputs={self.inputs}"
                )
            stack.append((tensor, True))
            for parent in reversed(node.input_tensors):
                stack.append((parent, False))
        return [n for n in order if not isinstance(n.layer, InputLayer)]

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
        if isinstance(inputs, dict):
            if isinstance(self._inputs_struct, dict):
                missing = [k for k in self._inputs_struct if k not in inputs]
                if missing:
                    raise ValueError(f"Model '{self.name}' is missing inputs {missing}. Received keys: {list(inputs)}")
                return [inputs[k] for k in self._inputs_struct]
            names = [t._keras_history[0].name for t in self.inputs]
            if all(n in inputs for n in names):
                return [inputs[n] for n in names]
            raise ValueError(
                f"Model '{self.name}' takes inputs named {names}. Received: dict with keys {list(inputs)}"
            )
        flat = list(inputs) if isinstance(inputs, (list, tuple)) and len(self.inputs) > 1 else [inputs]
        if isinstance(inputs, (list, tuple)) and len(self.inputs) == 1 and len(inputs) == 1 and not np.isscalar(
                inputs[0]) and np.ndim(unwrap(inputs[0])) >= 1 and isinstance(inputs[0], (np.ndarray, Tensor)):
            flat = [inputs[0]]
        if len(flat) != len(self.inputs):
            raise ValueError(
                f"Model '{self.name}' expects {len(self.inputs)} input(s). Received: {len(flat)} input arrays"
            )
        return flat

    def _check_inputs(self, flat: list) -> None:
        for i, (x, t) in enumerate(zip(flat, self.inputs)):
            shp = shape_of(x)
            want = t.shape
            ok = len(shp) == len(want) and all(w is None or w == s for w, s in zip(want, shp))
            if not ok:
                layer = t._keras_history[0]
                raise ValueError(
                    f"Input {i} of model '{self.name}' (input layer '{layer.name}') is incompatible: "
                    f"expected shape={want}, found shape={shp}. Received: input_shape={shp}"
                )

    def __call__(self, *args, **kwargs):
        if args and not any(isinstance(a, KerasTensor) for a in flatten(args[0])):
            inputs = args[0]
            flat = [self._convert_one(x) for x in self._flatten_inputs(inputs)]
            self._check_inputs(flat)
            return self._run(flat, training=kwargs.get("training"))
        return super().__call__(*args, **kwargs)

    def _convert_one(self, x):
        if isinstance(x, np.ndarray) and x.dtype.kind == "f":
            return x if x.dtype.name == self.dtype else x.astype(self.dtype)
        return Layer._convert_inputs(self, x)

    def call(self, inputs, training=None):
        flat = self._flatten_inputs(inputs)
        return self._run(flat, training=training)

    def _run(self, flat_inputs: list, training=None, logits: bool = False):
        """Evaluate the graph; with ``logits=True`` output layers that can give pre-activations do."""
        values = {id(t): x for t, x in zip(self.inputs, flat_inputs)}
        out_ids = {id(t) for t in self.outputs} if logits else ()
        plain = not recording()
        for node in self._nodes:
            layer = node.layer
            args = pack_like(node.call_inputs, [values[id(t)] if isinstance(t, KerasTensor) else t
                                                for t in flatten(node.call_inputs)])
            kwargs = dict(node.call_kwargs)
            if layer._call_has_training and "training" not in kwargs:
                kwargs["training"] = training
            if logits and any(id(t) in out_ids for t in node.output_tensors) and hasattr(layer, "call_logits"):
                out = layer.call_logits(args)
            elif plain and layer.built and type(args) is np.ndarray:
                # Inference: the graph's shapes were checked at the inputs; skip __call__'s checks.
                if not layer._call_has_training:
                    kwargs.pop("training", None)
                out = layer.call(args, **kwargs)
            else:
                out = layer(args, **kwargs)
            outs = flatten(out) if len(node.output_tensors) > 1 else [out]
            for t, v in zip(node.output_tensors, outs):
                values[id(t)] = v
        results = [values[id(t)] for t in self.outputs]
        return pack_like(self._outputs_struct, results)

    # ------------------------------------------------------------------ config

    def get_config(self) -> dict:
        from lamina.layers import serialize

        node_ids = {}
        for layer in self.layers:
            idx = 0
            for node in layer._inbound_nodes:
                if node in self._nodes or isinstance(layer, InputLayer):
                    node_ids[id(node)] = idx
                    idx += 1

        def tensor_ref(t):
            layer, node_index, tensor_index = t._keras_history
            node = layer._inbound_nodes[node_index]
            return {"class_name": "__keras_tensor__",
                    "config": {"shape": list(t.shape), "dtype": t.dtype,
                               "keras_history": [layer.name, node_ids.get(id(node), 0), tensor_index]}}

        def encode(s):
            if isinstance(s, KerasTensor):
                return tensor_ref(s)
            if isinstance(s, (list, tuple)):
                return [encode(x) for x in s]
            if isinstance(s, dict):
                return {k: encode(v) for k, v in s.items()}
            return s

        layer_configs = []
        for layer in self.layers:
            cfg = serialize(layer)
            cfg["name"] = layer.name
            nodes = []
            if not isinstance(layer, InputLayer):
                for node in layer._inbound_nodes:
                    if node in self._nodes:
                        nodes.append({"args": [encode(node.call_inputs)], "kwargs": encode(node.call_kwargs)})
            cfg["inbound_nodes"] = nodes
            layer_configs.append(cfg)

        def refs(struct):
            if isinstance(struct, KerasTensor):
                layer, node_index, tensor_index = struct._keras_history
                return [layer.name, node_ids.get(id(layer._inbound_nodes[node_index]), 0), tensor_index]
            if isinstance(struct, dict):
                return {k: refs(v) for k, v in struct.items()}
            return [refs(x) for x in struct]

        return {"name": self.name, "trainable": self.trainable, "layers": layer_configs,
                "input_layers": refs(self._inputs_struct), "output_layers": refs(self._outputs_struct)}

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        from lamina.layers import deserialize

        created: dict[str, Layer] = {}
        outputs_of: dict[tuple, KerasTensor] = {}
        pending = list(config["layers"])
        for cfg in pending:
            layer = deserialize(cfg, custom_objects=custom_objects)
            created[cfg.get("name", layer.name)] = layer
            if isinstance(layer, InputLayer):
                outputs_of[(layer.name, 0, 0)] = layer.output_tensor

        def decode(s):
            if isinstance(s, dict) and s.get("class_name") == "__keras_tensor__":
                h = s["config"]["keras_history"]
                return outputs_of[(h[0], h[1], h[2])]
            if isinstance(s, list) and len(s) == 3 and isinstance(s[0], str) and isinstance(s[1], int):
                return outputs_of[(s[0], s[1], s[2])]  # Keras-2 style [name, node, tensor]
            if isinstance(s, (list, tuple)):
                return [decode(x) for x in s]
            if isinstance(s, dict):
                return {k: decode(v) for k, v in s.items()}
            return s

        # Layers may be listed before their inputs exist (shared layers): iterate until done.
        todo = [(created[cfg.get("name")], cfg.get("inbound_nodes", []), cfg) for cfg in pending]
        node_counts = {name: 0 for name in created}
        progress = True
        while progress:
            progress = False
            for layer, nodes, cfg in todo:
                if isinstance(layer, InputLayer):
                    continue
                while node_counts[layer.name] < len(nodes):
                    spec = nodes[node_counts[layer.name]]
                    try:
                        if isinstance(spec, dict):
                            args = decode(spec.get("args", []))
                            kwargs = decode(spec.get("kwargs", {}))
                        else:  # Keras 2: [[name, node, tensor, kwargs], ...]
                            refs = [decode(r[:3]) for r in spec]
                            args = [refs[0] if len(refs) == 1 else refs]
                            kwargs = spec[0][3] if spec and len(spec[0]) > 3 else {}
                    except KeyError:
                        break
                    if "build_config" in cfg and not layer.built:
                        layer.build_from_config(cfg["build_config"])
                    out = layer(*args, **kwargs)
                    for i, t in enumerate(flatten(out)):
                        outputs_of[(layer.name, node_counts[layer.name], i)] = t
                    node_counts[layer.name] += 1
                    progress = True

        def restore(struct):
            if isinstance(struct, dict):
                return {k: restore(v) for k, v in struct.items()}
            if isinstance(struct, list) and len(struct) == 3 and isinstance(struct[0], str):
                return outputs_of[tuple(struct)]
            return [restore(x) for x in struct]

        inputs = restore(config["input_layers"])
        outputs = restore(config["output_layers"])
        if isinstance(inputs, list) and len(inputs) == 1:
            inputs = inputs[0]
        if isinstance(outputs, list) and len(outputs) == 1 and isinstance(config["output_layers"][0], list):
            outputs = outputs[0]
        return cls(inputs=inputs, outputs=outputs, name=config.get("name"),
                   trainable=config.get("trainable", True))


def keras_layer_order(model) -> list:
    """A Functional model's layers in Keras's order: by decreasing graph depth, ties broken by the
    order of a depth-first walk from the outputs (Keras's ``_build_map``), inputs first. This order
    fixes ``layers``, ``weights`` and ``get_weights()``, so Keras's weight lists transfer as they are.
    """
    inputs, outputs = list(model.inputs), list(model.outputs)
    input_ids = {id(t) for t in inputs}
    finished: set[int] = set()
    order: list = []  # nodes, inputs first (Keras's nodes_in_decreasing_depth)
    op_index: dict[int, int] = {}
    layers_by_id: dict[int, Layer] = {}

    def is_input(node) -> bool:
        return not node.input_tensors and type(node.layer).__name__ == "InputLayer"

    def visit(tensor):
        layer, node_index, _ = tensor._keras_history
        node = layer._inbound_nodes[node_index]
        if id(node) in finished:
            return None
        if not is_input(node) and id(tensor) in input_ids:
            finished.add(id(node))
            return None
        if id(layer) not in op_index:
            op_index[id(layer)] = len(op_index)
            layers_by_id[id(layer)] = layer
        return node

    for out in outputs:  # an iterative copy of Keras's recursive _build_map_helper
        node = visit(out)
        if node is None:
            continue
        stack = [(node, iter([] if is_input(node) else node.input_tensors))]
        while stack:
            current, parents = stack[-1]
            for t in parents:
                child = visit(t)
                if child is not None:
                    stack.append((child, iter([] if is_input(child) else child.input_tensors)))
                    break
            else:
                stack.pop()
                finished.add(id(current))
                order.append(current)

    in_graph = {id(n) for n in order}
    node_depth: dict[int, int] = {}
    op_depth: dict[int, int] = {}
    for node in reversed(order):
        depth = node_depth.setdefault(id(node), 0)
        depth = max(depth, op_depth.get(id(node.layer), 0))
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
