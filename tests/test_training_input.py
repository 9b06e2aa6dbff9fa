"""Careless input to compile / fit / evaluate / predict: refused up front, with a clear message, and
with no weight changed when ``fit`` refuses."""

import warnings

import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.diagnostics import LintWarning

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 5)).astype("float32")
Y = (X[:, 0] > 0).astype("int64") + (X[:, 2] > 1).astype("int64")  # 3 classes


def classifier(metrics=None, first="tanh"):
    lamina.utils.set_random_seed(0)
    model = lamina.Sequential([lamina.Input((5,)), layers.Dense(8, activation=first),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=metrics)
    return model


def weights_of(model) -> list:
    return [w.copy() for w in model.get_weights()]


def assert_untouched(model, before) -> None:
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(model.optimizer.iterations.numpy()) == 0


def batches(n_batches=4, bad=None, size=16, yshape=None):
    """A generator of (x, y) batches; ``bad(i, x, y)`` may spoil batch i in place or return a new one."""
    for i in range(n_batches):
        xb, yb = X[i * size:(i + 1) * size].copy(), Y[i * size:(i + 1) * size].copy()
        if yshape is not None:
            yb = yb.reshape(yshape)
        if bad is not None:
            xb, yb = bad(i, xb, yb) or (xb, yb)
        yield xb, yb


# ----------------------------------------------------------------------------- targets vs metrics


def test_targets_a_metric_cannot_read_fail_before_the_first_step():
    # (n, 1, 1) labels pass the sparse loss but not sparse accuracy: once this failed after one
    # optimizer step, with the weights already changed.
    model = classifier(metrics=["accuracy"])
    before = weights_of(model)
    with pytest.raises(ValueError, match=r"before any training step \(no weight has changed\).*y_true.shape"):
        model.fit(X, Y.reshape(-1, 1, 1), verbose=0)
    assert_untouched(model, before)


def test_targets_a_metric_cannot_read_fail_before_the_first_step_from_a_generator():
    model = classifier(metrics=["accuracy"])
    before = weights_of(model)
    with pytest.raises(ValueError, match="no weight has changed"):
        model.fit(batches(yshape=(-1, 1, 1)), verbose=0)
    assert_untouched(model, before)


def test_targets_a_metric_cannot_read_fail_before_train_on_batch_steps():
    model = classifier(metrics=["accuracy"])
    before = weights_of(model)
    with pytest.raises(ValueError, match="no weight has changed"):
        model.train_on_batch(X[:16], Y[:16].reshape(-1, 1, 1))
    assert_untouched(model, before)


def test_validation_targets_are_tried_before_training():
    model = classifier(metrics=["accuracy"])
    before = weights_of(model)
    with pytest.raises(ValueError, match=r"fit \(validation_data\).*no weight has changed"):
        model.fit(X, Y, validation_data=(X[:8], Y[:8].reshape(-1, 1, 1)), verbose=0)
    assert_untouched(model, before)


def test_the_metric_probe_leaves_training_as_it_was():
    # The probe runs the metrics on a few rows, then resets them: the logs are those of training alone.
    with_metric = classifier(metrics=["accuracy"])
    logs = with_metric.fit(X, Y, epochs=2, batch_size=16, shuffle=False, verbose=0).history
    plain = classifier()
    plain_logs = plain.fit(X, Y, epochs=2, batch_size=16, shuffle=False, verbose=0).history
    np.testing.assert_allclose(logs["loss"], plain_logs["loss"], rtol=1e-6)
    for a, b in zip(with_metric.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # The last epoch's accuracy is that of its 4 batches, not of the probe's rows as well.
    assert logs["accuracy"][-1] * 64 == pytest.approx(round(logs["accuracy"][-1] * 64))


# ----------------------------------------------------------------------------- NaN / inf weights


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_sample_weight_is_refused_with_its_index(bad):
    model = classifier()
    before = weights_of(model)
    sw = np.ones(64, "float32")
    sw[7] = bad
    sw[9] = bad
    with pytest.raises(ValueError, match=r"`sample_weight` passed to fit contains NaN or inf.*index \(7,\)"):
        model.fit(X, Y, sample_weight=sw, verbose=0)
    assert_untouched(model, before)
    with pytest.raises(ValueError, match=r"`sample_weight` passed to evaluate.*index \(7,\)"):
        model.evaluate(X, Y, sample_weight=sw, verbose=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_class_weight_is_refused_with_its_class(bad):
    model = classifier()
    before = weights_of(model)
    with pytest.raises(ValueError, match=rf"class 1;.*Received: class_weight\[1\]={bad}"):
        model.fit(X, Y, class_weight={0: 1.0, 1: bad, 2: bad}, verbose=0)
    with pytest.raises(ValueError, match=r"class 2;"):
        model.train_on_batch(X, Y, class_weight={0: 1.0, 2: bad})
    assert_untouched(model, before)


def test_class_weight_keys_must_be_class_indices():
    model = classifier()
    with pytest.raises(ValueError, match=r"class indices.*Received: key 'cat'"):
        model.fit(X, Y, class_weight={0: 1.0, "cat": 2.0}, verbose=0)
    for key in (-1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=rf"Received: key {key}$"):
            model.fit(X, Y, class_weight={key: 2.0}, verbose=0)
    with pytest.raises(ValueError, match=r"must be a dict.*Received: class_weight of type list"):
        model.fit(X, Y, class_weight=[1.0, 2.0, 3.0], verbose=0)


# ----------------------------------------------------------------------------- empty input


def test_predict_on_zero_samples_gives_zero_rows_of_the_output_shape():
    # Keras 3.15 fails here (UnboundLocalError in its predict loop); lamina returns the empty batch
    # the model itself computes, so the result concatenates with other predictions.
    model = classifier()
    out = model.predict(np.zeros((0, 5), "float32"), verbose=0)
    assert out.shape == (0, 3) and out.dtype == np.float32
    a, b = lamina.Input((5,), name="a"), lamina.Input((2,), name="b")
    h = layers.Concatenate()([a, b])
    two = lamina.Model([a, b], [layers.Dense(3)(h), layers.Dense(1)(h)])
    outs = two.predict([np.zeros((0, 5), "float32"), np.zeros((0, 2), "float32")], verbose=0)
    assert [o.shape for o in outs] == [(0, 3), (0, 1)]


def test_evaluate_and_fit_on_zero_samples_are_errors():
    model = classifier()
    empty_x, empty_y = np.zeros((0, 5), "float32"), np.zeros((0,), "int64")
    with pytest.raises(ValueError, match=r"`x` passed to evaluate has no samples.*Received: x of shape \(0, 5\)"):
        model.evaluate(empty_x, empty_y, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not the "ran out of data" warning: an error
        with pytest.raises(ValueError, match=r"`x` passed to fit has no samples.*Received: x of shape \(0, 5\)"):
            model.fit(empty_x, empty_y, verbose=0)
        with pytest.raises(ValueError, match="`x` passed to fit produced no batches"):
            model.fit(iter([]), verbose=0)
    with pytest.raises(ValueError, match="`x` passed to evaluate produced no batches"):
        model.evaluate(iter([]), verbose=0)
    with pytest.raises(ValueError, match="`x` passed to predict produced no batches"):
        model.predict(iter([]), verbose=0)


def test_a_generator_that_runs_dry_later_still_only_warns():
    model = classifier()
    with pytest.warns(UserWarning, match="ran out of data at epoch 2"):
        history = model.fit(batches(2), epochs=3, verbose=0)
    assert len(history.history["loss"]) == 1


@pytest.mark.parametrize("call", [
    lambda m: m.predict(X, batch_size=0, verbose=0),
    lambda m: m.evaluate(X, Y, batch_size=0, verbose=0),
    lambda m: m.fit(X, Y, batch_size=-3, verbose=0),
    lambda m: m.fit(X, Y, batch_size=2.0, verbose=0),
    lambda m: m.fit(X, Y, validation_split=0.5, validation_batch_size=0, verbose=0),
    lambda m: m.fit(X, Y, steps_per_epoch=0, verbose=0),
    lambda m: m.fit(X, Y, validation_split=0.5, validation_steps=0, verbose=0),
    lambda m: m.evaluate(X, Y, steps=0, verbose=0),
    lambda m: m.predict(X, steps=-3, verbose=0),
])
def test_batch_sizes_and_steps_must_be_positive_integers(call):
    with pytest.raises(ValueError, match=r"must be a positive integer.*Received: \w+=(0|-3|2\.0)$"):
        call(classifier())


@pytest.mark.parametrize("freq", [0, -1, 1.0, "2", [0], [True]])
def test_validation_freq_is_checked_before_training(freq):
    # Used only at an epoch's end: without the check a bad value failed after the first epoch had trained.
    model = classifier()
    before = weights_of(model)
    with pytest.raises(ValueError, match=r"`validation_freq` passed to fit must be.*Received: validation_freq="):
        model.fit(X, Y, validation_split=0.25, validation_freq=freq, epochs=2, verbose=0)
    assert_untouched(model, before)


def test_validation_freq_as_a_list_of_epochs():
    history = classifier().fit(X, Y, validation_split=0.25, validation_freq=[2, 3], epochs=3, verbose=0).history
    assert len(history["loss"]) == 3 and len(history["val_loss"]) == 2


def test_an_empty_class_weight_weighs_every_class_one():
    weighted = classifier()
    weighted.fit(X, Y, class_weight={}, epochs=1, shuffle=False, verbose=0)
    plain = classifier()
    plain.fit(X, Y, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(weighted.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    classifier().train_on_batch(X, Y, class_weight={})


# ----------------------------------------------------------------------------- what x can be


def test_rectangular_nested_lists_work_as_arrays():
    lists = classifier()
    lists.fit(X.tolist(), Y.tolist(), epochs=2, batch_size=16, shuffle=False, verbose=0)
    arrays = classifier()
    arrays.fit(X, Y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(lists.get_weights(), arrays.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(lists.predict(X.tolist(), verbose=0), lists.predict(X, verbose=0))
    assert lists.evaluate(X.tolist(), Y.tolist(), verbose=0) == pytest.approx(lists.evaluate(X, Y, verbose=0))


def test_ragged_nested_lists_say_which_row_differs():
    model = classifier()
    with pytest.raises(ValueError, match=r"not rectangular \(row 0 has 5 values but row 2 has 4 values\).*"
                                         r"Received: x=\[\[0\.0"):
        model.fit([[0.0] * 5, [1.0] * 5, [2.0] * 4], [0, 1, 2], verbose=0)


def test_a_dict_given_to_a_sequential_model():
    model = classifier()
    with pytest.raises(ValueError, match=r"takes a single input array.*Received: a dict with keys \['a'\]"):
        model.fit({"a": X}, Y, verbose=0)
    with pytest.raises(ValueError, match=r"takes a single input array.*Received: a dict with keys \['a'\]"):
        model.predict({"a": X}, verbose=0)
    with pytest.raises(ValueError, match=r"takes a single input array.*Received: a list of 1 array$"):
        model.predict([X], verbose=0)


@pytest.mark.parametrize("x", [3.0, None, "data.csv"])
def test_x_that_is_no_data_at_all(x):
    model = classifier()
    with pytest.raises(ValueError, match=r"`x` passed to predict must be a NumPy array.*Received: x=.* of type"):
        model.predict(x, verbose=0)
    with pytest.raises(ValueError, match=r"`x` passed to evaluate must be a NumPy array.*Received: x="):
        model.evaluate(x, verbose=0)


def test_a_scalar_array_has_no_batch_dimension():
    model = classifier()
    with pytest.raises(ValueError, match=r"`x` passed to predict needs a batch \(first\) dimension"):
        model.predict(np.array(3.0, "float32"), verbose=0)


@pytest.mark.parametrize("what", ["fit", "evaluate", "predict"])
def test_callbacks_must_be_callbacks(what):
    model = classifier()
    call = {"fit": lambda cb: model.fit(X, Y, callbacks=cb, verbose=0),
            "evaluate": lambda cb: model.evaluate(X, Y, callbacks=cb, verbose=0),
            "predict": lambda cb: model.predict(X, callbacks=cb, verbose=0)}[what]
    with pytest.raises(TypeError, match=rf"`callbacks` passed to {what} must be a list of .*Callback.*of type object"):
        call(object())
    with pytest.raises(TypeError, match=r"Received: 'early' of type str"):
        call([lamina.callbacks.History(), "early"])


def test_set_weights_with_strings_is_refused_and_writes_nothing():
    model = classifier()
    dense = model.layers[0]
    kernel, bias = dense.get_weights()
    with pytest.raises(ValueError, match=r"'kernel' needs a numeric array of shape \(5, 8\)\. Received: str 'a'"):
        dense.set_weights(["a", "b"])
    with pytest.raises(ValueError, match=r"weight 'bias' needs a numeric array of shape \(8,\)\. Received: an array of "
                                         r"dtype <U1"):
        dense.set_weights([kernel + 1, np.full((8,), "b")])
    np.testing.assert_array_equal(dense.get_weights()[0], kernel)  # the good kernel was not written either
    with pytest.raises(ValueError, match=r"expects a list of 2 arrays\. Received: weights of type float"):
        dense.set_weights(1.0)


# ----------------------------------------------------------------------------- generators, batch by batch


def test_a_generator_batch_with_another_width_is_named():
    def narrow(i, xb, yb):
        return (xb[:, :4], yb) if i == 2 else None

    with pytest.raises(ValueError, match=r"Batch 2 of epoch 1 given to fit is invalid: .*expected shape=\(None, 5\), "
                                         r"found shape=\(16, 4\)"):
        classifier().fit(batches(bad=narrow), verbose=0)


def test_a_generator_batch_with_labels_out_of_range_is_named():
    def label_nine(i, xb, yb):
        if i == 2:
            yb[3] = 9

    with pytest.raises(ValueError, match=r"Batch 2 of epoch 1 given to fit is invalid: .*\[0, 3\).*9"):
        classifier().fit(batches(bad=label_nine), verbose=0)


def test_a_generator_batch_with_nan_is_named_and_no_weight_turns_nan():
    def nan(i, xb, yb):
        if i == 2:
            xb[3, 1] = np.nan

    model = classifier()
    with pytest.raises(ValueError, match=r"Batch 2 of epoch 1 given to fit is invalid: .*NaN or inf.*\(3, 1\)"):
        model.fit(batches(bad=nan), verbose=0)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    with pytest.raises(ValueError, match=r"Batch 2 given to evaluate is invalid: .*NaN or inf"):
        model.evaluate(batches(bad=nan), verbose=0)


def test_a_generator_batch_with_nan_sample_weights_is_named():
    def with_weights():
        for i, (xb, yb) in enumerate(batches()):
            sw = np.ones(len(xb), "float32")
            sw[5] = np.nan if i == 1 else 1.0
            yield xb, yb, sw

    with pytest.raises(ValueError, match=r"Batch 1 of epoch 1 given to fit is invalid: `sample_weight`.*\(5,\)"):
        classifier().fit(with_weights(), verbose=0)


# ----------------------------------------------------------------------------- lint: huge inputs


def test_lint_reports_huge_inputs_for_any_first_layer():
    model = classifier(first="relu")
    found = lamina.diagnostics.lint(model, X * 1e30, Y)
    assert [(f.rule, f.severity) for f in found] == [("inputs-huge", "warning")]
    assert f"values up to {np.abs(X).max() * 1e30:.3g} in absolute value" in found[0].message
    assert "(x - mean) / std" in found[0].fix
    assert found[0].layers == (model.layers[0].name,)
    assert lamina.diagnostics.lint(model, X, Y) == []
    from lamina.diagnostics.lint import HUGE

    edge = np.full((4, 5), HUGE, "float32")
    assert [f.rule for f in lamina.diagnostics.lint(model, edge, None)] == ["inputs-huge"]
    assert lamina.diagnostics.lint(model, edge * 0.99, None) == []
    # Into a tanh layer it replaces the milder inputs-unscaled hint rather than adding to it.
    assert [f.rule for f in lamina.diagnostics.lint(classifier(first="tanh"), X * 1e30, Y)] == ["inputs-huge"]


def test_fit_warns_about_huge_inputs():
    model = classifier(first="relu")
    with pytest.warns(LintWarning, match="inputs-huge"):
        model.fit(X * 1e5, Y, verbose=0)


def test_validation_data_wins_over_validation_split():
    steps = []
    counter = lamina.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: steps.append(batch))
    history = classifier().fit(X, Y, batch_size=16, validation_split=0.5, validation_data=(X[:8], Y[:8]),
                               callbacks=[counter], verbose=0)
    assert len(steps) == 4 and "val_loss" in history.history  # all 64 samples trained on


@pytest.mark.parametrize("kwargs, match", [
    ({"verbose": "x"}, r"fit\(\): `verbose` must be 'auto', 0, 1 or 2. Received: verbose='x'"),
    ({"verbose": 3}, r"Received: verbose=3"),
    ({"initial_epoch": "a"}, r"`initial_epoch` must be a non-negative integer. Received: initial_epoch='a'"),
    ({"initial_epoch": -1}, r"Received: initial_epoch=-1"),
])
def test_verbose_and_initial_epoch_are_checked_before_training(kwargs, match):
    model = classifier()
    before = weights_of(model)
    with pytest.raises(ValueError, match=match):
        model.fit(X, Y, epochs=1, **{"verbose": 0, **kwargs})
    assert_untouched(model, before)


def test_evaluate_and_predict_check_verbose():
    model = classifier()
    with pytest.raises(ValueError, match=r"evaluate\(\): `verbose` must be"):
        model.evaluate(X, Y, verbose="loud")
    with pytest.raises(ValueError, match=r"predict\(\): `verbose` must be"):
        model.predict(X, verbose=-1)


def test_set_weights_that_overflow_the_dtype_change_nothing():
    layer = layers.Dense(2)
    layer.build((None, 3))
    before = [w.copy() for w in layer.get_weights()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy cast warning either
        with pytest.raises(ValueError, match=r"weight 'bias' is float32, and the given values do not fit"):
            layer.set_weights([np.ones((3, 2)), np.array([1e300, 0.0])])
    for a, b in zip(before, layer.get_weights()):
        np.testing.assert_array_equal(a, b)  # the good kernel was not written either


def test_set_weights_count_message_survives_a_ragged_list():
    layer = layers.Dense(2)
    layer.build((None, 3))
    with pytest.raises(ValueError, match=r"expects 2 weight arrays.*Received: weights of shapes \['ragged'\]"):
        layer.set_weights([[[1.0], [1.0, 2.0]]])
