"""utils.pad_sequences against Keras's, and utils.timeseries_dataset_from_array: windows, targets, shuffling,
bounds, errors, and a model trained on it."""

import numpy as np
import pytest

import lamina
from lamina.utils import pad_sequences, timeseries_dataset_from_array
from lamina.utils.timeseries_dataset_utils import TimeseriesDataset

RNG = np.random.default_rng(3)
SEQS = [[1, 2, 3], [4, 5], [], [6, 7, 8, 9, 10, 11], [12]]
STEPS = [RNG.normal(size=(n, 2)).astype("float32") for n in (3, 1, 5, 2)]  # sequences of 2-feature steps


@pytest.mark.oracle
@pytest.mark.parametrize("kwargs", [
    {}, {"maxlen": 4}, {"maxlen": 4, "padding": "post"}, {"maxlen": 4, "truncating": "post"},
    {"maxlen": 2, "padding": "post", "truncating": "post", "value": -1},
    {"maxlen": 8, "value": 9.5, "dtype": "float32"},
    {"dtype": "int64", "maxlen": 1}, {"maxlen": 3, "dtype": "float64", "value": np.nan},
])
def test_pad_sequences_equals_keras(keras, kwargs):
    from keras.utils import pad_sequences as keras_pad  # the oracle's own function

    got, want = pad_sequences(SEQS, **kwargs), keras_pad(SEQS, **kwargs)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.oracle
@pytest.mark.parametrize("kwargs", [{}, {"maxlen": 2, "padding": "post"}, {"maxlen": 4, "truncating": "post",
                                                                            "dtype": "float32", "value": 0.5}])
def test_pad_sequences_of_vectors_and_strings_equal_keras(keras, kwargs):
    from keras.utils import pad_sequences as keras_pad  # the oracle's own function

    np.testing.assert_array_equal(pad_sequences(STEPS, **kwargs), keras_pad(STEPS, **kwargs))
    words = [["a", "bb"], ["ccc"]]
    np.testing.assert_array_equal(pad_sequences(words, dtype=object, value="_"),
                                  keras_pad(words, dtype=object, value="_"))


def test_pad_sequences_errors():
    with pytest.raises(ValueError, match="`padding` must be"):
        pad_sequences(SEQS, padding="middle")
    with pytest.raises(ValueError, match="`truncating` must be"):
        pad_sequences(SEQS, truncating="both")
    with pytest.raises(ValueError, match="list of iterables"):
        pad_sequences([[1, 2], 3])
    with pytest.raises(ValueError, match="dtype=object"):
        pad_sequences([["a"]], value="x")
    with pytest.raises(ValueError, match="same shape"):
        pad_sequences([np.ones((2, 3)), np.ones((2, 4))])


def _windows(data, starts, length, rate):
    return np.stack([data[s:s + length * rate:rate] for s in starts])


def test_windows_and_targets_in_order():
    data = np.arange(100)
    ds = timeseries_dataset_from_array(data, data * 2, sequence_length=9, batch_size=5)
    assert isinstance(ds, TimeseriesDataset) and isinstance(ds, lamina.utils.PyDataset)
    batches = list(ds)
    assert len(batches) == len(ds) == 19  # 92 windows: 18 batches of 5 and one of 2
    assert batches[-1][0].shape == (2, 9)
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    np.testing.assert_array_equal(x, _windows(data, range(92), 9, 1))
    np.testing.assert_array_equal(y, np.arange(92) * 2)


@pytest.mark.parametrize("stride,rate,start,end", [(1, 1, None, None), (3, 2, None, None), (2, 1, 10, 60),
                                                    (4, 3, 5, None), (1, 5, None, 80)])
def test_stride_sampling_rate_and_bounds(stride, rate, start, end):
    data = RNG.normal(size=(100, 3)).astype("float32")
    targets = np.arange(100)
    ds = timeseries_dataset_from_array(data, targets, sequence_length=6, sequence_stride=stride,
                                       sampling_rate=rate, batch_size=7, start_index=start, end_index=end)
    s, e = start or 0, end or 100
    starts = [s + p for p in range(0, e - s - 5 * rate, stride)]
    x = np.concatenate([b[0] for b in ds])
    np.testing.assert_array_equal(x, _windows(data, starts, 6, rate))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in ds]), starts)
    assert x.shape[0] == len(starts) and (not starts or starts[-1] + 5 * rate < e)  # no step at or past end_index


def test_regression_targets_and_no_targets_and_unbatched():
    data = np.arange(10)
    ds = timeseries_dataset_from_array(data, data[3:], sequence_length=3, batch_size=1)
    assert len(ds) == 7
    for i, (x, y) in enumerate(ds):
        np.testing.assert_array_equal(x[0], data[i:i + 3])
        assert y[0] == data[i + 3]
    no_targets = timeseries_dataset_from_array(np.arange(50), None, sequence_length=10, batch_size=5)
    assert [b.shape for b in no_targets][-1] == (1, 10) and len(no_targets) == 9
    single = timeseries_dataset_from_array(np.arange(20), None, sequence_length=4, batch_size=None)
    assert len(single) == 17 and single[0].shape == (4,)


def test_shuffle_is_seeded_and_redrawn_each_pass():
    data = np.arange(40)

    def make():
        return timeseries_dataset_from_array(data, data * 2, sequence_length=5, batch_size=4, shuffle=True, seed=123)

    ds = make()
    first = np.concatenate([x for x, _ in ds])
    for x, y in ds:
        np.testing.assert_array_equal(x[:, 0] * 2, y)  # windows keep their own targets
    second = np.concatenate([x for x, _ in ds])
    assert sorted(map(tuple, first)) == sorted(map(tuple, _windows(data, range(36), 5, 1)))
    assert not np.array_equal(first, second)  # a new pass, a new order
    np.testing.assert_array_equal(np.concatenate([x for x, _ in make()]), first)  # same seed, same order
    (x1, _), = list(make().take(1))
    np.testing.assert_array_equal(x1, first[:4])
    ds.on_epoch_end()  # fit's epochs redraw too
    assert not np.array_equal(np.concatenate([ds[i][0] for i in range(len(ds))]), second)


def test_fit_takes_the_dataset():
    t = np.linspace(0, 20, 400).astype("float32")
    series = np.sin(t)[:, None]
    ds = timeseries_dataset_from_array(series[:-8], series[8:, 0], sequence_length=8, batch_size=32, shuffle=True,
                                       seed=0)
    model = lamina.Sequential([lamina.Input((8, 1)), lamina.layers.Flatten(),
                               lamina.layers.Dense(16, activation="tanh"), lamina.layers.Dense(1)])
    model.compile(optimizer=lamina.optimizers.Adam(0.01), loss="mse")
    history = model.fit(ds, epochs=15, verbose=0)
    assert history.history["loss"][-1] < 0.1 * history.history["loss"][0]
    assert model.predict(ds, verbose=0).shape == (len(ds._positions), 1)


@pytest.mark.parametrize("kwargs,match", [
    ({"start_index": -1}, "`start_index` must be 0 or greater"), ({"start_index": 11}, "`start_index` must be lower"),
    ({"end_index": -1}, "`end_index` must be higher than 0"), ({"end_index": 11}, "`end_index` must be lower"),
    ({"start_index": 5, "end_index": 4}, "`end_index` must be higher than `start_index`"),
    ({"sampling_rate": 0}, "`sampling_rate` must be higher than 0"),
    ({"sequence_stride": 0}, "`sequence_stride` must be higher than 0"),
    ({"sequence_stride": 10}, "`sequence_stride` must be lower"), ({"format": "torch"}, "`format` should be"),
    ({"batch_size": 0}, "`batch_size` must be a positive integer"),
])
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        timeseries_dataset_from_array(np.arange(10), None, 3, **kwargs)


def test_batch_index_out_of_range():
    ds = timeseries_dataset_from_array(np.arange(10), None, 3, batch_size=3)
    np.testing.assert_array_equal(ds[-1], [[6, 7, 8], [7, 8, 9]])
    with pytest.raises(IndexError, match=r"has 3 batches. Received: index=3"):
        ds[3]
