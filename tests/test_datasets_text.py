"""IMDB and Reuters (lamina.datasets.imdb / reuters): download, hash checks, safe loading, Keras parity.

Files are generated here and served from 127.0.0.1; the module's known hashes are monkeypatched to
those of the generated files. No test reaches the network.
"""

import hashlib
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from lamina.datasets import DatasetUnavailableError, imdb, reuters
from lamina.datasets._files import RemoteFile
from tests.test_datasets import LocalServer


def ragged(rng, n, vocab=30):
    out = np.empty(n, dtype=object)
    out[:] = [list(map(int, rng.integers(1, vocab, size=rng.integers(1, 12)))) for _ in range(n)]
    return out


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def imdb_npz(seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    return npz_bytes(x_train=ragged(rng, 20), y_train=rng.integers(0, 2, 20), x_test=ragged(rng, 15),
                     y_test=rng.integers(0, 2, 15))


def reuters_npz(seed=1) -> bytes:
    rng = np.random.default_rng(seed)
    return npz_bytes(x=ragged(rng, 40), y=rng.integers(0, 46, 40))


def trust(monkeypatch, module, body: bytes):
    """Make ``body`` the file whose SHA-256 ``module`` knows."""
    remote = module.FILE
    monkeypatch.setattr(module, "FILE", RemoteFile(remote.name, hashlib.sha256(body).hexdigest(), remote.size))


@pytest.fixture
def env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("LAMINA_DATA", raising=False)
    monkeypatch.delenv("LAMINA_DATASETS_URL", raising=False)
    for module in (imdb, reuters):  # a dead address: an unplanned download fails, never the network
        monkeypatch.setattr(module, "BASE_URL", "http://127.0.0.1:9/")
    return tmp_path


@pytest.fixture
def server(monkeypatch):
    srv = LocalServer()
    monkeypatch.setenv("LAMINA_DATASETS_URL", srv.url)
    yield srv
    srv.stop()


def cached(env, name, fname):
    return env / "home" / ".lamina" / "datasets" / name / fname


def assert_split_equal(ours, theirs):
    (xa, ya), (xb, yb) = ours
    (kxa, kya), (kxb, kyb) = theirs
    assert [list(x) for x in xa] == [list(x) for x in kxa]
    assert [list(x) for x in xb] == [list(x) for x in kxb]
    np.testing.assert_array_equal(ya, kya)
    np.testing.assert_array_equal(yb, kyb)


IMDB_CASES = [
    {},
    {"num_words": 15, "skip_top": 3},
    {"maxlen": 8, "seed": 7},
    {"start_char": None, "oov_char": None, "index_from": 0, "num_words": 20},
    {"start_char": 5, "oov_char": 4, "index_from": 6, "skip_top": 8},
]


def test_imdb_download_is_verified_cached_and_reused(env, monkeypatch, server, capsys):
    body = imdb_npz()
    trust(monkeypatch, imdb, body)
    server.serve("imdb.npz", body)
    (x_train, y_train), (x_test, y_test) = imdb.load_data()
    assert cached(env, "imdb", "imdb.npz").read_bytes() == body
    assert x_train.dtype == object and x_train.shape == (20,) and len(y_train) == 20
    assert x_test.shape == (15,) and len(y_test) == 15
    assert all(x[0] == 1 for x in x_train)
    assert "Downloading data from" in capsys.readouterr().out
    server.routes.clear()  # now served from the cache
    (x2, _), _ = imdb.load_data()
    assert [list(x) for x in x2] == [list(x) for x in x_train]
    assert server.requests == ["/data/imdb.npz"]


@pytest.mark.parametrize("kwargs", IMDB_CASES)
def test_imdb_matches_keras(env, monkeypatch, keras, kwargs):
    from keras.src.datasets import imdb as keras_imdb

    body = imdb_npz()
    path = env / "imdb.npz"
    path.write_bytes(body)
    trust(monkeypatch, imdb, body)
    monkeypatch.setattr(keras_imdb, "get_file", lambda **kw: str(path))
    assert_split_equal(imdb.load_data(path=str(path), **kwargs), keras_imdb.load_data(**kwargs))


REUTERS_CASES = [
    {},
    {"test_split": 0.35, "num_words": 12, "skip_top": 2},
    {"maxlen": 6, "seed": 3},
    {"start_char": None, "index_from": 0, "oov_char": None, "num_words": 25},
]


@pytest.mark.parametrize("kwargs", REUTERS_CASES)
def test_reuters_matches_keras(env, monkeypatch, keras, kwargs):
    from keras.src.datasets import reuters as keras_reuters

    body = reuters_npz()
    data = env / "data" / "reuters"
    data.mkdir(parents=True)
    (data / "reuters.npz").write_bytes(body)
    monkeypatch.setenv("LAMINA_DATA", str(env / "data"))
    trust(monkeypatch, reuters, body)
    monkeypatch.setattr(keras_reuters, "get_file", lambda *a, **kw: str(data / "reuters.npz"))
    assert_split_equal(reuters.load_data(**kwargs), keras_reuters.load_data(**kwargs))


def test_imdb_maxlen_that_keeps_nothing_raises(env, monkeypatch):
    body = imdb_npz()
    path = env / "imdb.npz"
    path.write_bytes(body)
    trust(monkeypatch, imdb, body)
    with pytest.raises(ValueError, match="no sequence was kept"):
        imdb.load_data(path=str(path), maxlen=1)


def test_bad_download_hash_is_refused_and_leaves_nothing(env, monkeypatch, server):
    trust(monkeypatch, reuters, reuters_npz())
    server.serve("reuters.npz", reuters_npz(seed=2))  # other content
    with pytest.raises(DatasetUnavailableError, match="SHA-256 mismatch"):
        reuters.load_data()
    folder = cached(env, "reuters", "")
    assert not folder.exists() or os.listdir(folder) == []


def test_local_file_with_unknown_hash_is_never_unpickled(env, monkeypatch):
    # The real Keras hash stays in place: a generated (or tampered) file does not match it.
    path = env / "imdb.npz"
    path.write_bytes(imdb_npz())
    with pytest.raises(ValueError, match="Refusing to load IMDB file .*SHA-256"):
        imdb.load_data(path=str(path))


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_known_hash_still_only_unpickles_numpy_arrays(env, monkeypatch):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    buf.write(pickle.dumps(_Boom()))
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("x.npy", buf.getvalue())
        zf.writestr("y.npy", npz_member(np.zeros(1, dtype=np.int64)))
    body = evil.getvalue()
    path = env / "reuters.npz"
    path.write_bytes(body)
    trust(monkeypatch, reuters, body)
    with pytest.raises(pickle.UnpicklingError, match="Refusing to unpickle"):
        reuters.load_data(path=str(path))


def npz_member(arr) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr)
    return buf.getvalue()


@pytest.mark.parametrize("module", [imdb, reuters])
def test_word_index_download_checks_md5(env, monkeypatch, server, module):
    index = {"the": 1, "and": 2, "film": 3}
    body = json.dumps(index).encode()
    name = module.WORD_INDEX[0]
    server.serve(name, body)
    monkeypatch.setattr(module, "WORD_INDEX", (name, "0" * 32))
    with pytest.raises(DatasetUnavailableError, match="MD5 mismatch"):
        module.get_word_index()
    assert not cached(env, module.NAME, name).exists()
    monkeypatch.setattr(module, "WORD_INDEX", (name, hashlib.md5(body).hexdigest()))
    assert module.get_word_index() == index
    assert json.loads(cached(env, module.NAME, name).read_text()) == index


def test_missing_everything_lists_places(env):
    with pytest.raises(DatasetUnavailableError, match=r"(?s)IMDB is not available.*LAMINA_DATA.*cache"):
        imdb.load_data()


def test_reuters_label_names_match_keras(keras):
    from keras.src.datasets import reuters as keras_reuters

    assert reuters.get_label_names() == keras_reuters.get_label_names()
    assert len(reuters.get_label_names()) == 46


def test_imdb_ignores_extra_keywords_like_keras(env, monkeypatch):
    body = imdb_npz()
    path = env / "imdb.npz"
    path.write_bytes(body)
    trust(monkeypatch, imdb, body)
    assert len(imdb.load_data(path=str(path), nb_words=5)[0][0]) == 20
