"""Regularizers: penalty formulas, Keras equality, gradients, configs and errors."""

import warnings

import numpy as np
import pytest

import lamina
from lamina import regularizers as R
from tests.helpers import check_gradients


@pytest.fixture
def w():
    return np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)


def test_formulas(w):
    x = w.astype(np.float64)
    assert float(R.L1(0.3)(w)) == pytest.approx(0.3 * np.abs(x).sum(), rel=1e-6)
    assert float(R.L2(0.1)(w)) == pytest.approx(0.1 * np.square(x).sum(), rel=1e-6)  # no 1/2
    assert float(R.L1L2(0.01, 0.02)(w)) == pytest.approx(
        0.01 * np.abs(x).sum() + 0.02 * np.square(x).sum(), rel=1e-6
    )
    assert float(R.L1L2()(w)) == 0.0
    assert float(R.L1()(np.ones((5, 5)))) == pytest.approx(0.25)  # default factor 0.01
    assert float(R.L2()(np.ones((5, 5)))) == pytest.approx(0.25)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "reg", [R.L1(0.3), R.L2(0.1), R.L1L2(0.01, 0.02), R.L1L2(), R.OrthogonalRegularizer()],
    ids=lambda r: repr(r),
)
def test_penalty_is_a_scalar_of_the_weight_dtype(reg, dtype, w):
    out = np.asarray(reg(w.astype(dtype)))
    assert out.shape == () and out.dtype == np.dtype(dtype)


def test_integer_and_variable_inputs():
    assert np.asarray(R.L2(0.5)([[1, 2], [3, 4]])).dtype == np.float32
    assert float(R.L2(0.5)([[1, 2], [3, 4]])) == pytest.approx(15.0)
    v = lamina.Variable(np.full((2, 2), 2.0, np.float32))
    assert float(R.L1(0.25)(v)) == pytest.approx(2.0)


def test_orthogonal_regularizer_formula():
    reg = R.OrthogonalRegularizer(factor=0.2)
    # Two identical rows: one pair with |cos| = 1, counted twice in the off-diagonal sum.
    assert float(reg(np.array([[1.0, 2.0], [2.0, 4.0]], np.float32))) == pytest.approx(0.2, rel=1e-6)
    assert float(reg(np.eye(3, dtype=np.float32) * 5)) == 0.0
    # Columns mode looks at columns: the same matrix transposed.
    m = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    cols = R.OrthogonalRegularizer(0.2, mode="columns")
    assert float(cols(m)) == pytest.approx(float(reg(m.T)), rel=1e-6)
    # Reference: mean |cosine| over the distinct pairs, times factor.
    v = m / np.linalg.norm(m, axis=1, keepdims=True)
    cos = np.abs(v @ v.T)[np.triu_indices(5, 1)]
    assert float(reg(m)) == pytest.approx(0.2 * cos.mean(), rel=1e-5)


def test_orthogonal_regularizer_edge_cases():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            zero_row = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, -1.0]], np.float32)
            assert np.isfinite(R.OrthogonalRegularizer()(zero_row))
            # One row has no pairs: 0, not Keras's NaN.
            assert float(R.OrthogonalRegularizer()(np.ones((1, 4), np.float32))) == 0.0
    with pytest.raises(ValueError, match=r"rank-2 weight. Received: inputs.shape=\(2, 2, 2\)"):
        R.OrthogonalRegularizer()(np.ones((2, 2, 2)))


@pytest.mark.oracle
@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("L1", {"l1": 0.3}), ("L2", {"l2": 0.1}), ("L1L2", {"l1": 0.01, "l2": 0.02}), ("L1L2", {"l2": 0.5}),
        ("L1", {}), ("L2", {}),
        ("OrthogonalRegularizer", {"factor": 0.2}), ("OrthogonalRegularizer", {"mode": "columns"}),
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_penalties_equal_keras(keras, name, kwargs, dtype):
    x = np.random.default_rng(2).normal(size=(7, 5)).astype(dtype)
    x[3] = 0.0  # a zero row exercises the orthogonal regularizer's epsilon
    ours = np.asarray(getattr(R, name)(**kwargs)(x))
    keras_reg = getattr(keras.regularizers, name)(**kwargs)
    theirs = keras.ops.convert_to_numpy(keras_reg(keras.ops.convert_to_tensor(x)))
    assert ours.dtype == theirs.dtype
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize(
    "reg",
    [R.L1(0.3), R.L2(0.1), R.L1L2(0.01, 0.02), R.OrthogonalRegularizer(0.5),
     R.OrthogonalRegularizer(0.5, mode="columns")],
    ids=lambda r: repr(r),
)
def test_gradients(reg):
    x = np.random.default_rng(3).normal(size=(4, 3))
    x[np.abs(x) < 0.05] = 0.3  # keep clear of |x|'s kink for the finite differences
    check_gradients(reg, x)


def test_gradient_under_tape_matches_analytic():
    v = lamina.Variable(np.array([[1.0, -2.0], [0.5, 3.0]], np.float32))
    with lamina.GradientTape() as tape:
        loss = lamina.ops.add(R.L2(0.1)(v), R.L1(0.3)(v))
    (g,) = tape.gradient(loss, [v])
    np.testing.assert_allclose(g, 2 * 0.1 * v.numpy() + 0.3 * np.sign(v.numpy()), rtol=1e-6)
    assert g.dtype == np.float32


# ----------------------------------------------------------------------------- configs and lookup

INSTANCES = [R.L1(0.3), R.L2(0.1), R.L1L2(0.01, 0.02), R.L1L2(), R.OrthogonalRegularizer(0.2, "columns")]


@pytest.mark.parametrize("reg", INSTANCES, ids=lambda r: repr(r))
def test_config_round_trip(reg, w):
    config = reg.get_config()
    assert type(reg).from_config(config).get_config() == config
    again = R.deserialize(R.serialize(reg))
    assert type(again) is type(reg) and again.get_config() == config
    np.testing.assert_array_equal(again(w), reg(w))


@pytest.mark.oracle
@pytest.mark.parametrize("reg", INSTANCES, ids=lambda r: repr(r))
def test_serialized_form_matches_keras_both_ways(keras, reg):
    ours = R.serialize(reg)
    theirs_obj = keras.regularizers.deserialize(ours)
    theirs = keras.regularizers.serialize(theirs_obj)
    assert set(theirs) == set(ours) and theirs["class_name"] == ours["class_name"]
    assert theirs["module"] == ours["module"] == "keras.regularizers"
    assert set(theirs["config"]) == set(ours["config"])
    # Keras keeps L1's and the orthogonal factor as float32 tensors: equal to float32 precision.
    approx = lambda v: pytest.approx(v, rel=1e-7) if isinstance(v, float) else v
    for key, value in ours["config"].items():
        assert theirs["config"][key] == approx(value)
    back = R.deserialize(theirs)
    assert type(back) is type(reg)
    for key, value in back.get_config().items():
        assert value == approx(reg.get_config()[key])


@pytest.mark.parametrize(
    "identifier, cls, config",
    [
        ("l1", R.L1, {"l1": 0.01}), ("L1", R.L1, {"l1": 0.01}), ("l2", R.L2, {"l2": 0.01}),
        ("L2", R.L2, {"l2": 0.01}), ("L1L2", R.L1L2, {"l1": 0.0, "l2": 0.0}),
        ("l1l2", R.L1L2, {"l1": 0.0, "l2": 0.0}),
        ("l1_l2", R.L1L2, {"l1": 0.01, "l2": 0.01}),  # Keras's documented string default
        ("orthogonal_regularizer", R.OrthogonalRegularizer, {"factor": 0.01, "mode": "rows"}),
    ],
)
def test_get_by_name(identifier, cls, config):
    reg = R.get(identifier)
    assert type(reg) is cls and reg.get_config() == config


def test_aliases_are_the_classes():
    assert R.l1 is R.L1 and R.l2 is R.L2 and R.l1_l2 is R.L1L2
    assert R.l1_l2(l1=0.5).get_config() == {"l1": 0.5, "l2": 0.0}


def test_get_other_identifiers():
    assert R.get(None) is None
    reg = R.L2(0.3)
    assert R.get(reg) is reg
    assert type(R.get(R.L1)) is R.L1
    fn = lambda x: lamina.ops.sum(x)
    assert R.get(fn) is fn
    assert R.get({"class_name": "L2", "config": {"l2": 0.5}}).l2 == 0.5
    with pytest.raises(ValueError, match="Could not interpret regularizer identifier.*Received: 0.1"):
        R.get(0.1)


def test_unknown_name_lists_valid_names_and_the_closest():
    with pytest.raises(ValueError) as err:
        R.get("l3")
    msg = str(err.value)
    assert "Unknown regularizer: 'l3'" in msg and "Did you mean" in msg
    assert "'l1'" in msg and "'L1L2'" in msg and "'orthogonal_regularizer'" in msg
    assert msg.endswith("Received: identifier='l3'")


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: R.L1(-0.1), r"`l1` must be a non-negative finite float. Received: l1=-0.1"),
        (lambda: R.L2(float("inf")), r"Received: l2=inf"),
        (lambda: R.L2("0.1"), r"Received: l2='0.1'"),
        (lambda: R.L1L2(l1=float("nan")), r"Received: l1=nan"),
        (lambda: R.L1L2(l2=True), r"Received: l2=True"),
        (lambda: R.OrthogonalRegularizer(factor=-1), r"Received: factor=-1"),
        (lambda: R.OrthogonalRegularizer(mode="diagonal"), r"Received: mode='diagonal'"),
    ],
)
def test_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_none_factors_take_the_defaults():
    assert R.L1(None).l1 == 0.01 and R.L2(None).l2 == 0.01
    assert R.L1L2(None, None).get_config() == {"l1": 0.0, "l2": 0.0}


def test_base_regularizer():
    assert R.Regularizer()(np.ones(3)) == 0.0
    with pytest.raises(NotImplementedError):
        R.Regularizer().get_config()
