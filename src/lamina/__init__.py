"""lamina: a light, Keras-compatible neural-network library on NumPy alone.

Write ``import lamina as keras`` and Keras tutorial code runs.
"""

from lamina import (
    activations,
    backend,
    callbacks,
    constraints,
    datasets,
    initializers,
    layers,
    losses,
    metrics,
    models,
    ops,
    optimizers,
    regularizers,
    saving,
    utils,
)
from lamina.autodiff import GradientTape, Tensor, Variable
from lamina.layers import Input, InputLayer, Layer
from lamina.models import Model, Sequential

__version__ = "0.1.0"

__all__ = [
    "GradientTape", "Input", "InputLayer", "Layer", "Model", "Sequential", "Tensor", "Variable",
    "activations", "backend", "callbacks", "constraints", "datasets", "initializers", "layers", "losses",
    "metrics", "models", "ops", "optimizers", "regularizers", "saving", "utils",
]
