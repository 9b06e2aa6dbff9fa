"""Hostile files: HDF5 links out of the file, configs that allocate gigabytes, thousands of layers,
FIFOs and devices in place of files; and the messages of saves that cannot succeed.

Every refusal is a FileFormatError naming the file, raised before anything is built or assigned. Cases
that would hang or exhaust memory on a vulnerable reader run in a subprocess under a timeout.
"""

import io
import json
import os
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.saving import FileFormatError, saving_lib
from tests.helpers.keras_files import saved_members, write_zip

h5py = pytest.importorskip("h5py")

REPO_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def dense_model():
    return lamina.Sequential([lamina.Input((4,)), layers.Dense(3, name="dense")])


def strip_build_configs(node):
    """The config with every ``build_config`` removed (what a hostile file can simply leave out)."""
    if isinstance(node, list):
        return [strip_build_configs(v) for v in node]
    if isinstance(node, dict):
        return {k: strip_build_configs(v) for k, v in node.items() if k != "build_config"}
    return node


def refused(match, fn, *args, **kwargs) -> FileFormatError:
    with pytest.raises(FileFormatError, match=match) as info:
        fn(*args, **kwargs)
    return info.value


# ---------------------------------------------------------------------------- links


def other_file_with_weights(path):
    """An HDF5 file elsewhere on disk holding weights a link might smuggle in (all 7s)."""
    with h5py.File(path, "w") as f:
        g = f.create_group("dense")
        g.attrs["weight_names"] = [b"dense/kernel", b"dense/bias"]
        g["dense/kernel"] = np.full((4, 3), 7, "float32")
        g["dense/bias"] = np.full(3, 7, "float32")
        f["layers/dense/vars/0"] = np.full((4, 3), 7, "float32")
        f["layers/dense/vars/1"] = np.full(3, 7, "float32")
    return path


def legacy_with_link(tmp_path, kind: str):
    """A legacy .h5 whose layer_names entry goes through a link in its first component."""
    other = other_file_with_weights(tmp_path / "other.h5")
    path = tmp_path / f"{kind}.h5"
    dense_model().save(path)
    with h5py.File(path, "a") as f:
        mw = f["model_weights"]
        mw["hop"] = h5py.ExternalLink(str(other), "/") if kind == "external" else h5py.SoftLink("/model_weights")
        mw.attrs["layer_names"] = [b"hop/dense"]
    return path


@pytest.mark.parametrize("kind,link", [("external", "ExternalLink"), ("soft", "SoftLink")])
def test_legacy_h5_link_in_a_layer_name_component_is_refused(tmp_path, kind, link):
    path = legacy_with_link(tmp_path, kind)
    err = refused(link, lamina.saving.load_model, path)
    assert "model_weights/hop" in str(err) and f"{kind}.h5" in str(err)
    model = dense_model()
    before = model.layers[0].kernel.numpy().copy()
    refused(link, model.load_weights, path)
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), before)


def test_legacy_h5_link_in_a_weight_name_component_is_refused(tmp_path):
    other = other_file_with_weights(tmp_path / "other.h5")
    path = tmp_path / "w.h5"
    dense_model().save(path)
    with h5py.File(path, "a") as f:
        g = f["model_weights/dense"]
        del g["dense"]
        g["dense"] = h5py.ExternalLink(str(other), "/dense/dense")
    refused("'model_weights/dense/dense' is a link of type ExternalLink", lamina.saving.load_model, path)


@pytest.mark.parametrize("kind,link", [("external", "ExternalLink"), ("soft", "SoftLink")])
def test_weights_h5_link_in_a_path_component_is_refused(tmp_path, kind, link):
    other = other_file_with_weights(tmp_path / "other.h5")
    model = dense_model()
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    with h5py.File(path, "a") as f:
        del f["layers"]
        f["elsewhere/dense/vars/0"] = np.zeros((4, 3), "float32")
        f["elsewhere/dense/vars/1"] = np.zeros(3, "float32")
        f["layers"] = h5py.ExternalLink(str(other), "/layers") if kind == "external" else h5py.SoftLink("/elsewhere")
    before = model.layers[0].kernel.numpy().copy()
    refused(f"'layers' is a link of type {link}", model.load_weights, path)
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), before)

    members = saved_members(model)
    members["model.weights.h5"] = path.read_bytes()
    keras_path = write_zip(tmp_path / "m.keras", members)
    refused(link, lamina.saving.load_model, keras_path)
    refused(link, model.load_weights, keras_path)


HANG_SCRIPT = r"""
import json, os, resource, sys, zipfile
import numpy as np, h5py
import lamina
from lamina import layers
from lamina.saving import FileFormatError

resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # /dev/zero read whole must fail, not swap
tmp = sys.argv[1]
fifo = os.path.join(tmp, "fifo")
os.mkfifo(fifo)

def model():
    return lamina.Sequential([lamina.Input((4,)), layers.Dense(3, name="dense")])

legacy = os.path.join(tmp, "ext.h5")
model().save(legacy)
with h5py.File(legacy, "a") as f:
    f["model_weights/hop"] = h5py.ExternalLink(fifo, "/")
    f["model_weights"].attrs["layer_names"] = [b"hop/dense"]
weights = os.path.join(tmp, "ext.weights.h5")
model().save_weights(weights)
with h5py.File(weights, "a") as f:
    del f["layers/dense"]
    f["layers/dense"] = h5py.ExternalLink(fifo, "/")
folder = os.path.join(tmp, "folder")
model().save(folder, zipped=False)
os.remove(os.path.join(folder, "model.weights.h5"))
os.mkfifo(os.path.join(folder, "model.weights.h5"))
folder2 = os.path.join(tmp, "folder2")
model().save(folder2, zipped=False)
os.remove(os.path.join(folder2, "config.json"))
os.mkfifo(os.path.join(folder2, "config.json"))
for name in ("pipe.keras", "pipe.h5", "pipe.weights.h5"):
    os.mkfifo(os.path.join(tmp, name))

cases = {
    "legacy load_model, external link to a FIFO": lambda: lamina.saving.load_model(legacy),
    "legacy load_weights, external link to a FIFO": lambda: model().load_weights(legacy),
    "weights.h5 load_weights, external link to a FIFO": lambda: model().load_weights(weights),
    "folder whose model.weights.h5 is a FIFO": lambda: lamina.saving.load_model(folder),
    "folder whose config.json is a FIFO": lambda: lamina.saving.load_model(folder2),
    "a .keras path that is a FIFO": lambda: lamina.saving.load_model(os.path.join(tmp, "pipe.keras")),
    "a .h5 path that is a FIFO": lambda: lamina.saving.load_model(os.path.join(tmp, "pipe.h5")),
    "a .weights.h5 path that is a FIFO": lambda: model().load_weights(os.path.join(tmp, "pipe.weights.h5")),
}
if os.path.exists("/dev/zero"):
    cases["/dev/zero"] = lambda: lamina.saving.load_model("/dev/zero")
    cases["/dev/zero opened by the caller"] = lambda: lamina.saving.load_model(open("/dev/zero", "rb"))
out = {}
for name, fn in cases.items():
    print("case:", name, flush=True)
    try:
        fn()
        out[name] = "loaded"
    except FileFormatError as e:
        out[name] = str(e)
    except BaseException as e:
        out[name] = f"{type(e).__name__}: {e}"
print(json.dumps(out), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_fifos_devices_and_links_to_them_never_hang(tmp_path):
    """Each case is refused at once; a reader that opens the FIFO would block forever (the timeout
    catches it, and the last "case:" line printed names it), one that reads /dev/zero would run out of
    memory."""
    env = dict(os.environ, PYTHONPATH=REPO_SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        out = subprocess.run([sys.executable, "-c", HANG_SCRIPT, str(tmp_path)], env=env, capture_output=True,
                             text=True, timeout=120)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the load hung: {(e.stdout or b'')[-500:]!r}")
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    expected = {
        "legacy load_model, external link to a FIFO": "'model_weights/hop' is a link of type ExternalLink",
        "legacy load_weights, external link to a FIFO": "'model_weights/hop' is a link of type ExternalLink",
        "weights.h5 load_weights, external link to a FIFO": "'layers/dense' is a link of type ExternalLink",
        "folder whose model.weights.h5 is a FIFO": "'model.weights.h5' in the folder is a FIFO",
        "folder whose config.json is a FIFO": "'config.json' in the folder is a FIFO",
        "a .keras path that is a FIFO": "pipe.keras': it is a FIFO",
        "a .h5 path that is a FIFO": "pipe.h5': it is a FIFO",
        "a .weights.h5 path that is a FIFO": "pipe.weights.h5': it is a FIFO",
        "/dev/zero": "'/dev/zero': it is a character device, not a regular file",
        "/dev/zero opened by the caller": "'/dev/zero': the file object is a character device",
    }
    for case, message in results.items():
        assert message.startswith("Cannot load") and expected[case] in message, (case, message)


# ------------------------------------------------------------------- memory bombs


def hostile_keras(tmp_path, name, edit, strip=True):
    """A small model's .keras file with its config edited (and build_configs left out)."""
    members = saved_members(lamina.Sequential([lamina.Input((4,)), layers.Dense(5), layers.Dense(2)]))
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(strip_build_configs(config) if strip else config).encode()
    return write_zip(tmp_path / name, members)


def refused_cheaply(match, path, **kwargs):
    """Refused with ``match``, having allocated under 64 MB on the way (the files describe gigabytes)."""
    tracemalloc.start()
    try:
        err = refused(match, lamina.saving.load_model, path, **kwargs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"peak {peak} bytes"
    return err


def test_dense_without_build_config_is_counted_before_building(tmp_path):
    def wide(config):
        config["config"]["layers"][0]["config"]["batch_shape"] = [None, 16384]
        config["config"]["layers"][1]["config"]["units"] = 16384

    path = hostile_keras(tmp_path, "wide.keras", wide)
    assert path.stat().st_size < 20_000
    err = refused_cheaply(r"at least 268484610 parameters but the weights hold only 37 values", path)
    assert "wide.keras" in str(err)


def test_batch_normalization_over_a_huge_axis_is_counted(tmp_path):
    def bn(config):
        config["config"]["layers"][0]["config"]["batch_shape"] = [None, 1 << 26]
        config["config"]["layers"][1] = {"module": "keras.layers", "class_name": "BatchNormalization",
                                         "config": {"name": "bn"}, "registered_name": None}
        del config["config"]["layers"][2]

    refused_cheaply(f"at least {4 << 26} parameters", hostile_keras(tmp_path, "bn.keras", bn))


def test_reshape_before_dense_is_followed_even_without_input(tmp_path):
    """No input shape at all: a Reshape's target_shape is enough to know the next Dense's kernel."""
    def reshaped(config):
        layers_ = config["config"]["layers"]
        layers_[0] = {"module": "keras.layers", "class_name": "Reshape",
                      "config": {"name": "r", "target_shape": [16384]}, "registered_name": None}
        layers_[1]["config"]["units"] = 16384
        config["config"].pop("build_input_shape", None)

    refused_cheaply("parameters", hostile_keras(tmp_path, "reshape.keras", reshaped))


def test_legacy_h5_config_is_counted_before_building(tmp_path):
    path = tmp_path / "wide.h5"
    lamina.Sequential([lamina.Input((4,)), layers.Dense(3)]).save(path)
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "Dense", "config": {"name": "dense", "units": 16384, "batch_input_shape": [None, 16384]}}]}}
    with h5py.File(path, "a") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
    assert path.stat().st_size < 20_000
    refused_cheaply("at least 268451840 parameters but the weights hold only 15 values", path)


def test_parameter_cap_for_configs_without_weights(monkeypatch):
    model = lamina.Sequential([lamina.Input((100,)), layers.Dense(100)])
    text = model.to_json()
    assert lamina.saving.model_from_json(text).count_params() == 10100
    monkeypatch.setattr(saving_lib, "MAX_PARAMS", 10_000)
    with pytest.raises(FileFormatError, match="limit of 10000.*MAX_PARAMS.*LAMINA_MAX_PARAMS"):
        lamina.saving.model_from_json(text)
    monkeypatch.setenv("LAMINA_MAX_PARAMS", "20000")
    assert lamina.saving.model_from_json(text).count_params() == 10100
    monkeypatch.setenv("LAMINA_MAX_PARAMS", "lots")
    with pytest.raises(ValueError, match="LAMINA_MAX_PARAMS must be an integer"):
        lamina.saving.model_from_json(text)


def functional_zoo():
    inp = lamina.Input((6,))
    a = layers.Dense(4)(inp)
    b = layers.Dense(4, use_bias=False)(inp)
    shared = layers.Dense(3)
    merged = layers.Add()([a, b])
    c = layers.Concatenate()([shared(merged), shared(a), layers.PReLU()(b)])
    r = layers.Reshape((2, -1))(c)
    n = layers.LayerNormalization(axis=[1, 2])(r)
    f = layers.Flatten()(layers.BatchNormalization(axis=1)(n))
    inner = lamina.Sequential([lamina.Input((f.shape[-1],)), layers.Dense(2), layers.PReLU(shared_axes=[1])])
    return lamina.Model(inp, [inner(f), layers.Multiply()([f, f])])


@pytest.mark.parametrize("make", [
    lambda: lamina.Sequential([lamina.Input((5, 3)), layers.Dense(4), layers.LayerNormalization(),
                               layers.PReLU(), layers.Flatten(), layers.Dropout(0.1), layers.Dense(2)]),
    lambda: lamina.Sequential([layers.Dense(8, input_shape=(3,)), layers.BatchNormalization(center=False),
                               layers.Activation("relu"), layers.Dense(1)]),
    functional_zoo,
], ids=["sequential", "sequential_input_shape", "functional"])
@pytest.mark.parametrize("strip", [False, True], ids=["with_build_config", "without_build_config"])
def test_inferred_count_is_exact_for_builtin_layers(make, strip):
    from lamina.saving.config_params import count_params

    model = make()
    config = json.loads(saving_lib.model_config_json(model))
    assert count_params(strip_build_configs(config) if strip else config) == model.count_params()


def test_custom_layers_count_as_unknown_not_as_errors():
    from lamina.saving.config_params import count_params

    @lamina.saving.register_keras_serializable(package="Hostile")
    class Twice(layers.Layer):
        def call(self, x):
            return x * 2

    model = lamina.Sequential([lamina.Input((3,)), Twice(), layers.Dense(4)])
    config = strip_build_configs(json.loads(saving_lib.model_config_json(model)))
    assert count_params(config) == 0  # Dense's input comes through an opaque layer: a lower bound
    config["config"]["layers"][2]["build_config"] = {"input_shape": [None, 3]}
    assert count_params(config) == 16
    # a user's class under a built-in's name is opaque too
    assert count_params(json.loads(saving_lib.model_config_json(model)), {"Dense": Twice}) == 0


def test_hard_linked_dataset_counts_once(tmp_path):
    model = dense_model()
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    with h5py.File(path, "a") as f:
        for i in range(50):
            f[f"copies/{i}"] = f["layers/dense/vars/0"]
    from lamina.saving import h5_weights

    with h5_weights.H5Reader(str(path), str(path), 1 << 30) as reader:
        assert reader.stored_values() == 15


@pytest.mark.parametrize("where", ["sequential", "functional"])
def test_duplicate_layer_names_refused_before_building(tmp_path, monkeypatch, where):
    if where == "sequential":
        model = lamina.Sequential([lamina.Input((4,)), layers.Dense(3, name="a"), layers.Dense(3, name="b")])
    else:
        inp = lamina.Input((4,))
        model = lamina.Model(inp, layers.Dense(3, name="b")(layers.Dense(3, name="a")(inp)))
    members = saved_members(model)
    members["config.json"] = members["config.json"].replace(b'"b"', b'"a"')
    path = write_zip(tmp_path / "dup.keras", members)
    monkeypatch.setattr(layers.Dense, "build", lambda *a: pytest.fail("built a layer"))
    refused("two layers of .* are named 'a'", lamina.saving.load_model, path)


# ------------------------------------------------------------------- many layers


def test_thousands_of_layers_without_weights_refused_before_building(tmp_path, monkeypatch):
    layer = {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
             "config": {"units": 1}}
    config = {"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": [
        {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
         "config": {"batch_shape": [None, 1], "name": "in"}}] + [
        {**layer, "config": {**layer["config"], "name": f"d{i}"}} for i in range(40_000)]}}
    members = saved_members(lamina.Sequential([lamina.Input((1,)), layers.Dense(1)]))
    members["config.json"] = json.dumps(config).encode()
    path = tmp_path / "deep.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    monkeypatch.setattr(layers.Dense, "__init__", lambda *a, **k: pytest.fail("built a layer"))
    refused("at least 80000 parameters but the weights hold only 2 values", lamina.saving.load_model, path)


def test_two_thousand_layer_model_round_trips(tmp_path):
    model = lamina.Sequential([lamina.Input((2,))] + [layers.Dense(2, name=f"d{i}") for i in range(2000)])
    x = np.random.default_rng(1).normal(size=(3, 2)).astype("float32")
    path = tmp_path / "deep.keras"
    model.save(path)
    loaded = lamina.saving.load_model(path)
    assert [la.name for la in loaded.layers] == [f"d{i}" for i in range(2000)]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_sequential_names_stay_unique_after_pop_and_rename():
    model = lamina.Sequential([lamina.Input((2,)), layers.Dense(2, name="a"), layers.Dense(2, name="b")])
    with pytest.raises(ValueError, match="unique names"):
        model.add(layers.Dense(2, name="a"))
    model.pop()
    model.add(layers.Dense(2, name="b"))  # free again after pop
    model.layers[0].name = "renamed"
    model.add(layers.Dense(2, name="a"))  # no layer is called 'a' any more
    assert [la.name for la in model.layers] == ["renamed", "b", "a"]
    assert model._layers.count(model.layers[-1]) == 1


# ------------------------------------------------------------- special files


def test_config_and_metadata_caps_use_the_zip_header(tmp_path, monkeypatch):
    members = saved_members(dense_model())
    path = write_zip(tmp_path / "m.keras", members)
    monkeypatch.setattr(saving_lib, "MAX_CONFIG_BYTES", 100)
    err = refused("'config.json' declares .* more than the limit of 100", lamina.saving.load_model, path)
    assert "MAX_CONFIG_BYTES" in str(err)
    monkeypatch.setattr(saving_lib, "MAX_CONFIG_BYTES", 1 << 20)
    monkeypatch.setattr(saving_lib, "MAX_METADATA_BYTES", 10)
    refused("'metadata.json' declares .*MAX_METADATA_BYTES", lamina.saving.load_model, path)


def test_folder_members_must_be_regular_files(tmp_path, monkeypatch):
    folder = tmp_path / "saved"
    dense_model().save(folder, zipped=False)
    os.remove(folder / "config.json")
    os.mkdir(folder / "config.json")
    err = refused("'config.json' in the folder is a directory, not a regular file", lamina.saving.load_model, folder)
    assert str(folder) in str(err)
    os.rmdir(folder / "config.json")
    os.symlink(folder / "metadata.json", folder / "config.json")
    refused("'config.json' in the folder is a symbolic link", lamina.saving.load_model, folder)
    os.remove(folder / "config.json")
    (folder / "config.json").write_bytes(b" " * 200)
    monkeypatch.setattr(saving_lib, "MAX_CONFIG_BYTES", 100)
    refused("'config.json' in the folder is 200 bytes, more than the 100", lamina.saving.load_model, folder)


def test_weights_path_that_is_a_directory(tmp_path):
    os.mkdir(tmp_path / "w.weights.h5")
    refused("w.weights.h5': it is a directory, not a regular file", dense_model().load_weights,
            tmp_path / "w.weights.h5")
    os.mkdir(tmp_path / "w.keras.d")
    with pytest.raises(FileFormatError, match="it is a directory"):
        saving_lib.read_archive(str(tmp_path / "w.keras.d"), "w.keras.d")


def test_file_objects_are_read_in_place(tmp_path):
    model = dense_model()
    buf = io.BytesIO()
    model.save(buf)  # not rewound: the archive is found wherever the stream stands
    assert lamina.saving.load_model(buf).count_params() == 15
    model.save(tmp_path / "m.keras")
    with open(tmp_path / "m.keras", "rb") as f:
        assert lamina.saving.load_model(f).count_params() == 15


def test_endless_stream_is_not_read_past_the_cap(monkeypatch):
    served = [0]

    class Endless(io.RawIOBase):
        name = "endless"

        def readable(self):
            return True

        def readinto(self, b):
            b[:] = b"\0" * len(b)
            served[0] += len(b)
            return len(b)

    cap = 1 << 20
    monkeypatch.setattr(saving_lib, "MAX_BYTES", cap)
    refused("the file object holds more than", lamina.saving.load_model, Endless())
    # The reader stops just past its cap (plus the slack it allows pipes, at most one read chunk more).
    assert served[0] <= cap + (64 << 20) + (1 << 20)


# ---------------------------------------------------------------------- save messages


def test_save_into_a_missing_folder_names_the_path(tmp_path):
    model = dense_model()
    for name in ("m.keras", "m.h5", "m.weights.h5"):
        target = tmp_path / "missing" / name
        save = model.save_weights if name.endswith(".weights.h5") else model.save
        with pytest.raises(FileNotFoundError) as info:
            save(target)
        message = str(info.value)
        assert f"'{target}'" in message and "does not exist" in message and ".tmp" not in message


def test_save_onto_a_directory_names_the_path(tmp_path):
    model = dense_model()
    for name in ("m.keras", "m.h5", "m.weights.h5"):
        target = tmp_path / name
        target.mkdir()
        save = model.save_weights if name.endswith(".weights.h5") else model.save
        with pytest.raises(IsADirectoryError) as info:
            save(target)
        message = str(info.value)
        assert f"'{target}'" in message and "is a directory" in message and ".tmp" not in message


def test_os_errors_of_a_save_name_the_users_path(tmp_path, monkeypatch):
    """The write goes through a temporary file next to the target: its OS errors must name the target."""
    target = tmp_path / "m.keras"
    tmp = str(tmp_path / ".m.keras.123-abcd.tmp")

    def denied(path, overwrite=True):  # saving_lib writes the archive straight into atomic_write's file
        raise PermissionError(13, "Permission denied", tmp)

    monkeypatch.setattr(saving_lib, "atomic_write", denied)
    with pytest.raises(PermissionError) as info:
        dense_model().save(target)
    assert str(info.value).startswith(f"[Errno 13] Cannot save to '{target}': Permission denied")


def test_a_closed_file_object_is_named(tmp_path):
    dense_model().save(tmp_path / "m.keras")
    with open(tmp_path / "m.keras", "rb") as f:
        pass
    with pytest.raises(ValueError, match="the file object is closed"):
        lamina.saving.load_model(f)
