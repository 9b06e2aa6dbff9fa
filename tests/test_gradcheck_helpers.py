"""The gradient-check helpers catch what they claim to: a wrong gradient in float64, a float32 gradient
that loses precision, an empty batch the code cannot take, and a wrong layer-weight gradient."""

import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.autodiff import record, unwrap
from tests.helpers import check_gradients, check_layer_gradients

X = np.random.default_rng(0).normal(size=(3, 4))


def _square(grad_factor=2.0, float32_decimals=None):
    """``x ** 2`` with a hand-written vjp ``grad_factor * x * g``, rounded for float32 inputs if asked."""

    def f(x):
        v = unwrap(x)

        def vjp(g):
            grad = grad_factor * v * g
            if float32_decimals is not None and v.dtype == np.float32:
                grad = np.round(grad, float32_decimals)
            return (grad,)

        return record(v * v, (x,), vjp)

    return f


def test_a_correct_gradient_passes_every_sweep():
    check_gradients(_square(), X, empty_batch=True)


def test_a_wrong_gradient_fails_the_float64_check():
    with pytest.raises(AssertionError, match="input 0"):
        check_gradients(_square(grad_factor=3.0), X)


def test_a_float32_gradient_that_loses_precision_fails_the_float32_sweep():
    check_gradients(_square(float32_decimals=1), X, float32=False)  # float64 alone cannot see it
    with pytest.raises(AssertionError, match=r"input 0 \(float32\)"):
        check_gradients(_square(float32_decimals=1), X)


def test_a_function_that_cannot_take_an_empty_batch_fails_the_empty_batch_sweep():
    def row_max(x):  # NumPy's max of no rows is an error
        return lamina.ops.max(x, axis=0)

    check_gradients(row_max, X)
    with pytest.raises(ValueError):
        check_gradients(row_max, X, empty_batch=True)


class _Matmul(layers.Layer):
    """``x @ kernel`` with a hand-written vjp; subclasses break one part of it."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 2), initializer="random_normal", name="kernel")

    def kernel_grad(self, v, g):
        return v.T @ g

    def call(self, x):
        v, k = unwrap(x), unwrap(self.kernel)
        return record(v @ k, (x, self.kernel), lambda g: (g @ k.T, self.kernel_grad(v, g)))


class _WrongKernelGradient(_Matmul):
    def kernel_grad(self, v, g):
        return 2 * v.T @ g


class _RoundsInFloat32(_Matmul):
    def kernel_grad(self, v, g):
        grad = v.T @ g
        return np.round(grad, 1) if v.dtype == np.float32 else grad


class _CentresOnTheBatch(_Matmul):
    def call(self, x):
        return super().call(lamina.ops.subtract(x, lamina.ops.max(x, axis=0)))


def test_a_correct_layer_passes_every_sweep():
    layer = _Matmul(dtype="float64")
    layer(X)
    check_layer_gradients(layer, X)


def test_a_wrong_weight_gradient_fails_the_layer_check():
    layer = _WrongKernelGradient(dtype="float64")
    layer(X)
    with pytest.raises(AssertionError, match="weight 'kernel'"):
        check_layer_gradients(layer, X, float32=False, empty_batch=False)


def test_a_layer_that_loses_float32_precision_fails_the_layer_sweep():
    layer = _RoundsInFloat32(dtype="float64")
    layer(X)
    check_layer_gradients(layer, X, float32=False)
    with pytest.raises(AssertionError, match=r"weight 'kernel' \(float32\)"):
        check_layer_gradients(layer, X)


def test_a_layer_that_cannot_take_an_empty_batch_fails_the_layer_sweep():
    layer = _CentresOnTheBatch(dtype="float64")
    layer(X)
    check_layer_gradients(layer, X, empty_batch=False)
    with pytest.raises(ValueError):
        check_layer_gradients(layer, X)
