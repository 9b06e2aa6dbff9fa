"""Oracle tests: Conv1D, Conv2D, Conv3D against real Keras 3 on torch.

Forward values, input and weight gradients are compared on identical weights for every combination of
padding x strides x dilation x data_format that Keras allows (it refuses strides > 1 together with
dilation > 1 on any axes), in 1D, 2D and 3D, with odd and even sizes so that "same" pads unevenly; groups
on a few. Then float64 central differences, one SGD training step, configs, ``.keras`` and legacy ``.h5``
files both ways, LoRA, symbolic calls and Keras's argument errors.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import lamina
from tests.helpers.layer_harness import check_layer_gradients, keras_forward_and_grads, lamina_forward_and_grads

pytestmark = [pytest.mark.oracle]

RTOL, ATOL = 1e-4, 1e-5
SPATIAL = {1: (9,), 2: (7, 8), 3: (5, 6, 4)}
KERNELS = {1: 3, 2: (3, 2), 3: (2, 3, 2)}  # even sizes make "same" pad more after than before
# (strides, dilation): each allowed pair of the grid {1, 2} per axis, plus mixed per-axis tuples
STEPS = {
    1: [(1, 1), (2, 1), (1, 2), (3, 1)],
    2: [(1, 1), (2, 1), (1, 2), ((1, 2), 1), (1, (2, 1))],
    3: [(1, 1), (2, 1), (1, 2), ((2, 1, 2), 1), (1, (1, 2, 1))],
}


def _cases():
    for dims, steps in STEPS.items():
        paddings = ["valid", "same", "causal"] if dims == 1 else ["valid", "same"]
        for (s, d), pad, df in itertools.product(steps, paddings, ["channels_last", "channels_first"]):
            yield pytest.param(dims, s, d, pad, df, 1, id=f"{dims}D-s{s}-d{d}-{pad}-{df}")
    for dims, groups, df in [(1, 2, "channels_last"), (2, 3, "channels_last"), (2, 2, "channels_first"),
                             (3, 2, "channels_last")]:
        yield pytest.param(dims, 1, 1, "same", df, groups, id=f"{dims}D-groups{groups}-{df}")


def _pair(keras, dims, dtype="float32", **kwargs):
    """The lamina layer and the Keras layer, built on the same shape, with lamina's weights copied."""
    name = f"Conv{dims}D"
    ours = getattr(lamina.layers, name)(dtype=dtype, **kwargs)
    theirs = getattr(keras.layers, name)(dtype=dtype, **kwargs)
    return ours, theirs


def _input(dims, df, channels=6, batch=2, seed=0, dtype="float32"):
    spatial = SPATIAL[dims]
    shape = (batch, *spatial, channels) if df == "channels_last" else (batch, channels, *spatial)
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dims,s,d,pad,df,groups", list(_cases()))
def test_conv_matches_keras_forward_and_gradients(keras, dims, s, d, pad, df, groups):
    kwargs = dict(filters=6, kernel_size=KERNELS[dims], strides=s, padding=pad, data_format=df, dilation_rate=d,
                  groups=groups, bias_initializer="random_normal")
    ours, theirs = _pair(keras, dims, **kwargs)
    x = _input(dims, df)
    ours.build(x.shape)
    theirs.build(x.shape)
    assert [w.shape for w in theirs.weights] == [tuple(w.shape) for w in ours.weights]
    assert [w.name for w in theirs.weights] == [w.name for w in ours.weights] == ["kernel", "bias"]
    theirs.set_weights(ours.get_weights())
    out_shape = ours.compute_output_shape(x.shape)
    assert out_shape == tuple(theirs.compute_output_shape(x.shape))
    proj = np.random.default_rng(1).standard_normal(out_shape).astype("float32")
    y_k, dx_k, dw_k = keras_forward_and_grads(theirs, x, proj)
    y_l, dx_l, dw_l = lamina_forward_and_grads(ours, x, proj)
    assert y_l.shape == out_shape and y_l.dtype == np.float32
    np.testing.assert_allclose(y_l, y_k, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(np.asarray(dx_l), dx_k, rtol=RTOL, atol=ATOL)
    for got, want in zip(dw_l, dw_k, strict=True):
        np.testing.assert_allclose(np.asarray(got), want, rtol=RTOL, atol=10 * ATOL)


@pytest.mark.parametrize("dims,kwargs", [
    (1, dict(strides=2, padding="same")), (1, dict(dilation_rate=2, padding="causal", groups=2)),
    (2, dict(strides=(2, 1), padding="same", data_format="channels_first")),
    (2, dict(dilation_rate=(1, 2), padding="valid", groups=2)), (3, dict(strides=2, padding="same")),
])
@pytest.mark.parametrize("activation", [None, "relu", "gelu"])  # fused into the node, and not
def test_conv_float64_gradients_match_central_differences(dims, kwargs, activation):
    layer = getattr(lamina.layers, f"Conv{dims}D")(4, KERNELS[dims], activation=activation, dtype="float64",
                                                   bias_initializer="random_normal", **kwargs)
    df = kwargs.get("data_format", "channels_last")
    x = _input(dims, df, channels=4, dtype="float64")
    layer(x)
    check_layer_gradients(layer, x)


@pytest.mark.parametrize("run_eagerly", [False, True])  # lamina's compiled step, and the tape
def test_one_sgd_training_step_equals_keras(keras, run_eagerly):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 10, 10, 2)).astype("float32")
    y = rng.integers(0, 3, 8)

    def model(lib):
        L = lib.layers
        return lib.Sequential([L.Input((10, 10, 2)), L.Conv2D(4, 3, activation="relu", padding="same"),
                               L.Conv2D(5, (2, 3), strides=2, data_format="channels_last", activation="elu"),
                               L.Conv2D(3, 1, dilation_rate=1, groups=1, use_bias=False, activation="tanh"),
                               L.Conv2D(4, 2, padding="same", data_format="channels_first", activation="gelu"),
                               L.Flatten(), L.Dense(3)])

    km, lm = model(keras), model(lamina)
    lm.set_weights(km.get_weights())
    km.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    lm.compile(optimizer=lamina.optimizers.SGD(0.1), run_eagerly=run_eagerly,
               loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    k_loss = km.train_on_batch(x, y)
    l_loss = lm.train_on_batch(x, y)
    np.testing.assert_allclose(l_loss, k_loss, rtol=1e-5)
    for got, want in zip(lm.get_weights(), km.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


CONFIG_CASES = [
    ("Conv1D", {"filters": 3, "kernel_size": 2, "padding": "causal", "dilation_rate": 2}),
    ("Conv2D", {"filters": 4, "kernel_size": (3, 2), "strides": (2, 1), "padding": "same", "activation": "relu",
                "data_format": "channels_first", "groups": 2, "use_bias": False}),
    ("Conv3D", {"filters": 2, "kernel_size": 1, "kernel_regularizer": "l2", "bias_constraint": "non_neg",
                "kernel_initializer": "he_normal", "activity_regularizer": "l2"}),
    ("Conv2D", {"filters": 4, "kernel_size": 3, "lora_rank": 2, "lora_alpha": 3}),
    ("Convolution1D", {"filters": 3, "kernel_size": 4}),
]


@pytest.mark.parametrize("name,kwargs", CONFIG_CASES)
def test_config_equals_keras_and_round_trips(keras, name, kwargs):
    ours = getattr(lamina.layers, name)(name="c", **kwargs)
    theirs = getattr(keras.layers, name)(name="c", **kwargs)
    config = ours.get_config()
    assert config == theirs.get_config()
    again = lamina.layers.deserialize(lamina.layers.serialize(ours))
    assert type(again) is type(ours) and again.get_config() == config
    assert getattr(keras.layers, name).from_config(config).get_config() == config


def test_aliases_are_the_keras_classes(keras):
    for alias, name in [("Convolution1D", "Conv1D"), ("Convolution2D", "Conv2D"), ("Convolution3D", "Conv3D")]:
        assert getattr(lamina.layers, alias) is getattr(lamina.layers, name)
        assert getattr(keras.layers, alias).__name__ == getattr(lamina.layers, alias).__name__


def _convnet(lib):
    L = lib.layers
    return lib.Sequential([L.Input((12, 12, 3)), L.Conv2D(4, 3, activation="relu"), L.MaxPooling2D(),
                           L.Conv2D(6, 2, strides=2, padding="same", data_format="channels_last", groups=2,
                                    activation="tanh"),
                           L.Reshape((9, 6)), L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu"),
                           L.Reshape((3, 3, 4, 1)), L.Conv3D(2, (2, 2, 3), padding="same", activation="sigmoid"),
                           L.Flatten(),
                           L.Dense(2)])


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_model_files_move_both_ways_with_keras(keras, tmp_path, suffix):
    keras.utils.set_random_seed(4)
    km = _convnet(keras)
    x = np.random.default_rng(5).standard_normal((3, 12, 12, 3)).astype("float32")
    km.save(tmp_path / f"k{suffix}")
    lm = lamina.saving.load_model(tmp_path / f"k{suffix}")
    want = keras.ops.convert_to_numpy(km(x))
    np.testing.assert_allclose(lm.predict(x, verbose=0), want, rtol=RTOL, atol=ATOL)
    lm.save(tmp_path / f"l{suffix}")
    k2 = keras.saving.load_model(tmp_path / f"l{suffix}")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(k2(x)), want, rtol=RTOL, atol=ATOL)


def test_keras_trained_model_continues_training_in_lamina(keras, tmp_path):
    keras.utils.set_random_seed(6)
    km = _convnet(keras)
    km.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((16, 12, 12, 3)).astype("float32"), rng.standard_normal((16, 2)).astype("float32")
    km.fit(x, y, epochs=1, batch_size=8, verbose=0)
    km.save(tmp_path / "trained.keras")
    lm = lamina.saving.load_model(tmp_path / "trained.keras")
    km.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    lm.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    for got, want in zip(lm.get_weights(), km.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)


def test_lora_matches_keras_and_saves_the_merged_kernel(keras, tmp_path):
    ours, theirs = _pair(keras, 2, filters=4, kernel_size=3)
    x = _input(2, "channels_last", channels=3)
    ours.build(x.shape)
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    ours.enable_lora(2, lora_alpha=3)
    theirs.enable_lora(2, lora_alpha=3)
    assert {w.name: tuple(w.shape) for w in theirs.weights} == {w.name: tuple(w.shape) for w in ours.weights}
    assert len(ours.trainable_weights) == 3 and len(ours.non_trainable_weights) == 1
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((3, 3, 3, 2)).astype("float32"), rng.standard_normal((2, 4)).astype("float32")
    ours.lora_kernel_a.assign(a)
    ours.lora_kernel_b.assign(b)
    theirs.lora_kernel_a.assign(a)
    theirs.lora_kernel_b.assign(b)
    proj = rng.standard_normal(ours.compute_output_shape(x.shape)).astype("float32")
    y_k, dx_k, dw_k = keras_forward_and_grads(theirs, x, proj)
    y_l, dx_l, dw_l = lamina_forward_and_grads(ours, x, proj)
    np.testing.assert_allclose(y_l, y_k, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(np.asarray(dx_l), dx_k, rtol=RTOL, atol=ATOL)
    for got, want in zip(dw_l, dw_k, strict=True):
        np.testing.assert_allclose(np.asarray(got), want, rtol=RTOL, atol=10 * ATOL)
    model = lamina.Sequential([lamina.layers.Input(x.shape[1:]), ours])
    model.save(tmp_path / "lora.keras")
    loaded = keras.saving.load_model(tmp_path / "lora.keras")
    assert loaded.layers[0].lora_enabled
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), y_l, rtol=RTOL, atol=ATOL)
    back = lamina.saving.load_model(tmp_path / "lora.keras")
    np.testing.assert_allclose(back.predict(x, verbose=0), y_l, rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="already enabled"):
        ours.enable_lora(2)


def test_symbolic_calls_give_keras_shapes(keras):
    for dims, kwargs in [(1, dict(padding="causal", strides=2)), (2, dict(data_format="channels_first")),
                         (3, dict(padding="same", strides=(1, 2, 3)))]:
        shape = (None, 4, *SPATIAL[dims]) if kwargs.get("data_format") else (None, *SPATIAL[dims], 4)
        ours = getattr(lamina.layers, f"Conv{dims}D")(5, 2, **kwargs)(lamina.layers.Input(shape[1:]))
        theirs = getattr(keras.layers, f"Conv{dims}D")(5, 2, **kwargs)(keras.layers.Input(shape[1:]))
        assert tuple(ours.shape) == tuple(theirs.shape)
    assert lamina.layers.Conv2D(3, 3).compute_output_shape((None, None, 9, 2)) == (None, None, 7, 3)


@pytest.mark.parametrize("name,kwargs,message", [
    ("Conv1D", {"filters": 0, "kernel_size": 1}, "Invalid value for argument `filters`.*Received filters=0"),
    ("Conv2D", {"filters": 2, "kernel_size": (1, 0)}, r"`kernel_size` argument must be a tuple of 2 integers"),
    ("Conv2D", {"filters": 2, "kernel_size": 2, "strides": (1, 0)}, r"`strides` argument must be a tuple of 2"),
    ("Conv2D", {"filters": 2, "kernel_size": 2, "strides": 2, "dilation_rate": (2, 1)},
     r"`strides > 1` not supported in conjunction with `dilation_rate > 1`"),
    ("Conv2D", {"filters": 5, "kernel_size": 2, "groups": 0}, "The number of groups must be a positive integer"),
    ("Conv2D", {"filters": 5, "kernel_size": 2, "groups": 2}, "filters must be evenly divisible.*groups=2, filters=5"),
    ("Conv2D", {"filters": 2, "kernel_size": 2, "padding": "causal"}, "padding"),
    ("Conv3D", {"filters": 2, "kernel_size": 2, "data_format": "nhwc"}, "data_format"),
])
def test_bad_arguments_raise_like_keras(keras, name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        getattr(keras.layers, name)(**kwargs)
    with pytest.raises(ValueError, match=message):
        getattr(lamina.layers, name)(**kwargs)


def test_build_and_call_errors_name_the_problem(keras):
    with pytest.raises(ValueError, match="input channels must be evenly divisible.*groups=2.*3 channels"):
        lamina.layers.Conv2D(4, 2, groups=2).build((None, 5, 5, 3))
    with pytest.raises(ValueError, match="Computed output size would be zero or negative"):
        lamina.layers.Conv2D(6, 5)(np.zeros((3, 4, 4, 4), "float32"))
    with pytest.raises(ValueError, match="Computed output size would be zero or negative"):
        lamina.layers.Conv1D(1, 2, dilation_rate=10)(lamina.layers.Input((10, 3)))
    with pytest.raises(ValueError, match="channel dimension.*must be known"):
        lamina.layers.Conv2D(2, 2).build((None, 5, 5, None))
    layer = lamina.layers.Conv2D(2, 2)
    layer(np.zeros((1, 4, 4, 3), "float32"))
    with pytest.raises(ValueError):
        layer(np.zeros((1, 4, 4, 2), "float32"))  # the input spec holds the built channel count


def test_ops_conv_matches_keras(keras):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 7, 6, 4)).astype("float32")
    for kernel_shape, s, pad, d, df in [((3, 3, 4, 5), 1, "same", 1, "channels_last"),
                                        ((2, 3, 2, 6), (2, 1), "valid", 1, "channels_last"),
                                        ((3, 2, 4, 3), 1, "same", 2, "channels_first")]:
        k = rng.standard_normal(kernel_shape).astype("float32")
        xi = np.moveaxis(x, -1, 1).copy() if df == "channels_first" else x
        want = keras.ops.convert_to_numpy(keras.ops.conv(xi, k, s, pad, df, d))
        np.testing.assert_allclose(lamina.ops.conv(xi, k, s, pad, df, d), want, rtol=RTOL, atol=ATOL)
    kt = rng.standard_normal((3, 2, 5, 4)).astype("float32")
    for pad, extra in [("valid", None), ("same", None), ("same", 1), ("valid", (1, 0))]:
        want = keras.ops.convert_to_numpy(keras.ops.conv_transpose(x, kt, 2, pad, extra))
        np.testing.assert_allclose(lamina.ops.conv_transpose(x, kt, 2, pad, extra), want, rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="kernel's input channels"):
        lamina.ops.conv(x, np.zeros((3, 3, 3, 2), "float32"))


def test_ops_conv_gradients_match_central_differences():
    from tests.helpers.gradcheck import check_gradients  # lazy: only this test checks a bare op

    rng = np.random.default_rng(10)
    x, k = rng.standard_normal((2, 5, 6, 4)), rng.standard_normal((2, 3, 2, 4))
    check_gradients(lambda a, b: lamina.ops.conv(a, b, (2, 1), "same", "channels_first"),
                    np.moveaxis(x, -1, 1).copy(), k)


def test_config_weight_count_knows_the_convolutions():
    from lamina.saving.config_params import count_params  # lazy: only this test reads the file-safety count

    model = lamina.Sequential([lamina.layers.Input((12, 12, 3)), lamina.layers.Conv2D(4, 3, activation="relu"),
                               lamina.layers.Conv2D(6, 2, strides=2, padding="same", groups=2, use_bias=False),
                               lamina.layers.Reshape((25, 6)), lamina.layers.Conv1D(4, 3, padding="causal"),
                               lamina.layers.Reshape((5, 5, 4, 1)),
                               lamina.layers.Conv3D(2, 2, data_format="channels_last"), lamina.layers.Flatten(),
                               lamina.layers.Dense(2)])
    assert count_params(lamina.layers.serialize(model)) == model.count_params()


def test_ops_conv_on_symbolic_tensors_saves_as_keras_conv_op(keras, tmp_path):
    # (ops.conv_transpose makes a graph node too, but Keras 3.15.1's own ConvTranspose.call passes
    # output_padding and padding in swapped order, so Keras cannot run such a file; not tested here.)
    k = np.random.default_rng(11).standard_normal((3, 3, 3, 4)).astype("float32")
    inputs = lamina.layers.Input((8, 8, 3))
    y = lamina.ops.conv(inputs, k, 2, "same")
    assert tuple(y.shape) == (None, 4, 4, 4)
    assert tuple(lamina.ops.conv_transpose(y, k[:2, :2, :2], 2).shape) == (None, 8, 8, 2)
    model = lamina.Model(inputs, y)
    x = np.random.default_rng(12).standard_normal((2, 8, 8, 3)).astype("float32")
    model.save(tmp_path / "op.keras")
    theirs = keras.saving.load_model(tmp_path / "op.keras")
    want = keras.ops.convert_to_numpy(keras.ops.conv(x, k, 2, "same"))
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(theirs(x)), want, rtol=RTOL, atol=ATOL)


def _standardized(lib):
    """keras.io's weight-standardized convolution: a subclass overriding ``convolution_op``."""

    class StandardizedConv2D(lib.layers.Conv2D):
        def convolution_op(self, inputs, kernel):
            mean, var = lib.ops.moments(kernel, axes=[0, 1, 2], keepdims=True)
            return lib.ops.conv(inputs, (kernel - mean) / lib.ops.sqrt(var + 1e-10), padding="valid",
                                strides=list(self.strides), dilation_rate=self.dilation_rate,
                                data_format=self.data_format)

    return StandardizedConv2D


@pytest.mark.parametrize("df", ["channels_last", "channels_first"])
def test_subclass_overriding_convolution_op_matches_keras(keras, df):
    ours = _standardized(lamina)(4, 3, data_format=df, activation="relu", bias_initializer="random_normal")
    theirs = _standardized(keras)(4, 3, data_format=df, activation="relu", bias_initializer="random_normal")
    x = _input(2, df, channels=3)
    ours.build(x.shape)
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    proj = np.random.default_rng(13).standard_normal(ours.compute_output_shape(x.shape)).astype("float32")
    y_k, dx_k, dw_k = keras_forward_and_grads(theirs, x, proj)
    y_l, dx_l, dw_l = lamina_forward_and_grads(ours, x, proj)
    np.testing.assert_allclose(y_l, y_k, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(np.asarray(dx_l), dx_k, rtol=RTOL, atol=ATOL)
    for got, want in zip(dw_l, dw_k, strict=True):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("dims,kwargs", [(1, dict(padding="causal", dilation_rate=2, groups=2)),
                                         (2, dict(strides=2, padding="same", data_format="channels_first"))])
def test_convolution_op_is_the_layer_without_bias(keras, dims, kwargs):
    layer = getattr(lamina.layers, f"Conv{dims}D")(4, 3, use_bias=False, **kwargs)
    x = _input(dims, kwargs.get("data_format", "channels_last"), channels=4)
    y = layer(x)
    np.testing.assert_allclose(layer.convolution_op(x, layer.kernel), y, rtol=1e-6, atol=1e-6)
