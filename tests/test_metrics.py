"""Tests for lamina.metrics: values against real Keras (torch), state, configs, get, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lamina
from lamina import metrics

B, C, L = 16, 6, 4  # batch size, classes, labels (multi-label)


# ----------------------------------------------------------------------------- data


f32 = np.float32
# kind → rng → (y_true, y_pred); y_true is drawn first, as the oracle batches were.
_KINDS = {
    "values": lambda rng: (rng.normal(size=(B, 3)).astype(f32), None),
    "exact": lambda rng: (rng.integers(0, 3, size=(B, 1)), rng.integers(0, 3, size=(B, 1)).astype(f32)),
    "binary": lambda rng: (rng.integers(0, 2, size=(B, 1)).astype(f32), rng.random((B, 1)).astype(f32)),
    "binary_flat": lambda rng: (rng.integers(0, 2, size=(B,)), rng.random((B,)).astype(f32)),
    "logits": lambda rng: (rng.integers(0, 2, size=(B, 1)).astype(f32), (4 * rng.normal(size=(B, 1))).astype(f32)),
    "categorical": lambda rng: (np.eye(C, dtype=f32)[rng.integers(0, C, size=B)], rng.random((B, C)).astype(f32)),
    "sparse": lambda rng: (rng.integers(0, C, size=(B,)), rng.random((B, C)).astype(f32)),
    "sparse_col": lambda rng: (rng.integers(0, C, size=(B, 1)).astype(f32), rng.normal(size=(B, C)).astype(f32)),
    "sorted_ids": lambda rng: (rng.integers(0, C, size=(B,)), np.argsort(rng.random((B, C)), axis=-1)[:, :3]),
    "multilabel": lambda rng: (rng.integers(0, 2, size=(B, L)).astype(f32), rng.random((B, L)).astype(f32)),
    "regression": lambda rng: _near(rng.normal(size=(B, 4)).astype(f32), rng),
    "positive": lambda rng: (rng.random((B, 4)).astype(f32) * 3, rng.random((B, 4)).astype(f32) * 3),
}


def _near(yt, rng):
    return yt, (yt + 0.5 * rng.normal(size=(B, 4))).astype(f32)


def _sample_weight(weighted: str | None, yt, rng: np.random.Generator):
    if weighted is None:
        return None
    if weighted == "sample":
        sw = rng.random(B).astype(f32)
        sw[:3] = 0.0
        return sw
    if weighted == "element":
        return rng.random(yt.shape).astype(f32)
    if weighted == "scalar":
        return np.float32(0.7)
    raise AssertionError(weighted)


def _batch(kind: str, rng: np.random.Generator, weighted: str | None):
    """One (y_true, y_pred, sample_weight) batch of the given kind."""
    yt, yp = _KINDS[kind](rng)
    return yt, yp, _sample_weight(weighted, yt, rng)


def _batches(kind, weighted, n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [_batch(kind, rng, weighted) for _ in range(n)]


def _feed(m, batches, values_only=False):
    for yt, yp, sw in batches:
        if values_only:
            m.update_state(yt, sample_weight=sw)
        else:
            m.update_state(yt, yp, sample_weight=sw)
    return m.result()


# (class name, kwargs, data kind, weightings)
CASES = [
    ("Mean", {}, "values", (None, "sample", "element", "scalar")),
    ("Sum", {}, "values", (None, "sample", "element")),
    ("Accuracy", {}, "exact", (None, "sample")),
    ("BinaryAccuracy", {}, "binary", (None, "sample")),
    ("BinaryAccuracy", {"threshold": 0.7}, "binary_flat", (None, "sample")),
    ("CategoricalAccuracy", {}, "categorical", (None, "sample")),
    ("SparseCategoricalAccuracy", {}, "sparse", (None, "sample")),
    ("SparseCategoricalAccuracy", {}, "sparse_col", (None, "sample")),
    ("TopKCategoricalAccuracy", {}, "categorical", (None, "sample")),
    ("TopKCategoricalAccuracy", {"k": 2}, "categorical", (None, "sample")),
    ("SparseTopKCategoricalAccuracy", {"k": 3}, "sparse", (None, "sample")),
    ("SparseTopKCategoricalAccuracy", {"k": 2, "from_sorted_ids": True}, "sorted_ids", (None, "sample")),
    ("Precision", {}, "binary", (None, "sample")),
    ("Precision", {"thresholds": [0.8, 0.3, 0.5]}, "binary_flat", (None, "sample")),
    ("Precision", {"thresholds": [0.0, 0.25, 0.5, 0.75, 1.0]}, "binary", (None, "sample")),
    ("Precision", {"top_k": 2}, "multilabel", (None, "sample")),
    ("Precision", {"class_id": 1}, "multilabel", (None, "sample")),
    ("Precision", {"top_k": 2, "class_id": 3, "thresholds": 0.4}, "multilabel", (None, "sample")),
    ("Recall", {}, "binary", (None, "sample")),
    ("Recall", {"thresholds": [0.2, 0.6]}, "multilabel", (None, "sample", "element")),
    ("Recall", {"top_k": 1}, "multilabel", (None, "sample")),
    ("Recall", {"class_id": 2}, "multilabel", (None, "sample")),
    ("TruePositives", {}, "binary", (None, "sample")),
    ("FalsePositives", {"thresholds": [0.1, 0.9]}, "binary", (None, "sample")),
    ("TrueNegatives", {}, "multilabel", (None, "sample")),
    ("FalseNegatives", {"thresholds": [0.0, 0.5, 1.0]}, "binary_flat", (None, "sample")),
    ("AUC", {}, "binary", (None, "sample")),
    ("AUC", {}, "multilabel", (None, "element")),
    ("AUC", {"curve": "PR"}, "binary", (None, "sample")),
    ("AUC", {"num_thresholds": 37, "summation_method": "minoring"}, "binary_flat", (None, "sample")),
    ("AUC", {"summation_method": "majoring", "curve": "PR"}, "binary", (None, "sample")),
    ("AUC", {"curve": "PRGAIN"}, "binary", (None, "sample")),
    ("AUC", {"thresholds": [0.1, 0.45, 0.5, 0.93]}, "binary", (None, "sample")),
    ("AUC", {"from_logits": True}, "logits", (None, "sample")),
    ("AUC", {"multi_label": True}, "multilabel", (None, "sample")),
    ("AUC", {"multi_label": True, "curve": "PR", "num_labels": L}, "multilabel", (None, "sample")),
    ("AUC", {"multi_label": True, "label_weights": [0.1, 0.5, 0.0, 2.0]}, "multilabel", (None,)),
    ("AUC", {"label_weights": [0.1, 0.5, 1.0, 2.0]}, "multilabel", (None, "sample")),
    ("MeanSquaredError", {}, "regression", (None, "sample", "scalar")),
    ("MeanAbsoluteError", {}, "regression", (None, "sample")),
    ("RootMeanSquaredError", {}, "regression", (None, "sample", "element")),
    ("MeanAbsolutePercentageError", {}, "regression", (None, "sample")),
    ("MeanSquaredLogarithmicError", {}, "positive", (None, "sample")),
]

PARAMS = [
    pytest.param(name, kwargs, kind, weighted, id=f"{name}-{kwargs}-{kind}-{weighted}")
    for name, kwargs, kind, ws in CASES
    for weighted in ws
]


# ----------------------------------------------------------------------------- oracle: values


@pytest.mark.oracle
@pytest.mark.parametrize("name,kwargs,kind,weighted", PARAMS)
def test_metric_matches_keras(keras, name, kwargs, kind, weighted):
    batches = _batches(kind, weighted)
    values_only = kind == "values"
    ours = getattr(metrics, name)(**kwargs)
    theirs = getattr(keras.metrics, name)(**kwargs)
    got = _feed(ours, batches, values_only)
    want = keras.ops.convert_to_numpy(_feed(theirs, batches, values_only))
    rtol = 1e-5 if name == "AUC" else 1e-6
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-7)
    assert np.asarray(got).dtype == np.float32
    assert np.shape(got) == np.shape(want)
    # The state variables agree too, one for one.
    assert [v.name for v in ours.variables] == [v.path.split("/")[-1] for v in theirs.variables]
    assert all(v.path == f"{ours.name}/{v.name}" for v in ours.variables)
    for v, w in zip(ours.variables, theirs.variables, strict=True):
        assert not v.trainable
        np.testing.assert_allclose(v.numpy(), keras.ops.convert_to_numpy(w.value), rtol=rtol, atol=1e-5)


@pytest.mark.oracle
@pytest.mark.parametrize("name,kwargs,kind,weighted", PARAMS[::3])
def test_reset_state_starts_over(keras, name, kwargs, kind, weighted):
    values_only = kind == "values"
    m = getattr(metrics, name)(**kwargs)
    _feed(m, _batches(kind, weighted, seed=1), values_only)
    m.reset_state()
    for v in m.variables:
        assert not np.any(v.numpy())
    fresh = getattr(metrics, name)(**kwargs)
    batches = _batches(kind, weighted, seed=2)
    np.testing.assert_array_equal(_feed(m, batches, values_only), _feed(fresh, batches, values_only))


FUNCTION_CASES = [
    ("accuracy", {}, "exact"),
    ("binary_accuracy", {}, "binary"),
    ("binary_accuracy", {"threshold": 0.3}, "binary_flat"),
    ("categorical_accuracy", {}, "categorical"),
    ("sparse_categorical_accuracy", {}, "sparse"),
    ("sparse_categorical_accuracy", {}, "sparse_col"),
    ("top_k_categorical_accuracy", {"k": 2}, "categorical"),
    ("sparse_top_k_categorical_accuracy", {"k": 3}, "sparse"),
    ("sparse_top_k_categorical_accuracy", {"k": 2, "from_sorted_ids": True}, "sorted_ids"),
    ("mean_squared_error", {}, "regression"),
    ("mean_absolute_error", {}, "regression"),
    ("mean_absolute_percentage_error", {}, "regression"),
    ("mean_squared_logarithmic_error", {}, "positive"),
]


@pytest.mark.oracle
@pytest.mark.parametrize("name,kwargs,kind", FUNCTION_CASES, ids=lambda x: str(x))
def test_function_matches_keras(keras, name, kwargs, kind):
    from keras.src.metrics import accuracy_metrics  # keras.metrics does not export `accuracy`

    yt, yp, _ = _batches(kind, None, n=1)[0]
    got = getattr(metrics, name)(yt, yp, **kwargs)
    fn = getattr(keras.metrics, name, None) or getattr(accuracy_metrics, name)
    want = keras.ops.convert_to_numpy(fn(yt, yp, **kwargs))
    assert got.shape == want.shape
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.oracle
def test_sequence_shaped_inputs_match_keras(keras):
    """Rank-3 inputs (batch, time, classes): per-timestep values, per-sample weights."""
    rng = np.random.default_rng(3)
    yp = rng.random((B, 5, C)).astype(np.float32)
    ys = rng.integers(0, C, size=(B, 5))
    sw = rng.random(B).astype(np.float32)
    one_hot = np.eye(C, dtype="float32")[ys]
    for name, yt in [("SparseCategoricalAccuracy", ys), ("CategoricalAccuracy", one_hot),
                     ("MeanSquaredError", rng.random((B, 5, C)).astype(np.float32))]:
        ours, theirs = getattr(metrics, name)(), getattr(keras.metrics, name)()
        ours.update_state(yt, yp, sample_weight=sw)
        theirs.update_state(yt, yp, sample_weight=sw)
        np.testing.assert_allclose(ours.result(), keras.ops.convert_to_numpy(theirs.result()), rtol=1e-6)


@pytest.mark.oracle
@pytest.mark.parametrize("name,kind", [("BinaryAccuracy", "binary"), ("MeanSquaredError", "regression"),
                                       ("AUC", "binary"), ("Precision", "multilabel"),
                                       ("SparseCategoricalAccuracy", "sparse")])
def test_float64_and_list_inputs_match_keras(keras, name, kind):
    """NumPy float64 arrays and Python lists give Keras's float32 results."""
    batches = _batches(kind, "sample", seed=5)
    b64 = [(yt.astype(np.float64), yp.astype(np.float64), sw.astype(np.float64)) for yt, yp, sw in batches]
    lists = [(yt.tolist(), yp.tolist(), sw.tolist()) for yt, yp, sw in batches]
    for data in (b64, lists):
        ours, theirs = getattr(metrics, name)(), getattr(keras.metrics, name)()
        got = _feed(ours, data)
        assert got.dtype == np.float32
        want = keras.ops.convert_to_numpy(_feed(theirs, data))
        np.testing.assert_allclose(got, want, rtol=1e-5 if name == "AUC" else 1e-6)


@pytest.mark.oracle
def test_top_k_counts_ties_as_hits_like_keras(keras):
    yp = np.array([[0.5, 0.5, 0.5, 0.1], [0.9, 0.2, 0.2, 0.2], [0.3, 0.3, 0.1, 0.0]], dtype=np.float32)
    yt = np.array([2, 3, 1])
    got = metrics.sparse_top_k_categorical_accuracy(yt, yp, k=2)
    want = keras.ops.convert_to_numpy(keras.metrics.sparse_top_k_categorical_accuracy(yt, yp, k=2))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, [1.0, 1.0, 1.0])


@pytest.mark.oracle
def test_keras_docstring_examples(keras):
    """Small hand-checkable cases from Keras's documentation give Keras's numbers."""
    m = metrics.AUC(num_thresholds=3)
    m.update_state([0, 0, 1, 1], [0, 0.5, 0.3, 0.9])
    assert float(m.result()) == pytest.approx(0.75)
    m.reset_state()
    m.update_state([0, 0, 1, 1], [0, 0.5, 0.3, 0.9], sample_weight=[1, 0, 0, 1])
    assert float(m.result()) == pytest.approx(1.0)
    p = metrics.Precision(top_k=2)
    p.update_state([0, 0, 1, 1], [1, 1, 1, 1])
    assert float(p.result()) == 0.0  # ties go to the lowest indices
    r = metrics.RootMeanSquaredError()
    r.update_state([[0, 1], [0, 0]], [[1, 1], [0, 0]], sample_weight=[1, 0])
    assert float(r.result()) == pytest.approx(0.70710677, rel=1e-6)
    s = metrics.Sum()
    s.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
    assert float(s.result()) == 4.0


# ----------------------------------------------------------------------------- configs


@pytest.mark.oracle
@pytest.mark.parametrize("name,kwargs", sorted({(c[0], repr(c[1])) for c in CASES}))
def test_config_round_trip_matches_keras(keras, name, kwargs):
    kwargs = eval(kwargs)
    ours = getattr(metrics, name)(name="m", **kwargs)
    theirs = getattr(keras.metrics, name)(name="m", **kwargs)
    config = ours.get_config()
    want = theirs.get_config()
    rebuilt = getattr(keras.metrics, name).from_config(config).get_config()
    if want.get("label_weights") is not None:
        # Keras holds label weights as a tensor; lamina's config keeps a JSON-ready list.
        for cfg in (want, rebuilt):
            cfg["label_weights"] = keras.ops.convert_to_numpy(cfg["label_weights"]).tolist()
        np.testing.assert_allclose(config["label_weights"], want["label_weights"])
        config = {**config, "label_weights": want["label_weights"]}
    assert config == want
    again = type(ours).from_config(ours.get_config())
    assert type(again) is type(ours) and again.get_config() == ours.get_config()
    # Keras rebuilds the same metric from lamina's config (the file format is shared).
    assert rebuilt == want


@pytest.mark.oracle
def test_mean_metric_wrapper_config_matches_keras(keras):
    ours = metrics.MeanMetricWrapper(metrics.mean_squared_error, name="w")
    theirs = keras.metrics.MeanMetricWrapper(keras.metrics.mean_squared_error, name="w")
    assert ours.get_config() == theirs.get_config()
    again = metrics.MeanMetricWrapper.from_config(ours.get_config())
    assert again._fn is metrics.mean_squared_error
    wrapped = metrics.MeanMetricWrapper(metrics.binary_accuracy, name="b", threshold=0.2)
    assert wrapped.get_config()["threshold"] == 0.2
    rebuilt = metrics.MeanMetricWrapper.from_config(wrapped.get_config())
    yt, yp = np.array([1.0, 0.0, 1.0]), np.array([0.3, 0.1, 0.15])
    assert float(rebuilt(yt, yp)) == pytest.approx(2 / 3)


def test_serialize_deserialize_round_trip():
    m = metrics.Precision(thresholds=[0.2, 0.7], name="p")
    blob = metrics.serialize(m)
    assert blob["class_name"] == "Precision" and blob["module"] == "keras.metrics"
    back = metrics.deserialize(blob)
    assert isinstance(back, metrics.Precision) and back.get_config() == m.get_config()
    assert metrics.deserialize(metrics.serialize(metrics.binary_accuracy)) is metrics.binary_accuracy
    assert isinstance(metrics.get({"class_name": "AUC", "config": {"curve": "PR"}}), metrics.AUC)


# ----------------------------------------------------------------------------- get / accuracy rule


@pytest.mark.oracle
@pytest.mark.parametrize("identifier", [
    "accuracy", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
    "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy", "mse", "MSE", "mae", "mape",
    "msle", "mean_squared_error", "root_mean_squared_error", "auc", "AUC", "precision", "recall",
    "Precision", "BinaryAccuracy", "true_positives", "false_negatives", "mean", "sum",
])
def test_get_strings_match_keras(keras, identifier):
    ours, theirs = metrics.get(identifier), keras.metrics.get(identifier)
    assert type(ours).__name__ == type(theirs).__name__
    assert ours.name.split("_")[0] == theirs.name.split("_")[0]


def test_get_other_identifiers():
    assert isinstance(metrics.get("acc"), metrics.Accuracy)
    assert metrics.get(None) is None
    inst = metrics.Recall()
    assert metrics.get(inst) is inst
    assert isinstance(metrics.get(metrics.AUC), metrics.AUC)
    assert metrics.get(metrics.binary_accuracy) is metrics.binary_accuracy


def test_get_unknown_name_lists_valid_names_and_closest():
    pattern = r"Did you mean 'accuracy'.*Valid names: .*binary_accuracy.*Received:"
    with pytest.raises(ValueError, match=pattern):
        metrics.get("acuracy")
    with pytest.raises(ValueError, match="Received"):
        metrics.get(42)
    with pytest.raises(ValueError, match="not a Metric"):
        metrics.get(dict)


def _keras_accuracy_choice(keras, yt_shape, yp_shape):
    from keras.src.trainers import compile_utils

    yt, yp = keras.ops.zeros(yt_shape), keras.ops.zeros(yp_shape)
    return compile_utils.get_metric("accuracy", yt, yp)


@pytest.mark.oracle
@pytest.mark.parametrize("yt_shape,yp_shape,expected", [
    ((8, 1), (8, 1), "BinaryAccuracy"),          # binary, one sigmoid unit
    ((8,), (8, 1), "BinaryAccuracy"),
    ((8, 10), (8, 10), "CategoricalAccuracy"),   # one-hot targets
    ((8,), (8, 10), "SparseCategoricalAccuracy"),  # integer targets
    ((8, 1), (8, 10), "SparseCategoricalAccuracy"),
    ((8, 5), (8, 5, 10), "SparseCategoricalAccuracy"),
    ((8, 3), (8, 3), "CategoricalAccuracy"),     # multi-label sigmoid outputs: still categorical
])
def test_resolve_accuracy_matches_keras(keras, yt_shape, yp_shape, expected):
    theirs = _keras_accuracy_choice(keras, yt_shape, yp_shape)
    ours = metrics.resolve_accuracy("binary_crossentropy", yt_shape, yp_shape)
    assert type(ours).__name__ == type(theirs).__name__ == expected
    assert ours.name == theirs.name == "accuracy"
    acc = metrics.get_metric("acc", yt_shape, yp_shape)
    assert type(acc).__name__ == expected and acc.name == "acc"


def test_resolve_accuracy_falls_back_on_the_loss_without_shapes():
    sparse = metrics.resolve_accuracy("sparse_categorical_crossentropy")
    assert isinstance(sparse, metrics.SparseCategoricalAccuracy)
    assert isinstance(metrics.resolve_accuracy("categorical_crossentropy"), metrics.CategoricalAccuracy)
    assert isinstance(metrics.resolve_accuracy("binary_crossentropy"), metrics.BinaryAccuracy)

    class BinaryCrossentropy:
        pass

    assert isinstance(metrics.resolve_accuracy(BinaryCrossentropy()), metrics.BinaryAccuracy)
    with pytest.raises(ValueError, match="without the target and prediction shapes"):
        metrics.resolve_accuracy("mse")


def test_get_metric_names_and_wraps_functions():
    m = metrics.get_metric("mse")
    assert isinstance(m, metrics.MeanSquaredError) and m.name == "mse"

    def my_error(y_true, y_pred):
        return np.abs(np.asarray(y_true) - np.asarray(y_pred))

    w = metrics.get_metric(my_error)
    assert isinstance(w, metrics.MeanMetricWrapper) and w.name == "my_error"
    assert float(w(np.array([1.0, 2.0]), np.array([1.5, 2.0]))) == pytest.approx(0.25)
    assert metrics.get_metric(metrics.AUC(name="roc")).name == "roc"


# ----------------------------------------------------------------------------- base class, state


def test_custom_metric_subclass_with_add_variable():
    class BinaryTruePositives(metrics.Metric):
        def __init__(self, name="binary_true_positives", **kwargs):
            super().__init__(name=name, **kwargs)
            self.true_positives = self.add_variable(shape=(), initializer="zeros", name="true_positives")

        def update_state(self, y_true, y_pred, sample_weight=None):
            values = np.logical_and(np.asarray(y_true, bool), np.asarray(y_pred, bool)).astype(self.dtype)
            if sample_weight is not None:
                values = values * np.asarray(sample_weight, self.dtype)
            self.true_positives.assign(self.true_positives + values.sum())

        def result(self):
            return self.true_positives.value

    m = BinaryTruePositives()
    assert float(m([1, 1, 0, 1], [1, 0, 1, 1])) == 2.0
    (v,) = m.variables
    assert isinstance(v, lamina.Variable) and not v.trainable
    assert v.path == "binary_true_positives/true_positives"
    m.reset_state()
    assert float(m.result()) == 0.0


def test_sub_metrics_are_tracked():
    class Both(metrics.Metric):
        def __init__(self):
            super().__init__(name="both")
            self.p = metrics.Precision(name="p")
            self.r = metrics.Recall(name="r")

        def update_state(self, y_true, y_pred, sample_weight=None):
            self.p.update_state(y_true, y_pred, sample_weight)
            self.r.update_state(y_true, y_pred, sample_weight)

        def result(self):
            return {"p": self.p.result(), "r": self.r.result()}

    m = Both()
    assert len(m.variables) == 4
    m.update_state([0, 1, 1], [1, 1, 0])
    m.reset_state()
    assert all(not np.any(v.numpy()) for v in m.variables)


def test_add_variable_before_super_init_is_explained():
    class Broken(metrics.Metric):
        def __init__(self):
            self.x = self.add_variable(shape=(), name="x")

    with pytest.raises(RuntimeError, match="super"):
        Broken()


def test_auto_names_are_unique_and_default_names_are_fixed():
    a, b = metrics.Precision(), metrics.Precision()
    assert a.name != b.name and a.name.startswith("precision") and b.name.startswith("precision")
    assert metrics.Mean().name == metrics.Mean().name == "mean"


def test_dtype_argument_sets_state_and_result_dtype():
    m = metrics.MeanSquaredError(dtype="float64")
    m.update_state(np.ones((4, 2), np.float32), np.zeros((4, 2), np.float32))
    assert m.dtype == "float64" and m.result().dtype == np.float64
    assert all(v.dtype == np.float64 for v in m.variables)
    auc = metrics.AUC(dtype="float64")
    auc.update_state([0, 1, 1], [0.2, 0.7, 0.4])
    assert auc.result().dtype == np.float64


def test_results_before_any_update_are_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            for m in (metrics.Mean(), metrics.Precision(), metrics.Recall(thresholds=[0.1, 0.6]),
                      metrics.AUC(), metrics.AUC(curve="PR"), metrics.AUC(curve="PRGAIN"),
                      metrics.AUC(multi_label=True), metrics.RootMeanSquaredError()):
                assert not np.any(m.result())
            # All-negative labels: recall and the ROC x-axis divide 0 by 0; still no warning.
            for m in (metrics.AUC(), metrics.AUC(curve="PR"), metrics.Recall()):
                m.update_state(np.zeros(8), np.linspace(0, 1, 8, dtype=np.float32))
                assert np.isfinite(m.result())


def test_auc_from_logits_is_stable_for_huge_logits():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            m = metrics.AUC(from_logits=True)
            m.update_state([0, 1, 1, 0], np.array([-1e4, 1e4, 3.0, -2.0], np.float32))
            assert float(m.result()) == pytest.approx(1.0)


def test_accepts_lamina_tensors_and_variables():
    yt = lamina.Variable(np.array([0, 1, 1, 0], np.float32), trainable=False)
    with lamina.GradientTape():
        w = lamina.Variable(np.array([0.2, 0.8, 0.4, 0.9], np.float32))
        yp = lamina.ops.multiply(w, 1.0)
        m = metrics.BinaryAccuracy()
        m.update_state(yt, yp)
    assert float(m.result()) == 0.5


def test_large_batches_are_vectorised_and_exact():
    """A million-sample batch: counts equal brute-force NumPy (and would take minutes per-sample)."""
    rng = np.random.default_rng(7)
    yt = rng.integers(0, 10, size=1_000_000)
    yp = rng.random((1_000_000, 10)).astype(np.float32)
    m = metrics.SparseCategoricalAccuracy()
    m.update_state(yt, yp)
    assert float(m.result()) == pytest.approx(np.mean(yt == yp.argmax(-1)), rel=1e-6)
    auc = metrics.Precision(thresholds=[0.25, 0.5, 0.75])
    yb, pb = (yt % 2), yp[:, 0]
    auc.update_state(yb, pb)
    want = [np.sum((pb > t) & (yb == 1)) / np.sum(pb > t) for t in (0.25, 0.5, 0.75)]
    np.testing.assert_allclose(auc.result(), want, rtol=1e-6)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("metric,yt,yp", [
    (metrics.BinaryAccuracy(), np.zeros((4, 1)), np.zeros((5, 1))),
    (metrics.Accuracy(), np.zeros((4, 2)), np.zeros((4, 3))),
    (metrics.CategoricalAccuracy(), np.zeros(4), np.zeros((4, 3))),
    (metrics.SparseCategoricalAccuracy(), np.zeros((4, 3)), np.zeros((4, 3))),
    (metrics.TopKCategoricalAccuracy(k=2), np.zeros((4, 2)), np.zeros((4, 3))),
    (metrics.SparseTopKCategoricalAccuracy(k=2), np.zeros(5), np.zeros((4, 3))),
    (metrics.MeanSquaredError(), np.zeros((4, 2)), np.zeros((4, 3))),
    (metrics.RootMeanSquaredError(), np.zeros((4, 2)), np.zeros((3, 2))),
    (metrics.Precision(), np.zeros((4, 2)), np.zeros((4, 3))),
    (metrics.AUC(), np.zeros(4), np.zeros(5)),
])
def test_shape_mismatch_is_a_clear_value_error(metric, yt, yp):
    with pytest.raises(ValueError, match=r"y_true.*y_pred.*Received: y_true.shape="):
        metric.update_state(yt, yp)


def test_other_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="sample_weight.*Received: sample_weight.shape"):
        metrics.MeanSquaredError().update_state(np.zeros((4, 2)), np.zeros((4, 2)), sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="sample_weight"):  # per-element weights on per-sample values
        metrics.MeanSquaredError().update_state(np.zeros((4, 2)), np.zeros((4, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"Threshold values must be in \[0, 1\]\. Received: \[1\.5\]"):
        metrics.Precision(thresholds=[0.5, 1.5])
    with pytest.raises(ValueError, match="num_thresholds"):
        metrics.AUC(num_thresholds=1)
    with pytest.raises(ValueError, match="Invalid AUC curve value: \"ROCK\""):
        metrics.AUC(curve="ROCK")
    with pytest.raises(ValueError, match="Invalid AUC summation method value: \"simpson\""):
        metrics.AUC(summation_method="simpson")
    with pytest.raises(ValueError, match="num_labels"):
        metrics.AUC(num_labels=3)
    with pytest.raises(ValueError, match="rank 2"):
        metrics.AUC(multi_label=True).update_state(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="class_id"):
        metrics.Recall(class_id=5).update_state(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="k"):
        metrics.TopKCategoricalAccuracy(k=0)
    with pytest.raises(ValueError, match="labels must lie in"):
        metrics.sparse_top_k_categorical_accuracy([7, 0], np.zeros((2, 3)), k=1)
    with pytest.raises(TypeError, match="callable"):
        metrics.MeanMetricWrapper(fn="mse")
    with pytest.raises(TypeError, match="array-like|numbers"):
        metrics.Mean().update_state({"a": 1})
