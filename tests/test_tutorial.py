"""Keras's Sequential and Functional tutorial code for a 784-128-64-10 classifier, run on lamina with only
the import lines changed: it builds, predicts probability rows, introspects, transfers weights and summarises."""

import numpy as np

import lamina as keras
from lamina import layers
from lamina.layers import Activation


def _tutorial_models():
    output_layer = layers.Dense(1, activation='sigmoid')
    hidden_layer = layers.Dense(64, activation='tanh')
    hidden_layer = layers.Dense(128, activation='relu')
    output_layer = layers.Dense(10, activation='softmax')
    assert output_layer.units == 10 and hidden_layer.units == 128

    model = keras.Sequential([
        layers.Dense(128, activation='relu', input_shape=(784,)),
        layers.Dense(64, activation='relu'),
        layers.Dense(10, activation='softmax')
    ])
    seq = model

    inputs = keras.Input(shape=(784,))
    x = layers.Dense(128)(inputs)
    x = Activation('relu')(x)
    x = layers.Dense(64)(x)
    x = Activation('relu')(x)
    outputs = layers.Dense(10, activation='softmax')(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    return seq, model


def test_both_models_predict_probability_rows():
    seq, fun = _tutorial_models()
    x = np.random.default_rng(0).random((7, 784), dtype=np.float32)
    for model in (seq, fun):
        assert model.count_params() == 109386
        for out in (model.predict(x, verbose=0), model(x)):
            out = np.asarray(out)
            assert out.shape == (7, 10)
            assert out.dtype == np.float32
            assert np.all(out >= 0)
            np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(model.predict(x, verbose=0), model(x), rtol=1e-6)


def test_model_introspection():
    seq, fun = _tutorial_models()
    assert [type(layer).__name__ for layer in seq.layers] == ["Dense", "Dense", "Dense"]
    assert [type(layer).__name__ for layer in fun.layers] == [
        "InputLayer", "Dense", "Activation", "Dense", "Activation", "Dense"]
    for model in (seq, fun):
        assert model.inputs[0].shape == (None, 784)
        assert model.outputs[0].shape == (None, 10)
        first = model.get_layer(index=-1)
        assert model.get_layer(first.name) is first
        assert len(model.trainable_weights) == 6
        assert [w.shape for w in model.trainable_weights] == [(784, 128), (128,), (128, 64), (64,), (64, 10), (10,)]


def test_weights_transfer_between_the_two_models():
    seq, fun = _tutorial_models()
    x = np.random.default_rng(1).random((3, 784), dtype=np.float32)
    fun.set_weights(seq.get_weights())
    np.testing.assert_allclose(fun(x), seq(x), rtol=1e-6)
    w = seq.get_weights()
    w[-1] = w[-1] + 1.0
    seq.set_weights(w)
    np.testing.assert_allclose(seq.layers[-1].bias.numpy(), w[-1])


def test_summary_lists_layers_shapes_and_totals():
    seq, fun = _tutorial_models()
    for model, rows in ((seq, 3), (fun, 6)):
        lines = []
        model.summary(print_fn=lines.append)
        text = "\n".join(lines)
        assert f'Model: "{model.name}"' in text
        assert "Layer (type)" in text and "Output Shape" in text and "Param #" in text
        assert "(None, 128)" in text and "(None, 10)" in text
        assert "100,480" in text and "8,256" in text and "650" in text
        assert "Total params: 109,386 (427.29 KB)" in text
        assert "Trainable params: 109,386" in text
        assert "Non-trainable params: 0 (0.00 B)" in text
        assert text.count("(Dense)") == 3
        assert text.count("│ ") >= rows
