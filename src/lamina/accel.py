"""What lamina's optional numba kernels (the ``fast`` extra) share: the ``LAMINA_ACCELERATE`` switch, and a
compile-once cache that also remembers that numba is absent (so a missing numba costs one failed import)."""

from __future__ import annotations

import os

_OFF = ("0", "false", "no", "off")
# os.environ's own store (CPython's _Environ keeps it current through every assignment, putenv included) and the
# variable's key in it: a dict lookup of ~50 ns. os.environ.get encodes the key and decodes the value on each call,
# ~1 us, which six checks per call made 6 % of one MNIST image's inference.
_STORE = getattr(os.environ, "_data", None)
try:
    _KEY = os.environ.encodekey("LAMINA_ACCELERATE")
except AttributeError:  # pragma: no cover - not CPython's os._Environ
    _STORE = None
_SEEN: dict = {}  # raw value -> enabled


def enabled() -> bool:
    """Whether compiled paths may run: ``LAMINA_ACCELERATE`` is not ``0`` (``false``, ``no``, ``off``)."""
    if _STORE is None:  # pragma: no cover - not CPython's os._Environ
        return os.environ.get("LAMINA_ACCELERATE", "1").lower() not in _OFF
    raw = _STORE.get(_KEY)
    if raw is None:
        return True
    on = _SEEN.get(raw)
    if on is None:
        on = _SEEN[raw] = os.environ.decodevalue(raw).lower() not in _OFF
    return on


class CompiledOnce:
    """The dict of kernels that ``build()`` returns (it imports numba and compiles), built on first use and kept;
    ``{}`` once ``build`` raised ImportError. ``get()`` is None while the switch is off."""

    def __init__(self, build) -> None:
        self._build = build
        self.kernels: dict | None = None

    def get(self) -> dict | None:
        if not enabled():
            return None
        if self.kernels is None:
            try:
                self.kernels = self._build()
            except ImportError:  # numba is an optional extra
                self.kernels = {}
        return self.kernels
