"""Functional graphs: layers called with several tensors, optional inputs, input structure and rank
standardization, graphs cut from the middle, Keras's error wording, restored structures."""

import collections
import warnings

import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.models import Functional, Model

RNG = np.random.default_rng(0)


def pair_layer(lib):
    """A layer taking two tensors: ``dense(x + y)``, or ``dense(x)`` when y is None."""

    class PairDense(lib.layers.Layer):
        def __init__(self, units=3, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.dense = lib.layers.Dense(units)

        def call(self, x, y=None):
            return self.dense(x if y is None else x + y)

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    return PairDense


def pair_model(lib, optional=False):
    a = lib.Input((4,), name="a")
    b = lib.Input((4,), name="b", optional=optional)
    out = pair_layer(lib)(3, name="pair")(a, b)
    return lib.Model({"a": a, "b": b}, out)


# ----------------------------------------------------------------------------- several positional tensors


@pytest.mark.oracle
def test_a_layer_called_with_two_tensors_records_both_and_matches_keras(keras):
    km, lm = pair_model(keras), pair_model(lamina)
    lm.set_weights(km.get_weights())
    a, b = RNG.normal(size=(5, 4)).astype("float32"), RNG.normal(size=(5, 4)).astype("float32")
    want = keras.ops.convert_to_numpy(km({"a": a, "b": b}))
    np.testing.assert_allclose(lm({"a": a, "b": b}), want, rtol=1e-5, atol=1e-6)
    node = lm.get_layer("pair")._inbound_nodes[0]
    assert len(node.call_args) == 1 and len(node.input_tensors) == 2
    # The config records both arguments, and the rebuilt model computes the same.
    config = lm.get_config()
    pair_cfg = next(c for c in config["layers"] if c["name"] == "pair")
    assert len(pair_cfg["inbound_nodes"][0]["args"]) == 2
    revived = Model.from_config(config, custom_objects={"PairDense": type(lm.get_layer("pair"))})
    revived.set_weights(lm.get_weights())
    np.testing.assert_allclose(revived({"a": a, "b": b}), want, rtol=1e-5, atol=1e-6)


def test_a_two_tensor_graph_trains_on_the_tape_and_clones():
    model = pair_model(lamina)
    x = {"a": RNG.normal(size=(8, 4)), "b": RNG.normal(size=(8, 4))}
    model.compile("sgd", "mse", jit_compile=True)
    with pytest.warns(UserWarning, match="called with 2 positional arguments"):
        model.fit(x, RNG.normal(size=(8, 3)), epochs=1, verbose=0)
    clone = lamina.models.clone_model(model)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(x), model(x), rtol=1e-6)


def test_symbolic_keyword_tensors_are_still_refused():
    a, b = lamina.Input((4,)), lamina.Input((4,))
    with pytest.raises(ValueError, match=r"symbolic keyword argument\(s\) \['y'\]"):
        pair_layer(lamina)()(a, y=b)


# ----------------------------------------------------------------------------- optional inputs


def test_an_optional_input_takes_none_in_calls_fit_and_generators():
    model = pair_model(lamina, optional=True)
    a = RNG.normal(size=(6, 4))
    np.testing.assert_allclose(model({"a": a, "b": None}), model.get_layer("pair").dense(a), rtol=1e-6)
    with pytest.warns(UserWarning, match="The structure of `inputs` doesn't match"):  # a list for a dict, as Keras
        np.testing.assert_allclose(model([a, None]), model({"a": a, "b": None}), rtol=1e-6)
    model.compile("sgd", "mse")
    y = RNG.normal(size=(6, 3))
    model.fit({"a": a, "b": None}, y, batch_size=3, epochs=1, verbose=0)
    model.evaluate({"a": a, "b": None}, y, verbose=0)
    assert model.predict({"a": a, "b": None}, verbose=0).shape == (6, 3)

    def batches():
        for _ in range(2):
            yield {"a": a, "b": None}, y

    model.fit(batches(), epochs=1, verbose=0)


def test_none_for_a_required_input_is_refused_everywhere():
    model = pair_model(lamina)
    with pytest.raises(ValueError, match="The input 'b' of model .* is not optional"):
        model({"a": np.ones((2, 4)), "b": None})
    x = lamina.Input((3,), name="x")
    single = Model(x, layers.Dense(1)(x))
    single.compile("sgd", "mse")
    with pytest.raises(ValueError, match="The input 'x' .* is not optional"):
        single.fit([None], np.ones((4, 1)), epochs=1, verbose=0)


# ----------------------------------------------------------------------------- input structure


def test_rank_standardization_squeezes_or_expands_a_trailing_one():
    x = lamina.Input((3,), batch_size=2)
    model = Functional(x, layers.Dense(3)(x))
    data = RNG.normal(size=(2, 3))
    np.testing.assert_allclose(model(data[..., None]), model(data), rtol=1e-6)
    x = lamina.Input((3, 1), batch_size=2)
    model = Functional(x, layers.Dense(3)(x))
    np.testing.assert_allclose(model(data), model(data[..., None]), rtol=1e-6)
    nested = [{"foo": lamina.Input((3,), name="my_input")}]
    model = Functional(nested, layers.Dense(3)(nested[0]["foo"]))
    with pytest.raises(ValueError, match=r"name 'my_input' and path '0.foo'.*incompatible shape \(2, 3, 4\)"):
        model(RNG.normal(size=(2, 3, 4)))


def test_a_list_for_dict_inputs_warns_once_or_fails_when_keys_are_unsorted():
    i1, i2 = lamina.Input((2,), name="i1"), lamina.Input((2,), name="i2")
    model = Model({"i1": i1, "i2": i2}, layers.Add()([i1, i2]))
    with pytest.warns(UserWarning, match="The structure of `inputs` doesn't match") as record:
        model.predict([np.ones((2, 2)), np.zeros((2, 2))], verbose=0)
        model([np.ones((2, 2)), np.zeros((2, 2))])
    assert len(record) == 1
    unsorted = Model({"i2": i2, "i1": i1}, layers.Add()([i1, i2]))
    with pytest.raises(ValueError, match="The structure of `inputs` doesn't match"):
        unsorted([np.ones((2, 2)), np.zeros((2, 2))])
    with pytest.raises(ValueError, match=r"expects 2 named input\(s\) with keys \['i2', 'i1'\]"):
        unsorted(np.ones((2, 2)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Model([i1, i2], layers.Add()([i1, i2])).predict((np.ones((2, 2)), np.ones((2, 2))), verbose=0)


def test_a_manual_input_spec_shape_is_checked():
    x = lamina.Input((None, 3))
    model = Functional(x, layers.Dense(2)(x))
    model.input_spec = layers.InputSpec(shape=(None, 4, 3))
    with pytest.raises(ValueError, match=r"expected shape=\(None, 4, 3\), found shape=\(2, 3, 3\)"):
        model(np.zeros((2, 3, 3)))
    assert model(np.zeros((2, 4, 3))).shape == (2, 4, 2)


# ----------------------------------------------------------------------------- graphs and errors


def test_a_model_cut_from_the_middle_gets_inputs_of_its_own():
    x = lamina.Input((None, 2), name="input")
    h1 = layers.Dense(3, name="dense1")(x)
    h2 = layers.Dense(4, name="dense2")(h1)
    out = layers.Dense(5, name="dense3")(h2)
    full = Functional(x, out)
    part = Functional(h1, h2)
    assert [type(la).__name__ for la in part.layers] == ["InputLayer", "Dense"]
    assert part.layers[1] is full.get_layer("dense2")  # the same layer and weights
    data = RNG.normal(size=(2, 6, 3))
    np.testing.assert_allclose(part(data), full.get_layer("dense2")(data), rtol=1e-6)


def test_keras_error_wording():
    i1, i2 = lamina.Input((2,), name="input1"), lamina.Input((2,), name="input2")
    with pytest.raises(ValueError, match=r"Output with path `output2` is not connected to `inputs`\. Graph disc"):
        Model(i1, {"output1": i1 * 2, "output2": i2 * 3})
    with pytest.raises(ValueError, match="All `inputs` values must be KerasTensors"):
        Functional({"a": "input_a", "b": i2}, i2 * 2)
    config = {"name": "m", "trainable": True, "layers": [
        {"class_name": "InputLayer", "name": "in", "config": {"batch_shape": [None, 2], "name": "in"},
         "inbound_nodes": []},
        {"class_name": "Dense", "name": "node_a", "config": {"name": "node_a", "units": 2},
         "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__",
                                      "config": {"shape": [None, 2], "dtype": "float32",
                                                 "keras_history": ["node_b", 0, 0]}}], "kwargs": {}}]}],
        "input_layers": [["in", 0, 0]], "output_layers": [["node_a", 0, 0]]}
    with pytest.raises(ValueError, match="Missing node: node_b"):
        Functional.from_config(config)


@pytest.mark.parametrize("kind", [tuple, list, "namedtuple"])
def test_restored_outputs_keep_their_container(kind):
    x = lamina.Input((3,), batch_size=2)
    h = layers.Dense(5)(x)
    a, b = layers.Dense(4)(h), layers.Dense(5)(h)
    outputs = collections.namedtuple("Out", "a b")(a, b) if kind == "namedtuple" else kind([a, b])
    model = Functional(x, outputs)
    want = tuple if kind == "namedtuple" else kind
    assert type(model(np.zeros((2, 3)))) is type(outputs)
    assert type(model.predict(np.zeros((2, 3)), verbose=0)) is type(outputs)
    if kind != "namedtuple":
        restored = Functional.from_config(model.get_config())
        assert isinstance(restored(np.zeros((2, 3))), want)
        assert isinstance(restored(lamina.Input((3,), batch_size=2)), want)


def test_nested_inputs_survive_json():
    x = lamina.Input((3,), batch_size=2, name="input_a")
    model = Functional([[x]], layers.Dense(4)(layers.Dense(5)(x)))
    text = model.to_json()
    assert lamina.models.model_from_json(text).to_json() == text


def test_compute_output_spec_describes_the_outputs_without_running_call():
    seen = []

    class Canary(layers.Layer):
        def call(self, x, training=False):
            seen.append(training)
            return x

        def compute_output_spec(self, x, training=False):
            return lamina.layers.keras_tensor.KerasTensor(x.shape, dtype=x.dtype)

    x = lamina.Input((3,), batch_size=2)
    model = Functional(x, Canary()(x))
    assert seen == []
    model(np.ones((2, 3)), training=True)
    assert seen == [True]


def test_a_model_subclass_and_a_custom_layer_revive_from_config():
    class CustomDense(layers.Layer):  # no get_config: the constructor's plain arguments make it
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.dense = layers.Dense(units)

        def call(self, x):
            return self.dense(x)

    x = lamina.Input((4,))
    model = Model(x, CustomDense(10)(x))
    assert model.get_layer(index=1).get_config()["units"] == 10
    revived = Model.from_config(model.get_config(), custom_objects={"CustomDense": CustomDense})
    assert revived.output_shape == (None, 10)

    class CustomModel(Model):
        def __init__(self, *args, param=1, **kwargs):
            super().__init__(*args, **kwargs)
            self.param = param

        def get_config(self):
            return super().get_config() | {"param": self.param}

    model = CustomModel(inputs=x, outputs=layers.Dense(5)(x), param=3)
    revived = CustomModel.from_config(model.get_config())
    assert type(revived) is CustomModel and revived.param == 3
