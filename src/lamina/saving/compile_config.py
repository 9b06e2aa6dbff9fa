"""A model's compile arguments as Keras 3's ``compile_config`` dict, and back.

Keras writes ``{"optimizer", "loss", "loss_weights", "metrics", "weighted_metrics", "run_eagerly",
"steps_per_execution", "jit_compile"}`` with each object serialized (the optimizer always as the
object, even when compile got a name); strings stay strings. ``jit_compile`` is written as compile
received it once ``run_eagerly`` is applied (``"auto"`` stays ``"auto"``, where Keras writes its backend's
resolution): a file read back by Keras then follows that backend's own default rather than lamina's.
"""

from __future__ import annotations

import math
import warnings

from lamina.saving import serialization_lib
from lamina.saving.errors import FileFormatError


def get_compile_config(model) -> dict:
    """The serialized compile arguments of a compiled model, else ``{}`` (as Keras, which then writes
    ``"compile_config": {}`` for an uncompiled model)."""
    raw = getattr(model, "_compile_config", None)
    if not getattr(model, "compiled", False) or raw is None:
        return {}
    ser = serialization_lib.serialize_keras_object
    opt = model.optimizer
    if getattr(opt, "_auto_wrapped", False):  # as Keras: compile's optimizer; compiling again wraps it again
        opt = opt.inner_optimizer
    return {
        "optimizer": ser(opt),
        "loss": ser(raw.get("loss")),
        "loss_weights": ser(raw.get("loss_weights")),
        "metrics": ser(raw.get("metrics")),
        "weighted_metrics": ser(raw.get("weighted_metrics")),
        "run_eagerly": bool(raw.get("run_eagerly", False)),
        "steps_per_execution": 1,
        "jit_compile": raw.get("jit_compile", "auto"),
    }


def compile_from_config(model, config: dict) -> None:
    """Compile ``model`` from :func:`get_compile_config`'s dict and build its optimizer (as Keras does).

    A model whose class overrides ``compile`` is left uncompiled, with Keras's warning: its ``compile``
    may take other arguments than the saved ones.
    """
    if not isinstance(config, dict):
        raise ValueError(f"A compile config must be a dict. Received: {config!r:.200}")
    if _compile_is_custom(model):
        warnings.warn("`compile()` was not called as part of model loading because the model's `compile()` method "
                      f"is custom. All subclassed Models that have `compile()` overridden (here "
                      f"'{type(model).__name__}') should also override `get_compile_config()` and "
                      "`compile_from_config(config)`. Alternatively, you can call `compile()` manually after "
                      "loading.", stacklevel=2)
        return
    check_optimizer_config(config.get("optimizer"))
    args = serialization_lib.deserialize_keras_object(config)
    # Not jit_compile: a file's value is the saving backend's resolution of "auto" (Keras on torch
    # writes False), not a wish for the slower tape step, so lamina applies its own default.
    allowed = ("optimizer", "loss", "loss_weights", "metrics", "weighted_metrics", "run_eagerly",
               "steps_per_execution")
    kwargs = {k: args[k] for k in allowed if k in args}
    if kwargs.get("optimizer") is None:
        kwargs.pop("optimizer", None)
    model.compile(**kwargs, lint=False)  # the file's architecture is not the user's code to lint
    prepare_optimizer(model)


def _compile_is_custom(model) -> bool:
    """Whether the model's class (the user's, not lamina's) defines its own ``compile``."""
    owner = next((k for k in type(model).__mro__ if "compile" in vars(k)), None)
    return owner is not None and owner.__module__.split(".")[0] != "lamina"


def prepare_optimizer(model) -> None:
    """Build a compiled, built model's optimizer on its trainable weights (as Keras's compile_from_config)."""
    opt = getattr(model, "optimizer", None)
    if opt is not None and getattr(model, "compiled", False) and not opt.built and model.built:
        opt.build(model.trainable_weights)


def _numbers(value, path: str):
    """(dotted path, float) for every float in a config tree (ints are always finite)."""
    if isinstance(value, float):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{path}[{i}]")


def check_optimizer_config(config, filename=None) -> None:
    """Refuse an optimizer config (from a file) with a non-finite hyper-parameter — NaN or inf in the
    learning rate, a beta, epsilon, a schedule's rate... — which would turn every weight into NaN at the
    first step. ``config``: a serialized optimizer (or a name, or None: nothing to check)."""
    if not isinstance(config, dict):
        return
    inner = config.get("config")
    name = inner.get("name") if isinstance(inner, dict) else None
    for path, value in _numbers(inner, ""):
        if not math.isfinite(value):
            raise FileFormatError(filename, f"optimizer '{name or config.get('class_name')}' has the non-finite "
                                        f"hyper-parameter '{path}' = {value}: the first training step would turn "
                                        f"every weight into NaN. Received: {path}={value}")
