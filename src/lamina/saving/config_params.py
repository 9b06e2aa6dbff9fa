"""How many weights a model config will create, worked out from the config alone.

Rebuilding a model from its config allocates and initialises every weight before a single value is
read from the weights file: a 15 KB config describing ``Dense(16384)`` on a 16384-wide input costs
3 GB before any check on the weights could run. :func:`count_params` walks the config the way
``from_config`` will (a Sequential's stack in order, a Functional graph node by node) and propagates
shapes through lamina's built-in layers without allocating anything:

* input shapes come from an ``InputLayer``'s ``batch_shape``, a first layer's ``batch_input_shape`` /
  ``input_shape`` / ``input_dim``, or a Sequential's ``build_input_shape``;
* each layer counts at the shape it will be built with: its ``build_config`` when present (that is what
  ``build_from_config`` uses, first), else its first input;
* Dense, BatchNormalization, LayerNormalization, PReLU and Conv1D/2D/3D create weights; the merges, Concatenate,
  Reshape and Flatten only change shapes; the activation and dropout layers keep them; nested models
  recurse.

The count is a lower bound, never a guess: a custom or registered class, or a size the config leaves
open, counts 0 and makes the shapes after it unknown (until a ``build_config`` or an input says
otherwise), so a well-formed file is never refused for an over-count. The config is data from a file:
nothing here raises but :class:`~lamina.saving.errors.FileFormatError`, for shapes NumPy could never
hold, models nested absurdly deep, or two layers of one model with the same name.
"""

from __future__ import annotations

import math

from lamina.saving import object_registry
from lamina.saving.errors import FileFormatError

MAX_RANK = 64  # NumPy arrays have at most 64 axes
MAX_NESTING = 100  # models inside models
_MAX_LIST_DEPTH = 16  # nesting of shape lists (a merge of merges of ...) read from a build_config

_IDENTITY = ("Activation", "Dropout", "ReLU", "LeakyReLU", "ELU", "Softmax")
_MERGES = ("Add", "Subtract", "Multiply", "Average")
_MODELS = ("Sequential", "Functional", "Model")
_CONVS = {"Conv1D": 1, "Conv2D": 2, "Conv3D": 3}  # spatial rank of each convolution layer


# ---------------------------------------------------------------------------------- values


def _int(v):
    """A JSON integer (an integral float counts, a bool does not), else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def _dim(v):
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _is_shape(s) -> bool:
    return isinstance(s, tuple)


class _Walk:
    """One count over one config: the running total, and what resolves class names."""

    def __init__(self, custom_objects, filename):
        from lamina import layers, models  # lazy: layers and models sit above saving on the import ladder

        self.custom = custom_objects or {}
        self.filename = filename
        self.total = 0
        builtins = {name: getattr(layers, name, None) for name in (*_IDENTITY, *_MERGES, "Dense", "Flatten",
                    "Reshape", "Concatenate", "BatchNormalization", "LayerNormalization", "PReLU", "InputLayer")}
        builtins.update({name: getattr(models, name, None) for name in _MODELS})
        builtins.update({name: getattr(layers, name, None) for name in _CONVS})
        self.builtins = {name: cls for name, cls in builtins.items() if cls is not None}
        self.rules = {**{name: _conv(rank) for name, rank in _CONVS.items()},
                      "Dense": _dense, "BatchNormalization": _batch_norm, "LayerNormalization": _layer_norm,
                      "PReLU": _prelu, "Flatten": _flatten, "Reshape": _reshape, "Concatenate": _concatenate,
                      **{n: _merge for n in _MERGES}, **{n: _identity for n in _IDENTITY}}

    def refuse(self, problem: str):
        return FileFormatError(self.filename, problem)

    # ------------------------------------------------------------------------- shapes

    def struct(self, value, depth: int = 0):
        """A shape (tuple of int-or-None) or a list of them from a JSON value; None when unusable."""
        if not isinstance(value, (list, tuple)) or depth > _MAX_LIST_DEPTH:
            return None
        if value and all(isinstance(v, (list, tuple)) for v in value):
            return [self.struct(v, depth + 1) for v in value]
        if len(value) > MAX_RANK:
            raise self.refuse(f"the config gives a shape of rank {len(value)}; arrays have at most {MAX_RANK} "
                              f"axes. Received: {str(list(value))[:100]}")
        if not all(v is None or isinstance(v, (int, float)) for v in value):
            return None
        return tuple(_dim(v) for v in value)

    # ------------------------------------------------------------------------- classes

    def kind(self, node: dict) -> str | None:
        """The built-in class name ``node`` deserializes to, or None for anything else (custom, unknown)."""
        cn = node.get("class_name")
        if not isinstance(cn, str):
            return None
        reg = node.get("registered_name")
        for name in (reg, cn):
            if isinstance(name, str):
                found = object_registry.get_registered_object(name, self.custom)
                if found is not None:  # the user's class (even under a built-in's name) is opaque
                    return cn if found is self.builtins.get(cn) else None
        return cn if cn in self.builtins else None

    # ------------------------------------------------------------------------- layers

    def layer(self, node, incoming, depth: int, count: bool = True):
        """Count ``node``'s weights (unless ``count`` is False) and return its output for input ``incoming``.

        Weights follow the ``build_config`` shape when there is one (the layer is built from it before it
        is called), else ``incoming``; the output follows ``incoming`` when it is known.
        """
        if not isinstance(node, dict):
            return None
        kind = self.kind(node)
        cfg = node.get("config")
        cfg = cfg if isinstance(cfg, dict) else {}
        build = node.get("build_config")
        built_at = self.struct(build.get("input_shape")) if isinstance(build, dict) else None
        if kind in _MODELS:
            return self.model(kind, cfg, incoming if built_at is None else built_at, depth + 1)
        if kind == "InputLayer":
            return self.input_shape(cfg)
        rule = self.rules.get(kind)
        if rule is None:
            return None
        params, out = rule(cfg, incoming if built_at is None else built_at)
        if built_at is not None and incoming is not None:
            out = rule(cfg, incoming)[1]
        if count:
            self.total += params
        return out

    def input_shape(self, cfg: dict):
        for key in ("batch_shape", "batch_input_shape"):
            if cfg.get(key) is not None:
                return self.struct(cfg[key])
        shape = cfg.get("shape", cfg.get("input_shape"))
        shape = (shape,) if _int(shape) is not None else shape
        rest = self.struct(shape)
        return (_dim(cfg.get("batch_size")),) + rest if _is_shape(rest) else None

    def declared_input(self, cfg: dict):
        """The input shape a Sequential's first layer declares (``batch_input_shape``, ``input_shape``...)."""
        if cfg.get("batch_input_shape") is not None:
            return self.struct(cfg["batch_input_shape"])
        shape = cfg.get("input_shape")
        if shape is None and cfg.get("input_dim") is not None:
            shape = [cfg["input_dim"]]
        shape = (shape,) if _int(shape) is not None else shape
        rest = self.struct(shape)
        return (None,) + rest if _is_shape(rest) else None

    # ------------------------------------------------------------------------- models

    def model(self, kind: str, cfg: dict, incoming, depth: int):
        if depth > MAX_NESTING:
            raise self.refuse(f"models are nested more than {MAX_NESTING} deep in the config.")
        if kind == "Sequential":
            return self.sequential(cfg, incoming, depth)
        return self.functional(cfg, depth)

    def unique_names(self, entries: list, where: str) -> None:
        seen = set()
        for e in entries:
            if not isinstance(e, dict):
                continue
            name = e.get("name")
            if name is None and isinstance(e.get("config"), dict):
                name = e["config"].get("name")
            if isinstance(name, str):
                if name in seen:
                    raise self.refuse(f"two layers of {where} are named '{name}'; layer names must be unique "
                                      "within a model.")
                seen.add(name)

    def sequential(self, cfg: dict, incoming, depth: int):
        entries = cfg.get("layers")
        if not isinstance(entries, list) or not entries:
            return incoming
        self.unique_names(entries, f"Sequential model '{cfg.get('name')}'")
        first = entries[0]
        first_cfg = first.get("config") if isinstance(first, dict) else None
        first_cfg = first_cfg if isinstance(first_cfg, dict) else {}
        if isinstance(first, dict) and self.kind(first) == "InputLayer":
            shape, entries = self.input_shape(first_cfg), entries[1:]
        else:
            shape = self.declared_input(first_cfg)
            if shape is None:
                shape = self.struct(cfg.get("build_input_shape"))
            if shape is None:
                shape = incoming
        for entry in entries:
            shape = self.layer(entry, shape, depth)
        return shape

    def functional(self, cfg: dict, depth: int):
        entries = cfg.get("layers")
        if not isinstance(entries, list):
            return None
        self.unique_names(entries, f"model '{cfg.get('name')}'")
        return _Graph(self, entries, depth).run(cfg.get("output_layers"))


class _Graph:
    """A Functional config's nodes, counted in dependency order (each node once: linear time)."""

    def __init__(self, walk: _Walk, entries: list, depth: int):
        self.walk = walk
        self.depth = depth
        self.layers = [e for e in entries if isinstance(e, dict)]
        self.produced: dict = {}  # (layer name, node index) -> output structure
        self.waiting: dict = {}  # (layer name, node index) -> tasks waiting for it
        self.ready: list = []

    @staticmethod
    def name_of(entry: dict):
        name = entry.get("name")
        if name is None and isinstance(entry.get("config"), dict):
            name = entry["config"].get("name")
        return name if isinstance(name, str) else None

    def run(self, output_layers):
        # from_config deserializes every layer before calling any, and deserializing builds a layer from its
        # build_config, and a nested model from its own inputs: count those first, whatever the graph.
        first_out: dict = {}  # layer index -> output of its first build; a layer in it is counted
        for i, entry in enumerate(self.layers):
            kind = self.walk.kind(entry)
            if kind == "InputLayer":
                cfg = entry.get("config")
                self.finish(self.name_of(entry), 0, self.walk.input_shape(cfg if isinstance(cfg, dict) else {}))
                continue
            if kind in _MODELS or isinstance(entry.get("build_config"), dict):
                before = self.walk.total
                out = self.walk.layer(entry, None, self.depth)
                if out is not None:
                    first_out[i] = out
                else:  # its shapes come from its first call: count it then instead
                    self.walk.total = before
            self.activate(i, 0)
        while self.ready:
            i, k, template = self.ready.pop()
            entry = self.layers[i]
            incoming = self.resolve(template)
            if i not in first_out:
                out = first_out[i] = self.walk.layer(entry, incoming, self.depth)
            elif self.walk.kind(entry) in _MODELS:
                out = first_out[i]  # a model called again gives what its own inputs give
            else:
                out = self.walk.layer(entry, incoming, self.depth, count=False)
            self.finish(self.name_of(entry), k, out)
            self.activate(i, k + 1)
        return self.resolve(_template_of_outputs(output_layers))

    def activate(self, i: int, k: int) -> None:
        nodes = self.layers[i].get("inbound_nodes")
        if not isinstance(nodes, list) or k >= len(nodes) or self.name_of(self.layers[i]) is None:
            return
        template = _template_of_node(nodes[k])
        missing = {key[:2] for key in _refs(template)} - self.produced.keys()
        task = [i, k, template, len(missing)]
        if not missing:
            self.ready.append((i, k, template))
        for key in missing:
            self.waiting.setdefault(key, []).append(task)

    def finish(self, name, k: int, out) -> None:
        if name is None:
            return
        self.produced[(name, k)] = out
        for task in self.waiting.pop((name, k), ()):
            task[3] -= 1
            if task[3] == 0:
                self.ready.append((task[0], task[1], task[2]))

    def resolve(self, template):
        if isinstance(template, list):
            return [self.resolve(t) for t in template]
        if not isinstance(template, tuple):
            return None
        out = self.produced.get(template[:2])
        if isinstance(out, list):
            return out[template[2]] if template[2] < len(out) else None
        return out if template[2] == 0 else None


# ------------------------------------------------------------------------ node references


def _ref(v):
    """(layer name, node index, tensor index) from ``[name, node, tensor, ...]``, else None."""
    if isinstance(v, (list, tuple)) and len(v) >= 3 and isinstance(v[0], str):
        node, tensor = _int(v[1]), _int(v[2])
        if node is not None and tensor is not None and node >= 0 and tensor >= 0:
            return (v[0], node, tensor)
    return None


def _template(arg, depth: int = 0):
    """Keras 3 call arguments with each ``__keras_tensor__`` replaced by its reference."""
    if depth > _MAX_LIST_DEPTH:
        return None
    if isinstance(arg, dict):
        if arg.get("class_name") == "__keras_tensor__" and isinstance(arg.get("config"), dict):
            return _ref(arg["config"].get("keras_history"))
        return None
    if isinstance(arg, list):
        return [_template(a, depth + 1) for a in arg]
    return None


def _template_of_node(node):
    if isinstance(node, dict):  # Keras 3: {"args": [inputs, ...], "kwargs": {...}}
        args = node.get("args")
        return _template(args[0]) if isinstance(args, list) and args else None
    if isinstance(node, list) and node:  # Keras 2: [[name, node, tensor, kwargs], ...]
        refs = [_ref(r) for r in node]
        return refs[0] if len(refs) == 1 else refs
    return None


def _template_of_outputs(value):
    single = _ref(value)
    if single is not None:
        return single
    return [_ref(v) for v in value] if isinstance(value, list) else None


def _refs(template):
    if isinstance(template, tuple):
        yield template
    elif isinstance(template, list):
        for t in template:
            yield from _refs(t)


# --------------------------------------------------------------------------------- layers
# Each rule: (config, input structure) -> (weights created, output structure). They mirror the
# layers' build() and compute_output_shape(); anything they cannot read counts 0 / unknown.


def _identity(cfg, x):
    return 0, x


def _dense(cfg, x):
    units = _int(cfg.get("units"))
    if units is None or units <= 0 or not _is_shape(x) or not x:
        return 0, None
    out = x[:-1] + (units,)
    if x[-1] is None:
        return 0, out
    # An int4 kernel stores two values per byte: (input_dim, ceil(units / 2)) values in the file.
    dtype = cfg.get("dtype")
    if isinstance(dtype, dict):  # a policy entry; its "config" may hold anything in a hostile file
        inner = dtype.get("config")
        mode = str(inner.get("mode", "")) if isinstance(inner, dict) else ""
    else:
        mode = str(dtype or "")
    kernel_units = (units + 1) // 2 if mode.startswith("int4") else units
    return x[-1] * kernel_units + (units if cfg.get("use_bias", True) else 0), out


def _positive_ints(value, rank: int):
    """An int or ``rank`` ints, each > 0, as a tuple; else None."""
    values = [value] * rank if _int(value) is not None else value
    if not isinstance(values, (list, tuple)) or len(values) != rank:  # a list from JSON, a tuple from get_config
        return None
    values = [_int(v) for v in values]
    return None if any(v is None or v <= 0 for v in values) else tuple(values)


def _conv(rank: int):
    """Conv1D/2D/3D: ``prod(kernel_size) * channels / groups * filters`` (+ ``filters`` bias) weights."""

    def rule(cfg, x):
        filters, groups = _int(cfg.get("filters")), _int(cfg.get("groups", 1))
        sizes = [_positive_ints(cfg.get(k, 1), rank) for k in ("kernel_size", "strides", "dilation_rate")]
        if (filters is None or filters <= 0 or groups is None or groups <= 0 or None in sizes
                or not _is_shape(x) or len(x) != rank + 2):
            return 0, None
        first = cfg.get("data_format") == "channels_first"
        channels, spatial = (x[1], x[2:]) if first else (x[-1], x[1:-1])
        params = 0
        if channels is not None and channels % groups == 0:
            bias = filters if cfg.get("use_bias", True) else 0
            params = math.prod(sizes[0]) * (channels // groups) * filters + bias
        valid = cfg.get("padding", "valid") == "valid"
        out = []
        for n, k, s, d in zip(spatial, *sizes):
            size = None if n is None else ((n - d * (k - 1) - 1) // s + 1 if valid else -(-n // s))
            out.append(size if size is None or size > 0 else None)
        return params, ((x[0], filters, *out) if first else (x[0], *out, filters))

    return rule


def _axis_size(x, axis):
    axis = _int(axis)
    if axis is None or not _is_shape(x) or not -len(x) <= axis < len(x):
        return None
    return x[axis]


def _batch_norm(cfg, x):
    size = _axis_size(x, cfg.get("axis", -1))
    if size is None:
        return 0, x if _is_shape(x) else None
    return size * (2 + bool(cfg.get("scale", True)) + bool(cfg.get("center", True))), x


def _layer_norm(cfg, x):
    axis = cfg.get("axis", -1)
    axes = axis if isinstance(axis, list) and axis else [axis]
    sizes = [_axis_size(x, a) for a in axes]
    if not _is_shape(x) or any(s is None for s in sizes):
        return 0, x if _is_shape(x) else None
    rms = bool(cfg.get("rms_scaling", False))
    per = bool(cfg.get("scale", True) or rms) + bool(cfg.get("center", True) and not rms)
    return math.prod(sizes) * per, x


def _prelu(cfg, x):
    if not _is_shape(x):
        return 0, None
    shared = cfg.get("shared_axes")
    shared = [] if shared is None else (shared if isinstance(shared, list) else [shared])
    shared = {_int(a) for a in shared}
    if None in shared or any(a < 1 or a >= len(x) for a in shared):
        return 0, x
    dims = [1 if i in shared else x[i] for i in range(1, len(x))]
    return (0 if None in dims else math.prod(dims)), x


def _flatten(cfg, x):
    if not _is_shape(x) or not x:
        return 0, None
    rest = x[1:]
    return 0, (x[0], None if None in rest else math.prod(rest))


def _reshape(cfg, x):
    target = cfg.get("target_shape")
    if not isinstance(target, list) or len(target) > MAX_RANK:
        return 0, None
    target = [_int(d) for d in target]
    if any(d is None or (d <= 0 and d != -1) for d in target) or target.count(-1) > 1:
        return 0, None
    batch = x[0] if _is_shape(x) and x else None
    if -1 in target:
        known = math.prod(d for d in target if d != -1)
        size = math.prod(x[1:]) if _is_shape(x) and x and None not in x[1:] else None
        fill = size // known if size is not None and known and size % known == 0 else None
        target = [fill if d == -1 else d for d in target]
    return 0, (batch, *target)


def _merge(cfg, x):
    """Keras's merge rule: the inputs broadcast after the batch axis (lower ranks padded after it)."""
    if not isinstance(x, list) or not x or not all(_is_shape(s) and s for s in x):
        return 0, None
    out = x[0][1:]
    for s in x[1:]:
        a, b = (out, s[1:]) if len(out) >= len(s) - 1 else (s[1:], out)
        merged = list(a[:len(a) - len(b)])
        for i, j in zip(a[len(a) - len(b):], b):
            known = {d for d in (i, j) if d is not None and d != 1}
            if len(known) > 1:
                return 0, None
            merged.append(known.pop() if known else (None if None in (i, j) else 1))
        out = tuple(merged)
    batch = {s[0] for s in x} - {None}
    return 0, (batch.pop() if len(batch) == 1 else None,) + out


def _concatenate(cfg, x):
    axis = _int(cfg.get("axis", -1))
    if axis is None or not isinstance(x, list) or not x or not all(_is_shape(s) for s in x):
        return 0, None
    ndim = len(x[0])
    if any(len(s) != ndim for s in x) or not -ndim <= axis < ndim:
        return 0, None
    axis %= ndim
    out = list(x[0])
    for s in x[1:]:
        for i, (a, b) in enumerate(zip(out, s)):
            if i == axis:
                out[i] = None if a is None or b is None else a + b
            elif a is None:
                out[i] = b
            elif b is not None and a != b:
                return 0, None
    return 0, tuple(out)


# ------------------------------------------------------------------------------------ entry


def count_params(config, custom_objects=None, filename=None) -> int:
    """A lower bound on the weights (array elements) that rebuilding ``config`` will allocate.

    ``config`` is a model's ``{"class_name", "config"}`` entry; ``custom_objects`` are the classes the
    load will use (a class found there, in a scope or in the registry is opaque and counts 0).
    """
    walk = _Walk(custom_objects, filename)
    walk.layer(config, None, 0)
    return walk.total
