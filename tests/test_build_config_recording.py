"""``get_build_config`` records the input shape of a ``build`` called directly, as Keras's does."""

import numpy as np

import lamina


class Linear(lamina.layers.Layer):
    def __init__(self, units=2, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="ones")

    def call(self, x):
        return lamina.ops.matmul(x, self.w)


class Wider(Linear):
    """A subclass whose build calls its parent's: the shape is recorded once."""

    def build(self, input_shape):
        super().build(input_shape)
        self.b = self.add_weight(shape=(self.units,), initializer="zeros")


def test_direct_build_records_the_shape_like_keras(keras):
    layer = Linear()
    layer.build((None, 3))
    theirs = keras.layers.Dense(2)
    theirs.build((None, 3))
    assert layer.get_build_config() == theirs.get_build_config() == {"input_shape": (None, 3)}


def test_direct_build_of_a_subclass_and_a_rebuild_from_its_config():
    layer = Wider()
    layer.build(input_shape=(None, 4))
    assert layer.get_build_config() == {"input_shape": (None, 4)}
    rebuilt = Wider.from_config(layer.get_config())
    rebuilt.build_from_config(layer.get_build_config())
    assert [w.shape for w in rebuilt.weights] == [(4, 2), (2,)]
    np.testing.assert_array_equal(rebuilt(np.ones((1, 4), "float32")), np.full((1, 2), 4.0))


def test_first_call_still_records_its_own_shape():
    layer = Linear()
    layer(np.ones((5, 3), "float32"))
    assert layer.get_build_config() == {"input_shape": (5, 3)}
