"""Embedding and mask propagation: forward, gradients, training and files against real Keras (torch), the
mask through pass-through layers, merges, pooling, losses and metrics, config and errors."""

import json
import warnings

import numpy as np
import pytest

import lamina
from lamina import backend
from lamina import layers as L
from tests.helpers import check_layer_gradients

RNG = np.random.default_rng(7)
# Padded batches: zeros at the end of each row (row 2 is all padding but its first step).
IDS = np.array([[3, 1, 4, 1, 5, 0, 0], [2, 6, 5, 3, 5, 8, 9], [7, 0, 0, 0, 0, 0, 0]])


def _k(keras, x):
    return keras.ops.convert_to_numpy(x)


# ----------------------------------------------------------------------------- Embedding alone


@pytest.mark.oracle
@pytest.mark.parametrize("shape", [(5,), (4, 1), (3, 7), (2, 3, 4), (2, 100)])
def test_forward_matches_keras_for_indices_of_any_rank(keras, shape):
    ids = RNG.integers(0, 10, size=shape)
    layer = L.Embedding(10, 4)
    out = layer(ids)
    kl = keras.layers.Embedding(10, 4)
    kl.build()
    kl.set_weights(layer.get_weights())
    assert out.shape == shape + (4,) and out.dtype == np.float32
    np.testing.assert_allclose(out, _k(keras, kl(ids)), rtol=1e-4)


@pytest.mark.oracle
def test_negative_and_float_indices_as_keras(keras):
    layer = L.Embedding(6, 3)
    layer.build()
    kl = keras.layers.Embedding(6, 3)
    kl.build()
    kl.set_weights(layer.get_weights())
    neg = np.array([[-1, -6, 2]])  # Keras's take counts a negative index from the end
    np.testing.assert_allclose(layer(neg), _k(keras, kl(neg)), rtol=1e-6)
    floats = np.array([[1.7, 4.2, 0.0]], dtype="float32")  # cast to int32: truncated
    np.testing.assert_allclose(layer(floats), _k(keras, kl(floats)), rtol=1e-6)


def test_embeddings_gradient_is_a_scatter_add_float64():
    layer = L.Embedding(9, 3, dtype="float64")
    ids = np.array([[1, 1, 4, 0], [4, 8, 1, 2]])  # repeated indices: their gradients add
    check_layer_gradients(layer, ids, check_input=False)


@pytest.mark.oracle
def test_gradient_matches_keras_with_repeated_indices(keras):
    import torch  # lazy: the oracle's backend

    ids = np.array([[1, 1, 4, 0, 1], [4, 9, 1, 2, 0]])
    proj = RNG.normal(size=(2, 5, 3)).astype("float32")
    layer = L.Embedding(10, 3)
    with lamina.GradientTape() as tape:
        loss = lamina.ops.sum(lamina.ops.multiply(layer(ids), proj))
    (grad,) = tape.gradient(loss, layer.trainable_weights)
    kl = keras.layers.Embedding(10, 3)
    kl.build()
    kl.set_weights(layer.get_weights())
    (kl(ids) * torch.tensor(proj)).sum().backward()
    np.testing.assert_allclose(grad, kl.embeddings.value.grad.numpy(), rtol=1e-5, atol=1e-7)
    assert not grad[[3, 5, 6, 7, 8]].any()  # rows never looked up get nothing


@pytest.mark.oracle
def test_lora_forward_gradients_and_config_match_keras(keras):
    # enable_lora(rank, lora_alpha): Keras's build drops a lora_alpha given to the constructor (it calls
    # enable_lora(rank)); lamina keeps it, as its Dense does, so the oracle enables LoRA explicitly.
    layer = L.Embedding(8, 4)
    layer.build()
    layer.enable_lora(2, lora_alpha=3)
    layer.lora_embeddings_b.assign(RNG.normal(size=(2, 4)).astype("float32"))
    assert [w.name for w in layer.trainable_weights] == ["lora_embeddings_a", "lora_embeddings_b"]
    kl = keras.layers.Embedding(8, 4)
    kl.build()
    kl.enable_lora(2, lora_alpha=3)
    for name in ("embeddings", "lora_embeddings_a", "lora_embeddings_b"):  # by name: the orders differ
        getattr(kl, "_embeddings" if name == "embeddings" else name).assign(
            getattr(layer, "_embeddings" if name == "embeddings" else name).numpy())
    ids = np.array([[1, 2, 2, 7], [0, 5, 1, 1]])
    np.testing.assert_allclose(layer(ids), _k(keras, kl(ids)), rtol=1e-5)
    np.testing.assert_allclose(layer.embeddings, _k(keras, kl.embeddings), rtol=1e-5, atol=1e-7)
    config = layer.get_config()
    assert config["lora_rank"] == 2 and config["lora_alpha"] == 3
    assert set(config) == set(kl.get_config())
    assert L.Embedding.from_config(config).get_config()["lora_alpha"] == 3

    import torch  # lazy: the oracle's backend

    proj = RNG.normal(size=(2, 4, 4)).astype("float32")
    with lamina.GradientTape() as tape:
        loss = lamina.ops.sum(lamina.ops.multiply(layer(ids), proj))
    grads = tape.gradient(loss, [layer.lora_embeddings_a, layer.lora_embeddings_b])
    (kl(ids) * torch.tensor(proj)).sum().backward()
    for g, kw in zip(grads, [kl.lora_embeddings_a, kl.lora_embeddings_b], strict=True):
        np.testing.assert_allclose(g, kw.value.grad.numpy(), rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- config, files, errors


@pytest.mark.oracle
def test_config_keys_and_round_trip_match_keras(keras):
    kwargs = dict(embeddings_initializer="he_normal", embeddings_regularizer="l2", embeddings_constraint="non_neg",
                  mask_zero=True)
    config = L.Embedding(7, 3, **kwargs).get_config()
    kconfig = keras.layers.Embedding(7, 3, **kwargs).get_config()
    assert set(config) == set(kconfig)
    for key in ("input_dim", "output_dim", "mask_zero", "embeddings_regularizer", "embeddings_initializer",
                "embeddings_constraint", "quantization_config"):
        assert config[key] == kconfig[key], key
    again = L.Embedding.from_config(json.loads(json.dumps(config)))
    assert again.get_config() == config
    assert again.supports_masking and again.mask_zero
    k_again = keras.layers.Embedding.from_config(json.loads(json.dumps(config)))
    assert k_again.mask_zero


def test_keras2_input_length_is_accepted_with_keras_warning():
    with pytest.warns(UserWarning, match="`input_length` is deprecated"):
        layer = L.deserialize({"class_name": "Embedding", "config": {"input_dim": 5, "output_dim": 2,
                                                                      "input_length": 7, "name": "old"}})
    assert layer(np.zeros((1, 7), "int32")).shape == (1, 7, 2)
    assert "input_length" not in layer.get_config()


def test_weights_argument_sets_the_table():
    table = RNG.normal(size=(4, 3)).astype("float32")
    for weights in (table, [table]):
        layer = L.Embedding(4, 3, weights=weights)
        np.testing.assert_array_equal(layer.embeddings.numpy(), table)
        np.testing.assert_array_equal(layer(np.array([3, 0])), table[[3, 0]])
    with pytest.raises(ValueError, match="shape"):
        L.Embedding(4, 3, weights=np.ones((3, 4)))


@pytest.mark.oracle
def test_keras_files_both_ways_with_masks(keras, tmp_path):
    km = keras.Sequential([keras.Input((7,), dtype="int32"), keras.layers.Embedding(10, 4, mask_zero=True),
                           keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2)])
    km.save(tmp_path / "k.keras")
    lm = lamina.saving.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(lm.predict(IDS, verbose=0), _k(keras, km(IDS)), rtol=1e-4, atol=1e-6)
    lm.layers[0].embeddings.assign(RNG.normal(size=(10, 4)).astype("float32"))
    lm.save(tmp_path / "l.keras")
    km2 = keras.saving.load_model(tmp_path / "l.keras")
    assert km2.layers[0].mask_zero
    np.testing.assert_allclose(_k(keras, km2(IDS)), lm.predict(IDS, verbose=0), rtol=1e-4, atol=1e-6)


@pytest.mark.oracle
def test_lora_keras_files_both_ways(keras, tmp_path):
    lm = lamina.Sequential([lamina.Input((7,), dtype="int32"), L.Embedding(10, 4, lora_rank=2)])
    lm.layers[0].lora_embeddings_b.assign(RNG.normal(size=(2, 4)).astype("float32"))
    lm.save(tmp_path / "l.keras")
    km = keras.saving.load_model(tmp_path / "l.keras")
    assert km.layers[0].lora_enabled
    np.testing.assert_allclose(_k(keras, km(IDS)), lm.predict(IDS, verbose=0), rtol=1e-5)
    km.layers[0].lora_embeddings_b.assign(RNG.normal(size=(2, 4)).astype("float32"))
    km.save(tmp_path / "k.keras")
    lm2 = lamina.saving.load_model(tmp_path / "k.keras")
    assert lm2.layers[0].lora_enabled and not lm2.layers[0].lora_embeddings_b.numpy().any()  # merged on save
    np.testing.assert_allclose(lm2.predict(IDS, verbose=0), _k(keras, km(IDS)), rtol=1e-5)


@pytest.mark.parametrize("bad", [3.7, 4.0, "3", None, True, 0, -1])
def test_invalid_dims(bad):
    with pytest.raises(ValueError, match=r"`input_dim` must be a positive integer.*Received: input_dim="):
        L.Embedding(bad, 4)
    with pytest.raises(ValueError, match=r"`output_dim` must be a positive integer.*Received: output_dim="):
        L.Embedding(4, bad)


def test_from_config_failure_is_a_type_error_as_keras():
    with pytest.raises(TypeError, match="`input_dim` must be a positive integer"):
        L.Embedding.from_config({"input_dim": 3.7, "output_dim": 8})


def test_out_of_range_indices_raise_a_clear_error():
    layer = L.Embedding(5, 2, name="words")
    with pytest.raises(IndexError, match=r"'words' has input_dim=5.*Received: indices from 0 to 5"):
        layer(np.array([[0, 5]]))
    with pytest.raises(IndexError, match=r"Received: indices from -6 to 1"):
        layer(np.array([[-6, 1]]))
    with pytest.raises(TypeError, match="numeric inputs"):
        layer(np.array([["a", "b"]]))


def test_lora_errors():
    with pytest.raises(ValueError, match="incompatible with embedding constraints"):
        L.Embedding(4, 2, embeddings_constraint="max_norm").enable_lora(2)
    with pytest.raises(ValueError, match="isn't yet built"):
        L.Embedding(4, 2).enable_lora(2)
    layer = L.Embedding(4, 2, lora_rank=1)
    layer.build()
    with pytest.raises(ValueError, match="already enabled"):
        layer.enable_lora(1)


# ----------------------------------------------------------------------------- masks through models


def _twins(keras, build):
    lm = build(L, lamina)
    km = build(keras.layers, keras)
    km.set_weights(lm.get_weights())
    return lm, km


def _embed_pool_dense(Ly, lib):
    i = Ly.Input((7,), dtype="int32")
    h = Ly.Embedding(10, 4, mask_zero=True)(i)
    h = Ly.Dense(5, activation="tanh")(h)  # passes the mask on
    h = Ly.GlobalAveragePooling1D()(h)  # means over the kept steps
    return lib.Model(i, Ly.Dense(1, activation="sigmoid")(h))


def _embed_pool_dense_seq(Ly, lib):
    return lib.Sequential([Ly.Input((7,), dtype="int32"), Ly.Embedding(10, 4, mask_zero=True),
                           Ly.Activation("relu"), Ly.GlobalAveragePooling1D(), Ly.Dense(1, activation="sigmoid")])


@pytest.mark.oracle
@pytest.mark.parametrize("build", [_embed_pool_dense, _embed_pool_dense_seq])
def test_masked_mean_model_matches_keras(keras, build):
    lm, km = _twins(keras, build)
    expected = _k(keras, km(IDS))
    np.testing.assert_allclose(lm(IDS), expected, rtol=1e-4)
    np.testing.assert_allclose(lm.predict(IDS, verbose=0), expected, rtol=1e-4)
    # the mask matters: without it the padded steps would count in the mean
    unmasked = build(L, lamina)
    unmasked.set_weights(lm.get_weights())
    next(layer for layer in unmasked.layers if isinstance(layer, L.Embedding)).mask_zero = False
    assert not np.allclose(unmasked(IDS), expected, rtol=1e-3)


@pytest.mark.oracle
@pytest.mark.parametrize("build", [_embed_pool_dense, _embed_pool_dense_seq])
def test_training_steps_match_keras(keras, build):
    y = np.array([[1.0], [0.0], [1.0]], dtype="float32")
    lm, km = _twins(keras, build)
    lm.compile(optimizer=lamina.optimizers.Adam(0.05), loss="binary_crossentropy", metrics=["accuracy"])
    km.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy", metrics=["accuracy"])
    for _ in range(3):
        np.testing.assert_allclose(lm.train_on_batch(IDS, y), km.train_on_batch(IDS, y), rtol=1e-4)
    for a, b in zip(lm.get_weights(), km.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def _per_step(Ly, lib):
    i = Ly.Input((7,), dtype="int32")
    h = Ly.Embedding(10, 3, mask_zero=True)(i)
    return lib.Model(i, Ly.Dense(2, activation="sigmoid")(h))


@pytest.mark.oracle
def test_losses_and_metrics_weight_by_the_output_mask_as_keras(keras):
    y = (RNG.random((3, 7, 2)) > 0.5).astype("float32")
    lm, km = _twins(keras, _per_step)
    lm.compile(optimizer=lamina.optimizers.SGD(0.5), loss="binary_crossentropy", metrics=["accuracy", "mae"])
    km.compile(optimizer=keras.optimizers.SGD(0.5), loss="binary_crossentropy", metrics=["accuracy", "mae"])
    np.testing.assert_allclose(lm.evaluate(IDS, y, verbose=0), km.evaluate(IDS, y, verbose=0), rtol=1e-4)
    for _ in range(2):
        np.testing.assert_allclose(lm.train_on_batch(IDS, y), km.train_on_batch(IDS, y), rtol=1e-4)
    for a, b in zip(lm.get_weights(), km.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # padded steps do not count: changing their targets changes nothing
    y2 = y.copy()
    y2[IDS == 0] = 1 - y2[IDS == 0]
    np.testing.assert_allclose(lm.evaluate(IDS, y2, verbose=0), lm.evaluate(IDS, y, verbose=0), rtol=1e-6)


def _masking_merges(Ly, lib):
    a = Ly.Input((5, 3))
    b = Ly.Input((5, 3))
    ma = Ly.Masking()(a)
    mb = Ly.Masking(mask_value=1.0)(b)
    da = Ly.Dense(3)(ma)
    outs = [Ly.GlobalAveragePooling1D()(m([da, mb])) for m in
            (Ly.Add(), Ly.Maximum(), Ly.Minimum(), Ly.Multiply(), Ly.Average())]
    outs.append(Ly.GlobalAveragePooling1D()(Ly.Concatenate(axis=-1)([da, b])))  # b has no mask
    outs.append(Ly.GlobalAveragePooling1D()(Ly.Concatenate(axis=1)([da, mb])))
    return lib.Model([a, b], outs)


@pytest.mark.oracle
def test_masking_through_dense_into_merges_matches_keras(keras):
    xa = RNG.normal(size=(4, 5, 3)).astype("float32")
    xb = RNG.normal(size=(4, 5, 3)).astype("float32")
    xa[:, 3:] = 0.0
    xa[1, :2] = 0.0
    xb[:, 0] = 1.0
    xb[2, 4] = 1.0
    lm, km = _twins(keras, _masking_merges)
    for got, want in zip(lm([xa, xb]), km([xa, xb]), strict=True):
        np.testing.assert_allclose(got, _k(keras, want), rtol=1e-4, atol=1e-6)
    for got, want in zip(lm.predict([xa, xb], verbose=0), km.predict([xa, xb], verbose=0), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.oracle
def test_global_max_pooling_ignores_the_mask_as_keras(keras):
    # Keras's GlobalMaxPooling1D does not support masking: the padded steps count, with Keras's warning.
    def build(Ly, lib):
        i = Ly.Input((7,), dtype="int32")
        return lib.Model(i, Ly.GlobalMaxPooling1D()(Ly.Embedding(10, 3, mask_zero=True)(i)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras's own warning, when its model is built and called
        lm, km = _twins(keras, build)
        want = _k(keras, km(IDS))
    with pytest.warns(UserWarning, match="does not support masking"):
        got = lm(IDS)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_mask_reaches_call_and_follows_supporting_layers():
    seen = {}

    class Probe(L.Layer):
        def __init__(self):
            super().__init__()
            self.supports_masking = True

        def call(self, inputs, mask=None):
            seen["mask"] = mask
            return inputs

    emb = L.Embedding(10, 2, mask_zero=True)
    out = Probe()(L.Dropout(0.5)(L.Dense(3)(emb(IDS)), training=True))
    np.testing.assert_array_equal(seen["mask"], IDS != 0)
    np.testing.assert_array_equal(backend.get_keras_mask(out), IDS != 0)
    assert backend.get_keras_mask(L.GlobalAveragePooling1D()(out)) is None  # pooling consumes it
    explicit = np.ones(IDS.shape, bool)
    Probe()(emb(IDS), mask=explicit)  # a mask given by name wins, as in Keras
    assert seen["mask"] is explicit


def test_embedding_symbolic_mask_is_a_graph_node():
    i = L.Input((7,), dtype="int32")
    h = L.Embedding(10, 2, mask_zero=True)(i)
    mask = backend.get_keras_mask(h)
    assert mask is not None and tuple(mask.shape) == (None, 7)
    model = lamina.Model(i, [h, mask])
    np.testing.assert_array_equal(model(IDS)[1], IDS != 0)
    d = L.Dropout(0.2)(L.Dense(3)(h))  # pass-through layers carry the mask node on, as Keras's KerasTensors
    assert backend.get_keras_mask(d) is mask
    assert backend.get_keras_mask(L.GlobalAveragePooling1D()(d)) is None
    assert L.Embedding(10, 2).compute_mask(IDS) is None


def test_compiled_step_leaves_masked_models_on_the_tape():
    lm = _embed_pool_dense_seq(L, lamina)
    lm.compile(optimizer="sgd", loss="binary_crossentropy")
    y = np.array([[1.0], [0.0], [1.0]], dtype="float32")
    ref = _embed_pool_dense_seq(L, lamina)
    ref.set_weights(lm.get_weights())
    lm.fit(IDS, y, epochs=1, batch_size=3, verbose=0)
    # one SGD step by hand on the tape, with the mask
    with lamina.GradientTape() as tape:
        loss = lamina.losses.BinaryCrossentropy()(y, ref(IDS))
    grads = tape.gradient(loss, ref.trainable_weights)
    for w, g, new in zip(ref.trainable_weights, grads, lm.trainable_weights, strict=True):
        np.testing.assert_allclose(new.numpy(), w.numpy() - 0.01 * g, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- quantization


@pytest.mark.oracle
@pytest.mark.parametrize("mode,block", [("int8", None), ("int4", None), ("int4", 4)])
def test_quantized_lookup_and_files_match_keras(keras, tmp_path, mode, block):
    from keras.src.quantizers.quantization_config import Int4QuantizationConfig  # the oracle's config class

    table = np.random.default_rng(11).normal(size=(10, 8)).astype("float32")
    lm = lamina.Sequential([lamina.Input((7,), dtype="int32"), L.Embedding(10, 8, weights=table, mask_zero=True)])
    km = keras.Sequential([keras.Input((7,), dtype="int32"), keras.layers.Embedding(10, 8, weights=table,
                                                                                  mask_zero=True)])
    if block is None:
        lm.quantize(mode)
        km.layers[0].quantize(mode)  # the layer: Keras's Model.quantize warns about its InputLayer
    else:
        lm.quantize(mode, config=lamina.quantizers.Int4QuantizationConfig(block_size=block))
        km.layers[0].quantize(mode, config=Int4QuantizationConfig(block_size=block))
    layer = lm.layers[0]
    assert layer.dtype_policy.name == km.layers[0].dtype_policy.name
    assert [w.name for w in layer.weights] == [w.name for w in km.layers[0].weights]
    for got, want in zip(layer.get_weights(), km.layers[0].get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    out = lm(IDS)
    np.testing.assert_allclose(out, _k(keras, km(IDS)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(backend.get_keras_mask(out), IDS != 0)
    if block is None:  # per row: off by at most one step of the row's scale (Keras's zero-point groups clip more)
        step = np.abs(table).max() / (127 if mode == "int8" else 7)
        assert np.abs(out - table[IDS]).max() <= step
    lm.save(tmp_path / "l.keras")
    np.testing.assert_allclose(_k(keras, keras.saving.load_model(tmp_path / "l.keras")(IDS)), out, rtol=1e-5,
                               atol=1e-6)
    km.save(tmp_path / "k.keras")
    np.testing.assert_allclose(lamina.saving.load_model(tmp_path / "k.keras")(IDS), out, rtol=1e-5, atol=1e-6)


def test_quantize_errors():
    layer = L.Embedding(10, 4)
    with pytest.raises(ValueError, match="isn't yet built"):
        layer.quantize("int8")
    layer.build()
    with pytest.raises(NotImplementedError, match=r"Invalid quantization mode. Expected one of \('int8', 'int4'\)"):
        layer.quantize("float8")
    layer.quantize("int8")
    with pytest.raises(ValueError, match="already quantized"):
        layer.quantize("int4")

    class MyEmbedding(L.Embedding):
        pass

    sub = MyEmbedding(10, 4)
    sub.build()
    with pytest.raises(NotImplementedError, match="does not have a `quantize` method"):
        sub.quantize("int8")


def test_sequential_inference_keeps_its_fast_path_unless_a_layer_can_start_a_mask():
    """Global pooling only ends masks, so a convnet's stack still calls each layer's ``call`` directly in
    predict; an ``Embedding(mask_zero=True)`` stack goes through ``__call__`` and its predictions honour
    the mask (padded steps left out of the average)."""
    conv = lamina.Sequential([lamina.Input((8, 8, 3)), lamina.layers.Conv2D(4, 3, activation="relu"),
                              lamina.layers.GlobalAveragePooling2D(), lamina.layers.Dense(2)])
    conv.predict(np.zeros((2, 8, 8, 3), "float32"), verbose=0)
    assert all(call is not layer for (call, _), layer in zip(conv._plan, conv._stack))

    for mask_zero, expected_fast in ((False, True), (True, False)):
        model = lamina.Sequential([lamina.Input((5,), dtype="int32"),
                                   lamina.layers.Embedding(6, 3, mask_zero=mask_zero),
                                   lamina.layers.GlobalAveragePooling1D()])
        x = np.array([[1, 2, 0, 0, 0]])
        out = model.predict(x, verbose=0)
        assert all(call is not layer for (call, _), layer in zip(model._plan, model._stack)) == expected_fast
        table = model.layers[0].get_weights()[0]
        rows = table[[1, 2]] if mask_zero else table[[1, 2, 0, 0, 0]]
        np.testing.assert_allclose(out[0], rows.mean(axis=0), rtol=1e-6)


@pytest.mark.parametrize("accelerate", ["1", "0"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_embedding_gradient_scatter_equals_add_at(accelerate, dtype, monkeypatch):
    """The table's gradient (a scatter-add of the output gradient into the looked-up rows), compiled or sorted
    and segment-summed, equals np.add.at's: repeated rows add up, a negative index is the row counted from
    the end (one row with its positive spelling), no index gives zeros."""
    from lamina.layers.embedding import scatter_rows

    monkeypatch.setenv("LAMINA_ACCELERATE", accelerate)
    rng = np.random.default_rng(3)
    idx = rng.integers(-6, 6, size=(4, 9))
    idx[0, :3] = [2, 2, -4]  # 2 three times with the -4
    g = rng.normal(size=(4, 9, 5)).astype(dtype)
    want = np.zeros((6, 5), dtype=dtype)
    np.add.at(want, idx.reshape(-1), g.reshape(-1, 5))
    got = scatter_rows(idx, g, 6)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == "float32" else 1e-13, atol=1e-6)
    assert not scatter_rows(np.zeros((2, 0), dtype=int), np.zeros((2, 0, 5), dtype=dtype), 6).any()
