"""compile / fit / evaluate / predict end to end, against real Keras where numbers must agree."""

import contextlib

import numpy as np
import pytest

import lamina
from lamina import layers

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 5)).astype("float32")
Y_INT = (X[:, 0] + X[:, 1] > 0).astype("int64") + (X[:, 2] > 1).astype("int64")  # 3 classes
Y_BIN = (X[:, 0] > 0).astype("float32")


def small_classifier(units=3, activation="softmax", lib=lamina, seed=0):
    lib.utils.set_random_seed(seed)
    return lib.Sequential([lib.Input((5,)), lib.layers.Dense(8, activation="tanh"),
                           lib.layers.Dense(units, activation=activation)])


# ----------------------------------------------------------------------------- the basics


def test_fit_returns_history_and_loss_falls():
    model = small_classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(X, Y_INT, epochs=15, batch_size=16, verbose=0, validation_split=0.25)
    h = history.history
    assert set(h) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(h["loss"]) == 15 and h["loss"][-1] < h["loss"][0]
    assert history.epoch == list(range(15))
    assert model.history is history
    loss, acc = model.evaluate(X, Y_INT, verbose=0)
    assert 0 <= acc <= 1 and loss > 0
    logs = model.evaluate(X, Y_INT, verbose=0, return_dict=True)
    assert list(logs) == ["accuracy", "loss"]  # Keras 3.15 returns the dict with its keys sorted
    assert model.predict(X, verbose=0).shape == (64, 3)


def test_evaluate_without_metrics_returns_scalar():
    model = small_classifier()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    assert isinstance(model.evaluate(X, Y_INT, verbose=0), float)


def test_accuracy_resolves_by_shapes():
    model = small_classifier(units=1, activation="sigmoid")
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(X, Y_BIN, epochs=1, verbose=0)
    assert type(model.metrics[1]).__name__ == "BinaryAccuracy"
    model = small_classifier()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(X, lamina.utils.to_categorical(Y_INT, 3), epochs=1, verbose=0)
    assert type(model.metrics[1]).__name__ == "CategoricalAccuracy"
    model = small_classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["acc"])
    model.fit(X, Y_INT, epochs=1, verbose=0)
    assert type(model.metrics[1]).__name__ == "SparseCategoricalAccuracy"
    assert "acc" in model.evaluate(X, Y_INT, verbose=0, return_dict=True)


def test_on_batch_methods():
    model = small_classifier()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    before = model.get_weights()
    loss, acc = model.train_on_batch(X[:8], Y_INT[:8])
    assert not np.array_equal(before[0], model.get_weights()[0])
    logs = model.test_on_batch(X[:8], Y_INT[:8], return_dict=True)
    assert set(logs) == {"loss", "accuracy"}
    np.testing.assert_allclose(model.predict_on_batch(X[:8]), model.predict(X[:8], verbose=0), rtol=1e-6)


def test_custom_training_loop_with_gradient_tape():
    model = small_classifier()
    optimizer = lamina.optimizers.Adam(0.05)
    loss_fn = lamina.losses.SparseCategoricalCrossentropy()
    first = None
    for _ in range(30):
        with lamina.GradientTape() as tape:
            loss = loss_fn(Y_INT, model(X, training=True))
        grads = tape.gradient(loss, model.trainable_weights)
        optimizer.apply_gradients(zip(grads, model.trainable_weights))
        first = float(loss) if first is None else first
    assert float(loss) < 0.7 * first


def test_generators_and_iterables():
    model = small_classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    def batches():
        while True:
            for i in range(0, 64, 16):
                yield X[i:i + 16], Y_INT[i:i + 16]

    history = model.fit(batches(), steps_per_epoch=4, epochs=3, verbose=0)
    assert len(history.history["loss"]) == 3
    as_list = [(X[i:i + 16], Y_INT[i:i + 16]) for i in range(0, 64, 16)]
    model.fit(as_list, epochs=2, verbose=0, validation_data=as_list)
    loss_iter = model.evaluate(as_list, verbose=0)[0]
    loss_arr = model.evaluate(X, Y_INT, batch_size=16, verbose=0)[0]
    np.testing.assert_allclose(loss_iter, loss_arr, rtol=1e-5)
    preds = model.predict(((X[i:i + 16],) for i in range(0, 64, 16)), verbose=0)
    np.testing.assert_allclose(preds, model.predict(X, verbose=0), rtol=1e-5)


def test_multi_input_multi_output_with_dicts_and_loss_weights():
    a = lamina.Input((5,), name="a")
    b = lamina.Input((2,), name="b")
    h = layers.Concatenate()([layers.Dense(8, activation="relu")(a), b])
    cls = layers.Dense(3, activation="softmax", name="cls")(h)
    reg = layers.Dense(1, name="reg")(h)
    model = lamina.Model(inputs={"a": a, "b": b}, outputs={"cls": cls, "reg": reg})
    model.compile(optimizer="adam", loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
                  loss_weights={"cls": 1.0, "reg": 0.5}, metrics={"cls": ["accuracy"], "reg": ["mae"]})
    xb = RNG.normal(size=(64, 2)).astype("float32")
    yr = X[:, :1] * 2
    history = model.fit({"a": X, "b": xb}, {"cls": Y_INT, "reg": yr}, epochs=3, verbose=0)
    assert {"loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae"} <= set(history.history)
    logs = model.evaluate({"a": X, "b": xb}, {"cls": Y_INT, "reg": yr}, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["loss"], logs["cls_loss"] + 0.5 * logs["reg_loss"], rtol=1e-5)
    out = model.predict({"a": X, "b": xb}, verbose=0)
    assert out["cls"].shape == (64, 3) and out["reg"].shape == (64, 1)


def test_same_seed_bit_identical_training_with_shuffle_and_dropout():
    def run():
        lamina.utils.set_random_seed(42)
        model = lamina.Sequential([lamina.Input((5,)), layers.Dense(16, activation="relu"), layers.Dropout(0.3),
                                   layers.Dense(3, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(X, Y_INT, epochs=3, batch_size=8, shuffle=True, verbose=0)
        return model.get_weights()

    for a, b in zip(run(), run()):
        assert np.array_equal(a, b)


def test_class_weight_and_sample_weight_change_the_loss():
    model = small_classifier()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    base = model.test_on_batch(X, Y_INT)
    sw = np.where(Y_INT == 0, 3.0, 1.0).astype("float32")
    weighted = model.test_on_batch(X, Y_INT, sample_weight=sw)
    assert not np.isclose(base, weighted)
    with pytest.raises(ValueError, match="cannot be specified at the same time"):
        model.fit(X, Y_INT, sample_weight=sw, class_weight={0: 3.0}, verbose=0)


def test_verbose_progress_output(capsys):
    model = small_classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(X, Y_INT, epochs=2, batch_size=16, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "4/4" in out and "loss:" in out
    model.fit(X, Y_INT, epochs=2, batch_size=16, verbose=2)
    lines = [line for line in capsys.readouterr().out.splitlines() if "loss:" in line]
    assert len(lines) == 2
    model.fit(X, Y_INT, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


# ----------------------------------------------------------------------------- callbacks in fit


def test_early_stopping_restores_best_weights():
    model = small_classifier()
    model.compile(optimizer=lamina.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    snapshots = []
    keep = lamina.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.append(model.get_weights()))
    # min_delta larger than any real improvement: epoch 0 stays "best", training stops after `patience`.
    stop = lamina.callbacks.EarlyStopping(monitor="loss", patience=2, min_delta=10.0, restore_best_weights=True)
    history = model.fit(X, Y_INT, epochs=40, batch_size=64, verbose=0, callbacks=[keep, stop])
    assert len(history.history["loss"]) == 3 and stop.stopped_epoch == 2
    for got, want in zip(model.get_weights(), snapshots[0]):
        np.testing.assert_array_equal(got, want)


def test_terminate_on_nan_names_epoch_and_batch(capsys):
    model = small_classifier()
    model.compile(optimizer=lamina.optimizers.SGD(1e30), loss="mse")
    y = np.ones((64, 3), "float32") * 1e20
    with np.errstate(all="ignore"):  # the overflow is the point: TerminateOnNaN must stop it
        history = model.fit(X, y, epochs=5, batch_size=8, verbose=0,
                            callbacks=[lamina.callbacks.TerminateOnNaN()])
    out = capsys.readouterr().out
    assert "epoch" in out.lower() and "batch" in out.lower()
    assert len(history.history.get("loss", [])) < 5


def test_learning_rate_callbacks_reach_the_optimizer():
    model = small_classifier()
    model.compile(optimizer=lamina.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    sched = lamina.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5)
    model.fit(X, Y_INT, epochs=3, verbose=0, callbacks=[sched])
    np.testing.assert_allclose(float(model.optimizer.learning_rate), 0.01 / 8, rtol=1e-6)


# ----------------------------------------------------------------------------- what a network can learn


def test_circles_need_a_non_linearity():
    x, y = lamina.datasets.make_circles(n_samples=1200, noise=0.05, factor=0.5, seed=0)
    results = {}
    for act in (None, "relu", "tanh"):
        lamina.utils.set_random_seed(0)
        model = lamina.Sequential([lamina.Input((2,)), layers.Dense(16, activation=act),
                                   layers.Dense(16, activation=act), layers.Dense(1, activation="sigmoid")])
        # The linear stack is the point of the comparison, and compile's lint says so.
        lint = pytest.warns(lamina.diagnostics.LintWarning, match="no-nonlinearity")
        with lint if act is None else contextlib.nullcontext():
            model.compile(optimizer=lamina.optimizers.Adam(0.02), loss="binary_crossentropy", metrics=["accuracy"])
        model.fit(x[:900], y[:900], epochs=40, batch_size=32, verbose=0)
        results[act] = model.evaluate(x[900:], y[900:], verbose=0)[1]
    assert results[None] < 0.7, results
    assert results["relu"] > 0.97 and results["tanh"] > 0.97, results


def _fashion():
    try:
        (x, y), (xt, yt) = lamina.datasets.fashion_mnist.load_data()
    except lamina.datasets.DatasetUnavailableError:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    return (x.reshape(-1, 784).astype("float32") / 255, y), (xt.reshape(-1, 784).astype("float32") / 255, yt)


def _mnist_mlp():
    lamina.utils.set_random_seed(0)
    model = lamina.Sequential([layers.Dense(128, activation="relu", input_shape=(784,)),
                               layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.slow
def test_fashion_mnist_mlp_reaches_keras_accuracy():
    # Keras 3 (torch) on this setup, measured here: 0.872-0.874 test accuracy with validation_split=0.1,
    # lamina 0.861-0.873; on the full training set lamina gives 0.865-0.878 over seeds 0-2. The
    # epoch-5 figure moves by about a point between seeds, so the bar sits at the low end of Keras's
    # own spread rather than at its median.
    (x, y), (xt, yt) = _fashion()
    model = _mnist_mlp()
    history = model.fit(x, y, epochs=5, batch_size=32, verbose=0)
    losses = history.history["loss"]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    _, acc = model.evaluate(xt, yt, verbose=0)
    assert acc >= 0.865, acc


@pytest.mark.slow
def test_fashion_mnist_validation_split_reports_val_accuracy():
    (x, y), _ = _fashion()
    history = _mnist_mlp().fit(x, y, epochs=1, batch_size=32, verbose=0, validation_split=0.1)
    assert history.history["val_accuracy"][0] > 0.8
    assert history.history["val_loss"][0] < 0.6


# ----------------------------------------------------------------------------- agreement with Keras


@pytest.mark.oracle
@pytest.mark.parametrize("loss,activation,units,labels", [
    ("sparse_categorical_crossentropy", "softmax", 3, "int"),
    ("categorical_crossentropy", "softmax", 3, "onehot"),
    ("binary_crossentropy", "sigmoid", 1, "binary"),
    ("mse", "linear", 3, "onehot"),
])
def test_training_steps_match_keras(keras, loss, activation, units, labels):
    y = {"int": Y_INT, "onehot": np.eye(3, dtype="float32")[Y_INT], "binary": Y_BIN[:, None]}[labels]
    km = small_classifier(units, activation, lib=keras)
    lm = small_classifier(units, activation)
    lm.set_weights(km.get_weights())
    sw = RNG.uniform(0.5, 2.0, size=64).astype("float32")
    for model in (km, lm):
        model.compile(optimizer=model_lib(model, keras).optimizers.SGD(0.1, momentum=0.9), loss=loss)
    k_first = km.train_on_batch(X, y, sample_weight=sw)
    l_first = lm.train_on_batch(X, y, sample_weight=sw)
    np.testing.assert_allclose(l_first, k_first, rtol=1e-5)
    km.fit(X, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    lm.fit(X, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(lm.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(lm.evaluate(X, y, verbose=0), km.evaluate(X, y, verbose=0), rtol=1e-5)


@pytest.mark.oracle
def test_class_weight_loss_matches_keras(keras):
    km = small_classifier(lib=keras)
    lm = small_classifier()
    lm.set_weights(km.get_weights())
    cw = {0: 0.5, 1: 2.0, 2: 3.0}
    for model in (km, lm):
        model.compile(optimizer=model_lib(model, keras).optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    np.testing.assert_allclose(lm.train_on_batch(X, Y_INT, class_weight=cw),
                               km.train_on_batch(X, Y_INT, class_weight=cw), rtol=1e-5)


def model_lib(model, keras):
    return lamina if isinstance(model, lamina.Model) else keras


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def compiled():
    model = small_classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def test_fit_before_compile():
    model = small_classifier()
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(X, Y_INT, verbose=0)


def test_mismatched_lengths(compiled):
    with pytest.raises(ValueError, match=r"same number of samples.*x sizes: \[64\].*y sizes: \[63\]"):
        compiled.fit(X, Y_INT[:63], verbose=0)


def test_labels_out_of_range(compiled):
    bad = Y_INT.copy()
    bad[5] = 7
    with pytest.raises(ValueError, match=r"\[0, 3\).*7"):
        compiled.fit(X, bad, verbose=0)


def test_one_hot_labels_to_sparse_loss(compiled):
    with pytest.raises(ValueError, match="one-hot"):
        compiled.fit(X, np.eye(3)[Y_INT], verbose=0)


def test_integer_labels_to_categorical_loss():
    model = small_classifier()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy"):
        model.fit(X, Y_INT, verbose=0)


def test_nan_or_inf_in_inputs(compiled):
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf.*\(3, 2\)"):
        compiled.fit(bad, Y_INT, verbose=0)
    bad[3, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        compiled.evaluate(bad, Y_INT, verbose=0)


def test_unknown_loss_name():
    model = small_classifier()
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy"):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropyy")


def test_unknown_optimizer_and_metric():
    model = small_classifier()
    with pytest.raises(ValueError, match="adam"):
        model.compile(optimizer="adamm", loss="mse")
    model.compile(optimizer="adam", loss="mse", metrics=["acuracy"])
    with pytest.raises(ValueError, match="accuracy"):
        model.fit(X, np.eye(3)[Y_INT], verbose=0)


def test_wrong_input_width_in_fit(compiled):
    with pytest.raises(ValueError, match=r"expected shape=\(None, 5\).*\(64, 4\)"):
        compiled.fit(X[:, :4], Y_INT, verbose=0)
