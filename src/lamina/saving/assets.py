"""Assets: files a layer writes with ``save_assets(dir)`` and reads back with ``load_assets(dir)``
(vocabularies, lookup tables), stored in a ``.keras`` zip under ``assets/<path>/`` as Keras stores them
(``<path>``: the saveable's path in the weights file, see :mod:`~lamina.saving.state_walk`; the model's
own assets go in ``assets/`` itself).

Saving writes each layer's folder in a temporary folder, then into the zip after the weights member;
loading extracts ``assets/`` (see :func:`lamina.saving.saving_lib.extract_assets`: names and
decompression bombs checked) and hands each layer that has ``load_assets`` its folder, or None when
the file holds none for it (as Keras does).
"""

from __future__ import annotations

import os
import zipfile

from lamina.saving import state_walk

DIRNAME = "assets"


def _folder(root: str, entry: state_walk.Entry) -> str:
    return os.path.join(root, *entry.path.split("/")) if entry.path else root


def save(entries: list[state_walk.Entry], root: str) -> bool:
    """Each saveable's ``save_assets`` into its folder below ``root``; whether any file was written."""
    wrote = False
    for entry in entries:
        if entry.owner is not None and hasattr(entry.owner, "save_assets"):
            folder = _folder(root, entry)
            os.makedirs(folder, exist_ok=True)
            entry.owner.save_assets(folder)
    for _, _, files in os.walk(root):
        wrote = wrote or bool(files)
    return wrote


def write_to_zip(zf: zipfile.ZipFile, root: str) -> None:
    """The files below ``root`` as ``assets/<relative path>`` members, in a stable order."""
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            zf.write(full, "/".join([DIRNAME, *os.path.relpath(full, root).split(os.sep)]))


def load(entries: list[state_walk.Entry], root: str) -> None:
    """Each saveable's ``load_assets`` with its folder below ``root`` (None when there is none)."""
    for entry in entries:
        if entry.owner is not None and hasattr(entry.owner, "load_assets"):
            folder = _folder(root, entry)
            entry.owner.load_assets(folder if os.path.isdir(folder) else None)
