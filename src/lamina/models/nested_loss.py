"""compile() losses laid over nested outputs (Keras's structured ``CompileLoss``).

When ``loss`` cannot be read as one loss per output — ``loss=[whole_fn, (fn_a, fn_b)]``, a namedtuple
of losses, a dict mirroring nested dict outputs, or two losses for a model whose ``compute_loss``
splits its one output — each loss applies at a *path* of the predictions: the whole structure, a
subtree or one tensor. The paths are found from the first targets and predictions, by Keras's rules:

* a leaf loss at a leaf is that output's loss; a leaf loss at a subtree gets the subtree;
* a list/tuple of leaf losses as long as the subtree's leaves is one loss per leaf;
* a list/tuple of another container type than the subtree holds several losses for the same subtree;
* otherwise the loss structure must follow the predictions' (same container, keys or indices).

Each loss is named ``"/".join(path)`` with the last index replaced by its output's name (the joined
output names at the root); with several losses, each gets a ``"<name>_loss"`` tracker.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lamina import losses as losses_lib
from lamina import ops, tree
from lamina.autodiff import Tensor, Variable


class PathLoss(NamedTuple):
    """One loss of the compiled structure: where it applies, the Loss, its weight (None: 1), its name."""

    path: tuple
    loss: object
    weight: float | None
    name: str


class _Weighted:
    """A loss and its weight, held together as one leaf of the loss structure."""

    def __init__(self, loss, weight):
        self.loss = loss
        self.weight = weight


def _pair(loss, weight):
    return None if loss is None else _Weighted(loss, weight)


def _at(path: tuple, structure):
    for key in path:
        structure = structure[key]
    return structure


def _is_float(x) -> bool:
    return np.dtype(getattr(x, "dtype", np.float32)).kind == "f"


def _as_float(x, dtype: str):
    """A leaf of targets or predictions in the loss's dtype (Tensors stay Tensors, for the tape)."""
    if isinstance(x, (Tensor, Variable)):
        return x if x.dtype == dtype else ops.cast(x, dtype)
    return np.asarray(x, dtype=dtype)


def call_loss(loss, y_true, y_pred, sample_weight):
    """``loss`` on targets and predictions that may be nested: a Loss sees the structures as they are
    (each leaf in its dtype), then its per-sample values are weighted and reduced as usual."""
    if not tree.is_nested(y_true) and not tree.is_nested(y_pred):
        return loss(y_true, y_pred, sample_weight=sample_weight)
    dtype = getattr(loss, "dtype", "float32")
    y_true = tree.map_structure(lambda a: _as_float(a, dtype), y_true)
    y_pred = tree.map_structure(lambda a: _as_float(a, dtype), y_pred)
    if isinstance(loss, losses_lib.LossFunctionWrapper):
        values = loss.fn(y_true, y_pred, **loss._fn_kwargs)
    else:
        values = loss.call(y_true, y_pred)
    return losses_lib.reduce_weighted_values(values, sample_weight=sample_weight,
                                             reduction=getattr(loss, "reduction", "sum_over_batch_size"),
                                             dtype=dtype)


class NestedLoss:
    """The structured compiled loss: :meth:`build` finds the :class:`PathLoss` list from the first
    targets and predictions; :meth:`__call__` then returns each path's unweighted value and the total."""

    def __init__(self, loss, loss_weights, output_names, resolve):
        self.user_loss = loss
        self.user_weights = loss_weights
        self.output_names = list(output_names)
        self._resolve = resolve  # compile's identifier → Loss (compile_utils.resolve_loss)
        self.path_losses: list[PathLoss] = []
        self.built = False
        self._y_pred_shape = None
        self._y_true_shape = None

    # ------------------------------------------------------------------ build

    def _paired(self, y_pred):
        """The user's losses with their weights, as one structure of ``_Weighted`` leaves."""
        loss, weights = self.user_loss, self.user_weights
        names = self.output_names
        if names and isinstance(loss, dict) and not isinstance(y_pred, dict):
            if set(loss) != set(names):
                raise ValueError(f"Expected keys {names} in loss dict, but found loss.keys()={list(loss)}. "
                                 f"Received: loss={loss!r:.200}")
            loss = [loss[n] for n in names]
            if isinstance(weights, dict):
                weights = [weights[n] for n in names]
        if weights is None:
            return tree.map_structure(lambda item: _pair(item, None), loss)
        try:
            tree.assert_same_structure(loss, weights)
        except ValueError:
            flat = tree.flatten(weights)
            if len(tree.flatten(loss)) != len(flat):
                raise ValueError(f"`loss_weights` must match the number of losses, got {len(tree.flatten(loss))} "
                                 f"losses and {len(flat)} weights. Received: loss_weights={weights!r:.200}") from None
            weights = tree.pack_sequence_as(loss, flat)
        return tree.map_structure(_pair, loss, weights)

    def _keyed_by_name(self, loss, y_true, y_pred):
        """A loss dict by output name over list (or single) predictions reads them as a dict too."""
        names = self.output_names
        if not isinstance(loss, dict) or set(loss) != set(names):
            return y_true, y_pred
        if isinstance(y_pred, (list, tuple)) and len(y_pred) == len(names):
            return dict(zip(names, y_true)), dict(zip(names, y_pred))
        if not tree.is_nested(y_pred) and len(names) == 1:
            return {names[0]: y_true}, {names[0]: y_pred}
        return y_true, y_pred

    def _names_like(self, y_pred):
        try:
            return tree.pack_sequence_as(y_pred, self.output_names)
        except ValueError:
            flat = tree.flatten(y_pred)
            return tree.pack_sequence_as(y_pred, [None] * len(flat))

    def build(self, y_true, y_pred) -> None:
        loss = self._paired(y_pred)
        y_true, y_pred = self._keyed_by_name(loss, y_true, y_pred)
        if not tree.is_nested(loss):
            loss = tree.map_structure(lambda _, leaf=loss: leaf, y_pred)
        self.path_losses = []
        self._walk(y_true, y_pred, loss, self._names_like(y_pred), ())
        self._y_pred_shape = tree.map_structure(lambda _: None, y_pred)
        self._y_true_shape = tree.map_structure(lambda _: None, y_true)
        self.built = True

    def _add_leaf(self, leaf: _Weighted, names, path: tuple) -> None:
        resolved = self._resolve(leaf.loss)
        name_path = path
        if not tree.is_nested(names):
            own = names if names is not None else resolved.name
            if not name_path:
                name_path = (own,)
            elif isinstance(name_path[-1], int):
                name_path = name_path[:-1] + (own,)
        name = "/".join(str(p) for p in name_path)
        if name == "":
            name = "_".join(str(n) for n in (list(names) if isinstance(names, dict) else tree.flatten(names)))
        self.path_losses.append(PathLoss(path, resolved, leaf.weight, name))

    def _walk(self, y_true, y_pred, loss, names, path: tuple) -> None:
        if loss is None:
            return
        if not tree.is_nested(loss):
            self._add_leaf(loss, names, path)
            return
        flat_pred = tree.flatten(y_pred)
        if isinstance(loss, (list, tuple)) and not any(tree.is_nested(item) for item in loss) \
                and len(loss) == len(flat_pred):
            loss = tree.pack_sequence_as(y_pred, list(loss))
            if not tree.is_nested(loss):
                self._walk(y_true, y_pred, loss, names, path)
                return
        elif isinstance(loss, (list, tuple)) and not isinstance(y_pred, type(loss)):
            for item in loss:  # several losses over the same subtree
                self._walk(y_true, y_pred, item, names, path)
            return
        if not isinstance(loss, type(y_pred)):
            raise KeyError(f"The path: {path} in the `loss` argument, can't be found in the model's output "
                           f"(`y_pred`). Received: a {type(loss).__name__} of losses for a "
                           f"{type(y_pred).__name__} of predictions")
        items = loss.items() if isinstance(loss, dict) else enumerate(loss)
        for key, item in items:
            if item is None:
                continue
            if not all(_has_key(s, key) for s in (y_true, y_pred)):
                raise KeyError(f"The path: {path + (key,)} in the `loss` argument, can't be found in either the "
                               "model's output (`y_pred`) or in the labels (`y_true`). "
                               f"Received: key {key!r}")
            self._walk(y_true[key], y_pred[key], item, names[key], path + (key,))

    # ------------------------------------------------------------------ call

    def _match_targets(self, y_true, y_pred):
        """``y_true`` in ``y_pred``'s structure where it can be read so (a list for a tuple, a flat list
        for a nested structure, a dict by output name for a list), as Keras's compiled loss reads it."""
        try:
            tree.assert_same_structure(y_pred, y_true)
            return y_true
        except ValueError:
            pass
        if not tree.is_nested(y_true) and hasattr(y_pred, "__len__") and len(y_pred) == 1:
            y_true = [y_true]
        elif isinstance(y_pred, (list, tuple)) and isinstance(y_true, dict) and set(self.output_names) == set(y_true):
            y_true = [y_true[n] for n in self.output_names]
        flat_given = isinstance(y_true, (list, tuple)) and not any(tree.is_nested(v) for v in y_true)
        try:
            if flat_given:  # the targets listed leaf by leaf
                return tree.pack_sequence_as(y_pred, list(y_true))
            tree.assert_same_paths(y_true, y_pred)  # the same tree in other containers (a list for a tuple)
            return tree.pack_sequence_as(y_pred, tree.flatten(y_true))
        except ValueError:
            pass
        flat_true = tree.flatten(y_true)
        flat_loss = tree.flatten(self.user_loss)
        slots = [i for i, item in enumerate(flat_loss) if item is not None]
        if len(flat_true) != len(slots):
            shape = tree.map_structure(lambda _: "*", y_true)
            raise ValueError(f"y_true and y_pred have different structures.\ny_true: {shape}\n"
                             f"y_pred: {tree.map_structure(lambda _: '*', y_pred)}\n")
        filled = [None] * len(flat_loss)
        for i, value in zip(slots, flat_true):
            filled[i] = value
        return tree.pack_sequence_as(self.user_loss, filled)

    def __call__(self, y_true, y_pred, sample_weight=None) -> list:
        """Each path loss's unweighted value, in :attr:`path_losses` order."""
        if tree.is_nested(y_true) or tree.is_nested(y_pred):
            y_true = self._match_targets(y_true, y_pred)
        if not self.built:
            self.build(y_true, y_pred)
        y_pred = _restructure(self._y_pred_shape, y_pred)
        y_true = _restructure(self._y_true_shape, y_true)
        values = []
        for path_loss in self.path_losses:
            sw = _at(path_loss.path, sample_weight) if tree.is_nested(sample_weight) else sample_weight
            values.append(call_loss(path_loss.loss, _at(path_loss.path, y_true), _at(path_loss.path, y_pred), sw))
        return values


def _has_key(structure, key) -> bool:
    if isinstance(structure, dict):
        return key in structure
    return isinstance(structure, (list, tuple)) and isinstance(key, int) and key < len(structure)


def _restructure(template, values):
    """``values`` in the structure seen at build time (same leaves, perhaps other containers)."""
    try:
        tree.assert_same_structure(template, values)
        return values
    except ValueError:
        return tree.pack_sequence_as(template, tree.flatten(values))
