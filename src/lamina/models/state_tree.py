"""``Model.get_state_tree`` / ``set_state_tree``: a model's variables as nested dicts by path.

The tree has four groups — ``trainable_variables``, ``non_trainable_variables``, ``optimizer_variables``
and ``metrics_variables`` — each a dict nested along the variable paths (``"dense/kernel"`` becomes
``{"dense": {"kernel": value}}``), as Keras 3 lays it out.
"""

from __future__ import annotations

import numpy as np

_GROUPS = ("trainable_variables", "non_trainable_variables", "optimizer_variables", "metrics_variables")


def _variables(model, group: str) -> list:
    if group == "optimizer_variables":
        optimizer = getattr(model, "optimizer", None)
        return list(optimizer.variables) if optimizer is not None else []
    return list(getattr(model, group))


def _nested(variables: list, value_format: str) -> dict:
    flat: dict = {}
    for v in variables:
        if v.path in flat:
            raise ValueError(
                f"The following variable path is found twice in the model: '{v.path}'. `get_state_tree()` can "
                "only be called when all variable paths are unique. Make sure to give unique names to your "
                f"layers (and other objects). Received: two variables at '{v.path}'"
            )
        if value_format == "backend_tensor":
            flat[v.path] = v.value
        elif value_format == "numpy_array":
            flat[v.path] = np.array(v.numpy())
        else:
            raise ValueError("Invalid `value_format` argument. Expected one of {'numpy_array', 'backend_tensor'}. "
                             f"Received: value_format={value_format}")
    tree: dict = {}
    for path, value in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def get_state_tree(model, value_format: str = "backend_tensor") -> dict:
    """The model's variables by group, each group nested along the variable paths. lamina's backend
    tensors are NumPy arrays, so ``"backend_tensor"`` gives each variable's array itself and
    ``"numpy_array"`` a copy."""
    return {group: _nested(_variables(model, group), value_format) for group in _GROUPS}


def _flat(nested: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def set_state_tree(model, state_tree: dict) -> None:
    """Assign the values of a :func:`get_state_tree`-shaped dict (any subset of groups and paths)."""
    for group, nested in state_tree.items():
        if group not in _GROUPS:
            raise ValueError(f"Unknown variable name: {group}. Expected one of {list(_GROUPS)}. "
                             f"Received: state_tree keys {list(state_tree)}")
        by_path = {v.path: v for v in _variables(model, group)}
        for path, value in _flat(nested).items():
            variable = by_path.get(path)
            if variable is None:
                raise ValueError(f"set_state_tree: model '{model.name}' has no {group} variable at path '{path}'. "
                                 f"Received: {group} paths {sorted(_flat(nested))}; the model's are "
                                 f"{sorted(by_path)}")
            variable.assign(value)
