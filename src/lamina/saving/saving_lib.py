"""The ``.keras`` format: a zip of ``metadata.json``, ``config.json`` and ``model.weights.h5``.

Writing follows Keras 3 (members stored uncompressed, in that order; config as
``serialize_keras_object(model)`` with ``build_config`` and ``compile_config``; weights in Keras's
HDF5 layout, see ``state_walk``). Every write goes through a temporary file renamed into place.

``metadata.json`` also carries a ``"lamina"`` entry that Keras ignores: lamina's version and the state
of lamina's global random generator (``lamina.backend.rng().bit_generator.state``) at save time.
``load_model`` restores that state after the model is rebuilt, so training resumed from a
checkpoint shuffles and drops out exactly as the uninterrupted run would have.

Reading treats the file as untrusted. Before anything is built: member names are checked
(no absolute paths, ``..``, backslashes, drive letters, symlinks, duplicates), declared sizes are
capped (:data:`MAX_BYTES` in all; a member may not expand more than 1000x its stored size) and
checked against what is actually read, JSON is parsed strictly, and the config passes the safe-mode
rules of :mod:`lamina.saving.serialization_lib`. Weights are read and checked in full before any
is assigned. Every failure is a :class:`~lamina.saving.errors.FileFormatError` naming the file.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import re
import stat
import warnings
import zipfile

import numpy as np

from lamina.saving import h5_weights, object_registry, serialization_lib
from lamina.saving.atomic import write_bytes_atomic
from lamina.saving.compile_config import prepare_optimizer
from lamina.saving.errors import FileFormatError

CONFIG_FILENAME = "config.json"
METADATA_FILENAME = "metadata.json"
WEIGHTS_FILENAME = "model.weights.h5"
KERAS_FORMAT_VERSION = "3.15.1"  # the Keras release whose format lamina writes
LAMINA_KEY = "lamina"

#: Cap on the uncompressed bytes lamina reads from one file (all members together). Raise it to
#: load larger models.
MAX_BYTES = 4 << 30
MAX_MEMBERS = 100_000
_MAX_RATIO = 1000  # stored→uncompressed expansion allowed per member (deflate tops out near 1032)
_RATIO_FLOOR = 1 << 20
_MAX_DIM = 1 << 31
_SAFE_BITGENS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


# ----------------------------------------------------------------------------------- metadata


def _rng_state() -> dict:
    from lamina import backend

    return backend.rng().bit_generator.state


def _parse_rng_state(state, filename) -> np.random.Generator:
    """A generator in the saved state (validated; nothing global changes here)."""
    try:
        name = state["bit_generator"]
        if name not in _SAFE_BITGENS:
            raise ValueError(f"unknown bit generator {name!r}")
        gen = np.random.Generator(getattr(np.random, name)())
        gen.bit_generator.state = state
        return gen
    except Exception as e:
        raise FileFormatError(filename, f"metadata.json has an invalid lamina random state ({e}).") from None


def _restore_rng(gen: np.random.Generator) -> None:
    from lamina import backend

    current = backend.rng()
    if type(current.bit_generator) is type(gen.bit_generator):
        current.bit_generator.state = gen.bit_generator.state  # in place: holders of rng() see it
    else:
        backend._RNG = gen


def _metadata_json() -> str:
    import lamina

    return json.dumps({
        "keras_version": KERAS_FORMAT_VERSION,
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        LAMINA_KEY: {"version": getattr(lamina, "__version__", "unknown"), "rng_state": _rng_state()},
    })


# ------------------------------------------------------------------------------------- saving


def model_config_json(model) -> str:
    return json.dumps(serialization_lib.serialize_keras_object(model), default=serialization_lib.json_default)


def archive_bytes(model) -> bytes:
    """The ``.keras`` file of ``model`` as bytes."""
    if not model.built:
        warnings.warn(f"You are saving model '{model.name}', which has not been built yet: the file will hold "
                      "no weights. Build it first (call it on data or give it an Input).", stacklevel=3)
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
    weights = h5_weights.write_h5(h5_weights.state_entries(model))
    for name, data in ((METADATA_FILENAME, _metadata_json().encode()),
                       (CONFIG_FILENAME, model_config_json(model).encode()), (WEIGHTS_FILENAME, weights)):
        write_bytes_atomic(os.path.join(dirpath, name), data)


# -------------------------------------------------------------------------------- safe reading

_DRIVE = re.compile(r"^[A-Za-z]:")


def _check_member_name(name: str, filename) -> None:
    parts = name.split("/")
    if (not name or name.startswith("/") or "\\" in name or "\x00" in name or _DRIVE.match(name)
            or any(p in ("..", ".") for p in parts) or any(ord(c) < 32 for c in name)):
        raise FileFormatError(filename, f"archive member {name!r} has an unsafe path (absolute, '..', "
                                        "backslash or control characters); refusing to read the archive.")


def read_archive(source, filename, max_bytes: int | None = None,
                 wanted=(CONFIG_FILENAME, METADATA_FILENAME, WEIGHTS_FILENAME)) -> dict[str, bytes]:
    """The ``wanted`` members of a ``.keras`` zip (path, bytes or file object), checked and read."""
    max_bytes = MAX_BYTES if max_bytes is None else int(max_bytes)
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(bytes(source))
    try:
        zf = zipfile.ZipFile(source, "r")
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
            OverflowError, IndexError, KeyError, UnicodeDecodeError) as e:
        raise FileFormatError(filename, f"it is not a valid zip archive (a .keras file is a zip): {e}.") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise FileFormatError(filename, f"the archive has {len(infos)} members (at most {MAX_MEMBERS}).")
        seen: set[str] = set()
        total = 0
        for info in infos:
            name = info.filename
            _check_member_name(name, filename)
            if name in seen:
                raise FileFormatError(filename, f"the archive holds two members named {name!r}; refusing to "
                                                "guess which one is meant.")
            seen.add(name)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise FileFormatError(filename, f"archive member {name!r} is a symbolic link, which is not allowed.")
            if info.flag_bits & 0x1:
                raise FileFormatError(filename, f"archive member {name!r} is encrypted.")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise FileFormatError(filename, f"archive member {name!r} uses compression method "
                                                f"{info.compress_type}; only stored and deflated are supported.")
            total += info.file_size
            if info.file_size > max_bytes or total > max_bytes:
                raise FileFormatError(filename, f"the archive declares {total} uncompressed bytes, more than the "
                                                f"limit of {max_bytes} (lamina.saving.saving_lib.MAX_BYTES).")
            if info.file_size > _RATIO_FLOOR and info.file_size > _MAX_RATIO * max(info.compress_size, 1):
                raise FileFormatError(filename, f"archive member {name!r} declares {info.file_size} bytes but "
                                                f"stores {info.compress_size}: a likely zip bomb.")
        if CONFIG_FILENAME not in seen:
            raise FileFormatError(filename, f"the archive has no '{CONFIG_FILENAME}' member "
                                            f"(members: {sorted(seen)[:10]}).")
        if WEIGHTS_FILENAME not in seen and WEIGHTS_FILENAME in wanted:
            hint = " (npz weights are not supported by lamina)" if "model.weights.npz" in seen else ""
            raise FileFormatError(filename, f"the archive has no '{WEIGHTS_FILENAME}' member{hint} "
                                            f"(members: {sorted(seen)[:10]}).")
        out = {}
        for name in wanted:
            if name in seen:
                out[name] = _read_member(zf, zf.getinfo(name), filename)
        return out


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, filename) -> bytes:
    chunks, n = [], 0
    try:
        with zf.open(info, "r") as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                n += len(chunk)
                if n > info.file_size:
                    raise FileFormatError(filename, f"archive member {info.filename!r} holds more than the "
                                                    f"{info.file_size} bytes it declares.")
                chunks.append(chunk)
    except FileFormatError:
        raise
    except Exception as e:  # zlib.error, BadZipFile (CRC), EOFError, ... from a damaged archive
        raise FileFormatError(filename, f"archive member {info.filename!r} is damaged ({type(e).__name__}: {e}).") \
            from None
    if n != info.file_size:
        raise FileFormatError(filename, f"archive member {info.filename!r} declares {info.file_size} bytes but "
                                        f"holds {n}.")
    return b"".join(chunks)


def parse_json(data: bytes, what: str, filename):
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise FileFormatError(filename, f"{what} is not valid JSON ({type(e).__name__}: {str(e)[:200]}).") from None


def _check_sizes(config, weights_size: int | None, filename) -> None:
    """Refuse configs that would allocate absurd arrays before a single weight is read.

    Shape entries must be below 2**31; and a Dense-like layer's ``units x input_dim`` counts toward a
    lower bound on the parameters, which must fit in the weights actually stored (with slack).
    """
    params = 0
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        for key in ("batch_shape", "batch_input_shape", "input_shape", "shape", "target_shape", "units",
                    "input_dim"):
            v = node.get(key)
            dims = v if isinstance(v, list) else [v]
            for d in dims:
                if isinstance(d, bool) or not isinstance(d, (int, float)):
                    continue
                if not (-1 <= d < _MAX_DIM):
                    raise FileFormatError(filename, f"the config asks for a dimension {key}={d!r}; refusing to "
                                                    "build arrays that large.")
        inner = node.get("config")
        build = node.get("build_config")
        if isinstance(inner, dict) and isinstance(build, dict):
            units = inner.get("units")
            shape = build.get("input_shape")
            if isinstance(units, int) and isinstance(shape, list) and shape and isinstance(shape[-1], int):
                params += units * (shape[-1] + 1)
        stack.extend(node.values())
    if weights_size is not None and params * 4 > 2 * weights_size + (16 << 20):
        raise FileFormatError(filename, f"the config describes at least {params} parameters but the file "
                                        f"stores only {weights_size} bytes of weights; refusing to build it.")


def model_from_config(config, custom_objects=None, compile: bool = True, safe_mode: bool = True,
                      filename=None, weights_size: int | None = None):
    """Check ``config`` against the safety rules, then build (and compile) the model it describes."""
    from lamina.models.model import Model

    if not isinstance(config, dict) or "class_name" not in config or not isinstance(config.get("config"), dict):
        raise FileFormatError(filename, "config.json must hold a dict with 'class_name' and 'config'. "
                                        f"Received: {str(config)[:200]}")
    config = dict(config)
    if not compile:
        config["compile_config"] = None
    extra = serialization_lib.check_config(config, custom_objects, safe_mode, filename)
    _check_sizes(config, weights_size, filename)
    custom = {**(custom_objects or {}), **extra}
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
    out = {}
    for name in (CONFIG_FILENAME, METADATA_FILENAME, WEIGHTS_FILENAME):
        path = os.path.join(dirpath, name)
        if os.path.islink(path):
            raise FileFormatError(filename, f"'{name}' is a symbolic link, which is not allowed.")
        if not os.path.exists(path):
            if name == METADATA_FILENAME:
                continue
            raise FileFormatError(filename, f"the folder has no '{name}'.")
        if os.path.getsize(path) > MAX_BYTES:
            raise FileFormatError(filename, f"'{name}' is larger than {MAX_BYTES} bytes.")
        with open(path, "rb") as f:
            out[name] = f.read()
    return out


def load_model(filepath, custom_objects=None, compile: bool = True, safe_mode: bool = True):
    """Rebuild a model from a ``.keras`` file (path, folder from ``zipped=False``, or file object)."""
    if hasattr(filepath, "read"):
        filename = getattr(filepath, "name", None)
        members = read_archive(filepath.read(), filename)
    else:
        filename = os.fspath(filepath)
        if os.path.isdir(filename):
            members = _read_dir(filename, filename)
        else:
            if not os.path.exists(filename):
                raise FileNotFoundError(f"No such file: '{filename}'. Received: filepath={filename!r}")
            members = read_archive(filename, filename)
    return load_from_members(members, filename, custom_objects, compile, safe_mode)


def load_from_members(members: dict, filename, custom_objects=None, compile=True, safe_mode=True):
    config = parse_json(members[CONFIG_FILENAME], CONFIG_FILENAME, filename)
    rng = None
    if METADATA_FILENAME in members:
        metadata = parse_json(members[METADATA_FILENAME], METADATA_FILENAME, filename)
        lam = metadata.get(LAMINA_KEY) if isinstance(metadata, dict) else None
        if isinstance(lam, dict) and "rng_state" in lam:
            rng = _parse_rng_state(lam["rng_state"], filename)
    weights = members[WEIGHTS_FILENAME]
    model = model_from_config(config, custom_objects, compile, safe_mode, filename, len(weights))
    load_weights_into(model, weights, filename, include_optimizer=compile)
    if rng is not None:
        _restore_rng(rng)
    return model


def load_weights_into(model, source, filename, include_optimizer: bool = True,
                      skip_mismatch: bool = False) -> None:
    """Read Keras-layout weights from ``source`` (path, bytes) into ``model``: all checked, then assigned."""
    if include_optimizer:
        prepare_optimizer(model)
    entries = h5_weights.state_entries(model, include_optimizer=include_optimizer)
    with h5_weights.H5Reader(source, filename, MAX_BYTES) as reader:
        opt_entries = [e for e in entries if e.path == "optimizer"]
        layer_entries = [e for e in entries if e.path != "optimizer"]
        plan = h5_weights.plan_load(layer_entries, reader, skip_mismatch=skip_mismatch)
        for entry in opt_entries:
            plan += _plan_optimizer(entry, reader, skip_mismatch)
    h5_weights.apply_plan(plan)


def _plan_optimizer(entry, reader, skip_mismatch: bool) -> list:
    """The optimizer's state: all of it, or only iteration/learning_rate when the file's optimizer had
    never been built (Keras writes just those two then)."""
    try:
        group = reader.group("optimizer")
        n = len(reader.keys(group)) if group is not None else 0
    except FileFormatError:
        raise
    except Exception as e:
        raise FileFormatError(reader.filename, f"the optimizer state could not be read ({type(e).__name__}).") \
            from None
    if group is None:
        return []
    opt = entry.owner
    slot_ids = {id(s) for group_, _, _ in opt._slot_groups.values() for s in group_}
    base = [v for v in entry.variables if id(v) not in slot_ids]
    if n != len(entry.variables) and n == len(base):
        entry = type(entry)(entry.path, entry.name, base, opt)
    return h5_weights.plan_load([entry], reader, skip_mismatch=skip_mismatch)
