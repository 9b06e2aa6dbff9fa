"""ReLU, LeakyReLU, PReLU, ELU and Softmax layers: harness, Keras oracle, gradients, bad arguments."""

import numpy as np
import pytest

from lamina.layers.elu import ELU
from lamina.layers.leaky_relu import LeakyReLU
from lamina.layers.prelu import PReLU
from lamina.layers.relu import ReLU
from lamina.layers.softmax import Softmax
from tests.helpers import (
    check_gradients,
    check_layer_gradients,
    keras_forward_and_grads,
    lamina_forward_and_grads,
    random_inputs,
    run_layer_test,
)

# ----------------------------------------------------------------------------- harness


@pytest.mark.parametrize("kwargs", [
    {}, {"max_value": 1.0}, {"negative_slope": 0.1, "threshold": 0.5, "max_value": 2.0},
])
def test_relu_harness(kwargs):
    run_layer_test(ReLU, kwargs, (3, 4), (3, 4))


def test_leaky_relu_harness():
    run_layer_test(LeakyReLU, {"negative_slope": 0.1}, (3, 2, 4), (3, 2, 4))


def test_elu_harness():
    run_layer_test(ELU, {"alpha": 0.7}, (3, 4), (3, 4))


@pytest.mark.parametrize("kwargs", [{}, {"axis": 1}, {"axis": [1, 2]}])
def test_softmax_harness(kwargs):
    run_layer_test(Softmax, kwargs, (2, 3, 4), (2, 3, 4))


@pytest.mark.parametrize("kwargs,alpha_shape", [
    ({}, (3, 4)),
    ({"shared_axes": [1]}, (1, 4)),
    ({"shared_axes": 2, "alpha_initializer": "ones"}, (3, 1)),
])
def test_prelu_harness(kwargs, alpha_shape):
    layer = run_layer_test(PReLU, kwargs, (2, 3, 4), (2, 3, 4), expected_num_trainable_weights=1)
    assert layer.alpha.shape == alpha_shape


# ----------------------------------------------------------------------------- formulas


def test_leaky_relu_layer_default_slope_is_0_3():
    x = np.array([[-2.0, 0.0, 3.0]], dtype="float32")
    np.testing.assert_allclose(LeakyReLU()(x), [[-0.6, 0.0, 3.0]], rtol=1e-6)
    assert LeakyReLU().negative_slope == 0.3


def test_leaky_relu_accepts_legacy_alpha():
    with pytest.warns(UserWarning, match="alpha"):
        layer = LeakyReLU(alpha=0.5)
    assert layer.negative_slope == 0.5
    np.testing.assert_allclose(layer(np.array([-2.0], "float32")), [-1.0])


def test_relu_formula():
    x = np.array([-3.0, -1.0, 0.2, 0.7, 1.5, 4.0], dtype="float32")
    y = ReLU(max_value=2.0, negative_slope=0.5, threshold=0.5)(x)
    expected = np.where(x >= 2.0, 2.0, np.where(x >= 0.5, x, 0.5 * (x - 0.5)))
    np.testing.assert_allclose(y, expected, rtol=1e-6)


def test_elu_extreme_inputs_are_finite_without_warnings():
    x = np.array([-1e4, -50.0, 0.0, 50.0, 1e4], dtype="float32")
    with np.errstate(all="raise"):
        y = ELU(alpha=2.0)(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [-2.0, -2.0, 0.0, 50.0, 1e4], rtol=1e-6)


def test_softmax_extreme_inputs_and_mask():
    x = np.array([[1e4, -1e4, 0.0, 3.0]], dtype="float32")
    with np.errstate(all="raise"):
        y = Softmax()(x)
    np.testing.assert_allclose(y, [[1.0, 0.0, 0.0, 0.0]], atol=1e-7)
    x = np.array([[1.0, 2.0, 3.0, 4.0]], dtype="float32")
    mask = np.array([[True, False, True, False]])
    y = Softmax()(x, mask=mask)
    e = np.exp([1.0, 3.0])
    np.testing.assert_allclose(y, [[e[0] / e.sum(), 0, e[1] / e.sum(), 0]], rtol=1e-6)


# ----------------------------------------------------------------------------- gradient checks


@pytest.mark.parametrize("shared_axes", [None, [1], [1, 2]])
def test_prelu_gradcheck(shared_axes):
    x = random_inputs((3, 2, 4), seed=3)
    layer = PReLU(alpha_initializer="random_normal", shared_axes=shared_axes, dtype="float64")
    layer(x.astype("float64"))
    check_layer_gradients(layer, x)


@pytest.mark.parametrize("cls,kwargs", [
    (ReLU, {"max_value": 1.0, "negative_slope": 0.2, "threshold": 0.3}),
    (LeakyReLU, {}),
    (ELU, {"alpha": 1.5}),
    (Softmax, {"axis": 1}),
    (Softmax, {"axis": [1, 2]}),
])
def test_activation_layer_gradcheck(cls, kwargs):
    x = random_inputs((2, 3, 4), seed=4)
    check_layer_gradients(cls(dtype="float64", **kwargs), x)


def test_softmax_masked_gradcheck():
    x = random_inputs((2, 5), seed=5).astype("float64")
    mask = np.array([[1, 1, 0, 1, 0], [0, 1, 1, 1, 1]], dtype="float32")
    layer = Softmax(dtype="float64")
    check_gradients(lambda v: layer(v, mask=mask), x)


# ----------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("kwargs,arg", [
    ({"max_value": -1.0}, "max_value"),
    ({"negative_slope": -0.1}, "negative_slope"),
    ({"threshold": None}, "threshold"),
    ({"negative_slope": "big"}, "negative_slope"),
])
def test_relu_bad_args(kwargs, arg):
    with pytest.raises(ValueError, match=rf"ReLU.*Received: {arg}="):
        ReLU(**kwargs)


def test_other_bad_args():
    with pytest.raises(ValueError, match="LeakyReLU.*Received: negative_slope=-1"):
        LeakyReLU(negative_slope=-1)
    with pytest.raises(ValueError, match="ELU.*Received: alpha='x'"):
        ELU(alpha="x")
    with pytest.raises(ValueError, match="Softmax.*Received: axis=1.5"):
        Softmax(axis=1.5)
    with pytest.raises(ValueError, match="PReLU.*Received: shared_axes=0"):
        PReLU(shared_axes=0)
    with pytest.raises(ValueError, match="PReLU layer .*shared_axes.*Received: input_shape"):
        PReLU(shared_axes=[3])(np.zeros((2, 3), "float32"))
    msg = r"Softmax layer .*mask.*Received: inputs.shape=\(2, 3\), mask.shape=\(4,\)"
    with pytest.raises(ValueError, match=msg):
        Softmax()(np.zeros((2, 3), "float32"), mask=np.ones(4, bool))
    msg = r"Softmax layer .*must not have more dimensions.*\(3 > 2\).*mask.shape=\(1, 2, 3\)"
    with pytest.raises(ValueError, match=msg):
        Softmax()(np.zeros((2, 3), "float32"), mask=np.ones((1, 2, 3), bool))


def test_prelu_rejects_other_feature_sizes_after_build():
    layer = PReLU()
    layer(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="p_re_lu.*Received: input_shape=\\(2, 4\\)"):
        layer(np.zeros((2, 4), "float32"))


# ----------------------------------------------------------------------------- Keras oracle


@pytest.mark.oracle
@pytest.mark.parametrize("cls_name,kwargs", [
    ("ReLU", {}),
    ("ReLU", {"max_value": 1.5, "negative_slope": 0.2, "threshold": 0.25}),
    ("LeakyReLU", {}),
    ("LeakyReLU", {"negative_slope": 0.05}),
    ("ELU", {"alpha": 0.5}),
    ("Softmax", {}),
    ("Softmax", {"axis": 1}),
    ("Softmax", {"axis": [1, 2]}),
])
def test_activation_layers_match_keras(keras, cls_name, kwargs):
    ours_cls = {"ReLU": ReLU, "LeakyReLU": LeakyReLU, "ELU": ELU, "Softmax": Softmax}[cls_name]
    theirs = getattr(keras.layers, cls_name)(**kwargs)
    ours = ours_cls(**kwargs)
    x = random_inputs((3, 4, 5), seed=7) * 2
    proj = random_inputs((3, 4, 5), seed=8)
    ky, kdx, _ = keras_forward_and_grads(theirs, x, proj)
    ly, ldx, _ = lamina_forward_and_grads(ours, x, proj)
    np.testing.assert_allclose(ly, ky, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ldx, kdx, rtol=1e-5, atol=1e-6)
    # Keras's config keys are ours; each side builds from the other's config.
    kcfg, lcfg = theirs.get_config(), ours.get_config()
    assert set(kcfg) <= set(lcfg)
    ours_cls.from_config(kcfg)
    getattr(keras.layers, cls_name).from_config(lcfg)


@pytest.mark.oracle
def test_softmax_mask_matches_keras(keras):
    x = random_inputs((2, 6), seed=9)
    mask = np.array([[1, 0, 1, 1, 0, 1], [1, 1, 1, 0, 0, 0]], dtype=bool)
    ky = keras.ops.convert_to_numpy(keras.layers.Softmax()(x, mask=mask))
    np.testing.assert_allclose(Softmax()(x, mask=mask), ky, rtol=1e-6, atol=1e-7)


@pytest.mark.oracle
@pytest.mark.parametrize("shared_axes", [None, [1], [1, 2]])
def test_prelu_matches_keras(keras, shared_axes):
    theirs = keras.layers.PReLU(alpha_initializer="random_normal", shared_axes=shared_axes)
    x = random_inputs((3, 4, 5), seed=10)
    theirs(x)
    ours = PReLU(shared_axes=shared_axes)
    ours(x)
    ours.set_weights(theirs.get_weights())
    proj = random_inputs((3, 4, 5), seed=11)
    ky, kdx, kdw = keras_forward_and_grads(theirs, x, proj)
    ly, ldx, ldw = lamina_forward_and_grads(ours, x, proj)
    np.testing.assert_allclose(ly, ky, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ldx, kdx, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ldw[0], kdw[0], rtol=1e-5, atol=1e-5)
    assert set(theirs.get_config()) == set(ours.get_config())
