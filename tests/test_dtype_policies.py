"""Dtype policies, mixed precision and the 16-bit dtypes (float16, bfloat16 through ml_dtypes).

Keras 3 (torch backend) is the oracle for policy configs and for a mixed-precision Dense's outputs.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import lamina
from lamina import backend, dtype_policies, layers, losses, ops
from lamina.dtype_policies import DTypePolicy, DTypePolicyMap, FloatDTypePolicy
from lamina.dtype_policies import dtype_policy as dtype_policy_module
from lamina.metrics.metric import Metric


@pytest.fixture(autouse=True)
def _restore_global_state():
    floatx = backend.floatx()
    yield
    backend.set_floatx(floatx)
    backend.clear_session()


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


# ----------------------------------------------------------------------------- the policy objects


@pytest.mark.parametrize("name, compute, variable", [
    ("float32", "float32", "float32"), ("float64", "float64", "float64"), ("float16", "float16", "float16"),
    ("bfloat16", "bfloat16", "bfloat16"), ("mixed_float16", "float16", "float32"),
    ("mixed_bfloat16", "bfloat16", "float32"),
])
def test_policy_names_give_compute_and_variable_dtypes(name, compute, variable):
    policy = DTypePolicy(name)
    assert (policy.name, policy.compute_dtype, policy.variable_dtype) == (name, compute, variable)
    assert policy.quantization_mode is None
    assert repr(policy) == f'<DTypePolicy "{name}">'


def test_invalid_policy_names_are_refused_with_the_name():
    with pytest.raises(ValueError, match="Cannot convert 'mixed_int8'.*Received: name='mixed_int8'"):
        DTypePolicy("mixed_int8")
    with pytest.raises(TypeError, match="'name' must be a string"):
        DTypePolicy(32)
    with pytest.raises(ValueError, match="Cannot interpret `dtype` argument"):
        dtype_policies.get(object())


def test_float_policy_alias_equality_and_config_round_trip():
    assert FloatDTypePolicy("float16") == DTypePolicy("float16")
    assert repr(FloatDTypePolicy("float16")) == '<DTypePolicy "float16">'
    assert DTypePolicy("float16") != DTypePolicy("mixed_float16")
    assert DTypePolicy("float16") != "float16"
    policy = DTypePolicy("mixed_bfloat16")
    assert DTypePolicy.from_config(policy.get_config()) == policy


@pytest.mark.parametrize("name", ["float32", "mixed_float16", "mixed_bfloat16", "bfloat16"])
def test_serialize_matches_keras_and_keras_dicts_deserialize(name):
    keras = _keras()
    ours = dtype_policies.serialize(DTypePolicy(name))
    theirs = keras.dtype_policies.serialize(keras.dtype_policies.DTypePolicy(name))
    assert ours == theirs
    assert dtype_policies.deserialize(theirs) == DTypePolicy(name)
    assert dtype_policies.get(theirs) == DTypePolicy(name)


def test_get_accepts_none_names_dtypes_and_policies():
    policy = DTypePolicy("mixed_float16")
    assert dtype_policies.get(policy) is policy
    assert dtype_policies.get(None) == DTypePolicy("float32")
    assert dtype_policies.get(np.float64) == DTypePolicy("float64")
    assert dtype_policies.get(np.dtype("float16")) == DTypePolicy("float16")


def test_global_policy_follows_floatx_until_set_and_clear_session_forgets_it():
    assert lamina.config.dtype_policy() == DTypePolicy("float32")
    backend.set_floatx("float64")
    assert lamina.config.dtype_policy() == DTypePolicy("float64")
    assert layers.Dense(2).dtype_policy == DTypePolicy("float64")
    lamina.config.set_dtype_policy("mixed_float16")
    assert lamina.config.dtype_policy() == DTypePolicy("mixed_float16")
    dense = layers.Dense(2)
    assert (dense.dtype_policy.name, dense.compute_dtype, dense.dtype) == ("mixed_float16", "float16", "float32")
    backend.clear_session()
    assert lamina.config.dtype_policy() == DTypePolicy("float64")
    with pytest.raises(ValueError, match="Invalid `policy` argument.*Received: policy=3"):
        lamina.config.set_dtype_policy(3)


def test_policy_map_lookup_serialization_and_errors():
    policy_map = DTypePolicyMap(default_policy="float32")
    policy_map["encoder/layer_0/dense"] = "bfloat16"
    policy_map["encoder/.*"] = DTypePolicy("float16")
    assert policy_map["encoder/layer_0/dense"].name == "bfloat16"
    assert policy_map["encoder/attention/query"].name == "float16"
    assert policy_map["decoder"].name == "float32"
    assert (policy_map.name, policy_map.compute_dtype, len(policy_map)) == ("map_float32", "float32", 2)
    with pytest.raises(ValueError, match="already exists"):
        policy_map["encoder/.*"] = "float32"
    policy_map["encoder/attention/.*"] = "mixed_float16"
    with pytest.raises(ValueError, match="matches multiple dtype policy"):
        policy_map["encoder/attention/query"]
    restored = dtype_policies.deserialize(dtype_policies.serialize(policy_map))
    assert restored == policy_map and restored["encoder/layer_0/dense"].name == "bfloat16"
    with pytest.raises(ValueError, match="cannot be a `DTypePolicyMap`"):
        DTypePolicyMap(default_policy=policy_map)


def test_policy_map_reads_a_keras_written_map():
    keras = _keras()
    theirs = keras.dtype_policies.DTypePolicyMap(default_policy="float32")
    theirs["dense"] = keras.dtype_policies.DTypePolicy("mixed_bfloat16")
    restored = dtype_policies.deserialize(keras.dtype_policies.serialize(theirs))
    assert restored["dense"] == DTypePolicy("mixed_bfloat16") and restored["other"] == DTypePolicy("float32")


def test_registered_name_parsers_receive_names_with_their_marker():
    class TaggedPolicy(DTypePolicy):
        def __init__(self, name):
            super().__init__(name.split("@")[1])
            self._name = name

    dtype_policies.register_name_parser("@", TaggedPolicy)
    try:
        policy = dtype_policies.get("tag@mixed_float16")
        assert type(policy) is TaggedPolicy and policy.compute_dtype == "float16"
        assert layers.Dense(2, dtype="tag@float64").variable_dtype == "float64"
    finally:
        del dtype_policy_module._NAME_PARSERS["@"]


# ----------------------------------------------------------------------------- layers under a policy


def test_mixed_dense_keeps_float32_weights_and_computes_in_float16():
    x = np.random.default_rng(0).random((4, 5)).astype("float32")
    dense = layers.Dense(3, activation="relu", dtype="mixed_float16")
    y = dense(x)
    assert y.dtype == np.float16
    assert dense.kernel.dtype == np.float32 and dense.bias.dtype == np.float32
    assert (dense.dtype, dense.compute_dtype, dense.variable_dtype, dense.input_dtype) == \
           ("float32", "float16", "float32", "float16")
    assert dense.get_config()["dtype"] == {"module": "keras", "class_name": "DTypePolicy",
                                           "config": {"name": "mixed_float16"}, "registered_name": None}
    clone = layers.Dense.from_config(dense.get_config())
    assert clone.dtype_policy == DTypePolicy("mixed_float16")
    spec = dense.compute_output_spec(lamina.layers.Input((5,)))
    assert (spec.shape, spec.dtype) == ((None, 3), "float16")


@pytest.mark.parametrize("policy, tol", [("mixed_float16", 2e-3), ("mixed_bfloat16", 2e-2)])
def test_mixed_dense_outputs_match_keras(policy, tol):
    keras = _keras()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 6)).astype("float32")
    theirs = keras.layers.Dense(4, activation="tanh", dtype=policy)
    theirs.build((None, 6))
    ours = layers.Dense(4, activation="tanh", dtype=policy)
    ours.build((None, 6))
    ours.set_weights([np.asarray(w) for w in theirs.get_weights()])
    expected = keras.ops.convert_to_numpy(theirs(x))
    got = ours(x)
    assert str(expected.dtype) == str(got.dtype) == ours.compute_dtype
    np.testing.assert_allclose(np.asarray(got, dtype=np.float32), np.asarray(expected, dtype=np.float32),
                               atol=tol, rtol=tol)


def test_weights_read_in_the_compute_dtype_inside_call_unless_autocast_is_off():
    seen = {}

    class Probe(layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")
            self.s = self.add_weight(shape=(), initializer="ones", autocast=False)

        def call(self, x):
            seen["w"], seen["s"] = self.w.value.dtype, self.s.value.dtype
            return x * self.w

    layer = Probe(dtype="mixed_bfloat16")
    out = layer(np.ones((2, 3), dtype="float64"))
    assert out.dtype.name == "bfloat16"
    assert (seen["w"].name, seen["s"].name) == ("bfloat16", "float32")
    assert layer.w.value.dtype == np.float32  # outside the call: as stored


def test_autocast_scope_nests_and_clears():
    v = lamina.Variable(np.full(3, 70000.0, dtype="float32"))
    with backend.AutocastScope("float16"):
        assert backend.get_autocast_scope().dtype == "float16"
        assert np.isinf(v.value).all() and v.value.dtype == np.float16
        with backend.AutocastScope(None):
            assert v.value.dtype == np.float32
        assert v.value.dtype == np.float16
    assert backend.get_autocast_scope() is None and v.value.dtype == np.float32
    with pytest.raises(ValueError, match="floating-point target dtype.*Received: dtype=int32"):
        backend.AutocastScope("int32")


def test_float32_layer_after_a_mixed_one_casts_its_input_and_gradients_flow_back():
    inputs = layers.Input((4,))
    hidden = layers.Dense(8, activation="relu", dtype="mixed_float16")(inputs)
    outputs = layers.Dense(1, dtype="float32")(hidden)
    model = lamina.Model(inputs, outputs)
    x = np.random.default_rng(2).random((16, 4)).astype("float32")
    with lamina.GradientTape() as tape:
        y = model(x)
        loss = ops.mean(ops.square(y))
    assert lamina.ops.convert_to_numpy(y).dtype == np.float32
    grads = tape.gradient(loss, model.trainable_weights)
    assert all(g is not None and g.dtype == np.float32 for g in grads)
    assert all(np.isfinite(g).all() and np.abs(g).sum() > 0 for g in grads)


def test_mixed_model_trains_on_the_tape_with_float32_weights():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 4)).astype("float32")
    y = (x.sum(axis=1, keepdims=True) > 0).astype("float32")
    lamina.config.set_dtype_policy("mixed_float16")
    model = lamina.Sequential([layers.Input((4,)), layers.Dense(16, activation="relu"),
                               layers.Dense(1, activation="sigmoid", dtype="float32")])
    model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=True)
    with pytest.warns(UserWarning, match="tape.*layer '.*' computes in float16"):
        history = model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert all(w.dtype == np.float32 for w in model.weights)
    assert model.predict(x[:4], verbose=0).dtype == np.float32
    assert model.layers[0](x[:4]).dtype == np.float16


def test_sequential_inference_runs_mixed_layers_through_their_call():
    x = np.random.default_rng(4).random((3, 5)).astype("float32")
    model = lamina.Sequential([layers.Input((5,)), layers.Dense(2, dtype="mixed_float16")])
    assert model.predict(x, verbose=0).dtype == np.float16
    assert model(x).dtype == np.float16


# ----------------------------------------------------------------------------- bfloat16 everywhere


def test_bfloat16_is_a_float_dtype_everywhere_a_dtype_is_taken():
    assert backend.standardize_dtype("bfloat16") == "bfloat16"
    assert backend.standardize_dtype(np.dtype("bfloat16")) == "bfloat16"
    assert backend.is_float_dtype("bfloat16") and backend.is_float_dtype(np.float16)
    assert not backend.is_float_dtype("int32")
    with pytest.raises(ValueError, match="Invalid dtype.*Received: dtype='floaty'"):
        backend.standardize_dtype("floaty")
    for name in ("glorot_uniform", "he_normal", "orthogonal", "zeros", "ones", "truncated_normal"):
        assert lamina.initializers.get(name)((3, 3), dtype="bfloat16").dtype.name == "bfloat16"
    assert lamina.random.normal((2,), dtype="bfloat16").dtype.name == "bfloat16"
    assert lamina.random.uniform((2,), dtype="bfloat16").dtype.name == "bfloat16"
    v = lamina.Variable(np.ones(3, "float32"))
    with lamina.GradientTape() as tape:
        loss = ops.sum(ops.square(ops.cast(v, "bfloat16")))
    grad = tape.gradient(loss, v)
    assert grad.dtype == np.float32 and np.allclose(grad, 2.0)


def test_set_floatx_bfloat16_makes_bfloat16_layers():
    lamina.config.set_floatx("bfloat16")
    dense = layers.Dense(2)
    out = dense(np.ones((1, 3), dtype="float32"))
    assert dense.kernel.dtype.name == out.dtype.name == "bfloat16"
    with pytest.raises(ValueError, match="Unknown `floatx` value"):
        lamina.config.set_floatx("float8")


def test_missing_ml_dtypes_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)
    monkeypatch.setattr(backend, "_ML_DTYPES_LOADED", [False])
    with pytest.raises(ImportError, match=r"lamina\[lowp\].*Received: dtype='bfloat16'"):
        backend.standardize_dtype("bfloat16")


@pytest.mark.parametrize("fmt", ["keras", "weights.h5"])
@pytest.mark.parametrize("src, dst", [("bfloat16", "bfloat16"), ("bfloat16", "float32"), ("float32", "bfloat16")])
def test_bfloat16_weights_save_and_load(tmp_path, fmt, src, dst):
    pytest.importorskip("h5py")

    def model(dtype):
        return lamina.Sequential([layers.Input((3,)), layers.Dense(2, dtype=dtype)])

    source = model(src)
    path = str(tmp_path / f"w.{fmt}")
    source.save(path) if fmt == "keras" else source.save_weights(path)
    target = model(dst)
    target.load_weights(path)
    assert target.weights[0].dtype.name == dst
    for a, b in zip(source.get_weights(), target.get_weights()):
        np.testing.assert_allclose(a.astype("float32"), b.astype("float32"), atol=1e-2)
    if fmt == "keras" and src == dst:
        loaded = lamina.saving.load_model(path)
        assert loaded.weights[0].dtype.name == "bfloat16"


def test_bfloat16_weights_written_by_keras_load_and_lamina_files_load_in_keras(tmp_path):
    keras = _keras()
    pytest.importorskip("h5py")
    theirs = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, dtype="bfloat16")])
    theirs.save_weights(str(tmp_path / "k.weights.h5"))
    ours = lamina.Sequential([layers.Input((3,)), layers.Dense(2, dtype="bfloat16")])
    ours.load_weights(str(tmp_path / "k.weights.h5"))
    for a, b in zip(theirs.get_weights(), ours.get_weights()):
        np.testing.assert_array_equal(np.asarray(a).astype("float32"), b.astype("float32"))
    ours.save_weights(str(tmp_path / "l.weights.h5"))
    back = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, dtype="bfloat16")])
    back.load_weights(str(tmp_path / "l.weights.h5"))
    for a, b in zip(back.get_weights(), ours.get_weights()):
        np.testing.assert_array_equal(np.asarray(a).astype("float32"), b.astype("float32"))


# ----------------------------------------------------------------------------- losses and metrics


def test_loss_and_metric_dtype_arguments_take_policies():
    class SquaredError(losses.Loss):
        def call(self, y_true, y_pred):
            return (y_true - y_pred) ** 2

    y_true, y_pred = np.array([1.0, 0.0]), np.array([0.5, 0.5])
    assert SquaredError(dtype="mixed_float16")(y_true, y_pred).dtype == np.float16
    assert SquaredError(dtype=DTypePolicy("mixed_bfloat16")).dtype == "bfloat16"
    lamina.config.set_dtype_policy("mixed_float16")
    assert SquaredError().dtype == "float32"  # floatx, not the global policy (as in Keras)
    assert Metric(dtype="mixed_bfloat16").dtype == "bfloat16" and Metric().dtype == "float32"


def test_loss_reads_the_mask_a_layer_attached_to_y_pred():
    y_true = np.array([[1.0], [0.0], [1.0], [0.0]], dtype="float32")
    y_pred = np.array([[0.1], [0.2], [0.3], [0.4]], dtype="float32")  # per-sample losses of shape (4,)
    backend.set_keras_mask(y_pred, np.array([True, False, True, True]))
    loss = losses.MeanSquaredError()(y_true, y_pred)
    np.testing.assert_allclose(loss, ((0.9 ** 2) + (0.7 ** 2) + (0.4 ** 2)) / 3, rtol=1e-6)


def test_one_mixed_float16_training_step_matches_keras():
    keras = _keras()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 4)).astype("float32")
    y = rng.standard_normal((16, 2)).astype("float32")
    theirs = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu", dtype="mixed_float16"),
                               keras.layers.Dense(2, dtype="mixed_float16")])
    ours = lamina.Sequential([layers.Input((4,)), layers.Dense(8, activation="relu", dtype="mixed_float16"),
                              layers.Dense(2, dtype="mixed_float16")])
    ours.set_weights([np.asarray(w) for w in theirs.get_weights()])
    theirs.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    ours.compile(optimizer=lamina.optimizers.SGD(0.1), loss="mse")
    their_loss = float(theirs.train_on_batch(x, y))
    our_loss = float(ours.train_on_batch(x, y))
    assert our_loss == pytest.approx(their_loss, rel=2e-3)
    for a, b in zip(theirs.get_weights(), ours.get_weights()):
        assert b.dtype == np.float32
        np.testing.assert_allclose(b, np.asarray(a), atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(ours.predict(x, verbose=0).astype("float32"),
                               keras.ops.convert_to_numpy(theirs(x)).astype("float32"), atol=5e-3, rtol=5e-3)


def test_mixed_precision_module_keeps_the_older_names():
    lamina.mixed_precision.set_global_policy("mixed_float16")
    assert lamina.mixed_precision.global_policy() == lamina.mixed_precision.Policy("mixed_float16")
    assert layers.Dense(2).compute_dtype == "float16"


def test_a_layer_given_a_policy_map_reads_its_own_entry():
    policy_map = DTypePolicyMap(default_policy="float32")
    policy_map["head"] = "mixed_float16"
    head, other = layers.Dense(2, name="head", dtype=policy_map), layers.Dense(2, name="other", dtype=policy_map)
    assert (head.compute_dtype, head.variable_dtype, other.compute_dtype) == ("float16", "float32", "float32")
    assert head.dtype_policy is policy_map
    other.dtype_policy = "float64"  # stored in the map under the layer's path
    assert policy_map["other"].name == "float64" and other.variable_dtype == "float64"


def test_metric_state_updates_inside_an_autocast_scope_are_kept():
    metric = lamina.metrics.Mean()
    with backend.AutocastScope("float16"):
        metric.update_state(np.array([1.0, 3.0], dtype="float32"))
    assert float(metric.result()) == 2.0 and metric.variables[0].dtype == np.float32


def test_mixed_models_keep_their_policies_through_keras_files(tmp_path):
    keras = _keras()
    pytest.importorskip("h5py")
    theirs = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, dtype="mixed_bfloat16"),
                               keras.layers.Dense(2, dtype="mixed_float16")])
    theirs.save(str(tmp_path / "k.keras"))
    ours = lamina.saving.load_model(str(tmp_path / "k.keras"))
    assert [layer.dtype_policy.name for layer in ours.layers] == ["mixed_bfloat16", "mixed_float16"]
    x = np.random.default_rng(6).random((5, 3)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0).astype("float32"),
                               keras.ops.convert_to_numpy(theirs(x)).astype("float32"), atol=2e-2)
    ours.save(str(tmp_path / "l.keras"))
    back = keras.saving.load_model(str(tmp_path / "l.keras"))
    assert [layer.dtype_policy.name for layer in back.layers] == ["mixed_bfloat16", "mixed_float16"]


def test_metric_stateless_forms_leave_the_metric_state_alone():
    metric = lamina.metrics.Mean()
    metric.update_state(np.array([10.0], dtype="float32"))
    state = metric.stateless_update_state([np.float32(0.0), np.float32(0.0)], np.array([1.0, 3.0], "float32"))
    assert [float(v) for v in state] == [4.0, 2.0]
    assert float(metric.stateless_result(state)) == 2.0
    assert [float(v) for v in metric.stateless_reset_state()] == [0.0, 0.0]
    assert float(metric.result()) == 10.0
    with pytest.raises(ValueError, match="corresponding 1:1.*Received: a list of length 1"):
        metric.stateless_result([np.float32(1.0)])
