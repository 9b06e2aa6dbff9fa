"""Model (and optimizer) weights in Keras 3's HDF5 layout, read and written safely.

Layout (``state_walk`` decides the paths): for each saveable a group ``<path>/vars`` (``vars`` at
the root) with a ``name`` attribute and datasets ``"0"``, ``"1"``, ... in the saveable's variable
order; the optimizer under ``optimizer/vars``. h5py is imported only inside these functions.

Reading is two-phase so a bad file never leaves a model half-loaded: :func:`plan_load` opens only
the groups the model expects, checks every link (each path component must be a hard link: soft and
external links could lead to other files, or to a FIFO that blocks forever), dataset kind, dtype,
shape and count, and reads the arrays into memory; :func:`apply_plan` then assigns them. Any
HDF5-level failure becomes a :class:`~lamina.saving.errors.FileFormatError` naming the file.

A model with tens of thousands of layers has as many groups and datasets, and each HDF5 call costs
microseconds, so the reader visits the file's links once (:class:`_Index`): that one visit refuses
soft and external links anywhere, counts the stored values, and opens every dataset once; the
checks above then run on what it found instead of re-resolving each path component by component.
A path the visit cannot vouch for (a link aliasing another, a file with a non-hard link) goes the
component-by-component way, so both ways give the same answers and the same errors.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import warnings

import numpy as np

from lamina import backend
from lamina.saving import file_access, state_walk
from lamina.saving.errors import FileFormatError

# A dataset that declares more than this many bytes must store at least 1/_MAX_EXPANSION of them.
_BOMB_FLOOR_BYTES = 1 << 20
_MAX_EXPANSION = 1000
# stored_values() credits a dataset with at least this many bytes however little it stores (a tiny
# dataset left at its fill value stores nothing), and with no more than _MAX_EXPANSION x its storage.
_UNBACKED_ALLOWANCE_BYTES = 4096
_LINK_KINDS = {1: "SoftLink", 64: "ExternalLink"}  # h5py.h5l.TYPE_SOFT / TYPE_EXTERNAL
# Beyond this many links the reader keeps no index (its memory would grow with the file) and checks
# each path component by component instead.
_INDEX_MAX_LINKS = 1_000_000


def _h5py(filename):
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is a declared extra
        raise ImportError(
            f"Reading or writing '{filename}' needs h5py: pip install 'lamina[h5py]' (or pip install h5py)."
        ) from None
    return h5py


# ------------------------------------------------------------------------------------- writing


def state_entries(model, include_optimizer: bool = True, skip=()) -> list[state_walk.Entry]:
    """The model's saveables in Keras's order, plus the optimizer's when it is built; ``skip``: objects
    left out with everything below them (Keras's ``objects_to_skip``)."""
    entries = state_walk.model_entries(model, skip)
    opt = getattr(model, "optimizer", None)
    if opt is not None and any(o is opt for o in skip):
        opt = None
    if include_optimizer and opt is not None and getattr(model, "compiled", False):
        if opt.built:
            variables = state_walk.optimizer_variables_keras_order(
                opt, state_walk.keras_trainable_variables(model))
        else:
            variables = list(opt.variables)
        entries.append(state_walk.Entry("optimizer", opt.name, variables, opt))
        inner = getattr(opt, "inner_optimizer", None)
        if inner is not None:  # a LossScaleOptimizer: Keras writes the wrapped one's state again, as its child
            entries.append(state_walk.Entry("optimizer/inner_optimizer", inner.name, variables[len(opt._variables):],
                                            inner))
    return entries


def _entry_items(entry: state_walk.Entry) -> list[tuple[str, np.ndarray]]:
    """(dataset name, array) pairs of one saveable: its variables as "0", "1", ...; a layer with its own
    ``save_own_variables`` writes what it puts in the store, under its own keys (as Keras does)."""
    if entry.custom_save:
        store: dict = {}
        entry.owner.save_own_variables(store)
        return [(str(k), np.asarray(v.numpy() if hasattr(v, "numpy") else v)) for k, v in store.items()]
    return [(str(i), np.asarray(v.numpy())) for i, v in enumerate(entry.variables)]


def _entry_arrays(entry: state_walk.Entry) -> list[np.ndarray]:
    return [arr for _, arr in _entry_items(entry)]


def write_h5(entries: list[state_walk.Entry], target=None) -> bytes | None:
    """Write ``entries`` as a Keras weights file into ``target`` (a path or binary file object);
    with ``target=None`` return the file's bytes (built in HDF5's own memory driver)."""
    h5py = _h5py(target or "model.weights.h5")
    if target is None:
        # A name unique in this process: HDF5 would take two open in-memory files of one name for the same file.
        with h5py.File(f"lamina-weights-{os.getpid()}-{next(_IMAGES)}.h5", "w", driver="core",
                       backing_store=False) as f:
            _write_entries(h5py, f, entries)
            f.flush()
            return f.id.get_file_image()
    with h5py.File(target, "w") as f:
        _write_entries(h5py, f, entries)
    return None


_IMAGES = itertools.count()


def _write_entries(h5py, f, entries: list[state_walk.Entry]) -> None:
    """Each entry's group, ``name`` attribute and datasets, made as h5py's ``create_group`` and
    ``create_dataset`` make them (no timestamps, contiguous) but through its low-level calls, which
    cost a third less for a model with tens of thousands of small arrays."""
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_obj_track_times(False)
    lcpls = {}
    for cset in (h5py.h5t.CSET_ASCII, h5py.h5t.CSET_UTF8):
        lcpls[cset] = lcpl = h5py.h5p.create(h5py.h5p.LINK_CREATE)
        lcpl.set_create_intermediate_group(True)
        lcpl.set_char_encoding(cset)
    everywhere = h5py.h5s.ALL
    for entry in entries:
        path = f"{entry.path}/vars" if entry.path else "vars"
        try:
            key, cset = path.encode("ascii"), h5py.h5t.CSET_ASCII
        except UnicodeEncodeError:
            key, cset = path.encode("utf-8"), h5py.h5t.CSET_UTF8
        gid = h5py.h5g.create(f.id, key, lcpl=lcpls[cset], gcpl=gcpl)
        group = h5py.Group(gid)
        group.attrs["name"] = entry.name
        for key, arr in _entry_items(entry):
            if arr.dtype.kind not in "biuf":  # a custom layer's odd state: h5py's own conversions
                ds = group.create_dataset(key, data=arr)
                if arr.dtype.name == "bfloat16":  # stored as 2-byte opaque data; Keras marks it so
                    ds.attrs["dtype"] = "bfloat16"
                continue
            if not arr.flags.c_contiguous:
                arr = arr.copy(order="C")  # (not np.ascontiguousarray: it makes a scalar 1-d)
            ds = h5py.h5d.create(gid, key.encode(), h5py.h5t.py_create(arr.dtype, logical=1),
                                 h5py.h5s.create_simple(arr.shape), dcpl=dcpl)
            if arr.size:
                ds.write(everywhere, everywhere, arr)


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


class _Index:
    """What one visit of a file's links finds (HDF5's link visit follows hard links only, and enters
    each group once however many links reach it).

    ``bad`` is the first soft or external link, if any; the index is ``usable`` only when there is
    none and the file has at most :data:`_INDEX_MAX_LINKS` links. A usable index vouches for the
    *trusted* paths: every component a hard link to an object that no other link reaches, so the
    visit listed all of its links under that very path. It keeps each trusted group's link names,
    and opens each leaf object once (a group with links is never opened); ``datasets`` holds every
    dataset reached, once each, for :meth:`H5Reader.stored_values`.
    """

    def __init__(self, h5py, fid):
        names: list[bytes] = []
        addrs: list[int] = []
        bad: list = []
        hard = h5py.h5l.TYPE_HARD
        total = 0

        def visit(name, info):
            nonlocal total
            if info.type != hard:
                bad.append((name.decode("utf-8", "replace"), info.type))
                return 1  # stops the visit (raising inside an HDF5 callback is not safe)
            total += 1
            if total <= _INDEX_MAX_LINKS:
                names.append(name)
                addrs.append(info.u)  # the object's address, for a hard link
            return None

        fid.links.visit(visit, info=True)
        self.bad = bad[0] if bad else None
        self.usable = not bad and total <= _INDEX_MAX_LINKS
        self.groups: dict[str, list[str]] = {}  # trusted group -> its link names
        self.leaves: dict[str, object] = {}  # trusted path without links -> its low-level id
        self.datasets: dict[int, object] = {}  # address -> DatasetID, every dataset reached
        if self.usable:
            self._build(h5py, fid, names, addrs)

    def _build(self, h5py, fid, names: list, addrs: list) -> None:
        paths = [n.decode("utf-8", "surrogateescape") for n in names]  # a name that is not UTF-8 never matches
        links = {h5py.h5o.get_info(fid).addr: 1}  # the root is reached without a link
        for a in addrs:
            links[a] = links.get(a, 0) + 1
        trusted = {""}
        for path, addr in zip(paths, addrs):  # the visit lists the link to a group before the group's links
            if links[addr] == 1 and path.rpartition("/")[0] in trusted:  # (were it not so: only fewer trusted)
                trusted.add(path)
        groups: dict[str, list[str]] = {"": []}
        for path in paths:  # in the visit's order: by name within each group, as h5py lists them
            parent, _, base = path.rpartition("/")
            if parent in trusted:
                groups.setdefault(parent, []).append(base)
        opened: set[int] = set()
        for name, path, addr in zip(names, paths, addrs):
            if path in groups or addr in opened:
                continue  # a group with links, or an object already opened under another name
            opened.add(addr)
            obj = h5py.h5o.open(fid, name)  # the visit found every link a hard link
            if isinstance(obj, h5py.h5d.DatasetID):
                self.datasets[addr] = obj
            if path in trusted:
                self.leaves[path] = obj
        self.groups = groups

    def group_keys(self, h5py, path: str):
        """The link names of the group at trusted ``path``, or None when the index cannot say."""
        keys = self.groups.get(path)
        if keys is not None:
            return keys
        obj = self.leaves.get(path)
        return [] if isinstance(obj, h5py.h5g.GroupID) else None


class _IndexedGroup:
    """A group the index vouches for: its path and link names."""

    __slots__ = ("path", "names")

    def __init__(self, path: str, names: list[str]):
        self.path = path
        self.names = names


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
        self._index = None  # the _Index, built on first use; False when the file could not be indexed
        self._headers: dict = {}  # id(DatasetID) -> (TypeID, shape) from stored_values(); the index holds both
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
        self._index = None
        self._headers = {}
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

    def _visit(self) -> _Index:
        """The file's :class:`_Index`, visited on first use; HDF5 errors propagate."""
        if not self._index:
            self._index = False  # marks a failed visit for _quiet_index
            self._index = _Index(self._h5py, self.file.id)
        return self._index

    def index(self) -> _Index | None:
        """The file's :class:`_Index`, or None when it is not usable (a non-hard link, too many links)."""
        index = self._visit()
        return index if index.usable else None

    def _quiet_index(self) -> _Index | None:
        """:meth:`index`, or None when the visit fails: the path-by-path lookups then report the damage."""
        if self._index is False:
            return None
        try:
            return self.index()
        except Exception:  # a damaged link table: the component-by-component walk names where
            return None

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
        """The ``vars`` group for ``path`` ("" = root), or None if the file has none. A group the index
        vouches for comes back as an :class:`_IndexedGroup` (for :meth:`keys` and :meth:`dataset_meta`)."""
        gpath = f"{path}/vars" if path else "vars"
        index = self._quiet_index()
        if index is not None:
            names = index.group_keys(self._h5py, gpath)
            if names is not None:
                return _IndexedGroup(gpath, names)
        node = self.child(self.file, gpath)
        if node is not None and not isinstance(node, self._h5py.Group):
            raise self._error(f"'{gpath}' should be a group but is a {type(node).__name__}.")
        return node

    def check_links(self) -> None:
        """Refuse the file if any link anywhere in it is not a hard link."""
        bad = self._visit().bad
        if bad is not None:
            raise self._link_error(*bad)

    def stored_values(self) -> int:
        """How many array elements the file holds, from the dataset headers alone (no data is read).

        Soft and external links are refused first. Each dataset reached counts once however many hard
        links reach it, for no more elements than its stored bytes can expand to (the
        decompression-bomb rule of :meth:`read`, with a small allowance for tiny unallocated datasets).
        """
        try:
            self.check_links()
            index = self.index()
            if index is None:
                return sum(self._backed_values(ds, None) for ds in self._visit_datasets())
            return sum(self._backed_values(ds, self._headers) for ds in index.datasets.values())
        except FileFormatError:
            raise
        except Exception as e:  # a damaged object header or B-tree
            raise self._error(f"the weights could not be read ({type(e).__name__}: {e}).") from None

    def _visit_datasets(self) -> list:
        """Every dataset, once each, by HDF5's object visit (for files too large to index)."""
        h5py = self._h5py
        fid = self.file.id
        names = []

        def visit(name, info):
            if info.type == h5py.h5o.TYPE_DATASET:
                names.append(name)
            return None

        h5py.h5o.visit(fid, visit, info=True)
        return (h5py.h5d.open(fid, name) for name in names)

    @staticmethod
    def _backed_values(ds, headers: dict | None) -> int:
        shape = ds.shape
        size = math.prod(shape or ())
        tid = ds.get_type()
        if headers is not None:  # kept for _checked: only for a dataset the index keeps alive (ids are not reused)
            headers[id(ds)] = (tid, shape)
        itemsize = max(tid.get_size(), 1)
        backed = max(_MAX_EXPANSION * ds.get_storage_size(), _UNBACKED_ALLOWANCE_BYTES) // itemsize
        return min(size, backed)

    def keys(self, group) -> list[str]:
        if isinstance(group, _IndexedGroup):
            return list(group.names)
        return list(group.keys())

    def dataset_meta(self, group, name: str, path: str):
        """(shape, dtype, low-level dataset) of the dataset at ``name`` (one or more components) under
        ``group``, after the safety checks, without reading it; ``path`` is the dataset's path, for messages."""
        try:
            return self._dataset_meta(group, name, path)
        except FileFormatError:
            raise
        except Exception as e:  # a damaged header: h5py raises many types (ValueError for an odd float type)
            raise self._error(f"'{path}' could not be read ({type(e).__name__}: {e}).") from None

    def _dataset_meta(self, group, name: str, path: str):
        h5py = self._h5py
        if isinstance(group, _IndexedGroup):
            ds = None
            if name not in ("", ".", "..") and "/" not in name and self._index:
                ds = self._index.leaves.get(f"{group.path}/{name}")
            if isinstance(ds, h5py.h5d.DatasetID):
                return self._checked(ds, path)
            group = self.child(self.file, group.path)  # not a dataset the index knows: the careful way
        where = path[:-len(name) - 1] if path.endswith("/" + name) else ""
        ds = self.child(group, name, where)
        if ds is None:
            raise self._error(f"'{path}' is missing.")
        if not isinstance(ds, h5py.Dataset):
            raise self._error(f"'{path}' should be a dataset but is a {type(ds).__name__}.")
        return self._checked(ds.id, path)

    def _checked(self, dsid, path: str):
        """(shape, dtype, dsid) once the dataset passes the checks: data inside the file, numeric dtype."""
        h5py = self._h5py
        dcpl = dsid.get_create_plist()
        if dcpl.get_external_count() > 0:
            raise self._error(f"'{path}' stores its data in external files, which is not allowed.")
        if dcpl.get_layout() == h5py.h5d.VIRTUAL:
            raise self._error(f"'{path}' is a virtual dataset, which is not allowed.")
        tid, shape = self._headers.pop(id(dsid), None) or (dsid.get_type(), dsid.shape)
        dtype = tid.dtype
        if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
            attrs = h5py.Dataset(dsid).attrs
            if _is_bfloat16(dtype, attrs):
                dtype = np.dtype(backend.standardize_dtype("bfloat16"))  # loads ml_dtypes or names the extra
            elif "dtype" in attrs:
                raise self._error(f"'{path}' has dtype {attrs['dtype']!r}, which lamina does not support.")
            else:
                raise self._error(f"'{path}' has dtype {dtype}; only numeric arrays are allowed.")
        if shape is None:
            raise self._error(f"'{path}' is an empty (null) dataset, which holds no array.")
        return tuple(int(d) for d in shape), dtype, dsid

    def read(self, ds, shape, dtype, path: str) -> np.ndarray:
        """The dataset ``ds`` (from :meth:`dataset_meta`) as an array, within the byte and expansion caps."""
        h5py = self._h5py
        dsid = ds.id if isinstance(ds, h5py.Dataset) else ds
        declared = math.prod(shape) * dtype.itemsize
        if self.bytes_read + declared > self.max_bytes:
            raise self._error(f"the weights declare more than {self.max_bytes} bytes (at '{path}'); "
                              "refusing to load (raise lamina.saving.saving_lib.MAX_BYTES if this is expected).")
        stored = dsid.get_storage_size()
        if declared > _BOMB_FLOOR_BYTES and declared > _MAX_EXPANSION * stored:
            raise self._error(f"'{path}' declares {declared} bytes but stores only {stored}; refusing to "
                              "expand a potential decompression bomb.")
        self.bytes_read += declared
        # bfloat16 is stored as opaque 2-byte data: read the bytes, then view them as bfloat16
        out = np.empty(shape, dtype=dtype if dtype.kind != "V" else np.dtype(f"V{dtype.itemsize}"))
        if out.size:
            dsid.read(h5py.h5s.ALL, h5py.h5s.ALL, out)  # the whole dataset: `out` has its shape and dtype
        return out if dtype.kind != "V" else out.view(dtype)


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
            gpath, group = _find_group(entry, reader)
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
                           f"variables (it expected {len(want)} variables, but received {len(keys)} variables)")
            arrays = []
            if problem is None:
                for i, var in enumerate(want):
                    shape, dtype, ds = reader.dataset_meta(group, str(i), f"{gpath}/{i}")
                    vdt = np.dtype(var.dtype)
                    if shape != tuple(var.shape):
                        problem = (f"'{gpath}/{i}' has shape {shape} but {_describe(entry)} variable "
                                   f"'{var.name}' has shape {tuple(var.shape)}; the shapes must match")
                        break
                    if backend.is_float_dtype(vdt) != backend.is_float_dtype(dtype) or \
                            (vdt.kind == "b") != (dtype.kind == "b"):
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


def _find_group(entry: state_walk.Entry, reader) -> tuple:
    """(path, group) of the saveable's ``vars``: at its own path, else at the first other path that reaches
    it and is in the file (Keras finds a layer renamed behind a property this way); group None if none."""
    for path in (entry.path, *entry.aliases):
        group = reader.group(path)
        if group is not None:
            if path != entry.path:
                _warn_legacy_container(entry.path, path)
            return (f"{path}/vars" if path else "vars"), group
    return (f"{entry.path}/vars" if entry.path else "vars"), None


def _warn_legacy_container(path: str, found: str) -> None:
    """Keras's warning for files saved before Keras wrote layers nested in containers under their own
    ``.../container/...`` groups (such files hold them only in the model's flat ``layers/`` walk)."""
    parts = path.split("/")
    cut = next((i for i, p in enumerate(parts) if p == "container" or p.startswith("container_")), None)
    if cut is None:
        return  # another name for the same layer (a property), not a missing container
    warnings.warn(f"Skipping nested container at '{'/'.join(parts[:cut + 1])}': no matching group found in the "
                  "saved file. This usually means the file was saved with a Keras version that did not serialize "
                  f"sublayers nested inside containers; the layer saved at '{path}' is loaded from '{found}'.",
                  stacklevel=5)


def _describe(entry: state_walk.Entry) -> str:
    kind = "optimizer" if entry.path == "optimizer" else ("model" if not entry.path else "layer")
    return f"{kind} '{entry.name}'"


def _is_bfloat16(dtype: np.dtype, attrs) -> bool:
    """A 2-byte opaque dataset marked ``dtype="bfloat16"`` (how Keras and lamina store bfloat16)."""
    if dtype.kind != "V" or dtype.itemsize != 2 or dtype.fields is not None or "dtype" not in attrs:
        return False
    mark = attrs["dtype"]
    return (mark.decode() if isinstance(mark, bytes) else str(mark)) == "bfloat16"


def apply_plan(plan: list) -> None:
    """Assign what :func:`plan_load` read (in place, keeping each variable's dtype)."""
    for target, value in plan:
        if isinstance(value, dict):
            target.load_own_variables(value)
        else:
            target.assign(np.asarray(value, dtype=target.dtype))
