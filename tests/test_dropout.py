"""Dropout: inactive in inference, inverted scaling in training, seeded reproducibility, arguments."""

import numpy as np
import pytest

import lamina
from lamina.layers.dropout import Dropout
from tests.helpers import check_gradients, run_layer_test


def test_dropout_harness():
    run_layer_test(Dropout, {"rate": 0.5}, (3, 4), (3, 4), deterministic_training=False)
    run_layer_test(Dropout, {"rate": 0.3, "noise_shape": (None, 1, 4), "seed": 3}, (2, 3, 4), (2, 3, 4),
                   deterministic_training=False)


def test_inactive_in_inference():
    x = np.random.default_rng(0).standard_normal((8, 16)).astype("float32")
    layer = Dropout(0.5)
    for training in (None, False):
        y = layer(x, training=training)
        assert y is x or np.array_equal(y, x)
    y = layer(x)
    np.testing.assert_array_equal(y, x)


def test_training_drops_and_scales():
    x = np.ones((200, 500), dtype="float32")
    y = Dropout(0.25)(x, training=True)
    assert y.dtype == np.float32
    values = set(np.unique(y).tolist())
    assert values <= {0.0, np.float32(1 / 0.75)}
    kept = np.mean(y != 0)
    assert abs(kept - 0.75) < 0.01
    # Inverted dropout preserves the mean.
    assert abs(float(y.mean()) - 1.0) < 0.01


def test_rate_zero_is_identity_and_rate_one_zeroes():
    x = np.random.default_rng(1).standard_normal((4, 5)).astype("float32")
    np.testing.assert_array_equal(Dropout(0.0)(x, training=True), x)
    y = Dropout(1.0)(x, training=True)
    np.testing.assert_array_equal(y, np.zeros_like(x))
    assert y.dtype == np.float32


def test_global_seed_gives_identical_masks():
    x = np.ones((10, 10), dtype="float32")
    lamina.utils.set_random_seed(7)
    a = Dropout(0.5)(x, training=True)
    lamina.utils.set_random_seed(7)
    b = Dropout(0.5)(x, training=True)
    np.testing.assert_array_equal(a, b)
    c = Dropout(0.5)(x, training=True)
    assert not np.array_equal(b, c)  # the generator advances between calls


def test_layer_seed_reproducible_and_advancing():
    x = np.ones((10, 10), dtype="float32")
    la, lb = Dropout(0.5, seed=42), Dropout(0.5, seed=42)
    first = la(x, training=True)
    np.testing.assert_array_equal(first, lb(x, training=True))
    assert not np.array_equal(first, la(x, training=True))
    # A layer rebuilt from its config replays the same sequence.
    clone = Dropout.from_config(Dropout(0.5, seed=42).get_config())
    np.testing.assert_array_equal(clone(x, training=True), first)


def test_noise_shape_shares_mask():
    x = np.ones((4, 6, 5), dtype="float32")
    y = Dropout(0.5, noise_shape=(None, 1, 5), seed=1)(x, training=True)
    # The same mask for every step of axis 1.
    np.testing.assert_array_equal(y, np.broadcast_to(y[:, :1, :], y.shape))
    msg = r"Dropout layer .*noise_shape.*Received: noise_shape=\(None, 2, 5\)"
    with pytest.raises(ValueError, match=msg):
        Dropout(0.5, noise_shape=(None, 2, 5))(x, training=True)


def test_gradient_is_the_mask():
    x = np.random.default_rng(2).standard_normal((6, 7)).astype("float32")
    layer = Dropout(0.4, seed=5)
    with lamina.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = lamina.ops.sum(y)
    g = tape.gradient(loss, x)
    yv = np.asarray(lamina.ops.convert_to_numpy(y))
    np.testing.assert_allclose(g, np.where(yv != 0, 1 / 0.6, 0.0), rtol=1e-6)


def test_gradcheck_with_fixed_mask():
    # A layer with its own seed, rebuilt for every evaluation so each sees the same mask.
    x = np.random.default_rng(3).standard_normal((3, 4))
    check_gradients(lambda v: Dropout(0.3, seed=11, dtype="float64")(v, training=True), x, empty_batch=True)


@pytest.mark.parametrize("rate", [-0.1, 1.5, "0.5", None, float("nan")])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match="Dropout.*Received: rate="):
        Dropout(rate)


def test_bad_noise_shape_and_seed():
    with pytest.raises(ValueError, match="noise_shape.*Dropout.*Received: noise_shape='abc'"):
        Dropout(0.5, noise_shape="abc")
    with pytest.raises(ValueError, match="Dropout.*Received: noise_shape=\\(2, -1\\)"):
        Dropout(0.5, noise_shape=(2, -1))
    with pytest.raises(ValueError, match="Dropout.*Received: seed=1.5"):
        Dropout(0.5, seed=1.5)


@pytest.mark.oracle
def test_config_matches_keras(keras):
    theirs = keras.layers.Dropout(0.3, noise_shape=(None, 1), seed=4)
    ours = Dropout(0.3, noise_shape=(None, 1), seed=4)
    kcfg, lcfg = theirs.get_config(), ours.get_config()
    assert set(kcfg) == set(lcfg)
    for key in ("rate", "seed", "noise_shape"):
        assert kcfg[key] == lcfg[key]
    assert Dropout.from_config(kcfg).rate == 0.3
    assert keras.layers.Dropout.from_config(lcfg).rate == 0.3
    # Inference matches Keras exactly (the identity), training keeps Keras's scale 1/(1-rate).
    x = np.ones((50, 40), dtype="float32")
    np.testing.assert_array_equal(ours(x), keras.ops.convert_to_numpy(theirs(x)))
    k_vals = set(np.unique(keras.ops.convert_to_numpy(theirs(x, training=True))).tolist())
    l_vals = set(np.unique(ours(x, training=True)).tolist())
    assert l_vals == k_vals


def test_seeded_layer_owns_a_seed_generator_whose_state_drives_the_masks():
    x = np.ones((6, 7), dtype="float32")
    layer = Dropout(0.5, seed=11)
    assert layer._seed_generators == [layer.seed_generator]
    assert layer.weights == []  # random state is not a weight (as in Keras)
    start = layer.seed_generator.state.numpy().copy()
    first = layer(x, training=True)
    assert layer.seed_generator.state.numpy()[1] == start[1] + 1
    layer(x, training=False)  # inference draws nothing
    assert layer.seed_generator.state.numpy()[1] == start[1] + 1
    assert not np.array_equal(layer(x, training=True), first)
    layer.seed_generator.state.assign(start)  # rewinding the state replays the stream
    np.testing.assert_array_equal(layer(x, training=True), first)
    # Without a seed the global generator serves the draws: the layer owns no random state.
    assert Dropout(0.5)._seed_generators == [] and Dropout(0.5).seed_generator is None


def test_rescaling_is_unbiased():
    """Kept units are scaled by exactly 1 / (1 - rate), and the mean output matches the input's over
    many seeds (Keras's test_dropout_rescaling checks one seed against a 2-sigma tolerance)."""
    x = np.ones((20, 500), dtype="float32")
    means = []
    for seed in range(200):
        out = Dropout(0.5, seed=seed)(x, training=True)
        assert set(np.unique(out)) == {0.0, 2.0}
        means.append(out.mean())
    # The mean of 200 means has standard deviation 0.01 / sqrt(200) ~ 0.0007: 0.003 is over 4 sigma.
    assert abs(np.mean(means) - 1.0) < 0.003
    assert 0.007 < np.std(means) < 0.013  # a fair coin per unit: 1 / sqrt(10000)
