"""Recurrent layers (SimpleRNN, LSTM, GRU, their cells, StackedRNNCells, RNN(cell)) against real Keras, and
their hand-written backpropagation through time against central differences."""

import json
import sys

import numpy as np
import pytest

import lamina
from lamina.autodiff import unwrap
from tests.helpers import gradcheck
from tests.helpers.layer_harness import check_layer_gradients

RTOL, ATOL = 1e-4, 1e-5

KINDS = {
    "simple_rnn": ("SimpleRNN", {}),
    "lstm": ("LSTM", {}),
    "gru": ("GRU", {}),
    "gru_reset_before": ("GRU", {"reset_after": False}),
}
FLAGS = [dict(return_sequences=s, return_state=r, go_backwards=b)
         for s in (False, True) for r in (False, True) for b in (False, True)]


def _np(keras, x):
    return keras.ops.convert_to_numpy(x)


def _leaves(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _sequence(batch, steps, features, seed=0, masked=False):
    """Normal data; with ``masked``, some whole timesteps zeroed (what ``Masking`` masks), every row keeping
    at least one timestep and one row fully masked at the end (left and right padding both occur)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, steps, features)).astype("float32")
    if masked:
        drop = rng.random((batch, steps)) < 0.35
        drop[:, 0] = False
        if steps > 2:
            drop[0, -2:] = True  # right padding
            drop[-1, 0] = True  # left padding
            drop[-1, 1] = False
        x[drop] = 0.0
    return x


def _pair(keras, kind, units=5, **kwargs):
    name, base = KINDS[kind]
    return getattr(keras.layers, name)(units, **base, **kwargs), getattr(lamina.layers, name)(units, **base, **kwargs)


def _copy_weights(keras, klayer, llayer):
    llayer.set_weights([_np(keras, w) for w in klayer.weights])


def _run_both(keras, klayer, llayer, x, masked, **call_kwargs):
    if masked:
        kx, lx = keras.layers.Masking()(x), lamina.layers.Masking()(x)
    else:
        kx, lx = x, x
    return _leaves(klayer(kx, **call_kwargs)), _leaves(llayer(lx, **call_kwargs))


@pytest.mark.oracle
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("steps", [1, 7, 100])
@pytest.mark.parametrize("masked", [False, True])
def test_forward_matches_keras(keras, kind, steps, masked):
    """Every flag combination (return_sequences x return_state x go_backwards, zero_output_for_mask) on the
    same weights: outputs and final states equal Keras's."""
    x = _sequence(4, steps, 3, seed=steps, masked=masked)
    klayer, llayer = _pair(keras, kind)
    klayer(x)
    llayer(x)
    _copy_weights(keras, klayer, llayer)
    # Keras's own loop is slow on long sequences: length 100 runs the combinations that exercise every path.
    flags_list = FLAGS if steps < 100 else [FLAGS[3], FLAGS[6], FLAGS[7]]
    for flags in flags_list + [dict(return_sequences=True, zero_output_for_mask=True)]:
        for layer in (klayer, llayer):
            for key, value in dict(dict.fromkeys(("return_sequences", "return_state", "go_backwards",
                                                  "zero_output_for_mask"), False), **flags).items():
                setattr(layer, key, value)
        kout, lout = _run_both(keras, klayer, llayer, x, masked)
        assert len(kout) == len(lout), flags
        for k, v in zip(kout, lout):
            assert np.asarray(v).dtype == np.float32
            np.testing.assert_allclose(np.asarray(v), _np(keras, k), rtol=RTOL, atol=ATOL, err_msg=str(flags))


@pytest.mark.oracle
@pytest.mark.parametrize("kind", list(KINDS))
def test_stateful_and_initial_state_match_keras(keras, kind):
    x = _sequence(2, 6, 3, seed=3)
    klayer, llayer = _pair(keras, kind, stateful=True, return_state=True)
    klayer(x)
    llayer(x)
    _copy_weights(keras, klayer, llayer)
    klayer.reset_state()
    llayer.reset_state()
    assert len(llayer.weights) == 3  # the state variables are not weights
    for _ in range(2):  # the second call starts from the first one's final states
        for k, v in zip(_leaves(klayer(x)), _leaves(llayer(x))):
            np.testing.assert_allclose(np.asarray(v), _np(keras, k), rtol=RTOL, atol=ATOL)
    llayer.reset_states()
    klayer.reset_state()
    np.testing.assert_allclose(llayer(x)[0], _np(keras, klayer(x)[0]), rtol=RTOL, atol=ATOL)

    rng = np.random.default_rng(5)
    kfresh, lfresh = _pair(keras, kind, return_sequences=True)
    kfresh(x)
    lfresh(x)
    _copy_weights(keras, kfresh, lfresh)
    states = [rng.normal(size=(2, 5)).astype("float32") for _ in range(2 if kind == "lstm" else 1)]
    np.testing.assert_allclose(lfresh(x, initial_state=states), _np(keras, kfresh(x, initial_state=states)),
                               rtol=RTOL, atol=ATOL)


def test_stateful_batch_size_must_stay():
    layer = lamina.layers.LSTM(3, stateful=True)
    layer(np.zeros((2, 4, 3), "float32"))
    with pytest.raises(ValueError, match="batch size"):
        layer(np.zeros((3, 4, 3), "float32"))


def _float64_layer(kind, weight_seed=0, **kwargs):
    name, base = KINDS[kind]
    layer = getattr(lamina.layers, name)(4, **base, dtype="float64", **kwargs)
    layer(np.zeros((1, 2, 3)))
    rng = np.random.default_rng(weight_seed)
    layer.set_weights([rng.normal(scale=0.6, size=w.shape) for w in layer.weights])
    for w in layer.weights:  # C order: central differences perturb the stored array in place
        w._rebind(np.empty(w.shape))
    return layer


def _check_call_gradients(layer, x, initial_state=None, mask=None, rtol=1e-5, atol=1e-7):
    """Tape gradients of sum(outputs * P) for the input, every weight and the initial states (all outputs,
    final states included, enter the loss) against central differences, in float64."""
    states = [] if initial_state is None else list(initial_state)
    kwargs = {} if mask is None else {"mask": mask}

    def outputs():
        return _leaves(layer(x, initial_state=states or None, **kwargs))

    projections = [gradcheck.projection(np.shape(unwrap(o)), seed=i) for i, o in enumerate(outputs())]
    weights = layer.trainable_weights
    with lamina.GradientTape() as tape:
        tape.watch([x] + states)
        loss = None
        for o, p in zip(outputs(), projections):
            term = lamina.ops.sum(lamina.ops.multiply(o, p))
            loss = term if loss is None else lamina.ops.add(loss, term)
    grads = tape.gradient(loss, [x] + states + weights)

    def projected():
        return float(sum(np.sum(np.asarray(unwrap(o)) * p) for o, p in zip(outputs(), projections)))

    targets = [("input", x)] + [(f"state {i}", s) for i, s in enumerate(states)] + \
        [(f"weight '{w.name}'", unwrap(w)) for w in weights]
    gradcheck.assert_matches_finite_differences(projected, targets, grads, rtol=rtol, atol=atol)
    return grads


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("flags", [dict(return_sequences=True, return_state=True),
                                   dict(return_state=True, go_backwards=True),
                                   dict(return_sequences=True, go_backwards=True, zero_output_for_mask=True)])
def test_bptt_gradients_match_central_differences(kind, flags):
    """Input, weights and initial states, with a mask that has gaps and a fully masked start."""
    layer = _float64_layer(kind, **flags)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 6, 3))
    mask = np.ones((3, 6), bool)
    mask[0, 4:] = False
    mask[1, 2] = False
    mask[2, :2] = False
    states = [rng.normal(size=(3, 4)) for _ in range(2 if kind == "lstm" else 1)]
    _check_call_gradients(layer, x, states, mask)
    _check_call_gradients(layer, x)


@pytest.mark.oracle
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("activations", [("relu", "linear"), ("linear", "tanh")])
def test_other_activations_run_fused_and_match(keras, kind, activations):
    """The fused loop's other activations (relu, linear) in either role: Keras's outputs, and BPTT against
    central differences."""
    act, rec = activations
    extra = {} if kind == "simple_rnn" else {"recurrent_activation": rec}
    x = _sequence(3, 5, 3, seed=8, masked=True)
    klayer, llayer = _pair(keras, kind, activation=act, return_sequences=True, **extra)
    klayer(x)
    llayer(x)
    assert llayer.cell._can_fuse(True)
    _copy_weights(keras, klayer, llayer)
    for k, v in zip(*_run_both(keras, klayer, llayer, x, True)):
        np.testing.assert_allclose(np.asarray(v), _np(keras, k), rtol=RTOL, atol=ATOL)
    layer = _float64_layer(kind, activation=act, return_state=True, **extra)
    _check_call_gradients(layer, np.random.default_rng(3).normal(size=(2, 4, 3)))


@pytest.mark.parametrize("kind", list(KINDS))
def test_layer_gradient_sweep(kind):
    """The shared sweep: float64 central differences, float32 twin agreeing, empty batch."""
    layer = _float64_layer(kind, return_sequences=True)
    check_layer_gradients(layer, np.random.default_rng(2).normal(size=(2, 5, 3)))


def _force_stepwise(layer, monkeypatch):
    monkeypatch.setattr(layer.cell, "_can_fuse", lambda training: False)


@pytest.mark.parametrize("kind", list(KINDS))
def test_fused_and_stepwise_paths_agree(kind, monkeypatch):
    """The fused loop (one tape node) and the cell's own call step by step give the same outputs and
    gradients, with masks, initial states and seeded input dropout in training."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 5, 3))
    mask = rng.random((3, 5)) > 0.3
    states = [rng.normal(size=(3, 4)) for _ in range(2 if kind == "lstm" else 1)]
    results = []
    for stepwise in (False, True):
        layer = _float64_layer(kind, return_sequences=True, return_state=True, dropout=0.3, seed=7)
        if stepwise:
            _force_stepwise(layer, monkeypatch)
        with lamina.GradientTape() as tape:
            tape.watch([x] + states)
            outs = layer(x, initial_state=states, mask=mask, training=True)
            loss = sum(lamina.ops.sum(lamina.ops.multiply(o, o)) for o in outs)
        grads = tape.gradient(loss, [x] + states + layer.trainable_weights)
        results.append(([np.asarray(unwrap(o)) for o in outs], grads))
    for a, b in zip(results[0][0] + results[0][1], results[1][0] + results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_lstm_gates_equal_numpy_path(dtype, monkeypatch):
    """With numba (the fast extra) the LSTM's gate arithmetic runs compiled; outputs and gradients equal the
    NumPy path's to rounding, masks and initial states included."""
    pytest.importorskip("numba")
    from lamina.layers.lstm import CompiledLSTMKernel, TanhLSTMKernel

    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 6, 3)).astype(dtype)
    mask = rng.random((3, 6)) > 0.3
    states = [rng.normal(size=(3, 4)).astype(dtype) for _ in range(2)]
    results = []
    for accelerate, expected in (("1", CompiledLSTMKernel), ("0", TanhLSTMKernel)):
        monkeypatch.setenv("LAMINA_ACCELERATE", accelerate)
        layer = lamina.layers.LSTM(4, return_sequences=True, return_state=True, dtype=dtype)
        layer(x)
        layer.set_weights([np.random.default_rng(1).normal(scale=0.5, size=w.shape) for w in layer.weights])
        assert type(layer.cell._kernel(*layer.cell._fused_weights()[1::2], 6, 3, np.dtype(dtype))) is expected
        with lamina.GradientTape() as tape:
            tape.watch([x] + states)
            outs = layer(x, initial_state=states, mask=mask)
            loss = sum(lamina.ops.sum(lamina.ops.multiply(o, o)) for o in outs)
        grads = tape.gradient(loss, [x] + states + layer.trainable_weights)
        results.append([np.asarray(unwrap(o)) for o in outs] + grads)
    tol = 1e-5 if dtype == "float32" else 1e-12
    for a, b in zip(*results):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["simple_rnn", "lstm", "gru", "gru_reset_before"])
def test_recurrent_dropout_trains_stepwise(kind):
    """Recurrent dropout (per-gate masks on the state) runs the cell step by step: gradients still match
    central differences once the masks are fixed by the seed."""
    layer = _float64_layer(kind, recurrent_dropout=0.4, dropout=0.2, seed=3)
    assert not layer.cell._can_fuse(True) and layer.cell._can_fuse(False)
    x = np.random.default_rng(0).normal(size=(2, 4, 3))
    out = []
    for _ in range(2):  # the same seed state gives the same masks: reset the generator between calls
        layer.cell.seed_generator.state.assign(np.array([3, 0], np.uint32))
        out.append(np.asarray(layer(x, training=True)))
    np.testing.assert_array_equal(out[0], out[1])
    assert not np.allclose(out[0], layer(x, training=False))


@pytest.mark.oracle
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_one_training_step_equals_keras(keras, kind, optimizer):
    x = _sequence(8, 7, 3, seed=9, masked=True)
    y = np.random.default_rng(9).normal(size=(8, 1)).astype("float32")
    models = []
    for K in (keras, lamina):
        layer_name, base = KINDS[kind]
        models.append(K.Sequential([K.Input((7, 3)), K.layers.Masking(), getattr(K.layers, layer_name)(6, **base),
                                    K.layers.Dense(1)]))
    km, lm = models
    lm.set_weights([_np(keras, w) for w in km.weights])
    for m in models:
        m.compile(optimizer=optimizer, loss="mse")
    kl = float(km.train_on_batch(x, y))
    ll = float(lm.train_on_batch(x, y))
    np.testing.assert_allclose(ll, kl, rtol=1e-4)
    for kw, lw in zip(km.weights, lm.weights):
        np.testing.assert_allclose(lw.numpy(), _np(keras, kw), rtol=1e-4, atol=1e-6)


@pytest.mark.oracle
@pytest.mark.parametrize("kind", list(KINDS))
def test_config_round_trips_and_matches_keras(keras, kind):
    kwargs = dict(return_sequences=True, go_backwards=True, dropout=0.25, recurrent_dropout=0.125,
                  kernel_regularizer="l2", activation="relu", use_bias=True)
    klayer, llayer = _pair(keras, kind, **kwargs)
    lconfig = json.loads(json.dumps(llayer.get_config()))
    kconfig = klayer.get_config()
    assert set(lconfig) >= set(kconfig) - {"seed"} and set(lconfig) - set(kconfig) <= {"seed"}
    for key in ("units", "activation", "recurrent_activation", "return_sequences", "go_backwards", "dropout",
                "recurrent_dropout", "reset_after", "unit_forget_bias", "zero_output_for_mask", "stateful"):
        if key in kconfig:
            assert lconfig[key] == kconfig[key], key
    clone = type(llayer).from_config(lconfig)
    assert json.loads(json.dumps(clone.get_config())) == lconfig
    kclone = type(klayer).from_config(lconfig)  # Keras reads lamina's config
    assert kclone.units == 5 and kclone.go_backwards
    cell = type(llayer.cell).from_config(json.loads(json.dumps(llayer.cell.get_config())))
    assert cell.get_config() == llayer.cell.get_config()


@pytest.mark.oracle
def test_keras_files_both_ways(keras, tmp_path):
    def build(K):
        L = K.layers
        inp = K.Input((9, 3))
        h = L.Masking()(inp)
        h = L.LSTM(6, return_sequences=True)(h)
        h = L.GRU(5, return_sequences=True, reset_after=False)(h)
        h = L.GRU(4, return_sequences=True, go_backwards=True)(h)
        h = L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode="sum")(h)
        h = L.SimpleRNN(3)(h)
        return K.Model(inp, L.Dense(2)(h))

    x = _sequence(5, 9, 3, seed=11, masked=True)
    keras.utils.set_random_seed(0)
    km = build(keras)
    km.save(tmp_path / "k.keras")
    lm = lamina.saving.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(lm.predict(x, verbose=0), _np(keras, km(x)), rtol=RTOL, atol=ATOL)

    lm2 = build(lamina)
    lm2.save(tmp_path / "l.keras")
    km2 = keras.saving.load_model(tmp_path / "l.keras")
    np.testing.assert_allclose(_np(keras, km2(x)), lm2.predict(x, verbose=0), rtol=RTOL, atol=ATOL)
    assert [w.shape for w in lm2.weights] == [tuple(w.shape) for w in km2.weights]


@pytest.mark.oracle
@pytest.mark.parametrize("inner", ["LSTM", "GRU", "SimpleRNN"])
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul", None])
def test_bidirectional_matches_keras(keras, inner, merge_mode):
    x = _sequence(3, 6, 4, seed=6, masked=True)
    for return_sequences, return_state in [(False, False), (True, False), (True, True), (False, True)]:
        klayer, llayer = (K.layers.Bidirectional(getattr(K.layers, inner)(3, return_sequences=return_sequences,
                                                                          return_state=return_state),
                                                 merge_mode=merge_mode) for K in (keras, lamina))
        klayer(x)
        llayer(x)
        _copy_weights(keras, klayer, llayer)
        assert [w.shape for w in llayer.weights] == [tuple(w.shape) for w in klayer.weights]
        shape = llayer.compute_output_shape((None, 6, 4))
        assert json.dumps(shape) == json.dumps(klayer.compute_output_shape((None, 6, 4)))
        for masked in (False, True):
            kout, lout = _run_both(keras, klayer, llayer, x, masked)
            kout, lout = keras.tree.flatten(kout), lamina.tree.flatten(lout)
            assert len(kout) == len(lout)
            for k, v in zip(kout, lout):
                np.testing.assert_allclose(np.asarray(v), _np(keras, k), rtol=RTOL, atol=ATOL)


def test_bidirectional_gradients_and_config():
    rng = np.random.default_rng(3)
    inner = lamina.layers.GRU(3, return_sequences=True, return_state=True, dtype="float64")
    layer = lamina.layers.Bidirectional(inner, merge_mode="concat", dtype="float64")
    x = rng.normal(size=(2, 5, 3))
    layer(x)
    layer.set_weights([rng.normal(scale=0.5, size=w.shape) for w in layer.weights])
    for w in layer.weights:
        w._rebind(np.empty(w.shape))
    mask = np.array([[True, True, True, False, False], [False, True, True, True, True]])
    _check_call_gradients(layer, x, [rng.normal(size=(2, 3)), rng.normal(size=(2, 3))], mask)
    config = json.loads(json.dumps(layer.get_config()))
    clone = lamina.layers.Bidirectional.from_config(config)
    assert clone.forward_layer.name == "forward_" + inner.name and clone.backward_layer.go_backwards
    assert json.loads(json.dumps(clone.get_config())) == config
    with pytest.raises(ValueError, match="merge mode"):
        lamina.layers.Bidirectional(lamina.layers.LSTM(2), merge_mode="max")


@pytest.mark.oracle
def test_embedding_mask_zero_reaches_recurrent_layers(keras):
    """Padding id 0 masked by Embedding(mask_zero=True) flows through LSTM (sequences), Bidirectional and GRU."""
    if not hasattr(lamina.layers, "Embedding"):
        pytest.skip("Embedding is another issue's layer")
    tokens = np.array([[3, 5, 2, 0, 0], [0, 0, 4, 1, 7], [6, 0, 2, 9, 1]])
    models = []
    for K in (keras, lamina):
        inp = K.Input((5,), dtype="int32")
        h = K.layers.Embedding(10, 4, mask_zero=True)(inp)
        h = K.layers.LSTM(3, return_sequences=True)(h)
        h = K.layers.Bidirectional(K.layers.GRU(3, return_sequences=True))(h)
        models.append(K.Model(inp, K.layers.SimpleRNN(2)(h)))
    models[1].set_weights([_np(keras, w) for w in models[0].weights])
    np.testing.assert_allclose(models[1].predict(tokens, verbose=0), _np(keras, models[0](tokens)), rtol=RTOL,
                               atol=ATOL)


class MinimalCell(lamina.layers.Layer):
    """A user cell (Keras's docstring example, two states): state_size, output_size, call."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = [units, units]
        self.output_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, self.units), name="recurrent_kernel")

    def call(self, inputs, states):
        h = lamina.ops.tanh(lamina.ops.add(lamina.ops.matmul(inputs, self.kernel),
                                           lamina.ops.matmul(states[0], self.recurrent_kernel)))
        second = lamina.ops.add(states[1], h)
        return lamina.ops.multiply(h, 0.5), [h, second]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def _keras_minimal_cell(keras):
    class KMinimalCell(keras.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units, self.state_size, self.output_size = units, [units, units], units

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
            self.recurrent_kernel = self.add_weight(shape=(self.units, self.units), name="recurrent_kernel")

        def call(self, inputs, states):
            ops = keras.ops
            h = ops.tanh(ops.matmul(inputs, self.kernel) + ops.matmul(states[0], self.recurrent_kernel))
            return h * 0.5, [h, states[1] + h]

    return KMinimalCell


@pytest.mark.oracle
@pytest.mark.parametrize("masked", [False, True])
def test_user_cell_and_stacked_cells_match_keras(keras, masked):
    x = _sequence(3, 7, 4, seed=2, masked=masked)
    KCell = _keras_minimal_cell(keras)
    for flags in (dict(return_sequences=True, return_state=True), dict(go_backwards=True)):
        klayer = keras.layers.RNN(KCell(5), **flags)
        llayer = lamina.layers.RNN(MinimalCell(5), **flags)
        klayer(x)
        llayer(x)
        _copy_weights(keras, klayer, llayer)
        for k, v in zip(*_run_both(keras, klayer, llayer, x, masked)):
            np.testing.assert_allclose(np.asarray(v), _np(keras, k), rtol=RTOL, atol=ATOL)
    klayer = keras.layers.RNN([keras.layers.LSTMCell(4), keras.layers.GRUCell(3), KCell(2)], return_sequences=True)
    llayer = lamina.layers.RNN([lamina.layers.LSTMCell(4), lamina.layers.GRUCell(3), MinimalCell(2)],
                               return_sequences=True)
    klayer(x)
    llayer(x)
    _copy_weights(keras, klayer, llayer)
    kout, lout = _run_both(keras, klayer, llayer, x, masked)
    np.testing.assert_allclose(np.asarray(lout[0]), _np(keras, kout[0]), rtol=RTOL, atol=ATOL)


def test_user_cell_gradients_and_config():
    layer = lamina.layers.RNN(MinimalCell(3, dtype="float64"), return_sequences=True, return_state=True,
                              dtype="float64")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 4))
    layer(x)
    mask = np.array([[True, True, False, True, True], [False, True, True, True, False]])
    _check_call_gradients(layer, x, [rng.normal(size=(2, 3)), rng.normal(size=(2, 3))], mask)
    config = json.loads(json.dumps(lamina.layers.serialize(layer)))
    with lamina.saving.custom_object_scope({"MinimalCell": MinimalCell}):
        clone = lamina.layers.deserialize(config)
    assert isinstance(clone.cell, MinimalCell) and clone.return_state


def test_user_cell_initial_state_comes_from_the_cell():
    """A cell's get_initial_state(batch_size) starts the sequence when no initial_state is given."""

    class OnesStartCell(MinimalCell):
        def get_initial_state(self, batch_size=None):
            return [np.ones((batch_size, self.units), "float32"), np.full((batch_size, self.units), 2, "float32")]

    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype("float32")
    layer = lamina.layers.RNN(OnesStartCell(3), return_state=True)
    out = layer(x)
    explicit = layer(x, initial_state=[np.ones((2, 3), "float32"), np.full((2, 3), 2, "float32")])
    zeros = layer(x, initial_state=[np.zeros((2, 3), "float32")] * 2)
    for a, b in zip(out, explicit):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(out[2], zeros[2])


def test_rnn_argument_errors():
    with pytest.raises(ValueError, match="state_size"):
        lamina.layers.RNN(lamina.layers.Dense(3))
    with pytest.raises(ValueError, match="units"):
        lamina.layers.LSTM(0)
    with pytest.raises(ValueError, match="mask"):
        lamina.layers.GRU(2)(np.zeros((2, 3, 1), "float32"), mask=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"expects 2 initial state\(s\)"):
        lamina.layers.LSTM(2)(np.zeros((2, 3, 1), "float32"), initial_state=[np.zeros((2, 2), "float32")])
    with pytest.raises(ValueError, match=r"shapes \[\(2, 2\)\]"):
        lamina.layers.GRU(2)(np.zeros((2, 3, 1), "float32"), initial_state=[np.zeros((2, 3), "float32")])


def test_symbolic_call_with_initial_state_trains():
    """A seq2seq graph: the encoder's final states start the decoder (initial_state as a keyword)."""
    enc_in, dec_in = lamina.Input((6, 3)), lamina.Input((4, 2))
    _, h, c = lamina.layers.LSTM(5, return_state=True)(enc_in)
    out = lamina.layers.LSTM(5, return_sequences=True)(dec_in, initial_state=[h, c])
    model = lamina.Model([enc_in, dec_in], lamina.layers.Dense(1)(out))
    assert model.output_shape == (None, 4, 1)
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(8, 6, 3)).astype("float32"), rng.normal(size=(8, 4, 2)).astype("float32")]
    y = rng.normal(size=(8, 4, 1)).astype("float32")
    first = model.train_on_batch(xs, y)
    for _ in range(5):
        last = model.train_on_batch(xs, y)
    assert last < first


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_sequence_of_10000_steps_trains(kind):
    """BPTT is a loop, not recursion: 10,000 steps train under a recursion limit far below that."""
    name, base = KINDS[kind]
    model = lamina.Sequential([lamina.Input((10_000, 2)), getattr(lamina.layers, name)(4, **base),
                               lamina.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 10_000, 2)).astype("float32")
    y = np.ones((2, 1), "float32")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(500)
    try:
        losses = [model.train_on_batch(x, y) for _ in range(3)]
    finally:
        sys.setrecursionlimit(limit)
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert all(np.all(np.isfinite(w.numpy())) for w in model.weights)


def test_user_cell_long_sequence_is_iterative():
    layer = lamina.layers.RNN(MinimalCell(2))
    x = np.random.default_rng(0).normal(size=(1, 3000, 2)).astype("float32")
    layer(x)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(500)
    try:
        with lamina.GradientTape() as tape:
            loss = lamina.ops.sum(layer(x))
        grads = tape.gradient(loss, layer.trainable_weights)
    finally:
        sys.setrecursionlimit(limit)
    assert all(g is not None and np.all(np.isfinite(g)) for g in grads)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tanh_lstm_kernel_equals_generic_kernel(dtype):
    """The default LSTM's loop activates all four gates with one tanh (sigmoid(z) = tanh(z / 2) / 2 + 1 / 2, the
    halving folded into the weights): gates, outputs, states and BPTT gradients equal the generic kernel's
    (separate sigmoid and tanh), masked steps and saturated gates included."""
    from lamina.layers.lstm import LSTMKernel, TanhLSTMKernel
    from lamina.layers.rnn_scan import activation_pair, scan_backward, scan_forward

    rng = np.random.default_rng(11)
    steps, batch, units = 5, 3, 4
    dt = np.dtype(dtype)
    rk = rng.normal(scale=0.5, size=(units, 4 * units)).astype(dt)
    xp = (rng.normal(size=(steps, batch, 4 * units)) * 4).astype(dt)
    s0 = [rng.normal(size=(batch, units)).astype(dt) for _ in range(2)]
    mask = rng.random((steps, batch, 1)) > 0.3
    d_out = rng.normal(size=(steps, batch, units)).astype(dt)
    pairs = (activation_pair(lamina.activations.tanh), activation_pair(lamina.activations.sigmoid))
    results = []
    for cls in (LSTMKernel, TanhLSTMKernel):
        kernel = cls(rk, steps, batch, dt, *pairs)
        outs, last, final = scan_forward(kernel, xp.copy(), s0, mask, True, False)
        dxp, d_s0 = scan_backward(kernel, xp.shape, d_out, None, [None, s0[1]], mask, False)
        results.append([kernel.gates, outs, last, *final, dxp, *d_s0, kernel.recurrent_gradients(dxp)[0]])
    tol = 2e-6 if dtype == "float32" else 1e-13
    for a, b in zip(*results):
        assert a.dtype == dt
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_gru_gates_equal_numpy_path(dtype, monkeypatch):
    """With numba the default GRU's backward gate arithmetic runs compiled; outputs and gradients (inputs,
    initial state, weights) equal the NumPy path's to rounding, masked steps included."""
    pytest.importorskip("numba")
    from lamina.layers.gru import CompiledGRUKernel, GRUKernel

    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, 6, 3)).astype(dtype)
    mask = rng.random((3, 6)) > 0.3
    state = rng.normal(size=(3, 4)).astype(dtype)
    results = []
    for accelerate, expected in (("1", CompiledGRUKernel), ("0", GRUKernel)):
        monkeypatch.setenv("LAMINA_ACCELERATE", accelerate)
        layer = lamina.layers.GRU(4, return_sequences=True, return_state=True, dtype=dtype)
        layer(x)
        layer.set_weights([np.random.default_rng(1).normal(scale=0.5, size=w.shape) for w in layer.weights])
        assert type(layer.cell._kernel(*layer.cell._fused_weights()[1::2], 6, 3, np.dtype(dtype))) is expected
        with lamina.GradientTape() as tape:
            tape.watch([x, state])
            outs = layer(x, initial_state=[state], mask=mask)
            loss = sum(lamina.ops.sum(lamina.ops.multiply(o, o)) for o in outs)
        grads = tape.gradient(loss, [x, state] + layer.trainable_weights)
        results.append([np.asarray(unwrap(o)) for o in outs] + grads)
    tol = 1e-5 if dtype == "float32" else 1e-12
    for a, b in zip(*results):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("flags", [dict(return_sequences=True, return_state=True), dict(go_backwards=True),
                                   dict(return_sequences=True, use_bias=False)])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_compiled_whole_sequence_equals_numpy_path(kind, dtype, flags, monkeypatch):
    """Without a mask the compiled LSTM and GRU run every step in one compiled call (their matmuls NumPy's own
    BLAS): outputs, final states and gradients (inputs, initial states, weights) equal the NumPy path's, with a
    tape (T step buffers) and without one (inference: two buffers used in turn)."""
    pytest.importorskip("numba")
    from lamina.layers import rnn_accel
    from lamina.layers.gru import CompiledGRUKernel
    from lamina.layers.lstm import CompiledLSTMKernel

    if rnn_accel.blas_gemm(dtype) is None:
        pytest.skip("this NumPy build's BLAS is not reachable from compiled code")
    compiled_kernel = {"LSTM": CompiledLSTMKernel, "GRU": CompiledGRUKernel}[kind]
    calls = []
    # the LSTM's loop projects its inputs itself, and trains in its own loops (``lstm_training``)
    from lamina.layers.lstm_training import LSTMSequenceTrainer

    spied = [(compiled_kernel, "forward_sequence"), (compiled_kernel, "infer_from_inputs")] + \
        ([(LSTMSequenceTrainer, "forward")] if kind == "LSTM" else [])
    for owner, name in spied:
        whole = getattr(owner, name, None)
        if whole is not None:
            monkeypatch.setattr(owner, name, lambda self, *a, w=whole: calls.append(1) or w(self, *a))
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3, 9, 3)).astype(dtype)
    states = [rng.normal(size=(3, 4)).astype(dtype) for _ in range(2 if kind == "LSTM" else 1)]
    results = []
    for accelerate in ("1", "0"):
        monkeypatch.setenv("LAMINA_ACCELERATE", accelerate)
        layer = getattr(lamina.layers, kind)(4, dtype=dtype, **flags)
        layer(x)
        layer.set_weights([np.random.default_rng(1).normal(scale=0.7, size=w.shape) for w in layer.weights])
        inferred = [np.asarray(unwrap(o)) for o in _leaves(layer(x, initial_state=states))]
        with lamina.GradientTape() as tape:
            tape.watch([x] + states)
            outs = _leaves(layer(x, initial_state=states))
            loss = sum(lamina.ops.sum(lamina.ops.multiply(o, o)) for o in outs)
        grads = tape.gradient(loss, [x] + states + layer.trainable_weights)
        results.append(inferred + [np.asarray(unwrap(o)) for o in outs] + grads)
    assert len(calls) == 3  # the compiled run's three calls (build, inference, training) took the whole-sequence loop
    tol = 1e-5 if dtype == "float32" else 1e-12
    for a, b in zip(*results):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_compiled_lstm_float32_gates_saturate_and_keep_nan(monkeypatch):
    """The compiled float32 loop's tanh is a rational approximation clipped at |x| = 7.9: gates driven far into
    saturation equal the float64 NumPy path's to 1e-6, and a NaN input stays NaN instead of being clipped."""
    pytest.importorskip("numba")
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    from lamina.activations import sigmoid, tanh
    from lamina.layers import rnn_accel
    from lamina.layers.lstm import CompiledLSTMKernel, LSTMKernel
    from lamina.layers.rnn_scan import activation_pair, scan_forward

    steps, batch, units = 4, 3, 5
    rng = np.random.default_rng(12)
    rk = rng.normal(scale=0.5, size=(units, 4 * units))
    xp = rng.normal(scale=30.0, size=(steps, batch, 4 * units))  # most pre-activations far beyond +-7.9
    xp[2, 1, 3] = np.nan
    s0 = [np.zeros((batch, units))] * 2
    pairs = (activation_pair(tanh), activation_pair(sigmoid))
    exact = LSTMKernel(rk, steps, batch, np.dtype("float64"), *pairs)
    want, _, _ = scan_forward(exact, xp.copy(), s0, None, True, False)
    f32 = np.dtype("float32")
    fast = CompiledLSTMKernel(rk.astype(f32), steps, batch, f32, *pairs, rnn_accel.kernels(f32))
    got, _, _ = scan_forward(fast, xp.astype(f32), [s.astype(f32) for s in s0], None, True, False)
    nan = np.isnan(want)
    assert nan.any() and np.array_equal(np.isnan(got), nan)
    np.testing.assert_allclose(got[~nan], want[~nan], rtol=0, atol=1e-6)


@pytest.mark.oracle
@pytest.mark.parametrize("kind", ["simple_rnn", "lstm", "gru"])
def test_cells_seed_generator_is_a_variable_not_a_weight(keras, kind):
    """As in Keras, every built-in cell owns a SeedGenerator for its dropout masks, seeded or not: its state
    counts among the layer's (non-trainable) variables, never among its weights, and the masks come from it,
    so a seeded layer draws the same masks after lamina.utils.set_random_seed whatever ran before."""
    klayer, llayer = _pair(keras, kind, units=3, dropout=0.5, recurrent_dropout=0.5)
    for layer in (klayer, llayer):
        layer.build((None, 2, 4))
    for attr in ("weights", "non_trainable_weights", "variables", "non_trainable_variables"):
        assert len(getattr(llayer, attr)) == len(getattr(klayer, attr)), attr
    assert llayer.cell.seed_generator.state in llayer.non_trainable_variables
    x = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")
    runs = []
    for noise in (0, 3):
        lamina.utils.set_random_seed(1)
        np.asarray(lamina.random.uniform((noise,)))  # unrelated draws in between
        layer = getattr(lamina.layers, KINDS[kind][0])(3, **KINDS[kind][1], dropout=0.5, seed=5)
        layer.build((None, 5, 4))
        layer.set_weights([np.full(w.shape, 0.3, dtype="float32") for w in layer.weights])
        runs.append(np.asarray(unwrap(layer(x, training=True))))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_user_cell_seed_generator_is_tracked():
    """A SeedGenerator set as an attribute of a user's cell is tracked as Keras tracks it: its state is one of
    the cell's and the RNN's non-trainable variables."""

    class Cell(lamina.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.state_size = 2
            self.seed_generator = lamina.random.SeedGenerator(3)

        def call(self, inputs, states):
            return states[0], states

    cell = Cell()
    assert cell.non_trainable_variables == [cell.seed_generator.state] and cell.weights == []
    layer = lamina.layers.RNN(cell)
    assert layer.non_trainable_variables == [cell.seed_generator.state] and layer.non_trainable_weights == []


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matmul_bias_equals_numpy(dtype, monkeypatch):
    """The recurrent layers' input projection ``x @ W + b`` as one BLAS call equals NumPy's matmul and add to
    rounding; it declines (None) where it does not apply: strided input, mixed dtypes, LAMINA_ACCELERATE=0."""
    from lamina.layers import rnn_accel

    if rnn_accel.blas_gemm(dtype) is None:
        pytest.skip("this NumPy build's BLAS is not reachable")
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    rng = np.random.default_rng(3)
    x, w, b = (rng.normal(size=s).astype(dtype) for s in ((37, 5), (5, 12), (12,)))
    tol = 1e-5 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(rnn_accel.matmul_bias(x, w, b), x @ w + b, rtol=tol, atol=tol)
    assert rnn_accel.matmul_bias(x, w, b).dtype == np.dtype(dtype)
    assert rnn_accel.matmul_bias(np.asfortranarray(x), w, b) is None
    assert rnn_accel.matmul_bias(x, w.astype("float16"), b) is None
    monkeypatch.setenv("LAMINA_ACCELERATE", "0")
    assert rnn_accel.matmul_bias(x, w, b) is None
