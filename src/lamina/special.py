"""Special functions shared by :mod:`lamina.ops` and :mod:`lamina.activations`.

Plain float64 NumPy (no graph, no dtype policy): callers cast in and out and record gradients.
This module imports nothing from lamina, so both ``ops`` and ``activations`` can use it.
"""

from __future__ import annotations

import math

import numpy as np

TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)

# Maclaurin coefficients of erf(x) * sqrt(pi) / 2 = sum_n (-1)^n x^(2n+1) / (n! (2n+1)), n = 0..10.
_ERF_SERIES = tuple((-1) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(11))
_ERF_SERIES_BELOW = 0.5  # |x| under this: the series (its 11th term is < 1e-16 of the sum)


def erfc(x) -> np.ndarray:
    """``erfc(x) = 1 - erf(x)`` in float64, relative error below 1.2e-7 wherever the result is a
    normal float64 (x < 26.5; beyond, it underflows to 0 a little before the true value does).

    Numerical Recipes' Chebyshev fit ``erfc(|x|) = t exp(-x^2 + P(t))``, ``t = 1 / (1 + |x|/2)``,
    and ``erfc(-x) = 2 - erfc(x)``: it keeps its relative accuracy deep in the right tail, where
    ``1 - erf(x)`` would cancel (it underflows to 0 past x = 27). ``erfc(+inf) = 0``,
    ``erfc(-inf) = 2``, NaN stays NaN; no NumPy warnings.
    """
    x = np.asarray(x, dtype=np.float64)
    z = np.abs(x)
    # For huge |x|, z*z overflows to inf and t, exp underflow: each gives the exact limit, 0.
    with np.errstate(over="ignore", under="ignore"):
        t = 1.0 / (1.0 + 0.5 * z)
        poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
            -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
                -0.82215223 + t * 0.17087277))))))))
        r = t * np.exp(poly)
    return np.where(x >= 0, r, 2.0 - r)


def erf(x) -> np.ndarray:
    """The error function ``2/sqrt(pi) * integral_0^x exp(-t^2) dt`` in float64.

    Relative error below 1.2e-7 everywhere: a Maclaurin series for ``|x| < 0.5`` (where ``1 - erfc``
    would lose the small values' relative precision), ``sign(x) (1 - erfc(|x|))`` beyond.
    ``erf(+-inf) = +-1``, ``erf(-0.0) = -0.0``, NaN stays NaN; no NumPy warnings.
    """
    x = np.asarray(x, dtype=np.float64)
    z = np.abs(x)
    small = z < _ERF_SERIES_BELOW
    zs = np.where(small, x, 0.0)  # the series only sees small values, so it cannot overflow
    x2 = zs * zs
    series = np.zeros_like(zs)
    for c in reversed(_ERF_SERIES):
        series = series * x2 + c
    series *= zs * TWO_OVER_SQRT_PI
    big = np.copysign(1.0 - erfc(z), x)
    return np.where(small, series, big)
