"""``MonitorCallback``: shared base of the callbacks that watch one metric for improvement."""

from __future__ import annotations

import warnings

import numpy as np

from lamina import ops
from lamina.callbacks.callback import Callback

# Fallback when the model's metric objects do not say which way is better: the words Keras's own
# metric names are made of, whose direction is fixed. Matched as whole "_"-separated words so that,
# say, "previous_loss" is not read as containing "iou".
_UP_WORDS = frozenset(
    "acc accuracy auc precision recall f1 fbeta iou r2 similarity correlation sensitivity specificity".split()
)
_DOWN_WORDS = frozenset(
    "loss error crossentropy hinge divergence poisson logcosh huber mse mae mape msle".split()
)


def _iter_metrics(metrics, depth: int = 0):
    """Every metric object in ``model.metrics``, descending into containers that hold ``.metrics``."""
    for m in metrics or ():
        inner = getattr(m, "metrics", None)
        if isinstance(inner, (list, tuple)) and depth < 4:
            yield from _iter_metrics(inner, depth + 1)
        yield m


def _direction_from_name(name: str) -> str | None:
    words = name.lower().split("_")
    if words[-1] == "loss":
        return "down"
    if "io_u" in name or any(w in _UP_WORDS for w in words):  # MeanIoU is named "mean_io_u"
        return "up"
    if any(w in _DOWN_WORDS for w in words):
        return "down"
    return None


class MonitorCallback(Callback):
    """Base for callbacks that monitor a metric: picks ``<`` or ``>`` from ``mode`` and applies ``min_delta``.

    ``monitor_op`` is ``ops.less`` or ``ops.greater``, as in Keras.

    In ``"auto"`` mode ``loss`` (and ``val_loss``) is minimised; other names take the direction of the
    model's metric of that name (its ``_direction``), else of a known Keras metric name (accuracy,
    AUC, precision, ... are maximised; errors and crossentropies minimised). An improvement is
    ``current - min_delta > best`` when maximising and ``current + min_delta < best`` when minimising.
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", baseline=None, min_delta=0):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            warnings.warn(
                f"{type(self).__name__} mode '{mode}' is unknown, fallback to auto mode.", stacklevel=3
            )
            mode = "auto"
        self.monitor = monitor
        self.mode = mode
        self.best = baseline
        self.min_delta = abs(min_delta)
        self.monitor_op = None

    def _set_monitor_op(self) -> None:
        if self.mode == "min":
            self.monitor_op = ops.less
        elif self.mode == "max":
            self.monitor_op = ops.greater
        else:
            name = self.monitor.removeprefix("val_")
            direction = "down" if name == "loss" else None
            if direction is None:
                try:
                    metrics = list(_iter_metrics(getattr(self.model, "metrics", None)))
                except Exception:  # a model whose metrics are not built yet
                    metrics = []
                for m in metrics:
                    if getattr(m, "name", None) == name and getattr(m, "_direction", None) in ("up", "down"):
                        direction = m._direction
            if direction is None:
                direction = _direction_from_name(name)
            if direction is None:
                raise ValueError(
                    f"{type(self).__name__} callback received monitor={self.monitor}, but cannot tell "
                    "whether that metric should be maximized or minimized. Pass `mode='max'` to monitor "
                    "the highest value or `mode='min'` for the lowest. "
                    f"Received: monitor={self.monitor!r}, mode='auto'"
                )
            self.monitor_op = ops.greater if direction == "up" else ops.less
        if self.monitor_op is ops.less:
            self.min_delta = -abs(self.min_delta)

    def _is_improvement(self, monitor_value, reference_value) -> bool:
        if reference_value is None:
            return True
        return bool(self.monitor_op(monitor_value - self.min_delta, reference_value))

    @staticmethod
    def _is_scalar(value) -> bool:
        return np.ndim(value) == 0
