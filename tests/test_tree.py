"""lamina.tree against Keras 3's keras.tree (the oracle), structure by structure."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from lamina import tree

pytest.importorskip("optree")
# Keras's optree implementation is the reference: its torch one leaves dicts nested in tuples unsorted.
ktree = pytest.importorskip("keras.src.tree.optree_impl")

Point = collections.namedtuple("Point", ["y", "x"])

STRUCTURES = [
    1,
    None,
    "text",
    [1, (2, 3), {"b": 4, "a": [5, None]}],
    {"z": 1, "a": (2, {"m": 3, "c": 4})},
    Point(y=1, x=[2, 3]),
    collections.OrderedDict([("z", 1), ("a", 2)]),
    (),
    [[], {}, ()],
]


@pytest.mark.parametrize("structure", STRUCTURES, ids=range(len(STRUCTURES)))
def test_flatten_and_paths_match_keras(structure):
    assert tree.flatten(structure) == ktree.flatten(structure)
    assert tree.is_nested(structure) == ktree.is_nested(structure)
    assert [p for p, _ in tree.flatten_with_path(structure)] == [p for p, _ in ktree.flatten_with_path(structure)]


@pytest.mark.parametrize("structure", STRUCTURES, ids=range(len(STRUCTURES)))
def test_pack_sequence_as_and_map_structure_match_keras(structure):
    flat = [f"v{i}" for i in range(len(tree.flatten(structure)))]
    ours = tree.pack_sequence_as(structure, flat)
    theirs = ktree.pack_sequence_as(structure, flat)
    assert ours == theirs and type(ours) is type(theirs)
    if isinstance(ours, dict):
        assert list(ours) == list(theirs)  # the template's key order survives
    doubled = tree.map_structure(lambda v: (v, v), structure)
    assert doubled == ktree.map_structure(lambda v: (v, v), structure)


def test_map_structure_several_and_mismatch():
    a = {"a": 1, "b": [2, 3]}
    b = {"b": [20, 30], "a": 10}
    assert tree.map_structure(lambda x, y: x + y, a, b) == {"a": 11, "b": [22, 33]}
    with pytest.raises(ValueError, match="same nested structure"):
        tree.map_structure(lambda x, y: x, [1, 2], [1, [2]])
    with pytest.raises(ValueError, match="same nested structure"):
        tree.assert_same_structure([1, 2], (1, 2))
    with pytest.raises(ValueError):
        ktree.assert_same_structure([1, 2], (1, 2))
    tree.assert_same_structure({"a": [1]}, {"a": [np.zeros(3)]})


def test_map_structure_up_to_and_lists_to_tuples():
    shallow = {"a": 0, "b": 0}
    deep = {"a": [1, 2], "b": (3,)}
    assert tree.map_structure_up_to(shallow, len, deep) == ktree.map_structure_up_to(shallow, len, deep)
    s = [1, [2, (3, [4])], {"k": [5]}]
    assert tree.lists_to_tuples(s) == ktree.lists_to_tuples(s)


def test_traverse_top_down_and_bottom_up_match_keras():
    s = [1, [2, 3], {"a": 4}]

    def skip_lists(x):
        return "LIST" if isinstance(x, list) and len(x) == 2 else None

    assert tree.traverse(skip_lists, s) == ktree.traverse(skip_lists, s)
    seen, kseen = [], []
    tree.traverse(lambda x: seen.append(x), s, top_down=False)
    ktree.traverse(lambda x: kseen.append(x), s, top_down=False)
    assert seen == kseen
    assert tree.traverse(lambda x: tree.MAP_TO_NONE if x == 2 else None, s) == [1, [None, 3], {"a": 4}]


def test_pack_sequence_as_counts_leaves():
    with pytest.raises(ValueError, match="2 leaves but the flat sequence has 3 items"):
        tree.pack_sequence_as([1, 2], [1, 2, 3])


def test_assert_same_paths_and_shape_structure():
    tree.assert_same_paths([1, 2], (3, 4))
    with pytest.raises(ValueError, match="don't have the same paths"):
        tree.assert_same_paths({"a": 1}, {"b": 1})
    shapes = {"x": (None, 3), "y": [(2,), (4, 5)]}
    assert tree.map_shape_structure(len, shapes) == ktree.map_shape_structure(len, shapes)
