"""A generic gradient check: the tape's gradient against central differences in float64.

``check_gradients(f, *arrays)`` runs ``f`` on float64 copies of ``arrays`` under a GradientTape,
reduces the output with a fixed random projection (so every output element matters), and compares
each input's gradient with (f(x + h) - f(x - h)) / 2h element by element.
"""

from __future__ import annotations

import numpy as np

import lamina
from lamina.autodiff import unwrap


def _projected(f, args, proj):
    out = f(*args)
    return float(np.sum(np.asarray(unwrap(out), dtype=np.float64) * proj))


def check_gradients(f, *arrays, h=1e-6, rtol=1e-4, atol=1e-6, seed=0):
    """Assert that the tape gradient of ``f`` matches finite differences for every input."""
    xs = [np.array(a, dtype=np.float64) for a in arrays]
    variables = [lamina.Variable(x, dtype="float64") for x in xs]
    with lamina.GradientTape() as tape:
        out = f(*variables)
    out_v = np.asarray(unwrap(out), dtype=np.float64)
    proj = np.random.default_rng(seed).standard_normal(out_v.shape)
    with lamina.GradientTape() as tape:
        out = f(*variables)
        loss = lamina.ops.sum(lamina.ops.multiply(out, proj))
    grads = tape.gradient(loss, variables)
    for i, (x, g) in enumerate(zip(xs, grads)):
        assert g is not None, f"input {i}: no gradient"
        assert g.shape == x.shape, f"input {i}: gradient shape {g.shape} != {x.shape}"
        num = np.zeros_like(x)
        flat = x.reshape(-1)
        for j in range(flat.size):
            old = flat[j]
            flat[j] = old + h
            up = _projected(f, xs, proj)
            flat[j] = old - h
            down = _projected(f, xs, proj)
            flat[j] = old
            num.reshape(-1)[j] = (up - down) / (2 * h)
        np.testing.assert_allclose(g, num, rtol=rtol, atol=atol, err_msg=f"input {i}")
