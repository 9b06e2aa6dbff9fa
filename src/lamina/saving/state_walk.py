"""Where each variable of a model lives in a Keras weights file.

Keras 3 walks a model's saveables (``saving_lib._save_state``) and gives each one an HDF5 group
``<path>/vars`` holding datasets ``"0"``, ``"1"``, ... with a ``name`` attribute. The path comes from
the attribute that holds the object, or — inside a list such as ``model.layers`` — from its
snake_case class name with ``_1``, ``_2`` suffixes (``layers/dense``, ``layers/dense_1``), never from
the layer's own name. A Sequential or Functional model yields its ``layers`` first, in Keras's order:
for a Functional model, by decreasing depth in the graph, ties broken by first visit of a
depth-first walk from the outputs (``keras.src.ops.function.map_graph``). The compiled optimizer
comes under ``optimizer/vars``: ``iteration``, ``learning_rate`` (when a float), then the slots of
each trainable variable in Keras's trainable-variable order.

This module reproduces that walk for lamina models, independently of lamina's own layer order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lamina.layers.layer import Layer
from lamina.models.functional import keras_layer_order
from lamina.models.model import Model
from lamina.naming import to_snake_case

# Attributes of lamina's own classes that hold layers Keras does not walk (or walks elsewhere).
_SKIP_ATTRS = frozenset({
    "_layers", "_stack", "_input_layer", "_inbound_nodes", "_nodes", "_variables", "_inputs_struct",
    "_outputs_struct", "inputs", "outputs", "_losses", "_tracking", "layers", "optimizer",
})


@dataclass
class Entry:
    """One saveable: its group path ("" for the root), its name attribute, and its variables."""

    path: str
    name: str
    variables: list = field(default_factory=list)
    owner: object = None  # the layer or optimizer
    custom: bool = False  # loaded through the layer's own load_own_variables (see _has_custom_state)
    custom_save: bool = False  # saved through its own save_own_variables (its variables are then not listed)
    aliases: list = field(default_factory=list)  # later paths that reach the same object (tried when loading)


def _name_key(name: str) -> str:
    return f"~{name}" if name.startswith("_") else name


def _is_model(obj) -> bool:
    return isinstance(obj, Model)


def _is_structured(obj) -> bool:
    """A Sequential or Functional model: its ``layers`` come from its structure, in Keras's order."""
    return _is_model(obj) and (hasattr(obj, "_stack") or hasattr(obj, "_nodes"))


def own_variables(layer) -> list:
    """A layer's own variables in Keras's order: those created trainable, then the others."""
    vs = list(layer._variables)
    trainable = [v for v in vs if getattr(v, "_trainable_by_design", v.trainable)]
    others = [v for v in vs if not getattr(v, "_trainable_by_design", v.trainable)]
    return trainable + others


def _has_custom_state(layer) -> bool:
    """Whether loading hands the layer its stored arrays (``load_own_variables(store)``): when it saves its
    own way too, or when the user's class defines ``load_own_variables`` (Keras always calls it)."""
    if not hasattr(layer, "load_own_variables"):
        return False
    return hasattr(layer, "save_own_variables") or _user_defined(type(layer), "load_own_variables")


def _user_defined(cls, name: str) -> bool:
    """Whether ``name`` comes from one of the user's classes rather than lamina's own."""
    owner = next((k for k in cls.__mro__ if name in vars(k)), None)
    return owner is not None and owner.__module__.split(".")[0] != "lamina"


def functional_layer_order(model) -> list:
    """A Functional model's layers in Keras's order (kept with the model: see Functional.layers)."""
    return keras_layer_order(model)


def keras_layers(model) -> list:
    """``model.layers`` in Keras's order."""
    if hasattr(model, "_nodes") and hasattr(model, "outputs"):
        return functional_layer_order(model)
    return list(model.layers)


def _children(obj):
    """(attribute, child) pairs in Keras's visiting order: a model's layers, then attributes sorted."""
    items = []
    structured = _is_structured(obj)
    if structured:
        items.append(("layers", keras_layers(obj)))
    attrs = dict(vars(obj))
    for name in _user_properties(type(obj)):
        if name not in attrs:
            try:
                attrs[name] = getattr(obj, name)
            except Exception:  # as Keras: a property that fails is not a path
                continue
    if _is_model(obj) and not structured:
        attrs["layers"] = obj.layers  # a property in Keras, visited in sorted order
    found = []  # filtered before sorting: a layer has dozens of attributes, rarely one holding a layer
    for attr, value in attrs.items():
        if attr.startswith("__") or (attr in _SKIP_ATTRS and not (attr == "layers" and not structured)):
            continue
        if isinstance(value, Layer) or (isinstance(value, (list, tuple, dict)) and _holds_layers(value)):
            found.append(attr)
    items.extend((attr, attrs[attr]) for attr in sorted(found, key=_name_key))
    return items


_PROPERTIES: dict[type, tuple] = {}


def _user_properties(cls) -> tuple:
    """Properties defined by the user's classes (not lamina's): Keras's walk reads them like attributes, so
    a layer reachable through one is saved (or found when loading) under that name too."""
    if cls not in _PROPERTIES:
        names = set()
        for klass in cls.__mro__:
            if klass is object or klass.__module__.split(".")[0] == "lamina":
                continue
            names.update(n for n, v in vars(klass).items() if isinstance(v, property) and not n.startswith("__"))
        _PROPERTIES[cls] = tuple(sorted(names))
    return _PROPERTIES[cls]


def _holds_layers(container, depth: int = 0) -> bool:
    if depth > 8:
        return False
    values = container.values() if isinstance(container, dict) else container
    for v in values:
        if isinstance(v, Layer):
            return True
        if isinstance(v, (list, tuple, dict)) and _holds_layers(v, depth + 1):
            return True
    return False


def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


def _walk(obj, path: str, visited: dict, out: list) -> None:
    """``visited``: id -> the object's Entry (None for an object to skip)."""
    if id(obj) in visited:
        entry = visited[id(obj)]
        if entry is not None and path != entry.path:
            entry.aliases.append(path)
        return
    custom_save = hasattr(obj, "save_own_variables")
    entry = Entry(path, obj.name, [] if custom_save else own_variables(obj), obj, _has_custom_state(obj),
                  custom_save)
    visited[id(obj)] = entry
    out.append(entry)
    for attr, child in _children(obj):
        if isinstance(child, Layer):
            _walk(child, _join(path, attr), visited, out)
        else:
            _walk_container(child, _join(path, attr), visited, out, set())


def _walk_container(container, path: str, visited: dict, out: list, seen_containers: set) -> None:
    if id(container) in seen_containers:
        return
    seen_containers.add(id(container))
    used: dict[str, int] = {}
    values = list(container.values()) if isinstance(container, dict) else list(container)
    for item in values:
        if isinstance(item, Layer):
            _walk(item, _join(path, _unique(to_snake_case(type(item).__name__), used)), visited, out)
        elif isinstance(item, (list, tuple, dict)):
            _walk_container(item, _join(path, _unique("container", used)), visited, out, seen_containers)


def _unique(name: str, used: dict) -> str:
    if name in used:
        used[name] += 1
        return f"{name}_{used[name]}"
    used[name] = 0
    return name


def model_entries(model, skip=()) -> list[Entry]:
    """Every saveable layer of ``model`` (the model itself first) in Keras's order, with its path; the
    objects in ``skip`` and what only they hold are left out (Keras's ``objects_to_skip``)."""
    out: list[Entry] = []
    _walk(model, "", {id(o): None for o in skip}, out)
    return out


def keras_trainable_variables(model) -> list:
    """``model.trainable_variables`` in Keras's order (layers in Keras's order, recursively)."""
    out, seen = [], set()

    def collect(layer):
        if not layer.trainable:
            return
        for v in own_variables(layer):
            if v.trainable and id(v) not in seen:
                seen.add(id(v))
                out.append(v)
        for sub in keras_layers(layer) if _is_structured(layer) else layer._layers:
            collect(sub)

    collect(model)
    return out


def optimizer_variables_keras_order(optimizer, keras_trainables: list) -> list:
    """The optimizer's variables in the order Keras would hold them for ``keras_trainables``.

    lamina's optimizer orders its slots by the variable list it was built on. When that list is a
    permutation of Keras's order, each block of slots (one ``add_optimizer_variables`` call: k slots
    per variable, interleaved) is permuted the same way; other variables keep their places.

    When the model's trainable variables changed since the build (``model.quantize`` replaced kernels,
    a layer was frozen), they no longer say where the built-on variables stood; Keras then saves its
    optimizer's variables as they were built, and so are lamina's (the model's order at build time).
    """
    variables = list(optimizer.variables)
    built_on = list(getattr(optimizer, "_trainable_variables", []))
    if [id(v) for v in built_on] == [id(v) for v in keras_trainables] or not built_on:
        return variables
    if sorted(id(v) for v in built_on) != sorted(id(v) for v in keras_trainables):
        return variables
    n = len(built_on)
    lamina_index = {id(v): i for i, v in enumerate(built_on)}
    perm = [lamina_index[id(v)] for v in keras_trainables]  # keras position -> lamina position
    slot_of: dict[int, int] = {}
    for group, _views, _flat in optimizer._slot_groups.values():
        for i, slot in enumerate(group):
            slot_of[id(slot)] = i
    out: list = []
    pos = 0
    while pos < len(variables):
        v = variables[pos]
        if id(v) not in slot_of:
            out.append(v)
            pos += 1
            continue
        k = 0
        while pos + k < len(variables) and slot_of.get(id(variables[pos + k])) == 0:
            k += 1
        block = variables[pos:pos + k * n]
        if k == 0 or len(block) != k * n or any(
                slot_of.get(id(block[j * k + a])) != j for j in range(n) for a in range(k)):
            raise ValueError(f"Optimizer '{optimizer.name}' has slot variables in an unexpected layout; "
                             "its state cannot be laid out as Keras expects.")
        for kp in range(n):
            out.extend(block[perm[kp] * k:(perm[kp] + 1) * k])
        pos += k * n
    return out
