"""The playground's data sets: 2-D points with labels 0/1, inside roughly [-1, 1] x [-1, 1].

Each generator uses NumPy alone and a ``numpy.random.Generator``, so the exported Python script can
carry the very same function (its source) and rebuild the same points from the same seed.
``noise`` is the standard deviation of Gaussian noise added to each coordinate.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GENERATORS", "LIMIT", "circles", "features", "gauss", "grid", "make", "moons", "spiral", "xor"]

LIMIT = 1.5  # the input plane drawn and probed: [-LIMIT, LIMIT] on both axes


def circles(n, noise, rng):
    """Two concentric circles: the outer (radius 1) is class 0, the inner (radius 0.5) class 1."""
    label = np.arange(n) % 2
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = np.where(label == 1, 0.5, 1.0)
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return points + rng.normal(0, noise, (n, 2)), label


def xor(n, noise, rng):
    """Uniform points; class 1 where x and y have the same sign (a gap of 0.05 keeps the axes clear)."""
    points = rng.uniform(-1, 1, (n, 2))
    points += np.sign(points) * 0.05
    label = (points[:, 0] * points[:, 1] > 0).astype(np.int64)
    return points + rng.normal(0, noise, (n, 2)), label


def gauss(n, noise, rng):
    """Two Gaussian blobs at (-0.5, -0.5) (class 0) and (0.5, 0.5) (class 1), spread 0.2 + noise."""
    label = np.arange(n) % 2
    centre = np.where(label[:, None] == 1, 0.5, -0.5)
    return centre + rng.normal(0, 0.2 + noise, (n, 2)), label


def spiral(n, noise, rng):
    """Two interleaved spirals, 1.75 turns each, radius growing from 0 to 1."""
    label = np.arange(n) % 2
    t = rng.uniform(0, 1, n)
    angle = 1.75 * 2 * np.pi * t + np.pi * label
    points = np.stack([t * np.sin(angle), t * np.cos(angle)], axis=1)
    return points + rng.normal(0, noise, (n, 2)), label


def moons(n, noise, rng):
    """scikit-learn's two moons, centred and scaled by 0.8 into the plane."""
    label = np.arange(n) % 2
    t = rng.uniform(0, np.pi, n)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    points = np.where(label[:, None] == 1, lower, upper)
    points = (points - [0.5, 0.25]) * 0.8
    return points + rng.normal(0, noise, (n, 2)), label


GENERATORS = {"circles": circles, "xor": xor, "gauss": gauss, "spiral": spiral, "moons": moons}


def features(points, names):
    """The network's inputs from 2-D points: any of x, y, x2, y2, xy, sinx (sin(pi x)), siny, in that order."""
    x, y = points[:, 0], points[:, 1]
    table = {"x": x, "y": y, "x2": x * x, "y2": y * y, "xy": x * y,
             "sinx": np.sin(np.pi * x), "siny": np.sin(np.pi * y)}
    return np.stack([table[name] for name in names], axis=1).astype("float32")


def make(dataset: str, n: int, noise: float, train_ratio: float, seed: int):
    """``(points_train, y_train), (points_test, y_test)``: the data set shuffled, then split."""
    rng = np.random.default_rng(seed)
    points, label = GENERATORS[dataset](n, noise, rng)
    order = rng.permutation(n)
    points, label = points[order].astype("float32"), label[order].astype("int64")
    cut = min(n - 1, max(1, int(round(n * train_ratio))))
    return (points[:cut], label[:cut]), (points[cut:], label[cut:])


def grid(size: int) -> np.ndarray:
    """``size * size`` points over the plane, row by row from the top (y = +LIMIT) as a picture is drawn."""
    axis = np.linspace(-LIMIT, LIMIT, size, dtype=np.float32)
    xs, ys = np.meshgrid(axis, axis[::-1])
    return np.stack([xs.ravel(), ys.ravel()], axis=1)
