"""InputLayer arguments, Sequential's graph and structured inputs, compile() losses over nested outputs,
state trees and export."""

import collections

import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.layers.keras_tensor import KerasTensor
from lamina.models import Functional, Model, Sequential

RNG = np.random.default_rng(0)


# ----------------------------------------------------------------------------- InputLayer


def test_input_layer_wraps_a_tensor_and_checks_the_arguments_given_with_it():
    tensor = KerasTensor((2, 3), dtype="float32")
    layer = layers.InputLayer(input_tensor=tensor)
    assert layer.output is tensor and layer.batch_shape == (2, 3) and tensor._keras_history[0] is layer
    assert lamina.Input(tensor=KerasTensor((None, 5))).shape == (None, 5)
    for kwargs, word in (({"shape": (2, 4)}, "shape"), ({"batch_shape": (2, 4)}, "batch_shape"),
                         ({"batch_size": 5}, "batch_size"), ({"dtype": "float16"}, "dtype"),
                         ({"sparse": True}, "sparse")):
        with pytest.raises(ValueError, match=f"cannot provide an incompatible `{word}`"):
            layers.InputLayer(input_tensor=tensor, **kwargs)
    layers.InputLayer(shape=(3,), batch_size=2, sparse=False, dtype="float32", input_tensor=tensor)
    with pytest.raises(ValueError, match="Argument `input_tensor` must be a KerasTensor"):
        layers.InputLayer(shape=(2, 3), input_tensor=np.zeros((2, 3)))


def test_input_layer_shapes_flags_and_deprecations():
    assert layers.InputLayer(shape=(np.int64(32),)).batch_shape == (None, 32)
    with pytest.raises(ValueError, match="cannot pass both `batch_size` and `batch_shape`"):
        layers.InputLayer(batch_size=4, batch_shape=(2, 3))
    for flag in ("sparse", "ragged"):
        with pytest.raises(ValueError, match=f"`{flag}=True` is not supported"):
            layers.InputLayer(shape=(2,), **{flag: True})
    dense = layers.InputLayer(shape=(2,))
    assert dense.sparse is False and dense.ragged is False and dense.output.sparse is False
    with pytest.warns(UserWarning, match="Argument `input_shape` is deprecated. Use `shape` instead."):
        layer = layers.InputLayer(input_shape=(2, 3), batch_size=4)
    assert layer.batch_shape == (4, 2, 3)
    assert layers.InputLayer(shape=(32,)).call() is None


# ----------------------------------------------------------------------------- Sequential


def test_a_built_sequential_holds_its_graph_as_a_functional_model():
    model = Sequential([layers.Dense(4), layers.Dense(5)])
    assert model._functional is None and not hasattr(model, "inputs") and not hasattr(model, "outputs")
    x = RNG.normal(size=(3, 2))
    y = model(x)
    functional = model._functional
    assert type(functional) is Functional and functional.layers[1:] == model.layers
    np.testing.assert_allclose(functional(x), y, rtol=1e-6)
    assert model._functional is functional  # kept while the graph stands
    model.add(layers.Dense(2))
    assert model._functional is not functional and model._functional.output_shape == (None, 2)


def test_sequential_runs_list_and_dict_inputs_layer_by_layer():
    seen = []

    class Passthrough(layers.Layer):
        def call(self, inputs):
            seen.append(type(inputs))
            return inputs

    pair = [RNG.normal(size=(3, 2)), RNG.normal(size=(3, 2))]
    assert type(Sequential([Passthrough()])(pair)) is list
    assert type(Sequential([Passthrough()])({"a": pair[0], "b": pair[1]})) is dict
    assert seen == [list, dict]
    dense = Sequential([layers.Dense(2)])
    np.testing.assert_allclose(dense([pair[0]]), dense(pair[0]))  # a list of one array is that array


def test_sequential_layers_take_a_single_required_input():
    class TwoArgs(layers.Layer):
        def call(self, inputs, training):
            return inputs

    model = Sequential([TwoArgs()])
    with pytest.raises(ValueError, match="can only have a single required positional argument"):
        model.build((None, 2))


# ----------------------------------------------------------------------------- nested losses


def struct_model(lib, kind):
    x = lib.Input((3,), name="x")
    y1 = lib.layers.Dense(1, name="y1", activation="sigmoid")(x)
    y2 = lib.layers.Dense(1, name="y2", activation="sigmoid")(x)
    return lib.Model(x, kind([y1, y2]))


def sum_mae(lib):
    def whole(y_true, y_pred):  # a loss over a whole structure of outputs
        return sum(lib.losses.mean_absolute_error(t, p) for t, p in zip(lib.tree.flatten(y_true),
                                                                        lib.tree.flatten(y_pred)))
    return whole


@pytest.mark.oracle
@pytest.mark.parametrize("kind,other", [(list, tuple), (tuple, list)])
def test_a_loss_on_the_whole_output_and_one_per_output_match_keras(keras, kind, other):
    x = RNG.normal(size=(8, 3)).astype("float32")
    y = kind([RNG.uniform(size=(8, 1)).astype("float32"), RNG.uniform(size=(8, 1)).astype("float32")])
    histories = []
    km = struct_model(keras, kind)
    lm = struct_model(lamina, kind)
    lm.set_weights(km.get_weights())
    for model, lib in ((km, keras), (lm, lamina)):
        loss = other([sum_mae(lib), kind(["mse", "binary_crossentropy"])])
        model.compile(lib.optimizers.SGD(0.1), loss=loss, loss_weights=other([0.5, kind([2.0, 1.0])]),
                      metrics=[["mae"], ["mae"]])
        histories.append(model.fit(x, y, batch_size=4, shuffle=False, epochs=2, verbose=0).history)
    k_hist, l_hist = histories
    assert sorted(l_hist) == sorted(k_hist) == ["loss", "y1_loss", "y1_mae", "y1_y2_loss", "y2_loss", "y2_mae"]
    for key in k_hist:
        np.testing.assert_allclose(l_hist[key], k_hist[key], rtol=1e-4, err_msg=key)


@pytest.mark.oracle
def test_losses_over_deeply_nested_outputs_match_keras(keras):
    def build(lib):
        x = lib.Input((3,), name="x")
        y1, y2, y3 = (lib.layers.Dense(1, name=f"y{i}", activation="sigmoid")(x) for i in (1, 2, 3))
        return lib.Model(x, {"a": (y1, y2), "b": {"b1": y1, "b2": y2}, "d": y3})

    x = RNG.normal(size=(8, 3)).astype("float32")
    t1, t2, t3 = (RNG.uniform(size=(8, 1)).astype("float32") for _ in range(3))
    y = {"a": (t1, t2), "b": {"b1": t1, "b2": t2}, "d": t3}
    km, lm = build(keras), build(lamina)
    lm.set_weights(km.get_weights())
    results = []
    for model, lib in ((km, keras), (lm, lamina)):
        model.compile(lib.optimizers.SGD(0.1), loss={"a": [sum_mae(lib), (None, "mse")],
                                                     "b": {"b1": "mae"}, "d": "mse"})
        results.append(model.fit(x, y, batch_size=4, shuffle=False, epochs=1, verbose=0).history)
    assert sorted(results[1]) == sorted(results[0]) == ["a/y2_loss", "a_loss", "b/b1_loss", "d_loss", "loss"]
    for key in results[0]:
        np.testing.assert_allclose(results[1][key], results[0][key], rtol=1e-4, err_msg=key)
    assert isinstance(lm.predict(x, verbose=0)["a"], tuple)
    lm.compile("sgd", loss={"a": [sum_mae(lamina), (None, "mse")], "d": "mse"}, metrics=["mae"])
    with pytest.raises(ValueError, match="compiled metrics are read one output at a time, but the predictions"):
        lm.fit(x, y, verbose=0)


def test_a_same_container_loss_over_single_tensors_fails_in_keras_words():
    model = struct_model(lamina, tuple)

    def whole(y_true, y_pred):  # meant for the whole tuple, but a same-container loss gives it one output
        lamina.tree.assert_same_structure(model.output, y_true)
        return sum_mae(lamina)(y_true, y_pred)

    model.compile("sgd", loss=(whole, (sum_mae(lamina), sum_mae(lamina))))
    y = (np.ones((4, 1)), np.ones((4, 1)))
    with pytest.raises(ValueError, match="expected a tuple of length 2, got a ndarray"):
        model.fit(np.ones((4, 3)), y, verbose=0)


def test_a_namedtuple_of_losses_and_an_overridden_compute_loss():
    out = collections.namedtuple("Out", ["y1", "y2"])
    x = lamina.Input((3,), name="x")
    model = Model(x, out(layers.Dense(1, name="y1")(x), layers.Dense(1, name="y2")(x)))
    model.compile("sgd", loss=[sum_mae(lamina), out("mse", "mae")])
    assert isinstance(model.predict(np.ones((4, 3)), verbose=0), out)
    hist = model.fit(np.ones((4, 3)), out(np.ones((4, 1)), np.zeros((4, 1))), verbose=0).history
    assert sorted(hist) == ["loss", "y1_loss", "y1_y2_loss", "y2_loss"]

    calls = []

    class Split(Model):
        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            calls.append(training)
            return super().compute_loss(x, y, [y_pred, y_pred], sample_weight, training)

    inputs = lamina.Input((3,))
    model = Split(inputs, layers.Dense(1, name="a")(inputs))
    model.compile("sgd", loss=["mean_squared_error", "mean_absolute_error"])
    hist = model.fit(np.ones((4, 3)), (np.ones((4, 1)), np.zeros((4, 1))), batch_size=2, verbose=0).history
    assert sorted(hist) == ["loss", "mean_absolute_error_loss", "mean_squared_error_loss"]
    assert calls == [True, True]
    np.testing.assert_allclose(hist["loss"][0], hist["mean_squared_error_loss"][0]
                               + hist["mean_absolute_error_loss"][0], rtol=1e-5)


# ----------------------------------------------------------------------------- state tree, export


def test_state_tree_round_trips_and_refuses_duplicates():
    x = lamina.Input((3,), name="input_a")
    model = Model(x, layers.Dense(1, name="output_a")(x))
    model.compile(loss="mse", optimizer="adam")
    tree = model.get_state_tree()
    assert sorted(tree) == ["metrics_variables", "non_trainable_variables", "optimizer_variables",
                            "trainable_variables"]
    assert tree["trainable_variables"]["output_a"]["kernel"].shape == (3, 1)
    adam = model.optimizer.name  # "adam", or "adam_<n>" after other Adams
    assert sorted(tree["optimizer_variables"][adam]) == ["iteration", "learning_rate"]
    assert sorted(tree["metrics_variables"]["loss"]) == ["count", "total"]
    model.set_state_tree({"trainable_variables": {"output_a": {"kernel": [[0.6], [0.7], [1.8]], "bias": [0.5]}},
                          "optimizer_variables": {adam: {"learning_rate": 1e-5}}})
    assert float(model.optimizer.variables[1].numpy()) == pytest.approx(1e-5)
    np.testing.assert_allclose(model.get_state_tree("numpy_array")["trainable_variables"]["output_a"]["kernel"],
                               [[0.6], [0.7], [1.8]])
    with pytest.raises(ValueError, match="no trainable_variables variable at path 'output_b/kernel'"):
        model.set_state_tree({"trainable_variables": {"output_b": {"kernel": [[0.0]]}}})

    class Twice(Model):
        def __init__(self):
            super().__init__()
            self.d1 = layers.Dense(2, name="same")
            self.d2 = layers.Dense(2, name="same")

        def call(self, x):
            return self.d2(self.d1(x))

    twice = Twice()
    twice(np.ones((1, 2)))
    with pytest.raises(ValueError, match="The following variable path is found twice in the model"):
        twice.get_state_tree()


def test_export_names_the_bad_format_or_says_lamina_cannot_write_it():
    x = lamina.Input((3,))
    model = Model(x, layers.Dense(1)(x))
    with pytest.raises(ValueError, match=r"Unrecognized format=bad_format\. Supported formats are"):
        model.export("out", format="bad_format")
    with pytest.raises(NotImplementedError, match="`export_saved_model` only currently supports the tensorflow"):
        model.export("out")
    with pytest.raises(NotImplementedError, match="format='onnx'"):
        model.export("out", format="onnx")
