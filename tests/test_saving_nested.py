"""Where Keras's saving walk finds layers, checked against real Keras: layers in nested lists, tuples and
dicts (cyclic ones too), behind properties, skipped with ``objects_to_skip``; layers that save their own
variables under their own keys, and assets; subclassed models rebuilt from a file; legacy ``.h5``
names of nested layers."""

import zipfile

import h5py
import numpy as np
import pytest

import lamina
from lamina.saving import saving_lib

pytestmark = pytest.mark.filterwarnings("ignore::lamina.diagnostics.findings.LintWarning")


def _h5_paths(path) -> list[str]:
    """Every dataset path of the weights inside a ``.keras`` file."""
    import io

    with zipfile.ZipFile(path) as zf:
        data = zf.read("model.weights.h5")
    out = []
    with h5py.File(io.BytesIO(data), "r") as f:
        f.visititems(lambda name, obj: out.append(name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(out)


def nested_model_class(K, package: str, kind: str):
    """The same subclassed model for Keras and lamina: Dense layers held in a nested ``kind`` container."""

    @K.saving.register_keras_serializable(package=package)
    class Nested(K.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            inner1, inner2 = [K.layers.Dense(3), K.layers.Dense(3)], [K.layers.Dense(3)]
            if kind == "dict":
                self.blocks = {"a": inner1, "b": inner2}
            elif kind == "tuple":
                self.blocks = (tuple(inner1), tuple(inner2))
            elif kind == "deep":
                self.blocks = [[inner1], [[inner2]]]
            else:
                self.blocks = [inner1, inner2]
            self.cycle = []
            self.cycle.append(self.cycle)  # a list that holds itself: walked once
            self.out = K.layers.Dense(2)

        def _layers_in_order(self):
            def flatten(c):
                for item in (c.values() if isinstance(c, dict) else c):
                    yield from (flatten(item) if isinstance(item, (list, tuple, dict)) else [item])
            return list(flatten(self.blocks))

        def call(self, x):
            for layer in self._layers_in_order():
                x = layer(x)
            return self.out(x)

    return Nested


@pytest.mark.parametrize("kind", ["list", "tuple", "dict", "deep"])
def test_nested_container_layers_round_trip_with_keras(tmp_path, keras, kind):
    """Each nested layer is saved under Keras's ``blocks/container/dense_1`` path: the same datasets as
    Keras writes, and a file from either side restores every layer in the other."""
    ours = nested_model_class(lamina, f"lamina_nested_{kind}", kind)()
    theirs = nested_model_class(keras, f"lamina_nested_{kind}", kind)()
    x = np.random.default_rng(0).normal(size=(2, 4)).astype("float32")
    ours(x), theirs(x)
    for i, layer in enumerate(ours._layers_in_order()):
        layer.kernel.assign(np.full(layer.kernel.shape, i + 1.0, "float32"))
    ours.save(tmp_path / "l.keras")
    theirs.save(tmp_path / "k.keras")
    assert _h5_paths(tmp_path / "l.keras") == _h5_paths(tmp_path / "k.keras")

    from_lamina = keras.saving.load_model(tmp_path / "l.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(from_lamina(x)), ours(x), rtol=1e-5, atol=1e-6)
    for i, layer in enumerate(from_lamina._layers_in_order()):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.kernel), np.full((layer.kernel.shape), i + 1.0))
    from_keras = lamina.saving.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(from_keras(x), keras.ops.convert_to_numpy(theirs(x)), rtol=1e-5, atol=1e-6)


def test_a_layer_behind_a_property_is_found_under_either_name(tmp_path):
    """Keras's walk reads properties too: weights saved as ``dense`` load into a model that holds the
    layer as ``a_dense`` and shows it as the property ``dense``."""

    class Normal(lamina.Model):
        def __init__(self):
            super().__init__()
            self.dense = lamina.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    class Renamed(lamina.Model):
        def __init__(self):
            super().__init__()
            self.a_dense = lamina.layers.Dense(3)

        @property
        def dense(self):
            return self.a_dense

        def call(self, x):
            return self.dense(x)

    a, b = Normal(), Renamed()
    a(np.ones((2, 2))), b(np.ones((2, 2)))
    a.save_weights(tmp_path / "n.weights.h5")
    b.load_weights(tmp_path / "n.weights.h5")
    np.testing.assert_array_equal(b.dense.kernel.numpy(), a.dense.kernel.numpy())


def test_objects_to_skip_are_neither_saved_nor_loaded(tmp_path):
    model = lamina.Sequential([lamina.Input((4,)), lamina.layers.Dense(3), lamina.layers.Dense(2)])
    first, second = model.layers
    saving_lib.save_weights_only(model, tmp_path / "m.weights.h5", objects_to_skip=[second])
    with h5py.File(tmp_path / "m.weights.h5") as f:
        assert "layers/dense" in f and "layers/dense_1" not in f
    other = lamina.Sequential([lamina.Input((4,)), lamina.layers.Dense(3), lamina.layers.Dense(2)])
    before = other.layers[1].kernel.numpy().copy()
    saving_lib.save_weights_only(model, tmp_path / "all.weights.h5")
    saving_lib.load_weights_only(other, tmp_path / "all.weights.h5", objects_to_skip=[other.layers[1]])
    np.testing.assert_array_equal(other.layers[0].kernel.numpy(), first.kernel.numpy())
    np.testing.assert_array_equal(other.layers[1].kernel.numpy(), before)


def custom_saving_class(K, package: str):
    @K.saving.register_keras_serializable(package=package)
    class WithAssets(K.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.vocab = "a b c"
            self.table = np.arange(5, dtype="float64")
            self.dense = K.layers.Dense(2)

        def build(self, input_shape):
            self.dense.build(input_shape)

        def call(self, x):
            return self.dense(x)

        def save_own_variables(self, store):
            store["table"] = self.table

        def load_own_variables(self, store):
            self.table = np.array(store["table"])

        def save_assets(self, folder):
            with open(f"{folder}/vocab.txt", "w") as f:
                f.write(self.vocab)

        def load_assets(self, folder):
            with open(f"{folder}/vocab.txt") as f:
                self.vocab = f.read()

    return WithAssets


def test_own_variables_keys_and_assets_round_trip_with_keras(tmp_path, keras):
    """``save_own_variables`` keys are the dataset names (``custom/vars/table``) and ``save_assets`` files
    go to ``assets/custom/``: as Keras writes them, read back by Keras and by lamina."""
    for K, name in ((lamina, "l"), (keras, "k")):
        cls = custom_saving_class(K, "lamina_assets_test")
        layer = cls(name="custom")
        layer.vocab, layer.table = f"written by {name}", np.arange(5, dtype="float64") * 2
        inputs = K.Input((3,))
        K.Model(inputs, layer(inputs)).save(tmp_path / f"{name}.keras")
    with zipfile.ZipFile(tmp_path / "l.keras") as zl, zipfile.ZipFile(tmp_path / "k.keras") as zk:
        assert sorted(zl.namelist()) == sorted(zk.namelist())
        assert zl.read("assets/layers/with_assets/vocab.txt") == b"written by l"
    assert _h5_paths(tmp_path / "l.keras") == _h5_paths(tmp_path / "k.keras")
    for K, name in ((keras, "l"), (lamina, "k")):
        loaded = K.saving.load_model(tmp_path / f"{name}.keras")
        assert loaded.layers[1].vocab == f"written by {name}"
        np.testing.assert_array_equal(loaded.layers[1].table, np.arange(5) * 2)


def test_a_subclassed_model_rebuilt_from_a_file_builds_its_layers(tmp_path):
    @lamina.saving.register_keras_serializable(package="lamina_rebuild_test")
    class Sub(lamina.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.first = lamina.layers.Dense(3)
            self.second = lamina.layers.Dense(1)

        def call(self, x):
            return self.second(self.first(x))

    model = Sub()
    x = np.ones((2, 4), "float32")
    model(x)
    model.save(tmp_path / "s.keras")
    loaded = lamina.saving.load_model(tmp_path / "s.keras")
    assert loaded.first.built and loaded.second.built
    np.testing.assert_allclose(loaded(x), model(x))


def test_partial_load_messages_say_what_keras_says(tmp_path):
    model = lamina.Sequential([lamina.Input((3,)), lamina.layers.Dense(4), lamina.layers.Dense(5)])
    model.save(tmp_path / "m.keras")
    wider = lamina.Sequential([lamina.Input((3,)), lamina.layers.Dense(4), lamina.layers.Dense(6)])
    with pytest.raises(ValueError, match="must match"):
        wider.load_weights(tmp_path / "m.keras")
    longer = lamina.Sequential([lamina.Input((3,))] + [lamina.layers.Dense(u) for u in (4, 5, 5)])
    with pytest.raises(ValueError, match="received 0 variables"):
        longer.load_weights(tmp_path / "m.keras")


def test_a_rebuild_type_error_is_a_type_error(tmp_path):
    @lamina.saving.register_keras_serializable(package="lamina_type_error_test")
    class NeedsArg(lamina.layers.Layer):
        def __init__(self, factor, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):  # forgets `factor`: rebuilding calls __init__ without it
            return {"name": self.name}

    inputs = lamina.Input((2,))
    lamina.Model(inputs, NeedsArg(2.0)(inputs)).save(tmp_path / "t.keras")
    with pytest.raises(TypeError, match="could not be rebuilt") as info:
        lamina.saving.load_model(tmp_path / "t.keras")
    assert isinstance(info.value, ValueError)  # and still a FileFormatError


def test_legacy_h5_names_nested_weights_by_their_keras_paths(tmp_path):
    class Inner(lamina.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = lamina.layers.Dense(2, name="dense")

        def build(self, input_shape):
            self.dense.build(input_shape)

        def call(self, x):
            return self.dense(x)

    class Outer(lamina.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.one, self.two = Inner(name="one"), Inner(name="two")

        def call(self, x):
            return self.two(self.one(x))

    inputs = lamina.Input((2,))
    model = lamina.Model(inputs, Outer(name="outer")(inputs))
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f["model_weights/outer"].attrs["weight_names"]]
    assert names == ["outer/one/dense/kernel", "outer/one/dense/bias", "outer/two/dense/kernel",
                     "outer/two/dense/bias"]


def test_assets_of_a_folder_save_are_where_keras_puts_them(tmp_path, keras):
    cls = custom_saving_class(lamina, "lamina_assets_test")
    layer = cls(name="custom")
    layer.vocab = "folder vocab"
    inputs = lamina.Input((3,))
    lamina.Model(inputs, layer(inputs)).save(tmp_path / "f", zipped=False)
    assert (tmp_path / "f" / "assets" / "layers" / "with_assets" / "vocab.txt").read_text() == "folder vocab"
    custom_saving_class(keras, "lamina_assets_test")
    assert keras.saving.load_model(tmp_path / "f").layers[1].vocab == "folder vocab"
    assert lamina.saving.load_model(tmp_path / "f").layers[1].vocab == "folder vocab"


def test_a_user_load_own_variables_is_called_even_without_save_own_variables(tmp_path):
    """Keras calls every layer's load_own_variables: one defined alone is handed the stored arrays, and when
    it fails the load is undone and its error raised."""

    class Halves(lamina.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(2,), initializer="ones", name="w")

        def call(self, x):
            return x * self.w

        def load_own_variables(self, store):
            self.w.assign(np.asarray(store["0"]) / 2)

    class Refuses(Halves):
        def load_own_variables(self, store):
            raise ValueError("refused")

    def model(cls):
        return lamina.Sequential([lamina.Input((2,)), lamina.layers.Dense(2), cls()])

    saved = model(Halves)
    saved.layers[1].w.assign(np.array([4.0, 6.0], "float32"))
    saved.save(tmp_path / "m.keras")
    loaded = lamina.saving.load_model(tmp_path / "m.keras", custom_objects={"Halves": Halves})
    np.testing.assert_array_equal(loaded.layers[1].w.numpy(), [2.0, 3.0])
    target = model(Refuses)
    before = target.layers[0].kernel.numpy().copy()
    with pytest.raises(ValueError, match="refused"):
        target.load_weights(tmp_path / "m.keras")
    np.testing.assert_array_equal(target.layers[0].kernel.numpy(), before)  # all or nothing


def test_a_file_from_before_nested_container_groups_loads_with_keras_warning(tmp_path, keras):
    """Keras before 3.15 saved layers held in nested containers only in the model's flat ``layers/`` walk:
    such a file (made here by moving the groups) loads them from there, with Keras's warning."""
    cls = nested_model_class(lamina, "lamina_nested_legacy", "tuple")
    model = cls()
    x = np.ones((2, 4), "float32")
    model(x)
    model.save_weights(tmp_path / "m.weights.h5")
    with h5py.File(tmp_path / "m.weights.h5", "a") as f:
        names = ["dense", "dense_1", "dense_2"]  # blocks[0][0], blocks[0][1], blocks[1][0] in the flat walk
        for name, old in zip(names, ["blocks/container/dense", "blocks/container/dense_1",
                                     "blocks/container_1/dense"]):
            f.move(f"{old}/vars", f"layers/{name}/vars")
        del f["blocks"]
    fresh = cls()
    fresh(x)
    with pytest.warns(UserWarning, match="Skipping nested container") as caught:
        fresh.load_weights(tmp_path / "m.weights.h5")
    assert sorted({str(w.message).split("'")[1] for w in caught}) == ["blocks/container", "blocks/container_1"]
    np.testing.assert_allclose(fresh(x), model(x))
    theirs = nested_model_class(keras, "lamina_nested_legacy", "tuple")()
    theirs(x)
    with pytest.warns(UserWarning, match="Skipping nested container"):
        theirs.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(theirs(x)), model(x), rtol=1e-5, atol=1e-6)


def test_a_model_with_its_own_compile_loads_uncompiled_with_keras_warning(tmp_path):
    @lamina.saving.register_keras_serializable(package="lamina_custom_compile_test")
    class OwnCompile(lamina.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = lamina.layers.Dense(1)

        def compile(self, *args, **kwargs):
            super().compile(*args, **kwargs)

        def call(self, x):
            return self.dense(x)

    model = OwnCompile()
    model.compile("sgd", "mse")
    model(np.ones((2, 3)))
    model.save(tmp_path / "c.keras")
    with pytest.warns(UserWarning, match="`compile\\(\\)` was not called as part of model loading because the "
                                         "model's `compile\\(\\)` method is custom"):
        loaded = lamina.saving.load_model(tmp_path / "c.keras")
    assert not loaded.compiled
    np.testing.assert_allclose(loaded(np.ones((2, 3))), model(np.ones((2, 3))))
