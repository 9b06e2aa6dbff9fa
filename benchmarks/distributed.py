"""Data-parallel scaling of lamina over MPI on this machine: 1 and 2 ranks, side by side.

    python benchmarks/distributed.py            # Fashion-MNIST (synthetic if not installed)
    python benchmarks/distributed.py --quick    # fewer samples

Trains the seed model (784 -> 128 relu -> 64 relu -> 10 softmax, Adam, sparse categorical
crossentropy) and times the fastest epoch after the first of four (shared machines are noisy). For
each per-rank batch size it runs, each in its own process (BLAS threads pinned so the comparison is
about processes, not threads):

* plain ``fit`` in one process with 1 BLAS thread, and with as many BLAS threads as there are ranks
  (the other way to use the same cores),
* ``MPIStrategy`` with 1 rank (the strategy's own overhead) and with N ranks (``mpiexec -n N``),
* plain ``fit`` at the global batch ``N * batch``: the single-process run the N ranks reproduce.

It prints steps/s and samples/s, the time per step spent in the gradient allreduce (communication
plus waiting for the slower rank), and the weak-scaling efficiency
``samples/s(N ranks) / (N * samples/s(1 rank))``. Needs mpi4py and mpiexec (``pip install mpi4py
mpich``). On a machine with as many cores as ranks, expect modest scaling: the ranks share memory
bandwidth and caches, and every step pays the allreduce.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
EPOCHS = 4


def _load(samples: int):
    import lamina

    try:
        (x, y), _ = lamina.datasets.fashion_mnist.load_data()
        source = "Fashion-MNIST"
    except lamina.datasets.DatasetUnavailableError:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, 60000, dtype=np.uint8)
        source = "synthetic (Fashion-MNIST not installed)"
    x = x[:samples].reshape(-1, 784).astype("float32") / 255
    return x, y[:samples].astype("int64"), source


def worker(args) -> None:
    """One measurement, run inside the launched process(es); rank 0 prints a RESULT line."""
    import lamina

    strategy = None
    if args.mpi:
        from lamina.distribute import MPIStrategy

        strategy = MPIStrategy()
    x, y, source = _load(args.samples)
    lamina.utils.set_random_seed(0)
    model = lamina.Sequential([
        lamina.Input((784,)),
        lamina.layers.Dense(128, activation="relu"),
        lamina.layers.Dense(64, activation="relu"),
        lamina.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=lamina.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")

    times, reduce_s = [], []

    class EpochTimer(lamina.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.r0 = strategy.collective_stats()["gradient_allreduce_seconds"] if strategy else 0.0
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)
            r1 = strategy.collective_stats()["gradient_allreduce_seconds"] if strategy else 0.0
            reduce_s.append(r1 - self.r0)

    world = strategy.world_size if strategy is not None else 1
    model.fit(x, y, batch_size=args.batch, epochs=EPOCHS, verbose=0, callbacks=[EpochTimer()],
              strategy=strategy)
    best = 1 + int(np.argmin(times[1:]))  # the fastest epoch after the first (this machine is noisy)
    steps = -(-len(x) // (args.batch * world))
    if strategy is None or strategy.is_chief:
        print("RESULT " + json.dumps({"epoch_s": times[best], "steps": steps, "samples": len(x),
                                      "reduce_s": reduce_s[best], "source": source}), flush=True)


def _mpiexec() -> str:
    local = Path(sys.executable).parent / "mpiexec"
    found = str(local) if local.exists() else shutil.which("mpiexec")
    if found is None:
        sys.exit("mpiexec not found: pip install mpi4py mpich")
    return found


def _env(threads: int) -> dict:
    return dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
                MKL_NUM_THREADS=str(threads))


def _result(cmd: list, proc_stdout: str, proc_stderr: str, rc: int) -> dict:
    lines = [ln for ln in proc_stdout.splitlines() if ln.startswith("RESULT ")]
    if rc != 0 or not lines:
        sys.exit(f"benchmark run failed: {' '.join(cmd)}\n{proc_stdout}\n{proc_stderr}")
    return json.loads(lines[-1][len("RESULT "):])


def _worker_cmd(batch: int, samples: int) -> list:
    return [sys.executable, str(HERE), "--worker", "--batch", str(batch), "--samples", str(samples)]


def _run(ranks: int | None, batch: int, samples: int, threads: int) -> dict:
    """ranks=None: plain fit in one process; else MPIStrategy under mpiexec -n ranks."""
    cmd = _worker_cmd(batch, samples)
    if ranks is not None:
        cmd = [_mpiexec(), "-n", str(ranks), *cmd, "--mpi"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(threads), check=False)
    return _result(cmd, out.stdout, out.stderr, out.returncode)


def _run_independent(n: int, batch: int, samples: int) -> float:
    """Aggregate samples/s of n plain fits running at the same time: what the cores can give n
    processes with no communication at all, the ceiling for n ranks."""
    cmd = _worker_cmd(batch, samples)
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(1))
             for _ in range(n)]
    total = 0.0
    for p in procs:
        out, err = p.communicate()
        r = _result(cmd, out, err, p.returncode)
        total += r["samples"] / r["epoch_s"]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12,000 samples instead of 30,000")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128], help="per-rank batch sizes")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mpi", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    samples = args.samples or (12000 if args.quick else 30000)
    n = args.ranks
    print(f"lamina data-parallel benchmark: {os.cpu_count()} CPU cores, {samples} samples, "
          f"fastest of epochs 2-{EPOCHS}, seed model 784-128-64-10")
    header = (f"{'run':<34} {'ranks':>5} {'batch/rank':>10} {'global':>7} {'steps/s':>9} {'samples/s':>10} "
              f"{'allreduce ms/step':>17} {'% of step':>9}")
    rows, summary = [], []
    source = None
    for b in args.batches:
        runs = [
            ("plain fit, 1 BLAS thread", None, b, 1),
            (f"plain fit, {n} BLAS threads", None, b, n),
            ("MPIStrategy", 1, b, 1),
            ("MPIStrategy", n, b, 1),
            (f"plain fit at the global batch {n * b}", None, n * b, 1),
        ]
        results = {}
        for label, ranks, batch, threads in runs:
            r = _run(ranks, batch, samples, threads)
            source = r["source"]
            steps_s = r["steps"] / r["epoch_s"]
            samples_s = r["samples"] / r["epoch_s"]
            ms = 1e3 * r["reduce_s"] / r["steps"] if ranks else None
            pct = 100 * r["reduce_s"] / r["epoch_s"] if ranks else None
            results[(label, ranks)] = samples_s
            world = ranks or 1
            rows.append(f"{label:<34} {world:>5} {batch:>10} {batch * world:>7} {steps_s:>9.1f} "
                        f"{samples_s:>10.0f} {('-' if ms is None else f'{ms:.3f}'):>17} "
                        f"{('-' if pct is None else f'{pct:.1f}'):>9}")
        one, many = results[("MPIStrategy", 1)], results[("MPIStrategy", n)]
        ceiling = _run_independent(n, b, samples)
        alone = results[("plain fit, 1 BLAS thread", None)]
        summary.append(f"batch {b}/rank: {n} independent plain fits at once reach {ceiling:.0f} samples/s "
                       f"in all ({ceiling / alone:.2f}x one alone), the most {n} processes get from this "
                       f"machine; {n} ranks reach {many / ceiling:.0%} of it.")
        summary.append(f"batch {b}/rank: weak-scaling efficiency {many / (n * one):.0%} "
                       f"({n} ranks: {many / one:.2f}x the samples/s of 1 rank); "
                       f"{n} ranks vs one process at the same global batch: "
                       f"{many / results[(f'plain fit at the global batch {n * b}', None)]:.2f}x; "
                       f"vs {n} BLAS threads: {many / results[(f'plain fit, {n} BLAS threads', None)]:.2f}x")
    print(f"data: {source}\n")
    print(header)
    print("-" * len(header))
    print("\n".join(rows))
    print()
    print("\n".join(summary))


if __name__ == "__main__":
    main()
