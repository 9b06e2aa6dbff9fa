"""The doctor inside recurrent layers: gate saturation and gradient flow through time (``fit(health=True)``)."""

import warnings

import numpy as np
import pytest

import lamina
from lamina import layers as L
from lamina.autodiff import GradientTape
from lamina.diagnostics import HealthWarning
from lamina.diagnostics import health as H
from lamina.diagnostics import recurrent_health as RH
from tests.helpers.gradcheck import numeric_gradient


def _mask(batch, steps, seed=0):
    """Left padding of random lengths plus a few holes, every row keeping its last step."""
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, steps), dtype=bool)
    for b in range(batch):
        mask[b, :rng.integers(0, steps - 1)] = False
    mask[rng.random((batch, steps)) < 0.15] = False
    mask[:, -1] = True
    return mask


def _flat(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


LAYERS = {
    "simple_rnn": lambda **kw: L.SimpleRNN(5, **kw),
    "simple_rnn_relu_seq": lambda **kw: L.SimpleRNN(5, activation="relu", return_sequences=True, **kw),
    "lstm": lambda **kw: L.LSTM(5, **kw),
    "lstm_back_seq_state": lambda **kw: L.LSTM(5, go_backwards=True, return_sequences=True, return_state=True, **kw),
    "lstm_hard_sigmoid": lambda **kw: L.LSTM(5, recurrent_activation="hard_sigmoid", **kw),
    "gru": lambda **kw: L.GRU(5, return_sequences=True, **kw),
    "gru_reset_before_back": lambda **kw: L.GRU(5, reset_after=False, go_backwards=True, return_state=True, **kw),
    "rnn_lstm_cell": lambda **kw: L.RNN(L.LSTMCell(5, **kw), return_sequences=True, **kw),
    "bidirectional_concat": lambda **kw: L.Bidirectional(L.LSTM(4, return_sequences=True, **kw), **kw),
    "bidirectional_mul_gru": lambda **kw: L.Bidirectional(L.GRU(4, **kw), merge_mode="mul", **kw),
    "bidirectional_none_state": lambda **kw: L.Bidirectional(L.SimpleRNN(3, return_state=True, **kw), merge_mode=None,
                                                             **kw),
}


def _built(name, dtype="float32", features=3):
    lamina.utils.set_random_seed(1)
    layer = LAYERS[name](dtype=dtype)
    layer.build((None, 7, features))
    rng = np.random.default_rng(2)
    layer.set_weights([rng.normal(scale=0.6, size=w.shape).astype(dtype) for w in layer.get_weights()])
    return layer


@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "mask"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_replay_equals_the_layers_own_output(name, masked):
    layer = _built(name)
    x = np.random.default_rng(3).normal(scale=1.5, size=(6, 7, 3)).astype("float32")
    mask = _mask(6, 7) if masked else None
    expected = _flat(layer(x, mask=mask))
    outs, grads, counts = RH.run_layer(layer, x, mask)
    assert grads is None
    assert len(outs) == len(expected)
    for got, want in zip(outs, expected):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
    assert len(counts) == (2 if isinstance(layer, L.Bidirectional) else 1)


@pytest.mark.parametrize("name", ["simple_rnn", "lstm_back_seq_state", "gru", "gru_reset_before_back",
                                  "bidirectional_mul_gru", "bidirectional_none_state"])
def test_input_gradient_matches_central_differences_in_float64(name):
    """dL/dx from the replay (what the per-timestep norms are made of) for L = sum_k <output_k, G_k>, against
    central differences of the layer's own call, with a mask; a Bidirectional's halves add up to the total."""
    layer = _built(name, dtype="float64", features=2)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 7, 2))
    mask = _mask(3, 7, seed=5)
    seeds = [rng.normal(size=np.shape(o)) for o in _flat(layer(x, mask=mask))]

    def loss(v):
        return sum(float(np.sum(np.asarray(o) * g)) for o, g in zip(_flat(layer(v, mask=mask)), seeds))

    numeric = numeric_gradient(lambda: loss(x), x)
    _, grads, _ = RH.run_layer(layer, x, mask, seeds)
    np.testing.assert_allclose(sum(grads), numeric, rtol=1e-6, atol=1e-8)
    assert np.all(sum(grads)[~mask] == 0)  # a masked step's input reaches nothing


@pytest.fixture
def float64():
    saved = lamina.backend.floatx()
    lamina.backend.set_floatx("float64")
    yield
    lamina.backend.set_floatx(saved)


@pytest.mark.parametrize("go_backwards", [False, True])
def test_measured_flow_matches_central_differences_of_the_compiled_loss(float64, go_backwards):
    """fit's measuring pass (the SimpleRNN reads the model input: the tape watches it) gives the per-timestep norms
    of dL/dx for the compiled loss, checked element by element in float64, in the order the layer reads."""
    lamina.utils.set_random_seed(0)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 6, 2))
    y = rng.normal(size=(4, 1))
    rnn = L.SimpleRNN(3, go_backwards=go_backwards)
    model = lamina.Sequential([L.Input((6, 2)), rnn, L.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", lint=False)
    recurrent = {}
    H.measure(model, x, y, recurrent=recurrent)
    numeric = numeric_gradient(lambda: float(np.mean((np.asarray(model(x)) - y) ** 2)), x)
    np.testing.assert_allclose(recurrent[rnn.name]["grad_norm_t"], RH.time_norms(numeric, None, go_backwards),
                               rtol=1e-6)


def _set(layer, kernel, recurrent, bias):
    layer.set_weights([np.asarray(w, dtype="float32") for w in (kernel, recurrent, bias)])


def test_saturation_reads_each_gate_in_keras_order():
    """Biases alone set the gates (zero kernels): LSTM i, f, c, o = +10, 0, 0.1, -10 make the input gate open and
    the output gate shut (saturated), the forget gate 0.5 and the candidate tanh(0.1) (not); GRU z, r, h =
    +10, 0, +10: update and candidate saturated, reset not."""
    x = np.ones((4, 6, 2), dtype="float32")
    lstm = L.LSTM(3)
    lstm.build((None, 6, 2))
    _set(lstm, np.zeros((2, 12)), np.zeros((3, 12)), np.repeat([10.0, 0.0, 0.1, -10.0], 3))
    _, _, (counts,) = RH.run_layer(lstm, x)
    assert counts.fractions() == {"input": 1.0, "forget": 0.0, "output": 1.0, "candidate": 0.0, "cell": 0.0}
    assert counts.activations == {"input": "sigmoid", "forget": "sigmoid", "output": "sigmoid",
                                  "candidate": "tanh", "cell": "tanh"}
    gru = L.GRU(3, reset_after=False)
    gru.build((None, 6, 2))
    _set(gru, np.zeros((2, 9)), np.zeros((3, 9)), np.repeat([10.0, 0.0, 10.0], 3))
    _, _, (counts,) = RH.run_layer(gru, x)
    assert counts.fractions() == {"update": 1.0, "reset": 0.0, "candidate": 1.0}


def test_saturation_rules_for_hard_sigmoid_relu_and_linear():
    """hard_sigmoid gates clipped to exactly 0 count as saturated; a relu unit that is off (exactly 0) is
    saturated; a linear activation has no flat part and is not measured."""
    x = np.ones((2, 5, 2), dtype="float32")
    lstm = L.LSTM(2, recurrent_activation="hard_sigmoid")
    lstm.build((None, 5, 2))
    _set(lstm, np.zeros((2, 8)), np.zeros((2, 8)), np.repeat([-4.0, 0.0, 0.0, 0.5], 2))
    _, _, (counts,) = RH.run_layer(lstm, x)
    assert counts.fractions()["input"] == 1.0 and counts.fractions()["output"] == 0.0
    relu = L.SimpleRNN(2, activation="relu")
    relu.build((None, 5, 2))
    _set(relu, np.zeros((2, 2)), np.zeros((2, 2)), [-1.0, 1.0])
    _, _, (counts,) = RH.run_layer(relu, x)
    assert counts.fractions() == {"activation": 0.5}
    linear = L.SimpleRNN(2, activation="linear")
    linear.build((None, 5, 2))
    _, _, (counts,) = RH.run_layer(linear, x)
    assert counts.fractions() == {} and counts.activations == {"activation": "linear"}
    assert RH.saturation_words("hard_sigmoid") == "within 0.01 of 0 or 1"
    assert RH.saturation_words("relu") == "exactly 0"


def test_masked_steps_are_not_counted():
    """Huge inputs (tanh saturated) only on the masked steps: nothing the layer keeps is saturated."""
    layer = L.SimpleRNN(1)
    layer.build((None, 4, 1))
    _set(layer, [[1.0]], [[0.0]], [0.0])
    x = np.zeros((2, 4, 1), dtype="float32")
    x[:, :2] = 50.0
    mask = np.array([[False, False, True, True]] * 2)
    assert RH.run_layer(layer, x, mask)[2][0].fractions() == {"activation": 0.0}
    assert RH.run_layer(layer, x)[2][0].fractions() == {"activation": 0.5}


@pytest.mark.parametrize("go_backwards", [False, True])
def test_gradient_through_time_of_a_linear_recurrence(go_backwards):
    """h_t = x_t + 0.5 h_{t-1} and the loss on the last step: dL/dx_t = 0.5^(T-1-t) dL/dh_T, so the curve (in
    reading order) halves at every step back and the first/last ratio is 0.5^(T-1), whichever way it reads."""
    steps = 8
    layer = L.SimpleRNN(2, activation="linear", go_backwards=go_backwards)
    layer.build((None, steps, 2))
    _set(layer, np.eye(2), 0.5 * np.eye(2), np.zeros(2))
    x = np.random.default_rng(0).normal(size=(5, steps, 2)).astype("float32")
    g = np.random.default_rng(1).normal(size=(5, 2)).astype("float32")
    _, (grad,), _ = RH.run_layer(layer, x, output_gradients=[g])
    norms = RH.time_norms(grad, None, go_backwards)
    rms = np.sqrt(np.mean(np.sum(g.astype(float) ** 2, axis=1)))
    np.testing.assert_allclose(norms, rms * 0.5 ** np.arange(steps - 1, -1, -1), rtol=1e-6)
    assert RH.time_ratio(norms) == pytest.approx(0.5 ** (steps - 1), rel=1e-6)
    reading_first = grad[:, -1] if go_backwards else grad[:, 0]
    np.testing.assert_allclose(reading_first, 0.5 ** (steps - 1) * g, rtol=1e-6)


def test_time_norms_leave_out_masked_rows_and_steps():
    grad = np.ones((2, 3, 1))
    grad[1] = 3.0
    mask = np.array([[False, True, True], [False, False, True]])
    norms = RH.time_norms(grad, mask, False)
    assert np.isnan(norms[0]) and norms[1] == 1.0 and norms[2] == pytest.approx(np.sqrt(5.0))
    assert RH.time_ratio(norms) == pytest.approx(1 / np.sqrt(5.0))


@pytest.mark.parametrize("shared", [False, True], ids=["own-input", "shared-input"])
@pytest.mark.parametrize("rows", [16, 4])
def test_measure_agrees_with_the_layers_own_backward_pass(rows, shared, monkeypatch):
    """In a model, the per-timestep norms are those of the gradient that the LSTM's own fused backward pass carries
    from its output to its input (the compiled loss, the sample's mean). Its input feeding the LSTM alone, that
    is the tape's gradient there; shared with another branch, the replay's backward pass must give it. With a
    row-step cap: those of the first rows that fit."""
    monkeypatch.setattr(RH, "REPLAY_ROW_STEPS", rows * 9)
    lamina.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 9, 3)).astype("float32")
    y = rng.integers(0, 2, size=(16, 1)).astype("float32")
    inp = L.Input((9, 3))
    dense, lstm, head = L.Dense(3, activation="tanh"), L.LSTM(6), L.Dense(1, activation="sigmoid")
    pool, concat = L.GlobalAveragePooling1D(), L.Concatenate()

    def top(hidden, out):
        return concat([out, pool(hidden)]) if shared else out

    hidden = dense(inp)
    model = lamina.Model(inp, head(top(hidden, lstm(hidden))))
    model.compile(optimizer="adam", loss="binary_crossentropy", lint=False)
    recurrent = {}
    H.measure(model, x, y, recurrent=recurrent)
    hid = dense(x)
    with GradientTape() as tape:
        out = lstm(hid)
        loss = lamina.losses.BinaryCrossentropy()(y, head(top(hid, out)))
    g_out = tape.gradient(loss, out)
    with GradientTape() as tape:
        tape.watch(hid)
        out = lstm(hid)
    grad = tape.gradient(out, hid, output_gradients=g_out)  # through the LSTM alone
    np.testing.assert_allclose(recurrent[lstm.name]["grad_norm_t"], RH.time_norms(grad[:rows], None, False),
                               rtol=1e-4)
    if rows < 16:
        assert not np.allclose(RH.time_norms(grad[:rows], None, False), RH.time_norms(grad, None, False), rtol=1e-4)


def test_without_labels_only_the_gates_are_measured():
    lamina.utils.set_random_seed(0)
    x, _ = _tokens(steps=5)
    gru = L.GRU(3)
    model = lamina.Sequential([L.Input((5,)), L.Embedding(30, 2, mask_zero=True), gru, L.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", lint=False)
    recurrent = {}
    H.measure(model, x, None, recurrent=recurrent)
    assert set(recurrent[gru.name]["saturated"]) == {"update", "reset", "candidate"}
    assert "grad_norm_t" not in recurrent[gru.name]


def _fit(model, x, y, epochs=2, **kwargs):
    model.compile(optimizer=lamina.optimizers.Adam(0.01), loss="binary_crossentropy", lint=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, **kwargs)
    return history, [str(w.message) for w in caught if issubclass(w.category, HealthWarning)]


def _tokens(rows=96, steps=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 30, size=(rows, steps))
    for b in range(rows):
        x[b, :rng.integers(0, steps // 2)] = 0  # pre-padding, as pad_sequences does
    return x, (x[:, -1] > 15).astype("float32")


def test_fit_health_reports_every_recurrent_layer_per_epoch():
    lamina.utils.set_random_seed(0)
    x, y = _tokens()
    inp = L.Input((12,))
    h = L.Embedding(30, 4, mask_zero=True)(inp)
    h = L.Bidirectional(L.GRU(4, return_sequences=True))(h)
    h = L.LSTM(5)(h)
    model = lamina.Model(inp, L.Dense(1, activation="sigmoid")(h))
    history, _ = _fit(model, x, y, epochs=3, health=lamina.callbacks.ActivationHealth(budget=None))
    rec = history.health["recurrent"]
    bidir, lstm = model.layers[2], model.layers[3]
    assert list(rec) == [f"{bidir.name}/{bidir.forward_layer.name}", f"{bidir.name}/{bidir.backward_layer.name}",
                         lstm.name]
    assert history.health["epochs"] == [0, 1, 2]
    entry = rec[lstm.name]
    assert entry["cell"] == "LSTM" and set(entry["saturated"]) == {"input", "forget", "output", "candidate", "cell"}
    assert all(len(v) == 3 for v in entry["saturated"].values())
    assert len(entry["grad_norm_t"]) == 3 and all(len(c) == 12 for c in entry["grad_norm_t"])
    assert len(entry["grad_ratio_t"]) == 3 and all(r > 0 for r in entry["grad_ratio_t"])
    back = rec[f"{bidir.name}/{bidir.backward_layer.name}"]
    assert back["cell"] == "GRU" and back["go_backwards"] is True
    assert all(0 <= v <= 1 for vs in back["saturated"].values() for v in vs)


def test_simple_rnn_gradient_vanishes_through_time_where_the_lstms_does_far_less():
    """Over 100 steps of unit-scale-times-3 inputs, at Keras's initialisation: the SimpleRNN's tanh saturates and
    the gradient reaching its first step is many orders of magnitude below the LSTM's; the doctor says so."""
    rng = np.random.default_rng(0)
    x = (3.0 * rng.normal(size=(64, 100, 4))).astype("float32")
    y = (x[:, 0, 0] > 0).astype("float32")
    ratios = {}
    for make in (L.SimpleRNN, L.LSTM):
        lamina.utils.set_random_seed(0)
        rnn = make(16)
        model = lamina.Sequential([L.Input((100, 4)), rnn, L.Dense(1, activation="sigmoid")])
        history, messages = _fit(model, x, y, epochs=1, health=True)
        ratios[make.__name__] = history.health["recurrent"][rnn.name]["grad_ratio_t"][0]
        if make is L.SimpleRNN:
            assert any(m.startswith(f"Vanishing gradients through time: in layer '{rnn.name}' (SimpleRNN) the first "
                                    "of its 100 timesteps gets ") and "Use LSTM or GRU" in m for m in messages)
    assert ratios["SimpleRNN"] < 1e-12
    assert ratios["SimpleRNN"] < 1e-3 * ratios["LSTM"]


def test_saturated_gate_is_reported_in_the_doctors_words():
    lamina.utils.set_random_seed(0)
    x, y = _tokens(steps=8)
    lstm = L.LSTM(3, bias_initializer=lamina.initializers.Constant(-8.0), unit_forget_bias=False)
    model = lamina.Sequential([L.Input((8,)), L.Embedding(30, 2), lstm, L.Dense(1, activation="sigmoid")])
    _, messages = _fit(model, x, y, epochs=1, health=True)
    gates = [m for m in messages if m.startswith(f"Layer '{lstm.name}' (LSTM) is saturated: ")]
    assert len(gates) == 1  # one warning per layer, naming every saturated gate
    # every bias -8: the sigmoid gates shut, the candidate at -1; the cell state stays near 0 (not saturated)
    assert "input gate 100%, forget gate 100%, output gate 100%, candidate 100% of the values" in gates[0]
    assert "squashed cell state" not in gates[0]
    assert "(sigmoid: within 0.01 of 0 or 1; tanh: within 0.01 of -1 or +1)" in gates[0]
    assert len(messages) == len(set(messages))


def test_verbose_table_lists_the_gates(capsys):
    lamina.utils.set_random_seed(0)
    x, y = _tokens(steps=6)
    gru = L.GRU(3)
    model = lamina.Sequential([L.Input((6,)), L.Embedding(30, 2, mask_zero=True), gru,
                               L.Dense(1, activation="sigmoid")])
    _fit(model, x, y, epochs=1, health=lamina.callbacks.ActivationHealth(verbose=1))
    out = capsys.readouterr().out
    assert f"  {gru.name} (GRU): update " in out and ", reset " in out and ", candidate " in out
    assert "recurrent layers: saturated values per gate" in out and "gradient first/last timestep " in out
    assert "(6 steps)" in out


class MinimalCell(L.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = self.state_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")

    def call(self, inputs, states):
        h = lamina.ops.tanh(lamina.ops.add(lamina.ops.matmul(inputs, self.kernel), states[0]))
        return h, [h]


def test_layers_the_doctor_cannot_replay_are_skipped_with_the_reason():
    lamina.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(32, 5, 2)).astype("float32")
    y = (x[:, 0, 0] > 0).astype("float32")
    custom = L.RNN(MinimalCell(3), return_sequences=True)
    stateful = L.LSTM(3, stateful=True)
    model = lamina.Sequential([L.Input((5, 2), batch_size=32), custom, stateful, L.Dense(1, activation="sigmoid")])
    history, _ = _fit(model, x, y, epochs=1, health=True)
    rec = history.health["recurrent"]
    assert "MinimalCell is not a SimpleRNNCell, LSTMCell or GRUCell" in rec[custom.name]["skipped"]
    assert "stateful" in rec[stateful.name]["skipped"] and rec[stateful.name]["cell"] == "LSTM"
    assert "saturated" not in rec[stateful.name]


class DoubledLSTM(L.LSTM):
    """A user's subclass whose output is not what the LSTM's weights alone give."""

    def call(self, sequences, initial_state=None, mask=None, training=False):
        return lamina.ops.multiply(super().call(sequences, initial_state, mask, training), 2.0)


def test_a_replay_that_differs_from_the_layer_is_skipped_not_reported():
    lamina.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(32, 5, 2)).astype("float32")
    y = (x[:, 0, 0] > 0).astype("float32")
    odd = DoubledLSTM(3)
    model = lamina.Sequential([L.Input((5, 2)), odd, L.Dense(1, activation="sigmoid")])
    history, _ = _fit(model, x, y, epochs=1, health=True)
    entry = history.health["recurrent"][odd.name]
    assert entry["skipped"].startswith("its replay differs from the layer's output (largest difference")
    assert "saturated" not in entry and "grad_norm_t" not in entry


def test_plot_health_draws_gates_and_gradient_flow(tmp_path):
    pytest.importorskip("matplotlib")
    lamina.utils.set_random_seed(0)
    x, y = _tokens(steps=10)
    lstm = L.LSTM(4)
    model = lamina.Sequential([L.Input((10,)), L.Embedding(30, 3), L.SimpleRNN(4, return_sequences=True), lstm,
                               L.Dense(1, activation="sigmoid")])
    history, _ = _fit(model, x, y, epochs=3, health=lamina.callbacks.ActivationHealth(budget=None))
    fig = lamina.plot.health(history)
    axes = fig.get_axes()
    assert len(axes) == 6
    titles = [ax.get_title() for ax in axes]
    assert titles[3:] == ["Saturated gate values (recurrent layers)", "Gradient norm reaching each timestep",
                          "Gradient through time: first / last timestep"]
    sat_labels = [line.get_label() for line in axes[3].lines]
    assert f"{lstm.name}: forget" in sat_labels and len(sat_labels) == 5 + 1
    flow = axes[4].lines
    assert [line.get_label() for line in flow][-2:] == [f"{lstm.name}, epoch 1", f"{lstm.name}, epoch 3"]
    assert len(flow[-1].get_xdata()) == 10 and flow[-1].get_color() == flow[-2].get_color()
    path = tmp_path / "health.png"
    fig.savefig(path)
    assert path.stat().st_size > 10_000
