"""The compiled step's convolution, pooling, Flatten/Reshape and Activation nodes train convnets to the
tape step's numbers.

Each case builds the same model twice from one seed, trains one with the default (compiled) step and one
with ``run_eagerly=True`` (the tape step) on the same batches and random stream, and compares weights,
optimizer state and the history to 1e-6 relative; the plan's node kinds are checked too, so a layer that
silently fell back to a tape node (equal numbers, no speed) fails.
"""

import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.models import compiled_step

RNG = np.random.default_rng(3)
N, BATCH, EPOCHS = 96, 16, 2  # 12 steps
X2 = RNG.random((N, 10, 10, 2), dtype=np.float32)
X1 = RNG.random((N, 12, 3), dtype=np.float32)
X3 = RNG.random((N, 6, 6, 4, 2), dtype=np.float32)
Y = RNG.integers(0, 4, N)


def simple_convnet():
    """keras.io's simple MNIST convnet, scaled down."""
    return lamina.Sequential([layers.Input((10, 10, 2)), layers.Conv2D(4, 3, activation="relu"),
                              layers.MaxPooling2D(2), layers.Conv2D(6, 2, activation="relu"), layers.MaxPooling2D(2),
                              layers.Flatten(), layers.Dropout(0.5), layers.Dense(4, activation="softmax")])


def bn_blocks():
    return lamina.Sequential([layers.Input((10, 10, 2)), layers.Conv2D(5, 3, padding="same"),
                              layers.BatchNormalization(), layers.Activation("relu"),
                              layers.AveragePooling2D(3, strides=2, padding="same"),
                              layers.Conv2D(6, 3, strides=2, padding="same", use_bias=False),
                              layers.BatchNormalization(), layers.Activation("relu"),
                              layers.MaxPooling2D(2, strides=1), layers.Reshape((-1, 6)), layers.Flatten(),
                              layers.Dense(4, activation="softmax")])


def conv1d_causal():
    return lamina.Sequential([layers.Input((12, 3)), layers.Conv1D(4, 3, padding="causal", dilation_rate=2,
                                                                   activation="tanh"),
                              layers.MaxPooling1D(3, strides=2, padding="same"),
                              layers.Conv1D(4, 2, groups=2, activation="elu"),
                              layers.Flatten(), layers.Dense(4, activation="softmax")])


def conv3d():
    return lamina.Sequential([layers.Input((6, 6, 4, 2)), layers.Conv3D(3, 2, activation="sigmoid"),
                              layers.AveragePooling3D(2), layers.Flatten(), layers.Dense(4, activation="softmax")])


def fan_out():
    """One feature map read by two branches: its gradient is the sum of both."""
    i = lamina.Input((10, 10, 2))
    h = layers.Conv2D(4, 3, activation="relu")(i)
    a = layers.Flatten()(layers.MaxPooling2D(2)(h))
    b = layers.Flatten()(layers.Conv2D(2, 3, strides=2, activation="tanh")(h))
    return lamina.Model(i, layers.Dense(4, activation="softmax")(layers.Concatenate()([a, b])))


def mixed_fallbacks():
    """Layers the plan leaves on tape nodes (channels_first, an unfused activation, a regularized
    kernel) between kernel nodes."""
    return lamina.Sequential([layers.Input((10, 10, 2)), layers.Conv2D(4, 3, activation="gelu"),
                              layers.Conv2D(4, 3, data_format="channels_first", padding="same", activation="relu"),
                              layers.Conv2D(3, 3, activation="relu", kernel_regularizer="l2"),
                              layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(4, activation="softmax")])


CASES = {  # name: (builder, input, node kinds the plan must have, in order)
    "simple_convnet": (simple_convnet, X2, ["Conv", "Pool", "Conv", "Pool", "Reshape", "Dropout", "Dense"]),
    "bn_blocks": (bn_blocks, X2, ["Conv", "BatchNorm", "Activation", "Pool", "Conv", "BatchNorm", "Activation",
                                  "Pool", "Reshape", "Reshape", "Dense"]),
    "conv1d_causal": (conv1d_causal, X1, ["Conv", "Pool", "Conv", "Reshape", "Dense"]),
    "conv3d": (conv3d, X3, ["Conv", "Pool", "Reshape", "Dense"]),
    "fan_out": (fan_out, X2, ["Conv", "Pool", "Reshape", "Conv", "Reshape", "Tape", "Dense"]),
    "mixed_fallbacks": (mixed_fallbacks, X2, ["Tape", "Tape", "Conv", "Pool", "Reshape", "Dense"]),
}


def train(build, x, *, run_eagerly):
    lamina.utils.set_random_seed(5)
    model = build()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  run_eagerly=run_eagerly)
    lamina.utils.set_random_seed(9)
    history = model.fit(x, Y, batch_size=BATCH, epochs=EPOCHS, shuffle=True, verbose=0)
    return model, history.history


def node_kinds(model) -> list[str]:
    return [type(n).__name__[1:-4] for n in model._fast_step.flat_nodes()]


@pytest.mark.parametrize("name", list(CASES))
def test_compiled_conv_step_equals_tape_step(name):
    build, x, kinds = CASES[name]
    compiled, hist_c = train(build, x, run_eagerly=False)
    assert isinstance(compiled._fast_step, compiled_step.CompiledStep)
    assert node_kinds(compiled) == kinds
    eager, hist_e = train(build, x, run_eagerly=True)
    assert eager._fast_step is None
    for wc, we in zip(compiled.get_weights(), eager.get_weights(), strict=True):
        np.testing.assert_allclose(wc, we, rtol=1e-6, atol=1e-7)
    for vc, ve in zip(compiled.optimizer.variables, eager.optimizer.variables, strict=True):
        np.testing.assert_allclose(np.asarray(vc), np.asarray(ve), rtol=1e-6, atol=1e-7)
    for key in hist_e:
        np.testing.assert_allclose(hist_c[key], hist_e[key], rtol=1e-6)


def test_simple_convnet_plan_has_no_tape_node():
    model, _ = train(simple_convnet, X2, run_eagerly=False)
    assert not [n for n in model._fast_step.flat_nodes() if isinstance(n, compiled_step._TapeNode)]


def test_relu_moves_past_max_pooling_only_when_the_pool_alone_reads_it():
    """conv(relu) or Activation("relu") -> MaxPooling: the relu runs on the pooled output (the equality
    tests above pin the numbers); a feature map with a second reader, or average pooling, keeps its relu."""
    relu = lamina.activations.FUSED[lamina.activations.relu]
    simple, _ = train(simple_convnet, X2, run_eagerly=False)
    convs = [n for n in simple._fast_step.flat_nodes() if isinstance(n, compiled_step._ConvNode)]
    pools = [n for n in simple._fast_step.flat_nodes() if isinstance(n, compiled_step._PoolNode)]
    assert [c.fused is relu for c in convs] == [False, False] and [p.relu for p in pools] == [True, True]
    shared, _ = train(fan_out, X2, run_eagerly=False)
    first = shared._fast_step.flat_nodes()[0]
    assert first.fused is relu and not any(getattr(n, "relu", False) for n in shared._fast_step.flat_nodes())
    blocks, _ = train(bn_blocks, X2, run_eagerly=False)
    acts = [n for n in blocks._fast_step.flat_nodes() if isinstance(n, compiled_step._ActivationNode)]
    pools = [n for n in blocks._fast_step.flat_nodes() if isinstance(n, compiled_step._PoolNode)]
    assert [a.fused is relu for a in acts] == [True, False]  # average pooling, then max pooling
    assert [p.relu for p in pools] == [False, True]


def test_fused_relu_pool_gradient_with_tied_and_negative_windows():
    """Windows whose maximum is negative, zero or tied: the fused node's input gradient equals the tape's
    relu-then-pool gradient exactly."""
    layer = layers.Conv2D(2, 1, activation="relu", kernel_initializer="ones", bias_initializer="zeros")
    model = lamina.Sequential([layers.Input((4, 4, 1)), layer, layers.MaxPooling2D(2), layers.Flatten(),
                               layers.Dense(3, activation="softmax")])
    x = np.array([[-1, -2, 0, 0], [-3, -1, 0, -1], [2, 2, 1, 3], [2, 1, 3, 3]], "float32").reshape(1, 4, 4, 1)
    x = np.concatenate([x, -x, np.zeros_like(x)])
    y = np.array([0, 1, 2])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    lamina.utils.set_random_seed(1)
    eager = lamina.models.clone_model(model)
    eager.set_weights(model.get_weights())
    eager.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", run_eagerly=True)
    model.fit(x, y, batch_size=3, epochs=2, shuffle=False, verbose=0)
    eager.fit(x, y, batch_size=3, epochs=2, shuffle=False, verbose=0)
    assert model._fast_step.flat_nodes()[1].relu
    for wc, we in zip(model.get_weights(), eager.get_weights(), strict=True):
        np.testing.assert_array_equal(wc, we)


def test_conv_plan_serves_a_new_spatial_size():
    """A fully convolutional model (global pooling) on 10x10 and then 14x14 images: the conv and pooling
    nodes work out their padding from each batch's spatial size."""

    def build():
        return lamina.Sequential([layers.Input((None, None, 2)), layers.Conv2D(4, 3, strides=2, padding="same",
                                                                                activation="relu"),
                                  layers.MaxPooling2D(2, padding="same"), layers.GlobalAveragePooling2D(),
                                  layers.Dense(4, activation="softmax")])

    big = np.random.default_rng(4).random((N, 14, 14, 2), dtype=np.float32)
    results = []
    for eager in (False, True):
        lamina.utils.set_random_seed(5)
        model = build()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", run_eagerly=eager)
        model.fit(X2, Y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        model.fit(big, Y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        assert (model._fast_step is None) == eager
        results.append(model.get_weights())
    for wc, we in zip(*results, strict=True):
        np.testing.assert_allclose(wc, we, rtol=1e-6, atol=1e-7)


def test_sequential_inference_runs_the_relu_after_the_max_pooling_with_the_same_values():
    """predict's plan makes a relu convolution and the max pooling after it one step, the relu applied to
    the pooled array; the values equal the layers called one by one (NaN and negative windows included),
    and a later change of the activation is honoured."""
    from lamina.models.sequential import _relu_after_max_pool

    rng = np.random.default_rng(2)
    model = lamina.Sequential([lamina.Input((9, 9, 2)), lamina.layers.Conv2D(3, 2, activation="relu"),
                               lamina.layers.MaxPooling2D(2), lamina.layers.Flatten()])
    x = rng.normal(size=(4, 9, 9, 2)).astype("float32")
    x[0, :3, :3] = np.nan
    x[1] = -np.abs(x[1]) * 10
    conv, pool, flat = model.layers
    expected = flat(pool(conv(x)))
    got = model.predict(x, verbose=0)
    assert isinstance(model._plan[0][0], type(_relu_after_max_pool(conv, pool)))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(np.asarray(expected)))
    np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-6, atol=1e-7)
    conv.activation = lamina.activations.tanh
    np.testing.assert_allclose(model.predict(x, verbose=0), np.asarray(flat(pool(conv(x)))), rtol=1e-6, atol=1e-7)


def _normalized_stack(variant: str):
    """Conv2D -> BatchNormalization -> relu -> MaxPooling2D twice (an ``Activation`` and a ``ReLU``), with
    random statistics; the first convolution takes the fused few-channel kernel, the second Winograd's."""
    layers = lamina.layers
    model = lamina.Sequential([lamina.Input((12, 12, 3)), layers.Conv2D(16, 3, padding="same"),
                               layers.BatchNormalization(), layers.Activation("relu"), layers.MaxPooling2D(2),
                               layers.Conv2D(16, 3, padding="same"), layers.BatchNormalization(), layers.ReLU(),
                               layers.MaxPooling2D(2, padding="same"), layers.Flatten()])
    if variant == "negative threshold":  # the constructor refuses one; set afterwards, the relu falls there
        model.layers[6].threshold = -0.5
    rng = np.random.default_rng(7)
    for norm in (model.layers[1], model.layers[5]):
        gamma = np.abs(rng.normal(size=16)).astype("float32")
        if variant == "negative gamma":
            gamma[3] = -0.5
        norm.set_weights([gamma, rng.normal(size=16).astype("float32"), rng.normal(size=16).astype("float32"),
                          rng.uniform(0.5, 2, size=16).astype("float32")])
    return model


@pytest.mark.parametrize("variant", ["plain", "negative gamma", "negative threshold"])
def test_sequential_inference_pools_before_the_normalization_with_the_same_values(variant, monkeypatch):
    """predict's plan runs Conv -> BatchNormalization -> relu -> MaxPooling as one step with the pooling
    first (the normalization and relu on the pooled array): the values equal the layers called one by one,
    NaN windows included. Where the maximum would not pass through (a channel with a negative scale, a ReLU
    whose negative threshold makes it fall), and in training mode (batch statistics), the layers run in
    their own order."""
    from lamina.models import sequential

    pooled_first = []
    compiled_pool = sequential._compiled_pool
    monkeypatch.setattr(sequential, "_compiled_pool", lambda conv, pool, x, relu=True: pooled_first.append(
        conv.name) or compiled_pool(conv, pool, x, relu))
    model = _normalized_stack(variant)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 12, 12, 3)).astype("float32")
    x[0, :4, :4] = np.nan

    def one_by_one(training):
        h = x
        for layer in model.layers:
            h = layer(h, training=training)
        return np.asarray(h)

    expected = one_by_one(False)
    got = model.predict(x, batch_size=64, verbose=0)
    fused = {"plain": [0, 4], "negative gamma": [], "negative threshold": [0]}[variant]
    assert set(pooled_first) == {model.layers[i].name for i in fused}
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert np.isnan(got[0]).any() and not np.isnan(got[1:]).any()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    trained = np.asarray(model(x, training=True))
    np.testing.assert_allclose(trained, one_by_one(True), rtol=1e-5, atol=1e-5)
