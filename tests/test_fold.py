"""fold(): linear layers multiplied into one, BatchNormalization folded into Dense; same predictions."""

import numpy as np
import pytest

import lamina
from lamina import layers as L
from lamina.diagnostics import fold


def trained(model, x, y, loss="sparse_categorical_crossentropy"):
    model.compile(optimizer="adam", loss=loss, lint=False)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)  # moves BatchNormalization's moving statistics
    return model


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((256, 12)).astype("float32"), rng.integers(0, 4, 256)


def dense_count(model) -> int:
    return sum(isinstance(layer, L.Dense) for layer in model.layers)


def test_fold_merges_linear_layers_and_batchnorm(data):
    x, y = data
    lamina.utils.set_random_seed(0)
    model = trained(lamina.Sequential([
        L.Input((12,)), L.Dense(32), L.BatchNormalization(), L.Activation("relu"),
        L.Dense(32), L.Dropout(0.3), L.Dense(16), L.Activation("linear"), L.Dense(8, activation="tanh"),
        L.Dense(4, activation="softmax"),
    ]), x, y)
    folded = fold(model)
    # Dense+BN+relu -> one Dense(relu); Dense, Dense, Dense(tanh) -> one Dense(tanh); the head stays.
    assert [type(layer).__name__ for layer in folded.layers] == ["Dense", "Dense", "Dense"]
    assert [layer.units for layer in folded.layers] == [32, 8, 4]
    assert [layer.activation.__name__ for layer in folded.layers] == ["relu", "tanh", "softmax"]
    want, got = model.predict(x, verbose=0), folded.predict(x, verbose=0)
    assert got.dtype == np.float32 and all(w.dtype == np.float32 for w in folded.get_weights())
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert folded.count_params() < model.count_params()


def test_batchnorm_after_an_activation_folds_into_the_next_dense(data):
    x, y = data
    lamina.utils.set_random_seed(1)
    model = trained(lamina.Sequential([
        L.Input((12,)), L.Dense(16, activation="relu"), L.BatchNormalization(), L.Dense(4, activation="softmax"),
    ]), x, y)
    folded = fold(model)
    assert [type(layer).__name__ for layer in folded.layers] == ["Dense", "Dense"]
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_non_affine_layers_are_kept_and_a_batchnorm_with_no_dense_to_join_stays(data):
    x, y = data
    lamina.utils.set_random_seed(2)
    model = trained(lamina.Sequential([
        L.Input((12,)), L.Dense(8), L.Dense(8), L.LayerNormalization(), L.ReLU(max_value=6.0),
        L.Dense(4), L.BatchNormalization(), L.Dense(4, activation="relu"), L.BatchNormalization(),
    ]), x, np.eye(4, dtype="float32")[y], loss="mse")
    folded = fold(model)
    names = [type(layer).__name__ for layer in folded.layers]
    # Dense(4) + BN + Dense(4, relu) become one Dense(relu); the last BN follows a relu: kept as is.
    assert names == ["Dense", "LayerNormalization", "ReLU", "Dense", "BatchNormalization"]
    assert folded.layers[3].activation.__name__ == "relu"
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_fold_a_functional_chain(data):
    x, y = data
    inp = lamina.Input((12,))
    h = L.Dense(16)(inp)
    h = L.Dense(16)(h)
    out = L.Dense(4, activation="softmax")(L.Activation("relu")(h))
    model = trained(lamina.Model(inp, out), x, y)
    folded = fold(model)
    assert dense_count(folded) == 2
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_fold_rejects_what_it_cannot_fold():
    inp = lamina.Input((4,))
    out = L.Add()([L.Dense(3)(inp), L.Dense(3)(inp)])
    with pytest.raises(ValueError, match="single chain"):
        fold(lamina.Model(inp, out))
    with pytest.raises(ValueError, match="unbuilt Sequential"):
        fold(lamina.Sequential([L.Dense(3)]))
    with pytest.raises(TypeError, match="fold expects a lamina Model"):
        fold(L.Dense(3))


def test_fold_leaves_the_original_alone(data):
    x, _ = data
    model = lamina.Sequential([L.Input((12,)), L.Dense(8), L.Dense(2)])
    before = [w.copy() for w in model.get_weights()]
    fold(model)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert len(model.layers) == 2


class _FirstSix(L.Layer):
    """A custom layer that changes the feature width (12 -> 6) without being a Dense."""

    def call(self, inputs):
        return inputs[:, :6]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 6)


def test_batchnorm_after_a_width_changing_layer_folds_into_the_next_dense(data):
    # The BatchNormalization's own size sets the identity it starts from: not the last Dense's
    # width (a custom layer changed it) and not "unknown" after a Flatten.
    x, _ = data
    rng = np.random.default_rng(3)
    for model, xin in ((lamina.Sequential([L.Input((12,)), _FirstSix(), L.BatchNormalization(), L.Dense(3)]), x),
                       (lamina.Sequential([L.Input((3, 4)), L.Flatten(), L.BatchNormalization(), L.Dense(3)]),
                        x.reshape(-1, 3, 4))):
        bn = model.layers[1]
        bn.moving_mean.assign(rng.standard_normal(bn.moving_mean.shape).astype("float32"))
        bn.moving_variance.assign(rng.uniform(0.5, 2.0, bn.moving_variance.shape).astype("float32"))
        folded = fold(model)
        assert [type(layer).__name__ for layer in folded.layers] == [type(model.layers[0]).__name__, "Dense"]
        np.testing.assert_allclose(folded.predict(xin, verbose=0), model.predict(xin, verbose=0), atol=1e-5)
