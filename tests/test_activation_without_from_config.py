"""A custom activation class without ``from_config`` cannot be rebuilt from its config: a TypeError
that says so, as Keras gives (not a call of its constructor with whatever the config holds)."""

import numpy as np
import pytest

import lamina


class Growth:
    """A callable activation object with get_config but no from_config (not a Layer)."""

    def __init__(self, factor):
        self.factor = factor

    def __call__(self, inputs):
        return inputs * self.factor

    def get_config(self):
        return {"factor": self.factor}


class Rebuildable(Growth):
    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _config(cls):
    return {"module": __name__, "class_name": cls.__name__, "config": {"factor": 0.5}, "registered_name": None}


def test_deserialize_refuses_a_class_without_from_config():
    with pytest.raises(TypeError, match="Unable to reconstruct an instance of 'Growth'.*from_config"):
        lamina.activations.deserialize(_config(Growth), custom_objects={"Growth": Growth})
    rebuilt = lamina.activations.deserialize(_config(Rebuildable), custom_objects={"Rebuildable": Rebuildable})
    assert isinstance(rebuilt, Rebuildable) and rebuilt.factor == 0.5


def test_load_model_with_such_an_activation_raises_type_error(tmp_path):
    inputs = lamina.Input((4,))
    model = lamina.Model(inputs, lamina.layers.Dense(1, activation=Growth(0.5))(inputs))
    model.save(tmp_path / "growth.keras")
    with pytest.raises(TypeError, match="Unable to reconstruct an instance"):
        lamina.saving.load_model(tmp_path / "growth.keras", custom_objects={"Growth": Growth})
    loaded = lamina.saving.load_model(tmp_path / "growth.keras", custom_objects={"Growth": Rebuildable})
    x = np.ones((2, 4), "float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
