"""DepthwiseConv1D/2D and SeparableConv1D/2D (and ``ops.depthwise_conv`` / ``ops.separable_conv``) against real
Keras 3 (torch backend).

Every combination of a grid of kernel sizes × strides × dilation rates × padding × data_format ×
depth_multiplier is compared on identical weights: output shape, values, input gradient and weight
gradients. Then float64 central differences, one training step, configs, ``.keras``/``.h5`` files both
ways, and Keras's errors.
"""

import itertools
import json

import numpy as np
import pytest

import lamina
from lamina import layers
from tests.helpers import check_gradients, check_layer_gradients, run_layer_test
from tests.helpers.conv_oracle import check_keras_file_round_trips, compare_with_keras, spatial_input

SPATIAL = {1: (7,), 2: (6, 5)}
GRIDS = {  # kernel sizes, strides, dilation rates per rank
    1: ([1, 2, 3], [1, 2, 3], [1, 2]),
    2: ([3, (2, 3)], [1, 2, (1, 2)], [1, (2, 1)]),
}


def _cases(kind):
    for rank, (kernels, strides, dilations) in GRIDS.items():
        for k, s, d, pad, df, m in itertools.product(kernels, strides, dilations, ["valid", "same"],
                                                     ["channels_last", "channels_first"], [1, 2]):
            yield pytest.param(f"{kind}{rank}D", rank, k, s, d, pad, df, m,
                               id=f"{kind}{rank}D-k{k}-s{s}-d{d}-{pad}-{df}-m{m}")


@pytest.mark.oracle
@pytest.mark.parametrize("name,rank,k,s,d,pad,df,m", [*_cases("DepthwiseConv"), *_cases("SeparableConv")])
def test_matches_keras_forward_and_gradients(keras, name, rank, k, s, d, pad, df, m):
    kwargs = dict(kernel_size=k, strides=s, padding=pad, data_format=df, dilation_rate=d, depth_multiplier=m)
    if name.startswith("Separable"):
        kwargs["filters"] = 4
    compare_with_keras(keras, name, kwargs, spatial_input(rank, df, SPATIAL[rank]))


@pytest.mark.oracle
@pytest.mark.parametrize("df", ["channels_last", "channels_first"])
@pytest.mark.parametrize("pad", ["valid", "same"])
def test_ops_match_keras(keras, df, pad):
    rng = np.random.default_rng(2)
    x = spatial_input(2, df, (6, 5), channels=3)
    dk = rng.standard_normal((3, 2, 3, 2)).astype("float32")
    pk = rng.standard_normal((1, 1, 6, 4)).astype("float32")
    args = dict(strides=(2, 1), padding=pad, data_format=df, dilation_rate=1)
    np.testing.assert_allclose(lamina.ops.depthwise_conv(x, dk, **args),
                               keras.ops.convert_to_numpy(keras.ops.depthwise_conv(x, dk, **args)),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(lamina.ops.separable_conv(x, dk, pk, **args),
                               keras.ops.convert_to_numpy(keras.ops.separable_conv(x, dk, pk, **args)),
                               rtol=1e-4, atol=1e-5)


def test_ops_gradients_match_central_differences():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 4, 2))
    dk = rng.standard_normal((2, 3, 2, 2))
    pk = rng.standard_normal((1, 1, 4, 3))
    check_gradients(lambda a, b: lamina.ops.depthwise_conv(a, b, 2, "same", "channels_first"),
                    np.ascontiguousarray(x.transpose(0, 3, 1, 2)), dk)
    check_gradients(lambda a, b, c: lamina.ops.separable_conv(a, b, c, 1, "valid", dilation_rate=(2, 1)), x, dk, pk)


def test_ops_refuse_bad_arguments():
    x, k = np.zeros((1, 5, 5, 2), "float32"), np.zeros((3, 3, 2, 1), "float32")
    with pytest.raises(ValueError, match="`padding` must be one of"):
        lamina.ops.depthwise_conv(x, k, padding="full")
    with pytest.raises(ValueError, match="`strides` must be a positive int or 2"):
        lamina.ops.depthwise_conv(x, k, strides=(1, 0))
    with pytest.raises(ValueError, match="input channels=2, kernel input channels=3"):
        lamina.ops.depthwise_conv(x, np.zeros((3, 3, 3, 1), "float32"))
    with pytest.raises(ValueError, match="Computed output size would be zero or negative"):
        lamina.ops.depthwise_conv(x, np.zeros((7, 7, 2, 1), "float32"))


@pytest.mark.parametrize("name,kwargs,shape", [
    ("DepthwiseConv1D", dict(kernel_size=3, depth_multiplier=2, padding="same", strides=2), (2, 5, 2)),
    ("DepthwiseConv1D", dict(kernel_size=2, dilation_rate=2, data_format="channels_first"), (2, 2, 5)),
    ("DepthwiseConv2D", dict(kernel_size=(2, 3), strides=(2, 1), padding="same", depth_multiplier=2,
                             activation="tanh"), (1, 4, 3, 2)),
    ("SeparableConv1D", dict(filters=3, kernel_size=3, padding="same", strides=2, depth_multiplier=2), (2, 5, 2)),
    ("SeparableConv2D", dict(filters=2, kernel_size=2, dilation_rate=(1, 2), data_format="channels_first",
                             activation="sigmoid"), (1, 2, 3, 4)),
])
def test_gradients_match_central_differences(name, kwargs, shape):
    layer = getattr(layers, name)(dtype="float64", **kwargs)
    x = np.random.default_rng(3).standard_normal(shape)
    layer(x)
    layer.set_weights([np.random.default_rng(4).standard_normal(w.shape) for w in layer.weights])
    check_layer_gradients(layer, x)


def test_generic_layer_checks():
    run_layer_test(layers.DepthwiseConv2D, dict(kernel_size=3, depth_multiplier=2, padding="same"),
                   input_shape=(2, 4, 5, 2), expected_output_shape=(2, 4, 5, 4), expected_num_trainable_weights=2)
    run_layer_test(layers.SeparableConv1D, dict(filters=3, kernel_size=2, strides=2),
                   input_shape=(2, 5, 2), expected_output_shape=(2, 2, 3), expected_num_trainable_weights=3)
    run_layer_test(layers.SeparableConv2D, dict(filters=3, kernel_size=2, use_bias=False),
                   input_shape=(2, 4, 4, 2), expected_output_shape=(2, 3, 3, 3), expected_num_trainable_weights=2)


def _model(lib, rank):
    L = lib.layers
    depthwise = {1: L.DepthwiseConv1D, 2: L.DepthwiseConv2D}[rank]
    separable = {1: L.SeparableConv1D, 2: L.SeparableConv2D}[rank]
    return lib.Sequential([
        lib.Input((*SPATIAL[rank], 3)),
        depthwise(3, depth_multiplier=2, padding="same", activation="relu"),
        separable(4, 2, strides=2, depth_multiplier=2, activation="tanh"),
        L.Flatten(),
        L.Dense(3),
    ])


@pytest.mark.oracle
@pytest.mark.parametrize("rank", [1, 2])
def test_one_training_step_equals_keras(keras, rank):
    keras.utils.set_random_seed(rank)
    km, lm = _model(keras, rank), _model(lamina, rank)
    lm.set_weights(km.get_weights())
    rng = np.random.default_rng(rank)
    x = rng.standard_normal((4, *SPATIAL[rank], 3)).astype("float32")
    y = rng.standard_normal((4, 3)).astype("float32")
    km.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    lm.compile(optimizer=lamina.optimizers.Adam(0.01), loss="mse")
    np.testing.assert_allclose(lm.train_on_batch(x, y), km.train_on_batch(x, y), rtol=1e-5)
    np.testing.assert_allclose(lm.train_on_batch(x, y), km.train_on_batch(x, y), rtol=1e-5)
    for a, b in zip(lm.get_weights(), km.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# (regularizer factors exact in float32: Keras stores them rounded to float32)
L1, L2 = {"class_name": "L1", "config": {"l1": 0.25}}, {"class_name": "L2", "config": {"l2": 0.5}}
CONFIGS = [
    ("DepthwiseConv1D", dict(kernel_size=3)),
    ("DepthwiseConv2D", dict(kernel_size=(2, 3), strides=2, padding="Same", depth_multiplier=3,
                             data_format="channels_first", dilation_rate=1, activation="relu", use_bias=False,
                             depthwise_initializer="he_normal", bias_initializer="ones", depthwise_regularizer=L2,
                             bias_regularizer=L1, activity_regularizer=L2, depthwise_constraint="non_neg",
                             bias_constraint="unit_norm")),
    ("SeparableConv1D", dict(filters=2, kernel_size=3, dilation_rate=2)),
    ("SeparableConv2D", dict(filters=5, kernel_size=3, strides=(1, 2), padding="same", depth_multiplier=2,
                             activation="elu", pointwise_initializer="orthogonal", pointwise_regularizer=L1,
                             pointwise_constraint="max_norm", depthwise_regularizer=L2,
                             depthwise_constraint="non_neg")),
]


@pytest.mark.oracle
@pytest.mark.parametrize("name,kwargs", CONFIGS)
def test_config_equals_keras_and_round_trips(keras, name, kwargs):
    ours = getattr(layers, name)(name="t", **kwargs)
    theirs = getattr(keras.layers, name)(name="t", **kwargs)
    config = ours.get_config()
    assert config == theirs.get_config()
    again = layers.deserialize(json.loads(json.dumps(layers.serialize(ours))))
    assert type(again) is type(ours) and again.get_config() == config
    assert getattr(keras.layers, name).from_config(config).get_config() == config


def test_keras_aliases_and_positional_order(keras):
    for alias, name in [("SeparableConvolution1D", "SeparableConv1D"), ("SeparableConvolution2D", "SeparableConv2D")]:
        assert getattr(layers, alias) is getattr(layers, name)
        assert getattr(keras.layers, alias).__name__ == name
    # positional order as Keras: depthwise (kernel_size, strides, padding, depth_multiplier, data_format, ...);
    # separable (filters, kernel_size, strides, padding, data_format, dilation_rate, depth_multiplier, ...)
    for name, args in [("DepthwiseConv2D", (3, 2, "same", 4, "channels_first", 1, "relu")),
                       ("SeparableConv1D", (2, 3, 1, "same", "channels_first", 2, 3, "relu"))]:
        ours, theirs = getattr(layers, name)(*args, name="p"), getattr(keras.layers, name)(*args, name="p")
        assert ours.get_config() == theirs.get_config()


@pytest.mark.oracle
def test_keras_files_both_ways(keras, tmp_path):
    keras.utils.set_random_seed(5)
    L = keras.layers
    km = keras.Sequential([keras.Input((8, 7, 3)), L.DepthwiseConv2D(3, depth_multiplier=2, activation="relu"),
                           L.SeparableConv2D(4, 2, padding="same", data_format="channels_first"),
                           L.Reshape((6 * 5, 4)), L.SeparableConv1D(3, 3, strides=2, activation="relu"),
                           L.DepthwiseConv1D(2, padding="same", data_format="channels_first")])
    x = np.random.default_rng(6).standard_normal((2, 8, 7, 3)).astype("float32")
    check_keras_file_round_trips(keras, km, x, tmp_path)


@pytest.mark.oracle
@pytest.mark.parametrize("name,kwargs,message", [
    ("DepthwiseConv1D", dict(depth_multiplier=0, kernel_size=1), "Invalid value for argument `depth_multiplier`"),
    ("DepthwiseConv2D", dict(kernel_size=(1, 0)), r"`kernel_size` argument must be a tuple of 2 integers. "
                                                  r"Received kernel_size=\(1, 0\), including values \{0\}"),
    ("DepthwiseConv2D", dict(kernel_size=2, strides=(1, 0)), r"`strides` argument must be a tuple of 2"),
    ("DepthwiseConv1D", dict(kernel_size=2, padding="causal"), "padding"),
    ("SeparableConv1D", dict(depth_multiplier=0, filters=1, kernel_size=1),
     "Invalid value for argument `depth_multiplier`"),
    ("SeparableConv1D", dict(filters=0, kernel_size=1), "Invalid value for argument `filters`"),
    ("SeparableConv2D", dict(filters=2, kernel_size=(1, 0)), r"`kernel_size` argument must be a tuple of 2"),
    ("SeparableConv2D", dict(filters=2, kernel_size=2, strides=(1, 0)), r"`strides` argument must be a tuple of 2"),
    ("SeparableConv2D", dict(filters=2, kernel_size=2, dilation_rate=(1, 2, 3)),
     r"`dilation_rate` argument must be a tuple of 2"),
    ("SeparableConv2D", dict(filters=2, kernel_size=2, data_format="nhwc"), "data_format"),
])
def test_bad_arguments_raise_like_keras(keras, name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        getattr(keras.layers, name)(**kwargs)
    with pytest.raises(ValueError, match=message):
        getattr(layers, name)(**kwargs)


@pytest.mark.oracle
@pytest.mark.parametrize("name,kwargs,shape", [
    ("DepthwiseConv1D", dict(kernel_size=11, strides=5), (4, 10, 3)),
    ("DepthwiseConv2D", dict(kernel_size=5, strides=2), (2, 4, 4, 3)),
    ("SeparableConv1D", dict(filters=8, kernel_size=11, strides=5), (4, 10, 12)),
    ("SeparableConv2D", dict(filters=8, kernel_size=3, dilation_rate=2), (2, 4, 4, 3)),
])
def test_kernel_larger_than_input_raises_like_keras(keras, name, kwargs, shape):
    x = np.zeros(shape, "float32")
    for lib in (keras, lamina):
        with pytest.raises(ValueError, match="Computed output size would be zero or negative"):
            getattr(lib.layers, name)(**kwargs)(x)
        with pytest.raises(ValueError, match="Computed output size would be zero or negative"):
            getattr(lib.layers, name)(**kwargs)(lib.Input(shape[1:]))


def test_a_built_layer_refuses_a_smaller_input():
    layer = layers.DepthwiseConv1D(3)
    layer(np.zeros((1, 8, 2), "float32"))
    with pytest.raises(ValueError, match="Computed output size would be zero or negative"):
        layer(np.zeros((1, 2, 2), "float32"))


def test_call_logits_is_the_output_before_the_activation():
    x = np.random.default_rng(0).standard_normal((1, 5, 5, 2)).astype("float32")
    for layer in (layers.DepthwiseConv2D(3, activation="relu"), layers.SeparableConv2D(3, 2, activation="relu")):
        np.testing.assert_allclose(layer(x), np.maximum(layer.call_logits(x), 0), rtol=1e-6)


def test_ops_on_symbolic_inputs_make_graph_nodes():
    rng = np.random.default_rng(8)
    dk = rng.standard_normal((3, 3, 2, 2)).astype("float32")
    pk = rng.standard_normal((1, 1, 4, 3)).astype("float32")
    i = lamina.Input((5, 6, 2))
    y = lamina.ops.depthwise_conv(i, dk, padding="same")
    z = lamina.ops.separable_conv(i, dk, pk, strides=2)
    assert tuple(y.shape) == (None, 5, 6, 4) and tuple(z.shape) == (None, 2, 2, 3)
    x = rng.standard_normal((2, 5, 6, 2)).astype("float32")
    got_y, got_z = lamina.Model(i, [y, z]).predict(x, verbose=0)
    np.testing.assert_allclose(got_y, lamina.ops.depthwise_conv(x, dk, padding="same"), rtol=1e-6)
    np.testing.assert_allclose(got_z, lamina.ops.separable_conv(x, dk, pk, strides=2), rtol=1e-6)


def test_chunked_batches_give_the_same_values_and_gradients(monkeypatch):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((5, 6, 5, 3))
    dk = rng.standard_normal((3, 2, 3, 2))
    proj = rng.standard_normal((5, 3, 5, 6))

    def run():
        xv, kv = lamina.Variable(x, dtype="float64"), lamina.Variable(dk, dtype="float64")
        with lamina.GradientTape() as tape:
            y = lamina.ops.depthwise_conv(xv, kv, strides=(2, 1), padding="same")
            loss = lamina.ops.sum(y * proj)
        return [np.asarray(y)] + [np.asarray(g) for g in tape.gradient(loss, [xv, kv])]

    whole = run()
    monkeypatch.setattr(lamina.conv_variant_kernels, "CHUNK_BYTES", 1)  # one sample per chunk
    for a, b in zip(run(), whole, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.oracle
def test_keras_checkpoint_continues_training_in_lamina(keras, tmp_path):
    def build(lib):
        L = lib.layers
        return lib.Sequential([lib.Input((6, 6, 2)), L.DepthwiseConv2D(3, depth_multiplier=2, activation="relu"),
                               L.SeparableConv2D(3, 2, padding="same", activation="relu"),
                               L.Conv2DTranspose(2, 2, strides=2, activation="relu"), L.Flatten(), L.Dense(3)])

    rng = np.random.default_rng(11)
    x = rng.standard_normal((16, 6, 6, 2)).astype("float32")
    y = rng.standard_normal((16, 3)).astype("float32")
    keras.utils.set_random_seed(3)
    km = build(keras)
    km.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    km.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    km.save(tmp_path / "ckpt.keras")
    k2 = keras.saving.load_model(tmp_path / "ckpt.keras")
    k2.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    lm = lamina.saving.load_model(tmp_path / "ckpt.keras")
    lm.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    want = {w.path: keras.ops.convert_to_numpy(w.value) for w in k2.weights}
    assert int(lm.optimizer.iterations.numpy()) == 6
    for w in lm.weights:
        np.testing.assert_allclose(w.numpy(), want[w.path], rtol=1e-4, atol=1e-5, err_msg=w.path)
