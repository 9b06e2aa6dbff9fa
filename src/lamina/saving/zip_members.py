"""Reading members of an untrusted zip (a ``.keras`` file): safe names, decompression-bomb checks,
sizes verified while reading, extraction to disk.

The limits are arguments: :mod:`lamina.saving.saving_lib` passes its own settings (Keras's names
``_ZIP_MEMBER_BOMB_FLOOR_BYTES``, ``_ZIP_MEMBER_MAX_EXPANSION``, ``_ZIP_EXTRACT_BOMB_FLOOR_BYTES``), read
at call time so that they can be changed; the defaults here are their values.
"""

from __future__ import annotations

import os
import re
import zipfile

from lamina import regular_files
from lamina.saving.errors import FileFormatError

#: A member declaring more than the floor may expand at most ``MAX_EXPANSION`` times its stored size.
#: lamina and Keras store members uncompressed (ratio 1); a re-zipped file of real weights stays far below 100x.
MEMBER_BOMB_FLOOR_BYTES = 1 << 20
MAX_EXPANSION = 100
#: The same rule for members extracted to disk: a lower floor, as extracted files add up on the disk.
EXTRACT_BOMB_FLOOR_BYTES = 1 << 16

_DRIVE = re.compile(r"^[A-Za-z]:")


def check_name(name: str, filename) -> None:
    """Refuse a member name that could land outside an extraction folder (absolute, '..', backslash,
    drive letter, control characters)."""
    parts = name.split("/")
    if (not name or name.startswith("/") or "\\" in name or "\x00" in name or _DRIVE.match(name)
            or any(p in ("..", ".") for p in parts) or any(ord(c) < 32 for c in name)):
        raise FileFormatError(filename, f"archive member {name!r} has an unsafe path (absolute, '..', "
                                        "backslash or control characters); refusing to read the archive.")


def reject_bomb(info: zipfile.ZipInfo, filename, floor: int = MEMBER_BOMB_FLOOR_BYTES,
                max_expansion: int = MAX_EXPANSION, verb: str = "read") -> None:
    """Refuse a member that declares more than ``floor`` bytes and more than ``max_expansion`` times
    the bytes it stores."""
    if info.file_size > floor and info.file_size > max_expansion * max(info.compress_size, 1):
        raise FileFormatError(filename, f"archive member {info.filename!r} declares {info.file_size} bytes but "
                              f"stores only {info.compress_size}; refusing to {verb} a potential "
                              "decompression bomb (zip bomb).")


def _check_size(info: zipfile.ZipInfo, n: int, filename) -> None:
    if n > info.file_size:
        raise FileFormatError(filename, f"archive member {info.filename!r} holds more than the "
                                        f"{info.file_size} bytes it declares.")
    if n != info.file_size:
        raise FileFormatError(filename, f"archive member {info.filename!r} declares {info.file_size} bytes but "
                                        f"holds {n}.")


def _damaged(info: zipfile.ZipInfo, filename, e: Exception) -> FileFormatError:
    return FileFormatError(filename, f"archive member {info.filename!r} is damaged ({type(e).__name__}: {e}).")


def read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, filename) -> bytes:
    """The member's bytes, never more than it declares, and exactly that many."""
    try:
        with zf.open(info, "r") as f:
            data = b"".join(regular_files.bounded_chunks(f, info.file_size))
    except Exception as e:  # zlib.error, BadZipFile (CRC), EOFError, ... from a damaged archive
        raise _damaged(info, filename, e) from None
    _check_size(info, len(data), filename)
    return data


def extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, filename, dest: str) -> str:
    """Stream the member into the new file ``dest`` with :func:`read`'s checks; returns ``dest``."""
    written = 0
    with open(dest, "xb") as out:
        try:
            with zf.open(info, "r") as src:
                for chunk in regular_files.bounded_chunks(src, info.file_size):
                    written += len(chunk)
                    out.write(chunk)
        except OSError:  # the disk (full, read-only): not the archive's fault
            raise
        except Exception as e:  # zlib.error, BadZipFile (CRC), EOFError, ... from a damaged archive
            raise _damaged(info, filename, e) from None
    _check_size(info, written, filename)
    return dest


def extract_folder(zf: zipfile.ZipFile, folder: str, dest: str, filename,
                   floor: int = EXTRACT_BOMB_FLOOR_BYTES, max_expansion: int = MAX_EXPANSION) -> str:
    """The members under ``folder/`` written below ``dest`` (names checked, every member of the archive
    checked for bombs first: per member, so genuine weights beside it cannot dilute one); returns
    ``dest/folder``."""
    infos = zf.infolist()
    for info in infos:
        check_name(info.filename, filename)
        reject_bomb(info, filename, floor, max_expansion, verb="extract")
    for info in sorted(infos, key=lambda i: i.filename):
        name = info.filename
        if name.startswith(folder + "/") and not name.endswith("/"):
            target = os.path.join(dest, *name.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            extract(zf, info, filename, target)
    out = os.path.join(dest, folder)
    os.makedirs(out, exist_ok=True)
    return out
