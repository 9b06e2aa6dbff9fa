"""Hinge metrics: hinge, squared hinge and categorical hinge, averaged over all samples seen.

Each is the weighted mean of the matching loss function of :mod:`lamina.losses` (labels 0/1 become
-1/+1 for the binary two).
"""

from __future__ import annotations

from lamina import losses
from lamina.metrics.reduction_metrics import LossMetric


class Hinge(LossMetric):
    """Weighted mean of ``mean(max(1 - y * p, 0), -1)`` with labels in {-1, 1} (0/1 converted)."""

    def __init__(self, name: str = "hinge", dtype=None):
        super().__init__(fn=losses.hinge, name=name, dtype=dtype)
        self._direction = "down"


class SquaredHinge(LossMetric):
    """Weighted mean of ``mean(max(1 - y * p, 0)^2, -1)`` with labels in {-1, 1} (0/1 converted)."""

    def __init__(self, name: str = "squared_hinge", dtype=None):
        super().__init__(fn=losses.squared_hinge, name=name, dtype=dtype)
        self._direction = "down"


class CategoricalHinge(LossMetric):
    """Weighted mean of ``max(max((1 - y) * p) - sum(y * p) + 1, 0)`` for one-hot labels ``y``."""

    def __init__(self, name: str = "categorical_hinge", dtype=None):
        super().__init__(fn=losses.categorical_hinge, name=name, dtype=dtype)
        self._direction = "down"
