"""Behaviours the keras.io developer guides rely on, each checked against Keras 3 (torch backend).

Found by running the guides' code cells on lamina (/tmp/guides/run_guides.py, outside the repository);
each test here is written fresh, in its own words, for one behaviour a guide exercised.
"""

import numpy as np
import pytest

import lamina


def _loss_counts(ns):
    """Layer.losses after construction and after each of two eager calls, for one library ``ns``."""

    class Penalty(ns.layers.Layer):
        def call(self, inputs):
            self.add_loss(0.5 * ns.ops.sum(inputs))
            return inputs

    class Outer(ns.layers.Layer):
        def __init__(self):
            super().__init__()
            self.inner = Penalty()

        def call(self, inputs):
            return self.inner(inputs)

    layer = Outer()
    counts = [len(layer.losses)]
    for value in (1.0, 3.0):
        layer(np.full((2, 2), value, dtype="float32"))
        counts.append([float(np.asarray(loss)) for loss in layer.losses])
    return counts


def test_eager_call_keeps_only_the_losses_of_that_call(keras):
    # A top-level call starts afresh: `layer.losses` holds what that call (and its sublayers) added.
    got = _loss_counts(lamina)
    assert got == _loss_counts(keras)
    assert got == [0, [2.0], [6.0]]


def test_nested_calls_inside_one_top_level_call_accumulate():
    class Penalty(lamina.layers.Layer):
        def call(self, inputs):
            self.add_loss(lamina.ops.sum(inputs))
            return inputs

    class Twice(lamina.layers.Layer):
        def __init__(self):
            super().__init__()
            self.shared = Penalty()

        def call(self, inputs):
            return self.shared(self.shared(inputs))

    layer = Twice()
    layer(np.ones((1, 2), dtype="float32"))
    assert [float(np.asarray(v)) for v in layer.losses] == [2.0, 2.0]
    layer(np.ones((1, 2), dtype="float32"))
    assert len(layer.losses) == 2


def test_functional_fit_still_counts_a_shared_layers_penalty_twice():
    # fit() runs a functional graph node by node; a shared layer's two calls must both count.
    class Penalty(lamina.layers.Layer):
        def call(self, inputs):
            self.add_loss(lamina.ops.mean(inputs))
            return inputs

    shared = Penalty()
    inputs = lamina.Input((3,))
    x = lamina.layers.Dense(3, kernel_initializer="ones", use_bias=False)(inputs)
    outputs = shared(shared(x))
    model = lamina.Model(inputs, outputs)
    model.compile(optimizer=lamina.optimizers.SGD(0.0), loss="mse")
    x_data = np.ones((4, 3), dtype="float32")
    loss = model.evaluate(x_data, np.full((4, 3), 3.0, dtype="float32"), verbose=0)
    # mse is 0 (prediction is 3 everywhere); each of the two calls adds mean = 3
    assert loss == pytest.approx(6.0)


_SAVING_NAMES_IN_UTILS = (
    "CustomObjectScope", "custom_object_scope", "deserialize_keras_object", "get_custom_objects",
    "get_registered_name", "get_registered_object", "register_keras_serializable", "serialize_keras_object",
)


@pytest.mark.parametrize("name", _SAVING_NAMES_IN_UTILS)
def test_utils_spells_the_registration_api_of_saving(keras, name):
    assert hasattr(keras.utils, name)
    assert getattr(lamina.utils, name) is getattr(lamina.saving, name)


def test_registering_through_utils_names_the_class_as_keras_does(keras):
    names = []
    for ns in (lamina, keras):
        @ns.utils.register_keras_serializable(package="guide_pkg")
        class Scaled(ns.layers.Layer):
            def call(self, inputs):
                return 2.0 * inputs

        names.append(ns.utils.get_registered_name(Scaled))
        assert ns.utils.get_registered_object(names[-1]) is Scaled
        ns.utils.get_custom_objects().pop(names[-1])
    assert names[0] == names[1] == "guide_pkg>Scaled"
