"""The doctor's sequence rules: each has a model that trips it and a correct model that does not."""

import warnings

import numpy as np
import pytest

import lamina
from lamina import diagnostics
from lamina import layers as L
from lamina.diagnostics import LintHint, LintWarning, ModelError
from lamina.diagnostics.sequence_lint import RECURRENT_STEPS


def seq(*layers, shape):
    return lamina.Sequential([L.Input(shape), *layers])


def findings(model, x=None, y=None, rule=None):
    out = diagnostics.lint(model, x, y)
    return [f for f in out if rule is None or f.rule == rule]


def rules(model, x=None, y=None) -> set[str]:
    return {f.rule for f in diagnostics.lint(model, x, y)}


# ----------------------------------------------------------------------------- unbounded gates and states


@pytest.mark.parametrize("make", [
    lambda: L.LSTM(8, recurrent_activation="relu"),
    lambda: L.GRU(8, recurrent_activation="elu"),
    lambda: L.GRU(8, recurrent_activation="linear", unroll=True),
    lambda: L.RNN(L.LSTMCell(8, recurrent_activation="relu")),
    lambda: L.Bidirectional(L.GRU(8, recurrent_activation="relu")),
])
def test_unbounded_gates_over_a_long_sequence_warn_at_compile(make):
    model = seq(make(), L.Dense(1), shape=(RECURRENT_STEPS, 3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.compile(optimizer="adam", loss="mse")
    messages = [str(w.message) for w in caught if issubclass(w.category, LintWarning)]
    assert len(messages) == 1 and "recurrent-unbounded-gates" in messages[0]
    finding = findings(model, rule="recurrent-unbounded-gates")[0]
    assert finding.severity == "warning" and finding.layers == (model.layers[0].name,)
    assert f"over {RECURRENT_STEPS} timesteps" in finding.message and "geometrically" in finding.message
    assert "recurrent_activation='sigmoid'" in finding.fix


@pytest.mark.parametrize("make", [
    lambda: L.SimpleRNN(8, activation="relu"),
    lambda: L.LSTM(8, activation="relu"),
    lambda: L.GRU(8, activation="selu"),
])
def test_an_unbounded_state_over_a_long_sequence_is_a_hint(make):
    model = seq(make(), L.Dense(1), shape=(100, 3))
    [finding] = findings(model)
    assert (finding.rule, finding.severity) == ("recurrent-unbounded-state", "hint")
    assert "over 100 timesteps" in finding.message and "activation='tanh'" in finding.fix
    with pytest.warns(LintHint, match="recurrent-unbounded-state"):
        model.compile(optimizer="adam", loss="mse")


@pytest.mark.parametrize("make, shape", [
    (lambda: L.LSTM(8), (100, 3)),  # the defaults: sigmoid gates, tanh state
    (lambda: L.GRU(8, recurrent_activation="hard_sigmoid", activation="softsign"), (100, 3)),
    (lambda: L.SimpleRNN(8, activation="relu"), (RECURRENT_STEPS - 1, 3)),  # short: no finding
    (lambda: L.LSTM(8, recurrent_activation="relu"), (None, 3)),  # length unknown without data
])
def test_bounded_or_short_recurrent_layers_get_no_finding(make, shape):
    assert rules(seq(make(), L.Dense(1), shape=shape)) == set()


def test_an_unknown_length_is_read_from_the_training_data():
    model = seq(L.Embedding(50, 4), L.GRU(8, recurrent_activation="relu"), L.Dense(1), shape=(None,))
    model.compile(optimizer="adam", loss="mse")  # nothing to say yet: the length is unknown
    x, y = np.ones((8, 64), dtype="int32"), np.zeros((8, 1), dtype="float32")
    [finding] = findings(model, x, y)
    assert finding.rule == "recurrent-unbounded-gates" and "over 64 timesteps" in finding.message
    assert rules(model, x[:, :RECURRENT_STEPS - 1], y) == set()
    with pytest.warns(LintWarning, match="over 64 timesteps"):
        model.fit(x, y, epochs=1, verbose=0)


# ----------------------------------------------------------------------------- masks


@pytest.mark.parametrize("middle, dropper", [
    (lambda: [L.Dense(4, activation="relu"), L.Flatten()], "Flatten"),  # Dense passes the mask, Flatten drops it
    (lambda: [L.GlobalMaxPooling1D()], "GlobalMaxPooling1D"),
    (lambda: [L.Conv1D(4, 3, activation="relu"), L.GlobalAveragePooling1D()], "Conv1D"),
    (lambda: [L.LSTM(4, return_sequences=True), L.MaxPooling1D(), L.Flatten()], "MaxPooling1D"),
])
def test_a_masked_sequence_reaching_a_layer_that_drops_the_mask_warns(middle, dropper):
    model = seq(L.Embedding(20, 4, mask_zero=True), *middle(), L.Dense(1, activation="sigmoid"), shape=(10,))
    [finding] = findings(model)
    dropping = next(layer for layer in model.layers if type(layer).__name__ == dropper)
    assert (finding.rule, finding.severity) == ("mask-dropped", "warning")
    assert finding.layers == (model.layers[0].name, dropping.name)
    assert f"'{dropping.name}' ({dropper})" in finding.message and "mask_zero=True" in finding.message
    assert "GlobalAveragePooling1D" in finding.fix
    with pytest.warns(LintWarning, match="mask-dropped"):
        model.compile(optimizer="adam", loss="binary_crossentropy")


def test_a_keras_ops_reduction_of_a_masked_sequence_is_named():
    inputs = L.Input((10, 3))
    x = L.Masking()(inputs)
    x = L.Dense(4, activation="relu")(x)
    outputs = L.Dense(1)(lamina.ops.mean(x, axis=1))
    [finding] = findings(lamina.Model(inputs, outputs))
    assert finding.rule == "mask-dropped" and finding.layers[0].startswith("masking")
    assert "keras.ops call" in finding.message and "remove the Masking layer" in finding.fix


@pytest.mark.parametrize("middle", [
    lambda: [L.LSTM(4)],  # the LSTM reads the mask and ends it
    lambda: [L.GRU(4, return_sequences=True), L.GlobalAveragePooling1D()],
    lambda: [L.Bidirectional(L.LSTM(4)), L.Dense(4, activation="relu")],
    lambda: [L.Dense(4, activation="relu"), L.Dropout(0.1), L.SimpleRNN(4)],
    lambda: [L.LSTM(4), L.Flatten()],  # after the LSTM there is no mask left to drop
])
def test_masked_sequences_read_by_mask_aware_layers_get_no_finding(middle):
    model = seq(L.Embedding(20, 4, mask_zero=True), *middle(), L.Dense(1, activation="sigmoid"), shape=(10,))
    assert rules(model) == set()


def test_an_unmasked_sequence_into_flatten_gets_no_finding():
    model = seq(L.Embedding(20, 4), L.Flatten(), L.Dense(1, activation="sigmoid"), shape=(10,))
    assert rules(model) == set()


def test_a_merge_passes_the_mask_on_to_the_layer_that_drops_it():
    a, b = L.Input((6,)), L.Input((6, 4))
    x = L.Add()([L.Embedding(20, 4, mask_zero=True)(a), L.Dense(4)(b)])
    outputs = L.Dense(1)(L.GlobalMaxPooling1D()(x))
    [finding] = findings(lamina.Model([a, b], outputs))
    assert finding.rule == "mask-dropped" and finding.layers[1].startswith("global_max_pooling1d")


# ----------------------------------------------------------------------------- targets vs the time axis


def text_model(return_sequences, units, activation, loss):
    model = seq(L.Embedding(20, 4), L.LSTM(8, return_sequences=return_sequences),
                L.Dense(units, activation=activation), shape=(7,))
    model.compile(optimizer="adam", loss=loss)
    return model


X = np.random.default_rng(0).integers(1, 20, (32, 7))


@pytest.mark.parametrize("units, activation, loss, y", [
    (5, "softmax", "sparse_categorical_crossentropy", np.zeros((32, 7), "int64")),
    (5, "softmax", "categorical_crossentropy", np.eye(5)[np.zeros((32, 7), "int64")]),
    (1, "sigmoid", "binary_crossentropy", np.zeros((32, 7), "float32")),
    (1, None, "mse", np.zeros((32, 7, 1), "float32")),  # the one the loss would broadcast without a word
])
def test_per_step_targets_for_a_per_sequence_output_stop_fit(units, activation, loss, y):
    model = text_model(False, units, activation, loss)
    [finding] = findings(model, X, y)
    assert (finding.rule, finding.severity) == ("time-axis-dropped", "error")
    assert finding.layers == (model.layers[1].name,)
    assert "return_sequences=False" in finding.message and f"shape {y.shape}" in finding.message
    assert "return_sequences=True" in finding.fix and "TimeDistributed" in finding.fix
    assert_fit_stops(model, y, loss, "time-axis-dropped")


def assert_fit_stops(model, y, loss, rule):
    """fit refuses the targets with the doctor's finding alone (not a wrong-labels error too), except for
    one-hot labels, which fit's own label check refuses first."""
    with pytest.raises(ValueError) as err:
        model.fit(X, y, epochs=1, verbose=0)
    if loss != "categorical_crossentropy":
        assert isinstance(err.value, ModelError) and [f.rule for f in err.value.findings] == [rule]


@pytest.mark.parametrize("units, activation, loss, y", [
    (5, "softmax", "sparse_categorical_crossentropy", np.zeros((32,), "int64")),
    (5, "softmax", "categorical_crossentropy", np.eye(5)[np.zeros(32, "int64")]),
    (1, "sigmoid", "binary_crossentropy", np.zeros((32, 1), "float32")),
])
def test_per_sequence_targets_for_a_per_step_output_stop_fit(units, activation, loss, y):
    model = text_model(True, units, activation, loss)
    [finding] = findings(model, X, y)
    assert (finding.rule, finding.severity) == ("time-axis-kept", "error")
    assert "return_sequences=True" in finding.message and "Dense layer after it" in finding.message
    assert "return_sequences=False" in finding.fix and "GlobalAveragePooling1D" in finding.fix
    assert_fit_stops(model, y, loss, "time-axis-kept")


@pytest.mark.parametrize("return_sequences, units, activation, loss, y", [
    (False, 5, "softmax", "sparse_categorical_crossentropy", np.zeros((32,), "int64")),
    (False, 5, "softmax", "categorical_crossentropy", np.eye(5)[np.zeros(32, "int64")]),
    (False, 1, "sigmoid", "binary_crossentropy", np.zeros((32, 1), "float32")),
    (True, 5, "softmax", "sparse_categorical_crossentropy", np.zeros((32, 7), "int64")),
    (True, 5, "softmax", "categorical_crossentropy", np.eye(5)[np.zeros((32, 7), "int64")]),
    (True, 1, "sigmoid", "binary_crossentropy", np.zeros((32, 7), "float32")),
    (True, 1, None, "mse", np.zeros((32, 7, 1), "float32")),
])
def test_targets_that_match_the_output_time_axis_get_no_finding(return_sequences, units, activation, loss, y):
    model = text_model(return_sequences, units, activation, loss)
    assert rules(model, X, y) == set()
    model.fit(X, y, epochs=1, batch_size=32, verbose=0)


def test_an_unknown_length_is_read_from_the_inputs_for_the_time_axis_rule():
    model = seq(L.Embedding(20, 4), L.LSTM(8, return_sequences=True), L.Dense(3, activation="softmax"),
                shape=(None,))
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    y_per_sequence = np.eye(3)[np.zeros(32, "int64")]
    assert rules(model, X, y_per_sequence) == {"time-axis-kept"}
    assert rules(model, X, np.eye(3)[np.zeros((32, 7), "int64")]) == set()


def test_a_sequential_built_by_fit_is_checked_once_at_fit():
    model = lamina.Sequential([L.LSTM(4, recurrent_activation="relu"), L.Dense(1)])
    model.compile(optimizer="adam", loss="mse")  # no input shape yet: nothing to check
    with pytest.warns(LintWarning) as record:
        model.fit(np.zeros((4, 30, 2), "float32"), np.zeros((4, 1), "float32"), epochs=1, verbose=0)
    assert [str(w.message).split(" [")[0] for w in record] == ["warning recurrent-unbounded-gates"]
