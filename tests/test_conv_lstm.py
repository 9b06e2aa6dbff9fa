"""ConvLSTM1D/2D/3D against real Keras (torch backend) on identical weights, and their gradients against
central differences in float64."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lamina
from lamina.layers.conv_lstm import ConvLSTM, ConvLSTMCell
from tests.helpers.conv_oracle import _one_torch_thread
from tests.helpers.keras_files import read_members
from tests.helpers.layer_harness import check_layer_gradients, keras_forward_and_grads, lamina_forward_and_grads

RTOL, ATOL = 1e-4, 1e-5

# (rank, layer arguments, spatial size): padding, strides and dilation each appear at least once
CASES = {
    1: ({"filters": 3, "kernel_size": 3, "padding": "same"}, (6,)),
    2: ({"filters": 2, "kernel_size": (3, 2), "padding": "valid", "strides": (2, 1)}, (7, 5)),
    3: ({"filters": 2, "kernel_size": 2, "padding": "same", "dilation_rate": (1, 2, 1)}, (3, 4, 3)),
}
# each flag on and off, each pair of flags on together once (Keras is slow here: ~1 s per 3D layer call)
FLAGS = [dict(return_sequences=s, return_state=r, go_backwards=b)
         for s, r, b in ((False, False, False), (True, True, False), (True, False, True), (False, True, True))]


def _np(keras, x):
    return keras.ops.convert_to_numpy(x)


def _leaves(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _sequence(rank, data_format, steps, batch=2, channels=3, seed=0):
    spatial = CASES[rank][1]
    shape = (batch, steps, *spatial, channels) if data_format == "channels_last" else \
        (batch, steps, channels, *spatial)
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _pair(keras, rank, data_format="channels_last", **kwargs):
    args = {**CASES[rank][0], "data_format": data_format, **kwargs}
    name = f"ConvLSTM{rank}D"
    return getattr(keras.layers, name)(**args), getattr(lamina.layers, name)(**args)


def _same_weights(keras, klayer, llayer, x, seed=3):
    """Build both on ``x``, then give both the same spread of weights (the default zero bias hides mistakes)."""
    klayer(x)
    llayer(x)
    assert [w.name for w in llayer.weights] == [w.name for w in klayer.weights] == \
        ["kernel", "recurrent_kernel", "bias"][:len(llayer.weights)]
    assert [tuple(w.shape) for w in llayer.weights] == [tuple(w.shape) for w in klayer.weights]
    rng = np.random.default_rng(seed)
    llayer.set_weights([(0.4 * rng.standard_normal(w.shape)).astype("float32") for w in llayer.weights])
    klayer.set_weights(llayer.get_weights())


@pytest.mark.oracle
@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("steps", [1, 7])
def test_forward_matches_keras(keras, rank, data_format, steps):
    x = _sequence(rank, data_format, steps)
    for flags in FLAGS:
        klayer, llayer = _pair(keras, rank, data_format, **flags)
        _same_weights(keras, klayer, llayer, x)
        with _one_torch_thread():
            kout = _leaves(klayer(x))
        lout = _leaves(llayer(x))
        assert len(lout) == len(kout)
        for v, k in zip(lout, kout):
            assert np.asarray(v).dtype == np.float32
            np.testing.assert_allclose(np.asarray(v), _np(keras, k), rtol=RTOL, atol=ATOL, err_msg=str(flags))
        shapes = llayer.compute_output_shape(x.shape)
        assert [tuple(s) for s in (shapes if flags["return_state"] else [shapes])] == [v.shape for v in lout]


@pytest.mark.oracle
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_masked_sequences_match_keras(keras, return_sequences, go_backwards):
    x = _sequence(2, "channels_last", 6, batch=3)
    mask = np.ones((3, 6), dtype=bool)
    mask[0, -2:] = False  # right padding
    mask[1, :2] = False  # left padding
    mask[2, 3] = False
    klayer, llayer = _pair(keras, 2, return_sequences=return_sequences, go_backwards=go_backwards,
                           return_state=True)
    _same_weights(keras, klayer, llayer, x)
    with _one_torch_thread():
        kout = klayer(x, mask=mask)
    lout = llayer(x, mask=mask)
    for v, k in zip(lout, kout):
        np.testing.assert_allclose(np.asarray(v), _np(keras, k), rtol=RTOL, atol=ATOL)
    if return_sequences:
        np.testing.assert_array_equal(lamina.backend.get_keras_mask(lout[0]), mask)


@pytest.mark.oracle
def test_initial_state_and_stateful_match_keras(keras):
    x = _sequence(1, "channels_last", 4)
    klayer, llayer = _pair(keras, 1, return_state=True)
    _same_weights(keras, klayer, llayer, x)
    rng = np.random.default_rng(9)
    h0, c0 = (rng.normal(size=(2, 6, 3)).astype("float32") for _ in range(2))
    with _one_torch_thread():
        kout = klayer(x, initial_state=[h0, c0])
    for v, k in zip(llayer(x, initial_state=[h0, c0]), kout):
        np.testing.assert_allclose(np.asarray(v), _np(keras, k), rtol=RTOL, atol=ATOL)

    kstate, lstate = _pair(keras, 1, stateful=True)
    _same_weights(keras, kstate, lstate, x)
    kstate.reset_state()  # building called both with their own initial weights
    lstate.reset_state()
    for _ in range(2):  # the second call starts from the first's final states
        with _one_torch_thread():
            expected = _np(keras, kstate(x))
        np.testing.assert_allclose(lstate(x), expected, rtol=RTOL, atol=ATOL)
    lstate.reset_state()
    kstate.reset_state()
    with _one_torch_thread():
        expected = _np(keras, kstate(x))
    np.testing.assert_allclose(lstate(x), expected, rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="batch size of the input sequences must be the same"):
        lstate(x[:1])


@pytest.mark.oracle
@pytest.mark.parametrize("rank, data_format", [(1, "channels_last"), (2, "channels_first"), (3, "channels_last")])
def test_gradients_match_keras(keras, rank, data_format):
    x = _sequence(rank, data_format, 5)
    klayer, llayer = _pair(keras, rank, data_format, return_sequences=True, go_backwards=rank == 2)
    _same_weights(keras, klayer, llayer, x)
    proj = np.random.default_rng(4).normal(size=llayer.compute_output_shape(x.shape)).astype("float32")
    with _one_torch_thread():
        ky, kdx, kdw = keras_forward_and_grads(klayer, x, proj)
    y, dx, dw = lamina_forward_and_grads(llayer, x, proj)
    np.testing.assert_allclose(y, ky, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dx, kdx, rtol=1e-4, atol=1e-4)
    for w, g, kg in zip(llayer.trainable_weights, dw, kdw, strict=True):
        np.testing.assert_allclose(g, kg, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(kg).max())), err_msg=w.name)


@pytest.mark.parametrize("rank, kwargs", [
    (1, {"return_sequences": True, "strides": 2, "kernel_size": 2}),
    (2, {"data_format": "channels_first", "go_backwards": True, "padding": "same"}),
    (3, {"use_bias": False, "activation": "relu", "recurrent_activation": "hard_sigmoid"}),
])
def test_gradients_match_central_differences(rank, kwargs):
    args = {**CASES[rank][0], **kwargs, "dtype": "float64"}
    layer = getattr(lamina.layers, f"ConvLSTM{rank}D")(**args)
    x = _sequence(rank, args.get("data_format", "channels_last"), 3, seed=5).astype(np.float64)
    layer(x)
    rng = np.random.default_rng(6)
    layer.set_weights([0.5 * rng.standard_normal(w.shape) for w in layer.weights])
    check_layer_gradients(layer, x, rtol=1e-5, atol=1e-7)


def test_gradients_with_dropout_masks_match_central_differences(monkeypatch):
    layer = lamina.layers.ConvLSTM1D(2, 3, padding="same", dropout=0.3, recurrent_dropout=0.4, dtype="float64",
                                     return_sequences=True)
    x = _sequence(1, "channels_last", 3, seed=7).astype(np.float64)
    layer(x)
    rng = np.random.default_rng(8)
    masks = [np.where(rng.random(x[:, 0].shape) < 0.3, 0.0, 1 / 0.7) for _ in range(4)]
    recurrent = [np.where(rng.random((2, 6, 2)) < 0.4, 0.0, 1 / 0.6) for _ in range(4)]
    monkeypatch.setattr(layer.cell, "get_dropout_mask", lambda _: masks)
    monkeypatch.setattr(layer.cell, "get_recurrent_dropout_mask", lambda _: recurrent)
    check_layer_gradients(layer, x, training=True, rtol=1e-5, atol=1e-7, float32=False, empty_batch=False)
    # the masks matter: without them (inference) the output differs
    assert not np.allclose(layer(x, training=True), layer(x, training=False))


def test_dropout_only_while_training():
    x = _sequence(2, "channels_last", 4)
    plain = lamina.layers.ConvLSTM2D(**CASES[2][0])
    dropped = lamina.layers.ConvLSTM2D(**CASES[2][0], dropout=0.5, recurrent_dropout=0.5, seed=1)
    plain(x)
    dropped(x)
    dropped.set_weights(plain.get_weights())
    np.testing.assert_allclose(dropped(x, training=False), plain(x))
    first, second = dropped(x, training=True), dropped(x, training=True)
    assert not np.allclose(first, plain(x)) and not np.allclose(first, second)  # a fresh mask per call


@pytest.mark.oracle
def test_one_training_step_matches_keras(keras):
    x = _sequence(2, "channels_last", 4, batch=4)
    y = np.random.default_rng(2).normal(size=(4, 1)).astype("float32")

    def model(lib):
        return lib.Sequential([lib.Input(shape=x.shape[1:]), lib.layers.ConvLSTM2D(**CASES[2][0], dropout=0.0),
                               lib.layers.Flatten(), lib.layers.Dense(1)])

    km, lm = model(keras), model(lamina)
    rng = np.random.default_rng(3)
    lm.set_weights([(0.3 * rng.standard_normal(w.shape)).astype("float32") for w in lm.weights])
    km.set_weights(lm.get_weights())
    km.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    lm.compile(optimizer=lamina.optimizers.SGD(0.1), loss="mse")
    with _one_torch_thread():
        kloss = float(km.train_on_batch(x, y))
    lloss = float(np.asarray(lm.train_on_batch(x, y)).reshape(-1)[0])
    assert lloss == pytest.approx(kloss, rel=1e-4)
    for lw, kw in zip(lm.get_weights(), km.get_weights(), strict=True):
        np.testing.assert_allclose(lw, kw, rtol=1e-4, atol=1e-5)


@pytest.mark.oracle
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_config_equals_keras_and_round_trips(keras, rank):
    kwargs = {"dropout": 0.25, "recurrent_dropout": 0.5, "seed": 3, "unit_forget_bias": False,
              "kernel_regularizer": "l2", "activity_regularizer": "l1", "return_sequences": True, "stateful": False}
    klayer, llayer = _pair(keras, rank, **kwargs)
    ours, theirs = llayer.get_config(), klayer.get_config()
    assert sorted(ours) == sorted(theirs)
    different = {k for k in ours if k != "dtype" and json.dumps(ours[k], default=list) !=
                 json.dumps(theirs[k], default=list)}
    assert different <= {"name", "activity_regularizer"}, different
    # Keras's L1 holds its factor as a float32 (0.009999999776482582)
    assert ours["activity_regularizer"]["config"]["l1"] == pytest.approx(theirs["activity_regularizer"]["config"]["l1"])
    again = type(llayer).from_config(json.loads(json.dumps(ours, default=list)))
    assert again.get_config() == ours
    assert lamina.layers.deserialize(lamina.layers.serialize(again)).get_config() == ours
    assert (again.filters, again.kernel_size, again.rank) == (llayer.filters, llayer.kernel_size, rank)


def _without_shared_ids(config):
    """Keras marks objects serialized twice with ``shared_object_id`` (its RNN serializes the cell's initializers
    before ``ConvLSTM.get_config`` drops the cell); lamina writes each once."""
    if isinstance(config, dict):
        return {k: _without_shared_ids(v) for k, v in config.items() if k != "shared_object_id"}
    if isinstance(config, list):
        return [_without_shared_ids(v) for v in config]
    return config


@pytest.mark.oracle
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_keras_files_both_ways(keras, rank, tmp_path):
    x = _sequence(rank, "channels_last", 3)
    km = keras.Sequential([keras.Input(shape=x.shape[1:]),
                           getattr(keras.layers, f"ConvLSTM{rank}D")(**CASES[rank][0], return_sequences=True),
                           getattr(keras.layers, f"ConvLSTM{rank}D")(2, 1, stateful=False), keras.layers.Flatten(),
                           keras.layers.Dense(2)])
    rng = np.random.default_rng(1)
    km.set_weights([(0.3 * rng.standard_normal(w.shape)).astype("float32") for w in km.weights])
    with _one_torch_thread():
        expected = _np(keras, km(x))
    km.save(tmp_path / "k.keras")
    lm = lamina.saving.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(lm.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)
    lm.save(tmp_path / "l.keras")
    ours, theirs = (json.loads(read_members(tmp_path / name)["config.json"])["config"]["layers"]
                    for name in ("l.keras", "k.keras"))
    for a, b in zip(ours, _without_shared_ids(theirs), strict=True):
        assert a["class_name"] == b["class_name"]
        assert {k: v for k, v in a["config"].items() if k != "dtype"} == \
            {k: v for k, v in b["config"].items() if k != "dtype"}
    with _one_torch_thread():
        np.testing.assert_allclose(_np(keras, keras.saving.load_model(tmp_path / "l.keras")(x)), expected,
                                   rtol=1e-4, atol=1e-5)
    lm.save(tmp_path / "l.h5")
    with _one_torch_thread():
        np.testing.assert_allclose(_np(keras, keras.saving.load_model(tmp_path / "l.h5")(x)), expected,
                                   rtol=1e-4, atol=1e-5)
    km.save(tmp_path / "k.h5")
    np.testing.assert_allclose(lamina.saving.load_model(tmp_path / "k.h5").predict(x, verbose=0), expected,
                               rtol=1e-4, atol=1e-5)


@pytest.mark.oracle
def test_bidirectional_conv_lstm_matches_keras(keras):
    x = _sequence(1, "channels_last", 4)
    kb = keras.layers.Bidirectional(keras.layers.ConvLSTM1D(2, 3, return_sequences=True))
    lb = lamina.layers.Bidirectional(lamina.layers.ConvLSTM1D(2, 3, return_sequences=True))
    kb(x)
    lb(x)
    rng = np.random.default_rng(5)
    lb.set_weights([(0.4 * rng.standard_normal(w.shape)).astype("float32") for w in lb.weights])
    kb.set_weights(lb.get_weights())
    with _one_torch_thread():
        expected = _np(keras, kb(x))
    np.testing.assert_allclose(lb(x), expected, rtol=RTOL, atol=ATOL)


def test_keras_own_checksums():
    """Keras's test numbers (constant weights): the cell's one step and a 3-step layer from initial states."""
    const = lamina.initializers.Constant
    cell = ConvLSTMCell(rank=2, filters=4, kernel_size=3, padding="same", kernel_initializer=const(0.01),
                        recurrent_initializer=const(0.02))
    x = np.arange(150).reshape((2, 5, 5, 3)).astype("float32") / 10
    s = np.arange(200).reshape((2, 5, 5, 4)).astype("float32") / 10
    h, (h2, c) = cell(x, [s, s])
    assert np.sum(h) == pytest.approx(188.89502, rel=1e-5) and np.array_equal(h, h2)
    assert np.sum(c) == pytest.approx(2170.444, rel=1e-5)
    layer = ConvLSTM(rank=2, filters=4, kernel_size=3, padding="same", kernel_initializer=const(0.01),
                     recurrent_initializer=const(0.02))
    x = np.arange(450).reshape((2, 3, 5, 5, 3)).astype("float32") / 100
    s = np.arange(200).reshape((2, 5, 5, 4)).astype("float32") / 100
    assert np.sum(layer(x, initial_state=[s, s])) == pytest.approx(119.812454, rel=1e-5)


def test_symbolic_functional_model_and_summary():
    inp = lamina.layers.Input(shape=(3, 6, 5, 2))
    seq, h, c = lamina.layers.ConvLSTM2D(4, 3, return_sequences=True, return_state=True)(inp)
    assert seq.shape == (None, 3, 4, 3, 4) and h.shape == c.shape == (None, 4, 3, 4)
    model = lamina.Model(inp, [seq, h])
    out = model(np.zeros((2, 3, 6, 5, 2), "float32"))
    assert [o.shape for o in out] == [(2, 3, 4, 3, 4), (2, 4, 3, 4)]


@pytest.mark.parametrize("make, message", [
    (lambda: lamina.layers.ConvLSTM2D(1, 1, strides=2, dilation_rate=3), "`strides > 1` is not compatible"),
    (lambda: ConvLSTM(rank=4, filters=1, kernel_size=1), "Rank 4 convolutions are not currently implemented"),
    (lambda: lamina.layers.ConvLSTM1D(0, 3), "expected a positive integer"),
    (lambda: lamina.layers.ConvLSTM1D(2, 3, padding="causal"), "must be one of 'valid', 'same'"),
    (lambda: lamina.layers.ConvLSTM1D(2, (3, 3)), "`kernel_size` argument must be a tuple of 1 integers"),
])
def test_bad_arguments_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_calls_are_refused():
    layer = lamina.layers.ConvLSTM1D(2, 3)
    with pytest.raises(ValueError, match="expected ndim=4|expects inputs of rank 4"):
        layer(np.zeros((2, 3, 5), "float32"))
    layer = lamina.layers.ConvLSTM1D(2, 3)
    x = np.zeros((2, 3, 5, 1), "float32")
    with pytest.raises(ValueError, match=r"expects 2 initial states \(h and c\), each of shape \(2, 3, 2\)"):
        layer(x, initial_state=[np.zeros((2, 5, 2), "float32")] * 2)
    with pytest.raises(ValueError, match=r"mask of layer .* must have shape \(batch, timesteps\)"):
        layer(x, mask=np.ones((2, 4), bool))
