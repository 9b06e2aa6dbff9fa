"""Rules for what a load may change and what it refuses: the global random stream, the optimizer's
state (another optimizer's file, a failed load, a state that would train into NaN), Keras's lambda
layouts, and the messages for inconsistent configs."""

import base64
import io
import json
import marshal
import warnings

import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.saving import FileFormatError
from tests.helpers.keras_files import read_members, write_zip

X = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
Y = np.random.default_rng(1).normal(size=(16, 2)).astype("float32")


def model(optimizer="adam", dropout: bool = False):
    stack = [lamina.Input((4,)), layers.Dense(5, activation="relu")]
    stack += [layers.Dropout(0.5)] if dropout else []
    m = lamina.Sequential(stack + [layers.Dense(2)])
    m.compile(optimizer=optimizer, loss="mse")
    return m


def trained(optimizer="adam", **kwargs):
    m = model(optimizer, **kwargs)
    m.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    return m


def edit_json(members: dict, name: str, fn) -> dict:
    data = json.loads(members[name])
    fn(data)
    return {**members, name: json.dumps(data).encode()}


def edit_h5(data: bytes, fn) -> bytes:
    import h5py

    buf = io.BytesIO(data)
    with h5py.File(buf, "a") as f:
        fn(f)
    return buf.getvalue()


def put(path: str, value):
    """An h5 edit: replace dataset ``path`` with ``value``."""
    def fn(f):
        del f[path]
        f[path] = value
    return fn


def snapshot(m) -> dict:
    opt = m.optimizer
    return {"weights": [w.numpy() for w in m.weights], "built": opt.built,
            "opt": [v.numpy() for v in opt.variables], "iterations": int(opt._iterations.numpy())}


def assert_same(a: dict, b: dict) -> None:
    assert a["built"] == b["built"] and a["iterations"] == b["iterations"]
    assert len(a["opt"]) == len(b["opt"]) and len(a["weights"]) == len(b["weights"])
    for x, y in zip(a["weights"] + a["opt"], b["weights"] + b["opt"]):
        np.testing.assert_array_equal(x, y)


# -------------------------------------------------------------------------------- random state


@pytest.fixture
def saved_file(tmp_path):
    lamina.utils.set_random_seed(5)
    path = tmp_path / "m.keras"
    trained(dropout=True).save(path)
    return path


def _next_draws(n: int = 4) -> np.ndarray:
    """What the global generator will draw next, without drawing it."""
    probe = np.random.Generator(np.random.PCG64())
    probe.bit_generator.state = lamina.backend.rng().bit_generator.state
    return probe.random(n)


@pytest.mark.parametrize("strip_metadata", [False, True], ids=["lamina-file", "no-lamina-metadata"])
def test_default_load_leaves_the_random_stream_unchanged(saved_file, tmp_path, strip_metadata):
    path = saved_file
    if strip_metadata:  # as Keras writes it: building the layers still draws initial weights
        path = write_zip(tmp_path / "k.keras", edit_json(read_members(saved_file), "metadata.json",
                                                      lambda meta: meta.pop("lamina")))
    lamina.utils.set_random_seed(77)
    expected = _next_draws()
    lamina.saving.load_model(path)
    np.testing.assert_array_equal(lamina.backend.rng().random(4), expected)


def test_legacy_h5_load_leaves_the_random_stream_unchanged(tmp_path):
    trained(dropout=True).save(tmp_path / "m.h5")
    lamina.utils.set_random_seed(77)
    expected = _next_draws()
    lamina.saving.load_model(tmp_path / "m.h5")
    np.testing.assert_array_equal(lamina.backend.rng().random(4), expected)
    with pytest.raises(ValueError, match="holds no random state"):
        lamina.saving.load_model(tmp_path / "m.h5", restore_rng_state=True)


def test_restore_rng_state_on_request(tmp_path):
    lamina.utils.set_random_seed(5)
    m = trained(dropout=True)
    m.save(tmp_path / "m.keras")
    expected = _next_draws()
    lamina.utils.set_random_seed(77)
    lamina.saving.load_model(tmp_path / "m.keras", restore_rng_state=True)
    np.testing.assert_array_equal(lamina.backend.rng().random(4), expected)


def test_restore_rng_state_needs_a_state_in_the_file(saved_file, tmp_path):
    path = write_zip(tmp_path / "k.keras", edit_json(read_members(saved_file), "metadata.json",
                                                  lambda meta: meta.pop("lamina")))
    with pytest.raises(FileFormatError, match="holds no lamina random state"):
        lamina.saving.load_model(path, restore_rng_state=True)


def _mt(key, pos=624):
    return {"bit_generator": "MT19937", "state": {"key": key, "pos": pos}}


def _pcg(state, inc, **extra):
    return {"bit_generator": "PCG64", "state": {"state": state, "inc": inc}, "has_uint32": 0, "uinteger": 0,
            **extra}


@pytest.mark.parametrize("state,match", [
    (_mt([0] * 624), "all zeros"),
    (_pcg(0, 0), "even"),
    (_pcg(12345, 10), "even"),
    (_mt([1] * 623), "list of 624"),
    (_mt([1] * 623 + [1 << 32]), r"\[0, 4294967296\)"),
    (_mt([1] * 624, pos=625), "pos"),
    (_pcg(1, 1 << 128 | 1), "inc"),
    (_pcg(-1, 3), "state.state"),
    (_pcg(1.5, 3), "integer"),
    (_pcg(True, 3), "integer"),
    (_pcg(1, 3, extra_key=1), "exactly the keys"),
    ({"bit_generator": "SFC64", "state": {"state": [0, 0, 0, 7]}, "has_uint32": 0, "uinteger": 0}, "all zero"),
    ({"bit_generator": "os.system", "state": {}}, "unknown bit generator"),
    ([1, 2], "must be a dict"),
], ids=["mt-zero-key", "pcg-zero", "pcg-even-inc", "mt-short-key", "mt-word-range", "mt-pos", "pcg-inc-range",
        "pcg-negative", "pcg-float", "pcg-bool", "pcg-extra-key", "sfc-zero", "unknown", "not-a-dict"])
def test_malformed_or_degenerate_random_state_is_refused(saved_file, tmp_path, state, match):
    def put_state(meta):
        meta["lamina"]["rng_state"] = state

    path = write_zip(tmp_path / "r.keras", edit_json(read_members(saved_file), "metadata.json", put_state))
    lamina.utils.set_random_seed(77)
    expected = _next_draws()
    for restore in (True, False):  # checked whenever present, used only on request
        with pytest.raises(FileFormatError, match=f"random state.*{match}"):
            lamina.saving.load_model(path, restore_rng_state=restore)
    np.testing.assert_array_equal(lamina.backend.rng().random(4), expected)


def test_valid_states_of_other_generators_restore(saved_file, tmp_path):
    for name in ("MT19937", "Philox", "SFC64", "PCG64DXSM"):
        gen = np.random.Generator(getattr(np.random, name)(3))
        state = json.loads(json.dumps(gen.bit_generator.state, default=lambda a: a.tolist()))

        def put_state(meta, state=state):
            meta["lamina"]["rng_state"] = state

        path = write_zip(tmp_path / f"{name}.keras", edit_json(read_members(saved_file), "metadata.json", put_state))
        lamina.saving.load_model(path, restore_rng_state=True)
        np.testing.assert_array_equal(lamina.backend.rng().random(3), gen.random(3))


# --------------------------------------------------------------------- another optimizer's file


@pytest.mark.parametrize("suffix", [".keras", ".weights.h5"])
@pytest.mark.parametrize("optimizer,count", [("sgd", 2), ("sgd_momentum", 6)])
def test_load_weights_skips_another_optimizers_state_as_keras_does(tmp_path, suffix, optimizer, count):
    source = trained("adam")
    path = tmp_path / f"a{suffix}"
    source.save(path) if suffix == ".keras" else source.save_weights(path)
    opt = lamina.optimizers.SGD(momentum=0.9) if optimizer == "sgd_momentum" else lamina.optimizers.SGD()
    target = model(opt)
    before = snapshot(target)
    with pytest.warns(UserWarning, match=rf"^Skipping variable loading for optimizer '{opt.name}', because it has "
                                         rf"{count} variables whereas the saved optimizer has 10 variables"):
        target.load_weights(path)
    for got, want in zip(target.weights, source.weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert target.optimizer.built == before["built"] and len(target.optimizer.variables) == len(before["opt"])
    assert int(target.optimizer.iterations.numpy()) == 0
    target.fit(X, Y, epochs=1, verbose=0)  # and it trains from there


def test_load_weights_same_optimizer_still_restores_its_state(tmp_path):
    source = trained("adam")
    source.save_weights(tmp_path / "a.weights.h5")
    target = model("adam")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        target.load_weights(tmp_path / "a.weights.h5")
    assert int(target.optimizer.iterations.numpy()) == int(source.optimizer.iterations.numpy()) == 2
    for got, want in zip(target.optimizer.variables, source.optimizer.variables):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_load_model_still_refuses_an_optimizer_state_that_does_not_fit(tmp_path):
    trained("adam").save(tmp_path / "a.keras")
    members = read_members(tmp_path / "a.keras")
    members["model.weights.h5"] = edit_h5(members["model.weights.h5"], lambda f: f.__delitem__("optimizer/vars/9"))
    with pytest.raises(FileFormatError, match="holds 9 arrays.*compile=False"):
        lamina.saving.load_model(write_zip(tmp_path / "b.keras", members))


# ----------------------------------------------------------------- a failed load changes nothing


def _corrupt_last_kernel(path):
    """A weights file whose last Dense kernel has the wrong shape (read after the optimizer is built)."""
    return edit_h5(path.read_bytes(), put("layers/dense_1/vars/0", np.zeros((7, 2), "float32")))


@pytest.mark.parametrize("state", ["fresh", "trained"])
def test_failed_load_weights_leaves_weights_and_optimizer_untouched(tmp_path, state):
    trained("adam").save_weights(tmp_path / "a.weights.h5")
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(_corrupt_last_kernel(tmp_path / "a.weights.h5"))
    target = model("adam") if state == "fresh" else trained("adam")
    before = snapshot(target)
    with pytest.raises(FileFormatError, match=r"shape \(7, 2\)"):
        target.load_weights(bad)
    assert_same(snapshot(target), before)
    target.fit(X, Y, epochs=1, verbose=0)  # the optimizer still works (built afresh if it was unbuilt)


def test_failed_optimizer_state_leaves_the_optimizer_unbuilt(tmp_path):
    trained("adam").save_weights(tmp_path / "a.weights.h5")
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(edit_h5((tmp_path / "a.weights.h5").read_bytes(), put("optimizer/vars/3", np.full((4, 5), np.nan,
                                                                                                      "float32"))))
    target = model("adam")
    before = snapshot(target)
    with pytest.raises(FileFormatError, match="non-finite"):
        target.load_weights(bad)
    assert_same(snapshot(target), before)
    assert not target.optimizer.built


@lamina.saving.register_keras_serializable(package="test_loading_rules")
class Picky(layers.Layer):
    """Keeps its own state and refuses, at assignment, any that is all zeros."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

    def call(self, x):
        return x * self.scale

    def save_own_variables(self, store):
        store["0"] = self.scale.numpy()

    def load_own_variables(self, store):
        if not np.any(store["0"]):
            raise ValueError("Picky refuses an all-zero scale")
        self.scale.assign(store["0"])


def test_failure_while_assigning_restores_what_was_already_assigned(tmp_path):
    def picky_model():
        m = lamina.Sequential([lamina.Input((4,)), layers.Dense(3), Picky()])
        m.compile(optimizer="adam", loss="mse")
        return m

    source = picky_model()
    source.fit(X, Y[:, :1].repeat(3, axis=1), epochs=1, verbose=0)
    source.save_weights(tmp_path / "p.weights.h5")
    data = edit_h5((tmp_path / "p.weights.h5").read_bytes(), put("layers/picky/vars/0", np.zeros(3, "float32")))
    (tmp_path / "p.weights.h5").write_bytes(data)
    target = picky_model()
    before = snapshot(target)
    with pytest.raises(ValueError, match="all-zero scale"):
        target.load_weights(tmp_path / "p.weights.h5")
    assert_same(snapshot(target), before)  # the Dense kernel assigned first was put back


# ---------------------------------------------------------------- states that would train into NaN


@pytest.mark.parametrize("dataset,value,match", [
    ("optimizer/vars/0", np.int64(-3), r"'adam/iteration' is -3.*negative. Received: iteration=-3"),
    ("optimizer/vars/1", np.float32("nan"), r"'adam/learning_rate' holds 1 non-finite.*Received: learning_rate=nan"),
    ("optimizer/vars/1", np.float32(-0.1), r"'adam/learning_rate' is -0.1.*cannot be negative"),
    ("optimizer/vars/2", np.full((4, 5), np.inf, "float32"), r"'adam/dense\w*_kernel_momentum' holds 20 "
                                                               r"non-finite"),
], ids=["negative-iterations", "nan-learning-rate", "negative-learning-rate", "inf-slot"])
@pytest.mark.parametrize("how", ["load_model", "load_weights"])
def test_optimizer_state_that_would_train_into_nan_is_refused(tmp_path, dataset, value, match, how):
    m = trained(lamina.optimizers.Adam(name="adam"))
    m.save(tmp_path / "a.keras")
    members = read_members(tmp_path / "a.keras")
    members["model.weights.h5"] = edit_h5(members["model.weights.h5"], put(dataset, value))
    path = write_zip(tmp_path / "bad.keras", members)
    if how == "load_model":
        with pytest.raises(FileFormatError, match=match):
            lamina.saving.load_model(path)
        return
    target = model(lamina.optimizers.Adam(name="adam"))
    before = snapshot(target)
    with pytest.raises(FileFormatError, match=match):
        target.load_weights(path)
    assert_same(snapshot(target), before)


@pytest.mark.parametrize("key,value", [("beta_1", float("nan")), ("epsilon", float("inf")),
                                       ("ema_momentum", float("-inf"))])
def test_non_finite_optimizer_hyperparameter_in_the_file_is_refused(tmp_path, key, value):
    trained("adam").save(tmp_path / "a.keras")

    def poison(cfg):
        cfg["compile_config"]["optimizer"]["config"][key] = value

    path = write_zip(tmp_path / "b.keras", edit_json(read_members(tmp_path / "a.keras"), "config.json", poison))
    with pytest.raises(FileFormatError, match=rf"optimizer 'adam\w*' has the non-finite hyper-parameter '{key}'"):
        lamina.saving.load_model(path)
    lamina.saving.load_model(path, compile=False)  # the architecture itself is fine


def test_non_finite_schedule_rate_is_refused(tmp_path):
    sched = lamina.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.9)
    trained(lamina.optimizers.Adam(sched)).save(tmp_path / "a.keras")

    def poison(cfg):
        cfg["compile_config"]["optimizer"]["config"]["learning_rate"]["config"]["decay_rate"] = float("nan")

    path = write_zip(tmp_path / "b.keras", edit_json(read_members(tmp_path / "a.keras"), "config.json", poison))
    with pytest.raises(FileFormatError, match=r"hyper-parameter 'learning_rate\.config\.decay_rate' = nan"):
        lamina.saving.load_model(path)


@pytest.mark.parametrize("edit,match", [
    (put("optimizer_weights/adam/iteration", np.int64(-1)), r"'adam/iteration' is -1"),
    (put("optimizer_weights/adam/learning_rate", np.float32("nan")), r"'adam/learning_rate' holds 1 non-finite"),
], ids=["negative-iterations", "nan-learning-rate"])
def test_legacy_h5_optimizer_state_that_would_train_into_nan_is_refused(tmp_path, edit, match):
    trained(lamina.optimizers.Adam(name="adam")).save(tmp_path / "m.h5")
    path = tmp_path / "bad.h5"
    path.write_bytes(edit_h5((tmp_path / "m.h5").read_bytes(), edit))
    with pytest.raises(FileFormatError, match=match):
        lamina.saving.load_model(path)


def test_legacy_h5_non_finite_hyperparameter_is_refused(tmp_path):
    trained(lamina.optimizers.Adam(name="adam")).save(tmp_path / "m.h5")

    def poison(f):
        training = json.loads(f.attrs["training_config"])
        training["optimizer_config"]["config"]["beta_2"] = float("nan")
        f.attrs["training_config"] = json.dumps(training)

    path = tmp_path / "bad.h5"
    path.write_bytes(edit_h5((tmp_path / "m.h5").read_bytes(), poison))
    with pytest.raises(FileFormatError, match=r"bad\.h5.*optimizer 'adam' has the non-finite hyper-parameter 'beta_2'"):
        lamina.saving.load_model(path)


# ------------------------------------------------------------------------------ Keras's lambdas


def _dump(fn) -> list:
    """Keras's func_dump: base64 marshalled code, defaults, closure values."""
    code = base64.encodebytes(marshal.dumps(fn.__code__)).decode("ascii")
    closure = [c.cell_contents for c in fn.__closure__] if fn.__closure__ else None
    return [code, list(fn.__defaults__) if fn.__defaults__ else None, closure]


def _with_activation(tmp_path, activation):
    m = model()
    m.save(tmp_path / "m.keras")

    def put_activation(cfg):
        cfg["config"]["layers"][1]["config"]["activation"] = activation

    members = edit_json(read_members(tmp_path / "m.keras"), "config.json", put_activation)
    return write_zip(tmp_path / "lam.keras", members)


def test_keras_bare_lambda_activation_is_named_and_loads_when_trusted(tmp_path):
    shift = 3.0
    path = _with_activation(tmp_path, {"value": _dump(lambda x, k=2.0: x * k + shift)})
    with pytest.raises(FileFormatError, match=r"the 'activation' of Dense 'dense\w*' is a Python lambda "
                                              r"\(marshalled bytecode.*safe_mode=False"):
        lamina.saving.load_model(path)
    m = lamina.saving.load_model(path, safe_mode=False)
    dense = m.layers[0]
    np.testing.assert_allclose(dense(X), (X @ dense.kernel.numpy() + dense.bias.numpy()) * 2.0 + 3.0, rtol=1e-6)


@pytest.mark.parametrize("layout", ["value", "code"])
def test_lambda_layouts_decode(layout):
    k = 10.0
    fn = lambda x, b=1.0: x * k + b
    code, defaults, closure = _dump(fn)
    inner = {"value": [code, defaults, closure]} if layout == "value" else {
        "code": code, "defaults": defaults, "closure": closure}
    config = {"class_name": "__lambda__", "config": inner}
    with pytest.raises(FileFormatError, match="lambda"):
        lamina.saving.deserialize_keras_object(config)
    loaded = lamina.saving.deserialize_keras_object(config, safe_mode=False)
    assert loaded(2.0) == 21.0


def test_deserialize_keras_object_gives_a_layer_its_bare_lambda_activation():
    config = {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
              "config": {"name": "d", "units": 2, "activation": {"value": _dump(lambda x: x * 3.0)}}}
    with pytest.raises(FileFormatError, match=r"'activation' of Dense 'd' is a Python lambda"):
        lamina.saving.deserialize_keras_object(config)
    dense = lamina.saving.deserialize_keras_object(config, safe_mode=False)
    np.testing.assert_array_equal(dense.activation(np.ones(2)), [3.0, 3.0])


def test_lambda_with_a_wrong_closure_is_a_clear_error(tmp_path):
    code, defaults, _ = _dump(lambda x: x + 1)
    path = _with_activation(tmp_path, {"value": [code, defaults, [1.0, 2.0]]})
    with pytest.raises(FileFormatError, match=r"uses 0 closure variable\(s\) \[\] but the file stores 2"):
        lamina.saving.load_model(path, safe_mode=False)


def test_a_tuple_of_three_strings_is_not_mistaken_for_a_lambda(tmp_path):
    m = model()
    m.save(tmp_path / "m.keras")

    def put_tuple(cfg):
        cfg["config"]["layers"][1]["config"]["name"] = "dense_t"
        cfg["config"]["layers"][1]["config"]["extra"] = {"class_name": "__tuple__",
                                                         "config": {"value": ["4wEA", None, None]}}

    path = write_zip(tmp_path / "t.keras", edit_json(read_members(tmp_path / "m.keras"), "config.json", put_tuple))
    with pytest.raises(FileFormatError) as info:
        lamina.saving.load_model(path)
    assert "lambda" not in str(info.value)  # Dense has no 'extra' argument: that is the error


@pytest.mark.oracle
def test_keras_lambda_activation_loss_and_layer_function_load_with_safe_mode_off(keras, tmp_path):
    offset = 0.5
    km = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation=lambda x, k=2.0: x * k + offset)])
    km.compile(optimizer="sgd", loss=lambda y_true, y_pred: (y_true - y_pred) ** 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns that it writes a lambda
        km.save(tmp_path / "k.keras")
        lambda_layer = keras.layers.Lambda(lambda x, k=3.0: x * k + offset)
        function_config = json.loads(json.dumps(lambda_layer.get_config()["function"]))
    with pytest.raises(FileFormatError, match=r"'activation' of Dense 'dense\w*' is a Python lambda"):
        lamina.saving.load_model(tmp_path / "k.keras")
    lm = lamina.saving.load_model(tmp_path / "k.keras", safe_mode=False)
    np.testing.assert_allclose(lm.predict(X, verbose=0), keras.ops.convert_to_numpy(km(X)), rtol=1e-5, atol=1e-6)
    y = np.random.default_rng(2).normal(size=(16, 3)).astype("float32")
    np.testing.assert_allclose(lm.evaluate(X, y, verbose=0), km.evaluate(X, y, verbose=0), rtol=1e-5)
    fn = lamina.saving.deserialize_keras_object(function_config, safe_mode=False)
    np.testing.assert_allclose(fn(np.ones(2, "float32")), [3.5, 3.5])


# ------------------------------------------------------------------------------ weak messages


def _config_edit(tmp_path, m, fn):
    m.save(tmp_path / "m.keras")
    return write_zip(tmp_path / "e.keras", edit_json(read_members(tmp_path / "m.keras"), "config.json", fn))


def test_registered_name_that_names_another_class(tmp_path):
    def lie(cfg):
        cfg["config"]["layers"][1]["registered_name"] = "Sequential"

    path = _config_edit(tmp_path, model(), lie)
    with pytest.raises(FileFormatError, match=r"Dense 'dense\w*' has registered_name 'Sequential', which names "
                                              r"another class.*Received: class_name='Dense', "
                                              r"registered_name='Sequential'"):
        lamina.saving.load_model(path)


def _functional():
    a = lamina.Input((4,), name="a")
    b = layers.Dense(3, activation="relu", name="b")(a)
    c = layers.Dense(3, activation="relu", name="c")(b)
    m = lamina.Model(a, layers.Dense(2, name="d")(c))
    m.compile(optimizer="adam", loss="mse")
    return m


def _point(cfg, layer: str, history: list):
    entry = next(la for la in cfg["config"]["layers"] if la["name"] == layer)
    entry["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = history


def test_functional_cycle_is_named(tmp_path):
    path = _config_edit(tmp_path, _functional(), lambda cfg: _point(cfg, "b", ["c", 0, 0]))
    with pytest.raises(FileFormatError, match=r"Functional model '\w+' cannot be connected: its layers form a "
                                              r"cycle \('b' takes an output of 'c', 'c' takes an output of 'b'\)"):
        lamina.saving.load_model(path)


def test_functional_reference_to_a_missing_layer_is_named(tmp_path):
    path = _config_edit(tmp_path, _functional(), lambda cfg: _point(cfg, "c", ["nope", 0, 0]))
    with pytest.raises(FileFormatError, match=r"layer 'c' takes tensor \['nope', 0, 0\], but the model has no "
                                              "layer of that name"):
        lamina.saving.load_model(path)


def test_functional_output_reference_to_a_missing_tensor_is_named(tmp_path):
    def bad_output(cfg):
        cfg["config"]["output_layers"] = [["d", 3, 0]]

    path = _config_edit(tmp_path, _functional(), bad_output)
    with pytest.raises(FileFormatError, match=r"'output_layers' names tensor \['d', 3, 0\], which no layer produces"):
        lamina.saving.load_model(path)


def test_functional_from_config_refuses_two_layers_of_one_name():
    # Both Dense layers named 'b': the second would never be called and the model would silently lose it.
    cfg = _functional().get_config()
    cfg["layers"][2]["name"] = cfg["layers"][2]["config"]["name"] = "b"
    cfg["output_layers"] = [["b", 0, 0]]
    with pytest.raises(ValueError, match=r"The name \"b\" is used 2 times in the model '\w+'. All layer names "
                                         r"should be unique.*Received: layers named \['a', 'b', 'b', 'd'\]"):
        lamina.Model.from_config(cfg)


def test_functional_constructor_refuses_two_layers_of_one_name():
    # Keras refuses this model at construction; a saved copy could not be rebuilt.
    inputs = lamina.Input(shape=(3,))
    outputs = layers.Dense(2, name="a")(layers.Dense(2, name="a")(inputs))
    with pytest.raises(ValueError, match=r'The name "a" is used 2 times in the model'):
        lamina.Model(inputs, outputs)


@pytest.mark.parametrize("config, problem", [
    ({"class_name": "__numpy__", "config": {"value": [1, 2]}}, r"'__numpy__' entry's config must be a dict with "
                                                                r"the keys \['value', 'dtype'\]"),
    ({"class_name": "__numpy__", "config": "x"}, r"'__numpy__' entry's config must be a dict"),
    ({"class_name": "__numpy__", "config": {"value": [1], "dtype": "nope"}}, r"'__numpy__' entry has no valid "
                                                                              r"dtype.*Received: dtype='nope'"),
    ({"class_name": "__numpy__", "config": {"value": [[1], [2, 3]], "dtype": "float32"}},
     r"'__numpy__' entry's value is not a float32 array.*Received: value=\[\[1\], \[2, 3\]\]"),
    ({"class_name": "__bytes__", "config": {"value": 5}}, r"'__bytes__' entry's value must be a string"),
    ({"class_name": "__tuple__", "config": {"value": 5}}, r"'__tuple__' entry's value must be a list"),
    ({"class_name": "__slice__", "config": [1]}, r"'__slice__' entry's config must be a dict"),
])
def test_malformed_value_markers_are_named(config, problem):
    # Raw KeyError / AttributeError / NumPy errors before; each now names the marker and what it holds.
    with pytest.raises(ValueError, match=problem):
        lamina.saving.deserialize_keras_object(config)


@pytest.mark.parametrize("text, problem", [
    ("[1, 2]", "the model config is a list, not a dict"),
    ('{"config": {}}', "the model config has no 'class_name'"),
    ('{"class_name": "function", "config": "relu"}', "has a 'config' entry that is a str, not a dict"),
])
def test_model_config_problems_are_named(text, problem):
    with pytest.raises(FileFormatError, match=problem):
        lamina.models.model_from_json(text)
