"""IoU metrics (confusion-matrix state) and correlation metrics, against real Keras (torch backend)."""

import warnings

import numpy as np
import pytest

import lamina
from lamina import metrics

RNG = np.random.default_rng(5)


def _sparse_batches(n_classes, weights):
    """Three batches of (y_true, y_pred, sample_weight): 2-D labels, out-of-range values, 1-D labels."""
    out = []
    for shape in ((6, 4), (5, 3), (9,)):
        yt = RNG.integers(-1, n_classes + 1, shape)  # -1 and n_classes are out of range
        yp = RNG.integers(0, n_classes, shape)
        sw = None
        if weights == "int":
            sw = RNG.integers(0, 3, shape)
        elif weights == "float":
            sw = RNG.uniform(0, 2, shape).astype("float32")
        out.append((yt, yp, sw))
    return out


def _onehot_batches(n_classes, weights):
    out = []
    for batch in (5, 7):
        yt = np.eye(n_classes, dtype="float32")[RNG.integers(0, n_classes, batch)]
        yp = RNG.uniform(size=(batch, n_classes)).astype("float32")
        sw = {"int": RNG.integers(0, 3, batch), "float": RNG.uniform(0, 2, batch).astype("float32")}.get(weights)
        out.append((yt, yp, sw))
    return out


def _run_both(keras, name, args, kw, batches):
    theirs = getattr(keras.metrics, name)(*args, **kw)
    ours = getattr(metrics, name)(*args, **kw)
    for yt, yp, sw in batches:
        theirs.update_state(yt, yp, sample_weight=sw)
        ours.update_state(yt, yp, sample_weight=sw)
        np.testing.assert_allclose(ours.result(), keras.ops.convert_to_numpy(theirs.result()), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(ours.total_cm.numpy(), keras.ops.convert_to_numpy(theirs.total_cm))
    # Auto-names count instances per session (mean_io_u_3): compare them without the suffix.
    ours_config, theirs_config = ours.get_config(), theirs.get_config()
    assert ours_config.pop("name").rstrip("_0123456789") == theirs_config.pop("name").rstrip("_0123456789")
    assert ours_config == theirs_config
    assert ours.total_cm.dtype == keras.ops.convert_to_numpy(theirs.total_cm).dtype
    return ours


SPARSE_CASES = [
    ("MeanIoU", (3,), {}, None),
    ("MeanIoU", (3,), {}, "int"),
    ("MeanIoU", (4,), {"dtype": "float32"}, "float"),
    ("MeanIoU", (3,), {"ignore_class": 1}, "int"),
    ("MeanIoU", (3,), {"ignore_class": -1, "dtype": "float32"}, "float"),
    ("IoU", (3, [0, 2]), {}, None),
    ("IoU", (4, [1]), {"dtype": "float32"}, "float"),
    ("IoU", (3, [2, 1]), {"ignore_class": 0}, "int"),
]


@pytest.mark.oracle
@pytest.mark.parametrize("name,args,kw,weights", SPARSE_CASES)
def test_sparse_iou_matches_keras(keras, name, args, kw, weights):
    _run_both(keras, name, args, kw, _sparse_batches(args[0], weights))


ONEHOT_CASES = [
    ("OneHotMeanIoU", (3,), {}, None),
    ("OneHotMeanIoU", (4,), {"dtype": "float32"}, "float"),
    ("OneHotIoU", (3, [0, 2]), {}, "int"),
    ("OneHotIoU", (4, [3]), {"dtype": "float32", "ignore_class": 0}, "float"),
    ("MeanIoU", (3,), {"sparse_y_true": False, "sparse_y_pred": False}, None),
]


@pytest.mark.oracle
@pytest.mark.parametrize("name,args,kw,weights", ONEHOT_CASES)
def test_onehot_iou_matches_keras(keras, name, args, kw, weights):
    _run_both(keras, name, args, kw, _onehot_batches(args[0], weights))


@pytest.mark.oracle
def test_onehot_iou_along_axis_0_matches_keras(keras):
    yt = np.eye(3, dtype="float32")[RNG.integers(0, 3, 6)].T.copy()
    yp = RNG.uniform(size=(3, 6)).astype("float32")
    _run_both(keras, "OneHotMeanIoU", (3,), {"axis": 0}, [(yt, yp, None)])


@pytest.mark.oracle
@pytest.mark.parametrize("kw,weights", [({}, None), ({"threshold": 0.3, "dtype": "float32"}, "float"),
                                        ({"target_class_ids": [1]}, "int"), ({"target_class_ids": [0]}, None)])
def test_binary_iou_matches_keras(keras, kw, weights):
    batches = []
    for shape in ((8,), (4, 3)):
        sw = {"int": RNG.integers(0, 3, shape), "float": RNG.uniform(0, 2, shape).astype("float32")}.get(weights)
        batches.append((RNG.integers(0, 2, shape), RNG.uniform(size=shape).astype("float32"), sw))
    _run_both(keras, "BinaryIoU", (), kw, batches)


def test_mean_iou_by_hand():
    # cm = [[1, 1], [1, 1]]: each class IoU = 1 / (2 + 2 - 1), the mean 1/3.
    m = metrics.MeanIoU(num_classes=2)
    m.update_state([0, 0, 1, 1], [0, 1, 0, 1])
    np.testing.assert_allclose(m.result(), 1 / 3, rtol=1e-6)
    assert m.result().dtype == np.float32
    m.update_state([1, 1], [1, 1], sample_weight=[2, 0])
    np.testing.assert_array_equal(m.total_cm.numpy(), [[1, 1], [1, 3]])
    m.reset_state()
    np.testing.assert_array_equal(m.total_cm.numpy(), np.zeros((2, 2)))
    assert float(m.result()) == 0.0  # no class seen: 0, not NaN


def test_unseen_classes_leave_the_mean():
    m = metrics.MeanIoU(num_classes=4, dtype="float32")
    m.update_state([0, 0, 1], [0, 0, 1])
    np.testing.assert_allclose(m.result(), 1.0, rtol=1e-6)  # classes 2 and 3 have a zero denominator


def test_fractional_float_weights_with_an_int_dtype_warn():
    m = metrics.MeanIoU(num_classes=2)
    with pytest.warns(UserWarning, match=r"weight.*float.*int.*casting.*truncates"):
        m.update_state([0, 1], [0, 1], sample_weight=np.array([0.5, 1.5]))
    np.testing.assert_array_equal(m.total_cm.numpy(), [[0, 0], [0, 1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.update_state([0, 1], [0, 1], sample_weight=np.array([2.0, 1.0]))  # whole numbers: nothing lost
        metrics.MeanIoU(num_classes=2, dtype="float32").update_state([0], [0], sample_weight=[0.5])


def test_iou_errors():
    with pytest.raises(ValueError, match=r"Target class id 3 is out of range, which is \[0, 3\)"):
        metrics.IoU(num_classes=3, target_class_ids=[0, 3])
    with pytest.raises(ValueError, match=r"as many labels.*Received: 4 and 3"):
        metrics.MeanIoU(num_classes=3).update_state([0, 1, 2, 1], [0, 1, 2])
    with pytest.raises(ValueError, match=r"sample_weight.*Received: sample_weight.shape=\(3,\)"):
        metrics.MeanIoU(num_classes=3).update_state([0, 1, 2, 1], [0, 1, 2, 2], sample_weight=[1, 2, 3])


@pytest.mark.parametrize("metric", [
    metrics.IoU(num_classes=4, target_class_ids=[1, 3], ignore_class=0, name="iou"),
    metrics.BinaryIoU(target_class_ids=[1], threshold=0.2),
    metrics.MeanIoU(num_classes=3, sparse_y_pred=False, axis=1),
    metrics.OneHotIoU(num_classes=3, target_class_ids=[2], dtype="float32"),
    metrics.OneHotMeanIoU(num_classes=5, ignore_class=4),
    metrics.PearsonCorrelation(axis=0, name="pc"),
    metrics.ConcordanceCorrelation(dtype="float64"),
], ids=lambda m: type(m).__name__)
def test_config_round_trip(metric):
    config = metric.get_config()
    again = type(metric).from_config(config)
    assert again.get_config() == config
    restored = metrics.deserialize(metrics.serialize(metric))
    assert type(restored) is type(metric) and restored.get_config() == config


def test_names_resolve_like_keras():
    assert isinstance(metrics.get("pearson_correlation"), metrics.PearsonCorrelation)
    assert isinstance(metrics.get("ConcordanceCorrelation"), metrics.ConcordanceCorrelation)
    assert metrics.ALL_OBJECTS["mean_io_u"] is metrics.MeanIoU and metrics.ALL_OBJECTS["IoU"] is metrics.IoU
    assert metrics.MeanIoU(num_classes=2).name.startswith("mean_io_u")


# ----------------------------------------------------------------------------- correlations

CORR_DATA = [
    (RNG.normal(size=(6, 5)).astype("float32"), None),
    (RNG.normal(size=(4, 5)).astype("float32"), RNG.uniform(0.1, 2, 4).astype("float32")),
    (RNG.normal(size=(3, 5)).astype("float32"), RNG.uniform(0.1, 2, (3, 1)).astype("float32")),
]


def _noisy(y):
    return (0.7 * y + RNG.normal(0.2, 0.5, y.shape)).astype("float32")


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["pearson_correlation", "concordance_correlation"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_correlation_functions_match_keras(keras, name, axis):
    for y, _ in CORR_DATA:
        p = _noisy(y)
        ref = keras.ops.convert_to_numpy(getattr(keras.metrics, name)(y, p, axis=axis))
        got = getattr(metrics, name)(y, p, axis=axis)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["PearsonCorrelation", "ConcordanceCorrelation"])
def test_correlation_classes_match_keras_over_batches(keras, name):
    theirs, ours = getattr(keras.metrics, name)(), getattr(metrics, name)()
    for y, sw in CORR_DATA:
        p = _noisy(y)
        theirs.update_state(y, p, sample_weight=sw)
        ours.update_state(y, p, sample_weight=sw)
        np.testing.assert_allclose(ours.result(), keras.ops.convert_to_numpy(theirs.result()), rtol=1e-5)
    assert ours.get_config() == theirs.get_config()


def test_correlations_by_hand():
    y = np.array([[0, 1, 0.5], [1, 1, 0.1]], dtype="float32")
    p = np.array([[0.1, 0.9, 0.5], [0.2, 0.8, 0.0]], dtype="float32")
    for row in range(2):
        np.testing.assert_allclose(metrics.pearson_correlation(y, p)[row], np.corrcoef(y[row], p[row])[0, 1],
                                   rtol=1e-5)
    # Lin's coefficient for the first row: 2 cov / (var_t + var_p + (mean_t - mean_p)^2), population moments.
    t, q = y[0].astype(float), p[0].astype(float)
    ccc = 2 * np.mean((t - t.mean()) * (q - q.mean())) / (t.var() + q.var() + (t.mean() - q.mean()) ** 2)
    np.testing.assert_allclose(metrics.concordance_correlation(y, p)[0], ccc, rtol=1e-5)
    np.testing.assert_allclose(metrics.concordance_correlation(y, y), [1, 1], rtol=1e-5)


def test_pearson_of_a_constant_slice_is_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = metrics.pearson_correlation(np.ones((2, 3)), np.arange(6.0).reshape(2, 3))
    assert np.isnan(out).all()


def test_metrics_by_string_and_object_in_compile_and_fit():
    x = RNG.normal(size=(40, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32")).astype("float32")
    model = lamina.Sequential([lamina.layers.Input((3,)), lamina.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=["pearson_correlation", metrics.ConcordanceCorrelation(axis=0)])
    model.fit(x, y, epochs=2, batch_size=40, verbose=0)
    logs = model.evaluate(x, y, batch_size=40, verbose=0, return_dict=True)
    pred = model.predict(x, verbose=0)
    np.testing.assert_allclose(logs["concordance_correlation"], metrics.concordance_correlation(y, pred, axis=0)[0],
                               rtol=1e-5)
    assert np.isnan(logs["pearson_correlation"])  # one value per row: a single value has no spread

    labels = RNG.integers(0, 3, 40)
    clf = lamina.Sequential([lamina.layers.Input((3,)), lamina.layers.Dense(3, activation="softmax")])
    clf.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                metrics=[metrics.MeanIoU(num_classes=3, sparse_y_pred=False, name="mean_io_u")])
    clf.fit(x, labels, epochs=1, batch_size=40, verbose=0)
    logs = clf.evaluate(x, labels, batch_size=40, verbose=0, return_dict=True)
    m = metrics.MeanIoU(num_classes=3, sparse_y_pred=False)
    m.update_state(labels, clf.predict(x, verbose=0))
    np.testing.assert_allclose(logs["mean_io_u"], m.result(), rtol=1e-6)
