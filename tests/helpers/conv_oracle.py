"""Oracle comparisons for the convolution-family layers: the same layer in lamina and in real Keras (torch
backend), identical weights, then the output, the input gradient and every weight gradient compared."""

from __future__ import annotations

import contextlib
import json

import numpy as np

import lamina
from tests.helpers.keras_files import read_members
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


def _conv_configs(model_config) -> list:
    """The saved configs of the convolution layers, without the dtype (Keras tags a shared policy object)."""
    return [{k: v for k, v in c["config"].items() if k != "dtype"} for c in model_config["config"]["layers"]
            if "Conv" in c["class_name"]]


def check_keras_file_round_trips(keras, km, x: np.ndarray, tmp_path) -> None:
    """Keras model ``km`` saved as ``.keras`` loads in lamina with equal predictions; lamina's ``.keras``
    re-save has Keras's conv configs and loads in Keras; lamina's ``.h5`` loads in Keras; Keras's legacy
    ``.h5`` loads in lamina."""
    km.save(tmp_path / "k.keras")
    lm = lamina.saving.load_model(tmp_path / "k.keras")
    expected = keras.ops.convert_to_numpy(km(x))
    np.testing.assert_allclose(lm.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)
    lm.save(tmp_path / "l.keras")
    ours = json.loads(read_members(tmp_path / "l.keras")["config.json"])
    theirs = json.loads(read_members(tmp_path / "k.keras")["config.json"])
    assert _conv_configs(ours) == _conv_configs(theirs)
    k2 = keras.saving.load_model(tmp_path / "l.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(k2(x)), expected, rtol=1e-4, atol=1e-5)
    lm.save(tmp_path / "l.h5")
    k3 = keras.saving.load_model(tmp_path / "l.h5")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(k3(x)), expected, rtol=1e-4, atol=1e-5)
    km.save(tmp_path / "k.h5")
    np.testing.assert_allclose(lamina.saving.load_model(tmp_path / "k.h5").predict(x, verbose=0), expected,
                               rtol=1e-4, atol=1e-5)
