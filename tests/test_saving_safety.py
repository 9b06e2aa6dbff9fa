"""Untrusted files: no code runs, every malformed or unsafe file is a FileFormatError naming the file,
raised before any weight changes; and a fuzz run over thousands of mutated files."""

import base64
import io
import json
import marshal
import os
import stat
import subprocess
import sys
import textwrap
import warnings
import zipfile

import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.saving import FileFormatError, saving_lib

REPO_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
X = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")


def small_model():
    model = lamina.Sequential([lamina.Input((4,)), layers.Dense(5, activation="relu"), layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(X, X[:, :2], epochs=1, verbose=0)
    return model


@pytest.fixture
def saved(tmp_path):
    model = small_model()
    path = tmp_path / "good.keras"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    return model, path, members


def rezip(path, members, extra=(), compression=zipfile.ZIP_STORED):
    """Write ``members`` (name -> bytes) plus ``extra`` ZipInfo/bytes pairs to ``path``."""
    with warnings_ignored(), zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for info, data in extra:
            zf.writestr(info, data)
    return path


class warnings_ignored:
    """zipfile warns when a test writes a duplicate member on purpose; only that warning is ignored."""

    def __enter__(self):
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.filterwarnings("ignore", message="Duplicate name", category=UserWarning, module="zipfile")

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def load_fails(path, match, **kwargs):
    with pytest.raises(FileFormatError, match=match) as info:
        lamina.saving.load_model(path, **kwargs)
    assert os.path.basename(str(path)) in str(info.value)  # the message names the file
    return info.value


def edit_config(members, fn):
    config = json.loads(members["config.json"])
    fn(config)
    return {**members, "config.json": json.dumps(config).encode()}


# ------------------------------------------------------------------------------------- code in files


def test_lambda_is_refused_in_safe_mode_and_loads_when_opted_in(saved, tmp_path):
    _, _, members = saved
    code = base64.b64encode(marshal.dumps((lambda x: x * 0 + 7).__code__)).decode()

    def put_lambda(cfg):
        cfg["config"]["layers"][1]["config"]["activation"] = {
            "class_name": "__lambda__", "config": {"value": [code, None, None]}}

    path = rezip(tmp_path / "lam.keras", edit_config(members, put_lambda))
    err = load_fails(path, "lambda")
    assert "safe_mode=False" in str(err)
    model = lamina.saving.load_model(path, safe_mode=False)
    assert np.all(model.layers[0](X) == 7)


def test_lambda_layer_and_unknown_module_refused(saved, tmp_path):
    _, _, members = saved

    def lambda_layer(cfg):
        cfg["config"]["layers"].insert(1, {"module": "keras.layers", "class_name": "Lambda", "config": {
            "name": "lam", "function": {"module": "os", "class_name": "function", "config": "system",
                                        "registered_name": "function"}}, "registered_name": None})

    load_fails(rezip(tmp_path / "l.keras", edit_config(members, lambda_layer)), "Lambda layer.*safe_mode=False")

    def foreign(cfg):
        cfg["config"]["layers"][1]["module"] = "evil_pkg.layers"
        cfg["config"]["layers"][1]["class_name"] = "Backdoor"

    err = load_fails(rezip(tmp_path / "u.keras", edit_config(members, foreign)), "evil_pkg.layers")
    assert "register_keras_serializable" in str(err) and "safe_mode=False" in str(err)
    assert "evil_pkg" not in sys.modules  # nothing was imported


def test_unknown_module_opt_in_imports_it(saved, tmp_path, monkeypatch):
    _, _, members = saved
    (tmp_path / "trusted_mod.py").write_text(textwrap.dedent("""
        from lamina import layers
        class Doubler(layers.Dense):
            def call(self, x):
                return super().call(x) * 2
    """))
    monkeypatch.syspath_prepend(str(tmp_path))

    def use(cfg):
        cfg["config"]["layers"][2]["module"] = "trusted_mod"
        cfg["config"]["layers"][2]["class_name"] = "Doubler"

    # the weights group follows the class name (Keras's layout): layers/dense_1 -> layers/doubler
    edited = _h5_edit(edit_config(members, use), lambda f, h5py: f.move("layers/dense_1", "layers/doubler"))
    path = rezip(tmp_path / "t.keras", edited)
    load_fails(path, "trusted_mod")
    model = lamina.saving.load_model(path, safe_mode=False)
    assert type(model.layers[1]).__name__ == "Doubler"


def test_no_pickle_anywhere():
    src = os.path.join(REPO_SRC, "lamina", "saving")
    for name in os.listdir(src):
        if name.endswith(".py"):
            with open(os.path.join(src, name)) as f:
                text = f.read()
            assert "import pickle" not in text and "allow_pickle=True" not in text, name


# ------------------------------------------------------------------------------------- zip structure


@pytest.mark.parametrize("bad", ["../evil.txt", "/etc/passwd", "a/../../b", "C:/win.ini", "dir\\x", "a/./b"])
def test_unsafe_member_names(saved, tmp_path, bad):
    _, _, members = saved
    path = rezip(tmp_path / "slip.keras", members, extra=[(zipfile.ZipInfo(bad), b"x")])
    load_fails(path, "unsafe path")


def test_symlink_member(saved, tmp_path):
    _, _, members = saved
    info = zipfile.ZipInfo("assets/link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    load_fails(rezip(tmp_path / "ln.keras", members, extra=[(info, b"/etc/passwd")]), "symbolic link")


def test_duplicate_and_missing_members(saved, tmp_path):
    _, _, members = saved
    dup = rezip(tmp_path / "dup.keras", members, extra=[(zipfile.ZipInfo("config.json"), b"{}")])
    load_fails(dup, "two members named 'config.json'")
    for gone in ("config.json", "model.weights.h5"):
        path = rezip(tmp_path / f"no_{gone}.keras", {k: v for k, v in members.items() if k != gone})
        load_fails(path, f"no '{gone}'")


def test_zip_bomb_and_size_cap(saved, tmp_path, monkeypatch):
    _, _, members = saved
    bomb = rezip(tmp_path / "bomb.keras", {**members, "assets/zeros": b"\0" * (8 << 20)},
                 compression=zipfile.ZIP_DEFLATED)
    load_fails(bomb, "zip bomb")
    monkeypatch.setattr(saving_lib, "MAX_BYTES", 1000)
    load_fails(saved[1], "limit of 1000")


def test_declared_size_must_match_content(saved, tmp_path):
    _, path, members = saved
    data = bytearray(path.read_bytes())
    size = len(members["config.json"])
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("config.json")
    # patch the uncompressed size in the local header and the central directory
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (pos := data.find(sig, start)) != -1:
            name_len = int.from_bytes(data[pos + (26 if sig == b"PK\x03\x04" else 28):][:2], "little")
            name_at = pos + (30 if sig == b"PK\x03\x04" else 46)
            if data[name_at:name_at + name_len] == b"config.json":
                data[pos + off:pos + off + 4] = (size - 5).to_bytes(4, "little")
            start = pos + 4
    assert info.file_size == size
    bad = tmp_path / "lies.keras"
    bad.write_bytes(bytes(data))
    load_fails(bad, "config.json")


def test_not_a_zip_empty_and_truncated(saved, tmp_path):
    _, path, _ = saved
    (tmp_path / "empty.keras").write_bytes(b"")
    load_fails(tmp_path / "empty.keras", "not a valid zip")
    (tmp_path / "half.keras").write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    load_fails(tmp_path / "half.keras", "half.keras")


# ------------------------------------------------------------------------------------------ json


@pytest.mark.parametrize("text", [b"{not json", b"\xff\xfe", b"[" * 100_000, b"[1, 2]", b'{"class_name": 3}',
                                  b'{"class_name": "Sequential", "config": {"layers": "x"}}'])
def test_malformed_json(saved, tmp_path, text):
    _, _, members = saved
    load_fails(rezip(tmp_path / "j.keras", {**members, "config.json": text}), "config")


def test_absurd_sizes_refused_before_building(saved, tmp_path):
    _, _, members = saved

    def huge(cfg):
        cfg["config"]["layers"][1]["config"]["units"] = 10**7

    load_fails(rezip(tmp_path / "h.keras", edit_config(members, huge)), "parameters")

    def wide(cfg):
        cfg["config"]["layers"][0]["config"]["batch_shape"] = [None, 10**12]

    load_fails(rezip(tmp_path / "w.keras", edit_config(members, wide)), "dimension")


def test_bad_rng_metadata(saved, tmp_path):
    _, _, members = saved
    meta = json.loads(members["metadata.json"])
    meta["lamina"]["rng_state"] = {"bit_generator": "os.system", "state": {}}
    path = rezip(tmp_path / "r.keras", {**members, "metadata.json": json.dumps(meta).encode()})
    load_fails(path, "random state")


# ------------------------------------------------------------------------------------------ hdf5


def _h5_edit(members, fn):
    import h5py

    buf = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buf, "a") as f:
        fn(f, h5py)
    return {**members, "model.weights.h5": buf.getvalue()}


@pytest.mark.parametrize("case,match", [
    ("shape", r"shape \(4, 3\)"), ("extra", "holds 3 arrays"), ("missing", "holds 1 arrays"),
    ("softlink", "SoftLink"), ("extlink", "ExternalLink"), ("strings", "only numeric"),
    ("optimizer", "optimizer"), ("group_is_dataset", "should be a group")])
def test_bad_weights(saved, tmp_path, case, match):
    _, _, members = saved

    def edit(f, h5py):
        g = f["layers/dense/vars"]
        if case == "shape":
            del g["0"]
            g["0"] = np.zeros((4, 3), "float32")
        elif case == "extra":
            g["2"] = np.zeros(3, "float32")
        elif case == "missing":
            del g["1"]
        elif case == "softlink":
            del g["1"]
            g["1"] = h5py.SoftLink("/layers/dense/vars/0")
        elif case == "extlink":
            del g["1"]
            g["1"] = h5py.ExternalLink("/etc/passwd", "/x")
        elif case == "strings":
            del g["1"]
            g["1"] = np.array([b"a"] * 5)
        elif case == "optimizer":
            del f["optimizer/vars/3"]
        elif case == "group_is_dataset":
            del f["layers/dense_1/vars"]
            f["layers/dense_1/vars"] = np.zeros(2)

    path = rezip(tmp_path / "w.keras", _h5_edit(members, edit))
    err = load_fails(path, match)
    assert "w.keras" in str(err)


def test_load_weights_from_bad_file_changes_nothing(saved, tmp_path):
    model, _, members = saved

    def edit(f, h5py):
        del f["layers/dense_1/vars/1"]
        f["layers/dense_1/vars/1"] = np.zeros(7, "float32")

    path = rezip(tmp_path / "bad.keras", _h5_edit(members, edit))
    before = [w.numpy().copy() for w in model.weights]
    opt_before = [v.numpy().copy() for v in model.optimizer.variables]
    with pytest.raises(FileFormatError, match="bad.keras"):
        model.load_weights(path)
    for a, b in zip(model.weights, before):
        np.testing.assert_array_equal(a.numpy(), b)
    for a, b in zip(model.optimizer.variables, opt_before):
        np.testing.assert_array_equal(a.numpy(), b)


def test_not_hdf5_weights(saved, tmp_path):
    _, _, members = saved
    load_fails(rezip(tmp_path / "n.keras", {**members, "model.weights.h5": b"not hdf5 at all"}), "HDF5")


# ------------------------------------------------------------------------------------------ fuzz

FUZZ_SCRIPT = r"""
import io, json, random, sys, time, zipfile, warnings
import numpy as np
import lamina
from lamina import layers
from lamina.saving import FileFormatError
warnings.simplefilter("ignore")
n_cases, seed = int(sys.argv[1]), int(sys.argv[2])
rnd = random.Random(seed)
lamina.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
m = lamina.Sequential([lamina.Input((4,)), layers.Dense(5, activation="relu"), layers.BatchNormalization(),
                       layers.Dense(3, activation="softmax")])
m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
m.fit(x, np.arange(8) % 3, epochs=1, verbose=0)
buf = io.BytesIO(); m.save(buf); base = buf.getvalue()
with zipfile.ZipFile(io.BytesIO(base)) as zf:
    members = {n: zf.read(n) for n in zf.namelist()}

def zipped(ms):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for k, v in ms.items():
            zf.writestr(k, v)
    return out.getvalue()

def flip(data, k):
    data = bytearray(data)
    for _ in range(k):
        if data:
            data[rnd.randrange(len(data))] = rnd.randrange(256)
    return bytes(data)

VALUES = [None, True, -1, 0, 1, 3, 10**6, 1e300, -0.5, "", "relu", "x" * 50, [], {}, [None, 4], {"a": 1},
          {"class_name": "Dense", "config": {}}, {"module": "os", "class_name": "system", "config": {}},
          {"class_name": "__lambda__", "config": {"value": ["AA==", None, None]}}]

def edit_json(obj):
    nodes, stack = [], [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            nodes.append(node); stack.extend(node.values())
        elif isinstance(node, list):
            nodes.append(node); stack.extend(node)
    for _ in range(rnd.randint(1, 3)):
        node = rnd.choice(nodes)
        if isinstance(node, dict) and node:
            key = rnd.choice(list(node))
            r = rnd.random()
            if r < 0.3:
                del node[key]
            elif r < 0.9:
                node[key] = rnd.choice(VALUES)
            else:
                node[key + "_x"] = node[key]
        elif isinstance(node, list) and node:
            i = rnd.randrange(len(node))
            if rnd.random() < 0.5:
                node.pop(i)
            else:
                node[i] = rnd.choice(VALUES)
    return obj

def mutate():
    kind = rnd.randrange(7)
    if kind == 0:
        return kind, flip(base, rnd.randint(1, 8))
    if kind == 1:
        return kind, base[: rnd.randrange(len(base))]
    if kind == 2:
        return kind, zipped({**members, "config.json": flip(members["config.json"], rnd.randint(1, 4))})
    if kind == 3:
        cfg = edit_json(json.loads(members["config.json"]))
        return kind, zipped({**members, "config.json": json.dumps(cfg).encode()})
    if kind == 4:
        return kind, zipped({**members, "model.weights.h5": flip(members["model.weights.h5"], rnd.randint(1, 16))})
    if kind == 5:
        meta = edit_json(json.loads(members["metadata.json"]))
        return kind, zipped({**members, "metadata.json": json.dumps(meta).encode()})
    h5 = members["model.weights.h5"]
    cut = rnd.randrange(len(h5))
    return kind, zipped({**members, "model.weights.h5": h5[:cut]})

counts = {"ok": 0, "refused": 0}
start = time.time()
slowest = 0.0
for case in range(n_cases):
    kind, data = mutate()
    t0 = time.time()
    try:
        lamina.saving.load_model(io.BytesIO(data))
        counts["ok"] += 1
    except FileFormatError:
        counts["refused"] += 1
    except BaseException as e:
        print(f"FAIL case={case} kind={kind}: {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
    slowest = max(slowest, time.time() - t0)
print(json.dumps({**counts, "cases": n_cases, "seconds": round(time.time() - start, 2),
                  "slowest": round(slowest, 3)}), flush=True)
"""


def test_fuzz_mutated_files_only_ever_raise_file_format_error(tmp_path):
    """Thousands of mutated .keras files (byte flips, truncations, JSON edits, HDF5 damage, metadata
    edits): each loads or raises FileFormatError; no other exception, no hang, no crash.

    Runs in a subprocess so that a crash inside the HDF5 C library would fail this test instead of
    killing pytest; the timeout catches hangs.
    """
    n_cases = 3000
    env = dict(os.environ, PYTHONPATH=REPO_SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", FUZZ_SCRIPT, str(n_cases), "20240601"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"rc={out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["cases"] == n_cases and summary["ok"] + summary["refused"] == n_cases
    assert summary["refused"] > n_cases // 2 and summary["ok"] > 0
    print("fuzz:", summary)
