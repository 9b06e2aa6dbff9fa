"""Nested structures (``keras.tree``): lists, tuples, namedtuples and dicts of leaves.

The rules are Keras 3's (its optree backend): ``None`` is a leaf, strings and arrays are leaves, a
dict's children go in sorted key order (an ``OrderedDict`` keeps its own order) and a rebuilt dict
keeps the key order of the structure it is rebuilt from. A class registered with
:func:`register_tree_node_class` (``tree_flatten()`` → ``(children, metadata)``, classmethod
``tree_unflatten(metadata, children)``) is a node too.
"""

from __future__ import annotations

import collections

_REGISTERED: set[type] = set()


class MAP_TO_NONE:
    """Return it from :func:`traverse`'s ``func`` to put ``None`` in place of a subtree."""


def register_tree_node_class(cls):
    """Make instances of ``cls`` nodes (``cls.tree_flatten`` / ``cls.tree_unflatten``); returns ``cls``."""
    _REGISTERED.add(cls)
    return cls


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def is_nested(structure) -> bool:
    """True for a list, tuple, namedtuple, dict or registered node; False for a leaf."""
    return isinstance(structure, (list, tuple, dict)) or type(structure) in _REGISTERED


def _sorted_keys(d: dict) -> list:
    if isinstance(d, collections.OrderedDict):
        return list(d)
    try:
        return sorted(d)
    except TypeError:  # keys of mixed types keep their order, as optree does
        return list(d)


def _children(node) -> tuple[list, list]:
    """``node``'s children and their path entries (keys or indices)."""
    if isinstance(node, dict):
        keys = _sorted_keys(node)
        return [node[k] for k in keys], keys
    if isinstance(node, (list, tuple)):
        return list(node), list(range(len(node)))
    children, _ = node.tree_flatten()
    return list(children), list(range(len(children)))


def _rebuild(node, children: list):
    """A node like ``node`` holding ``children`` (given in :func:`_children`'s order)."""
    if isinstance(node, dict):
        by_key = dict(zip(_sorted_keys(node), children))
        out = {k: by_key[k] for k in node}
        if type(node) is dict:
            return out
        if isinstance(node, collections.defaultdict):
            return type(node)(node.default_factory, out)
        return type(node)(out)
    if _is_namedtuple(node):
        return type(node)(*children)
    if isinstance(node, (list, tuple)):
        return type(node)(children)
    _, metadata = node.tree_flatten()
    return type(node).tree_unflatten(metadata, children)


def flatten_with_path(structure) -> list[tuple[tuple, object]]:
    """``(path, leaf)`` pairs, a path being the keys/indices from the root to the leaf."""
    out: list = []
    stack = [((), structure)]
    while stack:
        path, node = stack.pop()
        if not is_nested(node):
            out.append((path, node))
            continue
        children, keys = _children(node)
        stack.extend(reversed([(path + (k,), c) for k, c in zip(keys, children)]))
    return out


def flatten(structure) -> list:
    """The leaves of ``structure``, depth first (dicts by sorted key); a leaf alone gives ``[leaf]``."""
    return [leaf for _, leaf in flatten_with_path(structure)]


def _describe(structure) -> str:
    return f"{structure!r:.200}"


def pack_sequence_as(structure, flat_sequence):
    """``structure`` with its leaves replaced, in order, by the items of ``flat_sequence``."""
    flat_sequence = list(flat_sequence)
    count = len(flatten(structure))
    if count != len(flat_sequence):
        raise ValueError(
            f"The target structure has {count} leaves but the flat sequence has {len(flat_sequence)} items. "
            f"Received: structure={_describe(structure)}, flat_sequence={_describe(flat_sequence)}"
        )
    it = iter(flat_sequence)

    def build(node):
        if not is_nested(node):
            return next(it)
        children, _ = _children(node)
        return _rebuild(node, [build(c) for c in children])

    return build(structure)


def _same_node_kind(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return _sorted_keys(a) == _sorted_keys(b)
    if _is_namedtuple(a) or _is_namedtuple(b):
        return type(a) is type(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b)
    return type(a) is type(b) and type(a) in _REGISTERED and len(_children(a)[0]) == len(_children(b)[0])


def _kind(x) -> str:
    if isinstance(x, dict):
        return f"a {type(x).__name__} with keys {_sorted_keys(x)}"
    if isinstance(x, (list, tuple)):
        return f"a {type(x).__name__} of length {len(x)}"
    return f"a {type(x).__name__}"


def _zip_nodes(structures: list, up_to=None):
    """Walk ``structures`` together, yielding the tuples of leaves; ValueError where they differ.
    With ``up_to``, that structure's leaves end the walk (the others may go deeper there)."""
    shape = structures[0] if up_to is None else up_to
    stack = [(shape, structures)]
    while stack:
        node, group = stack.pop()
        if not is_nested(node):
            odd = next((s for s in group if is_nested(s)), None) if up_to is None else None
            if odd is not None:
                raise ValueError(f"Structures don't have the same nested structure: expected a leaf, got a "
                                 f"{type(odd).__name__}. Received: {_describe(group)}")
            yield group
            continue
        odd = next((s for s in group if not (is_nested(s) and _same_node_kind(node, s))), None)
        if odd is not None:
            raise ValueError(f"Structures don't have the same nested structure: expected {_kind(node)}, got "
                             f"{_kind(odd)}. Received: {_describe(group)}")
        kids = [_children(s)[0] for s in group]
        stack.extend(reversed([(k, [c[i] for c in kids]) for i, k in enumerate(_children(node)[0])]))


def map_structure(func, *structures, none_is_leaf=True):
    """``func`` applied leaf by leaf across ``structures`` (which must match), in the first one's shape."""
    if not structures:
        raise ValueError("map_structure needs at least one structure. Received: no structures")
    if not none_is_leaf:
        def func_skip_none(*leaves, _f=func):
            return None if leaves[0] is None else _f(*leaves)
        func = func_skip_none
    results = [func(*group) for group in _zip_nodes(list(structures))]
    return pack_sequence_as(structures[0], results)


def map_structure_up_to(shallow_structure, func, *structures):
    """``func`` applied to the subtrees of ``structures`` found at the leaves of ``shallow_structure``."""
    if not structures:
        raise ValueError("map_structure_up_to needs at least one structure. Received: no structures")
    results = [func(*group) for group in _zip_nodes(list(structures), up_to=shallow_structure)]
    return pack_sequence_as(shallow_structure, results)


def assert_same_structure(a, b, check_types=None):
    """ValueError unless ``a`` and ``b`` nest the same way (same node types, lengths and dict keys)."""
    del check_types  # Keras 3 ignores it too: types are always checked
    for _ in _zip_nodes([a, b]):
        pass


def assert_same_paths(a, b) -> None:
    """ValueError unless ``a`` and ``b`` have the same set of leaf paths (node types may differ)."""
    a_paths = {p for p, _ in flatten_with_path(a)}
    b_paths = {p for p, _ in flatten_with_path(b)}
    if a_paths != b_paths:
        raise ValueError(
            "`a` and `b` don't have the same paths. "
            f"Received: paths only in `a`: {sorted(map(str, a_paths - b_paths))}, "
            f"paths only in `b`: {sorted(map(str, b_paths - a_paths))}"
        )


def traverse(func, structure, top_down=True):
    """Apply ``func`` to every node and leaf. Top down, a non-None result replaces that subtree (which is
    not entered); bottom up, ``func`` sees the already-traversed subtree. ``MAP_TO_NONE`` gives None."""
    def walk(node):
        if top_down:
            ret = func(node)
            if ret is None:
                ret = _walk_children(node, walk)
        else:
            done = _walk_children(node, walk)
            ret = func(done)
            if ret is None:
                ret = done
        return None if ret is MAP_TO_NONE else ret

    return walk(structure)


def _walk_children(node, walk):
    if not is_nested(node):
        return node
    children, _ = _children(node)
    return _rebuild(node, [walk(c) for c in children])


def lists_to_tuples(structure):
    """``structure`` with every list turned into a tuple."""
    return traverse(lambda x: tuple(x) if isinstance(x, list) else None, structure, top_down=False)


def _is_shape(x) -> bool:
    return isinstance(x, (list, tuple)) and all(isinstance(e, (int, type(None))) for e in x)


def map_shape_structure(func, structure):
    """Like :func:`map_structure`, with shape tuples (ints and Nones) as the leaves."""
    if _is_shape(structure) or not is_nested(structure):
        return func(structure)
    children, _ = _children(structure)
    return _rebuild(structure, [map_shape_structure(func, c) for c in children])


__all__ = [
    "MAP_TO_NONE", "assert_same_paths", "assert_same_structure", "flatten", "flatten_with_path", "is_nested",
    "lists_to_tuples", "map_shape_structure", "map_structure", "map_structure_up_to", "pack_sequence_as",
    "register_tree_node_class", "traverse",
]
