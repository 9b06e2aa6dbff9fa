"""Keras's stores, the dict-like objects a layer's ``save_own_variables(store)`` /
``load_own_variables(store)`` and ``save_assets(dir)`` / ``load_assets(dir)`` receive, in Keras's file
layout (``keras.src.saving.saving_lib``'s public classes, for code written against them):

* :class:`H5IOStore`: one HDF5 file (a path, an ``io.BytesIO``, or a member of an open zip), one
  ``<path>/vars`` group per saveable, datasets inside;
* :class:`ShardedH5IOStore`: the same spread over ``<name>_00000.weights.h5``, ``_00001``, ... of at
  most ``max_shard_size`` GB each, listed by a ``<name>.weights.json`` index (``weight_map``: group path
  → shard file(s), ``metadata.total_size``);
* :class:`NpzIOStore`: one ``.npz`` archive, one entry per saveable;
* :class:`DiskIOStore`: a folder per saveable for assets (vocabularies, ...).

Reading treats the files as untrusted: groups and datasets are reached through hard links only
(:func:`safe_get_h5_group`, :func:`safe_get_h5_dataset`; soft and external links, external and
virtual datasets are refused), a dataset or ``.npy`` member that declares far more bytes than it
stores is refused before anything is allocated (a shape/decompression bomb), and an asset path may not
leave its store's folder. lamina's own ``load_model`` / ``load_weights`` read through
:mod:`lamina.saving.h5_weights`, which applies the same rules; these classes serve code that uses the
stores directly.
"""

from __future__ import annotations

import io
import json
import math
import os
import pathlib
import shutil
import tempfile
import warnings
import zipfile

import numpy as np

from lamina import backend
from lamina.saving import file_access, h5_weights, zip_members
from lamina.utils import file_utils

# A dataset or npz member declaring more than the floor may hold at most this many times its stored bytes.
_H5_DATASET_BOMB_FLOOR_BYTES = h5_weights._BOMB_FLOOR_BYTES
_H5_DATASET_MAX_EXPANSION = h5_weights._MAX_EXPANSION
_NPZ_MEMBER_BOMB_FLOOR_BYTES = zip_members.MEMBER_BOMB_FLOOR_BYTES
_NPZ_MEMBER_MAX_EXPANSION = zip_members.MAX_EXPANSION


def _readable(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if nbytes < 1024 or unit == "PB":
            return f"{nbytes:.2f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1024
    return f"{nbytes} B"  # pragma: no cover - the loop always returns


def _h5py():
    return h5_weights._h5py("an HDF5 store")


def _check_link(h5py, parent, name: str) -> None:
    if isinstance(parent, dict):
        return
    kind = parent.get(name, default=None, getclass=True, getlink=True)
    if kind in (h5py.ExternalLink, h5py.SoftLink):
        raise ValueError(f"Not allowed: H5 file with {kind.__name__} at '{name}'; only hard links are read.")


def safe_get_h5_group(parent, name: str):
    """The group ``name`` ('/'-separated) under ``parent`` (an ``h5py.File`` or group), every component a
    hard link to a group. ``KeyError(name)`` when a component is missing."""
    h5py = _h5py()
    current = parent
    for part in name.split("/"):
        if not part:
            raise ValueError(f"Invalid path in H5 file: {name!r} has an empty component.")
        if part not in current:
            raise KeyError(name)
        _check_link(h5py, current, part)
        current = current[part]
        if not isinstance(current, h5py.Group):
            raise ValueError(f"Invalid H5 file: expected a Group at {name!r}, received {type(current).__name__}.")
    return current


def safe_get_h5_dataset(group, name: str):
    """The dataset ``name`` under ``group``, refused when reached through a soft or external link, stored in
    external files, virtual, or a shape bomb: more than ``_H5_DATASET_BOMB_FLOOR_BYTES`` declared and more
    than ``_H5_DATASET_MAX_EXPANSION`` times what it stores."""
    h5py = _h5py()
    if "/" in name:
        parent, name = name.rsplit("/", 1)
        group = safe_get_h5_group(group, parent)
    if name not in group:
        raise KeyError(name)
    _check_link(h5py, group, name)
    dataset = group[name]
    if not isinstance(dataset, h5py.Dataset):
        raise ValueError(f"Invalid H5 file: expected a Dataset at {name!r}, received {type(dataset).__name__}.")
    if dataset.external:
        raise ValueError(f"Not allowed: H5 dataset {name!r} stores its data in external files: {dataset.external}")
    if dataset.is_virtual:
        raise ValueError(f"Not allowed: H5 dataset {name!r} is a virtual dataset.")
    declared = math.prod(dataset.shape or ()) * dataset.dtype.itemsize
    stored = dataset.id.get_storage_size()
    if declared > _H5_DATASET_BOMB_FLOOR_BYTES and declared > _H5_DATASET_MAX_EXPANSION * stored:
        raise ValueError(f"Not allowed: H5 dataset {name!r} declares {_readable(declared)} but stores only "
                         f"{_readable(stored)}; refusing to load a potential decompression/shape bomb.")
    return dataset


def _zip_read(archive: zipfile.ZipFile, name: str) -> bytes:
    """A member of ``archive``, its name and expansion checked and its size verified while read."""
    filename = getattr(archive, "filename", None)
    info = archive.getinfo(name)
    zip_members.check_name(info.filename, filename)
    zip_members.reject_bomb(info, filename)
    return zip_members.read(archive, info, filename)


def _check_mode(mode) -> None:
    if mode not in ("w", "r"):
        raise ValueError(f"`mode` should be either 'w' or 'r'. Received: {mode}")


class H5IOStore:
    """Variables in one HDF5 file: ``make(path)`` (write) / ``get(path)`` (read) select the group
    ``<path>/vars``, then the store reads and writes its datasets like a dict.

    Args:
        path_or_io: ``str``, ``pathlib.Path`` or ``io.BytesIO``; with ``archive``, the member's name.
        archive: an open ``zipfile.ZipFile`` holding (read) or receiving on ``close()`` (write) the file.
        mode: ``"r"`` or ``"w"``.
    """

    def __init__(self, path_or_io, archive=None, mode="r"):
        _check_mode(mode)
        if isinstance(path_or_io, (str, pathlib.Path)):
            self.path_or_io = pathlib.Path(path_or_io)
        elif isinstance(path_or_io, io.BytesIO):
            if archive is not None:
                raise ValueError("When `path_or_io` is an `io.BytesIO` object, `archive` should be `None`.")
            self.path_or_io = path_or_io
        else:
            raise TypeError("`path_or_io` should be a `str`, `pathlib.Path` or `io.BytesIO` object. Received: "
                            f"path_or_io={path_or_io} of type {type(path_or_io)}.")
        self.mode = mode
        self.archive = archive
        self.io_file = None
        self.h5_file = self._get_h5_file(self.path_or_io)
        self._reset_entry(None)

    def _reset_entry(self, path) -> None:
        self._h5_entry_path = path
        self._h5_entry_group = {}  # an empty dict until the group exists (or when the file lacks it)
        self._h5_entry_initialized = False

    def __bool__(self):
        return bool(self.h5_file)  # not len(): an empty entry must not make the store false

    def _get_h5_file(self, path_or_io, mode=None):
        h5py = _h5py()
        mode = mode or self.mode
        if self.archive:
            self.io_file = io.BytesIO() if mode == "w" else io.BytesIO(_zip_read(self.archive, str(path_or_io)))
            return h5py.File(self.io_file, mode=mode)
        if mode == "r" and not isinstance(path_or_io, io.BytesIO):
            self.io_file = file_access.open_regular(path_or_io)  # no FIFO or device behind the name
            return h5py.File(self.io_file, mode="r")
        return h5py.File(path_or_io, mode=mode)

    def make(self, path, metadata=None):
        """Select (write mode) the group for ``path``; it is created with its first value, or now when
        ``metadata`` (attributes, e.g. ``{"name": layer.name}``) is given."""
        if self.mode != "w":
            raise ValueError("`make` is only allowed in write mode.")
        if not isinstance(metadata, (dict, type(None))):
            raise ValueError(f"`metadata` should be a dict or `None`. Received: {metadata}")
        self._reset_entry(path)
        if metadata:
            self._create_h5_group(path, metadata)
        return self

    def get(self, path):
        """Select (read mode) the group for ``path`` ("" = the root's ``vars``); an empty one when absent."""
        if self.mode != "r":
            raise ValueError("`get` is only allowed in read mode.")
        self._reset_entry(path)
        self._h5_entry_initialized = True
        for candidate in self._candidates(path):
            try:
                self._h5_entry_group = safe_get_h5_group(self.h5_file, candidate)
                break
            except KeyError:
                continue
        return self

    def _candidates(self, path) -> list[str]:
        if not path:
            return ["vars"]
        out = [f"{path}/vars"]
        if "_layer_checkpoint_dependencies" in self.h5_file:  # files of Keras 2.13
            out.append(f"{path.replace('layers', '_layer_checkpoint_dependencies')}/vars")
        return out

    def has_path(self, path) -> bool:
        return path in self.h5_file

    def close(self):
        self.h5_file.close()
        if self.mode == "w" and self.archive:
            self.archive.writestr(str(self.path_or_io), self.io_file.getvalue())
        if self.io_file:
            self.io_file.close()

    def _create_h5_group(self, path, metadata=None):
        group = self.h5_file.create_group("vars") if not path else self.h5_file.create_group(path).create_group("vars")
        for key, value in (metadata or {}).items():
            group.attrs[key] = value
        self._h5_entry_group = group
        self._h5_entry_initialized = True

    def __len__(self):
        return len(self._h5_entry_group)

    def keys(self):
        return self._h5_entry_group.keys()

    def __getitem__(self, key):
        dataset = safe_get_h5_dataset(self._h5_entry_group, key)
        if dataset.attrs.get("dtype") == "bfloat16":  # stored as its raw 16 bits, tagged (Keras's layout)
            backend.require_ml_dtypes("bfloat16")
            return np.array(dataset, dtype="bfloat16")
        return np.array(dataset)

    def __setitem__(self, key, value):
        if self.mode not in ("w", "a"):
            raise ValueError("Setting a value is only allowed in write mode.")
        if not self._h5_entry_initialized:
            self._create_h5_group(self._h5_entry_path)
        value = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        if value.dtype.name == "bfloat16":
            self._h5_entry_group.create_dataset(key, data=value).attrs["dtype"] = "bfloat16"
        else:
            self._h5_entry_group[key] = value

    def __delitem__(self, key):
        if self.mode not in ("w", "a"):
            raise ValueError("Deleting a value is only allowed in write mode.")
        del self._h5_entry_group[key]

    def __contains__(self, item):
        return item in self._h5_entry_group


class ShardedH5IOStore(H5IOStore):
    """:class:`H5IOStore` spread over shard files of at most ``max_shard_size`` GB each (a value larger
    than that is refused), indexed by the ``.json`` file ``path_or_io`` names (see the module docstring)."""

    def __init__(self, path_or_io, max_shard_size=5, archive=None, mode="r"):
        _check_mode(mode)
        if not isinstance(path_or_io, (str, pathlib.Path)):
            raise TypeError("`path_or_io` should be a `str`, `pathlib.Path` object. Received: "
                            f"path_or_io={path_or_io} of type {type(path_or_io)}.")
        self.path = pathlib.Path(path_or_io)
        self.mode = mode
        self.archive = archive
        self.io_file = None
        self.h5_file = None
        self._open_name = None
        self.max_shard_size = float(max_shard_size) * 1024 ** 3  # GB to bytes
        self.base_name = self.path.stem.replace(".weights", "")
        if self.path.suffix != ".json":
            new_path = self.path.with_suffix(".json")
            warnings.warn(f"{'Saving' if mode == 'w' else 'Loading'} sharded weights requires `*.json` as the "
                          f"extension. The original path: {self.path} will be renamed to {new_path}.", stacklevel=2)
            self.path = new_path
        self._reset_entry(None)
        self.current_shard_index = 0
        self.current_shard_size = 0
        self.total_shard_size = 0
        self.current_shard_path = None
        self.current_shard_filenames = []
        if mode == "w":
            self.sharding_config = {"metadata": {"total_size": 0}, "weight_map": {}}
        else:
            self.sharding_config = _read_index(self.path, archive)
        self.h5_file = self._create_new_shard_file()

    def make(self, path, metadata=None):
        self.current_shard_filenames = [] if self.h5_file is None else [self._open_name]
        return super().make(path, metadata)

    def get(self, path):
        """Select the group for ``path``, opening the shard the index names for it."""
        weight_map = self.sharding_config["weight_map"]
        key = "/vars" if not path else path
        filenames = weight_map.get(key) or weight_map.get(f"/{key}/vars")
        filenames = [] if filenames is None else (filenames if isinstance(filenames, list) else [filenames])
        self.current_shard_filenames = [_shard_name(f) for f in filenames]
        if filenames and self.current_shard_filenames[0] != self.current_shard_path.name:
            self._close_file()
            self.current_shard_path = self.path.with_name(self.current_shard_filenames[0])
            self.h5_file = self._get_h5_file(self.current_shard_path)
            self._open_name = self.current_shard_path.name
        return super().get(path)

    def has_path(self, path) -> bool:
        leading = f"/{path}"
        return any(k == leading or k.startswith(leading + "/") for k in self.sharding_config.get("weight_map", {}))

    def _close_file(self):
        """Close the open shard (not the store)."""
        if self.h5_file is not None:
            self.h5_file.close()
            self.h5_file = None
        if self.io_file is not None and not (self.archive and self.mode == "w"):
            self.io_file.close()
            self.io_file = None

    def close(self):
        if self.h5_file is not None:
            self.h5_file.close()
            self.h5_file = None
        if self.mode == "w":
            self.sharding_config["metadata"]["total_size"] = self.total_shard_size
            text = json.dumps(self.sharding_config, indent=4)
            if self.archive:
                self.archive.writestr(str(self.path), text)
                self.archive.writestr(str(self.current_shard_path), self.io_file.getvalue())
            else:
                with open(self.path, "w") as f:
                    f.write(text)
        if self.io_file:
            self.io_file.close()
            self.io_file = None

    def _create_new_shard_file(self):
        name = f"{self.base_name}_{self.current_shard_index:05}.weights.h5"
        self.current_shard_index += 1
        self.current_shard_path = self.path.with_name(name)
        h5_file = self._get_h5_file(self.current_shard_path)
        self._open_name = name
        self.current_shard_filenames.append(name)
        self._h5_entry_initialized = False
        return h5_file

    def _switch_h5_file(self, filename, mode):
        """Open another shard (``"r"``, or ``"a"`` to delete from it) on the selected group."""
        self._close_file()
        self.h5_file = self._get_h5_file(self.path.with_name(filename), mode=mode)
        self._open_name = filename
        self._select_group(self._h5_entry_path)

    def _restore_h5_file(self):
        """Back to the shard being written (write mode) or selected (read mode)."""
        if self._open_name != self.current_shard_path.name:
            self._switch_h5_file(self.current_shard_path.name, mode="a" if self.mode == "w" else "r")

    def _select_group(self, path):
        try:
            self._h5_entry_group = safe_get_h5_group(self.h5_file, f"{path}/vars" if path else "vars")
            self._h5_entry_initialized = True
        except KeyError:
            self._h5_entry_group = {}
            self._h5_entry_initialized = False

    def _other_shards(self):
        return [f for f in self.current_shard_filenames if f != self.current_shard_path.name]

    def __len__(self):
        total = len(self._h5_entry_group)
        for filename in self._other_shards():
            self._switch_h5_file(filename, mode="r")
            total += len(self._h5_entry_group)
        self._restore_h5_file()
        return total

    def keys(self):
        keys = []
        current = list(self._h5_entry_group.keys())
        for filename in self.current_shard_filenames:
            if filename == self.current_shard_path.name:
                keys += current
            else:
                self._switch_h5_file(filename, mode="r")
                keys += list(self._h5_entry_group.keys())
        self._restore_h5_file()
        return keys

    def _find(self, key, mode: str) -> bool:
        """Whether ``key`` is in the selected group of some shard; that shard is left open when it is."""
        if key in self._h5_entry_group:
            return True
        for filename in self._other_shards():
            self._switch_h5_file(filename, mode=mode)
            if key in self._h5_entry_group:
                return True
        return False

    def _not_found(self, key):
        return KeyError(f"Key '{key}' not found in any of the shards: {self.current_shard_filenames}")

    def __getitem__(self, key):
        if not self._find(key, "r"):
            self._restore_h5_file()
            raise self._not_found(key)
        item = super().__getitem__(key)
        self._restore_h5_file()
        return item

    def __setitem__(self, key, value):
        self._restore_h5_file()
        value = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        size = value.size * value.dtype.itemsize
        self.total_shard_size += size
        if size > self.max_shard_size:
            raise ValueError(f"The size of {key} is {_readable(size)} which exceeds the maximum shard size "
                             f"{_readable(self.max_shard_size)}. You can increase the `max_shard_size` parameter "
                             "to accommodate the size.")
        self.current_shard_size += size
        if self.current_shard_size > self.max_shard_size:  # this value starts a new shard
            self.close_shard()
            self.h5_file = self._create_new_shard_file()
            self.current_shard_size = size
        super().__setitem__(key, value)
        group, shard = self._h5_entry_group.name, self.current_shard_path.name
        weight_map = self.sharding_config["weight_map"]
        if group not in weight_map:
            weight_map[group] = shard
        else:
            if not isinstance(weight_map[group], list):
                weight_map[group] = [weight_map[group]]
            if shard not in weight_map[group]:
                weight_map[group].append(shard)

    def close_shard(self):
        """Finish the shard being written (into the archive, when writing into one)."""
        self.h5_file.close()
        self.h5_file = None
        if self.archive and self.io_file is not None:
            self.archive.writestr(str(self.current_shard_path), self.io_file.getvalue())
            self.io_file.close()
            self.io_file = None

    def __delitem__(self, key):
        if not self._find(key, "a"):
            self._restore_h5_file()
            raise self._not_found(key)
        del self._h5_entry_group[key]
        self._restore_h5_file()

    def __contains__(self, item):
        found = self._find(item, "r")
        self._restore_h5_file()
        return found


def _shard_name(name) -> str:
    """A shard file named by an index: a plain file name in the index's folder, nothing else."""
    if not isinstance(name, str) or not name or name != os.path.basename(name) or "\\" in name or name in (".", ".."):
        raise ValueError(f"Invalid shard file name in the sharded weights index: {name!r}; expected a file name in "
                         "the index's own folder.")
    return name


def _read_index(path: pathlib.Path, archive) -> dict:
    """The sharding index (``weight_map``, ``metadata``), its size capped and its shape checked."""
    raw = _zip_read(archive, str(path)) if archive else file_access.read_regular(path, 64 << 20)
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"The sharded weights index '{path}' is not valid JSON ({e}).") from None
    if not isinstance(config, dict) or not isinstance(config.get("weight_map"), dict):
        raise ValueError(f"The sharded weights index '{path}' has no 'weight_map' dict. Received: {str(config)[:200]}")
    return config


class NpzIOStore:
    """Variables in one ``.npz`` archive (a path, or with ``archive`` a member of that zip): one entry per
    saveable path (``"__root__"`` for the model itself). Reading never unpickles, and refuses a member whose
    ``.npy`` header declares far more than it stores."""

    def __init__(self, root_path, archive=None, mode="r"):
        _check_mode(mode)
        self.root_path = root_path
        self.mode = mode
        self.archive = archive
        self.f = None
        if mode == "w":
            self.contents = {}
        else:
            self.f = (io.BytesIO(_zip_read(archive, root_path)) if archive
                      else file_access.open_regular(root_path))
            self.contents = np.load(self.f, allow_pickle=False)

    def make(self, path, metadata=None):
        key = path or "__root__"
        self.contents[key] = {}
        return self.contents[key]

    def get(self, path):
        key = path or "__root__"
        if key not in self.contents:
            return {}
        self._reject_npz_bomb(key)
        value = self.contents[key]
        return dict(value) if not path else value.tolist()

    def _reject_npz_bomb(self, key):
        zf = getattr(self.contents, "zip", None)
        if zf is None:
            return
        try:
            info = zf.getinfo(f"{key}.npy")
        except KeyError:
            return
        with zf.open(info) as member:
            version = np.lib.format.read_magic(member)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(member)
        declared = math.prod(shape) * dtype.itemsize
        stored = max(info.compress_size, 1)
        if declared > _NPZ_MEMBER_BOMB_FLOOR_BYTES and declared > _NPZ_MEMBER_MAX_EXPANSION * stored:
            raise ValueError(f"Refusing to load npz weight '{key}': its header declares {_readable(declared)} but "
                             f"only {_readable(info.compress_size)} is stored; refusing to load a potential "
                             "decompression bomb.")

    def has_path(self, path) -> bool:
        return path in self.contents

    def close(self):
        if self.mode == "w":
            if self.archive:
                with self.archive.open(self.root_path, mode="w", force_zip64=True) as f:
                    np.savez(f, **self.contents)
            else:
                with open(self.root_path, "wb") as f:
                    np.savez(f, **self.contents)
        else:
            self.contents.close()
            self.f.close()


class DiskIOStore:
    """Assets on disk: ``make(path)`` / ``get(path)`` give the folder for a saveable's ``inner_path`` under
    the store's working folder (a temporary one copied into ``archive`` on ``close()`` when writing into a
    zip). A path that would leave the working folder ('..', absolute, backslashes) is refused."""

    def __init__(self, root_path, archive=None, mode=None):
        self.mode = mode
        self.root_path = root_path
        self.archive = archive
        self.tmp_dir = None
        if archive:
            self.tmp_dir = tempfile.mkdtemp()
            if mode == "r":
                self.working_dir = zip_members.extract_folder(archive, root_path, self.tmp_dir,
                                                              getattr(archive, "filename", None))
            else:
                self.working_dir = file_utils.join(self.tmp_dir, root_path).replace("\\", "/")
                os.makedirs(self.working_dir, exist_ok=True)
        elif mode == "r":
            self.working_dir = root_path
        else:
            self.tmp_dir = tempfile.mkdtemp()
            self.working_dir = file_utils.join(self.tmp_dir, root_path).replace("\\", "/")
            os.makedirs(self.working_dir, exist_ok=True)

    def _full_path(self, path):
        """``path`` under the working folder; ValueError when it would leave it."""
        path = path.replace("\\", "/")
        if file_utils.is_remote_path(self.working_dir):  # no realpath on a URL: check the string
            if path.startswith("/") or "://" in path or ".." in path.split("/"):
                raise ValueError(f"Invalid asset path: '{path}' escapes the asset directory.")
            return file_utils.join(self.working_dir, path).replace("\\", "/")
        resolved = file_utils.resolve_sub_path(file_utils.resolve_path(self.working_dir), path)
        if resolved is None:
            raise ValueError(f"Invalid asset path: '{path}' escapes the asset directory.")
        return resolved.replace("\\", "/")

    def make(self, path):
        if not path:
            return self.working_dir
        path = self._full_path(path)
        os.makedirs(path, exist_ok=True)
        return path

    def get(self, path):
        if not path:
            return self.working_dir
        path = self._full_path(path)
        return path if os.path.exists(path) else None

    def has_path(self, path) -> bool:
        if not path:
            return os.path.exists(self.working_dir)
        try:
            return os.path.exists(self._full_path(path))
        except ValueError:
            return False

    def close(self):
        if self.mode == "w" and self.archive:
            for folder, _, files in sorted(os.walk(self.working_dir)):
                for name in sorted(files):
                    full = os.path.join(folder, name)
                    rel = os.path.relpath(full, self.working_dir).replace(os.sep, "/")
                    self.archive.write(full, f"{self.root_path}/{rel}")
        if self.tmp_dir and os.path.exists(self.tmp_dir):
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
