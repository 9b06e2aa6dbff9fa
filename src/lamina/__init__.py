"""lamina: a light, Keras-compatible neural-network library on NumPy alone.

Write ``import lamina as keras`` and Keras tutorial code runs.

Modules a model needs to exist (layers, activations, initializers...) load with the package; the
rest (callbacks, datasets, losses, metrics, optimizers, saving...) load on first use, which keeps
``import lamina`` cheap.
"""

import importlib

from lamina import (
    activations,
    backend,
    constraints,
    dtype_policies,
    initializers,
    layers,
    models,
    ops,
    regularizers,
    tree,
    utils,
)
from lamina.autodiff import GradientTape, Tensor, Variable
from lamina.dtype_policies import DTypePolicy, FloatDTypePolicy
from lamina.layers import Input, InputLayer, Layer
from lamina.models import Model, Sequential
from lamina.version import __version__

_LAZY = ("callbacks", "config", "datasets", "diagnostics", "distribute", "losses", "metrics", "mixed_precision",
         "optimizers", "plot", "random", "saving", "wrappers")


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f"lamina.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'lamina' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DTypePolicy", "FloatDTypePolicy", "GradientTape", "Input", "InputLayer", "__version__", "Layer", "Model",
    "Sequential", "Tensor", "Variable", "activations", "backend", "callbacks", "config", "constraints", "datasets",
    "dtype_policies", "initializers", "layers", "losses", "metrics", "mixed_precision", "models", "ops", "optimizers",
    "quantizers", "random", "regularizers", "saving", "tree", "utils", "wrappers",
]
