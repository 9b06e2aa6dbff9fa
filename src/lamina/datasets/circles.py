"""Two concentric circles, the classic toy problem a linear model cannot separate."""

from __future__ import annotations

import numbers

import numpy as np

from lamina import backend

__all__ = ["make_circles"]


def make_circles(
    n_samples: int = 100, noise: float | None = None, factor: float = 0.8, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Points on two concentric circles, scikit-learn's ``make_circles`` definition.

    The outer circle (label 0) has radius 1 and ``n_samples // 2`` points; the inner circle (label 1)
    has radius ``factor`` and the rest. Each circle's points sit at equally spaced angles
    ``2*pi*k/m``: ``x = r*(cos t, sin t)``. The samples are shuffled, then Gaussian noise of
    standard deviation ``noise`` is added to every coordinate.

    Args:
        n_samples: total number of points, at least 2.
        noise: standard deviation of the Gaussian noise, or None for none.
        factor: inner radius over outer radius, in (0, 1).
        seed: seed of the shuffle and noise; None uses lamina's global generator
            (``lamina.utils.set_random_seed``). The same seed gives identical data.

    Returns:
        ``x`` float32 of shape ``(n_samples, 2)`` and ``y`` int64 of shape ``(n_samples,)``.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 2:
        raise ValueError(
            f"make_circles: `n_samples` must be an integer >= 2. Received: n_samples={n_samples!r}"
        )
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not 0 < factor < 1:
        raise ValueError(
            f"make_circles: `factor` (inner radius / outer radius) must be in the open interval (0, 1). "
            f"Received: factor={factor!r}"
        )
    if noise is not None and (
        isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not np.isfinite(noise) or noise < 0
    ):
        raise ValueError(
            f"make_circles: `noise` must be None or a finite number >= 0. Received: noise={noise!r}"
        )
    rng = backend.make_rng(seed)
    n_outer = int(n_samples) // 2
    n_inner = int(n_samples) - n_outer
    # Float64 for the trigonometry and noise, then one cast: float32 out, no float32 rounding twice.
    t_outer = np.linspace(0.0, 2.0 * np.pi, n_outer, endpoint=False)
    t_inner = np.linspace(0.0, 2.0 * np.pi, n_inner, endpoint=False)
    x = np.concatenate(
        [
            np.stack([np.cos(t_outer), np.sin(t_outer)], axis=1),
            float(factor) * np.stack([np.cos(t_inner), np.sin(t_inner)], axis=1),
        ]
    )
    y = np.concatenate([np.zeros(n_outer, dtype=np.int64), np.ones(n_inner, dtype=np.int64)])
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    if noise is not None:
        x = x + rng.normal(scale=float(noise), size=x.shape)
    return x.astype(np.float32), y
