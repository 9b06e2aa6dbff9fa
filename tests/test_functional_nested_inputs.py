"""Inputs nested deeper than a Functional's Inputs (``([a], b)`` for ``[in_a, in_b]``) are read leaf by
leaf with Keras's structure warning; a model built on a nested structure takes it silently."""

import numpy as np
import pytest

import lamina


def _two_branch(lib):
    def branch(units, name):
        inputs = lib.Input((4,))
        return lib.Model(inputs, lib.layers.Dense(units)(inputs), name=name)

    a, b = lib.Input((4,)), lib.Input((4,))
    return lib.Model([a, b], [branch(2, "branch_a")(a), branch(3, "branch_b")(b)])


def _x():
    rng = np.random.default_rng(0)
    return [rng.random((2, 4)).astype("float32")], rng.random((2, 4)).astype("float32")


def test_nested_inputs_warn_and_match_keras_also_after_reloading(keras, tmp_path):
    ours, theirs = _two_branch(lamina), _two_branch(keras)
    theirs.set_weights(ours.get_weights())
    with pytest.warns(UserWarning, match="doesn't match the expected structure"):
        got = ours(_x())
    with pytest.warns(UserWarning, match="doesn't match the expected structure"):
        want = theirs(_x())
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), w.detach().numpy(), rtol=1e-6)
    ours.save(tmp_path / "nested.keras")
    loaded = lamina.saving.load_model(tmp_path / "nested.keras")
    with pytest.warns(UserWarning, match="doesn't match the expected structure"):
        again = loaded(_x())
    for g, a in zip(got, again, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(g), rtol=1e-6)


def test_a_model_built_on_a_nested_structure_takes_it_without_warning():
    a, b = lamina.Input((4,)), lamina.Input((4,))
    model = lamina.Model(([a], b), lamina.layers.Add()([a, b]))
    x = _x()
    np.testing.assert_allclose(np.asarray(model(x)), x[0][0] + x[1], rtol=1e-6)
