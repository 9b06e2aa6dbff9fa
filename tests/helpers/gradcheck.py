"""Gradient checks: the tape's gradients against central differences, swept over dtypes and an empty batch.

``check_gradients(f, *arrays)`` checks a function of arrays; ``layer_harness.check_layer_gradients``
checks a layer's input and trainable weights. Both reduce the output with a fixed random projection
``P`` (so every output element matters), ``L(x) = sum(f(x) * P)``, and sweep:

* float64: each gradient element against ``(L(x + h) - L(x - h)) / 2h`` (``assert_matches_finite_differences``);
* float32: the tape's gradient on float32 inputs is float32 and agrees with the float64 one to float32
  precision (differences in float32 would drown in rounding), see ``assert_float32_agrees``;
* an empty batch, where the caller allows it: inputs of shape ``(0, ...)`` give gradients of that shape.
"""

from __future__ import annotations

import numpy as np

import lamina
from lamina.autodiff import unwrap

F32_RTOL = 1e-3
F32_ATOL = 1e-4  # relative to the largest float64 gradient element (at least 1)


def numeric_gradient(projected, arr: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar ``projected()`` with respect to ``arr``, which it must read:
    ``arr`` is perturbed in place, one element at a time, and restored."""
    num = np.zeros(arr.shape, dtype=np.float64)
    flat = arr.reshape(-1)
    assert arr.size == 0 or np.shares_memory(flat, arr), "arr must be contiguous: it is perturbed in place"
    for j in range(flat.size):
        old = flat[j]
        flat[j] = old + h
        up = projected()
        flat[j] = old - h
        down = projected()
        flat[j] = old
        num.reshape(-1)[j] = (up - down) / (2 * h)
    return num


def assert_matches_finite_differences(projected, targets, grads, h: float = 1e-6, rtol: float = 1e-4,
                                      atol: float = 1e-6) -> None:
    """Each tape gradient in ``grads`` against :func:`numeric_gradient` of its ``(label, array)`` target."""
    for (label, arr), g in zip(targets, grads, strict=True):
        assert g is not None, f"{label}: no gradient"
        assert g.shape == arr.shape, f"{label}: gradient shape {g.shape} != {arr.shape}"
        np.testing.assert_allclose(g, numeric_gradient(projected, arr, h), rtol=rtol, atol=atol, err_msg=label)


def assert_float32_agrees(labels, grads32, grads64, rtol: float = F32_RTOL, atol: float = F32_ATOL) -> None:
    """float32 tape gradients are float32 and equal the float64 ones to float32 precision."""
    for label, g32, g64 in zip(labels, grads32, grads64, strict=True):
        assert g32 is not None, f"{label}: no gradient for float32 inputs"
        assert g32.dtype == np.float32, f"{label}: float32 inputs gave a {g32.dtype} gradient"
        scale = max(1.0, float(np.max(np.abs(g64), initial=0.0)))
        np.testing.assert_allclose(g32, g64, rtol=rtol, atol=atol * scale, err_msg=f"{label} (float32)")


def assert_empty_batch_gradients(targets, grads, zero: bool = False) -> None:
    """Gradients for an empty batch: present, of the target's shape, and zero where ``zero`` (weights:
    a sum over no samples does not depend on them)."""
    for (label, arr), g in zip(targets, grads, strict=True):
        assert g is not None, f"{label}: no gradient for an empty batch"
        assert g.shape == arr.shape, f"{label}: empty-batch gradient shape {g.shape} != {arr.shape}"
        if zero:
            np.testing.assert_array_equal(g, np.zeros(arr.shape), err_msg=f"{label} (empty batch)")


def projection(shape, seed: int = 0) -> np.ndarray:
    """The fixed float64 projection ``P`` that reduces an output of ``shape`` to a scalar."""
    return np.random.default_rng(seed).standard_normal(shape)


def _tape_gradients(f, arrays, proj):
    """Tape gradients of ``sum(f(*arrays) * proj)`` with respect to each array (as a Variable)."""
    dtype = arrays[0].dtype.name if arrays else "float64"
    variables = [lamina.Variable(a, dtype=a.dtype.name) for a in arrays]
    with lamina.GradientTape() as tape:
        loss = lamina.ops.sum(lamina.ops.multiply(f(*variables), proj.astype(dtype)))
    return tape.gradient(loss, variables)


def check_gradients(f, *arrays, h: float = 1e-6, rtol: float = 1e-4, atol: float = 1e-6, seed: int = 0,
                    float32: bool = True, empty_batch: bool = False) -> None:
    """Assert that the tape gradient of ``f`` matches finite differences for every input.

    ``float32=False`` skips the float32 sweep; ``empty_batch=True`` also runs every input cut to its
    first 0 rows (for functions whose first axis is a batch axis).
    """
    xs = [np.array(a, dtype=np.float64) for a in arrays]
    proj = projection(np.shape(unwrap(f(*xs))), seed)
    grads = _tape_gradients(f, xs, proj)

    def projected() -> float:
        return float(np.sum(np.asarray(unwrap(f(*xs)), dtype=np.float64) * proj))

    labels = [f"input {i}" for i in range(len(xs))]
    assert_matches_finite_differences(projected, list(zip(labels, xs)), grads, h=h, rtol=rtol, atol=atol)
    if float32:
        assert_float32_agrees(labels, _tape_gradients(f, [x.astype(np.float32) for x in xs], proj), grads)
    if empty_batch:
        empty = [x[:0] for x in xs]
        empty_proj = projection(np.shape(unwrap(f(*empty))), seed)
        assert_empty_batch_gradients(list(zip(labels, empty)), _tape_gradients(f, empty, empty_proj))
