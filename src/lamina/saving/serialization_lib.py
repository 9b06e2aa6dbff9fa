"""Object ⇄ config dicts in Keras 3's format, and the safety rules for configs read from files.

A serialized object is ``{"module", "class_name", "config", "registered_name"}`` (plus
``build_config`` / ``compile_config`` for layers and models); plain values stay plain.

Safety. Loading a config never imports a module named in it and never runs code from it unless the
caller passes ``safe_mode=False``:

* classes and functions resolve only from ``custom_objects``, the registry
  (:func:`~lamina.saving.register_keras_serializable`) and lamina's own built-ins, which answer for
  Keras module paths (``keras.*``, ``keras.src.*``, ``keras.engine.*``, ``tf_keras.*`` ...);
* an object from any other module, a Python ``lambda`` (``"__lambda__"``, marshalled bytecode) or a
  ``Lambda`` layer is refused under ``safe_mode=True`` with an error saying how to opt in. With
  ``safe_mode=False`` lamina imports the named module / unmarshals the lambda, as Keras does.

:func:`check_config` applies these rules to a whole config tree *before* anything is built.
"""

from __future__ import annotations

import base64
import importlib
import inspect
import marshal
import types

import numpy as np

from lamina.saving import object_registry
from lamina.saving.errors import FileFormatError

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
                "activations", "layers"):
        if fam in parts:
            return fam
    if class_name in ("Sequential", "Functional", "Model") or "models" in parts or "engine" in parts:
        return "layers"
    return None


def _families() -> dict:
    from lamina import activations, constraints, initializers, losses, metrics, optimizers, regularizers
    from lamina.layers import _builtin_classes
    from lamina.optimizers import schedules

    return {
        "layers": (_builtin_classes(), None),
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


# ----------------------------------------------------------------------------------- serialize


def serialize_keras_object(obj):
    """``obj`` as a JSON-ready value in Keras 3's format (layers, models, optimizers, losses...)."""
    from lamina import activations, losses, metrics, optimizers
    from lamina.layers import Layer, serialize
    from lamina.metrics import Metric
    from lamina.optimizers import schedules

    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [serialize_keras_object(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): serialize_keras_object(v) for k, v in obj.items()}
    if isinstance(obj, bytes):
        return {"class_name": "__bytes__", "config": {"value": obj.decode("utf-8")}}
    if isinstance(obj, np.ndarray):
        if obj.ndim == 0:
            return obj.item()
        return {"class_name": "__numpy__", "config": {"value": obj.tolist(), "dtype": obj.dtype.name}}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Layer):
        out = _keras_module_paths(serialize(obj))
        compile_config = obj.get_compile_config() if hasattr(obj, "get_compile_config") else None
        if compile_config is not None:
            out["compile_config"] = compile_config
        return out
    if isinstance(obj, optimizers.Optimizer):
        return optimizers.serialize(obj)
    if isinstance(obj, schedules.LearningRateSchedule):
        return schedules.serialize(obj)
    if isinstance(obj, losses.Loss):
        return losses.serialize(obj)
    if isinstance(obj, Metric):
        return metrics.serialize(obj)
    if isinstance(obj, types.FunctionType):
        if obj.__name__ == "<lambda>":
            raise ValueError(
                "Cannot serialize a lambda: it has no name to load it back by, and lamina does not write "
                "code into files. Define it with `def` and register it with "
                f"@lamina.saving.register_keras_serializable(). Received: {obj!r}"
            )
        for module in (losses, metrics):
            if getattr(module, obj.__name__, None) is obj:
                return module.serialize(obj)
        return activations.serialize(obj)
    if hasattr(obj, "get_config"):
        cls = type(obj)
        registered = object_registry._GLOBAL_CUSTOM_NAMES.get(cls)
        return {"module": cls.__module__, "class_name": cls.__name__, "config": serialize_keras_object(
            obj.get_config()), "registered_name": registered or cls.__name__}
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


def check_config(config, custom_objects: dict | None = None, safe_mode: bool = True, filename=None) -> dict:
    """Apply the safety rules to a whole config tree before anything is built.

    Returns the extra objects resolved by import (only with ``safe_mode=False``) to add to
    ``custom_objects``. Raises :class:`FileFormatError` naming ``filename`` otherwise.
    """
    resolved: dict = {}
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        stack.extend(node.values())
        cn = node.get("class_name")
        if not isinstance(cn, str):
            continue
        if cn == "__lambda__":
            if safe_mode:
                _refuse(filename, (
                    "the config holds a Python lambda (marshalled bytecode). Loading it would run code "
                    "stored in the file, so safe_mode refuses it. If you trust the file's source, pass "
                    "safe_mode=False to load_model."))
            continue
        if cn == "__typespec__":
            _refuse(filename, "the config holds a TensorFlow TypeSpec, which lamina cannot load.")
        if cn in _DATA_MARKERS:
            continue
        if cn == "Lambda" and _custom_lookup(node, custom_objects) is None:
            if safe_mode:
                _refuse(filename, (
                    "the model has a Lambda layer, whose function is Python code stored in the file; "
                    "safe_mode refuses to run it. If you trust the file's source, pass safe_mode=False "
                    "and a Lambda layer class in custom_objects={'Lambda': YourLambda} (lamina has no "
                    "built-in Lambda layer)."))
            continue
        module = node.get("module")
        if "config" not in node or module is None:
            continue  # Keras-2 style {"class_name", "config"}: resolved by name among built-ins only
        if _custom_lookup(node, custom_objects) is not None:
            continue
        if not isinstance(module, str):
            _refuse(filename, f"object '{cn}' has a non-string module {module!r}.")
        if is_keras_module(module):
            continue
        if module == "builtins" and cn == "function":
            name = node.get("config")
            if isinstance(name, str) and _builtin_lookup(name) is not None:
                continue
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
        resolved.update(_import_object(node, module, filename))
    return resolved


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


def _load_lambda(inner) -> types.FunctionType:
    """Rebuild a function from Keras's ``func_dump`` triple (only reached with safe_mode=False)."""
    value = inner.get("value") if isinstance(inner, dict) else inner
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"A __lambda__ config must hold (code, defaults, closure). Received: {value!r:.200}")
    code_b64 = value[0]
    defaults = tuple(value[1]) if len(value) > 1 and value[1] is not None else None
    closure_vals = value[2] if len(value) > 2 else None
    try:
        code = marshal.loads(base64.b64decode(code_b64.encode("ascii")))
    except (ValueError, TypeError, EOFError) as e:
        raise ValueError(
            f"The lambda's bytecode cannot be read by this Python ({e}); it was probably written by another "
            "Python version. Re-create the layer with a named, registered function instead."
        ) from None
    if not isinstance(code, types.CodeType):
        raise ValueError("A __lambda__ config does not hold Python bytecode.")

    def cell(v):
        return (lambda: v).__closure__[0]

    closure = tuple(cell(v) for v in closure_vals) if closure_vals else None
    return types.FunctionType(code, {"__builtins__": __builtins__}, code.co_name, defaults, closure)


# -------------------------------------------------------------------------------- deserialize


def deserialize_keras_object(config, custom_objects: dict | None = None, safe_mode: bool = True, **kwargs):
    """The object a Keras 3 (or Keras 2) config describes; plain values come back as they are.

    Dicts without ``class_name``/``config`` are deserialized value by value (a compile config).
    Raises :class:`FileFormatError` for configs refused by the safety rules (see module docstring).
    """
    extra = check_config(config, custom_objects, safe_mode)
    custom = {**(custom_objects or {}), **extra}
    with object_registry.CustomObjectScope(custom):
        return _deserialize(config, custom, safe_mode)


def _deserialize(config, custom: dict, safe_mode: bool):
    if config is None or isinstance(config, (bool, int, float)):
        return config
    if isinstance(config, str):
        return custom.get(config, config)
    if isinstance(config, list):
        return [_deserialize(x, custom, safe_mode) for x in config]
    if not isinstance(config, dict):
        raise TypeError(f"Could not parse config: {config!r:.200}")
    if "class_name" not in config or "config" not in config:
        return {k: _deserialize(v, custom, safe_mode) for k, v in config.items()}
    cn, inner = config["class_name"], config["config"]
    if cn == "__numpy__":
        dtype = np.dtype(inner["dtype"])
        if dtype.kind not in _NUMERIC_KINDS:
            raise ValueError(f"__numpy__ values must be numeric. Received: dtype={inner['dtype']!r}")
        return np.array(inner["value"], dtype=dtype)
    if cn == "__bytes__":
        return inner["value"].encode("utf-8")
    if cn == "__tuple__":
        return tuple(_deserialize(x, custom, safe_mode) for x in inner["value"])
    if cn == "__ellipsis__":
        return Ellipsis
    if cn == "__slice__":
        return slice(*(_deserialize(inner.get(k), custom, safe_mode) for k in ("start", "stop", "step")))
    if cn == "__lambda__":
        if safe_mode:
            raise FileFormatError(None, "refusing to load a Python lambda in safe mode (pass safe_mode=False).")
        return _load_lambda(inner)
    if cn == "__keras_tensor__":
        raise ValueError("A symbolic tensor config can only appear inside a Functional model's config.")
    module = config.get("module") or ""
    obj = _custom_lookup(config, custom)
    if cn == "function":
        if obj is not None:
            return obj
        name = inner if isinstance(inner, str) else None
        found = _builtin_lookup(name) if name else None
        if found is None:
            raise ValueError(f"Unknown function '{name}'. Register it or pass it in custom_objects. "
                             f"Received: config={config!r:.200}")
        return found[1]
    from lamina.layers import Layer
    from lamina.layers import deserialize as deserialize_layer

    if obj is None:
        fam = _family(module, cn) if module else None
        families = _families()
        if fam is not None and fam in families and cn in families[fam][0]:
            obj = families[fam][0][cn]
        else:
            found = _builtin_lookup(cn)
            if found is None:
                raise ValueError(f"Unknown object '{cn}' (module '{module}'). Register custom classes with "
                                 "@lamina.saving.register_keras_serializable() or pass them in custom_objects. "
                                 f"Received: config={config!r:.200}")
            fam, obj = found
        if fam != "layers" and families[fam][1] is not None:
            return families[fam][1](config, custom_objects=custom)
    if inspect.isclass(obj) and issubclass(obj, Layer):
        instance = deserialize_layer(config, custom_objects={**custom, cn: obj})
        compile_config = config.get("compile_config")
        if compile_config and hasattr(instance, "compile_from_config"):
            instance.compile_from_config(compile_config)
        return instance
    if not inspect.isclass(obj):
        return obj
    if not hasattr(obj, "from_config"):
        raise TypeError(f"Cannot rebuild '{cn}': the class has no from_config(). Received: config={config!r:.200}")
    params = inspect.signature(obj.from_config).parameters
    if "custom_objects" in params:
        return obj.from_config(inner, custom_objects=custom)
    return obj.from_config(inner)


def load_lambdas(config):
    """(safe_mode=False only) A copy of ``config`` with every ``__lambda__`` entry turned into its function,
    so a layer's ``from_config`` receives a callable (e.g. for ``activation``)."""
    if isinstance(config, list):
        return [load_lambdas(x) for x in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") == "__lambda__":
        return _load_lambda(config.get("config"))
    return {k: load_lambdas(v) for k, v in config.items()}


def json_default(obj):
    """JSON for the NumPy values a config may hold (``Dropout(np.float32(0.5))``): plain numbers and lists."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")
