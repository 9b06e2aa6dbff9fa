"""``Lambda``: a layer that applies a Python function, ``function(inputs, **arguments)``."""

from __future__ import annotations

import base64
import builtins
import inspect
import marshal
import types

import numpy as np

from lamina import activations, backend
from lamina.layers.layer import Layer
from lamina.saving import object_config

_SAFE_MODE_MESSAGE = (
    "Requested the deserialization of a `Lambda` layer whose `function` is a Python lambda. This carries a "
    "potential risk of arbitrary code execution and thus it is disallowed by default. If you trust the source "
    "of the artifact, you can override this error by passing `safe_mode=False` to the loading function, or "
    "calling `lamina.config.enable_unsafe_deserialization()`."
)


class Lambda(Layer):
    """Wraps ``function`` as a layer: ``call(x) = function(x, **arguments)`` (plus ``mask=`` /
    ``training=`` when the function takes them).

    ``output_shape``: None (found by calling the function on zeros), a shape without the batch axis,
    or a function of the full input shape. ``mask``: None, a function ``(inputs, mask) -> mask``, or
    a fixed mask. A Python lambda is saved as its marshalled bytecode (Keras's layout), which only the
    same Python version can read, and which loads only with safe mode off.
    """

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        if not callable(function):
            raise ValueError(f"Lambda: `function` must be callable. Received: function={function!r}")
        super().__init__(**kwargs)
        self.arguments = arguments or {}
        self.function = function
        self.supports_masking = mask is not None
        self.mask = mask
        self._output_shape = output_shape
        try:
            params = inspect.signature(function).parameters
        except (TypeError, ValueError):  # some builtins have no signature
            params = {}
        self._fn_expects_training_arg = "training" in params
        self._fn_expects_mask_arg = "mask" in params

    def compute_output_shape(self, input_shape):
        if self._output_shape is None:
            try:
                return super().compute_output_shape(input_shape)
            except Exception as e:  # any failure of the user's function on zeros
                raise NotImplementedError(
                    "We could not automatically infer the shape of the Lambda's output. Please specify the "
                    f"`output_shape` argument for this Lambda layer. Received: error {type(e).__name__}: {e}"
                ) from None
        if callable(self._output_shape):
            return self._output_shape(input_shape)
        first = input_shape[0] if isinstance(input_shape, list) and input_shape and \
            isinstance(input_shape[0], (tuple, list)) else input_shape
        batch = first[0] if first else None
        if isinstance(self._output_shape, list) and self._output_shape and \
                isinstance(self._output_shape[0], (tuple, list)):
            return [(batch,) + tuple(s) for s in self._output_shape]
        return (batch,) + tuple(self._output_shape)

    def call(self, inputs, mask=None, training=None):
        kwargs = dict(self.arguments)  # a copy: the function may not change the stored arguments
        if self._fn_expects_mask_arg:
            kwargs["mask"] = mask if mask is not None else backend.get_keras_mask(inputs)
        if self._fn_expects_training_arg:
            kwargs["training"] = training
        out = self.function(inputs, **kwargs)
        if self.mask is not None and isinstance(out, np.ndarray):
            backend.set_keras_mask(out, self.compute_mask(inputs, mask))
        return out

    def compute_mask(self, inputs, mask=None):
        if callable(self.mask):
            return self.mask(inputs, mask)
        return self.mask

    # ------------------------------------------------------------------ config

    def get_config(self) -> dict:
        config = {"function": _serialize_function(self.function)}
        if self._output_shape is not None:
            config["output_shape"] = (_serialize_function(self._output_shape) if callable(self._output_shape)
                                      else self._output_shape)
        if self.mask is not None:
            config["mask"] = (_serialize_function(self.mask) if callable(self.mask)
                              else np.asarray(self.mask).tolist())
        config["arguments"] = dict(self.arguments)
        return {**super().get_config(), **config}

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None, safe_mode: bool | None = None):
        """Rebuild from ``get_config``'s dict. A stored Python lambda is unmarshalled only when safe mode
        is off: ``safe_mode=False`` here, or ``lamina.config.enable_unsafe_deserialization()``. Without
        either this fails closed (a direct ``from_config`` call is treated as safe mode)."""
        config = dict(config)
        unsafe_ok = backend.effective_safe_mode(safe_mode is not False) is False
        config["function"] = _deserialize_function(config["function"], custom_objects, unsafe_ok)
        if "output_shape" in config:
            shape = config["output_shape"]
            if isinstance(shape, dict):
                shape = _deserialize_function(shape, custom_objects, unsafe_ok)
            elif isinstance(shape, list) and all(isinstance(d, (int, type(None))) for d in shape):
                shape = tuple(shape)
            config["output_shape"] = shape
        if isinstance(config.get("mask"), dict):
            config["mask"] = _deserialize_function(config["mask"], custom_objects, unsafe_ok)
        return cls(**config)


def dump_lambda(fn: types.FunctionType) -> tuple:
    """``(code, defaults, closure)`` as Keras's ``python_utils.func_dump`` writes them: base64 of the marshalled
    code object, the default values, the closure cells' values (None where there are none)."""
    code = base64.encodebytes(marshal.dumps(fn.__code__)).decode("ascii")
    closure = tuple(c.cell_contents for c in fn.__closure__) if fn.__closure__ else None
    return code, fn.__defaults__, closure


def _serialize_function(fn) -> dict:
    """Keras's layouts: a Python lambda as ``{"class_name": "__lambda__", "config": {"code", "defaults",
    "closure"}}`` (:func:`dump_lambda`), a named function by its (registered) name."""
    if isinstance(fn, types.LambdaType) and fn.__name__ == "<lambda>":
        code, defaults, closure = dump_lambda(fn)
        return {"class_name": "__lambda__", "config": {"code": code, "defaults": defaults, "closure": closure}}
    if inspect.isfunction(fn) or inspect.isbuiltin(fn):
        return object_config.serialize_function(fn)
    if callable(fn):
        return object_config.serialize_object(fn, "lamina", ())
    raise ValueError(f"Invalid input type for serialization. Received: {fn} of type {type(fn)}.")


def _deserialize_function(config, custom_objects, unsafe_ok: bool):
    if callable(config):
        return config  # already rebuilt (the whole-model loader turns lambdas into functions first)
    if isinstance(config, dict) and config.get("class_name") == "__lambda__":
        if not unsafe_ok:
            raise ValueError(_SAFE_MODE_MESSAGE)
        return _load_lambda(config.get("config") or {})
    name = config.get("config") if isinstance(config, dict) and config.get("class_name") == "function" else config
    if isinstance(name, str) and not (custom_objects and name in custom_objects) and \
            object_config.get_registered_object(name, custom_objects) is None and \
            name in activations._BUILTINS:
        return activations.get(name)  # a built-in activation by name (e.g. Lambda(activations.relu))
    return object_config.deserialize_object(config, "Lambda function", {}, custom_objects)


def _load_lambda(inner: dict) -> types.FunctionType:
    """The function of a ``func_dump`` triple (only reached with safe mode off)."""
    code = inner.get("code")
    if isinstance(code, (list, tuple)):  # an older dump: (code, defaults, closure) in one entry
        code, defaults, closure_values = (list(code) + [None, None])[:3]
    else:
        defaults, closure_values = inner.get("defaults"), inner.get("closure")
    if not isinstance(code, str):
        raise ValueError(f"A Lambda's stored lambda must hold base64 bytecode. Received: code={code!r:.100}")
    try:
        code_obj = marshal.loads(base64.b64decode(code.encode("ascii")))
    except (ValueError, TypeError, EOFError) as e:
        raise ValueError(f"The Lambda's bytecode cannot be read by this Python ({e}); it was probably written by "
                         "another Python version. Received: a stored lambda") from None
    if not isinstance(code_obj, types.CodeType):
        raise ValueError(f"A Lambda's code does not hold Python bytecode. Received: {type(code_obj).__name__}")
    closure = tuple(_cell(v) for v in closure_values) if closure_values else None
    if len(closure or ()) != len(code_obj.co_freevars):
        raise ValueError(f"The lambda uses {len(code_obj.co_freevars)} closure variable(s) but the config stores "
                         f"{len(closure or ())}. Received: closure={closure_values!r:.200}")
    # As Keras's func_load: the function sees the builtins only (the saving program's globals are not stored).
    return types.FunctionType(code_obj, {"__builtins__": builtins}, code_obj.co_name,
                              tuple(defaults) if defaults else None, closure)


def _cell(value):
    """A closure cell holding ``value`` (the type has no public constructor before Python 3.12)."""
    return (lambda: value).__closure__[0]
