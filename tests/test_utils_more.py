"""keras.utils additions: pad_sequences, PyDataset (and fit/evaluate/predict reading it), plot_model."""

import math
import pathlib
import shutil

import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.utils import PyDataset, pad_sequences, plot_model

RNG = np.random.default_rng(0)
X = RNG.normal(size=(10, 3)).astype("float32")
Y = (X @ np.array([[1.0], [-2.0], [0.5]], dtype="float32")).astype("float32")

# ----------------------------------------------------------------------------- pad_sequences

PAD_CASES = [
    ([[1], [2, 3], [4, 5, 6]], {}),
    ([[1], [2, 3], [4, 5, 6]], {"maxlen": 2}),
    ([[1], [2, 3], [4, 5, 6]], {"maxlen": 2, "truncating": "post", "padding": "post", "value": -1}),
    ([[1], [2, 3], [4, 5, 6]], {"maxlen": 5, "padding": "post"}),
    ([[1.5], [], [2.25, 3.5]], {"dtype": "float32", "value": 9.0}),
    ([["a"], ["b", "c"]], {"dtype": object, "value": "pad"}),
    ([np.ones((2, 3)), np.zeros((1, 3)), np.full((4, 3), 2.0)], {"maxlen": 3, "dtype": "float64"}),
    ([[], []], {"maxlen": 2}),
]


@pytest.mark.oracle
@pytest.mark.parametrize("sequences, kwargs", PAD_CASES)
def test_pad_sequences_matches_keras(keras, sequences, kwargs):
    ours = pad_sequences(sequences, **kwargs)
    theirs = keras.utils.pad_sequences(sequences, **kwargs)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


def test_pad_sequences_defaults_pre_pad_and_pre_truncate():
    out = pad_sequences([[1, 2, 3, 4], [5]], maxlen=3)
    np.testing.assert_array_equal(out, [[2, 3, 4], [0, 0, 5]])
    assert out.dtype == np.int32


@pytest.mark.parametrize("kwargs, match", [
    ({"padding": "middle"}, "`padding` must be \"pre\" or \"post\". Received: padding='middle'"),
    ({"truncating": "both"}, "`truncating` must be"),
    ({"maxlen": -1}, "`maxlen` must be a non-negative integer"),
    ({"value": "pad"}, "`dtype` int32 is not compatible with `value`'s type"),
])
def test_pad_sequences_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pad_sequences([[1], [2, 3]], **kwargs)


def test_pad_sequences_names_the_bad_sequence():
    with pytest.raises(ValueError, match="list of iterables.*Received: 5 of type int at position 1"):
        pad_sequences([[1], 5])
    with pytest.raises(ValueError, match=r"steps of shape \(3,\) in sequence 1, expected \(2,\)"):
        pad_sequences([np.ones((1, 2)), np.ones((1, 3))])


# ----------------------------------------------------------------------------- PyDataset


class Batches(PyDataset):
    """X, Y in batches of ``size``; records every index read and the epoch hooks; reading past the end
    is an error that is not IndexError (so only ``len()`` can stop the loops)."""

    def __init__(self, size=4, weights=False, **kwargs):
        super().__init__(**kwargs)
        self.size, self.weights, self.log = size, weights, []

    def __len__(self):
        return math.ceil(len(X) / self.size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise RuntimeError(f"read past the end: {index}")
        self.log.append(index)
        part = slice(index * self.size, (index + 1) * self.size)
        return (X[part], Y[part], np.ones(len(X[part]), "float32")) if self.weights else (X[part], Y[part])

    def on_epoch_begin(self):
        self.log.append("begin")

    def on_epoch_end(self):
        self.log.append("end")


def regressor():
    lamina.utils.set_random_seed(0)
    model = lamina.Sequential([lamina.Input((3,)), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_fit_reads_len_batches_an_epoch_between_the_hooks():
    data = Batches()
    history = regressor().fit(data, epochs=2, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 2
    assert data.log == ["begin", 0, 1, 2, "end", "begin", 0, 1, 2, "end"]


def test_fit_shuffles_the_batch_order_each_epoch():
    data = Batches(size=1)
    regressor().fit(data, epochs=3, verbose=0)
    epochs = [data.log[i + 1:i + 11] for i, v in enumerate(data.log) if v == "begin"]
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert any(e != list(range(10)) for e in epochs)


def test_evaluate_and_predict_read_every_batch_once_in_order():
    data, model = Batches(), regressor()
    loss = model.evaluate(data, verbose=0)
    np.testing.assert_allclose(loss, model.evaluate(X, Y, batch_size=len(X), verbose=0), rtol=1e-5)
    assert data.log == ["begin", 0, 1, 2, "end"]
    data.log.clear()
    np.testing.assert_allclose(model.predict(data, verbose=0), model.predict(X, verbose=0), rtol=1e-6)
    assert data.log == ["begin", 0, 1, 2, "end"]


def test_steps_per_epoch_carries_on_where_the_last_epoch_stopped():
    data = Batches()
    regressor().fit(data, epochs=3, steps_per_epoch=2, shuffle=False, verbose=0)
    assert [v for v in data.log if v not in ("begin", "end")] == [0, 1, 2, 0, 1]


def test_pydataset_as_validation_data_and_with_sample_weights():
    model = regressor()
    history = model.fit(Batches(weights=True), validation_data=Batches(), epochs=1, verbose=0)
    assert set(history.history) == {"loss", "val_loss"}


class Endless(PyDataset):
    @property
    def num_batches(self):
        return None

    def __getitem__(self, index):
        return X[:2], Y[:2]


def test_endless_pydataset_needs_steps_and_never_loops_forever():
    model = regressor()
    with pytest.raises(ValueError, match="endless.*needs `steps_per_epoch`"):
        model.fit(Endless(), epochs=1, verbose=0)
    history = model.fit(Endless(), epochs=2, steps_per_epoch=3, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 6 and len(history.history["loss"]) == 2


class Wrong(PyDataset):
    def __len__(self):
        return 1

    def __getitem__(self, index):
        return "not a batch"


def test_bad_batch_is_named():
    with pytest.raises(ValueError, match="must return a batch.*Received: 'not a batch' of type str for index 0"):
        regressor().fit(Wrong(), verbose=0)


class NoSuper(PyDataset):
    def __init__(self):
        pass

    def __len__(self):
        return 1

    def __getitem__(self, index):
        return X, Y


def test_parallel_arguments_are_kept_and_forgetting_super_warns():
    data = Batches(workers=4, use_multiprocessing=True, max_queue_size=3)
    assert (data.workers, data.use_multiprocessing, data.max_queue_size) == (4, True, 3)
    regressor().fit(data, verbose=0)  # read in this thread, one batch at a time
    with pytest.warns(UserWarning, match="should call `super\\(\\).__init__\\(\\*\\*kwargs\\)`"):
        regressor().fit(NoSuper(), verbose=0)
    assert lamina.utils.Sequence is PyDataset


def test_iterating_a_pydataset_stops_at_len():
    assert [i for i, _ in enumerate(Batches())] == [0, 1, 2]


@pytest.mark.oracle
def test_fit_on_pydataset_matches_keras(keras):
    class KerasBatches(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, index):
            part = slice(index * 4, (index + 1) * 4)
            return X[part], Y[part]

    ours = regressor()
    theirs = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    theirs.compile(optimizer="sgd", loss="mse")
    theirs.set_weights(ours.get_weights())
    ours.fit(Batches(), epochs=3, shuffle=False, verbose=0)
    theirs.fit(KerasBatches(), epochs=3, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- plot_model


def branching_model():
    inputs = lamina.Input((4,), name="features")
    a = layers.Dense(3, activation="relu", name="left")(inputs)
    b = layers.Dense(3, name="right")(inputs)
    out = layers.Dense(1, name="head")(layers.Add(name="join")([a, b]))
    return lamina.Model(inputs, out)


def test_plot_model_dot_source_has_every_layer_and_edge(tmp_path):
    path = tmp_path / "model.dot"
    plot_model(branching_model(), to_file=path, show_shapes=True, show_layer_names=True,
               show_layer_activations=True, show_trainable=True)
    text = path.read_text()
    for name in ("features (InputLayer)", "left (Dense)", "right (Dense)", "join (Add)", "head (Dense)",
                 "Activation: relu", "Output shape: (None, 3)", "Trainable: Y"):
        assert name in text
    assert text.count("->") == 5  # features→left, features→right, left→join, right→join, join→head


def test_plot_model_draws_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "model.png"
    plot_model(branching_model(), to_file=str(path), rankdir="LR", dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_model_without_a_drawer_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setitem(__import__("sys").modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"Graphviz's `dot`.*pip install lamina\[plot\]"):
        plot_model(branching_model(), to_file=tmp_path / "m.png")
    assert not pathlib.Path(tmp_path / "m.png").exists()


def test_plot_model_refuses_unbuilt_models_and_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="has not yet been built"):
        plot_model(lamina.Sequential([layers.Dense(2)]), to_file=tmp_path / "m.dot")
    with pytest.raises(ValueError, match="`rankdir` must be one of"):
        plot_model(branching_model(), to_file=tmp_path / "m.dot", rankdir="UP")
    with pytest.raises(ValueError, match="Unrecognized keyword arguments"):
        plot_model(branching_model(), to_file=tmp_path / "m.dot", layer_range=None)
