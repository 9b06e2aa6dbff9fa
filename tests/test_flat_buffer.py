"""FlatBuffer: one contiguous array for a model's float32 weights, one for their gradients, shared by the
trainer, the optimizer, the compiled step and a data-parallel strategy."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import lamina
from lamina.optimizers.flat_buffer import FlatBuffer
from lamina.optimizers.optimizer import Optimizer


def _variables():
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (4,), (2, 2, 2), ()]
    return [lamina.Variable(rng.normal(size=s).astype("float32"), name=f"v{i}") for i, s in enumerate(shapes)]


def test_views_offsets_and_rebinding():
    variables = _variables()
    before = [v.numpy().copy() for v in variables]
    buf = FlatBuffer(variables)
    assert buf.sizes == [12, 4, 8, 1] and buf.offsets == [0, 12, 16, 24] and buf.total == 25
    assert buf.weights.shape == (25,) and buf.grads.shape == (25,) and buf.message.shape == (26,)
    for v, w, g, old in zip(variables, buf.weight_views, buf.grad_views, before):
        assert v._value is w and w.base is buf.weights and g.base is buf.message
        assert w.shape == v.shape == g.shape
        np.testing.assert_array_equal(v.numpy(), old)  # the values moved in unchanged
    np.testing.assert_array_equal(buf.weights, np.concatenate([b.ravel() for b in before]))
    assert buf.is_bound() and buf.covers(variables) and not buf.covers(variables[::-1])
    # Writing either way round is seen the other way: they are the same memory.
    buf.weights[12:16] = 7.0
    np.testing.assert_array_equal(variables[1].numpy(), np.full(4, 7.0, "float32"))
    variables[0].assign(np.ones((3, 4), "float32"))
    assert buf.is_bound() and (buf.weights[:12] == 1).all()
    buf.grad_views[2][...] = 3.0
    assert (buf.grads[16:24] == 3).all() and buf.message[-1] == 0
    assert buf.holds_grads(buf.grad_views)
    assert not buf.holds_grads([g.copy() for g in buf.grad_views])
    assert not buf.holds_grads(buf.grad_views[:-1])


def test_float64_variables_stay_out():
    f32 = lamina.Variable(np.zeros(3, "float32"))
    f64 = lamina.Variable(np.zeros(3), dtype="float64")
    kept = FlatBuffer.eligible([f64, f32, f64])
    assert len(kept) == 1 and kept[0] is f32
    with pytest.raises(ValueError, match="float32.*Received"):
        FlatBuffer([f32, f64])
    model = lamina.Sequential([lamina.Input((4,)), lamina.layers.Dense(3, activation="relu", dtype="float64"),
                               lamina.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(np.ones((8, 4), "float32"), np.zeros(8, "int64"), epochs=1, verbose=0)
    assert model._fast_step is None  # a float64 layer: the tape step, over a buffer of the float32 weights
    buf = model._flat_buffer
    assert buf.covers(model.layers[1].trainable_weights) and buf.is_bound()
    assert all(v.dtype == np.float64 and v._value.base is not buf.weights for v in model.layers[0].trainable_weights)


def test_replaced_variable_unbinds_and_the_next_fit_rebuilds():
    variables = _variables()
    buf = FlatBuffer(variables)
    variables[2]._rebind(np.empty((2, 2, 2), "float32"))  # other code gives it a new array
    assert not buf.is_bound()

    model, x, y = _dense_chain()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    old = model._flat_buffer
    kernel = model.layers[0].kernel
    kernel._rebind(np.empty(kernel.shape, "float32"))
    assert not old.is_bound()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    new = model._flat_buffer
    assert new is not old and new.is_bound() and kernel._value.base is new.weights
    assert model.optimizer._flat_buffer is new and model._fast_step.buffer is new


def _dense_chain(seed=3):
    lamina.utils.set_random_seed(seed)
    model = lamina.Sequential([lamina.Input((6,)), lamina.layers.Dense(8, activation="relu"),
                               lamina.layers.Dense(4, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    return model, rng.normal(size=(64, 6)).astype("float32"), rng.integers(0, 4, size=64)


def test_trainer_optimizer_and_fast_step_share_one_buffer():
    model, x, y = _dense_chain()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    buf = model._flat_buffer
    assert model._fast_step is not None and model._fast_step.buffer is buf
    assert model.optimizer._flat_buffer is buf and model.optimizer._param_span() is buf.weights
    assert model._fast_step.grad_views is buf.grad_views
    assert model.optimizer._grad_span_cache is None  # the step's gradients recognised by identity, never probed
    assert all(v._value.base is buf.weights for v in model.trainable_weights)
    assert buf.covers(model.trainable_weights) and buf.is_bound()


def test_flat_buffer_update_equals_the_per_variable_update(monkeypatch):
    model, x, y = _dense_chain()
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
    fused = [w.copy() for w in model.get_weights()]
    # The same fit with the optimizer refused any flat view: one update per variable.
    monkeypatch.setattr(Optimizer, "_param_span", lambda self: None)
    model, x, y = _dense_chain()
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
    assert model._fast_step is not None
    for a, b in zip(fused, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None, reason="needs mpi4py (the `mpi` extra)")
def test_strategy_reduces_in_the_models_buffer():
    from lamina.distribute import MPIStrategy

    s = MPIStrategy(timeout=30)
    model, x, y = _dense_chain()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, strategy=s)
    buf = model._flat_buffer
    grads = [np.full(v.shape, 2.0, "float32") for v in model.trainable_weights]
    out = s.reduce_gradients(grads, model.trainable_weights, 3)
    assert out is buf.grad_views and (buf.grads == 2).all() and buf.message[-1] == 3
    buf.grads[:] = 1.5
    s.reduce_buffer_gradients(buf, 4)  # one rank: the average is this rank's gradient, the count 4
    assert (buf.grads == 1.5).all() and buf.message[-1] == 4


def test_gradients_only_buffer_binds_nothing_and_keeps_float64():
    f32 = lamina.Variable(np.ones((2, 3), "float32"))
    f64 = lamina.Variable(np.ones(4), dtype="float64")
    values = [f32._value, f64._value]
    buf = FlatBuffer([f32, f64], bind=False)
    assert buf.dtype == np.float64 and buf.weights is None and buf.weight_views == []
    assert f32._value is values[0] and f64._value is values[1]  # nothing rebound
    assert not buf.is_bound() and buf.covers([f32, f64])
    assert [g.shape for g in buf.grad_views] == [(2, 3), (4,)] and buf.message.shape == (11,)
    assert all(g.base is buf.message and g.dtype == np.float64 for g in buf.grad_views)
    assert "gradients only" in repr(buf)


@pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None, reason="needs mpi4py (the `mpi` extra)")
def test_strategy_reduces_a_custom_loops_variables_in_a_gradients_only_buffer():
    from lamina.distribute import MPIStrategy

    s = MPIStrategy(timeout=30)
    a = lamina.Variable(np.zeros(3, "float32"))
    b = lamina.Variable(np.zeros((2, 2)), dtype="float64")
    out = s.reduce_gradients([np.full(3, 2.0, "float32"), None], [a, b], 5)
    np.testing.assert_array_equal(out[0], np.full(3, 2.0))
    np.testing.assert_array_equal(out[1], np.zeros((2, 2)))  # None counts as zeros
    assert out[1].dtype == np.float64 and s._grad_buffer.weights is None
    again = s.reduce_gradients([np.ones(3, "float32"), np.ones((2, 2))], [a, b], 2)
    assert again[0] is out[0]  # the same buffer while the variables stay the same
