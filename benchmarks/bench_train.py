"""lamina against PyTorch and Keras (JAX, torch) on the seed model, side by side, in one run.

    python benchmarks/bench_train.py            # full run (a few minutes)
    python benchmarks/bench_train.py --quick    # fewer epochs, no Keras/torch backend

Trains 784 -> 128 relu -> 64 relu -> 10 softmax with Adam(1e-3) and sparse categorical
crossentropy on Fashion-MNIST (synthetic data of the same shape if it is not installed) with each
framework on the same data in the same epoch order, and prints seconds per epoch at batch 32 and
256 (median of the epochs after the first), test accuracy after 5 epochs, predict throughput on
10,000 samples, single-sample latency of predict and of model(x), cold import time and installed
size, each with lamina's ratio to the fastest peer; then lamina's achieved GFLOP/s at batch 1024
against NumPy's own float32 matmul peak. Keras runs in subprocesses (its backend is fixed at import).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FLOPS_PER_SAMPLE = 6 * (784 * 128 + 128 * 64 + 64 * 10)  # forward 2 + backward 4 per weight


def load_data(seed: int = 0):
    import lamina

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
    import lamina
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
    import torch

    x, y = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    xt, yt = torch.from_numpy(test[0]), torch.from_numpy(test[1])

    def build():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64),
                                    torch.nn.ReLU(), torch.nn.Linear(64, 10))
        return model, torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)

    loss_fn = torch.nn.CrossEntropyLoss()

    def train_epochs(model, opt, orders, batch):
        times = []
        for order in orders:
            order = torch.from_numpy(order)
            t = time.perf_counter()
            for i in range(0, len(order), batch):
                idx = order[i:i + batch]
                opt.zero_grad()
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                opt.step()
            times.append(time.perf_counter() - t)
        return times

    model, opt = build()
    train_epochs(model, opt, [orders32[0][:256]], 32)
    model, opt = build()
    t32 = train_epochs(model, opt, orders32, 32)
    with torch.no_grad():
        acc = float((model(xt).argmax(1) == yt).float().mean())
    m256, o256 = build()
    t256 = train_epochs(m256, o256, orders256[:epochs256], 256)
    x1 = xt[:1]

    def forward(inp):
        with torch.no_grad():
            return torch.softmax(model(inp), dim=1)

    return {"epoch32": median_after_first(t32), "epochs32": t32, "epoch256": median_after_first(t256),
            "acc": acc, "predict10k": best_of(lambda: forward(xt), 5, 5),
            "lat_call": best_of(lambda: forward(x1), 5, 2000), "lat_predict": None,
            "threads": torch.get_num_threads()}


# ----------------------------------------------------------------------------- Keras (subprocess)


def run_keras(backend: str, epochs32: int, epochs256: int, timeout: int) -> dict | None:
    env = dict(os.environ, KERAS_BACKEND=backend)
    cmd = [sys.executable, str(HERE / "keras_worker.py"), str(epochs32), str(epochs256)]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": tail[0][:120]}
    return json.loads(lines[-1])


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
    import importlib.util

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


# ----------------------------------------------------------------------------- report


def fmt_s(v):
    if v is None:
        return "-"
    return f"{v:.3f} s" if v >= 0.1 else f"{v * 1e3:.2f} ms" if v >= 1e-3 else f"{v * 1e6:.1f} us"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs at batch 32, no Keras on torch")
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras runs")
    args = parser.parse_args(argv)
    epochs32 = 2 if args.quick else 5
    epochs256 = 3
    train, test, source = load_data()
    orders32 = epoch_orders(len(train[0]), epochs32, seed=1)
    orders256 = epoch_orders(len(train[0]), epochs256, seed=2)
    threads = f"{os.environ.get('OMP_NUM_THREADS', '-')}/{os.environ.get('OPENBLAS_NUM_THREADS', '-')}"
    print(f"data: {source}; BLAS: {blas_info()}; CPUs: {os.cpu_count()}; OMP/OPENBLAS threads: {threads}")
    results = {}
    print("running lamina ...", flush=True)
    results["lamina"] = run_lamina(train, test, orders32, orders256, epochs256)
    try:
        print("running PyTorch ...", flush=True)
        results["PyTorch"] = run_torch(train, test, orders32, orders256, epochs256)
    except ImportError:
        print("  (PyTorch not installed)")
    if not args.no_keras:
        for backend in (["jax"] if args.quick else ["jax", "torch"]):
            print(f"running Keras/{backend} ...", flush=True)
            res = run_keras(backend, epochs32, epochs256, timeout=1200)
            if res and "error" not in res:
                results[f"Keras/{backend}"] = res
            else:
                print(f"  (Keras/{backend} skipped: {res.get('error') if res else 'no result'})")

    rows = [("s/epoch, batch 32", "epoch32", False), ("s/epoch, batch 256", "epoch256", False),
            (f"test accuracy after {epochs32} epochs", "acc", True),
            ("predict 10,000 samples", "predict10k", False),
            ("single-sample predict", "lat_predict", False), ("single-sample model(x)", "lat_call", False)]
    names = list(results)
    print()
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

    imports = {"numpy": cold_import("numpy"), "lamina": cold_import("lamina"), "torch": cold_import("torch"),
               "keras": cold_import("keras")}
    sizes = {"lamina": installed_mb("lamina"), "numpy": installed_mb("numpy"), "torch": installed_mb("torch"),
             "keras": installed_mb("keras", "optree", "ml_dtypes", "h5py", "rich", "namex", "absl"),
             "jax": installed_mb("jax", "jaxlib")}
    print()
    print("cold import: " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in imports.items())
          + f"; lamina adds {max(0.0, imports['lamina'] - imports['numpy']) * 1e3:.0f} ms to numpy")
    print("installed size (MB, own files): " + ", ".join(f"{k} {v:.1f}" for k, v in sizes.items()))
    peak = numpy_matmul_peak()
    achieved = FLOPS_PER_SAMPLE * len(train[0]) / results["lamina"]["epoch1024"] / 1e9
    print(f"batch 1024: lamina {achieved:.1f} GFLOP/s = {achieved / peak:.0%} of NumPy's float32 matmul peak "
          f"({peak:.1f} GFLOP/s, 2048x2048)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
