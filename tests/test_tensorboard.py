"""The TensorBoard callback: real event files (TFRecord framing with CRC32C, ``Event`` protos) holding the
epoch and batch scalars, weight and activation histograms and the layer graph. The files are read back here
by a reader written in this test (framing and checksums) and tensorboardX's protobuf classes."""

from __future__ import annotations

import glob
import os
import struct

import numpy as np
import pytest

import lamina
from lamina import callbacks, layers

Event = pytest.importorskip("tensorboardX.proto.event_pb2").Event
GraphDef = pytest.importorskip("tensorboardX.proto.graph_pb2").GraphDef

X = np.random.default_rng(0).random((12, 3)).astype("float32")
Y = np.random.default_rng(1).random((12, 1)).astype("float32")


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
    crc = _crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(folder) -> list:
    """Every Event in ``folder``'s event files, each record's length and data checksums verified."""
    events = []
    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        with open(path, "rb") as f:
            data = f.read()
        i = 0
        while i < len(data):
            header = data[i:i + 8]
            (length,) = struct.unpack("<Q", header)
            assert struct.unpack("<I", data[i + 8:i + 12])[0] == _masked(header)
            payload = data[i + 12:i + 12 + length]
            assert struct.unpack("<I", data[i + 12 + length:i + 16 + length])[0] == _masked(payload)
            events.append(Event.FromString(payload))
            i += 16 + length
    return events


def scalars(folder) -> dict:
    """``{tag: [(step, value), ...]}``."""
    out: dict = {}
    for ev in read_events(folder):
        for v in ev.summary.value:
            if v.HasField("simple_value"):
                out.setdefault(v.tag, []).append((ev.step, v.simple_value))
    return out


def histograms(folder) -> dict:
    """``{tag: [(step, HistogramProto), ...]}``."""
    out: dict = {}
    for ev in read_events(folder):
        for v in ev.summary.value:
            if v.HasField("histo"):
                out.setdefault(v.tag, []).append((ev.step, v.histo))
    return out


def _model():
    model = lamina.Sequential([layers.Input((3,)), layers.Dense(4, activation="relu", name="hidden"),
                               layers.Dense(1, name="out")])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    return model


def test_epoch_scalars_match_the_history_in_train_and_validation_runs(tmp_path):
    history = _model().fit(X, Y, batch_size=4, epochs=3, verbose=0, validation_data=(X[:4], Y[:4]),
                           callbacks=[callbacks.TensorBoard(tmp_path)])
    train, val = scalars(tmp_path / "train"), scalars(tmp_path / "validation")
    for name in ("loss", "mae"):
        assert [s for s, _ in train[f"epoch_{name}"]] == [0, 1, 2]
        np.testing.assert_allclose([v for _, v in train[f"epoch_{name}"]], history.history[name], rtol=1e-6)
        np.testing.assert_allclose([v for _, v in val[f"epoch_{name}"]], history.history[f"val_{name}"], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in train["epoch_learning_rate"]], [0.01] * 3, rtol=1e-6)
    assert not any(tag.startswith("batch_") for tag in train)  # update_freq="epoch"
    assert "epoch_learning_rate" not in val


def test_batch_scalars_every_update_freq_batches_at_the_global_step(tmp_path):
    seen = []
    spy = callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(logs["loss"]))
    _model().fit(X, Y, batch_size=4, epochs=2, verbose=0,
                 callbacks=[spy, callbacks.TensorBoard(tmp_path, update_freq=2)])
    batch_loss = scalars(tmp_path / "train")["batch_loss"]
    assert [s for s, _ in batch_loss] == [2, 4, 6]  # 3 batches per epoch, 6 in all
    np.testing.assert_allclose([v for _, v in batch_loss], [seen[1], seen[3], seen[5]], rtol=1e-6)


def test_update_freq_batch_logs_every_batch(tmp_path):
    _model().fit(X, Y, batch_size=4, epochs=1, verbose=0,
                 callbacks=[callbacks.TensorBoard(tmp_path, update_freq="batch")])
    assert [s for s, _ in scalars(tmp_path / "train")["batch_mae"]] == [1, 2, 3]


def test_weight_histograms_every_histogram_freq_epochs_describe_the_weights(tmp_path):
    model = _model()
    model.fit(X, Y, batch_size=4, epochs=3, verbose=0, callbacks=[callbacks.TensorBoard(tmp_path, histogram_freq=2)])
    hists = histograms(tmp_path / "train")
    assert {"hidden/kernel/histogram", "hidden/bias/histogram", "out/kernel/histogram",
            "out/bias/histogram"} <= set(hists)
    assert [s for s, _ in hists["hidden/kernel/histogram"]] == [0, 2]
    kernel = model.layers[0].kernel.numpy()
    last = hists["hidden/kernel/histogram"][-1][1]  # written at epoch 2, the last: the final weights
    assert last.num == kernel.size
    np.testing.assert_allclose([last.min, last.max, last.sum], [kernel.min(), kernel.max(), kernel.sum()], rtol=1e-5)
    assert sum(last.bucket) == kernel.size


def test_activation_histograms_are_each_layer_output_on_the_sample(tmp_path):
    model = _model()
    sample = X[:5]
    model.fit(X, Y, batch_size=4, epochs=1, verbose=0,
              callbacks=[callbacks.TensorBoard(tmp_path, histogram_freq=1, activation_data=sample)])
    hists = histograms(tmp_path / "train")
    kernel, bias = model.layers[0].get_weights()
    hidden = np.maximum(sample @ kernel + bias, 0)
    out = hidden @ model.layers[1].get_weights()[0] + model.layers[1].get_weights()[1]
    for tag, expected in (("hidden/activations", hidden), ("out/activations", out)):
        (step, h), = hists[tag]
        assert step == 0 and h.num == expected.size
        np.testing.assert_allclose([h.min, h.max, h.sum], [expected.min(), expected.max(), expected.sum()],
                                   rtol=1e-5, atol=1e-6)


def test_activation_histograms_default_to_the_training_data(tmp_path):
    _model().fit(X, Y, batch_size=4, epochs=1, verbose=0,
                 callbacks=[callbacks.TensorBoard(tmp_path, histogram_freq=1, activation_sample_size=7)])
    (_, h), = histograms(tmp_path / "train")["hidden/activations"]
    assert h.num == 7 * 4  # 7 rows of the 4-unit layer


def test_non_finite_values_are_left_out_of_histograms(tmp_path):
    model = _model()

    class Poison(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            bias = self.model.layers[1].bias
            bias.assign(np.array([np.nan], dtype="float32"))
            kernel = self.model.layers[0].kernel
            kernel.assign(np.where(np.arange(kernel.shape[0])[:, None] == 0, np.inf, kernel.numpy()))

    model.fit(X, Y, batch_size=4, epochs=1, verbose=0,
              callbacks=[Poison(), callbacks.TensorBoard(tmp_path, histogram_freq=1)])
    hists = histograms(tmp_path / "train")
    assert "out/bias/histogram" not in hists  # nothing finite to show
    assert hists["hidden/kernel/histogram"][0][1].num == 2 * 4  # the inf row left out


def test_graph_has_a_node_per_layer_call_with_its_inputs(tmp_path):
    inputs = lamina.Input((3,), name="features")
    shared = layers.Dense(3, name="shared")
    a = shared(inputs)
    b = shared(a)
    out = layers.Dense(1, name="head")(layers.Add(name="sum")([a, b]))
    model = lamina.Model(inputs, out)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(X, Y, epochs=1, verbose=0, callbacks=[callbacks.TensorBoard(tmp_path)])
    graphs = [GraphDef.FromString(ev.graph_def) for ev in read_events(tmp_path / "train") if ev.graph_def]
    assert len(graphs) == 1
    nodes = {n.name: (n.op, list(n.input)) for n in graphs[0].node}
    assert nodes == {
        "features": ("InputLayer", []),
        "shared": ("Dense", ["features"]),
        "shared_": ("Dense", ["shared"]),
        "sum": ("Add", ["shared", "shared_"]),
        "head": ("Dense", ["sum"]),
    }


def test_write_graph_false_writes_no_graph(tmp_path):
    _model().fit(X, Y, epochs=1, verbose=0, callbacks=[callbacks.TensorBoard(tmp_path, write_graph=False)])
    assert not any(ev.graph_def for ev in read_events(tmp_path / "train"))


def test_standalone_evaluate_writes_evaluation_scalars_and_closes(tmp_path):
    model = _model()
    model.fit(X, Y, batch_size=4, epochs=2, verbose=0)  # 6 optimizer steps
    tb = callbacks.TensorBoard(tmp_path)
    logs = model.evaluate(X, Y, verbose=0, callbacks=[tb], return_dict=True)
    val = scalars(tmp_path / "validation")
    assert val["evaluation_loss_vs_iterations"] == [(6, pytest.approx(logs["loss"], rel=1e-6))]
    assert tb._writers == {}


def test_steps_per_second_is_written_when_asked(tmp_path):
    _model().fit(X, Y, batch_size=4, epochs=1, verbose=0,
                 callbacks=[callbacks.TensorBoard(tmp_path, write_steps_per_second=True, update_freq=1)])
    train = scalars(tmp_path / "train")
    assert train["epoch_steps_per_second"][0][1] > 0
    assert len(train["batch_steps_per_second"]) == 3


@pytest.mark.parametrize("kwargs", [dict(write_images=True), dict(profile_batch=2), dict(embeddings_freq=1)])
def test_unsupported_keras_options_are_refused(kwargs):
    with pytest.raises(ValueError, match=f"does not support `{next(iter(kwargs))}`"):
        callbacks.TensorBoard("logs", **kwargs)


@pytest.mark.parametrize("kwargs, name", [(dict(update_freq="step"), "update_freq"),
                                          (dict(histogram_freq=-1), "histogram_freq"),
                                          (dict(activation_sample_size=0), "activation_sample_size")])
def test_invalid_frequencies_are_refused(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}` must be"):
        callbacks.TensorBoard("logs", **kwargs)
