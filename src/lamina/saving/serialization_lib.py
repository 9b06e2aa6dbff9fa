"""Object ⇄ config dicts in Keras 3's format, and the safety rules for configs read from files.

A serialized object is ``{"module", "class_name", "config", "registered_name"}`` (plus
``build_config`` / ``compile_config`` for layers and models); plain values stay plain.

Safety. Loading a config never imports a module named in it and never runs code from it unless the
caller passes ``safe_mode=False``:

* classes and functions resolve only from ``custom_objects``, the registry
  (:func:`~lamina.saving.register_keras_serializable`) and lamina's own built-ins, which answer for
  Keras module paths (``keras.*``, ``keras.src.*``, ``keras.engine.*``, ``tf_keras.*`` ...);
* an object from any other module, a Python ``lambda`` (marshalled bytecode) or a ``Lambda`` layer
  is refused under ``safe_mode=True`` with an error saying how to opt in. With ``safe_mode=False``
  lamina imports the named module / unmarshals the lambda, as Keras does.

Keras writes a lambda's ``(code, defaults, closure)`` (``python_utils.func_dump``: base64 marshalled
bytecode, the default values, the closure cells' values) in three layouts, all read here:
``{"class_name": "__lambda__", "config": {"value": [code, defaults, closure]}}`` (any object, e.g. a
loss), ``{"class_name": "__lambda__", "config": {"code", "defaults", "closure"}}`` (the ``Lambda``
layer's function) and the bare ``{"value": [code, defaults, closure]}`` (an activation: Keras's
``activations.serialize`` drops the marker, so Keras cannot load such a file back itself).

:func:`check_config` applies these rules to a whole config tree *before* anything is built.
:class:`SafeModeScope` sets ``safe_mode`` for every deserialization inside it (each object's ``from_config``
runs inside one, so the nested calls a custom ``from_config`` makes follow the outer call).

Shared objects. Inside an :class:`ObjectSharingScope` an object serialized twice (a layer used by a model and
by a wrapper) is written twice with the same ``shared_object_id``, and deserializing in a scope builds it
once and hands that one object to every entry carrying the id (Keras's format and rule).
"""

from __future__ import annotations

import base64
import builtins
import importlib
import inspect
import marshal
import types
import warnings

import numpy as np

from lamina import activations, backend, constraints, initializers, losses, metrics, optimizers, regularizers
from lamina.layers import Layer, serialize
from lamina.layers import deserialize as deserialize_layer
from lamina.layers.lambda_layer import dump_lambda
from lamina.optimizers import schedules
from lamina.saving import object_registry
from lamina.saving.errors import FileFormatError
from lamina.saving.object_config import serialize_instance, serialize_value
from lamina.saving.object_registry import ObjectSharingScope as ObjectSharingScope  # (Keras's home for it)
from lamina.saving.object_registry import record_deserialized, shared_object

_KERAS_PREFIXES = ("keras", "tf_keras", "tensorflow.keras", "tensorflow.python.keras", "keras_core", "lamina")
# Special markers Keras writes in the class_name slot; all are data, not code (except __lambda__).
_DATA_MARKERS = ("__keras_tensor__", "__numpy__", "__bytes__", "__tuple__", "__ellipsis__", "__slice__",
                 "__tensor__")
_NUMERIC_KINDS = "biuf"


def is_keras_module(module) -> bool:
    """True for Keras's public and internal module paths (and lamina's own)."""
    if not isinstance(module, str):
        return False
    return any(module == p or module.startswith(p + ".") for p in _KERAS_PREFIXES)


# ---------------------------------------------------------------------------------------- tables


def _family(module: str, class_name: str) -> str | None:
    """Which lamina module answers for a Keras module path (``keras.src.layers.core.dense`` → layers)."""
    parts = module.split(".")
    if "schedules" in parts or "learning_rate_schedule" in parts:
        return "schedules"
    for fam in ("optimizers", "losses", "metrics", "initializers", "regularizers", "constraints",
                "activations", "quantizers", "layers"):
        if fam in parts:
            return fam
    if class_name in ("Sequential", "Functional", "Model") or "models" in parts or "engine" in parts:
        return "layers"
    return None


def _families() -> dict:
    return {
        "layers": (object_registry.builtin_objects("layers"), None),
        "optimizers": ({c.__name__: c for c in optimizers.ALL_OBJECTS} | {"Optimizer": optimizers.Optimizer},
                       optimizers.deserialize),
        "schedules": ({n: c for n, c in vars(schedules).items() if isinstance(c, type)
                       and issubclass(c, schedules.LearningRateSchedule)}, schedules.deserialize),
        "losses": (losses.ALL_OBJECTS, losses.deserialize),
        "metrics": (metrics.ALL_OBJECTS, metrics.deserialize),
        "initializers": (initializers.ALL_OBJECTS_DICT, initializers.deserialize),
        "regularizers": (regularizers.ALL_OBJECTS_DICT, regularizers.deserialize),
        "constraints": (constraints.ALL_OBJECTS_DICT, constraints.deserialize),
        "activations": (activations._BUILTINS, activations.deserialize),
        "quantizers": (object_registry.builtin_objects("quantizers"), None),  # rebuilt by their from_config
    }


def _builtin_lookup(name: str) -> tuple[str, object] | None:
    for fam, (table, _) in _families().items():
        if name in table:
            return fam, table[name]
    return None


def _custom_lookup(config: dict, custom_objects: dict | None):
    """A class/function named by ``config`` in custom_objects, the active scope or the registry."""
    names = []
    reg = config.get("registered_name")
    if isinstance(reg, str) and reg != "function":
        names.append(reg)
    cn = config.get("class_name")
    if cn == "function" and isinstance(config.get("config"), str):
        names.append(config["config"])
    elif isinstance(cn, str):
        names.append(cn)
    for n in names:
        obj = object_registry.get_registered_object(n, custom_objects)
        if obj is not None:
            return obj
    return None


class SafeModeScope:
    """``with SafeModeScope(False): ...`` — every deserialization inside runs with this ``safe_mode``,
    whatever its own argument says (nested ``deserialize_keras_object`` calls made by a custom
    ``from_config`` included). It overrides ``lamina.config.enable_unsafe_deserialization()`` for its
    duration and puts the previous setting back when it ends."""

    def __init__(self, safe_mode: bool = True):
        self.safe_mode = safe_mode

    def __enter__(self):
        self._previous = backend.safe_mode_override()
        backend.set_safe_mode_override(self.safe_mode)
        return self

    def __exit__(self, *exc):
        backend.set_safe_mode_override(self._previous)
        return False


def in_safe_mode() -> bool | None:
    """The safe_mode set by an enclosing :class:`SafeModeScope` or ``enable_unsafe_deserialization``
    (False), or None when each call's own argument decides."""
    return backend.safe_mode_override()


# ----------------------------------------------------------------------------------- serialize


def serialize_keras_object(obj):
    """``obj`` as a JSON-ready value in Keras 3's format (layers, models, optimizers, losses...).

    Plain values stay plain; lists, tuples and dicts are walked; bytes, slices, ``...`` and arrays become
    Keras's marker entries. Inside an :class:`ObjectSharingScope`, an object met twice is written twice
    with the same ``shared_object_id``.
    """
    return serialize_value(obj, _serialize_object)


def _serialize_object(obj):
    """A function or object (anything :func:`serialize_value` does not write itself)."""
    if isinstance(obj, types.FunctionType):
        return _serialize_function(obj)
    return _serialize_instance(obj)


def _serialize_function(fn: types.FunctionType):
    if fn.__name__ == "<lambda>":
        # As Keras: the bytecode goes into the config (with a warning); reading it back needs safe_mode=False
        try:
            source = inspect.getsource(fn).strip()
        except (OSError, TypeError):  # defined at a prompt: no source file to quote
            source = repr(fn)
        warnings.warn(
            "A Python lambda is being serialized: its bytecode is written into the config, and loading it back "
            "runs that code, so it needs `safe_mode=False` (and the same Python version). A named function "
            f"registered with @keras.saving.register_keras_serializable() needs neither. The lambda: {source}",
            UserWarning, stacklevel=4)
        return {"class_name": "__lambda__", "config": {"value": list(dump_lambda(fn))}}
    for module in (losses, metrics):
        if getattr(module, fn.__name__, None) is fn:
            return module.serialize(fn)
    return activations.serialize(fn)


def _serialize_instance(obj):
    if isinstance(obj, Layer):
        out = _keras_module_paths(serialize(obj))
        compile_config = obj.get_compile_config() if hasattr(obj, "get_compile_config") else None
        if compile_config is not None:
            out["compile_config"] = compile_config
        return out
    for cls, serialize_one in ((optimizers.Optimizer, optimizers.serialize),
                               (schedules.LearningRateSchedule, schedules.serialize),
                               (losses.Loss, losses.serialize), (metrics.Metric, metrics.serialize)):
        if isinstance(obj, cls):
            return serialize_one(obj)
    if hasattr(obj, "get_config") and not inspect.isclass(obj):
        return serialize_instance(obj)
    raise TypeError(f"Cannot serialize an object of type {type(obj).__name__}: it has no get_config(). "
                    f"Received: {obj!r:.200}")


def _keras_module_paths(config: dict) -> dict:
    """Keras resolves ``Functional`` only from its internal module path: write that one (in place)."""
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class_name") == "Functional" and node.get("module") == "keras":
                node["module"] = "keras.src.models.functional"
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return config


# --------------------------------------------------------------------------------- safety check


def _refuse(filename, message: str):
    raise FileFormatError(filename, message)


def _walk(config):
    """``(key, node, owner)`` for every dict in a config tree: the key it sits under (list items take
    their list's key) and a description of the nearest enclosing object (``"Dense 'dense'"``)."""
    stack = [(None, config, None)]
    while stack:
        key, node, owner = stack.pop()
        if isinstance(node, list):
            stack.extend((key, x, owner) for x in reversed(node))
        elif isinstance(node, dict):
            yield key, node, owner
            here = _describe(node) or owner
            stack.extend((k, v, here) for k, v in reversed(list(node.items())))


def _describe(node: dict) -> str | None:
    cn = node.get("class_name")
    if not isinstance(cn, str) or cn.startswith("__"):
        return None
    inner = node.get("config")
    name = inner.get("name") if isinstance(inner, dict) else None
    return f"{cn} '{name}'" if isinstance(name, str) else cn


def _is_bare_lambda(node) -> bool:
    """Keras's lambda *activation*: ``{"value": [code, defaults, closure]}`` with no ``class_name``,
    the code being base64 marshalled bytecode (its first byte marks a code object)."""
    if not isinstance(node, dict) or set(node) != {"value"}:
        return False
    value = node["value"]
    if not isinstance(value, list) or len(value) != 3 or not isinstance(value[0], str):
        return False
    try:
        head = base64.b64decode(value[0][:4], validate=True)
    except ValueError:
        return False
    return bool(head) and head[0] & 0x7F == ord("c")  # marshal's TYPE_CODE, with or without FLAG_REF


_SAFE_MODE_HINT = "If you trust the file's source, pass safe_mode=False to load_model."


def check_config(config, custom_objects: dict | None = None, safe_mode: bool = True, filename=None) -> dict:
    """Apply the safety rules to a whole config tree before anything is built.

    Returns the extra objects resolved by import (only with ``safe_mode=False``) to add to
    ``custom_objects``. Raises :class:`FileFormatError` naming ``filename`` otherwise.
    """
    resolved: dict = {}
    for key, node, owner in _walk(config):
        if key != "config" and _is_bare_lambda(node):  # ("config": a __tuple__'s {"value": [...]} is data)
            if safe_mode:
                where = f"of {owner} " if owner else ""
                _refuse(filename, f"the '{key}' {where}is a Python lambda (marshalled bytecode, as Keras writes "
                                  "a lambda activation). Loading it would run code stored in the file (a risk of "
                                  f"arbitrary code execution), so safe_mode refuses it. {_SAFE_MODE_HINT}")
            continue
        resolved.update(_check_node(node, custom_objects, safe_mode, filename))
    return resolved


def _check_node(node: dict, custom_objects, safe_mode: bool, filename) -> dict:
    """The safety rules for one ``{"class_name", ...}`` entry; returns what it resolved by import."""
    cn = node.get("class_name")
    if not isinstance(cn, str):
        return {}
    if cn == "__lambda__":
        if safe_mode:
            _refuse(filename, "the config holds a Python lambda (marshalled bytecode). Loading it would run code "
                              "stored in the file (a risk of arbitrary code execution), so safe_mode refuses it. "
                              f"{_SAFE_MODE_HINT}")
        return {}
    if cn == "__typespec__":
        if not isinstance(node.get("config"), (list, tuple)):
            raise TypeError("Expected 'config' to be a list or a tuple for a '__typespec__' entry. "
                            f"Received: config={node!r:.200}")
        _refuse(filename, "the config holds a TensorFlow TypeSpec, which lamina cannot load.")
    if cn in _DATA_MARKERS:
        return {}
    if cn == "function" and "config" in node:
        _check_function_name(node)
    custom = _custom_lookup(node, custom_objects)
    if cn == "Lambda" and custom is None:
        if safe_mode and not _lambda_functions_known(node, custom_objects):
            _refuse(filename, (
                "the model has a Lambda layer, whose function is Python code stored in the file; "
                "safe_mode refuses to run it, as it carries a risk of arbitrary code execution. If you trust "
                "the file's source, pass safe_mode=False (or call lamina.config.enable_unsafe_deserialization())."))
        return {}
    if custom is not None or (cn == "function" and _bare_registered_function(node, custom_objects) is not None):
        return {}
    _check_registered_name(node, cn, filename)
    module = node.get("module")
    if "config" not in node or module is None:
        return {}  # Keras-2 style {"class_name", "config"}: resolved by name among built-ins only
    return _check_module(node, cn, module, safe_mode, filename)


def _lambda_functions_known(node: dict, custom_objects) -> bool:
    """A ``Lambda`` whose function (and output_shape / mask functions) are all named functions found in
    custom_objects, the registry or lamina's built-ins runs no code from the file (Keras loads it in safe
    mode too); a stored lambda or an unknown name is code to refuse."""
    inner = node.get("config")
    if not isinstance(inner, dict):
        return False
    for key in ("function", "output_shape", "mask"):
        entry = inner.get(key)
        if key != "function" and not isinstance(entry, dict):
            continue  # a plain shape or mask value
        if not isinstance(entry, dict) or entry.get("class_name") != "function":
            return False
        if _custom_lookup(entry, custom_objects) is None and _builtin_lookup(str(entry.get("config"))) is None:
            return False
    return True


def _check_registered_name(node: dict, cn: str, filename) -> None:
    """An entry that resolves to a built-in (no custom object answers to its names) must carry no
    ``registered_name`` other than its class or function name: Keras writes None (or that name) for
    built-ins, so another name is an inconsistent or tampered file."""
    reg = node.get("registered_name")
    if not reg or not isinstance(reg, str):
        return
    module = node.get("module")
    if module is not None and module != "builtins" and not is_keras_module(module):
        return  # not a built-in's entry: the module rules decide
    name = node.get("config") if cn == "function" else cn
    if reg in (cn, name) or not isinstance(name, str) or _builtin_lookup(name) is None:
        return
    _refuse(filename, f"{_describe(node) or cn} has registered_name {reg!r}, which names another class than "
                      f"'{name}': '{name}' resolved to a Keras built-in, which is not loaded by registered name "
                      f"(and no custom object is registered as {reg!r}). Remove the registered_name from the "
                      f"config, or register the object meant. Received: class_name={cn!r}, registered_name={reg!r}")


def _check_module(node: dict, cn: str, module, safe_mode: bool, filename) -> dict:
    """An object from a non-Keras module: refused, or (safe_mode=False) imported."""
    if not isinstance(module, str):
        _refuse(filename, f"object '{cn}' has a non-string module {module!r}.")
    if is_keras_module(module):
        return {}
    if module == "builtins" and cn == "function":
        name = node.get("config")
        if _builtin_lookup(name) is not None:
            return {}
        what = f"function '{name}'"
    else:
        what = f"'{cn}'"
    key = cn if cn != "function" else node.get("config")
    how = ("register it with @lamina.saving.register_keras_serializable() or pass "
           f"custom_objects={{'{key}': ...}}")
    if module == "builtins":  # a plain function saved by name: only the caller can supply it
        _refuse(filename, f"the config names {what}, which is neither a lamina built-in nor registered. "
                          f"If it is your own function, {how}.")
    if safe_mode:
        _refuse(filename, (
            f"the config names {what} from module '{module}', which is not a Keras module and is not "
            "registered. In safe mode lamina never imports modules named in a file. If it is your own "
            f"class or function, {how}; if you trust the file's source, pass safe_mode=False to let "
            f"lamina import '{module}'."))
    return _import_object(node, module, filename)


def _import_object(node: dict, module: str, filename) -> dict:
    """(safe_mode=False only) Import ``module`` and fetch the class or function a config names."""
    cn = node["class_name"]
    name = node.get("config") if cn == "function" else cn
    if not isinstance(name, str):
        _refuse(filename, f"object from module '{module}' has no usable name: {node!r:.200}")
    attr = name.split(">")[-1]
    try:
        mod = importlib.import_module(module)
        obj = getattr(mod, attr)
    except (ImportError, AttributeError, ValueError) as e:
        _refuse(filename, f"could not import '{attr}' from module '{module}' ({type(e).__name__}: {e}).")
    if cn != "function" and not (inspect.isclass(obj) and hasattr(obj, "from_config")):
        _refuse(filename, f"'{module}.{attr}' is not a class with from_config(); refusing to call it.")
    if cn == "function" and not callable(obj):
        _refuse(filename, f"'{module}.{attr}' is not a function.")
    out = {attr: obj, name: obj}
    reg = node.get("registered_name")
    if isinstance(reg, str) and reg != "function":
        out[reg] = obj
    return out


# ------------------------------------------------------------------------------------- lambdas


def _lambda_parts(inner) -> tuple:
    """``(code, defaults, closure)`` from any of Keras's lambda layouts (see the module docstring)."""
    if isinstance(inner, dict) and "value" in inner:
        value = inner["value"]
    elif isinstance(inner, dict) and "code" in inner:
        value = [inner["code"], inner.get("defaults"), inner.get("closure")]
    else:
        value = inner
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= 3 or not isinstance(value[0], str):
        raise ValueError("A lambda must be stored as (code, defaults, closure) with the code a base64 string. "
                         f"Received: {value!r:.200}")
    code, defaults, closure = (list(value) + [None, None])[:3]
    for what, part in (("defaults", defaults), ("closure", closure)):
        if part is not None and not isinstance(part, (list, tuple)):
            raise ValueError(f"A lambda's {what} must be a list or null. Received: {what}={part!r:.200}")
    return code, defaults, closure


def _load_lambda(inner) -> types.FunctionType:
    """Rebuild a function from Keras's ``func_dump`` triple (only reached with safe_mode=False)."""
    code_b64, defaults, closure_values = _lambda_parts(inner)
    try:
        code = marshal.loads(base64.b64decode(code_b64.encode("ascii")))
    except (ValueError, TypeError, EOFError) as e:
        raise ValueError(
            f"The lambda's bytecode cannot be read by this Python ({e}); it was probably written by another "
            "Python version. Re-create the layer with a named, registered function instead."
        ) from None
    if not isinstance(code, types.CodeType):
        raise ValueError(f"A lambda's code does not hold Python bytecode. Received: {type(code).__name__}")

    def cell(v):
        return (lambda: v).__closure__[0]

    closure = tuple(cell(v) for v in closure_values) if closure_values else None
    if len(closure or ()) != len(code.co_freevars):
        raise ValueError(f"The lambda uses {len(code.co_freevars)} closure variable(s) {list(code.co_freevars)} "
                         f"but the file stores {len(closure or ())}. Received: closure={closure_values!r:.200}")
    # As with Keras's func_load, the function sees the builtins only: the saving program's globals are not
    # in the file.
    defaults = tuple(defaults) if defaults else None
    return types.FunctionType(code, {"__builtins__": builtins}, code.co_name, defaults, closure)


# -------------------------------------------------------------------------------- deserialize


def deserialize_keras_object(config, custom_objects: dict | None = None, safe_mode: bool = True, **kwargs):
    """The object a Keras 3 (or Keras 2) config describes; plain values come back as they are.

    Dicts without ``class_name``/``config`` are deserialized value by value (a compile config).
    Raises :class:`FileFormatError` for configs refused by the safety rules (see module docstring).
    """
    safe_mode = backend.effective_safe_mode(safe_mode)  # keras.config.enable_unsafe_deserialization wins
    extra = check_config(config, custom_objects, safe_mode)
    custom = {**(custom_objects or {}), **extra}
    if not safe_mode:
        config = load_lambdas(config)  # a layer's from_config then gets its lambda activation as a function
    with object_registry.CustomObjectScope(custom):
        return _deserialize(config, custom, safe_mode)


def _deserialize(config, custom: dict, safe_mode: bool):
    if config is None or isinstance(config, (bool, int, float)) or callable(config):
        return config  # (a callable: a lambda load_lambdas already rebuilt)
    if isinstance(config, str):
        return custom.get(config, config)
    if isinstance(config, list):
        return [_deserialize(x, custom, safe_mode) for x in config]
    if not isinstance(config, dict):
        raise TypeError(f"Could not parse config: {config!r:.200}")
    if "class_name" not in config or "config" not in config:
        return {k: _deserialize(v, custom, safe_mode) for k, v in config.items()}
    cn, inner = config["class_name"], config["config"]
    if cn in _MARKERS:
        return _marker_value(cn, inner, custom, safe_mode)
    if cn == "function":
        return _function(config, inner, custom)
    return _build(config, cn, inner, custom, safe_mode)


def _numpy_value(inner, custom, safe_mode):
    try:
        dtype = np.dtype(inner["dtype"])
    except (TypeError, ValueError, SyntaxError):  # SyntaxError: numpy parses some dtype strings
        raise ValueError(f"A '__numpy__' entry has no valid dtype. Received: dtype={inner['dtype']!r:.80}") from None
    if dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(f"__numpy__ values must be numeric. Received: dtype={inner['dtype']!r}")
    try:
        return np.array(inner["value"], dtype=dtype)
    except (ValueError, TypeError, OverflowError):  # ragged nesting, strings, out-of-range numbers
        raise ValueError(f"A '__numpy__' entry's value is not a {dtype} array. "
                         f"Received: value={inner['value']!r:.200}") from None


def _bytes_value(inner, custom, safe_mode):
    if not isinstance(inner["value"], str):
        raise ValueError(f"A '__bytes__' entry's value must be a string. Received: value={inner['value']!r:.200}")
    return inner["value"].encode("utf-8")


def _tuple_value(inner, custom, safe_mode):
    if not isinstance(inner["value"], list):
        raise ValueError(f"A '__tuple__' entry's value must be a list. Received: value={inner['value']!r:.200}")
    return tuple(_deserialize(x, custom, safe_mode) for x in inner["value"])


def _lambda_value(inner, custom, safe_mode):
    if safe_mode:
        raise FileFormatError(None, "refusing to load a Python lambda in safe mode: it would run code stored in "
                                    "the config (a risk of arbitrary code execution). If you trust its source, "
                                    "pass safe_mode=False.")
    return _load_lambda(inner)


def _keras_tensor_value(inner, custom, safe_mode):
    raise ValueError("A symbolic tensor config can only appear inside a Functional model's config.")


# The special class_names Keras writes for values, each → how to rebuild it from its "config".
_MARKERS = {
    "__numpy__": _numpy_value,
    "__tensor__": _numpy_value,  # a backend tensor: lamina's tensors are NumPy arrays
    "__bytes__": _bytes_value,
    "__tuple__": _tuple_value,
    "__ellipsis__": lambda inner, custom, safe_mode: Ellipsis,
    "__slice__": lambda inner, custom, safe_mode: slice(
        *(_deserialize(inner.get(k), custom, safe_mode) for k in ("start", "stop", "step"))),
    "__lambda__": _lambda_value,
    "__keras_tensor__": _keras_tensor_value,
}


# The keys each marker's "config" dict must hold (absent: the marker takes any config).
_MARKER_KEYS = {"__numpy__": ("value", "dtype"), "__tensor__": ("value", "dtype"),
                "__bytes__": ("value",), "__tuple__": ("value",), "__slice__": ()}


def _marker_value(cn: str, inner, custom: dict, safe_mode: bool):
    keys = _MARKER_KEYS.get(cn)
    if keys is not None and (not isinstance(inner, dict) or any(k not in inner for k in keys)):
        holding = f" with the keys {list(keys)}" if keys else ""
        raise ValueError(f"A '{cn}' entry's config must be a dict{holding}. Received: config={inner!r:.200}")
    return _MARKERS[cn](inner, custom, safe_mode)


def _function(config: dict, inner, custom: dict):
    """A function saved by name: a custom or registered one, else lamina's built-in of that name."""
    _check_function_name(config)
    obj = _custom_lookup(config, custom)
    if obj is not None:
        return obj
    found = _builtin_lookup(inner)
    if found is not None:
        return found[1]
    obj = _bare_registered_function(config, custom)
    if obj is None:
        raise ValueError(f"Unknown function '{inner}'. Register it or pass it in custom_objects. "
                         f"Received: config={config!r:.200}")
    return obj


def _check_function_name(config: dict) -> None:
    if not isinstance(config.get("config"), str):
        raise TypeError("Expected 'config' to be a non-null str naming the function of a 'function' entry. "
                        f"Received: config={config!r:.200}")


def _bare_registered_function(config: dict, custom_objects):
    """Keras 3.6 and older wrote a registered function by its bare name ("fn", not "package>fn"): the one
    registered (or custom) object whose key ends in ``>fn``, or None. Only objects the program registered
    itself are considered: nothing is imported."""
    name = config.get("config")
    if config.get("module") not in (None, "builtins") or not isinstance(name, str) or ">" in name:
        return None
    return object_registry.registered_by_bare_name(name, custom_objects)


def _resolve_class(config: dict, cn: str, custom: dict):
    """``(family, object)`` for a class entry: custom/registered first, then the built-in its module
    (or, failing that, its name) points to. The family is None for custom objects."""
    obj = _custom_lookup(config, custom)
    if obj is not None:
        return None, obj
    module = config.get("module") or ""
    fam = _family(module, cn) if module else None
    families = _families()
    if fam is not None and fam in families and cn in families[fam][0]:
        return fam, families[fam][0][cn]
    found = _builtin_lookup(cn)
    if found is None:
        raise ValueError(f"Unknown object '{cn}' (module '{module}'). Register custom classes with "
                         "@lamina.saving.register_keras_serializable() or pass them in custom_objects. "
                         f"Received: config={config!r:.200}")
    return found


def _build(config: dict, cn: str, inner, custom: dict, safe_mode: bool):
    if inner is None:
        inner = {}
    if not isinstance(inner, dict) and not (cn == "Sequential" and isinstance(inner, list)):  # (Keras 2.1's list)
        raise TypeError(f"Expected 'config' to be a dict for '{cn}' (the arguments to rebuild it from). "
                        f"Received: config={config!r:.200}")
    shared = shared_object(config)
    if shared is not None:
        return shared
    try:
        with SafeModeScope(safe_mode):  # deserializations a custom from_config makes follow this one
            instance = _build_new(config, cn, inner, custom)
    except TypeError as e:
        if _EXPLICIT_HINT in str(e):  # already explained by a nested entry
            raise
        # Most often a sub-object (a layer, an activation object) that get_config returned was handed to
        # __init__ as its config dict, not rebuilt: say where to look.
        raise TypeError(f"'{cn}' could not be deserialized properly ({e}). {_EXPLICIT_HINT} "
                        f"Received: config={config!r:.300}") from e
    record_deserialized(config, instance)
    return instance


_EXPLICIT_HINT = ("Please ensure that components that are Python object instances (layers, models, etc.) returned "
                  "by `get_config()` are explicitly deserialized in the model's `from_config()` method.")


def _check_sequential_config(inner) -> None:
    if isinstance(inner, dict) and not ("name" in inner and "layers" in inner):
        raise ValueError("A Sequential model configuration must be a dictionary containing the 'name' and "
                         f"'layers' keys. Received: config={inner!r:.200}")


def _build_new(config: dict, cn: str, inner, custom: dict):
    fam, obj = _resolve_class(config, cn, custom)
    if obj is object_registry.builtin_objects("layers").get("Sequential"):
        _check_sequential_config(inner)
    if fam is not None and fam != "layers" and _families()[fam][1] is not None:
        return _families()[fam][1](config, custom_objects=custom)
    if inspect.isclass(obj) and issubclass(obj, Layer):
        instance = deserialize_layer(config, custom_objects={**custom, cn: obj})
        compile_config = config.get("compile_config")
        if compile_config and hasattr(instance, "compile_from_config"):
            instance.compile_from_config(compile_config)
        return instance
    if not inspect.isclass(obj):
        return obj
    if not hasattr(obj, "from_config"):
        raise TypeError(f"Unable to reconstruct an instance of '{cn}' because the class is missing a "
                        f"`from_config()` method. Received: config={config!r:.200}")
    params = inspect.signature(obj.from_config).parameters
    if "custom_objects" in params:
        return obj.from_config(inner, custom_objects=custom)
    return obj.from_config(inner)


def load_lambdas(config, key=None):
    """(safe_mode=False only) A copy of ``config`` with every lambda — ``__lambda__`` entries and
    Keras's bare lambda activations — turned into its function, so a layer's ``from_config`` receives
    a callable (e.g. for ``activation``)."""
    if isinstance(config, list):
        return [load_lambdas(x, key) for x in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") == "__lambda__":
        return _load_lambda(config.get("config"))
    if key != "config" and _is_bare_lambda(config):
        return _load_lambda(config)
    return {k: load_lambdas(v, k) for k, v in config.items()}


def json_default(obj):
    """JSON for the NumPy values a config may hold (``Dropout(np.float32(0.5))``): plain numbers and lists."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")
