"""Opening the files a load names: regular files only, every read bounded.

A path given to ``load_model`` or ``load_weights`` may name anything. A FIFO blocks ``open`` until a
writer appears (a load that never returns), a device such as ``/dev/zero`` never ends (a read that
fills memory), a directory cannot be read at all. Such paths are refused with a
:class:`~lamina.saving.errors.FileFormatError` naming them, after an ``os.stat`` and before any
``open``. The file is then opened without blocking and checked again on the open descriptor, so a
path swapped for a FIFO in between cannot hang the load either. Reads stop at a caller's cap.
"""

from __future__ import annotations

import io
import os
import stat

from lamina import regular_files
from lamina.saving.errors import FileFormatError


def _refuser(filename, label: str):
    def refuse(mode: int) -> FileFormatError:
        if stat.S_ISLNK(mode):
            return FileFormatError(filename, f"{label} is a symbolic link, which is not allowed.")
        return FileFormatError(filename, f"{label} is {regular_files.kind(mode)}, not a regular file; lamina "
                                         "reads model and weights files only from regular files.")
    return refuse


def check_regular(path, filename=None, label: str | None = None, follow_symlinks: bool = True) -> os.stat_result:
    """``os.stat(path)``, refusing anything but a regular file (and a symbolic link unless ``follow_symlinks``).

    ``label`` names ``path`` in the message (default: "it", the message already names ``filename``).
    ``FileNotFoundError`` and other ``OSError`` pass through unchanged.
    """
    filename = path if filename is None else filename
    return regular_files.stat_regular(path, _refuser(filename, label or "it"), follow_symlinks)


def open_regular(path, filename=None, label: str | None = None, follow_symlinks: bool = True):
    """``path`` opened for binary reading (a buffered file object), once it is known to be a regular file."""
    filename = path if filename is None else filename
    try:
        f, _ = regular_files.open_regular(path, _refuser(filename, label or "it"), follow_symlinks)
    except regular_files.ReplacedWhileOpening:
        raise FileFormatError(filename, f"{label or 'it'} was replaced while being opened; refusing to read it.") \
            from None
    return f


def stream_kind(f, filename) -> str:
    """How to read the file object ``f``: "direct" (in memory, or a regular file: let the reader seek)
    or "capped" (a pipe, socket or unknown stream: read it whole, up to a cap). A device or directory
    behind ``f`` is refused: ``/dev/zero`` never ends."""
    if getattr(f, "closed", False):
        raise ValueError(f"Cannot read {filename}: the file object is closed. Received: {f!r}")
    if isinstance(f, io.BytesIO):
        return "direct"
    try:
        mode = os.fstat(f.fileno()).st_mode
    except (AttributeError, OSError, ValueError):  # no descriptor (io.UnsupportedOperation is an OSError)
        return "capped"
    if stat.S_ISREG(mode):
        return "direct" if f.seekable() else "capped"
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return "capped"
    raise _refuser(filename, "the file object")(mode)


def read_capped(f, max_bytes: int, filename, label: str, hint: str = "") -> bytes:
    """All of the file object ``f``, refusing it once it holds more than ``max_bytes``."""
    data = b"".join(regular_files.bounded_chunks(f, max_bytes))
    if len(data) > max_bytes:
        raise FileFormatError(filename, f"{label} holds more than {max_bytes} bytes, the most lamina reads "
                                        f"for it{hint}.")
    return data


def read_regular(path, max_bytes: int, filename=None, label: str | None = None, hint: str = "",
                 follow_symlinks: bool = True) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` of them (else FileFormatError)."""
    filename = path if filename is None else filename
    with open_regular(path, filename, label, follow_symlinks) as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise FileFormatError(filename, f"{label or 'it'} is {size} bytes, more than the {max_bytes} lamina "
                                            f"reads for it{hint}.")
        return read_capped(f, max_bytes, filename, label or "it", hint)
