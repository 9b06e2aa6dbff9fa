"""Initializers: formulas, statistics, seeding, fans, configs and errors, against Keras where it helps."""

import math

import numpy as np
import pytest

import lamina
from lamina import backend
from lamina import initializers as I

SHAPE = (500, 400)  # 200k samples: mean within ~1e-3 std, std within ~0.5 %
FAN_IN, FAN_OUT = SHAPE
N = SHAPE[0] * SHAPE[1]
TRUNC = 0.87962566103423978

# name -> (expected mean, expected std, bound on |x - mean| or None)
_glorot_u = math.sqrt(6 / (FAN_IN + FAN_OUT))
_he_u = math.sqrt(6 / FAN_IN)
_lecun_u = math.sqrt(3 / FAN_IN)
EXPECTED = {
    "GlorotUniform": (0.0, _glorot_u / math.sqrt(3), _glorot_u),
    "GlorotNormal": (0.0, math.sqrt(2 / (FAN_IN + FAN_OUT)), 2 * math.sqrt(2 / (FAN_IN + FAN_OUT)) / TRUNC),
    "HeNormal": (0.0, math.sqrt(2 / FAN_IN), 2 * math.sqrt(2 / FAN_IN) / TRUNC),
    "HeUniform": (0.0, _he_u / math.sqrt(3), _he_u),
    "LecunNormal": (0.0, math.sqrt(1 / FAN_IN), 2 * math.sqrt(1 / FAN_IN) / TRUNC),
    "LecunUniform": (0.0, _lecun_u / math.sqrt(3), _lecun_u),
}
# Initializers with arguments: (constructor kwargs, expected mean, std, bound).
WITH_ARGS = {
    "RandomNormal": ({"mean": 1.0, "stddev": 0.5}, 1.0, 0.5, None),
    "RandomUniform": ({"minval": -0.3, "maxval": 0.7}, 0.2, 1.0 / math.sqrt(12), 0.5),
    "TruncatedNormal": ({"mean": 0.5, "stddev": 2.0}, 0.5, 2.0 * TRUNC, 4.0),
    "VarianceScaling": (
        {"scale": 3.0, "mode": "fan_out", "distribution": "untruncated_normal"},
        0.0, math.sqrt(3.0 / FAN_OUT), None,
    ),
}
CASES = {name: ({}, *v) for name, v in EXPECTED.items()} | WITH_ARGS


def _check_stats(x, mean, std, bound):
    assert abs(x.mean() - mean) < 6 * std / math.sqrt(x.size)
    assert x.std() == pytest.approx(std, rel=0.01)
    if bound is not None:
        assert np.abs(x - mean).max() <= bound * (1 + 1e-6)
        # The bound is reached in distribution: the extremes come close to it.
        assert np.abs(x - mean).max() > 0.95 * bound


@pytest.mark.parametrize("name", sorted(CASES))
def test_random_initializer_statistics_match_formula(name):
    kwargs, mean, std, bound = CASES[name]
    x = getattr(I, name)(**kwargs)(SHAPE)
    assert x.shape == SHAPE and x.dtype == np.float32
    _check_stats(x.astype(np.float64), mean, std, bound)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["truncated_normal", "untruncated_normal", "uniform", "normal"])
def test_variance_scaling_modes_and_distributions(mode, distribution):
    shape = (3, 3, 40, 60)  # conv kernel: receptive field 9
    fan_in, fan_out = 9 * 40, 9 * 60
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    x = I.VarianceScaling(scale=2.5, mode=mode, distribution=distribution)(shape).astype(np.float64)
    std = math.sqrt(2.5 / n)
    assert abs(x.mean()) < 6 * std / math.sqrt(x.size)
    assert x.std() == pytest.approx(std, rel=0.02)
    if distribution == "uniform":
        assert np.abs(x).max() <= math.sqrt(3) * std * (1 + 1e-6)
    elif distribution in ("truncated_normal", "normal"):
        assert np.abs(x).max() <= 2 * std / TRUNC * (1 + 1e-6)
    else:
        assert np.abs(x).max() > 2 * std / TRUNC  # untruncated: the tails are there


def test_fans_at_least_one():
    # A (0, 5) weight has fan_in 0: the divisor is clamped at 1, not 0.
    x = I.VarianceScaling(mode="fan_in", distribution="uniform")((0, 5))
    assert x.shape == (0, 5)
    x = I.VarianceScaling(mode="fan_in", distribution="uniform", seed=1)(())
    assert x.shape == () and abs(float(x)) <= math.sqrt(3)


@pytest.mark.oracle
@pytest.mark.parametrize("name", sorted(CASES))
def test_random_initializer_statistics_match_keras(keras, name):
    kwargs, _, std, _ = CASES[name]
    ours = getattr(I, name)(**kwargs)(SHAPE).astype(np.float64)
    theirs = keras.ops.convert_to_numpy(getattr(keras.initializers, name)(seed=5, **kwargs)(SHAPE))
    theirs = theirs.astype(np.float64)
    assert abs(ours.mean() - theirs.mean()) < 8 * std / math.sqrt(N)
    assert ours.std() == pytest.approx(theirs.std(), rel=0.015)
    if name in ("RandomUniform", "GlorotUniform", "HeUniform", "LecunUniform"):
        assert ours.min() == pytest.approx(theirs.min(), abs=0.01 * std)
        assert ours.max() == pytest.approx(theirs.max(), abs=0.01 * std)


# ----------------------------------------------------------------------------- deterministic ones


@pytest.mark.oracle
@pytest.mark.parametrize(
    "name, kwargs, shape, dtype",
    [
        ("Zeros", {}, (3, 4), None),
        ("Ones", {}, (2, 3, 4), None),
        ("Ones", {}, (5,), "float64"),
        ("Constant", {"value": 2.5}, (3, 4), None),
        ("Constant", {"value": -7}, (2, 2), "int32"),
        ("Identity", {}, (4, 4), None),
        ("Identity", {"gain": 2.5}, (3, 5), None),
        ("Identity", {"gain": 0.5}, (5, 3), "float64"),
    ],
)
def test_deterministic_initializers_equal_keras(keras, name, kwargs, shape, dtype):
    ours = getattr(I, name)(**kwargs)(shape, dtype=dtype)
    theirs = keras.ops.convert_to_numpy(getattr(keras.initializers, name)(**kwargs)(shape, dtype=dtype))
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


def test_constant_with_array_value_broadcasts_and_round_trips():
    init = I.Constant([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(init((2, 3)), np.array([[1, 2, 3], [1, 2, 3]], np.float32))
    again = I.deserialize(I.serialize(init))
    np.testing.assert_array_equal(again((2, 3)), init((2, 3)))
    with pytest.raises(ValueError, match="cannot fill shape"):
        init((3, 2))


# ----------------------------------------------------------------------------- orthogonal


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (40, 40), (3, 3, 4, 8), (2, 3, 16)])
@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_orthogonal_rows_or_columns_are_orthonormal(shape, gain):
    x = I.Orthogonal(gain=gain)(shape)
    assert x.shape == shape and x.dtype == np.float32
    assert x.flags.c_contiguous  # a wide kernel comes from q.T: a strided view unless copied
    m = x.reshape(-1, shape[-1]).astype(np.float64)
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(gram, gain**2 * np.eye(len(gram)), atol=1e-5)


@pytest.mark.oracle
def test_orthogonal_gram_matches_keras(keras):
    for shape in [(16, 8), (8, 16)]:
        theirs = keras.ops.convert_to_numpy(keras.initializers.Orthogonal(gain=3.0, seed=1)(shape))
        ours = I.Orthogonal(gain=3.0)(shape)
        for m in (theirs, ours):
            m = m.astype(np.float64)
            gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
            np.testing.assert_allclose(gram, 9.0 * np.eye(8), atol=1e-4)


def test_orthogonal_is_haar_distributed_signs():
    # The sign correction by diag(R) makes the diagonal of a square Q as often negative as positive.
    diag = np.concatenate([np.diag(I.Orthogonal()((8, 8))) for _ in range(200)])
    assert 0.4 < np.mean(diag > 0) < 0.6


# ----------------------------------------------------------------------------- randomness and seeds

ALL_RANDOM = [
    "GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal", "LecunUniform", "RandomNormal",
    "RandomUniform", "TruncatedNormal", "VarianceScaling", "Orthogonal",
]


@pytest.mark.parametrize("name", ALL_RANDOM)
def test_global_seed_gives_bit_identical_arrays(name):
    lamina.utils.set_random_seed(42)
    a = getattr(I, name)()((20, 30))
    b = getattr(I, name)()((30, 20))
    lamina.utils.set_random_seed(42)
    a2 = getattr(I, name)()((20, 30))
    b2 = getattr(I, name)()((30, 20))
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(b, b2)
    lamina.utils.set_random_seed(43)
    assert not np.array_equal(getattr(I, name)()((20, 30)), a)


@pytest.mark.parametrize("name", ALL_RANDOM)
def test_unseeded_instance_draws_fresh_values_each_call(name):
    init = getattr(I, name)()
    assert not np.array_equal(init((10, 10)), init((10, 10)))


@pytest.mark.parametrize("name", ALL_RANDOM)
def test_integer_seed_repeats_itself_and_leaves_the_global_stream_alone(name):
    init = getattr(I, name)(seed=7)
    lamina.utils.set_random_seed(1)
    a = init((10, 10))
    after = backend.rng().standard_normal(3)
    lamina.utils.set_random_seed(1)
    np.testing.assert_array_equal(backend.rng().standard_normal(3), after)  # global stream untouched
    np.testing.assert_array_equal(init((10, 10)), a)  # same values on every call (as Keras)
    np.testing.assert_array_equal(getattr(I, name)(seed=7)((10, 10)), a)
    assert not np.array_equal(getattr(I, name)(seed=8)((10, 10)), a)


@pytest.mark.oracle
def test_keras_seeded_initializer_also_repeats_itself(keras):
    # The behaviour we follow: in Keras an integer-seeded initializer returns identical values per call.
    init = keras.initializers.RandomNormal(seed=3)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(init((4, 4))), keras.ops.convert_to_numpy(init((4, 4)))
    )


def test_seed_generator_config_gives_a_reproducible_stream():
    seed = {"module": "keras.random", "class_name": "SeedGenerator", "config": {"seed": 5}}
    a, b = I.RandomNormal(seed=seed), I.RandomNormal(seed=seed)
    first, second = a((6,)), a((6,))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(b((6,)), first)
    np.testing.assert_array_equal(b((6,)), second)
    assert I.RandomNormal.from_config(a.get_config()).get_config() == a.get_config()


def test_negative_integer_seed_is_accepted():
    np.testing.assert_array_equal(I.RandomUniform(seed=-3)((4,)), I.RandomUniform(seed=-3)((4,)))


# ----------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("name", ALL_RANDOM + ["Zeros", "Ones", "Constant"])
@pytest.mark.parametrize("dtype", [None, "float32", "float64", "float16", np.float64])
def test_dtype(name, dtype):
    x = getattr(I, name)()((6, 6), dtype=dtype)
    assert x.dtype == np.dtype(dtype or "float32")


def test_default_dtype_follows_floatx():
    backend.set_floatx("float64")
    try:
        assert I.GlorotUniform()((3, 3)).dtype == np.float64
        assert I.Zeros()((3,)).dtype == np.float64
    finally:
        backend.set_floatx("float32")


def test_random_initializer_rejects_integer_dtype():
    with pytest.raises(ValueError, match=r"floating dtype.*Received: dtype='int32'"):
        I.RandomNormal()((2, 2), dtype="int32")
    with pytest.raises(ValueError, match="unknown dtype"):
        I.Zeros()((2, 2), dtype="floaty")


# ----------------------------------------------------------------------------- fans


@pytest.mark.parametrize(
    "shape, expected",
    [((), (1, 1)), ((7,), (7, 7)), ((3, 5), (3, 5)), ((3, 4, 8), (12, 24)), ((2, 3, 3, 4, 8), (72, 144))],
)
def test_compute_fans(shape, expected):
    assert I.compute_fans(shape) == expected


@pytest.mark.oracle
@pytest.mark.parametrize(
    "shape, axes",
    [((), None), ((7,), None), ((3, 5), None), ((3, 3, 4, 8), None), ((4, 6, 5), ([0, 2], [1]))],
)
def test_compute_fans_matches_keras(keras, shape, axes):
    from keras.src.initializers.random_initializers import compute_fans

    kwargs = {} if axes is None else {"input_axes": axes[0], "output_axes": axes[1]}
    assert I.compute_fans(shape, **kwargs) == compute_fans(shape, **kwargs)


def test_input_output_axes_change_the_fans():
    init = I.VarianceScaling(mode="fan_in", distribution="uniform", input_axes=[0, 2], output_axes=[1])
    x = init((40, 30, 50))
    assert np.abs(x).max() <= math.sqrt(3 / 2000) * (1 + 1e-6)
    assert np.abs(x).max() > 0.99 * math.sqrt(3 / 2000)


# ----------------------------------------------------------------------------- configs and lookup

INSTANCES = [
    I.Zeros(), I.Ones(), I.Constant(3.5), I.Identity(gain=2.0), I.RandomNormal(0.1, 0.2, seed=3),
    I.RandomUniform(-1.0, 2.0), I.TruncatedNormal(stddev=0.3, seed=9), I.GlorotUniform(seed=1),
    I.GlorotNormal(), I.HeNormal(seed=2), I.HeUniform(), I.LecunNormal(), I.LecunUniform(seed=4),
    I.Orthogonal(gain=1.5, seed=3), I.VarianceScaling(2.0, "fan_avg", "uniform", seed=11),
]


@pytest.mark.parametrize("init", INSTANCES, ids=lambda i: type(i).__name__)
def test_config_round_trip(init):
    config = init.get_config()
    clone = type(init).from_config(config)
    assert clone.get_config() == config
    again = I.deserialize(I.serialize(init))
    assert type(again) is type(init) and again.get_config() == config
    assert init.clone().get_config() == config
    if config.get("seed") is not None:
        np.testing.assert_array_equal(clone((5, 4)), init((5, 4)))


@pytest.mark.oracle
@pytest.mark.parametrize("init", INSTANCES, ids=lambda i: type(i).__name__)
def test_serialized_form_matches_keras_both_ways(keras, init):
    name = type(init).__name__
    ours = I.serialize(init)
    theirs_obj = keras.initializers.deserialize(ours)  # Keras loads what we write
    assert type(theirs_obj).__name__ == name
    theirs = keras.initializers.serialize(theirs_obj)
    if name == "Identity":  # Keras drops gain from its config but takes it on load
        assert theirs_obj.gain == 2.0 and ours["config"] == {"gain": 2.0}
        theirs["config"] = {"gain": 2.0}
    assert theirs == ours
    back = I.deserialize(theirs)  # and we load what Keras writes
    assert back.get_config() == init.get_config()


@pytest.mark.oracle
def test_default_configs_equal_keras(keras):
    for name in ["Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform", "TruncatedNormal",
                 "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal",
                 "LecunUniform", "Orthogonal"]:
        assert getattr(I, name)().get_config() == getattr(keras.initializers, name)().get_config(), name


@pytest.mark.parametrize(
    "identifier, cls",
    [("glorot_uniform", I.GlorotUniform), ("GlorotUniform", I.GlorotUniform), ("he_normal", I.HeNormal),
     ("zeros", I.Zeros), ("zero", I.Zeros), ("one", I.Ones), ("normal", I.RandomNormal),
     ("uniform", I.RandomUniform), ("orthogonal", I.Orthogonal), ("variance_scaling", I.VarianceScaling),
     ("truncated_normal", I.TruncatedNormal), ("lecun_uniform", I.LecunUniform), ("identity", I.Identity)],
)
def test_get_by_name(identifier, cls):
    assert type(I.get(identifier)) is cls


def test_get_other_identifiers():
    assert I.get(None) is None
    init = I.HeUniform(seed=1)
    assert I.get(init) is init
    assert type(I.get(I.Ones)) is I.Ones
    fn = lambda shape, dtype=None: np.full(shape, 4.0, dtype or "float32")
    assert I.get(fn) is fn
    cfg = {"class_name": "RandomUniform", "config": {"minval": 0.0, "maxval": 1.0, "seed": 1}}  # Keras 2 form
    assert I.get(cfg).get_config() == {"seed": 1, "minval": 0.0, "maxval": 1.0}
    arr = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(I.get(arr)((2, 3)), arr.astype(np.float32))
    with pytest.raises(ValueError, match=r"own shape \(2, 3\)"):
        I.get(arr)((3, 2))
    with pytest.raises(ValueError, match="Could not interpret initializer identifier.*Received: 3"):
        I.get(3)


def test_unknown_name_lists_valid_names_and_the_closest():
    with pytest.raises(ValueError) as err:
        I.get("glorot_unifrom")
    msg = str(err.value)
    assert "Did you mean 'glorot_uniform'" in msg
    assert "he_normal" in msg and "Orthogonal" in msg
    assert msg.endswith("Received: identifier='glorot_unifrom'")
    with pytest.raises(ValueError, match="Unknown initializer: 'STFT'"):
        I.deserialize({"module": "keras.initializers", "class_name": "STFT", "config": {}})


def test_custom_objects_and_functions():
    class MyInit(I.Initializer):
        def __init__(self, v=1.0):
            self.v = v

        def __call__(self, shape, dtype=None):
            return np.full(shape, self.v, dtype or "float32")

        def get_config(self):
            return {"v": self.v}

    cfg = I.serialize(MyInit(3.0))
    assert cfg["class_name"] == "MyInit" and cfg["registered_name"] == "MyInit"
    with pytest.raises(ValueError, match="Unknown initializer: 'MyInit'"):
        I.deserialize(cfg)
    np.testing.assert_array_equal(I.deserialize(cfg, custom_objects={"MyInit": MyInit})((2,)), [3.0, 3.0])

    def my_fn(shape, dtype=None):
        return np.zeros(shape, dtype or "float32")

    fcfg = I.serialize(my_fn)
    assert fcfg["class_name"] == "function" and fcfg["config"] == "my_fn"
    assert I.deserialize(fcfg, custom_objects={"my_fn": my_fn}) is my_fn
    with pytest.raises(ValueError, match="custom_objects"):
        I.deserialize(fcfg)


def test_bad_config_is_a_clear_type_error():
    with pytest.raises(TypeError, match=r"Zeros could not be built from its config.*Received: config=\{'a"):
        I.deserialize({"class_name": "Zeros", "config": {"a": 1}})
    with pytest.raises(TypeError, match="'class_name'"):
        I.deserialize({"config": {}})
    with pytest.raises(TypeError, match="Cannot serialize"):
        I.serialize(I.Zeros)


# ----------------------------------------------------------------------------- argument errors


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: I.RandomNormal(stddev=-1.0), r"`stddev` must be a finite number >= 0.*Received: stddev=-1"),
        (lambda: I.TruncatedNormal(stddev=-0.1), r"Received: stddev=-0.1"),
        (lambda: I.RandomNormal(mean=float("nan")), r"Received: mean=nan"),
        (lambda: I.RandomUniform(minval=1.0, maxval=0.0), r"minval.*maxval.*Received: minval=1.0"),
        (lambda: I.VarianceScaling(scale=0.0), r"`scale` must be a finite number > 0.*Received: scale=0.0"),
        (lambda: I.VarianceScaling(mode="fan_sum"), r"`mode` must be one of.*Received: mode='fan_sum'"),
        (lambda: I.VarianceScaling(distribution="cauchy"), r"Received: distribution='cauchy'"),
        (lambda: I.VarianceScaling(input_axes="0"), r"Received: input_axes='0'"),
        (lambda: I.GlorotUniform(seed="abc"), r"`seed` must be None or an integer. Received: seed='abc'"),
        (lambda: I.HeNormal(seed=1.5), r"Received: seed=1.5"),
        (lambda: I.Orthogonal(gain="big"), r"Received: gain='big'"),
    ],
)
def test_bad_arguments_fail_at_construction(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_bad_constant_value():
    with pytest.raises(TypeError, match="Constant: `value` must be a number"):
        I.Constant("one")


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"Received: shape=\(None, 3\)"):
        I.GlorotUniform()((None, 3))
    with pytest.raises(ValueError, match=r"Received: shape=\(-1, 3\)"):
        I.Zeros()((-1, 3))
    with pytest.raises(ValueError, match="2-D matrices.*rank 3"):
        I.Identity()((2, 2, 2))
    with pytest.raises(ValueError, match="rank >= 2.*rank 1"):
        I.Orthogonal()((5,))
    assert I.Ones()(4).shape == (4,)


def test_variance_scaling_normalises_distribution_names():
    assert I.VarianceScaling(distribution="Normal").distribution == "truncated_normal"
    assert I.VarianceScaling(distribution="UNIFORM").distribution == "uniform"


def test_base_initializer_must_be_subclassed():
    with pytest.raises(NotImplementedError):
        I.Initializer()((2,))
    assert repr(I.RandomNormal(seed=1)) == "RandomNormal(seed=1, mean=0.0, stddev=0.05)"


def test_registered_custom_class_round_trips_without_custom_objects():
    from lamina.saving import register_keras_serializable

    @register_keras_serializable(package="test_init")
    class Halves(I.Initializer):
        def __call__(self, shape, dtype=None):
            return np.full(shape, 0.5, dtype or "float32")

    cfg = I.serialize(Halves())
    assert cfg["registered_name"] == "test_init>Halves"
    assert type(I.deserialize(cfg)) is Halves
    assert type(I.get(cfg)) is Halves


@pytest.mark.oracle
def test_function_serialization_matches_keras(keras):
    """Plain functions serialize as Keras writes them, in every family sharing the helper."""
    from lamina import constraints, regularizers
    from lamina.saving import register_keras_serializable

    def plain_init(shape, dtype=None):
        return np.zeros(shape, dtype or "float32")

    @register_keras_serializable(package="test_init_fn")
    def registered_init(shape, dtype=None):
        return np.zeros(shape, dtype or "float32")

    keras.saving.register_keras_serializable(package="test_init_fn")(registered_init)
    for fn in (plain_init, registered_init):
        expected = keras.initializers.serialize(fn)
        assert I.serialize(fn) == expected
        assert regularizers.serialize(fn) == expected and constraints.serialize(fn) == expected
    assert I.deserialize(I.serialize(registered_init)) is registered_init
    assert I.deserialize(I.serialize(plain_init), custom_objects={"plain_init": plain_init}) is plain_init
