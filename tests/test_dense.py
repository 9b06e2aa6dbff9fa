"""Dense: the layer harness, gradient checks of the fused node for every activation, N-D inputs."""

import numpy as np
import pytest

import lamina
from lamina import activations, layers
from tests.helpers import check_layer_gradients, run_layer_test

ACTS = sorted({getattr(fn, "__name__", str(fn)) for fn in activations.FUSED} | {"gelu", "mish", "silu"})


def test_dense_through_the_harness():
    run_layer_test(layers.Dense, {"units": 3, "activation": "relu"}, (4, 5), (4, 3),
                   expected_num_trainable_weights=2)
    run_layer_test(layers.Dense, {"units": 2, "use_bias": False}, (4, 3, 5), (4, 3, 2),
                   expected_num_trainable_weights=1)


@pytest.mark.parametrize("activation", ACTS)
def test_fused_dense_gradients(activation):
    layer = layers.Dense(3, activation=activation, dtype="float64")
    x = np.random.default_rng(0).normal(size=(4, 5))
    layer(x)
    check_layer_gradients(layer, x)


def test_dense_3d_input_gradients_and_no_bias():
    layer = layers.Dense(2, activation="tanh", use_bias=False, dtype="float64")
    x = np.random.default_rng(1).normal(size=(2, 3, 4))
    layer(x)
    check_layer_gradients(layer, x)


def test_fused_node_is_one_graph_node():
    layer = layers.Dense(3, activation="relu")
    x = np.ones((2, 4), "float32")
    layer(x)
    with lamina.GradientTape():
        out = layer(x)
    assert isinstance(out, lamina.Tensor)
    # matmul + bias + relu recorded as a single node whose parents are input, kernel and bias.
    assert len(out.parents) == 3 and out.parents[1] is layer.kernel


def test_call_logits_is_the_preactivation():
    layer = layers.Dense(3, activation="softmax")
    x = np.random.default_rng(2).normal(size=(5, 4)).astype("float32")
    y = layer(x)
    z = layer.call_logits(x)
    np.testing.assert_allclose(y, activations.softmax(z), rtol=1e-6)
    np.testing.assert_allclose(layer(x), activations.softmax(z), rtol=1e-6)


def test_activation_set_to_none_after_build_is_linear():
    """Keras lets ``layer.activation = None`` after construction: the layer is then linear, eagerly,
    under a tape and in a compiled fit alike (no 'NoneType is not callable')."""
    import lamina

    layer = lamina.layers.Dense(2, use_bias=False, activation="relu")
    layer.build((1, 2))
    layer.set_weights([np.array([[1.0, -2.0], [3.0, -4.0]], "float32")])
    layer.activation = None
    x = np.array([[-1.0, 2.0]], "float32")
    np.testing.assert_allclose(layer(x), [[5.0, -6.0]])
    with lamina.GradientTape() as tape:
        total = lamina.ops.sum(layer(x))
    np.testing.assert_allclose(tape.gradient(total, layer.trainable_weights[0]), [[-1, -1], [2, 2]])
    assert layer.get_config()["activation"] == "linear"
    model = lamina.Sequential([lamina.Input((2,)), layer])
    model.compile("sgd", "mse")
    model.fit(x, np.zeros((1, 2), "float32"), verbose=0)  # the compiled step reads the activation too
