"""Path helpers with Keras's names (``keras.src.utils.file_utils``): remote-path detection, joining,
and resolving a relative path without leaving a base folder.

lamina reads and writes local files only. A remote path (``gs://...``, ``/cns/...``: see
:func:`is_remote_path`) can be recognised and joined (URLs join with ``/``), but opening, listing or
copying one raises a ``ValueError`` that says so; Keras needs TensorFlow's gfile for those.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil

_REMOTE = re.compile(r"^(/cns|/cfs|/gcs|/hdfs|/readahead|/placer|/tfhub|.*://).*$")


def path_to_string(path):
    """``os.fspath(path)`` for a path-like object; anything else unchanged."""
    return os.fspath(path) if isinstance(path, os.PathLike) else path


def is_remote_path(filepath) -> bool:
    """Whether ``filepath`` names a remote location: a URL (``scheme://``) or one of Google's
    file-system roots (``/cns``, ``/cfs``, ``/gcs``, ``/hdfs``, ``/readahead``, ``/placer``, ``/tfhub``)."""
    return _REMOTE.match(str(filepath)) is not None


def _local_only(path, what: str):
    raise ValueError(f"lamina handles local files only and cannot {what} the remote path '{path}'. Copy it to a "
                     f"local folder first. Received: path={path!r}")


def resolve_path(path) -> str:
    """The canonical absolute path (symbolic links followed)."""
    return os.path.realpath(path)


def resolve_sub_path(base_dir, relative_path):
    """``base_dir / relative_path`` resolved, or None when it lies outside ``base_dir`` (which must be
    resolved already, see :func:`resolve_path`): '..', an absolute path or a link cannot escape it."""
    path = resolve_path(os.path.join(base_dir, relative_path))
    try:
        return path if os.path.commonpath([path, base_dir]) == base_dir else None
    except ValueError:  # different drives (Windows)
        return None


def join(path, *paths) -> str:
    """Join path components; a remote path joins with ``/`` whatever the platform."""
    if is_remote_path(path):
        return posixpath.join(str(path), *(str(p).replace("\\", "/") for p in paths))
    return os.path.join(path, *paths)


def exists(path) -> bool:
    if is_remote_path(path):
        _local_only(path, "check")
    return os.path.exists(path)


def isdir(path) -> bool:
    if is_remote_path(path):
        _local_only(path, "check")
    return os.path.isdir(path)


def listdir(path) -> list:
    if is_remote_path(path):
        _local_only(path, "list")
    return os.listdir(path)


def makedirs(path) -> None:
    if is_remote_path(path):
        _local_only(path, "create")
    os.makedirs(path)


def remove(path) -> None:
    if is_remote_path(path):
        _local_only(path, "remove")
    os.remove(path)


def rmtree(path) -> None:
    if is_remote_path(path):
        _local_only(path, "remove")
    shutil.rmtree(path)


def copy(src, dst):
    if is_remote_path(src) or is_remote_path(dst):
        _local_only(src if is_remote_path(src) else dst, "copy")
    return shutil.copy(src, dst)


def File(path, mode: str = "r"):  # Keras's name
    """``open(path, mode)`` for a local path."""
    if is_remote_path(path):
        _local_only(path, "open")
    return open(path, mode)
