"""Crash-safe file writes: write a temporary file next to the target, fsync it, rename it into place.

``os.replace`` is atomic on POSIX and Windows when both paths are on the same file system, which a
temporary file in the target's own folder guarantees. A process killed at any moment leaves either
the previous file or the new one, never a half-written one (at worst a stray ``.tmp`` file).
"""

from __future__ import annotations

import contextlib
import os
import secrets


def _fsync_dir(dirname: str) -> None:
    # Persist the rename itself (the directory entry); not possible (nor needed) on Windows.
    if os.name != "posix":
        return
    try:
        fd = os.open(dirname or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path, overwrite: bool = True):
    """Context manager yielding a binary file object; on success its bytes replace ``path`` atomically.

    With ``overwrite=False`` an existing ``path`` raises ``FileExistsError`` before anything is written.
    On an exception inside the block the temporary file is removed and ``path`` is left untouched.
    """
    path = os.fspath(path)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"File '{path}' already exists and overwrite=False. Received: filepath={path!r}")
    dirname = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(dirname, f".{os.path.basename(path)}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    f = open(tmp, "xb")
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
    except BaseException:
        f.close()
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(dirname)


def write_bytes_atomic(path, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_write`."""
    with atomic_write(path, overwrite=overwrite) as f:
        f.write(data)
