"""``Progbar``: Keras's terminal progress bar (``keras.utils.Progbar``)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable

import numpy as np

from lamina import backend
from lamina.callbacks._io import print_msg

_GLYPH = "\u2501"  # the heavy horizontal line Keras draws the bar with
_BOLD, _GREEN, _WHITE, _RESET = "\x1b[1m", "\x1b[32m", "\x1b[37m", "\x1b[0m"


def _stream_is_dynamic() -> bool:
    """True where ``\\r`` redraws a line in place: a terminal, Jupyter, or PyCharm's console; never
    while interactive logging is disabled (lines then go to a log, written once each)."""
    if not backend.interactive_logging():
        return False
    stream = sys.stdout
    isatty = getattr(stream, "isatty", None)
    try:
        if isatty is not None and isatty():
            return True
    except (ValueError, OSError):  # a closed or detached stream
        return False
    return "ipykernel" in sys.modules or "PYCHARM_HOSTED" in os.environ


def format_metric(value) -> str:
    """Keras's metric format: 4 decimals, or scientific notation when ``|value| <= 1e-3``."""
    if isinstance(value, (str, bytes)):
        return str(value)
    try:
        value = float(np.mean(value))
    except (TypeError, ValueError):
        return str(value)
    return f"{value:.4f}" if abs(value) > 1e-3 else f"{value:.4e}"


def format_time(time_per_unit: float, unit_name: str) -> str:
    """``" 3s/step"``, ``" 2ms/step"`` or ``" 450us/step"`` (leading space, as Keras)."""
    if time_per_unit >= 1 or time_per_unit == 0:
        return f" {time_per_unit:.0f}s/{unit_name}"
    if time_per_unit >= 1e-3:
        return f" {time_per_unit * 1e3:.0f}ms/{unit_name}"
    return f" {time_per_unit * 1e6:.0f}us/{unit_name}"


def _format_eta(eta: float) -> str:
    if eta > 3600:
        return f"{int(eta // 3600)}:{int(eta % 3600 // 60):02d}:{int(eta % 60):02d}"
    if eta > 60:
        return f"{int(eta // 60)}:{int(eta % 60):02d}"
    return f"{int(eta)}s"


class Progbar:
    """A live progress bar: ``  32/1875 ━━━━━━━━━━━━━━━━━━━━ 1s 2ms/step - loss: 0.6931``.

    On a terminal (``sys.stdout.isatty()``) the line is redrawn in place with ``\\r`` at most once per
    ``interval`` seconds; on a pipe or a log file only the final line is written, without colour
    codes. ``verbose=2`` writes one summary line when the bar finishes.

    Metrics in ``stateful_metrics`` are shown as given; the others are averaged over the steps seen,
    weighted by how many steps each update covered. (``stateless_metrics`` is the opposite list;
    pass at most one of the two.)

    Args:
        target: total number of steps, or None if unknown.
        width: bar width in characters.
        verbose: 0 (silent), 1 (live bar) or 2 (one line at the end).
        interval: minimum seconds between redraws.
        stateful_metrics: names of metrics shown as-is instead of averaged.
        stateless_metrics: names of metrics that are averaged; all others are shown as-is.
        unit_name: what a step is called in the timing (``"step"``, ``"sample"``).
    """

    def __init__(
        self,
        target: int | None,
        width: int = 20,
        verbose: int = 1,
        interval: float = 0.05,
        stateful_metrics: Iterable[str] | None = None,
        stateless_metrics: Iterable[str] | None = None,
        unit_name: str = "step",
    ):
        if stateful_metrics is not None and stateless_metrics is not None:
            raise ValueError(
                "Progbar: pass only one of `stateful_metrics` (names shown as-is; the rest are averaged) "
                "or `stateless_metrics` (names averaged; the rest are shown as-is). "
                f"Received: stateful_metrics={stateful_metrics!r}, stateless_metrics={stateless_metrics!r}"
            )
        if verbose not in (0, 1, 2):
            raise ValueError(f"Progbar: `verbose` must be 0, 1 or 2. Received: verbose={verbose!r}")
        if target is not None and (not isinstance(target, (int, np.integer)) or target < 0):
            raise ValueError(
                f"Progbar: `target` must be a non-negative integer or None. Received: target={target!r}"
            )
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        if stateless_metrics is not None:
            self.stateful_metrics = None
            self.stateless_metrics = set(stateless_metrics)
        else:
            self.stateful_metrics = set(stateful_metrics or ())
            self.stateless_metrics = None
        self._dynamic_display = _stream_is_dynamic()
        self._seen_so_far = 0
        self._values: dict[str, list] = {}  # name -> [weighted sum, weight]
        self._values_order: list[str] = []
        self._start = time.time()
        self._last_update = 0.0
        self._time_after_first_step: float | None = None
        self._prev_total_width = 0

    def update(self, current: int, values=None, finalize: bool | None = None) -> None:
        """Record progress up to step ``current`` and redraw if due.

        Args:
            current: index of the current step (1-based count of steps done).
            values: list of ``(name, value)`` pairs for the last step(s).
            finalize: whether this is the last update; default ``current >= target``.
        """
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        if values:
            self._record(current, values, finalize)
        self._seen_so_far = current

        now = time.time()
        time_per_unit = self._estimate_step_duration(current, now)
        if self.verbose == 1:
            if not finalize and (not self._dynamic_display or now - self._last_update < self.interval):
                return  # throttled, or a pipe: only the final line is written there
            self._draw(current, now, time_per_unit, finalize)
        elif self.verbose == 2 and finalize and self.target:
            line = f"{self._count(current)} - {now - self._start:.0f}s -"
            line += format_time(time_per_unit, self.unit_name) + self._metrics_text()
            print_msg(line)
        self._last_update = now

    def add(self, n: int, values=None) -> None:
        """Advance the bar by ``n`` steps."""
        self.update(self._seen_so_far + n, values)

    def _record(self, current: int, values, finalize: bool) -> None:
        for name, value in values:
            if name not in self._values:
                self._values_order.append(name)
            if self.stateful_metrics is not None:
                averaged = name not in self.stateful_metrics
            else:
                averaged = name in self.stateless_metrics
            if averaged and not finalize:
                # Weight by the steps this update covers, so sparse updates still average correctly.
                steps = max(current - self._seen_so_far, 1)
                entry = self._values.get(name)
                if entry is None:
                    self._values[name] = [value * steps, steps]
                else:
                    entry[0] += value * steps
                    entry[1] += steps
            else:
                # Shown as given; a finalizing update carries the epoch's aggregated value.
                self._values[name] = [value, 1]

    def _count(self, current: int) -> str:
        digits = len(str(int(self.target)))
        return f"{int(current):>{digits}d}/{self.target}"

    def _metrics_text(self) -> str:
        parts = []
        for name in self._values_order:
            total, weight = self._values[name]
            if isinstance(total, (str, bytes)):
                parts.append(f" - {name}: {total}")
            else:
                parts.append(f" - {name}: {format_metric(np.mean(total) / max(1, weight))}")
        return "".join(parts)

    def _draw(self, current: int, now: float, time_per_unit: float, finalize: bool) -> None:
        color = self._dynamic_display  # escape codes only where a terminal will interpret them
        if self.target:
            count = self._count(current)
            done = min(int(self.width * current / self.target), self.width)
            if color:
                bar = f"{_BOLD}{count}{_RESET} "
                if done > 0:
                    bar += f"{_GREEN}{_GLYPH * done}{_RESET}"
                bar += f"{_WHITE}{_GLYPH * (self.width - done)}{_RESET}"
            else:
                bar = f"{count} {_GLYPH * done}{'.' * (self.width - done)}"
            visible = len(count) + 1 + self.width
        else:
            bar = f"{int(current):7d}/Unknown"
            visible = len(bar)

        if self.target and not finalize:
            clock = _format_eta(time_per_unit * (self.target - current))
        else:
            clock = f"{now - self._start:.0f}s"
        info = format_time(time_per_unit, self.unit_name) + self._metrics_text()
        visible += 1 + len(clock) + len(info)
        line = bar + (f" {_BOLD}{clock}{_RESET}" if color else f" {clock}") + info

        if self._dynamic_display:
            # Pad with spaces to wipe the tail of a longer previous line.
            line = "\r" + line + " " * max(self._prev_total_width - visible, 0)
            print_msg(line, line_break=finalize)
        else:
            print_msg(line)
        self._prev_total_width = visible

    def _estimate_step_duration(self, current: int, now: float) -> float:
        """Seconds per step, ignoring the first step (it includes one-off setup) once there are more."""
        if not current:
            return 0.0
        if self._time_after_first_step is not None and current > 1:
            per_unit = (now - self._time_after_first_step) / (current - 1)
        else:
            per_unit = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return per_unit
