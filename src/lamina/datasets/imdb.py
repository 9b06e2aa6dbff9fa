"""IMDB: 50,000 movie reviews labelled by sentiment, as Keras's ``keras.datasets.imdb``.

Also holds the helpers the Reuters module shares: finding or downloading Keras's ``.npz`` of ragged
word-index lists, loading it safely, and Keras's ``num_words``/``skip_top``/``maxlen`` processing.

Safety: Keras's ``.npz`` files store the reviews as object arrays, i.e. pickle streams, and
unpickling can run code. lamina therefore (1) refuses any ``.npz`` -- downloaded *or* local --
whose SHA-256 is not the one Keras publishes for that file, before a byte of it is unpickled, and
(2) even then unpickles with a restricted unpickler that only resolves numpy's array
reconstruction (``ndarray``, ``dtype``, ``_reconstruct``); lists and ints need no other global.
The word-index JSON is checked against Keras's MD5 when downloaded (the only hash Keras publishes
for it) and parsed with ``json``, which cannot run code.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tempfile
import zipfile

import numpy as np

from lamina.datasets import _files
from lamina.datasets._files import DatasetUnavailableError, RemoteFile
from lamina.datasets._safe_io import open_regular

__all__ = ["load_data", "get_word_index", "DatasetUnavailableError"]

NAME = "imdb"
BASE_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
# SHA-256 Keras checks (keras/src/datasets/imdb.py); the size is an upper bound on the download
# (the real file has 17,464,789 bytes).
FILE = RemoteFile("imdb.npz", "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f", 20_000_000)
WORD_INDEX = ("imdb_word_index.json", "bfafd718b763782e994055a2d397834f")  # (name, Keras's MD5)
_WORD_INDEX_LIMIT = 8 << 20

_core = getattr(np, "_core", None) or np.core
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _core.multiarray._reconstruct,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"Refusing to unpickle {module}.{name} from a dataset file: only numpy arrays are allowed."
            ) from None


def _sha256(path: str) -> str:
    f, _ = open_regular(path)
    digest = hashlib.sha256()
    with f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _hint(name: str, filename: str) -> str:
    return (f"Put Keras's {filename} in a folder `<dir>/{name}/` and set LAMINA_DATA=<dir>, or allow the "
            "download (LAMINA_DATASETS_URL=<url> downloads from a mirror instead).")


def _locate(name: str, path: str, filename: str, title: str, fetch, base: str) -> str:
    """The local path of dataset file ``path`` (a name, or an absolute path), downloading it if needed."""
    if os.path.isabs(path):
        dirs = [("path", os.path.dirname(path))]
        target = dirs[0][1]
    else:
        dirs = _files.candidate_dirs(name, None)
        target = _files.cache_dir(name)
    fname = os.path.basename(path)
    tried = []
    for label, folder in dirs:
        found = _files.find_file(folder, fname)
        if found is not None:
            return found
        tried.append(f"{label} {folder}: {_files.describe_missing(folder, [fname])}")
    url = _files.base_url(base) + filename
    try:
        return fetch(url, target, fname)
    except OSError as exc:
        tried.append(f"download {url}: {exc}")
        raise _files.unavailable(f"{title} is not available.", tried, _hint(name, filename)) from exc


def locate_npz(name: str, path: str, remote: RemoteFile, title: str, base: str) -> str:
    def fetch(url, folder, fname):
        return _files.download(url, folder, RemoteFile(fname, remote.sha256, remote.size))

    return _locate(name, path, remote.name, title, fetch, base)


def _download_md5(url: str, folder: str, fname: str, md5: str) -> str:
    os.makedirs(folder, exist_ok=True)
    final = os.path.join(folder, fname)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{fname}.", suffix=".part")
    os.close(fd)
    try:
        print(f"Downloading data from {url}")
        _files._fetch(url, tmp, _WORD_INDEX_LIMIT)
        with open(tmp, "rb") as f:
            actual = hashlib.md5(f.read(), usedforsecurity=False).hexdigest()
        if actual != md5:
            raise OSError(f"MD5 mismatch of the file: expected {md5}, got {actual} "
                          "(a truncated, corrupt or tampered download)")
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return final


def load_word_index(name: str, path: str, word_index: tuple[str, str], title: str, base: str) -> dict:
    filename, md5 = word_index

    def fetch(url, folder, fname):
        return _download_md5(url, folder, fname, md5)

    found = _locate(name, path, filename, title, fetch, base)
    f, size = open_regular(found)
    with f:
        if size > _WORD_INDEX_LIMIT:
            raise ValueError(f"Malformed {title} word index {found}: {size} bytes, more than {_WORD_INDEX_LIMIT}.")
        try:
            index = json.loads(f.read().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"Malformed {title} word index {found}: not JSON ({exc}).") from exc
    if not isinstance(index, dict):
        raise ValueError(f"Malformed {title} word index {found}: expected a JSON object of word -> index.")
    return index


def read_lists_npz(path: str, keys, sha256: str, title: str) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of Keras's ``.npz`` at ``path``, refused unless its SHA-256 is ``sha256``."""
    actual = _sha256(path)
    if actual != sha256:
        raise ValueError(
            f"Refusing to load {title} file {path}: its SHA-256 is {actual}, not the {sha256} of Keras's file. "
            "It holds pickled data, which lamina unpickles only from the known file. Delete it to download "
            "it again."
        )
    f, _ = open_regular(path)
    arrays = {}
    with f, zipfile.ZipFile(f) as zf:
        for key in keys:
            try:
                raw = zf.read(key + ".npy")
            except KeyError:
                raise ValueError(f"Malformed {title} file {path}: no array {key}.") from None
            buf = io.BytesIO(raw)
            version = np.lib.format.read_magic(buf)
            if version == (1, 0):
                _shape, _fortran, dtype = np.lib.format.read_array_header_1_0(buf)
            elif version == (2, 0):
                _shape, _fortran, dtype = np.lib.format.read_array_header_2_0(buf)
            else:
                raise ValueError(f"Malformed {title} file {path}: array {key} has .npy version {version}.")
            if dtype.hasobject:
                arr = _ArrayOnlyUnpickler(buf).load()
            else:
                buf.seek(0)
                arr = np.lib.format.read_array(buf, allow_pickle=False)
            if not isinstance(arr, np.ndarray) or arr.ndim != 1:
                raise ValueError(f"Malformed {title} file {path}: array {key} is not one-dimensional.")
            arrays[key] = arr
    return arrays


def _filter(xs, num_words, skip_top, oov_char):
    if oov_char is not None:
        return [[w if skip_top <= w < num_words else oov_char for w in x] for x in xs]
    return [[w for w in x if skip_top <= w < num_words] for x in xs]


def _shift(xs, start_char, index_from):
    if start_char is not None:
        return [[start_char] + [w + index_from for w in x] for x in xs]
    return [[w + index_from for w in x] for x in xs]


def _drop_long(maxlen, xs, labels):
    kept = [(x, y) for x, y in zip(xs, labels, strict=True) if len(x) < maxlen]
    return [x for x, _ in kept], [y for _, y in kept]


def _object_array(xs) -> np.ndarray:
    out = np.empty(len(xs), dtype=object)
    out[:] = xs
    return out


def load_data(path="imdb.npz", num_words=None, skip_top=0, maxlen=None, seed=113, start_char=1,
              oov_char=2, index_from=3, **kwargs):
    """Load IMDB as ``(x_train, y_train), (x_test, y_test)``, with Keras's arguments and processing.

    ``x_*``: object arrays of lists of word indices (each list starts with ``start_char``, words are
    shifted by ``index_from``; words outside ``[skip_top, num_words)`` become ``oov_char``, or are
    dropped when it is None); reviews of ``maxlen`` words or more are removed. ``y_*``: 0/1 labels.
    ``path``: file name in ``$LAMINA_DATA/imdb/`` or the cache ``~/.lamina/datasets/imdb/``, or an
    absolute path. The file must be Keras's ``imdb.npz`` (checked by SHA-256 before it is read).
    """
    del kwargs  # accepted and ignored, as Keras 3 does (a leftover of Keras 2's `nb_words`)
    found = locate_npz(NAME, path, FILE, "IMDB", BASE_URL)
    f = read_lists_npz(found, ("x_train", "y_train", "x_test", "y_test"), FILE.sha256, "IMDB")
    x_train, labels_train, x_test, labels_test = f["x_train"], f["y_train"], f["x_test"], f["y_test"]

    rng = np.random.RandomState(seed)
    indices = np.arange(len(x_train))
    rng.shuffle(indices)
    x_train, labels_train = x_train[indices], labels_train[indices]
    indices = np.arange(len(x_test))
    rng.shuffle(indices)
    x_test, labels_test = x_test[indices], labels_test[indices]

    x_train = _shift(x_train, start_char, index_from)
    x_test = _shift(x_test, start_char, index_from)
    if maxlen:
        x_train, labels_train = _drop_long(maxlen, x_train, labels_train)
        x_test, labels_test = _drop_long(maxlen, x_test, labels_test)
        if not x_train or not x_test:
            raise ValueError(f"After filtering for sequences shorter than maxlen={maxlen}, no sequence was kept. "
                             "Increase maxlen.")
    xs = x_train + x_test
    labels = np.concatenate([labels_train, labels_test])
    if not num_words:
        num_words = max(max(x) for x in xs)
    xs = _filter(xs, num_words, skip_top, oov_char)
    idx = len(x_train)
    return (_object_array(xs[:idx]), labels[:idx]), (_object_array(xs[idx:]), labels[idx:])


def get_word_index(path="imdb_word_index.json") -> dict:
    """Keras's IMDB word index: ``{word: rank}`` (rank 1 = most frequent; data indices are rank + index_from)."""
    return load_word_index(NAME, path, WORD_INDEX, "IMDB", BASE_URL)
