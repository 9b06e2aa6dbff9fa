"""``Lambda``, ``TimeDistributed`` and LoRA on ``Dense``: Keras's numbers, gradients, configs and files."""

import json
import warnings

import numpy as np
import pytest

import lamina
from lamina import layers, ops
from lamina.saving.errors import FileFormatError
from tests.helpers.layer_harness import (
    check_layer_gradients,
    keras_forward_and_grads,
    lamina_forward_and_grads,
    random_inputs,
)

RNG = np.random.default_rng(3)
X2 = RNG.normal(size=(5, 4)).astype("float32")
X3 = RNG.normal(size=(5, 3, 4)).astype("float32")


def _scaled_by(offset):
    """A lambda with a closure value (stored in the file) and no defaults (Keras cannot load defaults back)."""
    return lambda t: t * 2.0 + offset


@pytest.fixture
def unsafe_off():
    """Undo ``enable_unsafe_deserialization`` after a test."""
    yield
    lamina.backend.set_safe_mode_override(None)


# ------------------------------------------------------------------------------------------ LoRA


def _lora_pair(keras, rank=2, alpha=3.0, activation="tanh"):
    """The same LoRA Dense in Keras and lamina, with a nonzero ``lora_kernel_b`` (so the factors matter)."""
    kl = keras.layers.Dense(3, activation=activation)
    kl.build((None, 4))
    kl.enable_lora(rank, lora_alpha=alpha)
    kl.lora_kernel_b.assign(RNG.normal(size=(rank, 3)).astype("float32"))
    kl.bias.assign(RNG.normal(size=(3,)).astype("float32"))
    ll = layers.Dense(3, activation=activation)
    ll.build((None, 4))
    ll.enable_lora(rank, lora_alpha=alpha)
    values = {v.path.split("/")[-1]: keras.ops.convert_to_numpy(v) for v in kl.weights}
    for v in ll.weights:
        v.assign(values[v.name])
    return kl, ll


@pytest.mark.oracle
def test_lora_forward_and_gradients_match_keras(keras):
    kl, ll = _lora_pair(keras)
    assert [v.name for v in ll.trainable_weights] == ["bias", "lora_kernel_a", "lora_kernel_b"]
    assert [v.name for v in ll.non_trainable_weights] == ["kernel"]
    assert ll.lora_kernel_a.dtype == ll.lora_kernel_b.dtype == "float32"
    proj = RNG.normal(size=(5, 3)).astype("float32")
    k_out, k_dx, k_dw = keras_forward_and_grads(kl, X2, proj)
    l_out, l_dx, l_dw = lamina_forward_and_grads(ll, X2, proj)
    np.testing.assert_allclose(l_out, k_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(l_dx, k_dx, rtol=1e-5, atol=1e-6)
    for lw, kw in zip(l_dw, k_dw, strict=True):
        np.testing.assert_allclose(lw, kw, rtol=1e-5, atol=1e-6)
    # Outside a tape and in call_logits the effective kernel kernel + (alpha / rank) a @ b is used too.
    # `kernel` reads the merged array with LoRA on (as Keras); the frozen variable is `_kernel`.
    effective = ll._kernel.numpy() + 1.5 * ll.lora_kernel_a.numpy() @ ll.lora_kernel_b.numpy()
    np.testing.assert_allclose(ll.kernel, effective, rtol=1e-6)
    np.testing.assert_allclose(ll.call_logits(X2), X2 @ effective + ll.bias.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ll(X2), np.tanh(X2 @ effective + ll.bias.numpy()), rtol=1e-5, atol=1e-6)


def test_lora_gradcheck():
    # Linear activation: the output is linear in each weight, so central differences are exact even for
    # the float32 LoRA factors (Keras keeps them float32 whatever the layer's dtype), given a large step.
    layer = layers.Dense(3, dtype="float64", bias_initializer="random_normal")
    layer.build((None, 4))
    layer.enable_lora(2, lora_alpha=5.0, b_initializer="random_normal")
    check_layer_gradients(layer, random_inputs((5, 4), seed=2), h=1e-2, rtol=1e-4, atol=1e-5)


def test_lora_starts_as_the_plain_layer_and_freezes_the_kernel():
    layer = layers.Dense(3)
    before = layer(X2).copy()
    layer.enable_lora(2)
    assert layer.lora_enabled and layer.lora_rank == 2 and layer.lora_alpha == 2
    assert not layer._kernel.trainable
    np.testing.assert_array_equal(layer(X2), before)  # b starts at zero
    assert layer.lora_kernel_a.shape == (4, 2) and layer.lora_kernel_b.shape == (2, 3)


def test_lora_errors():
    with pytest.raises(ValueError, match="isn't yet built"):
        layers.Dense(3).enable_lora(2)
    constrained = layers.Dense(3, kernel_constraint="non_neg")
    constrained.build((None, 4))
    with pytest.raises(ValueError, match="incompatible with kernel constraints"):
        constrained.enable_lora(2)
    layer = layers.Dense(3)
    layer.build((None, 4))
    with pytest.raises(ValueError, match="rank must be a positive integer.*Received: rank=0"):
        layer.enable_lora(0)
    layer.enable_lora(2)
    with pytest.raises(ValueError, match="lora is already enabled"):
        layer.enable_lora(2)


def test_lora_rank_argument_and_config_round_trip():
    layer = layers.Dense(3, lora_rank=2, lora_alpha=4.0)
    assert not layer.lora_enabled
    layer.build((None, 4))
    assert layer.lora_enabled and layer.lora_alpha == 4.0
    config = layer.get_config()
    assert config["lora_rank"] == 2 and config["lora_alpha"] == 4.0
    again = layers.Dense.from_config(json.loads(json.dumps(config)))
    again.build((None, 4))
    assert again.lora_enabled and again.lora_rank == 2 and again.lora_alpha == 4.0
    assert "lora_rank" not in layers.Dense(3).get_config()


def _lora_model(rank=2):
    model = lamina.Sequential([lamina.Input((4,)), layers.Dense(5, activation="relu"), layers.Dense(3)])
    model.layers[0].enable_lora(rank, b_initializer="random_normal")
    return model


def test_lora_weights_files_hold_the_merged_kernel(tmp_path):
    model = _lora_model()
    model.save_weights(tmp_path / "lora.weights.h5")
    plain = lamina.Sequential([lamina.Input((4,)), layers.Dense(5, activation="relu"), layers.Dense(3)])
    plain.load_weights(tmp_path / "lora.weights.h5")
    np.testing.assert_allclose(plain.predict(X2, verbose=0), model.predict(X2, verbose=0), rtol=1e-5, atol=1e-6)
    # A plain checkpoint into the LoRA model: kernel assigned, factors reset to zero.
    plain.layers[0].kernel.assign(plain.layers[0].kernel.numpy() * 2)
    plain.save_weights(tmp_path / "plain.weights.h5")
    model.load_weights(tmp_path / "plain.weights.h5")
    assert not np.any(model.layers[0].lora_kernel_b.numpy())
    np.testing.assert_allclose(model.predict(X2, verbose=0), plain.predict(X2, verbose=0), rtol=1e-5, atol=1e-6)
    bad = lamina.Sequential([lamina.Input((6,)), layers.Dense(5, activation="relu"), layers.Dense(3)])
    bad.layers[0].enable_lora(2)
    with pytest.raises(ValueError, match="wrong shape"):
        bad.load_weights(tmp_path / "plain.weights.h5")


@pytest.mark.oracle
def test_lora_keras_files_both_ways(keras, tmp_path):
    km = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, lora_rank=2)])
    km.layers[0].lora_kernel_b.assign(RNG.normal(size=(2, 3)).astype("float32"))
    km.save(tmp_path / "k.keras")
    lm = lamina.saving.load_model(tmp_path / "k.keras")
    assert lm.layers[0].lora_enabled and lm.layers[0].lora_rank == 2
    np.testing.assert_allclose(lm.predict(X2, verbose=0), keras.ops.convert_to_numpy(km(X2)), rtol=1e-5, atol=1e-6)
    lm.layers[0].lora_kernel_b.assign(RNG.normal(size=(2, 3)).astype("float32"))
    lm.save(tmp_path / "l.keras")
    km2 = keras.saving.load_model(tmp_path / "l.keras")
    assert km2.layers[0].lora_enabled
    np.testing.assert_allclose(keras.ops.convert_to_numpy(km2(X2)), lm.predict(X2, verbose=0), rtol=1e-5, atol=1e-6)


def test_lora_compiled_fit_matches_the_tape_step():
    x = RNG.normal(size=(64, 4)).astype("float32")
    y = RNG.normal(size=(64, 3)).astype("float32")

    def train(run_eagerly):
        lamina.utils.set_random_seed(5)
        model = _lora_model()
        model.compile(optimizer="adam", loss="mse", run_eagerly=run_eagerly)
        lamina.utils.set_random_seed(9)
        history = model.fit(x, y, batch_size=8, epochs=3, verbose=0)
        return model, history.history

    compiled, hist_c = train(False)
    eager, hist_e = train(True)
    # The LoRA layer is not traced as a plain Dense (its kernel is not the `_kernel` variable): it runs as
    # a tape node inside the compiled plan, the other Dense as a kernel node.
    nodes = compiled._fast_step.nodes
    assert [type(n).__name__ for n in nodes] == ["_TapeNode", "_DenseNode"]
    dense = compiled.layers[0]
    for wa, wb in zip(compiled.get_weights(), eager.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(hist_c["loss"], hist_e["loss"], rtol=1e-6)
    lamina.utils.set_random_seed(5)
    fresh = _lora_model()
    np.testing.assert_array_equal(dense._kernel.numpy(), fresh.layers[0]._kernel.numpy())  # frozen
    assert not np.allclose(dense.lora_kernel_b.numpy(), fresh.layers[0].lora_kernel_b.numpy())  # trained


# ---------------------------------------------------------------------------------------- Lambda


@pytest.mark.oracle
def test_lambda_matches_keras(keras):
    def fn(x, scale, mask=None, training=None):
        return x * scale + (1.0 if training else 0.0)

    k = keras.layers.Lambda(fn, arguments={"scale": 3.0})
    lam = layers.Lambda(fn, arguments={"scale": 3.0})
    np.testing.assert_allclose(lam(X2, training=True), keras.ops.convert_to_numpy(k(X2, training=True)), rtol=1e-6)
    np.testing.assert_allclose(lam(X2), keras.ops.convert_to_numpy(k(X2)), rtol=1e-6)
    for output_shape in [(8,), lambda s: (s[0], 8)]:
        kk = keras.layers.Lambda(lambda x: keras.ops.concatenate([x, x], axis=1), output_shape=output_shape)
        ll = layers.Lambda(lambda x: ops.concatenate([x, x], axis=1), output_shape=output_shape)
        assert ll.compute_output_shape((None, 4)) == tuple(kk.compute_output_shape((None, 4)))
    assert layers.Lambda(lambda x: x[:, :2]).compute_output_shape((None, 4)) == (None, 2)


def test_lambda_in_a_model_gradcheck_and_mask():
    layer = layers.Lambda(lambda x, k: ops.tanh(x) * k, arguments={"k": 2.0}, dtype="float64")
    check_layer_gradients(layer, random_inputs((3, 4), seed=1), float32=False)  # (its twin needs unsafe mode)
    mask = np.array([[True, False, True, True]] * 5)
    masked = layers.Lambda(lambda x: x, mask=lambda inputs, m: mask)
    assert masked.supports_masking and masked.compute_mask(X2) is mask
    assert lamina.backend.get_keras_mask(masked(X2.copy())) is mask  # a copy: the identity would mask X2 itself
    i = lamina.Input((4,))
    model = lamina.Model(i, layers.Dense(2)(layers.Lambda(lambda x: x * 2.0)(i)))
    assert model.output_shape == (None, 2)
    with pytest.raises(NotImplementedError, match="specify the `output_shape`"):
        layers.Lambda(lambda x: x.no_such_attribute).compute_output_shape((None, 4))


def test_lambda_config_refuses_code_in_safe_mode(unsafe_off):
    layer = layers.Lambda(_scaled_by(0.5), output_shape=lambda s: s)
    config = json.loads(json.dumps(layer.get_config()))
    assert config["function"]["class_name"] == "__lambda__"
    assert config["function"]["config"]["closure"] == [0.5]
    with pytest.raises(ValueError, match="safe_mode=False"):
        layers.Lambda.from_config(dict(config))  # a direct call is treated as safe mode (fails closed)
    with pytest.raises(ValueError, match="safe_mode=False"):
        layers.deserialize(layers.serialize(layer))
    again = layers.Lambda.from_config(dict(config), safe_mode=False)
    np.testing.assert_allclose(again(X2), X2 * 2.0 + 0.5, rtol=1e-6)
    assert again.compute_output_shape((None, 4)) == (None, 4)
    lamina.config.enable_unsafe_deserialization()
    np.testing.assert_allclose(layers.deserialize(layers.serialize(layer))(X2), X2 * 2.0 + 0.5, rtol=1e-6)


def test_lambda_named_function_round_trip_in_safe_mode(tmp_path):
    def double(x):
        return x * 2.0

    model = lamina.Sequential([lamina.Input((4,)), layers.Lambda(double, output_shape=(4,)), layers.Dense(2)])
    model.save(tmp_path / "m.keras")
    with pytest.raises(FileFormatError, match="Lambda layer.*safe_mode=False"):
        lamina.saving.load_model(tmp_path / "m.keras")  # 'double' is unknown: it would be code from the file
    loaded = lamina.saving.load_model(tmp_path / "m.keras", custom_objects={"double": double})
    np.testing.assert_allclose(loaded.predict(X2, verbose=0), model.predict(X2, verbose=0), rtol=1e-6)
    relu = layers.Lambda(lamina.activations.relu)
    assert layers.deserialize(layers.serialize(relu)).function is lamina.activations.relu


@pytest.mark.oracle
def test_lambda_keras_files_both_ways(keras, tmp_path):
    km = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(_scaled_by(0.25)), keras.layers.Dense(2)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns that it writes a lambda
        km.save(tmp_path / "k.keras")
    with pytest.raises(FileFormatError, match="safe_mode"):
        lamina.saving.load_model(tmp_path / "k.keras")
    lm = lamina.saving.load_model(tmp_path / "k.keras", safe_mode=False)
    np.testing.assert_allclose(lm.predict(X2, verbose=0), keras.ops.convert_to_numpy(km(X2)), rtol=1e-5, atol=1e-6)
    lm.save(tmp_path / "l.keras")
    with pytest.raises(ValueError, match="safe_mode"):
        keras.saving.load_model(tmp_path / "l.keras")
    km2 = keras.saving.load_model(tmp_path / "l.keras", safe_mode=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(km2(X2)), lm.predict(X2, verbose=0), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------- TimeDistributed


@pytest.mark.oracle
@pytest.mark.parametrize("inner", ["dense", "layer_norm"])
def test_time_distributed_matches_keras(keras, inner):
    make = {"dense": lambda m: m.Dense(3, activation="tanh"), "layer_norm": lambda m: m.LayerNormalization()}[inner]
    kl, ll = keras.layers.TimeDistributed(make(keras.layers)), layers.TimeDistributed(make(layers))
    kl.build((None, 3, 4))
    ll.build((None, 3, 4))
    for v, kv in zip(ll.weights, kl.weights, strict=True):
        v.assign(RNG.normal(size=v.shape).astype("float32"))
        kv.assign(v.numpy())
    proj = RNG.normal(size=tuple(ll.compute_output_shape((5, 3, 4)))).astype("float32")
    k_out, k_dx, k_dw = keras_forward_and_grads(kl, X3, proj)
    l_out, l_dx, l_dw = lamina_forward_and_grads(ll, X3, proj)
    np.testing.assert_allclose(l_out, k_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(l_dx, k_dx, rtol=1e-5, atol=1e-5)
    for lw, kw in zip(l_dw, k_dw, strict=True):
        np.testing.assert_allclose(lw, kw, rtol=1e-5, atol=1e-5)
    assert ll.compute_output_shape((None, 3, 4)) == tuple(kl.compute_output_shape((None, 3, 4)))


def test_time_distributed_gradcheck_shapes_and_errors():
    layer = layers.TimeDistributed(layers.Dense(3, activation="tanh", dtype="float64"), dtype="float64")
    # float32=False: the harness's float32 twin would keep the inner layer's own float64 dtype.
    check_layer_gradients(layer, random_inputs((2, 4, 5), seed=3), float32=False)
    assert [v.name for v in layer.weights] == ["kernel", "bias"]
    with pytest.raises(ValueError, match="at least 3 dimensions, received: \\(None, 4\\)"):
        layers.TimeDistributed(layers.Dense(3)).build((None, 4))
    with pytest.raises(ValueError, match="with a `lamina.layers.Layer` instance"):
        layers.TimeDistributed(lambda x: x)
    with pytest.raises(ValueError, match="incompatible with the input shape"):
        layers.TimeDistributed(layers.Dense(3))(X3, mask=np.ones((5, 2), bool))
    i = lamina.Input((3, 4))
    assert layers.TimeDistributed(layers.Dense(7))(i).shape == (None, 3, 7)


@pytest.mark.oracle
def test_time_distributed_config_and_keras_files_both_ways(keras, tmp_path):
    lm = lamina.Sequential([lamina.Input((3, 4)), layers.TimeDistributed(layers.Dense(2, activation="relu"))])
    config = json.loads(json.dumps(lm.layers[0].get_config()))
    assert config["layer"]["class_name"] == "Dense"
    again = layers.TimeDistributed.from_config(config)
    assert again.layer.units == 2 and again.layer.activation is lamina.activations.relu
    lm.save(tmp_path / "l.keras")
    km = keras.saving.load_model(tmp_path / "l.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(km(X3)), lm.predict(X3, verbose=0), rtol=1e-5, atol=1e-6)
    km.save(tmp_path / "k.keras")
    lm2 = lamina.saving.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(lm2.predict(X3, verbose=0), lm.predict(X3, verbose=0), rtol=1e-6)


def test_weights_keep_keras_creation_order_after_a_kernel_is_frozen():
    """Keras lists a layer's weights by the trainability they were created with: after enable_lora the
    frozen kernel stays first, so get_weights()/set_weights() line up with Keras's."""
    dense = lamina.layers.Dense(3)
    dense.build((None, 4))
    dense.enable_lora(2)
    assert [w.name for w in dense.weights] == ["kernel", "bias", "lora_kernel_a", "lora_kernel_b"]
    assert [w.name for w in dense.non_trainable_weights] == ["kernel"]
    frozen = lamina.layers.Dense(2)
    frozen.build((None, 3))
    frozen.kernel.trainable = False
    assert [w.name for w in frozen.weights] == ["kernel", "bias"]
    assert [w.name for w in frozen.trainable_weights] == ["bias"]
