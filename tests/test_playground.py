"""The playground's engine without a server: settings validation, data, the network, a session's frames,
the doctor's findings, the activation chart and both exports."""

from __future__ import annotations

import base64
import contextlib
import io
import math
import os
import runpy
import subprocess
import sys

import numpy as np
import pytest

import lamina
from lamina.playground import data, export, network
from lamina.playground.session import BOUNDARY_GRID, Session, activation_curve
from lamina.playground.settings import ACTIVATIONS, DATASETS, DEFAULTS, SettingsError, validate


def _layers(act, units=8, n=2):
    return [{"units": units, "activation": act}] * n


# ---------------------------------------------------------------------------- settings


def test_validate_fills_defaults_and_canonical_feature_order():
    s = validate({"features": ["y2", "x", "x2", "x"]})
    assert s.features == ("x", "x2", "y2")
    assert s.dataset == DEFAULTS.dataset and s.layers == DEFAULTS.layers
    assert s.resolved_output_activation() == "sigmoid" and s.resolved_loss() == "binary_crossentropy"
    two = validate({"output_units": 2})
    assert two.resolved_output_activation() == "softmax" and two.resolved_loss() == "sparse_categorical_crossentropy"


@pytest.mark.parametrize("bad, key, words", [
    ({"noise": 2}, "noise", "from 0 to 0.5. Received: noise=2"),
    ({"noise": float("nan")}, "noise", "Received: noise=nan"),
    ({"points": 10.5}, "points", "must be an integer"),
    ({"points": True}, "points", "Received: points=True"),
    ({"learning_rate": "0.1"}, "learning_rate", "must be a number"),
    ({"layers": _layers("relu", n=7)}, "layers", "0 to 6 hidden layers"),
    ({"layers": _layers("relu", units=65)}, "layers[1].units", "from 1 to 64"),
    ({"layers": _layers("rleu")}, "layers[1].activation", "must be one of: linear, relu"),
    ({"layers": [{"units": 4, "activation": "glu"}]}, "layers[1].activation", "Received: layers[1].activation='glu'"),
    ({"layers": [{"units": 3, "activation": "relu", "bias": -5}]}, "layers", "must be {'units'"),
    ({"dataset": "../../etc/passwd"}, "dataset", "must be one of: circles, xor"),
    ({"optimizer": "__import__('os')"}, "optimizer", "must be one of: sgd, adam"),
    ({"features": []}, "features", "non-empty list"),
    ({"batch_norm": 1}, "batch_norm", "true or false"),
    ({"loss": "sparse_categorical_crossentropy"}, "loss", "needs one output unit per class"),
    ({"eval": "1"}, "eval", "unknown setting(s): eval"),
])
def test_validate_refuses_with_the_key_and_a_clear_message(bad, key, words):
    with pytest.raises(SettingsError) as info:
        validate(bad)
    assert info.value.key == key
    assert words in str(info.value)


def test_validate_refuses_a_non_object():
    with pytest.raises(SettingsError, match="must be a JSON object. Received: list"):
        validate([1, 2])


def test_every_activation_name_is_a_lamina_activation():
    for name in ACTIVATIONS:
        assert callable(lamina.activations.get(name))
    # every activation lamina knows is offered but threshold (two more arguments) and glu (halves the units)
    assert set(lamina.activations._ALL) - set(ACTIVATIONS) == {"threshold", "glu"}


@pytest.mark.oracle
def test_every_activation_name_is_a_keras_activation():
    keras = pytest.importorskip("keras")
    for name in ACTIVATIONS:
        assert callable(keras.activations.get(name)), name


# ---------------------------------------------------------------------------- data


@pytest.mark.parametrize("name", DATASETS)
def test_datasets_are_balanced_seeded_and_inside_the_plane(name):
    (p_train, y_train), (p_test, y_test) = data.make(name, 400, 0.0, 0.5, seed=3)
    assert p_train.shape == (200, 2) and p_test.shape == (200, 2) and p_train.dtype == np.float32
    labels = np.concatenate([y_train, y_test])
    assert set(labels) == {0, 1}
    assert labels.sum() == 200 if name != "xor" else 160 < labels.sum() < 240  # xor labels by quadrant
    assert np.abs(np.concatenate([p_train, p_test])).max() <= data.LIMIT
    again = data.make(name, 400, 0.0, 0.5, seed=3)
    np.testing.assert_array_equal(again[0][0], p_train)
    assert not np.array_equal(data.make(name, 400, 0.0, 0.5, seed=4)[0][0], p_train)


def test_features_and_grid():
    pts = np.array([[0.5, -1.0]], dtype=np.float32)
    f = data.features(pts, ["x", "y", "x2", "y2", "xy", "sinx", "siny"])
    np.testing.assert_allclose(f[0], [0.5, -1, 0.25, 1, -0.5, 1, 0], atol=1e-6)
    g = data.grid(3)
    np.testing.assert_allclose(g[0], [-data.LIMIT, data.LIMIT])  # top-left first, as a picture is drawn
    np.testing.assert_allclose(g[-1], [data.LIMIT, -data.LIMIT])


# ---------------------------------------------------------------------------- network and session


def test_network_layers_follow_the_settings():
    s = validate({"layers": [{"units": 5, "activation": "tanh"}, {"units": 3, "activation": "gelu"}],
                  "batch_norm": True, "dropout": 0.2, "regularization": "l2", "output_units": 2,
                  "optimizer": "rmsprop", "learning_rate": 0.01})
    model, neuron_layers = network.build(lamina, s, 2)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Dense", "BatchNormalization", "Activation", "Dropout"] * 2 + ["Dense"]
    assert [layer.name for layer in neuron_layers] == ["activation_1", "activation_2", "output"]
    assert model.layers[0].kernel_regularizer is not None
    assert type(model.optimizer).__name__ == "RMSprop"
    assert math.isclose(float(model.optimizer.learning_rate), 0.01, rel_tol=1e-6)
    assert network.targets(np.array([0, 1]), s).tolist() == [0, 1]


def _train(settings: dict, frames: int) -> tuple[Session, dict]:
    session = Session(validate(settings), health_every=0)  # the doctor measures every frame
    frame = session.frame()
    for _ in range(frames):
        frame = session.advance()
    return session, frame


def test_linear_network_stays_near_chance_on_circles_and_lint_says_why():
    session, frame = _train({"dataset": "circles", "layers": _layers("linear")}, 25)
    assert frame["test_accuracy"] < 0.7
    assert "no-nonlinearity" in [f["rule"] for f in session.lint]


def test_relu_network_learns_the_circles():
    session, frame = _train({"dataset": "circles", "layers": _layers("relu")}, 25)
    assert frame["test_accuracy"] > 0.95
    assert session.lint == []
    assert session.history[-1]["train_loss"] < session.history[0]["train_loss"] / 3


def test_frame_carries_the_boundary_and_every_neuron():
    session, frame = _train({"layers": [{"units": 3, "activation": "tanh"}, {"units": 2, "activation": "relu"}]}, 1)
    assert len(base64.b64decode(frame["boundary"])) == BOUNDARY_GRID ** 2
    assert [len(layer) for layer in frame["neurons"]] == [3, 2, 1]
    unit = frame["neurons"][0][0]
    assert len(base64.b64decode(unit["image"])) == frame["neuron_grid"] ** 2 and unit["min"] <= unit["max"]
    assert [e["layer"] for e in frame["health"]["layers"]] == ["hidden_1", "hidden_2", "output"]
    assert frame["health"]["layers"][0]["grad_norm"] > 0
    setup = session.setup()
    assert len(setup["train"]) + len(setup["test"]) == DEFAULTS.points
    assert [c["name"] for c in setup["curves"]] == ["tanh", "relu", "sigmoid"]


def test_softmax_on_one_output_unit_is_a_lint_error_and_its_warning_reaches_the_page():
    session, frame = _train({"output_activation": "softmax"}, 1)
    rules = {f["rule"]: f for f in session.lint}
    assert rules["softmax-single-unit"]["severity"] == "error"
    assert "always 1.0" in rules["softmax-single-unit"]["message"]
    assert any("softmax over axis -1" in w for w in frame["health"]["warnings"])


def test_dead_relu_network_gets_the_doctors_warning():
    _, frame = _train({"layers": _layers("relu", n=3), "learning_rate": 0.3}, 10)
    dead = {e["layer"]: e["dead"] for e in frame["health"]["layers"]}
    assert dead["hidden_3"] == 1.0
    assert any("never activated" in w and "hidden_3" in w for w in frame["health"]["warnings"])


@pytest.mark.parametrize("name, x, y, dy", [("relu", -1.0, 0.0, 0.0), ("relu", 2.0, 2.0, 1.0),
                                            ("sigmoid", 0.0, 0.5, 0.25), ("tanh", 0.0, 0.0, 1.0),
                                            ("softmax", 0.0, 0.5, 0.25)])  # softmax on (x, 0) is sigmoid(x)
def test_activation_curve_and_its_autodiff_derivative(name, x, y, dy):
    curve = activation_curve(name)
    i = int(np.argmin(np.abs(np.array(curve["x"]) - x)))
    assert curve["x"][i] == pytest.approx(x, abs=1e-6)
    assert curve["y"][i] == pytest.approx(y, abs=1e-5)
    assert curve["dy"][i] == pytest.approx(dy, abs=1e-5)


# ---------------------------------------------------------------------------- exports


def test_keras_export_loads_in_lamina_with_equal_predictions(tmp_path):
    session, _ = _train({"layers": _layers("relu", units=4), "batch_norm": True, "dropout": 0.1}, 3)
    path = tmp_path / "m.keras"
    path.write_bytes(export.keras_bytes(session))
    loaded = lamina.models.load_model(str(path))
    np.testing.assert_allclose(np.asarray(loaded.predict(session.x_test, verbose=0)),
                               np.asarray(session.model.predict(session.x_test, verbose=0)), rtol=1e-5, atol=1e-6)


@pytest.mark.oracle
def test_keras_export_loads_in_keras_with_equal_predictions(tmp_path):
    keras = pytest.importorskip("keras")
    session, _ = _train({"layers": _layers("gelu", units=4), "features": ["x", "y", "xy"],
                         "regularization": "l1"}, 3)
    path = tmp_path / "m.keras"
    path.write_bytes(export.keras_bytes(session))
    theirs = keras.saving.load_model(str(path))
    np.testing.assert_allclose(np.asarray(theirs.predict(session.x_test, verbose=0)),
                               np.asarray(session.model.predict(session.x_test, verbose=0)), rtol=1e-4, atol=1e-5)


def _run_script(code: str, path) -> str:
    path.write_text(code)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        runpy.run_path(str(path), run_name="__main__")
    return out.getvalue()


@pytest.mark.parametrize("flavour", ["lamina", pytest.param("keras", marks=pytest.mark.oracle)])
def test_python_export_runs_and_learns(flavour, tmp_path):
    if flavour == "keras":
        pytest.importorskip("keras")
        assert os.environ.get("KERAS_BACKEND", "torch") == "torch"
    s = validate({"layers": _layers("relu"), "batch_norm": True, "dropout": 0.05, "regularization": "l2",
                  "regularization_rate": 0.0001, "points": 200, "learning_rate": 0.03})
    code = export.python_code(s, epochs=20)
    assert "import lamina as keras" in code
    if flavour == "keras":
        code = code.replace("import lamina as keras", "import keras")
    printed = _run_script(code, tmp_path / "playground.py")
    accuracy = float(printed.strip().rsplit(" ", 1)[-1])
    assert accuracy > 0.9, printed


def test_the_doctor_is_throttled_between_frames_but_not_when_asked_every_frame():
    s = validate({"layers": _layers("relu", n=3), "learning_rate": 0.3})
    slow, fast = Session(s, health_every=3600.0), Session(s, health_every=0)
    for _ in range(10):
        slow_frame, fast_frame = slow.advance(), fast.advance()
    assert slow_frame["health"] == slow.setup()["frame"]["health"]  # still the first measurement
    assert slow_frame["health"]["layers"][2]["dead"] < 1.0 == fast_frame["health"]["layers"][2]["dead"]


def test_importing_the_playground_package_does_not_import_the_server_library():
    code = "import sys, lamina, lamina.playground, lamina.playground.session; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_a_diverging_network_reports_nan_as_none_and_the_doctor_names_the_layer():
    _, frame = _train({"layers": _layers("exponential", units=64, n=4), "learning_rate": 10.0, "optimizer": "sgd"}, 3)
    assert frame["train_loss"] is None  # JSON has no NaN: the page shows "nan"
    assert any(w.startswith("The training loss is not finite: layer 'hidden_") for w in frame["health"]["warnings"])
