"""Keras's saving stores and guards in lamina: memory-or-disk staging of the weights, H5/sharded/npz/disk
stores, decompression and shape bombs, sharded weights — file formats checked against real Keras."""

import io
import json
import os
import zipfile

import h5py
import numpy as np
import pytest

import lamina
from lamina.saving import h5_weights, saving_lib, zip_members
from lamina.saving.errors import FileFormatError
from lamina.utils import file_utils

pytestmark = pytest.mark.filterwarnings("ignore::lamina.diagnostics.findings.LintWarning")


def dense_model(K, units=(3, 2)):
    return K.Sequential([K.Input((4,)), *(K.layers.Dense(u) for u in units)])


def predictions(K, model, x):
    return K.ops.convert_to_numpy(model(x)) if K is not lamina else np.asarray(model(x))


# ------------------------------------------------------------------------ memory or disk staging


@pytest.mark.parametrize("bound, on_disk", [(0.0, True), (1.0, False)])
def test_memory_upper_bound_chooses_memory_or_a_temporary_file(tmp_path, monkeypatch, keras, bound, on_disk):
    """_MEMORY_UPPER_BOUND x available memory decides: 0 stages the weights in a temporary file next to the
    target (then removed), 1.0 in memory; either way the file is Keras's and nothing is left behind."""
    monkeypatch.setattr(saving_lib, "_MEMORY_UPPER_BOUND", bound)
    targets, extracted = [], []
    write_h5, extract = h5_weights.write_h5, zip_members.extract
    monkeypatch.setattr(h5_weights, "write_h5", lambda e, target=None: targets.append(target) or write_h5(e, target))
    monkeypatch.setattr(zip_members, "extract", lambda *a: extracted.append(a[-1]) or extract(*a))
    model = dense_model(lamina)
    path = tmp_path / "m.keras"
    model.save(path)
    assert (targets[0] is not None) == on_disk
    if on_disk:
        assert os.path.dirname(targets[0]).startswith(str(tmp_path))  # same disk as the target
    assert os.listdir(tmp_path) == ["m.keras"]
    x = np.random.default_rng(0).normal(size=(2, 4)).astype("float32")
    np.testing.assert_allclose(predictions(keras, keras.saving.load_model(path), x), model(x), rtol=1e-5, atol=1e-6)
    again = lamina.saving.load_model(path)
    assert bool(extracted) == on_disk and os.listdir(tmp_path) == ["m.keras"]
    np.testing.assert_allclose(again(x), model(x))


def test_weights_larger_than_the_bound_are_staged_on_disk_for_a_file_object(monkeypatch):
    monkeypatch.setattr(saving_lib, "_MEMORY_UPPER_BOUND", 0.0)
    model = dense_model(lamina)
    buf = io.BytesIO()
    saving_lib.save_model(model, buf)
    buf.seek(0)
    np.testing.assert_allclose(saving_lib.load_model(buf)(np.ones((1, 4))), model(np.ones((1, 4))))


def test_available_memory_and_the_rule():
    available = saving_lib.available_memory()
    assert isinstance(available, int) and available > 0
    assert saving_lib.fits_in_memory(0)
    assert not saving_lib.fits_in_memory(available)  # the bound is a fraction (0.5) of it
    assert saving_lib.weights_nbytes(dense_model(lamina)) == 4 * (4 * 3 + 3 + 3 * 2 + 2)


def test_a_failed_disk_staged_save_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(saving_lib, "_MEMORY_UPPER_BOUND", 0.0)

    class Refuses(lamina.layers.Dense):
        def save_own_variables(self, store):
            raise ValueError("no")

    model = lamina.Sequential([lamina.Input((2,)), Refuses(1)])
    with pytest.raises(ValueError, match="no"):
        saving_lib.save_model(model, tmp_path / "m.keras")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------- zip bombs


def _zip(path, members, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_decompression_bomb_settings_are_keras_names(tmp_path, monkeypatch):
    path = _zip(tmp_path / "a.zip", {"config.json": b"A" * 100_000})
    with zipfile.ZipFile(path) as zf:
        assert saving_lib._safe_zip_read(zf, "config.json") == b"A" * 100_000  # below the 1 MiB floor
        monkeypatch.setattr(saving_lib, "_ZIP_MEMBER_BOMB_FLOOR_BYTES", 64)
        with pytest.raises(ValueError, match="decompression bomb"):
            saving_lib._safe_zip_read(zf, "config.json")
    stored = _zip(tmp_path / "b.zip", {"w": os.urandom(100_000)}, zipfile.ZIP_STORED)
    with zipfile.ZipFile(stored) as zf:
        assert len(saving_lib._safe_zip_read(zf, "w")) == 100_000


def test_an_assets_member_that_would_fill_the_disk_is_refused(tmp_path):
    model = dense_model(lamina)
    good = tmp_path / "good.keras"
    model.save(good)
    with zipfile.ZipFile(good) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    with zipfile.ZipFile(tmp_path / "evil.keras", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        info = zipfile.ZipInfo("assets/bomb.bin")
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, b"\0" * 200_000)  # 200 kB in ~200 bytes: above the 64 kB extraction floor
    with pytest.raises(FileFormatError, match="refusing to extract a potential decompression bomb"):
        lamina.saving.load_model(tmp_path / "evil.keras")
    assert sorted(os.listdir(tmp_path)) == ["evil.keras", "good.keras"]


# -------------------------------------------------------------------------------------- stores


def test_h5_io_store_files_read_in_keras_and_back(tmp_path, keras):
    from keras.src.saving import saving_lib as keras_saving_lib

    a = np.arange(8, dtype="float32").reshape(2, 4)
    store = saving_lib.H5IOStore(tmp_path / "l.h5", mode="w")
    store.make("layers/dense", metadata={"name": "dense"})["0"] = a
    store.make("vars")["c"] = 42
    store.close()
    theirs = keras_saving_lib.H5IOStore(tmp_path / "l.h5", mode="r")
    np.testing.assert_array_equal(theirs.get("layers/dense")["0"], a)
    assert int(theirs.get("vars")["c"][()]) == 42
    theirs.close()
    with h5py.File(tmp_path / "l.h5") as f:
        assert f["layers/dense/vars"].attrs["name"] == "dense"

    keras_store = keras_saving_lib.H5IOStore(tmp_path / "k.h5", mode="w")
    keras_store.make("x")["w"] = a
    keras_store.close()
    ours = saving_lib.H5IOStore(tmp_path / "k.h5", mode="r")
    np.testing.assert_array_equal(ours.get("x")["w"], a)
    assert "w" in ours.get("x") and len(ours.get("missing")) == 0
    with pytest.raises(ValueError, match="only allowed in write mode"):
        ours["w"] = a
    ours.close()


def test_h5_io_store_argument_errors(tmp_path):
    with pytest.raises(TypeError, match="`path_or_io` should be"):
        saving_lib.H5IOStore(None, mode="w")
    with pytest.raises(ValueError, match="`mode` should be either 'w' or 'r'"):
        saving_lib.H5IOStore(tmp_path / "s.h5", mode="x")
    store = saving_lib.H5IOStore(tmp_path / "s.h5", mode="w")
    with pytest.raises(ValueError, match="`metadata` should be a dict"):
        store.make("vars", metadata="metadata")
    store.close()


def test_safe_get_h5_dataset_refuses_shape_bombs_and_links(tmp_path):
    path = tmp_path / "bomb.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("d", shape=(2**50,), dtype="float64", chunks=(1024,), compression="gzip")
        f.create_dataset("ok", data=np.ones(3))
        f["soft"] = h5py.SoftLink("/ok")
    with h5py.File(path, "r") as f:
        with pytest.raises(ValueError, match="shape bomb"):
            saving_lib.safe_get_h5_dataset(f, "d")
        with pytest.raises(ValueError, match="SoftLink"):
            saving_lib.safe_get_h5_dataset(f, "soft")
        np.testing.assert_array_equal(saving_lib.safe_get_h5_dataset(f, "ok")[()], np.ones(3))


def test_sharded_store_splits_reads_across_shards_and_deletes(tmp_path):
    path = tmp_path / "s.json"
    a, b = np.ones((1000, 1000), "float32"), np.zeros((1000, 1000), "int32")
    store = saving_lib.ShardedH5IOStore(path, max_shard_size=0.005, mode="w")  # ~5.4 MB: one array each
    group = store.make("vars")
    group["a"], group["b"], group["c"] = a, b, 42
    assert store.sharding_config["weight_map"]["/vars/vars"] == ["s_00000.weights.h5", "s_00001.weights.h5"]
    assert len(group) == 3
    del group["a"]  # from the older shard
    assert "a" not in group and len(group) == 2
    store.close()
    index = json.loads(path.read_text())
    assert index["metadata"]["total_size"] == a.nbytes + b.nbytes + 8
    store = saving_lib.ShardedH5IOStore(path, mode="r")
    group = store.get("vars")
    assert sorted(group.keys()) == ["b", "c"]
    np.testing.assert_array_equal(group["b"], b)
    with pytest.raises(KeyError, match="not found in any of the shards"):
        group["a"]
    store.close()


def test_sharded_weights_move_between_keras_and_lamina(tmp_path, keras):
    """save_weights_only(max_shard_size=) writes Keras's index and shards: Keras loads them, and lamina
    loads what Keras writes; a model too big for one shard spreads over several."""
    from keras.src.saving import saving_lib as keras_saving_lib

    ours, theirs = dense_model(lamina, (64, 64, 64, 8)), dense_model(keras, (64, 64, 64, 8))
    x = np.random.default_rng(1).normal(size=(3, 4)).astype("float32")
    (tmp_path / "a").mkdir()
    saving_lib.save_weights_only(ours, tmp_path / "a" / "m.weights.json", max_shard_size=2e-5)
    names = sorted(os.listdir(tmp_path / "a"))
    assert names == ["m.weights.json"] + [f"m_{i:05}.weights.h5" for i in range(len(names) - 1)]
    assert len(names) > 2
    keras_saving_lib.load_weights_only(theirs, tmp_path / "a" / "m.weights.json")
    np.testing.assert_allclose(predictions(keras, theirs, x), ours(x), rtol=1e-5, atol=1e-6)

    (tmp_path / "b").mkdir()
    theirs = dense_model(keras, (64, 64, 64, 8))
    keras_saving_lib.save_weights_only(theirs, tmp_path / "b" / "k.weights.json", max_shard_size=2e-5)
    mine = dense_model(lamina, (64, 64, 64, 8))
    saving_lib.load_weights_only(mine, tmp_path / "b" / "k.weights.json")
    np.testing.assert_allclose(mine(x), predictions(keras, theirs, x), rtol=1e-5, atol=1e-6)


def test_a_shard_index_may_not_point_outside_its_folder(tmp_path):
    (tmp_path / "m.weights.json").write_text(json.dumps({"metadata": {}, "weight_map": {"/vars": "../x.h5"}}))
    with pytest.raises(FileFormatError, match="a shard must be a file name in the index's own folder"):
        saving_lib.load_weights_only(dense_model(lamina), tmp_path / "m.weights.json")


def test_weights_only_errors_as_keras(tmp_path):
    class Sub(lamina.Model):
        def __init__(self):
            super().__init__()
            self.d = lamina.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    with pytest.raises(ValueError, match="You are saving a model that has not yet been built"):
        saving_lib.save_weights_only(Sub(), tmp_path / "m.weights.h5")
    with pytest.raises(ValueError, match="You are loading weights into a model that has not yet been built"):
        saving_lib.load_weights_only(Sub(), tmp_path / "m.weights.h5")
    with pytest.raises(ValueError, match="must end in `.weights.json` when `max_shard_size`"):
        saving_lib.save_weights_only(dense_model(lamina), tmp_path / "m.h5", max_shard_size=1)


def test_npz_store_reads_arrays_and_refuses_shape_bombs(tmp_path):
    np.savez(tmp_path / "ok.npz", w=np.arange(6, dtype="float32").reshape(2, 3))
    store = saving_lib.NpzIOStore(str(tmp_path / "ok.npz"), mode="r")
    assert store.get("w") == [[0, 1, 2], [3, 4, 5]]
    store.close()
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (2**50,)})
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("w.npy", header.getvalue())
    store = saving_lib.NpzIOStore(str(tmp_path / "bomb.npz"), mode="r")
    with pytest.raises(ValueError, match="Refusing to load npz weight 'w'"):
        store.get("w")
    store.close()


@pytest.mark.parametrize("bad", ["../escape", os.path.join("a", "..", "..", "escape"), "..", "..\\escape"])
def test_disk_store_keeps_asset_paths_inside_its_folder(bad):
    store = saving_lib.DiskIOStore("assets", mode="w")
    try:
        with pytest.raises(ValueError, match="Invalid asset path"):
            store.make(bad)
        assert not store.has_path(bad)
        made = store.make("layers/dense")
        assert os.path.realpath(made).startswith(os.path.realpath(store.working_dir) + os.sep)
    finally:
        store.close()
    remote = saving_lib.DiskIOStore("gs://bucket/model", mode="r")
    assert remote._full_path("layers/dense") == "gs://bucket/model/layers/dense"
    with pytest.raises(ValueError, match="Invalid asset path"):
        remote._full_path("../x")


def test_file_utils_names():
    assert file_utils.is_remote_path("gs://b/x") and file_utils.is_remote_path("/cns/x")
    assert not file_utils.is_remote_path("/tmp/x")
    assert file_utils.join("gs://b", "a", "b") == "gs://b/a/b"
    with pytest.raises(ValueError, match="local files only"):
        file_utils.exists("gs://b/x")


@pytest.mark.parametrize("bound", [0.0, 1.0])
def test_a_folder_save_stages_weights_by_the_same_rule(tmp_path, monkeypatch, keras, bound):
    """zipped=False: the weights file goes to disk directly when it does not fit the memory bound, and is
    read from disk on load; the folder loads in Keras either way."""
    monkeypatch.setattr(saving_lib, "_MEMORY_UPPER_BOUND", bound)
    model = dense_model(lamina)
    model.save(tmp_path / "f", zipped=False)
    assert sorted(os.listdir(tmp_path / "f")) == ["config.json", "metadata.json", "model.weights.h5"]
    x = np.ones((2, 4), "float32")
    np.testing.assert_allclose(lamina.saving.load_model(tmp_path / "f")(x), model(x))
    np.testing.assert_allclose(predictions(keras, keras.saving.load_model(tmp_path / "f"), x), model(x),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bound", [0.0, 1.0])
def test_a_stream_is_copied_within_the_memory_bound(monkeypatch, bound):
    """A stream that cannot seek is copied first (zipfile seeks): in memory up to the bound, then on disk."""
    model = dense_model(lamina)
    data = saving_lib.archive_bytes(model)

    class Stream:  # read() only: no seek, no file descriptor
        def __init__(self):
            self.buf = io.BytesIO(data)

        def read(self, n=-1):
            return self.buf.read(n)

    rolled = []
    spooled = saving_lib.tempfile.SpooledTemporaryFile

    class Spy(spooled):
        def rollover(self):
            rolled.append(True)
            super().rollover()

    monkeypatch.setattr(saving_lib, "_MEMORY_UPPER_BOUND", bound)
    monkeypatch.setattr(saving_lib.tempfile, "SpooledTemporaryFile", Spy)
    np.testing.assert_allclose(saving_lib.load_model(Stream())(np.ones((1, 4))), model(np.ones((1, 4))))
    assert bool(rolled) == (bound == 0.0)
