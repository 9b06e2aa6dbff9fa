"""compile(run_eagerly=..., jit_compile=...) choose the step; step hooks observe it without patching."""

import importlib.util
import json

import numpy as np
import pytest

import lamina
from lamina import layers
from tests.helpers.keras_files import read_members, write_zip

RNG = np.random.default_rng(7)
X = RNG.normal(size=(80, 6)).astype("float32")
Y = RNG.integers(0, 3, 80)


def dense_chain(seed=5):
    lamina.utils.set_random_seed(seed)
    return lamina.Sequential([lamina.Input((6,)), layers.Dense(8, activation="relu"),
                              layers.Dense(3, activation="softmax")])


def with_dropout(seed=5):
    lamina.utils.set_random_seed(seed)
    return lamina.Sequential([lamina.Input((6,)), layers.Dense(8, activation="relu"), layers.Dropout(0.0),
                              layers.Dense(3, activation="softmax")])


def compiled(model=None, **kwargs):
    model = model or dense_chain()
    model.compile(optimizer=lamina.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", lint=False,
                  **kwargs)
    return model


# ------------------------------------------------------------------ run_eagerly / jit_compile


def test_run_eagerly_gives_the_default_paths_weights():
    fast = compiled()
    fast.fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    eager = compiled(run_eagerly=True)
    eager.fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    assert fast._fast_step is not None  # the default takes the hand-written Dense-chain step
    assert eager._fast_step is None
    for a, b in zip(fast.get_weights(), eager.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_jit_compile_false_takes_the_tape_step():
    model = compiled(jit_compile=False)
    model.fit(X, Y, epochs=1, verbose=0)
    assert model._fast_step is None
    assert model.jit_compile is False and model.run_eagerly is False


def test_resolved_values_as_keras_stores_them():
    model = compiled()
    assert model.run_eagerly is False and model.jit_compile is True
    model = compiled(run_eagerly=True)
    assert model.run_eagerly is True and model.jit_compile is False
    with pytest.warns(UserWarning, match="jit_compile=True` is ignored"):
        model = compiled(run_eagerly=True, jit_compile=True)
    assert model.jit_compile is False


def test_changing_run_eagerly_after_a_fit_takes_effect_at_the_next_fit():
    model = compiled()
    model.fit(X, Y, epochs=1, verbose=0)
    assert model._fast_step is not None
    model.run_eagerly = True
    model.fit(X, Y, epochs=1, verbose=0)
    assert model._fast_step is None
    model.run_eagerly = False
    model.train_on_batch(X[:16], Y[:16])
    assert model._fast_step is not None
    model.jit_compile = False
    model.train_on_batch(X[:16], Y[:16])
    assert model._fast_step is None


@pytest.mark.parametrize("kwargs,match", [
    ({"run_eagerly": "yes"}, "`run_eagerly` must be True or False. Received: run_eagerly='yes'"),
    ({"run_eagerly": None}, "Received: run_eagerly=None"),
    ({"jit_compile": "xla"}, "`jit_compile` must be True, False or \"auto\". Received: jit_compile='xla'"),
    ({"jit_compile": 1}, "Received: jit_compile=1"),
])
def test_bad_values_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        compiled(**kwargs)


def test_setters_validate():
    model = compiled()
    with pytest.raises(ValueError, match="run_eagerly=0"):
        model.run_eagerly = 0
    with pytest.raises(ValueError, match="jit_compile='on'"):
        model.jit_compile = "on"
    assert model.run_eagerly is False and model.jit_compile is True


def test_compile_config_carries_them_through_saving(tmp_path):
    model = compiled(run_eagerly=True)
    config = model.get_compile_config()
    assert config["run_eagerly"] is True and config["jit_compile"] is False
    assert compiled().get_compile_config()["jit_compile"] == "auto"
    model.fit(X, Y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = lamina.saving.load_model(tmp_path / "m.keras")
    assert loaded.run_eagerly is True and loaded.jit_compile is False
    loaded.fit(X, Y, epochs=1, verbose=0)
    assert loaded._fast_step is None


def test_a_files_jit_compile_false_is_not_a_wish_for_the_tape_step(tmp_path):
    # Keras on torch resolves "auto" to False and writes that: such files still take the fast path.
    model = compiled()
    model.fit(X, Y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    members = read_members(tmp_path / "m.keras")
    config = json.loads(members["config.json"])
    config["compile_config"]["jit_compile"] = False
    members["config.json"] = json.dumps(config)
    loaded = lamina.saving.load_model(write_zip(tmp_path / "keras_torch.keras", members))
    assert loaded.jit_compile is True
    loaded.fit(X, Y, epochs=1, verbose=0)
    assert loaded._fast_step is not None


# ------------------------------------------------------------------ step hooks


class Recorder:
    def __init__(self, model):
        self.model = model
        self.batches, self.grads, self.unchanged = [], [], []

    def begin(self, x, y, sample_weight):
        self.batches.append((x.shape[0], np.array(y)))
        self.before = [w.copy() for w in self.model.get_weights()]

    def gradients(self, grads, variables):
        assert [v.shape for v in variables] == [tuple(np.shape(g)) for g in grads]
        self.grads.append([np.array(g) for g in grads])
        # the optimizer has not run yet: the weights are those the forward pass used
        self.unchanged.append(all(np.array_equal(a, b) for a, b in zip(self.before, self.model.get_weights())))


@pytest.mark.parametrize("build", [dense_chain, with_dropout])
@pytest.mark.parametrize("run_eagerly", [False, True])
def test_hooks_see_each_batch_and_the_gradients_before_the_update(build, run_eagerly):
    plain = compiled(build(), run_eagerly=run_eagerly)
    plain.fit(X, Y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    model = compiled(build(), run_eagerly=run_eagerly)
    hook = Recorder(model)
    model.add_step_hook(hook)
    model.fit(X, Y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    assert (model._fast_step is not None) == (not run_eagerly)  # Dropout compiles too
    assert [n for n, _ in hook.batches] == [32, 32, 16] * 2
    np.testing.assert_array_equal(hook.batches[2][1], Y[64:])
    assert len(hook.grads) == 6 and all(hook.unchanged)
    assert all(np.any(g != 0) for g in hook.grads[0])
    # observing changes nothing: the same weights as without the hook
    for a, b in zip(model.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.remove_step_hook(hook)
    model.fit(X, Y, batch_size=32, epochs=1, verbose=0)
    assert len(hook.batches) == 6


def test_a_hook_may_define_only_one_method():
    model = compiled()
    seen = []

    class OnlyBegin:
        def begin(self, x, y, sample_weight):
            seen.append(sample_weight)

    model.add_step_hook(OnlyBegin())
    weights = np.full(16, 2.0, dtype="float32")
    model.train_on_batch(X[:16], Y[:16], sample_weight=weights)
    np.testing.assert_array_equal(seen[0], weights)


def test_hook_api_errors():
    model = compiled()
    with pytest.raises(TypeError, match="needs an object with a `begin"):
        model.add_step_hook(object())
    hook = Recorder(model)
    model.add_step_hook(hook)
    with pytest.raises(ValueError, match="already added"):
        model.add_step_hook(hook)
    model.remove_step_hook(hook)
    with pytest.raises(ValueError, match="never added"):
        model.remove_step_hook(hook)


@pytest.mark.parametrize("run_eagerly", [False, True])
def test_health_replaces_no_attribute_of_the_model_or_optimizer(run_eagerly):
    model = compiled(run_eagerly=run_eagerly)
    seen = []
    real_diagnose = lamina.callbacks.ActivationHealth._diagnose
    health = lamina.callbacks.ActivationHealth(verbose=0)
    health._diagnose = lambda: seen.append("diagnosed") or real_diagnose(health)

    class Replaced(lamina.callbacks.Callback):  # looks while ActivationHealth is active
        def on_train_batch_end(self, batch, logs=None):
            replaced = sorted({"_train_step"} & set(model.__dict__))
            seen.append(replaced + sorted({"apply"} & set(model.optimizer.__dict__)))

    model.fit(X, Y, epochs=1, verbose=0, callbacks=[health, Replaced()])
    assert seen == [[], [], []]  # 3 steps, nothing replaced, no NaN diagnosed
    assert model._step_hooks == [] and health._step == 2
    model.fit(X, Y, epochs=1, verbose=0, health=True, callbacks=[Replaced()])
    assert seen == [[]] * 6 and model._step_hooks == []


class Halve:
    """A reducing hook: the optimizer applies half of each gradient."""

    def __init__(self):
        self.sizes = []

    def reduce_gradients(self, grads, variables, batch_size):
        self.sizes.append(batch_size)
        return [None if g is None else np.asarray(g) * 0.5 for g in grads]


@pytest.mark.parametrize("run_eagerly", [False, True])
def test_a_reducing_hook_changes_what_the_optimizer_applies(run_eagerly):
    # Plain SGD: applying half of every gradient at lr 0.1 is training at lr 0.05.
    def sgd_model(lr):
        model = dense_chain()
        model.compile(optimizer=lamina.optimizers.SGD(lr), loss="sparse_categorical_crossentropy", lint=False,
                      run_eagerly=run_eagerly)
        return model

    halved = sgd_model(0.1)
    hook = Halve()
    halved.add_step_hook(hook)
    halved.fit(X, Y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    reference = sgd_model(0.05)
    reference.fit(X, Y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    assert hook.sizes == [32, 32, 16] * 2
    assert (halved._fast_step is not None) == (not run_eagerly)
    for a, b in zip(halved.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None, reason="needs mpi4py (the `mpi` extra)")
def test_a_strategy_reduces_through_one_step_hook():
    from lamina.distribute import MPIStrategy

    first, second = MPIStrategy(timeout=30), MPIStrategy(timeout=30)
    with first.scope():
        model = compiled()
    model.fit(X, Y, batch_size=32, epochs=1, verbose=0, strategy=first)  # attached again: still one hook
    assert [h for h in model._step_hooks] == [first]
    model.fit(X, Y, batch_size=32, epochs=1, verbose=0, strategy=second)
    assert [h for h in model._step_hooks] == [second]
