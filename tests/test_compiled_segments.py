"""The compiled training step's segments: chains of row-wise nodes holding a convolution that run block by block
of batch rows on threads (``compiled_step._Segment``, on :mod:`lamina.row_split`).

The reference is the same step with every segment run on the whole batch (``_segment_workers`` forced to 1):
losses, weights after training and gradients agree to float32 rounding (a block's products may sum in another
order, and the blocks' weight gradients are summed per block)."""

import importlib.util
import threading

import numpy as np
import pytest

import lamina
from lamina import layers, row_split
from lamina.models import compiled_step

needs_numba = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba (the fast extra) absent")


def _convnet(seed=0):
    lamina.utils.set_random_seed(seed)
    return lamina.Sequential([layers.Input((14, 14, 1)), layers.Conv2D(8, 3, activation="relu"), layers.MaxPooling2D(2),
                              layers.Conv2D(16, 3, activation="relu"), layers.MaxPooling2D(2), layers.Flatten(),
                              layers.Dropout(0.5), layers.Dense(5, activation="softmax")])


def _with_batchnorm(seed=0):
    lamina.utils.set_random_seed(seed)
    return lamina.Sequential([layers.Input((10, 10, 3)), layers.Conv2D(8, 3, padding="same", use_bias=False),
                              layers.BatchNormalization(), layers.Activation("relu"), layers.MaxPooling2D(2),
                              layers.Conv2D(8, 3, padding="same", activation="tanh"), layers.AveragePooling2D(2),
                              layers.GlobalAveragePooling2D(), layers.Dense(5, activation="softmax")])


def _dense_first(seed=0):
    """A segment that is not the model's first node: its input gradient flows on to the Dense before it; a
    residual read of the first convolution's output ends the chain there."""
    lamina.utils.set_random_seed(seed)
    inputs = layers.Input((12,))
    h = layers.Reshape((6, 6, 1))(layers.Dense(36, activation="tanh")(inputs))
    a = layers.Conv2D(4, 3, padding="same", activation="relu")(h)
    b = layers.Conv2D(4, 3, padding="same", activation="relu")(a)
    c = layers.Flatten()(layers.MaxPooling2D(2)(layers.Add()([a, b])))
    return lamina.Model(inputs, layers.Dense(5, activation="softmax")(c))


def _data(model, rows=200, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, *model.input_shape[1:])).astype("float32")
    return x, rng.integers(0, 5, rows)


def _train(build, workers, monkeypatch, epochs=2):
    monkeypatch.setattr(compiled_step, "_segment_workers", lambda rows: workers if rows >= 2 * 32 else 1)
    model = build()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = _data(model)
    history = model.fit(x, y, batch_size=100, epochs=epochs, shuffle=False, verbose=0)
    assert model._fast_step is not None
    return model, history.history["loss"], model.get_weights()


@needs_numba
@pytest.mark.parametrize("build", [_convnet, _with_batchnorm, _dense_first])
@pytest.mark.parametrize("workers", [2, 3])
def test_split_training_equals_the_whole_batch(monkeypatch, build, workers):
    """Losses and trained weights of the split step equal the whole-batch step's; the split really ran."""
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    _, want_loss, want_weights = _train(build, 1, monkeypatch)
    seen = set()
    real_run = row_split.run

    def spy(tasks, n):
        seen.add(n)
        return real_run(tasks, n)

    monkeypatch.setattr(row_split, "run", spy)
    model, loss, weights = _train(build, workers, monkeypatch)
    assert seen == {workers}
    assert any(isinstance(node, compiled_step._Segment) for node in model._fast_step.nodes)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    for got, want in zip(weights, want_weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@needs_numba
def test_segment_gradients_equal_the_whole_batch(monkeypatch):
    """One step's gradients, each weight separately, from the split and whole-batch segments (the Dense before
    the segment gets its gradient through the segment's input gradient)."""
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    grads = []
    for workers in (1, 2):
        model, _, _ = _train(_dense_first, workers, monkeypatch, epochs=1)
        x, y = _data(model, rows=128, seed=3)
        captured = []
        monkeypatch.setattr(model.optimizer, "apply", lambda g, v, captured=captured: captured.append(
            [np.array(a) for a in g]))
        model.train_on_batch(x, y)
        grads.append(captured[0])
    for got, want in zip(grads[1], grads[0], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)


def test_segments_group_chains_of_row_wise_nodes():
    """A chain of convolutions, poolings, reshapes and activations holding a convolution is one segment; a
    Dropout, a Dense or a BatchNormalization ends it; a slot read twice ends the chain there."""
    def kinds(build):
        model = build()
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        x, y = _data(model, rows=8)
        model.fit(x, y, epochs=1, verbose=0)
        return [type(node).__name__ if not isinstance(node, compiled_step._Segment)
                else "Segment(" + ",".join(type(n).__name__[1:-4] for n in node.nodes) + ")"
                for node in model._fast_step.nodes]

    assert kinds(_convnet) == ["Segment(Conv,Pool,Conv,Pool,Reshape)", "_DropoutNode", "_DenseNode"]
    assert kinds(_with_batchnorm)[:3] == ["Segment(Conv)", "_BatchNormNode", "Segment(Activation,Pool,Conv,Pool)"]
    got = kinds(_dense_first)
    assert got[:2] == ["_DenseNode", "Segment(Reshape,Conv)"]  # the first conv's output is read twice
    assert "Segment(Conv)" in got


@needs_numba
def test_blas_is_held_at_one_thread_through_a_split_step(monkeypatch):
    """While a split step runs, BLAS stays at one thread (the Dense's product included); afterwards it has
    its thread count back. The block threads are the pool's."""
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    blas = row_split.blas_controllers()
    if not blas:
        pytest.skip("threadpoolctl absent")
    before = [c.num_threads for c in blas]
    seen_threads, seen_blas = set(), []
    real_forward = compiled_step._DenseNode.forward

    def dense_forward(node, vals):
        seen_blas.append([c.num_threads for c in blas])
        return real_forward(node, vals)

    real_conv = compiled_step._ConvNode.forward

    def conv_forward(node, vals):
        seen_threads.add(threading.current_thread().name)
        return real_conv(node, vals)

    monkeypatch.setattr(compiled_step._DenseNode, "forward", dense_forward)
    monkeypatch.setattr(compiled_step._ConvNode, "forward", conv_forward)
    _train(_convnet, 2, monkeypatch, epochs=1)
    assert seen_blas and all(n == [1] * len(blas) for n in seen_blas)
    assert seen_threads and all(name.startswith(row_split.THREAD_PREFIX) for name in seen_threads)
    assert [c.num_threads for c in blas] == before


def test_small_batches_and_no_numba_run_whole(monkeypatch):
    """Below two blocks' worth of rows, or with the compiled kernels off, a segment runs its own nodes on the
    whole batch, on this thread."""
    monkeypatch.setenv("LAMINA_ACCELERATE", "0")
    assert compiled_step._segment_workers(10_000) == 0
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    assert compiled_step._segment_workers(2 * row_split.MIN_ROWS_PER_WORKER - 1) <= 1
    ran = set()
    real_conv = compiled_step._ConvNode.forward

    def conv_forward(node, vals):
        ran.add(threading.current_thread().name)
        return real_conv(node, vals)

    monkeypatch.setattr(compiled_step._ConvNode, "forward", conv_forward)
    model = _convnet()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = _data(model, rows=40)
    model.fit(x, y, batch_size=40, epochs=1, verbose=0)
    assert ran == {threading.current_thread().name}


