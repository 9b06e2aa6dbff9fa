"""Reading and writing the members of ``.keras`` zip files, for tests that hand-craft files."""

from __future__ import annotations

import io
import zipfile


def read_members(source) -> dict[str, bytes]:
    """Every member of a ``.keras`` zip (a path or a binary file object), by name."""
    with zipfile.ZipFile(source) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def saved_members(model) -> dict[str, bytes]:
    """The members ``model.save`` writes, without touching the disk."""
    buf = io.BytesIO()
    model.save(buf)
    return read_members(io.BytesIO(buf.getvalue()))


def write_zip(path, members: dict):
    """A zip at ``path`` holding ``members`` (name → bytes or str), stored uncompressed; returns ``path``."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path
