"""The weights reader's one-visit index (``h5_weights._Index``) and the low-level writer: a load
resolves every path through one visit of the file's links, gives the same answers as the
component-by-component walk, and falls back to that walk wherever the visit cannot vouch for a path."""

import gc
import io

import h5py
import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.saving import FileFormatError, h5_weights


def fresh_model():
    return lamina.Sequential([lamina.Input((3,)), layers.Dense(4, activation="relu", name="a"),
                              layers.Dense(2, name="b")])


def small_model():
    model = fresh_model()
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    model.fit(x, x[:, :2], epochs=1, verbose=0)
    return model


@pytest.fixture
def child_calls(monkeypatch):
    calls = []
    original = h5_weights.H5Reader.child

    def counting(self, group, name, where=""):
        calls.append(name)
        return original(self, group, name, where)

    monkeypatch.setattr(h5_weights.H5Reader, "child", counting)
    return calls


def test_load_model_visits_the_file_once_and_walks_no_path(tmp_path, monkeypatch, child_calls):
    model = small_model()
    path = tmp_path / "m.keras"
    model.save(path)
    visits = []
    original = h5_weights._Index.__init__

    def counting(self, *args):
        visits.append(1)
        original(self, *args)

    monkeypatch.setattr(h5_weights._Index, "__init__", counting)
    loaded = lamina.saving.load_model(path)
    assert visits == [1]  # stored_values() and the weight reads share one reader and one visit
    assert child_calls == []  # every group and dataset came from the index
    for want, got in zip(model.get_weights() + model.optimizer.variables, loaded.get_weights()
                         + loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(want), np.asarray(got))


def test_aliased_groups_fall_back_to_the_careful_walk(tmp_path, child_calls):
    model = small_model()
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    with h5py.File(path, "a") as f:
        f["copy_of_layers"] = f["layers"]  # the layers group now has two links: its paths are not vouched for
        f["layers/dense/loop"] = f["/"]  # a hard link back to the root
    fresh = fresh_model()
    fresh.load_weights(path)
    for want, got in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(want, got)
    assert "layers/dense/vars" in child_calls and "layers/dense_1/vars" in child_calls


def test_index_lists_what_h5py_lists():
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for k in ("0", "1", "10", "2"):
            f[f"layers/a/vars/{k}"] = np.full(2, int(k), "float32")
        f.create_group("layers/empty/vars")
        f["layers/\u00fc/vars/0"] = np.ones(3, "float64")
        f["elsewhere/x"] = f["layers/a/vars/1"]  # an aliased dataset: counts once
        f["vars"] = np.zeros(1, "float32")  # the root's own "vars" is a dataset, not a group
    with h5_weights.H5Reader(buf.getvalue(), "t.h5", 1 << 20) as reader:
        assert reader.stored_values() == 4 * 2 + 3 + 1
        for where in ("layers/a", "layers/empty", "layers/\u00fc"):
            group = reader.group(where)
            assert isinstance(group, h5_weights._IndexedGroup)
            assert reader.keys(group) == list(reader.file[f"{where}/vars"].keys())
        group = reader.group("layers/a")
        shape, dtype, ds = reader.dataset_meta(group, "10", "layers/a/vars/10")
        np.testing.assert_array_equal(reader.read(ds, shape, dtype, "layers/a/vars/10"), [10, 10])
        assert reader.group("layers/missing") is None
        with pytest.raises(FileFormatError, match="'vars' should be a group but is a Dataset"):
            reader.group("")
        with pytest.raises(FileFormatError, match="'layers/a/vars/3' is missing"):
            reader.dataset_meta(group, "3", "layers/a/vars/3")


def test_a_null_dataset_is_refused_by_name(tmp_path):
    model = small_model()
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    with h5py.File(path, "a") as f:
        del f["layers/dense/vars/1"]
        f.create_dataset("layers/dense/vars/1", data=h5py.Empty("float32"))
    with pytest.raises(FileFormatError, match="'layers/dense/vars/1' is an empty \\(null\\) dataset"):
        model.load_weights(path)


def reference_h5(entries) -> bytes:
    """The file as h5py's high-level API writes it (what write_h5 did before it went low-level), in
    the same in-memory driver."""
    with h5py.File("reference.h5", "w", driver="core", backing_store=False) as f:
        for entry in entries:
            group = f.create_group(f"{entry.path}/vars" if entry.path else "vars")
            group.attrs["name"] = entry.name
            for i, arr in enumerate(h5_weights._entry_arrays(entry)):
                group.create_dataset(str(i), data=arr)
        f.flush()
        return f.id.get_file_image()


def describe(data: bytes) -> dict:
    out = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        def visit(name, obj):
            plist = obj.id.get_create_plist()
            item = [type(obj).__name__, plist.get_obj_track_times(), dict(obj.attrs)]
            if isinstance(obj, h5py.Dataset):
                item += [obj.shape, obj.dtype.str, plist.get_layout(), obj[()].tolist()]
            out[name] = item
        f.visititems(visit)
    return out


def test_writer_makes_what_h5pys_high_level_api_makes():
    model = small_model()
    entries = h5_weights.state_entries(model)
    ours, reference = h5_weights.write_h5(entries), reference_h5(entries)
    assert describe(ours) == describe(reference)
    assert len(ours) == len(reference)


@pytest.mark.parametrize("enabled", [True, False])
def test_load_leaves_the_garbage_collector_as_it_found_it(tmp_path, enabled):
    model = small_model()
    path = tmp_path / "m.keras"
    model.save(path)
    (tmp_path / "bad.keras").write_bytes(path.read_bytes()[:-100])
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        lamina.saving.load_model(path)
        assert gc.isenabled() is enabled
        with pytest.raises(FileFormatError):
            lamina.saving.load_model(tmp_path / "bad.keras")
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_training_argument_is_found_per_class_and_per_instance():
    class Plain(layers.Layer):
        def call(self, x):
            return x

    class WithTraining(Plain):
        def call(self, x, training=None):
            return x

    assert [Plain()._call_has_training, WithTraining()._call_has_training, Plain()._call_has_training] == \
        [False, True, False]
