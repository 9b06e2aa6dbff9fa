"""``MPIStrategy``: synchronous data-parallel training over MPI, and ``current()`` (the active scope).

Every rank runs the same script on the same arrays. Per step, rank ``r`` of ``N`` takes its ``b``
samples ``[i*b*N + r*b, i*b*N + (r+1)*b)`` of the epoch's permutation (the same permutation on every
rank, from a seed broadcast by rank 0), computes the gradient ``g_r`` of the mean loss over them, and
all ranks apply

    g = sum_r n_r * g_r / sum_r n_r

— the gradient of the mean loss over the global batch of ``b*N`` samples — so ``N`` ranks with batch
``b`` follow the same trajectory as one process with batch ``b*N`` (up to float rounding). The
weighted sum travels in ONE allreduce of one flat float32 buffer per step (with ``n_r`` in its last
slot); weights, optimizer state and metrics stay identical on every rank without further messages.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import zlib
from collections.abc import Iterator, Sequence

import numpy as np

from lamina import backend
from lamina.autodiff import unwrap
from lamina.distribute import _agreement
from lamina.distribute.errors import DistributedError

DEFAULT_TIMEOUT = 300.0
"""Seconds a rank waits inside one collective before it gives up (``MPIStrategy(timeout=...)``)."""

_scope_stack: list[MPIStrategy] = []


def current() -> MPIStrategy | None:
    """The strategy whose ``scope()`` is active (innermost), else None."""
    return _scope_stack[-1] if _scope_stack else None


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:  # the optional `mpi` extra
        raise ImportError(
            "MPIStrategy needs mpi4py and an MPI library. Install them with "
            "`pip install \"lamina[mpi]\"` (mpi4py and the mpich wheel) or, on a cluster, "
            "`pip install mpi4py` built against the site's MPI (load its module first). "
            f"Received: ImportError({exc})"
        ) from exc
    return MPI


def _launcher_size() -> int:
    """How many processes the launcher says it started (0 if it does not say)."""
    for key in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"):
        value = os.environ.get(key)
        if value and value.isdigit():
            return int(value)
    return 0


class MPIStrategy:
    """Synchronous data-parallel training over MPI (``mpiexec -n N python train.py``).

    Use it like a Keras distribution strategy::

        strategy = lamina.distribute.MPIStrategy()
        with strategy.scope():
            model = build_model()
            model.compile(optimizer=..., loss=..., metrics=[...])
        model.fit(x, y, batch_size=64, epochs=5)   # batch_size is per rank

    or pass it to ``fit(..., strategy=strategy)``. Rank 0's weights (and optimizer state, if built)
    are broadcast when the model is attached and at the start of each ``fit``. Each rank trains on
    its share of every global batch; gradients are averaged with one allreduce per step; metrics
    and validation are reduced across ranks, so every rank sees the same logs (callbacks such as
    ``EarlyStopping`` stop all ranks at the same epoch); only rank 0 prints progress and runs
    ``ModelCheckpoint`` / ``CSVLogger``. ``evaluate`` and ``predict`` split the data into contiguous
    blocks and return the full result on every rank. Each ``fit`` first checks that every rank trains
    alike (model, optimizer and its hyper-parameters, loss, metrics, data length, batch size, epochs)
    and otherwise raises the same :class:`~lamina.distribute.DistributedError` on every rank, naming
    what differs on which rank (:meth:`check_agreement`).

    ``batch_size`` is per rank: the global batch is ``batch_size * num_replicas_in_sync``. To keep
    the per-sample step size of a single-process run, scale the learning rate with
    :meth:`scale_learning_rate`.

    Args:
        comm: an mpi4py communicator (default ``MPI.COMM_WORLD``); the strategy works on its own
            duplicate, so its messages never mix with yours.
        timeout: seconds a rank waits inside one collective before raising
            :class:`~lamina.distribute.DistributedError` (default 300; ``None`` waits forever).
            A rank that died or hung then makes the others exit with that error instead of hanging;
            the MPI job is aborted when the process exits. Make it longer than the longest time one
            rank may run ahead of another (e.g. rank 0 writing a large checkpoint).
        seed: seed of the shared shuffling order. Default: rank 0 draws a fresh one from lamina's
            global generator at each ``fit`` (so ``lamina.utils.set_random_seed`` makes runs
            repeatable); given, one generator seeded with it (rank 0's value) serves all fits.

    Non-trainable state that layers update in training (BatchNormalization's moving statistics)
    is updated by each rank from its own shard and is not averaged; rank 0's copy is the one saved.
    Data given as a generator or iterable is not sharded: give each rank its own part (use
    :attr:`rank`) and the same number of steps.
    """

    def __init__(self, comm=None, timeout: float | None = DEFAULT_TIMEOUT, seed: int | None = None):
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(float(timeout)) or timeout <= 0:
                raise ValueError(
                    "MPIStrategy: `timeout` must be a positive number of seconds, or None to wait forever. "
                    f"Received: timeout={timeout!r}"
                )
            timeout = float(timeout)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"MPIStrategy: `seed` must be an integer or None. Received: seed={seed!r}")
        mpi = _import_mpi()
        from lamina.distribute import collectives  # lazy: it registers an atexit hook for MPI

        base = mpi.COMM_WORLD if comm is None else comm
        if not isinstance(base, mpi.Comm):
            raise TypeError(f"MPIStrategy: `comm` must be an mpi4py communicator. Received: comm={comm!r}")
        size = base.Get_size()
        launched = _launcher_size()
        if comm is None and size == 1 and launched > 1:
            raise DistributedError(
                f"MPIStrategy: the launcher started {launched} processes but MPI reports a world of 1: "
                "the `mpiexec` you ran belongs to a different MPI library than the one mpi4py loaded "
                f"({mpi.Get_library_version().splitlines()[0].strip()}). Use the mpiexec that comes "
                "with that library (for the mpich wheel: the one next to your `python`)."
            )
        self._mpi = mpi
        self._comm = base.Dup()
        self._timeout = timeout
        self._coll = collectives.Collectives(self._comm, mpi, timeout)
        self._rank = self._comm.Get_rank()
        self._size = self._comm.Get_size()
        collectives.install_failure_signal_handler()
        self._model = None
        self._shuffle = None
        self._unsynced_shuffle = None  # (generator, rank 0's seed) until on_fit_begin shares the seed
        if seed is not None:
            self._shuffle = np.random.default_rng(self._bcast_int(int(seed), "broadcast of the shuffle seed"))
        # Gradient reduction for variables the model's own FlatBuffer does not hold (a custom loop's
        # list): a gradients-only FlatBuffer, reused while the variables are the same.
        self._grad_buffer = None
        self._check_finite = False  # set when a TerminateOnNaN needs the synchronised decision
        self._grads_finite = True
        self._reduce_seconds = 0.0
        self._reduce_calls = 0

    # ------------------------------------------------------------------ identity

    @property
    def rank(self) -> int:
        """This process's index in ``[0, num_replicas_in_sync)``."""
        return self._rank

    @property
    def world_size(self) -> int:
        """The number of processes training together."""
        return self._size

    @property
    def num_replicas_in_sync(self) -> int:
        """Keras's name for :attr:`world_size`."""
        return self._size

    @property
    def is_chief(self) -> bool:
        """True on rank 0: the rank that prints and writes files."""
        return self._rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        """``(rank, world_size)``: which part of each global batch this rank takes."""
        return self._rank, self._size

    @property
    def timeout(self) -> float | None:
        return self._timeout

    @property
    def comm(self):
        """The strategy's own communicator (a duplicate of the one it was given)."""
        return self._comm

    def __repr__(self) -> str:
        return f"MPIStrategy(rank={self._rank}, world_size={self._size}, timeout={self._timeout})"

    # ------------------------------------------------------------------ user API

    @contextlib.contextmanager
    def scope(self) -> Iterator[MPIStrategy]:
        """Models compiled inside this block train with this strategy."""
        _scope_stack.append(self)
        try:
            yield self
        finally:
            _scope_stack.remove(self)

    def scale_learning_rate(self, optimizer_or_lr):
        """Linear scaling rule: multiply the learning rate by ``num_replicas_in_sync``.

        With ``N`` ranks the global batch is ``N`` times larger, so (Goyal et al., 2017) the
        learning rate is often scaled by ``N`` too, usually with a warm-up. Given a number, returns
        the scaled number; given an optimizer with a float learning rate, scales it in place and
        returns the optimizer.
        """
        n = self._size
        if isinstance(optimizer_or_lr, (int, float, np.integer, np.floating)) and \
                not isinstance(optimizer_or_lr, bool):
            return float(optimizer_or_lr) * n
        from lamina.optimizers import Optimizer  # lazy: optimizers load on first use (import cost)

        if isinstance(optimizer_or_lr, Optimizer):
            lr = optimizer_or_lr._learning_rate
            if not hasattr(lr, "assign"):
                raise TypeError(
                    "scale_learning_rate: this optimizer's learning rate is a schedule or a callable, "
                    "which cannot be scaled in place; build the schedule from a scaled "
                    f"initial_learning_rate instead. Received: learning_rate={lr!r}"
                )
            optimizer_or_lr.learning_rate = optimizer_or_lr.learning_rate * n
            return optimizer_or_lr
        raise TypeError(
            "scale_learning_rate expects a learning rate (a number) or an optimizer instance. "
            f"Received: {optimizer_or_lr!r}"
        )

    def collective_stats(self) -> dict:
        """Time spent in the gradient allreduce since the last ``fit`` began.

        ``seconds`` counts communication plus waiting for the slowest rank (load imbalance).
        """
        calls = self._reduce_calls
        return {"gradient_allreduce_calls": calls, "gradient_allreduce_seconds": self._reduce_seconds,
                "seconds_per_step": self._reduce_seconds / calls if calls else 0.0}

    # ------------------------------------------------------------------ trainer hooks

    def _attach(self, model) -> None:
        """Route ``model``'s fit/evaluate/predict through this strategy and its training step's
        gradients through :meth:`reduce_gradients` (a step hook: ``model.add_step_hook``); sync
        rank 0's weights."""
        previous = model._distribution
        if previous is not None and previous is not self and any(h is previous for h in model._step_hooks):
            model.remove_step_hook(previous)
        model._distribution = self
        if not any(h is self for h in model._step_hooks):
            model.add_step_hook(self)
        self._model = model
        if getattr(model, "built", False):
            self._broadcast_state(model, "broadcast of rank 0's weights (at compile)")

    def shuffle_rng(self) -> np.random.Generator:
        """The generator of this fit's permutations: the same stream on every rank.

        Rank 0 draws the seed here; every rank's generator is set to it in :meth:`on_fit_begin`, after
        :meth:`check_agreement`, so that no collective runs before that check.
        """
        if self._shuffle is not None:
            return self._shuffle
        seed = int(backend.rng().integers(2**63 - 1)) if self._rank == 0 else 0
        generator = np.random.default_rng(seed)
        self._unsynced_shuffle = (generator, seed)
        return generator

    def filter_callbacks(self, callbacks: list) -> list:
        """Rank 0 keeps every callback; the others drop those that print or write files."""
        from lamina.distribute._callbacks import filter_callbacks  # lazy: imports lamina.callbacks

        return filter_callbacks(list(callbacks), self)

    def on_fit_begin(self, model) -> None:
        """Share this fit's shuffle seed and rank 0's weights (and optimizer state) with every rank.

        The trainer calls :meth:`check_agreement` first, so these collectives run only on ranks that
        are known to train alike.
        """
        pending, self._unsynced_shuffle = self._unsynced_shuffle, None
        self._model = model
        self._reduce_seconds = 0.0
        self._reduce_calls = 0
        if pending is not None:
            generator, seed = pending
            shared = self._bcast_int(seed, "broadcast of the shuffle seed")
            if shared != seed:
                generator.bit_generator.state = np.random.default_rng(shared).bit_generator.state
        self._broadcast_state(model, "broadcast of rank 0's weights (at fit)")

    def check_agreement(self, model, train=None, batch_size=None, epochs=None, initial_epoch=0,
                        validation=None) -> None:
        """Raise :class:`DistributedError` on every rank when the ranks' fits differ.

        Called by ``fit`` before its first collective. ``train`` is fit's batch source, ``validation``
        its validation data. Compared: the model's layers (class, config without auto-numbered names,
        weight shapes), the optimizer with its hyper-parameters, the losses and metrics, and fit's
        data length, batch size, steps per epoch, epochs, initial epoch, shuffle mode and validation
        length. One allgather of a 32-byte digest when they agree; the full tables only to word the
        error, which every rank raises alike.
        """
        pending = self._unsynced_shuffle
        if pending is not None and getattr(train, "rng", None) is not pending[0]:
            # Drawn for an earlier fit that failed before on_fit_begin: sharing it now, on this rank
            # alone, would pair with another collective on the other ranks.
            self._unsynced_shuffle = None
        settings = _agreement.fit_settings(model, train, batch_size, epochs, initial_epoch, validation)
        mine = np.frombuffer(_agreement.digest(settings), dtype=np.uint8)
        digests = self._coll.allgather_bytes(mine, "check that the ranks' fit settings agree")
        if all(np.array_equal(d, digests[0]) for d in digests):
            return
        self._unsynced_shuffle = None  # this fit stops here, before its seed is shared
        tables = self._coll.allgather_object(settings, "exchange of the ranks' fit settings")
        raise DistributedError(_agreement.disagreement_message(tables))

    def reduce_gradients(self, grads: Sequence, variables: Sequence, n_local: int) -> list[np.ndarray]:
        """``sum_r n_r g_r / sum_r n_r`` over ranks, in one allreduce; ``None`` counts as zeros.

        The returned arrays are views into a buffer that the next call overwrites: the model's
        :class:`~lamina.optimizers.flat_buffer.FlatBuffer` when it holds exactly ``variables`` (so the
        optimizer updates from it without a copy), else one of the strategy's own.
        """
        buffer = self._model_buffer(variables) or self._gradient_buffer(variables)
        if buffer.holds_grads(grads):  # the compiled step's gradients, already in place: one pass
            self.reduce_flat_gradients(buffer.message, n_local)
            return buffer.grad_views
        buf, offsets, views = buffer.message, buffer.offsets, buffer.grad_views
        weight = buf.dtype.type(n_local)
        for g, start, var in zip(grads, offsets, variables):
            stop = start + int(var.size)
            part = buf[start:stop]
            if g is None or n_local == 0:
                part.fill(0)
            else:
                g = np.asarray(unwrap(g))
                if g.size != stop - start:
                    raise ValueError(f"Gradient for variable '{getattr(var, 'path', var)}' has the wrong "
                                     f"shape: expected {var.shape}. Received: gradient.shape={g.shape}")
                np.multiply(g.reshape(-1), weight, out=part, casting="unsafe")
        self._reduce_weighted_sums(buf, n_local)
        return views

    def _model_buffer(self, variables: Sequence):
        """The fitted model's flat buffer if it holds exactly ``variables``, in order; else None."""
        model = self._model
        buffer = None if model is None else vars(model).get("_flat_buffer")
        return buffer if buffer is not None and buffer.covers(variables) else None

    def reduce_buffer_gradients(self, buffer, n_local: int) -> None:
        """:meth:`reduce_flat_gradients` on a :class:`~lamina.optimizers.flat_buffer.FlatBuffer`: its
        ``grads`` (this rank's gradient of its mean loss) become the global average, sent in place
        with the sample count in the buffer's spare last slot."""
        self.reduce_flat_gradients(buffer.message, n_local)

    def reduce_flat_gradients(self, flat: np.ndarray, n_local: int) -> None:
        """In-place form of :meth:`reduce_gradients` for a step that keeps its gradients in one flat
        buffer: ``flat[:-1]`` holds this rank's gradient of its mean loss, ``flat[-1]`` is a spare
        slot; on return ``flat[:-1]`` is the global average (and ``flat[-1]`` the global count).

        No copy at all: a second buffer would push a small model's weights and optimizer slots out
        of the core's cache.
        """
        if not isinstance(flat, np.ndarray) or flat.ndim != 1 or not flat.flags.c_contiguous or flat.size < 1:
            raise ValueError("reduce_flat_gradients: `flat` must be a 1-D contiguous array with a spare last "
                             f"slot. Received: {type(flat).__name__} {getattr(flat, 'shape', '')}")
        body = flat[:-1]
        if n_local == 0:
            body.fill(0)
        else:
            body *= body.dtype.type(n_local)
        self._reduce_weighted_sums(flat, n_local)

    def _reduce_weighted_sums(self, buf: np.ndarray, n_local: int) -> None:
        """``buf[:-1]`` holds n_local * g: sum it over ranks in place (one allreduce, the count in the
        last slot), then divide by the global count."""
        buf[-1] = n_local
        t0 = time.perf_counter()
        self._coll.allreduce_sum(buf, None, "gradient allreduce")
        self._reduce_seconds += time.perf_counter() - t0
        self._reduce_calls += 1
        total = buf[-1]
        body = buf[:-1]
        if total > 0:
            np.divide(body, total, out=body)
        if self._check_finite:
            self._grads_finite = bool(np.isfinite(body).all())

    def reduce_metrics(self, metrics: Sequence) -> None:
        """Sum every metric's state across ranks in one allreduce, in place.

        All lamina metrics keep additive states (totals and counts, confusion counts), so the summed
        state gives the metric of the union of the ranks' samples. A state variable created with
        ``aggregation="mean"`` is averaged instead, and ``"only_first_replica"``/``"none"`` keep rank
        0's value.
        """
        metrics = self._agree_on_metrics(list(metrics))
        variables = [v for m in metrics for v in m.variables]
        if not variables:
            return
        sizes = [int(v.size) for v in variables]
        send = np.empty(sum(sizes), dtype=np.float64)  # exact for counts, once per epoch
        offset = 0
        for v, n in zip(variables, sizes):
            part = send[offset:offset + n]
            aggregation = getattr(v, "aggregation", "sum")
            if aggregation in ("only_first_replica", "none") and self._rank != 0:
                part.fill(0)
            else:
                part[:] = np.asarray(v.value, dtype=np.float64).reshape(-1)
                if aggregation == "mean":
                    part /= self._size
            offset += n
        recv = np.empty_like(send)
        self._coll.allreduce_sum(send, recv, "metric allreduce")
        offset = 0
        for v, n in zip(variables, sizes):
            v.assign(recv[offset:offset + n].reshape(v.shape).astype(v.dtype))
            offset += n

    def block_of(self, n: int) -> slice:
        """This rank's contiguous block of ``n`` samples (sizes differ by at most one)."""
        return slice(n * self._rank // self._size, n * (self._rank + 1) // self._size)

    def gather_blocks(self, outputs: list):
        """Concatenate each rank's predicted batches, then all ranks' blocks in rank order.

        Handles arrays, dicts and lists of arrays, and ranks whose block is empty.
        """
        local = _concat(outputs)
        meta = None if local is None else _describe(local)
        metas = self._coll.allgather_object(meta, "gather of the predict output layout")
        template = next((m for m in metas if m is not None), None)
        if template is None:
            return np.zeros((0,), dtype=backend.floatx())
        for r, m in enumerate(metas):
            if m is not None and m != template:
                raise DistributedError(
                    f"predict: rank {r} produced outputs of layout {m}, another rank {template}; every rank "
                    "must run the same model."
                )
        kind, keys, leaves = template
        local_leaves = _leaves_of(local, kind, keys) if local is not None else \
            [np.empty((0,) + tuple(trail), dtype=dt) for trail, dt in leaves]
        gathered = []
        for k, arr in enumerate(local_leaves):
            trail, dt = leaves[k]
            arr = np.ascontiguousarray(arr, dtype=dt)
            parts = self._coll.allgather_bytes(arr.view(np.uint8).reshape(-1),
                                               "gather of the predict outputs")
            flat = np.concatenate(parts) if len(parts) > 1 else parts[0]
            gathered.append(flat.view(dt).reshape((-1,) + tuple(trail)))
        if kind == "array":
            return gathered[0]
        if kind == "dict":
            return dict(zip(keys, gathered))
        return gathered

    # ------------------------------------------------------------------ internals

    def _bcast_int(self, value: int, what: str) -> int:
        buf = np.array([value], dtype=np.int64)
        self._coll.bcast(buf, what)
        return int(buf[0])

    def _state_variables(self, model) -> list:
        variables = list(model.weights)
        opt = getattr(model, "optimizer", None)
        if opt is not None and getattr(opt, "built", False):
            variables += list(opt.variables)
        return variables

    def _broadcast_state(self, model, what: str) -> None:
        """Copy rank 0's weights and (if built) optimizer state to every rank, in one broadcast."""
        variables = self._state_variables(model)
        layout = repr([(tuple(v.shape), np.dtype(v.dtype).str) for v in variables]).encode()
        signatures = self._coll.allgather_int(zlib.crc32(layout), f"{what}: layout check")
        if len(set(signatures.tolist())) > 1:
            raise DistributedError(
                f"MPIStrategy: the {what} found different models on different ranks (weight and "
                "optimizer-state shapes differ). Every rank must build the same model and optimizer. "
                f"Received: layout checksums {signatures.tolist()} (rank order)"
            )
        if self._size == 1 or not variables:
            return
        nbytes = [int(v.value.nbytes) for v in variables]
        buf = np.empty(sum(nbytes), dtype=np.uint8)
        if self._rank == 0:
            offset = 0
            for v, n in zip(variables, nbytes):
                buf[offset:offset + n] = np.ascontiguousarray(v.value).reshape(-1).view(np.uint8)
                offset += n
        self._coll.bcast(buf, what)
        if self._rank != 0:
            offset = 0
            for v, n in zip(variables, nbytes):
                v.assign(buf[offset:offset + n].view(v.value.dtype).reshape(v.value.shape))
                offset += n

    def _gradient_buffer(self, variables: Sequence):
        """A gradients-only FlatBuffer for ``variables`` (the strategy's own, kept while they stay the
        same objects in the same order)."""
        from lamina.optimizers.flat_buffer import FlatBuffer  # lazy: optimizers load on first use

        buffer = self._grad_buffer
        if buffer is None or not buffer.covers(variables):
            buffer = self._grad_buffer = FlatBuffer(variables, bind=False)
        return buffer

    def _agree_on_metrics(self, metrics: list) -> list:
        """Make every rank hold the same metric objects before their states are summed.

        Compiled metrics are created at a rank's first batch; a rank whose shard of a small data set
        was empty has none yet, so it receives them (fresh, zeroed) from a rank that has them.
        """
        count = sum(int(v.size) for m in metrics for v in m.variables)
        counts = self._coll.allgather_int(count, "metric layout check").tolist()
        if len(set(counts)) == 1:
            return metrics
        donor = int(np.argmax(counts))
        model = self._model
        if model is None or not hasattr(model, "_output_metrics"):
            raise DistributedError(
                f"MPIStrategy: ranks hold different metrics (state sizes {counts} in rank order), so they "
                "cannot be reduced. Every rank must compute the same metrics."
            )
        try:
            payload = self._coll.bcast_object(model._output_metrics if self._rank == donor else None,
                                              "broadcast of the compiled metrics", root=donor)
        except (TypeError, AttributeError, ValueError) as exc:  # pickling a lambda-based metric
            raise DistributedError(
                f"MPIStrategy: rank {donor} could not send its compiled metrics to ranks that saw no data "
                f"(they must be picklable). Received: {exc!r}"
            ) from exc
        if counts[self._rank] != counts[donor]:
            model._output_metrics = payload
            for ms in payload:
                for m in ms:
                    m.reset_state()
        return model.metrics


def _concat(outputs: list):
    if not outputs:
        return None
    first = outputs[0]
    if isinstance(first, dict):
        return {k: np.concatenate([o[k] for o in outputs]) for k in first}
    if isinstance(first, (list, tuple)):
        return [np.concatenate([o[i] for o in outputs]) for i in range(len(first))]
    return np.concatenate([np.asarray(o) for o in outputs])


def _describe(local) -> tuple:
    if isinstance(local, dict):
        kind, keys, arrays = "dict", list(local), list(local.values())
    elif isinstance(local, list):
        kind, keys, arrays = "list", None, local
    else:
        kind, keys, arrays = "array", None, [local]
    return kind, keys, [(tuple(a.shape[1:]), np.dtype(a.dtype)) for a in arrays]


def _leaves_of(local, kind: str, keys) -> list:
    if kind == "dict":
        return [local[k] for k in keys]
    if kind == "list":
        return list(local)
    return [local]
