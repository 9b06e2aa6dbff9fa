"""A Sequential standardizes its one input's rank as Keras's does: data lacking the Input's last axis
of size 1 gains it (``Input((1,))`` fed a 1-D array), an extra last axis of size 1 is dropped."""

import numpy as np
import pytest

import lamina


def _model(lib):
    return lib.Sequential([lib.Input((1,)), lib.layers.Dense(2, activation="relu"), lib.layers.Dense(1)])


@pytest.mark.parametrize("jit_compile", [True, False])
def test_fit_predict_evaluate_on_one_dimensional_data_like_keras(keras, jit_compile):
    ours, theirs = _model(lamina), _model(keras)
    theirs.set_weights(ours.get_weights())
    x, y = np.array([1.0, 2.0, 3.0, 4.0], "float32"), np.array([1.0, 2.0, 3.0, 4.0], "float32")
    ours.compile(optimizer=lamina.optimizers.SGD(0.01), loss="mse", jit_compile=jit_compile)
    theirs.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    got = ours.fit(x, y, batch_size=2, shuffle=False, epochs=2, verbose=0).history["loss"]
    want = theirs.fit(x, y, batch_size=2, shuffle=False, epochs=2, verbose=0).history["loss"]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5)
    np.testing.assert_allclose(ours.evaluate(x, y, verbose=0), theirs.evaluate(x, y, verbose=0), rtol=1e-5)


def test_direct_call_takes_a_trailing_axis_of_one_away_or_adds_it():
    model = _model(lamina)
    flat = np.array([1.0, 2.0], "float32")
    want = model(flat[:, None])
    np.testing.assert_array_equal(model(flat), want)
    with pytest.raises(ValueError, match="incompatible"):
        model(np.ones((2, 3), "float32"))
