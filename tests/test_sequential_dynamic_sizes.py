"""A Sequential model built from its first batch (no Input) takes later batches of other sizes, as
Keras's does, while its layers still check what they need; a model given an Input keeps its shape."""

import warnings

import numpy as np
import pytest

import lamina
from lamina import layers


def test_flatten_predicts_batches_of_other_sizes():
    def batches():
        yield (np.ones((3, 5, 7), "float32"),)
        yield (np.ones((2, 7, 5), "float32"),)

    model = lamina.Sequential([layers.Flatten()])
    assert model.predict(batches(), verbose=0).shape == (5, 35)
    assert model.input_shape == (None, None, None)  # the sizes seen to vary are unknown now


def test_reshape_with_minus_one_fits_and_predicts_varying_lengths():
    def batches():
        yield np.ones((1, 12, 2), "float32"), np.zeros((1, 3, 8), "float32")
        yield np.ones((1, 20, 2), "float32"), np.zeros((1, 5, 8), "float32")

    model = lamina.Sequential([layers.Reshape((-1, 8)), layers.Dense(8)])
    model.compile("sgd", "mse")
    model.fit(batches(), steps_per_epoch=2, epochs=1, verbose=0)
    for length, rows in [(12, 3), (20, 5), (24, 6)]:
        assert model(np.ones((1, length, 2), "float32")).shape == (1, rows, 8)
    assert model.input_shape == (None, None, 2)  # the feature size never varied: still checked


@pytest.mark.parametrize("jit_compile", [True, False])
def test_a_layer_still_refuses_sizes_it_cannot_take(jit_compile):
    """Flatten feeds a Dense built for 35 features: a batch that flattens to 42 is the Dense's error,
    in predict and in fit (compiled step or not), never a NumPy traceback."""
    model = lamina.Sequential([layers.Flatten(), layers.Dense(2)])
    model.compile("sgd", "mse", jit_compile=jit_compile)
    model.predict(np.ones((3, 5, 7), "float32"), verbose=0)
    assert model.predict(np.ones((3, 7, 5), "float32"), verbose=0).shape == (3, 2)  # 35 features again
    with pytest.raises(ValueError, match=r"layer 'dense.*expected axis -1 of the input to have size 35.*\(None, 42\)"):
        model.predict(np.ones((3, 6, 7), "float32"), verbose=0)

    def batches():
        yield np.ones((3, 5, 7), "float32"), np.ones((3, 2), "float32")
        yield np.ones((3, 6, 7), "float32"), np.ones((3, 2), "float32")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # jit_compile=True may say the tape step runs instead
        with pytest.raises(ValueError, match=r"Batch 1 of epoch 1 given to fit is invalid.*layer 'dense.*size 35.*42"):
            model.fit(batches(), steps_per_epoch=2, epochs=1, verbose=0)


def test_a_model_with_an_input_keeps_its_shape():
    model = lamina.Sequential([layers.Input((5, 7)), layers.Flatten()])
    with pytest.raises(ValueError, match=r"expected shape=\(None, 5, 7\), found shape=\(3, 6, 7\)"):
        model.predict(np.ones((3, 6, 7), "float32"), verbose=0)
    assert model.input_shape == (None, 5, 7)
