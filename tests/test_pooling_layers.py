"""Oracle tests: the pooling layers (max, average, global) against real Keras 3 on torch.

Forward values and input gradients are compared over every pool_size x strides x padding x data_format
combination of a grid for 1D and 2D (a representative grid for 3D). One known Keras-backend split:
average pooling with ``padding="same"`` divides by the count of real cells, as Keras's numpy, jax and
TensorFlow backends do; Keras's torch backend edge-replicates instead when the "same" padding is uneven,
so those cases are checked against Keras's numpy-backend ``average_pool`` and central differences.
"""

import itertools

import numpy as np
import pytest

import lamina
from lamina.autodiff import GradientTape, unwrap

pytestmark = [pytest.mark.oracle]

RTOL, ATOL = 1e-5, 1e-6
SHAPES = {1: (7,), 2: (7, 8), 3: (5, 6, 4)}
GRIDS = {  # pool sizes and strides per rank (None: strides default to pool_size)
    1: ([1, 2, 3], [None, 1, 2, 3]),
    2: ([1, 2, 3, (2, 3)], [None, 1, 2, (1, 3)]),
    3: ([2, (1, 2, 3)], [None, 1, 2]),
}


def _cases(kind):
    for dims, (pools, strides) in GRIDS.items():
        for p, s, pad, df in itertools.product(pools, strides, ["valid", "same"], ["channels_last", "channels_first"]):
            yield pytest.param(f"{kind}Pooling{dims}D", dims, p, s, pad, df, id=f"{kind}{dims}D-{p}-{s}-{pad}-{df}")


def _input(dims, df, ties, seed=0):
    rng = np.random.default_rng(seed)
    spatial = SHAPES[dims]
    shape = (2, *spatial, 3) if df == "channels_last" else (2, 3, *spatial)
    x = rng.standard_normal(shape).astype("float32")
    return np.round(x * 2) / 2 if ties else x  # half-steps make ties in many windows


def _lamina_value_and_grad(layer, x, w):
    xv = lamina.Variable(x)
    with GradientTape() as tape:
        tape.watch(xv)
        y = layer(xv)
        loss = lamina.ops.sum(y * w)
    return np.asarray(unwrap(y)), np.asarray(tape.gradient(loss, xv))


def _torch_value_and_grad(keras, layer, x, w):
    import torch  # lazy: the oracle's backend

    xt = torch.tensor(x, requires_grad=True)
    y = layer(xt)
    (y * torch.tensor(w)).sum().backward()
    return y.detach().numpy(), xt.grad.numpy()


def _uneven_same(dims, p, s):
    """Does "same" padding put more cells after than before on some axis?"""
    pools = (p,) * dims if isinstance(p, int) else p
    strides = pools if s is None else ((s,) * dims if isinstance(s, int) else s)
    for n, k, st in zip(SHAPES[dims], pools, strides):
        out = -(-n // st)
        if max((out - 1) * st + k - n, 0) % 2:
            return True
    return False


@pytest.mark.parametrize("name,dims,p,s,pad,df", [*_cases("Max"), *_cases("Average")])
def test_pooling_matches_keras_forward_and_gradient(keras, name, dims, p, s, pad, df):
    kwargs = dict(pool_size=p, strides=s, padding=pad, data_format=df)
    x = _input(dims, df, ties=name.startswith("Max"))
    layer = getattr(lamina.layers, name)(**kwargs)
    out_shape = layer.compute_output_shape(x.shape)
    w = np.random.default_rng(1).standard_normal(out_shape).astype("float32")
    y, g = _lamina_value_and_grad(layer, x, w)
    assert y.shape == out_shape == tuple(getattr(keras.layers, name)(**kwargs).compute_output_shape(x.shape))
    if name.startswith("Average") and pad == "same" and _uneven_same(dims, p, s):
        expected = _naive_average_same(x, dims, p, s, df)
        np.testing.assert_allclose(y, expected, rtol=RTOL, atol=ATOL)
        _check_central_differences(layer, x.astype("float64"), w.astype("float64"), g)
        return
    ky, kg = _torch_value_and_grad(keras, getattr(keras.layers, name)(**kwargs), x, w)
    np.testing.assert_allclose(y, ky, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(g, kg, rtol=RTOL, atol=ATOL)


def _naive_average_same(x, dims, p, s, df):
    """Average pooling with "same" padding, one window at a time: the mean of the real cells it covers
    (what Keras's numpy/jax/TensorFlow backends compute)."""
    pools = (p,) * dims if isinstance(p, int) else p
    strides = pools if s is None else ((s,) * dims if isinstance(s, int) else s)
    xl = x if df == "channels_last" else np.moveaxis(x, 1, -1)
    spatial = xl.shape[1:-1]
    outs = [-(-n // st) for n, st in zip(spatial, strides)]
    before = [max((o - 1) * st + k - n, 0) // 2 for o, st, k, n in zip(outs, strides, pools, spatial)]
    y = np.zeros((xl.shape[0], *outs, xl.shape[-1]), "float64")
    for pos in itertools.product(*map(range, outs)):
        lo = [max(i * st - b, 0) for i, st, b in zip(pos, strides, before)]
        hi = [min(i * st - b + k, n) for i, st, b, k, n in zip(pos, strides, before, pools, spatial)]
        window = xl[(slice(None), *[slice(a, c) for a, c in zip(lo, hi)])]
        y[(slice(None), *pos)] = window.mean(axis=tuple(range(1, dims + 1)))
    return y if df == "channels_last" else np.moveaxis(y, -1, 1)


def _check_central_differences(layer, x, w, g, eps=1e-3):
    """Average pooling is linear, so float64 central differences are exact up to rounding."""
    layer = type(layer).from_config({**layer.get_config(), "dtype": "float64"})
    flat = x.reshape(-1)
    numeric = np.empty_like(flat)
    for i in range(flat.size):
        up, down = flat.copy(), flat.copy()
        up[i] += eps
        down[i] -= eps
        numeric[i] = (np.sum(np.asarray(layer(up.reshape(x.shape))) * w)
                      - np.sum(np.asarray(layer(down.reshape(x.shape))) * w)) / (2 * eps)
    np.testing.assert_allclose(g.reshape(-1), numeric, rtol=1e-4, atol=1e-5)


def test_average_same_counts_only_real_cells():
    x = np.ones((1, 5, 1), "float32")
    x[0, -1, 0] = 4.0
    # windows (pool 2, stride 2, "same": 1 cell padded after): [1, 1], [1, 1], [4, pad] -> 4, not 2
    np.testing.assert_array_equal(lamina.layers.AveragePooling1D(2, padding="same")(x)[0, :, 0], [1, 1, 4])


def test_max_gradient_goes_to_first_maximum_of_each_window():
    x = np.array([[[1.0], [1.0], [0.0], [2.0], [2.0], [2.0]]], "float32")  # windows of 3: ties each
    _, g = _lamina_value_and_grad(lamina.layers.MaxPooling1D(3), x, np.ones((1, 2, 1), "float32"))
    np.testing.assert_array_equal(g[0, :, 0], [1, 0, 0, 1, 0, 0])


GLOBALS = ["GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
           "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D"]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("df", ["channels_last", "channels_first"])
@pytest.mark.parametrize("name", GLOBALS)
def test_global_pooling_matches_keras(keras, name, df, keepdims):
    dims = int(name[-2])
    x = _input(dims, df, ties="Max" in name, seed=3)
    layer = getattr(lamina.layers, name)(data_format=df, keepdims=keepdims)
    klayer = getattr(keras.layers, name)(data_format=df, keepdims=keepdims)
    out_shape = layer.compute_output_shape(x.shape)
    assert out_shape == tuple(klayer.compute_output_shape(x.shape))
    w = np.random.default_rng(2).standard_normal(out_shape).astype("float32")
    y, g = _lamina_value_and_grad(layer, x, w)
    ky, kg = _torch_value_and_grad(keras, klayer, x, w)
    assert y.shape == out_shape
    np.testing.assert_allclose(y, ky, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(g, kg, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("df", ["channels_last", "channels_first"])
def test_global_average_1d_mask_matches_keras(keras, df):
    x = _input(1, df, ties=False, seed=4)
    mask = np.array([[1, 1, 0, 1, 0, 0, 1], [1, 1, 1, 1, 1, 1, 0]], bool)
    w = np.random.default_rng(5).standard_normal((2, 3)).astype("float32")
    layer = lamina.layers.GlobalAveragePooling1D(data_format=df)
    xv = lamina.Variable(x)
    with GradientTape() as tape:
        tape.watch(xv)
        y = layer(xv, mask=mask)
        loss = lamina.ops.sum(y * w)
    g = np.asarray(tape.gradient(loss, xv))
    import torch  # lazy: the oracle's backend

    xt = torch.tensor(x, requires_grad=True)
    ky = keras.layers.GlobalAveragePooling1D(data_format=df)(xt, mask=torch.tensor(mask))
    (ky * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(np.asarray(unwrap(y)), ky.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(g, xt.grad.numpy(), rtol=RTOL, atol=ATOL)
    assert layer.supports_masking and layer.compute_mask(x, mask) is None


CONFIG_CASES = [
    ("MaxPooling1D", {}), ("MaxPooling2D", {"pool_size": (3, 2), "strides": 1, "padding": "same"}),
    ("MaxPooling3D", {"data_format": "channels_first"}), ("AveragePooling1D", {"pool_size": 4, "strides": 2}),
    ("AveragePooling2D", {"pool_size": 2, "padding": "same"}), ("AveragePooling3D", {"pool_size": 3}),
    *[(name, {"keepdims": True}) for name in GLOBALS], ("GlobalMaxPooling2D", {"data_format": "channels_first"}),
]


@pytest.mark.parametrize("name,kwargs", CONFIG_CASES)
def test_config_equals_keras_and_round_trips(keras, name, kwargs):
    ours = getattr(lamina.layers, name)(name="p", **kwargs)
    theirs = getattr(keras.layers, name)(name="p", **kwargs)
    config = ours.get_config()
    assert config == theirs.get_config()
    again = lamina.layers.deserialize(lamina.layers.serialize(ours))
    assert type(again) is type(ours) and again.get_config() == config
    assert getattr(keras.layers, name).from_config(config).get_config() == config


def test_short_aliases_are_keras_names(keras):
    for alias in ["MaxPool1D", "MaxPool2D", "MaxPool3D", "AvgPool1D", "AvgPool2D", "AvgPool3D", "GlobalAvgPool1D",
                  "GlobalAvgPool2D", "GlobalAvgPool3D", "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D"]:
        assert getattr(lamina.layers, alias).__name__ == getattr(keras.layers, alias).__name__


def test_keras_saved_model_with_pooling_loads_with_equal_predictions(keras, tmp_path):
    keras.utils.set_random_seed(0)
    L = keras.layers
    km = keras.Sequential([keras.Input((12, 10, 3)), L.Dense(4), L.MaxPooling2D(), L.AveragePooling2D(2, 1, "same"),
                           L.Reshape((6 * 5, 4)), L.MaxPooling1D(3, padding="same"), L.AveragePooling1D(2),
                           L.GlobalAveragePooling1D(keepdims=True), L.GlobalMaxPooling1D(data_format="channels_first"),
                           L.Dense(2)])
    path = tmp_path / "pool.keras"
    km.save(path)
    x = np.random.default_rng(6).standard_normal((3, 12, 10, 3)).astype("float32")
    lm = lamina.saving.load_model(path)
    np.testing.assert_allclose(lm.predict(x, verbose=0), keras.ops.convert_to_numpy(km(x)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,kwargs,message", [
    ("MaxPooling2D", {"pool_size": (2, 2, 2)}, "The `pool_size` argument must be a tuple of 2 integers"),
    ("MaxPooling1D", {"pool_size": 0}, "The `pool_size` argument must be a tuple of 1 integers"),
    ("AveragePooling2D", {"pool_size": 2, "strides": -1}, "The `strides` argument must be a tuple of 2 integers"),
    ("AveragePooling2D", {"pool_size": (2, "a")}, "including element a of type"),
    ("MaxPooling2D", {"data_format": "nhwc"}, "data_format"),
    ("GlobalMaxPooling2D", {"data_format": "nhwc"}, "data_format"),
])
def test_bad_arguments_raise_like_keras(keras, name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        getattr(keras.layers, name)(**kwargs)
    with pytest.raises(ValueError, match=message):
        getattr(lamina.layers, name)(**kwargs)


def test_bad_padding_and_too_small_input_are_named():
    with pytest.raises(ValueError, match="`padding` argument of MaxPooling2D.*Received: padding='full'"):
        lamina.layers.MaxPooling2D(padding="full")
    with pytest.raises(ValueError, match="Computed output size would be negative"):
        lamina.layers.MaxPooling2D(3).compute_output_shape((None, 2, 2, 1))
    with pytest.raises(ValueError, match="leaves no window"):
        lamina.layers.MaxPooling2D(3)(np.zeros((1, 2, 2, 1), "float32"))


def test_wrong_rank_is_refused_by_input_spec():
    with pytest.raises(ValueError):
        lamina.layers.MaxPooling2D()(np.zeros((1, 4, 4), "float32"))
    with pytest.raises(ValueError):
        lamina.layers.GlobalAveragePooling1D()(np.zeros((1, 4, 4, 1), "float32"))


@pytest.mark.parametrize("pool,strides,padding", [(2, None, "valid"), (3, 2, "same"), (2, 3, "valid")])
def test_max_pooling_with_nan_and_infinities_matches_keras(keras, pool, strides, padding):
    """NaN wins its window and takes the gradient (the last NaN when several), as torch's kernels;
    -inf and +inf windows route like any value. Covers the disjoint, overlapping and gapped paths."""
    x = _input(2, "channels_last", ties=True, seed=7)
    x[0, 0, 1, 0] = x[0, 1, 0, 0] = np.nan
    x[0, 3, 3, 1] = np.nan
    x[1, 2:4, 2:4, 2] = -np.inf
    x[1, 5, 5, 0] = np.inf
    kwargs = dict(pool_size=pool, strides=strides, padding=padding)
    layer = lamina.layers.MaxPooling2D(**kwargs)
    w = np.random.default_rng(8).standard_normal(layer.compute_output_shape(x.shape)).astype("float32")
    y, g = _lamina_value_and_grad(layer, x, w)
    ky, kg = _torch_value_and_grad(keras, keras.layers.MaxPooling2D(**kwargs), x, w)
    np.testing.assert_allclose(y, ky, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(g, kg, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("mode", ["Max", "Average"])
def test_float64_pooling_keeps_float64(mode):
    x = np.random.default_rng(9).standard_normal((2, 6, 6, 3))
    layer = getattr(lamina.layers, f"{mode}Pooling2D")(2, dtype="float64")
    xv = lamina.Variable(x, dtype="float64")
    with GradientTape() as tape:
        y = layer(xv)
        loss = lamina.ops.sum(y)
    g = np.asarray(tape.gradient(loss, xv))
    y = np.asarray(unwrap(y))
    assert y.dtype == g.dtype == np.float64
    np.testing.assert_allclose(g.sum(), y.size if mode == "Max" else x.size / 4, rtol=1e-12)
    windows = x.reshape(2, 3, 2, 3, 2, 3)
    expected = windows.max(axis=(2, 4)) if mode == "Max" else windows.mean(axis=(2, 4))
    np.testing.assert_allclose(y, expected, rtol=1e-12)
