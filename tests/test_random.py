"""``lamina.random`` (keras.random): shapes, dtypes and argument errors against Keras; distributions by
their moments and bounds; seeding (int, SeedGenerator, global); gradients of dropout and shuffle.

lamina's streams are NumPy's, so values are never compared with Keras's, only their laws."""

import numpy as np
import pytest

import lamina
from lamina import random

N = 200_000  # draws per statistical check: standard errors of a few 1e-3


def _keras_dtype(keras, value) -> str:
    return keras.backend.standardize_dtype(value.dtype)


DRAWS = [
    ("normal", ((2, 3),), {}),
    ("normal", ((4,),), {"mean": 1.0, "stddev": 2.0, "dtype": "float64"}),
    ("uniform", ((3, 1, 2),), {"minval": -1.0, "maxval": 2.0}),
    ("uniform", ((2,),), {"dtype": "float16"}),
    ("randint", ((5,), 0, 10), {}),
    ("randint", ((2, 2), -3, 3), {"dtype": "int64"}),
    ("truncated_normal", ((3, 4),), {}),
    ("gamma", ((6,),), {"alpha": 2.0}),
    ("binomial", ((2, 3),), {"counts": 5, "probabilities": 0.3}),
    ("beta", ((4,),), {"alpha": 2.0, "beta": 3.0}),
]


@pytest.mark.parametrize("name, args, kwargs", DRAWS)
def test_shape_and_dtype_match_keras(keras, name, args, kwargs):
    ours = getattr(random, name)(*args, **kwargs, seed=1)
    theirs = getattr(keras.random, name)(*args, **kwargs, seed=1)
    assert ours.shape == tuple(theirs.shape)
    assert ours.dtype.name == _keras_dtype(keras, theirs)


def test_categorical_shape_and_dtype_match_keras(keras):
    logits = np.zeros((3, 4), "float32")
    ours, theirs = random.categorical(logits, 5, seed=2), keras.random.categorical(logits, 5, seed=2)
    assert ours.shape == tuple(theirs.shape) == (3, 5)
    assert ours.dtype.name == _keras_dtype(keras, theirs) == "int32"


@pytest.mark.parametrize("name", ["dropout", "shuffle"])
def test_dropout_and_shuffle_keep_shape_and_dtype_as_keras(keras, name):
    x = np.arange(12, dtype="float32").reshape(4, 3)
    args = (0.5,) if name == "dropout" else ()
    ours = getattr(random, name)(x, *args, seed=3)
    theirs = getattr(keras.random, name)(keras.ops.convert_to_tensor(x), *args, seed=3)
    assert ours.shape == tuple(theirs.shape) and ours.dtype.name == _keras_dtype(keras, theirs)


ERRORS = [
    ("uniform", ((2,),), {"dtype": "int32"}, r"`keras.random.uniform` requires a floating point `dtype`. "
                                             r"Received: dtype=int32"),
    ("randint", ((2,), 0, 5), {"dtype": "float32"}, r"`keras.random.randint` requires an integer `dtype`. "
                                                    r"Received: dtype=float32"),
    ("categorical", ([1.0, 2.0], 3), {}, r"`logits` should be a 2-D tensor with shape \[batch_size, num_classes\]"),
    ("normal", ((2,),), {"seed": "a"}, r"Argument `seed` must be either an integer or an instance of "
                                       r"`SeedGenerator`. Received: seed=a \(of type <class 'str'>\)"),
    ("SeedGenerator", (), {"seed": "a"}, r"Argument `seed` must be an integer. Received: seed=a"),
    ("SeedGenerator", (3,), {"foo": 1}, r"Unrecognized keyword arguments: \{'foo': 1\}"),
]


@pytest.mark.parametrize("name, args, kwargs, message", ERRORS)
def test_argument_errors_match_keras(keras, name, args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        getattr(keras.random, name)(*args, **kwargs)
    with pytest.raises(ValueError, match=message):
        getattr(random, name)(*args, **kwargs)


@pytest.mark.parametrize("call, message", [
    (lambda: random.normal((2, -1)), r"`keras.random.normal` expects `shape`.*Received: shape=\(2, -1\)"),
    (lambda: random.normal("ab"), r"Received: shape='ab'"),
    (lambda: random.randint((2,), 5, 5), r"minval < maxval.*Received: minval=5, maxval=5"),
    (lambda: random.gamma((2,), alpha=0.0), r"alpha > 0. Received: alpha=0.0"),
    (lambda: random.beta((2,), alpha=1.0, beta=-1.0), r"Received: alpha=1.0, beta=-1.0"),
    (lambda: random.binomial((2,), counts=3, probabilities=1.5), r"Received: counts=3, probabilities=1.5"),
    (lambda: random.dropout(np.ones(3), 1.5), r"`rate` between 0 and 1. Received: rate=1.5"),
    (lambda: random.dropout(np.ones((2, 3)), 0.5, noise_shape=(2,)), r"noise_shape=\(2,\), input shape=\(2, 3\)"),
    (lambda: random.shuffle(np.ones((2, 3)), axis=2), r"axis of `x` \(rank 2\). Received: axis=2"),
])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ----------------------------------------------------------------------------- distributions


def test_normal_moments():
    x = random.normal((N,), mean=1.5, stddev=2.0, seed=0)
    assert x.dtype == np.float32
    assert abs(x.mean() - 1.5) < 0.02 and abs(x.std() - 2.0) < 0.02


def test_uniform_bounds_and_mean():
    x = random.uniform((N,), minval=-2.0, maxval=3.0, seed=0)
    assert x.min() >= -2.0 and x.max() < 3.0
    assert abs(x.mean() - 0.5) < 0.02 and abs(x.var() - 25 / 12) < 0.03


def test_randint_covers_minval_to_maxval_exclusive():
    x = random.randint((N,), -2, 3, seed=0)
    assert x.dtype == np.int32
    values, counts = np.unique(x, return_counts=True)
    assert values.tolist() == [-2, -1, 0, 1, 2]
    np.testing.assert_allclose(counts / N, 0.2, atol=0.005)


def test_truncated_normal_stays_within_two_stddevs():
    x = random.truncated_normal((N,), mean=1.0, stddev=0.5, seed=0).astype(np.float64)
    assert x.min() >= 1.0 - 1.0 and x.max() <= 1.0 + 1.0
    assert abs(x.mean() - 1.0) < 0.01
    assert abs(x.std() - 0.5 * 0.8796) < 0.005  # the std of N(0, 1) truncated to [-2, 2] is 0.8796


@pytest.mark.parametrize("name, kwargs, mean, var", [
    ("gamma", {"alpha": 3.0}, 3.0, 3.0),
    ("binomial", {"counts": 10, "probabilities": 0.3}, 3.0, 2.1),
    ("beta", {"alpha": 2.0, "beta": 6.0}, 0.25, 2 * 6 / (8**2 * 9)),
])
def test_gamma_binomial_beta_moments(name, kwargs, mean, var):
    x = getattr(random, name)((N,), **kwargs, seed=0).astype(np.float64)
    assert x.dtype == np.float64
    assert abs(x.mean() - mean) < 0.02 * max(1.0, mean) and abs(x.var() - var) < 0.03 * max(1.0, var)


def test_categorical_frequencies_follow_softmax():
    with np.errstate(divide="ignore"):  # log(0) = -inf: a class never drawn
        logits = np.log(np.array([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0]]))
    x = random.categorical(logits, N // 2, seed=0)
    np.testing.assert_allclose(np.bincount(x[0], minlength=3) / (N // 2), [0.1, 0.2, 0.7], atol=0.01)
    assert set(np.unique(x[1]).tolist()) == {0, 1}


def test_shuffle_moves_whole_slices():
    x = np.arange(20).reshape(5, 4)
    rows = random.shuffle(x, seed=0)
    assert sorted(map(tuple, rows)) == sorted(map(tuple, x)) and not np.array_equal(rows, x)
    cols = random.shuffle(x, axis=1, seed=0)
    assert np.array_equal(np.sort(cols, axis=1), x) and np.all(np.diff(cols[:, 0] - x[:, 0]) == 0)


def test_dropout_zeroes_rate_of_entries_and_keeps_the_mean():
    x = np.ones((N,), "float32")
    y = random.dropout(x, 0.3, seed=0)
    assert y.dtype == np.float32
    assert set(np.unique(y).tolist()) <= {0.0, np.float32(1 / 0.7)}
    assert abs((y == 0).mean() - 0.3) < 0.01 and abs(y.mean() - 1.0) < 0.02
    np.testing.assert_array_equal(random.dropout(x[:5], 1.0), np.zeros(5))
    assert random.dropout(x, 0.0) is x


def test_dropout_noise_shape_shares_the_mask():
    y = random.dropout(np.ones((50, 4), "float32"), 0.5, noise_shape=(None, 1), seed=0)
    assert np.all(y == y[:, :1])  # one draw per row, shared across the 4 columns
    assert 0 < (y[:, 0] == 0).sum() < 50


# ----------------------------------------------------------------------------- seeding


def test_int_seed_is_stateless_and_seeds_differ():
    a, b = random.normal((8,), seed=5), random.normal((8,), seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, random.normal((8,), seed=6))


def test_unseeded_draws_follow_set_random_seed():
    lamina.utils.set_random_seed(42)
    first = [random.uniform((4,)), random.randint((4,), 0, 100), random.shuffle(np.arange(10))]
    assert not np.array_equal(first[0], random.uniform((4,)))  # the global stream advances
    lamina.utils.set_random_seed(42)
    again = [random.uniform((4,)), random.randint((4,), 0, 100), random.shuffle(np.arange(10))]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_seed_generator_advances_and_repeats_across_instances():
    gen = random.SeedGenerator(7)
    draws = [random.normal((6,), seed=gen) for _ in range(3)]
    assert not np.array_equal(draws[0], draws[1]) and not np.array_equal(draws[1], draws[2])
    other = random.SeedGenerator(7)
    for d in draws:
        np.testing.assert_array_equal(d, random.normal((6,), seed=other))
    # An int seed is a SeedGenerator's first state, as in Keras.
    np.testing.assert_array_equal(draws[0], random.normal((6,), seed=7))


def test_seed_generator_state_is_a_non_trainable_variable():
    gen = random.SeedGenerator(11, name="sg")
    assert isinstance(gen.state, lamina.Variable) and not gen.state.trainable
    assert gen.state.shape == (2,) and gen.state.path == "sg/seed_generator_state"
    np.testing.assert_array_equal(gen.next(), [11, 0])
    np.testing.assert_array_equal(gen.state.numpy(), [11, 1])
    gen.state.assign(np.array([11, 0], dtype=np.uint32))  # restoring the state replays the stream
    np.testing.assert_array_equal(gen.next(), [11, 0])
    unordered = gen.next(ordered=False)
    assert not np.array_equal(gen.state.numpy(), unordered)


def test_seed_generator_config_round_trip_matches_keras_keys(keras):
    gen = random.SeedGenerator(3, name="g")
    assert gen.get_config() == {"seed": 3, "name": "g"}
    assert set(gen.get_config()) == set(keras.random.SeedGenerator(3).get_config())
    clone = random.SeedGenerator.from_config(gen.get_config())
    np.testing.assert_array_equal(random.uniform((3,), seed=clone), random.uniform((3,), seed=gen))


def test_unseeded_seed_generator_comes_from_the_global_generator():
    lamina.utils.set_random_seed(9)
    a = random.SeedGenerator()
    lamina.utils.set_random_seed(9)
    b = random.SeedGenerator()
    assert a.get_config()["seed"] is None and a.name != b.name
    np.testing.assert_array_equal(a.state.numpy(), b.state.numpy())


# ----------------------------------------------------------------------------- gradients


def test_dropout_is_differentiable():
    x = lamina.Variable(np.ones((4, 5), "float32"))
    with lamina.GradientTape() as tape:
        y = random.dropout(x, 0.5, seed=1)
        loss = lamina.ops.sum(lamina.ops.multiply(y, 2.0))
    grad = np.asarray(tape.gradient(loss, x))
    np.testing.assert_allclose(grad, 2.0 * np.asarray(random.dropout(np.ones((4, 5), "float32"), 0.5, seed=1)))


def test_shuffle_is_differentiable():
    x = lamina.Variable(np.arange(6, dtype="float32").reshape(3, 2))
    w = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], "float32")
    with lamina.GradientTape() as tape:
        loss = lamina.ops.sum(lamina.ops.multiply(random.shuffle(x, seed=4), w))
    inverse = np.argsort(random.shuffle(np.arange(3.0), seed=4))  # row j of x went to position inverse[j]
    np.testing.assert_allclose(np.asarray(tape.gradient(loss, x)), w[inverse])


def test_keras_spelling_works():
    import lamina as keras

    assert keras.random.normal((2, 3), seed=1).shape == (2, 3)
    assert isinstance(keras.random.SeedGenerator(1), random.SeedGenerator)
