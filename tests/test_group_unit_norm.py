"""GroupNormalization and UnitNormalization against real Keras 3 (torch backend), and BatchNormalization over
the channels of convolutional feature maps (axis -1 and 1 of 3-D, 4-D and 5-D inputs): forward values,
gradients (Keras's and central differences in float64), moving statistics, configs, `.keras` files, errors."""

import json

import numpy as np
import pytest

import lamina
from lamina import layers
from tests.helpers import check_layer_gradients, keras_forward_and_grads, lamina_forward_and_grads, random_inputs


def _own(config: dict) -> dict:
    return {k: v for k, v in json.loads(json.dumps(config)).items() if k not in ("name", "dtype")}


def _pair(keras, name, kwargs, x):
    """The lamina and Keras layers built on ``x`` with the same (random) weights."""
    ours, theirs = getattr(layers, name)(**kwargs), getattr(keras.layers, name)(**kwargs)
    theirs(x)
    ours(x)
    rng = np.random.default_rng(11)
    weights = [rng.standard_normal(w.shape).astype("float32") for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    return ours, theirs


# ---------------------------------------------------------------------------------- GroupNormalization

GROUP_CASES = [
    ({"groups": 2}, (3, 8)),
    ({"groups": 4}, (2, 5, 8)),
    ({"groups": 1}, (2, 4, 5, 6)),
    ({"groups": -1}, (2, 4, 5, 6)),
    ({"groups": 3, "axis": 1}, (2, 6, 4, 5)),
    ({"groups": 2, "axis": 1}, (2, 4, 3, 2, 3)),
    ({"groups": 2, "axis": 2}, (2, 3, 4, 5)),
    ({"groups": 2, "axis": -2}, (2, 3, 4, 5)),
    ({"groups": 3, "center": False, "epsilon": 1e-1}, (2, 4, 6)),
    ({"groups": 3, "scale": False}, (2, 4, 6)),
    ({"groups": 2, "scale": False, "center": False}, (2, 3, 3, 4)),
]
GROUP_IDS = [f"{k}-{s}" for k, s in GROUP_CASES]


@pytest.mark.parametrize("kwargs,shape", GROUP_CASES, ids=GROUP_IDS)
def test_group_norm_forward_and_gradients_match_keras(keras, kwargs, shape):
    x = random_inputs(shape, seed=3) * 2 + 1
    ours, theirs = _pair(keras, "GroupNormalization", kwargs, x)
    proj = random_inputs(shape, seed=4)
    ky, kdx, kdw = keras_forward_and_grads(theirs, x, proj)
    ly, ldx, ldw = lamina_forward_and_grads(ours, x, proj)
    np.testing.assert_allclose(ly, ky, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ldx, kdx, rtol=1e-4, atol=1e-4)
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    for a, b in zip(ldw, kdw, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert _own(ours.get_config()) == _own(theirs.get_config())
    again = layers.GroupNormalization.from_config(theirs.get_config())
    again(x)
    again.set_weights(theirs.get_weights())
    np.testing.assert_allclose(again(x), ky, rtol=1e-4, atol=1e-5)
    assert _own(keras.layers.GroupNormalization.from_config(ours.get_config()).get_config()) == _own(
        theirs.get_config())


@pytest.mark.parametrize("kwargs,shape", GROUP_CASES, ids=GROUP_IDS)
def test_group_norm_gradients_match_central_differences(kwargs, shape):
    layer = layers.GroupNormalization(**kwargs, dtype="float64", gamma_initializer="random_normal",
                                      beta_initializer="random_normal")
    check_layer_gradients(layer, random_inputs(shape, seed=5, dtype="float64"))


def test_group_norm_formula_and_dtypes():
    x = random_inputs((2, 3, 6), seed=1).astype("float64")
    layer = layers.GroupNormalization(groups=2, epsilon=1e-3)
    y = layer(x)
    assert y.dtype == np.float32  # the compute dtype, though the layer does not autocast its input
    g = x.reshape(2, 3, 2, 3)
    mean, var = g.mean(axis=(1, 3), keepdims=True), g.var(axis=(1, 3), keepdims=True)
    np.testing.assert_allclose(y, ((g - mean) / np.sqrt(var + 1e-3)).reshape(2, 3, 6), rtol=1e-5, atol=1e-6)
    half = layers.GroupNormalization(groups=2, dtype="float16")(x.astype("float16") * 300)
    assert half.dtype == np.float16 and np.isfinite(half).all()  # statistics in float32: no overflow
    assert layers.GroupNormalization(groups=3)(np.arange(12).reshape(2, 6)).dtype == np.float32


def test_group_norm_keras_file_both_ways(keras, tmp_path):
    x = random_inputs((3, 5, 5, 4), seed=2)
    theirs = keras.Sequential([keras.Input((5, 5, 4)),
                               keras.layers.GroupNormalization(2, beta_initializer="random_normal",
                                                               gamma_initializer="random_normal"),
                               keras.layers.UnitNormalization(axis=[1, 2]), keras.layers.Dense(2)])
    theirs.save(str(tmp_path / "k.keras"))
    ours = lamina.saving.load_model(str(tmp_path / "k.keras"))
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    ours.save(str(tmp_path / "l.keras"))
    back = keras.saving.load_model(str(tmp_path / "l.keras"))
    np.testing.assert_allclose(back.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


def test_group_norm_one_training_step_equals_keras(keras):
    x = random_inputs((8, 6, 6, 4), seed=8)
    y = random_inputs((8, 2), seed=9)
    keras.utils.set_random_seed(0)
    theirs = keras.Sequential([keras.Input((6, 6, 4)), keras.layers.GroupNormalization(2), keras.layers.Flatten(),
                               keras.layers.Dense(2)])
    ours = lamina.Sequential([layers.Input((6, 6, 4)), layers.GroupNormalization(2), layers.Flatten(),
                              layers.Dense(2)])
    ours.set_weights(theirs.get_weights())
    theirs.compile(keras.optimizers.SGD(0.1), "mse")
    ours.compile(lamina.optimizers.SGD(0.1), "mse")
    theirs.train_on_batch(x, y)
    ours.train_on_batch(x, y)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs,shape,message", [
    ({"groups": 3}, (2, 4), r"Number of groups \(3\) must be a multiple of the number of channels \(4\)"),
    ({"groups": 8}, (2, 4), r"Number of groups \(8\) cannot be more than the number of channels \(4\)"),
])
def test_group_norm_build_errors_like_keras(keras, kwargs, shape, message):
    x = np.zeros(shape, "float32")
    with pytest.raises(ValueError, match=message):
        keras.layers.GroupNormalization(**kwargs)(x)
    with pytest.raises(ValueError, match=message):
        layers.GroupNormalization(**kwargs)(x)


def test_group_norm_axis_out_of_bounds(keras):
    message = r"Axis 3 is out of bounds for input shape \(2, 4\)"
    with pytest.raises(ValueError, match=message):
        keras.layers.GroupNormalization(2, axis=3).compute_output_shape((2, 4))
    with pytest.raises(ValueError, match=message):
        layers.GroupNormalization(2, axis=3).compute_output_shape((2, 4))
    with pytest.raises(ValueError, match=message):  # Keras fails here with an IndexError from the shape
        layers.GroupNormalization(2, axis=3)(np.zeros((2, 4), "float32"))


def test_group_norm_bad_groups_and_unknown_channels(keras):
    for groups in (0, -2, 2.0, "2"):
        with pytest.raises(ValueError, match="Received: groups="):
            keras.layers.GroupNormalization(groups)
        with pytest.raises(ValueError, match="invalid value for argument `groups`.*Received: groups="):
            layers.GroupNormalization(groups)
    with pytest.raises(ValueError, match="should have a defined dimension"):
        layers.GroupNormalization(2)(layers.Input((None,)))


# ---------------------------------------------------------------------------------- UnitNormalization

UNIT_CASES = [({}, (3, 5)), ({"axis": 1}, (2, 4, 3)), ({"axis": [1, 2]}, (2, 3, 4)), ({"axis": (-1, 1)}, (2, 3, 4, 2)),
              ({"axis": [1, 2, 3]}, (2, 2, 3, 2))]


@pytest.mark.parametrize("kwargs,shape", UNIT_CASES, ids=[str(c) for c in UNIT_CASES])
def test_unit_norm_matches_keras(keras, kwargs, shape):
    ours, theirs = layers.UnitNormalization(**kwargs), keras.layers.UnitNormalization(**kwargs)
    x = random_inputs(shape, seed=1)
    x[0] = 0.0  # an all-zero sample stays zero, with a finite gradient
    proj = random_inputs(shape, seed=2)
    ky, kdx, _ = keras_forward_and_grads(theirs, x, proj)
    ly, ldx, _ = lamina_forward_and_grads(ours, x, proj)
    np.testing.assert_allclose(ly, ky, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ldx[1:], kdx[1:], rtol=1e-4, atol=1e-5)
    assert np.isfinite(ldx).all()
    assert _own(ours.get_config()) == _own(theirs.get_config())
    assert _own(layers.UnitNormalization.from_config(theirs.get_config()).get_config()) == _own(theirs.get_config())
    axes = tuple(np.atleast_1d(kwargs.get("axis", -1)) % len(shape))
    np.testing.assert_allclose(np.sum(ly[1:] ** 2, axis=axes), 1.0, rtol=1e-5)


@pytest.mark.parametrize("kwargs,shape", UNIT_CASES, ids=[str(c) for c in UNIT_CASES])
def test_unit_norm_gradients_match_central_differences(kwargs, shape):
    check_layer_gradients(layers.UnitNormalization(**kwargs, dtype="float64"),
                          random_inputs(shape, seed=3, dtype="float64"))


def test_unit_norm_integer_inputs_and_errors(keras):
    out = layers.UnitNormalization()(np.array([[3, 4]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8]])
    for axis in ("a", 1.5, None):
        with pytest.raises(TypeError, match="Received: axis="):
            keras.layers.UnitNormalization(axis=axis)
        with pytest.raises(TypeError, match="Invalid value for `axis` argument.*Received: axis="):
            layers.UnitNormalization(axis=axis)
    with pytest.raises(ValueError, match=r"Axis 2 is out of bounds for input shape \(2, 3\)"):
        keras.layers.UnitNormalization(axis=2).compute_output_shape((2, 3))
    with pytest.raises(ValueError, match=r"Axis 2 is out of bounds for input shape \(2, 3\)"):
        layers.UnitNormalization(axis=2).compute_output_shape((2, 3))
    with pytest.raises(ValueError, match="out of bounds"):
        layers.UnitNormalization(axis=[1, 4])(np.ones((2, 3), "float32"))


# ------------------------------------------------------------- BatchNormalization over conv channels

BN_CASES = [(axis, shape) for shape in ((4, 6, 3), (3, 5, 4, 3), (2, 3, 4, 3, 3)) for axis in (-1, 1)]


@pytest.mark.parametrize("axis,shape", BN_CASES, ids=[f"axis{a}-{s}" for a, s in BN_CASES])
def test_batch_norm_over_feature_map_channels_matches_keras(keras, axis, shape):
    init = {"gamma_initializer": "random_normal", "beta_initializer": "random_normal",
            "moving_mean_initializer": "random_normal", "moving_variance_initializer": "ones"}
    theirs = keras.layers.BatchNormalization(axis=axis, momentum=0.7, **init)
    ours = layers.BatchNormalization(axis=axis, momentum=0.7)
    x = random_inputs(shape, seed=5) * 3 + 1
    theirs(x)
    ours(x)
    ours.set_weights(theirs.get_weights())
    assert [w.shape for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    proj = random_inputs(shape, seed=6)
    ky, kdx, kdw = keras_forward_and_grads(theirs, x, proj, training=False)
    ly, ldx, ldw = lamina_forward_and_grads(ours, x, proj, training=False)
    np.testing.assert_allclose(ly, ky, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ldx, kdx, rtol=1e-4, atol=1e-5)
    for step in range(3):  # training: batch statistics, gradients through them, moving statistics
        xs = random_inputs(shape, seed=20 + step) * 2 - 1
        ky, kdx, kdw = keras_forward_and_grads(theirs, xs, proj, training=True)
        ly, ldx, ldw = lamina_forward_and_grads(ours, xs, proj, training=True)
        np.testing.assert_allclose(ly, ky, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(ldx, kdx, rtol=1e-3, atol=1e-4)
        for a, b in zip(ldw, kdw, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
        for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("axis,shape", BN_CASES, ids=[f"axis{a}-{s}" for a, s in BN_CASES])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_over_feature_maps_gradients_match_central_differences(axis, shape, training):
    layer = layers.BatchNormalization(axis=axis, dtype="float64", gamma_initializer="random_normal",
                                      beta_initializer="random_normal")
    check_layer_gradients(layer, random_inputs(shape, seed=7, dtype="float64"), training=training,
                          empty_batch=not training)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_conv_batch_norm_model_trains_like_keras(keras, data_format):
    axis = -1 if data_format == "channels_last" else 1
    shape = (6, 6, 2) if data_format == "channels_last" else (2, 6, 6)
    x, y = random_inputs((8, *shape), seed=1), random_inputs((8, 3), seed=2)

    def build(lib):
        return lib.Sequential([lib.Input(shape), lib.layers.Conv2D(4, 3, data_format=data_format),
                               lib.layers.BatchNormalization(axis=axis), lib.layers.Activation("relu"),
                               lib.layers.GlobalAveragePooling2D(data_format=data_format), lib.layers.Dense(3)])

    keras.utils.set_random_seed(0)
    theirs, ours = build(keras), build(lamina)
    ours.set_weights(theirs.get_weights())
    theirs.compile(keras.optimizers.SGD(0.05), "mse")
    ours.compile(lamina.optimizers.SGD(0.05), "mse")
    for _ in range(2):
        theirs.train_on_batch(x, y)
        ours.train_on_batch(x, y)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


def test_legacy_h5_model_with_the_new_layers_loads(keras, tmp_path):
    L = keras.layers
    theirs = keras.Sequential([keras.Input((9, 8, 4)), L.Rescaling(0.5, 1.0), L.Resizing(7, 6), L.CenterCrop(5, 5),
                               L.GroupNormalization(2, gamma_initializer="random_normal"), L.UnitNormalization(),
                               L.SpatialDropout2D(0.3), L.Flatten(), L.Dense(2)])
    path = str(tmp_path / "legacy.h5")
    theirs.save(path)
    ours = lamina.saving.load_model(path)
    x = random_inputs((2, 9, 8, 4), seed=4)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
