"""LossScaleOptimizer: Keras's dynamic loss scaling, its config and files, and mixed_float16 training."""

import json
import warnings
import zipfile

import numpy as np
import pytest

import lamina
from lamina import layers, optimizers
from lamina.autodiff import Variable
from lamina.optimizers import LossScaleOptimizer


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    lamina.config.set_dtype_policy("float32")


def _keras_float32(keras):
    keras.config.set_dtype_policy("float32")


# Finite steps, one with an inf (skipped, scale halved), one with a NaN, then growth after 2 finite steps.
_GRAD_STEPS = [
    [1.0, -2.0, 0.5],
    [3.0, 0.25, -1.0],
    [np.inf, 1.0, 1.0],
    [0.5, 0.5, -4.0],
    [np.nan, 0.0, 0.0],
    [-1.0, 2.0, 8.0],
    [2.0, -0.5, 1.0],
    [0.125, 6.0, -2.0],
]


def test_same_gradients_give_keras_variables_and_scale_trajectory(keras):
    _keras_float32(keras)
    # Explicit names: Keras and lamina number unnamed objects from their own session-wide counters.
    kopt = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.1, name="adam_in"), initial_scale=64.0,
                                               dynamic_growth_steps=2, name="lso")
    lopt = LossScaleOptimizer(optimizers.Adam(0.1, name="adam_in"), initial_scale=64.0, dynamic_growth_steps=2,
                              name="lso")
    kv = keras.Variable(np.array([1.0, 2.0, 3.0], "float32"), name="w")
    lv = Variable(np.array([1.0, 2.0, 3.0], "float32"), name="w")
    for step, raw in enumerate(_GRAD_STEPS):
        # The gradients of a scaled loss: the true gradient times the current scale.
        g = np.asarray(raw, "float32") * np.float32(keras.ops.convert_to_numpy(kopt.scale_loss(1.0)))
        assert float(lopt.scale_loss(1.0)) == float(keras.ops.convert_to_numpy(kopt.scale_loss(1.0))), step
        kopt.apply([keras.ops.convert_to_tensor(g)], [kv])
        lopt.apply([g], [lv])
        np.testing.assert_allclose(lv.numpy(), keras.ops.convert_to_numpy(kv.value), rtol=1e-6, err_msg=str(step))
        kvals = [keras.ops.convert_to_numpy(v.value) for v in kopt.variables]
        lvals = [v.numpy() for v in lopt.variables]
        # (Keras prefixes the slots its apply() builds with the wrapper's name scope; lamina has none.)
        assert [v.path for v in lopt.variables[:6]] == [v.path for v in kopt.variables[:6]]
        for a, b in zip(lvals, kvals, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, err_msg=str(step))
        assert int(lopt.iterations) == int(keras.ops.convert_to_numpy(kopt.iterations.value))
    # 64 -> inf: 32 -> two finite: 64 -> NaN: 32 -> two finite: 64.
    assert float(lopt.dynamic_scale.numpy()) == 64.0


def test_a_step_with_non_finite_gradients_changes_nothing_but_the_scale():
    inner = optimizers.SGD(0.5, momentum=0.9)
    opt = LossScaleOptimizer(inner, initial_scale=8.0, dynamic_growth_steps=3)
    v = Variable(np.array([1.0, 2.0], "float32"))
    opt.apply([np.array([8.0, 8.0], "float32")], [v])
    before = [x.numpy().copy() for x in inner.variables] + [v.numpy().copy()]
    opt.apply([np.array([1.0, np.inf], "float32")], [v])
    after = [x.numpy() for x in inner.variables] + [v.numpy()]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(opt.dynamic_scale.numpy()) == 4.0 and int(opt.step_counter.numpy()) == 0


def test_config_matches_keras_and_round_trips(keras):
    _keras_float32(keras)
    kopt = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.5, momentum=0.25, name="in"),
                                               initial_scale=3.0,
                                               dynamic_growth_steps=7, name="lso")
    lopt = LossScaleOptimizer(optimizers.SGD(0.5, momentum=0.25, name="in"), initial_scale=3.0, dynamic_growth_steps=7,
                              name="lso")
    kcfg, lcfg = kopt.get_config(), lopt.get_config()
    assert sorted(lcfg) == sorted(kcfg) == ["dynamic_growth_steps", "initial_scale", "inner_optimizer", "name"]
    inner_k, inner_l = kcfg["inner_optimizer"]["config"], lcfg["inner_optimizer"]["config"]
    assert inner_l == inner_k
    # Keras's serialized wrapper, read by lamina, and lamina's read by Keras.
    kser = json.loads(json.dumps(keras.saving.serialize_keras_object(kopt)))
    back = optimizers.deserialize(kser)
    assert isinstance(back, LossScaleOptimizer) and back.get_config() == lcfg
    kback = keras.saving.deserialize_keras_object(json.loads(json.dumps(optimizers.serialize(lopt))))
    assert type(kback).__name__ == "LossScaleOptimizer" and kback.dynamic_growth_steps == 7
    assert kback.inner_optimizer.momentum == 0.25


def test_inner_loss_scale_factor_is_cleared_and_base_arguments_refused():
    inner = optimizers.SGD(0.5, loss_scale_factor=100.0)
    LossScaleOptimizer(inner)
    assert inner.loss_scale_factor is None
    with pytest.raises(ValueError, match="set `loss_scale_factor`"):
        LossScaleOptimizer(optimizers.SGD(), dynamic=False)
    with pytest.raises(ValueError, match="arguments: `foo`, `bar`"):
        LossScaleOptimizer(optimizers.SGD(), foo=1, bar=2)
    with pytest.raises(ValueError, match="set `clipnorm` on the `inner_optimizer`"):
        LossScaleOptimizer(optimizers.SGD(), clipnorm=1.0)
    with pytest.raises(ValueError, match="initial_scale"):
        LossScaleOptimizer(optimizers.SGD(), initial_scale=0.0)
    with pytest.raises(ValueError, match="dynamic_growth_steps"):
        LossScaleOptimizer(optimizers.SGD(), dynamic_growth_steps=0)
    LossScaleOptimizer(optimizers.SGD(), clipnorm=None, use_ema=False)  # an older Keras config's defaults


def _tiny_gradient_model(policy):
    """Dense(1) whose mse gradient on the output is ~2e-8: below float16's smallest subnormal / 2."""
    lamina.config.set_dtype_policy(policy)
    model = lamina.Sequential([lamina.Input((4,)), layers.Dense(1, use_bias=False, kernel_initializer="ones")])
    x = np.full((8, 4), 0.25, "float32")
    y = np.full((8, 1), 1.0 + 1e-7, "float32")  # predictions are exactly 1.0
    return model, x, y


def test_compile_wraps_the_optimizer_for_mixed_float16_only():
    model, _, _ = _tiny_gradient_model("mixed_float16")
    model.compile(optimizer="sgd", loss="mse")
    assert isinstance(model.optimizer, LossScaleOptimizer) and model.optimizer.name == "loss_scale_optimizer"
    assert isinstance(model.optimizer.inner_optimizer, optimizers.SGD)
    mine = LossScaleOptimizer(optimizers.SGD(), initial_scale=4.0)
    model.compile(optimizer=mine, loss="mse")
    assert model.optimizer is mine  # not wrapped twice
    model.compile(optimizer="sgd", loss="mse", auto_scale_loss=False)
    assert isinstance(model.optimizer, optimizers.SGD)
    model32, _, _ = _tiny_gradient_model("float32")
    model32.compile(optimizer="sgd", loss="mse")
    assert isinstance(model32.optimizer, optimizers.SGD)


def test_mixed_float16_trains_where_unscaled_gradients_underflow():
    reference, x, y = _tiny_gradient_model("float32")
    reference.compile(optimizer=optimizers.SGD(1000.0), loss="mse")
    reference.train_on_batch(x, y)
    expected = reference.layers[0].kernel.numpy() - 1.0
    assert np.all(expected > 1e-6)

    unscaled, x, y = _tiny_gradient_model("mixed_float16")
    unscaled.compile(optimizer=optimizers.SGD(1000.0), loss="mse", auto_scale_loss=False)
    unscaled.train_on_batch(x, y)
    np.testing.assert_array_equal(unscaled.layers[0].kernel.numpy(), 1.0)  # the float16 gradient was 0

    scaled, x, y = _tiny_gradient_model("mixed_float16")
    scaled.compile(optimizer=optimizers.SGD(1000.0), loss="mse")
    logs = scaled.train_on_batch(x, y, return_dict=True)
    np.testing.assert_allclose(scaled.layers[0].kernel.numpy() - 1.0, expected, rtol=2e-2)
    np.testing.assert_allclose(logs["loss"], 1e-14, rtol=0.5)  # the metrics see the unscaled loss


def test_overflowing_gradients_skip_the_step_quietly_and_halve_the_scale():
    model, x, y = _tiny_gradient_model("mixed_float16")
    model.compile(optimizer=optimizers.SGD(0.01), loss="mse")
    y = np.full((8, 1), 100.0, "float32")  # d(mse)/dpred * 2**15 ~ 8e5: beyond float16's 65504
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.train_on_batch(x, y)
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), 1.0)
    assert float(model.optimizer.dynamic_scale.numpy()) == 2.0**14
    assert int(model.optimizer.iterations) == 0


def test_a_float32_model_with_a_loss_scaling_optimizer_takes_the_tape_step_and_unscales():
    results = []
    for opt in (optimizers.SGD(0.1), LossScaleOptimizer(optimizers.SGD(0.1), initial_scale=1024.0),
                optimizers.SGD(0.1, loss_scale_factor=8.0)):
        lamina.utils.set_random_seed(3)
        model = lamina.Sequential([lamina.Input((3,)), layers.Dense(2)])
        model.compile(optimizer=opt, loss="mse")
        rng = np.random.default_rng(0)
        model.fit(rng.normal(size=(16, 3)).astype("float32"), rng.normal(size=(16, 2)).astype("float32"),
                  batch_size=8, epochs=2, verbose=0)
        results.append([w.numpy() for w in model.weights])
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_keras_file_round_trip_both_ways(keras, tmp_path):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        km = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        km.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
        km.fit(np.ones((8, 4), "float32"), np.zeros((8, 2), "float32"), verbose=0, epochs=2)
        km.save(tmp_path / "k.keras")
        kvals = [keras.ops.convert_to_numpy(v.value) for v in km.optimizer.variables]
    finally:
        _keras_float32(keras)
    lamina.config.set_dtype_policy("mixed_float16")  # as Keras, a Sequential takes the global policy on loading
    lm = lamina.models.load_model(tmp_path / "k.keras")
    assert isinstance(lm.optimizer, LossScaleOptimizer)
    for a, b in zip([v.numpy() for v in lm.optimizer.variables], kvals, strict=True):
        np.testing.assert_array_equal(a, b)

    lm.fit(np.ones((8, 4), "float32"), np.zeros((8, 2), "float32"), verbose=0)
    lm.save(tmp_path / "l.keras")
    with zipfile.ZipFile(tmp_path / "l.keras") as z:
        saved_optimizer = json.loads(z.read("config.json"))["compile_config"]["optimizer"]
    assert saved_optimizer["class_name"] == "Adam"  # as Keras: compile's optimizer; loading wraps it again
    keras.config.set_dtype_policy("mixed_float16")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*Skipping variable loading.*")
            km2 = keras.models.load_model(tmp_path / "l.keras")
    finally:
        _keras_float32(keras)
    assert type(km2.optimizer).__name__ == "LossScaleOptimizer"
    for a, b in zip([keras.ops.convert_to_numpy(v.value) for v in km2.optimizer.variables],
                    [v.numpy() for v in lm.optimizer.variables], strict=True):
        np.testing.assert_allclose(a, b)


def test_stateless_apply_returns_keras_values_and_leaves_the_variables_alone(keras):
    _keras_float32(keras)
    kopt = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.1), initial_scale=4.0)
    lopt = LossScaleOptimizer(optimizers.Adam(0.1), initial_scale=4.0)
    kv = keras.Variable(np.array([1.0, 2.0], "float32"), name="w")
    lv = Variable(np.array([1.0, 2.0], "float32"), name="w")
    kopt.build([kv])
    lopt.build([lv])
    k_state = [keras.ops.convert_to_numpy(v.value) for v in kopt.variables]
    l_state = [v.numpy().copy() for v in lopt.variables]
    weights = [np.array([0.5, -1.0], "float32")]
    for raw in ([4.0, -8.0], [np.inf, 0.0]):
        g = [np.asarray(raw, "float32")]
        k_w, k_state = kopt.stateless_apply(k_state, [keras.ops.convert_to_tensor(g[0])], weights)
        l_w, l_state = lopt.stateless_apply(l_state, g, weights)
        k_state = [keras.ops.convert_to_numpy(x) for x in k_state]
        np.testing.assert_allclose(l_w[0], keras.ops.convert_to_numpy(k_w[0]), rtol=1e-6)
        for a, b in zip(l_state, k_state, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)
        weights = [np.asarray(l_w[0])]
    np.testing.assert_array_equal(lv.numpy(), [1.0, 2.0])
    assert float(lopt.dynamic_scale.numpy()) == 4.0 and int(lopt.iterations) == 0
    with pytest.raises(ValueError, match="one value per optimizer variable"):
        lopt.stateless_apply(l_state[:-1], [np.ones(2, "float32")], weights)


class _DeepSigmoid(lamina.Model):
    """Keras's underflow case: 15 sigmoid Dense(1) layers, whose chained small derivatives underflow float16."""

    def __init__(self):
        super().__init__(dtype="mixed_float16")
        self.stack = [layers.Dense(1, use_bias=False, kernel_initializer="ones", activation="sigmoid",
                                   dtype="mixed_float16") for _ in range(15)]

    def call(self, x):
        for layer in self.stack:
            x = layer(x)
        return x


@pytest.mark.parametrize("auto_scale_loss", [False, True])
def test_a_subclassed_mixed_model_first_layer_learns_only_with_loss_scaling(auto_scale_loss):
    model = _DeepSigmoid()
    model.compile(optimizers.SGD(1e9), loss="mse", auto_scale_loss=auto_scale_loss)
    model.fit(np.ones((1, 1), "float32"), np.ones((1, 1), "float32"), batch_size=1, verbose=0)
    first = float(model.stack[0].kernel.numpy()[0, 0])
    assert isinstance(model.optimizer, LossScaleOptimizer) is auto_scale_loss
    assert (first != 1.0) is auto_scale_loss
