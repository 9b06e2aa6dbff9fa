"""Keras's optimizer API beyond the update rules, against real Keras 3 (torch backend): the
``learning_rate`` variable, ``iterations`` compared by value, ``overwrite_with_gradient``, EMA and
``finalize_variable_values``, auto-naming, and Adafactor/Ftrl through ``compile``/``fit``/saving."""

import re

import numpy as np
import pytest

import lamina
from lamina import optimizers
from lamina.optimizers import schedules


def _weights(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32),
            rng.normal(size=(2, 3)).astype(np.float32)]


def _grads(steps, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.normal(size=w.shape).astype(np.float32) for w in _weights()] for _ in range(steps)]


def _pair(keras, cls_name, kwargs, overwrite=()):
    """The same optimizer and variables in lamina and Keras; variables ``overwrite`` (indices) are
    flagged ``overwrite_with_gradient``."""
    lopt = getattr(optimizers, cls_name)(name="opt", **kwargs)
    kopt = getattr(keras.optimizers, cls_name)(name="opt", **kwargs)
    lvars, kvars = [], []
    for i, w in enumerate(_weights()):
        lv, kv = lamina.Variable(w.copy(), name=f"v{i}"), keras.Variable(w.copy(), name=f"v{i}")
        if i in overwrite:
            lv.overwrite_with_gradient = True
            kv.overwrite_with_gradient = True
        lvars.append(lv)
        kvars.append(kv)
    return lopt, lvars, kopt, kvars


def _assert_same(keras, lamina_values, keras_values, rtol=1e-6, atol=1e-7):
    assert len(lamina_values) == len(keras_values)
    for lv, kv in zip(lamina_values, keras_values, strict=True):
        np.testing.assert_allclose(np.asarray(lv), keras.ops.convert_to_numpy(kv), rtol=rtol, atol=atol)


def _step_both(keras, lopt, lvars, kopt, kvars, grads):
    lopt.apply_gradients(zip([g.copy() for g in grads], lvars, strict=True))
    kopt.apply_gradients(zip([keras.ops.convert_to_tensor(g) for g in grads], kvars, strict=True))


# ----------------------------------------------------------------------------- learning_rate


@pytest.mark.oracle
def test_learning_rate_is_a_variable_as_in_keras(keras):
    lopt, lvars, kopt, kvars = _pair(keras, "SGD", {"learning_rate": 0.1})
    assert isinstance(lopt.learning_rate, lamina.Variable) and isinstance(kopt.learning_rate, keras.Variable)
    assert float(lopt.learning_rate) == float(kopt.learning_rate)
    assert float(lopt.learning_rate.value) == pytest.approx(float(keras.ops.convert_to_numpy(kopt.learning_rate.value)))
    assert lopt.learning_rate.path == kopt.learning_rate.path == "opt/learning_rate"
    lopt.learning_rate = 0.25  # the setter keeps the same variable, as Keras's does
    kopt.learning_rate = 0.25
    assert lopt.learning_rate is lopt.variables[1]
    _step_both(keras, lopt, lvars, kopt, kvars, _grads(1)[0])
    lopt.learning_rate.assign(0.5)
    kopt.learning_rate.assign(0.5)
    _step_both(keras, lopt, lvars, kopt, kvars, _grads(1, seed=2)[0])
    _assert_same(keras, lvars, [v.value for v in kvars])
    assert lopt.get_config()["learning_rate"] == kopt.get_config()["learning_rate"] == 0.5


@pytest.mark.oracle
def test_learning_rate_of_a_schedule_is_its_current_value_as_in_keras(keras):
    config = {"initial_learning_rate": 0.1, "decay_steps": 1, "decay_rate": 0.5}
    lopt = optimizers.SGD(schedules.ExponentialDecay(**config))
    kopt = keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(**config))
    lvar, kvar = lamina.Variable(np.ones(2, np.float32)), keras.Variable(np.ones(2, np.float32))
    for step in range(3):
        assert not isinstance(lopt.learning_rate, lamina.Variable)
        assert not isinstance(kopt.learning_rate, keras.Variable)
        assert float(lopt.learning_rate) == pytest.approx(float(kopt.learning_rate)) == pytest.approx(0.1 * 0.5 ** step)
        _step_both(keras, lopt, [lvar], kopt, [kvar], [np.ones(2, np.float32)])


def test_learning_rate_variable_survives_callbacks_and_saving(tmp_path):
    model = lamina.models.Sequential([lamina.layers.Input((3,)), lamina.layers.Dense(1)])
    model.compile(optimizer=optimizers.Adam(0.1), loss="mse")
    x, y = np.ones((8, 3), np.float32), np.zeros((8, 1), np.float32)
    cb = lamina.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[cb, lamina.callbacks.ReduceLROnPlateau("loss", patience=0)])
    assert isinstance(model.optimizer.learning_rate, lamina.Variable)
    assert float(model.optimizer.learning_rate) <= 0.025 + 1e-9
    path = tmp_path / "m.keras"
    model.save(path)
    again = lamina.models.load_model(path)
    assert float(again.optimizer.learning_rate) == float(model.optimizer.learning_rate)
    for a, b in zip(model.optimizer.variables, again.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# ----------------------------------------------------------------------------- iterations / Variable


@pytest.mark.oracle
@pytest.mark.parametrize("kwargs", [{}, {"gradient_accumulation_steps": 2}])
def test_iterations_compare_by_value_as_in_keras(keras, kwargs):
    lopt, lvars, kopt, kvars = _pair(keras, "Adam", kwargs)
    assert bool(lopt.iterations == 0) and bool(kopt.iterations == 0)
    assert not bool(lopt.iterations != 0) and not bool(kopt.iterations != 0)
    for grads in _grads(4):
        _step_both(keras, lopt, lvars, kopt, kvars, grads)
        assert int(lopt.iterations) == int(kopt.iterations)
        assert bool(lopt.iterations == int(kopt.iterations))
    assert bool(lopt.iterations > 0) and bool(lopt.iterations >= 1) and bool(0 < lopt.iterations)


def test_variable_equality_is_elementwise_yet_hashing_stays_by_identity():
    a = lamina.Variable(np.array([1.0, 2.0, 3.0], np.float32), name="a")
    b = lamina.Variable(np.array([1.0, 2.0, 3.0], np.float32), name="b")
    np.testing.assert_array_equal(a == np.array([1.0, 0.0, 3.0]), [True, False, True])
    np.testing.assert_array_equal(a != 2.0, [True, False, True])
    assert a == pytest.approx([1.0, 2.0, 3.0])
    # Two variables compare by identity: lists, sets and dicts of variables keep working.
    assert (a == b) is False and (a != b) is True and (a == a) is True
    assert b in [a, b] and [a, b].index(b) == 1
    assert None not in [a, b] and "auto" not in (a, b) and (a == None) is False  # noqa: E711
    assert len({a, b}) == 2 and {a: 1, b: 2}[b] == 2 and hash(a) == object.__hash__(a)
    assert lamina.Variable(0, dtype="int64").overwrite_with_gradient is False


# ----------------------------------------------------------------------------- overwrite_with_gradient


@pytest.mark.oracle
@pytest.mark.parametrize("cls_name,kwargs", [
    ("Adam", {"learning_rate": 0.01}),
    ("Adam", {"learning_rate": 0.01, "gradient_accumulation_steps": 2}),
    ("Adam", {"learning_rate": 0.01, "use_ema": True, "loss_scale_factor": 4.0, "clipnorm": 0.5}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.1}),
    ("Adafactor", {}),
    ("Ftrl", {"learning_rate": 0.1}),
])
def test_overwrite_with_gradient_matches_keras(keras, cls_name, kwargs):
    lopt, lvars, kopt, kvars = _pair(keras, cls_name, kwargs, overwrite=(0, 2))
    for grads in _grads(5):
        _step_both(keras, lopt, lvars, kopt, kvars, grads)
    _assert_same(keras, lvars, [v.value for v in kvars], rtol=1e-5, atol=1e-6)
    assert [v.path for v in lopt.variables] == [v.path for v in kopt.variables]
    _assert_same(keras, [v.numpy() for v in lopt.variables if v.name != "iteration"],
                 [v.value for v in kopt.variables if v.name != "iteration"], rtol=1e-5, atol=1e-6)
    if not kwargs.get("gradient_accumulation_steps"):
        np.testing.assert_array_equal(lvars[0].numpy(), _grads(5)[-1][0])  # the raw last gradient


def test_overwrite_with_gradient_alone_still_counts_a_step():
    v = lamina.Variable(np.zeros(3, np.float32), name="scale")
    v.overwrite_with_gradient = True
    opt = optimizers.Adam(use_ema=True)
    opt.apply_gradients([(np.array([1.0, 2.0, 3.0], np.float32), v)])
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0, 3.0])
    assert int(opt.iterations) == 1
    assert [x.name for x in opt.variables] == ["iteration", "learning_rate"]  # no slots for it


# ----------------------------------------------------------------------------- EMA


@pytest.mark.oracle
@pytest.mark.parametrize("cls_name,kwargs", [
    ("Adam", {"learning_rate": 0.05, "use_ema": True, "ema_momentum": 0.9}),
    ("SGD", {"learning_rate": 0.1, "use_ema": True, "ema_momentum": 0.5, "ema_overwrite_frequency": 3}),
    ("Ftrl", {"learning_rate": 0.1, "use_ema": True, "gradient_accumulation_steps": 2}),
    ("Adafactor", {"use_ema": True, "ema_momentum": 0.8}),
])
def test_ema_and_finalize_variable_values_match_keras(keras, cls_name, kwargs):
    lopt, lvars, kopt, kvars = _pair(keras, cls_name, kwargs)
    for grads in _grads(7):
        _step_both(keras, lopt, lvars, kopt, kvars, grads)
    _assert_same(keras, lvars, [v.value for v in kvars], rtol=1e-5, atol=1e-6)
    averages = [v for v in lopt.variables if v.name.endswith("_average")]
    assert len(averages) == len(lvars)
    lopt.finalize_variable_values(lvars)
    kopt.finalize_variable_values(kvars)
    _assert_same(keras, lvars, [v.value for v in kvars], rtol=1e-5, atol=1e-6)
    for var, avg in zip(lvars, averages, strict=True):
        np.testing.assert_array_equal(var.numpy(), avg.numpy())


def test_finalize_without_ema_leaves_weights_and_bad_ema_arguments_raise():
    v = lamina.Variable(np.ones(2, np.float32))
    opt = optimizers.Adam()
    opt.apply_gradients([(np.ones(2, np.float32), v)])
    before = v.numpy()
    opt.finalize_variable_values([v])
    np.testing.assert_array_equal(v.numpy(), before)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"`ema_momentum` must be in the range \[0, 1\]"):
            optimizers.Adam(use_ema=True, ema_momentum=bad)
    with pytest.raises(ValueError, match="ema_overwrite_frequency"):
        optimizers.Adam(use_ema=True, ema_overwrite_frequency=1.5)
    assert optimizers.Adam(use_ema=True, ema_overwrite_frequency=0).ema_overwrite_frequency == 0


# ----------------------------------------------------------------------------- names


def _base_and_index(name):
    base, index = re.fullmatch(r"(.*?)(?:_(\d+))?", name).groups()
    return base, int(index or 0)


@pytest.mark.oracle
@pytest.mark.parametrize("cls_name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam",
                                      "Lion", "Adafactor", "Ftrl"])
def test_auto_names_follow_keras(keras, cls_name):
    lamina_names = [getattr(optimizers, cls_name)().name for _ in range(2)]
    keras_names = [getattr(keras.optimizers, cls_name)().name for _ in range(2)]
    (lb, li0), (lb1, li1) = map(_base_and_index, lamina_names)
    (kb, ki0), (kb1, ki1) = map(_base_and_index, keras_names)
    assert lb == lb1 == kb == kb1  # "adam", "adam_w", "rm_sprop", ...
    assert li1 == li0 + 1 and ki1 == ki0 + 1  # then "adam_1", "adam_2", ...


# ----------------------------------------------------------------------------- Adafactor / Ftrl in models


def test_new_optimizers_resolve_by_name_and_config():
    assert isinstance(optimizers.get("ftrl"), optimizers.Ftrl)
    assert isinstance(optimizers.get("Adafactor"), optimizers.Adafactor)
    for cls in (optimizers.Ftrl, optimizers.Adafactor):
        opt = cls(learning_rate=0.02)
        again = optimizers.deserialize(optimizers.serialize(opt))
        assert type(again) is cls and again.get_config() == opt.get_config()


@pytest.mark.parametrize("make,match", [
    (lambda: optimizers.Ftrl(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    (lambda: optimizers.Ftrl(learning_rate_power=0.5), "learning_rate_power"),
    (lambda: optimizers.Ftrl(l1_regularization_strength=-1.0), "l1_regularization_strength"),
    (lambda: optimizers.Ftrl(l2_regularization_strength=-1.0), "l2_regularization_strength"),
    (lambda: optimizers.Ftrl(l2_shrinkage_regularization_strength=-1.0), "l2_shrinkage_regularization_strength"),
])
def test_ftrl_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match) as info:
        make()
    assert "Received" in str(info.value)


def _fit_pair(keras, optimizer, keras_optimizer=None):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(32, 5)).astype(np.float32)
    y = (x @ rng.normal(size=(5, 2))).astype(np.float32)
    lmodel = lamina.models.Sequential([lamina.layers.Input((5,)), lamina.layers.Dense(4, activation="relu"),
                                       lamina.layers.Dense(2)])
    kmodel = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)])
    kmodel.set_weights(lmodel.get_weights())
    lmodel.compile(optimizer=optimizer, loss="mse")
    kmodel.compile(optimizer=keras_optimizer or optimizer, loss="mse")
    lh = lmodel.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0)
    kh = kmodel.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0)
    return lmodel, kmodel, lh.history["loss"], kh.history["loss"]


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["ftrl", "adafactor"])
def test_compile_by_name_trains_like_keras(keras, name):
    lmodel, kmodel, lloss, kloss = _fit_pair(keras, name)
    assert type(lmodel.optimizer).__name__.lower() == name
    assert lloss[-1] < lloss[0]
    np.testing.assert_allclose(lloss, kloss, rtol=1e-4)
    for a, b in zip(lmodel.get_weights(), kmodel.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.oracle
def test_fit_with_ema_ends_on_the_averages_as_in_keras(keras):
    kwargs = {"learning_rate": 0.05, "use_ema": True, "ema_momentum": 0.7}
    lmodel, kmodel, lloss, kloss = _fit_pair(keras, optimizers.Adam(**kwargs), keras.optimizers.Adam(**kwargs))
    np.testing.assert_allclose(lloss, kloss, rtol=1e-4)
    averages = [v for v in lmodel.optimizer.variables if v.name.endswith("_average")]
    for w, avg in zip(lmodel.trainable_weights, averages, strict=True):
        np.testing.assert_array_equal(np.asarray(w), avg.numpy())  # fit's finalize_variable_values
    for a, b in zip(lmodel.get_weights(), kmodel.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", [optimizers.Adafactor, optimizers.Ftrl])
def test_new_optimizers_state_saves_and_loads(tmp_path, cls):
    model = lamina.models.Sequential([lamina.layers.Input((3,)), lamina.layers.Dense(2)])
    model.compile(optimizer=cls(learning_rate=0.05), loss="mse")
    x, y = np.arange(24, dtype=np.float32).reshape(8, 3) / 10, np.ones((8, 2), np.float32)
    model.fit(x, y, epochs=2, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    again = lamina.models.load_model(path)
    assert type(again.optimizer) is cls
    assert [v.path for v in again.optimizer.variables] == [v.path for v in model.optimizer.variables]
    for a, b in zip(model.optimizer.variables, again.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_schedule_built_from_the_rate_variable_replaces_it():
    opt = optimizers.Adam(learning_rate=0.002)
    assert len(opt.variables) == 2
    opt.learning_rate = schedules.PolynomialDecay(opt.learning_rate, 4)  # Keras's idiom
    assert [v.name for v in opt.variables] == ["iteration"]
    assert float(opt.learning_rate) == pytest.approx(0.002)
    assert opt.get_config()["learning_rate"]["config"]["initial_learning_rate"] == pytest.approx(0.002)


@pytest.mark.parametrize("kwargs,expected", [
    ({"clipnorm": 1.0}, [2 ** 0.5 / 2, 2 ** 0.5 / 2]),
    ({"clipvalue": 1.0}, [1.0, 1.0]),
    ({"global_clipnorm": 1.0}, [2 ** 0.5 / 2, 2 ** 0.5 / 2]),
    ({}, [100.0, 100.0]),
])
def test_clip_gradients_hook_returns_new_arrays(kwargs, expected):
    grad = np.array([100.0, 100.0], np.float32)
    clipped = optimizers.SGD(**kwargs)._clip_gradients([grad])
    np.testing.assert_allclose(clipped[0], expected, rtol=1e-6)
    np.testing.assert_array_equal(grad, [100.0, 100.0])  # the input is left alone


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["adafactor", "ftrl"])
def test_new_optimizers_state_crosses_keras_files(keras, tmp_path, name):
    model = lamina.models.Sequential([lamina.layers.Input((3,)), lamina.layers.Dense(2)])
    model.compile(optimizer=name, loss="mse")
    x, y = np.arange(24, dtype=np.float32).reshape(8, 3) / 10, np.ones((8, 2), np.float32)
    model.fit(x, y, epochs=2, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    kmodel = keras.saving.load_model(path)
    assert type(kmodel.optimizer).__name__.lower() == name
    assert [v.name for v in kmodel.optimizer.variables] == [v.name for v in model.optimizer.variables]
    _assert_same(keras, [v.numpy() for v in model.optimizer.variables],
                 [v.value for v in kmodel.optimizer.variables], rtol=0, atol=0)
    kmodel.save(tmp_path / "k.keras")
    back = lamina.models.load_model(tmp_path / "k.keras")
    for a, b in zip(model.optimizer.variables, back.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
