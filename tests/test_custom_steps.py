"""Public train_step / test_step / predict_step, overridable as in Keras's guide "Customizing what
happens in fit()" (its TensorFlow code, with ``lamina.GradientTape`` for ``tf.GradientTape``)."""

import numpy as np
import pytest

import lamina as keras
from lamina.models.trainer import Trainer, pack_x_y_sample_weight, unpack_x_y_sample_weight


def _data(n=64, d=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = (x @ rng.normal(size=(d, 1)) + 0.1).astype("float32")
    return x, y


def _graph(d=8, seed=1, cls=keras.Model):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(d,))
    hidden = keras.layers.Dense(4, activation="relu", kernel_regularizer=keras.regularizers.L2(0.01))(inputs)
    return cls(inputs, keras.layers.Dense(1)(hidden))


def update_metrics_as_the_guide_does(model, loss, y, y_pred, sample_weight=None) -> dict:
    """The guide's closing lines of a custom step: the "loss" tracker takes the loss, every other
    metric the targets and predictions; the results are the step's logs."""
    for metric in model.metrics:
        if metric.name == "loss":
            metric.update_state(loss)
        else:
            metric.update_state(y, y_pred, sample_weight=sample_weight)
    return {m.name: m.result() for m in model.metrics}


class GuideModel(keras.Model):
    """The guide's first example, with lamina's tape (its metric loop is update_metrics_as_the_guide_does)."""

    def train_step(self, data):
        x, y = data
        with keras.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred)
        trainable_vars = self.trainable_variables
        gradients = tape.gradient(loss, trainable_vars)
        self.optimizer.apply(gradients, trainable_vars)
        return update_metrics_as_the_guide_does(self, loss, y, y_pred)


def test_guide_train_step_equals_the_default_fit():
    x, y = _data()
    default = _graph()
    default.compile(optimizer="adam", loss="mse", metrics=["mae"])
    h_default = default.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    custom = _graph(cls=GuideModel)
    assert isinstance(custom, GuideModel) and not _is_default_train(custom)
    custom.compile(optimizer="adam", loss="mse", metrics=["mae"])
    h_custom = custom.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    for a, b in zip(default.get_weights(), custom.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # Equal batches: the guide's unweighted mean of batch losses equals lamina's batch-size-weighted one.
    assert sorted(h_custom.history) == ["loss", "mae"]
    for key in ("loss", "mae"):
        np.testing.assert_allclose(h_custom.history[key], h_default.history[key], rtol=1e-5)
        assert all(type(v) is float for v in h_custom.history[key])


def _is_default_train(model):
    return type(model).train_step is Trainer.train_step


@pytest.mark.oracle
def test_guide_train_step_matches_keras_default_fit(keras):
    """Keras's guide step on torch uses loss.backward(); mathematically it is Keras's default step."""
    x, y = _data()
    custom = _graph(cls=GuideModel)
    custom.compile(optimizer="adam", loss="mse", metrics=["mae"])
    k_inputs = keras.Input(shape=(8,))
    k_hidden = keras.layers.Dense(4, activation="relu", kernel_regularizer=keras.regularizers.L2(0.01))(k_inputs)
    k_model = keras.Model(k_inputs, keras.layers.Dense(1)(k_hidden))
    k_model.set_weights(custom.get_weights())
    k_model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    k_hist = k_model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    hist = custom.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    for a, b in zip(custom.get_weights(), k_model.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hist.history["loss"], k_hist.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(hist.history["mae"], k_hist.history["mae"], rtol=1e-5)


class OwnMetricsModel(keras.Model):
    """The guide's second example: its own trackers, a `metrics` property, compiled without a loss."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.mae_metric = keras.metrics.MeanAbsoluteError(name="mae")
        self.loss_fn = keras.losses.MeanSquaredError()

    def train_step(self, data):
        x, y = data
        with keras.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.loss_fn(y, y_pred)
        trainable_vars = self.trainable_variables
        gradients = tape.gradient(loss, trainable_vars)
        self.optimizer.apply(gradients, trainable_vars)
        self.loss_tracker.update_state(loss)
        self.mae_metric.update_state(y, y_pred)
        return {"loss": self.loss_tracker.result(), "mae": self.mae_metric.result()}

    @property
    def metrics(self):
        return [self.loss_tracker, self.mae_metric]


def test_own_metrics_without_compiled_loss():
    x, y = _data(n=48)
    model = _graph(cls=OwnMetricsModel)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    w0 = [w.copy() for w in model.get_weights()]
    seen = []
    cb = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(dict(logs)))
    hist = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[cb])
    assert sorted(hist.history) == ["loss", "mae"] and len(hist.history["loss"]) == 2
    # The trackers are reset each epoch (they are self.metrics): epoch 2's loss is the mean of its
    # three batch losses, recomputed here by hand with plain SGD on the same weights.
    model2 = _graph(cls=OwnMetricsModel)
    model2.set_weights(w0)
    losses = []
    for _epoch in range(2):
        for i in range(3):
            xb, yb = x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16]
            with keras.GradientTape() as tape:
                loss = keras.ops.mean(keras.ops.square(model2(xb, training=True) - yb))
            grads = tape.gradient(loss, model2.trainable_variables)
            for v, g in zip(model2.trainable_variables, grads):
                v.assign(v.numpy() - 0.01 * np.asarray(g))
            losses.append(float(np.asarray(keras.ops.convert_to_numpy(loss))))
    np.testing.assert_allclose(hist.history["loss"], [np.mean(losses[:3]), np.mean(losses[3:])], rtol=1e-5)
    assert len(seen) == 6 and all(type(v) is float for v in seen[0].values())
    for a, b in zip(model.get_weights(), model2.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class WeightedModel(keras.Model):
    """The guide's sample_weight example (it also passes the weights to the compiled metrics)."""

    def train_step(self, data):
        if len(data) == 3:
            x, y, sample_weight = data
        else:
            sample_weight = None
            x, y = data
        with keras.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred, sample_weight=sample_weight)
        trainable_vars = self.trainable_variables
        gradients = tape.gradient(loss, trainable_vars)
        self.optimizer.apply(gradients, trainable_vars)
        return update_metrics_as_the_guide_does(self, loss, y, y_pred, sample_weight)


def test_sample_weight_custom_step_equals_default():
    x, y = _data()
    sw = np.random.default_rng(3).uniform(0.1, 2.0, size=len(x)).astype("float32")
    default = _graph()
    default.compile(optimizer="adam", loss="mse", weighted_metrics=["mae"])
    h_default = default.fit(x, y, sample_weight=sw, batch_size=16, epochs=2, shuffle=False, verbose=0)
    custom = _graph(cls=WeightedModel)
    custom.compile(optimizer="adam", loss="mse", weighted_metrics=["mae"])
    lengths = []
    custom.train_step = lambda data: lengths.append(len(data)) or WeightedModel.train_step(custom, data)
    h_custom = custom.fit(x, y, sample_weight=sw, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(default.get_weights(), custom.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(h_custom.history["mae"], h_default.history["mae"], rtol=1e-5)
    # Without weights the same step takes the two-element batch.
    h_plain = custom.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert sorted(h_plain.history) == ["loss", "mae"]
    assert lengths == [3] * 8 + [2] * 4


class EvalModel(keras.Model):
    """The guide's test_step example."""

    def test_step(self, data):
        x, y = data
        y_pred = self(x, training=False)
        loss = self.compute_loss(y=y, y_pred=y_pred)
        return update_metrics_as_the_guide_does(self, loss, y, y_pred)


def test_custom_test_step_drives_evaluate():
    x, y = _data(n=40)
    model = _graph(cls=EvalModel)
    model.compile(loss="mse", metrics=["mae"])
    calls = []
    original = EvalModel.test_step
    model.test_step = lambda data: calls.append(len(data[0])) or original(model, data)
    model.make_test_function(force=True)
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert calls == [16, 16, 8]
    pred = model.predict(x, verbose=0)
    mae = np.mean(np.abs(pred - y))
    batch_mse = [np.mean((pred[i:i + 16] - y[i:i + 16]) ** 2) for i in (0, 16, 32)]
    penalty = sum(float(keras.ops.convert_to_numpy(p)) for p in model.losses)
    # The guide's loop updates the loss tracker once per batch, unweighted.
    np.testing.assert_allclose(logs["loss"], np.mean(batch_mse) + penalty, rtol=1e-5)
    np.testing.assert_allclose(logs["mae"], mae, rtol=1e-5)
    values = model.evaluate(x, y, batch_size=16, verbose=0)
    assert values == [logs["loss"], logs["mae"]]


def test_custom_test_step_returning_other_keys():
    class Other(keras.Model):
        def test_step(self, data):
            x, y = data
            return {"max_abs_error": keras.ops.max(keras.ops.abs(self(x) - y))}

    x, y = _data(n=20)
    model = _graph(cls=Other)
    model.compile(loss="mse")
    out = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    last = np.max(np.abs(model.predict(x[16:], verbose=0) - y[16:]))  # the last step's own logs
    assert list(out) == ["max_abs_error"] and type(out["max_abs_error"]) is float
    np.testing.assert_allclose(out["max_abs_error"], last, rtol=1e-6)
    assert model.test_on_batch(x, y) == pytest.approx(np.max(np.abs(model.predict(x, verbose=0) - y)))


def test_custom_predict_step_drives_predict():
    class Doubled(keras.Model):
        def predict_step(self, data):
            x, _, _ = unpack_x_y_sample_weight(data)
            return self(x, training=False) * 2.0

    x, _ = _data(n=30)
    model = _graph(cls=Doubled)
    plain = _graph()
    np.testing.assert_allclose(model.predict(x, verbose=0), 2 * plain.predict(x, verbose=0), rtol=1e-6)
    np.testing.assert_allclose(model.predict(x[:5], batch_size=2, verbose=0), 2 * plain.predict(x[:5]), rtol=1e-6)
    np.testing.assert_allclose(model.predict_on_batch(x[:3]), 2 * plain.predict_on_batch(x[:3]), rtol=1e-6)
    assert type(model.predict(x, verbose=0)) is np.ndarray


def test_default_fit_does_not_call_public_train_step():
    """fit runs lamina's own step directly unless train_step is overridden (no logs dict per batch)."""
    x, y = _data(n=64)
    model = _graph()
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    function = model.make_train_function()
    assert function.uses_default_step and model.make_train_function() is function
    calls = []
    original = Trainer.get_metrics_result
    model.get_metrics_result = lambda: calls.append(1) or original(model)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert calls == []  # neither train_step nor a per-batch logs dict ran
    # Overridden, it runs for every batch, through the same function object fit asked for.
    custom = _graph(cls=GuideModel)
    custom.compile(optimizer="adam", loss="mse", metrics=["mae"])
    assert not custom.make_train_function().uses_default_step
    steps = []
    original_step = GuideModel.train_step
    custom.train_step = lambda data: steps.append(1) or original_step(custom, data)
    custom.make_train_function(force=True)
    custom.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert len(steps) == 8


def test_train_on_batch_goes_through_train_function():
    x, y = _data(n=16)
    model = _graph(cls=GuideModel)
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    logs = model.train_on_batch(x, y, return_dict=True)
    assert sorted(logs) == ["loss", "mae"] and all(type(v) is float for v in logs.values())
    assert model.train_on_batch(x, y) == [pytest.approx(model.get_metrics_result()["loss"]),
                                         pytest.approx(model.get_metrics_result()["mae"])]
    default = _graph()
    default.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    assert sorted(default.train_on_batch(x, y, return_dict=True)) == ["loss", "mae"]


def test_compute_loss_metrics_and_unpack():
    x, y = _data(n=10)
    model = _graph()
    model.compile(loss="mse", metrics=["mae"])
    y_pred = model(x)
    loss = keras.ops.convert_to_numpy(model.compute_loss(x=x, y=y, y_pred=y_pred))
    penalty = sum(float(keras.ops.convert_to_numpy(p)) for p in model.losses)
    np.testing.assert_allclose(loss, np.mean((np.asarray(y_pred) - y) ** 2) + penalty, rtol=1e-6)
    assert [m.name for m in model.metrics] == ["loss", "mae"]  # built by compute_loss from the targets
    result = model.compute_metrics(x, y, y_pred)
    np.testing.assert_allclose(result["mae"], np.mean(np.abs(np.asarray(y_pred) - y)), rtol=1e-6)
    unlossed = _graph()
    unlossed.compile(optimizer="sgd")
    # As Keras: without a compiled loss the regularization penalty is the loss, and the weights it does
    # not reach get the optimizer's warning.
    with pytest.warns(UserWarning, match="Gradients do not exist"):
        unlossed.fit(x, y, verbose=0)
    assert unpack_x_y_sample_weight(x)[1] is None and unpack_x_y_sample_weight([x, y])[1] is y
    assert pack_x_y_sample_weight([x, x])[0][0] is x
    with pytest.raises(ValueError, match="Received: a tuple of length 4"):
        unpack_x_y_sample_weight((x, y, None, None))


def test_a_subclass_taking_two_positional_arguments_stays_subclassed():
    # Only the arguments Model.__init__ itself receives decide on a graph, as in Keras.
    class TwoLayers(keras.Model):
        def __init__(self, units, classes):
            super().__init__()
            self.hidden = keras.layers.Dense(units, activation="relu")
            self.out = keras.layers.Dense(classes)

        def call(self, x):
            return self.out(self.hidden(x))

    model = TwoLayers(8, 3)
    assert not isinstance(model, keras.models.Functional)
    assert model(np.ones((2, 4), "float32")).shape == (2, 3)

    class OwnGraph(keras.Model):
        def __init__(self):
            inputs = keras.Input((4,))
            super().__init__(inputs=inputs, outputs=keras.layers.Dense(2)(inputs))

    assert isinstance(OwnGraph(), keras.models.Functional)
