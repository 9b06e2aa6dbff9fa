"""Saving a model whose trainable variables changed after its optimizer was built (quantized after
training, or a layer frozen): the optimizer's state is saved as it was built, as Keras saves it."""

import io
import warnings
import zipfile

import h5py
import numpy as np
import pytest

import lamina


def _trained(lib):
    rng = np.random.default_rng(0)
    inputs = lib.Input(shape=(6,))
    outputs = lib.layers.Dense(1, name="target")(lib.layers.Dense(8, activation="relu", name="hidden")(inputs))
    model = lib.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="mse")
    model.fit(rng.random((32, 6)).astype("float32"), rng.random((32, 1)).astype("float32"), batch_size=16, verbose=0)
    return model


def _optimizer_shapes(path) -> list:
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as h5:
        group = h5["optimizer/vars"]
        return [group[str(i)].shape for i in range(len(group))]


def test_quantized_after_training_saves_like_keras_and_reloads_with_keras_warning(keras, tmp_path):
    ours, theirs = _trained(lamina), _trained(keras)
    ours.quantize("int8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns that its InputLayer has no `quantize`
        theirs.quantize("int8")
    ours.save(tmp_path / "ours.keras")
    theirs.save(tmp_path / "theirs.keras")
    assert _optimizer_shapes(tmp_path / "ours.keras") == _optimizer_shapes(tmp_path / "theirs.keras")
    # The reloaded optimizer is built on the two biases left trainable: Keras warns and skips the state.
    with pytest.warns(UserWarning, match=r"Skipping variable loading for optimizer 'adam\w*'.* 6 variables.* 10 var"):
        loaded = lamina.saving.load_model(tmp_path / "ours.keras")
    x = np.random.default_rng(1).random((4, 6)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), ours.predict(x, verbose=0))


def test_freezing_a_layer_after_training_still_saves_the_optimizer_state(tmp_path):
    model = _trained(lamina)
    model.get_layer("hidden").trainable = False
    model.save(tmp_path / "frozen.keras")
    saved = _optimizer_shapes(tmp_path / "frozen.keras")
    assert saved == [tuple(v.shape) for v in model.optimizer.variables]
