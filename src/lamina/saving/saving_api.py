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
import os

from lamina.saving import h5_weights, legacy_h5, rng_state, saving_lib
from lamina.saving.atomic import write_bytes_atomic
from lamina.saving.errors import FileFormatError


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


def save_model(model, filepath, overwrite: bool = True, zipped: bool | None = None, **kwargs) -> None:
    """Save ``model`` (architecture, weights, compile config and optimizer state).

    ``filepath`` ending in ``.keras`` gives Keras 3's zip; ``.h5`` the legacy HDF5 file;
    ``zipped=False`` a folder. Writes go to a temporary file renamed into place.
    """
    include_optimizer = kwargs.pop("include_optimizer", True)
    kwargs.pop("save_format", None)
    if kwargs:
        raise ValueError(f"save_model() got unexpected keyword arguments: {sorted(kwargs)}")
    if hasattr(filepath, "write"):
        saving_lib.save_model(model, filepath)
        return
    path = _path(filepath)
    if zipped is False:
        if path.endswith(".keras"):
            raise ValueError(f"With zipped=False the path names a folder and must not end in `.keras`. "
                             f"Received: filepath={path}")
        with _naming(path):
            saving_lib.save_model_dir(model, path, overwrite=overwrite)
        return
    legacy = path.endswith((".h5", ".hdf5"))
    if not legacy and not path.endswith(".keras"):
        raise ValueError("Invalid filepath extension for saving. Please add a `.keras` extension (or `.h5` for "
                         f"the legacy HDF5 format, or pass zipped=False for a folder). Received: filepath={path}")
    _check_target(path, "model.h5" if legacy else "model.keras")
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
    if not os.path.exists(path):
        raise FileNotFoundError(f"File not found: filepath={path}. Please ensure the file is an accessible "
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


def save_weights(model, filepath, overwrite: bool = True) -> None:
    """Write the model's (and its built optimizer's) variables in Keras's ``.weights.h5`` layout."""
    path = _path(filepath)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"The filename must end in `.weights.h5`. Received: filepath={path}")
    if not model.built:
        raise ValueError(f"You are saving model '{model.name}', which has not been built yet: it has no weights. "
                         "Build it first by calling it on data or with build(input_shape).")
    _check_target(path, "model.weights.h5")
    with _naming(path):
        write_bytes_atomic(path, h5_weights.write_h5(h5_weights.state_entries(model)), overwrite=overwrite)


def load_weights(model, filepath, skip_mismatch: bool = False, **kwargs) -> None:
    """Load weights saved by ``save_weights`` (``.weights.h5``), a ``.keras`` file or a legacy ``.h5``.

    Everything is checked against the model before any weight changes; with ``skip_mismatch=True``
    layers whose count or shapes differ are skipped with a warning. A compiled model's optimizer is
    built and restored when the file holds its state; a state saved with another optimizer (Adam's
    slots for an SGD model) is skipped with Keras's warning. A failed load changes nothing, the
    optimizer's built state included.
    """
    if kwargs:
        raise ValueError(f"load_weights() got unexpected keyword arguments: {sorted(kwargs)}")
    path = _path(filepath)
    if not model.built:
        raise ValueError(f"You are loading weights into model '{model.name}', which has not been built yet. "
                         "Build it first by calling it on data or with build(input_shape).")
    if not os.path.exists(path):
        raise FileNotFoundError(f"File not found: filepath={path}.")
    if path.endswith(".keras"):
        members = saving_lib.read_archive(path, path, wanted=(saving_lib.WEIGHTS_FILENAME,))
        saving_lib.load_weights_into(model, members[saving_lib.WEIGHTS_FILENAME], path,
                                     skip_mismatch=skip_mismatch)
    elif path.endswith(".weights.h5"):
        saving_lib.load_weights_into(model, path, path, skip_mismatch=skip_mismatch)
    elif path.endswith((".h5", ".hdf5")):
        legacy_h5.load_weights(model, path, skip_mismatch=skip_mismatch)
    else:
        raise ValueError(f"File format not supported: filepath={path}. lamina loads `.weights.h5`, `.keras` "
                         "and legacy `.h5` weights.")


def model_from_json(json_string: str, custom_objects: dict | None = None):
    """A new, uncompiled-or-compiled model from ``model.to_json()``'s string (weights freshly initialized)."""
    if not isinstance(json_string, (str, bytes)):
        raise TypeError(f"model_from_json expects a JSON string. Received: {type(json_string).__name__}")
    try:
        config = json.loads(json_string)
    except (ValueError, RecursionError) as e:
        raise FileFormatError(None, f"the model JSON is not valid ({e}).") from None
    return saving_lib.model_from_config(config, custom_objects=custom_objects)
