"""A generic layer test, in the style of Keras's ``run_layer_test``, and a layer gradient check.

``run_layer_test`` builds a layer by calling it on NumPy data and checks, in one go:
output shape and dtype, weight counts, ``compute_output_shape`` and a symbolic (Functional) call,
a ``get_config``/``from_config`` round trip (JSON-safe, same config, same outputs with copied
weights), that the taped and the plain forward agree, and a training step under a GradientTape that
yields a gradient for every trainable weight and for the input.

``check_layer_gradients`` compares the tape's gradients of a float64 layer (input and trainable
weights) with central differences and sweeps float32 and an empty batch, with the same helpers as
``gradcheck.check_gradients`` uses for functions.
"""

from __future__ import annotations

import json

import numpy as np

import lamina
from lamina.autodiff import unwrap
from lamina.layers.input_layer import Input
from tests.helpers import gradcheck


def _is_shape_list(shape) -> bool:
    return isinstance(shape, list) and bool(shape) and isinstance(shape[0], (tuple, list))


def random_inputs(input_shape, seed: int = 0, dtype: str = "float32"):
    """Standard-normal data of ``input_shape`` (a shape, or a list of shapes for merge layers)."""
    rng = np.random.default_rng(seed)
    if _is_shape_list(input_shape):
        return [rng.standard_normal(tuple(s)).astype(dtype) for s in input_shape]
    return rng.standard_normal(tuple(input_shape)).astype(dtype)


def _call(layer, x, training=None):
    return layer(x, training=training) if layer._call_has_training else layer(x)


def _leaves(x) -> list:
    return list(x) if isinstance(x, list) else [x]


def run_layer_test(cls, init_kwargs: dict, input_shape, expected_output_shape,
                   expected_num_trainable_weights: int = 0, expected_num_non_trainable_weights: int = 0,
                   input_data=None, deterministic_training: bool = True, check_symbolic: bool = True,
                   expected_input_grad: bool = True):
    """Run the generic checks on ``cls(**init_kwargs)``; returns the built layer."""
    x = input_data if input_data is not None else random_inputs(input_shape)
    expected_output_shape = tuple(expected_output_shape)

    # Build by calling on arrays; the output is a plain float32 ndarray (no graph outside a tape).
    layer = cls(**init_kwargs)
    y = _call(layer, x)
    assert layer.built
    assert isinstance(y, np.ndarray), f"{cls.__name__} returned {type(y).__name__} outside a tape"
    assert y.shape == expected_output_shape, (
        f"{cls.__name__}: output shape {y.shape} != {expected_output_shape}")
    assert y.dtype == np.float32, f"{cls.__name__}: output dtype {y.dtype}"

    # Weight counts.
    assert len(layer.trainable_weights) == expected_num_trainable_weights, (
        f"{cls.__name__}: {len(layer.trainable_weights)} trainable weights, "
        f"expected {expected_num_trainable_weights}")
    assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights, (
        f"{cls.__name__}: {len(layer.non_trainable_weights)} non-trainable weights, "
        f"expected {expected_num_non_trainable_weights}")
    assert all(w.dtype == np.float32 for w in layer.weights)

    # compute_output_shape with an unknown batch size, and a symbolic call.
    def with_none(shape):
        return (None,) + tuple(shape)[1:]

    sym_shape = [with_none(s) for s in input_shape] if _is_shape_list(input_shape) else with_none(input_shape)
    assert tuple(layer.compute_output_shape(sym_shape)) == with_none(expected_output_shape)
    if check_symbolic:
        fresh = cls(**init_kwargs)
        if _is_shape_list(input_shape):
            sym_in = [Input(shape=tuple(s)[1:]) for s in input_shape]
        else:
            sym_in = Input(shape=tuple(input_shape)[1:])
        sym_out = fresh(sym_in)
        assert tuple(sym_out.shape) == with_none(expected_output_shape)
        assert len(fresh.weights) == len(layer.weights)

    # Config round trip: JSON-safe, stable, same outputs with the same weights.
    config = layer.get_config()
    json.dumps(config)
    clone = cls.from_config(json.loads(json.dumps(config)))
    _call(clone, x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(_call(clone, x), _call(layer, x), rtol=1e-6, atol=1e-6)
    assert json.loads(json.dumps(clone.get_config())) == json.loads(json.dumps(config))
    if deterministic_training:
        np.testing.assert_allclose(_call(clone, x, training=True), _call(layer, x, training=True),
                                   rtol=1e-6, atol=1e-6)

    # A training step: the taped forward agrees with the plain one and every weight gets a gradient.
    ref = _call(layer, x, training=True) if deterministic_training else None
    proj = np.random.default_rng(1).standard_normal(expected_output_shape).astype("float32")
    with lamina.GradientTape() as tape:
        tape.watch(_leaves(x))
        out = _call(layer, x, training=True)
        loss = lamina.ops.sum(lamina.ops.multiply(out, proj))
    if ref is not None:
        np.testing.assert_allclose(np.asarray(unwrap(out)), ref, rtol=1e-6, atol=1e-6)
    weights = layer.trainable_weights
    grads = tape.gradient(loss, _leaves(x) + weights)
    in_grads, w_grads = grads[:len(_leaves(x))], grads[len(_leaves(x)):]
    if expected_input_grad:
        for xi, g in zip(_leaves(x), in_grads, strict=True):
            assert g is not None and g.shape == xi.shape and np.all(np.isfinite(g))
    for w, g in zip(weights, w_grads, strict=True):
        assert g is not None, f"{cls.__name__}: no gradient for weight '{w.name}'"
        assert g.shape == w.shape and g.dtype == w.dtype and np.all(np.isfinite(g))
    before = [w.numpy() for w in weights]
    for w, g in zip(weights, w_grads, strict=True):
        w.assign(w.numpy() - 0.1 * g)
    for w, b, g in zip(weights, before, w_grads, strict=True):
        if np.any(g != 0):
            assert not np.array_equal(w.numpy(), b)
    return layer


def check_layer_gradients(layer, inputs, training=None, h: float = 1e-6, rtol: float = 1e-4,
                          atol: float = 1e-6, seed: int = 0, check_input: bool = True, float32: bool = True,
                          empty_batch: bool = True):
    """Tape gradients of ``layer`` (input and trainable weights) against central differences.

    The layer should hold float64 weights (``dtype="float64"``) and is built on ``inputs`` first. The
    sweep of :mod:`tests.helpers.gradcheck` follows: a float32 twin of the layer (same config and
    weights) on float32 inputs must give float32 gradients equal to these to float32 precision
    (``float32=False`` for an object that is not a real layer), and an empty batch (``(0, ...)`` inputs)
    must give a ``(0, ...)`` input gradient and zero weight gradients (``empty_batch=False`` where
    the layer cannot take one, e.g. batch statistics in training).
    """
    xs = [np.array(a, dtype=np.float64) for a in _leaves(inputs)]
    out0 = np.asarray(unwrap(_call(layer, _packed(inputs, xs), training)), dtype=np.float64)
    proj = gradcheck.projection(out0.shape, seed)
    weights = layer.trainable_weights
    grads = _layer_tape_gradients(layer, inputs, xs, training, proj)

    def projected() -> float:
        out = _call(layer, _packed(inputs, xs), training)
        return float(np.sum(np.asarray(unwrap(out), dtype=np.float64) * proj))

    targets = [(f"input {i}", x) for i, x in enumerate(xs)] + [(f"weight '{w.name}'", unwrap(w)) for w in weights]
    skip = 0 if check_input else len(xs)
    gradcheck.assert_matches_finite_differences(projected, targets[skip:], grads[skip:], h=h, rtol=rtol, atol=atol)
    if float32:
        twin = _float32_twin(layer, inputs, training)
        grads32 = _layer_tape_gradients(twin, inputs, [x.astype(np.float32) for x in xs], training, proj)
        gradcheck.assert_float32_agrees([label for label, _ in targets[skip:]], grads32[skip:], grads[skip:])
    if empty_batch:
        empty = [x[:0] for x in xs]
        out = np.asarray(unwrap(_call(layer, _packed(inputs, empty), training)))
        assert out.shape[:1] == (0,), f"an empty batch gave an output of shape {out.shape}"
        grads0 = _layer_tape_gradients(layer, inputs, empty, training, gradcheck.projection(out.shape, seed))
        n = len(xs)
        if check_input:
            gradcheck.assert_empty_batch_gradients([(label, e) for (label, _), e in zip(targets, empty)], grads0[:n])
        gradcheck.assert_empty_batch_gradients(targets[n:], grads0[n:], zero=True)


def _packed(inputs, arrays):
    """``arrays`` in the structure of ``inputs``: a list for a list, else the single array."""
    return list(arrays) if isinstance(inputs, list) else arrays[0]


def _layer_tape_gradients(layer, inputs, xs, training, proj) -> list:
    """Tape gradients of ``sum(layer(xs) * proj)`` for the inputs ``xs``, then the trainable weights."""
    with lamina.GradientTape() as tape:
        tape.watch(xs)
        out = _call(layer, _packed(inputs, xs), training)
        loss = lamina.ops.sum(lamina.ops.multiply(out, proj.astype(xs[0].dtype)))
    return tape.gradient(loss, xs + layer.trainable_weights)


def _float32_twin(layer, inputs, training):
    """The same layer in float32: rebuilt from its config, built on float32 inputs, weights copied."""
    twin = type(layer).from_config({**layer.get_config(), "dtype": "float32"})
    _call(twin, _packed(inputs, [np.zeros_like(x, dtype=np.float32) for x in _leaves(inputs)]), training)
    twin.set_weights([w.astype(np.float32) for w in layer.get_weights()])
    return twin


def keras_forward_and_grads(keras_layer, inputs, proj, training=None):
    """Real Keras (torch backend): output, input gradient(s) and trainable-weight gradients of
    ``sum(layer(inputs) * proj)``, as NumPy arrays (weights in ``trainable_weights`` order)."""
    import torch  # lazy: the oracle's backend, needed only by the tests that use Keras

    leaves = [torch.tensor(np.asarray(a), requires_grad=True) for a in _leaves(inputs)]
    arg = leaves if isinstance(inputs, list) else leaves[0]
    kwargs = {} if training is None else {"training": training}
    out = keras_layer(arg, **kwargs)
    weights = [w.value for w in keras_layer.trainable_weights]
    for w in weights:
        w.grad = None
    (out * torch.tensor(proj)).sum().backward()
    dx = [t.grad.numpy() for t in leaves]
    dw = [w.grad.numpy() if w.grad is not None else None for w in weights]
    return out.detach().numpy(), (dx if isinstance(inputs, list) else dx[0]), dw


def lamina_forward_and_grads(layer, inputs, proj, training=None):
    """The same as :func:`keras_forward_and_grads` for a lamina layer."""
    xs = _leaves(inputs)
    with lamina.GradientTape() as tape:
        tape.watch(xs)
        out = _call(layer, inputs, training)
        loss = lamina.ops.sum(lamina.ops.multiply(out, proj))
    grads = tape.gradient(loss, xs + layer.trainable_weights)
    dx = grads[:len(xs)]
    return np.asarray(unwrap(out)), (dx if isinstance(inputs, list) else dx[0]), grads[len(xs):]
