"""Every op's gradient against central differences, plus forward values against NumPy."""

import ast
import inspect
import math
import pathlib
import warnings

import numpy as np
import pytest

import lamina
from lamina import activations, ops, special
from tests.helpers import check_gradients

R = np.random.default_rng(0)
A = R.normal(size=(3, 4))
B = R.normal(size=(3, 4))
POS = R.uniform(0.5, 2.0, size=(3, 4))

UNARY = {
    "exp": ops.exp, "log": lambda x: ops.log(ops.abs(x) + 1.0), "sqrt": lambda x: ops.sqrt(ops.abs(x) + 1.0),
    "square": ops.square, "abs": ops.abs, "tanh": ops.tanh, "sigmoid": ops.sigmoid, "relu": ops.relu,
    "softplus": ops.softplus, "softmax": ops.softmax, "log_softmax": ops.log_softmax, "erf": ops.erf,
    "expm1": ops.expm1, "log1p": lambda x: ops.log1p(ops.abs(x)), "sin": ops.sin, "cos": ops.cos,
    "negative": ops.negative, "sum": lambda x: ops.sum(x, axis=1), "mean": lambda x: ops.mean(x, axis=0),
    "sum_keep": lambda x: ops.sum(x, axis=0, keepdims=True), "max": lambda x: ops.max(x, axis=1),
    "min": lambda x: ops.min(x, axis=0), "logsumexp": lambda x: ops.logsumexp(x, axis=1),
    "reshape": lambda x: ops.reshape(x, (4, 3)), "transpose": ops.transpose,
    "expand_dims": lambda x: ops.expand_dims(x, 1), "squeeze": lambda x: ops.squeeze(ops.expand_dims(x, 0), 0),
    "clip": lambda x: ops.clip(x, -0.5, 0.5), "getitem": lambda x: x[1:, ::2],
    "take": lambda x: ops.take(x, np.array([0, 2, 2]), axis=1), "cast": lambda x: ops.cast(x, "float64"),
    "broadcast_to": lambda x: ops.broadcast_to(x, (2, 3, 4)),
}
BINARY = {
    "add": ops.add, "subtract": ops.subtract, "multiply": ops.multiply,
    "divide": lambda a, b: ops.divide(a, ops.abs(b) + 1.0), "maximum": ops.maximum, "minimum": ops.minimum,
    "power": lambda a, b: ops.power(ops.abs(a) + 0.5, b),
    "matmul": lambda a, b: ops.matmul(a, ops.transpose(b)),
    "concatenate": lambda a, b: ops.concatenate([a, b], axis=1), "stack": lambda a, b: ops.stack([a, b], axis=1),
    "where": lambda a, b: ops.where(A > 0, a, b),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_gradients(name):
    check_gradients(UNARY[name], A)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_gradients(name):
    check_gradients(BINARY[name], A, B)


def test_broadcasting_binary_gradients():
    check_gradients(ops.multiply, A, R.normal(size=(4,)))
    check_gradients(ops.add, A, R.normal(size=(3, 1)))
    check_gradients(lambda a, b: ops.matmul(a, b), R.normal(size=(2, 3, 4)), R.normal(size=(4, 5)))


@pytest.mark.parametrize("name,fn,ref", [
    ("exp", ops.exp, np.exp), ("tanh", ops.tanh, np.tanh), ("abs", ops.abs, np.abs),
    ("sigmoid", ops.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    ("softplus", ops.softplus, lambda x: np.log1p(np.exp(x))),
])
def test_forward_matches_numpy_and_keeps_float32(name, fn, ref):
    x = A.astype("float32")
    out = fn(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref(A), rtol=1e-5, atol=1e-6)


def test_erf_matches_math_erf_including_tails():
    xs = np.linspace(-6, 6, 241)
    got = ops.erf(xs.astype("float32")).astype(np.float64)
    want = np.array([math.erf(v) for v in xs])
    np.testing.assert_allclose(got, want, rtol=2e-7, atol=1e-7)


def test_special_functions_keep_relative_precision():
    # erf near 0 (a series, not 1 - erfc) and erfc deep in the right tail (no 1 - erf cancellation).
    xs = np.concatenate([-np.logspace(-30, 1.4, 400), [0.0], np.logspace(-30, 1.4, 400)])
    np.testing.assert_allclose(special.erf(xs), [math.erf(v) for v in xs], rtol=1.2e-7, atol=0)
    zs = np.concatenate([np.linspace(-6, 26.5, 600), [0.5, 2.0, 9.0]])
    np.testing.assert_allclose(special.erfc(zs), [math.erfc(z) for z in zs], rtol=1.2e-7, atol=0)
    tiny = ops.erf(np.array([1e-20, -3e-9], np.float32))
    np.testing.assert_allclose(tiny, [2 / math.sqrt(math.pi) * 1e-20, -2 / math.sqrt(math.pi) * 3e-9], rtol=1e-6)


def test_special_functions_at_non_finite_and_huge_inputs_warn_nothing():
    x = np.array([np.nan, np.inf, -np.inf, 1e308, -1e308, -0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            erf, erfc = special.erf(x), special.erfc(x)
            v = lamina.Variable(x, dtype="float64")
            with lamina.GradientTape() as tape:
                y = ops.erf(v)
            grad = tape.gradient(y, v)
    np.testing.assert_array_equal(erf, [np.nan, 1, -1, 1, -1, 0])
    assert np.signbit(erf[-1])  # erf(-0.0) = -0.0
    np.testing.assert_array_equal(erfc[:5], [np.nan, 0, 2, 0, 2])
    np.testing.assert_array_equal(grad, [np.nan, 0, 0, 0, 0, 2 / math.sqrt(math.pi)])


def test_stable_at_extremes_without_warnings():
    x = np.array([-1e4, -50, 0, 50, 1e4], "float32")
    # Underflow to 0 is the exact float32 answer (NumPy ignores it by default); the rest must not happen.
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        for fn in (ops.sigmoid, ops.softplus, ops.tanh, ops.relu, ops.erf):
            assert np.all(np.isfinite(fn(x)))
        s = ops.softmax(x)
        np.testing.assert_allclose(s.sum(), 1.0, rtol=1e-6)
        assert np.all(np.isfinite(ops.log_softmax(x)))


def test_softmax_shift_invariant():
    x = (np.round(A * 8) / 8).astype("float32")  # exact in float32 after the shift too
    np.testing.assert_allclose(ops.softmax(x), ops.softmax(x + 1000.0), rtol=1e-6, atol=1e-7)


def test_conversion_helpers():
    t = ops.convert_to_tensor([1.0, 2.0])
    assert t.dtype == np.float32
    assert ops.convert_to_numpy(t).tolist() == [1.0, 2.0]
    assert ops.one_hot(np.array([0, 2]), 3).tolist() == [[1, 0, 0], [0, 0, 1]]
    assert ops.shape(np.zeros((2, 5))) == (2, 5)


# ----------------------------------------------------------------------------- edge cases


def test_every_public_op_has_a_docstring():
    public = [n for n, f in vars(ops).items() if inspect.isfunction(f) and not n.startswith("_")
              and f.__module__ in ("lamina.ops", "lamina.activations")]
    assert len(public) > 60
    assert [n for n in public if not (inspect.getdoc(getattr(ops, n)) or "").strip()] == []


def _imports(path):
    """(module, inside_a_function) for every import statement of a source file."""
    tree = ast.parse(pathlib.Path(path).read_text())
    nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f) if n is not f}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mods = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        else:
            continue
        found += [(m, id(node) in nested) for m in mods]
    return found


def test_layering_ops_uses_activations_and_special_one_way():
    in_activations = [m for m, _ in _imports(activations.__file__)]
    assert not [m for m in in_activations if m == "lamina.ops" or m.startswith("lamina.ops.")]
    assert not [m for m, _ in _imports(special.__file__) if m.startswith("lamina")]
    assert ("lamina.activations", False) in _imports(ops.__file__)
    assert not [m for m, nested in _imports(ops.__file__) if nested]  # nothing imported lazily
    # ops.relu etc. are the activations (one implementation): same values, and the same function
    # objects where the signatures agree, so Dense fuses and serializes them by name.
    for name in ("sigmoid", "softmax", "log_softmax", "softplus"):
        assert getattr(ops, name) is getattr(activations, name)
    np.testing.assert_array_equal(ops.relu(A), activations.relu(A))


def test_one_hot_gives_zeros_outside_the_classes():
    out = ops.one_hot(np.array([0, 2, -1, 3, -4]), 3)
    np.testing.assert_array_equal(out, [[1, 0, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(ops.one_hot(np.array([[1, -1]]), 2, axis=1), [[[0, 0], [1, 0]]])


@pytest.mark.oracle
def test_one_hot_matches_keras_for_negative_indices(keras):
    idx = np.array([[0, -1, 2], [1, 1, -2]])
    for axis in (-1, 0, 1):
        want = keras.ops.convert_to_numpy(keras.ops.one_hot(idx, 3, axis=axis))
        np.testing.assert_array_equal(ops.one_hot(idx, 3, axis=axis), want)


def test_max_and_min_honour_initial():
    x = np.array([[1.0, 5.0, 5.0], [-2.0, -3.0, 0.5]])
    np.testing.assert_array_equal(ops.max(x, axis=1, initial=2.0), [5.0, 2.0])
    np.testing.assert_array_equal(ops.min(x, axis=1, initial=0.0), [0.0, -3.0])
    assert ops.max(np.zeros((0,)), initial=-1.0) == -1.0  # an empty slice needs `initial`
    v = lamina.Variable(x, dtype="float64")
    with lamina.GradientTape() as tape:
        y = ops.max(v, axis=1, initial=2.0)
    # Row 0: the tie at 5 shares the gradient; row 1: `initial` is the maximum, no entry gets any.
    np.testing.assert_array_equal(tape.gradient(y, v), [[0, 0.5, 0.5], [0, 0, 0]])
    check_gradients(lambda t: ops.min(t, axis=0, initial=0.0), A)


@pytest.mark.oracle
def test_max_initial_matches_keras(keras):
    x = np.array([[1.0, 5.0], [-2.0, -3.0]], np.float32)
    for fn in ("max", "min"):
        want = keras.ops.convert_to_numpy(getattr(keras.ops, fn)(x, axis=1, initial=0.0))
        np.testing.assert_array_equal(getattr(ops, fn)(x, axis=1, initial=0.0), want)


def test_logsumexp_of_an_all_minus_inf_slice_is_minus_inf_without_warning():
    x = np.array([[-np.inf, -np.inf], [0.0, -np.inf], [np.inf, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ops.logsumexp(x, axis=1)
    np.testing.assert_array_equal(out, [-np.inf, 0.0, np.inf])


def test_take_gradient_with_a_negative_axis_and_matrix_indices_and_an_empty_batch():
    """A negative axis with 2-D indices puts each gradient on its own column; no index gives zeros."""
    v = lamina.Variable(np.arange(15, dtype="float32").reshape(5, 3))
    with lamina.GradientTape() as tape:
        y = ops.sum(ops.take(v, np.array([[0, 1], [2, 2]]), axis=-1))
    np.testing.assert_array_equal(np.asarray(tape.gradient(y, v)), np.tile([1.0, 1.0, 2.0], (5, 1)))
    with lamina.GradientTape() as tape:
        y = ops.sum(ops.take(v, np.zeros((0, 4), "int64"), axis=0))
    np.testing.assert_array_equal(np.asarray(tape.gradient(y, v)), np.zeros((5, 3)))


def test_normalize_over_several_axes_sums_squares_over_all_of_them():
    """Keras's L2 normalize divides by the root of the sum of squares over every given axis."""
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype("float32")
    x[0] = 0.0
    for axis in ((1, 2), (0, 1, 2)):
        expected = x / np.maximum(np.sqrt(np.sum(x * x, axis=axis, keepdims=True)), 1e-7)
        np.testing.assert_allclose(np.asarray(ops.normalize(x, axis=axis)), expected, rtol=1e-6, atol=1e-7)
    v = lamina.Variable(x)
    with lamina.GradientTape() as tape:
        y = ops.sum(ops.normalize(v, axis=(1, 2)))
    assert np.isfinite(np.asarray(tape.gradient(y, v))).all()
