"""``DistributedError``: a collective operation of a data-parallel run failed or timed out."""

from __future__ import annotations


class DistributedError(RuntimeError):
    """Raised on every surviving rank when a collective cannot complete.

    A rank that died, hung, or ran different code (another step count, another model) leaves the
    others waiting inside a collective. :class:`~lamina.distribute.MPIStrategy` waits at most its
    ``timeout`` (or less, when the MPI launcher reports the failure), then raises this error naming
    the operation; when the process exits the MPI job is aborted, so no rank is left hanging.
    """
