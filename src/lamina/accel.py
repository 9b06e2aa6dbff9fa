"""What lamina's optional numba kernels (the ``fast`` extra) share: the ``LAMINA_ACCELERATE`` switch, and a
compile-once cache that also remembers that numba is absent (so a missing numba costs one failed import)."""

from __future__ import annotations

import os


def enabled() -> bool:
    """Whether compiled paths may run: ``LAMINA_ACCELERATE`` is not ``0`` (``false``, ``no``, ``off``)."""
    return os.environ.get("LAMINA_ACCELERATE", "1").lower() not in ("0", "false", "no", "off")


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
