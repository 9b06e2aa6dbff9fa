"""Reuters: 11,228 newswires labelled over 46 topics, as Keras's ``keras.datasets.reuters``.

The file is Keras's ``reuters.npz`` (ragged lists, pickled); it is loaded only when its SHA-256 is
the one Keras publishes, and then with an unpickler restricted to numpy arrays (see
:mod:`lamina.datasets.imdb`, which holds the shared loading code).
"""

from __future__ import annotations

import numpy as np

from lamina.datasets import imdb as _text
from lamina.datasets._files import DatasetUnavailableError, RemoteFile

__all__ = ["load_data", "get_word_index", "get_label_names", "DatasetUnavailableError"]

NAME = "reuters"
BASE_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
# SHA-256 Keras checks (keras/src/datasets/reuters.py); the size bounds the download (the real
# file has 2,110,848 bytes).
FILE = RemoteFile("reuters.npz", "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916", 4_000_000)
WORD_INDEX = ("reuters_word_index.json", "4d44cc38712099c9e383dc6e5f11a921")  # (name, Keras's MD5)


def load_data(path="reuters.npz", num_words=None, skip_top=0, maxlen=None, test_split=0.2, seed=113,
              start_char=1, oov_char=2, index_from=3):
    """Load Reuters as ``(x_train, y_train), (x_test, y_test)``, with Keras's arguments and processing.

    The newswires are shuffled with ``seed``, shifted and filtered as in :func:`lamina.datasets.imdb.load_data`,
    and the last ``test_split`` fraction becomes the test set. ``y_*``: topic indices 0..45
    (see :func:`get_label_names`).
    """
    found = _text.locate_npz(NAME, path, FILE, "Reuters", BASE_URL)
    f = _text.read_lists_npz(found, ("x", "y"), FILE.sha256, "Reuters")
    xs, labels = f["x"], f["y"]
    rng = np.random.RandomState(seed)
    indices = np.arange(len(xs))
    rng.shuffle(indices)
    xs, labels = xs[indices], labels[indices]
    xs = _text._shift(xs, start_char, index_from)
    if maxlen:
        xs, labels = _text._drop_long(maxlen, xs, labels)
    if not num_words:
        num_words = max(max(x) for x in xs)
    xs = _text._filter(xs, num_words, skip_top, oov_char)
    idx = int(len(xs) * (1 - test_split))
    return ((_text._object_array(xs[:idx]), np.array(labels[:idx])),
            (_text._object_array(xs[idx:]), np.array(labels[idx:])))


def get_word_index(path="reuters_word_index.json") -> dict:
    """Keras's Reuters word index: ``{word: rank}`` (data indices are rank + index_from)."""
    return _text.load_word_index(NAME, path, WORD_INDEX, "Reuters", BASE_URL)


def get_label_names() -> tuple[str, ...]:
    """The 46 topic names, indexed like the labels."""
    return (
        "cocoa", "grain", "veg-oil", "earn", "acq", "wheat", "copper", "housing", "money-supply",
        "coffee", "sugar", "trade", "reserves", "ship", "cotton", "carcass", "crude", "nat-gas",
        "cpi", "money-fx", "interest", "gnp", "meal-feed", "alum", "oilseed", "gold", "tin",
        "strategic-metal", "livestock", "retail", "ipi", "iron-steel", "rubber", "heat", "jobs",
        "lei", "bop", "zinc", "orange", "pet-chem", "dlr", "gas", "silver", "wpi", "hog", "lead",
    )
