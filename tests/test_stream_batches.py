"""Streamed batches as Keras takes them: a list batch is a tuple ``[x, y]``, and leaves that convert
themselves to arrays (``__array__``, e.g. torch tensors from a DataLoader) are array data."""

import numpy as np
import pytest

import lamina


def _data():
    rng = np.random.default_rng(0)
    return rng.random((12, 3)).astype("float32"), rng.random((12, 2)).astype("float32")


def _trained(data, **fit_kwargs):
    lamina.utils.set_random_seed(7)
    model = lamina.Sequential([lamina.Input((3,)), lamina.layers.Dense(2)])
    model.compile(optimizer=lamina.optimizers.SGD(0.1), loss="mse")
    history = model.fit(data, epochs=2, verbose=0, **fit_kwargs).history["loss"]
    return model, history


class _ConvertsItself:
    """A minimal array-convertible object (the protocol torch tensors and pandas frames follow)."""

    def __init__(self, array):
        self.array = array

    def __array__(self, dtype=None, copy=None):
        return self.array if dtype is None else self.array.astype(dtype)


def test_list_batches_and_self_converting_leaves_train_like_arrays():
    x, y = _data()
    want_model, want = _trained(x, y=y, batch_size=4, shuffle=False)
    batches = [[_ConvertsItself(x[i:i + 4]), _ConvertsItself(y[i:i + 4])] for i in range(0, 12, 4)]
    got_model, got = _trained(batches)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    for a, b in zip(got_model.get_weights(), want_model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_a_torch_dataloader_trains_and_predicts():
    torch = pytest.importorskip("torch")
    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                                         batch_size=4, shuffle=False)
    want_model, want = _trained(x, y=y, batch_size=4, shuffle=False)
    got_model, got = _trained(loader)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(got_model.predict(torch.from_numpy(x), verbose=0), want_model.predict(x, verbose=0),
                               rtol=1e-6)


def test_a_list_batch_of_four_is_refused_with_its_length():
    x, y = _data()
    with pytest.raises(ValueError, match="tuple of length 4"):
        _trained([[x, y, y, y]])
