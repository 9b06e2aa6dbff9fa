"""Opening dataset files safely and reading no more than their format allows.

A dataset file comes from a folder the user (or a system package, or a mirror) filled, so lamina
trusts its *location*, not its *content*:

* only regular files are opened: a FIFO would block ``open`` forever, a device such as
  ``/dev/zero`` would never end, a directory cannot be read at all;
* a size declared inside a file (an IDX header, a ``.npy`` header in an ``.npz``) is checked against
  the most data the file can really hold before anything is allocated, and data is read in bounded
  chunks, so a corrupt or hostile header gives a ``ValueError`` naming the file, never a
  ``MemoryError`` from a terabyte allocation.
"""

from __future__ import annotations

import math
import stat
import zipfile
import zlib

import numpy as np

from lamina import regular_files

_CHUNK = 1 << 20
# Deflate (gzip's and zip's compression) expands at most 1032-fold: 258 bytes per back-reference of
# 2 bits at best. So n compressed bytes decompress to at most this many times n.
MAX_DEFLATE_RATIO = 1032
_NPY_MAX_HEADER = 10_000  # numpy's own default limit for an .npy header it will parse


def _not_regular(path: str, mode: int) -> ValueError:
    return ValueError(
        f"Dataset file {path} is {regular_files.kind(mode)}, not a regular file: lamina reads dataset files "
        "only from regular files (a pipe or a device may block forever or never end). Put the file itself "
        f"there. Received: {stat.filemode(mode)}"
    )


def open_regular(path: str):
    """``(binary file, size in bytes)`` of ``path``, refusing anything but a regular file (see
    :mod:`lamina.regular_files`: checked before the open and again on the open descriptor)."""
    try:
        f, st = regular_files.open_regular(path, lambda mode: _not_regular(path, mode))
    except regular_files.ReplacedWhileOpening:
        raise ValueError(f"Dataset file {path} was replaced while being opened; refusing to read it. "
                         f"Received: path={path!r}") from None
    return f, st.st_size


def read_into_array(stream, nbytes: int) -> tuple[np.ndarray, bool]:
    """Up to ``nbytes`` from ``stream`` as a writable uint8 array, ``_CHUNK`` bytes at a time.

    Memory grows with the bytes that really arrive, not with ``nbytes``: a stream shorter than its
    header claims costs what it holds. Returns the array and whether more data follows it.
    """
    buf = bytearray()
    for data in regular_files.bounded_chunks(stream, nbytes, _CHUNK):
        buf += data
    more = len(buf) > nbytes
    if more:
        del buf[nbytes:]
    return np.frombuffer(buf, dtype=np.uint8), more


# ---------------------------------------------------------------------------------------------- npz


def _member_limit(info: zipfile.ZipInfo, archive_size: int, path: str, what: str) -> int:
    """The most bytes the archive member ``info`` can decompress to."""
    if info.flag_bits & 0x1:  # zipfile would raise a RuntimeError asking for a password
        raise ValueError(f"Malformed {what} file {path}: member {info.filename} is encrypted; numpy never "
                         "writes encrypted members.")
    if info.compress_size > archive_size:
        raise ValueError(
            f"Malformed {what} file {path}: member {info.filename} claims {info.compress_size} compressed "
            f"bytes, more than the whole file's {archive_size}."
        )
    if info.compress_type == zipfile.ZIP_STORED:
        return info.compress_size
    if info.compress_type == zipfile.ZIP_DEFLATED:
        return info.compress_size * MAX_DEFLATE_RATIO
    raise ValueError(
        f"Malformed {what} file {path}: member {info.filename} uses zip compression method "
        f"{info.compress_type}; numpy writes only stored (0) or deflated (8) members."
    )


def _npy_header(member, name: str, path: str, what: str):
    """``(shape, fortran_order, dtype)`` from the ``.npy`` header at the start of ``member``."""
    try:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(member, max_header_size=_NPY_MAX_HEADER)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(member, max_header_size=_NPY_MAX_HEADER)
    except ValueError as exc:  # numpy's message names neither the file nor the array
        raise ValueError(f"Malformed {what} file {path}: array {name} has no valid .npy header ({exc}).") from exc
    raise ValueError(f"Malformed {what} file {path}: array {name} has .npy format version {version}, "
                     "expected 1.0 or 2.0.")


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive_size: int, path: str,
                 what: str) -> np.ndarray:
    name = info.filename[:-4]
    limit = _member_limit(info, archive_size, path, what)
    if info.file_size > limit:
        raise ValueError(
            f"Malformed {what} file {path}: member {info.filename} claims {info.file_size} bytes, more than its "
            f"{info.compress_size} stored bytes can hold (at most {limit})."
        )
    with zf.open(info) as member:
        shape, fortran, dtype = _npy_header(member, name, path, what)
        if dtype.hasobject:
            raise ValueError(f"Malformed {what} file {path}: array {name} holds Python objects (pickled data), "
                             "which lamina never loads.")
        if dtype.itemsize == 0:  # no bytes to view as it, whatever the shape declares
            raise ValueError(f"Malformed {what} file {path}: array {name} has elements of 0 bytes ({dtype}), "
                             "which hold no data.")
        declared = math.prod(shape) * dtype.itemsize
        held = info.file_size - member.tell()
        if declared != held:
            raise ValueError(
                f"Malformed {what} file {path}: the header of array {name} declares shape {shape} of {dtype} "
                f"({declared} bytes) but the archive holds {held} bytes of data for it."
            )
        raw, _ = read_into_array(member, declared)
    if raw.size != declared:
        raise ValueError(f"Malformed {what} file {path}: array {name} ends after {raw.size} of {declared} bytes.")
    flat = raw.view(dtype)
    return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


def read_npz(path: str, keys, what: str = ".npz") -> tuple[dict[str, np.ndarray], list[str]]:
    """The arrays ``keys`` (those present) of the ``.npz`` archive ``path``, and all its array names.

    Like ``np.load(path, allow_pickle=False)``, but every declared size is checked against what the
    archive can hold before it is read. Raises ValueError ``"Malformed <what> file <path>: ..."`` when
    it is not a readable archive of ``.npy`` arrays.
    """
    f, size = open_regular(path)
    with f:
        try:
            with zipfile.ZipFile(f) as zf:
                infos = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
                arrays = {k: _read_member(zf, infos[k], size, path, what) for k in keys if k in infos}
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise ValueError(f"Malformed {what} file {path}: not a readable .npz archive ({exc}).") from exc
    return arrays, sorted(infos)
