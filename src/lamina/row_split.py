"""Work on blocks of batch rows on several threads, with BLAS held at one thread meanwhile.

OpenBLAS threads only the matrix products, and at a convnet's or a recurrent layer's sizes even those
gain little from a second core; the copies, the Winograd transforms, the pooling and the gate arithmetic
around them run on one. Rows of a batch are independent in most layers, so the batch is cut into blocks
that a pool of threads works through (NumPy's copies, the numba kernels (``nogil``) and BLAS release the
GIL). BLAS is held at one thread while any blocks run, so that the block threads and OpenBLAS's own
(spinning) threads do not oversubscribe the cores: on a loaded machine that made a convnet's predict 5x
slower. Holding BLAS needs threadpoolctl (the ``fast`` extra); without it :func:`workers` is 1 and blocks
run one after another on the caller's thread.

Used by Sequential's inference plan (:func:`split_rows`), the compiled training step's convolution and
pooling nodes, and the compiled recurrent loops (:func:`run`).
"""

from __future__ import annotations

import contextlib
import os
import threading

import numpy as np

# Fewest rows per thread: below, a block's fixed Python steps weigh more than the work shared out.
MIN_ROWS_PER_WORKER = 32
# Rows per block: a block's feature maps stay near the cache (the MNIST convnet's predict of 10,000 images on
# two threads, in one run: 0.238 s in 32-row blocks, 0.195 s in 64, 0.178 s in 128, 0.180 s in 256; with its
# first map written out whole, before the fused first layer, 1024-row blocks had taken twice 64-row ones).
BLOCK_ROWS = 128
THREAD_PREFIX = "lamina-rows"
# Input values of a call at most which a convolution stack runs with BLAS at one thread, split or not: one
# 28x28 image through the MNIST convnet took 108 us with OpenBLAS's two threads and 91 us with one on a quiet
# machine, 12 ms against 91 us on a loaded one (spinning threads); larger single images keep BLAS's threads.
SMALL_CALL = 1 << 16

_STATE = {"blas": None, "pool": None, "workers": 0, "pid": None}
_LOCK = threading.Lock()
_HELD = [0, {}]  # blocks in flight; each BLAS library's thread count before the first took it to one


def blas_controllers() -> list:
    """threadpoolctl's controllers of the loaded BLAS libraries ([] without threadpoolctl)."""
    if _STATE["blas"] is None:
        try:
            from threadpoolctl import ThreadpoolController  # optional extra (lamina[fast])
        except ImportError:
            _STATE["blas"] = []
        else:
            _STATE["blas"] = list(ThreadpoolController().select(user_api="blas").lib_controllers)
    return _STATE["blas"]


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def in_block() -> bool:
    """Is this thread one of the pool's? A block's own split then stays on it: the pool never waits on itself."""
    return threading.current_thread().name.startswith(THREAD_PREFIX)


def workers(rows: int) -> int:
    """Threads to share ``rows`` rows: the BLAS library's thread count (it follows ``OPENBLAS_NUM_THREADS`` and
    threadpoolctl's limits), capped by the usable cores and by :data:`MIN_ROWS_PER_WORKER` rows each; 1
    without threadpoolctl or inside a block."""
    blas = blas_controllers()
    if rows < 2 * MIN_ROWS_PER_WORKER or not blas or in_block():
        return 1
    held = _HELD[1]
    threads = max(held.get(id(c), c.num_threads) for c in blas)
    return max(1, min(threads, usable_cores(), rows // MIN_ROWS_PER_WORKER))


def _hold_blas(enter: bool) -> None:
    """BLAS at one thread while any blocks run (nested and concurrent holds counted), then as before."""
    with _LOCK:
        if enter:
            _HELD[0] += 1
            if _HELD[0] == 1:
                for c in blas_controllers():
                    _HELD[1][id(c)] = c.num_threads
                    c.set_num_threads(1)
            return
        _HELD[0] -= 1
        if _HELD[0] == 0:
            for c in blas_controllers():
                c.set_num_threads(_HELD[1].pop(id(c), c.num_threads))


@contextlib.contextmanager
def blas_held():
    """BLAS at one thread inside the block (a whole training step whose convolutions split, say: OpenBLAS's
    threads woken for a small product between two splits would spin against the block threads)."""
    _hold_blas(True)
    try:
        yield
    finally:
        _hold_blas(False)


def _pool(n: int):
    """The shared thread pool, with at least ``n`` threads."""
    from concurrent.futures import ThreadPoolExecutor  # lazy: only a split uses it

    with _LOCK:
        if _STATE["pool"] is None or _STATE["workers"] < n or _STATE["pid"] != os.getpid():
            if _STATE["pid"] != os.getpid():  # a forked child: the parent's pool threads do not exist here
                _STATE["pool"] = None
            _STATE["pid"] = os.getpid()
            if _STATE["pool"] is not None:
                _STATE["pool"].shutdown(wait=False)  # its queued blocks still run
            _STATE["pool"] = ThreadPoolExecutor(max_workers=n, thread_name_prefix=THREAD_PREFIX)
            _STATE["workers"] = n
        return _STATE["pool"]


def spans(rows: int, blocks: int) -> list:
    """``blocks`` (at most ``rows``, at least 1) contiguous ``(start, stop)`` row ranges of near-equal size."""
    blocks = max(1, min(rows, blocks))
    bounds = [rows * i // blocks for i in range(blocks + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def run(tasks: list, n: int) -> list:
    """The results of the callables ``tasks``, in order, computed by ``n`` threads while BLAS is held at one
    (``n <= 1``: in turn on this thread). Every task has finished (or failed) before this returns or raises
    the first task's error, and BLAS has its threads back."""
    if n <= 1 or len(tasks) <= 1:
        return [task() for task in tasks]
    futures = []
    _hold_blas(True)
    try:
        pool = _pool(n)
        futures = [pool.submit(task) for task in tasks]
        return [f.result() for f in futures]
    finally:
        for f in futures:  # every block done before BLAS gets its threads back
            f.exception()
        _hold_blas(False)


def split_rows(fn, x: np.ndarray, n: int) -> np.ndarray:
    """``fn(x)`` computed block by block: ``x``'s rows cut into blocks of about :data:`BLOCK_ROWS` (at least
    ``n`` blocks), which ``n`` threads take in turn (:func:`run`), and the results written in order into one
    array. ``fn`` must treat rows independently and return one array with a row per input row. Small blocks
    keep each block's feature maps in cache, and a thread slowed by other work on the machine takes fewer."""
    parts = spans(len(x), max(n, -(-len(x) // BLOCK_ROWS)))
    outs = run([lambda a=a, b=b: fn(x[a:b]) for a, b in parts], n)
    if len(outs) == 1:
        return outs[0]
    out = np.empty((len(x), *outs[0].shape[1:]), np.result_type(*outs))
    for (a, b), part in zip(parts, outs):
        out[a:b] = part
    return out
