"""Quantized Dense (int8, int4, float8), quantized dtype policies, ``Model.quantize``: Keras's numbers and files."""

import warnings

import numpy as np
import pytest

import lamina
from lamina import dtype_policies, layers, quantizers
from lamina.dtype_policies.quantized import Int4DTypePolicy, QuantizedDTypePolicy, QuantizedFloat8DTypePolicy
from lamina.quantizers import Int4QuantizationConfig, Int8QuantizationConfig

RNG = np.random.default_rng(7)
X = RNG.normal(size=(6, 10)).astype("float32")


def _np(keras, value):
    return keras.ops.convert_to_numpy(value)


def _pair(keras, units=7, input_dim=10, activation="tanh"):
    """The same float Dense in Keras and lamina (kernel and a nonzero bias copied across)."""
    kl = keras.layers.Dense(units, activation=activation)
    kl.build((None, input_dim))
    kl.bias.assign(RNG.normal(size=(units,)).astype("float32"))
    ll = layers.Dense(units, activation=activation)
    ll.build((None, input_dim))
    ll.set_weights([_np(keras, kl.kernel), _np(keras, kl.bias)])
    return kl, ll


# ---------------------------------------------------------------------------------- quantizers


def test_abs_max_quantizers_match_keras(keras):
    from keras.src import quantizers as kq

    w = RNG.normal(size=(10, 7)).astype("float32")
    for axis in (0, -1):
        q, scale = quantizers.abs_max_quantize(w, axis=axis)
        kq_, kscale = kq.abs_max_quantize(w, axis=axis)
        np.testing.assert_array_equal(q, _np(keras, kq_))
        np.testing.assert_array_equal(scale, _np(keras, kscale))
        assert q.dtype == np.int8 and scale.dtype == np.float32
    q, scale, zero = quantizers.abs_max_quantize_grouped_with_zero_point(w, block_size=4)  # 10 rows: padded
    kq_, kscale, kzero = kq.abs_max_quantize_grouped_with_zero_point(w, block_size=4, to_numpy=True)
    np.testing.assert_array_equal(q, _np(keras, kq_))
    np.testing.assert_array_equal(scale, _np(keras, kscale))
    np.testing.assert_array_equal(zero, _np(keras, kzero))
    assert scale.shape == zero.shape == (3, 7)
    groups = np.arange(10) // 4
    np.testing.assert_allclose(quantizers.dequantize_with_sz_map(q, scale, zero, groups, group_axis=0),
                               _np(keras, kq.dequantize_with_sz_map(q, scale, zero, groups.astype("float32"),
                                                                    group_axis=0)), rtol=1e-6)


def test_int4_packing_matches_keras_and_round_trips(keras):
    from keras.src import quantizers as kq

    values = RNG.integers(-8, 8, size=(5, 7)).astype("int8")  # odd lengths on both axes: padding
    for axis in (0, 1, -1):
        packed, shape, n = quantizers.pack_int4(values, axis=axis)
        kpacked, kshape, kn = kq.pack_int4(values, axis=axis)
        np.testing.assert_array_equal(packed, _np(keras, kpacked))
        assert (shape, n) == (kshape, kn)
        np.testing.assert_array_equal(quantizers.unpack_int4(packed, n, axis=axis), values)
        np.testing.assert_array_equal(quantizers.unpack_int4(packed, n, axis=axis, dtype="uint8"),
                                      _np(keras, kq.unpack_int4(kpacked, kn, axis=axis, dtype="uint8")))
    with pytest.raises(TypeError, match="int8"):
        quantizers.pack_int4(values.astype("int32"))


def test_float8_scaling_matches_keras(keras):
    pytest.importorskip("ml_dtypes")
    from keras.src import quantizers as kq

    x = RNG.normal(size=(4, 5)).astype("float32") * 30
    for fmt in ("float8_e4m3fn", "float8_e5m2"):
        np.testing.assert_array_equal(quantizers.quantize_and_dequantize(x, np.float32(0.05), fmt, "float32"),
                                      _np(keras, kq.quantize_and_dequantize(x, np.float32(0.05), fmt, "float32")))
    history = np.array([1.0, 5.0, 2.0, 0.0], "float32")
    np.testing.assert_array_equal(quantizers.compute_float8_amax_history(x, history),
                                  _np(keras, kq.compute_float8_amax_history(keras.ops.convert_to_tensor(x),
                                                                            keras.ops.convert_to_tensor(history))))
    for amax in (3.0, 0.0, np.inf):  # zero and inf keep the old scale
        np.testing.assert_allclose(quantizers.compute_float8_scale(np.float32(amax), np.float32(2.0), 448.0),
                                   _np(keras, kq.compute_float8_scale(np.float32(amax), np.float32(2.0), 448.0)))


def test_configs_validate_and_serialize():
    with pytest.raises(ValueError, match="Invalid quantization mode"):
        quantizers.quantization_config.validate_and_resolve_config("int7", None)
    with pytest.raises(ValueError, match="Contradictory arguments"):
        quantizers.quantization_config.validate_and_resolve_config("int4", Int8QuantizationConfig())
    with pytest.raises(ValueError, match="sub-channel"):
        Int4QuantizationConfig(weight_quantizer=quantizers.AbsMaxQuantizer(axis=0, value_range=(-8, 7)))
    with pytest.raises(ValueError, match=r"value_range=\(-8, 7\)"):
        Int4QuantizationConfig(weight_quantizer=quantizers.AbsMaxQuantizer(axis=0), block_size=None)
    with pytest.raises(ValueError, match="within the interval"):
        quantizers.AbsMaxQuantizer(value_range=(-300, 127))
    config = Int4QuantizationConfig(block_size=None, weight_quantizer=quantizers.AbsMaxQuantizer(
        axis=0, value_range=(-8, 7)), activation_quantizer=quantizers.AbsMaxQuantizer(axis=-1))
    back = quantizers.deserialize(quantizers.serialize(config))
    assert isinstance(back, Int4QuantizationConfig) and back.block_size is None
    assert back.weight_quantizer.value_range == (-8, 7) and back.activation_quantizer.axis == (-1,)


# ---------------------------------------------------------------------------------- policies


def test_quantized_policy_names():
    policy = dtype_policies.get("int8_from_mixed_bfloat16")
    assert type(policy) is QuantizedDTypePolicy and policy.quantization_mode == "int8"
    assert (policy.compute_dtype, policy.variable_dtype) == ("bfloat16", "float32")
    assert dtype_policies.get(dtype_policies.serialize(policy)) == policy
    f8 = dtype_policies.get("float8_from_float32")
    assert type(f8) is QuantizedFloat8DTypePolicy and f8.amax_history_length == 1024
    i4 = dtype_policies.get("int4/64_from_float32")
    assert type(i4) is Int4DTypePolicy and i4.block_size == 64 and i4.name == "int4/64_from_float32"
    assert i4.get_config() == {"mode": "int4/64", "source_name": "float32"}
    assert i4 != dtype_policies.get("int4/128_from_float32")
    with pytest.raises(ValueError, match="Invalid quantization mode"):
        dtype_policies.get("int7_from_float32")
    with pytest.raises(ValueError, match="block_size"):
        dtype_policies.get("int4/0_from_float32")
    with pytest.raises(ValueError, match="float16"):
        dtype_policies.get("int8_from_float16")


@pytest.mark.parametrize("policy, count, count_set", [("int8_from_float32", 3, 3), ("int4_from_float32", 3, 5),
                                                      ("int4/4_from_float32", 5, 5), ("float8_from_float32", 8, 8)])
def test_a_quantized_dtype_builds_the_quantized_variables(policy, count, count_set):
    pytest.importorskip("ml_dtypes")
    layer = layers.Dense(5, dtype=policy)
    layer.build((None, 10))
    # A policy without a block size builds int4 per channel (kernel, bias, scale), as files saved before
    # block sizes existed.
    assert len(layer.variables) == count and layer.quantization_mode == policy.split("_")[0].split("/")[0]
    # Setting the policy on a built float layer quantizes it with the mode's default config (int4: groups
    # of 128 rows, adding kernel_zero and g_idx), as Keras.
    built = layers.Dense(5)
    built.build((None, 10))
    built.dtype_policy = policy
    assert len(built.variables) == count_set and built._is_quantized


# ---------------------------------------------------------------------------------- Dense vs Keras


@pytest.mark.parametrize("activation_quantizer", ["default", None])
def test_int8_kernel_scale_and_outputs_match_keras(keras, activation_quantizer):
    from keras.src.quantizers.quantization_config import Int8QuantizationConfig as KInt8

    kl, ll = _pair(keras)
    kl.quantize("int8", config=KInt8(activation_quantizer=activation_quantizer))
    ll.quantize("int8", config=Int8QuantizationConfig(activation_quantizer=activation_quantizer))
    assert ll._kernel.dtype == np.int8 and ll._kernel.shape == (10, 7) and ll.kernel_scale.shape == (7,)
    np.testing.assert_array_equal(ll._kernel.numpy(), _np(keras, kl._kernel))
    np.testing.assert_array_equal(ll.kernel_scale.numpy(), _np(keras, kl.kernel_scale))
    np.testing.assert_allclose(ll(X), _np(keras, kl(X)), rtol=1e-5, atol=1e-6)
    assert ll.dtype_policy.name == "int8_from_float32" and not ll._kernel.trainable
    assert [v.name for v in ll.trainable_weights] == ["bias"]


@pytest.mark.parametrize("block_size", [None, 4])
def test_int4_packed_kernel_and_outputs_match_keras(keras, block_size):
    from keras.src.quantizers.quantization_config import Int4QuantizationConfig as KInt4

    kl, ll = _pair(keras)
    kl.quantize("int4", config=KInt4(block_size=block_size))
    ll.quantize("int4", config=Int4QuantizationConfig(block_size=block_size))
    assert ll._kernel.shape == (10, 4)  # 7 outputs packed two per byte
    names = ["kernel_scale"] + (["kernel_zero", "g_idx"] if block_size else [])
    for name in ["_kernel"] + names:
        np.testing.assert_array_equal(getattr(ll, name).numpy(), _np(keras, getattr(kl, name)), err_msg=name)
    np.testing.assert_array_equal(ll.kernel, _np(keras, kl.kernel))  # unpacked
    np.testing.assert_allclose(ll(X), _np(keras, kl(X)), rtol=1e-5, atol=1e-6)
    assert ll.dtype_policy.name == f"int4/{block_size or -1}_from_float32"


def test_float8_outputs_and_training_updates_match_keras(keras):
    pytest.importorskip("ml_dtypes")
    kl, ll = _pair(keras, activation=None)
    kl.quantize("float8")
    ll.quantize("float8")
    np.testing.assert_allclose(ll(X), _np(keras, kl(X)), rtol=1e-6, atol=1e-6)
    # One training step: the scales and histories take the values the backward pass computes.
    g = RNG.normal(size=(6, 7)).astype("float32")
    opt_k, opt_l = keras.optimizers.SGD(0.1), lamina.optimizers.SGD(0.1)
    import torch

    for _ in range(2):
        kl.zero_grad()
        y = kl(X, training=True)
        (y * torch.as_tensor(g)).sum().backward()
        opt_k.apply([v.value.grad for v in kl.trainable_variables], kl.trainable_variables)
        with lamina.GradientTape() as tape:
            loss = lamina.ops.sum(lamina.ops.multiply(ll(X, training=True), g))
        opt_l.apply(tape.gradient(loss, ll.trainable_variables), ll.trainable_variables)
    for name in ("inputs_scale", "inputs_amax_history", "kernel_scale", "kernel_amax_history",
                 "outputs_grad_scale", "outputs_grad_amax_history", "_kernel", "bias"):
        np.testing.assert_allclose(getattr(ll, name).numpy(), _np(keras, getattr(kl, name)), rtol=1e-5, atol=1e-6,
                                   err_msg=name)


def test_int8_input_gradient_is_keras_straight_through(keras):
    import torch

    kl, ll = _pair(keras, activation="relu")
    kl.quantize("int8")
    ll.quantize("int8")
    x = torch.tensor(X, requires_grad=True)
    g = RNG.normal(size=(6, 7)).astype("float32")
    (kl(x) * torch.as_tensor(g)).sum().backward()
    xv = lamina.Variable(X)
    with lamina.GradientTape() as tape:
        loss = lamina.ops.sum(lamina.ops.multiply(ll(xv), g))
    dx, dbias = tape.gradient(loss, [xv, ll.bias])
    np.testing.assert_allclose(dx, x.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dbias, kl.bias.value.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_lora_on_a_quantized_layer_trains_the_factors_only(mode):
    layer = layers.Dense(6)
    layer.build((None, 10))
    layer.enable_lora(3, lora_alpha=6.0)
    layer.quantize(mode)
    assert [v.name for v in layer.trainable_weights] == ["bias", "lora_kernel_a", "lora_kernel_b"]
    frozen = layer._kernel.numpy().copy()
    model = lamina.Sequential([lamina.Input((10,)), layer])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(X, RNG.normal(size=(6, 6)).astype("float32"), epochs=2, verbose=0)
    assert np.any(layer.lora_kernel_b.numpy()) and np.array_equal(layer._kernel.numpy(), frozen)
    # The output is the quantized product plus (alpha / rank) (x @ a) @ b plus the bias.
    if mode == "int8":  # inputs quantized per row: (x_q @ q) / (s_x * kernel_scale)
        xq, xs = quantizers.AbsMaxQuantizer()(X)
        base = (xq.astype("float32") @ layer._kernel.numpy().astype("float32")) / (xs * layer.kernel_scale.numpy())
    else:  # weight-only, 10 rows in one group of 128: x @ ((q - zero) * scale)
        q = quantizers.unpack_int4(layer._kernel.numpy(), 6, axis=-1).astype("float32")
        base = X @ ((q - layer.kernel_zero.numpy()) * layer.kernel_scale.numpy())
    delta = 2.0 * (X @ layer.lora_kernel_a.numpy()) @ layer.lora_kernel_b.numpy()
    np.testing.assert_allclose(layer(X), base + delta + layer.bias.numpy(), rtol=1e-5, atol=1e-5)


def test_a_quantized_dense_trains_on_its_own_call_in_the_compiled_plan():
    y = RNG.normal(size=(6, 4)).astype("float32")

    def train(run_eagerly):
        lamina.utils.set_random_seed(3)
        model = lamina.Sequential([lamina.Input((10,)), layers.Dense(8, activation="relu"), layers.Dense(4)])
        model.layers[0].enable_lora(2)
        model.quantize("int8", filters="dense")  # both Dense layers
        model.compile(optimizer="adam", loss="mse", run_eagerly=run_eagerly)
        history = model.fit(X, y, batch_size=3, epochs=2, verbose=0, shuffle=False)
        return model, history.history["loss"]

    compiled, loss_c = train(False)
    eager, loss_e = train(True)
    assert [type(n).__name__ for n in compiled._fast_step.nodes] == ["_TapeNode", "_TapeNode"]
    np.testing.assert_allclose(loss_c, loss_e, rtol=1e-6)
    for a, b in zip(compiled.get_weights(), eager.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("mode", ["int8", "int4", "float8"])
def test_quantize_errors(mode):
    pytest.importorskip("ml_dtypes")
    with pytest.raises(ValueError, match="Cannot quantize a layer that isn't yet built"):
        layers.Dense(2).quantize(mode)
    layer = layers.Dense(2)
    layer.build((None, 2))
    layer.quantize(mode)
    for again in ("int8", "int4", "float8"):
        with pytest.raises(ValueError, match="is already quantized with dtype_policy="):
            layer.quantize(again)

    class MyDense(layers.Dense):
        pass

    sub = MyDense(2)
    sub.build((None, 2))
    with pytest.raises(NotImplementedError, match="MyDense does not have a `quantize` method"):
        sub.quantize(mode)
    sub.quantize(mode, type_check=False)
    assert sub.quantization_mode == mode


def test_invalid_modes_leave_the_layer_unchanged():
    layer = layers.Dense(2)
    layer.build((None, 2))
    before = layer.dtype_policy
    with pytest.raises(ValueError, match="Invalid quantization mode"):
        layer.quantize("int7")
    with pytest.raises(NotImplementedError, match="Invalid quantization mode"):
        layer.quantized_build((2, 2), "float7")
    assert layer.dtype_policy == before and layer.quantization_mode is None and len(layer.variables) == 2
    half = layers.Dense(2, dtype="float16")
    half.build((None, 2))
    with pytest.raises(ValueError, match="compute_dtype='float16'"):
        half.quantize("int8")


# ---------------------------------------------------------------------------------- files


@pytest.mark.parametrize("mode", ["int8", "int4", "float8"])
def test_quantized_models_round_trip_through_keras_files(keras, tmp_path, mode):
    pytest.importorskip("ml_dtypes")
    km = keras.Sequential([keras.Input((10,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(3)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns that its InputLayer has no `quantize`
        km.quantize(mode)
    km.save(tmp_path / "keras.keras")
    lm = lamina.saving.load_model(tmp_path / "keras.keras")
    assert [type(layer.dtype_policy).__name__ for layer in lm.layers] == [type(layer.dtype_policy).__name__
                                                                         for layer in km.layers]
    np.testing.assert_allclose(lm.predict(X, verbose=0), _np(keras, km(X)), rtol=1e-5, atol=1e-6)
    lm.save(tmp_path / "lamina.keras")
    back = keras.saving.load_model(tmp_path / "lamina.keras")
    np.testing.assert_allclose(_np(keras, back(X)), lm.predict(X, verbose=0), rtol=1e-5, atol=1e-6)
    # Weights only, into a fresh model quantized the same way.
    lm.save_weights(tmp_path / "q.weights.h5")
    fresh = lamina.Sequential([lamina.Input((10,)), layers.Dense(5, activation="relu"), layers.Dense(3)])
    fresh.quantize(mode)
    fresh.load_weights(tmp_path / "q.weights.h5")
    np.testing.assert_allclose(fresh.predict(X, verbose=0), lm.predict(X, verbose=0), rtol=1e-6)


def test_quantization_config_and_direct_build_survive_saving(tmp_path):
    layer = layers.Dense(4)
    layer.build((None, 10))  # built directly: its build shape goes in the file (the model is not built)
    layer.quantize("int4", config=Int4QuantizationConfig(block_size=4))
    model = lamina.Sequential([layer])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "saving a model that has not been built": its layer is
        model.save(tmp_path / "m.keras")
    loaded = lamina.saving.load_model(tmp_path / "m.keras").layers[0]
    assert isinstance(loaded.quantization_config, Int4QuantizationConfig) and loaded.quantization_config.block_size == 4
    np.testing.assert_array_equal(loaded.g_idx.numpy(), np.arange(10) // 4)
    np.testing.assert_allclose(loaded(X), layer(X), rtol=1e-6)


def test_lora_on_quantized_layers_saves_a_requantized_merged_kernel(tmp_path):
    model = lamina.Sequential([lamina.Input((10,)), layers.Dense(6)])
    model.layers[0].enable_lora(2, b_initializer="random_normal")
    model.quantize("int8")
    store = {}
    model.layers[0].save_own_variables(store)
    assert sorted(store) == ["0", "1", "2"] and store["0"].dtype == np.int8 and store["2"].shape == (6,)
    model.save_weights(tmp_path / "lora.weights.h5")
    plain = lamina.Sequential([lamina.Input((10,)), layers.Dense(6)])
    plain.quantize("int8")
    plain.load_weights(tmp_path / "lora.weights.h5")
    assert not plain.layers[0].lora_enabled
    # Requantizing the merged kernel is lossy: close, not equal.
    np.testing.assert_allclose(plain.predict(X, verbose=0), model.predict(X, verbose=0), atol=0.05)


# ---------------------------------------------------------------------------------- Model.quantize


def _three_dense():
    inputs = lamina.Input((3,))
    x = layers.Dense(4, name="dense_1")(inputs)
    x = layers.Dense(4, name="dense_2")(x)
    return lamina.Model(inputs, layers.Dense(4, name="output")(x))


@pytest.mark.parametrize("filters, expected", [("dense_1", {"dense_1"}), (["dense_1", "output"], {"dense_1", "output"}),
                                               (lambda layer: "dense" in layer.name, {"dense_1", "dense_2"})])
def test_model_quantize_filters(filters, expected):
    model = _three_dense()
    model.quantize("int8", filters=filters)
    quantized = {layer.name for layer in model.layers if layer.quantization_mode == "int8"}
    assert quantized == expected


def test_model_quantize_nested_layers_arguments_and_subclasses():
    class Nested(layers.Layer):
        def __init__(self):
            super().__init__()
            self.inner = layers.Dense(3)
            self.outer = layers.Dense(3)

        def call(self, x):
            return self.outer(self.inner(x))

    class MyDense(layers.Dense):
        pass

    inputs = lamina.Input((3,))
    model = lamina.Model(inputs, MyDense(2)(Nested()(inputs)))
    with pytest.raises(ValueError, match="Invalid quantization mode. Expected one of"):
        model.quantize("abc")
    with pytest.raises(ValueError, match="Unrecognized keyword arguments"):
        model.quantize("int8", unrecognized=None)
    with pytest.raises(ValueError, match="`filters` argument"):
        model.quantize("int8", filters=3)
    with pytest.warns(UserWarning, match="MyDense does not have a `quantize` method"):
        model.quantize("int8")
    kernels = [v for v in model.weights if v.name == "kernel"]
    assert [str(v.dtype) for v in kernels].count("int8") == 2  # the nested pair; the subclass stays float
    np.testing.assert_equal(model.predict(X[:, :3], verbose=0).shape, (6, 2))


def test_model_quantize_needs_a_built_model():
    class MyModel(lamina.Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = MyModel()
    with pytest.raises(ValueError, match="Cannot quantize a layer that isn't yet built"):
        model.quantize("int8")
    model(X)
    model.quantize("int8")
    assert model.dense.quantization_mode == "int8"


def test_float8_without_ml_dtypes_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # `import ml_dtypes` now raises ImportError
    layer = layers.Dense(2)
    layer.build((None, 3))
    with pytest.raises(ImportError, match=r"lamina\[lowp\]"):
        layer.quantize("float8")
    assert layer.quantization_mode is None and len(layer.variables) == 2  # nothing half-built


# Few input rows: per-group sums; more: one dequantized kernel. Groups of 4 over 10 rows end with a short
# group; one group of 128 holds all 10 rows (no full group at all).
@pytest.mark.parametrize("batch", [2, 17])
@pytest.mark.parametrize("block_size", [4, 128])
def test_grouped_int4_matmul_paths_agree_with_the_dequantized_kernel(batch, block_size):
    from lamina.layers.dense_quantize import grouped_int4_matmul

    w = RNG.normal(size=(10, 5)).astype("float32")
    q, scale, zero = quantizers.abs_max_quantize_grouped_with_zero_point(w, block_size=block_size)
    groups = np.arange(10) // block_size
    x = RNG.normal(size=(batch, 10)).astype("float32")
    want = x @ quantizers.dequantize_with_sz_map(q, scale, zero, groups, group_axis=0)
    got = grouped_int4_matmul(x, q, scale, zero, groups, block_size)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    shuffled = groups[::-1].copy()  # another row-to-group map: dequantized by index
    np.testing.assert_allclose(grouped_int4_matmul(x, q, scale, zero, shuffled, block_size),
                               x @ quantizers.dequantize_with_sz_map(q, scale, zero, shuffled, group_axis=0), rtol=1e-6)


def test_float8_fit_updates_the_scales_alike_in_the_compiled_and_tape_steps():
    pytest.importorskip("ml_dtypes")
    y = RNG.normal(size=(6, 4)).astype("float32")

    def train(run_eagerly):
        lamina.utils.set_random_seed(3)
        model = lamina.Sequential([lamina.Input((10,)), layers.Dense(8, activation="relu"), layers.Dense(4)])
        model.quantize("float8")
        model.compile(optimizer="adam", loss="mse", run_eagerly=run_eagerly)
        return model, model.fit(X, y, batch_size=3, epochs=2, verbose=0, shuffle=False).history["loss"]

    compiled, loss_c = train(False)
    eager, loss_e = train(True)
    np.testing.assert_allclose(loss_c, loss_e, rtol=1e-6)
    for a, b in zip(compiled.get_weights(), eager.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    dense = compiled.layers[0]
    # The optimizer assigned the backward pass's values: the newest abs-max of the inputs at index 0, and
    # a scale moved off its initial 1.
    assert dense.inputs_amax_history.numpy()[0] > 0 and dense.inputs_scale.numpy() != 1.0


def test_fold_merges_lora_kernels_and_refuses_quantized_layers():
    from lamina.diagnostics import fold

    model = lamina.Sequential([lamina.Input((10,)), layers.Dense(6), layers.Dense(3)])
    model.layers[0].enable_lora(2, b_initializer="random_normal")
    np.testing.assert_allclose(fold(model).predict(X, verbose=0), model.predict(X, verbose=0), rtol=1e-5, atol=1e-5)
    model.quantize("int8")
    with pytest.raises(ValueError, match="fold cannot merge Dense .* it is quantized"):
        fold(model)
