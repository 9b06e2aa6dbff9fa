"""Optional compiled kernels for the optimizers' flat updates (numba, imported lazily).

NumPy needs about a dozen passes over the weights for one Adam step (each ``*=``, ``+=``, ``sqrt``
is its own loop). A compiled loop does it in one, which matters when a small model's step is
only a few hundred microseconds long. The kernel performs the same float32 operations in the same
order as the NumPy path (no fast-math, so no fused multiply-adds), so both give the same weights;
``tests/test_accel.py`` checks that bit for bit.

Used only when numba is installed (the ``fast`` extra), the update is over one flat float32 buffer
with at least ``MIN_SIZE`` elements, and ``LAMINA_ACCELERATE`` is not ``0``. Importing numba and
compiling cost about a second once per process; ``cache=True`` keeps the compiled code on disk.
"""

from __future__ import annotations

import numpy as np

from lamina.accel import CompiledOnce

MIN_SIZE = 16384



def _compile() -> dict:
    import numba  # optional extra (lamina[fast]), imported on first use only

    # Serial on purpose: a parallel loop's worker threads fight OpenBLAS's for the same cores.
    @numba.njit(cache=True, fastmath=False, nogil=True, error_model="numpy")
    def adam(p, g, m, v, b1, one_b1, b2, one_b2, alpha, eps):  # pragma: no cover - compiled
        for i in range(p.shape[0]):
            gi = g[i]
            mi = m[i] * b1 + gi * one_b1
            vi = v[i] * b2 + (gi * gi) * one_b2
            m[i] = mi
            v[i] = vi
            p[i] -= (mi * alpha) / (np.sqrt(vi) + eps)

    @numba.njit(cache=True, fastmath=False, nogil=True, error_model="numpy")
    def flush(x, below):  # pragma: no cover - compiled
        for i in range(x.shape[0]):
            if abs(x[i]) < below:
                x[i] = 0

    return {"adam": adam, "flush": flush}


_COMPILED = CompiledOnce(_compile)


def kernel(name: str):
    """The compiled kernel ``name``, or None where numba is absent or acceleration is switched off."""
    compiled = _COMPILED.get()
    return compiled.get(name) if compiled else None
