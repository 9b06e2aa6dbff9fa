"""Oracle comparisons for the convolution-family layers: the same layer in lamina and in real Keras (torch
backend), identical weights, then the output, the input gradient and every weight gradient compared."""

from __future__ import annotations

import contextlib

import numpy as np

import lamina
from tests.helpers.layer_harness import keras_forward_and_grads, lamina_forward_and_grads

RTOL, ATOL = 1e-4, 1e-5


def as_tuple(value, rank: int) -> tuple:
    return (value,) * rank if isinstance(value, int) else tuple(value)


def compare_with_keras(keras, name: str, kwargs: dict, x: np.ndarray, rtol: float = RTOL, atol: float = ATOL):
    """Build ``name(**kwargs)`` in both libraries on ``x``, copy lamina's weights into Keras, and assert equal
    output shapes (also from ``compute_output_shape``), outputs, input gradients and weight gradients.
    Returns the lamina layer."""
    ours = getattr(lamina.layers, name)(**kwargs)
    theirs = getattr(keras.layers, name)(**kwargs)
    expected_shape = tuple(theirs.compute_output_shape(x.shape))
    assert tuple(ours.compute_output_shape(x.shape)) == expected_shape
    ours(x)
    theirs(x)
    assert [w.shape for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    # a spread of weights (the default zero bias would hide bias mistakes)
    rng = np.random.default_rng(7)
    ours.set_weights([rng.standard_normal(w.shape).astype("float32") for w in ours.weights])
    theirs.set_weights(ours.get_weights())
    proj = rng.standard_normal(expected_shape).astype("float32")
    with _one_torch_thread():
        ky, kdx, kdw = keras_forward_and_grads(theirs, x, proj)
    y, dx, dw = lamina_forward_and_grads(ours, x, proj)
    assert y.shape == expected_shape and y.dtype == np.float32
    np.testing.assert_allclose(y, ky, rtol=rtol, atol=atol, err_msg="output")
    np.testing.assert_allclose(dx, kdx, rtol=rtol, atol=atol, err_msg="input gradient")
    for w, g, kg in zip(ours.trainable_weights, dw, kdw, strict=True):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, kg, rtol=rtol, atol=atol * max(1.0, float(np.abs(kg).max())),
                                   err_msg=f"gradient of {w.name}")
    return ours


@contextlib.contextmanager
def _one_torch_thread():
    """torch's thread pool costs ~40 ms per tiny convolution on a busy machine; one thread takes ~0.1 ms."""
    import torch  # lazy: the oracle's backend, needed only by the tests that use Keras

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def spatial_input(rank: int, data_format: str, spatial: tuple, channels: int = 3, batch: int = 2,
                  seed: int = 0) -> np.ndarray:
    shape = (batch, *spatial, channels) if data_format == "channels_last" else (batch, channels, *spatial)
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")
