"""The tape: recording only under a tape, broadcasting, topological order, watch, persistence."""

import numpy as np
import pytest

import lamina
from lamina import ops
from lamina.autodiff import Tensor


def test_no_graph_outside_a_tape():
    w = lamina.Variable(np.ones((3, 2), "float32"))
    out = ops.matmul(np.ones((4, 3), "float32"), w)
    assert type(out) is np.ndarray
    model = lamina.Sequential([lamina.layers.Dense(4, activation="relu", input_shape=(3,))])
    assert type(model(np.ones((2, 3), "float32"))) is np.ndarray
    assert type(model.predict(np.ones((2, 3), "float32"), verbose=0)) is np.ndarray


def test_records_only_while_recording():
    w = lamina.Variable(np.ones(3, "float32"))
    with lamina.GradientTape() as tape:
        y = ops.sum(w * 2.0)
        with tape.stop_recording():
            z = w * 3.0
    assert isinstance(y, Tensor)
    assert type(z) is np.ndarray
    np.testing.assert_array_equal(tape.gradient(y, w), [2, 2, 2])


def test_broadcast_gradients_reduce_to_input_shape():
    a = lamina.Variable(np.ones((4, 3), "float32"))
    b = lamina.Variable(np.ones((3,), "float32"))
    c = lamina.Variable(np.ones((4, 1), "float32"))
    with lamina.GradientTape() as tape:
        y = ops.sum((a + b) * c)
    ga, gb, gc = tape.gradient(y, [a, b, c])
    assert ga.shape == (4, 3) and gb.shape == (3,) and gc.shape == (4, 1)
    np.testing.assert_array_equal(gb, [4, 4, 4])
    np.testing.assert_array_equal(gc, [[6], [6], [6], [6]])


def test_deep_chain_does_not_hit_recursion_limit():
    x = lamina.Variable(np.array([1.0], "float32"))
    with lamina.GradientTape() as tape:
        y = x
        for _ in range(5000):
            y = y * 1.0001
    g = tape.gradient(y, x)
    np.testing.assert_allclose(g, [1.0001 ** 5000], rtol=1e-3)


def test_1000_layer_model_backprop():
    model = lamina.Sequential([lamina.layers.Dense(2, input_shape=(2,))] +
                              [lamina.layers.Dense(2, kernel_initializer="identity") for _ in range(999)])
    with lamina.GradientTape() as tape:
        loss = ops.sum(model(np.ones((1, 2), "float32")))
    grads = tape.gradient(loss, model.trainable_weights)
    assert len(grads) == 2000 and all(g is not None for g in grads)


def test_watch_constant_and_persistent():
    x = np.array([1.0, 2.0, 3.0], "float32")
    with lamina.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = ops.sum(ops.square(x))
        z = ops.sum(ops.multiply(x, 3.0))  # NumPy's own `*` on a plain array is not recorded
    np.testing.assert_allclose(tape.gradient(y, x), 2 * x)
    np.testing.assert_allclose(tape.gradient(z, x), [3, 3, 3])


def test_non_persistent_tape_refuses_second_gradient():
    w = lamina.Variable(1.0)
    with lamina.GradientTape() as tape:
        y = w * w
    tape.gradient(y, w)
    with pytest.raises(RuntimeError, match="persistent"):
        tape.gradient(y, w)


def test_unconnected_and_non_trainable():
    w = lamina.Variable(np.ones(2, "float32"))
    frozen = lamina.Variable(np.ones(2, "float32"), trainable=False)
    with lamina.GradientTape() as tape:
        y = ops.sum(frozen * 2.0)
    assert tape.gradient(y, [w, frozen]) == [None, None]
    with lamina.GradientTape() as tape:
        y = ops.sum(frozen * 2.0)
    g = tape.gradient(y, w, unconnected_gradients="zero")
    np.testing.assert_array_equal(g, [0, 0])


def test_gradients_stay_float32():
    w = lamina.Variable(np.ones((2, 2), "float32"))
    with lamina.GradientTape() as tape:
        y = ops.mean(ops.sigmoid(w @ np.ones((2, 2), "float32")))
    assert tape.gradient(y, w).dtype == np.float32


def test_relu_gradient_at_zero_is_zero():
    x = lamina.Variable(np.array([-1.0, 0.0, 1.0], "float32"))
    with lamina.GradientTape() as tape:
        y = ops.sum(ops.relu(x))
    np.testing.assert_array_equal(tape.gradient(y, x), [0, 0, 1])


def test_variable_assign_is_in_place_and_checks_shape():
    buf = np.zeros(6, "float32")
    v = lamina.Variable(np.ones((2, 3), "float32"))
    v._rebind(buf.reshape(2, 3))
    v.assign(np.full((2, 3), 5.0))
    assert buf.sum() == 30
    with pytest.raises(ValueError, match=r"expected shape \(2, 3\)"):
        v.assign(np.ones(4))
