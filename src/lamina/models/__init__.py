"""Models: ``Sequential``, ``Model`` (Functional or subclassed), and loading them from files."""

from lamina.models.cloning import clone_model
from lamina.models.functional import Functional
from lamina.models.model import Model
from lamina.models.sequential import Sequential
from lamina.saving.object_registry import register_builtins

# Models are layers to deserialization (a model can nest in a model).
register_builtins("layers", {"Functional": Functional, "Model": Model, "Sequential": Sequential})

__all__ = ["Functional", "Model", "Sequential", "clone_model", "load_model", "model_from_json", "save_model"]


def __getattr__(name: str):
    # The file functions live in lamina.saving, loaded on first use (h5py stays out of `import lamina`).
    if name in ("load_model", "model_from_json", "save_model"):
        from lamina.saving import saving_api  # lazy: saving sits above models (and h5py)

        return getattr(saving_api, name)
    raise AttributeError(f"module 'lamina.models' has no attribute {name!r}")
