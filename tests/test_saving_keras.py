"""Oracle tests: ``.keras`` (and legacy ``.h5``) files move between real Keras 3 and lamina both ways."""

import io
import json
import zipfile

import numpy as np
import pytest

import lamina

pytestmark = [pytest.mark.oracle,
              pytest.mark.filterwarnings("ignore::lamina.diagnostics.findings.LintWarning"),
              pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")]

RTOL, ATOL = 1e-4, 1e-5
ACTIVATIONS = ["celu", "elu", "exponential", "gelu", "hard_shrink", "hard_sigmoid", "hard_silu", "hard_tanh",
               "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish", "relu", "relu6", "selu", "sigmoid",
               "silu", "soft_shrink", "softmax", "softplus", "softsign", "sparse_plus", "sparse_sigmoid",
               "squareplus", "tanh", "tanh_shrink"]
# sparsemax is left out on purpose: Keras 3.15 computes it wrongly when the support has more than one
# entry (keras-team/keras#23425) and lamina follows the paper, so the two cannot agree.


def _np(keras, x):
    return keras.ops.convert_to_numpy(x)


def sequential_all_layers(K):
    """Every lamina layer that fits a stack, and every activation lamina shares with Keras."""
    L = K.layers
    stack = [K.Input((2, 3)), L.Flatten(), L.Dense(8), L.ReLU(), L.Dropout(0.25), L.BatchNormalization(),
             L.LeakyReLU(), L.PReLU(), L.ELU(), L.Reshape((2, 4)), L.LayerNormalization(), L.Flatten()]
    for name in ACTIVATIONS:
        stack += [L.Dense(6, activation=name)]
    # (glu is left out: it halves the last axis, which Keras's own shape inference does not know)
    stack += [L.Dense(6), L.Activation("swish"), L.Dense(4), L.Softmax()]
    return K.Sequential(stack)


def functional_all_merges(K):
    L = K.layers
    a = K.Input((5,), name="a")
    b = K.Input((5,), name="b")
    x = L.Dense(6, activation="tanh")(a)
    y = L.Dense(6, activation="relu")(b)
    x2 = L.BatchNormalization()(x)
    merged = [L.Add()([x2, y]), L.Subtract()([x2, y]), L.Multiply()([x2, y]), L.Average()([x2, y])]
    h = L.Concatenate()(merged)
    h = L.LayerNormalization()(h)
    h = L.PReLU()(h)
    out1 = L.Dense(3, activation="softmax", name="cls")(h)
    out2 = L.Dense(1, name="reg")(L.Dense(4, activation="elu")(a))
    return K.Model([a, b], [out1, out2])


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(24, 2, 3)).astype("float32"), np.eye(4, dtype="float32")[rng.integers(0, 4, 24)]


def _fdata(seed=0):
    rng = np.random.default_rng(seed)
    xa = rng.normal(size=(24, 5)).astype("float32")
    xb = rng.normal(size=(24, 5)).astype("float32")
    return [xa, xb], [rng.integers(0, 3, 24), rng.normal(size=(24, 1)).astype("float32")]


def test_keras_sequential_loads_with_identical_predictions(keras, tmp_path):
    keras.utils.set_random_seed(0)
    km = sequential_all_layers(keras)
    km.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    x, y = _data()
    km.fit(x, y, epochs=2, batch_size=8, verbose=0)
    path = tmp_path / "k.keras"
    km.save(path)
    lm = lamina.saving.load_model(path)
    np.testing.assert_allclose(lm.predict(x, verbose=0), _np(keras, km(x)), rtol=RTOL, atol=ATOL)
    assert [type(la).__name__ for la in lm.layers] == [type(la).__name__ for la in km.layers]
    assert int(lm.optimizer.iterations.numpy()) == 6
    for kv, lv in zip(km.optimizer.variables, lm.optimizer.variables):  # same order, same values
        np.testing.assert_array_equal(lv.numpy(), _np(keras, kv.value))


def test_keras_functional_loads_with_identical_predictions(keras, tmp_path):
    keras.utils.set_random_seed(1)
    km = functional_all_merges(keras)
    km.compile(optimizer="rmsprop", loss=["sparse_categorical_crossentropy", "mse"])
    x, y = _fdata()
    km.fit(x, y, epochs=2, batch_size=8, verbose=0)
    path = tmp_path / "f.keras"
    km.save(path)
    lm = lamina.saving.load_model(path)
    for got, want in zip(lm.predict(x, verbose=0), km.predict(x, verbose=0)):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    lam_opt = {v.name: v.numpy() for v in lm.optimizer.variables}
    for kv in km.optimizer.variables:  # Keras orders layers by graph depth; lamina maps slots by variable
        np.testing.assert_array_equal(lam_opt[kv.name], _np(keras, kv.value))


def _continue(keras, build, data, compile_kwargs, tmp_path):
    """Keras trains 2 epochs and saves; Keras and lamina each train 1 more epoch from the file."""
    x, y = data
    keras.utils.set_random_seed(3)
    km = build(keras)
    km.compile(**compile_kwargs)
    km.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    path = tmp_path / "ckpt.keras"
    km.save(path)
    k2 = keras.saving.load_model(path)
    k2.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    lm = lamina.saving.load_model(path)
    lm.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    want = {w.path: _np(keras, w.value) for w in k2.weights}
    assert int(lm.optimizer.iterations.numpy()) == int(_np(keras, k2.optimizer.iterations))
    for w in lm.weights:
        np.testing.assert_allclose(w.numpy(), want[w.path], rtol=RTOL, atol=ATOL, err_msg=w.path)


def _small_seq(K):
    L = K.layers
    return K.Sequential([K.Input((2, 3)), L.Flatten(), L.Dense(8, activation="relu"), L.BatchNormalization(),
                         L.Dense(6), L.PReLU(), L.LayerNormalization(), L.Dense(4, activation="softmax")])


@pytest.mark.parametrize("opt", ["adam", "sgd_momentum", "rmsprop"])
def test_keras_checkpoint_continues_training_in_lamina(keras, tmp_path, opt):
    make = {"adam": lambda: keras.optimizers.Adam(1e-2),
            "sgd_momentum": lambda: keras.optimizers.SGD(5e-2, momentum=0.9, nesterov=True),
            "rmsprop": lambda: keras.optimizers.RMSprop(1e-2, momentum=0.5)}[opt]
    _continue(keras, _small_seq, _data(5), dict(optimizer=make(), loss="categorical_crossentropy"), tmp_path)


def test_keras_functional_checkpoint_continues_with_schedule(keras, tmp_path):
    def build(K):
        L = K.layers
        a = K.Input((5,))
        b = K.Input((5,))
        x = L.Dense(6, activation="tanh")(a)
        y = L.Dense(6)(b)
        h = L.Concatenate()([L.Add()([x, y]), L.Multiply()([x, y])])
        return K.Model([a, b], L.Dense(1)(L.Dense(4, activation="elu")(h)))

    x, y = _fdata(2)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.02, decay_steps=2, decay_rate=0.8)
    _continue(keras, build, (x, y[1]), dict(optimizer=keras.optimizers.Adam(schedule), loss="mse"), tmp_path)


@pytest.mark.parametrize("trained", [False, True])
def test_lamina_files_load_in_keras(keras, tmp_path, trained):
    lamina.utils.set_random_seed(4)
    seq = sequential_all_layers(lamina)
    fun = functional_all_merges(lamina)
    seq.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    fun.compile(optimizer=lamina.optimizers.SGD(0.01, momentum=0.9), loss=["sparse_categorical_crossentropy", "mse"])
    x, y = _data(7)
    fx, fy = _fdata(7)
    if trained:
        seq.fit(x, y, epochs=2, batch_size=8, verbose=0)
        fun.fit(fx, fy, epochs=2, batch_size=8, verbose=0)
    seq.save(tmp_path / "s.keras")
    fun.save(tmp_path / "f.keras")
    ks = keras.saving.load_model(tmp_path / "s.keras")
    kf = keras.saving.load_model(tmp_path / "f.keras")
    np.testing.assert_allclose(_np(keras, ks(x)), seq.predict(x, verbose=0), rtol=RTOL, atol=ATOL)
    for got, want in zip(kf.predict(fx, verbose=0), fun.predict(fx, verbose=0)):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    if trained:  # Keras picked up the optimizer state too
        assert int(_np(keras, ks.optimizer.iterations)) == 6
        lam = {v.name: v.numpy() for v in fun.optimizer.variables}
        for kv in kf.optimizer.variables:
            np.testing.assert_array_equal(_np(keras, kv.value), lam[kv.name].astype(_np(keras, kv.value).dtype))


def test_lamina_weights_file_layout_matches_keras(keras, tmp_path):
    """Same architecture in both: the HDF5 group/dataset tree is the same, names and shapes."""
    import h5py

    def tree(path):
        out = {}
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, obj: out.__setitem__(
                name, tuple(obj.shape) if isinstance(obj, h5py.Dataset) else None))
        return out

    keras.utils.set_random_seed(0)
    km = functional_all_merges(keras)
    km.compile(optimizer="adam", loss=["sparse_categorical_crossentropy", "mse"])
    lm = functional_all_merges(lamina)
    lm.compile(optimizer="adam", loss=["sparse_categorical_crossentropy", "mse"])
    x, y = _fdata()
    km.fit(x, y, epochs=1, batch_size=24, verbose=0)
    lm.fit(x, y, epochs=1, batch_size=24, verbose=0)
    km.save_weights(tmp_path / "k.weights.h5")
    lm.save_weights(tmp_path / "l.weights.h5")
    assert tree(tmp_path / "l.weights.h5") == tree(tmp_path / "k.weights.h5")
    # and the weights move across by load_weights alone
    lm2 = functional_all_merges(lamina)
    lm2.load_weights(tmp_path / "k.weights.h5")
    for got, want in zip(lm2.predict(x, verbose=0), km.predict(x, verbose=0)):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_keras_legacy_h5_full_model_loads(keras, tmp_path):
    keras.utils.set_random_seed(2)
    km = _small_seq(keras)
    km.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    x, y = _data(1)
    km.fit(x, y, epochs=1, batch_size=8, verbose=0)
    km.save(tmp_path / "k.h5")  # Keras 3 writes the Keras-2 HDF5 layout and legacy configs
    lm = lamina.saving.load_model(tmp_path / "k.h5")
    np.testing.assert_allclose(lm.predict(x, verbose=0), _np(keras, km(x)), rtol=RTOL, atol=ATOL)
    assert lm.compiled and type(lm.optimizer).__name__ == "Adam"
    assert int(lm.optimizer.iterations.numpy()) == 3  # the optimizer_weights group was restored
    lm.save(tmp_path / "l.h5")  # and lamina's legacy file loads back in Keras
    k2 = keras.saving.load_model(tmp_path / "l.h5")
    np.testing.assert_allclose(_np(keras, k2(x)), lm.predict(x, verbose=0), rtol=RTOL, atol=ATOL)


def test_keras2_era_config_variants_load(tmp_path):
    """batch_input_shape, keras.engine.* module paths, Keras-2 inbound_nodes, no build_config."""
    cfg = {"class_name": "Functional", "module": "keras.engine.functional", "config": {
        "name": "model", "layers": [
            {"class_name": "InputLayer", "module": "keras.engine.input_layer", "name": "input_1",
             "config": {"batch_input_shape": [None, 3], "dtype": "float32", "sparse": False, "ragged": False,
                        "name": "input_1"}, "inbound_nodes": []},
            {"class_name": "Dense", "module": "keras.src.layers.core.dense", "name": "dense",
             "config": {"name": "dense", "trainable": True, "dtype": "float32", "units": 2, "activation": "relu",
                        "use_bias": True,
                        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
                        "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None,
                        "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
                        "bias_constraint": None},
             "inbound_nodes": [[["input_1", 0, 0, {}]]]}],
        "input_layers": [["input_1", 0, 0]], "output_layers": [["dense", 0, 0]]}}
    model = lamina.saving.model_from_json(json.dumps(cfg))
    assert model.input_shape == (None, 3) and model.output_shape == (None, 2)


def test_keras_reads_lamina_compile_config(keras, tmp_path):
    lm = lamina.Sequential([lamina.Input((3,)), lamina.layers.Dense(2, activation="softmax")])
    lm.compile(optimizer=lamina.optimizers.Adam(lamina.optimizers.schedules.ExponentialDecay(0.1, 5, 0.5)),
               loss=lamina.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    lm.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        assert zf.namelist() == ["metadata.json", "config.json", "model.weights.h5"]
        meta = json.loads(zf.read("metadata.json"))
        assert "rng_state" in meta["lamina"] and meta["keras_version"]
        h5 = zf.read("model.weights.h5")
    km = keras.saving.load_model(tmp_path / "m.keras")
    assert type(km.optimizer).__name__ == "Adam"
    assert type(km.optimizer.learning_rate).__name__ != "float" and km.loss.__class__.__name__ == \
        "SparseCategoricalCrossentropy"
    assert io.BytesIO(h5).read(8) == b"\x89HDF\r\n\x1a\n"


def test_uncompiled_compile_config_matches_keras(keras):
    # Keras returns {} for an uncompiled model and writes it into the serialized config; so does lamina.
    km = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    lm = lamina.Sequential([lamina.Input((3,)), lamina.layers.Dense(2)])
    assert lm.get_compile_config() == km.get_compile_config() == {}
    k_cfg = keras.saving.serialize_keras_object(km)
    l_cfg = lamina.saving.serialize_keras_object(lm)
    assert l_cfg["compile_config"] == k_cfg["compile_config"] == {}
    assert lamina.saving.deserialize_keras_object(l_cfg).compiled is False
