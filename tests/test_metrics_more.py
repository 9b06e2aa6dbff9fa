"""lamina.metrics, the second half: F-scores, R2, the "X at Y" rates, probabilistic, hinge, cosine and
log-cosh metrics, against real Keras (torch): values over several batches, state, configs, names, and
their use in compile/fit/evaluate."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lamina
from lamina import metrics

B, C, L = 16, 5, 4  # batch size, classes, labels (multi-label)
f32 = np.float32


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(f32)


def _edges(rng):
    # Predictions exactly on thresholds (0, 0.5, 1) as well as between them.
    yp = rng.random((B, 1)).astype(f32)
    yp[:6, 0] = [0.0, 1.0, 0.5, 0.0, 1.0, 0.25]
    return rng.integers(0, 2, size=(B, 1)).astype(f32), yp


# kind → rng → (y_true, y_pred)
_KINDS = {
    "binary": lambda rng: (rng.integers(0, 2, size=(B, 1)).astype(f32), rng.random((B, 1)).astype(f32)),
    "binary_flat": lambda rng: (rng.integers(0, 2, size=(B,)), rng.random((B,)).astype(f32)),
    "edges": _edges,
    "logits": lambda rng: (rng.integers(0, 2, size=(B, 1)).astype(f32), (3 * rng.normal(size=(B, 1))).astype(f32)),
    "pm1": lambda rng: ((2 * rng.integers(0, 2, size=(B, 3)) - 1).astype(f32), rng.normal(size=(B, 3)).astype(f32)),
    "categorical": lambda rng: (np.eye(C, dtype=f32)[rng.integers(0, C, size=B)],
                                _softmax(rng.normal(size=(B, C)))),
    "cat_logits": lambda rng: (np.eye(C, dtype=f32)[rng.integers(0, C, size=B)],
                               (3 * rng.normal(size=(B, C))).astype(f32)),
    "cat_scores": lambda rng: (np.eye(C, dtype=f32)[rng.integers(0, C, size=B)], rng.random((B, C)).astype(f32)),
    "sparse": lambda rng: (rng.integers(0, C, size=(B,)), _softmax(rng.normal(size=(B, C)))),
    "sparse_col": lambda rng: (rng.integers(0, C, size=(B, 1)), (2 * rng.normal(size=(B, C))).astype(f32)),
    "multilabel": lambda rng: (rng.integers(0, 2, size=(B, L)).astype(f32), rng.random((B, L)).astype(f32)),
    "distributions": lambda rng: (_softmax(rng.normal(size=(B, C))), _softmax(rng.normal(size=(B, C)))),
    "positive": lambda rng: ((rng.random((B, 4)) * 3).astype(f32), (rng.random((B, 4)) * 3).astype(f32)),
    "regression": lambda rng: _near(rng.normal(size=(B, 4)).astype(f32), rng),
}


def _near(yt, rng):
    return yt, (yt + 0.5 * rng.normal(size=yt.shape)).astype(f32)


def _batches(kind, weighted, n=3, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        yt, yp = _KINDS[kind](rng)
        if weighted is None:
            sw = None
        elif weighted == "sample":
            sw = rng.random(B).astype(f32)
            sw[:3] = 0.0
        else:  # "element": one weight per entry of y_true
            sw = rng.random(np.shape(yt)).astype(f32)
        out.append((yt, yp, sw))
    return out


def _feed(m, batches):
    for yt, yp, sw in batches:
        m.update_state(yt, yp, sample_weight=sw)
    return m.result()


# (class name, positional args, kwargs, data kind, weightings)
CASES = [
    ("FBetaScore", (), {}, "cat_scores", (None, "sample")),
    ("FBetaScore", (), {"beta": 2.0, "threshold": 0.5}, "multilabel", (None, "sample")),
    ("FBetaScore", (), {"average": "micro", "beta": 0.5}, "cat_scores", (None, "sample")),
    ("FBetaScore", (), {"average": "macro", "threshold": 0.3}, "multilabel", (None, "sample")),
    ("FBetaScore", (), {"average": "weighted", "beta": 3.0}, "categorical", (None, "sample")),
    ("F1Score", (), {}, "categorical", (None, "sample")),
    ("F1Score", (), {"average": "micro", "threshold": 0.5}, "multilabel", (None, "sample")),
    ("F1Score", (), {"average": "macro"}, "cat_scores", (None,)),
    ("F1Score", (), {"average": "weighted", "threshold": 0.6}, "multilabel", (None, "sample")),
    ("R2Score", (), {}, "regression", (None, "sample", "element")),
    ("R2Score", (), {"class_aggregation": None}, "regression", (None, "sample")),
    ("R2Score", (), {"class_aggregation": "variance_weighted_average"}, "regression", (None, "sample")),
    ("R2Score", (), {"num_regressors": 3}, "regression", (None, "sample")),
    ("R2Score", (), {}, "binary", (None,)),
    ("SensitivityAtSpecificity", (0.5,), {}, "binary", (None, "sample")),
    ("SensitivityAtSpecificity", (0.8,), {"num_thresholds": 3}, "edges", (None, "sample")),
    ("SensitivityAtSpecificity", (0.4,), {"num_thresholds": 1}, "binary_flat", (None, "sample")),
    ("SensitivityAtSpecificity", (0.6,), {"class_id": 2}, "multilabel", (None, "sample")),
    ("SpecificityAtSensitivity", (0.5,), {}, "binary", (None, "sample")),
    ("SpecificityAtSensitivity", (0.7,), {"num_thresholds": 7}, "edges", (None, "sample")),
    ("SpecificityAtSensitivity", (0.3,), {"num_thresholds": 2}, "multilabel", (None, "element")),
    ("PrecisionAtRecall", (0.5,), {}, "binary", (None, "sample")),
    ("PrecisionAtRecall", (0.9,), {"num_thresholds": 11}, "edges", (None, "sample")),
    ("PrecisionAtRecall", (0.2,), {"class_id": 0, "num_thresholds": 1}, "multilabel", (None, "sample")),
    ("RecallAtPrecision", (0.5,), {}, "binary", (None, "sample")),
    ("RecallAtPrecision", (0.6,), {"num_thresholds": 5}, "edges", (None, "sample")),
    ("RecallAtPrecision", (1.0,), {}, "binary_flat", (None,)),
    ("RecallAtPrecision", (0.4,), {"class_id": 3}, "multilabel", (None, "sample")),
    ("BinaryCrossentropy", (), {}, "binary", (None, "sample")),
    ("BinaryCrossentropy", (), {"from_logits": True}, "logits", (None, "sample")),
    ("BinaryCrossentropy", (), {"label_smoothing": 0.1}, "multilabel", (None, "sample")),
    ("CategoricalCrossentropy", (), {}, "categorical", (None, "sample")),
    ("CategoricalCrossentropy", (), {"from_logits": True, "label_smoothing": 0.2}, "cat_logits", (None, "sample")),
    ("SparseCategoricalCrossentropy", (), {}, "sparse", (None, "sample")),
    ("SparseCategoricalCrossentropy", (), {"from_logits": True}, "sparse_col", (None, "sample")),
    ("SparseCategoricalCrossentropy", (), {"ignore_class": 1}, "sparse", (None, "sample")),
    ("SparseCategoricalCrossentropy", (), {"ignore_class": 0, "from_logits": True}, "sparse_col", (None, "sample")),
    ("KLDivergence", (), {}, "distributions", (None, "sample")),
    ("Poisson", (), {}, "positive", (None, "sample")),
    ("Hinge", (), {}, "binary", (None, "sample")),
    ("Hinge", (), {}, "pm1", (None, "sample")),
    ("SquaredHinge", (), {}, "multilabel", (None, "sample")),
    ("SquaredHinge", (), {}, "pm1", (None, "sample")),
    ("CategoricalHinge", (), {}, "cat_logits", (None, "sample")),
    ("CosineSimilarity", (), {}, "regression", (None, "sample")),
    ("CosineSimilarity", (), {"axis": 1}, "multilabel", (None, "sample")),
    ("LogCoshError", (), {}, "regression", (None, "sample")),
]

PARAMS = [
    pytest.param(name, args, kwargs, kind, weighted, id=f"{name}-{args}-{kwargs}-{kind}-{weighted}")
    for name, args, kwargs, kind, ws in CASES
    for weighted in ws
]


# ----------------------------------------------------------------------------- oracle: values and state


@pytest.mark.oracle
@pytest.mark.parametrize("name,args,kwargs,kind,weighted", PARAMS)
def test_metric_matches_keras(keras, name, args, kwargs, kind, weighted):
    batches = _batches(kind, weighted)
    ours = getattr(metrics, name)(*args, **kwargs)
    theirs = getattr(keras.metrics, name)(*args, **kwargs)
    got = _feed(ours, batches)
    want = keras.ops.convert_to_numpy(_feed(theirs, batches))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
    assert np.asarray(got).dtype == np.float32
    assert np.shape(got) == np.shape(want)
    # The state variables agree too, one for one, in Keras's order and under Keras's names.
    assert [v.name for v in ours.variables] == [v.path.split("/")[-1] for v in theirs.variables]
    for v, w in zip(ours.variables, theirs.variables, strict=True):
        assert not v.trainable
        np.testing.assert_allclose(v.numpy(), keras.ops.convert_to_numpy(w.value), rtol=2e-6, atol=1e-5)


@pytest.mark.parametrize("name,args,kwargs,kind,weighted", PARAMS[::4])
def test_reset_state_starts_over(name, args, kwargs, kind, weighted):
    m = getattr(metrics, name)(*args, **kwargs)
    _feed(m, _batches(kind, weighted, seed=1))
    m.reset_state()
    assert all(not np.any(v.numpy()) for v in m.variables)
    fresh = getattr(metrics, name)(*args, **kwargs)
    batches = _batches(kind, weighted, seed=2)
    np.testing.assert_array_equal(_feed(m, batches), _feed(fresh, batches))


@pytest.mark.oracle
def test_keras_docstring_and_test_suite_numbers(keras):
    """Hand-checkable cases from Keras's documentation and tests."""
    yt = np.array([[1, 1, 1], [1, 0, 0], [1, 1, 0]], np.int32)
    yp = np.array([[0.2, 0.6, 0.7], [0.2, 0.6, 0.6], [0.6, 0.8, 0.0]], np.float32)
    f = metrics.FBetaScore(beta=2.0, threshold=0.5)
    f.update_state(yt, yp)
    np.testing.assert_allclose(f.result(), [0.3846154, 0.90909094, 0.8333334], rtol=1e-6)
    f1 = metrics.F1Score(threshold=0.5)
    f1.update_state(yt, yp)
    np.testing.assert_allclose(f1.result(), [0.5, 0.8, 0.6666667], rtol=1e-6)
    r2 = metrics.R2Score()
    r2.update_state(np.array([[1], [4], [3]], f32), np.array([[2], [4], [4]], f32))
    assert float(r2.result()) == pytest.approx(0.57142854, rel=1e-6)
    # ignore_class: the ignored entry still counts in the mean without weights, not with them.
    scce = metrics.SparseCategoricalCrossentropy(ignore_class=0)
    yt3, yp3 = np.array([0, 1, 2]), np.array([[0.8, 0.1, 0.1], [0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    assert float(scce(yt3, yp3)) == pytest.approx(0.78462, abs=1e-4)
    scce = metrics.SparseCategoricalCrossentropy(ignore_class=0)
    assert float(scce(yt3, yp3, sample_weight=np.array([0.5, 1.5, 2.0]))) == pytest.approx(1.33774646, abs=1e-5)
    s = metrics.SensitivityAtSpecificity(0.5)
    s.update_state([0, 0, 0, 1, 1], [0, 0.3, 0.8, 0.3, 0.8])
    assert float(s.result()) == pytest.approx(0.5)
    s.reset_state()
    s.update_state([0, 0, 0, 1, 1], [0, 0.3, 0.8, 0.3, 0.8], sample_weight=[1, 1, 2, 2, 1])
    assert float(s.result()) == pytest.approx(0.333333, rel=1e-5)
    c = metrics.CosineSimilarity(axis=1)
    c.update_state([[0.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]])
    assert float(c.result()) == pytest.approx(0.5)


@pytest.mark.oracle
@pytest.mark.parametrize("num_regressors,message", [(11, "division by zero"), (12, "more independent predictors")])
def test_r2_adjusted_falls_back_with_a_warning_like_keras(keras, num_regressors, message):
    # 12 elements seen (Keras counts elements, not rows): k = n - 1 divides by zero, k > n - 1 has too few points.
    yt = np.arange(12, dtype=f32).reshape(6, 2)
    yp = yt + np.linspace(-1, 1, 12, dtype=f32).reshape(6, 2)
    ours, theirs = metrics.R2Score(num_regressors=num_regressors), keras.metrics.R2Score(num_regressors=num_regressors)
    ours.update_state(yt, yp)
    theirs.update_state(yt, yp)
    with pytest.warns(UserWarning, match=message):
        got = ours.result()
    with warnings.catch_warnings(record=True) as theirs_warned:
        warnings.simplefilter("always")  # Keras's own DeprecationWarnings are no concern here
        want = keras.ops.convert_to_numpy(theirs.result())
    assert any(issubclass(w.category, UserWarning) and "R2 score" in str(w.message) for w in theirs_warned)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    plain = metrics.R2Score()
    plain.update_state(yt, yp)
    np.testing.assert_allclose(got, plain.result())
    adjusted = metrics.R2Score(num_regressors=3)
    adjusted.update_state(yt, yp)
    r2, n = float(plain.result()), 12
    assert float(adjusted.result()) == pytest.approx(1 - (1 - r2) * (n - 1) / (n - 3 - 1), rel=1e-6)


@pytest.mark.oracle
def test_r2_constant_targets_score_zero_like_keras(keras):
    yt = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]], f32)
    yp = np.array([[0.5, 0.1], [1.5, 1.2], [1.0, 2.5]], f32)
    for agg in (None, "uniform_average"):
        ours, theirs = metrics.R2Score(class_aggregation=agg), keras.metrics.R2Score(class_aggregation=agg)
        ours.update_state(yt, yp)
        theirs.update_state(yt, yp)
        np.testing.assert_allclose(ours.result(), keras.ops.convert_to_numpy(theirs.result()), rtol=1e-6)


# ----------------------------------------------------------------------------- SparseCategoricalAccuracy


SPARSE_SHAPES = [
    ((B,), (B, C)),
    ((B, 1), (B, C)),
    ((2, 1), (1, 2, C)),  # Keras's test_reshape_matches: the labels broadcast against (1, 2)
    ((B, 7), (B, 7, C)),
    ((B, 7, 1), (B, 7, C)),
    ((1,), (B, C)),
]


@pytest.mark.oracle
@pytest.mark.parametrize("yt_shape,yp_shape", SPARSE_SHAPES, ids=str)
def test_sparse_categorical_accuracy_reshapes_labels_like_keras(keras, yt_shape, yp_shape):
    rng = np.random.default_rng(4)
    yt = rng.integers(0, C, size=yt_shape)
    yp = rng.random(yp_shape).astype(f32)
    got = metrics.sparse_categorical_accuracy(yt, yp)
    want = keras.ops.convert_to_numpy(keras.metrics.sparse_categorical_accuracy(yt, yp))
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    ours, theirs = metrics.SparseCategoricalAccuracy(), keras.metrics.SparseCategoricalAccuracy()
    for m in (ours, theirs):
        m.update_state(yt, yp)
    np.testing.assert_allclose(ours.result(), keras.ops.convert_to_numpy(theirs.result()), rtol=1e-6)


def test_sparse_categorical_accuracy_unreadable_labels_are_explained():
    with pytest.raises(ValueError, match=r"broadcastable.*Received: y_true.shape=\(3,\), y_pred.shape=\(4, 5\)"):
        metrics.sparse_categorical_accuracy(np.zeros(3), np.zeros((4, 5)))
    # Keras would broadcast these into a (4, 1, 4) grid of matches; lamina refuses them.
    with pytest.raises(ValueError, match=r"one integer label per sample.*Received: y_true.shape=\(4, 1, 1\)"):
        metrics.SparseCategoricalAccuracy().update_state(np.zeros((4, 1, 1)), np.zeros((4, 5)))


# ----------------------------------------------------------------------------- configs and names


CONFIG_CASES = sorted({(c[0], repr(c[1]), repr(c[2])) for c in CASES})


@pytest.mark.oracle
@pytest.mark.parametrize("name,args,kwargs", CONFIG_CASES)
def test_config_round_trip_matches_keras(keras, name, args, kwargs):
    args, kwargs = eval(args), eval(kwargs)
    ours = getattr(metrics, name)(*args, name="m", **kwargs)
    theirs = getattr(keras.metrics, name)(*args, name="m", **kwargs)
    config, want = ours.get_config(), theirs.get_config()
    if name == "CosineSimilarity" and "axis" in kwargs:
        # Keras drops `axis` from its config; lamina keeps a non-default one (else the round trip loses it).
        assert config.pop("axis") == kwargs["axis"]
    assert config == want
    again = type(ours).from_config(ours.get_config())
    assert type(again) is type(ours) and again.get_config() == ours.get_config()
    assert getattr(keras.metrics, name).from_config(config).get_config() == want


@pytest.mark.oracle
@pytest.mark.parametrize("identifier", [
    "f1_score", "F1Score", "f_beta_score", "FBetaScore", "r2_score", "R2Score", "binary_crossentropy",
    "bce", "BCE", "categorical_crossentropy", "sparse_categorical_crossentropy", "kl_divergence",
    "KLDivergence", "poisson", "hinge", "squared_hinge", "categorical_hinge", "cosine_similarity",
    "log_cosh_error", "LogCoshError",
])
def test_get_strings_match_keras(keras, identifier):
    ours, theirs = metrics.get(identifier), keras.metrics.get(identifier)
    assert type(ours).__name__ == type(theirs).__name__
    assert ours.name.rsplit("_", 1)[0] == theirs.name.rsplit("_", 1)[0] or ours.name == theirs.name


@pytest.mark.oracle
def test_every_keras_metric_name_in_scope_resolves(keras):
    """Every name keras.metrics.get knows resolves here too."""
    from keras.src.metrics import ALL_OBJECTS_DICT

    missing = {k for k in ALL_OBJECTS_DICT if k not in metrics.ALL_OBJECTS}
    assert missing == set()


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["binary_crossentropy", "categorical_crossentropy", "kl_divergence", "poisson",
                                  "hinge", "squared_hinge", "categorical_hinge", "log_cosh"])
def test_loss_functions_exported_as_metric_functions_match_keras(keras, name):
    kind = {"binary_crossentropy": "binary", "categorical_crossentropy": "categorical",
            "kl_divergence": "distributions", "poisson": "positive", "categorical_hinge": "cat_logits",
            "log_cosh": "regression"}.get(name, "pm1")
    yt, yp, _ = _batches(kind, None, n=1)[0]
    got = getattr(metrics, name)(yt, yp)
    want = keras.ops.convert_to_numpy(getattr(keras.metrics, name)(yt, yp))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # A MeanMetricWrapper config that names the function comes back to the same function.
    wrapper = metrics.MeanMetricWrapper(getattr(metrics, name), name="w")
    assert wrapper.get_config() == keras.metrics.MeanMetricWrapper(getattr(keras.metrics, name), name="w").get_config()
    assert metrics.MeanMetricWrapper.from_config(wrapper.get_config())._fn is getattr(metrics, name)


@pytest.mark.oracle
def test_serialized_metrics_cross_to_keras_and_back(keras):
    for m in (metrics.FBetaScore(average="macro", beta=2.0, name="fb"), metrics.R2Score(num_regressors=2),
              metrics.RecallAtPrecision(0.8, num_thresholds=50, class_id=1), metrics.SparseCategoricalCrossentropy(
                  ignore_class=3)):
        blob = metrics.serialize(m)
        back = metrics.deserialize(blob)
        assert type(back) is type(m) and back.get_config() == m.get_config()
        theirs = keras.metrics.deserialize(blob)
        assert type(theirs).__name__ == type(m).__name__ and theirs.get_config() == m.get_config()


def test_results_before_any_update_are_zero():
    for m in (metrics.F1Score(), metrics.R2Score(), metrics.PrecisionAtRecall(0.5), metrics.Hinge(),
              metrics.BinaryCrossentropy()):
        assert float(np.asarray(m.result())) == 0.0


def test_bad_arguments_are_explained():
    cases = [
        (lambda: metrics.FBetaScore(average="mean"), r"Invalid `average` argument value.*Received: average=mean"),
        (lambda: metrics.FBetaScore(beta=2), r"`beta` argument value. It should be a Python float.*Received: beta=2"),
        (lambda: metrics.FBetaScore(beta=-1.0), r"It should be > 0. Received: beta=-1.0"),
        (lambda: metrics.F1Score(threshold=1.5), r"0 < threshold <= 1. Received: threshold=1.5"),
        (lambda: metrics.R2Score(class_aggregation="median"), r"`class_aggregation`.*Received: class_aggregation=med"),
        (lambda: metrics.R2Score(num_regressors=-1), r"`num_regressors`.*>= 0.*Received: num_regressors=-1"),
        (lambda: metrics.SensitivityAtSpecificity(1.5), r"`specificity` must be in the range \[0, 1\].*Received"),
        (lambda: metrics.RecallAtPrecision(0.5, num_thresholds=0), r"`num_thresholds` must be an integer > 0.*Rec"),
        (lambda: metrics.F1Score().update_state(np.zeros(4), np.zeros(4)),
         r"expects 2D inputs.*Received input shapes: y_pred.shape=\(4,\) and y_true.shape=\(4,\)"),
        (lambda: metrics.F1Score().update_state(np.zeros((4, 2)), np.zeros((4, 3))), r"same shape.*Received"),
        (lambda: metrics.R2Score().update_state(np.zeros((4, 2, 2)), np.zeros((4, 2, 2))), r"2D inputs"),
        (lambda: metrics.R2Score().update_state(np.zeros((4, 2)), np.zeros((4, 3))), r"same shape.*Received"),
        (lambda: metrics.PrecisionAtRecall(0.5, class_id=7).update_state(np.zeros((2, 3)), np.zeros((2, 3))),
         r"class_id"),
    ]
    for make, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            make()
    f = metrics.F1Score()
    f.update_state(np.eye(3), np.eye(3))
    with pytest.raises(ValueError, match=r"expected 3 classes.*Received: y_pred.shape=\(2, 4\)"):
        f.update_state(np.eye(2, 4), np.eye(2, 4))


def test_loss_metrics_hand_plain_arrays_to_the_loss_function():
    """A Variable or Tensor reaches the loss function as its NumPy value: a metric never records on a tape."""
    seen = []
    m = metrics.BinaryCrossentropy()
    fn = m._fn
    m._fn = lambda yt, yp, **kw: seen.append((type(yt), type(yp))) or fn(yt, yp, **kw)
    yp = lamina.Variable(np.array([[0.2, 0.8], [0.6, 0.4]], f32))
    with lamina.GradientTape():
        m.update_state(lamina.ops.convert_to_tensor(np.array([[0.0, 1.0], [1.0, 0.0]], f32)), yp)
    assert seen == [(np.ndarray, np.ndarray)]
    assert float(m.result()) == pytest.approx(float(metrics.BinaryCrossentropy()(
        np.array([[0.0, 1.0], [1.0, 0.0]], f32), np.array([[0.2, 0.8], [0.6, 0.4]], f32))))


# ----------------------------------------------------------------------------- compile / fit / evaluate


def _model(lib, units, activation):
    model = lib.Sequential([lib.Input((6,)), lib.layers.Dense(8, activation="tanh"),
                            lib.layers.Dense(units, activation=activation)])
    return model


COMPILE_CASES = [
    ("softmax", 3, "onehot",
     lambda lib: ["f1_score", lib.metrics.FBetaScore(beta=2.0, average="macro", name="fb"), "categorical_crossentropy",
                  "kl_divergence", "categorical_hinge", lib.metrics.RecallAtPrecision(0.4, name="rap")]),
    ("sigmoid", 1, "binary",
     lambda lib: ["bce", "hinge", "squared_hinge", lib.metrics.SensitivityAtSpecificity(0.5, name="sens"),
                  lib.metrics.SpecificityAtSensitivity(0.5, name="spec"),
                  lib.metrics.PrecisionAtRecall(0.5, num_thresholds=20, name="par"),
                  lib.metrics.F1Score(threshold=0.5, name="f1")]),
    ("softmax", 3, "int",
     lambda lib: ["sparse_categorical_crossentropy", "sparse_categorical_accuracy",
                  lib.metrics.SparseCategoricalCrossentropy(ignore_class=2, name="scce2")]),
    ("softplus", 2, "regression",
     lambda lib: ["r2_score", "cosine_similarity", "log_cosh_error", "poisson",
                  lib.metrics.R2Score(class_aggregation="variance_weighted_average", name="r2v")]),
]


@pytest.mark.oracle
@pytest.mark.parametrize("activation,units,labels,make_metrics", COMPILE_CASES, ids=lambda x: str(x)[:12])
def test_compiled_metrics_in_fit_and_evaluate_match_keras(keras, activation, units, labels, make_metrics):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(48, 6)).astype(f32)
    y_int = rng.integers(0, 3, size=48)
    y = {"onehot": np.eye(3, dtype=f32)[y_int], "binary": (y_int[:, None] > 0).astype(f32), "int": y_int,
         "regression": rng.random((48, 2)).astype(f32)}[labels]
    loss = {"onehot": "categorical_crossentropy", "binary": "binary_crossentropy",
            "int": "sparse_categorical_crossentropy", "regression": "mse"}[labels]
    sw = rng.uniform(0.5, 2.0, size=48).astype(f32)
    km, lm = _model(keras, units, activation), _model(lamina, units, activation)
    lm.set_weights(km.get_weights())
    for model, lib in ((km, keras), (lm, lamina)):
        model.compile(optimizer=lib.optimizers.SGD(0.05), loss=loss, metrics=make_metrics(lib),
                      weighted_metrics=make_metrics(lib)[:1])
    k_hist = km.fit(x, y, sample_weight=sw, epochs=2, batch_size=16, shuffle=False, verbose=0).history
    l_hist = lm.fit(x, y, sample_weight=sw, epochs=2, batch_size=16, shuffle=False, verbose=0).history
    assert sorted(l_hist) == sorted(k_hist)
    for key in k_hist:
        np.testing.assert_allclose(np.asarray(l_hist[key], dtype=np.float64).ravel(),
                                   np.asarray(k_hist[key], dtype=np.float64).ravel(), rtol=2e-4, atol=2e-5,
                                   err_msg=key)
    k_eval = km.evaluate(x, y, sample_weight=sw, return_dict=True, verbose=0)
    l_eval = lm.evaluate(x, y, sample_weight=sw, return_dict=True, verbose=0)
    assert sorted(l_eval) == sorted(k_eval)
    for key in k_eval:
        np.testing.assert_allclose(np.asarray(l_eval[key]).ravel(), np.asarray(k_eval[key]).ravel(), rtol=2e-4,
                                   atol=2e-5, err_msg=key)
