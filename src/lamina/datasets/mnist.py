"""MNIST: 70,000 28x28 grey images of handwritten digits (LeCun, Cortes and Burges; CC BY-SA 3.0)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from lamina.datasets import _files
from lamina.datasets._files import IDX_FILES, DatasetUnavailableError, RemoteFile
from lamina.datasets._safe_io import read_npz

__all__ = ["load_data", "DatasetUnavailableError"]

NAME = "mnist"
# Keras's copy of MNIST as one .npz; $LAMINA_DATASETS_URL overrides the folder (e.g. a local mirror).
BASE_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
# SHA-256 of that mnist.npz, the value Keras itself checks (keras/src/datasets/mnist.py), and its
# size in bytes (the length Keras's download progress bar shows: 11490434/11490434).
FILE = RemoteFile("mnist.npz", "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1", 11490434)

_KEYS = ("x_train", "y_train", "x_test", "y_test")
_HINT = (
    f"Put Keras's mnist.npz (or the four IDX files {', '.join(IDX_FILES)}) in a folder "
    f"`<dir>/{NAME}/` and set LAMINA_DATA=<dir>, or allow the download "
    "(LAMINA_DATASETS_URL=<url> downloads from a mirror instead). MNIST has no Debian package."
)


def _load_npz(path: str):
    # Not np.load: it allocates whatever shape an array's header declares before reading a byte.
    arrays, names = read_npz(path, _KEYS, what="MNIST")
    if len(arrays) != len(_KEYS):
        raise ValueError(
            f"Malformed MNIST file {path}: expected the arrays {', '.join(_KEYS)}. Received: arrays {names}"
        )
    x_train, y_train, x_test, y_test = (arrays[k] for k in _KEYS)
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if (
            x.dtype != np.uint8
            or y.dtype != np.uint8
            or x.ndim != 3
            or x.shape[1:] != (28, 28)
            or y.shape != (len(x),)
        ):
            raise ValueError(
                f"Malformed MNIST file {path}: expected uint8 x_{split} of shape (n, 28, 28) and uint8 "
                f"y_{split} of shape (n,). Received: x_{split} {x.dtype}{x.shape}, "
                f"y_{split} {y.dtype}{y.shape}"
            )
    return (x_train, y_train), (x_test, y_test)


def load_data(path: str = "mnist.npz") -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load MNIST as ``(x_train, y_train), (x_test, y_test)``, Keras's layout.

    ``x_train``: uint8 ``(60000, 28, 28)``, ``y_train``: uint8 ``(60000,)`` in 0..9;
    ``x_test``: uint8 ``(10000, 28, 28)``, ``y_test``: uint8 ``(10000,)``.

    Args:
        path: the .npz file name, relative to ``~/.lamina/datasets/mnist/`` (Keras's argument).

    Looks in ``$LAMINA_DATA/mnist/`` (``path`` or the four IDX files), then the cache, and
    otherwise downloads Keras's ``mnist.npz`` into the cache (verifying SHA-256). Raises
    ``DatasetUnavailableError`` (an ``OSError``) when none of these works, and ``ValueError``
    naming the file when a file found is not a regular file or is malformed (including an array
    header that declares more data than the file holds).
    """
    tried = []
    for label, folder in _files.candidate_dirs(NAME, None):
        npz = os.path.join(folder, path)
        if os.path.exists(npz):  # a directory or FIFO of that name is reported, not passed over
            return _load_npz(npz)
        if _files.has_idx_files(folder):
            return _files.load_idx_folder(folder)
        tried.append(f"{label} {folder}: no {path} and {_files.describe_missing(folder, IDX_FILES)}")

    target = os.path.join(_files.cache_dir(NAME), path)
    remote = dataclasses.replace(FILE, name=os.path.basename(target))
    url = _files.base_url(BASE_URL) + FILE.name
    try:
        _files.download(url, os.path.dirname(target), remote)
    except OSError as exc:
        tried.append(f"download {url}: {exc}")
        raise _files.unavailable("MNIST is not available.", tried, _HINT) from exc
    return _load_npz(target)
