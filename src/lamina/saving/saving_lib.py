"""The ``.keras`` format: a zip of ``metadata.json``, ``config.json`` and ``model.weights.h5``.

Writing follows Keras 3 (members stored uncompressed, in that order; config as
``serialize_keras_object(model)`` with ``build_config`` and ``compile_config``; weights in Keras's
HDF5 layout, see ``state_walk``). Every write goes through a temporary file renamed into place.

``metadata.json`` also carries a ``"lamina"`` entry that Keras ignores: lamina's version and the state
of lamina's global random generator (``lamina.backend.rng().bit_generator.state``) at save time.
Loading leaves the caller's random stream as it was; ``load_model(..., restore_rng_state=True)``
restores the saved state after the model is rebuilt, so training resumed from a checkpoint shuffles
and drops out exactly as the uninterrupted run would have (see :mod:`lamina.saving.rng_state`).

Reading treats the file as untrusted. Only regular files are opened (a FIFO, device or directory
is refused before ``open``: :mod:`~lamina.saving.file_access`). Before anything is built: member
names are checked (no absolute paths, ``..``, backslashes, drive letters, symlinks, duplicates),
declared sizes are capped (:data:`MAX_BYTES` in all, :data:`MAX_CONFIG_BYTES` and
:data:`MAX_METADATA_BYTES` for the JSON members; a member may not expand more than 1000x its stored
size) and checked against what is actually read, JSON is parsed strictly, the config passes the
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
import os
import re
import stat
import warnings
import zipfile

from lamina import backend, regular_files
from lamina.models.model import Model
from lamina.saving import (
    config_params,
    file_access,
    h5_weights,
    object_registry,
    rng_state,
    serialization_lib,
    weights_loading,
)
from lamina.saving.atomic import write_bytes_atomic
from lamina.saving.errors import FileFormatError
from lamina.version import __version__

CONFIG_FILENAME = "config.json"
METADATA_FILENAME = "metadata.json"
WEIGHTS_FILENAME = "model.weights.h5"
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
_MAX_RATIO = 1000  # stored→uncompressed expansion allowed per member (deflate tops out near 1032)
_RATIO_FLOOR = 1 << 20
_MAX_DIM = 1 << 31


# ----------------------------------------------------------------------------------- metadata


def _metadata_json() -> str:
    return json.dumps({
        "keras_version": KERAS_FORMAT_VERSION,
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        LAMINA_KEY: {"version": __version__, "rng_state": rng_state.current_state()},
    })


# ------------------------------------------------------------------------------------- saving


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


def archive_bytes(model) -> bytes:
    """The ``.keras`` file of ``model`` as bytes."""
    if not model.built:
        warnings.warn(f"You are saving model '{model.name}', which has not been built yet: the file will hold "
                      "no weights. Build it first (call it on data or give it an Input).", stacklevel=3)
    with _no_gc_passes():
        config_json = model_config_json(model)
        weights = h5_weights.write_h5(h5_weights.state_entries(model))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(METADATA_FILENAME, _metadata_json())
        zf.writestr(CONFIG_FILENAME, config_json)
        zf.writestr(WEIGHTS_FILENAME, weights)
    return buf.getvalue()


def save_model(model, filepath, overwrite: bool = True) -> None:
    """Write ``model`` to ``filepath`` (a ``.keras`` path or a binary file object), atomically."""
    data = archive_bytes(model)
    if hasattr(filepath, "write"):
        filepath.write(data)
        return
    write_bytes_atomic(filepath, data, overwrite=overwrite)


def save_model_dir(model, dirpath, overwrite: bool = True) -> None:
    """``zipped=False``: the three members as files in the folder ``dirpath`` (each written atomically)."""
    dirpath = os.fspath(dirpath)
    if os.path.exists(dirpath) and not os.path.isdir(dirpath):
        raise ValueError(f"zipped=False saves into a folder, but '{dirpath}' is a file. Received: filepath={dirpath}")
    if not overwrite and os.path.exists(os.path.join(dirpath, CONFIG_FILENAME)):
        raise FileExistsError(f"'{dirpath}' already holds a model and overwrite=False.")
    os.makedirs(dirpath, exist_ok=True)
    with _no_gc_passes():
        weights = h5_weights.write_h5(h5_weights.state_entries(model))
        config = model_config_json(model).encode()
    for name, data in ((METADATA_FILENAME, _metadata_json().encode()),
                       (CONFIG_FILENAME, config), (WEIGHTS_FILENAME, weights)):
        write_bytes_atomic(os.path.join(dirpath, name), data)


# -------------------------------------------------------------------------------- safe reading

_DRIVE = re.compile(r"^[A-Za-z]:")


def _check_member_name(name: str, filename) -> None:
    parts = name.split("/")
    if (not name or name.startswith("/") or "\\" in name or "\x00" in name or _DRIVE.match(name)
            or any(p in ("..", ".") for p in parts) or any(ord(c) < 32 for c in name)):
        raise FileFormatError(filename, f"archive member {name!r} has an unsafe path (absolute, '..', "
                                        "backslash or control characters); refusing to read the archive.")


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
    _check_member_name(name, filename)
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
    if info.file_size > _RATIO_FLOOR and info.file_size > _MAX_RATIO * max(info.compress_size, 1):
        raise FileFormatError(filename, f"archive member {name!r} declares {info.file_size} bytes but "
                                        f"stores {info.compress_size}: a likely zip bomb.")


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
                 wanted=(CONFIG_FILENAME, METADATA_FILENAME, WEIGHTS_FILENAME)) -> dict[str, bytes]:
    """The ``wanted`` members of a ``.keras`` zip (path, bytes or file object), checked and read.

    A path must name a regular file (not a FIFO, device or directory): see :mod:`file_access`.
    """
    max_bytes = MAX_BYTES if max_bytes is None else int(max_bytes)
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        with file_access.open_regular(source, filename) as f:
            return read_archive(f, filename, max_bytes, wanted)
    with _open_zip(source, filename) as zf:
        seen = _check_members(zf.infolist(), filename, max_bytes, wanted)
        return {name: _read_member(zf, zf.getinfo(name), filename) for name in wanted if name in seen}


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, filename) -> bytes:
    try:
        with zf.open(info, "r") as f:
            data = b"".join(regular_files.bounded_chunks(f, info.file_size))
    except Exception as e:  # zlib.error, BadZipFile (CRC), EOFError, ... from a damaged archive
        raise FileFormatError(filename, f"archive member {info.filename!r} is damaged ({type(e).__name__}: {e}).") \
            from None
    if len(data) > info.file_size:
        raise FileFormatError(filename, f"archive member {info.filename!r} holds more than the "
                                        f"{info.file_size} bytes it declares.")
    if len(data) != info.file_size:
        raise FileFormatError(filename, f"archive member {info.filename!r} declares {info.file_size} bytes but "
                                        f"holds {len(data)}.")
    return data


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
        raise FileFormatError(filename, f"the model could not be rebuilt from config.json "
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
        out[name] = file_access.read_regular(path, cap, filename, f"'{name}' in the folder", f" ({setting})",
                                             follow_symlinks=False)
    return out


def load_model(filepath, custom_objects=None, compile: bool = True, safe_mode: bool = True,
               restore_rng_state: bool = False):
    """Rebuild a model from a ``.keras`` file (path, folder from ``zipped=False``, or file object).

    ``restore_rng_state=True`` also sets lamina's global random generator to its state at save time
    (to resume training exactly); otherwise the caller's random stream is left as it was.
    """
    if hasattr(filepath, "read"):
        filename = getattr(filepath, "name", None)
        if file_access.stream_kind(filepath, filename) == "capped":
            # zipfile needs to seek: read a stream whole, but no more than a .keras file can hold
            # (its members, MAX_BYTES, plus the zip's own headers).
            filepath = file_access.read_capped(filepath, MAX_BYTES + (64 << 20), filename, "the file object")
        members = read_archive(filepath, filename)
    else:
        filename = os.fspath(filepath)
        if os.path.isdir(filename):
            members = _read_dir(filename, filename)
        else:
            if not os.path.exists(filename):
                raise FileNotFoundError(f"No such file: '{filename}'. Received: filepath={filename!r}")
            members = read_archive(filename, filename)
    return load_from_members(members, filename, custom_objects, compile, safe_mode, restore_rng_state)


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
                      skip_mismatch: bool = False, strict_optimizer: bool = False) -> None:
    """Read Keras-layout weights from ``source`` (path, bytes, open H5Reader) into ``model``: all checked, then all
    assigned (see :mod:`lamina.saving.weights_loading`; ``strict_optimizer``: an optimizer state that
    does not fit is an error rather than skipped with a warning)."""
    weights_loading.load_weights(model, source, filename, MAX_BYTES, include_optimizer=include_optimizer,
                                 skip_mismatch=skip_mismatch, strict_optimizer=strict_optimizer)
