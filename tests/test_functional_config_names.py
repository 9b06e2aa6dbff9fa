"""A Functional config connects its layers by each entry's saved "name", as Keras's does, so a custom
layer whose ``get_config`` leaves ``name`` out (and gets a fresh name when rebuilt) still connects."""

import numpy as np

import lamina


class Scale(lamina.layers.Layer):
    """A custom layer whose config is only its factor (no name, no dtype): a common user pattern."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {"factor": self.factor}


def _model():
    inputs = lamina.Input((3,))
    hidden = Scale(2.0)(inputs)
    outputs = lamina.layers.Dense(2)(Scale(0.5)(hidden))  # two of them: the rebuilt names shift
    return lamina.Model(inputs, outputs)


def test_from_config_connects_layers_whose_config_has_no_name():
    model = _model()
    rebuilt = lamina.Model.from_config(model.get_config(), custom_objects={"Scale": Scale})
    rebuilt.set_weights(model.get_weights())
    x = np.random.default_rng(0).random((4, 3)).astype("float32")
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    assert [type(layer).__name__ for layer in rebuilt.layers] == ["InputLayer", "Scale", "Scale", "Dense"]


def test_saved_model_with_a_nameless_custom_layer_config_loads(tmp_path):
    model = _model()
    path = tmp_path / "custom.keras"
    model.save(path)
    loaded = lamina.saving.load_model(path, custom_objects={"Scale": Scale})
    x = np.random.default_rng(1).random((4, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
