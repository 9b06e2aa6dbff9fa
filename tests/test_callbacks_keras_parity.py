"""Callbacks where Keras 3's behaviour is the spec (issue 13): the learning rate in the history, LambdaCallback's
extra keyword arguments, MonitorCallback's public API, the interactive-logging switches in ``utils``, and
TerminateOnNaN stopping a NaN that appears during training (the compiled step and the tape step alike)."""

from __future__ import annotations

import importlib.util
import logging
import warnings

import numpy as np
import pytest

import lamina
from lamina import callbacks, config, layers, ops

X = np.random.default_rng(0).random((16, 3)).astype("float32")
Y = np.random.default_rng(1).random((16, 1)).astype("float32")


def _model(lib, optimizer="sgd"):
    model = lib.Sequential([lib.layers.Input((3,)), lib.layers.Dense(4, activation="relu"), lib.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _schedule(epoch, lr):
    return 0.1 / (epoch + 1)


def _keras_fit(keras, callback):
    with warnings.catch_warnings():  # real Keras's own DeprecationWarnings (torch/NumPy 2) are not lamina's
        warnings.simplefilter("ignore", DeprecationWarning)
        return _model(keras).fit(X, Y, epochs=3, verbose=0, callbacks=[callback])


# ----------------------------------------------------------------------- learning_rate in the history


def test_learning_rate_scheduler_history_matches_keras(keras):
    history = _model(lamina).fit(X, Y, epochs=3, verbose=0,
                                 callbacks=[callbacks.LearningRateScheduler(_schedule)])
    expected = _keras_fit(keras, keras.callbacks.LearningRateScheduler(_schedule))
    assert set(history.history) == set(expected.history) == {"loss", "learning_rate"}
    assert all(type(v) is float for v in history.history["learning_rate"])
    np.testing.assert_allclose(history.history["learning_rate"], expected.history["learning_rate"], rtol=1e-6)


def test_reduce_lr_on_plateau_history_matches_keras(keras):
    kwargs = dict(monitor="loss", factor=0.5, patience=0, min_delta=10.0)  # never "improves": halves every epoch
    history = _model(lamina).fit(X, Y, epochs=3, verbose=0, callbacks=[callbacks.ReduceLROnPlateau(**kwargs)])
    expected = _keras_fit(keras, keras.callbacks.ReduceLROnPlateau(**kwargs))
    assert set(history.history) == set(expected.history)
    np.testing.assert_allclose(history.history["learning_rate"], expected.history["learning_rate"], rtol=1e-6)


def test_history_records_keys_any_user_callback_adds_at_epoch_end():
    class AddsKey(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["twice_epoch"] = 2.0 * epoch

    history = _model(lamina).fit(X, Y, epochs=2, verbose=0, callbacks=[AddsKey()])
    assert history.history["twice_epoch"] == [0.0, 2.0]


def test_fit_calls_history_after_the_users_callbacks_and_before_the_progress_bar(capsys):
    order = []

    class Spy(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            order.append(("spy", "loss" in self.model.history.history))

    _model(lamina).fit(X, Y, epochs=1, verbose=2, callbacks=[Spy(), callbacks.LearningRateScheduler(_schedule)])
    assert order == [("spy", False)]  # as in Keras: History has not recorded this epoch yet
    assert "learning_rate: 0.1000" in capsys.readouterr().out  # the bar shows what the scheduler added


# ----------------------------------------------------------------------- LambdaCallback


def _hook_events(lib, model):
    """The order of fit's callback hooks with validation data, as (hook, sorted log keys)."""
    events = []
    hooks = ("on_epoch_begin", "on_epoch_end", "on_test_begin", "on_test_end", "on_test_batch_begin")
    callback = lib.callbacks.LambdaCallback(**{
        hook: (lambda *args, logs=None, _hook=hook: events.append(
            (_hook, sorted(logs or (args[-1] if args and isinstance(args[-1], dict) else {})))))
        for hook in hooks})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model.fit(X, Y, epochs=2, batch_size=8, verbose=0, validation_data=(X, Y), callbacks=[callback])
    return events


def test_fit_validation_runs_the_test_hooks_as_keras(keras):
    """fit's validation is an evaluate for the callbacks: on_test_begin, test batches, on_test_end with
    the unprefixed logs, before on_epoch_end (TensorBoard's evaluation_*_vs_iterations relies on it)."""
    ours = _hook_events(lamina, _model(lamina))
    theirs = _hook_events(keras, _model(keras))
    assert ours == theirs
    assert ("on_test_end", ["loss"]) in ours


def test_lambda_callback_keeps_extra_keyword_arguments_as_attributes():
    def custom(logs):
        return "called"

    cb = callbacks.LambdaCallback(custom_method=custom, threshold=3)
    assert cb.custom_method is custom and cb.threshold == 3
    assert cb.custom_method({}) == "called"


def test_lambda_callback_still_refuses_a_misspelt_hook():
    with pytest.raises(TypeError, match="Received: on_epoch_ends"):
        callbacks.LambdaCallback(on_epoch_ends=print, custom_method=print)


# ----------------------------------------------------------------------- MonitorCallback


def test_monitor_callback_is_public_and_uses_keras_comparison_ops():
    cb = callbacks.MonitorCallback(monitor="val_loss")
    cb._set_monitor_op()
    assert cb.monitor_op is ops.less
    cb = callbacks.MonitorCallback(monitor="accuracy", mode="max", min_delta=0.5)
    cb._set_monitor_op()
    assert cb.monitor_op is ops.greater
    assert cb._is_improvement(0.75, 0) is True
    assert cb._is_improvement(0.5, None) is True
    assert cb._is_improvement(0.5, 0) is False
    assert cb._is_improvement(0.2, 0.5) is False


def test_early_stopping_still_stops_with_the_ops_comparisons():
    stopper = callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=100.0)  # nothing counts as better
    history = _model(lamina).fit(X, Y, epochs=5, verbose=0, callbacks=[stopper])
    assert len(history.history["loss"]) == 2


# ----------------------------------------------------------------------- utils: interactive logging


def test_utils_interactive_logging_switches_are_configs(caplog):
    assert lamina.utils.disable_interactive_logging is config.disable_interactive_logging
    assert lamina.utils.enable_interactive_logging is config.enable_interactive_logging
    assert lamina.utils.is_interactive_logging_enabled is config.is_interactive_logging_enabled
    scheduler = callbacks.LearningRateScheduler(lambda epoch: 1.0 / (1.0 + epoch), verbose=1)
    lamina.utils.disable_interactive_logging()
    try:
        assert lamina.utils.is_interactive_logging_enabled() is False
        with caplog.at_level(logging.INFO):
            _model(lamina).fit(X, Y, epochs=1, verbose=0, callbacks=[scheduler])
    finally:
        lamina.utils.enable_interactive_logging()
    assert lamina.utils.is_interactive_logging_enabled() is True
    assert any("LearningRateScheduler setting learning rate to 1.0" in m for m in caplog.messages)


# ----------------------------------------------------------------------- TensorBoard without its extra


def test_tensorboard_without_tensorboardx_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboardX" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'lamina\[tensorboard\]'"):
        callbacks.TensorBoard("logs")



# ----------------------------------------------------------------------- TerminateOnNaN


class _PoisonAt(callbacks.Callback):
    """Turns the first layer's kernel to NaN before batch ``batch`` of epoch ``epoch`` (0-based)."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)
        self.epoch = 0
        self.train_end_called = False

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            kernel = self.model.layers[0].kernel
            kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))

    def on_train_end(self, logs=None):
        self.train_end_called = True


@pytest.mark.parametrize("jit_compile", [True, False], ids=["compiled-step", "tape-step"])
def test_terminate_on_nan_stops_a_nan_that_appears_during_training(jit_compile, capsys):
    model = lamina.Sequential([layers.Input((3,)), layers.Dense(4, activation="relu"), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", jit_compile=jit_compile)
    poison = _PoisonAt(epoch=1, batch=2)
    batches = []
    spy = callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: batches.append(batch))
    history = model.fit(X, Y, batch_size=4, epochs=5, verbose=0, callbacks=[poison, callbacks.TerminateOnNaN(), spy])
    assert (model._fast_step is not None) is jit_compile  # the step kind this case is about really ran
    losses = history.history["loss"]
    assert len(losses) == 2 and np.isfinite(losses[0]) and np.isnan(losses[1])
    assert batches == [0, 1, 2, 3, 0, 1, 2]  # epoch 2 stopped at the poisoned batch
    assert poison.train_end_called
    assert "Batch 2 of epoch 2: invalid loss nan, terminating training" in capsys.readouterr().out


def test_terminate_on_nan_raise_error_uses_keras_wording_and_skips_train_end():
    model = _model(lamina)
    poison = _PoisonAt(epoch=0, batch=1)
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 1 of epoch 1. Loss value: nan"):
        model.fit(X, Y, batch_size=4, epochs=2, verbose=0,
                  callbacks=[poison, callbacks.TerminateOnNaN(raise_error=True)])
    assert not poison.train_end_called


def test_fit_still_refuses_non_finite_inputs_up_front():
    """NaN/inf in x is refused before any step, TerminateOnNaN or not; in y too without one."""
    model = _model(lamina)
    before = [w.copy() for w in model.get_weights()]
    x = X.copy()
    x[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"`x` passed to fit contains NaN or inf.*index \(3, 0\)"):
        model.fit(x, Y, epochs=1, verbose=0, callbacks=[callbacks.TerminateOnNaN()])
    y = Y.copy()
    y[3, 0] = np.inf
    with pytest.raises(ValueError, match=r"`y` passed to fit contains NaN or inf.*index \(3, 0\)"):
        model.fit(X, y, epochs=1, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("raise_error", [False, True])
def test_non_finite_targets_are_terminate_on_nans_to_stop(raise_error):
    """Given a TerminateOnNaN, fit warns about NaN/inf targets and trains: the callback stops training
    at the batch whose loss they make non-finite (as Keras, whose own tests feed inf targets so)."""
    model = _model(lamina)
    y = Y.copy()
    y[5, 0] = np.inf  # the second batch of 4
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if raise_error:
            with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 1 of epoch 1"):
                model.fit(X, y, batch_size=4, epochs=3, shuffle=False, verbose=0,
                          callbacks=[callbacks.TerminateOnNaN(raise_error=True)])
        else:
            history = model.fit(X, y, batch_size=4, epochs=3, shuffle=False, verbose=0,
                                callbacks=[callbacks.TerminateOnNaN()])
            assert len(history.history["loss"]) == 1 and not np.isfinite(history.history["loss"][0])
    ours = [str(w.message) for w in caught if w.category is UserWarning]
    assert len(ours) == 1 and "TerminateOnNaN" in ours[0] and ours[0].endswith("Received: inf at index (5, 0)")
