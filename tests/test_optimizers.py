"""Optimizers and learning-rate schedules against real Keras 3 (torch backend), plus unit checks."""

import warnings

import numpy as np
import pytest

import lamina
from lamina import optimizers
from lamina.optimizers import schedules

SHAPES = {"dense/kernel": (5, 4), "dense/bias": (4,), "conv/kernel": (2, 3, 2)}
STEPS = 20


def _initial_weights(seed=0):
    rng = np.random.default_rng(seed)
    return {p: rng.normal(size=s).astype(np.float32) for p, s in SHAPES.items()}


def _gradient_steps(seed=1, steps=STEPS, scale=1.0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        step = {p: (scale * rng.normal(size=s)).astype(np.float32) for p, s in SHAPES.items()}
        step["dense/bias"][0] = 0.0  # an element whose gradient is always zero
        out.append(step)
    return out


def _lamina_variables(weights, layout="separate"):
    """lamina Variables named like Dense/Conv weights; layout 'flat' puts them in one buffer."""
    variables = []
    for path, w in weights.items():
        v = lamina.Variable(w.copy(), name=path.split("/")[1])
        v.path = path
        variables.append(v)
    if layout in ("flat", "flat_grads"):
        flat = np.empty(sum(w.size for w in weights.values()), np.float32)
        offset = 0
        for v in variables:
            v._rebind(flat[offset:offset + v.size].reshape(v.shape))
            offset += v.size
    return variables


def _flat_grads(step):
    """The gradients of one step as consecutive views into one buffer (the trainer's flat layout)."""
    flat = np.concatenate([g.ravel() for g in step.values()])
    out, offset = [], 0
    for g in step.values():
        out.append(flat[offset:offset + g.size].reshape(g.shape))
        offset += g.size
    return out


def _run_lamina(cls_name, kwargs, weights, steps, layout="separate"):
    kwargs = dict(kwargs)
    if isinstance(kwargs.get("learning_rate"), dict):
        kwargs["learning_rate"] = schedules.deserialize(kwargs["learning_rate"])
    opt = getattr(optimizers, cls_name)(name="opt", **kwargs)
    variables = _lamina_variables(weights, layout)
    for step in steps:
        grads = _flat_grads(step) if layout == "flat_grads" else [step[v.path].copy() for v in variables]
        opt.apply_gradients(zip(grads, variables, strict=True))
    return opt, variables


def _run_keras(keras, cls_name, kwargs, weights, steps):
    kwargs = dict(kwargs)
    if isinstance(kwargs.get("learning_rate"), dict):
        kwargs["learning_rate"] = keras.optimizers.schedules.deserialize(kwargs["learning_rate"])
    opt = getattr(keras.optimizers, cls_name)(name="opt", **kwargs)
    variables = []
    for path, w in weights.items():
        scope, name = path.split("/")
        with keras.name_scope(scope):
            variables.append(keras.Variable(w.copy(), name=name))
    for step in steps:
        grads = [keras.ops.convert_to_tensor(step[v.path]) for v in variables]
        opt.apply_gradients(zip(grads, variables, strict=True))
    return opt, variables


EXP_DECAY = {"module": "keras.optimizers.schedules", "class_name": "ExponentialDecay",
             "config": {"initial_learning_rate": 0.05, "decay_steps": 3, "decay_rate": 0.8,
                        "staircase": True, "name": "ExponentialDecay"}, "registered_name": None}
COSINE = {"module": "keras.optimizers.schedules", "class_name": "CosineDecay",
          "config": {"initial_learning_rate": 0.0, "decay_steps": 10, "alpha": 0.1, "name": "CosineDecay",
                     "warmup_target": 0.02, "warmup_steps": 5}, "registered_name": None}

CASES = [
    ("SGD", {}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"learning_rate": EXP_DECAY, "momentum": 0.5, "weight_decay": 0.1}),
    ("Adam", {}),
    ("Adam", {"learning_rate": 0.01, "amsgrad": True}),
    ("Adam", {"learning_rate": 0.01, "clipnorm": 1.0}),
    ("Adam", {"learning_rate": 0.01, "global_clipnorm": 2.0}),
    ("Adam", {"learning_rate": 0.01, "clipvalue": 0.5}),
    ("Adam", {"learning_rate": COSINE, "beta_1": 0.8, "beta_2": 0.9, "epsilon": 1e-5}),
    ("Adam", {"learning_rate": 0.01, "use_ema": True, "ema_overwrite_frequency": 4}),
    ("Adam", {"learning_rate": 0.01, "gradient_accumulation_steps": 3}),
    ("Adam", {"learning_rate": 0.01, "loss_scale_factor": 8.0}),
    ("AdamW", {}),
    ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.1, "amsgrad": True, "global_clipnorm": 1.0}),
    ("RMSprop", {}),
    ("RMSprop", {"learning_rate": 0.01, "momentum": 0.5}),
    ("RMSprop", {"learning_rate": 0.01, "centered": True}),
    ("RMSprop", {"learning_rate": 0.01, "momentum": 0.9, "centered": True, "rho": 0.8, "clipnorm": 1.5}),
    ("Adagrad", {}),
    ("Adagrad", {"learning_rate": 0.1, "initial_accumulator_value": 0.5, "weight_decay": 0.05}),
    ("Adadelta", {}),
    ("Adadelta", {"learning_rate": 1.0, "rho": 0.9, "clipvalue": 0.3}),
    ("Adamax", {}),
    ("Adamax", {"learning_rate": 0.02, "beta_1": 0.8, "beta_2": 0.95, "weight_decay": 0.01}),
    ("Nadam", {}),
    ("Nadam", {"learning_rate": 0.01, "beta_1": 0.95, "clipnorm": 0.5}),
    ("Lion", {}),
    ("Lion", {"learning_rate": 0.01, "beta_1": 0.95, "beta_2": 0.98, "weight_decay": 0.1}),
    ("Adafactor", {}),
    ("Adafactor", {"learning_rate": 0.5, "beta_2_decay": -0.5, "epsilon_2": 0.01, "clip_threshold": 0.5}),
    ("Adafactor", {"learning_rate": EXP_DECAY, "relative_step": False, "weight_decay": 0.05}),
    ("Adafactor", {"learning_rate": 0.1, "gradient_accumulation_steps": 2, "use_ema": True}),
    ("Ftrl", {}),
    ("Ftrl", {"learning_rate": 0.1, "l1_regularization_strength": 0.05, "l2_regularization_strength": 0.1}),
    ("Ftrl", {"learning_rate": 0.05, "learning_rate_power": -0.3, "initial_accumulator_value": 0.5,
              "l2_shrinkage_regularization_strength": 0.2, "beta": 0.5, "clipnorm": 1.0}),
    ("Ftrl", {"learning_rate": EXP_DECAY, "learning_rate_power": 0.0, "l1_regularization_strength": 0.01,
              "use_ema": True, "ema_momentum": 0.9}),
]


def _case_id(case):
    name, kw = case
    parts = [f"{k}={'sched' if isinstance(v, dict) else v}" for k, v in kw.items()]
    return name + ("-" + ",".join(parts) if parts else "")


# Per-class (rtol, atol) of the Keras comparisons. Adafactor (means, RMS norms and t**decay each step)
# and FTRL with a power other than -0.5 (torch.pow and NumPy's powf round differently in about a fifth
# of float32 cases, and FTRL's linear slot takes the difference of two nearby powers) agree with Keras
# to float32 rounding of those primitives, a few ulps after 20 steps, not bit for bit.
TOLERANCE = {"Adafactor": (1e-5, 1e-6), "Ftrl": (1e-5, 1e-6)}


def _assert_variable_lists_match(keras, lam_vars, ker_vars, values=True, tol=(1e-6, 1e-7)):
    assert len(lam_vars) == len(ker_vars)
    for lv, kv in zip(lam_vars, ker_vars, strict=True):
        if kv.name.startswith("variable"):
            # Nadam's product variable: Keras names it with a global counter ("variable_3") and
            # its path depends on the name scope active when build() ran.
            assert lv.name == "variable"
        else:
            assert lv.path == kv.path
            assert lv.name == kv.name
        assert tuple(lv.shape) == tuple(kv.shape)
        if lv.name != "iteration":  # Keras-on-torch keeps iterations in int32, lamina in int64
            assert str(lv.dtype) == str(kv.dtype)
        if values:
            np.testing.assert_allclose(lv.numpy(), keras.ops.convert_to_numpy(kv.value), rtol=tol[0], atol=tol[1],
                                       err_msg=lv.path)


@pytest.mark.oracle
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_steps_match_keras(keras, case):
    cls_name, kwargs = case
    weights, steps = _initial_weights(), _gradient_steps()
    kopt, kvars = _run_keras(keras, cls_name, kwargs, weights, steps)
    rtol, atol = tol = TOLERANCE.get(cls_name, (1e-6, 1e-7))
    for layout in ("separate", "flat", "flat_grads"):
        lopt, lvars = _run_lamina(cls_name, kwargs, weights, steps, layout)
        for lv, kv in zip(lvars, kvars, strict=True):
            np.testing.assert_allclose(lv.numpy(), keras.ops.convert_to_numpy(kv.value), rtol=rtol, atol=atol,
                                       err_msg=f"{cls_name} {layout} {lv.path}")
        # Slots too: the .keras writer saves them, so they must hold Keras's values, in Keras's order.
        _assert_variable_lists_match(keras, lopt.variables, kopt.variables, tol=tol)
        assert int(lopt._iterations.numpy()) == int(keras.ops.convert_to_numpy(kopt._iterations.value))
        assert lopt.learning_rate == pytest.approx(float(keras.ops.convert_to_numpy(kopt.learning_rate)),
                                                   rel=1e-6)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_flat_layout_is_bitwise_identical_to_per_variable(case):
    cls_name, kwargs = case
    weights, steps = _initial_weights(), _gradient_steps()
    _, separate = _run_lamina(cls_name, kwargs, weights, steps, "separate")
    for layout in ("flat", "flat_grads"):
        _, fused = _run_lamina(cls_name, kwargs, weights, steps, layout)
        for a, b in zip(separate, fused, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.oracle
@pytest.mark.parametrize("case", [
    ("SGD", {"momentum": 0.9}), ("Adam", {"amsgrad": True}), ("RMSprop", {"momentum": 0.2, "centered": True}),
    ("Nadam", {}), ("Adam", {"use_ema": True, "gradient_accumulation_steps": 2}),
    ("SGD", {"learning_rate": EXP_DECAY}),
], ids=_case_id)
def test_variables_after_build_match_keras(keras, case):
    cls_name, kwargs = case
    weights = _initial_weights()
    lopt, lvars = _run_lamina(cls_name, kwargs, weights, [])
    kopt, kvars = _run_keras(keras, cls_name, kwargs, weights, [])
    lopt.build(lvars)
    kopt.build(kvars)
    _assert_variable_lists_match(keras, lopt.variables, kopt.variables)


@pytest.mark.oracle
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_config_matches_keras_and_round_trips(keras, case):
    cls_name, kwargs = case
    lopt, _ = _run_lamina(cls_name, kwargs, _initial_weights(), [])
    kopt, _ = _run_keras(keras, cls_name, kwargs, _initial_weights(), [])
    config = lopt.get_config()
    assert config == kopt.get_config()
    again = type(lopt).from_config(config)
    assert again.get_config() == config
    # Both directions through the serialized form.
    assert optimizers.deserialize(keras.optimizers.serialize(kopt)).get_config() == config
    assert keras.optimizers.deserialize(optimizers.serialize(lopt)).get_config() == config


SCHEDULES = [
    ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 7, "decay_rate": 0.9}),
    ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 7, "decay_rate": 0.5,
                          "staircase": True}),
    ("PiecewiseConstantDecay", {"boundaries": [10, 50, 90], "values": [1.0, 0.5, 0.1, 0.01]}),
    ("InverseTimeDecay", {"initial_learning_rate": 0.3, "decay_steps": 5, "decay_rate": 0.5}),
    ("InverseTimeDecay", {"initial_learning_rate": 0.3, "decay_steps": 5, "decay_rate": 0.5,
                          "staircase": True}),
    ("CosineDecay", {"initial_learning_rate": 0.2, "decay_steps": 80}),
    ("CosineDecay", {"initial_learning_rate": 0.2, "decay_steps": 80, "alpha": 0.25}),
    ("CosineDecay", {"initial_learning_rate": 0.0, "decay_steps": 60, "alpha": 0.1, "warmup_target": 0.5,
                     "warmup_steps": 30}),
    ("PolynomialDecay", {"initial_learning_rate": 0.2, "decay_steps": 40, "power": 2.0}),
    ("PolynomialDecay", {"initial_learning_rate": 0.2, "decay_steps": 40, "power": 0.5, "cycle": True}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.2, "first_decay_steps": 10}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.2, "first_decay_steps": 10, "t_mul": 1.0,
                             "m_mul": 0.8, "alpha": 0.1}),
]


@pytest.mark.oracle
@pytest.mark.parametrize("name,kwargs", SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_schedules_match_keras(keras, name, kwargs):
    lam = getattr(schedules, name)(**kwargs)
    ker = getattr(keras.optimizers.schedules, name)(**kwargs)
    steps = list(range(0, 130))
    expected = np.array([float(keras.ops.convert_to_numpy(ker(s))) for s in steps])
    got = np.array([float(lam(s)) for s in steps])
    # A schedule is lr0 * (a float32 factor in [0, 1]); near a zero of 1 + cos(.) one float32 ulp of
    # the cosine is a large relative error, so the absolute tolerance scales with the schedule's size.
    atol = 1e-7 * np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=atol)
    # Vectorised over an array of steps, float32 out.
    arr = lam(np.arange(130))
    np.testing.assert_allclose(arr, expected, rtol=1e-6, atol=atol)
    assert lam(np.int64(3)).dtype == np.float32
    # Config: Keras's keys and values, and both ways through serialize/deserialize.
    assert lam.get_config() == ker.get_config()
    assert schedules.deserialize(keras.optimizers.schedules.serialize(ker)).get_config() == lam.get_config()
    assert keras.optimizers.schedules.deserialize(schedules.serialize(lam)).get_config() == lam.get_config()
    assert type(lam).from_config(lam.get_config()).get_config() == lam.get_config()


@pytest.mark.oracle
def test_subnormal_flush_keeps_keras_results(keras):
    """Gradients that turn zero leave moments decaying into float32 subnormals; lamina flushes them."""
    weights = _initial_weights()
    steps = _gradient_steps(steps=138)
    for k, step in enumerate(steps):
        if k >= 3:
            step["dense/kernel"][:, :2] = 0.0  # these weights stop receiving gradient
    kwargs = {"learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.55}
    kopt, kvars = _run_keras(keras, "Adam", kwargs, weights, steps)
    lopt, lvars = _run_lamina("Adam", kwargs, weights, steps, "flat")
    for lv, kv in zip(lvars, kvars, strict=True):
        np.testing.assert_allclose(lv.numpy(), keras.ops.convert_to_numpy(kv.value), rtol=1e-6, atol=1e-7)
    kmom = keras.ops.convert_to_numpy(kopt.variables[2].value)
    assert np.any((kmom != 0) & (np.abs(kmom) < np.finfo(np.float32).tiny)), "Keras should hold subnormals"
    for slot in lopt.variables[2:]:
        tiny = (slot.numpy() != 0) & (np.abs(slot.numpy()) < np.finfo(np.float32).tiny)
        assert not tiny.any(), slot.path


def test_flush_zeroes_tiny_moments_only():
    opt = optimizers.Adam(learning_rate=0.01)
    w = lamina.Variable(np.ones(4, np.float32), name="w")
    opt.build([w])
    m = opt.variables[2]
    assert m.name == "w_momentum"
    m.assign(np.array([1e-35, -1e-33, 1e-3, 0.0], np.float32))
    g = np.zeros(4, np.float32)
    for _ in range(15):
        opt.apply_gradients([(g, w)])
    assert m.numpy()[0] != 0  # not flushed before the 16th step
    opt.apply_gradients([(g, w)])
    got = m.numpy()
    assert got[0] == 0 and got[1] == 0 and got[3] == 0
    assert got[2] == pytest.approx(1e-3 * 0.9 ** 16, rel=1e-5)


def test_lion_momentum_is_never_flushed():
    # sign() of a tiny momentum still moves the weight in Keras, so Lion's slots are exempt.
    opt = optimizers.Lion(learning_rate=0.1)
    w = lamina.Variable(np.zeros(2, np.float32), name="w")
    opt.build([w])
    opt.variables[2].assign(np.array([1e-35, -1e-35], np.float32))
    for _ in range(16):
        opt.apply_gradients([(np.zeros(2, np.float32), w)])
    np.testing.assert_allclose(w.numpy(), [-1.6, 1.6], rtol=1e-6)


def test_custom_loop_with_gradient_tape_lowers_a_quadratic():
    target = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)
    w = lamina.Variable(np.zeros((2, 2), np.float32), name="w")
    b = lamina.Variable(np.zeros(2, np.float32), name="b")
    opt = optimizers.Adam(learning_rate=0.1)

    def loss_fn():
        return lamina.ops.sum(lamina.ops.square(w - target)) + lamina.ops.sum(lamina.ops.square(b - 1.0))

    first = float(loss_fn())
    for _ in range(100):
        with lamina.GradientTape() as tape:
            loss = loss_fn()
        grads = tape.gradient(loss, [w, b])
        opt.apply_gradients(zip(grads, [w, b], strict=True))
    assert float(loss_fn()) < 1e-2 * first
    assert w.dtype == np.float32 and b.dtype == np.float32
    assert int(opt.iterations.numpy()) == 100


def test_learning_rate_property_and_setter():
    opt = optimizers.SGD(learning_rate=0.1)
    assert opt.learning_rate == pytest.approx(0.1)
    assert isinstance(opt.learning_rate, lamina.Variable) and opt.learning_rate is opt.variables[1]
    w = lamina.Variable(np.ones(3, np.float32), name="w")
    opt.learning_rate = 0.5  # what ReduceLROnPlateau / LearningRateScheduler do
    opt.apply_gradients([(np.ones(3, np.float32), w)])
    np.testing.assert_allclose(w.numpy(), 0.5)
    assert opt.get_config()["learning_rate"] == 0.5
    sched = optimizers.Adam(learning_rate=schedules.ExponentialDecay(0.1, 1, 0.5))
    assert sched.learning_rate == pytest.approx(0.1)
    sched.apply_gradients([(np.ones(3, np.float32), lamina.Variable(np.ones(3, np.float32)))])
    assert sched.learning_rate == pytest.approx(0.05)
    assert [v.name for v in sched.variables][:1] == ["iteration"] and "learning_rate" not in \
        [v.name for v in sched.variables]
    with pytest.raises(TypeError, match="not settable"):
        sched.learning_rate = 0.1
    opt.learning_rate = schedules.InverseTimeDecay(1.0, 1, 1.0)  # a schedule replaces the variable
    assert "learning_rate" not in [v.name for v in opt.variables]
    with pytest.raises(ValueError, match="learning_rate"):
        optimizers.SGD().learning_rate = -1.0


def test_gradients_are_not_modified_and_none_is_skipped():
    a = lamina.Variable(np.ones(3, np.float32), name="a")
    b = lamina.Variable(np.ones(2, np.float32), name="b")
    opt = optimizers.SGD(learning_rate=0.1, clipvalue=0.5)
    g = np.full(3, 2.0, np.float32)
    with pytest.warns(UserWarning, match="Gradients do not exist"):
        opt.apply_gradients([(g, a), (None, b)])
    np.testing.assert_array_equal(g, 2.0)
    np.testing.assert_allclose(a.numpy(), 0.95)
    np.testing.assert_array_equal(b.numpy(), 1.0)
    with pytest.raises(ValueError, match="No gradients provided"):
        opt.apply_gradients([(None, a), (None, b)])


def test_apply_with_built_variables_float64_gradient_and_constraint():
    w = lamina.Variable(np.array([0.5, -0.5], np.float32), name="w",
                        constraint=lambda x: np.maximum(lamina.autodiff.unwrap(x), 0.0))
    opt = optimizers.SGD(learning_rate=1.0)
    opt.build([w])
    opt.apply([np.array([1.0, -1.0])])  # float64 gradient: cast to the variable's float32
    assert w.dtype == np.float32
    np.testing.assert_allclose(w.numpy(), [0.0, 0.5])  # -0.5 clipped by the constraint


def test_updates_are_in_place_on_views():
    flat = np.zeros(6, np.float32)
    variables = _lamina_variables({"dense/kernel": np.ones((2, 2), np.float32),
                                   "dense/bias": np.ones(2, np.float32)})
    variables[0]._rebind(flat[:4].reshape(2, 2))
    variables[1]._rebind(flat[4:])
    opt = optimizers.RMSprop(learning_rate=0.1, momentum=0.5)
    grads = [np.ones((2, 2), np.float32), np.ones(2, np.float32)]
    opt.apply_gradients(zip(grads, variables, strict=True))
    assert variables[0].value.base is flat and variables[1].value.base is flat
    np.testing.assert_array_equal(flat, np.concatenate([variables[0].numpy().ravel(), variables[1].numpy()]))
    assert np.all(flat < 1)


def test_custom_optimizer_subclass_keras_style():
    class HalfStep(optimizers.Optimizer):
        def __init__(self, learning_rate=0.1, **kwargs):
            super().__init__(learning_rate=learning_rate, **kwargs)

        def build(self, variables):
            super().build(variables)
            self.counts = self.add_optimizer_variables(variables, "count")

        def update_step(self, gradient, variable, learning_rate):
            self.assign_sub(variable, gradient * learning_rate * 0.5)
            self.assign_add(self.counts[self._index[id(variable)]], np.ones(variable.shape, variable.dtype))

    w = lamina.Variable(np.ones(2, np.float32), name="w")
    opt = HalfStep(name="half")
    opt.apply_gradients([(np.ones(2, np.float32), w)])
    np.testing.assert_allclose(w.numpy(), 0.95)
    assert [v.path for v in opt.variables] == ["half/iteration", "half/learning_rate", "half/w_count"]
    np.testing.assert_array_equal(opt.variables[2].numpy(), 1.0)


def test_get_serialize_deserialize():
    for name in ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "lion", "Adam"):
        opt = optimizers.get(name)
        assert type(opt).__name__.lower() == name.lower()
    opt = optimizers.Adam(learning_rate=0.02)
    assert optimizers.get(opt) is opt
    assert optimizers.get(None) is None
    config = optimizers.serialize(opt)
    assert config["class_name"] == "Adam" and config["module"] == "keras.optimizers"
    assert optimizers.get(config).get_config() == opt.get_config()
    assert isinstance(optimizers.deserialize({"class_name": "rmsprop", "config": {}}), optimizers.RMSprop)


def test_auto_names_are_unique_like_keras():
    first, second = optimizers.Nadam(), optimizers.Nadam()
    assert first.name.startswith("nadam") and second.name != first.name
    assert optimizers.RMSprop(name="x").variables[0].path == "x/iteration"


def test_state_save_and_load_round_trip():
    weights, steps = _initial_weights(), _gradient_steps(steps=3)
    opt, variables = _run_lamina("Nadam", {}, weights, steps)
    store = {}
    opt.save_own_variables(store)
    fresh = optimizers.Nadam()
    fresh.build(_lamina_variables(weights))
    fresh.load_own_variables(store)
    for a, b in zip(opt.variables, fresh.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    unbuilt = optimizers.Nadam()
    with pytest.warns(UserWarning, match="Skipping variable loading"):
        unbuilt.load_own_variables(store)


@pytest.mark.parametrize("make,match", [
    (lambda: optimizers.SGD(learning_rate=-0.1), "learning_rate"),
    (lambda: optimizers.Adam(learning_rate="fast"), "learning_rate"),
    (lambda: optimizers.Adam(clipnorm=1.0, global_clipnorm=1.0), "Only one of"),
    (lambda: optimizers.Adam(clipnorm=1.0, clipvalue=1.0), "Only one of"),
    (lambda: optimizers.Adam(clipnorm=-1.0), "clipnorm"),
    (lambda: optimizers.SGD(momentum=1.5), "momentum"),
    (lambda: optimizers.Adam(betas=0.9), "not recognized"),
    (lambda: optimizers.AdamW(weight_decay=None), "weight_decay"),
    (lambda: optimizers.Lion(beta_1=0.0), "beta_1"),
    (lambda: optimizers.Adam(gradient_accumulation_steps=1), "gradient_accumulation_steps"),
    (lambda: optimizers.Adam(use_ema=True, ema_momentum=1.5), "ema_momentum"),
    (lambda: optimizers.get("adamx"), "Did you mean 'adam"),
    (lambda: optimizers.get(42), "Could not interpret"),
    (lambda: optimizers.deserialize({"class_name": "Adagradd", "config": {}}), "Valid names"),
    (lambda: schedules.ExponentialDecay(0.1, 0, 0.9), "decay_steps"),
    (lambda: schedules.CosineDecay(0.1, -5), "decay_steps"),
    (lambda: schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.2]), "boundaries"),
    (lambda: schedules.deserialize({"class_name": "CosineDecy", "config": {}}), "Did you mean 'CosineDecay'"),
])
def test_bad_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match) as info:
        make()
    assert "Received" in str(info.value)


def test_bad_apply_calls():
    w = lamina.Variable(np.ones((2, 2), np.float32), name="w")
    other = lamina.Variable(np.ones(2, np.float32), name="other")
    opt = optimizers.Adam()
    with pytest.raises(ValueError, match="must already be built"):
        opt.apply([np.ones((2, 2), np.float32)])
    with pytest.raises(ValueError, match="wrong shape"):
        opt.apply_gradients([(np.ones(3, np.float32), w)])
    opt = optimizers.Adam()
    opt.build([w])
    with pytest.raises(ValueError, match="Unknown variable"):
        opt.apply_gradients([(np.ones(2, np.float32), other)])
    with pytest.raises(ValueError, match="one gradient per variable"):
        opt.apply([np.ones((2, 2), np.float32), np.ones(2, np.float32)])


def test_no_numpy_warnings_on_zero_and_huge_gradients():
    w = lamina.Variable(np.ones(3, np.float32), name="w")
    for opt in (optimizers.Adam(global_clipnorm=1.0), optimizers.Adam(clipnorm=1.0), optimizers.Adagrad(),
                optimizers.RMSprop(centered=True), optimizers.Adadelta(), optimizers.Nadam()):
        with warnings.catch_warnings(), np.errstate(all="raise"):
            warnings.simplefilter("error")
            opt.apply_gradients([(np.zeros(3, np.float32), w)])
            opt.apply_gradients([(np.full(3, 1e15, np.float32), w)])
        assert np.all(np.isfinite(w.numpy())) and w.dtype == np.float32
