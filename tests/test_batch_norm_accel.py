"""The compiled training batch normalization (lamina.layers.batch_norm_accel, numba) against float64 arithmetic
and against the NumPy path (``LAMINA_ACCELERATE=0``): outputs, batch statistics and all three gradients."""

import importlib.util

import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.layers.batch_normalization import batch_norm_train_kernel

needs_numba = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba (the fast extra) absent")


def _reference(x, gamma, beta, eps, g):
    """float64 batch normalization over every axis but the last, and its gradients."""
    x, g = x.astype(np.float64), g.astype(np.float64)
    red = tuple(range(x.ndim - 1))
    n = x.size // x.shape[-1]
    mean, var = x.mean(red), x.var(red)
    s = 1 / np.sqrt(var + eps)
    xhat = (x - mean) * s
    gam = np.ones(x.shape[-1]) if gamma is None else gamma.astype(np.float64)
    bet = np.zeros(x.shape[-1]) if beta is None else beta.astype(np.float64)
    y = xhat * gam + bet
    dbeta, dgamma = g.sum(red), (g * xhat).sum(red)
    dx = gam * s * (g - dbeta / n - xhat * dgamma / n)
    return y, mean, var, dx, dgamma, dbeta


def _run(x, gamma, beta, eps, g, need_x=True):
    y, mean, var, vjp = batch_norm_train_kernel(x, gamma, beta, x.ndim - 1, eps, None, need_x)
    parts = list(vjp(g))
    dx = parts.pop(0)
    dgamma = parts.pop(0) if gamma is not None else None
    dbeta = parts.pop(0) if beta is not None else None
    return y, mean, var, dx, dgamma, dbeta


@needs_numba
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("affine", [(True, True), (True, False), (False, True), (False, False)])
@pytest.mark.parametrize("shape, offset", [((6, 5, 7, 3), 0.0), ((4000, 8), 50.0), ((3, 9, 16), -3.0)])
def test_compiled_equals_float64_and_the_numpy_path(monkeypatch, dtype, affine, shape, offset):
    """Each result within float32 rounding of float64's (a large mean included: the shifted sums keep the
    variance exact where a naive E[x^2] - E[x]^2 would cancel), and agreeing with the NumPy path."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 2 + offset).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    c = shape[-1]
    gamma = (rng.random(c) + 0.5).astype(dtype) if affine[0] else None
    beta = rng.standard_normal(c).astype(dtype) if affine[1] else None
    want = _reference(x, gamma, beta, 1e-3, g)
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    got = _run(x, gamma, beta, 1e-3, g)
    monkeypatch.setenv("LAMINA_ACCELERATE", "0")
    numpy_path = _run(x, gamma, beta, 1e-3, g)
    tol = 2e-6 if dtype == "float32" else 1e-12
    for name, a, w, b in zip(("y", "mean", "var", "dx", "dgamma", "dbeta"), got, want, numpy_path, strict=True):
        if b is None:
            assert a is None, name
            continue
        assert a.dtype == np.dtype(dtype) and a.shape == b.shape, name
        scale = np.abs(w).max() + 1e-30
        assert np.abs(a - w).max() / scale < tol * (20 if name in ("mean", "var") and offset else 1), name
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * scale, err_msg=name)


@needs_numba
def test_without_input_gradient_and_constant_channels(monkeypatch):
    """need_x=False gives no dx; a channel whose values are all equal has variance 0, output beta, and finite
    gradients."""
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    x = np.ones((10, 4), np.float32) * np.array([1.0, 2.0, -3.0, 0.0], np.float32)
    x[:, 3] = np.arange(10)
    g = np.ones_like(x)
    y, mean, var, dx, dgamma, dbeta = _run(x, np.ones(4, np.float32), np.full(4, 0.5, np.float32), 1e-3, g,
                                           need_x=False)
    assert dx is None
    np.testing.assert_array_equal(var[:3], 0)
    np.testing.assert_allclose(y[:, :3], 0.5, atol=1e-6)
    np.testing.assert_allclose(mean, [1, 2, -3, 4.5], rtol=1e-6)
    assert np.isfinite(dgamma).all() and np.isfinite(dbeta).all()


@needs_numba
def test_a_convnet_trains_alike_on_both_paths(monkeypatch):
    """Conv2D -> BatchNormalization -> relu through fit: weights and moving statistics after two epochs agree
    between the compiled kernels and the NumPy path. (No convolution bias: before a batch normalization its
    gradient is zero up to rounding, which Adam's normalized steps would turn into noise on either path.)"""
    def train(flag):
        monkeypatch.setenv("LAMINA_ACCELERATE", flag)
        lamina.utils.set_random_seed(3)
        model = lamina.Sequential([layers.Input((8, 8, 2)), layers.Conv2D(6, 3, padding="same", use_bias=False),
                                   layers.BatchNormalization(), layers.Activation("relu"), layers.Flatten(),
                                   layers.Dense(3, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        rng = np.random.default_rng(5)
        model.fit(rng.standard_normal((96, 8, 8, 2)).astype("float32"), rng.integers(0, 3, 96), batch_size=32,
                  epochs=2, shuffle=False, verbose=0)
        return model.get_weights()

    for a, b in zip(train("1"), train("0"), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
