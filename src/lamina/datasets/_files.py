"""Finding, downloading and verifying dataset files (shared by the dataset modules).

Lookup order for a dataset called ``name`` (e.g. ``"fashion-mnist"``):

1. ``$LAMINA_DATA/<name>/`` when the ``LAMINA_DATA`` environment variable is set (a folder laid out
   like Debian's ``/usr/share/datasets``, so ``LAMINA_DATA=/usr/share/datasets`` also works);
2. the download cache ``~/.lamina/datasets/<name>/``;
3. a system folder where a distribution package puts the files (Debian's
   ``/usr/share/datasets/fashion-mnist/``), where one exists;
4. a download from ``$LAMINA_DATASETS_URL`` (else the dataset module's ``BASE_URL``) into the cache.

Local files are trusted and only checked for structure (a user may hold a re-compressed copy), but
only regular files are opened and no declared size is believed before it is checked against the
file's real size (see ``_safe_io``). Downloads are checked against SHA-256 constants before they are
moved into the cache, and never read past the size the expected data allows. A download goes to a
temporary file in the cache folder and is renamed into place only once verified, so an interrupted
or corrupt download never leaves a file that a later call would read.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lamina import regular_files
from lamina.datasets._safe_io import MAX_DEFLATE_RATIO, open_regular, read_into_array

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
    """One file of a dataset, the SHA-256 a download of it must have and the size that hash covers.

    ``gunzip=True`` means the hash and ``size`` are of the decompressed bytes: mirrors of the same
    IDX data differ in their gzip headers (file name, timestamp) but never in the data itself.
    """

    name: str
    sha256: str
    size: int
    gunzip: bool = False

    @property
    def max_download_bytes(self) -> int:
        """The most bytes a download of this file may take; a longer stream is cut off and refused.

        Plain: exactly ``size``. Gzip'd: deflate adds at most 5 bytes per stored 64 KiB block (so
        under ``size // 1024``), plus room for a gzip header with a file name or comment.
        """
        return self.size + self.size // 1024 + 4096 if self.gunzip else self.size


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
    """``folder/filename``, or its uncompressed twin when ``filename`` ends in ``.gz``, or None.

    Whatever exists under the name counts as found: a directory or FIFO there is reported when it is
    opened (``open_regular``), not silently passed over for another source.
    """
    path = os.path.join(folder, filename)
    if os.path.exists(path):
        return path
    if filename.endswith(".gz") and os.path.exists(path[:-3]):
        return path[:-3]
    return None


def describe_missing(folder: str, filenames: Sequence[str]) -> str:
    if not os.path.isdir(folder):
        return "no such folder"
    missing = [f for f in filenames if find_file(folder, f) is None]
    return "missing " + ", ".join(missing)


# ----------------------------------------------------------------------------------------- download


def _sha256_of(path: str, gunzip: bool, limit: int | None = None) -> str:
    """SHA-256 of the file (of its decompressed data when ``gunzip``); OSError past ``limit`` bytes."""
    digest = hashlib.sha256()
    opener = gzip.open if gunzip else open
    total = 0
    with opener(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            total += len(chunk)
            if limit is not None and total > limit:
                # A small gzip file can inflate 1000-fold: stop, rather than hash gigabytes of it.
                raise OSError(f"the decompressed data exceeds the expected {limit} bytes "
                              "(a corrupt or tampered download)")
            digest.update(chunk)
    return digest.hexdigest()


def _too_large(limit: int, what: str) -> OSError:
    return OSError(f"the download is larger than expected: {what}, but the file has at most {limit} bytes "
                   "(a wrong or tampered mirror); stopped reading")


def _fetch(url: str, dest: str, limit: int) -> None:
    """Stream ``url`` into the path ``dest``; raise OSError on a short, failed or too long transfer.

    Never more than ``limit + 1`` bytes are read: a mirror that sends more is cut off at once rather
    than after the whole stream has been stored and hashed.
    """
    # Imported here: urllib.request pulls in http, email and ssl, which `import lamina` should not pay.
    import http.client
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, open(dest, "wb") as out:
            expected = response.headers.get("Content-Length")
            if expected is not None and expected.isdigit() and int(expected) > limit:
                raise _too_large(limit, f"the server announces {int(expected)} bytes")
            received = 0
            for chunk in regular_files.bounded_chunks(response, limit, _CHUNK):
                received += len(chunk)
                if received > limit:
                    raise _too_large(limit, f"the server sent more than {limit} bytes")
                out.write(chunk)
        if expected is not None and expected.isdigit() and received != int(expected):
            raise OSError(f"incomplete download: received {received} of {int(expected)} bytes")
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response and its socket, which the error chain would keep open
        raise OSError(str(exc)) from exc
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
        _fetch(url, tmp, remote.max_download_bytes)
        try:
            actual = _sha256_of(tmp, remote.gunzip, remote.size)
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


def _idx_shape(f, path: str, ndim: int, trailing_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape in the IDX header at the start of ``f``, checked against the expected layout."""
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
    return shape


def _read_idx_data(f, path: str, shape: tuple[int, ...], file_size: int, gzipped: bool) -> np.ndarray:
    """The ``prod(shape)`` data bytes after the header, checked against what the file can hold."""
    size = math.prod(shape)
    header = 4 + 4 * len(shape)
    capacity = file_size * MAX_DEFLATE_RATIO if gzipped else file_size
    if header + size > capacity:
        holds = f"the {file_size}-byte file holds" if not gzipped else (
            f"the {file_size}-byte gzip file can hold (at most {capacity} bytes once decompressed: deflate "
            f"expands at most {MAX_DEFLATE_RATIO}-fold)")
        raise ValueError(
            f"Malformed IDX file {path}: the header declares shape {shape} ({size} bytes of data), more "
            f"than {holds}."
        )
    if gzipped:
        # The decompressed length is unknown until the end: read in bounded chunks, so a header
        # that overstates it costs no more memory than the data really there.
        flat, more = read_into_array(f, size)
        filled = flat.size
    else:
        # Read straight into the result (no intermediate copy of tens of megabytes); its size is
        # at most the file's, checked above.
        flat = np.empty(size, dtype=np.uint8)
        view = memoryview(flat)
        filled = 0
        while filled < size and (n := f.readinto(view[filled:filled + _CHUNK])):
            filled += n
        more = filled == size and bool(f.read(1))
    if filled != size or more:
        held = "more than" if filled == size else f"only {filled} of"
        raise ValueError(
            f"Malformed IDX file {path}: the header declares shape {shape} "
            f"({size} bytes of data) but the file holds {held} that."
        )
    return flat.reshape(shape)


def read_idx(path: str, ndim: int, trailing_shape: tuple[int, ...] = ()) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (gzip-compressed when the name ends in ``.gz``).

    The format: two zero bytes, the type code 0x08 (ubyte), the number of dimensions, then one
    big-endian uint32 per dimension, then the data in C order. Checks the magic number, that the
    shape is ``(n, *trailing_shape)`` with ``ndim`` dimensions and that the data has exactly the
    size the header declares — against the file's real size before anything is allocated. Anything
    else, and a path that is not a regular file, raises a ValueError naming the file.
    """
    gzipped = path.endswith(".gz")
    raw, file_size = open_regular(path)
    with raw:
        f = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
        try:
            with f:
                shape = _idx_shape(f, path, ndim, trailing_shape)
                return _read_idx_data(f, path, shape, file_size, gzipped)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise ValueError(f"Malformed IDX file {path}: not a complete gzip file ({exc}).") from exc


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
