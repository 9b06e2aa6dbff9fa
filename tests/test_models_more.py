"""Model and training behaviours checked against real Keras (torch backend): compile's loss and metric
structures for several outputs, deferred key checks, Input(batch_size=...) and add_variable."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lamina

X = np.random.default_rng(0).random((8, 3)).astype("float32")
Y1 = np.random.default_rng(1).random((8, 1)).astype("float32")
Y2 = np.random.default_rng(2).integers(0, 2, (8, 1)).astype("float32")


def two_outputs(lib, as_dict=False, names=("output_a", "output_b"), keys=None):
    x = lib.Input(shape=(3,), name="input_a")
    a = lib.layers.Dense(1, name=names[0])(x)
    b = lib.layers.Dense(1, name=names[1], activation="sigmoid")(x)
    if as_dict:
        keys = keys or names
        return lib.Model(x, {keys[0]: a, keys[1]: b})
    return lib.Model(x, [a, b])


def same_weights(source, target):
    target.set_weights([np.asarray(w) for w in source.get_weights()])


def fit_keys(model, y, **compile_kwargs):
    model.compile(optimizer="sgd", **compile_kwargs)
    return sorted(model.fit(X, y, batch_size=2, epochs=1, verbose=0, shuffle=False).history)


@pytest.mark.parametrize("loss", [
    {"output_a": "mean_squared_error", "output_b": ["binary_crossentropy"]},
    ["mean_squared_error", ["binary_crossentropy"]],
])
def test_a_one_loss_list_is_that_outputs_loss(keras, loss):
    ours, theirs = two_outputs(lamina), two_outputs(keras)
    same_weights(ours, theirs)
    for model in (ours, theirs):
        model.compile(optimizer="sgd", loss=loss, loss_weights=[0.5, 2.0])
    got = ours.evaluate(X, [Y1, Y2], verbose=0, return_dict=True)
    want = theirs.evaluate(X, [Y1, Y2], verbose=0, return_dict=True)
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5)


@pytest.mark.parametrize("metrics", [
    ["mean_squared_error", ["mean_squared_error", "accuracy"]],
    ["mae", "mse"],  # as long as the outputs: one entry each, as Keras reads it
    {"output_b": ["mse", "accuracy"]},
])
def test_metrics_per_output_follow_keras(keras, metrics):
    loss = ["mean_squared_error", "binary_crossentropy"]
    got = fit_keys(two_outputs(lamina), (Y1, Y2), loss=loss, metrics=metrics)
    want = fit_keys(two_outputs(keras), (Y1, Y2), loss=loss, metrics=metrics)
    assert got == want


def test_one_output_in_a_list_takes_dict_metrics(keras):
    def build(lib):
        x = lib.Input(shape=(3,), name="input_a")
        return lib.Model(x, [lib.layers.Dense(1, name="output_a")(x)])

    kwargs = {"loss": ["mean_squared_error"], "metrics": {"output_a": ["mse", "mae"]},
              "weighted_metrics": {"output_a": "mse"}}
    assert fit_keys(build(lamina), Y1, **kwargs) == fit_keys(build(keras), Y1, **kwargs)


def test_dict_outputs_are_named_by_their_keys(keras):
    loss = {"a": "mean_squared_error", "b": "binary_crossentropy"}
    got = fit_keys(two_outputs(lamina, True, keys=("a", "b")), {"a": Y1, "b": Y2}, loss=loss)
    want = fit_keys(two_outputs(keras, True, keys=("a", "b")), {"a": Y1, "b": Y2}, loss=loss)
    assert got == want == ["a_loss", "b_loss", "loss"]


@pytest.mark.parametrize("as_dict,error,match", [
    (False, ValueError, "Expected keys"),
    (True, KeyError, "in the `loss` argument, can't be found"),
])
def test_unknown_loss_keys_fail_at_fit_not_compile(keras, as_dict, error, match):
    loss = {"output_a": "mean_squared_error", "output_c": "binary_crossentropy"}
    for lib in (lamina, keras):
        model = two_outputs(lib, as_dict)
        model.compile(optimizer="sgd", loss=loss)  # accepted, as Keras does
        with pytest.raises(error, match=match):
            model.fit(X, (Y1, Y2), batch_size=2, epochs=1, verbose=0)


@pytest.mark.parametrize("argument", ["metrics", "weighted_metrics"])
def test_unknown_metric_keys_fail_at_fit(keras, argument):
    for lib in (lamina, keras):
        model = two_outputs(lib)
        model.compile(optimizer="sgd", loss=["mse", "binary_crossentropy"], **{argument: {"output_c": ["mse"]}})
        with pytest.raises(ValueError, match=f"(?s)Invalid `{argument}`.*output_c"):
            model.fit(X, (Y1, Y2), batch_size=2, epochs=1, verbose=0)


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_a_fixed_input_batch_size_leaves_the_batch_axis_free(keras, kind):
    def build(lib):
        if kind == "sequential":
            return lib.Sequential([lib.layers.Input(shape=(2,), batch_size=4), lib.layers.Dense(1)])
        x = lib.Input(shape=(2,), batch_size=4)
        return lib.Model(x, lib.layers.Dense(1)(x))

    ours, theirs = build(lamina), build(keras)
    same_weights(ours, theirs)
    x = np.random.default_rng(3).standard_normal((16, 2)).astype("float32")
    y = np.random.default_rng(4).standard_normal((16, 1)).astype("float32")
    for rows in (16, 3):
        np.testing.assert_allclose(ours.predict(x[:rows], verbose=0), theirs.predict(x[:rows], verbose=0),
                                   rtol=1e-5, atol=1e-6)
    for model in (ours, theirs):
        model.compile(optimizer="sgd", loss="mse")
    got = ours.fit(x, y, batch_size=4, epochs=2, validation_split=0.25, shuffle=False, verbose=0).history
    want = theirs.fit(x, y, batch_size=4, epochs=2, validation_split=0.25, shuffle=False, verbose=0).history
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-4)
    np.testing.assert_allclose(got["val_loss"], want["val_loss"], rtol=1e-4)
    with pytest.raises(ValueError, match=r"expected shape=\(4, 2\), found shape=\(16, 3\)"):
        ours.predict(np.ones((16, 3)), verbose=0)  # the other axes are still checked


def test_add_variable_is_add_weight(keras):
    def build(lib):
        class Counting(lib.Model):
            def __init__(self):
                super().__init__()
                self.steps = self.add_variable(shape=(), initializer="zeros", trainable=False)
                self.scale = self.add_variable((1, 1), "ones", name="scale")
                self.dense = lib.layers.Dense(1)

            def call(self, x):
                self.steps.assign(self.steps + 1)
                return self.dense(x) * self.scale

        return Counting()

    models = {}
    for lib in (lamina, keras):
        model = build(lib)
        model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
        model.fit(X, Y1, batch_size=4, epochs=1, verbose=0)
        models[lib] = model
    ours, theirs = models[lamina], models[keras]
    assert [(v.name, tuple(v.shape), v.trainable) for v in ours.weights] == \
        [(v.name, tuple(v.shape), v.trainable) for v in theirs.weights]
    assert float(np.asarray(ours.steps)) == float(keras.ops.convert_to_numpy(theirs.steps)) == 2.0


def test_per_output_losses_are_logged_only_when_several_outputs_have_one(keras):
    kwargs = {"loss": {"output_b": "binary_crossentropy"}, "metrics": {"output_b": ["mse"]}}
    ys = {"output_a": Y1, "output_b": Y2}
    with pytest.warns(UserWarning, match="Gradients do not exist for variables"):  # output_a has no loss
        got = fit_keys(two_outputs(lamina, True), ys, **kwargs)
    # Keras warns too; recorded rather than pytest.warns, which would re-raise its torch backend's
    # NumPy deprecation warnings outside the oracle's ignore filter.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        want = fit_keys(two_outputs(keras, True), ys, **kwargs)
    assert any("Gradients do not exist for variables" in str(w.message) for w in caught)
    assert got == want == ["loss", "output_b_mse"]


# ----------------------------------------------------------------------------- optional inputs


def test_none_passes_only_to_an_optional_input(keras):
    def build(lib, optional):
        class Optional(lib.layers.Layer):
            def call(self, x, y=None):
                return x if y is None else x + y

            def compute_output_shape(self, shape):
                return shape

        a = lib.Input((2,), name="a")
        b = lib.Input((2,), name="b", optional=optional)
        return lib.Model({"a": a, "b": b}, lib.layers.Dense(2, name="d")(Optional()(a)))

    x = np.random.default_rng(5).random((2, 2)).astype("float32")
    ours, theirs = build(lamina, True), build(keras, True)
    same_weights(ours, theirs)
    np.testing.assert_allclose(ours({"a": x, "b": None}),
                               keras.ops.convert_to_numpy(theirs({"a": x, "b": None})), rtol=1e-6)
    for lib in (lamina, keras):
        with pytest.raises(ValueError, match="The input 'b'.* is not optional, but None was passed"):
            build(lib, False)({"a": x, "b": None})


# ----------------------------------------------------------------------------- clone_model


def weights_of(model):
    return [np.asarray(w.numpy() if hasattr(w, "numpy") else w) for w in model.weights]


def sequential(lib):
    return lib.Sequential([lib.layers.Input((3,), name="inp"), lib.layers.Dense(4, activation="relu", name="d1"),
                           lib.layers.Dense(2, name="d2")], name="seq")


def functional(lib):
    x = lib.Input((4,), name="x")
    h = lib.layers.Dense(4, activation="relu", name="h")(x)
    shared = lib.layers.Dense(4, activation="tanh", name="shared")
    y = lib.layers.Add(name="add")([shared(h), shared(x)])
    return lib.Model(x, {"out": lib.layers.Dense(1, name="o")(y)}, name="fm")


def describe(model):
    return (type(model).__name__, model.name, [layer.name for layer in model.layers],
            [tuple(w.shape) for w in model.weights], model.compiled)


@pytest.mark.parametrize("build", [sequential, functional])
def test_clone_model_has_the_architecture_and_new_weights(keras, build):
    ours, theirs = build(lamina), build(keras)
    ours.compile(optimizer="adam", loss="mse")
    theirs.compile(optimizer="adam", loss="mse")
    ours_clone, theirs_clone = lamina.models.clone_model(ours), keras.models.clone_model(theirs)
    assert describe(ours_clone) == describe(theirs_clone)
    assert ours_clone.get_compile_config() == ours.get_compile_config()
    assert not any(np.array_equal(a, b) for a, b in zip(weights_of(ours_clone), weights_of(ours)) if a.ndim == 2)
    # Shared layers stay shared: the shared Dense of the functional model is cloned once.
    assert len(ours_clone.weights) == len(ours.weights)
    x = np.random.default_rng(6).random((5, ours.inputs[0].shape[-1])).astype("float32")
    ours_clone.set_weights(ours.get_weights())
    np.testing.assert_allclose(_leaf(ours_clone.predict(x, verbose=0)), _leaf(ours.predict(x, verbose=0)), rtol=1e-6)


def _leaf(out):
    return out["out"] if isinstance(out, dict) else out


def test_clone_model_with_clone_and_call_functions(keras):
    def call_function(lib):
        def call(layer, *args, **kwargs):
            out = layer(*args, **kwargs)
            if layer.name == "h":
                out = lib.layers.Dropout(0.5, name="drop")(out)
            return out
        return call

    got, want = {}, {}
    for lib, into in ((lamina, got), (keras, want)):
        model = functional(lib)
        clone = lib.models.clone_model(model, clone_function=lambda layer: layer, call_function=call_function(lib))
        into["names"] = [layer.name for layer in clone.layers]
        into["reused"] = clone.get_layer("h") is model.get_layer("h")
        with pytest.raises(ValueError, match="`call_function`.*not supported with Sequential"):
            lib.models.clone_model(sequential(lib), call_function=call_function(lib))
    assert got == want == {"names": ["x", "h", "drop", "shared", "add", "o"], "reused": True}


def test_clone_model_recursive_clones_nested_models(keras):
    got, want = {}, {}
    for lib, into in ((lamina, got), (keras, want)):
        inner = sequential(lib)
        outer = lib.Sequential([lib.layers.Input((3,)), inner, lib.layers.Dense(1, name="top")], name="outer")
        for recursive in (False, True):
            clone = lib.models.clone_model(outer, recursive=recursive)
            into[recursive] = (describe(clone), clone.layers[0] is inner, type(clone.layers[0]).__name__)
    assert got == want


# ----------------------------------------------------------------------------- layers is read-only


@pytest.mark.parametrize("kind,match", [
    ("sequential", r"`Sequential.layers` attribute is reserved.*Use `add\(\)` and `pop\(\)`"),
    ("subclassed", r"`Model.layers` attribute is reserved"),
    ("functional", r"`Model.layers` attribute is reserved"),
])
def test_assigning_layers_is_refused(keras, kind, match):
    def build(lib):
        if kind == "sequential":
            return lib.Sequential([lib.layers.Dense(2)])
        if kind == "subclassed":
            return lib.Model()
        x = lib.Input((3,))
        return lib.Model(x, lib.layers.Dense(2)(x))

    for lib in (lamina, keras):
        model = build(lib)
        with pytest.raises(AttributeError, match=match):
            model.layers = [lib.layers.Dense(4)]
    ours = build(lamina)  # and nothing was tracked on the way (Keras's subclassed Model keeps the Dense)
    with pytest.raises(AttributeError):
        ours.layers = [lamina.layers.Dense(4)]
    assert [type(layer).__name__ for layer in ours.layers] == [type(layer).__name__ for layer in build(lamina).layers]


# ----------------------------------------------------------------------------- Sequential's input


def test_sequential_input_conflicts_are_refused_as_in_keras(keras):
    for lib in (lamina, keras):
        model = lib.Sequential()
        model.add(lib.Input(shape=(2,), batch_size=3))
        for second in (lib.Input(shape=(2,), batch_size=3), lib.layers.InputLayer(shape=(2,), batch_size=3)):
            with pytest.raises(ValueError, match=r"has already been configured to use input shape \(3, 2\)"):
                model.add(second)
        model.add(lib.layers.Dense(2))
        with pytest.raises(ValueError, match=r"already been configured.*\(3, 2\)"):
            model.build((3, 4))
        model.build((3, 2))  # the configured shape itself is fine
        with pytest.raises(ValueError, match="cannot be built because it has no layers"):
            lib.Sequential()(np.random.random((3, 2)))


def test_two_whole_inputs_for_a_one_input_model_are_refused(keras):
    for lib in (lamina, keras):
        x = lib.Input((4,))
        model = lib.Model(x, lib.layers.Dense(2)(x))
        with pytest.raises(ValueError, match=r"expects 1 .*input"):
            model([np.zeros((2, 4)), np.zeros((2, 4))])
