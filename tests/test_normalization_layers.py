"""BatchNormalization and LayerNormalization: harness, Keras oracle (forward, gradients, moving
statistics), hand-derived backward checked against finite differences, bad arguments."""

import contextlib

import numpy as np
import pytest

from lamina.layers.batch_normalization import BatchNormalization
from lamina.layers.layer_normalization import LayerNormalization
from tests.helpers import (
    check_gradients,
    check_layer_gradients,
    keras_forward_and_grads,
    lamina_forward_and_grads,
    random_inputs,
    run_layer_test,
)

# ----------------------------------------------------------------------------- BatchNormalization


@pytest.mark.parametrize("kwargs,shape,n_trainable", [
    ({}, (4, 3), 2),
    ({"axis": 1}, (4, 3, 5), 2),
    ({"center": False}, (4, 2, 3), 1),
    ({"scale": False, "center": False}, (4, 3), 0),
])
def test_batch_norm_harness(kwargs, shape, n_trainable):
    run_layer_test(BatchNormalization, kwargs, shape, shape, expected_num_trainable_weights=n_trainable,
                   expected_num_non_trainable_weights=2, expected_input_grad=True)


def test_batch_norm_weights_order_and_names():
    layer = BatchNormalization()
    layer(np.zeros((2, 3), "float32"))
    assert [w.name for w in layer.weights] == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert [w.trainable for w in layer.weights] == [True, True, False, False]


def test_batch_norm_training_formula_and_moving_update():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((32, 4)) * 3 + 2).astype("float32")
    layer = BatchNormalization(momentum=0.9, epsilon=1e-3)
    y = layer(x, training=True)
    assert y.dtype == np.float32
    mean, var = x.mean(axis=0), x.var(axis=0)  # biased variance
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.9 + 0.1 * var, rtol=1e-5)
    # Inference uses the moving statistics and changes nothing.
    before = layer.get_weights()
    y_inf = layer(x)
    np.testing.assert_allclose(
        y_inf, (x - layer.moving_mean.numpy()) / np.sqrt(layer.moving_variance.numpy() + 1e-3), rtol=1e-5
    )
    for a, b in zip(before, layer.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_batch_norm_frozen_runs_in_inference_mode():
    x = random_inputs((8, 3), seed=1) * 5 + 1
    layer = BatchNormalization()
    layer(x)
    layer.trainable = False
    np.testing.assert_allclose(layer(x, training=True), layer(x, training=False))
    np.testing.assert_array_equal(layer.moving_mean.numpy(), 0)
    assert layer.trainable_weights == []


def test_batch_norm_constant_input_is_finite():
    x = np.full((16, 3), 1e4, dtype="float32")
    with np.errstate(all="raise"):
        y = BatchNormalization()(x, training=True)
    np.testing.assert_allclose(y, 0, atol=1e-6)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("kwargs,shape", [
    ({}, (5, 3)),
    ({"axis": 1}, (4, 3, 2)),
    ({"center": False}, (4, 3)),
    ({"scale": False}, (2, 3, 3)),
])
def test_batch_norm_gradcheck(training, kwargs, shape):
    x = random_inputs(shape, seed=2) * 2 + 0.5
    layer = BatchNormalization(dtype="float64", gamma_initializer="random_normal",
                               beta_initializer="random_normal", moving_mean_initializer="random_normal",
                               moving_variance_initializer="ones", **kwargs)
    layer(x.astype("float64"))
    # In training the batch statistics of no samples are undefined: the empty batch is for inference.
    check_layer_gradients(layer, x, training=training, empty_batch=not training)


def test_batch_norm_masked_gradcheck():
    x = random_inputs((4, 5, 3), seed=3).astype("float64")
    mask = np.random.default_rng(4).random((4, 5)) > 0.3
    layer = BatchNormalization(dtype="float64", gamma_initializer="random_normal",
                               beta_initializer="random_normal")
    layer(x)

    # Gradient wrt the input through the masked statistics.
    check_gradients(lambda v: layer(v, training=True, mask=mask), x)
    # And the layer-level check with the mask bound in.
    proj_layer = _BoundMask(layer, mask)
    # _BoundMask has no config for a float32 twin, and its mask is for these 4 samples only.
    check_layer_gradients(proj_layer, x, training=True, check_input=False, float32=False, empty_batch=False)


class _BoundMask:
    """Calls a layer with a fixed mask; quacks like a layer for check_layer_gradients."""

    def __init__(self, layer, mask):
        self.layer, self.mask = layer, mask
        self._call_has_training = True
        self.trainable_weights = layer.trainable_weights

    def __call__(self, x, training=None):
        return self.layer(x, training=training, mask=self.mask)


def test_batch_norm_bad_args():
    with pytest.raises(ValueError, match="Received invalid keys \\['random_key'\\]"):
        BatchNormalization(renorm=True, renorm_clipping={"random_key": 1.0})
    with pytest.raises(ValueError, match="rmax should be.*Received: rmax=0.0, rmin=1.0"):
        BatchNormalization(renorm=True, renorm_clipping={"rmax": 0.0, "rmin": 1.0})
    with pytest.raises(ValueError, match="dmax should be non-negative.*Received: dmax=-1.0"):
        BatchNormalization(renorm=True, renorm_clipping={"dmax": -1.0})
    with pytest.raises(ValueError, match="renorm_clipping.*dict.*Received: renorm_clipping=3"):
        BatchNormalization(renorm=True, renorm_clipping=3)
    with pytest.raises(ValueError, match="BatchNormalization.*Received: synchronized=True"):
        BatchNormalization(synchronized=True)
    with pytest.raises(ValueError, match="BatchNormalization.*Received: axis='x'"):
        BatchNormalization(axis="x")
    with pytest.raises(ValueError, match="BatchNormalization.*Received: epsilon=0"):
        BatchNormalization(epsilon=0)
    msg = r"BatchNormalization layer .*axis 3.*Received: input_shape=\(2, 3\)"
    with pytest.raises(ValueError, match=msg):
        BatchNormalization(axis=3)(np.zeros((2, 3), "float32"))
    layer = BatchNormalization()
    layer(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="batch_normalization.*Received: input_shape=\\(2, 4\\)"):
        layer(np.zeros((2, 4), "float32"))
    with pytest.raises(ValueError, match="mask.*one dimension less.*Received: mask.shape=\\(2, 3\\)"):
        layer(np.zeros((2, 3), "float32"), training=True, mask=np.ones((2, 3), bool))


@pytest.mark.oracle
@pytest.mark.parametrize("kwargs,shape", [
    ({}, (6, 4)),
    ({"axis": 1, "momentum": 0.8}, (5, 3, 4)),
    ({"center": False, "epsilon": 1e-2}, (4, 2, 3)),
    ({"scale": False}, (7, 3)),
])
def test_batch_norm_matches_keras(keras, kwargs, shape):
    init = {"gamma_initializer": "random_normal", "beta_initializer": "random_normal",
            "moving_mean_initializer": "random_normal", "moving_variance_initializer": "ones"}
    theirs = keras.layers.BatchNormalization(**kwargs, **init)
    ours = BatchNormalization(**kwargs)
    x = random_inputs(shape, seed=5) * 3 + 1
    theirs(x)
    ours(x)
    ours.set_weights(theirs.get_weights())
    proj = random_inputs(shape, seed=6)
    # Inference: moving statistics.
    ky, kdx, kdw = keras_forward_and_grads(theirs, x, proj, training=False)
    ly, ldx, ldw = lamina_forward_and_grads(ours, x, proj, training=False)
    np.testing.assert_allclose(ly, ky, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ldx, kdx, rtol=1e-5, atol=1e-5)
    for a, b in zip(ldw, kdw, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # Training, three steps: batch statistics, gradients through them, moving-statistic updates.
    for step in range(3):
        xs = random_inputs(shape, seed=20 + step) * 2 - 1
        ky, kdx, kdw = keras_forward_and_grads(theirs, xs, proj, training=True)
        ly, ldx, ldw = lamina_forward_and_grads(ours, xs, proj, training=True)
        np.testing.assert_allclose(ly, ky, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(ldx, kdx, rtol=1e-3, atol=1e-4)
        for a, b in zip(ldw, kdw, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
        for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    kcfg, lcfg = theirs.get_config(), ours.get_config()
    assert set(kcfg) == set(lcfg)
    BatchNormalization.from_config(kcfg)
    keras.layers.BatchNormalization.from_config(lcfg)


@pytest.mark.oracle
def test_batch_norm_masked_matches_keras(keras):
    theirs = keras.layers.BatchNormalization(momentum=0.5)
    ours = BatchNormalization(momentum=0.5)
    x = random_inputs((3, 5, 4), seed=7) * 2 + 1
    mask = np.random.default_rng(8).random((3, 5)) > 0.4
    ky = keras.ops.convert_to_numpy(theirs(x, training=True, mask=mask))
    ly = ours(x, training=True, mask=mask)
    np.testing.assert_allclose(ly, ky, rtol=1e-4, atol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("run_eagerly", [True, False])
def test_batch_norm_statistics_skip_positions_masked_upstream(run_eagerly):
    """A Masking layer's mask reaches BatchNormalization in fit (tape and compiled step alike): the
    padded timesteps (zeros after Masking) stay out of the batch mean and variance."""
    import lamina

    data = np.tile(np.array([[1, 5], [2, 5], [-1, -1], [-1, -1]], "float32"), (6, 1, 1))
    inputs = lamina.Input((None, 2))
    normed = BatchNormalization(momentum=0.0)(lamina.layers.Masking(mask_value=-1.0)(inputs))
    model = lamina.Model(inputs, normed)
    model.compile("sgd", "mse", run_eagerly=run_eagerly)
    model.fit(data, data, batch_size=6, epochs=1, verbose=0)
    bn = model.layers[2]
    np.testing.assert_allclose(bn.moving_mean.numpy(), [1.5, 5.0], atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), [0.25, 0.0], atol=1e-6)


def test_batch_norm_renorm_weights():
    layer = BatchNormalization(renorm=True, moving_variance_initializer=lamina_constant(4.0), center=False)
    layer.build((None, 5))
    assert [w.name for w in layer.weights] == ["gamma", "moving_mean", "moving_variance", "moving_stddev",
                                               "renorm_mean", "renorm_stddev"]
    assert len(layer.non_trainable_weights) == 5
    np.testing.assert_allclose(layer.moving_stddev.numpy(), np.full(5, 2.0))
    np.testing.assert_allclose(layer.renorm_stddev.numpy(), np.full(5, 2.0))
    assert layer.get_config()["renorm_clipping"] == {}
    clipped = BatchNormalization(renorm=True, renorm_clipping={"rmax": 3.0, "rmin": 0.3, "dmax": 5.0},
                                 renorm_momentum=0.95)
    config = clipped.get_config()
    assert BatchNormalization.from_config(config).get_config() == config


def lamina_constant(value):
    import lamina

    return lamina.initializers.Constant(value)


@pytest.mark.oracle
@pytest.mark.parametrize("kwargs,shape", [
    ({}, (6, 4)),
    ({"renorm_clipping": {"rmax": 1.2, "rmin": 0.9, "dmax": 0.1}, "momentum": 0.7}, (5, 2, 3)),
    ({"axis": 1, "renorm_momentum": 0.5, "renorm_clipping": {"rmin": 0.8}}, (4, 3, 2)),
    ({"scale": False, "center": False, "renorm_clipping": {"dmax": 0.2}}, (7, 3)),
])
def test_batch_norm_renorm_matches_keras(keras, kwargs, shape):
    """Batch renormalization against Keras: outputs, gradients (r and d held constant) and all five
    moving statistics over several training steps, then inference."""
    theirs = keras.layers.BatchNormalization(renorm=True, **kwargs)
    ours = BatchNormalization(renorm=True, **kwargs)
    theirs.build(shape)
    ours.build(shape)
    rng = np.random.default_rng(11)
    start = [rng.normal(1.0, 0.3, w.shape).astype("float32") for w in theirs.weights]
    start = [np.abs(w) if "std" in v.name or "variance" in v.name else w for w, v in zip(start, theirs.weights)]
    theirs.set_weights(start)
    ours.set_weights(start)
    proj = random_inputs(shape, seed=6)
    for step in range(4):
        xs = random_inputs(shape, seed=30 + step) * (2 + step) - step
        ky, kdx, kdw = keras_forward_and_grads(theirs, xs, proj, training=True)
        ly, ldx, ldw = lamina_forward_and_grads(ours, xs, proj, training=True)
        np.testing.assert_allclose(ly, ky, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(ldx, kdx, rtol=1e-3, atol=1e-4)
        for a, b in zip(ldw, kdw, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
        assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
        for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    x = random_inputs(shape, seed=50)
    np.testing.assert_allclose(ours(x, training=False), keras.ops.convert_to_numpy(theirs(x, training=False)),
                               rtol=1e-5, atol=1e-5)


def test_batch_norm_renorm_is_batch_norm_with_corrected_scale_and_offset():
    """In training, renorm equals plain batch normalisation with scale ``r * gamma`` and offset
    ``d * gamma + beta``, r and d held constant: same outputs and same input gradients (no gradient flows
    through r and d, so finite differences would not agree: they see r and d move with the batch)."""
    clipping = {"rmax": 1.5, "rmin": 0.2, "dmax": 0.5}
    x = random_inputs((6, 3), seed=9) * 3 + 2
    renorm = BatchNormalization(renorm=True, renorm_clipping=clipping, epsilon=1e-2)
    renorm.build(x.shape)
    gamma = np.array([0.5, 1.5, -1.0], "float32")
    beta = np.array([0.1, -0.2, 0.3], "float32")
    renorm_mean = np.array([2.0, 0.0, 5.0], "float32")
    renorm_stddev = np.array([1.0, 4.0, 0.01], "float32")
    renorm.gamma.assign(gamma)
    renorm.beta.assign(beta)
    renorm.renorm_mean.assign(renorm_mean)
    renorm.renorm_stddev.assign(renorm_stddev)
    sigma = np.sqrt(x.var(axis=0) + 1e-2)
    floor = np.maximum(renorm_stddev, np.sqrt(1e-2))
    r = np.clip(sigma / floor, 0.2, 1.5)
    d = np.clip((x.mean(axis=0) - renorm_mean) / floor, -0.5, 0.5)
    plain = BatchNormalization(epsilon=1e-2)
    plain.build(x.shape)
    plain.gamma.assign(r * gamma)
    plain.beta.assign(d * gamma + beta)
    proj = random_inputs(x.shape, seed=10)
    ry, rdx, _ = lamina_forward_and_grads(renorm, x, proj, training=True)
    py, pdx, _ = lamina_forward_and_grads(plain, x, proj, training=True)
    np.testing.assert_allclose(ry, py, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rdx, pdx, rtol=1e-5, atol=1e-5)
    # The statistics moved as documented: renorm by renorm_momentum, moving by momentum.
    np.testing.assert_allclose(renorm.renorm_stddev.numpy(), renorm_stddev * 0.99 + sigma * 0.01, rtol=1e-5)
    moving_stddev = 0.99 + sigma * 0.01
    np.testing.assert_allclose(renorm.moving_stddev.numpy(), moving_stddev, rtol=1e-5)
    np.testing.assert_allclose(renorm.moving_variance.numpy(), moving_stddev ** 2 - 1e-2, rtol=1e-5)
    # Inference ignores the renorm statistics.
    np.testing.assert_allclose(renorm(x, training=False), _inference(renorm, x), rtol=1e-5, atol=1e-6)


def _inference(layer, x):
    return (x - layer.moving_mean.numpy()) / np.sqrt(layer.moving_variance.numpy() + layer.epsilon) \
        * layer.gamma.numpy() + layer.beta.numpy()


@pytest.mark.parametrize("clipping", [None, {"rmax": 1.1, "rmin": 0.9, "dmax": 0.05}])
def test_batch_norm_renorm_compiled_step_matches_tape(clipping):
    """fit with the compiled step (the default) and with run_eagerly=True gives the same weights."""
    import lamina

    x = random_inputs((32, 4), seed=3) * 3 + 1
    y = random_inputs((32, 1), seed=4)
    results = []
    for eager in (False, True):
        lamina.utils.set_random_seed(7)
        model = lamina.Sequential([lamina.Input((4,)), lamina.layers.Dense(5, activation="tanh"),
                                   BatchNormalization(renorm=True, renorm_clipping=clipping, renorm_momentum=0.5),
                                   lamina.layers.Dense(1)])
        model.compile("sgd", "mse", run_eagerly=eager)
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        results.append(model.get_weights())
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- LayerNormalization


@pytest.mark.parametrize("kwargs,shape,n_trainable", [
    ({}, (4, 3), 2),
    ({"axis": [1, 2]}, (2, 3, 4), 2),
    ({"axis": 1}, (2, 3, 4), 2),
    ({"center": False}, (3, 5), 1),
    ({"scale": False, "center": False}, (3, 5), 0),
])
def test_layer_norm_harness(kwargs, shape, n_trainable):
    run_layer_test(LayerNormalization, kwargs, shape, shape, expected_num_trainable_weights=n_trainable)


def test_layer_norm_formula():
    x = random_inputs((3, 6), seed=9) * 4 + 2
    layer = LayerNormalization(epsilon=1e-3)
    y = layer(x)
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-5)
    assert layer.get_config()["axis"] == [-1]
    # A single non-last axis: statistics over axis 1 only, gamma/beta of that axis's size.
    x3 = random_inputs((2, 3, 4), seed=14) * 2 + 1
    layer = LayerNormalization(axis=1, gamma_initializer="random_normal", beta_initializer="random_normal")
    y3 = layer(x3)
    gamma, beta = (w.numpy().reshape(1, 3, 1) for w in layer.weights)
    mean, var = x3.mean(1, keepdims=True), x3.var(1, keepdims=True)
    np.testing.assert_allclose(y3, gamma * (x3 - mean) / np.sqrt(var + 1e-3) + beta, rtol=1e-4, atol=1e-5)


def test_layer_norm_rms_scaling_formula():
    x = random_inputs((3, 6), seed=10) + 3
    with pytest.warns(UserWarning, match="deprecated"):
        layer = LayerNormalization(rms_scaling=True)
    y = layer(x)
    assert [w.name for w in layer.weights] == ["gamma"]
    np.testing.assert_allclose(y, x / np.sqrt(x.var(-1, keepdims=True) + 1e-3), rtol=1e-5)


def test_layer_norm_extreme_inputs_are_finite():
    x = np.array([[1e4, 1e4, 1e4], [-1e4, 0.0, 1e4], [0.0, 0.0, 0.0]], dtype="float32")
    with np.errstate(all="raise"):
        y = LayerNormalization()(x)
    assert y.dtype == np.float32 and np.all(np.isfinite(y))
    np.testing.assert_allclose(y[0], 0, atol=1e-6)
    np.testing.assert_allclose(y[1], [-np.sqrt(1.5), 0, np.sqrt(1.5)], rtol=1e-5)


def _warns_if_rms_scaling(kwargs):
    """lamina deprecates ``rms_scaling=True`` as Keras does: asserted where it is passed, else no warning."""
    if kwargs.get("rms_scaling"):
        return pytest.warns(UserWarning, match=r"rms_scaling=True`, which is deprecated")
    return contextlib.nullcontext()


@pytest.mark.parametrize("kwargs", [
    {}, {"axis": 1}, {"axis": [1, 2]}, {"center": False}, {"rms_scaling": True}, {"axis": [0, 2]},
])
def test_layer_norm_gradcheck(kwargs):
    x = random_inputs((3, 4, 2), seed=11) * 2 + 1
    with _warns_if_rms_scaling(kwargs):
        layer = LayerNormalization(dtype="float64", gamma_initializer="random_normal",
                                   beta_initializer="random_normal", **kwargs)
    layer(x.astype("float64"))
    # Statistics over the batch axis of no samples are undefined: no empty batch for axis 0.
    # (The float32 sweep rebuilds the layer from its config, which warns about rms_scaling again.)
    with _warns_if_rms_scaling(kwargs):
        check_layer_gradients(layer, x, empty_batch=0 not in np.atleast_1d(kwargs.get("axis", -1)))


def test_layer_norm_bad_args():
    with pytest.raises(TypeError, match="LayerNormalization.*Received: axis='a'"):
        LayerNormalization(axis="a")
    with pytest.raises(ValueError, match="LayerNormalization.*Received: epsilon=-1"):
        LayerNormalization(epsilon=-1)
    with pytest.raises(ValueError, match="LayerNormalization layer .*axis 2 .*Received: axis=2"):
        LayerNormalization(axis=2)(np.zeros((2, 3), "float32"))


@pytest.mark.oracle
@pytest.mark.parametrize("kwargs,shape", [
    ({}, (4, 6)),
    ({"axis": [1, 2]}, (2, 3, 4)),
    # (Keras on torch fails for a single non-last axis such as axis=1 of a 3-D input: it hands the
    # "contiguous" axis to F.layer_norm, which only normalises trailing axes. The gradcheck and the
    # formula test cover that case; axis=[0, 2] takes Keras's generic path.)
    ({"axis": 1, "epsilon": 1e-2}, (2, 3)),
    ({"axis": [0, 2]}, (2, 3, 4)),
    ({"center": False}, (3, 5)),
    ({"rms_scaling": True}, (3, 5)),
])
def test_layer_norm_matches_keras(keras, kwargs, shape):
    # Keras's own rms_scaling deprecation warnings are ignored (narrowly) in pyproject.toml.
    theirs = keras.layers.LayerNormalization(gamma_initializer="random_normal",
                                             beta_initializer="random_normal", **kwargs)
    with _warns_if_rms_scaling(kwargs):
        ours = LayerNormalization(**kwargs)
    x = random_inputs(shape, seed=12) * 3 + 1
    theirs(x)
    ours(x)
    ours.set_weights(theirs.get_weights())
    proj = random_inputs(shape, seed=13)
    ky, kdx, kdw = keras_forward_and_grads(theirs, x, proj)
    ly, ldx, ldw = lamina_forward_and_grads(ours, x, proj)
    np.testing.assert_allclose(ly, ky, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ldx, kdx, rtol=1e-4, atol=1e-4)
    for a, b in zip(ldw, kdw, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    kcfg, lcfg = theirs.get_config(), ours.get_config()
    assert set(kcfg) == set(lcfg)
    for key in ("axis", "epsilon", "center", "scale", "rms_scaling", "trainable", "dtype"):
        assert kcfg[key] == lcfg[key], key
    with _warns_if_rms_scaling(kwargs):
        LayerNormalization.from_config(kcfg)
    keras.layers.LayerNormalization.from_config(lcfg)


@pytest.mark.parametrize("affine", [True, False])
def test_channels_last_fast_path_equals_the_general_kernel(affine):
    """The BLAS path for contiguous channels-last maps gives the general kernel's values and gradients
    (the general kernel run on the same data as a channels-first transpose)."""
    from lamina.layers.batch_normalization import batch_norm_train_kernel

    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 3.0, size=(6, 5, 4, 7))
    g = rng.normal(size=x.shape)
    gamma, beta = (rng.normal(size=7), rng.normal(size=7)) if affine else (None, None)
    y, mean, var, vjp = batch_norm_train_kernel(x, gamma, beta, 3, 1e-3, None, True)
    xt = np.ascontiguousarray(np.moveaxis(x, 3, 1))
    y_ref, mean_ref, var_ref, vjp_ref = batch_norm_train_kernel(xt, gamma, beta, 1, 1e-3, None, True)
    np.testing.assert_allclose(y, np.moveaxis(y_ref, 1, 3), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-12)
    np.testing.assert_allclose(var, var_ref, rtol=1e-12)
    grads, grads_ref = vjp(g), vjp_ref(np.ascontiguousarray(np.moveaxis(g, 3, 1)))
    assert len(grads) == len(grads_ref) == (3 if affine else 1)
    np.testing.assert_allclose(grads[0], np.moveaxis(grads_ref[0], 1, 3), rtol=1e-10, atol=1e-12)
    for a, b in zip(grads[1:], grads_ref[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_inference_without_a_tape_equals_the_taped_primitive():
    """Outside a tape, inference BatchNormalization is one scale and one shift per feature; it gives the
    taped primitive's values (which keep x̂ for the gradient) to float32 rounding."""
    import lamina

    rng = np.random.default_rng(5)
    layer = BatchNormalization(axis=-1)
    x = rng.normal(4.0, 3.0, size=(16, 6, 6, 5)).astype("float32")
    layer.build(x.shape)
    layer.set_weights([rng.random(5) + 0.5, rng.normal(size=5), rng.normal(4.0, 1.0, size=5), rng.random(5) + 0.3])
    fast = np.asarray(layer(x, training=False))
    with lamina.GradientTape():
        taped = np.asarray(layer(lamina.Variable(x), training=False))
    np.testing.assert_allclose(fast, taped, rtol=1e-5, atol=1e-5)
    expected = (x - layer.moving_mean.numpy()) / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
    expected = expected * layer.gamma.numpy() + layer.beta.numpy()
    np.testing.assert_allclose(fast, expected, rtol=1e-5, atol=1e-5)
