"""Opening a path only when it is a regular file: the one check behind every file lamina reads.

A path a user (or a file, or a mirror) hands lamina may name anything. A FIFO blocks ``open`` until a
writer appears, a device such as ``/dev/zero`` never ends, a directory cannot be read. So a path is
``os.stat``-ed before it is opened; the open itself is non-blocking, and the open descriptor is
checked again (``fstat``: still a regular file, still the same inode), so a path swapped for a FIFO in
between cannot hang the reader either. Callers choose the error (saving raises ``FileFormatError``,
datasets a ``ValueError``) through ``refuse``, which receives the offending ``st_mode``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISLNK, "a symbolic link"))
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # absent on Windows, which has no FIFOs in the file system
_OPEN_FLAGS = os.O_RDONLY | _NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0) \
    | getattr(os, "O_CLOEXEC", 0)


class ReplacedWhileOpening(OSError):
    """The path named another file by the time it was opened."""


def kind(mode: int) -> str:
    """What an ``st_mode`` names, in words ("a directory", "a FIFO (named pipe)", ...)."""
    for test, words in _KINDS:
        if test(mode):
            return words
    return "not a regular file"


def stat_regular(path, refuse: Callable[[int], Exception], follow_symlinks: bool = True) -> os.stat_result:
    """``os.stat(path)``; raises ``refuse(st_mode)`` unless it is a regular file (a symbolic link counts
    as not regular when ``follow_symlinks`` is False). ``OSError`` s such as ``FileNotFoundError`` pass."""
    st = os.stat(path, follow_symlinks=follow_symlinks)
    if not stat.S_ISREG(st.st_mode):
        raise refuse(st.st_mode)
    return st


def open_regular(path, refuse: Callable[[int], Exception], follow_symlinks: bool = True):
    """``(binary file object, stat)`` for ``path``, once it is known to be a regular file.

    Raises ``refuse(st_mode)`` for anything else, and :class:`ReplacedWhileOpening` if the path was
    swapped between the check and the open.
    """
    before = stat_regular(path, refuse, follow_symlinks)
    flags = _OPEN_FLAGS | (0 if follow_symlinks else getattr(os, "O_NOFOLLOW", 0))
    fd = os.open(path, flags)  # non-blocking: a FIFO swapped in after the stat cannot block here
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise refuse(st.st_mode)
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            raise ReplacedWhileOpening(f"{path} was replaced while being opened; refusing to read it.")
        if _NONBLOCK:  # reads of the regular file may block as usual
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st
    except BaseException:
        os.close(fd)
        raise


def bounded_chunks(f, limit: int, chunk: int = 1 << 20):
    """The data of the file object ``f`` in chunks of at most ``chunk`` bytes, ``limit + 1`` bytes in all
    at most: a reader that receives more than ``limit`` knows ``f`` holds more than it allows, without
    having read (or kept) the rest. Memory grows with what really arrives, never with ``limit``."""
    received = 0
    while received <= limit:
        data = f.read(min(chunk, limit + 1 - received))
        if not data:
            return
        received += len(data)
        yield data
