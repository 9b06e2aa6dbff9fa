"""lamina against PyTorch and Keras (JAX, torch) on the same models, side by side, in one run.

    python benchmarks/bench_train.py                        # everything (several minutes)
    python benchmarks/bench_train.py --quick                # fewer steps, rounds and epochs (under ~2 minutes)
    python benchmarks/bench_train.py --rows circles,mlp32   # only these rows (names in --help)

Per-step training table: for each row's model (circles 2-64-64-1, the tutorial MLP at batch 32 and 256, a
wide 1024-1024 MLP, a BatchNormalization+Dropout MLP, a two-branch Functional model), Adam(1e-3) on
identical batches; one step is what fit does per batch (forward, loss, backward, update, accuracy metric).
It reports the median microseconds per step over one epoch (--quick: 60 steps) after 5 warm-up steps,
best of --repeat rounds, lamina's ratio to the fastest peer, and lamina's trace: the wall time of the
first fit step of a fresh compiled model. PyTorch runs eagerly in this process with one thread per core;
Keras runs on JAX with ``jit_compile=True`` in a worker process (keras_worker.py; its backend is fixed at
import). The frameworks take turns row by row, so load from other work on the machine hits them alike.

Row ``accuracy`` trains 784 -> 128 relu -> 64 relu -> 10 softmax with Adam(1e-3) and sparse categorical
crossentropy on Fashion-MNIST (synthetic data of the same shape if it is not installed) with each
framework on the same data in the same epoch order, and prints seconds per epoch at batch 32 and 256
(median of the epochs after the first), test accuracy after 5 epochs (lamina must match each peer within
0.5 points), predict throughput on 10,000 samples, single-sample latency of predict and of model(x).
Row ``extras`` prints cold import time, installed size and lamina's GFLOP/s at batch 1024 against
NumPy's own float32 matmul peak.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import step_rows as sr

HERE = Path(__file__).resolve().parent
FLOPS_PER_SAMPLE = 6 * (784 * 128 + 128 * 64 + 64 * 10)  # forward 2 + backward 4 per weight
SECTIONS = ("accuracy", "extras")
ACCURACY_POINTS = 0.5  # lamina's test accuracy must match each peer's within this many points
KERAS_JAX = "Keras/JAX"


def load_data(seed: int = 0):
    import lamina  # lazy: keras_worker imports this module for its helpers; lamina loads only where it is used

    try:
        (x, y), (xt, yt) = lamina.datasets.fashion_mnist.load_data()
        source = "Fashion-MNIST"
    except lamina.datasets.DatasetUnavailableError:
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8)
        xt = rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8)
        y, yt = rng.integers(0, 10, 60000, dtype=np.uint8), rng.integers(0, 10, 10000, dtype=np.uint8)
        source = "synthetic (Fashion-MNIST not installed)"
    x = x.reshape(-1, 784).astype("float32") / 255
    xt = xt.reshape(-1, 784).astype("float32") / 255
    return (x, y.astype("int64")), (xt, yt.astype("int64")), source


def epoch_orders(n: int, epochs: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.permutation(n) for _ in range(epochs)]


def median_after_first(times: list[float]) -> float:
    return statistics.median(times[1:]) if len(times) > 1 else times[0]


def best_of(fn, repeats: int, number: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t) / number)
    return best


# ----------------------------------------------------------------------------- lamina


def run_lamina(train, test, orders32, orders256, epochs256):
    import lamina  # lazy: keras_worker imports this module for its helpers; lamina loads only where it is used
    from lamina import layers

    x, y = train
    xt, yt = test

    def build():
        lamina.utils.set_random_seed(0)
        m = lamina.Sequential([layers.Input((784,)), layers.Dense(128, activation="relu"),
                               layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax")])
        m.compile(optimizer=lamina.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
        return m

    def train_epochs(model, orders, batch):
        times = []
        for order in orders:
            xo, yo = x[order], y[order]  # the shared epoch order; fit's own shuffle is off
            t = time.perf_counter()
            model.fit(xo, yo, batch_size=batch, epochs=1, shuffle=False, verbose=0)
            times.append(time.perf_counter() - t)
        return times

    model = build()
    model.fit(x[:256], y[:256], batch_size=32, epochs=1, verbose=0)  # warm-up (and any JIT) excluded
    model = build()
    t32 = train_epochs(model, orders32, 32)
    acc = float(model.evaluate(xt, yt, verbose=0)[1])
    m256 = build()
    m256.fit(x[:512], y[:512], batch_size=256, epochs=1, verbose=0)
    t256 = train_epochs(m256, orders256[:epochs256], 256)
    m1024 = build()
    t1024 = train_epochs(m1024, orders256[:2], 1024)
    x1 = xt[:1]
    lat_predict = best_of(lambda: model.predict(x1, verbose=0), 5, 2000)
    lat_call = best_of(lambda: model(x1), 5, 2000)
    thr = best_of(lambda: model.predict(xt, verbose=0), 5, 5)
    return {"epoch32": median_after_first(t32), "epochs32": t32, "epoch256": median_after_first(t256),
            "acc": acc, "predict10k": thr, "lat_predict": lat_predict, "lat_call": lat_call,
            "epoch1024": median_after_first(t1024)}


# ----------------------------------------------------------------------------- PyTorch


def run_torch(train, test, orders32, orders256, epochs256):
    import torch  # lazy: optional peer

    x, y = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    xt, yt = torch.from_numpy(test[0]), torch.from_numpy(test[1])
    row = sr.ROWS["mlp32"]

    def build():
        torch.manual_seed(0)
        return sr.TorchTrainer(row, sr.torch_model(row))  # Keras's init, Adam epsilon and fit-like metrics

    def train_epochs(trainer, orders, batch):
        times = []
        for order in orders:
            order = torch.from_numpy(order)
            t = time.perf_counter()
            trainer.reset_metrics()
            for i in range(0, len(order), batch):
                idx = order[i:i + batch]
                trainer.step(x[idx], y[idx])
            trainer.logs()
            times.append(time.perf_counter() - t)
        return times

    train_epochs(build(), [orders32[0][:256]], 32)
    trainer = build()
    t32 = train_epochs(trainer, orders32, 32)
    model = trainer.model.eval()
    with torch.no_grad():
        acc = float((model(xt).argmax(1) == yt).float().mean())
    t256 = train_epochs(build(), orders256[:epochs256], 256)
    x1 = xt[:1]

    def forward(inp):
        with torch.no_grad():
            return torch.softmax(model(inp), dim=1)

    return {"epoch32": median_after_first(t32), "epochs32": t32, "epoch256": median_after_first(t256),
            "acc": acc, "predict10k": best_of(lambda: forward(xt), 5, 5),
            "lat_call": best_of(lambda: forward(x1), 5, 2000), "lat_predict": None}


# ----------------------------------------------------------------------------- Keras (subprocess)


class KerasWorker:
    """keras_worker.py in a subprocess on one backend, answering one request at a time."""

    def __init__(self, backend: str, timeout: int):
        self.name, self.timeout, self.error = f"Keras/{'JAX' if backend == 'jax' else backend}", timeout, None
        self._log = tempfile.TemporaryFile(mode="w+")  # Keras/JAX warnings; a file, so no pipe can fill up
        self._proc = subprocess.Popen([sys.executable, str(HERE / "keras_worker.py")],
                                      env=dict(os.environ, KERAS_BACKEND=backend), text=True,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        self._lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            if line.startswith("{"):
                self._lines.put(json.loads(line))
        self._lines.put(None)  # the worker ended

    def ask(self, **request) -> dict:
        """The worker's answer, or ``{"error": ...}`` (that one is kept: a dead worker answers no more)."""
        if self.error:
            return {"error": self.error}
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            reply = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            self.error = f"no answer within {self.timeout} s"
            self._proc.kill()
            return {"error": self.error}
        except OSError:
            reply = None
        if reply is None:
            self._log.seek(0)
            tail = self._log.read().strip().splitlines()[-1:] or ["no output"]
            self.error = tail[0][:160]
            return {"error": self.error}
        return reply

    def close(self) -> None:
        if self._proc.stdin and not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._log.close()


# ----------------------------------------------------------------------------- per-step rows


def run_step_rows(names: list[str], fashion, quick: bool, rounds: int, jax_worker: KerasWorker | str | None) -> dict:
    """``{framework: {row: summary}}``, the best of ``rounds`` rounds. Within a round the frameworks take turns
    row by row (lamina, PyTorch, Keras/JAX), so that load from other work on the machine hits them alike.
    ``jax_worker`` may be a reason it is missing instead ("not installed"), or None to leave Keras out."""
    import lamina  # lazy: keras_worker imports this module for its helpers; lamina loads only where it is used

    has_torch = importlib.util.find_spec("torch") is not None
    runs = {"lamina": {n: [] for n in names}, "PyTorch": {n: [] for n in names} if has_torch else None}
    if jax_worker is not None:
        runs[KERAS_JAX] = {n: [] for n in names} if isinstance(jax_worker, KerasWorker) else {"error": jax_worker}
    for r in range(rounds):
        for name in names:
            row = sr.ROWS[name]
            x, y = sr.row_data(row, fashion, quick)
            print(f"  round {r + 1}/{rounds}, {name}: lamina, PyTorch, {KERAS_JAX} ...", flush=True)
            mine = sr.time_fit_row(lamina, row, x, y)
            mine["cold_ms"] = sr.cold_first_step(row)
            runs["lamina"][name].append(mine)
            if has_torch:
                runs["PyTorch"][name].append(sr.time_torch_row(row, x, y))
            if isinstance(jax_worker, KerasWorker):
                reply = jax_worker.ask(cmd="steps", row=name, quick=quick)
                if "error" in reply:
                    print(f"    {KERAS_JAX} failed on {name}: {reply['error']}")
                else:
                    runs[KERAS_JAX][name].append(reply)
    return {fw: by_row if not isinstance(by_row, dict) or "error" in by_row else
            {n: best_of_rounds(v) for n, v in by_row.items()} for fw, by_row in runs.items()}


def best_of_rounds(summaries: list[dict]) -> dict | None:
    """The lowest of each timing over the rounds (load from other work only ever adds time)."""
    if not summaries:
        return None
    best = dict(summaries[0])
    for key in ("median_us", "mean_us", "trace_ms", "cold_ms"):
        values = [s[key] for s in summaries if s.get(key) is not None]
        best[key] = min(values) if values else None
    best["round_medians"] = [s["median_us"] for s in summaries]
    return best


def fmt_us(v) -> str:
    return "-" if v is None else f"{v:.0f} us" if v < 1e4 else f"{v / 1e3:.1f} ms"


def ratio_text(mine: float, peers: dict) -> str:
    """lamina against the fastest peer, e.g. ``1.53x faster than PyTorch``."""
    if not peers:
        return "no peer"
    name, best = min(peers.items(), key=lambda kv: kv[1])
    return f"{best / mine:.2f}x faster than {name}" if mine <= best else f"{mine / best:.2f}x slower than {name}"


def print_step_table(results: dict, names: list[str], quick: bool, rounds: int) -> None:
    frameworks = list(results)
    span = f"{sr.QUICK_STEPS} steps" if quick else "one epoch"
    print(f"\nPer-step training, Adam(1e-3), identical batches: median microseconds per step over {span} "
          f"after {sr.WARM_STEPS} warm-up steps, best of {rounds} round(s)")
    for fw in frameworks:
        if not isinstance(results[fw], dict) or "error" in results[fw]:
            print(f"  {fw}: {'not installed' if results[fw] is None else results[fw]['error']}")
    width = 40
    print(f"{'row':{width}}{'batch':>6}{'steps':>7}" + "".join(f"{fw:>12}" for fw in frameworks)
          + f"{'lamina vs fastest peer':>32}{'lamina trace':>14}{'new process':>13}")
    for name in names:
        row = sr.ROWS[name]
        cells = {fw: _cell(results[fw], name) for fw in frameworks}
        mine = cells["lamina"]
        peers = {fw: c["median_us"] for fw, c in cells.items() if fw != "lamina" and c}
        print(f"{row.label:{width}}{row.batch:6d}{mine['steps']:7d}"
              + "".join(f"{fmt_us(c and c['median_us']):>12}" for c in cells.values())
              + f"{ratio_text(mine['median_us'], peers):>32}{mine['trace_ms']:11.1f} ms"
              + (f"{mine['cold_ms']:10.1f} ms" if mine.get("cold_ms") is not None else f"{'failed':>13}"))
    print(f"\n{'mean us/step (wall/steps), first step, loss':{width + 13}}"
          + "".join(f"{fw + ' mean':>16}" for fw in frameworks) + "".join(f"{fw + ' first':>16}" for fw in frameworks)
          + "".join(f"{fw + ' loss':>16}" for fw in frameworks))
    for name in names:
        cells = [_cell(results[fw], name) for fw in frameworks]
        means = "".join(f"{fmt_us(c and c['mean_us']):>16}" for c in cells)
        firsts = "".join(f"{'-' if c is None else format(c['trace_ms'], '.1f') + ' ms':>16}" for c in cells)
        losses = "".join(f"{'-' if c is None or c['loss'] is None else format(c['loss'], '.4f'):>16}" for c in cells)
        print(f"{sr.ROWS[name].label + ' / ' + str(sr.ROWS[name].batch):{width + 13}}" + means + firsts + losses)
    print("\nmedian us/step of each round")
    for name in names:
        cells = [_cell(results[fw], name) for fw in frameworks]
        print(f"{sr.ROWS[name].label + ' / ' + str(sr.ROWS[name].batch):{width + 13}}" + "".join(
            f"{fw + ': ' + ('-' if c is None else ', '.join(f'{v:.0f}' for v in c['round_medians'])):>28}"
            for fw, c in zip(frameworks, cells, strict=True)))
    print("  trace: wall time of the first one-batch fit of a fresh compiled model (compile excluded), after a "
          "throwaway model of the same architecture took its first step in this process; new process: the same "
          "first fit in a fresh Python process, so with the process's one-time costs (lazy imports, kernel "
          "compiles). Loss: the timed epoch's training loss (frameworks should agree roughly).")
    keras_steps = [c for c in (results.get(KERAS_JAX) or {}).values() if isinstance(c, dict)]
    if keras_steps:
        print(f"  {KERAS_JAX}: JAX dispatches asynchronously, so its median is over windows of {sr.JAX_WINDOW} "
              "steps, each ended by waiting for the device; its mean is the plain wall time per step.")


def _cell(result, name):
    if not isinstance(result, dict) or "error" in result:
        return None
    return result.get(name)


# ----------------------------------------------------------------------------- environment


def cold_import(module: str, repeats: int = 5) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    env = dict(os.environ, KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "torch"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's import reads cached bytecode
    subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, env=env)  # writes it
    vals = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        if out.returncode != 0:
            return float("nan")
        vals.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(vals)


def installed_mb(*modules: str) -> float:
    total = 0
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            for dirpath, _, files in os.walk(root):
                total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files
                             if not os.path.islink(os.path.join(dirpath, f)))
    return total / 2**20


def numpy_matmul_peak() -> float:
    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    b = np.random.default_rng(1).random((2048, 2048), dtype=np.float32)
    return 2 * 2048**3 / best_of(lambda: a @ b, 5, 3) / 1e9


def blas_info() -> str:
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:
        return "unknown"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def thread_pools() -> str:
    """The native thread pools loaded in this process (OpenBLAS for NumPy, hence lamina; OpenMP for torch),
    with kernel and thread count, as threadpoolctl sees them."""
    try:
        import threadpoolctl  # lazy: optional, only for this report
    except ImportError:
        return f"{blas_info()} (threadpoolctl not installed: no kernel or thread count)"
    pools = []
    for pool in threadpoolctl.threadpool_info():
        kernel = f" kernel {pool['architecture']}" if pool.get("architecture") else ""
        pools.append(f"{pool['internal_api']} {pool.get('version') or ''}{kernel}, {pool['num_threads']} threads "
                     f"({os.path.basename(pool['filepath'])})")
    return "; ".join(pools) or "none found"


def print_machine(source: str) -> None:
    import lamina  # lazy: keras_worker imports this module for its helpers; lamina loads only where it is used

    when = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    env = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items())
                   if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "XLA_"))) or "none"
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    print(f"run at {when}; load average {load}; Python {platform.python_version()}; NumPy {np.__version__}")
    print(f"machine: {cpu_model()}, {sr.cores()} usable cores ({os.cpu_count()} online)")
    print(f"lamina {lamina.__version__} from {Path(lamina.__file__).parent}")
    print(f"thread-related environment: {env}")
    print(f"lamina's BLAS (threadpoolctl): {thread_pools()}")
    print(f"data: {source}")


# ----------------------------------------------------------------------------- report


def fmt_s(v):
    if v is None:
        return "-"
    return f"{v:.3f} s" if v >= 0.1 else f"{v * 1e3:.2f} ms" if v >= 1e-3 else f"{v * 1e6:.1f} us"


def parse_rows(text: str | None) -> list[str]:
    names = list(sr.ROWS) + list(SECTIONS)
    if not text:
        return names
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in chosen if n not in names]
    if unknown or not chosen:
        raise SystemExit(f"--rows takes names from {', '.join(names)}. Received: {text!r}")
    return chosen


def set_torch_threads() -> str:
    """One PyTorch thread per usable core; returns what torch reports."""
    if importlib.util.find_spec("torch") is None:
        return "PyTorch: not installed"
    import torch  # lazy: optional peer

    torch.set_num_threads(sr.cores())
    return (f"PyTorch {torch.__version__}: {torch.get_num_threads()} intra-op threads, "
            f"{torch.get_num_interop_threads()} inter-op")


def keras_env_line(worker: KerasWorker | str | None) -> str:
    if not isinstance(worker, KerasWorker):
        return f"{KERAS_JAX}: {worker} - compared with PyTorch only"
    e = worker.ask(cmd="env")
    if "error" in e:
        return f"{KERAS_JAX}: failed ({e['error']})"
    return (f"{KERAS_JAX}: Keras {e['keras']}, jax {e['jax']} on {e['devices']}, jit_compile=True; XLA's CPU pool "
            f"is not user-set (XLA_FLAGS={e['xla_flags'] or 'unset'}); the worker process runs "
            f"{e['os_threads']} OS threads; its NumPy BLAS: {e['pools']}")


def print_accuracy(results: dict, epochs32: int) -> None:
    rows = [("s/epoch, batch 32", "epoch32", False), ("s/epoch, batch 256", "epoch256", False),
            (f"test accuracy after {epochs32} epochs", "acc", True),
            ("predict 10,000 samples", "predict10k", False),
            ("single-sample predict", "lat_predict", False), ("single-sample model(x)", "lat_call", False)]
    names = list(results)
    print("\nTutorial MLP 784-128-64-10, fit epochs on Fashion-MNIST (same epoch orders)")
    print(f"{'':34}" + "".join(f"{n:>16}" for n in names) + f"{'lamina vs best peer':>22}")
    for label, key, higher in rows:
        vals = {n: results[n].get(key) for n in names}
        cells = []
        for n in names:
            v = vals[n]
            cells.append(f"{v:16.4f}" if (higher and v is not None) else f"{fmt_s(v):>16}")
        peers = [v for n, v in vals.items() if n != "lamina" and v is not None]
        ratio = ""
        if peers and vals["lamina"] is not None:
            if higher:
                ratio = f"{vals['lamina'] - max(peers):+.4f}"
            else:
                best = min(peers)
                fast = vals["lamina"] <= best
                ratio = f"{best / vals['lamina']:.2f}x faster" if fast else f"{vals['lamina'] / best:.2f}x slower"
        print(f"{label:34}" + "".join(cells) + f"{ratio:>22}")
    for n in names:
        print(f"  {n} seconds per epoch at batch 32: " + ", ".join(f"{t:.2f}" for t in results[n].get("epochs32", [])))
    mine = results["lamina"]["acc"]
    for n in names[1:]:
        diff = (mine - results[n]["acc"]) * 100
        verdict = "equal" if abs(diff) <= ACCURACY_POINTS else "NOT equal"
        print(f"  accuracy check: lamina {mine:.4f} vs {n} {results[n]['acc']:.4f}: {diff:+.2f} points, "
              f"{verdict} within +-{ACCURACY_POINTS} points (same recipe: Adam 1e-3, batch 32, {epochs32} epochs)")


def run_accuracy(data, epochs: tuple[int, int], keras_workers: list) -> dict:
    """The tutorial-MLP epochs, accuracy and predict figures of every framework (Keras from its workers)."""
    train, test = data
    epochs32, epochs256 = epochs
    orders32 = epoch_orders(len(train[0]), epochs32, seed=1)
    orders256 = epoch_orders(len(train[0]), epochs256, seed=2)
    results = {}
    print("running lamina (accuracy) ...", flush=True)
    results["lamina"] = run_lamina(train, test, orders32, orders256, epochs256)
    if importlib.util.find_spec("torch") is not None:
        print("running PyTorch (accuracy) ...", flush=True)
        results["PyTorch"] = run_torch(train, test, orders32, orders256, epochs256)
    for worker in keras_workers:
        if not isinstance(worker, KerasWorker):
            print(f"  (a Keras run skipped: {worker})")
            continue
        print(f"running {worker.name} (accuracy) ...", flush=True)
        res = worker.ask(cmd="seed", epochs32=epochs32, epochs256=epochs256)
        if "error" in res:
            print(f"  ({worker.name} skipped: {res['error']})")
        else:
            results[worker.name] = res
    print_accuracy(results, epochs32)
    return results


def print_extras(train, acc_results: dict | None, quick: bool) -> None:
    repeats = 2 if quick else 5
    imports = {m: cold_import(m, repeats) for m in ("numpy", "lamina", "torch", "keras")}
    sizes = {"lamina": installed_mb("lamina"), "numpy": installed_mb("numpy"), "torch": installed_mb("torch"),
             "keras": installed_mb("keras", "optree", "ml_dtypes", "h5py", "rich", "namex", "absl"),
             "jax": installed_mb("jax", "jaxlib")}
    print()
    print(f"cold import (median of {repeats}): " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in imports.items())
          + f"; lamina adds {max(0.0, imports['lamina'] - imports['numpy']) * 1e3:.0f} ms to numpy")
    print("installed size (MB, own files): " + ", ".join(f"{k} {v:.1f}" for k, v in sizes.items()))
    if acc_results is None:
        print("batch 1024 GFLOP/s: needs row `accuracy` (it times the batch-1024 epochs)")
        return
    peak = numpy_matmul_peak()
    achieved = FLOPS_PER_SAMPLE * len(train[0]) / acc_results["lamina"]["epoch1024"] / 1e9
    print(f"batch 1024: lamina {achieved:.1f} GFLOP/s = {achieved / peak:.0%} of NumPy's float32 matmul peak "
          f"({peak:.1f} GFLOP/s, 2048x2048)")


def start_jax_worker(args) -> KerasWorker | str | None:
    """The Keras/JAX worker, started and ready (its imports done before any timing here), the reason
    it is missing, or None with --no-keras."""
    if args.no_keras:
        return None
    if importlib.util.find_spec("jax") is None:
        return "not installed (jax is not importable)"
    return start_worker("jax", timeout=300 if args.quick else 1800)


def start_worker(backend: str, timeout: int) -> KerasWorker | str:
    """A Keras worker that has finished starting (imports, data), so it loads no CPU while others are timed."""
    worker = KerasWorker(backend, timeout)
    print(f"starting {worker.name} (subprocess) ...", flush=True)
    ready = worker.ask(cmd="env")
    if "error" in ready:
        worker.close()
        return f"failed to start ({ready['error']})"
    return worker


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{sr.QUICK_STEPS} timed steps per row, 2 epochs for `accuracy`, no Keras on torch")
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras runs")
    parser.add_argument("--repeat", type=int, default=None,
                        help="rounds of the per-step rows; each figure is the best round's (default: 3, --quick 2)")
    parser.add_argument("--rows", help="comma-separated rows to run, from: " + ", ".join(list(sr.ROWS) + list(SECTIONS))
                        + " (default: all)")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 2 if args.quick else 3
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1. Received: {args.repeat}")
    chosen = parse_rows(args.rows)
    step_names = [n for n in chosen if n in sr.ROWS]
    epochs = (2 if args.quick else 5, 3)
    train, test, source = load_data()
    print_machine(source)
    print(set_torch_threads())
    jax_worker = start_jax_worker(args)
    workers = [jax_worker] if jax_worker is not None else []
    try:
        if step_names:
            print("running the per-step rows ...", flush=True)
            steps = run_step_rows(step_names, train, args.quick, args.repeat, jax_worker)
            print_step_table(steps, step_names, args.quick, args.repeat)
        acc_results = None
        if "accuracy" in chosen:
            if not args.quick and not args.no_keras:
                workers.append(start_worker("torch", timeout=1800))
            acc_results = run_accuracy((train, test), epochs, workers)
        if jax_worker is not None:
            print(keras_env_line(jax_worker))
    finally:
        for worker in workers:
            if isinstance(worker, KerasWorker):
                worker.close()
    if "extras" in chosen:
        print_extras(train, acc_results, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
