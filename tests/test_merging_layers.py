"""Add, Subtract, Multiply, Average, Concatenate: harness, broadcasting, Keras oracle, gradients,
shape errors."""

import numpy as np
import pytest

import lamina
from lamina.layers.add import Add, add
from lamina.layers.average import Average, average
from lamina.layers.concatenate import Concatenate, concatenate
from lamina.layers.input_layer import Input
from lamina.layers.multiply import Multiply, multiply
from lamina.layers.subtract import Subtract, subtract
from tests.helpers import (
    check_gradients,
    keras_forward_and_grads,
    lamina_forward_and_grads,
    random_inputs,
    run_layer_test,
)

ELEMENTWISE = [Add, Subtract, Multiply, Average]
REFERENCE = {
    Add: lambda xs: sum(xs[1:], xs[0]),
    Subtract: lambda xs: xs[0] - xs[1],
    Multiply: lambda xs: np.prod(np.stack(np.broadcast_arrays(*xs)), axis=0),
    Average: lambda xs: sum(xs[1:], xs[0]) / len(xs),
}


@pytest.mark.parametrize("cls", ELEMENTWISE)
@pytest.mark.parametrize("shapes,out", [
    ([(2, 3), (2, 3)], (2, 3)),
    ([(2, 4, 3), (2, 1, 3)], (2, 4, 3)),
    ([(2, 4, 3), (2, 3)], (2, 4, 3)),  # lower rank: new axes after the batch axis, as Keras
])
def test_elementwise_harness(cls, shapes, out):
    run_layer_test(cls, {}, shapes, out)


@pytest.mark.parametrize("cls", [Add, Multiply, Average])
def test_three_inputs(cls):
    xs = random_inputs([(2, 3)] * 3, seed=1)
    run_layer_test(cls, {}, [(2, 3)] * 3, (2, 3), input_data=xs)
    np.testing.assert_allclose(cls()(xs), REFERENCE[cls](xs), rtol=1e-6)


@pytest.mark.parametrize("cls", ELEMENTWISE)
def test_elementwise_values_and_functional_forms(cls):
    xs = random_inputs([(3, 4), (3, 4)], seed=2)
    expected = REFERENCE[cls](xs)
    np.testing.assert_allclose(cls()(xs), expected, rtol=1e-6)
    fn = {Add: add, Subtract: subtract, Multiply: multiply, Average: average}[cls]
    np.testing.assert_allclose(fn(xs), expected, rtol=1e-6)
    assert cls()(xs).dtype == np.float32


@pytest.mark.parametrize("kwargs,shapes,out", [
    ({}, [(2, 3), (2, 4)], (2, 7)),
    ({"axis": 1}, [(2, 3, 4), (2, 1, 4), (2, 2, 4)], (2, 6, 4)),
    ({"axis": 0}, [(2, 3), (5, 3)], (7, 3)),
])
def test_concatenate_harness(kwargs, shapes, out):
    run_layer_test(Concatenate, kwargs, shapes, out, check_symbolic=kwargs.get("axis") != 0)
    xs = random_inputs(shapes)
    np.testing.assert_array_equal(Concatenate(**kwargs)(xs), np.concatenate(xs, axis=kwargs.get("axis", -1)))
    np.testing.assert_array_equal(concatenate(xs, **kwargs), np.concatenate(xs, axis=kwargs.get("axis", -1)))


def test_symbolic_merges():
    a, b = Input(shape=(4, 3)), Input(shape=(3,))
    assert Add()([a, b]).shape == (None, 4, 3)
    c = Input(shape=(None, 3))
    assert Concatenate(axis=1)([a, c]).shape == (None, None, 3)
    assert Multiply().compute_output_shape([(None, 4, 3), (None, None, 3)]) == (None, 4, 3)


@pytest.mark.parametrize("cls", ELEMENTWISE + [Concatenate])
def test_gradients(cls):
    shapes = [(2, 3), (2, 3)] if cls is not Concatenate else [(2, 3), (2, 2)]
    xs = random_inputs(shapes, seed=3)
    check_gradients(lambda a, b: cls(dtype="float64")([a, b]), *xs, empty_batch=True)


@pytest.mark.parametrize("cls", [Add, Multiply, Average])
def test_broadcast_gradients(cls):
    xs = random_inputs([(2, 4, 3), (2, 3), (2, 1, 3)], seed=4)
    check_gradients(lambda a, b, c: cls(dtype="float64")([a, b, c]), *xs, empty_batch=True)


# ----------------------------------------------------------------------------- errors


def test_subtract_needs_exactly_two_inputs():
    xs = random_inputs([(2, 3)] * 3)
    with pytest.raises(ValueError, match=r"Subtract layer .*exactly 2 inputs.*Received: 3 inputs"):
        Subtract()(xs)
    with pytest.raises(ValueError, match=r"Subtract layer .*exactly 2 inputs.*Received: 1 inputs"):
        Subtract()(xs[:1])
    layer = Subtract()
    layer(xs[:2])
    with pytest.raises(ValueError, match=r"Subtract layer .*exactly 2"):
        layer(xs)


@pytest.mark.parametrize("cls", ELEMENTWISE)
def test_incompatible_shapes(cls):
    with pytest.raises(ValueError, match=rf"{cls.__name__} layer .*incompatible shapes.*"
                                         r"Received: input_shape=\[\(2, 3\), \(2, 4\)\]"):
        cls()(random_inputs([(2, 3), (2, 4)]))
    with pytest.raises(ValueError, match=rf"{cls.__name__} layer .*different batch sizes"):
        cls()(random_inputs([(2, 3), (5, 3)]))
    layer = cls()
    layer(random_inputs([(2, 3), (2, 3)]))
    with pytest.raises(ValueError, match="incompatible shapes"):
        layer(random_inputs([(2, 3), (2, 5)]))


@pytest.mark.parametrize("cls", ELEMENTWISE + [Concatenate])
def test_not_a_list(cls):
    with pytest.raises(ValueError, match=rf"merge layer \({cls.__name__} .*list of inputs.*Received"):
        cls()(np.zeros((2, 3), "float32"))


def test_concatenate_mismatched_shapes():
    with pytest.raises(ValueError, match=r"Concatenate layer 'cat'.*axis 1 differs.*"
                                         r"Received: input_shape=\[\(2, 3, 4\), \(2, 5, 2\)\]"):
        Concatenate(name="cat")(random_inputs([(2, 3, 4), (2, 5, 2)]))
    with pytest.raises(ValueError, match=r"Concatenate layer .*same rank"):
        Concatenate()(random_inputs([(2, 3, 4), (2, 3)]))
    with pytest.raises(ValueError, match=r"Concatenate layer .*axis=3"):
        Concatenate(axis=3)(random_inputs([(2, 3), (2, 3)]))
    with pytest.raises(ValueError, match=r"Concatenate.*Received: axis='x'"):
        Concatenate(axis="x")
    with pytest.raises(ValueError, match=r"Concatenate layer .*axis 1 differs"):
        Concatenate().compute_output_shape([(None, 3, 4), (None, 5, 2)])


def test_under_tape_outputs_are_tensors_and_plain_outside():
    xs = random_inputs([(2, 3), (2, 3)])
    assert isinstance(Add()(xs), np.ndarray)
    with lamina.GradientTape() as tape:
        tape.watch(xs)
        y = Add()(xs)
    assert isinstance(y, lamina.Tensor)


# ----------------------------------------------------------------------------- Keras oracle


@pytest.mark.oracle
@pytest.mark.parametrize("cls", ELEMENTWISE + [Concatenate])
@pytest.mark.parametrize("shapes", [[(3, 4), (3, 4)], [(2, 4, 3), (2, 3)], [(2, 4, 3), (2, 1, 3)]])
def test_matches_keras(keras, cls, shapes):
    if cls is Concatenate and shapes[1] != (3, 4):
        shapes = [(2, 4, 3), (2, 4, 5)]
    theirs = getattr(keras.layers, cls.__name__)()
    ours = cls()
    xs = random_inputs(shapes, seed=5)
    proj = random_inputs(tuple(ours.compute_output_shape([tuple(s) for s in shapes])), seed=6)
    ky, kdx, _ = keras_forward_and_grads(theirs, xs, proj)
    ly, ldx, _ = lamina_forward_and_grads(ours, xs, proj)
    np.testing.assert_allclose(ly, ky, rtol=1e-6, atol=1e-7)
    for a, b in zip(ldx, kdx, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    sym = [(None,) + tuple(s)[1:] for s in shapes]
    assert tuple(ours.compute_output_shape(sym)) == tuple(theirs.compute_output_shape(sym))
    kcfg, lcfg = theirs.get_config(), ours.get_config()
    assert set(kcfg) == set(lcfg)
    cls.from_config(kcfg)
    type(theirs).from_config(lcfg)


# ----------------------------------------------------------------------------- masks in a graph


def _masked_pair():
    x1 = np.array([[[0, 0], [1, 2], [0, 0], [3, 4]]], "float32")
    x2 = np.array([[[0, 0], [0, 0], [1, 2], [3, 4]]], "float32")
    return x1, x2


@pytest.mark.oracle
def test_a_symbolic_merge_output_carries_its_mask_as_a_graph_node(keras):
    """A Masking output's mask travels with the symbolic tensor; a merge of it is a node a model can
    return, computing what Keras computes (Concatenate: any kept feature; Add: OR of the masks)."""
    x1, x2 = _masked_pair()
    from keras.src.backend import get_keras_mask  # lazy: the oracle's, where Keras keeps it

    for lib, mask_of in ((lamina, lamina.backend.get_keras_mask), (keras, get_keras_mask)):
        i1, i2 = lib.layers.Input((4, 2)), lib.layers.Input((4, 2))
        joined = lib.layers.Concatenate(axis=1)([lib.layers.Masking()(i1), i2])
        summed = lib.layers.Add()([lib.layers.Masking()(i1), lib.layers.Masking()(i2)])
        model = lib.Model([i1, i2], [mask_of(joined), mask_of(summed)])
        got = [np.asarray(lib.ops.convert_to_numpy(m)) for m in model([x1, x2])]
        if lib is lamina:
            ours = got
    np.testing.assert_array_equal(ours[0], [[0, 1, 0, 1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(ours[1], [[0, 1, 1, 1]])
    for a, b in zip(ours, got, strict=True):
        np.testing.assert_array_equal(a, b)
    # Without a Masking upstream there is no mask to carry.
    i1, i2 = Input((4, 2)), Input((4, 2))
    assert lamina.backend.get_keras_mask(Concatenate()([i1, i2])) is None
