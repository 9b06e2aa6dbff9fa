"""Symbolic calls leave no state behind, and ``backend.compute_output_spec`` / ``standardize_shape``
(Keras's names) describe outputs and shapes without running anything for keeps."""

import numpy as np
import pytest

import lamina
from lamina import backend, layers
from lamina.layers.keras_tensor import KerasTensor, compute_output_spec


class CountingLayer(layers.Layer):
    """Counts its calls in a non-trainable weight (Keras's BackupAndRestore tests use one)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.counter = self.add_weight(shape=(), initializer="zeros", trainable=False, name="counter")

    def call(self, x):
        self.counter.assign_add(1.0)
        return x


def test_building_a_model_symbolically_does_not_run_its_layers_for_keeps():
    seq = lamina.Sequential([layers.Input((3,)), CountingLayer(), layers.Dense(1)])
    assert float(seq.layers[0].counter.numpy()) == 0
    counting = CountingLayer()
    inputs = layers.Input((3,))
    lamina.Model(inputs, layers.Dense(1)(counting(inputs)))
    assert float(counting.counter.numpy()) == 0


def test_fit_calls_the_layers_once_per_training_batch():
    """fit's first look at the metrics (a small forward before training) leaves no trace either."""
    model = lamina.Sequential([layers.Input((3,)), CountingLayer(), layers.Dense(1)])
    model.compile("sgd", "mse", metrics=["mae"])
    x, y = np.ones((10, 3), "float32"), np.ones((10, 1), "float32")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert float(model.layers[0].counter.numpy()) == 6  # 2 epochs of 3 batches


def test_compute_output_spec_marks_sizes_that_follow_an_unknown_one():
    reshape = layers.Reshape((-1, 8))
    assert compute_output_spec(reshape.__call__, KerasTensor((None, 6, 4))).shape == (None, 3, 8)
    assert compute_output_spec(layers.Reshape((-1, 3)).__call__, KerasTensor((4, 6, None, 3))).shape == (4, None, 3)
    both = compute_output_spec(lambda a, b: (a + b, lamina.ops.sum(a)), KerasTensor((2, None)), b=KerasTensor((1, 1)))
    assert [(t.shape, t.dtype) for t in both] == [((2, None), "float32"), ((), "float32")]
    index = compute_output_spec(lamina.ops.argmax, KerasTensor((None, 3), "float32"), axis=-1)
    assert (index.shape, index.dtype) == ((None,), np.asarray(lamina.ops.argmax(np.ones((2, 3)), axis=-1)).dtype.name)


def test_compute_output_spec_leaves_state_as_it_was():
    mean = lamina.metrics.Mean()
    mean.update_state([2.0, 4.0])
    spec = compute_output_spec(mean, KerasTensor((None, 2)), KerasTensor((None, 2)))
    assert spec.shape == () and float(mean.result()) == 3.0
    counting = CountingLayer()
    assert compute_output_spec(counting, KerasTensor((None, 2))).shape == (None, 2)
    assert float(counting.counter.numpy()) == 0


def test_standardize_shape():
    assert backend.standardize_shape([np.int64(3), None, 2]) == (3, None, 2)
    assert backend.standardize_shape(np.array([4, 5])) == (4, 5)
    for bad, match in [(None, r"Received: shape=None"), ("ab", r"Received: shape='ab'"),
                       ((3, 2.0), r"found 2.0 \(float\).*Received: shape=\(3, 2.0\)"),
                       ((3, -1), r"must not be negative. Received: shape=\(3, -1\)"),
                       ((3, "x"), r"found 'x'")]:
        with pytest.raises(ValueError, match=match):
            backend.standardize_shape(bad)
