"""serialize_keras_object / deserialize_keras_object beyond layers (marker values, shared objects, safe-mode
scope, config checks) and the argument rules of save_model / load_model / save_weights / load_weights,
with Keras 3 as the oracle for the config format."""

import json
import logging
import os
import warnings

import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.saving import FileFormatError, saving_api
from lamina.saving import serialization_lib as sl
from lamina.saving.errors import MissingFileError


def roundtrip(obj, **kwargs):
    config = json.loads(json.dumps(sl.serialize_keras_object(obj)))
    return config, sl.deserialize_keras_object(config, **kwargs)


@pytest.fixture
def safe_mode_reset():
    yield
    lamina.backend.set_safe_mode_override(None)


class SharedSquare:
    """A callable object with a config: what two layers may share as activation."""

    def __call__(self, x):
        return x ** 2

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls()


class ActivationHolder(layers.Layer):
    """A custom layer whose get_config returns its activation object itself (Keras serializes it)."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = sl.deserialize_keras_object(activation) if isinstance(activation, dict) else activation

    def call(self, x):
        return self.activation(x)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class Wrapping(layers.Wrapper):
    def call(self, x):
        return self.layer(x)


CUSTOM = {"SharedSquare": SharedSquare, "ActivationHolder": ActivationHolder, "Wrapping": Wrapping}


# ------------------------------------------------------------------------------------ marker values


@pytest.mark.oracle
def test_slices_ellipsis_tuples_and_arrays_serialize_as_keras_does_and_come_back(keras):
    from keras.src.saving import serialization_lib as ks

    for obj in (slice(None, 20, 1), slice(None, np.array([0, 1]), 1), Ellipsis, (1, "a", b"x"), b"hi",
                np.array([1.0, 2.0]), {"k": (slice(1, 2), ...)}):
        assert sl.serialize_keras_object(obj) == ks.serialize_keras_object(obj), obj
    _, back = roundtrip(slice(None, 20, 1))
    assert back == slice(None, 20, 1)
    _, back = roundtrip(Ellipsis)
    assert back is Ellipsis
    _, back = roundtrip(slice(None, np.array([0, 1]), 1))
    assert back.stop.tolist() == [0, 1]


def test_tensor_entries_load_as_arrays():
    entry = {"class_name": "__tensor__", "config": {"value": [[1.0, 2.0]], "dtype": "float32"}}
    value = sl.deserialize_keras_object(entry)
    assert value.dtype == np.float32 and value.tolist() == [[1.0, 2.0]]


# ------------------------------------------------------------------------------------- shared objects


def test_object_sharing_scope_writes_one_id_and_rebuilds_one_object():
    act = SharedSquare()
    pair = [ActivationHolder(act), ActivationHolder(act)]
    with sl.ObjectSharingScope():
        config, back = roundtrip(pair, custom_objects=CUSTOM)
    ids = [c["config"]["activation"].get("shared_object_id") for c in config]
    assert ids[0] is not None and ids[0] == ids[1]
    assert back[0].activation is back[1].activation
    assert isinstance(back[0].activation, SharedSquare)
    # without the scope each entry is written and rebuilt on its own
    config, back = roundtrip(pair, custom_objects=CUSTOM)
    assert "shared_object_id" not in config[0]["config"]["activation"]
    assert back[0].activation is not back[1].activation


def shared_in_wrapper(K, wrapper_cls):
    a, b = K.Input((2,)), K.Input((2,))
    dense = K.layers.Dense(1)
    return K.Model([a, b], [dense(a), wrapper_cls(dense)(b)])


def test_a_layer_shared_by_a_model_and_a_wrapper_stays_one_layer():
    with sl.ObjectSharingScope():
        model = shared_in_wrapper(lamina, Wrapping)
        _, back = roundtrip(model, custom_objects=CUSTOM)
    assert back.layers[2] is back.layers[3].layer
    x = [np.ones((3, 2), "float32")] * 2
    back.set_weights(model.get_weights())
    for got, want in zip(back.predict(x, verbose=0), model.predict(x, verbose=0)):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_a_layer_met_inside_its_wrapper_first_is_still_shared():
    a, b = lamina.Input((2,)), lamina.Input((2,))
    dense = layers.Dense(1)
    wrapper = Wrapping(dense)
    model = lamina.Model([a, b], [wrapper(a), dense(b)])
    assert model.layers.index(wrapper) < model.layers.index(dense)
    with sl.ObjectSharingScope():
        config, back = roundtrip(model, custom_objects=CUSTOM)
    entries = {c["class_name"]: c for c in config["config"]["layers"]}
    inner = entries["Wrapping"]["config"]["layer"]
    assert inner["shared_object_id"] == entries["Dense"]["shared_object_id"]
    wrapper_back = next(x for x in back.layers if isinstance(x, Wrapping))
    assert wrapper_back.layer is next(x for x in back.layers if type(x) is layers.Dense)


@pytest.mark.oracle
def test_keras_written_shared_layer_loads_as_one_layer(keras):
    from keras.src.saving import serialization_lib as ks

    class KWrapping(keras.layers.Wrapper):
        def call(self, x):
            return self.layer(x)

    with ks.ObjectSharingScope():
        config = json.loads(json.dumps(ks.serialize_keras_object(shared_in_wrapper(keras, KWrapping))))
    wrapper_config = config["config"]["layers"][3]
    wrapper_config["class_name"] = "Wrapping"
    with sl.ObjectSharingScope():
        back = sl.deserialize_keras_object(config, custom_objects=CUSTOM)
    assert back.layers[2] is back.layers[3].layer


# ------------------------------------------------------------------------------- nested objects in configs


def test_a_custom_layers_config_objects_are_serialized_as_keras_entries():
    holder = ActivationHolder(layers.ReLU(name="inner"))
    config, back = roundtrip(holder, custom_objects=CUSTOM)
    entry = config["config"]["activation"]
    assert (entry["module"], entry["class_name"], entry["registered_name"]) == ("keras.layers", "ReLU", None)
    assert isinstance(back.activation, layers.ReLU) and back.activation.name == "inner"


@pytest.mark.oracle
def test_a_layer_given_as_activation_round_trips_with_keras_both_ways(keras):
    from keras.src.saving import serialization_lib as ks

    mine = layers.Dense(4, activation=layers.LeakyReLU(negative_slope=0.15, name="leaky"))
    theirs = keras.layers.Dense(4, activation=keras.layers.LeakyReLU(negative_slope=0.15, name="leaky"))
    mine_config = json.loads(json.dumps(sl.serialize_keras_object(mine)))
    theirs_config = json.loads(json.dumps(ks.serialize_keras_object(theirs)))
    assert mine_config["config"]["activation"] == theirs_config["config"]["activation"]
    into_lamina = sl.deserialize_keras_object(theirs_config)
    assert isinstance(into_lamina.activation, layers.LeakyReLU) and into_lamina.activation.negative_slope == 0.15
    into_keras = ks.deserialize_keras_object(mine_config)
    assert isinstance(into_keras.activation, keras.layers.LeakyReLU) and into_keras.activation.name == "leaky"


def test_functional_subclass_whose_config_holds_its_init_arguments_round_trips():
    class TwoUnits(lamina.Model):
        def __init__(self, units=2):
            a = lamina.Input((3,))
            super().__init__(a, layers.Dense(units)(a))
            self.units = units

        def get_config(self):
            return {"units": self.units}

    _, back = roundtrip(TwoUnits(units=5), custom_objects={"TwoUnits": TwoUnits})
    assert isinstance(back, TwoUnits) and back.units == 5 and back.output_shape == (None, 5)


# ---------------------------------------------------------------------------------------- safe mode


def lambda_layer():
    return layers.Lambda(lambda x: x * 2.0)


def test_safe_mode_scope_overrides_the_argument_and_is_undone(safe_mode_reset):
    config = json.loads(json.dumps(sl.serialize_keras_object(lambda_layer())))
    with sl.SafeModeScope(True), pytest.raises(ValueError, match="arbitrary code execution"):
        sl.deserialize_keras_object(config, safe_mode=False)
    with sl.SafeModeScope(False):
        assert sl.in_safe_mode() is False
        back = sl.deserialize_keras_object(config)  # the scope wins over safe_mode's default True
    np.testing.assert_allclose(back(np.ones((1, 2), "float32")), [[2.0, 2.0]])
    assert sl.in_safe_mode() is None
    lamina.config.enable_unsafe_deserialization()
    with sl.SafeModeScope(True):
        assert sl.in_safe_mode() is True
    assert sl.in_safe_mode() is False  # the global setting is back


def test_nested_deserialization_inside_from_config_inherits_safe_mode(safe_mode_reset):
    code_entry = json.loads(json.dumps(sl.serialize_keras_object(lambda_layer())))["config"]["function"]
    lambda_entry = {"class_name": "__lambda__", "config": {"value": [code_entry["config"]["code"], None, None]}}
    holder = {"module": "tests", "class_name": "ActivationHolder", "registered_name": None,
              "config": {"name": "h", "trainable": True, "activation": lambda_entry}}
    with pytest.raises(ValueError, match="arbitrary code execution"):
        sl.deserialize_keras_object(holder, custom_objects=CUSTOM)
    back = sl.deserialize_keras_object(holder, custom_objects=CUSTOM, safe_mode=False)
    assert back.activation(3.0) == 6.0


def test_a_bare_lambda_round_trips_only_with_safe_mode_off(safe_mode_reset, keras):
    """As Keras: serializing a lambda writes its bytecode with a warning; loading needs safe_mode=False, and
    Keras reads lamina's entry (and lamina Keras's)."""
    with pytest.warns(UserWarning, match="lambda is being serialized"):
        config = json.loads(json.dumps(sl.serialize_keras_object({"activation": lambda x: x ** 2})))
    assert config["activation"]["class_name"] == "__lambda__"
    with pytest.raises(ValueError, match="arbitrary code execution"):
        sl.deserialize_keras_object(config)
    assert sl.deserialize_keras_object(config, safe_mode=False)["activation"](3) == 9
    theirs = keras.saving.deserialize_keras_object(config, safe_mode=False)
    assert theirs["activation"](3) == 9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras's own warning about the lambda
        keras_config = json.loads(json.dumps(keras.saving.serialize_keras_object({"loss": lambda y, p: y - p})))
    assert sl.deserialize_keras_object(keras_config, safe_mode=False)["loss"](5, 2) == 3


# ------------------------------------------------------------------------------------- config checks


@pytest.mark.parametrize("config, message", [
    ({"class_name": "Dense", "config": [1, 2, 3]}, "Expected 'config' to be a dict for 'Dense'"),
    ({"class_name": "__typespec__", "config": "no"}, "Expected 'config' to be a list or a tuple"),
    ({"class_name": "function", "config": ["not", "a", "name"]}, "Expected 'config' to be a non-null str"),
])
def test_malformed_entries_raise_type_errors_naming_what_was_expected(config, message):
    with pytest.raises(TypeError, match=message):
        sl.deserialize_keras_object(config)


@pytest.mark.parametrize("config", [
    {"class_name": "Dense", "module": "keras.layers", "registered_name": "subprocess.Popen", "config": {"units": 1}},
    {"class_name": "Dense", "module": "keras.layers", "registered_name": "pkg>MyDense", "config": {"units": 1}},
    {"class_name": "function", "module": "builtins", "registered_name": "other", "config": "relu"},
])
def test_a_registered_name_on_a_builtin_entry_is_refused(config):
    with pytest.raises(FileFormatError, match="resolved to a Keras built-in"):
        sl.deserialize_keras_object(config)


@pytest.mark.parametrize("registered", [None, "", "Dense"])
def test_builtin_class_entries_with_their_own_or_no_registered_name_load(registered):
    config = {"class_name": "Dense", "module": "keras.layers", "registered_name": registered, "config": {"units": 1}}
    assert isinstance(sl.deserialize_keras_object(config), layers.Dense)


@pytest.mark.parametrize("registered", ["function", "kl_divergence"])
def test_builtin_function_entries_with_their_own_or_the_class_name_load(registered):
    config = {"class_name": "function", "module": "builtins", "registered_name": registered, "config": "kl_divergence"}
    assert sl.deserialize_keras_object(config) is lamina.metrics.kl_divergence


def test_a_function_saved_by_its_bare_name_finds_its_registration():
    @lamina.saving.register_keras_serializable(package="ser_more_a")
    def cube_ser_more(x):
        return x ** 3

    bare = {"module": "builtins", "class_name": "function", "config": "cube_ser_more", "registered_name": "function"}
    assert sl.deserialize_keras_object(bare) is cube_ser_more
    full = dict(bare, config="ser_more_a>cube_ser_more")
    assert sl.deserialize_keras_object(full) is cube_ser_more

    @lamina.saving.register_keras_serializable(package="ser_more_b", name="cube_ser_more")
    def other(x):
        return x ** 3

    with pytest.raises(ValueError, match=r"several registered objects match it: \['ser_more_a>cube_ser_more', "
                                         r"'ser_more_b>cube_ser_more'\]"):
        sl.deserialize_keras_object(bare)


def test_sequential_configs_need_a_name_and_layer_dicts():
    dense = {"class_name": "Dense", "module": "keras.layers", "config": {"units": 4}}
    nameless = {"class_name": "Sequential", "module": "keras", "config": {"layers": [dense]}}
    with pytest.raises(ValueError, match="must be a dictionary containing the 'name' and 'layers' keys"):
        sl.deserialize_keras_object(nameless)
    malformed = {"class_name": "Sequential", "module": "keras", "config": {"name": "s", "layers": [dense, {}]}}
    with pytest.raises(ValueError, match="Expected a dictionary containing a 'config' key"):
        sl.deserialize_keras_object(malformed)


# -------------------------------------------------------------------------------------- saving_api


def small_model():
    return lamina.Sequential([lamina.Input((3,)), layers.Dense(5), layers.Dense(2)])


def test_save_format_is_deprecated(tmp_path, caplog):
    model = small_model()
    with pytest.raises(ValueError, match=r"The `save_format` argument is deprecated.*save_format='tf'"):
        saving_api.save_model(model, tmp_path / "model.txt", save_format="tf")
    with caplog.at_level(logging.WARNING, logger="lamina"):
        saving_api.save_model(model, tmp_path / "model.keras", save_format="keras")
    assert "The `save_format` argument is deprecated" in caplog.text
    assert os.path.isfile(tmp_path / "model.keras")


def test_unsupported_save_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"The following argument\(s\) are not supported by save_model: "
                                         r"\['random_arg'\]"):
        saving_api.save_model(small_model(), tmp_path / "m.keras", random_arg=True)


def test_saving_h5_logs_that_the_format_is_legacy(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="lamina"):
        saving_api.save_model(small_model(), tmp_path / "m.h5")
    assert [r.message for r in caplog.records if "HDF5" in r.message][0].startswith("You are saving your model")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lamina"):
        saving_api.save_model(small_model(), tmp_path / "m.keras")
    assert not caplog.records


def test_zipped_false_path_should_not_end_in_keras(tmp_path):
    with pytest.raises(ValueError, match="should not end in `.keras`"):
        saving_api.save_model(small_model(), tmp_path / "m.keras", zipped=False)


def test_load_model_names_a_missing_file_and_an_unknown_format(tmp_path):
    with pytest.raises(MissingFileError, match="File not found") as info:
        saving_api.load_model(tmp_path / "absent.keras")
    assert isinstance(info.value, ValueError) and isinstance(info.value, FileNotFoundError)
    (tmp_path / "model.pkl").write_bytes(b"x")
    for name in ("model.pkl", "absent.pkl"):
        with pytest.raises(ValueError, match=f"File format not supported: filepath=.*{name}"):
            saving_api.load_model(tmp_path / name)


def test_load_weights_keyword_rules(tmp_path):
    model = small_model()
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "m.weights.h5")
    saving_api.save_model(model, tmp_path / "m.h5")
    with pytest.raises(ValueError, match="`objects_to_skip` only supports loading '.weights.h5' files"):
        model.load_weights(tmp_path / "m.keras", objects_to_skip=[])
    with pytest.raises(ValueError, match="`objects_to_skip` only supports loading '.weights.h5' files"):
        model.load_weights(tmp_path / "m.h5", objects_to_skip=[])
    with pytest.raises(ValueError, match="`by_name` only supports loading legacy '.h5' or '.hdf5' files"):
        model.load_weights(tmp_path / "m.weights.h5", by_name=True)
    with pytest.raises(ValueError, match="by_name=True .* is not supported"):
        model.load_weights(tmp_path / "m.h5", by_name=True)
    model.load_weights(tmp_path / "m.h5", by_name=False)
    with pytest.raises(ValueError, match=r"Invalid keyword arguments for load_weights: \['bad_kwarg'\]"):
        model.load_weights(tmp_path / "m.keras", bad_kwarg=None)
    with pytest.raises(ValueError, match="File format not supported: filepath=.*w.pkl"):
        model.load_weights(tmp_path / "w.pkl")


def test_save_weights_objects_to_skip_and_shards_through_the_api(tmp_path):
    model, other = small_model(), small_model()
    path = tmp_path / "m.weights.h5"
    saving_api.save_weights(model, path, objects_to_skip=[model.layers[0]])
    before = other.layers[0].get_weights()
    saving_api.load_weights(other, path, objects_to_skip=[other.layers[0]])
    for got, kept in zip(other.layers[0].get_weights(), before):
        np.testing.assert_array_equal(got, kept)
    for got, want in zip(other.layers[1].get_weights(), model.layers[1].get_weights()):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match=r"Invalid keyword arguments for save_weights: \['by_name'\]"):
        saving_api.save_weights(model, path, by_name=True)
    with pytest.raises(FileExistsError, match="overwrite=False"):
        saving_api.save_weights(model, path, overwrite=False)
    sharded = tmp_path / "s.weights.json"
    model.save_weights(sharded, max_shard_size=1)
    fresh = small_model()
    fresh.load_weights(sharded)
    for got, want in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)
