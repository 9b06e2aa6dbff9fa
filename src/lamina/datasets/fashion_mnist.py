"""Fashion-MNIST: 70,000 28x28 grey images of clothing in 10 classes (Zalando Research, MIT licence).

Labels: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag,
9 Ankle boot.
"""

from __future__ import annotations

import numpy as np

from lamina.datasets import _files
from lamina.datasets._files import IDX_FILES, DatasetUnavailableError, RemoteFile

__all__ = ["load_data", "DatasetUnavailableError"]

NAME = "fashion-mnist"
# Keras's mirror of the upstream files; $LAMINA_DATASETS_URL overrides it (e.g. a local mirror).
BASE_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
# Where Debian's `dataset-fashion-mnist` package installs the four gzip files.
SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"

# SHA-256 of the *decompressed* IDX data. The gzip wrappers differ between copies: Debian's package
# strips the stored file name and rewrites the timestamp, so its .gz files hash differently from
# Zalando's, yet restoring those header fields reproduces Zalando's published MD5s byte for byte,
# so the data is the same. Zalando's .gz files themselves hash to (SHA-256)
#   train-images 3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84
#   train-labels a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845
#   t10k-images  346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073
#   t10k-labels  67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5
_DATA_SHA256 = (
    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
)
# Sizes of that decompressed data: the 16- or 8-byte IDX header, then 28*28 bytes per image or 1 per label.
_DATA_SIZES = (16 + 60000 * 28 * 28, 8 + 60000, 16 + 10000 * 28 * 28, 8 + 10000)
FILES = tuple(
    RemoteFile(name, sha, size, gunzip=True)
    for name, sha, size in zip(IDX_FILES, _DATA_SHA256, _DATA_SIZES, strict=True)
)

_HINT = (
    "Install the data with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put "
    "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
    f"t10k-labels-idx1-ubyte.gz in a folder `<dir>/{NAME}/` and set LAMINA_DATA=<dir>; "
    "LAMINA_DATASETS_URL=<url> downloads from a mirror instead."
)


def load_data() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load Fashion-MNIST as ``(x_train, y_train), (x_test, y_test)``, Keras's layout.

    ``x_train``: uint8 ``(60000, 28, 28)``, ``y_train``: uint8 ``(60000,)`` in 0..9;
    ``x_test``: uint8 ``(10000, 28, 28)``, ``y_test``: uint8 ``(10000,)``.

    Looks in ``$LAMINA_DATA/fashion-mnist/``, then the cache ``~/.lamina/datasets/fashion-mnist/``,
    then Debian's ``/usr/share/datasets/fashion-mnist/``, and otherwise downloads into the cache
    (verifying SHA-256). Raises ``DatasetUnavailableError`` (an ``OSError``) when none of these
    works, and ``ValueError`` naming the file when a file found is not a regular file or not valid
    IDX data.
    """
    tried = []
    for label, folder in _files.candidate_dirs(NAME, SYSTEM_DIR):
        if _files.has_idx_files(folder):
            return _files.load_idx_folder(folder)
        tried.append(f"{label} {folder}: {_files.describe_missing(folder, IDX_FILES)}")

    cache = _files.cache_dir(NAME)
    base = _files.base_url(BASE_URL)
    for remote in FILES:
        if _files.find_file(cache, remote.name) is not None:
            continue  # verified by an earlier, partly failed call
        url = base + remote.name
        try:
            _files.download(url, cache, remote)
        except OSError as exc:
            tried.append(f"download {url}: {exc}")
            raise _files.unavailable("Fashion-MNIST is not available.", tried, _HINT) from exc
    return _files.load_idx_folder(cache)
