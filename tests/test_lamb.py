"""Lamb against Keras: per-variable trust ratios, weight decay, config, and training through a model."""

import numpy as np
import pytest

import lamina
from lamina import layers, optimizers
from lamina.autodiff import Variable


def _np(keras, x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("kwargs", [{}, {"learning_rate": 0.05, "beta_1": 0.5, "beta_2": 0.7, "epsilon": 1e-4},
                                    {"learning_rate": 0.01, "weight_decay": 0.1}])
def test_steps_match_keras_per_variable(keras, kwargs):
    rng = np.random.default_rng(0)
    inits = [rng.normal(size=(3, 4)).astype("float32"), np.zeros(4, "float32"), rng.normal(size=(5,)).astype("float32")]
    # Named: an unnamed Keras variable advances Keras's session-wide name counter that other tests read.
    kvars = [keras.Variable(a.copy(), name=f"w{i}") for i, a in enumerate(inits)]
    lvars = [Variable(a.copy(), name=f"w{i}") for i, a in enumerate(inits)]
    kopt, lopt = keras.optimizers.Lamb(**kwargs), optimizers.Lamb(**kwargs)
    for step in range(6):
        grads = [rng.normal(size=a.shape).astype("float32") * (step + 1) for a in inits]
        kopt.apply([keras.ops.convert_to_tensor(g) for g in grads], kvars)
        lopt.apply(grads, lvars)
        for lv, kv in zip(lvars, kvars, strict=True):
            np.testing.assert_allclose(lv.numpy(), _np(keras, kv.value), rtol=2e-5, atol=1e-6, err_msg=str(step))
    for a, b in zip(lopt.variables, kopt.variables, strict=True):
        np.testing.assert_allclose(a.numpy(), _np(keras, b.value), rtol=2e-5, atol=1e-6)


def test_config_round_trips_through_keras(keras):
    lopt = optimizers.Lamb(learning_rate=0.5, beta_1=0.5, beta_2=0.67, epsilon=1e-5, name="lamb_x")
    kopt = keras.optimizers.Lamb(learning_rate=0.5, beta_1=0.5, beta_2=0.67, epsilon=1e-5, name="lamb_x")
    assert lopt.get_config() == kopt.get_config()
    back = optimizers.deserialize(keras.saving.serialize_keras_object(kopt))
    assert isinstance(back, optimizers.Lamb) and back.get_config() == lopt.get_config()
    assert isinstance(optimizers.get("lamb"), optimizers.Lamb)


def test_model_training_takes_the_norms_per_layer_like_keras(keras):
    model = lamina.Sequential([lamina.Input((4,)), layers.Dense(8, activation="tanh"), layers.Dense(2)])
    kmodel = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(2)])
    kmodel.set_weights([w.numpy() for w in model.weights])
    model.compile(optimizer=optimizers.Lamb(0.01), loss="mse")
    kmodel.compile(optimizer=keras.optimizers.Lamb(0.01), loss="mse")
    rng = np.random.default_rng(1)
    for _ in range(4):
        x, y = rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 2)).astype("float32")
        model.train_on_batch(x, y)
        kmodel.train_on_batch(x, y)
    for lw, kw in zip(model.weights, kmodel.weights, strict=True):
        np.testing.assert_allclose(lw.numpy(), _np(keras, kw.value), rtol=1e-4, atol=1e-5)
