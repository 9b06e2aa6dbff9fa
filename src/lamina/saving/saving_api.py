"""Public entry points: ``save_model``, ``load_model``, ``save_weights``, ``load_weights``,
``model_from_json``. They pick the format from the path and delegate.

* ``.keras`` (or a folder written with ``zipped=False``): Keras 3's format, :mod:`saving_lib`;
* ``.h5`` / ``.hdf5``: the legacy Keras 2 full-model HDF5 file, :mod:`legacy_h5`;
* ``.weights.h5``: weights only, Keras 3's layout, :mod:`h5_weights`.

Loads read regular files only (a FIFO, device or directory is refused before it is opened: see
:mod:`file_access`). Saves fail early, naming the path given, where they could only fail later.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os

from lamina.saving import legacy_h5, rng_state, saving_lib
from lamina.saving.errors import FileFormatError, MissingFileError


def _path(filepath) -> str:
    try:
        return os.fspath(filepath)
    except TypeError:
        raise TypeError(f"`filepath` must be a path (str or os.PathLike) or a binary file object. "
                        f"Received: filepath={filepath!r}") from None


def _check_target(path: str, example: str) -> None:
    """Refuse a save whose target is a directory or lies in a folder that does not exist."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"Cannot save to '{path}': it is a directory, not a file name. Name the file "
                                f"to write, e.g. '{os.path.join(path, example)}'. Received: filepath={path}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        problem = "does not exist" if not os.path.exists(folder) else "is not a directory"
        raise FileNotFoundError(f"Cannot save to '{path}': the folder '{folder}' {problem}. Create it first "
                                f"(e.g. os.makedirs). Received: filepath={path}")


@contextlib.contextmanager
def _naming(path: str):
    """OS errors of a save name the user's path (the write goes through a temporary file next to it)."""
    try:
        yield
    except OSError as e:
        if e.filename is None or os.fspath(e.filename) == path or e.errno is None:
            raise
        raise OSError(e.errno, f"Cannot save to '{path}': {e.strerror} (while writing the temporary file "
                               f"'{e.filename}')") from e


_LOGGER = logging.getLogger("lamina")  # where lamina sends what Keras sends to absl logging
_H5_IS_LEGACY = ("You are saving your model as an HDF5 file via `model.save()` or `lamina.saving.save_model(model)`. "
                 "This file format is considered legacy. We recommend using the native Keras format instead, e.g. "
                 "`model.save('my_model.keras')`.")


def _check_save_format(save_format, path: str) -> None:
    """Keras 3 infers the format from the path: a ``save_format`` the path agrees with is only a
    deprecation to log; one a path without `.keras` / `.h5` would need is an error."""
    if path.endswith((".h5", ".hdf5", ".keras")):
        _LOGGER.warning("The `save_format` argument is deprecated in Keras 3 (and lamina): remove it, the format "
                        f"is inferred from the file path. Received: save_format={save_format!r}")
        return
    raise ValueError("The `save_format` argument is deprecated in Keras 3 (and lamina): remove it and pass a file "
                     "path ending in `.keras` (or `.h5` for the legacy HDF5 format). "
                     f"Received: save_format={save_format!r}, filepath={path}")


def save_model(model, filepath, overwrite: bool = True, zipped: bool | None = None, **kwargs) -> None:
    """Save ``model`` (architecture, weights, compile config and optimizer state).

    ``filepath`` ending in ``.keras`` gives Keras 3's zip; ``.h5`` the legacy HDF5 file (logged as legacy,
    as Keras does); ``zipped=False`` a folder. Writes go to a temporary file renamed into place.
    ``include_optimizer`` (``.h5`` only) and the deprecated ``save_format`` are the only extra arguments.
    """
    include_optimizer = kwargs.pop("include_optimizer", True)
    save_format = kwargs.pop("save_format", None)
    if save_format:
        _check_save_format(save_format, str(filepath))
    if kwargs:
        raise ValueError(f"The following argument(s) are not supported by save_model: {sorted(kwargs)}. It takes "
                         "overwrite, zipped and, for `.h5` files, include_optimizer. "
                         f"Received: {', '.join(f'{k}={v!r:.50}' for k, v in kwargs.items())}")
    if hasattr(filepath, "write"):
        saving_lib.save_model(model, filepath)
        return
    path = _path(filepath)
    if zipped is False:
        if path.endswith(".keras"):
            raise ValueError("With zipped=False the path names a folder, so it should not end in `.keras`. "
                             f"Received: filepath={path}")
        with _naming(path):
            saving_lib.save_model_dir(model, path, overwrite=overwrite)
        return
    legacy = path.endswith((".h5", ".hdf5"))
    if not legacy and not path.endswith(".keras"):
        raise ValueError("Invalid filepath extension for saving. Please add a `.keras` extension (or `.h5` for "
                         f"the legacy HDF5 format, or pass zipped=False for a folder). Received: filepath={path}")
    _check_target(path, "model.h5" if legacy else "model.keras")
    if legacy:
        _LOGGER.warning(_H5_IS_LEGACY)
    with _naming(path):
        if legacy:
            legacy_h5.save_model(model, path, overwrite=overwrite, include_optimizer=include_optimizer)
        else:
            saving_lib.save_model(model, path, overwrite=overwrite)


def load_model(filepath, custom_objects: dict | None = None, compile: bool = True, safe_mode: bool = True,
               restore_rng_state: bool = False):
    """Load a model saved by lamina or Keras (``.keras``, folder, or legacy ``.h5``).

    Args:
        filepath: path or binary file object.
        custom_objects: name → class/function for custom layers, losses, activations...
        compile: compile the model with the saved compile config and restore the optimizer state.
        safe_mode: refuse lambdas, Lambda layers and objects from non-Keras modules (which would run
            code from the file). Pass False only for files you trust.
        restore_rng_state: also set lamina's global random generator to its state when the file was
            saved (``.keras`` files written by lamina), so that training resumed from a checkpoint
            shuffles and drops out as the uninterrupted run would have. By default loading leaves
            the program's random stream as it was.

    Raises:
        FileFormatError: (a ValueError) for a malformed, inconsistent or unsafe file; raised before
            any weight is assigned.
    """
    if custom_objects is not None and not isinstance(custom_objects, dict):
        raise TypeError(f"custom_objects must be a dict. Received: {type(custom_objects).__name__}")
    if hasattr(filepath, "read"):
        return saving_lib.load_model(filepath, custom_objects, compile, safe_mode, restore_rng_state)
    path = _path(filepath)
    # (a device or FIFO of any name goes on to the loader, which refuses it by what it is)
    if not path.endswith((".keras", ".h5", ".hdf5")) and (os.path.isfile(path) or not os.path.exists(path)):
        missing = "" if os.path.exists(path) else " (and no file exists at that path)"
        raise ValueError(f"File format not supported: filepath={path}{missing}. load_model reads `.keras` files, "
                         "folders saved with zipped=False, and legacy `.h5` / `.hdf5` files.")
    if not os.path.exists(path):
        raise MissingFileError(f"File not found: filepath={path}. Please ensure the file is an accessible "
                               "`.keras` zip file.")
    if path.endswith((".h5", ".hdf5")) and not path.endswith(".weights.h5"):
        if restore_rng_state:
            raise ValueError(f"A legacy .h5 file holds no random state to restore; load it with "
                             f"restore_rng_state=False. Received: filepath={path}")
        with rng_state.preserved():  # building the layers draws from the global stream
            return legacy_h5.load_model(path, custom_objects, compile, safe_mode)
    if path.endswith(".weights.h5"):
        raise ValueError(f"'{path}' holds weights only; build the model and call model.load_weights(path). "
                         f"Received: filepath={path}")
    return saving_lib.load_model(path, custom_objects, compile, safe_mode, restore_rng_state)


def save_weights(model, filepath, overwrite: bool = True, max_shard_size=None, **kwargs) -> None:
    """Write the model's (and its built optimizer's) variables in Keras's ``.weights.h5`` layout; with
    ``max_shard_size`` (GB per file) a ``.weights.json`` index and its shard files. ``objects_to_skip``
    (a keyword): layers (or the optimizer) whose variables are left out."""
    objects_to_skip = kwargs.pop("objects_to_skip", None)
    if kwargs:
        raise ValueError(f"Invalid keyword arguments for save_weights: {sorted(kwargs)}. It takes overwrite, "
                         f"max_shard_size and objects_to_skip. Received: {', '.join(map(str, kwargs))}")
    path = _path(filepath)
    if max_shard_size is None and not path.endswith(".weights.h5"):
        raise ValueError(f"The filename must end in `.weights.h5`. Received: filepath={path}")
    if not model.built:
        raise ValueError(f"You are saving model '{model.name}', which has not been built yet: it has no weights. "
                         "Build it first by calling it on data or with build(input_shape).")
    _check_target(path, "model.weights.h5")
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"File '{path}' already exists and overwrite=False. Received: filepath={path!r}")
    with _naming(path):
        saving_lib.save_weights_only(model, path, max_shard_size=max_shard_size, objects_to_skip=objects_to_skip)


def _weights_kind(path: str) -> str | None:
    """Which reader a weights path needs: "keras", "weights" (``.weights.h5`` / ``.weights.json``),
    "legacy" (``.h5`` / ``.hdf5``), or None for a format lamina does not read."""
    if path.endswith(".keras"):
        return "keras"
    if path.endswith((".weights.h5", ".weights.json")):
        return "weights"
    if path.endswith((".h5", ".hdf5")):
        return "legacy"
    return None


def _check_weights_options(kind: str, path: str, objects_to_skip, by_name) -> None:
    if objects_to_skip is not None and kind != "weights":
        raise ValueError("`objects_to_skip` only supports loading '.weights.h5' files (and sharded "
                         f"'.weights.json' ones). Received: filepath={path}")
    if by_name is not None and kind != "legacy":
        raise ValueError(f"`by_name` only supports loading legacy '.h5' or '.hdf5' files. Received: filepath={path}")
    if by_name:
        raise ValueError("lamina loads legacy `.h5` weights by layer order only: by_name=True (matching layers by "
                         "name) is not supported. Load with by_name=False into a model whose layers come in the "
                         f"saved order. Received: by_name={by_name!r}, filepath={path}")


def load_weights(model, filepath, skip_mismatch: bool = False, **kwargs) -> None:
    """Load weights saved by ``save_weights`` (``.weights.h5``, sharded ``.weights.json``), a ``.keras`` file
    or a legacy ``.h5``.

    Everything is checked against the model before any weight changes; with ``skip_mismatch=True``
    layers whose count or shapes differ are skipped with a warning. A compiled model's optimizer is
    built and restored when the file holds its state; a state saved with another optimizer (Adam's
    slots for an SGD model) is skipped with Keras's warning. A failed load changes nothing, the
    optimizer's built state included. Keywords: ``objects_to_skip`` (``.weights.h5`` / ``.weights.json``:
    layers, or the optimizer, left as they are) and ``by_name`` (legacy ``.h5``; only False is supported).
    """
    objects_to_skip = kwargs.pop("objects_to_skip", None)
    by_name = kwargs.pop("by_name", None)
    if kwargs:
        raise ValueError(f"Invalid keyword arguments for load_weights: {sorted(kwargs)}. It takes skip_mismatch, "
                         f"objects_to_skip and by_name. Received: {', '.join(map(str, kwargs))}")
    path = _path(filepath)
    kind = _weights_kind(path)
    if kind is None:
        raise ValueError(f"File format not supported: filepath={path}. lamina loads weights from `.weights.h5`, "
                         "sharded `.weights.json`, `.keras` and legacy `.h5` / `.hdf5` files.")
    _check_weights_options(kind, path, objects_to_skip, by_name)
    if not model.built:
        raise ValueError(f"You are loading weights into model '{model.name}', which has not been built yet. "
                         "Build it first by calling it on data or with build(input_shape).")
    if not os.path.exists(path):
        raise MissingFileError(f"File not found: filepath={path}.")
    if kind == "legacy":
        legacy_h5.load_weights(model, path, skip_mismatch=skip_mismatch)
    else:
        saving_lib.load_weights_only(model, path, skip_mismatch=skip_mismatch, objects_to_skip=objects_to_skip)


def model_from_json(json_string: str, custom_objects: dict | None = None):
    """A new, uncompiled-or-compiled model from ``model.to_json()``'s string (weights freshly initialized)."""
    if not isinstance(json_string, (str, bytes)):
        raise TypeError(f"model_from_json expects a JSON string. Received: {type(json_string).__name__}")
    try:
        config = json.loads(json_string)
    except (ValueError, RecursionError) as e:
        raise FileFormatError(None, f"the model JSON is not valid ({e}).") from None
    return saving_lib.model_from_config(config, custom_objects=custom_objects)
