"""The ``.keras`` format: a zip of ``metadata.json``, ``config.json`` and ``model.weights.h5``.

Writing follows Keras 3 (members stored uncompressed, in that order; config as
``serialize_keras_object(model)`` with ``build_config`` and ``compile_config``; weights in Keras's
HDF5 layout, see ``state_walk``; layers' ``save_assets`` files under ``assets/``, see ``assets``). Every
write goes through a temporary file renamed into place.

Keras's memory rule decides where the weights file is staged: in memory while the weights take less
than :data:`_MEMORY_UPPER_BOUND` x the available memory (:func:`available_memory`, from
``/proc/meminfo`` or ``os.sysconf``), else in a temporary file beside the target (or in the system's
temporary folder when that folder is read-only) — on save before it is copied into the zip, on load
extracted from the zip before h5py opens it. Either way the file is the same.

``metadata.json`` also carries a ``"lamina"`` entry that Keras ignores: lamina's version and the state
of lamina's global random generator (``lamina.backend.rng().bit_generator.state``) at save time.
Loading leaves the caller's random stream as it was; ``load_model(..., restore_rng_state=True)``
restores the saved state after the model is rebuilt, so training resumed from a checkpoint shuffles
and drops out exactly as the uninterrupted run would have (see :mod:`lamina.saving.rng_state`).

Reading treats the file as untrusted. Only regular files are opened (a FIFO, device or directory
is refused before ``open``: :mod:`~lamina.saving.file_access`). Before anything is built: member
names are checked (no absolute paths, ``..``, backslashes, drive letters, symlinks, duplicates),
declared sizes are capped (:data:`MAX_BYTES` in all, :data:`MAX_CONFIG_BYTES` and
:data:`MAX_METADATA_BYTES` for the JSON members; a member above
:data:`_ZIP_MEMBER_BOMB_FLOOR_BYTES` may not expand more than :data:`_ZIP_MEMBER_MAX_EXPANSION` times its
stored size) and checked against what is actually read, JSON is parsed strictly, the config passes the
safe-mode rules of :mod:`lamina.saving.serialization_lib`, and the weights the config will create
are counted from the config alone (:mod:`~lamina.saving.config_params`) and must fit both
:data:`MAX_PARAMS` and the values the weights file really holds. Weights are read and checked in
full before any is assigned. Every failure is a :class:`~lamina.saving.errors.FileFormatError`
naming the file.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import io
import json
import math
import os
import shutil
import stat
import tempfile
import warnings
import zipfile

import numpy as np

from lamina import backend, regular_files
from lamina.models.model import Model
from lamina.saving import (
    assets,
    config_params,
    file_access,
    h5_weights,
    object_registry,
    rng_state,
    serialization_lib,
    sharded_weights,
    state_walk,
    weights_loading,
    zip_members,
)
from lamina.saving.atomic import atomic_write, write_bytes_atomic
from lamina.saving.errors import FileFormatError

# Keras's stores, spelled where Keras spells them (keras.src.saving.saving_lib.H5IOStore, ...)
from lamina.saving.io_stores import DiskIOStore as DiskIOStore
from lamina.saving.io_stores import H5IOStore as H5IOStore
from lamina.saving.io_stores import NpzIOStore as NpzIOStore
from lamina.saving.io_stores import ShardedH5IOStore as ShardedH5IOStore
from lamina.saving.io_stores import safe_get_h5_dataset as safe_get_h5_dataset
from lamina.saving.io_stores import safe_get_h5_group as safe_get_h5_group
from lamina.version import __version__

CONFIG_FILENAME = "config.json"
METADATA_FILENAME = "metadata.json"
WEIGHTS_FILENAME = "model.weights.h5"
ASSETS_DIRNAME = assets.DIRNAME
# Keras's spellings of the member names (keras.src.saving.saving_lib)
_CONFIG_FILENAME, _METADATA_FILENAME, _VARS_FNAME_H5, _ASSETS_DIRNAME = (
    CONFIG_FILENAME, METADATA_FILENAME, WEIGHTS_FILENAME, ASSETS_DIRNAME)
KERAS_FORMAT_VERSION = "3.15.1"  # the Keras release whose format lamina writes
LAMINA_KEY = "lamina"

#: Cap on the uncompressed bytes lamina reads from one file (all members together). Raise it to
#: load larger models.
MAX_BYTES = 4 << 30
MAX_MEMBERS = 100_000
#: Caps on ``config.json`` and ``metadata.json`` (each checked against the zip header, then while reading).
MAX_CONFIG_BYTES = 64 << 20
MAX_METADATA_BYTES = 1 << 20
#: Cap on the weights (array elements, all layers together) a model config may describe, counted from the
#: config before anything is built. The environment variable ``LAMINA_MAX_PARAMS`` overrides it.
MAX_PARAMS = 1 << 30
#: Decompression-bomb guard (Keras's names; see :mod:`~lamina.saving.zip_members`): a member declaring more
#: than the floor may expand at most ``_ZIP_MEMBER_MAX_EXPANSION`` times its stored size; members extracted to
#: disk (assets) are held to the lower ``_ZIP_EXTRACT_BOMB_FLOOR_BYTES``.
_ZIP_MEMBER_BOMB_FLOOR_BYTES = zip_members.MEMBER_BOMB_FLOOR_BYTES
_ZIP_MEMBER_MAX_EXPANSION = zip_members.MAX_EXPANSION
_ZIP_EXTRACT_BOMB_FLOOR_BYTES = zip_members.EXTRACT_BOMB_FLOOR_BYTES
_MAX_DIM = 1 << 31
#: Keras's choice between staging the weights file in memory or on disk: in memory while the weights take
#: less than this fraction of the available memory (:func:`available_memory`), else through a temporary
#: file (next to the target when that folder is writable, else in the system's temporary folder).
_MEMORY_UPPER_BOUND = 0.5
_FALLBACK_AVAILABLE_BYTES = 1 << 30  # Keras's figure when the available memory cannot be read


# ----------------------------------------------------------------------------------- metadata


def _metadata_json() -> str:
    return json.dumps({
        "keras_version": KERAS_FORMAT_VERSION,
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        LAMINA_KEY: {"version": __version__, "rng_state": rng_state.current_state()},
    })


@contextlib.contextmanager
def _no_gc_passes():
    """Python's cyclic collector paused (and put back as it was). Saving or loading a model allocates
    objects that all live on (configs, layers, arrays), and each collection walks all of them again: for a
    20,000-layer model, collections took a third of the load. Neither frees anything cyclic worth
    collecting early."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def model_config_json(model) -> str:
    return json.dumps(serialization_lib.serialize_keras_object(model), default=serialization_lib.json_default)


# ------------------------------------------------------------------ memory or disk for the weights


def available_memory() -> int:
    """Bytes of memory available for new allocations: ``MemAvailable`` of ``/proc/meminfo`` (Linux),
    else available physical pages x page size (``os.sysconf``), else 1 GiB (Keras's figure without psutil)."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not on Windows, or not reported
        return _FALLBACK_AVAILABLE_BYTES


def fits_in_memory(nbytes: int) -> bool:
    """Keras's rule: stage ``nbytes`` of weights in memory when they take less than
    ``_MEMORY_UPPER_BOUND`` x :func:`available_memory` (so ``_MEMORY_UPPER_BOUND = 0`` always goes to disk)."""
    return nbytes < available_memory() * _MEMORY_UPPER_BOUND


def weights_nbytes(model) -> int:
    """Bytes the model's variables (and its optimizer's) take, from their shapes and dtypes."""
    variables = list(model.variables)
    opt = getattr(model, "optimizer", None)
    if opt is not None and getattr(model, "compiled", False):
        variables += list(opt.variables)
    return sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables)


def is_memory_sufficient(model) -> bool:
    """Whether ``model``'s weights are staged in memory (True) or through a temporary file when saved."""
    return fits_in_memory(weights_nbytes(model))


class Staging:
    """A temporary folder for what does not go through memory (a weights file too large for it, assets),
    made on first :meth:`path` only: in ``near`` (the target's folder, same disk) when it is writable, else
    in the system's temporary folder; :meth:`path` returns None when neither can be made (the caller then
    stages in memory, as Keras does). Removed with everything in it when the ``with`` block ends."""

    def __init__(self, near=None):
        self.near = near
        self._tmp = None
        self._failed = False

    def path(self) -> str | None:
        if self._tmp is None and not self._failed:
            for where in (self.near, None):
                try:
                    self._tmp = tempfile.TemporaryDirectory(dir=where, prefix=".lamina-")
                    break
                except OSError:
                    continue
            self._failed = self._tmp is None
        return None if self._tmp is None else self._tmp.name

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return False


# ------------------------------------------------------------------------------------- saving


def _write_archive(model, f, near) -> None:
    """Write ``model``'s ``.keras`` zip into the binary file object ``f``. The weights file is built in
    memory when it fits (:func:`is_memory_sufficient`), else in a temporary file (see :class:`Staging`)
    copied into the zip, so that a large model is never held twice in memory."""
    if not model.built:
        warnings.warn(f"You are saving model '{model.name}', which has not been built yet: the file will hold "
                      "no weights. Build it first (call it on data or give it an Input).", stacklevel=4)
    in_memory = is_memory_sufficient(model)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_no_gc_passes())
        staging = stack.enter_context(Staging(near))
        config_json = model_config_json(model)
        entries = h5_weights.state_entries(model)
        folder = None if in_memory else staging.path()
        if folder is None:
            weights = h5_weights.write_h5(entries)
        else:
            weights = os.path.join(folder, WEIGHTS_FILENAME)
            h5_weights.write_h5(entries, weights)
        asset_root = _save_assets(entries, staging)
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(METADATA_FILENAME, _metadata_json())
            zf.writestr(CONFIG_FILENAME, config_json)
            if isinstance(weights, bytes):
                zf.writestr(WEIGHTS_FILENAME, weights)
            else:
                zf.write(weights, WEIGHTS_FILENAME)
            if asset_root is not None:
                assets.write_to_zip(zf, asset_root)


def _save_assets(entries, staging: Staging) -> str | None:
    """The layers' ``save_assets`` folders written under the staging folder; its path, or None without assets."""
    if not any(e.owner is not None and hasattr(e.owner, "save_assets") for e in entries):
        return None
    folder = staging.path()
    if folder is None:
        raise OSError("The model has assets (a layer defines save_assets), which are written through a temporary "
                      "folder, but no temporary folder could be made (next to the file or in the system's).")
    root = os.path.join(folder, ASSETS_DIRNAME)
    os.makedirs(root)
    return root if assets.save(entries, root) else None


def archive_bytes(model) -> bytes:
    """The ``.keras`` file of ``model`` as bytes."""
    buf = io.BytesIO()
    _write_archive(model, buf, None)
    return buf.getvalue()


def save_model(model, filepath, overwrite: bool = True) -> None:
    """Write ``model`` to ``filepath`` (a ``.keras`` path or a binary file object), atomically.

    A file object receives the archive only once it is complete (built in memory, or in a temporary
    file when the weights are too large for memory), so a failed save writes nothing to it.
    """
    if hasattr(filepath, "write"):
        with tempfile.SpooledTemporaryFile(max_size=_spool_limit()) as buf:
            _write_archive(model, buf, None)
            buf.seek(0)
            shutil.copyfileobj(buf, filepath)
        return
    path = os.fspath(filepath)
    with atomic_write(path, overwrite=overwrite) as f:
        _write_archive(model, f, os.path.dirname(os.path.abspath(path)))


def _spool_limit() -> int:
    """How much of an archive bound for a file object stays in memory before it spills to a temporary file."""
    return max(int(available_memory() * _MEMORY_UPPER_BOUND), 1)  # 0 would mean: never spill


def save_model_dir(model, dirpath, overwrite: bool = True) -> None:
    """``zipped=False``: the three members as files in the folder ``dirpath`` (each written atomically)."""
    dirpath = os.fspath(dirpath)
    if os.path.exists(dirpath) and not os.path.isdir(dirpath):
        raise ValueError(f"zipped=False saves into a folder, but '{dirpath}' is a file. Received: filepath={dirpath}")
    if not overwrite and os.path.exists(os.path.join(dirpath, CONFIG_FILENAME)):
        raise FileExistsError(f"'{dirpath}' already holds a model and overwrite=False.")
    os.makedirs(dirpath, exist_ok=True)
    with _no_gc_passes():
        entries = h5_weights.state_entries(model)
        config = model_config_json(model).encode()
        with Staging(dirpath) as staging:
            folder = None if is_memory_sufficient(model) else staging.path()
            if folder is None:
                write_bytes_atomic(os.path.join(dirpath, WEIGHTS_FILENAME), h5_weights.write_h5(entries))
            else:  # straight to a temporary file (no copy in memory), renamed into place
                h5_weights.write_h5(entries, os.path.join(folder, WEIGHTS_FILENAME))
                os.replace(os.path.join(folder, WEIGHTS_FILENAME), os.path.join(dirpath, WEIGHTS_FILENAME))
    for name, data in ((METADATA_FILENAME, _metadata_json().encode()), (CONFIG_FILENAME, config)):
        write_bytes_atomic(os.path.join(dirpath, name), data)
    if any(e.owner is not None and hasattr(e.owner, "save_assets") for e in entries):
        assets.save(entries, os.path.join(dirpath, ASSETS_DIRNAME))


# -------------------------------------------------------------------------------- safe reading

def _safe_zip_read(zf: zipfile.ZipFile, name: str, filename=None) -> bytes:
    """One member of an open zip, its header checked (bombs, caps, unsafe names) and its size verified."""
    info = zf.getinfo(name)
    _check_member(info, filename, MAX_BYTES)
    return zip_members.read(zf, info, filename)


def extract_assets(zf: zipfile.ZipFile, dest: str, folder: str = "assets", filename=None) -> str:
    """The archive's ``folder/`` members extracted below ``dest`` (bomb-checked with this module's
    settings); returns the extracted folder."""
    return zip_members.extract_folder(zf, folder, dest, filename, _ZIP_EXTRACT_BOMB_FLOOR_BYTES,
                                      _ZIP_MEMBER_MAX_EXPANSION)


def _member_cap(name: str, max_bytes: int) -> tuple[int, str]:
    """The most bytes lamina reads for member ``name``, and the setting that holds it."""
    if name == CONFIG_FILENAME:
        return min(MAX_CONFIG_BYTES, max_bytes), "lamina.saving.saving_lib.MAX_CONFIG_BYTES"
    if name == METADATA_FILENAME:
        return min(MAX_METADATA_BYTES, max_bytes), "lamina.saving.saving_lib.MAX_METADATA_BYTES"
    return max_bytes, "lamina.saving.saving_lib.MAX_BYTES"


def _check_member(info: zipfile.ZipInfo, filename, max_bytes: int) -> None:
    """One member's header: kind, encryption, compression, declared size and expansion ratio."""
    name = info.filename
    zip_members.check_name(name, filename)
    if stat.S_ISLNK(info.external_attr >> 16):
        raise FileFormatError(filename, f"archive member {name!r} is a symbolic link, which is not allowed.")
    if info.flag_bits & 0x1:
        raise FileFormatError(filename, f"archive member {name!r} is encrypted.")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise FileFormatError(filename, f"archive member {name!r} uses compression method "
                                        f"{info.compress_type}; only stored and deflated are supported.")
    cap, setting = _member_cap(name, max_bytes)
    if info.file_size > cap:
        raise FileFormatError(filename, f"archive member {name!r} declares {info.file_size} uncompressed bytes, "
                                        f"more than the limit of {cap} ({setting}).")
    zip_members.reject_bomb(info, filename, _ZIP_MEMBER_BOMB_FLOOR_BYTES, _ZIP_MEMBER_MAX_EXPANSION)


def _check_members(infos: list, filename, max_bytes: int, wanted) -> set[str]:
    """Every member's header checked, the totals capped, the required members present; their names."""
    if len(infos) > MAX_MEMBERS:
        raise FileFormatError(filename, f"the archive has {len(infos)} members (at most {MAX_MEMBERS}).")
    seen: set[str] = set()
    total = 0
    for info in infos:
        _check_member(info, filename, max_bytes)
        if info.filename in seen:
            raise FileFormatError(filename, f"the archive holds two members named {info.filename!r}; refusing to "
                                            "guess which one is meant.")
        seen.add(info.filename)
        total += info.file_size
        if total > max_bytes:
            raise FileFormatError(filename, f"the archive declares {total} uncompressed bytes, more than the "
                                            f"limit of {max_bytes} (lamina.saving.saving_lib.MAX_BYTES).")
    if CONFIG_FILENAME not in seen:
        raise FileFormatError(filename, f"the archive has no '{CONFIG_FILENAME}' member "
                                        f"(members: {sorted(seen)[:10]}).")
    if WEIGHTS_FILENAME not in seen and WEIGHTS_FILENAME in wanted:
        hint = " (npz weights are not supported by lamina)" if "model.weights.npz" in seen else ""
        raise FileFormatError(filename, f"the archive has no '{WEIGHTS_FILENAME}' member{hint} "
                              f"(members: {sorted(seen)[:10]}).")
    return seen


def _open_zip(source, filename) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source, "r")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
            OverflowError, IndexError, KeyError, UnicodeDecodeError) as e:
        raise FileFormatError(filename, f"it is not a valid zip archive (a .keras file is a zip): {e}.") from None


def read_archive(source, filename, max_bytes: int | None = None,
                 wanted=(CONFIG_FILENAME, METADATA_FILENAME, WEIGHTS_FILENAME, ASSETS_DIRNAME),
                 staging=None) -> dict:
    """The ``wanted`` members of a ``.keras`` zip (path, bytes or file object), checked and read.

    A path must name a regular file (not a FIFO, device or directory): see :mod:`file_access`.
    ``staging``: a :class:`Staging` whose folder receives the weights member when it does not fit in memory
    (:func:`fits_in_memory`; its entry is then that file's path, not its bytes) and, when ``wanted`` names
    ``"assets"``, the members under ``assets/`` (entry ``"assets"``: the extracted folder's path).
    """
    max_bytes = MAX_BYTES if max_bytes is None else int(max_bytes)
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        with file_access.open_regular(source, filename) as f:
            return read_archive(f, filename, max_bytes, wanted, staging)
    with _open_zip(source, filename) as zf:
        seen = _check_members(zf.infolist(), filename, max_bytes, wanted)
        out: dict = {}
        for name in wanted:
            if name not in seen or name == ASSETS_DIRNAME:  # (assets are a folder, extracted below)
                continue
            info = zf.getinfo(name)
            folder = None
            if name == WEIGHTS_FILENAME and staging is not None and not fits_in_memory(info.file_size):
                folder = staging.path()
            if folder is not None:
                out[name] = zip_members.extract(zf, info, filename, os.path.join(folder, WEIGHTS_FILENAME))
            else:
                out[name] = zip_members.read(zf, info, filename)
        if ASSETS_DIRNAME in wanted and staging is not None and any(n.startswith(ASSETS_DIRNAME + "/") for n in seen):
            folder = staging.path()
            if folder is None:
                raise FileFormatError(filename, "the archive holds assets, which are extracted to a temporary "
                                                "folder, but no temporary folder could be made.")
            out[ASSETS_DIRNAME] = extract_assets(zf, folder, ASSETS_DIRNAME, filename)
        return out


def parse_json(data: bytes, what: str, filename):
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise FileFormatError(filename, f"{what} is not valid JSON ({type(e).__name__}: {str(e)[:200]}).") from None


def max_params() -> int:
    """:data:`MAX_PARAMS`, or the ``LAMINA_MAX_PARAMS`` environment variable when it is set."""
    env = os.environ.get("LAMINA_MAX_PARAMS")
    if env is None or not env.strip():
        return MAX_PARAMS
    try:
        return int(env)
    except ValueError:
        raise ValueError(f"The environment variable LAMINA_MAX_PARAMS must be an integer (a number of weights). "
                         f"Received: LAMINA_MAX_PARAMS={env!r}") from None


_DIM_KEYS = frozenset(("batch_shape", "batch_input_shape", "input_shape", "shape", "target_shape", "units",
                       "input_dim"))


def _check_dims(config, filename) -> None:
    """Shape entries anywhere in the config must be below 2**31."""
    stack = [config]
    pop, push = stack.pop, stack.extend  # a hot loop: every value of a config that may hold 10**5 layers
    while stack:
        node = pop()
        if isinstance(node, dict):
            for key in _DIM_KEYS.intersection(node):
                v = node[key]
                for d in v if isinstance(v, list) else [v]:
                    if isinstance(d, (int, float)) and not isinstance(d, bool) and not (-1 <= d < _MAX_DIM):
                        raise FileFormatError(filename, f"the config asks for a dimension {key}={d!r}; refusing "
                                                        "to build arrays that large.")
            push(node.values())
        elif isinstance(node, list):
            push(node)


def _check_sizes(config, custom_objects, stored_values: int | None, filename) -> None:
    """Refuse configs that would allocate absurd arrays, before a single weight is allocated.

    The weights the config will create are counted from the config alone (see
    :mod:`~lamina.saving.config_params`); they must fit in :func:`max_params` and, when the file
    has weights, in the values it actually stores (``stored_values``).
    """
    _check_dims(config, filename)
    params = config_params.count_params(config, custom_objects, filename)
    limit = max_params()
    if params > limit:
        raise FileFormatError(filename, f"the config describes at least {params} parameters, more than the limit "
                                        f"of {limit}. If the model is really that large, raise "
                                        "lamina.saving.saving_lib.MAX_PARAMS or set the environment variable "
                                        "LAMINA_MAX_PARAMS.")
    if stored_values is not None and params > stored_values:
        raise FileFormatError(filename, f"the config describes at least {params} parameters but the weights hold "
                                        f"only {stored_values} values; refusing to build a model the file cannot "
                                        "fill.")


class RebuildTypeError(FileFormatError, TypeError):
    """A model whose rebuild from its config failed with a ``TypeError`` (a class without ``from_config``, a
    layer object passed where its config was expected): a :class:`FileFormatError` naming the file, and a
    ``TypeError`` as Keras raises there, so code written for either catches it."""


def _model_config_problem(config) -> str | None:
    if not isinstance(config, dict):
        return f"is a {type(config).__name__}, not a dict"
    if "class_name" not in config:
        return "has no 'class_name'"
    if not isinstance(config.get("config"), dict):
        return f"has a 'config' entry that is a {type(config.get('config')).__name__}, not a dict"
    return None


def model_from_config(config, custom_objects=None, compile: bool = True, safe_mode: bool = True,
                      filename=None, stored_values: int | None = None):
    """Check ``config`` against the safety rules, then build (and compile) the model it describes.

    ``stored_values``: how many array elements the weights file holds (None: no weights file), which
    bounds the weights the config may create; see :func:`_check_sizes`.
    """
    problem = _model_config_problem(config)
    if problem:
        raise FileFormatError(filename, f"the model config {problem}; a model config is a dict with 'class_name' "
                                        f"and a 'config' dict. Received: {str(config)[:200]}")
    config = dict(config)
    if not compile:
        config["compile_config"] = None
    safe_mode = backend.effective_safe_mode(safe_mode)  # keras.config.enable_unsafe_deserialization wins
    extra = serialization_lib.check_config(config, custom_objects, safe_mode, filename)
    custom = {**(custom_objects or {}), **extra}
    _check_sizes(config, custom, stored_values, filename)
    try:
        if not safe_mode:
            config = serialization_lib.load_lambdas(config)
        with object_registry.CustomObjectScope(custom):
            model = serialization_lib._deserialize(config, custom, safe_mode)
    except FileFormatError as e:
        raise FileFormatError(filename, e.problem) from None
    except Exception as e:  # the config is data from a file: any failure to rebuild is a file error
        kind = RebuildTypeError if isinstance(e, TypeError) else FileFormatError
        raise kind(filename, f"the model could not be rebuilt from config.json "
                             f"({type(e).__name__}: {str(e)[:500]}).") from e
    if not isinstance(model, Model):
        raise FileFormatError(filename, f"config.json describes a {type(model).__name__}, not a model.")
    return model


# ------------------------------------------------------------------------------------- loading


def _read_dir(dirpath, filename) -> dict[str, bytes]:
    """The members of a ``zipped=False`` folder: regular files (no links, FIFOs, devices), reads capped."""
    out = {}
    for name in (CONFIG_FILENAME, METADATA_FILENAME, WEIGHTS_FILENAME):
        path = os.path.join(dirpath, name)
        if not os.path.lexists(path):
            if name == METADATA_FILENAME:
                continue
            raise FileFormatError(filename, f"the folder has no '{name}'.")
        cap, setting = _member_cap(name, MAX_BYTES)
        label = f"'{name}' in the folder"
        if name == WEIGHTS_FILENAME and not fits_in_memory(
                file_access.check_regular(path, filename, label, follow_symlinks=False).st_size):
            out[name] = path  # too large for memory: h5py reads it from the disk
            continue
        out[name] = file_access.read_regular(path, cap, filename, label, f" ({setting})", follow_symlinks=False)
    folder = os.path.join(dirpath, ASSETS_DIRNAME)
    if os.path.isdir(folder) and not os.path.islink(folder):
        out[ASSETS_DIRNAME] = folder
    return out


def load_model(filepath, custom_objects=None, compile: bool = True, safe_mode: bool = True,
               restore_rng_state: bool = False):
    """Rebuild a model from a ``.keras`` file (path, folder from ``zipped=False``, or file object).

    ``restore_rng_state=True`` also sets lamina's global random generator to its state at save time
    (to resume training exactly); otherwise the caller's random stream is left as it was.
    """
    with Staging() as staging, contextlib.ExitStack() as stack:
        if hasattr(filepath, "read"):
            filename = getattr(filepath, "name", None)
            if file_access.stream_kind(filepath, filename) == "capped":
                filepath = stack.enter_context(_spooled_copy(filepath, filename))
            members = read_archive(filepath, filename, staging=staging)
        else:
            filename = os.fspath(filepath)
            if os.path.isdir(filename):
                members = _read_dir(filename, filename)
            else:
                if not os.path.exists(filename):
                    raise FileNotFoundError(f"No such file: '{filename}'. Received: filepath={filename!r}")
                staging.near = os.path.dirname(os.path.abspath(filename))  # extract on the file's own disk
                members = read_archive(filename, filename, staging=staging)
        return load_from_members(members, filename, custom_objects, compile, safe_mode, restore_rng_state)


@contextlib.contextmanager
def _spooled_copy(f, filename):
    """A seekable copy of the stream ``f`` (zipfile needs to seek), no larger than a ``.keras`` file can be
    (MAX_BYTES of members plus the zip's own headers): in memory up to the memory bound, then on disk."""
    cap = MAX_BYTES + (64 << 20)
    with tempfile.SpooledTemporaryFile(max_size=_spool_limit()) as copy:
        received = 0
        for chunk in regular_files.bounded_chunks(f, cap):
            received += len(chunk)
            copy.write(chunk)
        if received > cap:
            raise FileFormatError(filename, f"the file object holds more than {cap} bytes, the most lamina reads "
                                            "for it.")
        copy.seek(0)
        yield copy


def load_from_members(members: dict, filename, custom_objects=None, compile=True, safe_mode=True,
                      restore_rng_state: bool = False):
    with _no_gc_passes():
        return _load_from_members(members, filename, custom_objects, compile, safe_mode, restore_rng_state)


def _load_from_members(members: dict, filename, custom_objects, compile, safe_mode, restore_rng_state):
    config = parse_json(members[CONFIG_FILENAME], CONFIG_FILENAME, filename)
    saved_rng = _saved_rng(members, filename, restore_rng_state)
    # One reader for both steps: the visit that counts the stored values also finds the datasets read later.
    with h5_weights.H5Reader(members[WEIGHTS_FILENAME], filename, MAX_BYTES) as reader:
        stored = reader.stored_values()  # bounds the weights the config may create, checked before building
        with rng_state.preserved():  # the layers built here draw throwaway initial weights from the global stream
            model = model_from_config(config, custom_objects, compile, safe_mode, filename, stored)
            load_weights_into(model, reader, filename, include_optimizer=compile, strict_optimizer=True)
    if ASSETS_DIRNAME in members:  # extracted by read_archive
        assets.load(state_walk.model_entries(model), members[ASSETS_DIRNAME])
    if saved_rng is not None:
        rng_state.restore(saved_rng)
    return model


def _saved_rng(members: dict, filename, wanted: bool):
    """The file's random state as a generator when ``wanted`` (it is checked whenever present)."""
    gen = None
    if METADATA_FILENAME in members:
        metadata = parse_json(members[METADATA_FILENAME], METADATA_FILENAME, filename)
        lam = metadata.get(LAMINA_KEY) if isinstance(metadata, dict) else None
        if isinstance(lam, dict) and "rng_state" in lam:
            gen = rng_state.parse(lam["rng_state"], filename)
    if wanted and gen is None:
        raise FileFormatError(filename, "restore_rng_state=True, but the file holds no lamina random state "
                                        f"('{LAMINA_KEY}.rng_state' in {METADATA_FILENAME}): it was written by Keras "
                                        "or without metadata. Load it with restore_rng_state=False.")
    return gen if wanted else None


def load_weights_into(model, source, filename, include_optimizer: bool = True,
                      skip_mismatch: bool = False, strict_optimizer: bool = False, skip=()) -> None:
    """Read Keras-layout weights from ``source`` (path, bytes, open H5Reader) into ``model``: all checked, then all
    assigned (see :mod:`lamina.saving.weights_loading`; ``strict_optimizer``: an optimizer state that
    does not fit is an error rather than skipped with a warning)."""
    weights_loading.load_weights(model, source, filename, MAX_BYTES, include_optimizer=include_optimizer,
                                 skip_mismatch=skip_mismatch, strict_optimizer=strict_optimizer, skip=skip)


# --------------------------------------------------------------------------------- weights only


def save_weights_only(model, filepath, max_shard_size=None, objects_to_skip=None) -> None:
    """Write ``model``'s weights (and its built optimizer's state) to ``filepath``: a ``.weights.h5`` file,
    or with ``max_shard_size`` (GB per shard) a ``.weights.json`` index and its shards (see
    :mod:`~lamina.saving.sharded_weights`). ``objects_to_skip``: layers (or the optimizer) left out, with
    everything they hold. Written through temporary files renamed into place."""
    if not model.built:
        raise ValueError(f"You are saving a model that has not yet been built (model '{model.name}'): it has no "
                         "weights. Build it first by calling it on some data or by using `build()`.")
    path = os.fspath(filepath)
    if max_shard_size is None and not path.endswith(".weights.h5"):
        raise ValueError(f"The filename must end in `.weights.h5`. Received: filepath={path}")
    if max_shard_size is not None and not path.endswith(("weights.h5", "weights.json")):
        raise ValueError("The filename must end in `.weights.json` when `max_shard_size` is specified. "
                         f"Received: filepath={path}")
    entries = h5_weights.state_entries(model, skip=objects_to_skip or ())
    if max_shard_size is None:
        write_bytes_atomic(path, h5_weights.write_h5(entries))
        return
    if float(max_shard_size) <= 0:
        raise ValueError(f"`max_shard_size` is the most gigabytes per shard file and must be positive. "
                         f"Received: max_shard_size={max_shard_size}")
    if not path.endswith(".json"):
        new = path[:-len(".h5")] + ".json"
        warnings.warn(f"Saving sharded weights requires `*.json` as the extension. The original path: {path} will "
                      f"be renamed to {new}.", stacklevel=2)
        path = new
    sharded_weights.write_sharded(entries, path, max_shard_size)


def load_weights_only(model, filepath, skip_mismatch: bool = False, objects_to_skip=None) -> None:
    """Load weights into the built ``model`` from a ``.weights.h5`` file, a sharded ``.weights.json``
    index, or a ``.keras`` file; everything is checked before any weight changes (see
    :func:`load_weights_into`). ``objects_to_skip``: layers (or the optimizer) left as they are."""
    if not model.built:
        raise ValueError(f"You are loading weights into a model that has not yet been built (model "
                         f"'{model.name}'). Build it first by calling it on some data or by using `build()`.")
    path = os.fspath(filepath)
    skip = tuple(objects_to_skip or ())
    if path.endswith(".keras"):
        with Staging(os.path.dirname(os.path.abspath(path))) as staging:
            members = read_archive(path, path, wanted=(WEIGHTS_FILENAME,), staging=staging)
            load_weights_into(model, members[WEIGHTS_FILENAME], path, skip_mismatch=skip_mismatch, skip=skip)
    elif path.endswith("weights.json"):
        with sharded_weights.ShardedReader(path, path, MAX_BYTES) as reader:
            load_weights_into(model, reader, path, skip_mismatch=skip_mismatch, skip=skip)
    elif path.endswith("weights.h5"):
        load_weights_into(model, path, path, skip_mismatch=skip_mismatch, skip=skip)
    else:
        raise ValueError(f"File format not supported: filepath={path}. Weights load from `.weights.h5`, "
                         "`.weights.json` (sharded) and `.keras` files.")
