"""Tests for lamina.callbacks: every callback driven through a small fake model and CallbackList.

The real trainer is written elsewhere; ``FakeModel`` implements the contract callbacks rely on
(stop_training, optimizer.learning_rate, get/set_weights, save/save_weights). Oracle tests drive the
same callbacks of real Keras with the same fake model and compare decisions and output.
"""

import csv
import io
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from lamina import callbacks
from lamina.callbacks import (
    Callback,
    CallbackList,
    CSVLogger,
    EarlyStopping,
    History,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ProgbarLogger,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from lamina.callbacks.progbar import Progbar

# --------------------------------------------------------------------------------------- fakes


class FakeOptimizer:
    def __init__(self, learning_rate=0.01):
        self._lr = np.float32(learning_rate)

    @property
    def learning_rate(self):
        return float(self._lr)

    @learning_rate.setter
    def learning_rate(self, value):
        self._lr = np.float32(value)


class FakeModel:
    """The model contract the callbacks use; saves write small files atomically."""

    def __init__(self, learning_rate=0.01, metrics=()):
        self.stop_training = False
        self.optimizer = FakeOptimizer(learning_rate)
        self.weights = [np.zeros((2, 2), np.float32), np.zeros(2, np.float32)]
        self.metrics = list(metrics)
        self.saves = []

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w, copy=True) for w in weights]

    def mark(self, value):
        """Make the weights identify a training state (e.g. the epoch)."""
        self.weights = [np.full_like(w, value) for w in self.weights]

    def _write(self, filepath, kind):
        tmp = filepath + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{kind} {self.weights[0].flat[0]}")
        os.replace(tmp, filepath)
        self.saves.append((kind, filepath))

    def save(self, filepath, overwrite=True):
        assert filepath.endswith(".keras")
        self._write(filepath, "model")

    def save_weights(self, filepath, overwrite=True):
        assert filepath.endswith(".weights.h5")
        self._write(filepath, "weights")


class FakeMetric:
    def __init__(self, name, direction):
        self.name = name
        self._direction = direction


def run_fit(model, cbs, epoch_logs, steps=3, batch_logs=None, verbose=0, n_batches=None):
    """Drive callbacks the way fit() does; epoch e's weights are all e. Returns the History."""
    cbl = CallbackList(cbs, add_history=True, add_progbar=verbose != 0, model=model,
                       verbose=verbose, epochs=len(epoch_logs), steps=steps)
    model.stop_training = False
    cbl.on_train_begin()
    for epoch, logs in enumerate(epoch_logs):
        cbl.on_epoch_begin(epoch)
        for b in range(steps if n_batches is None else n_batches):
            cbl.on_train_batch_begin(b)
            model.mark(epoch)
            cbl.on_train_batch_end(b, batch_logs(epoch, b) if batch_logs else {"loss": 1.0})
            if model.stop_training:
                break
        cbl.on_epoch_end(epoch, dict(logs))
        if model.stop_training:
            break
    cbl.on_train_end()
    return model.history


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


class FakeClock:
    def __init__(self, start=1000.0):
        self.now = start

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(time, "time", c)
    return c


def use_tty(monkeypatch):
    """Point sys.stdout at a terminal-like stream. Called inside the test body: pytest's own capture
    re-installs sys.stdout between fixture setup and the test call."""
    stream = FakeTTY()
    monkeypatch.setattr(sys, "stdout", stream)
    return stream


# --------------------------------------------------------------------------------------- Callback


def test_callback_base_has_every_keras_hook_as_noop():
    hooks = [
        "on_train_begin", "on_train_end", "on_test_begin", "on_test_end", "on_predict_begin",
        "on_predict_end",
    ]
    batch_hooks = [
        "on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end",
        "on_test_batch_begin", "on_test_batch_end", "on_predict_batch_begin", "on_predict_batch_end",
    ]
    cb = Callback()
    assert cb.model is None and cb.params is None
    for h in hooks:
        assert getattr(cb, h)(logs={"loss": 1.0}) is None
    for h in batch_hooks:
        assert getattr(cb, h)(3, logs={"loss": 1.0}) is None
    assert cb.on_epoch_begin(0, {}) is None and cb.on_epoch_end(0, {}) is None
    model = FakeModel()
    cb.set_model(model)
    cb.set_params({"epochs": 2})
    assert cb.model is model and cb.params == {"epochs": 2}


def test_train_batch_hooks_forward_to_legacy_aliases():
    seen = []

    class Legacy(Callback):
        def on_batch_begin(self, batch, logs=None):
            seen.append(("begin", batch))

        def on_batch_end(self, batch, logs=None):
            seen.append(("end", batch, logs["loss"]))

    cb = Legacy()
    cb.on_train_batch_begin(4)
    cb.on_train_batch_end(4, {"loss": 2.0})
    assert seen == [("begin", 4), ("end", 4, 2.0)]
    # ... and CallbackList must still deliver train-batch events to a callback overriding only the alias.
    seen.clear()
    cbl = CallbackList([Legacy()])
    cbl.on_train_batch_begin(1)
    cbl.on_train_batch_end(1, {"loss": 3.0})
    assert seen == [("begin", 1), ("end", 1, 3.0)]


# --------------------------------------------------------------------------------------- CallbackList


class Recorder(Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, dict(logs)))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("train_batch_end", batch, dict(logs)))

    def on_test_batch_end(self, batch, logs=None):
        self.calls.append(("test_batch_end", batch))

    def on_predict_batch_end(self, batch, logs=None):
        self.calls.append(("predict_batch_end", batch))

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin",))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end",))

    def on_test_begin(self, logs=None):
        self.calls.append(("test_begin",))

    def on_test_end(self, logs=None):
        self.calls.append(("test_end",))

    def on_predict_begin(self, logs=None):
        self.calls.append(("predict_begin",))

    def on_predict_end(self, logs=None):
        self.calls.append(("predict_end",))


def test_callback_list_dispatches_every_hook_to_every_callback():
    a, b = Recorder(), Recorder()
    model = FakeModel()
    cbl = CallbackList([a, [b]], model=model, verbose=0, epochs=1, steps=2)
    assert a.model is model and b.model is model and a.params == {"verbose": 0, "epochs": 1, "steps": 2}
    cbl.on_train_begin()
    cbl.on_epoch_begin(0)
    cbl.on_train_batch_end(0, {"loss": np.float32(0.5)})
    cbl.on_test_begin()
    cbl.on_test_batch_end(0)
    cbl.on_test_end()
    cbl.on_epoch_end(0, {"loss": np.float32(0.25), "accuracy": np.array(0.5)})
    cbl.on_train_end()
    cbl.on_predict_begin()
    cbl.on_predict_batch_end(0)
    cbl.on_predict_end()
    expected = [
        ("train_begin",), ("epoch_begin", 0), ("train_batch_end", 0, {"loss": 0.5}), ("test_begin",),
        ("test_batch_end", 0), ("test_end",), ("epoch_end", 0, {"accuracy": 0.5, "loss": 0.25}),
        ("train_end",), ("predict_begin",), ("predict_batch_end", 0), ("predict_end",),
    ]
    assert a.calls == expected and b.calls == expected


def test_callback_list_logs_are_sorted_python_floats():
    got = {}
    cbl = CallbackList([LambdaCallback(on_epoch_end=lambda e, logs: got.update(logs=logs))])
    cbl.on_epoch_end(0, {"val_loss": np.float32(0.5), "loss": np.float64(0.25), "accuracy": np.array(0.75),
                         "out": {"nested_acc": np.float32(1.0)}, "vec": np.array([1.0, 2.0])})
    logs = got["logs"]
    assert list(logs) == ["accuracy", "loss", "nested_acc", "val_loss", "vec"]
    assert all(type(logs[k]) is float for k in ["accuracy", "loss", "nested_acc", "val_loss"])
    assert isinstance(logs["vec"], np.ndarray)


def test_callback_list_skips_callbacks_without_batch_hooks(monkeypatch):
    class EpochOnly(Callback):
        def on_epoch_end(self, epoch, logs=None):
            pass

    # Replace the base class's batch hooks with counters: were they dispatched, the counts would move.
    counts = {"train": 0, "test": 0, "predict": 0}

    def counting(key):
        def hook(self, batch, logs=None):
            counts[key] += 1
        return hook

    monkeypatch.setattr(Callback, "on_train_batch_end", counting("train"))
    monkeypatch.setattr(Callback, "on_test_batch_end", counting("test"))
    monkeypatch.setattr(Callback, "on_predict_batch_begin", counting("predict"))
    cbl = CallbackList([EpochOnly(), EarlyStopping(), History()])
    cbl.on_train_begin()
    for b in range(50):
        cbl.on_train_batch_end(b, {"loss": 1.0})
        cbl.on_test_batch_end(b, {"loss": 1.0})
        cbl.on_predict_batch_begin(b)
    assert counts == {"train": 0, "test": 0, "predict": 0}
    EpochOnly().on_train_batch_end(0)  # the counter itself works
    assert counts["train"] == 1


def test_callback_list_skipping_keeps_overriders_and_lambda_hooks():
    fired = []
    lam = LambdaCallback(on_train_batch_end=lambda batch, logs: fired.append(("lambda", batch)))
    rec = Recorder()
    cbl = CallbackList([EarlyStopping(), lam, rec])
    cbl.on_train_batch_end(7, {"loss": 1.0})
    assert fired == [("lambda", 7)]
    assert rec.calls == [("train_batch_end", 7, {"loss": 1.0})]


def test_callback_list_sees_callbacks_added_later():
    cbl = CallbackList([], model=FakeModel(), verbose=0, epochs=1, steps=1)
    late, inplace = Recorder(), Recorder()
    cbl.append(late)
    assert late.model is cbl.model and late.params["steps"] == 1
    cbl.callbacks.append(inplace)  # edited in place: picked up at the next on_*_begin
    inplace.set_model(cbl.model)
    cbl.on_train_begin()
    cbl.on_train_batch_end(0, {"loss": 1.0})
    assert ("train_batch_end", 0, {"loss": 1.0}) in late.calls
    assert ("train_batch_end", 0, {"loss": 1.0}) in inplace.calls


def test_callback_list_default_callbacks_not_duplicated():
    h = History()
    cbl = CallbackList([h], add_history=True, add_progbar=True, model=FakeModel(),
                       verbose=1, epochs=1, steps=1)
    assert sum(isinstance(c, History) for c in cbl.callbacks) == 1
    assert sum(isinstance(c, ProgbarLogger) for c in cbl.callbacks) == 1
    assert cbl.model.history is h
    assert CallbackList([], add_history=False).callbacks == []


def test_callback_list_shares_logs_so_learning_rate_reaches_history():
    model = FakeModel(learning_rate=0.5)
    history = run_fit(model, [ReduceLROnPlateau(monitor="loss", patience=100)],
                      [{"loss": 1.0}, {"loss": 0.5}])
    assert history.history["learning_rate"] == [0.5, 0.5]


def test_callback_list_rejects_non_callbacks():
    with pytest.raises(TypeError, match="Received: 3"):
        CallbackList([3])


# --------------------------------------------------------------------------------------- History


def test_history_records_epochs_params_and_model():
    model = FakeModel()
    history = run_fit(model, [], [{"loss": 1.0, "val_loss": 2.0}, {"loss": 0.5, "val_loss": 1.5}])
    assert history.history == {"loss": [1.0, 0.5], "val_loss": [2.0, 1.5]}
    assert history.epoch == [0, 1]
    assert history.params == {"verbose": 0, "epochs": 2, "steps": 3}
    assert history.model is model and model.history is history


# --------------------------------------------------------------------------------------- Progbar


def test_progbar_tty_draws_in_place_with_keras_layout(clock, monkeypatch):
    tty = use_tty(monkeypatch)
    bar = Progbar(1875, interval=0.05)
    clock.now += 0.002
    bar.update(1, [("loss", 0.6931), ("accuracy", 0.75)])  # first step: 2 ms
    clock.now += 0.002 * 31
    bar.update(32, [("loss", 0.6931), ("accuracy", 0.75)])
    out = tty.getvalue()
    assert out.count("\r") == 2 and "\n" not in out
    last = out.split("\r")[-1]
    plain = last.replace("\x1b[1m", "").replace("\x1b[0m", "").replace("\x1b[32m", "").replace("\x1b[37m", "")
    # ETA: 2 ms/step over the remaining 1843 steps = 3.686 s.
    assert plain == "  32/1875 " + "\u2501" * 20 + " 3s 2ms/step - loss: 0.6931 - accuracy: 0.7500"
    assert "\x1b[32m" not in last  # 32/1875 of 20 cells rounds down to no green cell
    clock.now += 0.002 * 1843
    bar.update(1875, [("loss", 0.5), ("accuracy", 0.8)])
    final = tty.getvalue().split("\r")[-1]
    assert final.endswith("\n")
    assert "\x1b[32m" + "\u2501" * 20 in final  # all 20 cells green
    assert "\x1b[1m4s\x1b[0m 2ms/step" in final  # elapsed time replaces the ETA


def test_progbar_throttles_redraws(clock, monkeypatch):
    tty = use_tty(monkeypatch)
    bar = Progbar(1000, interval=0.05)
    for step in range(1, 1001):
        clock.now += 0.001  # 1 ms per step: a redraw allowed every 50 steps
        bar.update(step, [("loss", 1.0)])
    redraws = tty.getvalue().count("\r")
    assert 15 <= redraws <= 25
    assert tty.getvalue().endswith("\n")


def test_progbar_non_tty_prints_only_the_final_line(clock, capsys):
    bar = Progbar(100)
    for step in range(1, 101):
        clock.now += 0.5
        bar.update(step, [("loss", 0.25)])
    out = capsys.readouterr().out
    assert "\r" not in out and "\x1b" not in out
    assert out == "100/100 " + "\u2501" * 20 + " 50s 500ms/step - loss: 0.2500\n"


def test_progbar_verbose_2_single_line(clock, capsys):
    bar = Progbar(1875, verbose=2)
    for step in range(1, 1876):
        clock.now += 0.0016
        bar.update(step, [("loss", 0.5)], finalize=False)
    bar.update(1875, [("accuracy", 0.91234), ("loss", 0.3)], finalize=True)
    out = capsys.readouterr().out
    assert out == "1875/1875 - 3s - 2ms/step - loss: 0.3000 - accuracy: 0.9123\n"


@pytest.mark.parametrize(
    "seconds_per_step, text", [(2.0, " 2s/step"), (0.0123, " 12ms/step"), (4.5e-5, " 45us/step")]
)
def test_progbar_time_units(clock, capsys, seconds_per_step, text):
    bar = Progbar(10, verbose=2)
    clock.now += 10 * seconds_per_step
    bar.update(10)
    assert f"-{text}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "value, text",
    [(0.69314718, "0.6931"), (123.45678, "123.4568"), (1e-5, "1.0000e-05"), (0.0, "0.0000e+00"),
     (-0.25, "-0.2500"), (np.float32(2.5), "2.5000")],
)
def test_progbar_metric_format(clock, capsys, value, text):
    bar = Progbar(1, verbose=2)
    bar.update(1, [("m", value)])
    assert capsys.readouterr().out.endswith(f" - m: {text}\n")


def test_progbar_averages_stateless_metrics_weighted_by_steps(clock, monkeypatch):
    tty = use_tty(monkeypatch)
    bar = Progbar(10, stateful_metrics=["acc"], interval=0)
    bar.update(2, [("loss", 1.0), ("acc", 0.1)])
    bar.update(6, [("loss", 4.0), ("acc", 0.7)])  # covers 4 steps: (2*1 + 4*4) / 6 = 3
    assert tty.getvalue().endswith("- loss: 3.0000 - acc: 0.7000")


def test_progbar_unknown_target_and_add(clock, monkeypatch):
    tty = use_tty(monkeypatch)
    bar = Progbar(None, interval=0)
    bar.add(5)
    bar.add(3, [("loss", 2.0)])
    assert bar._seen_so_far == 8
    assert "      8/Unknown" in tty.getvalue().split("\r")[-1]


def test_progbar_shorter_line_wipes_previous(clock, monkeypatch):
    tty = use_tty(monkeypatch)
    bar = Progbar(10, interval=0)
    bar.update(1, [("a_long_metric_name", 1.0)])
    first = tty.getvalue()
    bar._values_order.clear()  # simulate a line with fewer metrics
    bar.update(2)
    second = tty.getvalue()[len(first):]
    visible = lambda s: len(s.replace("\x1b[1m", "").replace("\x1b[0m", "").replace("\x1b[32m", "")
                            .replace("\x1b[37m", "").replace("\r", ""))
    assert visible(second) == visible(first)


def test_progbar_errors():
    with pytest.raises(ValueError, match="only one of"):
        Progbar(10, stateful_metrics=["a"], stateless_metrics=["b"])
    with pytest.raises(ValueError, match="Received: verbose=3"):
        Progbar(10, verbose=3)
    with pytest.raises(ValueError, match="Received: target=-1"):
        Progbar(-1)


@pytest.mark.oracle
@pytest.mark.parametrize("verbose", [1, 2])
def test_progbar_matches_keras_output(keras, monkeypatch, clock, verbose):
    from keras.src.utils.progbar import Progbar as KerasProgbar

    def drive(cls):
        stream = FakeTTY()
        monkeypatch.setattr(sys, "stdout", stream)
        clock.now = 1000.0
        bar = cls(200, verbose=verbose, stateful_metrics=["acc"])
        for step in range(1, 201):
            clock.now += 0.0031 if step > 1 else 0.5
            bar.update(step, [("loss", 1.0 / step), ("acc", step / 200), ("tiny", 1e-6)])
        return stream.getvalue().replace("\b", "")  # Keras also backspaces before its \r

    assert drive(Progbar) == drive(KerasProgbar)


# --------------------------------------------------------------------------------------- ProgbarLogger


def test_progbar_logger_verbose_1_tty(clock, monkeypatch):
    tty = use_tty(monkeypatch)
    def batch_logs(epoch, b):
        clock.now += 0.01
        return {"loss": 0.5, "accuracy": 0.75}

    run_fit(FakeModel(), [], [{"loss": 0.4, "accuracy": 0.8, "val_loss": 0.3, "val_accuracy": 0.9}] * 2,
            steps=4, batch_logs=batch_logs, verbose=1)
    out = tty.getvalue()
    assert out.startswith("Epoch 1/2\n\r")
    assert "Epoch 2/2\n" in out
    finals = [seg for seg in out.split("\r") if seg.endswith("\n") and "4/4" in seg]
    assert len(finals) == 2
    for seg in finals:
        assert seg.index("accuracy: 0.8000") < seg.index("loss: 0.4000") < seg.index("val_accuracy: 0.9000")
        assert "val_loss: 0.3000" in seg


def test_progbar_logger_verbose_1_non_tty(clock, capsys):
    run_fit(FakeModel(), [], [{"loss": 0.4, "val_loss": 0.3}] * 3, steps=50, verbose=1)
    out = capsys.readouterr().out
    assert "\r" not in out and "\x1b" not in out
    lines = out.splitlines()
    assert lines[0] == "Epoch 1/3" and len(lines) == 6
    assert lines[1] == "50/50 " + "\u2501" * 20 + " 0s 0s/step - loss: 0.4000 - val_loss: 0.3000"


def test_progbar_logger_verbose_2(clock, capsys):
    run_fit(FakeModel(), [], [{"loss": 0.4, "val_loss": 0.3}], steps=10, verbose=2)
    assert capsys.readouterr().out == "10/10 - 0s - 0s/step - loss: 0.4000 - val_loss: 0.3000\n"


def test_progbar_logger_silent_validation_in_fit_but_draws_for_evaluate(clock, capsys):
    logger = ProgbarLogger()
    cbl = CallbackList([logger], model=FakeModel(), verbose=2, epochs=1, steps=2)
    cbl.on_train_begin()
    cbl.on_epoch_begin(0)
    cbl.on_train_batch_end(0, {"loss": 1.0})
    cbl.on_test_begin()
    cbl.on_test_batch_end(0, {"loss": 9.0})
    cbl.on_test_end({"loss": 9.0})
    cbl.on_epoch_end(0, {"loss": 1.0, "val_loss": 9.0})
    cbl.on_train_end()
    assert capsys.readouterr().out == "2/2 - 0s - 0s/step - loss: 1.0000 - val_loss: 9.0000\n"
    # A later evaluate() with the same logger draws its own bar.
    cbl.on_test_begin()
    cbl.on_test_batch_end(0, {"loss": 2.0})
    cbl.on_test_end({"loss": 2.0})
    assert capsys.readouterr().out == "2/2 - 0s - 0s/step - loss: 2.0000\n"


def test_progbar_logger_verbose_0_is_silent(capsys):
    run_fit(FakeModel(), [ProgbarLogger()], [{"loss": 0.4}] * 2, steps=3, verbose=0)
    assert capsys.readouterr().out == ""


def test_progbar_logger_unknown_steps_learns_target(clock, capsys):
    run_fit(FakeModel(), [], [{"loss": 0.4}] * 2, steps=None, verbose=2, n_batches=3)
    assert capsys.readouterr().out.splitlines()[1] == "3/3 - 0s - 0s/step - loss: 0.4000"


def test_progbar_logger_is_cheap_per_batch(capsys):
    # Functional check of the throttle on a real clock: 1875 batches produce a handful of redraws.
    stream = FakeTTY()
    old = sys.stdout
    sys.stdout = stream
    try:
        run_fit(FakeModel(), [], [{"loss": 0.4}], steps=1875, verbose=1)
    finally:
        sys.stdout = old
    assert stream.getvalue().count("\r") < 200


# --------------------------------------------------------------------------------------- EarlyStopping


def test_early_stopping_patience_and_stopped_epoch():
    es = EarlyStopping(monitor="val_loss", patience=2)
    history = run_fit(FakeModel(), [es], [{"val_loss": v} for v in [1.0, 0.9, 0.95, 0.97, 0.5, 0.4]])
    assert history.epoch == [0, 1, 2, 3] and es.stopped_epoch == 3
    assert es.best == 0.9 and es.best_epoch == 1 and es.wait == 2


def test_early_stopping_restores_best_weights_when_stopped():
    model = FakeModel()
    es = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    run_fit(model, [es], [{"val_loss": v} for v in [0.2, 0.15, 0.1, 0.11, 0.12, 0.05]])
    assert es.stopped_epoch == 4
    assert model.weights[0][0, 0] == 2  # epoch 2 had the best val_loss


def test_early_stopping_restores_best_weights_even_without_stopping():
    # Keras 3 restores the best epoch at the end of training whether or not it stopped early.
    model = FakeModel()
    es = EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
    run_fit(model, [es], [{"val_loss": v} for v in [0.5, 0.3, 0.4, 0.45]])
    assert es.stopped_epoch == 0 and model.weights[0][0, 0] == 1


def test_early_stopping_without_restore_keeps_last_weights():
    model = FakeModel()
    history = run_fit(model, [EarlyStopping(monitor="val_loss", patience=2)],
                      [{"val_loss": v} for v in [0.1, 0.2, 0.3, 0.4]])
    assert history.epoch == [0, 1, 2] and model.weights[0][0, 0] == 2


def test_early_stopping_baseline():
    model = FakeModel()
    es = EarlyStopping(monitor="val_loss", patience=5, baseline=0.5, restore_best_weights=True)
    history = run_fit(model, [es], [{"val_loss": v} for v in [0.9, 0.8, 0.7, 0.71, 0.72, 0.73]])
    assert len(history.epoch) == 5 and model.weights[0][0, 0] == 2


def test_early_stopping_min_delta_and_start_from_epoch():
    es = EarlyStopping(monitor="loss", patience=1, min_delta=0.1)
    history = run_fit(FakeModel(), [es], [{"loss": v} for v in [1.0, 0.95, 0.5, 0.45]])
    assert history.epoch == [0, 1]  # 0.95 is not 0.1 better than 1.0
    es = EarlyStopping(monitor="loss", patience=0, start_from_epoch=3)
    history = run_fit(FakeModel(), [es], [{"loss": v} for v in [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    assert history.epoch == [0, 1, 2, 3, 4]  # epochs 0-2 are not monitored


@pytest.mark.parametrize(
    "monitor", ["val_accuracy", "accuracy", "val_acc", "auc", "val_auc", "val_precision", "mean_io_u"]
)
def test_early_stopping_auto_mode_maximises_accuracy_like_metrics(monitor):
    es = EarlyStopping(monitor=monitor, patience=0)
    history = run_fit(FakeModel(), [es], [{monitor: v} for v in [0.5, 0.6, 0.7, 0.65, 0.8]])
    assert history.epoch == [0, 1, 2, 3]


def test_early_stopping_auto_mode_uses_model_metric_direction():
    model = FakeModel(metrics=[FakeMetric("score", "up")])
    es = EarlyStopping(monitor="val_score", patience=0)
    history = run_fit(model, [es], [{"val_score": v} for v in [1.0, 2.0, 1.5]])
    assert history.epoch == [0, 1, 2] and es.stopped_epoch == 2


def test_early_stopping_explicit_modes_and_unknown_metric():
    es = EarlyStopping(monitor="score", mode="min", patience=0)
    assert run_fit(FakeModel(), [es], [{"score": v} for v in [1.0, 2.0, 0.5]]).epoch == [0, 1]
    with pytest.raises(ValueError, match="mode='max'.*Received: monitor='score'"):
        run_fit(FakeModel(), [EarlyStopping(monitor="score")], [{"score": 1.0}])
    with pytest.warns(UserWarning, match="mode 'maximum' is unknown"):
        EarlyStopping(mode="maximum")


def test_early_stopping_warns_when_metric_missing():
    with pytest.warns(UserWarning, match="`val_loss` which is not available. Available metrics are: loss"):
        run_fit(FakeModel(), [EarlyStopping()], [{"loss": 1.0}])


def test_early_stopping_verbose_messages(capsys):
    es = EarlyStopping(monitor="loss", patience=0, verbose=1, restore_best_weights=True)
    run_fit(FakeModel(), [es], [{"loss": v} for v in [1.0, 0.5, 0.7]])
    out = capsys.readouterr().out
    assert "Epoch 3: early stopping" in out
    assert "Restoring model weights from the end of the best epoch: 2." in out


def test_early_stopping_reset_between_fits():
    es = EarlyStopping(monitor="loss", patience=0)
    run_fit(FakeModel(), [es], [{"loss": v} for v in [1.0, 2.0]])
    assert es.stopped_epoch == 1
    history = run_fit(FakeModel(), [es], [{"loss": v} for v in [5.0, 4.0, 3.0]])
    assert history.epoch == [0, 1, 2] and es.stopped_epoch == 0


class _KerasDummyModel:
    def __init__(self):
        self.stop_training = False
        self.weights = -1

    def get_weights(self):
        return self.weights

    def set_weights(self, w):
        self.weights = w


@pytest.mark.oracle
@pytest.mark.parametrize("seed", range(6))
def test_early_stopping_matches_keras(keras, seed):
    rng = np.random.default_rng(seed)
    losses = list(rng.uniform(0.0, 1.0, size=12).round(3))
    kwargs = dict(monitor="val_loss", patience=int(rng.integers(0, 4)),
                  min_delta=float(rng.choice([0, 0.05])), restore_best_weights=True,
                  baseline=[None, 0.3][seed % 2], start_from_epoch=seed % 3)

    def drive(cls):
        es = cls(**kwargs)
        es.set_model(_KerasDummyModel())
        es.on_train_begin()
        trained = 0
        for epoch, v in enumerate(losses):
            trained += 1
            es.model.weights = epoch
            es.on_epoch_end(epoch, {"val_loss": float(v)})
            if es.model.stop_training:
                break
        es.on_train_end()
        return trained, es.stopped_epoch, es.best_epoch, es.model.weights

    assert drive(EarlyStopping) == drive(keras.callbacks.EarlyStopping)


# --------------------------------------------------------------------------------------- ModelCheckpoint


def test_checkpoint_every_epoch_with_formatted_names(tmp_path):
    model = FakeModel()
    path = str(tmp_path / "ckpt" / "model-{epoch:02d}-{val_loss:.2f}.keras")
    run_fit(model, [ModelCheckpoint(path)], [{"val_loss": 0.5}, {"val_loss": 0.25}])
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["model-01-0.50.keras", "model-02-0.25.keras"]
    assert (tmp_path / "ckpt" / "model-02-0.25.keras").read_text() == "model 1.0"


def test_checkpoint_best_only(tmp_path):
    model = FakeModel()
    path = str(tmp_path / "best.keras")
    cp = ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    run_fit(model, [cp], [{"val_loss": v} for v in [0.5, 0.4, 0.45, 0.3, 0.35]])
    assert [p for _, p in model.saves] == [path] * 3  # epochs 0, 1, 3 improved
    assert Path(path).read_text() == "model 3.0" and cp.best == 0.3


def test_checkpoint_best_only_max_mode_and_threshold(tmp_path):
    model = FakeModel()
    path = str(tmp_path / "w-{epoch}.weights.h5")
    cp = ModelCheckpoint(path, monitor="val_accuracy", save_best_only=True, save_weights_only=True,
                         initial_value_threshold=0.6)
    run_fit(model, [cp], [{"val_accuracy": v} for v in [0.5, 0.7, 0.65, 0.9]])
    assert sorted(os.listdir(tmp_path)) == ["w-2.weights.h5", "w-4.weights.h5"]
    assert all(kind == "weights" for kind, _ in model.saves)


def test_checkpoint_save_freq_batches(tmp_path):
    model = FakeModel()
    path = str(tmp_path / "e{epoch}b{batch}.keras")
    run_fit(model, [ModelCheckpoint(path, save_freq=2)], [{"loss": 1.0}] * 2, steps=3)
    # 6 batches, a save every 2: epoch 1 batch 2, epoch 2 batch 1, epoch 2 batch 3.
    assert sorted(os.listdir(tmp_path)) == ["e1b2.keras", "e2b1.keras", "e2b3.keras"]


def test_checkpoint_verbose_messages(tmp_path, capsys):
    path = str(tmp_path / "m.keras")
    run_fit(FakeModel(), [ModelCheckpoint(path, save_best_only=True, verbose=1)],
            [{"val_loss": 0.5}, {"val_loss": 0.6}])
    out = capsys.readouterr().out
    assert f"Epoch 1: val_loss improved from None to 0.50000, saving model to {path}" in out
    assert "Epoch 2: val_loss did not improve from 0.50000" in out


def test_checkpoint_missing_monitor_warns_and_saves(tmp_path):
    model = FakeModel()
    with pytest.warns(UserWarning, match="Can save best model only with val_loss available"):
        run_fit(model, [ModelCheckpoint(str(tmp_path / "m.keras"), save_best_only=True)], [{"loss": 1.0}])
    assert len(model.saves) == 1


def test_checkpoint_errors(tmp_path):
    with pytest.raises(ValueError, match=r"must end in `\.weights\.h5`.*Received: filepath=w\.keras"):
        ModelCheckpoint("w.keras", save_weights_only=True)
    with pytest.raises(ValueError, match=r"must end in `\.keras`.*Received: filepath=model\.ckpt"):
        ModelCheckpoint("model.ckpt")
    with pytest.raises(ValueError, match="save_freq"):
        ModelCheckpoint("m.keras", save_freq="batch")
    with pytest.raises(ValueError, match="save_freq"):
        ModelCheckpoint("m.keras", save_freq=0)
    with pytest.raises(KeyError, match="val_acc"):
        run_fit(FakeModel(), [ModelCheckpoint(str(tmp_path / "{val_acc}.keras"))], [{"loss": 1.0}])
    os.mkdir(tmp_path / "dir.keras")
    with pytest.raises(OSError, match="non-directory filepath"):
        run_fit(FakeModel(), [ModelCheckpoint(str(tmp_path / "dir.keras"))], [{"loss": 1.0}])
    # PathLike is accepted.
    assert ModelCheckpoint(tmp_path / "m.keras").filepath == str(tmp_path / "m.keras")


# --------------------------------------------------------------------------------------- ReduceLROnPlateau


def test_reduce_lr_after_patience():
    model = FakeModel(learning_rate=1.0)
    rl = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_delta=0)
    history = run_fit(model, [rl], [{"val_loss": v} for v in [1.0, 1.0, 1.0, 0.5, 0.6, 0.7, 0.8]])
    # Reduced after epochs 2 (two without improvement) and 5.
    assert history.history["learning_rate"] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    assert model.optimizer.learning_rate == 0.25


def test_reduce_lr_cooldown():
    # Keras's test: patience 1, min_delta 100 (nothing improves), cooldown 2 -> every other epoch.
    model = FakeModel(learning_rate=0.1)
    rl = ReduceLROnPlateau(monitor="val_loss", factor=0.1, patience=1, min_delta=100, cooldown=2)
    history = run_fit(model, [rl], [{"val_loss": 1.0}] * 4)
    assert np.allclose(history.history["learning_rate"], [0.1, 0.1, 0.01, 0.01])
    assert np.isclose(model.optimizer.learning_rate, 0.001)


def test_reduce_lr_honors_min_lr_and_verbose(capsys):
    model = FakeModel(learning_rate=0.1)
    rl = ReduceLROnPlateau(monitor="loss", factor=0.1, patience=1, min_delta=100, min_lr=0.05, verbose=1)
    run_fit(model, [rl], [{"loss": 1.0}] * 4)
    assert model.optimizer.learning_rate == pytest.approx(0.05)
    assert capsys.readouterr().out.count("ReduceLROnPlateau reducing learning rate to") == 1


def test_reduce_lr_errors_and_warnings():
    with pytest.raises(ValueError, match="factor >= 1.0. Received: factor=1.5"):
        ReduceLROnPlateau(factor=1.5)
    with pytest.warns(UserWarning, match="`val_loss` which is not available"):
        run_fit(FakeModel(), [ReduceLROnPlateau()], [{"loss": 1.0}])
    model = FakeModel()
    model.optimizer = None
    with pytest.raises(ValueError, match="model.compile"):
        run_fit(model, [ReduceLROnPlateau(monitor="loss")], [{"loss": 1.0}])


def test_reduce_lr_state_reset_across_fits():
    rl = ReduceLROnPlateau(monitor="loss", patience=1, cooldown=2)
    rl.set_model(FakeModel())
    rl.best, rl.wait, rl.cooldown_counter = 0.5, 3, 2
    rl.on_train_begin()
    assert rl.best is None and rl.wait == 0 and rl.cooldown_counter == 0


@pytest.mark.oracle
@pytest.mark.parametrize("seed", range(4))
def test_reduce_lr_matches_keras(keras, seed):
    rng = np.random.default_rng(seed)
    losses = [float(v) for v in rng.uniform(0, 1, size=15).round(2)]
    kwargs = dict(monitor="val_loss", factor=0.5, patience=int(rng.integers(0, 3)),
                  cooldown=int(rng.integers(0, 3)), min_delta=0.01, min_lr=0.01)

    def drive(cls):
        model = FakeModel(learning_rate=0.2)
        rl = cls(**kwargs)
        rl.set_model(model)
        rl.on_train_begin()
        lrs = []
        for epoch, v in enumerate(losses):
            logs = {"val_loss": v}
            rl.on_epoch_end(epoch, logs)
            lrs.append((logs["learning_rate"], model.optimizer.learning_rate))
        return lrs

    assert drive(ReduceLROnPlateau) == drive(keras.callbacks.ReduceLROnPlateau)


# ----------------------------------------------------------------------------------- LearningRateScheduler


def test_scheduler_sets_learning_rate_each_epoch():
    model = FakeModel(learning_rate=0.1)
    seen = []

    def schedule(epoch, lr):
        seen.append((epoch, lr))
        return lr if epoch < 2 else lr * 0.5

    history = run_fit(model, [LearningRateScheduler(schedule)], [{"loss": 1.0}] * 4)
    assert [e for e, _ in seen] == [0, 1, 2, 3]
    assert np.allclose(history.history["learning_rate"], [0.1, 0.1, 0.05, 0.025])
    assert isinstance(seen[0][1], float)


def test_scheduler_one_argument_and_array_results(capsys):
    model = FakeModel()
    run_fit(model, [LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1), verbose=1)], [{"loss": 1.0}] * 2)
    assert model.optimizer.learning_rate == pytest.approx(0.05)
    assert "Epoch 2: LearningRateScheduler setting learning rate to 0.05." in capsys.readouterr().out
    # A 0-d float array (what lamina.ops returns) and NumPy float scalars count as floats.
    run_fit(model, [LearningRateScheduler(lambda e, lr: np.asarray(0.3, np.float32))], [{"loss": 1.0}])
    assert model.optimizer.learning_rate == pytest.approx(0.3)


def test_scheduler_rejects_non_float():
    with pytest.raises(ValueError, match="should be a float. Received: 1 of type int"):
        run_fit(FakeModel(), [LearningRateScheduler(lambda e, lr: 1)], [{"loss": 1.0}])
    with pytest.raises(TypeError, match="schedule"):
        LearningRateScheduler(0.1)


def test_scheduler_does_not_hide_errors_in_schedule():
    def schedule(epoch, lr):
        raise TypeError("bug inside schedule")

    with pytest.raises(TypeError, match="bug inside schedule"):
        run_fit(FakeModel(), [LearningRateScheduler(schedule)], [{"loss": 1.0}])


# --------------------------------------------------------------------------------------- CSVLogger


def _read_csv(path, sep=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=sep))


def test_csv_logger_content(tmp_path):
    path = tmp_path / "log.csv"
    run_fit(FakeModel(), [CSVLogger(path)], [{"loss": 0.5, "val_loss": 0.75, "accuracy": 0.25},
                                             {"loss": 0.25, "val_loss": 0.5, "accuracy": 0.5}])
    assert _read_csv(path) == [
        ["epoch", "accuracy", "loss", "val_loss"],
        ["0", "0.25", "0.5", "0.75"],
        ["1", "0.5", "0.25", "0.5"],
    ]
    assert path.read_bytes().count(b"\r\n") == 3  # Keras's (csv.excel) line endings


def test_csv_logger_separator_append_and_missing_val(tmp_path):
    path = tmp_path / "log.tsv"
    run_fit(FakeModel(), [CSVLogger(path, separator="\t")], [{"loss": 0.5}])
    run_fit(FakeModel(), [CSVLogger(path, separator="\t", append=True)], [{"loss": 0.25, "val_loss": 0.125}])
    rows = _read_csv(path, "\t")
    # No val_ keys in the first epoch: val_ twins are added, filled with NA.
    assert rows == [["epoch", "loss", "val_loss"], ["0", "0.5", "NA"], ["0", "0.25", "0.125"]]
    run_fit(FakeModel(), [CSVLogger(path, separator="\t")], [{"loss": 0.75}])  # overwrite
    assert _read_csv(path, "\t") == [["epoch", "loss", "val_loss"], ["0", "0.75", "NA"]]


def test_csv_logger_errors():
    with pytest.raises(ValueError, match="Received: separator=', '"):
        CSVLogger("x.csv", separator=", ")
    with pytest.raises(TypeError, match="filename"):
        CSVLogger(3.5)


@pytest.mark.oracle
def test_csv_logger_matches_keras_bytes(keras, tmp_path):
    epochs = [{"loss": 0.5, "accuracy": np.float32(0.25)}, {"loss": 0.125, "accuracy": 0.5, "vec": [1, 2]}]

    def drive(cls, path):
        cb = cls(str(path), separator=";")
        cb.on_train_begin()
        for e, logs in enumerate(epochs):
            cb.on_epoch_end(e, {k: (float(v) if isinstance(v, np.floating) else v) for k, v in logs.items()})
        cb.on_train_end()
        return path.read_bytes()

    assert drive(CSVLogger, tmp_path / "a.csv") == drive(keras.callbacks.CSVLogger, tmp_path / "b.csv")


# --------------------------------------------------------------------------------------- TerminateOnNaN


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float32("nan")])
def test_terminate_on_nan_stops_and_names_epoch_and_batch(capsys, bad):
    model = FakeModel()

    def batch_logs(epoch, b):
        return {"loss": bad if (epoch, b) == (2, 12) else 1.0}

    history = run_fit(model, [TerminateOnNaN()], [{"loss": 1.0}] * 5, steps=20, batch_logs=batch_logs)
    assert model.stop_training is True and history.epoch == [0, 1, 2]
    assert f"Batch 12 of epoch 3: invalid loss {float(bad)}, terminating training" in capsys.readouterr().out


def test_terminate_on_nan_ignores_finite_and_missing_loss():
    model = FakeModel()
    history = run_fit(model, [TerminateOnNaN()], [{"loss": 1.0}] * 2,
                      batch_logs=lambda e, b: {"loss": 1e30} if b else {})
    assert model.stop_training is False and history.epoch == [0, 1]


def test_terminate_on_nan_raise_error():
    cb = TerminateOnNaN(raise_error=True)
    cb.set_model(FakeModel())
    cb.on_epoch_begin(1)
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 4 of epoch 2. Loss value: nan"):
        cb.on_train_batch_end(4, {"loss": float("nan")})


# --------------------------------------------------------------------------------------- LambdaCallback


def test_lambda_callback_hooks_fire():
    events = []
    lam = LambdaCallback(
        on_epoch_begin=lambda epoch, logs: events.append(("eb", epoch)),
        on_epoch_end=lambda epoch, logs: events.append(("ee", epoch, logs["loss"])),
        on_train_begin=lambda logs: events.append(("tb",)),
        on_train_end=lambda logs: events.append(("te",)),
        on_train_batch_begin=lambda batch, logs: events.append(("bb", batch)),
        on_train_batch_end=lambda batch, logs: events.append(("be", batch, logs["loss"])),
        on_test_end=lambda logs: events.append(("test_end", logs)),
    )
    run_fit(FakeModel(), [lam], [{"loss": 0.5}], steps=2)
    assert events == [("tb",), ("eb", 0), ("bb", 0), ("be", 0, 1.0), ("bb", 1), ("be", 1, 1.0),
                      ("ee", 0, 0.5), ("te",)]
    cbl = CallbackList([lam])
    cbl.on_test_begin()
    cbl.on_test_end({"loss": 2.0})
    assert events[-1] == ("test_end", {"loss": 2.0})


def test_lambda_callback_errors():
    with pytest.raises(TypeError, match="Received: on_epoch_ends"):
        LambdaCallback(on_epoch_ends=print)
    with pytest.raises(TypeError, match="must be callable"):
        LambdaCallback(on_epoch_end=3)


def test_public_names():
    assert set(callbacks.__all__) == {
        "ActivationHealth", "BackupAndRestore", "Callback", "CallbackList", "CSVLogger", "EarlyStopping", "History",
        "LambdaCallback", "LearningRateScheduler", "ModelCheckpoint", "MonitorCallback", "ProgbarLogger",
        "ReduceLROnPlateau", "TensorBoard", "TerminateOnNaN",
    }


def test_no_warnings_in_a_quiet_run(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_fit(FakeModel(), [EarlyStopping(monitor="loss"), ReduceLROnPlateau(monitor="loss"),
                              ModelCheckpoint(str(tmp_path / "m.keras")), CSVLogger(tmp_path / "l.csv"),
                              TerminateOnNaN()], [{"loss": 1.0}, {"loss": 0.5}])
