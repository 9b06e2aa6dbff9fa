"""Tests for lamina.losses: values, weighting and reductions against real Keras (torch backend),
gradients (finite differences and torch autograd), the fused crossentropies at extreme logits,
dtypes, bad input and (de)serialization."""

import warnings

import numpy as np
import pytest

import lamina
from lamina import losses, ops
from tests.helpers import check_gradients

RNG = np.random.default_rng(7)
N, K = 6, 4
Y_PROB_PRED = RNG.uniform(0.05, 0.95, (N, K)).astype("float32")
Y_SOFT = (lambda a: (a / a.sum(1, keepdims=True)).astype("float32"))(RNG.uniform(0.1, 1, (N, K)))
Y_ONEHOT = np.eye(K, dtype="float32")[RNG.integers(0, K, N)]
Y_BIN = RNG.integers(0, 2, (N, K)).astype("float32")
Y_PM1 = (2 * Y_BIN - 1).astype("float32")
Z = RNG.normal(0, 3, (N, K)).astype("float32")
LABELS = RNG.integers(0, K, N)
Y_REG = RNG.normal(0, 1, (N, K)).astype("float32")
Y_POS = RNG.uniform(0.1, 3, (N, K)).astype("float32")
SW = RNG.uniform(0.1, 2, N).astype("float32")

# (function name, class name, (y_true, y_pred), keyword arguments)
CASES = [
    ("binary_crossentropy", "BinaryCrossentropy", (Y_BIN, Y_PROB_PRED), {}),
    ("binary_crossentropy", "BinaryCrossentropy", (Y_SOFT, Y_PROB_PRED), {"label_smoothing": 0.2}),
    ("binary_crossentropy", "BinaryCrossentropy", (Y_BIN, Z), {"from_logits": True}),
    ("binary_crossentropy", "BinaryCrossentropy", (Y_BIN, Z), {"from_logits": True, "label_smoothing": 0.1}),
    ("binary_crossentropy", "BinaryCrossentropy", (Y_BIN.T.copy(), Z.T.copy()),
     {"from_logits": True, "axis": 0}),
    ("binary_focal_crossentropy", "BinaryFocalCrossentropy", (Y_BIN, Y_PROB_PRED), {}),
    ("binary_focal_crossentropy", "BinaryFocalCrossentropy", (Y_BIN, Y_PROB_PRED),
     {"apply_class_balancing": True, "alpha": 0.4, "gamma": 1.5, "label_smoothing": 0.1}),
    ("binary_focal_crossentropy", "BinaryFocalCrossentropy", (Y_BIN, Z), {"from_logits": True}),
    ("categorical_crossentropy", "CategoricalCrossentropy", (Y_ONEHOT, Y_PROB_PRED), {}),
    ("categorical_crossentropy", "CategoricalCrossentropy", (Y_SOFT, Y_PROB_PRED), {"label_smoothing": 0.1}),
    ("categorical_crossentropy", "CategoricalCrossentropy", (Y_ONEHOT, Z), {"from_logits": True}),
    ("categorical_crossentropy", "CategoricalCrossentropy", (Y_ONEHOT, Z),
     {"from_logits": True, "label_smoothing": 0.2}),
    ("categorical_crossentropy", "CategoricalCrossentropy", (Y_ONEHOT.T.copy(), Z.T.copy()),
     {"from_logits": True, "axis": 0}),
    ("categorical_crossentropy", "CategoricalCrossentropy", (Y_ONEHOT.T.copy(), Y_PROB_PRED.T.copy()),
     {"axis": 0}),
    ("categorical_focal_crossentropy", "CategoricalFocalCrossentropy", (Y_ONEHOT, Y_PROB_PRED), {}),
    ("categorical_focal_crossentropy", "CategoricalFocalCrossentropy", (Y_ONEHOT, Z),
     {"from_logits": True, "alpha": 0.5, "gamma": 3.0, "label_smoothing": 0.1}),
    ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy", (LABELS, Y_PROB_PRED), {}),
    ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy", (LABELS, Z), {"from_logits": True}),
    ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy",
     (LABELS[:, None].astype("float32"), Z), {"from_logits": True}),
    ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy", (LABELS, Z),
     {"from_logits": True, "ignore_class": 1}),
    ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy", (LABELS, Y_PROB_PRED),
     {"ignore_class": 2}),
    ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy", (LABELS, Z.T.copy()),
     {"from_logits": True, "axis": 0}),
    ("mean_squared_error", "MeanSquaredError", (Y_REG, Z), {}),
    ("mean_absolute_error", "MeanAbsoluteError", (Y_REG, Z), {}),
    ("mean_absolute_percentage_error", "MeanAbsolutePercentageError", (Y_REG, Z), {}),
    ("mean_squared_logarithmic_error", "MeanSquaredLogarithmicError", (Y_POS, Y_PROB_PRED * 3), {}),
    ("huber", "Huber", (Y_REG, Z), {}),
    ("huber", "Huber", (Y_REG, Z), {"delta": 2.5}),
    ("log_cosh", "LogCosh", (Y_REG, Z), {}),
    ("hinge", "Hinge", (Y_BIN, Z), {}),
    ("hinge", "Hinge", (Y_PM1, Z), {}),
    ("squared_hinge", "SquaredHinge", (Y_BIN, Z), {}),
    ("categorical_hinge", "CategoricalHinge", (Y_ONEHOT, Z), {}),
    ("kl_divergence", "KLDivergence", (Y_SOFT, Y_PROB_PRED), {}),
    ("poisson", "Poisson", (Y_POS, Y_PROB_PRED), {}),
    ("cosine_similarity", "CosineSimilarity", (Y_REG, Z), {}),
    ("cosine_similarity", "CosineSimilarity", (Y_REG, Z), {"axis": 0}),
    ("dice", "Dice", (Y_BIN, Y_PROB_PRED), {}),
    ("dice", "Dice", (Y_BIN, Y_PROB_PRED), {"axis": 1}),
    ("tversky", "Tversky", (Y_BIN, Y_PROB_PRED), {"alpha": 0.3, "beta": 0.7, "axis": 1}),
    ("categorical_generalized_cross_entropy", "CategoricalGeneralizedCrossEntropy",
     (LABELS, Y_SOFT), {"q": 0.7}),
]
CASE_IDS = [f"{c[0]}-{i}" for i, c in enumerate(CASES)]
REDUCTIONS = ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None]


def _np(keras, x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _close(got, ref, msg=""):
    got = np.asarray(lamina.ops.convert_to_numpy(got))
    assert got.shape == ref.shape, f"{msg}: shape {got.shape} != {ref.shape}"
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6, err_msg=msg)


def _keras_fn(keras, name):
    return getattr(keras.losses, name)


# ----------------------------------------------------------------------------- functions vs Keras


@pytest.mark.oracle
@pytest.mark.parametrize("fn,cls,data,kw", CASES, ids=CASE_IDS)
def test_function_matches_keras(keras, fn, cls, data, kw):
    y_true, y_pred = data
    t = keras.ops.convert_to_tensor
    ref = _np(keras, _keras_fn(keras, fn)(t(y_true), t(y_pred), **kw))
    got = getattr(losses, fn)(y_true, y_pred, **kw)
    _close(got, ref, fn)
    assert np.asarray(got).dtype == np.float32


# ----------------------------------------------------------------------------- classes vs Keras


def _weights(n, shape):
    rng = np.random.default_rng(3)
    return {
        "none": None,
        "per_sample": rng.uniform(0.1, 2, n).astype("float32"),
        "column": rng.uniform(0.1, 2, (n, 1)).astype("float32"),
        "scalar": np.float32(0.7),
        "zeros": np.zeros(n, dtype="float32"),
        "full": rng.uniform(0.1, 2, shape).astype("float32"),
    }


def _keras_call(loss, y_true, y_pred, sw, loss_shape):
    """Keras's value; where Keras trips over its own in-place ``sample_weight *= mask`` (a scalar or
    (batch, 1) weight meeting ignore_class's mask), it gets the weight pre-broadcast, which is what
    that product means."""
    try:
        return loss(y_true, y_pred, sample_weight=sw)
    except RuntimeError:
        assert getattr(loss, "ignore_class", None) is not None
        sw = np.broadcast_to(sw, np.broadcast_shapes(np.shape(sw), loss_shape)).copy()
        return loss(y_true, y_pred, sample_weight=sw)


@pytest.mark.oracle
@pytest.mark.parametrize("fn,cls,data,kw", CASES, ids=CASE_IDS)
def test_class_matches_keras_every_reduction_and_weight(keras, fn, cls, data, kw):
    y_true, y_pred = data
    per_sample = np.asarray(getattr(losses, fn)(y_true, y_pred, **kw))
    batch = per_sample.shape[0] if per_sample.ndim else y_pred.shape[0]
    for reduction in REDUCTIONS:
        ours = getattr(losses, cls)(reduction=reduction, **kw)
        theirs = getattr(keras.losses, cls)(reduction=reduction, **kw)
        for wname, sw in _weights(batch, per_sample.shape).items():
            if wname == "full" and per_sample.ndim == 0:
                continue
            msg = f"{cls}({kw}) reduction={reduction} sample_weight={wname}"
            ref = _np(keras, _keras_call(theirs, y_true, y_pred, sw, per_sample.shape))
            got = ours(y_true, y_pred, sample_weight=sw)
            _close(got, ref, msg)
            assert np.asarray(got).dtype == np.float32, msg


@pytest.mark.oracle
@pytest.mark.parametrize("cls,y_true,y_pred", [
    ("MeanSquaredError", Y_REG[:, 0], Z[:, :1]),          # (n,) against (n, 1)
    ("MeanAbsoluteError", Y_REG[:, :1], Z[:, 0]),          # (n, 1) against (n,)
    ("BinaryCrossentropy", Y_BIN[:, 0], Y_PROB_PRED[:, :1]),
    ("Huber", Y_REG[:, 0], Z[:, :1]),
])
def test_class_aligns_ranks_like_keras(keras, cls, y_true, y_pred):
    for reduction in REDUCTIONS:
        for sw in (None, SW, SW[:, None]):
            theirs = getattr(keras.losses, cls)(reduction=reduction)
            ref = _np(keras, theirs(y_true, y_pred, sample_weight=sw))
            got = getattr(losses, cls)(reduction=reduction)(y_true, y_pred, sample_weight=sw)
            _close(got, ref, f"{cls} reduction={reduction}")


@pytest.mark.oracle
@pytest.mark.parametrize("ignore_class", [None, 0, -1])
@pytest.mark.parametrize("from_logits", [True, False])
def test_sparse_temporal_labels_weights_and_ignore_class(keras, ignore_class, from_logits):
    rng = np.random.default_rng(11)
    y_pred = rng.normal(0, 2, (4, 5, 3)).astype("float32")
    if not from_logits:
        y_pred = np.exp(y_pred) / np.exp(y_pred).sum(-1, keepdims=True)
    labels = rng.integers(0, 3, (4, 5))
    if ignore_class is not None:
        labels[rng.uniform(size=labels.shape) < 0.3] = ignore_class
    sw_time = rng.uniform(0.1, 2, (4, 5)).astype("float32")
    for reduction in REDUCTIONS:
        # Keras does not broadcast (batch,) weights against (batch, time) losses; (batch, 1) does.
        for sw in (None, SW[:4, None], sw_time):
            kw = {"from_logits": from_logits, "ignore_class": ignore_class, "reduction": reduction}
            ref = _np(keras, _keras_call(keras.losses.SparseCategoricalCrossentropy(**kw), labels, y_pred, sw,
                                         labels.shape))
            got = losses.SparseCategoricalCrossentropy(**kw)(labels, y_pred, sample_weight=sw)
            _close(got, ref, f"reduction={reduction}")
    ref = _np(keras, keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits, ignore_class))
    _close(losses.sparse_categorical_crossentropy(labels, y_pred, from_logits, ignore_class), ref)


@pytest.mark.oracle
def test_sparse_labels_all_ignored_gives_zero(keras):
    labels = np.full(N, 3)
    for reduction in ("sum_over_batch_size", "sum", "mean_with_sample_weight"):
        ref = _np(keras, keras.losses.SparseCategoricalCrossentropy(True, 3, reduction)(labels, Z))
        got = losses.SparseCategoricalCrossentropy(True, 3, reduction)(labels, Z)
        _close(got, ref)
        assert float(got) == 0.0


# ----------------------------------------------------------------------------- gradients vs torch autograd


def _lamina_grad(loss, y_true, y_pred, **call_kw):
    v = lamina.Variable(y_pred)
    with lamina.GradientTape() as tape:
        out = ops.sum(loss(y_true, v, **call_kw))
    return tape.gradient(out, v)


def _torch_grad(loss, y_true, y_pred, **call_kw):
    import torch

    t = torch.tensor(y_pred, requires_grad=True)
    loss(y_true, t, **call_kw).sum().backward()
    return t.grad.numpy()


@pytest.mark.oracle
@pytest.mark.parametrize("fn,cls,data,kw", CASES, ids=CASE_IDS)
def test_class_gradient_matches_torch_autograd(keras, fn, cls, data, kw):
    y_true, y_pred = data
    per_sample = np.asarray(getattr(losses, fn)(y_true, y_pred, **kw))
    sw = SW if per_sample.shape[:1] == (N,) else None
    for reduction in ("sum_over_batch_size", "sum"):
        theirs = getattr(keras.losses, cls)(reduction=reduction, **kw)
        ref = _torch_grad(theirs, y_true, y_pred, sample_weight=sw)
        got = _lamina_grad(getattr(losses, cls)(reduction=reduction, **kw), y_true, y_pred, sample_weight=sw)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6, err_msg=f"{cls} {reduction}")


# ----------------------------------------------------------------------------- finite differences


def _smooth_case(fn, data):
    """Float64 data away from clip boundaries and kinks (gradcheck's central differences)."""
    y_true, y_pred = (np.asarray(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else a for a in data)
    return y_true, y_pred


@pytest.mark.parametrize("fn,cls,data,kw", CASES, ids=CASE_IDS)
def test_function_gradcheck(fn, cls, data, kw):
    y_true, y_pred = _smooth_case(fn, data)
    f = getattr(losses, fn)
    check_gradients(lambda p: f(y_true, p, **kw), y_pred)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight", None])
@pytest.mark.parametrize("fn,cls,data,kw", [c for c in CASES if "crossentropy" in c[0]],
                         ids=[i for c, i in zip(CASES, CASE_IDS, strict=True) if "crossentropy" in c[0]])
def test_class_gradcheck(fn, cls, data, kw, reduction):
    y_true, y_pred = _smooth_case(fn, data)
    loss = getattr(losses, cls)(reduction=reduction, dtype="float64", **kw)
    sw = SW if np.shape(getattr(losses, fn)(y_true, y_pred, **kw))[:1] == (N,) else None
    check_gradients(lambda p: loss(y_true, p, sample_weight=sw), y_pred)


def test_gradcheck_through_sample_weight_and_y_true():
    y_soft = Y_SOFT.astype(np.float64)
    check_gradients(lambda y, p: losses.categorical_crossentropy(y, p, from_logits=True), y_soft, Z)
    check_gradients(lambda y, p: losses.binary_crossentropy(y, p, from_logits=True), y_soft, Z)
    check_gradients(lambda y, p: losses.binary_crossentropy(y, p), y_soft, Y_PROB_PRED)
    check_gradients(lambda y, p: losses.categorical_crossentropy(y, p), y_soft, Y_PROB_PRED)
    loss = losses.MeanSquaredError(reduction="mean_with_sample_weight", dtype="float64")
    check_gradients(lambda p, w: loss(Y_REG, p, sample_weight=w), Z, SW)


# ----------------------------------------------------------------------------- fused crossentropies, extremes

EXTREME = np.array([[1e4, -1e4, 0.0, 5.0], [-1e4, -1e4, 1e4, 1e4], [3.0, -2.0, 1e4, -1e4]], dtype=np.float32)


def _softmax(z):
    with np.errstate(under="ignore"):
        e = np.exp(z.astype(np.float64) - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _sigmoid(z):
    return 0.5 * np.tanh(0.5 * z.astype(np.float64)) + 0.5


@pytest.fixture
def strict():
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_softmax_crossentropy_extreme_logits(strict):
    y = np.eye(4, dtype=np.float32)[[1, 0, 3]]
    out = losses.categorical_crossentropy(y, EXTREME, from_logits=True)
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    np.testing.assert_allclose(out, [2e4, 2e4 + np.log(2), 2e4], rtol=1e-6)
    g = _lamina_grad(losses.CategoricalCrossentropy(from_logits=True), y, EXTREME)
    np.testing.assert_allclose(g, (_softmax(EXTREME) - y) / 3, atol=1e-7)
    g = _lamina_grad(losses.CategoricalCrossentropy(from_logits=True, reduction="sum"), y, EXTREME)
    np.testing.assert_allclose(g, _softmax(EXTREME) - y, atol=1e-7)


def test_sparse_crossentropy_extreme_logits(strict):
    labels = np.array([1, 0, 3])
    out = losses.sparse_categorical_crossentropy(labels, EXTREME, from_logits=True)
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    np.testing.assert_allclose(out, [2e4, 2e4 + np.log(2), 2e4], rtol=1e-6)
    onehot = np.eye(4)[labels]
    for y in (labels, labels[:, None].astype(np.float32)):
        g = _lamina_grad(losses.SparseCategoricalCrossentropy(from_logits=True), y, EXTREME)
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, (_softmax(EXTREME) - onehot) / 3, atol=1e-7)


def test_sigmoid_crossentropy_extreme_logits(strict):
    y = np.array([[1, 0, 1, 0], [0, 1, 1, 0], [1, 1, 0, 0]], dtype=np.float32)
    out = losses.binary_crossentropy(y, EXTREME, from_logits=True)
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    z64 = EXTREME.astype(np.float64)
    with np.errstate(under="ignore"):
        ref = np.mean(np.maximum(z64, 0) - z64 * y + np.log1p(np.exp(-np.abs(z64))), axis=-1)
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    g = _lamina_grad(losses.BinaryCrossentropy(from_logits=True), y, EXTREME)
    np.testing.assert_allclose(g, (_sigmoid(EXTREME) - y) / y.size, atol=1e-9)


def test_probability_crossentropies_extremes_are_finite(strict):
    p = np.array([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]], dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[[1, 2]]
    for value in (losses.categorical_crossentropy(y, p), losses.sparse_categorical_crossentropy([1, 2], p),
                  losses.binary_crossentropy(y, p), losses.binary_focal_crossentropy(y, p)):
        assert value.dtype == np.float32 and np.all(np.isfinite(value))
    for loss in (losses.CategoricalCrossentropy(), losses.BinaryCrossentropy()):
        assert np.all(np.isfinite(_lamina_grad(loss, y, p)))
    assert np.all(np.isfinite(_lamina_grad(losses.SparseCategoricalCrossentropy(), [1, 2], p)))
    assert np.all(np.isfinite(losses.binary_focal_crossentropy(y, EXTREME[:2], from_logits=True)))
    assert np.all(np.isfinite(losses.log_cosh(np.zeros_like(EXTREME), EXTREME)))


@pytest.mark.oracle
def test_extreme_logits_match_keras(keras):
    y = np.eye(4, dtype=np.float32)[[1, 0, 3]]
    _close(losses.categorical_crossentropy(y, EXTREME, from_logits=True),
           _np(keras, keras.losses.categorical_crossentropy(y, EXTREME, from_logits=True)))
    _close(losses.sparse_categorical_crossentropy([1, 0, 3], EXTREME, from_logits=True),
           _np(keras, keras.losses.sparse_categorical_crossentropy(np.array([1, 0, 3]), EXTREME, True)))
    _close(losses.binary_crossentropy(y, EXTREME, from_logits=True),
           _np(keras, keras.losses.binary_crossentropy(y, EXTREME, from_logits=True)))


# ----------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("fn,cls,data,kw", CASES, ids=CASE_IDS)
def test_float32_preserved_and_float64_loss_dtype(fn, cls, data, kw):
    y_true, y_pred = data
    assert losses.get(fn)(y_true, y_pred, **kw).dtype == np.float32
    assert getattr(losses, cls)(**kw)(y_true, y_pred).dtype == np.float32
    assert getattr(losses, cls)(**kw)(y_true, y_pred.astype(np.float64)).dtype == np.float32
    loss64 = getattr(losses, cls)(dtype="float64", **kw)
    assert loss64.dtype == "float64"
    assert loss64(y_true, y_pred).dtype == np.float64
    assert losses.get(fn)(y_true, y_pred.astype(np.float64), **kw).dtype == np.float64


def test_integer_and_list_inputs_become_float32():
    out = losses.mean_squared_error([[1, 2], [3, 4]], [[1, 2], [3, 5]])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.5])
    assert losses.MeanSquaredError()(np.array([[1, 2]]), np.array([[2, 2]])).dtype == np.float32


def test_outside_tape_returns_plain_arrays():
    assert isinstance(losses.CategoricalCrossentropy(from_logits=True)(Y_ONEHOT, Z), (np.ndarray, np.generic))
    assert type(losses.sparse_categorical_crossentropy(LABELS, Z, from_logits=True)) is np.ndarray
    with lamina.GradientTape():
        # No input needs a gradient: still no graph.
        assert not isinstance(losses.BinaryCrossentropy(from_logits=True)(Y_BIN, Z), lamina.Tensor)


# ----------------------------------------------------------------------------- bad input


def _raises(match_parts, fn, *args, **kw):
    with pytest.raises(ValueError) as info:
        fn(*args, **kw)
    msg = str(info.value)
    for part in match_parts:
        assert part in msg, msg
    assert "Received:" in msg, msg
    return msg


def test_batch_size_mismatch():
    _raises(["mean_squared_error", "batch size", "(5, 4)"], losses.mean_squared_error, Y_REG[:5], Z)
    _raises(["mean_squared_error"], losses.MeanSquaredError(), Y_REG[:5], Z)
    _raises(["binary_crossentropy", "(5, 4)"], losses.binary_crossentropy, Y_BIN[:5], Y_PROB_PRED)
    _raises(["categorical_crossentropy", "batch sizes differ"], losses.CategoricalCrossentropy(),
            Y_ONEHOT[:5], Z)
    _raises(["sparse_categorical_crossentropy", "(6,)"], losses.sparse_categorical_crossentropy,
            LABELS[:5], Z)
    _raises(["hinge"], losses.hinge, Y_BIN[:5], Z)


def test_sparse_labels_out_of_range():
    for bad in (np.array([0, 1, 4, 0, 0, 0]), np.array([0, -1, 2, 0, 0, 0])):
        msg = _raises(["sparse_categorical_crossentropy", "[0, 4)"], losses.sparse_categorical_crossentropy,
                      bad, Z, from_logits=True)
        assert str(bad.max() if bad.max() >= 4 else bad.min()) in msg
        _raises(["sparse_categorical_crossentropy"], losses.SparseCategoricalCrossentropy(), bad, Y_PROB_PRED)
    # With ignore_class, the ignored value may be out of range.
    labels = np.array([0, -1, 2, 0, 3, 1])
    assert np.isfinite(losses.SparseCategoricalCrossentropy(True, ignore_class=-1)(labels, Z))


def test_sparse_labels_must_be_integral():
    _raises(["sparse_categorical_crossentropy", "integer", "1.5"], losses.sparse_categorical_crossentropy,
            np.array([0, 1.5, 2, 0, 0, 0]), Z)


def test_one_hot_labels_given_to_sparse_loss():
    _raises(["sparse_categorical_crossentropy", "one-hot", "categorical_crossentropy"],
            losses.sparse_categorical_crossentropy, Y_ONEHOT, Z, from_logits=True)
    _raises(["one-hot"], losses.SparseCategoricalCrossentropy(from_logits=True), Y_ONEHOT, Z)


def test_integer_labels_given_to_categorical_loss():
    _raises(["categorical_crossentropy", "sparse_categorical_crossentropy", "(6,)"],
            losses.categorical_crossentropy, LABELS, Z, from_logits=True)
    _raises(["sparse_categorical_crossentropy"], losses.CategoricalCrossentropy(), LABELS[:, None], Z)


def test_unknown_reduction():
    for cls in (losses.MeanSquaredError, losses.SparseCategoricalCrossentropy, losses.Loss):
        _raises(["reduction", "sum_over_batch_size", "'average'"], cls, reduction="average")
    _raises(["reduction"], losses.reduce_weighted_values, np.ones(3), reduction="avg")


def test_bad_sample_weight_shape():
    _raises(["sample_weight", "(5,)"], losses.MeanSquaredError(), Y_REG, Z, sample_weight=np.ones(5))


def test_bad_axis():
    with pytest.raises(ValueError, match="axis"):
        losses.categorical_crossentropy(Y_ONEHOT, Z, axis=True)
    _raises(["axis"], losses.categorical_crossentropy, Y_ONEHOT, Z, axis=2)


def test_categorical_generalized_q_range():
    _raises(["q"], losses.CategoricalGeneralizedCrossEntropy, q=1.0)


def test_single_class_categorical_warns():
    with pytest.warns(SyntaxWarning, match="binary_crossentropy"):
        losses.categorical_crossentropy(np.ones((3, 1)), np.full((3, 1), 0.9))


# ----------------------------------------------------------------------------- get / serialize / config


@pytest.mark.oracle
def test_get_every_keras_name(keras):
    from keras.src.losses import ALL_OBJECTS_DICT

    skip = {"CTC", "ctc", "Circle", "circle", "LossFunctionWrapper"}  # the wrapper needs an `fn`
    for name in ALL_OBJECTS_DICT:
        if name in skip:
            continue
        ours, theirs = losses.get(name), keras.losses.get(name)
        if isinstance(theirs, keras.losses.Loss):
            assert type(ours).__name__ == type(theirs).__name__, name
            assert isinstance(ours, losses.Loss)
            if name != "Loss":  # auto-generated names differ ("loss_3")
                assert ours.get_config().items() >= theirs.get_config().items(), name
        else:
            assert ours.__name__ == theirs.__name__, name


def test_get_identifiers():
    assert losses.get(None) is None
    assert losses.get("mse") is losses.mean_squared_error is losses.MSE
    assert losses.get("categorical_crossentropy") is losses.categorical_crossentropy
    inst = losses.get("CategoricalCrossentropy")
    assert isinstance(inst, losses.CategoricalCrossentropy) and not inst.from_logits
    same = losses.Huber(delta=3.0)
    assert losses.get(same) is same
    assert isinstance(losses.get(losses.Hinge), losses.Hinge)
    f = lambda y, p: ops.mean(ops.abs(y - p), axis=-1)
    assert losses.get(f) is f
    d = losses.get({"class_name": "CategoricalCrossentropy", "config": {"from_logits": True}})
    assert isinstance(d, losses.CategoricalCrossentropy) and d.from_logits


def test_get_unknown_name_lists_names_and_closest():
    msg = _raises(["Did you mean 'categorical_crossentropy'", "mean_squared_error", "Huber"],
                  losses.get, "categorial_crossentropy")
    assert "'categorial_crossentropy'" in msg
    _raises(["Could not interpret"], losses.get, 42)


CONFIG_CASES = [(cls, kw) for _, cls, _, kw in CASES] + [("CategoricalGeneralizedCrossEntropy", {"q": 0.3})]


@pytest.mark.parametrize("cls,kw", CONFIG_CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CONFIG_CASES)])
def test_config_round_trip(cls, kw):
    loss = getattr(losses, cls)(reduction="sum", name="my_loss", **kw)
    config = loss.get_config()
    assert config["name"] == "my_loss" and config["reduction"] == "sum"
    for key, value in kw.items():
        assert config[key] == value
    again = type(loss).from_config(config)
    assert again.get_config() == config
    restored = losses.deserialize(losses.serialize(loss))
    assert type(restored) is type(loss) and restored.get_config() == config


@pytest.mark.oracle
@pytest.mark.parametrize("cls,kw", CONFIG_CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CONFIG_CASES)])
def test_serialized_form_interoperates_with_keras(keras, cls, kw):
    ours = getattr(losses, cls)(reduction="sum", **kw)
    theirs = getattr(keras.losses, cls)(reduction="sum", **kw)
    ser_ours, ser_theirs = losses.serialize(ours), keras.losses.serialize(theirs)
    assert {k: v for k, v in ser_ours.items() if k != "config"} == \
        {k: v for k, v in ser_theirs.items() if k != "config"}
    assert ser_ours["config"].items() >= ser_theirs["config"].items()
    # Each side loads the other's dict (Keras's registry lacks CategoricalGeneralizedCrossEntropy).
    if cls != "CategoricalGeneralizedCrossEntropy":
        assert type(keras.losses.deserialize(ser_ours)).__name__ == cls
    assert losses.deserialize(ser_theirs).get_config().items() >= ser_theirs["config"].items()


@pytest.mark.oracle
def test_function_serialization_matches_keras(keras):
    for name in ("mean_squared_error", "sparse_categorical_crossentropy", "huber"):
        assert losses.serialize(getattr(losses, name)) == keras.losses.serialize(getattr(keras.losses, name))
        assert losses.deserialize(losses.serialize(getattr(losses, name))) is getattr(losses, name)


def test_loss_function_wrapper_round_trip():
    wrapped = losses.LossFunctionWrapper(losses.huber, name="wrapped", delta=2.0)
    config = wrapped.get_config()
    assert config["fn"]["config"] == "huber" and config["delta"] == 2.0
    again = losses.LossFunctionWrapper.from_config(config)
    np.testing.assert_allclose(again(Y_REG, Z), wrapped(Y_REG, Z))
    np.testing.assert_allclose(wrapped(Y_REG, Z), np.mean(losses.huber(Y_REG, Z, delta=2.0)), rtol=1e-6)


def test_deserialize_custom_objects():
    def my_loss(y_true, y_pred):
        return ops.mean(ops.square(y_true - y_pred), axis=-1)

    config = losses.serialize(my_loss)
    assert config["config"] == "my_loss"
    assert losses.deserialize(config, custom_objects={"my_loss": my_loss}) is my_loss
    with pytest.raises(ValueError, match="my_loss"):
        losses.deserialize(config)


# ----------------------------------------------------------------------------- Loss base class


def test_custom_subclass_uses_keras_weighting_and_auto_names():
    class AbsLoss(losses.Loss):
        def call(self, y_true, y_pred):
            return ops.mean(ops.abs(y_true - y_pred), axis=-1)

    a, b = AbsLoss(), AbsLoss()
    assert a.name == "abs_loss" and b.name.startswith("abs_loss_")
    expected = np.sum(np.mean(np.abs(Y_REG - Z), -1) * SW) / N
    np.testing.assert_allclose(a(Y_REG, Z, sample_weight=SW), expected, rtol=1e-6)
    assert a.get_config() == {"name": "abs_loss", "reduction": "sum_over_batch_size"}
    with pytest.raises(NotImplementedError):
        losses.Loss()(Y_REG, Z)


def test_defaults_follow_keras():
    assert losses.Huber().name == "huber_loss"
    assert losses.MeanSquaredError().reduction == "sum_over_batch_size"
    bfc = losses.BinaryFocalCrossentropy()
    assert (bfc.alpha, bfc.gamma, bfc.apply_class_balancing, bfc.from_logits) == (0.25, 2.0, False, False)
    assert losses.SparseCategoricalCrossentropy().ignore_class is None
    assert losses.CategoricalCrossentropy().dtype == "float32"


def test_sum_over_batch_size_divides_by_element_count():
    # Keras divides the weighted sum by the number of elements, not by the sum of the weights.
    per = losses.mean_squared_error(Y_REG, Z)
    w = np.array([1, 0, 0, 0, 0, 0], dtype=np.float32)
    np.testing.assert_allclose(losses.MeanSquaredError()(Y_REG, Z, sample_weight=w), per[0] / N, rtol=1e-6)
    np.testing.assert_allclose(
        losses.MeanSquaredError(reduction="mean_with_sample_weight")(Y_REG, Z, sample_weight=w), per[0],
        rtol=1e-6)
    assert losses.MeanSquaredError(reduction="none")(Y_REG, Z).shape == (N,)


def test_sparse_nan_label_is_reported(strict):
    _raises(["integer", "nan"], losses.sparse_categorical_crossentropy, np.array([0, np.nan, 1, 0, 0, 0]), Z)


def test_registered_custom_loss_round_trips():
    from lamina.saving import register_keras_serializable

    @register_keras_serializable(package="LossTests")
    class ScaledMSE(losses.Loss):
        def __init__(self, scale=2.0, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale

        def call(self, y_true, y_pred):
            return self.scale * losses.mean_squared_error(y_true, y_pred)

        def get_config(self):
            return {**super().get_config(), "scale": self.scale}

    @register_keras_serializable(package="LossTests")
    def half_mae(y_true, y_pred):
        return 0.5 * losses.mean_absolute_error(y_true, y_pred)

    config = losses.serialize(ScaledMSE(scale=3.0, name="s"))
    assert config["registered_name"] == "LossTests>ScaledMSE"
    restored = losses.deserialize(config)
    assert isinstance(restored, ScaledMSE) and restored.scale == 3.0 and restored.name == "s"
    np.testing.assert_allclose(restored(Y_REG, Z), 3.0 * losses.MeanSquaredError()(Y_REG, Z), rtol=1e-6)
    assert losses.deserialize(losses.serialize(half_mae)) is half_mae
    assert losses.get("LossTests>half_mae") is half_mae


@pytest.mark.oracle
def test_custom_function_serialization_matches_keras(keras):
    from lamina.saving import register_keras_serializable

    def plain_loss(y_true, y_pred):
        return losses.mean_squared_error(y_true, y_pred)

    @register_keras_serializable(package="LossFnTests")
    def registered_loss(y_true, y_pred):
        return losses.mean_squared_error(y_true, y_pred)

    keras.saving.register_keras_serializable(package="LossFnTests")(registered_loss)
    for fn in (plain_loss, registered_loss):
        assert losses.serialize(fn) == keras.losses.serialize(fn)
    assert losses.deserialize(losses.serialize(registered_loss)) is registered_loss


def test_builtin_class_configs_hold_their_function_arguments():
    config = losses.BinaryFocalCrossentropy(alpha=0.3, gamma=1.5, from_logits=True).get_config()
    assert config == {"name": "binary_focal_crossentropy", "reduction": "sum_over_batch_size",
                      "from_logits": True, "label_smoothing": 0.0, "axis": -1,
                      "apply_class_balancing": False, "alpha": 0.3, "gamma": 1.5}
    assert "fn" not in losses.Huber(delta=2.0).get_config()
    # Keras's config drops delta (a saved Huber(delta=2.0) reloads as 1.0 there); lamina keeps it.
    assert losses.Huber(delta=2.0).get_config()["delta"] == 2.0
