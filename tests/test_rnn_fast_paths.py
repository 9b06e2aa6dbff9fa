"""The recurrent layers' speed paths against the plain ones: the compiled whole-sequence loops run on blocks
of batch rows on threads (``rnn_accel.in_row_blocks``), and a Sequential's inference plan feeds an LSTM/GRU
straight from an Embedding through the table ``embeddings @ kernel + bias``. Each must give the numbers of
the path it replaces (to float32 rounding)."""

import numpy as np
import pytest

import lamina
from lamina import row_split
from lamina.autodiff import unwrap


def _leaves(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _needs_compiled_loops(dtype="float32"):
    pytest.importorskip("numba")
    from lamina.layers import rnn_accel

    if rnn_accel.kernels(dtype) is None or rnn_accel.blas_gemm(dtype) is None:
        pytest.skip("the compiled whole-sequence loops are not available here")


def _run_layer(kind, dtype, flags, x, states, weights):
    """Inference outputs, then training outputs and gradients (inputs, initial states, weights)."""
    layer = getattr(lamina.layers, kind)(5, dtype=dtype, **flags)
    layer(x)
    layer.set_weights(weights)
    inferred = [np.asarray(unwrap(o)) for o in _leaves(layer(x, initial_state=states))]
    with lamina.GradientTape() as tape:
        tape.watch([x] + states)
        outs = _leaves(layer(x, initial_state=states))
        loss = sum(lamina.ops.sum(lamina.ops.multiply(o, o * (i + 1.0))) for i, o in enumerate(outs))
    grads = tape.gradient(loss, [x] + states + layer.trainable_weights)
    return inferred + [np.asarray(unwrap(o)) for o in outs] + [np.asarray(g) for g in grads]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("flags", [dict(return_sequences=True, return_state=True), dict(go_backwards=True)])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_row_blocks_on_threads_equal_the_whole_batch(kind, dtype, flags, monkeypatch):
    """With the batch cut into 3 blocks of rows run on threads, an LSTM's and a GRU's outputs, final states and
    gradients (inputs, initial states, weights) equal the one-block run's, in inference and in training."""
    _needs_compiled_loops(dtype)
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(7, 9, 3)).astype(dtype)  # an odd length: the loops end on their other state buffers
    states = [rng.normal(size=(7, 5)).astype(dtype) for _ in range(2 if kind == "LSTM" else 1)]
    probe = getattr(lamina.layers, kind)(5, dtype=dtype)
    probe(x)
    weights = [np.random.default_rng(1).normal(scale=0.6, size=w.shape).astype(dtype) for w in probe.weights]
    blocks = []
    run = row_split.run
    monkeypatch.setattr(row_split, "run", lambda tasks, n: blocks.append((len(tasks), n)) or run(tasks, n))
    results = []
    for workers in (3, 1):
        monkeypatch.setattr(row_split, "workers", lambda rows, w=workers: w)
        blocks.clear()
        results.append(_run_layer(kind, dtype, flags, x, states, weights))
        # in `workers` blocks each: the loop of the building call, of inference and of the training forward (the
        # GRU's input projection before each), the backward loop and (GRU) the weight gradients: the LSTM's
        # training backward makes them in its loop (``lstm_training``)
        assert blocks == [(workers, workers)] * (4 if kind == "LSTM" else 8)
    tol = 2e-6 if dtype == "float32" else 1e-13
    for split, whole in zip(*results):
        assert split.dtype == np.dtype(dtype)
        np.testing.assert_allclose(split, whole, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_inference_blocks_taken_in_turn_equal_the_whole_batch(kind, monkeypatch):
    """At inference the batch is cut into blocks of about ``INFER_BLOCK_ROWS`` rows, more blocks than threads
    (the threads take them in turn): a layer's outputs and final states, and an Embedding-fed model's predict
    (each step read from the table), equal the one-block run's."""
    _needs_compiled_loops()
    from lamina.layers import rnn_accel

    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    monkeypatch.setattr(rnn_accel, "INFER_BLOCK_ROWS", 3)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(11, 6, 3)).astype("float32")
    ids = rng.integers(0, 20, (11, 6)).astype("int32")
    blocks = []
    run = row_split.run
    monkeypatch.setattr(row_split, "run", lambda tasks, n: blocks.append((len(tasks), n)) or run(tasks, n))
    lamina.utils.set_random_seed(2)
    layer = getattr(lamina.layers, kind)(5, return_sequences=True, return_state=True)
    model = lamina.Sequential([lamina.layers.Input((6,), dtype="int32"), lamina.layers.Embedding(20, 3),
                               getattr(lamina.layers, kind)(4)])
    layer(x)
    model.predict(ids, batch_size=11, verbose=0)  # built: what follows runs only the inference loops
    results = []
    for workers in (2, 1):
        monkeypatch.setattr(row_split, "workers", lambda rows, w=workers: w)
        blocks.clear()
        results.append([np.asarray(unwrap(o)) for o in layer(x)] + [model.predict(ids, batch_size=11, verbose=0)])
        # the layer's loop and the model's, 11 rows in blocks of 3, 3, 2, 3 (the GRU's input projection before
        # its loop: one block a thread)
        if workers == 2:
            assert blocks.count((4, 2)) == 2
        else:
            assert all(tasks == 1 for tasks, _ in blocks)
    for split, whole in zip(*results):
        np.testing.assert_allclose(split, whole, rtol=2e-6, atol=2e-6)


def test_lstm_training_steps_reuse_one_set_of_buffers(monkeypatch):
    """The LSTM's training loops give their step buffers back to the pool once the backward is done, so that
    each step's forward gets the same (cached) arrays, not a second set while the last step's tape lives on."""
    _needs_compiled_loops()
    from lamina import scratch

    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    monkeypatch.setattr(row_split, "workers", lambda rows: 2 if rows >= 64 else 1)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, (256, 40)).astype("int32")
    y = rng.integers(0, 2, (256, 1)).astype("float32")
    model = lamina.Sequential([lamina.layers.Input((40,), dtype="int32"), lamina.layers.Embedding(50, 8),
                               lamina.layers.LSTM(64), lamina.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    scratch.clear()
    handed = []  # (address, shape) of each array handed out: no reference kept, which would hold it

    def empty(shape, dtype, made=scratch.empty):
        a = made(shape, dtype)
        handed.append((a.ctypes.data, a.shape))
        return a

    monkeypatch.setattr(scratch, "empty", empty)
    model.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    steps = [address for address, shape in handed if len(shape) == 3 and shape[0] in (40, 41)]
    assert len(steps) == 4 * 2 * 4 and len(set(steps)) == 2 * 4  # 4 steps x 2 blocks x 4 buffers; one set


def test_row_blocks_training_matches_a_numpy_fit(monkeypatch):
    """A model fitted with the LSTM split over 2 blocks of rows ends with the weights of the NumPy path's fit
    (LAMINA_ACCELERATE=0), batch 64 as the benchmark trains."""
    _needs_compiled_loops()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, (128, 12)).astype("int32")
    y = rng.integers(0, 2, (128, 1)).astype("float32")
    finals = []
    for accelerate in ("1", "0"):
        monkeypatch.setenv("LAMINA_ACCELERATE", accelerate)
        monkeypatch.setattr(row_split, "workers", lambda rows: 2 if rows >= 64 else 1)
        lamina.utils.set_random_seed(3)
        model = lamina.Sequential([lamina.layers.Input((12,), dtype="int32"), lamina.layers.Embedding(50, 8),
                                   lamina.layers.LSTM(16), lamina.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="adam", loss="binary_crossentropy")
        model.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0)
        finals.append(model.get_weights())
    for a, b in zip(*finals):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _embedding_model(kind, dtype, vocab=60, mask_zero=False, **flags):
    lamina.utils.set_random_seed(2)
    shape = dict(batch_shape=(8, 11)) if flags.get("stateful") else dict(shape=(11,))
    model = lamina.Sequential([lamina.layers.Input(**shape, dtype="int32"),
                               lamina.layers.Embedding(vocab, 6, mask_zero=mask_zero, dtype=dtype),
                               getattr(lamina.layers, kind)(5, dtype=dtype, **flags),
                               lamina.layers.Dense(2, dtype=dtype)])
    rng = np.random.default_rng(9)
    model.set_weights([rng.normal(scale=0.5, size=w.shape).astype(w.dtype) for w in model.weights])
    return model


def _layer_by_layer(model, x):
    """The stack's calls one after another, outside the model's inference plan."""
    for layer in model.layers:
        x = layer(x)
    return np.asarray(unwrap(x))


def _count_table_loops(monkeypatch):
    from lamina.layers.gru import CompiledGRUKernel
    from lamina.layers.lstm import CompiledLSTMKernel

    calls = []
    for cls in (CompiledLSTMKernel, CompiledGRUKernel):
        method = cls.infer_from_table
        monkeypatch.setattr(cls, "infer_from_table", lambda self, *a, m=method: calls.append(1) or m(self, *a))
    return calls


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("flags", [dict(), dict(return_sequences=True, go_backwards=True), dict(use_bias=False)])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_embedding_fed_predict_equals_the_layers_calls(kind, dtype, flags, monkeypatch):
    """predict on Embedding -> LSTM/GRU reads the gate pre-activations from the table embeddings @ kernel + bias
    (no embedded or projected sequence): its outputs equal the layers called one by one, and the NumPy path's
    (LAMINA_ACCELERATE=0), negative indices included."""
    _needs_compiled_loops(dtype)
    calls = _count_table_loops(monkeypatch)
    x = np.random.default_rng(5).integers(-60, 60, (13, 11)).astype("int32")
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    model = _embedding_model(kind, dtype, **flags)
    fused = model.predict(x, batch_size=13, verbose=0)
    assert len(calls) == 1
    assert fused.dtype == np.dtype(dtype)
    tol = 2e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(fused, _layer_by_layer(model, x), rtol=tol, atol=tol)
    monkeypatch.setenv("LAMINA_ACCELERATE", "0")
    plain = _embedding_model(kind, dtype, **flags).predict(x, batch_size=13, verbose=0)
    np.testing.assert_allclose(fused, plain, rtol=100 * tol, atol=100 * tol)
    assert len(calls) == 1  # the NumPy path never takes the table


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_quiet_predict_hands_the_fed_step_whole_chunks(kind, monkeypatch):
    """Embedding -> LSTM/GRU -> Dense works through row blocks of its own, so a quiet predict hands it chunks of
    PREDICT_CHUNK rows whatever ``batch_size`` says: the outputs of the batch-by-batch predict (a callback
    attached) to float32 rounding; with a layer that is neither (a Lambda) batches stay batches."""
    from lamina.models.trainer import PREDICT_CHUNK

    _needs_compiled_loops("float32")
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    model = _embedding_model(kind, "float32")
    x = np.random.default_rng(6).integers(0, 60, (PREDICT_CHUNK + 70, 11)).astype("int32")
    want = model.predict(x, batch_size=64, verbose=0, callbacks=[lamina.callbacks.Callback()])
    rows = []
    real = model._run_plain
    monkeypatch.setattr(model, "_run_plain", lambda xb, training=None: rows.append(len(xb)) or real(xb, training))
    got = model.predict(x, batch_size=64, verbose=0)
    assert rows == [PREDICT_CHUNK, 70]
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)
    odd = lamina.Sequential([*model.layers, lamina.layers.Lambda(lambda t: t * 2)])
    rows.clear()
    monkeypatch.setattr(odd, "_run_plain", lambda xb, training=None: rows.append(len(xb)) or np.zeros((len(xb), 1)))
    odd.predict(x[:150], batch_size=64, verbose=0)
    assert rows == [64, 64, 22]


def test_embedding_fed_table_follows_the_weights(monkeypatch):
    """The table is made once and kept while the weights stay as they are; training (the optimizer writes the
    weights in place) or set_weights makes it again, so predict always equals the layers' calls. With more
    vocabulary than tokens and no table yet, the layers' own calls run."""
    _needs_compiled_loops()
    from lamina.layers import rnn_accel

    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    calls = _count_table_loops(monkeypatch)
    builds = []
    product = rnn_accel.matmul_bias
    monkeypatch.setattr(rnn_accel, "matmul_bias", lambda x, w, b: builds.append(x.shape) or product(x, w, b))
    model = _embedding_model("LSTM", "float32", vocab=40)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 40, (8, 11)).astype("int32")
    few = x[:3]  # 33 tokens < 40 rows of vocabulary
    for _ in range(2):
        np.testing.assert_allclose(model.predict(few, verbose=0), _layer_by_layer(model, few), rtol=2e-6, atol=2e-6)
    assert calls == [] and (40, 6) not in builds  # no table: the projection of the call was cheaper
    for _ in range(2):
        np.testing.assert_allclose(model.predict(x, verbose=0), _layer_by_layer(model, x), rtol=2e-6, atol=2e-6)
    assert len(calls) == 2 and builds.count((40, 6)) == 1  # made once, then kept
    np.testing.assert_allclose(model.predict(few, verbose=0), _layer_by_layer(model, few), rtol=2e-6, atol=2e-6)
    assert len(calls) == 3  # a kept table serves a call of any size
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, rng.normal(size=(8, 2)).astype("float32"), epochs=1, verbose=0)
    np.testing.assert_allclose(model.predict(x, verbose=0), _layer_by_layer(model, x), rtol=2e-6, atol=2e-6)
    model.layers[0].set_weights([rng.normal(size=(40, 6)).astype("float32")])
    np.testing.assert_allclose(model.predict(x, verbose=0), _layer_by_layer(model, x), rtol=2e-6, atol=2e-6)
    assert len(calls) == 5 and builds.count((40, 6)) == 3


@pytest.mark.parametrize("case", ["mask_zero", "stateful", "reset_before", "relu"])
def test_embedding_fed_step_declines_what_it_cannot_mean(case, monkeypatch):
    """Where the table would not mean the same (a mask from mask_zero, a stateful layer, a reset-before GRU, a
    non-default activation) predict runs the layers' calls, with their results."""
    _needs_compiled_loops()
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    calls = _count_table_loops(monkeypatch)
    kind, options = {"mask_zero": ("LSTM", {}), "stateful": ("LSTM", dict(stateful=True)),
                     "reset_before": ("GRU", dict(reset_after=False)), "relu": ("LSTM", dict(activation="relu"))}[case]
    model = _embedding_model(kind, "float32", mask_zero=case == "mask_zero", **options)
    x = np.random.default_rng(3).integers(0, 60, (8, 11)).astype("int32")
    x[:, :3] = 0
    got = model.predict(x, batch_size=8, verbose=0)
    if case == "stateful":
        model.layers[1].reset_state()
    np.testing.assert_allclose(got, _layer_by_layer(model, x), rtol=2e-6, atol=2e-6)
    assert calls == []


def test_embedding_fed_step_keeps_the_embeddings_errors(monkeypatch):
    """An index outside the vocabulary raises the Embedding's own IndexError through the fused step."""
    _needs_compiled_loops()
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    model = _embedding_model("LSTM", "float32")
    x = np.full((8, 11), 3, dtype="int32")
    x[2, 4] = 60
    with pytest.raises(IndexError, match="Embedding '.*' has input_dim=60"):
        model.predict(x, verbose=0)


def test_scratch_arrays_are_reused_only_once_free():
    """``scratch.empty`` hands an earlier large array back only when nothing else refers to it (a live view
    keeps it out), never a small one, and drops free arrays beyond its byte budget."""
    from lamina import scratch

    scratch.clear()
    shape = (300, 300)
    a = scratch.empty(shape, "float32")
    assert a.shape == shape and a.dtype == np.float32 and a.flags.c_contiguous
    address = a.ctypes.data
    other = scratch.empty(shape, "float32")
    assert other.ctypes.data != address  # a is still held
    del a
    b = scratch.empty(shape, "float32")
    assert b.ctypes.data == address
    view = b[10:20]
    del b
    c = scratch.empty(shape, "float32")
    assert c.ctypes.data != address  # the view keeps its base in use
    assert scratch.empty(shape, "float64").dtype == np.float64
    del view, c, other
    small = scratch.empty((4, 5), "float32")
    assert all(a is not small for a in scratch._POOL)
    budget = scratch.BUDGET_BYTES
    try:
        scratch.BUDGET_BYTES = 3 * 300 * 300 * 4
        for n in range(301, 306):
            scratch.empty((n, 300), "float32")
        assert sum(a.nbytes for a in scratch._POOL) <= 4 * 306 * 300 * 4
    finally:
        scratch.BUDGET_BYTES = budget
        scratch.clear()


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_scratch_buffers_held_until_the_tape_is_done(kind, monkeypatch):
    """A layer called twice under one persistent tape, whose gradients are asked for twice: each call keeps
    its own step buffers (reused arrays never serve two live calls), so the gradients equal the NumPy path's
    both times."""
    rng = np.random.default_rng(6)
    xs = [rng.normal(size=(64, 40, 3)).astype("float32") for _ in range(2)]
    weights = None
    results = []
    for accelerate in ("1", "0"):
        monkeypatch.setenv("LAMINA_ACCELERATE", accelerate)
        layer = getattr(lamina.layers, kind)(16)
        layer(xs[0])
        if weights is None:
            weights = [rng.normal(scale=0.4, size=w.shape).astype("float32") for w in layer.weights]
        layer.set_weights(weights)
        with lamina.GradientTape(persistent=True) as tape:
            tape.watch(xs)
            first = layer(xs[0])
            second = layer(xs[1])
            loss = lamina.ops.sum(lamina.ops.multiply(first, second)) + lamina.ops.sum(second)
        grads = [tape.gradient(loss, xs + layer.trainable_weights) for _ in range(2)]
        for a, b in zip(*grads):
            np.testing.assert_array_equal(a, b)
        results.append(grads[0])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_dropout_training_in_row_blocks_equals_one_block(kind, monkeypatch):
    """With input dropout (the projection made before the loop, not inside it) training in 3 blocks of rows
    gives the one-block run's outputs and gradients (the seeded layer draws the same masks each time)."""
    _needs_compiled_loops()
    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(7, 9, 3)).astype("float32")
    states = [rng.normal(size=(7, 5)).astype("float32") for _ in range(2 if kind == "LSTM" else 1)]
    sizes = []
    run = row_split.run
    monkeypatch.setattr(row_split, "run", lambda tasks, n: sizes.append(len(tasks)) or run(tasks, n))
    results = []
    for workers in (3, 1):
        monkeypatch.setattr(row_split, "workers", lambda rows, w=workers: w)
        layer = getattr(lamina.layers, kind)(5, dropout=0.4, seed=11, return_sequences=True)
        layer(x)
        layer.set_weights([np.random.default_rng(1).normal(scale=0.6, size=w.shape).astype("float32")
                           for w in layer.weights])
        with lamina.GradientTape() as tape:
            tape.watch([x] + states)
            out = layer(x, initial_state=states, training=True)
            loss = lamina.ops.sum(lamina.ops.multiply(out, out))
        results.append([np.asarray(unwrap(out))] + [np.asarray(g) for g in
                                                     tape.gradient(loss, [x] + states + layer.trainable_weights)])
    assert 3 in sizes
    for split, whole in zip(*results):
        np.testing.assert_allclose(split, whole, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_whole_sequence_inference_twin_equals_training_loop(kind, dtype):
    """The compiled kernels' inference loop over given projected inputs (``forward_sequence`` without
    keeping anything) ends with the training loop's outputs and states."""
    _needs_compiled_loops(dtype)
    from lamina.activations import sigmoid, tanh
    from lamina.layers import rnn_accel
    from lamina.layers.gru import CompiledGRUKernel
    from lamina.layers.lstm import CompiledLSTMKernel
    from lamina.layers.rnn_scan import activation_pair

    steps, batch, units = 6, 70, 4
    gates = 4 if kind == "LSTM" else 3
    rng = np.random.default_rng(3)
    dt = np.dtype(dtype)
    rk = rng.normal(scale=0.5, size=(units, gates * units)).astype(dt)
    xp = rng.normal(size=(steps, batch, gates * units)).astype(dt)
    s0 = [rng.normal(size=(batch, units)).astype(dt) for _ in range(2 if kind == "LSTM" else 1)]
    pairs = (activation_pair(tanh), activation_pair(sigmoid))
    compiled = rnn_accel.kernels(dt)

    def make(n):
        if kind == "LSTM":
            return CompiledLSTMKernel(rk, n, batch, dt, *pairs, compiled)
        return CompiledGRUKernel(rk, rng.normal(size=3 * units).astype(dt), n, batch, dt, *pairs, compiled)

    rng_state = rng.bit_generator.state
    kept = make(steps).forward_sequence(xp.copy(), s0, True, True)
    rng.bit_generator.state = rng_state  # the GRU's recurrent bias drawn alike
    inferred = make(2).forward_sequence(xp.copy(), s0, True, False)
    tol = 1e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(inferred[0], kept[0], rtol=tol, atol=tol)
    for a, b in zip(inferred[2], kept[2]):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("flags", [dict(), dict(return_sequences=True), dict(return_state=True),
                                   dict(go_backwards=True, return_sequences=True)])
@pytest.mark.parametrize("shape", [(70, 13), (9, 1), (64, 17)])
def test_lstm_training_loops_equal_the_fused_scan(dtype, flags, shape, monkeypatch):
    """The LSTM's compiled training loops (``lstm_training``: one ``[x | h] @ [W; R]`` product a step, gate
    gradients over the gates, weight gradients every few steps) give the outputs, final states and gradients
    (inputs, initial states, weights) of the fused scan they replace: batches of one and of several row blocks
    (70 rows: blocks of 35), lengths not a multiple of the chunk of steps, every output combination."""
    _needs_compiled_loops(dtype)
    from lamina.layers import lstm, lstm_training

    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    batch, steps = shape
    rng = np.random.default_rng(7)
    x = rng.normal(size=(batch, steps, 3)).astype(dtype)
    states = [rng.normal(size=(batch, 5)).astype(dtype) for _ in range(2)]
    probe = lamina.layers.LSTM(5, dtype=dtype)
    probe(x)
    weights = [np.random.default_rng(1).normal(scale=0.6, size=w.shape).astype(dtype) for w in probe.weights]
    used = []
    forward = lstm_training.LSTMSequenceTrainer.forward
    monkeypatch.setattr(lstm_training.LSTMSequenceTrainer, "forward",
                        lambda self, *a: used.append(len(self.blocks)) or forward(self, *a))
    new = _run_layer("LSTM", dtype, flags, x, states, weights)
    assert len(used) == 1  # the training call, not inference
    monkeypatch.setattr(lstm.LSTMCell, "_sequence_trainer", lambda self, *a: None)
    old = _run_layer("LSTM", dtype, flags, x, states, weights)
    tol = 3e-6 if dtype == "float32" else 1e-12
    for a, b in zip(new, old, strict=True):
        assert a.dtype == np.dtype(dtype) and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, float(np.abs(b).max())))


def test_lstm_training_loops_only_where_they_mean_the_same(monkeypatch):
    """A mask, input dropout or other activations keep the fused scan; the default LSTM takes the loops."""
    _needs_compiled_loops()
    from lamina.layers import lstm_training

    monkeypatch.setenv("LAMINA_ACCELERATE", "1")
    calls = []
    forward = lstm_training.LSTMSequenceTrainer.forward
    monkeypatch.setattr(lstm_training.LSTMSequenceTrainer, "forward",
                        lambda self, *a: calls.append(1) or forward(self, *a))
    x = np.random.default_rng(0).normal(size=(4, 6, 3)).astype("float32")

    def trains(layer, **kwargs):
        calls.clear()
        with lamina.GradientTape() as tape:
            loss = lamina.ops.sum(layer(x, training=True, **kwargs))
        tape.gradient(loss, layer.trainable_weights)
        return bool(calls)

    assert trains(lamina.layers.LSTM(5))
    assert not trains(lamina.layers.LSTM(5), mask=np.ones((4, 6), bool))
    assert not trains(lamina.layers.LSTM(5, dropout=0.5, seed=1))
    assert not trains(lamina.layers.LSTM(5, activation="relu"))
    assert not trains(lamina.layers.LSTM(5, recurrent_activation="hard_sigmoid"))
    monkeypatch.setenv("LAMINA_ACCELERATE", "0")
    assert not trains(lamina.layers.LSTM(5))
