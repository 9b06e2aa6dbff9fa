"""Conv1DTranspose / Conv2DTranspose / Conv3DTranspose against real Keras 3 (torch backend).

Every combination Keras allows of a grid of kernel sizes × strides × dilation rates × padding ×
data_format × output_padding (Keras refuses strides > 1 together with dilation > 1, and
output_padding >= strides) is compared on identical weights: output shape, values, input gradient and
weight gradients. Then float64 central differences, one training step, configs, ``.keras``/``.h5`` files
both ways, and Keras's errors for bad arguments.
"""

import itertools
import json

import numpy as np
import pytest

import lamina
from lamina import layers
from tests.helpers import check_layer_gradients, run_layer_test
from tests.helpers.conv_oracle import as_tuple, check_keras_file_round_trips, compare_with_keras, spatial_input

SPATIAL = {1: (5,), 2: (4, 5), 3: (3, 4, 3)}
# (kernel sizes, (strides, dilation_rate) pairs) per rank
GRIDS = {
    1: ([1, 2, 3], [(1, 1), (2, 1), (3, 1), (1, 2)]),
    2: ([3, (2, 3)], [(1, 1), (2, 1), ((2, 3), 1), (1, 2), (1, (2, 1))]),
    3: ([2, (1, 2, 3)], [(1, 1), (2, 1), (1, 2)]),
}


def _output_paddings(rank, strides):
    """None, all zeros, and the largest allowed (strides - 1), without repeats."""
    s = as_tuple(strides, rank)
    options = [None, (0,) * rank, tuple(v - 1 for v in s)]
    out = []
    for o in options:
        if o not in out:
            out.append(o)
    return out


def _cases():
    for rank, (kernels, pairs) in GRIDS.items():
        for k, (s, d), pad, df in itertools.product(kernels, pairs, ["valid", "same"],
                                                    ["channels_last", "channels_first"]):
            for op in _output_paddings(rank, s):
                yield pytest.param(rank, k, s, d, pad, df, op, id=f"{rank}D-k{k}-s{s}-d{d}-{pad}-{df}-op{op}")


@pytest.mark.oracle
@pytest.mark.parametrize("rank,k,s,d,pad,df,op", list(_cases()))
def test_matches_keras_forward_and_gradients(keras, rank, k, s, d, pad, df, op):
    kwargs = dict(filters=2, kernel_size=k, strides=s, padding=pad, data_format=df, dilation_rate=d,
                  output_padding=op)
    x = spatial_input(rank, df, SPATIAL[rank])
    compare_with_keras(keras, f"Conv{rank}DTranspose", kwargs, x)


@pytest.mark.oracle
def test_output_shape_rule_matches_keras_on_a_wider_grid(keras):
    # only shapes: sizes 1..5, kernels 1..4, strides 1..3, dilation 1..2, every output_padding
    for n, k, s, d, pad in itertools.product(range(1, 6), range(1, 5), range(1, 4), range(1, 3), ["valid", "same"]):
        if s > 1 and d > 1:
            continue
        for op in [None, *range(s)]:
            ours = layers.Conv1DTranspose(1, k, s, pad, output_padding=op, dilation_rate=d)
            theirs = keras.layers.Conv1DTranspose(1, k, s, pad, output_padding=op, dilation_rate=d)
            assert ours.compute_output_shape((None, n, 2)) == tuple(theirs.compute_output_shape((None, n, 2)))
            if (n, d) == (3, 1):  # and the values on a sample of them
                compare_with_keras(keras, "Conv1DTranspose",
                                   dict(filters=2, kernel_size=k, strides=s, padding=pad, output_padding=op),
                                   spatial_input(1, "channels_last", (n,)))


def test_unknown_spatial_size_stays_unknown():
    layer = layers.Conv2DTranspose(3, 2, strides=2)
    assert layer.compute_output_shape((None, None, 5, 4)) == (None, None, 10, 3)
    sym = layer(lamina.Input((None, 5, 4)))
    assert tuple(sym.shape) == (None, None, 10, 3)


@pytest.mark.parametrize("name,kwargs,shape", [
    ("Conv1DTranspose", dict(filters=2, kernel_size=3, strides=2, output_padding=1), (2, 4, 3)),
    ("Conv1DTranspose", dict(filters=2, kernel_size=2, padding="same", data_format="channels_first"), (2, 3, 4)),
    ("Conv1DTranspose", dict(filters=2, kernel_size=3, dilation_rate=2, padding="same"), (2, 4, 3)),
    ("Conv2DTranspose", dict(filters=2, kernel_size=(2, 3), strides=(2, 1), padding="same"), (2, 3, 3, 2)),
    ("Conv2DTranspose", dict(filters=2, kernel_size=3, strides=2, padding="valid", output_padding=1,
                             data_format="channels_first", activation="tanh"), (1, 2, 3, 2)),
    ("Conv3DTranspose", dict(filters=2, kernel_size=2, strides=2, padding="same"), (1, 2, 2, 2, 2)),
])
def test_gradients_match_central_differences(name, kwargs, shape):
    layer = getattr(layers, name)(dtype="float64", **kwargs)
    x = np.random.default_rng(3).standard_normal(shape)
    layer(x)
    layer.set_weights([np.random.default_rng(4).standard_normal(w.shape) for w in layer.weights])
    check_layer_gradients(layer, x)


def test_generic_layer_checks():
    run_layer_test(layers.Conv2DTranspose, dict(filters=3, kernel_size=3, strides=2, padding="same"),
                   input_shape=(2, 4, 5, 2), expected_output_shape=(2, 8, 10, 3), expected_num_trainable_weights=2)
    run_layer_test(layers.Conv1DTranspose, dict(filters=3, kernel_size=2, use_bias=False),
                   input_shape=(2, 4, 2), expected_output_shape=(2, 5, 3), expected_num_trainable_weights=1)


def _model(lib, rank):
    L = lib.layers
    conv = {1: L.Conv1DTranspose, 2: L.Conv2DTranspose, 3: L.Conv3DTranspose}[rank]
    spatial = SPATIAL[rank]
    return lib.Sequential([
        lib.Input((*spatial, 3)),
        conv(4, 3, strides=2, padding="same", activation="relu"),
        conv(2, 2, padding="valid", output_padding=0, data_format="channels_last", use_bias=False,
             activation="tanh"),
        L.Flatten(),
        L.Dense(3),
    ])


@pytest.mark.oracle
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_one_training_step_equals_keras(keras, rank):
    keras.utils.set_random_seed(rank)
    km, lm = _model(keras, rank), _model(lamina, rank)
    lm.set_weights(km.get_weights())
    rng = np.random.default_rng(rank)
    x = rng.standard_normal((4, *SPATIAL[rank], 3)).astype("float32")
    y = rng.standard_normal((4, 3)).astype("float32")
    km.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
    lm.compile(optimizer=lamina.optimizers.SGD(0.05, momentum=0.9), loss="mse")
    np.testing.assert_allclose(lm.train_on_batch(x, y), km.train_on_batch(x, y), rtol=1e-5)
    np.testing.assert_allclose(lm.train_on_batch(x, y), km.train_on_batch(x, y), rtol=1e-5)
    for a, b in zip(lm.get_weights(), km.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# (regularizer factors exact in float32: Keras stores them rounded to float32)
L1, L2 = {"class_name": "L1", "config": {"l1": 0.25}}, {"class_name": "L2", "config": {"l2": 0.5}}
CONFIGS = [
    ("Conv1DTranspose", dict(filters=2, kernel_size=3)),
    ("Conv2DTranspose", dict(filters=4, kernel_size=(2, 3), strides=(2, 1), padding="SAME", output_padding=(1, 0),
                             data_format="channels_first", activation="relu", use_bias=False,
                             kernel_initializer="he_normal", bias_initializer="ones", kernel_regularizer=L2,
                             bias_regularizer=L1, activity_regularizer=L2, kernel_constraint="non_neg",
                             bias_constraint="unit_norm")),
    ("Conv3DTranspose", dict(filters=1, kernel_size=2, dilation_rate=(1, 2, 1))),
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
    for alias, name in [("Convolution1DTranspose", "Conv1DTranspose"), ("Convolution2DTranspose", "Conv2DTranspose"),
                        ("Convolution3DTranspose", "Conv3DTranspose")]:
        assert getattr(layers, alias) is getattr(layers, name)
        assert getattr(keras.layers, alias).__name__ == name
    # Conv3DTranspose takes data_format before output_padding, as Keras does
    ours = layers.Conv3DTranspose(2, 3, 2, "same", "channels_first", 1)
    theirs = keras.layers.Conv3DTranspose(2, 3, 2, "same", "channels_first", 1)
    assert (ours.data_format, ours.output_padding) == (theirs.data_format, theirs.output_padding)
    ours = layers.Conv2DTranspose(2, 3, 2, "same", 1, "channels_first")
    theirs = keras.layers.Conv2DTranspose(2, 3, 2, "same", 1, "channels_first")
    assert (ours.data_format, ours.output_padding) == (theirs.data_format, theirs.output_padding)


@pytest.mark.oracle
def test_keras_files_both_ways(keras, tmp_path):
    keras.utils.set_random_seed(5)
    L = keras.layers
    km = keras.Sequential([keras.Input((6, 5, 3)), L.Conv2DTranspose(4, 3, 2, "same", activation="relu"),
                           L.Reshape((12 * 10, 4)), L.Conv1DTranspose(2, 3, 2, output_padding=1),
                           L.Reshape((242, 2, 1, 1)), L.Conv3DTranspose(2, (2, 1, 1), data_format="channels_first")])
    x = np.random.default_rng(6).standard_normal((2, 6, 5, 3)).astype("float32")
    check_keras_file_round_trips(keras, km, x, tmp_path)


@pytest.mark.oracle
@pytest.mark.parametrize("name,kwargs,message", [
    ("Conv1DTranspose", dict(filters=0, kernel_size=1), "Invalid value for argument `filters`"),
    ("Conv2DTranspose", dict(filters=2, kernel_size=(1, 0)), r"`kernel_size` argument must be a tuple of 2"),
    ("Conv2DTranspose", dict(filters=2, kernel_size=(2, 2, 2)), r"`kernel_size` argument must be a tuple of 2"),
    ("Conv2DTranspose", dict(filters=2, kernel_size=2, strides=(1, 0)), r"`strides` argument must be a tuple of 2"),
    ("Conv1DTranspose", dict(filters=2, kernel_size=3, strides=2, output_padding=2),
     "`output_padding` must be strictly less than `strides`"),
    ("Conv2DTranspose", dict(filters=2, kernel_size=3, strides=(2, 3), output_padding=(1, 3)),
     "`output_padding` must be strictly less than `strides`"),
    ("Conv3DTranspose", dict(filters=8, kernel_size=3, strides=1, output_padding=1),
     "`output_padding` must be strictly less than `strides`"),
    ("Conv2DTranspose", dict(filters=2, kernel_size=2, strides=2, dilation_rate=(2, 1)),
     r"`strides > 1` not supported in conjunction with `dilation_rate > 1`. Received: strides=\(2, 2\) and "
     r"dilation_rate=\(2, 1\)"),
    ("Conv1DTranspose", dict(filters=2, kernel_size=2, padding="full"), "padding"),
    ("Conv1DTranspose", dict(filters=2, kernel_size=2, data_format="nwc"), "data_format"),
])
def test_bad_arguments_raise_like_keras(keras, name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        getattr(keras.layers, name)(**kwargs)
    with pytest.raises(ValueError, match=message):
        getattr(layers, name)(**kwargs)


def test_wrong_inputs_are_named():
    layer = layers.Conv2DTranspose(2, 3)
    with pytest.raises(ValueError, match="expected min_ndim=4"):
        layer(np.zeros((1, 4, 3), "float32"))
    layer(np.zeros((1, 4, 4, 3), "float32"))
    with pytest.raises(ValueError, match="axis -1"):
        layer(np.zeros((1, 4, 4, 5), "float32"))


def test_call_logits_is_the_output_before_the_activation():
    layer = layers.Conv2DTranspose(2, 3, strides=2, activation="sigmoid")
    x = np.random.default_rng(0).standard_normal((1, 3, 3, 2)).astype("float32")
    np.testing.assert_allclose(layer(x), 1 / (1 + np.exp(-layer.call_logits(x))), rtol=1e-6)


def test_chunked_batches_give_the_same_values_and_gradients(monkeypatch):
    layer = layers.Conv2DTranspose(3, (3, 2), strides=(2, 1), padding="same", dtype="float64")
    x = np.random.default_rng(9).standard_normal((5, 4, 3, 2))
    layer(x)
    proj = np.random.default_rng(10).standard_normal(layer.compute_output_shape(x.shape))

    def run():
        xv = lamina.Variable(x, dtype="float64")
        with lamina.GradientTape() as tape:
            y = layer(xv)
            loss = lamina.ops.sum(y * proj)
        return [np.asarray(y)] + [np.asarray(g) for g in tape.gradient(loss, [xv, *layer.trainable_weights])]

    whole = run()
    monkeypatch.setattr(lamina.conv_variant_kernels, "CHUNK_BYTES", 1)  # one sample per chunk
    for a, b in zip(run(), whole, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
