"""A 3x3 convolution on few channels fused with the 2x2 max pooling after it (``conv_accel.conv_max_pool``, numba):
the same outputs, winners and kernel/bias gradients as the unfused NumPy path (a convolution's full map, then
the pooling), in the kernel and in the compiled training step and Sequential's inference plan that run it.

On integer data every sum is exact in float32, so the comparisons are exact, ties included (few distinct values:
most windows tie, many are all-negative under the relu); on normal data they hold to float32 rounding (the fused
sums run in another order). The reference is always ``LAMINA_ACCELERATE=0``'s path."""

import importlib.util

import numpy as np
import pytest

import lamina
from lamina import conv_accel, layers
from lamina.conv_kernels import conv_backward, conv_forward, pad_input
from lamina.layers.pooling import pool_backward_bias, pool_forward
from lamina.models import compiled_step

needs_numba = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba (the fast extra) absent")

PADS = {"valid": ((0, 0), (0, 0)), "same": ((1, 1), (1, 1))}


def _unfused(monkeypatch, x, k, b, pads, relu, g):
    """NumPy's ``(y, dk, db)``: the convolution's map, then the max pooling with the bias and relu."""
    monkeypatch.setenv("LAMINA_ACCELERATE", "0")
    z = conv_forward(x, k, (1, 1), pads, (1, 1))
    y, ctx = pool_forward(z, (2, 2), (2, 2), "valid", "max", b, relu)
    dz, db = pool_backward_bias(g, ctx)
    _, dk = conv_backward(dz, x, k, (1, 1), pads, (1, 1), need_dx=False)
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    return y, dk, db


def _winners(monkeypatch, x, k, b, pads, relu):
    """The compiled pooling's winners on the convolution's map (its equality to NumPy's is test_conv_accel's)."""
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    z = conv_forward(x, k, (1, 1), pads, (1, 1))
    return conv_accel.max_pool(z, (2, 2), (2, 2), b, relu)[1]


def _case(shape, filters, dtype, ints, bias, seed=0):
    rng = np.random.default_rng(seed)
    if ints:  # few distinct values: tied windows, all-negative ones
        x = rng.integers(-2, 3, shape).astype(dtype)
        k = rng.integers(-1, 2, (3, 3, shape[-1], filters)).astype(dtype)
        b = (np.arange(filters) % 3 - 1).astype(dtype) if bias else None
    else:
        x = rng.normal(size=shape).astype(dtype)
        k = rng.normal(size=(3, 3, shape[-1], filters)).astype(dtype)
        b = rng.normal(size=filters).astype(dtype) if bias else None
    return x, k, b


@needs_numba
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("relu,bias", [(True, True), (True, False), (False, True), (False, False)])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(3, 8, 8), (2, 9, 7), (2, 7, 11)])  # even, odd rows, odd columns
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_fused_kernel_equals_the_unfused_path_exactly_on_integer_data(monkeypatch, padding, shape, channels, relu,
                                                                       bias, dtype):
    """Integer images and kernels, tied windows: ``y``, the winners, ``dk`` and ``db`` are NumPy's exactly; a
    window the relu zeroed is marked 4 (no gradient)."""
    x, k, b = _case((*shape, channels), 5, dtype, ints=True, bias=bias)
    pads = PADS[padding]
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    y, arg = conv_accel.conv_max_pool(pad_input(x, pads), k, b, relu)
    g = np.random.default_rng(1).integers(-3, 4, y.shape).astype(dtype)
    dk, db = conv_accel.conv_max_pool_backward(g, arg, pad_input(x, pads))
    want_y, want_dk, want_db = _unfused(monkeypatch, x, k, b, pads, relu, g)
    want_arg = _winners(monkeypatch, x, k, b, pads, relu)
    assert y.dtype == x.dtype and y.shape == want_y.shape
    np.testing.assert_array_equal(y, want_y)
    dead = (y == 0) if relu else np.zeros(y.shape, bool)
    assert (not relu) or dead.any()  # the data does exercise the relu's zero windows
    np.testing.assert_array_equal(arg[~dead], want_arg[~dead])
    np.testing.assert_array_equal(arg[dead], 4)
    np.testing.assert_array_equal(dk, want_dk)
    np.testing.assert_array_equal(db, want_db)


@needs_numba
@pytest.mark.parametrize("dtype,rtol", [("float32", 2e-5), ("float64", 1e-12)])
@pytest.mark.parametrize("channels", [1, 3, 8])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_fused_kernel_equals_the_unfused_path_to_rounding(monkeypatch, padding, channels, dtype, rtol):
    """Normal data: values and gradients to the dtype's rounding, the same winners (no near-ties in this data)."""
    x, k, b = _case((4, 13, 12, channels), 7, dtype, ints=False, bias=True, seed=2)
    pads = PADS[padding]
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    y, arg = conv_accel.conv_max_pool(pad_input(x, pads), k, b, True)
    g = np.random.default_rng(3).normal(size=y.shape).astype(dtype)
    dk, db = conv_accel.conv_max_pool_backward(g, arg, pad_input(x, pads))
    want_y, want_dk, want_db = _unfused(monkeypatch, x, k, b, pads, True, g)
    want_arg = _winners(monkeypatch, x, k, b, pads, True)
    live = y > 0
    np.testing.assert_array_equal(arg[live], want_arg[live])
    np.testing.assert_allclose(y, want_y, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(dk, want_dk, rtol=rtol, atol=rtol * np.abs(want_dk).max())
    np.testing.assert_allclose(db, want_db, rtol=rtol, atol=rtol)


@needs_numba
def test_fused_kernel_declines_what_it_does_not_compute(monkeypatch):
    """None (the caller's unfused path runs) for a NaN anywhere in a window, another kernel size or dtype, a
    kernel whose channels differ, no full window; and nothing when switched off."""
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    x, k, b = _case((2, 8, 8, 1), 4, "float32", ints=False, bias=True)
    assert conv_accel.conv_max_pool(x, k, b) is not None
    nan = x.copy()
    nan[1, 5, 6, 0] = np.nan
    assert conv_accel.conv_max_pool(nan, k, b, relu=True) is None  # the relu would have hidden it
    assert conv_accel.conv_max_pool(x, k[:2, :2], b) is None
    assert conv_accel.conv_max_pool(x, k.astype("float64"), b) is None
    assert conv_accel.conv_max_pool(x.astype("int32"), k.astype("int32"), b) is None
    assert conv_accel.conv_max_pool(np.concatenate([x, x], axis=-1), k, b) is None
    assert conv_accel.conv_max_pool(x[:, :3, :3], k, b) is None
    y, arg = conv_accel.conv_max_pool(x, k, b, keep_arg=False)
    assert arg is None and y.shape == (2, 3, 3, 4)
    monkeypatch.setenv("LAMINA_ACCELERATE", "0")
    assert conv_accel.conv_max_pool(x, k, b) is None
    assert not conv_accel.conv_pool_fits((3, 3, 1, 4), (1, 1), (1, 1), 1, (2, 2), (2, 2), "valid")


@needs_numba
def test_which_convolutions_fit(monkeypatch):
    """3x3, stride 1, no dilation, one group, at most CONV_POOL_MAX_CHANNELS channels, then a valid 2x2/2 pooling."""
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    fits = conv_accel.conv_pool_fits
    top = conv_accel.CONV_POOL_MAX_CHANNELS
    assert fits((3, 3, 1, 32), (1, 1), (1, 1), 1, (2, 2), (2, 2), "valid")
    assert fits((3, 3, top, 32), (1, 1), (1, 1), 1, (2, 2), (2, 2), "valid")
    assert not fits((3, 3, top + 1, 32), (1, 1), (1, 1), 1, (2, 2), (2, 2), "valid")
    assert not fits((5, 5, 1, 32), (1, 1), (1, 1), 1, (2, 2), (2, 2), "valid")
    assert not fits((3, 3, 1, 32), (2, 2), (1, 1), 1, (2, 2), (2, 2), "valid")
    assert not fits((3, 3, 1, 32), (1, 1), (2, 2), 1, (2, 2), (2, 2), "valid")
    assert not fits((3, 3, 2, 32), (1, 1), (1, 1), 2, (2, 2), (2, 2), "valid")
    assert not fits((3, 3, 1, 32), (1, 1), (1, 1), 1, (3, 3), (2, 2), "valid")
    assert not fits((3, 3, 1, 32), (1, 1), (1, 1), 1, (2, 2), (1, 1), "valid")
    assert not fits((3, 3, 1, 32), (1, 1), (1, 1), 1, (2, 2), (2, 2), "same")
    assert not fits((3, 1, 32), (1,), (1,), 1, (2,), (2,), "valid")  # 1D


# ----------------------------------------------------------------------------- the compiled step and predict


def _mnist_like(padding="valid", first=12, second=16, act="relu", bias=True, seed=0):
    """The simple MNIST convnet (smaller): the first convolution runs whole in its pooling; the second too when
    ``first`` gives it few enough channels (its input gradient is then needed: the unfused backward from the
    winners)."""
    lamina.utils.set_random_seed(seed)
    return lamina.Sequential([
        layers.Input((16, 15, 1)), layers.Conv2D(first, 3, activation=act, padding=padding, use_bias=bias),
        layers.MaxPooling2D(2), layers.Conv2D(second, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Flatten(), layers.Dropout(0.5), layers.Dense(10, activation="softmax")])


def _fallback_model(seed=0):
    """Convolutions the fused kernel does not take: stride 2; a 3x3 pooling; a 5x5 kernel; a 2x2/1 pooling."""
    lamina.utils.set_random_seed(seed)
    return lamina.Sequential([
        layers.Input((20, 20, 2)), layers.Conv2D(4, 3, strides=2, activation="relu"), layers.MaxPooling2D(3),
        layers.Conv2D(4, 5, padding="same", activation="relu"), layers.MaxPooling2D(2, strides=1),
        layers.Flatten(), layers.Dense(10, activation="softmax")])


def _fit(build, accelerate, monkeypatch, ints=False, workers=1, **kwargs):
    """Train two epochs of 3 batches (the step's segments on ``workers`` threads); the losses and predict."""
    monkeypatch.setenv("LAMINA_ACCELERATE", accelerate)
    monkeypatch.setattr(compiled_step, "_segment_workers", lambda rows: workers)
    model = build(**kwargs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(4)
    shape = (96, *model.input_shape[1:])
    x = (rng.integers(0, 3, shape) if ints else rng.random(shape)).astype("float32")
    y = rng.integers(0, 10, 96)
    lamina.utils.set_random_seed(7)
    history = model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    assert model._fast_step is not None
    return model, history.history["loss"], model.predict(x, verbose=0)


def _pools(model):
    return [n for n in model._fast_step.flat_nodes() if isinstance(n, compiled_step._PoolNode)]


def _assert_same_training(fast, plain):
    (m1, loss1, p1), (m0, loss0, p0) = fast, plain
    np.testing.assert_allclose(loss1, loss0, rtol=1e-5)
    for a, b in zip(m1.get_weights(), m0.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p1, p0, rtol=1e-5, atol=1e-6)


@needs_numba
@pytest.mark.parametrize("kwargs", [
    {},  # the simple convnet's shape: only the first convolution fuses
    {"padding": "same", "first": 4, "second": 6},  # both fuse; the second's input gradient from the winners
    {"act": "linear", "bias": False},  # a linear convolution without bias
])
@pytest.mark.parametrize("ints", [False, True])
def test_training_and_predict_equal_the_numpy_path(monkeypatch, kwargs, ints):
    """Losses, trained weights and predict equal LAMINA_ACCELERATE=0's (rtol 1e-5), the fused kernels really ran
    (in the plan, in training and in predict)."""
    plain = _fit(_mnist_like, "0", monkeypatch, ints, **kwargs)
    assert all(p.whole is None for p in _pools(plain[0]))
    calls = {"fwd": 0, "bwd": 0}
    real_fwd, real_bwd = conv_accel.conv_max_pool, conv_accel.conv_max_pool_backward

    def fwd(*args, **kw):
        calls["fwd"] += 1
        return real_fwd(*args, **kw)

    def bwd(*args, **kw):
        calls["bwd"] += 1
        return real_bwd(*args, **kw)

    monkeypatch.setattr(conv_accel, "conv_max_pool", fwd)
    monkeypatch.setattr(conv_accel, "conv_max_pool_backward", bwd)
    fast = _fit(_mnist_like, "1", monkeypatch, ints, **kwargs)
    wholes = [p.whole is not None for p in _pools(fast[0])]
    assert wholes == [True, kwargs.get("first") == 4]
    assert calls["bwd"] == 6  # 3 steps a epoch, 2 epochs: the first convolution's (no input gradient)
    relu = kwargs.get("act", "relu") == "relu"
    assert calls["fwd"] >= 6 * sum(wholes) + relu  # and predict's (Sequential's plan fuses a relu convolution)
    _assert_same_training(fast, plain)


@needs_numba
def test_the_step_falls_back_inside_the_pooling_node(monkeypatch):
    """When the fused kernel declines at run time (a NaN in a window), the pooling node runs the convolution's map
    and the pooling with its bias and relu instead, and trains as the NumPy path does."""
    plain = _fit(_mnist_like, "0", monkeypatch, padding="same", first=4, second=6)
    monkeypatch.setattr(conv_accel, "conv_max_pool", lambda *args, **kwargs: None)
    fast = _fit(_mnist_like, "1", monkeypatch, padding="same", first=4, second=6)
    assert all(p.whole is not None and p.context is not None for p in _pools(fast[0]))
    _assert_same_training(fast, plain)


@needs_numba
def test_convolutions_it_does_not_take_run_as_before(monkeypatch):
    """Stride 2 then a 3x3 pooling, a 5x5 kernel then a 2x2/1 pooling: not fused, and still the NumPy path's."""
    plain = _fit(_fallback_model, "0", monkeypatch)
    fast = _fit(_fallback_model, "1", monkeypatch)
    assert [p.whole for p in _pools(fast[0])] == [None, None]
    _assert_same_training(fast, plain)


@needs_numba
def test_split_blocks_of_rows_equal_the_whole_batch(monkeypatch):
    """The fused nodes' copies, one per block of rows on threads (the step's segments), train as the unsplit
    step: the state of each call is on the node."""
    whole = _fit(_mnist_like, "1", monkeypatch, padding="same", first=4, second=6)
    split = _fit(_mnist_like, "1", monkeypatch, workers=2, padding="same", first=4, second=6)
    assert any(len(getattr(n, "copies", ())) > 1 for n in split[0]._fast_step.nodes)
    _assert_same_training(split, whole)
