"""EpochIterator: the one source of batches for fit, its validation, evaluate, predict and *_on_batch."""

import numpy as np
import pytest

import lamina
from lamina.models.data import EpochIterator

X = np.arange(20, dtype="float32").reshape(10, 2)
Y = np.arange(10, dtype="int64") % 3


def rows(it: EpochIterator, epoch=None) -> list:
    """The x of each batch of one epoch, checking the step numbers count from 0."""
    out = []
    for step, (x, _, _) in it.enumerate_epoch(epoch):
        assert step == len(out)
        out.append(x)
    return out


def as_sequence(batches: list):
    """A PyDataset-like object: __len__ and __getitem__ (IndexError past the end), no __iter__."""

    class Seq:
        def __len__(self):
            return len(batches)

        def __getitem__(self, i):
            return batches[i]

    return Seq()


# ----------------------------------------------------------------------------- input kinds


def test_arrays_are_sliced_in_order_with_a_short_last_batch():
    it = EpochIterator(X, Y, batch_size=4)
    assert it.arrays and it.n == 10 and it.steps == it.num_batches == 3
    batches = list(it.enumerate_epoch())
    assert [b[0].shape[0] for _, b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[0] for _, b in batches]), X)
    np.testing.assert_array_equal(np.concatenate([b[1] for _, b in batches]), Y)
    assert all(b[2] is None for _, b in batches)


@pytest.mark.parametrize("kind", ["array", "nested list", "list of arrays", "dict", "generator", "list of batches",
                                  "sequence"])
def test_each_input_kind_gives_the_same_rows(kind):
    pairs = [(X[i:i + 4], Y[i:i + 4]) for i in range(0, 10, 4)]
    x, y = {
        "array": (X, Y),
        "nested list": (X.tolist(), Y.tolist()),
        "list of arrays": ([X, X * 2], Y),
        "dict": ({"a": X, "b": X * 2}, Y),
        "generator": ((p for p in pairs), None),
        "list of batches": (pairs, None),
        "sequence": (as_sequence(pairs), None),
    }[kind]
    it = EpochIterator(x, y, batch_size=4)
    assert it.arrays == (kind in ("array", "nested list", "list of arrays", "dict"))
    got = rows(it)
    assert len(got) == 3
    first = [b["a"] if kind == "dict" else b[0] if kind == "list of arrays" else b for b in got]
    np.testing.assert_array_equal(np.concatenate(first), X)
    if kind in ("list of arrays", "dict"):
        second = [b["b"] if kind == "dict" else b[1] for b in got]
        np.testing.assert_array_equal(np.concatenate(second), X * 2)


def test_a_stream_takes_no_separate_targets_or_weights():
    pairs = [(X, Y)]
    with pytest.raises(ValueError, match=r"`y` must be None \(targets come with each batch\). Received: y of type"):
        EpochIterator(pairs, Y)
    with pytest.raises(ValueError, match=r"`sample_weight` must be None .*Received: sample_weight of type ndarray"):
        EpochIterator(pairs, sample_weight=np.ones(10))
    with pytest.raises(ValueError, match="`validation_split` is only supported for array inputs"):
        EpochIterator(pairs, validation_split=0.2)


def test_forced_kinds_and_bad_input_are_named():
    with pytest.raises(ValueError, match=r"`x` passed to evaluate must be a NumPy array.*Received: x=3"):
        EpochIterator(3, what="evaluate")
    with pytest.raises(ValueError, match=r"`x` passed to predict_on_batch must be a NumPy array .*generator"):
        EpochIterator((b for b in [X]), what="predict_on_batch", arrays=True)
    # arrays=False reads even a list as a stream of batches (fit's validation_data that is not a tuple)
    assert not EpochIterator([X, X], arrays=False).arrays


# ----------------------------------------------------------------------------- steps


def test_steps_per_epoch_shorter_than_array_data_restarts_each_epoch():
    it = EpochIterator(X, Y, batch_size=4, steps_per_epoch=2)
    assert it.steps == 2
    for _ in range(2):
        np.testing.assert_array_equal(np.concatenate(rows(it)), X[:8])


def test_steps_per_epoch_longer_than_array_data_is_capped():
    it = EpochIterator(X, Y, batch_size=4, steps_per_epoch=7)
    assert it.steps == 3 and len(rows(it)) == 3


def test_a_generator_continues_across_epochs_and_runs_dry():
    gen = (np.full((2, 2), i, "float32") for i in range(5))
    it = EpochIterator(gen, steps_per_epoch=2)
    assert [int(b[0, 0]) for b in rows(it)] == [0, 1]
    assert [int(b[0, 0]) for b in rows(it)] == [2, 3]
    assert [int(b[0, 0]) for b in rows(it)] == [4]  # ran dry: fit warns "ran out of data"
    assert rows(it) == []


def test_a_reiterable_stream_restarts_to_fill_longer_epochs():
    batches = [(np.full((2, 2), i, "float32"),) for i in range(3)]  # (x,): a bare list of arrays is multi-input
    it = EpochIterator(batches, steps_per_epoch=5)
    assert [int(b[0, 0]) for b in rows(it)] == [0, 1, 2, 0, 1]
    it = EpochIterator(as_sequence(batches), steps_per_epoch=2)
    assert [int(b[0, 0]) for b in rows(it)] == [0, 1]
    assert [int(b[0, 0]) for b in rows(it)] == [0, 1]  # a re-iterable starts over each epoch


def test_batch_size_none_is_one_batch_of_everything():
    it = EpochIterator(X, Y)
    assert it.steps == 1
    x, y, sw = it.one_batch()
    assert x is it.x and y is it.y and sw is None
    np.testing.assert_array_equal(rows(it)[0], X)


# ----------------------------------------------------------------------------- shuffle


def test_shuffle_is_a_new_permutation_each_epoch_reproducible_with_a_seed():
    def epochs(seed):
        it = EpochIterator(X, Y, batch_size=3, shuffle=True, rng=np.random.default_rng(seed))
        return [np.concatenate(rows(it)) for _ in range(2)]

    a, b = epochs(7), epochs(7)
    for e in a:
        np.testing.assert_array_equal(np.sort(e[:, 0]), X[:, 0])  # every row once
    assert not np.array_equal(a[0], X) and not np.array_equal(a[0], a[1])
    for ea, eb in zip(a, b):
        np.testing.assert_array_equal(ea, eb)
    assert not np.array_equal(epochs(8)[0], a[0])


def test_shuffle_without_an_rng_follows_lamina_seed():
    def first_epoch():
        lamina.utils.set_random_seed(5)
        return np.concatenate(rows(EpochIterator(X, Y, batch_size=4, shuffle=True)))

    np.testing.assert_array_equal(first_epoch(), first_epoch())


def test_batch_shuffle_moves_whole_batches():
    it = EpochIterator(X, Y, batch_size=4, shuffle="batch", rng=np.random.default_rng(1))
    seen = []
    for _ in range(4):
        got = rows(it)
        starts = sorted(int(b[0, 0]) // 2 for b in got)
        assert starts == [0, 4, 8]  # whole batches, each in order inside
        for b in got:
            np.testing.assert_array_equal(b, X[int(b[0, 0]) // 2:int(b[0, 0]) // 2 + len(b)])
        seen.append([int(b[0, 0]) for b in got])
    assert len({tuple(s) for s in seen}) > 1


# ----------------------------------------------------------------------------- weights, split, parts


def test_class_weight_becomes_sample_weights_for_arrays_and_streams():
    cw = {0: 0.5, 1: 2.0}  # class 2 is missing: weight 1, as in Keras
    _, _, sw = EpochIterator(X, Y, class_weight=cw).one_batch()
    np.testing.assert_array_equal(sw, np.array([0.5, 2.0, 1.0] * 3 + [0.5], "float32"))
    onehot = np.eye(3, dtype="float32")[Y]
    _, _, sw_onehot = EpochIterator(X, onehot, class_weight=cw).one_batch()
    np.testing.assert_array_equal(sw_onehot, sw)
    streamed = EpochIterator([(X[:4], Y[:4]), (X[4:], Y[4:], np.full(6, 3.0, "float32"))], class_weight=cw)
    (_, (_, _, first)), (_, (_, _, second)) = streamed.enumerate_epoch()
    np.testing.assert_array_equal(first, sw[:4])
    np.testing.assert_array_equal(second, np.full(6, 3.0))  # a batch's own weights win


def test_validation_split_holds_out_the_tail_before_class_weights():
    it = EpochIterator(X, Y, batch_size=4, validation_split=0.3, class_weight={0: 9.0})
    vx, vy, vsw = it.validation
    np.testing.assert_array_equal(vx, X[7:])
    np.testing.assert_array_equal(vy, Y[7:])
    assert vsw is None and it.n == 7 and len(it.sample_weight) == 7


def test_shard_and_block_take_this_processes_part():
    # rank 1 of 2: the second half of each global batch of 2 * 3 rows
    it = EpochIterator(X, Y, batch_size=3, shard=(1, 2))
    got = rows(it)
    assert it.steps == 2
    np.testing.assert_array_equal(np.concatenate(got), np.concatenate([X[3:6], X[9:10]]))
    it = EpochIterator(X, batch_size=2, block=lambda n: slice(4, 9))
    assert it.n == 10 and it.steps == 3  # n counts all rows; the steps cover the block
    np.testing.assert_array_equal(np.concatenate(rows(it)), X[4:9])


def test_a_bad_streamed_batch_is_named_by_step_and_epoch():
    def prepare(x, y, sw, what):
        if x.shape[0] != 4:
            raise TypeError(f"{what} wants 4 rows. Received: {x.shape[0]}")
        return x, y, sw

    it = EpochIterator([(X[:4], Y[:4]), (X[4:], Y[4:])], what="fit", prepare_batch=prepare)
    with pytest.raises(TypeError, match=r"^Batch 1 of epoch 3 given to fit is invalid: fit wants 4 rows\. Received: 6"):
        rows(it, epoch=2)
    with pytest.raises(TypeError, match=r"^Batch 1 given to fit is invalid"):
        rows(it)


def test_the_data_property_is_what_the_loops_were_given():
    it = EpochIterator(X, Y, sample_weight=np.ones(10, "float32"))
    assert it.data[0] is it.x and it.data[1] is it.y and it.data[2] is it.sample_weight
    pairs = [(X, Y)]
    stream = EpochIterator(pairs)
    assert stream.data is pairs and stream.n is None and stream.steps is None and stream.rng is None
    with pytest.raises(TypeError, match="fit takes array data as one batch.*Received: x of type list"):
        stream.one_batch()


# ----------------------------------------------------------------------------- through the model


def _model(seed=0):
    lamina.utils.set_random_seed(seed)
    model = lamina.Sequential([lamina.Input((2,)), lamina.layers.Dense(4, activation="tanh"),
                               lamina.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=lamina.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def test_fit_and_evaluate_give_the_same_numbers_for_every_input_kind():
    xs = X / 20.0
    pairs = [(xs[i:i + 4], Y[i:i + 4]) for i in range(0, 10, 4)]
    results = []
    for data in ((xs, Y), ((p for p in pairs),), (pairs,), (as_sequence(pairs),)):
        model = _model()
        history = model.fit(*data, batch_size=4, shuffle=False, epochs=1, verbose=0)
        evaluated = model.evaluate(*((xs, Y) if len(data) == 2 else (pairs,)), batch_size=4, verbose=0)
        results.append((history.history["loss"][0], evaluated, model.get_weights()))
    for loss, evaluated, weights in results[1:]:
        np.testing.assert_allclose(loss, results[0][0], rtol=1e-6)
        np.testing.assert_allclose(evaluated, results[0][1], rtol=1e-6)
        for a, b in zip(weights, results[0][2]):
            np.testing.assert_allclose(a, b, rtol=1e-6)


def test_evaluate_on_a_stream_refuses_separate_targets():
    model = _model()
    with pytest.raises(ValueError, match=r"`y` must be None \(targets come with each batch\)"):
        model.evaluate([(X, Y)], Y, verbose=0)


def test_train_on_batch_class_weight_is_the_matching_sample_weight():
    cw = {0: 0.5, 1: 2.0, 2: 3.0}
    a, b = _model(), _model()
    la = a.train_on_batch(X / 20.0, Y, class_weight=cw)
    lb = b.train_on_batch(X / 20.0, Y, sample_weight=np.array([cw[int(c)] for c in Y], "float32"))
    np.testing.assert_allclose(la, lb, rtol=1e-6)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_predict_streams_and_arrays_agree_and_batches_follow_batch_size():
    model = _model()
    seen = []
    cb = lamina.callbacks.LambdaCallback(on_predict_batch_end=lambda i, logs: seen.append(len(logs["outputs"])))
    whole = model.predict(X, batch_size=4, verbose=0, callbacks=[cb])
    assert seen == [4, 4, 2]
    streamed = model.predict(((X[i:i + 3], Y[i:i + 3]) for i in range(0, 10, 3)), verbose=0)
    np.testing.assert_allclose(streamed, whole, rtol=1e-6)
    np.testing.assert_allclose(model.predict_on_batch(X.tolist()), whole, rtol=1e-6)
