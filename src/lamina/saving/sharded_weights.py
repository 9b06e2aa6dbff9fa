"""Sharded weights (``model.save_weights("m.weights.json", max_shard_size=...)``), in Keras's layout.

The index ``<name>.weights.json`` holds ``{"metadata": {"total_size": bytes}, "weight_map": {group: file
or [files]}}``; each group ``/<path>/vars`` (as in a ``.weights.h5`` file) lives in the shard files
``<name>_00000.weights.h5``, ``_00001``, ... next to it, a shard holding at most ``max_shard_size`` GB
(a group whose values do not fit the current shard continues in the next one).

Writing goes through :class:`~lamina.saving.io_stores.ShardedH5IOStore` into a temporary folder next to
the index; the shards are then renamed into place and the index last, so an interrupted save leaves
the previous index (and what it names) readable. Reading opens each shard named by the index with
:class:`~lamina.saving.h5_weights.H5Reader` (its link, dtype and bomb checks) behind
:class:`ShardedReader`, which :func:`~lamina.saving.h5_weights.plan_load` reads like one file.
"""

from __future__ import annotations

import json
import os
import tempfile

from lamina.saving import file_access, h5_weights, io_stores, state_walk
from lamina.saving.atomic import write_bytes_atomic
from lamina.saving.errors import FileFormatError

#: Cap on the index file (a JSON map of group paths to file names).
MAX_INDEX_BYTES = 64 << 20


def write_sharded(entries: list[state_walk.Entry], path: str, max_shard_size: float) -> None:
    """Write ``entries`` as shards of at most ``max_shard_size`` GB plus the index ``path`` (``.json``)."""
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.TemporaryDirectory(dir=folder, prefix=".lamina-shards-") as tmp:
        staged = os.path.join(tmp, os.path.basename(path))
        store = io_stores.ShardedH5IOStore(staged, max_shard_size=max_shard_size, mode="w")
        try:
            for entry in entries:
                target = store.make(entry.path, metadata={"name": entry.name})
                for key, arr in h5_weights._entry_items(entry):
                    target[key] = arr
        finally:
            store.close()
        for name in sorted(os.listdir(tmp)):
            if name != os.path.basename(staged):
                os.replace(os.path.join(tmp, name), os.path.join(folder, name))
        with open(staged, "rb") as f:
            write_bytes_atomic(os.path.join(folder, os.path.basename(staged)), f.read())


class _Part:
    """The piece of one ``vars`` group held by one shard."""

    def __init__(self, reader: h5_weights.H5Reader, group):
        self.reader = reader
        self.group = group
        self.keys = reader.keys(group)


class ShardedReader:
    """The shards an index names, read as one weights file by :func:`h5_weights.plan_load` (``group``,
    ``keys``, ``dataset_meta``, ``read``). Shards open on first use and close with the reader; the byte
    cap applies to all of them together."""

    def __init__(self, index_path, filename, max_bytes: int):
        self.filename = filename
        self.max_bytes = int(max_bytes)
        self.bytes_read = 0
        self.folder = os.path.dirname(os.path.abspath(index_path))
        raw = file_access.read_regular(index_path, MAX_INDEX_BYTES, filename, "the sharded weights index")
        try:
            index = json.loads(raw)
        except (ValueError, RecursionError) as e:
            raise FileFormatError(filename, f"the sharded weights index is not valid JSON ({e}).") from None
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict):
            raise FileFormatError(filename, "the sharded weights index has no 'weight_map' dict (group path -> "
                                            f"shard file). Received: {str(index)[:200]}")
        self.weight_map = {k: self._names(k, v) for k, v in weight_map.items()}
        self._readers: dict[str, h5_weights.H5Reader] = {}

    def _names(self, group: str, value) -> list[str]:
        names = value if isinstance(value, list) else [value]
        for name in names:
            try:
                io_stores._shard_name(name)
            except ValueError:
                raise FileFormatError(self.filename, f"the sharded weights index names {name!r} for '{group}'; a "
                                                     "shard must be a file name in the index's own folder.") from None
        return names

    def _reader(self, name: str) -> h5_weights.H5Reader:
        if name not in self._readers:
            path = os.path.join(self.folder, name)
            if not os.path.exists(path):
                raise FileFormatError(self.filename, f"the shard '{name}' named by the index is missing "
                                                     f"(looked for '{path}').")
            self._readers[name] = h5_weights.H5Reader(path, self.filename, self.max_bytes)
        return self._readers[name]

    def group(self, path: str):
        """The parts of the ``vars`` group of ``path`` ("" = root), or None when no shard holds it."""
        names = self.weight_map.get(f"/{path}/vars" if path else "/vars")
        if not names:
            return None
        parts = []
        for name in names:
            reader = self._reader(name)
            found = reader.group(path)
            if found is not None:
                parts.append(_Part(reader, found))
        return parts or None

    def keys(self, parts) -> list[str]:
        return [k for part in parts for k in part.keys]

    def dataset_meta(self, parts, name: str, path: str):
        for part in parts:
            if name in part.keys:
                shape, dtype, ds = part.reader.dataset_meta(part.group, name, path)
                return shape, dtype, (part.reader, ds)
        raise FileFormatError(self.filename, f"'{path}' is missing from every shard that holds its group.")

    def read(self, ds, shape, dtype, path: str):
        reader, inner = ds
        arr = reader.read(inner, shape, dtype, path)
        self.bytes_read += arr.nbytes
        if self.bytes_read > self.max_bytes:
            raise FileFormatError(self.filename, f"the shards declare more than {self.max_bytes} bytes (at "
                                                 f"'{path}'); refusing to load (raise "
                                                 "lamina.saving.saving_lib.MAX_BYTES if this is expected).")
        return arr

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
