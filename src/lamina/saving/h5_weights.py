"""Model (and optimizer) weights in Keras 3's HDF5 layout, read and written safely.

Layout (``state_walk`` decides the paths): for each saveable a group ``<path>/vars`` (``vars`` at
the root) with a ``name`` attribute and datasets ``"0"``, ``"1"``, ... in the saveable's variable
order; the optimizer under ``optimizer/vars``. h5py is imported only inside these functions.

Reading is two-phase so a bad file never leaves a model half-loaded: :func:`plan_load` opens only
the groups the model expects, checks every link (each path component must be a hard link: soft and
external links could lead to other files, or to a FIFO that blocks forever), dataset kind, dtype,
shape and count, and reads the arrays into memory; :func:`apply_plan` then assigns them. Any
HDF5-level failure becomes a :class:`~lamina.saving.errors.FileFormatError` naming the file.
"""

from __future__ import annotations

import io
import math
import os
import warnings

import numpy as np

from lamina.saving import file_access, state_walk
from lamina.saving.errors import FileFormatError

# A dataset that declares more than this many bytes must store at least 1/_MAX_EXPANSION of them.
_BOMB_FLOOR_BYTES = 1 << 20
_MAX_EXPANSION = 1000
# stored_values() credits a dataset with at least this many bytes however little it stores (a tiny
# dataset left at its fill value stores nothing), and with no more than _MAX_EXPANSION x its storage.
_UNBACKED_ALLOWANCE_BYTES = 4096
_LINK_KINDS = {1: "SoftLink", 64: "ExternalLink"}  # h5py.h5l.TYPE_SOFT / TYPE_EXTERNAL


def _h5py(filename):
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is a declared extra
        raise ImportError(
            f"Reading or writing '{filename}' needs h5py: pip install 'lamina[h5py]' (or pip install h5py)."
        ) from None
    return h5py


# ------------------------------------------------------------------------------------- writing


def state_entries(model, include_optimizer: bool = True) -> list[state_walk.Entry]:
    """The model's saveables in Keras's order, plus the optimizer's when it is built."""
    entries = state_walk.model_entries(model)
    opt = getattr(model, "optimizer", None)
    if include_optimizer and opt is not None and getattr(model, "compiled", False):
        if opt.built:
            variables = state_walk.optimizer_variables_keras_order(
                opt, state_walk.keras_trainable_variables(model))
        else:
            variables = list(opt.variables)
        entries.append(state_walk.Entry("optimizer", opt.name, variables, opt))
    return entries


def _entry_arrays(entry: state_walk.Entry) -> list[np.ndarray]:
    if entry.custom:
        store: dict = {}
        entry.owner.save_own_variables(store)
        keys = sorted(store, key=lambda k: (len(k), k))
        return [np.asarray(store[k]) for k in keys]
    return [np.asarray(v.numpy()) for v in entry.variables]


def write_h5(entries: list[state_walk.Entry], target=None) -> bytes | None:
    """Write ``entries`` as a Keras weights file into ``target`` (a path or binary file object);
    with ``target=None`` return the file's bytes."""
    h5py = _h5py(target or "model.weights.h5")
    buf = io.BytesIO() if target is None else target
    with h5py.File(buf, "w") as f:
        for entry in entries:
            group = f.create_group(f"{entry.path}/vars" if entry.path else "vars")
            group.attrs["name"] = entry.name
            for i, arr in enumerate(_entry_arrays(entry)):
                group.create_dataset(str(i), data=arr)
    return buf.getvalue() if target is None else None


# ------------------------------------------------------------------------------------- reading


def _wrap(h5py, oid):
    """h5py's high-level object for a low-level id (Group, Dataset, or Datatype)."""
    if isinstance(oid, h5py.h5g.GroupID):
        return h5py.Group(oid)
    if isinstance(oid, h5py.h5d.DatasetID):
        return h5py.Dataset(oid)
    return h5py.Datatype(oid)


def _from_image(h5py, data: bytes):
    """An HDF5 file held in memory, opened read-only in HDF5's own memory driver (several times faster
    than h5py's file-object driver, which calls back into Python for every read)."""
    open_image = getattr(h5py.h5f, "open_file_image", None)
    if open_image is None:  # older h5py
        return h5py.File(io.BytesIO(data), "r")
    return h5py.File(open_image(data))


class H5Reader:
    """A read-only, link-checking view of a Keras weights file (path, bytes, file object or open
    ``h5py.File``). A path must name a regular file (see :mod:`lamina.saving.file_access`)."""

    def __init__(self, source, filename, max_bytes: int):
        self.filename = filename
        self.max_bytes = int(max_bytes)
        self.bytes_read = 0
        h5py = _h5py(filename)
        self._h5py = h5py
        self._owned = None  # the file object opened here, closed with the reader
        if isinstance(source, (str, os.PathLike)):
            self._owned = source = file_access.open_regular(source, filename)
        try:
            if isinstance(source, (bytes, bytearray)):
                source = _from_image(h5py, bytes(source))
            self.file = source if isinstance(source, h5py.File) else h5py.File(source, "r")
        except Exception as e:
            self._close_owned()
            raise FileFormatError(filename, f"the weights are not a valid HDF5 file ({type(e).__name__}: {e}).") \
                from None

    def _close_owned(self) -> None:
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def close(self) -> None:
        try:
            self.file.close()
        except Exception:  # closing a corrupt file may fail again; nothing is left to release
            pass
        self._close_owned()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _error(self, problem: str):
        return FileFormatError(self.filename, problem)

    def _link_error(self, path: str, link_type: int):
        return self._error(f"'{path}' is a link of type {_LINK_KINDS.get(link_type, link_type)}; only plain groups "
                           "and datasets are allowed (links could reach outside the file).")

    def child(self, group, name: str, where: str = ""):
        """The object at ``name`` under ``group`` (one or more '/'-separated components), or None if absent.

        Each component is checked before it is followed: it must be a hard link (soft and external links
        can point anywhere, including other files and FIFOs that block forever), and every component but
        the last must be a group. ``where`` is ``group``'s path, for messages. h5py is only ever given a
        single component, so it never resolves a link lamina has not checked.
        """
        h5py = self._h5py
        node = group.id  # low-level ids while walking: h5py's wrappers cost more than the lookups
        walked = [where] if where else []
        for part in name.split("/"):
            walked.append(part)
            at = "/".join(walked)
            if part in ("", ".", ".."):
                raise self._error(f"'{where}/{name}' is not a valid path inside the file ('{at}' has an empty, "
                                  "'.' or '..' component).")
            if not isinstance(node, h5py.h5g.GroupID):
                kind = type(_wrap(h5py, node)).__name__
                raise self._error(f"'{at.rsplit('/', 1)[0]}' should be a group but is a {kind}.")
            try:
                key = part.encode("utf-8")
            except UnicodeEncodeError:
                raise self._error(f"'{at}' is not a valid UTF-8 path inside the file.") from None
            if not node.links.exists(key):
                return None
            link_type = node.links.get_info(key).type
            if link_type != h5py.h5l.TYPE_HARD:
                raise self._link_error(at, link_type)
            node = h5py.h5o.open(node, key)
        return _wrap(h5py, node)

    def group(self, path: str):
        """The ``vars`` group for ``path`` ("" = root), or None if the file has none."""
        gpath = f"{path}/vars" if path else "vars"
        node = self.child(self.file, gpath)
        if node is not None and not isinstance(node, self._h5py.Group):
            raise self._error(f"'{gpath}' should be a group but is a {type(node).__name__}.")
        return node

    def check_links(self) -> None:
        """Refuse the file if any link anywhere in it is not a hard link."""
        h5py = self._h5py
        bad = []

        def visit(name, info):
            if info.type != h5py.h5l.TYPE_HARD:
                bad.append((name.decode("utf-8", "replace"), info.type))
                return 1  # stops the visit (raising inside an HDF5 callback is not safe)
            return None

        self.file.id.links.visit(visit, info=True)
        if bad:
            name, link_type = bad[0]
            raise self._link_error(name, link_type)

    def stored_values(self) -> int:
        """How many array elements the file holds, from the dataset headers alone (no data is read).

        HDF5's object visit follows hard links only and visits each object once, so a dataset linked
        many times counts once. A dataset counts for no more elements than its stored bytes can
        expand to (the decompression-bomb rule of :meth:`read`, with a small allowance for tiny
        unallocated datasets). Soft and external links are refused first.
        """
        h5py = self._h5py
        fid = self.file.id
        total = 0

        def visit(name, info):
            nonlocal total
            if info.type == h5py.h5o.TYPE_DATASET:
                ds = h5py.h5d.open(fid, name)
                size = math.prod(ds.shape or ())
                itemsize = max(ds.get_type().get_size(), 1)
                backed = max(_MAX_EXPANSION * ds.get_storage_size(), _UNBACKED_ALLOWANCE_BYTES) // itemsize
                total += min(size, backed)
            return None

        try:
            self.check_links()
            h5py.h5o.visit(fid, visit, info=True)
        except FileFormatError:
            raise
        except Exception as e:  # a damaged object header or B-tree
            raise self._error(f"the weights could not be read ({type(e).__name__}: {e}).") from None
        return total

    def keys(self, group) -> list[str]:
        return list(group.keys())

    def dataset_meta(self, group, name: str, path: str):
        """(shape, dtype, dataset) of the dataset at ``name`` (one or more components) under ``group``,
        after the safety checks, without reading it; ``path`` is the dataset's path, for messages."""
        h5py = self._h5py
        where = path[:-len(name) - 1] if path.endswith("/" + name) else ""
        ds = self.child(group, name, where)
        if ds is None:
            raise self._error(f"'{path}' is missing.")
        if not isinstance(ds, h5py.Dataset):
            raise self._error(f"'{path}' should be a dataset but is a {type(ds).__name__}.")
        if ds.external:
            raise self._error(f"'{path}' stores its data in external files, which is not allowed.")
        if ds.is_virtual:
            raise self._error(f"'{path}' is a virtual dataset, which is not allowed.")
        dtype = ds.dtype
        if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
            if "dtype" in ds.attrs:
                raise self._error(f"'{path}' has dtype {ds.attrs['dtype']!r}, which lamina does not support.")
            raise self._error(f"'{path}' has dtype {dtype}; only numeric arrays are allowed.")
        return tuple(int(d) for d in (ds.shape or ())), dtype, ds

    def read(self, ds, shape, dtype, path: str) -> np.ndarray:
        declared = math.prod(shape) * dtype.itemsize
        if self.bytes_read + declared > self.max_bytes:
            raise self._error(f"the weights declare more than {self.max_bytes} bytes (at '{path}'); "
                              "refusing to load (raise lamina.saving.saving_lib.MAX_BYTES if this is expected).")
        stored = ds.id.get_storage_size()
        if declared > _BOMB_FLOOR_BYTES and declared > _MAX_EXPANSION * stored:
            raise self._error(f"'{path}' declares {declared} bytes but stores only {stored}; refusing to "
                              "expand a potential decompression bomb.")
        self.bytes_read += declared
        out = np.empty(shape, dtype=dtype)
        if out.size:
            ds.read_direct(out)
        return out


def plan_load(entries: list[state_walk.Entry], reader: H5Reader, skip_mismatch: bool = False) -> list:
    """Check the file against ``entries`` and read every array; returns the assignments to make.

    Each assignment is ``(variable, array)`` or ``(custom_layer, {key: array})``. Raises
    :class:`FileFormatError` on the first problem, before any weight changes; with
    ``skip_mismatch=True`` a mismatched saveable is skipped with a warning instead.
    """
    plan = []
    fn = reader.filename
    try:
        for entry in entries:
            gpath = f"{entry.path}/vars" if entry.path else "vars"
            group = reader.group(entry.path)
            keys = reader.keys(group) if group is not None else []
            if entry.custom:
                store = {}
                for k in keys:
                    shape, dtype, ds = reader.dataset_meta(group, k, f"{gpath}/{k}")
                    store[k] = reader.read(ds, shape, dtype, f"{gpath}/{k}")
                plan.append((entry.owner, store))
                continue
            want = entry.variables
            problem = None
            if sorted(keys) != sorted(str(i) for i in range(len(keys))):
                problem = f"'{gpath}' holds datasets named {sorted(keys)[:8]}; expected '0', '1', ..."
            elif len(keys) != len(want):
                problem = (f"'{gpath}' holds {len(keys)} arrays but {_describe(entry)} has {len(want)} "
                           "variables")
            arrays = []
            if problem is None:
                for i, var in enumerate(want):
                    shape, dtype, ds = reader.dataset_meta(group, str(i), f"{gpath}/{i}")
                    vdt = np.dtype(var.dtype)
                    if shape != tuple(var.shape):
                        problem = (f"'{gpath}/{i}' has shape {shape} but {_describe(entry)} variable "
                                   f"'{var.name}' has shape {tuple(var.shape)}")
                        break
                    if (vdt.kind == "f") != (dtype.kind == "f") or (vdt.kind == "b") != (dtype.kind == "b"):
                        problem = (f"'{gpath}/{i}' has dtype {dtype} but variable '{var.name}' of "
                                   f"{_describe(entry)} has dtype {vdt}")
                        break
                    arrays.append((var, reader.read(ds, shape, dtype, f"{gpath}/{i}")))
            if problem is not None:
                if skip_mismatch:
                    warnings.warn(f"Skipping loading weights for {_describe(entry)} from '{fn}': {problem}.",
                                  stacklevel=3)
                    continue
                hint = (" Load with compile=False to skip the optimizer state." if entry.path == "optimizer"
                        else "")
                raise FileFormatError(fn, problem + "." + hint)
            plan.extend(arrays)
    except FileFormatError:
        raise
    except Exception as e:  # corrupt HDF5 internals surface as many error types
        raise FileFormatError(fn, f"the weights could not be read ({type(e).__name__}: {e}).") from None
    return plan


def _describe(entry: state_walk.Entry) -> str:
    kind = "optimizer" if entry.path == "optimizer" else ("model" if not entry.path else "layer")
    return f"{kind} '{entry.name}'"


def apply_plan(plan: list) -> None:
    """Assign what :func:`plan_load` read (in place, keeping each variable's dtype)."""
    for target, value in plan:
        if isinstance(value, dict):
            target.load_own_variables(value)
        else:
            target.assign(np.asarray(value, dtype=target.dtype))
