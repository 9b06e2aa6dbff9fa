"""lamina: a light, Keras-compatible neural-network library on NumPy alone.

Write ``import lamina as keras`` and Keras tutorial code runs.
"""

from lamina import backend, ops, utils
from lamina.autodiff import GradientTape, Tensor, Variable

__version__ = "0.1.0"

__all__ = ["GradientTape", "Tensor", "Variable", "backend", "ops", "utils"]
