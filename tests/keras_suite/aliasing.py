"""A ``sys.meta_path`` finder that resolves ``keras`` / ``keras.src.<path>`` imports to lamina.

Rules, in order, for a name under ``keras``:

* ``keras.src.testing`` and ``keras.src.testing.test_case`` are the NumPy stand-in (``testing_stub``);
  ``keras.src.testing.test_utils`` and every ``..._test`` module load from the Keras source
  distribution (test code, never Keras's library code).
* Otherwise ``keras.src.`` (or ``keras.``, the public spelling) is dropped and ``RENAMES`` maps Keras's
  folders onto lamina's (``layers.core.dense`` → ``layers.dense``, ``losses.loss`` → ``losses``).
  Where lamina has that module, the Keras name becomes an alias module of it; where it has not but has
  the top package (``metrics.f_score_metrics`` → ``lamina.metrics``), the alias exposes that package's
  names, so ``from keras.src.metrics.f_score_metrics import FBetaScore`` works exactly when lamina has
  ``FBetaScore``.
* A Keras module lamina lacks entirely (``quantizers``, ``export``, ``tree``) is a ``MissingModule``:
  importing it succeeds and reading a name from it raises AttributeError.

Leniency, so that one missing name fails the tests that use it and not the whole file: while pytest
imports the test modules (until ``end_collection``), a name lamina lacks that a test module reads at
import time (``from keras.src.quantizers.awq_config import AWQConfig``, ``layers.Minimum`` in a
parameter list) is a ``MissingName``, which raises the same AttributeError at its first use (call,
attribute, truth value, comparison); once tests run, a missing name raises where it is read.
``strict=True`` turns both off: such an import fails and the whole file errors at collection.

Alias modules forward attribute reads to their lamina module and hold nothing of their own except
``HARNESS_NAMES``: facts about lamina that Keras's tests read at import time (no sparse or ragged
tensors) and, while lamina has no ``backend.backend()``, the backend name ``"numpy"``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import pathlib
import sys
import types

STAND_IN = "tests.keras_suite.testing_stub"

# Keras path prefix (after ``keras.src.``) → lamina path; the longest matching prefix wins.
RENAMES = {
    "backend.common.keras_tensor": "layers.keras_tensor",
    "backend.common.backend_utils": "conv_variant_kernels",  # the conv-transpose shape and padding rules
    "backend.common": "backend",
    "backend.config": "backend",
    "layers.core": "layers",
    "layers.activations": "layers",
    "layers.normalization": "layers",
    "layers.regularization": "layers",
    "layers.reshaping": "layers",
    "layers.merging": "layers",
    "layers.input_spec": "layers",
    "losses.loss": "losses",
    "losses.losses": "losses",
    "legacy.saving.legacy_h5_format": "saving.legacy_h5",
    "saving.object_registration": "saving.object_registry",
    "optimizers.schedules.learning_rate_schedule": "optimizers.schedules",
    "models.cloning": "models",
    "layers.rnn.conv_lstm": "layers.conv_lstm",  # ConvLSTM and ConvLSTMCell (Keras's rnn folder)
    "ops.random": "random",  # keras.src.ops re-exports the backend's random module as ops.random
    "backend.random": "random",  # ... and keras.src.backend holds it as backend.random (SeedGenerator...)
}

# Names the harness itself supplies on an alias, each only where lamina's module lacks it.
def _conv_transpose_padding(*args, **kwargs):
    """Keras's ``compute_conv_transpose_padding_args_for_jax`` is lamina's ``compute_conv_transpose_padding``
    (the same per-axis (before, after) rule; lamina has no JAX, hence no such name)."""
    from lamina.conv_variant_kernels import compute_conv_transpose_padding  # lazy: lamina loads after the finder

    return compute_conv_transpose_padding(*args, **kwargs)


HARNESS_NAMES = {
    "backend": {
        "SUPPORTS_SPARSE_TENSORS": False,
        "SUPPORTS_RAGGED_TENSORS": False,
        "backend": lambda: "numpy",
    },
    "conv_variant_kernels": {"compute_conv_transpose_padding_args_for_jax": _conv_transpose_padding},
}


def keras_path(name: str) -> str | None:
    """``keras.src.layers.core`` → ``layers.core``; ``keras`` / ``keras.src`` → ``""``; else None."""
    if name in ("keras", "keras.src"):
        return ""
    for prefix in ("keras.src.", "keras."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return None


def renamed(path: str) -> str:
    """Apply the longest ``RENAMES`` prefix to a Keras path."""
    parts = path.split(".") if path else []
    for cut in range(len(parts), 0, -1):
        head = ".".join(parts[:cut])
        if head in RENAMES:
            return ".".join([RENAMES[head], *parts[cut:]])
    return path


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, AttributeError, ValueError):
        return False


def resolve(name: str) -> tuple[str, bool] | None:
    """The lamina module a Keras module name stands for, and whether it is that module exactly.

    ``(module, False)`` is the nearest lamina package above a missing module (never lamina itself
    unless asked for ``keras``); None where lamina has nothing for it.
    """
    path = keras_path(name)
    if path is None:
        return None
    if path == "":
        return "lamina", True
    parts = renamed(path).split(".")
    if _exists("lamina." + ".".join(parts)):
        return "lamina." + ".".join(parts), True
    for cut in range(len(parts) - 1, 0, -1):
        candidate = "lamina." + ".".join(parts[:cut])
        if _exists(candidate):
            return candidate, False
    return None


# Extra lamina modules an alias of the key also reads: Keras's ``backend`` holds what lamina keeps in
# ``autodiff`` (Variable), ``ops`` (convert_to_tensor, convert_to_numpy, is_tensor) and ``KerasTensor``.
SOURCES = {"lamina.backend": ("lamina.autodiff", "lamina.ops", "lamina.layers.keras_tensor")}

_STATE = {"finder": None, "collecting": False}


def end_collection() -> None:
    """From now on (tests running), a missing name raises where it is read."""
    _STATE["collecting"] = False


class MissingName:
    """What a test module imported from Keras and lamina lacks: any use raises, naming it."""

    def __init__(self, qualname: str):
        object.__setattr__(self, "_qualname", qualname)

    def _fail(self, *args, **kwargs):
        raise AttributeError(f"module {self._qualname.rsplit('.', 1)[0]!r} (lamina) has no attribute "
                             f"{self._qualname.rsplit('.', 1)[1]!r}")

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        self._fail()

    # subclassing it (``class W(layers.Wrapper)``) is a use too
    __call__ = __bool__ = __iter__ = __len__ = __getitem__ = __eq__ = __ne__ = __setattr__ = __mro_entries__ = _fail
    __hash__ = object.__hash__

    def __repr__(self):
        return f"<missing in lamina: {self._qualname}>"


def _missing(module: str, attr: str, target: str | None):
    """A missing name: a ``MissingName`` while test modules are being imported (lenient), else the error."""
    finder = _STATE["finder"]
    if _STATE["collecting"] and finder is not None and not finder.strict:
        return MissingName(f"{module}.{attr}")
    if target is None:
        raise AttributeError(f"lamina has no module for {module!r} (a test read {attr!r} from it)")
    raise AttributeError(f"module {module!r} (lamina: {target}) has no attribute {attr!r}")


def _serves(name: str) -> bool:
    """Whether the installed finder would import ``name`` as a module of its own."""
    finder = _STATE["finder"]
    if name in sys.modules:
        return True
    if finder is None:
        found = resolve(name)
        return _special(name, None) is not None or (found is not None and found[1])
    return finder.serves(name)


class MissingModule(types.ModuleType):
    """A Keras module lamina has nothing for: importable, but every name read from it is missing."""

    def __init__(self, name: str):
        super().__init__(name)
        self.__path__ = []
        self.__lamina_target__ = None

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        sub = f"{self.__name__}.{attr}"
        if _serves(sub):
            return importlib.import_module(sub)
        return _missing(self.__name__, attr, None)


class AliasModule(types.ModuleType):
    """A Keras module name whose attributes are read from a lamina module (and its ``SOURCES``)."""

    def __init__(self, name: str, target: str, extras: dict | None = None):
        super().__init__(name)
        self.__path__ = []  # a package, so that ``keras.src.x.y`` can be imported below it
        self.__lamina_target__ = target
        self.__harness_names__ = dict(extras or {})

    def _sources(self):
        return [importlib.import_module(m) for m in (self.__lamina_target__, *SOURCES.get(self.__lamina_target__, ()))]

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        value = next((getattr(m, attr) for m in self._sources() if hasattr(m, attr)), _MISSING)
        sub = f"{self.__name__}.{attr}"
        if isinstance(value, types.ModuleType) or (value is _MISSING and _serves(sub)):
            # a submodule: hand out its alias (which may carry harness names), not lamina's module
            return importlib.import_module(sub)
        if value is not _MISSING:
            return value
        if attr in self.__harness_names__:
            return self.__harness_names__[attr]
        return _missing(self.__name__, attr, self.__lamina_target__)

    def __dir__(self):
        return sorted({n for m in self._sources() for n in dir(m)} | set(self.__harness_names__))

    def __setattr__(self, attr: str, value):
        # A test that sets or patches a module setting (saving_lib._MEMORY_UPPER_BOUND = 0, mock.patch.object)
        # must change it where lamina reads it: forward to the lamina module that has the name.
        owner = None if attr.startswith("__") else self._owner(attr)
        if owner is None:
            super().__setattr__(attr, value)
        else:
            setattr(owner, attr, value)

    def __delattr__(self, attr: str):
        # mock.patch undoes a patch of a name it did not find in this module's __dict__ by deleting it, then
        # setting the original back: remember where a forwarded name lived so that the set goes there too.
        owner = None if attr.startswith("__") or attr in self.__dict__ else self._owner(attr)
        if owner is None:
            super().__delattr__(attr)
        else:
            delattr(owner, attr)
            self.__dict__.setdefault("__forwarded__", {})[attr] = owner

    def _owner(self, attr: str):
        remembered = self.__dict__.get("__forwarded__", {}).pop(attr, None)
        if remembered is not None:
            return remembered
        return next((m for m in self._sources() if attr in vars(m)), None)


_MISSING = object()


def _special(name: str, sdist_root: pathlib.Path | None):
    """``(kind, detail)`` for the stand-in and the test modules read from the sdist, else None."""
    if name in ("keras.src.testing", "keras.src.testing.test_case"):
        return "stand-in", STAND_IN
    path = keras_path(name)
    if path is None or not name.startswith("keras.src."):
        return None
    if name == "keras.src.testing.test_utils" or path.rsplit(".", 1)[-1].endswith("_test"):
        if sdist_root is None:
            return "sdist", None
        return "sdist", sdist_root / "keras" / "src" / (path.replace(".", "/") + ".py")
    return None


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str, extras: dict | None):
        self.target, self.extras = target, extras

    def create_module(self, spec):
        return AliasModule(spec.name, self.target, self.extras)

    def exec_module(self, module):
        importlib.import_module(self.target)  # fail here, at import, if lamina's module cannot load


class _MissingLoader(importlib.abc.Loader):
    def create_module(self, spec):
        return MissingModule(spec.name)

    def exec_module(self, module):
        pass


class KerasAliasFinder(importlib.abc.MetaPathFinder):
    """Serves every ``keras`` import from lamina; real Keras is never found while this is installed."""

    def __init__(self, sdist_root: str | pathlib.Path | None = None, strict: bool = False):
        self.sdist_root = pathlib.Path(sdist_root) if sdist_root else None
        self.strict = strict

    def is_keras_module(self, name: str) -> bool:
        """Whether Keras has a module of that name (the sdist says; without it, a lower-case last part)."""
        path = keras_path(name)
        if path is None:
            return False
        if self.sdist_root is None:
            return path.rsplit(".", 1)[-1].islower()
        folder = "src" if name.startswith("keras.src.") else "api"
        base = self.sdist_root / "keras" / folder / path.replace(".", "/")
        return base.is_dir() or base.with_suffix(".py").is_file()

    def serves(self, name: str) -> bool:
        if _special(name, self.sdist_root) is not None:
            return True
        found = resolve(name)
        if found is not None and found[1]:
            return True
        return self.is_keras_module(name) and (found is not None or not self.strict)

    def find_spec(self, fullname, path=None, target=None):
        if keras_path(fullname) is None:
            return None
        special = _special(fullname, self.sdist_root)
        if special is not None:
            kind, detail = special
            if kind == "stand-in":
                return importlib.machinery.ModuleSpec(fullname, _AliasLoader(detail, None), is_package=True)
            if detail is None or not detail.is_file():
                raise ModuleNotFoundError(f"Keras test module {fullname!r} is not in the sdist ({detail})",
                                          name=fullname)
            return importlib.util.spec_from_file_location(fullname, detail)
        found = resolve(fullname)
        if found is not None and (found[1] or self.is_keras_module(fullname)):
            extras = HARNESS_NAMES.get(renamed(keras_path(fullname)))
            return importlib.machinery.ModuleSpec(fullname, _AliasLoader(found[0], extras), is_package=True)
        if not self.strict and self.is_keras_module(fullname):
            return importlib.machinery.ModuleSpec(fullname, _MissingLoader(), is_package=True)
        raise ModuleNotFoundError(f"lamina has no module for {fullname!r}", name=fullname)


def install(sdist_root=None, strict: bool = False) -> KerasAliasFinder:
    """Put the finder first on ``sys.meta_path``; refuse if real Keras is already imported."""
    loaded = [m for m in sys.modules if m == "keras" or m.startswith("keras.")]
    if loaded:
        raise RuntimeError(f"real Keras is already imported in this process: {sorted(loaded)[:5]}")
    finder = KerasAliasFinder(sdist_root, strict)
    sys.meta_path.insert(0, finder)
    _STATE.update(finder=finder, collecting=True)
    return finder


def uninstall(finder: KerasAliasFinder) -> None:
    """Remove the finder and every ``keras`` module it served (for the offline test)."""
    sys.meta_path[:] = [f for f in sys.meta_path if f is not finder]
    _STATE.update(finder=None, collecting=False)
    for name in [m for m in sys.modules if m == "keras" or m.startswith("keras.")]:
        del sys.modules[name]
