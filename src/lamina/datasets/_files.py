"""Finding, downloading and verifying dataset files (shared by the dataset modules).

Lookup order for a dataset called ``name`` (e.g. ``"fashion-mnist"``):

1. ``$LAMINA_DATA/<name>/`` when the ``LAMINA_DATA`` environment variable is set (a folder laid out
   like Debian's ``/usr/share/datasets``, so ``LAMINA_DATA=/usr/share/datasets`` also works);
2. the download cache ``~/.lamina/datasets/<name>/``;
3. a system folder where a distribution package puts the files (Debian's
   ``/usr/share/datasets/fashion-mnist/``), where one exists;
4. a download from ``$LAMINA_DATASETS_URL`` (else the dataset module's ``BASE_URL``) into the cache.

Local files are trusted and only checked for structure (a user may hold a re-compressed copy);
downloads are checked against SHA-256 constants before they are moved into the cache. A download
goes to a temporary file in the cache folder and is renamed into place only once verified, so an
interrupted or corrupt download never leaves a file that a later call would read.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DATA_ENV = "LAMINA_DATA"
URL_ENV = "LAMINA_DATASETS_URL"

_CHUNK = 1 << 20
_TIMEOUT_S = 60.0
# IDX type code for unsigned bytes, the only element type the MNIST-family files use.
_IDX_UBYTE = 0x08


class DatasetUnavailableError(OSError):
    """A dataset could not be found locally nor downloaded and verified.

    An ``OSError`` because the cause is the environment (missing files, no network, a corrupt or
    tampered download), not the caller's arguments. The message lists every place lamina looked
    and how to install the data.
    """


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset and the SHA-256 a download of it must have.

    ``gunzip=True`` means the hash is of the decompressed bytes: mirrors of the same IDX data differ
    in their gzip headers (file name, timestamp) but never in the data itself.
    """

    name: str
    sha256: str
    gunzip: bool = False


def cache_dir(name: str) -> str:
    """The download cache of dataset ``name``: ``~/.lamina/datasets/<name>``."""
    return os.path.join(os.path.expanduser("~"), ".lamina", "datasets", name)


def base_url(default: str) -> str:
    """``$LAMINA_DATASETS_URL`` when set (e.g. a local mirror), else ``default``; ends with ``/``."""
    url = os.environ.get(URL_ENV) or default
    return url if url.endswith("/") else url + "/"


def candidate_dirs(name: str, system_dir: str | None) -> list[tuple[str, str]]:
    """``(label, folder)`` pairs to search, in order; see the module docstring."""
    dirs = []
    root = os.environ.get(DATA_ENV)
    if root:
        dirs.append((f"${DATA_ENV}", os.path.join(root, name)))
    dirs.append(("cache", cache_dir(name)))
    if system_dir:
        dirs.append(("system package", system_dir))
    return dirs


def find_file(folder: str, filename: str) -> str | None:
    """``folder/filename``, or its uncompressed twin when ``filename`` ends in ``.gz``, or None."""
    path = os.path.join(folder, filename)
    if os.path.isfile(path):
        return path
    if filename.endswith(".gz") and os.path.isfile(path[:-3]):
        return path[:-3]
    return None


def describe_missing(folder: str, filenames: Sequence[str]) -> str:
    if not os.path.isdir(folder):
        return "no such folder"
    missing = [f for f in filenames if find_file(folder, f) is None]
    return "missing " + ", ".join(missing)


# ----------------------------------------------------------------------------------------- download


def _sha256_of(path: str, gunzip: bool) -> str:
    digest = hashlib.sha256()
    opener = gzip.open if gunzip else open
    with opener(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, dest: str) -> None:
    """Stream ``url`` into the open path ``dest``; raise OSError on a short or failed transfer."""
    # Imported here: urllib.request pulls in http, email and ssl, which `import lamina` should not pay.
    import http.client
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, open(dest, "wb") as out:
            expected = response.headers.get("Content-Length")
            received = 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                received += len(chunk)
        if expected is not None and expected.isdigit() and received != int(expected):
            raise OSError(f"incomplete download: received {received} of {int(expected)} bytes")
    except http.client.HTTPException as exc:  # e.g. IncompleteRead; not an OSError subclass
        raise OSError(f"incomplete download ({type(exc).__name__}: {exc})") from exc


def download(url: str, folder: str, remote: RemoteFile) -> str:
    """Download ``url`` to ``folder/remote.name`` after verifying its SHA-256; return the path.

    Raises OSError (with the reason) when the transfer fails or the data does not match; in every
    failure case nothing is left in ``folder``.
    """
    os.makedirs(folder, exist_ok=True)
    final = os.path.join(folder, remote.name)
    # Same folder as the final file so os.replace is an atomic rename, never a cross-device copy.
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{remote.name}.", suffix=".part")
    os.close(fd)
    try:
        print(f"Downloading data from {url}")
        _fetch(url, tmp)
        try:
            actual = _sha256_of(tmp, remote.gunzip)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise OSError(f"corrupt download, not a complete gzip file ({exc})") from exc
        if actual != remote.sha256:
            what = "decompressed data" if remote.gunzip else "file"
            raise OSError(
                f"SHA-256 mismatch of the {what}: expected {remote.sha256}, got {actual} "
                "(a truncated, corrupt or tampered download)"
            )
        os.replace(tmp, final)
    except BaseException:
        # BaseException too: a Ctrl-C mid-download must not leave a .part file behind.
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return final


def unavailable(title: str, tried: Sequence[str], hint: str) -> DatasetUnavailableError:
    if not os.environ.get(DATA_ENV):
        tried = [f"${DATA_ENV}: not set", *tried]
    lines = "\n".join(f"  - {t}" for t in tried)
    return DatasetUnavailableError(f"{title}\nlamina looked in:\n{lines}\n{hint}")


# ------------------------------------------------------------------------------------------- reading


def _read_exactly(f, n: int, path: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError(f"Malformed IDX file {path}: it ends after {len(data)} of the {n} header bytes.")
    return data


def read_idx(path: str, ndim: int, trailing_shape: tuple[int, ...] = ()) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (gzip-compressed when the name ends in ``.gz``).

    The format: two zero bytes, the type code 0x08 (ubyte), the number of dimensions, then one
    big-endian uint32 per dimension, then the data in C order. Checks the magic number, that the
    shape is ``(n, *trailing_shape)`` with ``ndim`` dimensions and that the data has exactly the
    size the header declares. Anything else raises a ValueError naming the file.
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            magic = _read_exactly(f, 4, path)
            if magic[:2] != b"\x00\x00" or magic[2] != _IDX_UBYTE or magic[3] != ndim:
                expected = bytes((0, 0, _IDX_UBYTE, ndim)).hex()
                raise ValueError(
                    f"Malformed IDX file {path}: expected the magic number 0x{expected} "
                    f"(unsigned bytes, {ndim} dimension(s)). Received: 0x{magic.hex()}"
                )
            shape = struct.unpack(f">{ndim}I", _read_exactly(f, 4 * ndim, path))
            if tuple(shape[1:]) != tuple(trailing_shape):
                raise ValueError(
                    f"Malformed IDX file {path}: expected a shape (n, "
                    f"{', '.join(map(str, trailing_shape))}). Received: shape={shape}"
                )
            # Read straight into the result: no intermediate bytes object of tens of megabytes.
            out = np.empty(shape, dtype=np.uint8)
            view = memoryview(out.reshape(-1))
            filled = 0
            while filled < out.size:
                n = f.readinto(view[filled:])
                if not n:
                    break
                filled += n
            if filled != out.size or f.read(1):
                size = "more than" if filled == out.size else f"only {filled} of"
                raise ValueError(
                    f"Malformed IDX file {path}: the header declares shape {shape} "
                    f"({out.size} bytes of data) but the file holds {size} that."
                )
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ValueError(f"Malformed IDX file {path}: not a complete gzip file ({exc}).") from exc
    return out


def read_idx_pair(images_path: str, labels_path: str, image_shape=(28, 28)):
    """Images ``(n, *image_shape)`` and labels ``(n,)`` from two IDX files, checked to agree."""
    x = read_idx(images_path, 1 + len(image_shape), tuple(image_shape))
    y = read_idx(labels_path, 1)
    if len(x) != len(y):
        raise ValueError(
            f"The IDX files {images_path} and {labels_path} disagree: {len(x)} images but {len(y)} labels."
        )
    return x, y


# The four files of the MNIST family, under the names LeCun's MNIST and Zalando's Fashion-MNIST share.
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def has_idx_files(folder: str) -> bool:
    return all(find_file(folder, f) is not None for f in IDX_FILES)


def load_idx_folder(folder: str):
    """``(x_train, y_train), (x_test, y_test)`` from the four IDX files in ``folder``."""
    paths = [find_file(folder, f) for f in IDX_FILES]
    train = read_idx_pair(paths[0], paths[1])
    test = read_idx_pair(paths[2], paths[3])
    return train, test
