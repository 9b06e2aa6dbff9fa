"""The activation doctor on convolutions: dead channels, saturation and gradient norms in fit(health=True),
BatchNormalization folded into the convolution before it, and lint rules that know conv layers."""

import warnings

import numpy as np
import pytest

import lamina
from lamina import diagnostics
from lamina import layers as L
from lamina.diagnostics import HealthWarning, LintHint, ModelError, fold
from lamina.diagnostics import health as H

CONV = {1: "Conv1D", 2: "Conv2D", 3: "Conv3D"}
SPATIAL = {1: (9,), 2: (7, 6), 3: (5, 4, 6)}


def rules(model, x=None, y=None) -> set[str]:
    return {f.rule for f in diagnostics.lint(model, x, y)}


def seq(*layers, shape=(8, 8, 1)):
    return lamina.Sequential([L.Input(shape), *layers])


def conv_probe(data_format: str, activation: str = "relu", after=()):
    """Conv2D(4 channels, 3x3) whose channels 0 and 1 can never be > 0, channel 2 is > 0 everywhere and
    channel 3 only where the input's single bright pixel is (one row, one position)."""
    shape = (6, 6, 2) if data_format == "channels_last" else (2, 6, 6)
    conv = L.Conv2D(4, 3, padding="same", activation=activation, data_format=data_format)
    model = seq(conv, *after, shape=shape)
    kernel = np.zeros((3, 3, 2, 4), "float32")
    kernel[1, 1, 0, 3] = 1.0  # channel 3 copies input channel 0
    conv.set_weights([kernel, np.array([-1.0, -3.0, 0.5, 0.0], "float32")])
    x = np.zeros((5,) + shape, "float32")
    if data_format == "channels_last":
        x[2, 3, 4, 0] = 1.0
    else:
        x[2, 0, 3, 4] = 1.0
    return model, x


# ----------------------------------------------------------------------------- health


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_a_channel_is_dead_only_when_zero_at_every_row_and_position(data_format):
    model, x = conv_probe(data_format)
    stats = H.activation_stats(model, x)
    entry = stats[model.layers[0].name]
    # channels 0, 1 dead; channel 3 is > 0 at one position of one row only, which keeps it alive
    assert entry["dead"] == 0.5 and entry["units"] == "channels"
    a = model.predict(x, verbose=0)
    axis = -1 if data_format == "channels_last" else 1
    per_channel = np.moveaxis(a, axis, -1).reshape(-1, 4).max(axis=0)
    assert entry["dead"] == np.mean(per_channel <= 0)
    assert entry["mean"] == pytest.approx(float(a.mean()), rel=1e-6)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_activation_layers_after_a_conv_count_its_channels(data_format):
    axis = -1 if data_format == "channels_last" else 1
    model, x = conv_probe(data_format, activation=None,
                          after=(L.BatchNormalization(axis=axis, center=False, scale=False, epsilon=1.0),
                                 L.ReLU()))
    model.layers[1].set_weights([np.zeros(4, "float32"), np.full(4, 1e-3, "float32")])  # BN: about x / 1
    relu = H.activation_stats(model, x)[model.layers[2].name]
    assert relu["dead"] == 0.5 and relu["units"] == "channels"


def test_saturation_of_sigmoid_and_tanh_convolutions_reads_the_pre_activations():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((16, 10, 3)) * 4).astype("float32")
    sig, tanh = L.Conv1D(6, 3, activation="sigmoid"), L.Conv1D(5, 2, activation="tanh", padding="causal")
    model = seq(sig, tanh, L.GlobalAveragePooling1D(), L.Dense(2, activation="softmax"), shape=(10, 3))
    linear1 = seq(L.Conv1D(6, 3), shape=(10, 3))
    linear1.set_weights(sig.get_weights())
    z1 = linear1.predict(x, verbose=0)
    linear2 = seq(L.Conv1D(5, 2, padding="causal"), shape=(8, 6))
    linear2.set_weights(tanh.get_weights())
    z2 = linear2.predict(1 / (1 + np.exp(-z1)), verbose=0)
    stats = H.activation_stats(model, x)
    assert 0.05 < stats[sig.name]["saturated"] < 0.95
    assert stats[sig.name]["saturated"] == pytest.approx(np.mean(np.abs(z1) > H.FLAT["sigmoid"]))
    assert stats[tanh.name]["saturated"] == pytest.approx(np.mean(np.abs(z2) > H.FLAT["tanh"]))
    assert "dead" not in stats[sig.name]


def test_gradient_norms_of_conv_layers_equal_keras(keras):
    import torch  # the oracle's backend

    rng = np.random.default_rng(3)
    x = rng.random((12, 9, 9, 2)).astype("float32")
    y = rng.integers(0, 3, 12)

    def build(lib):
        return lib.Sequential([
            lib.Input((9, 9, 2)), lib.layers.Conv2D(4, 3, strides=2, activation="relu"),
            lib.layers.Conv2D(5, 2, padding="same", activation="tanh"), lib.layers.Flatten(),
            lib.layers.Dropout(0.5), lib.layers.Dense(3, activation="softmax"),
        ])

    ours, theirs = build(lamina), build(keras)
    theirs.set_weights(ours.get_weights())
    ours.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    norms = H.gradient_norms(ours, x, y)
    loss = keras.losses.SparseCategoricalCrossentropy()(torch.tensor(y), theirs(torch.tensor(x), training=False))
    loss.backward()
    for ours_layer, keras_layer in zip(ours.layers, theirs.layers):
        if not keras_layer.trainable_weights:
            continue
        expected = np.sqrt(sum(float((w.value.grad.double() ** 2).sum()) for w in keras_layer.trainable_weights))
        assert norms[ours_layer.name] == pytest.approx(expected, rel=1e-4)
    assert list(norms) == [layer.name for layer in ours.layers if layer.trainable_weights]


def test_fit_health_reports_dead_channels_of_a_convnet():
    lamina.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 64)
    model = seq(L.Conv2D(8, 3, activation="relu", bias_initializer=lamina.initializers.Constant(-20.0)),
                L.MaxPooling2D(2), L.Conv2D(4, 3, activation="relu"), L.Flatten(),
                L.Dense(3, activation="softmax"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, health=True)
    first = model.layers[0].name
    assert history.health["layers"][first]["dead"] == [1.0, 1.0]
    assert history.health["grad_norm"][first] == [0.0, 0.0]
    assert set(history.health["grad_norm"]) == {layer.name for layer in model.layers if layer.weights}
    messages = [str(w.message) for w in caught if issubclass(w.category, HealthWarning)]
    assert any(f"Layer '{first}': 100% of its relu channels never activated" in m for m in messages)


def test_locate_nonfinite_names_the_convolution():
    conv = L.Conv2D(2, 2, activation="relu")
    model = seq(conv, L.Flatten(), L.Dense(2, activation="softmax"), shape=(3, 3, 1))
    conv.set_weights([np.full((2, 2, 1, 2), 1e38, "float32"), np.zeros(2, "float32")])
    report = H.locate_nonfinite(model, np.full((1, 3, 3, 1), 10.0, "float32"))
    assert report["layer"] == conv.name and report["op"] == "convolution + bias" and report["value"] == "inf"


# ----------------------------------------------------------------------------- fold


def random_batch_norm(bn, channels, rng):
    bn.set_weights([rng.uniform(0.5, 2, channels), rng.normal(0, 1, channels), rng.normal(0, 1, channels),
                    rng.uniform(0.2, 3, channels)])


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_fold_batchnorm_into_the_convolution_before_it(rank, data_format, use_bias):
    rng = np.random.default_rng(rank)
    in_ch, filters = 4, 6
    shape = SPATIAL[rank] + (in_ch,) if data_format == "channels_last" else (in_ch,) + SPATIAL[rank]
    conv = getattr(L, CONV[rank])(filters, 2, padding="same", strides=1 if rank == 3 else 2, use_bias=use_bias,
                                  data_format=data_format, groups=2 if rank == 2 else 1)
    bn = L.BatchNormalization(axis=-1 if data_format == "channels_last" else 1)
    model = seq(conv, bn, L.ReLU(), L.Flatten(), L.Dense(3, activation="softmax"), shape=shape)
    if use_bias:
        conv.set_weights([conv.get_weights()[0], rng.normal(0, 1, filters).astype("float32")])
    random_batch_norm(bn, filters, rng)
    folded = fold(model)
    assert [type(layer).__name__ for layer in folded.layers] == [CONV[rank], "Flatten", "Dense"]
    new = folded.layers[0]
    assert new.data_format == data_format and new.activation.__name__ == "relu" and new.use_bias
    gamma, beta, mean, var = (w.astype(np.float64) for w in bn.get_weights())
    scale = gamma / np.sqrt(var + bn.epsilon)
    kernel = conv.get_weights()[0].astype(np.float64)
    bias = conv.get_weights()[1].astype(np.float64) if use_bias else 0.0
    np.testing.assert_allclose(new.get_weights()[0], kernel * scale, rtol=1e-6)
    np.testing.assert_allclose(new.get_weights()[1], beta + (bias - mean) * scale, rtol=1e-5, atol=1e-6)
    x = rng.standard_normal((7,) + shape).astype("float32")
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert folded.count_params() < model.count_params()


def test_fold_after_training_a_convnet_keeps_its_predictions():
    lamina.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((96, 10, 10, 1)).astype("float32")
    y = rng.integers(0, 3, 96)
    model = seq(L.Conv2D(8, 3), L.BatchNormalization(), L.Activation("relu"), L.MaxPooling2D(2),
                L.Conv2D(8, 3, use_bias=False), L.Dropout(0.2), L.BatchNormalization(), L.Flatten(),
                L.Dense(16), L.BatchNormalization(), L.Dense(3, activation="softmax"), shape=(10, 10, 1))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", lint=False)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)  # moves the moving statistics
    folded = fold(model)
    assert [type(layer).__name__ for layer in folded.layers] == ["Conv2D", "MaxPooling2D", "Conv2D", "Flatten",
                                                                 "Dense"]
    assert folded.layers[0].activation.__name__ == "relu"
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_fold_a_lora_convolution_uses_its_merged_kernel():
    rng = np.random.default_rng(2)
    conv, bn = L.Conv2D(4, 3), L.BatchNormalization()
    model = seq(conv, bn, L.Activation("tanh"), L.Flatten(), L.Dense(2, activation="softmax"))
    conv.enable_lora(2)
    conv.lora_kernel_b.assign(rng.normal(0, 1, conv.lora_kernel_b.shape).astype("float32"))
    random_batch_norm(bn, 4, rng)
    folded = fold(model)
    assert [type(layer).__name__ for layer in folded.layers] == ["Conv2D", "Flatten", "Dense"]
    assert not folded.layers[0].lora_enabled and folded.layers[0].activation.__name__ == "tanh"
    x = rng.standard_normal((5, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_batchnorm_that_cannot_join_a_convolution_stays():
    rng = np.random.default_rng(1)
    # after a relu convolution (not affine), and over a spatial axis of a linear one
    model = seq(L.Conv2D(4, 3, activation="relu"), L.BatchNormalization(), L.Conv2D(4, 3),
                L.BatchNormalization(axis=1), L.Flatten(), L.Dense(2, activation="softmax"))
    random_batch_norm(model.layers[1], 4, rng)
    random_batch_norm(model.layers[3], 4, rng)
    folded = fold(model)
    assert [type(layer).__name__ for layer in folded.layers] == [
        "Conv2D", "BatchNormalization", "Conv2D", "BatchNormalization", "Flatten", "Dense"]
    x = rng.standard_normal((5, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- lint


def test_softmax_over_a_single_filter_is_an_error():
    model = seq(L.Conv2D(8, 3, activation="relu"), L.Conv2D(1, 3, activation="softmax"))
    with pytest.raises(ModelError) as err:
        model.compile(optimizer="adam", loss="binary_crossentropy")
    finding = err.value.findings[0]
    assert finding.rule == "softmax-single-unit" and finding.layers == (model.layers[1].name,)
    assert "over its channel axis, which holds a single channel" in finding.message
    assert "always 1.0" in finding.message and "Conv2D(1, ..., activation='sigmoid')" in finding.fix
    assert rules(seq(L.Conv2D(8, 3, activation="relu"), L.Conv2D(3, 3, activation="softmax"))) == set()
    depthwise = seq(L.DepthwiseConv2D(3, activation="log_softmax"))  # one input channel, depth_multiplier 1
    assert [f.rule for f in diagnostics.lint(depthwise)] == ["softmax-single-unit"]
    assert "always 0.0" in diagnostics.lint(depthwise)[0].message


def test_softmax_on_a_channels_first_convolution_warns():
    model = seq(L.Conv2D(3, 3, activation="softmax", data_format="channels_first"), shape=(2, 8, 8))
    found = diagnostics.lint(model)
    assert [f.rule for f in found] == ["softmax-channels-first"]
    assert "not the 3 channels" in found[0].message and "Softmax(axis=1)" in found[0].fix


@pytest.mark.parametrize("between", [
    lambda: [],
    lambda: [L.BatchNormalization()],
    lambda: [L.ZeroPadding2D(1), L.Dropout(0.2)],
    lambda: [L.AveragePooling2D(2)],
])
def test_stacked_linear_convolutions_warn(between):
    first, second = L.Conv2D(8, 3), L.Conv2D(8, 3)
    model = seq(L.Conv2D(8, 3, activation="relu"), first, *between(), second,
                L.MaxPooling2D(2), L.Flatten(), L.Dense(3, activation="softmax"), shape=(12, 12, 1))
    found = [f for f in diagnostics.lint(model) if f.rule == "linear-chain"]
    assert len(found) == 1 and found[0].layers == (first.name, second.name)
    assert "(Conv2D)" in found[0].message and "single linear map" in found[0].message
    assert found[0].severity == "warning"


def test_a_linear_conv_flattened_into_a_linear_dense_warns():
    model = seq(L.Conv2D(8, 3, activation="relu"), L.Conv2D(4, 3), L.Flatten(), L.Dense(16),
                L.Dense(3, activation="softmax"))
    found = [f for f in diagnostics.lint(model) if f.rule == "linear-chain"]
    # the chain ends in the Dense that applies the next activation, as for Dense-only chains
    assert [f.layers for f in found] == [(model.layers[1].name, model.layers[3].name, model.layers[4].name)]


@pytest.mark.parametrize("middle", [
    lambda: [L.Conv2D(8, 3, activation="relu")],
    lambda: [L.Conv2D(8, 3), L.BatchNormalization(), L.ReLU()],
    lambda: [L.Conv2D(8, 3), L.MaxPooling2D(2)],  # max pooling is not linear
])
def test_a_non_linearity_between_convolutions_is_fine(middle):
    model = seq(L.Conv2D(8, 3, activation="relu"), *middle(), L.Conv2D(8, 3, activation="relu"), L.Flatten(),
                L.Dense(3, activation="softmax"), shape=(12, 12, 1))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", lint=False)
    assert rules(model) == set()


def test_a_convnet_without_any_non_linearity_is_a_linear_classifier():
    model = seq(L.Conv2D(8, 3), L.GlobalAveragePooling2D(), L.Dense(3, activation="softmax"))
    found = diagnostics.lint(model)
    assert [f.rule for f in found] == ["no-nonlinearity"]
    assert "2 layers with weights (Conv2D, Dense)" in found[0].message


def test_sigmoid_convolutions_flattened_into_sigmoid_dense_layers_are_one_deep_stack():
    model = seq(L.Conv2D(4, 3, activation="sigmoid"), L.MaxPooling2D(2), L.Conv2D(4, 2, activation="sigmoid"),
                L.Flatten(), L.Dense(16, activation="sigmoid"), L.Dense(16, activation="sigmoid"),
                L.Dense(3, activation="softmax"), shape=(12, 12, 1))
    found = [f for f in diagnostics.lint(model) if f.rule == "deep-sigmoid-stack"]
    assert len(found) == 1 and found[0].severity == "hint"
    assert found[0].layers == tuple(layer.name for layer in model.layers if layer.weights)[:4]


def test_a_flatten_feeding_a_sigmoid_stack_gets_the_hint_and_a_shallow_one_does_not():
    head = [L.Conv2D(8, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten()]
    deep = seq(*head, *[L.Dense(16, activation="sigmoid") for _ in range(4)], L.Dense(3, activation="softmax"))
    with pytest.warns(LintHint, match="4 consecutive sigmoid hidden layers"):
        deep.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    shallow = seq(*head[:2], L.Flatten(), *[L.Dense(16, activation="sigmoid") for _ in range(3)],
                  L.Dense(3, activation="softmax"))
    assert "deep-sigmoid-stack" not in rules(shallow)


def test_unscaled_pixels_into_a_sigmoid_convolution_get_a_hint():
    model = seq(L.Conv2D(4, 3, activation="sigmoid"), L.Flatten(), L.Dense(3, activation="softmax"))
    pixels = np.random.default_rng(0).integers(0, 256, (32, 8, 8, 1)).astype("float32")
    assert "inputs-unscaled" in rules(model, pixels)
    assert "inputs-unscaled" not in rules(model, pixels / 255)


def test_the_keras_io_convnet_is_clean():
    model = seq(L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2), L.Conv2D(64, 3, activation="relu"),
                L.MaxPooling2D(2), L.Flatten(), L.Dropout(0.5), L.Dense(10, activation="softmax"),
                shape=(28, 28, 1))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert rules(model) == set()
