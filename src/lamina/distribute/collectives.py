"""Collective operations with a deadline, on top of mpi4py's non-blocking calls.

A blocking ``MPI_Allreduce`` waits forever when a peer has died or hung. Here every collective is
posted non-blocking (``Iallreduce``, ``Ibcast``, ``Iallgather(v)``) and polled with ``Test()``: a short
busy-spin first (a healthy allreduce of a small model's gradients takes ~0.1 ms), then sleeps that
back off to 1 ms so a long wait does not burn a core. The wait ends with :class:`DistributedError`
when

* the deadline (``timeout`` seconds after this rank entered the collective) passes,
* MPI itself reports an error for the request, or
* the launcher signals a failed process: MPICH's Hydra ``mpiexec`` sends ``SIGUSR1`` to the
  surviving ranks when one dies (with ``-disable-auto-cleanup``; otherwise it kills them itself).

After such an error the communicator is unusable (a collective cannot be cancelled), so the object
is marked broken and the job is aborted with ``MPI_Abort`` when the process exits.
"""

from __future__ import annotations

import atexit
import os
import pickle
import signal
import sys
import threading
import time

import numpy as np

from lamina.distribute.errors import DistributedError

_SPIN_SECONDS = 0.002  # busy-poll this long before sleeping
_MAX_SLEEP = 0.001
_ABORT_GRACE_SECONDS = 0.5

_peer_failed = False  # set by the SIGUSR1 handler
_handler_installed = False


def _on_sigusr1(signum, frame) -> None:
    global _peer_failed
    _peer_failed = True


def install_failure_signal_handler() -> None:
    """Catch Hydra's failure notice (``SIGUSR1``) if nobody else handles that signal.

    Its default action would kill this process silently; caught, the next collective raises a
    clear error instead. Left alone when the program has its own handler or we are not on the main
    thread (signal handlers can only be set there).
    """
    global _handler_installed
    if _handler_installed or not hasattr(signal, "SIGUSR1"):
        return
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL:
        signal.signal(signal.SIGUSR1, _on_sigusr1)
        _handler_installed = True


class Collectives:
    """The timed collectives of one communicator (a ``comm.Dup()`` owned by the strategy)."""

    def __init__(self, comm, mpi, timeout: float | None):
        self.comm = comm
        self.mpi = mpi
        self.timeout = timeout
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.broken: str | None = None
        atexit.register(self._abort_if_broken)

    # ------------------------------------------------------------------ waiting

    def _check_usable(self, what: str) -> None:
        if self.broken is not None:
            raise DistributedError(
                f"lamina.distribute: cannot run the {what}: an earlier collective failed on this rank "
                f"({self.broken}). The MPI job will be aborted when this process exits; restart it "
                "from your last checkpoint."
            )

    def _wait(self, request, what: str) -> None:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        spin_until = time.perf_counter() + _SPIN_SECONDS
        nap = 1e-5
        while True:
            try:
                if request.Test():
                    return
            except self.mpi.Exception as exc:
                self._fail(what, f"MPI reported an error: {exc}")
            if _peer_failed:
                self._fail(what, "the MPI launcher signalled that another process of the job failed")
            now = time.monotonic()
            if deadline is not None and now > deadline:
                self._fail(what, f"it did not complete within timeout={self.timeout:g} s")
            if time.perf_counter() > spin_until:
                time.sleep(nap)
                nap = min(2 * nap, _MAX_SLEEP)

    def _fail(self, what: str, reason: str):
        self.broken = f"the {what} failed: {reason}"
        raise DistributedError(
            f"lamina.distribute: the {what} on rank {self.rank} of {self.size} failed: {reason}. "
            "Another rank has probably died or hung, or runs different code (a different number of "
            "steps, model or data). The MPI job will be aborted (MPI_Abort) when this process exits; "
            "restart it from your last checkpoint. To allow slower ranks more time, pass "
            "MPIStrategy(timeout=...)."
        )

    def _abort_if_broken(self) -> None:
        # MPI_Finalize would wait for the collective that never completes; abort the job instead,
        # which also stops ranks that are hung rather than dead.
        if self.broken is None:
            return
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        # Give the launcher a moment to forward the traceback: MPI_Abort tears the job down at once
        # and Hydra may drop output still in the pipe.
        time.sleep(_ABORT_GRACE_SECONDS)
        try:
            self.comm.Abort(1)
        finally:
            os._exit(1)  # if Abort returns (it may, under some launchers), still never finalize

    # ------------------------------------------------------------------ operations

    def allreduce_sum(self, send: np.ndarray, recv: np.ndarray | None, what: str) -> None:
        """``recv = sum over ranks of send`` (same shape and dtype everywhere); ``recv=None``: in place."""
        self._check_usable(what)
        if recv is None:
            send, recv = self.mpi.IN_PLACE, send
        self._wait(self.comm.Iallreduce(send, recv, op=self.mpi.SUM), what)

    def bcast(self, buf: np.ndarray, what: str, root: int = 0) -> None:
        """Overwrite ``buf`` on every rank with root's ``buf``."""
        self._check_usable(what)
        self._wait(self.comm.Ibcast(buf, root=root), what)

    def allgather_int(self, value: int, what: str) -> np.ndarray:
        """Every rank's ``value``, in rank order (int64)."""
        self._check_usable(what)
        send = np.array([value], dtype=np.int64)
        recv = np.empty(self.size, dtype=np.int64)
        self._wait(self.comm.Iallgather(send, recv), what)
        return recv

    def allgather_bytes(self, data: np.ndarray, what: str) -> list[np.ndarray]:
        """Every rank's 1-D uint8 ``data`` (lengths may differ), as a list in rank order."""
        data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
        counts = self.allgather_int(data.size, what)
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        recv = np.empty(int(counts.sum()), dtype=np.uint8)
        byte = self.mpi.BYTE
        self._wait(self.comm.Iallgatherv([data, byte], [recv, (counts, displs), byte]), what)
        return [recv[d:d + c] for d, c in zip(displs.tolist(), counts.tolist())]

    def allgather_object(self, obj, what: str) -> list:
        """Every rank's picklable ``obj``, in rank order."""
        payload = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8)
        return [pickle.loads(part.tobytes()) for part in self.allgather_bytes(payload, what)]

    def bcast_object(self, obj, what: str, root: int = 0):
        """Root's picklable ``obj`` on every rank."""
        payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL) if self.rank == root else b""
        size = np.array([len(payload)], dtype=np.int64)
        self.bcast(size, what, root)
        buf = np.frombuffer(payload, dtype=np.uint8).copy() if self.rank == root else \
            np.empty(int(size[0]), dtype=np.uint8)
        self.bcast(buf, what, root)
        return obj if self.rank == root else pickle.loads(buf.tobytes())
