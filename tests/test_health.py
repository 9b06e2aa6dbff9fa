"""Activation health: dead ReLUs, saturated sigmoids, vanishing gradients, the source of a NaN."""

import warnings

import numpy as np
import pytest

import lamina
from lamina import initializers
from lamina import layers as L
from lamina.callbacks import ActivationHealth
from lamina.diagnostics import HealthWarning
from lamina.diagnostics import health as H


def circles(n=512):
    x, y = lamina.datasets.make_circles(n, noise=0.05, factor=0.5, seed=0)
    return x, y


def relu_net(bias=0.0, kernel="glorot_uniform"):
    return lamina.Sequential([
        L.Input((2,)),
        L.Dense(32, activation="relu", kernel_initializer=kernel, bias_initializer=initializers.Constant(bias)),
        L.Dense(32, activation="relu", kernel_initializer=kernel, bias_initializer=initializers.Constant(bias)),
        L.Dense(1, activation="sigmoid"),
    ])


def fit_health(model, x, y, epochs=2, **kwargs):
    model.compile(optimizer=lamina.optimizers.Adam(0.01), loss="binary_crossentropy", lint=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, **kwargs)
    return history, [w for w in caught if issubclass(w.category, HealthWarning)]


def test_dead_relu_network_is_reported_dead():
    lamina.utils.set_random_seed(0)
    x, y = circles()
    history, caught = fit_health(relu_net(bias=-5.0), x, y, health=True)
    layers = history.health["layers"]
    first, second = history.model.layers[0].name, history.model.layers[1].name
    assert layers[first]["dead"] == [1.0, 1.0] and layers[second]["dead"] == [1.0, 1.0]
    assert layers[first]["activation"] == "relu"
    assert history.health["grad_norm"][first] == [0.0, 0.0]
    messages = [str(w.message) for w in caught]
    assert any(f"Layer '{first}': 100% of its relu units never activated" in m for m in messages)
    assert any("no gradient at all" in m for m in messages)
    assert len(messages) == len(set(messages))  # each warning once per fit, not once per epoch


def test_healthy_relu_network_is_not():
    lamina.utils.set_random_seed(0)
    x, y = circles()
    history, caught = fit_health(relu_net(kernel="he_normal"), x, y, health=True)
    for rec in history.health["layers"].values():
        if "dead" in rec:
            assert max(rec["dead"]) < 0.5
    assert caught == []
    assert all(r > 1e-3 for r in history.health["grad_ratio"])


def test_deep_sigmoid_stack_reports_vanishing_gradients():
    lamina.utils.set_random_seed(0)
    x, y = circles()
    model = lamina.Sequential([L.Input((2,))] + [L.Dense(32, activation="sigmoid") for _ in range(8)]
                              + [L.Dense(1, activation="sigmoid")])
    history, caught = fit_health(model, x, y, epochs=1, health=True)
    assert history.health["grad_ratio"][0] < 1e-3
    norms = history.health["grad_norm"]
    assert list(norms) == [layer.name for layer in model.layers]
    assert any("Vanishing gradients" in str(w.message) for w in caught)


def test_saturated_sigmoid_from_unscaled_inputs():
    lamina.utils.set_random_seed(0)
    x, y = circles()
    model = lamina.Sequential([L.Input((2,)), L.Dense(16, activation="sigmoid"), L.Dense(1, activation="sigmoid")])
    history, caught = fit_health(model, x * 200.0, y, epochs=1, health=True)
    first = model.layers[0].name
    assert history.health["layers"][first]["saturated"][0] > 0.5
    assert any("flat part" in str(w.message) for w in caught)
    history, _ = fit_health(model, x, y, epochs=1, health=True)
    assert history.health["layers"][first]["saturated"][0] < 0.1


def test_a_confident_output_paired_with_its_loss_is_not_called_saturated():
    """A sigmoid output the crossentropy reads as logits has gradient p - y there, so its saturation is
    confidence; the same saturation in a hidden layer, or with a loss that reads the probabilities, warns."""
    lamina.utils.set_random_seed(0)
    x, y = circles()
    model = lamina.Sequential([L.Input((2,)), L.Dense(16, activation="relu"), L.Dense(1, activation="sigmoid")])
    model.build((None, 2))
    model.layers[0].set_weights([np.ones((2, 16), "float32"), np.full(16, 3.0, "float32")])  # every unit >= 1
    model.layers[1].set_weights([np.full((16, 1), 20.0, "float32"), np.zeros(1, "float32")])  # so |z| >= 320
    history, caught = fit_health(model, x, y, epochs=1, health=True)
    out = model.layers[1].name
    assert history.health["layers"][out]["saturated"][0] > 0.5
    assert not any(f"Layer '{out}'" in str(w.message) and "flat part" in str(w.message) for w in caught)
    stats, _ = H.measure(model, x[:64], y[:64])
    assert stats[out]["paired_with_loss"] is True
    model.compile(optimizer="sgd", loss="mse", lint=False)  # mse reads the probabilities: the flat part bites
    stats, _ = H.measure(model, x[:64], y[:64])
    assert stats[out]["saturated"] > 0.5 and "paired_with_loss" not in stats[out]


def test_statistics_match_their_definitions():
    model = lamina.Sequential([L.Input((1,)), L.Dense(2, activation="relu"), L.Dense(1, activation="tanh")])
    model.layers[0].set_weights([np.array([[1.0, -1.0]], "float32"), np.array([0.0, -10.0], "float32")])
    model.layers[1].set_weights([np.array([[10.0], [0.0]], "float32"), np.array([-3.0], "float32")])
    x = np.linspace(0, 1, 11, dtype=np.float32).reshape(-1, 1)
    stats = H.activation_stats(model, x)
    a = np.maximum(x @ np.array([[1.0, -1.0]]) + [0.0, -10.0], 0)
    z2 = a @ np.array([[10.0], [0.0]]) - 3.0
    relu_stats, tanh_stats = stats[model.layers[0].name], stats[model.layers[1].name]
    assert relu_stats["dead"] == 0.5  # unit 1 is x*(-1) - 10 < 0 on every row
    np.testing.assert_allclose(relu_stats["mean"], a.mean(), rtol=1e-6)
    np.testing.assert_allclose(relu_stats["std"], a.std(), rtol=1e-6)
    assert tanh_stats["saturated"] == pytest.approx(np.mean(np.abs(z2) > H.FLAT["tanh"]))
    np.testing.assert_allclose(tanh_stats["mean"], np.tanh(z2).mean(), rtol=1e-5)
    assert "dead" not in tanh_stats and "saturated" not in relu_stats


def test_gradient_norms_match_the_analytic_gradient():
    model = lamina.Sequential([L.Input((3,)), L.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 3)).astype("float32")
    y = rng.standard_normal((16, 1)).astype("float32")
    k, b = model.layers[0].get_weights()
    r = x @ k + b - y
    dk, db = 2 * x.T @ r / 16, 2 * r.sum(axis=0) / 16
    expected = np.sqrt((dk ** 2).sum() + (db ** 2).sum())
    norms = H.gradient_norms(model, x, y)
    assert norms[model.layers[0].name] == pytest.approx(expected, rel=1e-5)
    assert np.isnan(H.gradient_ratio(norms))  # one layer: no ratio


def test_history_health_layout_and_verbose_table(capsys):
    lamina.utils.set_random_seed(0)
    x, y = circles(256)
    model = lamina.Sequential([L.Input((2,)), L.Dense(8), L.Activation("relu"), L.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", lint=False)
    history = model.fit(x, y, epochs=3, verbose=2, health=ActivationHealth(every=2))
    health = history.health
    assert health["epochs"] == [1]  # every second epoch
    assert set(health) == {"epochs", "layers", "grad_norm", "grad_ratio", "nan", "recurrent"}
    assert health["recurrent"] == {}  # no recurrent layer
    act_name = model.layers[1].name
    assert health["layers"][act_name]["activation"] == "relu" and len(health["layers"][act_name]["dead"]) == 1
    assert list(health["grad_norm"]) == [model.layers[0].name, model.layers[2].name]
    out = capsys.readouterr().out
    assert "health, epoch 2:" in out and act_name in out and "gradient norm ratio" in out


def test_health_on_a_functional_model():
    inp = lamina.Input((2,))
    a = L.Dense(8, activation="relu")(inp)
    b = L.Dense(8, activation="tanh")(inp)
    out = L.Dense(1, activation="sigmoid")(L.Concatenate()([a, b]))
    model = lamina.Model(inp, out)
    x, y = circles(128)
    history, _ = fit_health(model, x, y, epochs=1, health=True)
    acts = {rec["activation"] for rec in history.health["layers"].values()}
    assert acts == {"relu", "tanh", "sigmoid"}
    assert len(history.health["grad_norm"]) == 3


def test_health_does_not_change_training():
    x, y = circles(256)
    weights = []
    for health in (False, True):
        lamina.utils.set_random_seed(3)
        model = lamina.Sequential([L.Input((2,)), L.Dense(8, activation="relu"), L.BatchNormalization(),
                                   L.Dense(1, activation="sigmoid")])
        model.compile(optimizer="adam", loss="binary_crossentropy", lint=False)
        model.fit(x, y, epochs=2, batch_size=32, verbose=0, health=health)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_nan_names_the_first_layer_and_op():
    rng = np.random.default_rng(0)
    x = rng.random((64, 20), dtype=np.float32)
    y = rng.integers(0, 2, 64)
    huge = initializers.Constant(1e19)
    model = lamina.Sequential([L.Input((20,)), L.Dense(16, activation="relu", kernel_initializer=huge),
                               L.Dense(16, activation="relu", kernel_initializer=huge),
                               L.Dense(1, activation="sigmoid")])
    with np.errstate(all="ignore"):
        history, caught = fit_health(model, x, y, epochs=1, health=True)
    report = history.health["nan"]
    assert report["layer"] == model.layers[1].name and report["op"] == "matmul + bias"
    assert report["value"] == "inf" and report["epoch"] == 0 and report["batch"] == 0
    assert any(f"layer '{model.layers[1].name}' (Dense): matmul + bias produced inf" in str(w.message)
               for w in caught)
    # The wrappers are gone after fit.
    assert "_train_step" not in model.__dict__ and "apply" not in model.optimizer.__dict__


def test_locate_nonfinite_reports_broken_weights_and_clean_models():
    model = lamina.Sequential([L.Input((2,)), L.Dense(3, activation="relu"), L.Dense(1)])
    x = np.ones((4, 2), "float32")
    assert H.locate_nonfinite(model, x) is None
    k, b = model.layers[1].get_weights()
    k[0, 0] = np.nan
    model.layers[1].set_weights([k, b])
    report = H.locate_nonfinite(model, x)
    assert report["layer"] == model.layers[1].name and report["op"] == "weight 'kernel'"
    assert "diverged" in report["message"]


def test_generator_data_needs_an_explicit_sample():
    x, y = circles(128)

    def batches():
        while True:
            for i in range(0, 128, 32):
                yield x[i:i + 32], y[i:i + 32]

    model = relu_net()
    model.compile(optimizer="adam", loss="binary_crossentropy", lint=False)
    with pytest.warns(HealthWarning, match="x_sample"):
        history = model.fit(batches(), steps_per_epoch=4, epochs=1, verbose=0, health=True)
    assert history.health["epochs"] == []
    history = model.fit(batches(), steps_per_epoch=4, epochs=1, verbose=0,
                        health=ActivationHealth(x_sample=x, y_sample=y))
    assert history.health["epochs"] == [0] and history.health["grad_norm"]


@pytest.mark.parametrize("kwargs,match", [
    ({"sample_size": 0}, "sample_size"), ({"every": 1.5}, "every"), ({"dead_threshold": 2}, "dead_threshold"),
    ({"ratio_threshold": -1}, "ratio_threshold"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=rf"Received: {match}="):
        ActivationHealth(**kwargs)


def test_fit_keeps_a_bounded_random_sample_without_touching_the_global_rng():
    model = relu_net()
    x = np.arange(3000 * 2, dtype=np.float32).reshape(3000, 2)
    state = lamina.backend.rng().bit_generator.state
    H.keep_sample(model, x, np.arange(3000))
    xs, ys = model._fit_sample
    assert xs.shape == (H.SAMPLE_ROWS, 2) and np.all(np.diff(ys) > 0) and ys[-1] > 2000
    np.testing.assert_array_equal(xs[:, 0], ys * 2)
    assert lamina.backend.rng().bit_generator.state == state


def test_the_time_budget_skips_epochs_but_keeps_first_and_last():
    x, y = circles(128)
    model = relu_net()
    model.compile(optimizer="adam", loss="binary_crossentropy", lint=False)
    history = model.fit(x, y, epochs=5, verbose=0, health=ActivationHealth(budget=1e-9))
    assert history.health["epochs"] == [0, 4]
    history = model.fit(x, y, epochs=5, verbose=0, health=ActivationHealth(budget=None))
    assert history.health["epochs"] == [0, 1, 2, 3, 4]
    assert all(len(v) == 5 for v in history.health["grad_norm"].values())
    with pytest.raises(ValueError, match="Received: budget=0"):
        ActivationHealth(budget=0)


@pytest.mark.parametrize("head,loss", [
    (lambda: [L.Dense(1, activation="sigmoid")], "binary_crossentropy"),  # measured from the logits
    (lambda: [L.Dense(3), L.Activation("softmax")], "sparse_categorical_crossentropy"),
    (lambda: [L.Dense(1, activation="tanh")], "mse"),
])
def test_one_pass_measure_equals_the_separate_passes(head, loss):
    lamina.utils.set_random_seed(0)
    x, y = circles(64)
    model = lamina.Sequential([L.Input((2,)), L.Dense(8, activation="relu"), L.Dropout(0.5), *head()])
    model.compile(optimizer="sgd", loss=loss, lint=False)
    stats, norms = H.measure(model, x, y)
    # measure also knows the loss: it marks an output the loss reads as logits (the separate pass can't)
    paired = {name for name, e in stats.items() if e.pop("paired_with_loss", False)}
    assert paired == ({model.layers[-1].name} if "crossentropy" in loss else set())
    assert stats == H.activation_stats(model, x)
    separate = H.gradient_norms(model, x, y)
    assert list(norms) == list(separate)
    np.testing.assert_allclose(list(norms.values()), list(separate.values()), rtol=1e-5)
