"""The compiled convnet kernels (lamina.conv_accel, numba: max pooling with the winner kept, Winograd's 3x3
convolutions) give the NumPy path's outputs and gradients, and the NumPy path still runs, and is right, when
numba is switched off or missing.

The NumPy path is the reference: ``LAMINA_ACCELERATE=0`` selects it. Forward values are compared exactly
(the same maxima of the same sums); input gradients exactly where windows do not overlap (each cell gets one
value) and to rounding where they do (the order of the additions differs); bias gradients to rounding (the
compiled path sums in float64).
"""

import importlib.util
import os
import signal
import sys

import numpy as np
import pytest

import lamina
from lamina import conv_accel, conv_kernels, layers, row_split
from lamina.layers.pooling import pool_backward, pool_backward_bias, pool_forward
from lamina.models import compiled_step

# the comparisons need numba; the NumPy path's own test (no numba) runs without it
needs_numba = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba (the fast extra) absent")

CASES = [  # (input shape, pool_size, strides)
    ((3, 8, 8, 4), (2, 2), (2, 2)),  # the convnet's case: windows tile the input
    ((2, 9, 7, 3), (2, 2), (2, 2)),  # a row and a column left out
    ((2, 9, 9, 5), (3, 3), (2, 2)),  # overlapping windows: scatter-add
    ((2, 10, 11, 2), (2, 3), (3, 2)),  # gaps along one axis, overlap along the other
    ((3, 12, 4), (3,), (2,)),  # 1D, overlapping
    ((3, 12, 4), (2,), (2,)),  # 1D, tiled
]


def _both(monkeypatch, fn):
    """``fn()`` on the NumPy path, then on the compiled path."""
    out = []
    for accelerate in ("0", "1"):
        monkeypatch.setenv("LAMINA_ACCELERATE", accelerate)
        out.append(fn())
    return out


def _data(shape, dtype, ties: bool, seed=0):
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values: most windows have a tie for their maximum, many a zero or negative one
        return rng.integers(-2, 3, shape).astype(dtype)
    return rng.normal(size=shape).astype(dtype)


@needs_numba
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("bias,relu", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("shape,pool,strides", CASES)
def test_compiled_max_pool_equals_numpy_path(monkeypatch, shape, pool, strides, bias, relu, ties, dtype):
    z = _data(shape, dtype, ties)
    b = (np.arange(shape[-1]) % 3 - 1).astype(dtype) if bias else None  # -1, 0, 1: ties survive the bias

    def run():
        y, ctx = pool_forward(z, pool, strides, "valid", "max", b, relu)
        g = np.random.default_rng(2).normal(size=y.shape).astype(dtype)
        dz, db = pool_backward_bias(g, ctx)
        return y, dz, db, ctx.arg is not None

    (y0, dz0, db0, fast0), (y1, dz1, db1, fast1) = _both(monkeypatch, run)
    assert not fast0 and fast1
    assert y1.dtype == dz1.dtype == np.dtype(dtype) and dz1.shape == z.shape
    np.testing.assert_array_equal(y1, y0)
    if all(s >= k for s, k in zip(strides, pool)):
        np.testing.assert_array_equal(dz1, dz0)
    else:
        np.testing.assert_allclose(dz1, dz0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(db1, db0, rtol=1e-5, atol=1e-5)


@needs_numba
def test_plain_pool_backward_is_the_bias_free_gradient(monkeypatch):
    """``pool_backward`` (the layers' tape path) gives ``pool_backward_bias``'s input gradient on both paths."""
    z = _data((2, 6, 6, 3), "float32", True)

    def run():
        y, ctx = pool_forward(z, (2, 2), (2, 2), "valid", "max", None, True)
        g = np.ones_like(y)
        return pool_backward(g, ctx), pool_backward_bias(g, ctx)[0]

    for plain, with_bias in _both(monkeypatch, run):
        np.testing.assert_array_equal(plain, with_bias)


@needs_numba
def test_a_nan_window_takes_the_numpy_path(monkeypatch):
    """The compiled kernel does not copy torch's NaN rule: a NaN anywhere sends the batch to the NumPy path
    (the same values and gradient as with numba switched off)."""
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    z = _data((2, 6, 6, 3), "float32", False)
    z[1, 3, 2, 1] = np.nan
    assert conv_accel.max_pool(z, (2, 2), (2, 2)) is None
    (y0, g0), (y1, g1) = _both(monkeypatch, lambda: _pool_and_grad(z))
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(g1, g0)
    assert np.isnan(y1[1, 1, 1, 1])


def _pool_and_grad(z):
    y, ctx = pool_forward(z, (2, 2), (2, 2), "valid", "max")
    return y, pool_backward(np.ones_like(y), ctx)


def test_kernels_switched_off_or_missing_numba(monkeypatch):
    """``LAMINA_ACCELERATE=0`` or no numba: no kernels, and pooling runs (and is right) on NumPy alone."""
    monkeypatch.setenv("LAMINA_ACCELERATE", "0")
    assert conv_accel.kernels() is None and conv_accel.max_pool(np.zeros((1, 2, 2, 1), "float32"), (2, 2), (2, 2)) \
        is None
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    monkeypatch.setattr(conv_accel._COMPILED, "kernels", None)
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` raises ImportError
    assert conv_accel.kernels() is None
    z = np.array([[1, 5, 2, 2], [3, 0, 2, 1], [-1, -2, 7, 7], [-3, -1, 7, 0]], "float32").reshape(1, 4, 4, 1)
    y, ctx = pool_forward(z, (2, 2), (2, 2), "valid", "max", np.float32([1]), True)
    assert ctx.arg is None
    np.testing.assert_array_equal(y.ravel(), [6, 3, 0, 8])
    dz, db = pool_backward_bias(np.ones_like(y), ctx)
    # each window's first maximum (row-major) takes the gradient; the relu stops the all-negative window's
    np.testing.assert_array_equal(dz[0, :, :, 0], [[0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(db, [3])


def _train(build, accelerate: str, monkeypatch, run_eagerly=False):
    monkeypatch.setenv("LAMINA_ACCELERATE", accelerate)
    lamina.utils.set_random_seed(5)
    model = build()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", run_eagerly=run_eagerly)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, (48, 10, 10, 2)).astype("float32")  # integer images: tied windows
    y = rng.integers(0, 4, 48)
    lamina.utils.set_random_seed(9)
    model.fit(x, y, batch_size=16, epochs=2, shuffle=True, verbose=0)
    return model, model.predict(x, verbose=0)


def _convnet():
    return lamina.Sequential([layers.Input((10, 10, 2)), layers.Conv2D(4, 3, activation="relu"),
                              layers.MaxPooling2D(2), layers.Conv2D(6, 2), layers.MaxPooling2D(2, strides=1),
                              layers.Flatten(), layers.Dropout(0.5), layers.Dense(4, activation="softmax")])


@needs_numba
@pytest.mark.parametrize("run_eagerly", [False, True])
def test_training_and_predict_equal_with_and_without_numba(monkeypatch, run_eagerly):
    """The compiled step (bias and relu moved into the pooling) and the tape step train the convnet to the
    same weights with the compiled pooling as without it; predict (Sequential's inference plan, whose relu
    convolution + pooling runs through the compiled pooling) gives the same outputs."""
    plain, p0 = _train(_convnet, "0", monkeypatch, run_eagerly)
    fast, p1 = _train(_convnet, "1", monkeypatch, run_eagerly)
    assert (fast._fast_step is None) == run_eagerly
    for a, b in zip(fast.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p1, p0, rtol=1e-5, atol=1e-6)


def test_compiled_step_moves_the_bias_into_the_pooling(monkeypatch):
    """A relu or linear convolution read only by a max pooling hands its bias to the pooling node (which then
    writes the bias gradient, on the compiled pooling or NumPy's); an average pooling does not take it. (A 2x2
    kernel: a 3x3 one would run whole in the pooling, tests/test_conv_pool_fused.py.)"""

    def build():
        return lamina.Sequential([layers.Input((10, 10, 2)), layers.Conv2D(4, 2, activation="relu"),
                                  layers.MaxPooling2D(2), layers.Conv2D(3, 2, activation="relu"),
                                  layers.AveragePooling2D(2), layers.Flatten(), layers.Dense(4, activation="softmax")])

    model, _ = _train(build, "1", monkeypatch)
    convs = [n for n in model._fast_step.flat_nodes() if isinstance(n, compiled_step._ConvNode)]
    pools = [n for n in model._fast_step.flat_nodes() if isinstance(n, compiled_step._PoolNode)]
    assert [c.bias_in_pool for c in convs] == [True, False]
    assert pools[0].conv is convs[0] and pools[1].conv is None
    eager, _ = _train(build, "1", monkeypatch, run_eagerly=True)
    for a, b in zip(model.get_weights(), eager.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


WINOGRAD_CASES = [  # (input shape, filters, padding): even and odd outputs, both paddings, a wide kernel
    ((3, 8, 8, 8), 8, "valid"),
    ((2, 9, 7, 12), 10, "valid"),
    ((2, 7, 10, 8), 16, "same"),
    ((1, 13, 13, 32), 64, "valid"),
]


def _conv3x3_case(shape, filters, padding, dtype, seed):
    """``(x, kernel, dy, geometry, (y, dx, dk) in float64 by im2col)`` of a stride-1 3x3 convolution."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype(dtype)
    k = (rng.normal(size=(3, 3, shape[-1], filters)) / np.sqrt(9 * shape[-1])).astype(dtype)
    pads = [conv_kernels.plan(n, 3, 1, 1, padding)[1:] for n in shape[1:3]]
    geometry = ((1, 1), pads, (1, 1), 1)
    y64 = conv_kernels.conv_forward(x.astype("float64"), k.astype("float64"), *geometry)
    dy = rng.normal(size=y64.shape).astype(dtype)
    dx64, dk64 = conv_kernels.conv_backward(dy.astype("float64"), x.astype("float64"), k.astype("float64"), *geometry)
    return x, k, dy, geometry, (y64, dx64, dk64)


@needs_numba
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape,filters,padding", WINOGRAD_CASES)
def test_winograd_convolution_equals_im2col(monkeypatch, shape, filters, padding, dtype):
    """A 3x3 stride-1 convolution runs as Winograd's F(2x2, 3x3) with numba, its kernel gradient as
    F(3x3, 2x2); output, input and kernel gradients equal im2col's to rounding (checked against float64)."""
    monkeypatch.setattr(conv_kernels, "WINOGRAD_MIN_TILES", 1)  # small test shapes take it too
    monkeypatch.setattr(conv_kernels, "CHUNK_BYTES", 4096)  # and run one image per chunk
    monkeypatch.setattr(conv_kernels, "WINOGRAD_4X4", False)  # F(4x4, 3x3) has its own test below
    x, k, dy, geometry, (y64, dx64, dk64) = _conv3x3_case(shape, filters, padding, dtype, seed=4)

    def run():
        fits = conv_kernels._winograd_fits(x, k, (1, 1), (1, 1), 1, y64.shape[1:3])
        return (conv_kernels.conv_forward(x, k, *geometry), *conv_kernels.conv_backward(dy, x, k, *geometry), fits)

    (y0, dx0, dk0, fits0), (y1, dx1, dk1, fits1) = _both(monkeypatch, run)
    assert not fits0 and fits1
    assert y1.dtype == dx1.dtype == np.dtype(dtype) and y1.shape == y0.shape and dx1.shape == x.shape
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert dk1.dtype == np.dtype(dtype) and dk1.shape == k.shape
    for got, im2col, exact in ((y1, y0, y64), (dx1, dx0, dx64), (dk1, dk0, dk64)):
        scale = np.abs(exact).max()
        np.testing.assert_allclose(got, exact, rtol=tol, atol=tol * scale)
        # no further from the float64 result than im2col's own sum is, give or take a few roundings
        assert np.abs(got - exact).max() <= 4 * np.abs(im2col - exact).max() + tol * 1e-3 * scale


F4_CASES = [  # (input shape, filters, padding): maps of 4k, 4k + 1..3 outputs, both paddings, wide channels
    ((2, 10, 10, 8), 8, "valid"),
    ((2, 13, 13, 32), 64, "valid"),
    ((1, 12, 9, 16), 12, "same"),
    ((1, 16, 16, 128), 16, "same"),
]


@needs_numba
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape,filters,padding", F4_CASES)
def test_winograd_4x4_convolution_against_float64(monkeypatch, shape, filters, padding, dtype):
    """Where its products are fewest, a 3x3 convolution runs as F(4x4, 3x3), forward and (transposed) backward:
    output, input and kernel gradients within 2e-5 of the largest value of float64 im2col in float32 (measured
    about 6x im2col's own float32 error), to rounding in float64."""
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    monkeypatch.setattr(conv_kernels, "WINOGRAD_MIN_TILES", 1)
    monkeypatch.setattr(conv_kernels, "CHUNK_BYTES", 20000)  # a few images per chunk
    used = []
    real = conv_kernels._winograd_tiles
    monkeypatch.setattr(conv_kernels, "_winograd_tiles",
                        lambda *a: (a[4] == 4 and used.append(a[3])) or real(*a))
    x, k, dy, geometry, (y64, dx64, dk64) = _conv3x3_case(shape, filters, padding, dtype, seed=7)
    y = conv_kernels.conv_forward(x, k, *geometry)
    dx, dk = conv_kernels.conv_backward(dy, x, k, *geometry)
    none, dk_alone = conv_kernels.conv_backward(dy, x, k, *geometry, need_dx=False)
    assert none is None
    np.testing.assert_array_equal(dk_alone, dk)
    assert y.dtype == dx.dtype == dk.dtype == np.dtype(dtype) and dx.shape == x.shape and dk.shape == k.shape
    assert used and used[0] == y.shape[1:3] and all(conv_kernels._f4_wins(*s) for s in used)
    tol = 2e-5 if dtype == "float32" else 1e-12
    for got, exact in ((y, y64), (dx, dx64), (dk, dk64)):
        assert np.abs(got - exact).max() <= tol * np.abs(exact).max()
    monkeypatch.setattr(conv_kernels, "WINOGRAD_4X4", False)
    np.testing.assert_allclose(conv_kernels.conv_forward(x, k, *geometry), y, rtol=1e-4,
                               atol=tol * np.abs(y64).max())


@needs_numba
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape,filters,padding", [((3, 13, 13, 32), 16, "valid"), ((2, 12, 9, 8), 8, "same"),
                                                   ((2, 10, 10, 8), 12, "valid"), ((1, 8, 8, 16), 8, "same")])
@pytest.mark.parametrize("relu, bias", [(True, True), (False, True), (True, False)])
def test_winograd_pooled_output_equals_conv_then_pool(monkeypatch, shape, filters, padding, dtype, relu, bias):
    """At inference F(4x4, 3x3) may pool in its output transform: ``relu?(max_pool_2x2(conv + bias))`` equals
    the convolution's map pooled afterwards (to rounding: the same sums), odd and even maps, with and without
    bias and relu; a NaN hands the call back (None) to the unfused path."""
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    monkeypatch.setattr(conv_kernels, "WINOGRAD_MIN_TILES", 1)
    monkeypatch.setattr(conv_kernels, "CHUNK_BYTES", 30000)  # several chunks
    x, k, _, geometry, _ = _conv3x3_case(shape, filters, padding, dtype, seed=9)
    b = np.random.default_rng(3).normal(size=filters).astype(dtype) if bias else None
    pads = geometry[1]
    got = conv_kernels.winograd_max_pool(x, k, pads, b, relu)
    z = conv_kernels.conv_forward(x, k, *geometry) + (0 if b is None else b)
    h, w = z.shape[1] // 2 * 2, z.shape[2] // 2 * 2
    want = z[:, :h, :w].reshape(len(z), h // 2, 2, w // 2, 2, filters).max(axis=(2, 4))
    want = np.maximum(want, 0) if relu else want
    assert got is not None and got.dtype == np.dtype(dtype) and got.shape == want.shape
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
    x[0, 2, 2, 0] = np.nan
    assert conv_kernels.winograd_max_pool(x, k, pads, b, relu) is None
    monkeypatch.setattr(conv_kernels, "WINOGRAD_4X4", False)
    assert conv_kernels.winograd_max_pool(x, k, pads, b, relu) is None  # only where F(4x4, 3x3) would run


def test_kernel_transform_is_kept_only_while_the_kernel_is_unchanged():
    """The Winograd transform of a kernel is reused for the same array with the same values, and made anew
    after the array changes in place (an optimizer step) or for another array."""
    from lamina import winograd_accel

    g = winograd_accel.WINOGRAD_G
    k = np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype("float32")
    first = conv_kernels._kernel_transform(g, k, np.float32)
    assert conv_kernels._kernel_transform(g, k, np.float32) is first
    np.testing.assert_array_equal(first, conv_kernels._tile_transform(g, k, np.float32))
    k[1, 1, 0, 0] += 1.0  # in place, as the optimizer updates the weights
    changed = conv_kernels._kernel_transform(g, k, np.float32)
    assert changed is not first
    np.testing.assert_array_equal(changed, conv_kernels._tile_transform(g, k, np.float32))
    other = k.copy()
    np.testing.assert_array_equal(conv_kernels._kernel_transform(g, other, np.float32), changed)


def test_kept_kernel_transforms_stay_within_their_byte_budget(monkeypatch):
    """Kept transforms (and the kernels' copies) never exceed KERNELS_KEPT_BYTES: the oldest go first, and one
    larger than the whole budget is made every time instead of kept."""
    from lamina import winograd_accel

    g = winograd_accel.WINOGRAD_G
    monkeypatch.setattr(conv_kernels, "_KERNELS_SEEN", {})
    kernels = [np.full((3, 3, 4, 8), i, "float32") for i in range(6)]
    entry = kernels[0].nbytes * 5  # the kernel and its 36/9 times larger transform
    monkeypatch.setattr(conv_kernels, "KERNELS_KEPT_BYTES", 3 * entry)
    for k in kernels:
        conv_kernels._kernel_transform(g, k, np.float32)
    kept = conv_kernels._KERNELS_SEEN
    assert len(kept) == 3 and sum(a.nbytes + b.nbytes for a, b in kept.values()) <= 3 * entry
    assert {id(k) for k in kernels[3:]} == {key[1] for key in kept}  # the newest three
    monkeypatch.setattr(conv_kernels, "KERNELS_KEPT_BYTES", entry - 1)
    big = np.ones((3, 3, 4, 8), "float32")
    assert conv_kernels._kernel_transform(g, big, np.float32) is not conv_kernels._kernel_transform(g, big, np.float32)


def test_winograd_4x4_only_where_its_products_are_fewest():
    """11x11 and 32x32 maps: 36 products per 4x4 tile against 16 per 2x2 tile, 56 % (taken); 13x13: 73 % (not);
    2x2 maps (one tile either way): not."""
    wins = conv_kernels._f4_wins
    assert wins(11, 11) and wins(32, 32) and wins(8, 8)
    assert not wins(13, 13) and not wins(2, 2) and not wins(5, 5)


@needs_numba
def test_winograd_is_kept_for_large_enough_3x3_convolutions(monkeypatch):
    """Only 2D 3x3 stride-1 undilated ungrouped convolutions with enough channels and output tiles take it."""
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    fits = conv_kernels._winograd_fits
    x, k = np.zeros((16, 13, 13, 32), "float32"), np.zeros((3, 3, 32, 64), "float32")
    assert fits(x, k, (1, 1), (1, 1), 1, (11, 11))
    assert not fits(x[:1], k, (1, 1), (1, 1), 1, (11, 11))  # 36 tiles: im2col is faster
    assert not fits(x, k, (2, 2), (1, 1), 1, (6, 6)) and not fits(x, k, (1, 1), (2, 2), 1, (9, 9))
    assert not fits(x, k[:, :, :16], (1, 1), (1, 1), 2, (11, 11))
    assert not fits(x[..., :4], k[:, :, :4], (1, 1), (1, 1), 1, (11, 11))  # 4 channels: too thin
    assert not fits(x, np.zeros((5, 5, 32, 64), "float32"), (1, 1), (1, 1), 1, (9, 9))
    monkeypatch.setenv("LAMINA_ACCELERATE", "0")
    assert not fits(x, k, (1, 1), (1, 1), 1, (11, 11))


# ---------------------------------------------------------------- batch-parallel inference

def _mnist_like(seed=0):
    lamina.utils.set_random_seed(seed)
    return lamina.Sequential([layers.Input((12, 12, 1)), layers.Conv2D(8, 3, activation="relu"),
                              layers.MaxPooling2D(2), layers.Conv2D(16, 3, activation="relu"),
                              layers.MaxPooling2D(2), layers.Flatten(), layers.Dropout(0.5),
                              layers.Dense(5, activation="softmax")])


def _deep_like(seed=0):
    lamina.utils.set_random_seed(seed)
    return lamina.Sequential([layers.Input((8, 8, 3)), layers.Conv2D(8, 3, padding="same"),
                              layers.BatchNormalization(), layers.Activation("relu"), layers.MaxPooling2D(2),
                              layers.Conv2D(8, 3, padding="same", use_bias=False), layers.ReLU(),
                              layers.GlobalAveragePooling2D(), layers.Dense(3)])


class _SplitSpy:
    """Records each split_rows call's worker count and the threads its blocks ran on."""

    def __init__(self, monkeypatch, workers):
        self.calls, self.threads = [], set()
        real = row_split.split_rows
        monkeypatch.setattr(conv_accel, "split_workers", lambda rows: workers)

        def spy(fn, x, n):
            self.calls.append(n)

            def traced(block):
                import threading  # lazy: only the spy needs it

                self.threads.add(threading.current_thread().name)
                return fn(block)

            return real(traced, x, n)

        monkeypatch.setattr(row_split, "split_rows", spy)


@needs_numba
@pytest.mark.parametrize("build", [_mnist_like, _deep_like])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_split_inference_equals_the_whole_batch(monkeypatch, build, workers):
    """predict and model(x) over blocks of rows on threads give the serial plan's outputs (to float32
    rounding: a block's products may take another summation order), rows in order; BLAS gets its thread
    count back afterwards."""
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    model = build()
    rows = 3 * row_split.BLOCK_ROWS + 11
    x = np.random.default_rng(1).standard_normal((rows, *model.input_shape[1:])).astype("float32")
    monkeypatch.setattr(conv_accel, "split_workers", lambda rows: 0)  # never split: the reference
    want, want_call = model.predict(x, verbose=0), model(x)
    assert len(model._plan) == 1  # the whole stack is one split step
    spy = _SplitSpy(monkeypatch, workers)
    blas = [c.num_threads for c in row_split.blas_controllers()]
    got, got_call = model.predict(x, verbose=0), model(x)
    assert spy.calls == [workers, workers]
    # blocks run on the pool's threads, or on this one when there is one worker
    pool_threads = all(n.startswith(row_split.THREAD_PREFIX) for n in spy.threads)
    assert spy.threads == {"MainThread"} if workers == 1 else pool_threads
    assert [c.num_threads for c in row_split.blas_controllers()] == blas
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_call, want_call, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(x, batch_size=16, verbose=0), want, rtol=1e-5, atol=1e-6)


@needs_numba
def test_small_inference_calls_hold_blas_at_one_thread(monkeypatch):
    """A call too small to split (one image) runs with BLAS at one thread when its input holds at most
    SMALL_CALL values, and with BLAS's own threads when it is larger; afterwards BLAS has its count back."""
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    blas = row_split.blas_controllers()
    if not blas:
        pytest.skip("threadpoolctl absent")
    monkeypatch.setattr(conv_accel, "split_workers", lambda rows: 1)
    seen = []
    real = layers.Conv2D.call

    def spy(self, *args, **kwargs):
        seen.append(max(c.num_threads for c in blas))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(layers.Conv2D, "call", spy)
    model = lamina.Sequential([layers.Input((None, None, 1)), layers.Conv2D(2, 3), layers.Flatten()])
    before = [c.num_threads for c in blas]
    with threadpool_limits_2(blas):
        model(np.zeros((1, 12, 12, 1), "float32"))
        side = int(np.sqrt(row_split.SMALL_CALL)) + 8
        model(np.zeros((1, side, side, 1), "float32"))
        assert seen == [1, 2]
    assert [c.num_threads for c in blas] == before


class threadpool_limits_2:
    """BLAS at two threads inside the block (whatever the machine's default), restored after."""

    def __init__(self, blas):
        self.blas, self.saved = blas, [c.num_threads for c in blas]

    def __enter__(self):
        for c in self.blas:
            c.set_num_threads(2)

    def __exit__(self, *exc):
        for c, n in zip(self.blas, self.saved):
            c.set_num_threads(n)


@needs_numba
def test_quiet_predict_hands_the_split_stack_whole_chunks(monkeypatch):
    """With no progress bar or callback watching the batches, predict gives a stack that works in blocks of
    rows chunks of PREDICT_CHUNK rows whatever ``batch_size`` says: the batch-by-batch outputs (a callback
    attached), to float32 rounding. A stack that is not one split step still gets batch_size rows."""
    from lamina.models.trainer import PREDICT_CHUNK

    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    model = _mnist_like()
    x = np.random.default_rng(4).standard_normal((PREDICT_CHUNK + 300, 12, 12, 1)).astype("float32")
    rows = []
    real = row_split.split_rows
    monkeypatch.setattr(row_split, "split_rows", lambda fn, xb, n: rows.append(len(xb)) or real(fn, xb, n))
    want = model.predict(x, batch_size=128, verbose=0, callbacks=[lamina.callbacks.Callback()])
    assert set(rows) <= {128, len(x) % 128}
    rows.clear()
    got = model.predict(x, batch_size=128, verbose=0)
    assert rows == [PREDICT_CHUNK, 300]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    odd = lamina.Sequential([layers.Input((8, 8, 1)), layers.Conv2D(2, 3, activation=lambda t: t - t.mean(0)),
                             layers.Flatten()])
    calls = []
    monkeypatch.setattr(odd, "_predict_batch", lambda xb: calls.append(len(xb)) or np.zeros((len(xb), 72), "float32"))
    odd.predict(np.zeros((300, 8, 8, 1), "float32"), batch_size=128, verbose=0)
    assert calls == [128, 128, 44]


@needs_numba
def test_split_skips_training_small_batches_and_other_layers(monkeypatch):
    """No split in training mode (Dropout's draws and BatchNormalization's batch statistics see the whole
    batch), for a batch below two blocks' worth on one thread, for a Dense-only stack (OpenBLAS threads it)
    or a convolution with a custom activation (it may mix rows)."""
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    model = _mnist_like()
    x = np.random.default_rng(2).standard_normal((130, 12, 12, 1)).astype("float32")
    spy = _SplitSpy(monkeypatch, 2)
    model(x, training=True)
    assert spy.calls == []
    spy = _SplitSpy(monkeypatch, 1)
    model(x[:2 * row_split.BLOCK_ROWS])
    assert spy.calls == []
    dense = lamina.Sequential([layers.Input((4,)), layers.Dense(3, activation="relu"), layers.Dense(2)])
    dense(np.zeros((300, 4), "float32"))
    assert len(dense._plan) == 2
    odd = lamina.Sequential([layers.Input((8, 8, 1)), layers.Conv2D(2, 3, activation=lambda t: t - t.mean(0)),
                             layers.Conv2D(2, 3), layers.Flatten()])
    odd(np.zeros((300, 8, 8, 1), "float32"))
    assert len(odd._plan) == 2  # the odd convolution, then the rest as one split step


@needs_numba
def test_split_workers_follow_blas_threads_and_cores(monkeypatch):
    """The thread count is BLAS's (OPENBLAS_NUM_THREADS, threadpoolctl limits), capped by the usable cores
    and by MIN_ROWS_PER_WORKER rows each; without threadpoolctl one thread (blocks run serially); with
    numba off no split at all."""
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")

    class Blas:
        num_threads = 4

    monkeypatch.setitem(row_split._STATE, "blas", [Blas()])
    monkeypatch.setattr(row_split, "usable_cores", lambda: 3)
    rows = row_split.MIN_ROWS_PER_WORKER
    assert conv_accel.split_workers(100 * rows) == 3
    assert conv_accel.split_workers(2 * rows) == 2
    assert conv_accel.split_workers(2 * rows - 1) == 1
    Blas.num_threads = 1
    assert conv_accel.split_workers(100 * rows) == 1
    monkeypatch.setitem(row_split._STATE, "blas", None)
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # `import threadpoolctl` raises ImportError
    assert conv_accel.split_workers(100 * rows) == 1 and row_split._STATE["blas"] == []
    monkeypatch.setenv("LAMINA_ACCELERATE", "0")
    assert conv_accel.split_workers(100 * rows) == 0


@needs_numba
def test_split_rows_passes_a_block_error_and_restores_blas():
    """A block that raises: the error reaches the caller, after every block has finished, and BLAS has its
    threads back; the blocks' results come back in row order."""
    blas = [c.num_threads for c in row_split.blas_controllers()]
    x = np.arange(300, dtype="float32")[:, None]

    def fn(block):
        if block[0, 0] >= 150:
            raise ValueError("block failed")
        return block * 2

    with pytest.raises(ValueError, match="block failed"):
        row_split.split_rows(fn, x, 2)
    assert [c.num_threads for c in row_split.blas_controllers()] == blas
    np.testing.assert_array_equal(row_split.split_rows(lambda b: b * 2, x, 2), x * 2)
    np.testing.assert_array_equal(row_split.split_rows(lambda b: b * 2, x, 1), x * 2)
    np.testing.assert_array_equal(row_split.split_rows(lambda b: b * 2, x[:1], 2), x[:1] * 2)  # no empty block


@needs_numba
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_split_rows_in_a_forked_child():
    """A child forked after a split makes its own thread pool (the parent's threads do not exist in it)
    instead of waiting forever on the inherited one."""
    x = np.arange(300, dtype="float32")[:, None]
    row_split.split_rows(lambda b: b * 2, x, 2)  # the parent's pool exists
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        signal.alarm(20)  # a hang ends the child with SIGALRM, which the parent sees
        ok = np.array_equal(row_split.split_rows(lambda b: b * 2, x, 2), x * 2)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
