"""lamina's recurrent layers against PyTorch and Keras (JAX) on the same models, side by side, in one run.

    python benchmarks/bench_rnn.py                   # every row, 3 rounds (a few minutes)
    python benchmarks/bench_rnn.py --quick           # fewer samples, 2 rounds
    python benchmarks/bench_rnn.py --threads 1       # every framework on one thread (fairest on a loaded machine)

Rows: Embedding(5000, 32) -> LSTM(64) -> Dense(1, sigmoid) on token sequences of length 80 (the issue's
model), the same with GRU(64), and LSTM(256). Training: Adam(1e-3), binary crossentropy, batch 64, one epoch
of 6,400 samples (--quick: 1,920), given as seconds per 6,400 samples; inference: predict on 10,000
sequences (--quick: 2,560) at batch 256, given as seconds per 10,000. Each figure is the median over
--repeat rounds, with the spread (min-max) beside it, as wall time and as CPU time (``time.process_time``
of the process doing the work; the fairer one while other work loads the machine). Warm-up (compilation,
JIT, first-call allocation) is excluded. lamina runs in this process; PyTorch (eager: nn.Embedding +
nn.LSTM/GRU + nn.Linear) and Keras on JAX (``jit_compile=True``) each in a worker process of their own (this
script with ``--worker torch|keras``), so that no framework's threads, allocator state or BLAS settings
touch another's. The frameworks take turns row by row and round by round, so that load from other work on the
machine hits them alike.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
VOCAB, EMBED, STEPS, BATCH, PREDICT_BATCH = 5000, 32, 80, 64, 256
ROWS = {"lstm64": ("LSTM", 64), "gru64": ("GRU", 64), "lstm256": ("LSTM", 256)}
KERAS_JAX = "Keras/JAX"


def make_data(n_train: int, n_predict: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, VOCAB, (n_train, STEPS)).astype("int32")
    y = rng.integers(0, 2, (n_train, 1)).astype("float32")
    xp = rng.integers(0, VOCAB, (n_predict, STEPS)).astype("int32")
    return x, y, xp


def timed(fn) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of this process)`` of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


# ----------------------------------------------------------------------------- lamina and Keras (same API)


def keras_like_row(lib, kind: str, units: int, data, compile_options: dict) -> dict:
    """One round of a row in lamina or Keras: fit one epoch, predict; warm-up excluded."""
    x, y, xp = data
    lib.utils.set_random_seed(0)
    model = lib.Sequential([lib.layers.Input((STEPS,), dtype="int32"), lib.layers.Embedding(VOCAB, EMBED),
                            getattr(lib.layers, kind)(units), lib.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=lib.optimizers.Adam(1e-3), loss="binary_crossentropy", **compile_options)
    model.fit(x[:4 * BATCH], y[:4 * BATCH], batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    model.predict(xp, batch_size=PREDICT_BATCH, verbose=0)  # warm-up at every batch shape predict will use
    train = timed(lambda: model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0))
    predict = timed(lambda: model.predict(xp, batch_size=PREDICT_BATCH, verbose=0))
    return {"train": train, "predict": predict}


# ----------------------------------------------------------------------------- PyTorch


def torch_row(kind: str, units: int, data) -> dict:
    import torch  # lazy: optional peer

    x, y, xp = (torch.from_numpy(a) for a in data)
    x, xp = x.long(), xp.long()
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(VOCAB, EMBED)
            self.rnn = getattr(torch.nn, kind)(EMBED, units, batch_first=True)
            self.head = torch.nn.Linear(units, 1)

        def forward(self, tokens):
            out, _ = self.rnn(self.embed(tokens))
            return torch.sigmoid(self.head(out[:, -1]))

    net = Net()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    loss_fn = torch.nn.BCELoss()

    def epoch(n):
        net.train()
        for i in range(0, n, BATCH):
            opt.zero_grad()
            loss = loss_fn(net(x[i:i + BATCH]), y[i:i + BATCH])
            loss.backward()
            opt.step()

    def predict():
        net.eval()
        with torch.no_grad():
            return [net(xp[i:i + PREDICT_BATCH]) for i in range(0, len(xp), PREDICT_BATCH)]

    epoch(4 * BATCH)
    predict()
    return {"train": timed(lambda: epoch(len(x))), "predict": timed(predict)}


# ----------------------------------------------------------------------------- peer workers (subprocesses)


def worker_main(framework: str) -> None:
    """``--worker torch|keras``: answer one JSON request a line (``{"row": NAME, "n_train": N, "n_predict": M}``)."""
    one_thread = os.environ.get("BENCH_RNN_THREADS") == "1"
    if one_thread and hasattr(os, "sched_setaffinity"):  # a hard limit: XLA's CPU client ran two threads anyway
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:1])
    if framework == "torch":
        import torch  # lazy: optional peer, imported only in its worker

        if one_thread:
            torch.set_num_threads(1)
        ready = {"ready": torch.__version__, "threads": torch.get_num_threads()}

        def row(kind, units, data):
            return torch_row(kind, units, data)
    else:
        import keras  # lazy: KERAS_BACKEND must be set before this import; the parent sets it

        ready = {"ready": keras.__version__, "backend": keras.backend.backend(), "threads": "1" if one_thread else None}

        def row(kind, units, data):
            return keras_like_row(keras, kind, units, data, {"jit_compile": True})
    if one_thread:
        import threadpoolctl  # lazy: only when limiting threads

        threadpoolctl.threadpool_limits(1)
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        try:
            req = json.loads(line)
            kind, units = ROWS[req["row"]]
            reply = row(kind, units, make_data(req["n_train"], req["n_predict"]))
        except Exception as exc:  # one failed row must not take the others with it
            reply = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        print(json.dumps(reply), flush=True)


class Worker:
    """A peer framework in its own process (``framework``: "torch" or "keras")."""

    def __init__(self, framework: str, threads: int | None):
        env = dict(os.environ, KERAS_BACKEND="jax")
        if threads == 1:
            env.update(BENCH_RNN_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
            if framework == "keras":  # XLA's CPU client: one intra-op thread, no Eigen pool
                env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                                    "intra_op_parallelism_threads=1").strip()
        self._log = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", framework],
                                      env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._log)
        self.ready = self._reply()

    def _reply(self) -> dict:
        for line in self._proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
        self._log.seek(0)
        tail = self._log.read().strip().splitlines()[-1:] or ["no output"]
        return {"error": tail[0][:200]}

    def ask(self, **request) -> dict:
        if self._proc.poll() is not None:
            return {"error": "worker ended"}
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        return self._reply()

    def close(self) -> None:
        if self._proc.stdin and not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._log.close()


# ----------------------------------------------------------------------------- report


def summary(values: list[float], scale: float) -> str:
    v = sorted(x * scale for x in values)
    return f"{statistics.median(v):6.3f} ({v[0]:.3f}-{v[-1]:.3f})"


def ratio_text(mine: float, peers: dict) -> str:
    if not peers:
        return "no peer"
    name, best = min(peers.items(), key=lambda kv: kv[1])
    return f"{best / mine:.2f}x faster than {name}" if mine <= best else f"{mine / best:.2f}x slower than {name}"


def print_table(results: dict, n_train: int, n_predict: int, rounds: int) -> None:
    frameworks = [fw for fw in ("lamina", "PyTorch", KERAS_JAX) if fw in results]
    print(f"\nmedian (min-max) over {rounds} round(s); training in s per 6,400 samples, predict in s per 10,000")
    for clock, idx in (("wall", 0), ("CPU", 1)):
        print(f"\n{clock} time")
        print(f"{'row':28}" + "".join(f"{fw:>24}" for fw in frameworks) + f"{'lamina vs fastest peer (median)':>36}")
        for row, (kind, units) in ROWS.items():
            for phase, n, per in (("train", n_train, 6400), ("predict", n_predict, 10000)):
                cells, medians = [], {}
                for fw in frameworks:
                    runs = results[fw].get(row, [])
                    if not runs:
                        cells.append(f"{'-':>24}")
                        continue
                    values = [r[phase][idx] for r in runs]
                    medians[fw] = statistics.median(values) * per / n
                    cells.append(f"{summary(values, per / n):>24}")
                peers = {fw: v for fw, v in medians.items() if fw != "lamina"}
                ratio = ratio_text(medians["lamina"], peers) if "lamina" in medians else "-"
                print(f"{f'{kind}({units}) {phase}':28}" + "".join(cells) + f"{ratio:>36}")


def print_machine(threads: int | None) -> None:
    import bench_train as bt  # lazy: its helpers only, for the header

    import lamina  # lazy: after the thread settings

    env = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items())
                   if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "XLA_"))) or "none"
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"run at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}; load average {load}; NumPy {np.__version__}")
    print(f"machine: {bt.cpu_model()}, {len(os.sched_getaffinity(0))} usable cores; threads: "
          f"{'1 for every framework' if threads == 1 else 'each framework default'}")
    print(f"lamina {lamina.__version__}; numba: {'yes' if importlib.util.find_spec('numba') else 'no'}; "
          f"thread-related environment: {env}")
    print(f"lamina's BLAS (threadpoolctl): {bt.thread_pools()}")


def run_rounds(args, data, workers: dict) -> dict:
    import lamina  # lazy: after the thread settings

    results = {"lamina": {r: [] for r in ROWS}, **{name: {r: [] for r in ROWS} for name in workers}}
    for rnd in range(args.repeat):
        for row, (kind, units) in ROWS.items():
            if args.rows and row not in args.rows:
                continue
            print(f"  round {rnd + 1}/{args.repeat}, {row}: {', '.join(results)} ...", flush=True)
            results["lamina"][row].append(keras_like_row(lamina, kind, units, data, {}))
            for name, worker in workers.items():
                reply = worker.ask(row=row, n_train=len(data[0]), n_predict=len(data[2]))
                if "error" in reply:
                    print(f"    {name} failed on {row}: {reply['error']}")
                else:
                    results[name][row].append(reply)
    return results


def start_workers(args) -> dict:
    """The peers installed here, each started in its own process: {name: Worker}."""
    wanted = [("PyTorch", "torch", "torch")]
    if not args.no_keras:
        wanted.append((KERAS_JAX, "keras", "jax"))
    workers = {}
    for name, framework, module in wanted:
        if importlib.util.find_spec(module) is None:
            continue
        print(f"starting {name} (subprocess) ...", flush=True)
        worker = Worker(framework, args.threads)
        if "error" in worker.ready:
            print(f"  {name} failed to start: {worker.ready['error']}")
            worker.close()
            continue
        detail = f"on {worker.ready['backend']}, jit_compile=True, XLA_FLAGS=" \
            f"{'one thread' if args.threads == 1 else 'unset'}" if framework == "keras" \
            else f"eager, {worker.ready['threads']} intra-op thread(s)"
        print(f"  {name} {worker.ready['ready']} {detail}")
        workers[name] = worker
    return workers


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,920 training and 2,560 predict samples, 2 rounds")
    parser.add_argument("--threads", type=int, choices=(1,), help="1: every framework on one thread")
    parser.add_argument("--repeat", type=int, help="rounds (default 3, --quick 2)")
    parser.add_argument("--rows", help="comma-separated rows from " + ", ".join(ROWS) + " (default: all)")
    parser.add_argument("--no-keras", action="store_true", help="skip Keras/JAX")
    parser.add_argument("--worker", choices=("torch", "keras"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0
    args.repeat = args.repeat or (2 if args.quick else 3)
    args.rows = [r.strip() for r in args.rows.split(",")] if args.rows else None
    if args.rows and not set(args.rows) <= set(ROWS):
        parser.error(f"--rows takes names from {', '.join(ROWS)}. Received: {','.join(args.rows)}")
    limiter = None
    if args.threads == 1:
        import threadpoolctl  # lazy: only when limiting threads

        limiter = threadpoolctl.threadpool_limits(1)
    print_machine(args.threads)
    n_train, n_predict = (1920, 2560) if args.quick else (6400, 10000)
    data = make_data(n_train, n_predict)
    workers = start_workers(args)
    try:
        results = run_rounds(args, data, workers)
    finally:
        for worker in workers.values():
            worker.close()
        if limiter is not None:
            limiter.restore_original_limits()
    print_table(results, n_train, n_predict, args.repeat)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))  # bench_train's helpers, when run as a script from anywhere
    sys.exit(main())
