"""Sequential, Functional and subclassed models; custom layers; configs; bad input; Keras fidelity."""

import numpy as np
import pytest

import lamina
from lamina import layers

X = np.random.default_rng(0).normal(size=(6, 8)).astype("float32")


def test_sequential_add_pop_and_deferred_build():
    model = lamina.Sequential()
    model.add(lamina.Input(shape=(8,)))
    model.add(layers.Dense(4, activation="tanh"))
    model.add(layers.Dense(2))
    assert model.built and model.output_shape == (None, 2)
    popped = model.pop()
    assert popped.units == 2 and model.output_shape == (None, 4)
    deferred = lamina.Sequential([layers.Dense(3), layers.Dense(1)])
    assert not deferred.built
    with pytest.raises(ValueError, match="isn't built"):
        deferred.count_params()
    assert deferred(X).shape == (6, 1)
    assert deferred.count_params() == 8 * 3 + 3 + 3 + 1


def test_input_dim_and_build_method():
    m = lamina.Sequential([layers.Dense(5, input_dim=8)])
    assert m.input_shape == (None, 8)
    m2 = lamina.Sequential([layers.Dense(5)])
    m2.build((None, 8))
    assert m2.count_params() == 45


def test_functional_multi_input_output_shared_layer():
    a = lamina.Input((8,), name="a")
    b = lamina.Input((8,), name="b")
    shared = layers.Dense(4, activation="relu", name="shared")
    ha, hb = shared(a), shared(b)
    out1 = layers.Dense(1, activation="sigmoid", name="out1")(ha)
    out2 = layers.Dense(3, activation="softmax", name="out2")(hb)
    model = lamina.Model(inputs=[a, b], outputs=[out1, out2])
    y1, y2 = model([X, X * 2])
    assert y1.shape == (6, 1) and y2.shape == (6, 3)
    w, bias = shared.get_weights()
    np.testing.assert_allclose(model.get_layer("out2")(np.maximum(X * 2 @ w + bias, 0)), y2, rtol=1e-5)
    assert model.count_params() == 36 + 5 + 15
    d1, d2 = model({"a": X, "b": X * 2})
    np.testing.assert_allclose(d2, y2)
    clone = lamina.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    for got, want in zip(clone([X, X * 2]), (y1, y2)):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_graph_disconnected_is_a_clear_error():
    a = lamina.Input((8,))
    b = lamina.Input((8,))
    out = layers.Dense(2)(b)
    with pytest.raises(ValueError, match="Graph disconnected"):
        lamina.Model(inputs=a, outputs=out)


class Scale(layers.Layer):
    """A custom layer: y = x * w, one weight per feature."""

    def __init__(self, init=1.0, **kwargs):
        super().__init__(**kwargs)
        self.init = init

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer=lamina.initializers.Constant(self.init),
                                 name="w")

    def call(self, inputs):
        return inputs * self.w

    def get_config(self):
        return {**super().get_config(), "init": self.init}


class TwoLayer(lamina.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = layers.Dense(4, activation="relu")
        self.scale = Scale(2.0)
        self.out = layers.Dense(1)

    def call(self, inputs, training=None):
        return self.out(self.scale(self.hidden(inputs)))


def test_custom_layer_and_subclassed_model_train_with_tape():
    model = TwoLayer()
    y = model(X)
    assert y.shape == (6, 1)
    assert len(model.trainable_weights) == 5
    with lamina.GradientTape() as tape:
        loss = lamina.ops.mean(lamina.ops.square(model(X)))
    grads = tape.gradient(loss, model.trainable_weights)
    assert all(g is not None and g.shape == v.shape for g, v in zip(grads, model.trainable_weights))
    s = Scale.from_config(Scale(3.0).get_config())
    assert s.init == 3.0


def test_layer_config_round_trip_keras_keys():
    d = layers.Dense(3, activation="relu", use_bias=False, kernel_initializer="he_normal", name="d")
    cfg = d.get_config()
    for key in ("name", "trainable", "dtype", "units", "activation", "use_bias", "kernel_initializer",
                "bias_initializer", "kernel_regularizer", "bias_regularizer", "kernel_constraint",
                "bias_constraint"):
        assert key in cfg
    assert cfg["activation"] == "relu"
    d2 = layers.Dense.from_config(cfg)
    assert d2.get_config() == cfg
    act = layers.Activation.from_config(layers.Activation("tanh").get_config())
    np.testing.assert_allclose(act(X), np.tanh(X), rtol=1e-6)


def test_same_seed_bit_identical_weights():
    def build():
        lamina.utils.set_random_seed(7)
        return lamina.Sequential([layers.Dense(16, activation="relu", input_shape=(8,)), layers.Dense(3)])

    w1, w2 = build().get_weights(), build().get_weights()
    for a, b in zip(w1, w2):
        assert np.array_equal(a, b)


def test_trainable_flag_moves_weights():
    model = lamina.Sequential([layers.Dense(4, input_shape=(8,)), layers.Dense(2)])
    model.layers[0].trainable = False
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 2
    assert model.count_params() == 36 + 10


# ----------------------------------------------------------------------------- bad input

def test_bad_construction_arguments():
    with pytest.raises(ValueError, match="units"):
        layers.Dense(0)
    with pytest.raises(ValueError, match="units"):
        layers.Dense(-3)
    with pytest.raises(ValueError, match="relux"):
        layers.Dense(3, activation="relux")
    with pytest.raises(ValueError):
        layers.Dense(3, kernel_initializer="glorot_unifrom")
    with pytest.raises(TypeError, match="Unrecognized keyword"):
        layers.Dense(3, unitz=4)
    with pytest.raises(ValueError, match="Only instances"):
        lamina.Sequential([np.zeros(3)])


def test_wrong_width_and_rank_name_the_layer():
    model = lamina.Sequential([layers.Dense(4, input_shape=(8,), name="first")])
    with pytest.raises(ValueError, match=r"first.*expected shape=\(None, 8\).*\(2, 7\)"):
        model.predict(np.zeros((2, 7), "float32"), verbose=0)
    # A trailing axis of size 1 is dropped (Keras's rank standardization); any other extra axis is refused.
    assert model(np.zeros((2, 8, 1), "float32")).shape == (2, 4)
    with pytest.raises(ValueError, match=r"\(2, 8, 2\)"):
        model(np.zeros((2, 8, 2), "float32"))
    dense = layers.Dense(4, name="lone")
    dense(np.zeros((2, 8), "float32"))
    with pytest.raises(ValueError, match=r"lone.*axis -1.*size 8.*input_shape=\(2, 5\)"):
        dense(np.zeros((2, 5), "float32"))
    with pytest.raises(ValueError, match="min_ndim=2"):
        layers.Dense(2, name="flat")(np.zeros(5, "float32"))


def test_non_numeric_input_is_type_error():
    model = lamina.Sequential([layers.Dense(2, input_shape=(3,))])
    with pytest.raises(TypeError, match="numeric"):
        model.predict(np.array([["a", "b", "c"]]), verbose=0)
    with pytest.raises(TypeError, match="numeric"):
        model(np.array([[None, 1, 2]], dtype=object))


def test_set_weights_wrong_shapes():
    model = lamina.Sequential([layers.Dense(2, input_shape=(3,))])
    with pytest.raises(ValueError, match="expects 2 weight arrays"):
        model.set_weights([np.zeros((3, 2))])
    with pytest.raises(ValueError, match=r"shape \(3, 2\)"):
        model.set_weights([np.zeros((2, 2)), np.zeros(2)])


# ----------------------------------------------------------------------------- Keras fidelity

@pytest.mark.oracle
def test_mlp_with_several_activations_matches_keras(keras):
    acts = ["relu", "tanh", "sigmoid", "gelu", "elu", "selu", "softplus", "swish", "softmax"]

    def stack(lib):
        return lib.Sequential([lib.Input((8,))] + [lib.layers.Dense(6, activation=a) for a in acts])

    km, lm = stack(keras), stack(lamina)
    lm.set_weights(km.get_weights())
    x = np.random.default_rng(3).normal(size=(32, 8)).astype("float32") * 3
    want = keras.ops.convert_to_numpy(km(x))
    np.testing.assert_allclose(lm.predict(x, verbose=0), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(lm(x), km.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


@pytest.mark.oracle
def test_functional_with_bn_dropout_concat_add_matches_keras(keras):
    def build(lib):
        L = lib.layers
        inp = lib.Input((10,))
        a = L.Dense(8, activation="relu")(inp)
        a = L.BatchNormalization()(a)
        a = L.Dropout(0.5)(a)
        b = L.Dense(8, activation="tanh")(inp)
        s = L.Add()([a, b])
        c = L.Concatenate()([s, b])
        out = L.Dense(3, activation="softmax")(c)
        return lib.Model(inputs=inp, outputs=out)

    km, lm = build(keras), build(lamina)
    rng = np.random.default_rng(4)
    weights = km.get_weights()
    # Non-trivial moving statistics so BatchNormalization's inference path is really exercised.
    for i, w in enumerate(weights):
        if w.ndim == 1 and w.shape == (8,):
            weights[i] = (rng.uniform(0.5, 1.5, size=8) if i % 2 else rng.normal(size=8)).astype("float32")
    km.set_weights(weights)
    lm.set_weights(weights)
    x = rng.normal(size=(16, 10)).astype("float32")
    np.testing.assert_allclose(lm.predict(x, verbose=0), keras.ops.convert_to_numpy(km(x)), rtol=1e-4, atol=1e-5)


def test_custom_layer_taking_a_list_of_tensors():
    class WeightedSum(layers.Layer):
        def build(self, input_shape):
            self.alpha = self.add_weight(shape=(), initializer="ones", name="alpha")

        def call(self, inputs):
            a, b = inputs
            return a * self.alpha + b

    layer = WeightedSum()
    a, b = np.ones((2, 3), "float32"), np.full((2, 5), 2.0, "float32")[:, :3]
    np.testing.assert_allclose(layer([a, b]), a + b)
    x1, x2 = lamina.Input((3,)), lamina.Input((3,))
    model = lamina.Model([x1, x2], WeightedSum()([x1, x2]))
    np.testing.assert_allclose(model([a, b]), a + b)
