"""Circle and CTC losses, configs key for key with Keras, and compile(loss="crossentropy").

Values and gradients against real Keras (torch backend), gradients by central differences in float64.
"""

import itertools

import numpy as np
import pytest

import lamina
from lamina import losses, ops
from tests.helpers import check_gradients

RNG = np.random.default_rng(11)


def _unit(rows, dim, rng, scale=1.0):
    e = rng.normal(size=(rows, dim))
    return (scale * e / np.linalg.norm(e, axis=1, keepdims=True)).astype("float32")


# Several batches: labels with repeats, a label seen once (no positives: loss 0, masked), and pairs.
CIRCLE_BATCHES = [
    (np.array([1, 1, 2, 2, 3], dtype="float32"), _unit(5, 4, RNG)),
    (RNG.integers(0, 3, 8).astype("float32"), _unit(8, 6, RNG)),
    (RNG.integers(0, 2, (6, 1)).astype("float32"), _unit(6, 3, RNG)),
]
CIRCLE_KW = [{}, {"gamma": 10.0, "margin": 0.25}, {"remove_diagonal": False, "gamma": 4.0}]

# Labels packed at the front and padded with 0 (the blank); an empty label sequence; a repeated label.
CTC_BATCHES = [
    (np.array([[1, 2, 1, 0], [3, 0, 0, 0], [0, 0, 0, 0], [2, 2, 3, 1]]), RNG.normal(size=(4, 9, 4))),
    (np.array([[1, 1], [2, 3], [3, 0]]), RNG.normal(0, 3, size=(3, 5, 4))),
    (np.array([[4, 1, 2]]), RNG.normal(size=(1, 12, 5))),
]


def _np(x):
    return np.asarray(x.detach().numpy() if hasattr(x, "detach") else lamina.ops.convert_to_numpy(x))


def _torch_value_and_grad(loss, y_true, y_pred, **kw):
    import torch  # optional: only the oracle tests need Keras's backend

    t = torch.tensor(y_pred, requires_grad=True)
    out = loss(y_true, t, **kw)
    out.sum().backward()
    return _np(out), t.grad.numpy()


def _lamina_value_and_grad(loss, y_true, y_pred, **kw):
    v = lamina.Variable(y_pred)
    with lamina.GradientTape() as tape:
        out = loss(y_true, v, **kw)
        total = ops.sum(out)
    return np.asarray(lamina.ops.convert_to_numpy(out)), np.asarray(tape.gradient(total, v))


# ----------------------------------------------------------------------------- Circle


@pytest.mark.oracle
@pytest.mark.parametrize("kw", CIRCLE_KW)
@pytest.mark.parametrize("batch", range(len(CIRCLE_BATCHES)))
def test_circle_function_matches_keras(keras, batch, kw):
    y, e = CIRCLE_BATCHES[batch]
    ref = _np(keras.losses.circle(y, e, **kw))
    got = losses.circle(y, e, **kw)
    assert got.dtype == np.float32 and got.shape == (len(e),)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.oracle
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight", None])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("batch", range(len(CIRCLE_BATCHES)))
def test_circle_class_value_and_gradient_match_keras(keras, batch, weighted, reduction):
    y, e = CIRCLE_BATCHES[batch]
    sw = RNG.uniform(0.2, 2.0, len(e)).astype("float32") if weighted else None
    for kw in CIRCLE_KW:
        ref, ref_grad = _torch_value_and_grad(keras.losses.Circle(reduction=reduction, **kw), y, e, sample_weight=sw)
        got, grad = _lamina_value_and_grad(losses.Circle(reduction=reduction, **kw), y, e, sample_weight=sw)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4, err_msg=str(kw))
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-4, err_msg=str(kw))


@pytest.mark.oracle
def test_circle_with_reference_embeddings_matches_keras(keras):
    import torch  # optional: only the oracle tests need Keras's backend

    y, e = CIRCLE_BATCHES[1]
    ref_labels = RNG.integers(0, 3, 5)
    ref_emb = _unit(5, 6, RNG)
    t, r = torch.tensor(e, requires_grad=True), torch.tensor(ref_emb, requires_grad=True)
    out = keras.losses.circle(y, t, ref_labels=ref_labels, ref_embeddings=r, gamma=20.0)
    out.sum().backward()
    v, w = lamina.Variable(e), lamina.Variable(ref_emb)
    with lamina.GradientTape() as tape:
        got = losses.circle(y, v, ref_labels=ref_labels, ref_embeddings=w, gamma=20.0)
        total = ops.sum(got)
    gv, gw = tape.gradient(total, [v, w])
    np.testing.assert_allclose(np.asarray(got), _np(out), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(gv, t.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gw, r.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_circle_masks_rows_without_loss_out_of_the_mean():
    # Label 3 has no positive partner: its loss is 0, and Keras leaves it out of the mean.
    y, e = CIRCLE_BATCHES[0]
    per_row = np.asarray(losses.circle(y, e))
    assert per_row[4] == 0 and np.all(per_row[:4] > 0)
    mean = float(losses.Circle()(y, e))
    np.testing.assert_allclose(mean, per_row[:4].mean(), rtol=1e-6)
    np.testing.assert_allclose(float(losses.Circle(reduction="sum")(y, e)), per_row.sum(), rtol=1e-6)


@pytest.mark.parametrize("kw", CIRCLE_KW)
def test_circle_gradcheck(kw):
    # Norms of 0.9 keep every similarity below 1, away from the kink of max(1 - s, 0).
    y = RNG.integers(0, 3, 7)
    e = _unit(7, 5, RNG, scale=0.9).astype("float64")
    check_gradients(lambda p: losses.circle(y, p, **kw), e)
    ref = _unit(4, 5, RNG, scale=0.9).astype("float64")
    check_gradients(lambda p, r: losses.circle(y, p, ref_labels=[0, 1, 2, 1], ref_embeddings=r, **kw), e, ref)


def test_circle_class_gradcheck_with_weights():
    y = RNG.integers(0, 2, 6)
    e = _unit(6, 4, RNG, scale=0.9).astype("float64")
    sw = RNG.uniform(0.5, 2, 6)
    for reduction in ("sum_over_batch_size", "mean_with_sample_weight", "sum"):
        loss = losses.Circle(gamma=16.0, reduction=reduction, dtype="float64")
        check_gradients(lambda p, loss=loss: loss(y, p, sample_weight=sw), e)


def test_circle_rejects_mismatched_inputs():
    y, e = CIRCLE_BATCHES[0]
    with pytest.raises(ValueError, match=r"one label per embedding.*Received"):
        losses.circle(y[:3], e)
    with pytest.raises(ValueError, match=r"shape \(batch_size, dim\).*Received"):
        losses.circle(y, e, ref_labels=y, ref_embeddings=e[:, :2])


# ----------------------------------------------------------------------------- CTC


@pytest.mark.oracle
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight", None])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("batch", range(len(CTC_BATCHES)))
def test_ctc_value_and_gradient_match_keras(keras, batch, weighted, reduction):
    labels, logits = CTC_BATCHES[batch]
    logits = logits.astype("float32")
    sw = RNG.uniform(0.2, 2.0, len(labels)).astype("float32") if weighted else None
    ref, ref_grad = _torch_value_and_grad(keras.losses.CTC(reduction=reduction), labels, logits, sample_weight=sw)
    got, grad = _lamina_value_and_grad(losses.CTC(reduction=reduction), labels, logits, sample_weight=sw)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-5)


@pytest.mark.oracle
def test_ctc_function_matches_keras_including_a_blank_inside_the_labels(keras):
    # Keras's test case: [1, 2, 0, 2] has 3 non-zero labels, so the labels read are [1, 2, 0].
    logits = (np.arange(24).reshape((2, 4, 3)).astype("float32") - 12) / 100
    labels = np.array([[1, 2, 1, 0], [1, 2, 0, 2]])
    np.testing.assert_allclose(losses.ctc(labels, logits), _np(keras.losses.ctc(labels, logits)), rtol=1e-6)
    np.testing.assert_allclose(float(losses.CTC()(labels, logits)), 2.448645, rtol=1e-6)


def test_ctc_matches_a_brute_force_sum_over_alignments():
    # p(labels) = sum over every path of T symbols that collapses (merge repeats, drop blanks) to them.
    logits = RNG.normal(size=(1, 5, 3))
    probs = np.exp(logits[0]) / np.exp(logits[0]).sum(-1, keepdims=True)
    for target in ([1, 2], [1, 1], [2], []):
        total = 0.0
        for path in itertools.product(range(3), repeat=5):
            collapsed = [k for i, k in enumerate(path) if k != 0 and (i == 0 or path[i - 1] != k)]
            if collapsed == target:
                total += np.prod(probs[np.arange(5), path])
        padded = np.array([target + [0] * (2 - len(target))])
        np.testing.assert_allclose(losses.ctc(padded, logits), [-np.log(total)], rtol=1e-10)


@pytest.mark.parametrize("batch", range(len(CTC_BATCHES)))
def test_ctc_gradcheck(batch):
    labels, logits = CTC_BATCHES[batch]
    check_gradients(lambda z: losses.ctc(labels, z), logits)


def test_ctc_gradcheck_with_a_blank_inside_the_labels():
    # torch's own backward disagrees with its forward here; the gradient follows the forward value.
    labels = np.array([[2, 0, 0, 1], [1, 0, 2, 2]])
    check_gradients(lambda z: losses.ctc(labels, z), RNG.normal(size=(2, 7, 4)))


def test_ctc_impossible_alignment_is_inf_with_zero_gradient():
    # Three labels, two of them equal and adjacent, need at least 4 steps; 3 are given.
    labels, logits = np.array([[1, 1, 2]]), RNG.normal(size=(1, 3, 3))
    value, grad = _lamina_value_and_grad(losses.ctc, labels, logits)
    assert np.isinf(value).all()
    np.testing.assert_array_equal(grad, np.zeros_like(logits))


def test_ctc_rejects_bad_shapes_and_labels():
    with pytest.raises(ValueError, match=r"\(batch_size, max_length\).*Received: y_true.shape=\(4,\)"):
        losses.ctc(np.zeros(4), np.zeros((4, 3, 2)))
    with pytest.raises(ValueError, match=r"\(batch_size, max_length, num_classes\).*Received: y_pred.shape"):
        losses.ctc(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\).*Received"):
        losses.ctc(np.array([[1, 5]]), np.zeros((1, 4, 3)))


# ----------------------------------------------------------------------------- configs


BUILTIN_LOSS_CLASSES = sorted(n for n in losses.__all__ if n[0].isupper() and n not in ("Loss", "LossFunctionWrapper")
                              and n not in ("MSE", "MAE", "MAPE", "MSLE", "KLD", "BCE"))


@pytest.mark.oracle
@pytest.mark.parametrize("cls", BUILTIN_LOSS_CLASSES)
def test_every_loss_config_equals_keras_key_for_key(keras, cls):
    if not hasattr(keras.losses, cls):
        pytest.skip(f"keras.losses has no {cls}")
    kept = KEPT_BEYOND_KERAS.get(cls, ())  # arguments Keras's config drops; lamina keeps them
    for kwargs in ({}, {"name": "x", "reduction": "sum"}):
        ours, theirs = getattr(losses, cls)(**kwargs).get_config(), getattr(keras.losses, cls)(**kwargs).get_config()
        assert set(ours) - set(theirs) == set(kept)
        assert {k: v for k, v in ours.items() if k not in kept} == theirs


KEPT_BEYOND_KERAS = {"Huber": ("delta",), "CosineSimilarity": ("axis",), "SparseCategoricalCrossentropy": ("axis",)}


@pytest.mark.oracle
@pytest.mark.parametrize("loss", [lambda m: m.Circle(gamma=3.0, margin=0.1, remove_diagonal=False, name="c"),
                                  lambda m: m.CTC(name="myctc", reduction="sum")], ids=["Circle", "CTC"])
def test_new_loss_serialization_round_trips_and_interoperates(keras, loss):
    ours, theirs = loss(losses), loss(keras.losses)
    assert losses.serialize(ours) == keras.losses.serialize(theirs)
    again = losses.deserialize(losses.serialize(ours))
    assert type(again) is type(ours) and again.get_config() == ours.get_config()
    assert type(losses.deserialize(keras.losses.serialize(theirs))) is type(ours)
    assert type(keras.losses.deserialize(losses.serialize(ours))).__name__ == type(ours).__name__


def test_arguments_keras_drops_from_configs_are_kept_and_load_in_keras(keras):
    # Keras's Huber, CosineSimilarity and SparseCategoricalCrossentropy configs drop delta / axis, so a
    # saved Huber(delta=2.0) reloads as 1.0 there; lamina keeps them, and Keras's classes accept them.
    for loss, key, value in ((losses.Huber(delta=2.0), "delta", 2.0),
                             (losses.CosineSimilarity(axis=0), "axis", 0),
                             (losses.SparseCategoricalCrossentropy(axis=0), "axis", 0)):
        config = loss.get_config()
        assert config[key] == value
        assert type(loss).from_config(config).get_config() == config
        assert getattr(keras.losses, type(loss).__name__).from_config(config).get_config()["name"] == config["name"]
    assert keras.losses.deserialize(losses.serialize(losses.Huber(delta=2.0))).fn is not None


def test_get_by_name():
    assert losses.get("circle") is losses.circle and losses.get("ctc") is losses.ctc
    assert isinstance(losses.get("Circle"), losses.Circle) and isinstance(losses.get("CTC"), losses.CTC)


# ----------------------------------------------------------------------------- compile by string


def _model(units, activation, shape=(4,)):
    return lamina.Sequential([lamina.layers.Input(shape), lamina.layers.Dense(units, activation=activation)])


X = RNG.normal(size=(48, 4)).astype("float32")
CE_CASES = [
    (1, "sigmoid", (X[:, :1] > 0).astype("float32"), "binary_crossentropy", "BinaryAccuracy"),
    (3, "softmax", RNG.integers(0, 3, 48), "sparse_categorical_crossentropy", "SparseCategoricalAccuracy"),
    (3, "softmax", RNG.integers(0, 3, (48, 1)), "sparse_categorical_crossentropy", "SparseCategoricalAccuracy"),
    (3, "softmax", np.eye(3, dtype="float32")[RNG.integers(0, 3, 48)], "categorical_crossentropy",
     "CategoricalAccuracy"),
]


@pytest.mark.parametrize("spelling", ["crossentropy", "ce", "CE"])
@pytest.mark.parametrize("units,act,y,fn,acc", CE_CASES, ids=[c[3] + str(np.ndim(c[2])) for c in CE_CASES])
def test_compile_crossentropy_string_resolves_by_shapes(units, act, y, fn, acc, spelling):
    model = _model(units, act)
    model.compile(optimizer="sgd", loss=spelling, metrics=["accuracy"])
    history = model.fit(X, y, epochs=1, batch_size=16, verbose=0)
    loss = model._compile_loss.output_losses[0].loss
    assert loss.fn is getattr(losses, fn) and loss.name == spelling
    assert type(model._compile_metrics.metrics[0]).__name__ == acc
    assert np.isfinite(history.history["loss"][0])
    expected = float(np.mean(getattr(losses, fn)(y, model.predict(X, verbose=0))))
    np.testing.assert_allclose(model.evaluate(X, y, verbose=0, return_dict=True)["loss"], expected, rtol=1e-5)


@pytest.mark.oracle
@pytest.mark.parametrize("units,act,y,fn,acc", CE_CASES, ids=[c[3] + str(np.ndim(c[2])) for c in CE_CASES])
def test_compile_crossentropy_string_agrees_with_keras(keras, units, act, y, fn, acc):
    theirs = keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(units, activation=act)])
    theirs.compile(loss="crossentropy")
    ours = _model(units, act)
    ours.compile(loss="crossentropy")
    ours.build((None, 4))
    ours.set_weights([w.numpy() for w in theirs.weights])
    np.testing.assert_allclose(ours.evaluate(X, y, verbose=0), theirs.evaluate(X, y, verbose=0), rtol=1e-5)


class _UnitNorm(lamina.layers.Layer):
    def call(self, x):
        return x / ops.sqrt(ops.sum(x * x, axis=-1, keepdims=True) + 1e-12)  # shape inference calls on zeros


def test_compile_circle_and_ctc_by_string_and_fit():
    circle_model = lamina.Sequential([lamina.layers.Input((4,)), lamina.layers.Dense(3), _UnitNorm()])
    circle_model.compile(optimizer="adam", loss="circle")
    labels = (X[:, 0] > 0).astype("int64")
    before = circle_model.evaluate(X, labels, batch_size=48, verbose=0)
    circle_model.fit(X, labels, epochs=20, batch_size=48, verbose=0)
    assert circle_model.evaluate(X, labels, batch_size=48, verbose=0) < before

    seq = RNG.normal(size=(8, 6, 4)).astype("float32")
    targets = np.array([[1, 2, 0]] * 8)
    ctc_model = lamina.Sequential([lamina.layers.Input((6, 4)), lamina.layers.Dense(3)])
    ctc_model.compile(optimizer="adam", loss="ctc")
    before = ctc_model.evaluate(seq, targets, verbose=0)
    ctc_model.fit(seq, targets, epochs=20, verbose=0)
    assert ctc_model.evaluate(seq, targets, verbose=0) < before
