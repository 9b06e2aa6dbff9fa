"""Constraints: projections against NumPy formulas and Keras, dtypes, configs and errors."""

import warnings

import numpy as np
import pytest

import lamina
from lamina import constraints as C

EPS = 1e-7


def _norms(w, axis):
    axis = tuple(axis) if isinstance(axis, list) else axis
    return np.sqrt(np.sum(np.square(w.astype(np.float64)), axis=axis, keepdims=True))


@pytest.fixture
def w():
    w = np.random.default_rng(0).normal(scale=2.0, size=(5, 4)).astype(np.float32)
    w[:, 2] = 0.0  # a zero column stays zero (epsilon in the denominator)
    w[:, 3] *= 0.05  # a short column that MaxNorm leaves alone and MinMaxNorm stretches
    return w


def test_max_norm_formula(w):
    out = C.MaxNorm(2.0)(w)
    n = _norms(w, 0)
    np.testing.assert_allclose(out, w * np.clip(n, 0, 2.0) / (EPS + n), rtol=1e-6)
    assert np.all(_norms(out, 0) <= 2.0 + 1e-5)
    np.testing.assert_allclose(out[:, 3], w[:, 3], rtol=1e-5)  # already short enough
    np.testing.assert_array_equal(out[:, 2], 0.0)


def test_unit_norm_formula(w):
    out = C.UnitNorm()(w)
    np.testing.assert_allclose(_norms(out, 0)[0, [0, 1, 3]], 1.0, rtol=1e-5)
    np.testing.assert_array_equal(out[:, 2], 0.0)
    out1 = C.UnitNorm(axis=1)(w)
    np.testing.assert_allclose(_norms(out1, 1), 1.0, rtol=1e-5)


def test_min_max_norm_formula(w):
    out = C.MinMaxNorm(min_value=0.5, max_value=1.5, rate=0.7)(w)
    n = _norms(w, 0)
    desired = 0.7 * np.clip(n, 0.5, 1.5) + 0.3 * n
    np.testing.assert_allclose(out, w * desired / (EPS + n), rtol=1e-6)
    strict = C.MinMaxNorm(0.5, 1.5)(w)
    kept = _norms(strict, 0)[0, [0, 1, 3]]
    np.testing.assert_allclose(kept.clip(0.5, 1.5), kept, rtol=1e-5)
    np.testing.assert_allclose(_norms(strict, 0)[0, 3], 0.5, rtol=1e-5)  # the short column is stretched


def test_non_neg(w):
    out = C.NonNeg()(w)
    np.testing.assert_array_equal(out, np.where(w < 0, 0, w))
    assert out.dtype == np.float32


@pytest.mark.oracle
@pytest.mark.parametrize(
    "name, kwargs, shape",
    [
        ("MaxNorm", {}, (5, 4)),
        ("MaxNorm", {"max_value": 0.7, "axis": 1}, (5, 4)),
        ("MaxNorm", {"max_value": 1.0, "axis": [0, 1, 2]}, (3, 3, 2, 4)),
        ("NonNeg", {}, (5, 4)),
        ("UnitNorm", {}, (5, 4)),
        ("UnitNorm", {"axis": 1}, (5, 4)),
        ("UnitNorm", {"axis": [0, 1, 2]}, (3, 3, 2, 4)),
        ("MinMaxNorm", {}, (5, 4)),
        ("MinMaxNorm", {"min_value": 0.5, "max_value": 1.5, "rate": 0.7}, (5, 4)),
        ("MinMaxNorm", {"min_value": 2.0, "max_value": 3.0, "axis": -1}, (3, 3, 2, 4)),
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_outputs_equal_keras(keras, name, kwargs, shape, dtype):
    x = np.random.default_rng(1).normal(size=shape).astype(dtype)
    x[..., 0] = 0.0
    ours = getattr(C, name)(**kwargs)(x)
    theirs = keras.ops.convert_to_numpy(getattr(keras.constraints, name)(**kwargs)(x))
    assert ours.dtype == np.dtype(dtype)
    if not (name == "NonNeg" and dtype == "float64"):  # Keras's NonNeg returns float32 for float64
        assert theirs.dtype == ours.dtype
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("cons", [C.MaxNorm(), C.NonNeg(), C.UnitNorm(), C.MinMaxNorm()], ids=repr)
def test_dtype_is_kept(cons, dtype, w):
    assert cons(w.astype(dtype)).dtype == np.dtype(dtype)


def test_huge_weights_give_finite_results_without_warnings():
    w = np.array([[3e30, 1e-30], [4e30, 0.0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", divide="raise", invalid="raise"):
            out = C.MaxNorm(2.0)(w)
            unit = C.UnitNorm()(w)
    np.testing.assert_allclose(out[:, 0], [1.2, 1.6], rtol=1e-6)
    np.testing.assert_allclose(unit[:, 0], [0.6, 0.8], rtol=1e-6)


def test_variables_and_integer_inputs():
    v = lamina.Variable(np.array([[3.0], [4.0]], np.float32))
    out = C.UnitNorm()(v)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out[:, 0], [0.6, 0.8], rtol=1e-6)
    assert C.NonNeg()([[-1, 2]]).dtype == np.float32
    with pytest.raises(TypeError, match="numeric weight array"):
        C.NonNeg()(np.array(["a"]))


def test_base_constraint_is_identity(w):
    assert C.Constraint()(w) is w
    assert C.Constraint().get_config() == {}


# ----------------------------------------------------------------------------- configs and lookup

INSTANCES = [
    C.MaxNorm(3.0, axis=1), C.NonNeg(), C.UnitNorm(axis=[0, 1]), C.MinMaxNorm(0.1, 2.0, 0.5, axis=-1),
]


@pytest.mark.parametrize("cons", INSTANCES, ids=repr)
def test_config_round_trip(cons):
    config = cons.get_config()
    assert type(cons).from_config(config).get_config() == config
    again = C.deserialize(C.serialize(cons))
    assert type(again) is type(cons) and again.get_config() == config


@pytest.mark.oracle
@pytest.mark.parametrize("cons", INSTANCES, ids=repr)
def test_serialized_form_matches_keras_both_ways(keras, cons):
    ours = C.serialize(cons)
    theirs = keras.constraints.serialize(keras.constraints.deserialize(ours))
    assert theirs == ours
    assert C.deserialize(theirs).get_config() == cons.get_config()


@pytest.mark.oracle
def test_default_configs_equal_keras(keras):
    for name in ["MaxNorm", "NonNeg", "UnitNorm", "MinMaxNorm"]:
        assert getattr(C, name)().get_config() == getattr(keras.constraints, name)().get_config()


@pytest.mark.parametrize(
    "identifier, cls",
    [("max_norm", C.MaxNorm), ("MaxNorm", C.MaxNorm), ("non_neg", C.NonNeg), ("NonNeg", C.NonNeg),
     ("unit_norm", C.UnitNorm), ("min_max_norm", C.MinMaxNorm), ("MinMaxNorm", C.MinMaxNorm)],
)
def test_get_by_name(identifier, cls):
    assert type(C.get(identifier)) is cls


def test_aliases_and_other_identifiers():
    assert C.max_norm is C.MaxNorm and C.non_neg is C.NonNeg
    assert C.unit_norm is C.UnitNorm and C.min_max_norm is C.MinMaxNorm
    assert C.get(None) is None
    cons = C.MaxNorm(1.0)
    assert C.get(cons) is cons
    assert type(C.get(C.NonNeg)) is C.NonNeg
    fn = lambda w: np.clip(w, -1, 1)
    assert C.get(fn) is fn
    assert C.get({"class_name": "MaxNorm", "config": {"max_value": 4, "axis": 0}}).max_value == 4
    with pytest.raises(ValueError, match="Could not interpret constraint identifier.*Received: 5"):
        C.get(5)


def test_unknown_name_lists_valid_names_and_the_closest():
    with pytest.raises(ValueError) as err:
        C.get("maxnorm")
    msg = str(err.value)
    assert "Unknown constraint: 'maxnorm'" in msg and "Did you mean 'MaxNorm'?" in msg
    assert "'non_neg'" in msg and "'min_max_norm'" in msg
    assert msg.endswith("Received: identifier='maxnorm'")


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: C.MaxNorm(-1.0), r"`max_value` must be a non-negative finite number.*max_value=-1.0"),
        (lambda: C.MaxNorm(axis="0"), r"`axis` must be an int or a list of ints. Received: axis='0'"),
        (lambda: C.UnitNorm(axis=1.5), r"Received: axis=1.5"),
        (lambda: C.MinMaxNorm(min_value=2.0, max_value=1.0), r"Received: min_value=2.0, max_value=1.0"),
        (lambda: C.MinMaxNorm(rate=1.5), r"`rate` must lie in \[0, 1\]. Received: rate=1.5"),
        (lambda: C.MinMaxNorm(rate=-0.5), r"Received: rate=-0.5"),
    ],
)
def test_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_axis_out_of_range(w):
    with pytest.raises(ValueError, match=r"MaxNorm: axis 3 is out of range for a weight of shape \(5, 4\)"):
        C.MaxNorm(axis=3)(w)


@pytest.mark.parametrize("cons", [C.UnitNorm(), C.MinMaxNorm(0.5, 1.0), C.MaxNorm()], ids=repr)
def test_float16_zero_and_tiny_vectors_stay_finite(cons):
    w = np.zeros((3, 2), np.float16)
    w[:, 1] = [1e-5, 2e-5, 0.0]  # a norm so small that 1 / (epsilon + norm) exceeds float16's range
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = cons(w)
    assert out.dtype == np.float16 and np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[:, 0], 0.0)
    want = cons(w.astype(np.float32)).astype(np.float16)
    np.testing.assert_allclose(out.astype(np.float32), want.astype(np.float32), rtol=1e-2)
