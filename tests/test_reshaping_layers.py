"""Flatten and Reshape: harness, Keras oracle, gradients, bad arguments."""

import numpy as np
import pytest

import lamina
from lamina.layers.flatten import Flatten
from lamina.layers.reshape import Reshape
from tests.helpers import check_gradients, random_inputs, run_layer_test


@pytest.mark.parametrize("kwargs,shape,out", [
    ({}, (2, 3, 4), (2, 12)),
    ({}, (2, 3, 4, 5), (2, 60)),
    ({}, (5,), (5, 1)),
    ({"data_format": "channels_first"}, (2, 3, 4, 5), (2, 60)),
])
def test_flatten_harness(kwargs, shape, out):
    run_layer_test(Flatten, kwargs, shape, out)


@pytest.mark.parametrize("target,shape,out", [
    ((3, 4), (2, 12), (2, 3, 4)),
    ((-1, 2), (2, 3, 4), (2, 6, 2)),
    ((4, -1, 1), (3, 8), (3, 4, 2, 1)),
    ((12,), (2, 3, 4), (2, 12)),
])
def test_reshape_harness(target, shape, out):
    run_layer_test(Reshape, {"target_shape": target}, shape, out)


def test_flatten_channels_first_order():
    x = random_inputs((2, 3, 4, 5))
    y = Flatten(data_format="channels_first")(x)
    np.testing.assert_array_equal(y, np.transpose(x, (0, 2, 3, 1)).reshape(2, -1))
    np.testing.assert_array_equal(Flatten()(x), x.reshape(2, -1))


def test_symbolic_shapes_with_unknown_dims():
    assert Flatten().compute_output_shape((None, 3, None)) == (None, None)
    assert Reshape((-1, 2)).compute_output_shape((None, None, 4)) == (None, None, 2)
    assert Reshape((-1, 2)).compute_output_shape((None, 3, 4)) == (None, 6, 2)


def test_gradients():
    x = random_inputs((2, 3, 4), seed=1)
    check_gradients(lambda v: Flatten(data_format="channels_first", dtype="float64")(v), x, empty_batch=True)
    check_gradients(lambda v: Reshape((4, -1), dtype="float64")(v), x, empty_batch=True)


def test_reshape_bad_target_size_names_layer_and_shapes():
    layer = Reshape((5, 5), name="resh")
    with pytest.raises(ValueError, match=r"Reshape layer 'resh'.*\(3, 4\).*target_shape=\(5, 5\)"):
        layer(np.zeros((2, 3, 4), "float32"))
    with pytest.raises(ValueError, match=r"Reshape layer .*\(7,\).*target_shape=\(-1, 2\)"):
        Reshape((-1, 2))(np.zeros((2, 7), "float32"))
    with pytest.raises(ValueError, match=r"Reshape layer .*Received: input_shape=\(None, 6\)"):
        Reshape((4,)).compute_output_shape((None, 6))


@pytest.mark.parametrize("target", [(-1, -1), (0, 3), (2.5,), ("a",), 3])
def test_reshape_bad_target_shape(target):
    with pytest.raises(ValueError, match="Reshape.*target_shape"):
        Reshape(target)


def test_flatten_bad_data_format():
    with pytest.raises(ValueError, match="Flatten.*Received: data_format='nhwc'"):
        Flatten(data_format="nhwc")
    with pytest.raises(ValueError, match="flatten.*min_ndim=1.*Received: input_shape=\\(\\)"):
        Flatten()(np.float32(1.0))


@pytest.mark.oracle
@pytest.mark.parametrize("cls_name,kwargs,shape", [
    ("Flatten", {}, (2, 3, 4)),
    ("Flatten", {"data_format": "channels_first"}, (2, 3, 4, 5)),
    ("Flatten", {}, (4,)),
    ("Reshape", {"target_shape": (-1, 3)}, (2, 4, 3)),
    ("Reshape", {"target_shape": (2, 2, 3)}, (2, 12)),
])
def test_matches_keras(keras, cls_name, kwargs, shape):
    ours = {"Flatten": Flatten, "Reshape": Reshape}[cls_name](**kwargs)
    theirs = getattr(keras.layers, cls_name)(**kwargs)
    x = random_inputs(shape, seed=2)
    np.testing.assert_array_equal(ours(x), keras.ops.convert_to_numpy(theirs(x)))
    sym = (None,) + shape[1:]
    assert tuple(ours.compute_output_shape(sym)) == tuple(theirs.compute_output_shape(sym))
    kcfg, lcfg = theirs.get_config(), ours.get_config()
    assert set(kcfg) == set(lcfg)
    assert {k: v for k, v in kcfg.items() if k != "name"} == {k: v for k, v in lcfg.items() if k != "name"}
    type(ours).from_config(kcfg)
    type(theirs).from_config(lcfg)


def test_data_format_none_follows_the_global_image_data_format():
    """``data_format=None`` reads ``keras.config.image_data_format()`` when the layer is made, as Keras."""
    lamina.config.set_image_data_format("channels_first")
    try:
        layer = lamina.layers.MaxPooling2D(2)
        flat = lamina.layers.Flatten()
    finally:
        lamina.config.set_image_data_format("channels_last")
    assert layer.data_format == "channels_first"
    assert flat.data_format == "channels_first"
    x = np.arange(16, dtype="float32").reshape(1, 1, 4, 4)
    assert layer(x).shape == (1, 1, 2, 2)
