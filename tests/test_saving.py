"""Saving and loading within lamina: round trips, weights files, custom objects, checkpoints, crashes, resume."""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
import zipfile

import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.saving import FileFormatError

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 6)).astype("float32")
Y = RNG.integers(0, 3, 40)
REPO_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def seq_model(compile=True):
    model = lamina.Sequential([
        lamina.Input((6,)), layers.Dense(8, activation="relu"), layers.BatchNormalization(),
        layers.Dropout(0.2), layers.Dense(5), layers.PReLU(), layers.Dense(3, activation="softmax")])
    if compile:
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def fun_model():
    a = lamina.Input((6,), name="a")
    h = layers.Dense(8, activation="tanh")(a)
    g = layers.Dense(8)(a)
    h = layers.LayerNormalization()(layers.Add()([layers.BatchNormalization()(h), g]))
    out = layers.Dense(3, activation="softmax", name="out")(h)
    model = lamina.Model(a, out)
    model.compile(optimizer=lamina.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy")
    return model


def weights_of(model):
    return [w.numpy().copy() for w in model.weights]


def opt_state(model):
    return [v.numpy().copy() for v in model.optimizer.variables]


def member(path, name):
    with zipfile.ZipFile(path) as zf:
        return zf.read(name)


# ---------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("make", [seq_model, fun_model])
def test_save_load_round_trip_keeps_predictions_and_optimizer(tmp_path, make):
    model = make()
    model.fit(X, Y, epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = lamina.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))
    assert loaded.compiled and int(loaded.optimizer.iterations.numpy()) == 10
    for a, b in zip(opt_state(loaded), opt_state(model)):
        np.testing.assert_array_equal(a, b)
    # training continues identically from the restored state
    for m in (model, loaded):
        lamina.utils.set_random_seed(9)  # same dropout masks for both
        m.fit(X, Y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(weights_of(loaded), weights_of(model)):
        np.testing.assert_array_equal(a, b)


def test_save_load_save_is_bit_identical(tmp_path):
    model = fun_model()
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "a.keras")
    again = lamina.saving.load_model(tmp_path / "a.keras")
    again.save(tmp_path / "b.keras")
    assert member(tmp_path / "a.keras", "model.weights.h5") == member(tmp_path / "b.keras", "model.weights.h5")
    assert json.loads(member(tmp_path / "a.keras", "config.json")) == json.loads(
        member(tmp_path / "b.keras", "config.json"))
    for a, b in zip(weights_of(model), weights_of(again)):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_compile_false_and_uncompiled_models(tmp_path):
    model = seq_model()
    model.fit(X, Y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    plain = lamina.saving.load_model(tmp_path / "m.keras", compile=False)
    assert not plain.compiled and plain.optimizer is None
    np.testing.assert_array_equal(plain.predict(X, verbose=0), model.predict(X, verbose=0))
    raw = seq_model(compile=False)
    raw.save(tmp_path / "raw.keras")
    assert not lamina.saving.load_model(tmp_path / "raw.keras").compiled


def test_untrained_compiled_model_round_trips(tmp_path):
    model = seq_model()  # optimizer not built yet: the file holds only iteration and learning_rate
    model.save(tmp_path / "m.keras")
    loaded = lamina.saving.load_model(tmp_path / "m.keras")
    assert loaded.optimizer.built and int(loaded.optimizer.iterations.numpy()) == 0
    loaded.fit(X, Y, epochs=1, verbose=0)


def test_zipped_false_folder_and_file_objects(tmp_path):
    model = fun_model()
    model.save(tmp_path / "folder", zipped=False)
    assert sorted(os.listdir(tmp_path / "folder")) == ["config.json", "metadata.json", "model.weights.h5"]
    np.testing.assert_array_equal(lamina.saving.load_model(tmp_path / "folder").predict(X, verbose=0),
                                  model.predict(X, verbose=0))
    buf = io.BytesIO()
    model.save(buf)
    buf.seek(0)
    np.testing.assert_array_equal(lamina.saving.load_model(buf).predict(X, verbose=0), model.predict(X, verbose=0))


def test_bad_paths_and_arguments(tmp_path):
    model = seq_model()
    with pytest.raises(ValueError, match=r"\.keras"):
        model.save(tmp_path / "m.txt")
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        model.save_weights(tmp_path / "m.h5")
    with pytest.raises(FileNotFoundError, match="nope.keras"):
        lamina.saving.load_model(tmp_path / "nope.keras")
    model.save(tmp_path / "m.keras")
    with pytest.raises(FileExistsError, match="overwrite=False"):
        model.save(tmp_path / "m.keras", overwrite=False)
    with pytest.raises(ValueError, match="not been built"):
        lamina.Sequential([layers.Dense(2)]).save_weights(tmp_path / "x.weights.h5")
    with pytest.raises(TypeError, match="custom_objects"):
        lamina.saving.load_model(tmp_path / "m.keras", custom_objects=["x"])


# ------------------------------------------------------------------------------------- weights files


def test_save_weights_load_weights_round_trip(tmp_path):
    model = fun_model()
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    model.save_weights(tmp_path / "w.weights.h5")
    other = fun_model()
    other.load_weights(tmp_path / "w.weights.h5")
    for a, b in zip(weights_of(other), weights_of(model)):
        np.testing.assert_array_equal(a, b)
    assert other.optimizer.built and int(other.optimizer.iterations.numpy()) == 5  # state came along
    third = fun_model()
    third.load_weights(tmp_path / "w.weights.h5")  # .keras files work for load_weights too
    model.save(tmp_path / "m.keras")
    third.load_weights(tmp_path / "m.keras")
    np.testing.assert_array_equal(third.predict(X, verbose=0), model.predict(X, verbose=0))


def test_load_weights_mismatch_changes_nothing(tmp_path):
    model = seq_model()
    model.save_weights(tmp_path / "w.weights.h5")
    wider = lamina.Sequential([lamina.Input((6,)), layers.Dense(8, activation="relu"),
                               layers.BatchNormalization(), layers.Dropout(0.2), layers.Dense(5), layers.PReLU(),
                               layers.Dense(4, activation="softmax")])
    before = weights_of(wider)
    with pytest.raises(FileFormatError, match=r"w\.weights\.h5.*shape \(5, 3\)"):
        wider.load_weights(tmp_path / "w.weights.h5")
    for a, b in zip(weights_of(wider), before):
        np.testing.assert_array_equal(a, b)  # not even the layers that matched were touched
    with pytest.warns(UserWarning, match="Skipping loading weights"):
        wider.load_weights(tmp_path / "w.weights.h5", skip_mismatch=True)
    np.testing.assert_array_equal(wider.layers[0].kernel.numpy(), model.layers[0].kernel.numpy())


def test_legacy_h5_round_trip(tmp_path):
    model = seq_model()
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "m.h5")
    loaded = lamina.saving.load_model(tmp_path / "m.h5")
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))
    assert int(loaded.optimizer.iterations.numpy()) == 5
    fresh = seq_model()
    fresh.load_weights(tmp_path / "m.h5")
    np.testing.assert_array_equal(fresh.predict(X, verbose=0), model.predict(X, verbose=0))


# ---------------------------------------------------------------------------------------- json, custom


def test_to_json_model_from_json():
    model = fun_model()
    text = model.to_json()
    again = lamina.saving.model_from_json(text)
    assert [type(la).__name__ for la in again.layers] == [type(la).__name__ for la in model.layers]
    assert again.compiled and json.loads(again.to_json())["config"] == json.loads(text)["config"]
    with pytest.raises(FileFormatError, match="not valid"):
        lamina.saving.model_from_json("{oops")


@lamina.saving.register_keras_serializable(package="SavingTest")
class Scale(layers.Layer):
    """A custom layer with a weight and a sublayer."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor
        self.inner = layers.Dense(3)

    def build(self, input_shape):
        self.inner.build(input_shape)
        self.w = self.add_weight(shape=(3,), initializer="ones", name="w")

    def call(self, x):
        return self.inner(x) * self.w * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@lamina.saving.register_keras_serializable(package="SavingTest")
def scaled_tanh(x):
    return lamina.ops.tanh(x) * 2


def my_loss(y_true, y_pred):
    return lamina.ops.mean(lamina.ops.square(y_true - y_pred))


def test_custom_layer_activation_and_loss(tmp_path):
    model = lamina.Sequential([lamina.Input((6,)), Scale(3.0), layers.Dense(1, activation=scaled_tanh)])
    model.compile(optimizer="adam", loss=my_loss)
    model.fit(X, X[:, :1], epochs=1, verbose=0)
    model.save(tmp_path / "c.keras")
    with pytest.raises(FileFormatError, match="my_loss"):
        lamina.saving.load_model(tmp_path / "c.keras")  # unregistered loss function: refused, named
    loaded = lamina.saving.load_model(tmp_path / "c.keras", custom_objects={"my_loss": my_loss})
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))
    assert isinstance(loaded.layers[0], Scale) and loaded.layers[0].factor == 3.0
    inner = lamina.saving.load_model(tmp_path / "c.keras", compile=False)
    np.testing.assert_array_equal(inner.layers[0].inner.kernel.numpy(), model.layers[0].inner.kernel.numpy())


def test_serialize_deserialize_keras_object():
    ser = lamina.saving.serialize_keras_object
    de = lamina.saving.deserialize_keras_object
    opt = lamina.optimizers.Adam(0.01)
    cfg = ser(opt)
    assert cfg["module"] == "keras.optimizers" and cfg["class_name"] == "Adam"
    assert de(cfg).get_config() == opt.get_config()
    assert de(ser(lamina.losses.BinaryCrossentropy(label_smoothing=0.2))).label_smoothing == 0.2
    assert de(ser(lamina.losses.Huber(delta=2.0))).delta == 2.0  # kept, where Keras's config drops it
    assert de(ser(np.arange(3.0))).tolist() == [0.0, 1.0, 2.0]
    keras_path = {"module": "keras.src.optimizers.adam", "class_name": "Adam", "config": {}}
    assert de(keras_path).learning_rate == pytest.approx(1e-3)
    assert de(ser(scaled_tanh)) is scaled_tanh
    with pytest.warns(UserWarning, match="lambda"):  # written as Keras writes it; read back only unsafely
        assert ser(lambda x: x)["class_name"] == "__lambda__"


# ----------------------------------------------------------------------------------------- checkpoints


def test_model_checkpoint_end_to_end(tmp_path):
    model = seq_model()
    cbs = [lamina.callbacks.ModelCheckpoint(str(tmp_path / "ep{epoch:02d}.keras")),
           lamina.callbacks.ModelCheckpoint(str(tmp_path / "best.weights.h5"), monitor="val_loss",
                                            save_best_only=True, save_weights_only=True)]
    model.fit(X, Y, epochs=3, batch_size=8, validation_split=0.25, callbacks=cbs, verbose=0)
    assert sorted(p for p in os.listdir(tmp_path) if p.endswith(".keras")) == [
        "ep01.keras", "ep02.keras", "ep03.keras"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    last = lamina.saving.load_model(tmp_path / "ep03.keras")
    np.testing.assert_array_equal(last.predict(X, verbose=0), model.predict(X, verbose=0))
    assert int(last.optimizer.iterations.numpy()) == 12
    best = seq_model()
    best.load_weights(tmp_path / "best.weights.h5")
    assert best.optimizer.built


def test_failed_save_leaves_previous_file(tmp_path, monkeypatch):
    from lamina.saving import h5_weights

    model = seq_model()
    model.save(tmp_path / "m.keras")
    good = (tmp_path / "m.keras").read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(h5_weights, "write_h5", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        model.save(tmp_path / "m.keras")
    assert (tmp_path / "m.keras").read_bytes() == good
    assert os.listdir(tmp_path) == ["m.keras"]


def _run(code: str, *args, **kwargs):
    env = dict(os.environ, PYTHONPATH=REPO_SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120, **kwargs)


def test_killed_during_save_loop_leaves_loadable_file(tmp_path):
    """SIGKILL a process that saves in a loop, several times at different moments: the file loads."""
    code = """
        import sys, lamina
        from lamina import layers
        m = lamina.Sequential([lamina.Input((64,)), layers.Dense(256, activation="relu"),
                               layers.Dense(256, activation="relu"), layers.Dense(4)])
        m.compile(optimizer="adam", loss="mse")
        i = 0
        while True:
            m.layers[0].kernel.assign(m.layers[0].kernel.numpy() * 0 + i)
            m.save(sys.argv[1])
            i += 1
            print(i, flush=True)
    """
    path = tmp_path / "loop.keras"
    env = dict(os.environ, PYTHONPATH=REPO_SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rng = np.random.default_rng(0)
    for _trial in range(4):
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(path)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip(), proc.stderr.read()  # at least one save finished
            time.sleep(float(rng.uniform(0.0, 0.05)))
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.communicate(timeout=30)  # reaps the process and closes its pipes
        model = lamina.saving.load_model(path)
        k = model.layers[0].kernel.numpy()
        assert np.all(k == k.flat[0])  # one consistent save, not a mix
    leftovers = [p for p in os.listdir(tmp_path) if p != "loop.keras"]
    assert all(p.endswith(".tmp") for p in leftovers)  # at most stray temp files, never a torn target


def test_resume_in_new_process_matches_straight_run(tmp_path):
    """6 epochs straight == 3 epochs, save, load in a new process, 3 more (initial_epoch=3)."""
    build = """
        import sys, numpy as np, lamina
        from lamina import layers
        def build():
            lamina.utils.set_random_seed(0)
            m = lamina.Sequential([lamina.Input((6,)), layers.Dense(16, activation="relu"), layers.Dropout(0.3),
                                   layers.BatchNormalization(), layers.Dense(3, activation="softmax")])
            sched = lamina.optimizers.schedules.ExponentialDecay(0.02, decay_steps=3, decay_rate=0.7)
            m.compile(optimizer=lamina.optimizers.Adam(sched), loss="sparse_categorical_crossentropy")
            return m
        rng = np.random.default_rng(1)
        x = rng.normal(size=(50, 6)).astype("float32"); y = rng.integers(0, 3, 50)
    """
    first = build + """
        m = build(); m.fit(x, y, epochs=3, batch_size=8, verbose=0); m.save(sys.argv[1])
    """
    second = build + """
        lamina.utils.set_random_seed(999)  # a different process state: the file's must win
        m = lamina.saving.load_model(sys.argv[1], restore_rng_state=True)
        m.fit(x, y, epochs=6, initial_epoch=3, batch_size=8, verbose=0)
        np.savez(sys.argv[2], *[w.numpy() for w in m.weights])
    """
    straight = build + """
        m = build(); m.fit(x, y, epochs=6, batch_size=8, verbose=0)
        np.savez(sys.argv[1], *[w.numpy() for w in m.weights])
    """
    for code, args in ((first, [tmp_path / "c.keras"]), (second, [tmp_path / "c.keras", tmp_path / "r.npz"]),
                       (straight, [tmp_path / "s.npz"])):
        out = _run(code, *args)
        assert out.returncode == 0, out.stderr
    resumed, direct = np.load(tmp_path / "r.npz"), np.load(tmp_path / "s.npz")
    assert len(resumed.files) == len(direct.files) == 8
    for k in direct.files:
        np.testing.assert_allclose(resumed[k], direct[k], rtol=1e-6, atol=1e-7)


def test_load_restores_random_state(tmp_path):
    lamina.utils.set_random_seed(5)
    model = seq_model()
    model.save(tmp_path / "m.keras")
    expected = lamina.backend.rng().random(4)
    lamina.utils.set_random_seed(77)
    lamina.saving.load_model(tmp_path / "m.keras", restore_rng_state=True)
    np.testing.assert_array_equal(lamina.backend.rng().random(4), expected)


def test_import_lamina_does_not_import_h5py():
    out = _run("import sys, lamina, lamina.saving; lamina.saving.load_model; print('h5py' in sys.modules)")
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_no_warnings_on_plain_round_trip(tmp_path):
    model = fun_model()
    model.fit(X, Y, epochs=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.save(tmp_path / "m.keras")
        lamina.saving.load_model(tmp_path / "m.keras")


def test_numpy_numbers_in_layer_configs_save(tmp_path):
    model = lamina.Sequential([lamina.Input((4,)), lamina.layers.Dense(3), lamina.layers.Dropout(np.float32(0.5)),
                               lamina.layers.Dense(np.int64(2))])
    path = tmp_path / "np.keras"
    model.save(path)
    loaded = lamina.saving.load_model(path)
    assert loaded.layers[1].rate == 0.5 and loaded.layers[2].units == 2
    assert '"rate": 0.5' in model.to_json()


def test_legacy_h5_under_keras_names(tmp_path):
    from lamina.saving import legacy_h5

    model = lamina.Sequential([lamina.Input((3,)), lamina.layers.Dense(2, activation="relu")])
    path = tmp_path / "m.h5"
    legacy_h5.save_model_to_hdf5(model, path)
    x = np.ones((4, 3), "float32")
    np.testing.assert_array_equal(legacy_h5.load_model_from_hdf5(path, compile=False).predict(x, verbose=0),
                                  model.predict(x, verbose=0))
