"""lamina against PyTorch (eager) and Keras 3 on JAX (jit) on two convnets, side by side, in one run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_conv.py
    ... benchmarks/bench_conv.py --quick                 # fewer samples, one round (about a minute)
    ... benchmarks/bench_conv.py --models simple --rounds 3 --no-keras --no-rss
    ... benchmarks/bench_conv.py --threads 1             # every framework on one thread (a loaded machine)
    ... benchmarks/bench_conv.py --profile --models simple   # lamina's compiled step, node by node

Models (channels_last in lamina and Keras; PyTorch's natural NCHW, the data converted before timing):

- ``simple``: keras.io's simple MNIST convnet on Fashion-MNIST (28x28x1; synthetic data of that shape when
  the files are not installed): Conv2D(32, 3, relu) -> MaxPooling2D(2) -> Conv2D(64, 3, relu) ->
  MaxPooling2D(2) -> Flatten -> Dropout(0.5) -> Dense(10, softmax); Adam(1e-3), batch 128.
- ``deep``: three Conv2D(3x3, "same")-BatchNormalization-relu blocks of 64, 128, 128 filters on synthetic
  32x32x3 images, MaxPooling2D(2) after the first two, GlobalAveragePooling2D, Dense(10, softmax); batch 64.

Figures, per framework: training seconds per 12,800 samples (one ``fit`` epoch over whole batches after a
warm-up fit that traces/compiles, sparse categorical crossentropy and the accuracy metric; ``--quick`` and the
deep model time fewer samples and scale, as printed), predicting 10,000 samples at batch 128, single-image
latency (``model(x)``, and ``predict`` for lamina and Keras), and the peak RSS of a fresh process that imports
the framework, loads the timed training samples and trains one epoch on them (with its RSS before building
the model). Every framework runs in a worker process of its own (Keras's backend is fixed at import; one
framework's thread pool does not spin while another is timed) and they take turns model by model, round by
round, so load from other work on the machine hits them alike; each figure is the best round's, and every
round's value is printed for the spread. PyTorch uses one intra-op thread per usable core.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PER = 12800  # training figures are seconds per this many samples
FRAMEWORKS = ("lamina", "PyTorch", "Keras/JAX")
MODELS = {  # name: (batch, input shape, samples timed in full mode, samples timed in --quick mode)
    "simple": (128, (28, 28, 1), 12800, 2560),
    "deep": (64, (32, 32, 3), 2560, 640),
}


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads() -> int:
    """Threads per framework: ``--threads`` (passed to the workers as BENCH_CONV_THREADS), else the cores."""
    return int(os.environ.get("BENCH_CONV_THREADS") or cores())


def pin() -> None:
    """With ``--threads N``, keep this process on N of the usable cores: a hard limit for a runtime that
    sizes its pool from the cores it sees (XLA's CPU client may not honour the flags below)."""
    n = os.environ.get("BENCH_CONV_THREADS")
    if n and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: int(n)])


def thread_env(n: int | None) -> dict:
    """The environment that gives every framework ``n`` threads (None: each framework's default, one per
    core): OpenBLAS (NumPy, hence lamina), OpenMP (PyTorch) and XLA's CPU client (JAX)."""
    if n is None:
        return {}
    env = {"BENCH_CONV_THREADS": str(n), "OPENBLAS_NUM_THREADS": str(n), "OMP_NUM_THREADS": str(n)}
    if n == 1:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    return env


# ----------------------------------------------------------------------------- data


def load_data(name: str, n_train: int, n_test: int = 10000):
    """``(x, y), (xt, yt), source``: float32 channels-last images in [0, 1] and int64 labels."""
    _, shape, _, _ = MODELS[name]
    rng = np.random.default_rng(0)
    if name == "simple":
        try:
            x, y = _idx_pair("train", n_train)
            xt, yt = _idx_pair("t10k", n_test)
            source = "Fashion-MNIST"
        except OSError:  # not installed: the same shapes, synthetic
            x, xt = (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for n in (n_train, n_test))
            y, yt = (rng.integers(0, 10, n) for n in (n_train, n_test))
            source = "synthetic 28x28x1 (Fashion-MNIST not installed)"
        x, xt = (a.reshape(-1, *shape).astype(np.float32) / np.float32(255) for a in (x, xt))
    else:
        x, xt = (rng.random((n, *shape), dtype=np.float32) for n in (n_train, n_test))
        y, yt = (rng.integers(0, 10, n) for n in (n_train, n_test))
        source = "synthetic 32x32x3"
    return (x, y.astype(np.int64)), (xt, yt.astype(np.int64)), source


def _idx_pair(part: str, n: int):
    """The first ``n`` images and labels of Fashion-MNIST's ``part`` from the gzipped IDX files (read here, not
    with lamina's loader, so that the PyTorch and Keras processes do not import lamina)."""
    import gzip  # lazy: only for the real data

    folder = Path(os.environ.get("LAMINA_DATA", "/usr/share/datasets")) / "fashion-mnist"
    with gzip.open(folder / f"{part}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(folder / f"{part}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images[:n], labels[:n].astype(np.int64)


def timed_samples(name: str, quick: bool) -> int:
    batch, _, full, short = MODELS[name]
    n = short if quick else full
    return n - n % batch


# ----------------------------------------------------------------------------- lamina and Keras


def build_keras_like(lib, name: str, **compile_kwargs):
    """The model in ``lib`` (lamina or keras: one API), compiled with Adam(1e-3) and accuracy."""
    lib.utils.set_random_seed(0)
    L = lib.layers
    if name == "simple":
        stack = [L.Input((28, 28, 1)), L.Conv2D(32, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
                 L.Conv2D(64, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)), L.Flatten(), L.Dropout(0.5),
                 L.Dense(10, activation="softmax")]
    else:
        stack = [L.Input((32, 32, 3))]
        for i, filters in enumerate((64, 128, 128)):
            stack += [L.Conv2D(filters, 3, padding="same"), L.BatchNormalization(), L.Activation("relu")]
            stack.append(L.MaxPooling2D(2) if i < 2 else L.GlobalAveragePooling2D())
        stack.append(L.Dense(10, activation="softmax"))
    model = lib.Sequential(stack)
    model.compile(optimizer=lib.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  **compile_kwargs)
    return model


def best_of(fn, repeats: int, number: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t) / number)
    return best


def measure_keras_like(lib, name: str, quick: bool, **compile_kwargs) -> dict:
    batch = MODELS[name][0]
    n = timed_samples(name, quick)
    (x, y), (xt, _), _ = load_data(name, n)
    model = build_keras_like(lib, name, **compile_kwargs)
    model.fit(x[: 2 * batch], y[: 2 * batch], batch_size=batch, epochs=1, shuffle=False, verbose=0)  # trace / jit
    t = time.perf_counter()
    history = model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
    train = (time.perf_counter() - t) * PER / n
    x1 = xt[:1]
    few = 1 if quick else 3
    return {"train": train, "loss": float(history.history["loss"][-1]),
            "predict": best_of(lambda: model.predict(xt, batch_size=128, verbose=0), few, 1),
            "lat_call": best_of(lambda: np.asarray(model(x1)), 3, 20 if quick else 100),
            "lat_predict": best_of(lambda: model.predict(x1, verbose=0), 3, 10 if quick else 50)}


# ----------------------------------------------------------------------------- PyTorch


def torch_model(name: str):
    """The same architecture as an eager NCHW ``nn.Module`` emitting logits (the loss applies the softmax);
    BatchNorm with Keras's epsilon and momentum."""
    import torch  # lazy: optional peer, imported only in its worker

    nn = torch.nn
    if name == "simple":
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(1600, 10))
    mods, c_in = [], 3
    for i, filters in enumerate((64, 128, 128)):
        mods += [nn.Conv2d(c_in, filters, 3, padding=1), nn.BatchNorm2d(filters, eps=1e-3, momentum=0.01), nn.ReLU()]
        mods.append(nn.MaxPool2d(2) if i < 2 else nn.AdaptiveAvgPool2d(1))
        c_in = filters
    return nn.Sequential(*mods, nn.Flatten(), nn.Linear(128, 10))


def measure_torch(name: str, quick: bool) -> dict:
    import torch  # lazy: optional peer, imported only in its worker

    batch = MODELS[name][0]
    n = timed_samples(name, quick)
    (x, y), (xt, _), _ = load_data(name, n)
    x, xt = (torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))) for a in (x, xt))
    y = torch.from_numpy(y)
    torch.manual_seed(0)
    model = torch_model(name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)  # Keras's epsilon
    loss_fn = torch.nn.CrossEntropyLoss()

    def epoch(xe, ye):
        model.train()
        loss_sum, correct = torch.zeros(()), torch.zeros(())
        for i in range(0, len(xe), batch):
            xb, yb = xe[i:i + batch], ye[i:i + batch]
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            opt.step()
            with torch.no_grad():  # fit's running loss and accuracy
                correct += (out.argmax(1) == yb).sum()
                loss_sum += loss.detach() * len(yb)
        return float(loss_sum) / len(xe), float(correct) / len(xe)

    epoch(x[: 2 * batch], y[: 2 * batch])
    t = time.perf_counter()
    loss, _ = epoch(x, y)
    train = (time.perf_counter() - t) * PER / n
    model.eval()

    def predict(inp):
        with torch.no_grad():
            return [torch.softmax(model(inp[i:i + 128]), dim=1) for i in range(0, len(inp), 128)]

    x1 = xt[:1]
    few = 1 if quick else 3
    return {"train": train, "loss": loss, "predict": best_of(lambda: predict(xt), few, 1),
            "lat_call": best_of(lambda: predict(x1), 3, 20 if quick else 100), "lat_predict": None}


# ----------------------------------------------------------------------------- lamina's step, node by node


def profile_lamina(name: str, steps: int) -> None:
    """Where lamina's compiled training step goes: each plan node's forward and backward (median over
    ``steps`` steps, wall and this process's CPU time), the loss and optimizer, and the whole step."""
    import lamina  # lazy: only this mode profiles
    from lamina.models import compiled_step  # lazy: as above

    batch = MODELS[name][0]
    (x, y), _, _ = load_data(name, batch * (steps + 2))
    model = build_keras_like(lamina, name)
    model.fit(x[: 2 * batch], y[: 2 * batch], batch_size=batch, epochs=1, shuffle=False, verbose=0)
    step = model._fast_step
    if step is None:
        raise SystemExit(f"the {name} model did not take the compiled step")
    clocks: dict = {}

    def timed(label, fn):
        def run(*args):
            w, c = time.perf_counter(), time.process_time()
            out = fn(*args)
            clocks.setdefault(label, []).append((time.perf_counter() - w, time.process_time() - c))
            return out
        return run

    class Timed:
        """A plan node with clocked forward and backward (the nodes have slots: wrap, do not patch)."""

        def __init__(self, i, node):
            self.node = node
            if node.layer is None:  # a segment: its nodes, block by block on threads, or one after another
                inner = node.nodes
                label = f"{i:>2} {'Segment':10} {inner[0].layer.name}..{inner[-1].layer.name}"
                if compiled_step._segment_workers(batch) <= 1:  # not split: each of its nodes clocked too
                    node.nodes = [Timed(f"{i}.{j}", n) for j, n in enumerate(inner)]
            else:
                label = f"{i:>2} {type(node).__name__[1:-4]:10} {node.layer.name}"
            self.forward = timed(label + " fwd", node.forward)
            self.backward = timed(label + " bwd", node.backward)

        def __getattr__(self, attr):
            return getattr(self.node, attr)

    step.nodes = [Timed(i, node) for i, node in enumerate(step.nodes)]
    step._reversed = step.nodes[::-1]
    model.optimizer.apply = timed("optimizer.apply", model.optimizer.apply)
    whole = timed("whole training step", model._train_step)
    for i in range(2, steps + 2):
        whole(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch], None)
    print(f"\nlamina's compiled step, {name} model, batch {batch}: median over {steps} steps")
    print(f"{'':44}{'wall ms':>10}{'CPU ms':>10}")
    for label, values in clocks.items():
        wall = sorted(v[0] for v in values)[len(values) // 2]
        cpu = sorted(v[1] for v in values)[len(values) // 2]
        print(f"{label:44}{wall * 1e3:10.2f}{cpu * 1e3:10.2f}")


# ----------------------------------------------------------------------------- workers


def serve(framework: str) -> None:
    """A worker: one JSON request a line on stdin, one JSON answer a line on stdout."""
    pin()
    if framework == "torch":
        import torch  # lazy: optional peer, imported only in its worker

        torch.set_num_threads(threads())
        lib = None
    elif framework == "keras":
        import keras  # lazy: KERAS_BACKEND is set by the parent before this import

        lib = keras
    else:
        import lamina  # lazy: imported in its own worker

        lib = lamina
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["cmd"] == "env":
                reply = env_info(framework, lib)
            elif framework == "torch":
                reply = measure_torch(request["model"], request["quick"])
            else:
                extra = {"jit_compile": True} if framework == "keras" else {}
                reply = measure_keras_like(lib, request["model"], request["quick"], **extra)
        except Exception as exc:  # one failed request must not take the other rows with it
            reply = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        print(json.dumps(reply), flush=True)


def env_info(framework: str, lib) -> dict:
    import bench_train as bt  # lazy: its helper reads threadpoolctl in this worker

    if framework == "torch":
        import torch  # lazy: optional peer, imported only in its worker

        version = f"PyTorch {torch.__version__}, {torch.get_num_threads()} intra-op threads"
    elif framework == "keras":
        import jax  # lazy: the Keras worker's backend

        version = f"Keras {lib.__version__} on jax {jax.__version__} ({', '.join(map(str, jax.devices()))}), jit"
    else:
        version = f"lamina {lib.__version__} from {Path(lib.__file__).parent}"
    return {"version": version, "pools": bt.thread_pools()}


class Worker:
    """A framework's worker process (this script with ``--serve``), answering one request at a time."""

    def __init__(self, name: str, framework: str, timeout: int, n_threads: int | None = None):
        self.name, self.timeout, self.error = name, timeout, None
        env = dict(os.environ, **thread_env(n_threads))
        if framework == "keras":
            env["KERAS_BACKEND"] = "jax"
        self._log = tempfile.TemporaryFile(mode="w+")  # warnings go to a file, so no pipe fills up
        self._proc = subprocess.Popen([sys.executable, __file__, "--serve", framework], env=env, text=True,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        self._lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            if line.startswith("{"):
                self._lines.put(json.loads(line))
        self._lines.put(None)

    def ask(self, **request) -> dict:
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
            self.error = (self._log.read().strip().splitlines()[-1:] or ["worker ended"])[0][:200]
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


# ----------------------------------------------------------------------------- peak memory


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_run(framework: str, name: str, quick: bool) -> None:
    """In a fresh process: import, load the epoch's data, then build and train one epoch; print the RSS
    before building and the process's peak RSS (``ru_maxrss``) as one JSON line. The epoch is the model's
    timed samples (the peak is reached within the first steps; more steps only add time)."""
    batch, n = MODELS[name][0], timed_samples(name, quick)
    pin()
    if framework == "torch":
        import torch  # lazy: optional peer

        torch.set_num_threads(threads())
        (x, y), _, _ = load_data(name, n, n_test=1)
        x, y = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(y)
        base = rss_mb()
        model = torch_model(name)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
        loss_fn = torch.nn.CrossEntropyLoss()
        for i in range(0, n, batch):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[i:i + batch]), y[i:i + batch])
            loss.backward()
            opt.step()
    else:
        if framework == "keras":
            import keras as lib  # lazy: KERAS_BACKEND is set by the parent
        else:
            import lamina as lib  # lazy: imported in its own process
        (x, y), _, _ = load_data(name, n, n_test=1)
        base = rss_mb()
        build_keras_like(lib, name, **({"jit_compile": True} if framework == "keras" else {})).fit(
            x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    print(json.dumps({"base": base, "peak": peak}))


def measure_rss(framework: str, name: str, n_threads: int | None, quick: bool) -> dict:
    env = dict(os.environ, **thread_env(n_threads))
    if framework == "keras":
        env["KERAS_BACKEND"] = "jax"
    command = [sys.executable, __file__, "--rss", framework, name] + (["--quick"] if quick else [])
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"error": (out.stderr.strip().splitlines()[-1:] or ["failed"])[0][:200]}
    return json.loads(lines[-1])


# ----------------------------------------------------------------------------- report


def fmt_s(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3f} s" if v >= 0.1 else f"{v * 1e3:.2f} ms" if v >= 1e-3 else f"{v * 1e6:.0f} us"


def ratio(mine, peers: dict, higher_better: bool = False) -> str:
    """lamina against the best peer: ``1.53x faster than PyTorch`` (or smaller / larger for memory)."""
    peers = {k: v for k, v in peers.items() if v is not None}
    if mine is None or not peers:
        return ""
    name, best = min(peers.items(), key=lambda kv: kv[1])
    word = ("less", "more") if higher_better else ("faster", "slower")
    return f"{best / mine:.2f}x {word[0]} than {name}" if mine <= best else f"{mine / best:.2f}x {word[1]} than {name}"


def print_table(name: str, results: dict, rss: dict, quick: bool) -> None:
    batch, shape, _, _ = MODELS[name]
    n = timed_samples(name, quick)
    names = [fw for fw in FRAMEWORKS if fw in results]
    print(f"\n{name} convnet on {'x'.join(map(str, shape))}, batch {batch} (training timed over {n} samples, "
          f"scaled to {PER}); best of {max(len(v) for v in results.values())} round(s)")
    print(f"{'':34}" + "".join(f"{fw:>14}" for fw in names) + f"{'lamina vs best peer':>30}")
    rows = [("train s / 12,800 samples", "train"), ("predict 10,000 (batch 128)", "predict"),
            ("1 image model(x) / forward", "lat_call"), ("1 image predict", "lat_predict")]
    for label, key in rows:
        best = {fw: _best(results[fw], key) for fw in names}
        print(f"{label:34}" + "".join(f"{fmt_s(best[fw]):>14}" for fw in names)
              + f"{ratio(best.get('lamina'), {k: v for k, v in best.items() if k != 'lamina'}):>30}")
    if rss:
        peak = {fw: rss[fw].get("peak") for fw in names if fw in rss}
        print(f"{'peak RSS of an epoch (MB)':34}" + "".join(
            f"{'-' if peak.get(fw) is None else format(peak[fw], '.0f'):>14}" for fw in names)
            + f"{ratio(peak.get('lamina'), {k: v for k, v in peak.items() if k != 'lamina'}, True):>30}")
        print(f"{'  RSS before the model (MB)':34}" + "".join(
            f"{'-' if rss.get(fw, {}).get('base') is None else format(rss[fw]['base'], '.0f'):>14}" for fw in names))
        for fw in names:
            if "error" in rss.get(fw, {}):
                print(f"  {fw} RSS run failed: {rss[fw]['error']}")
    print(f"{'  training loss of the timed epoch':34}" + "".join(
        f"{'-' if not results[fw] else format(results[fw][-1]['loss'], '.4f'):>14}" for fw in names))
    for label, key in rows[:3]:
        print(f"  every round, {label}: " + "; ".join(
            f"{fw} " + ", ".join(fmt_s(r[key]) for r in results[fw]) for fw in names))


def _best(rounds: list, key: str):
    values = [r[key] for r in rounds if r.get(key) is not None]
    return min(values) if values else None


def print_machine(workers: dict) -> None:
    import bench_train as bt  # lazy: the machine lines are shared with the trainer benchmark

    env = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items())
                   if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "XLA_"))) or "none"
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"run at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}; load average {load}; Python {sys.version.split()[0]}; "
          f"NumPy {np.__version__}")
    print(f"machine: {bt.cpu_model()}, {cores()} usable cores ({os.cpu_count()} online); "
          f"thread-related environment: {env}")
    for name, worker in workers.items():
        info = worker.ask(cmd="env")
        text = info["error"] if "error" in info else f"{info['version']}; threadpoolctl: {info['pools']}"
        print(f"{name}: {text}")


def run_rounds(workers: dict, models: list, rounds: int, quick: bool) -> dict:
    """``{model: {framework: [reply per round]}}``; the frameworks take turns model by model."""
    results = {m: {fw: [] for fw in workers} for m in models}
    for r in range(rounds):
        for m in models:
            for fw, worker in workers.items():
                print(f"  round {r + 1}/{rounds}, {m}: {fw} ...", flush=True)
                reply = worker.ask(cmd="measure", model=m, quick=quick)
                if "error" in reply:
                    print(f"    {fw} failed: {reply['error']}")
                else:
                    results[m][fw].append(reply)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed samples, one round by default")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3, --quick 1)")
    parser.add_argument("--models", default="simple,deep", help="comma-separated, from: " + ", ".join(MODELS))
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every framework (default: each framework's own, one per usable core); "
                             "each worker is also pinned to that many cores")
    parser.add_argument("--no-keras", action="store_true", help="leave Keras/JAX out")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-memory processes")
    parser.add_argument("--profile", action="store_true",
                        help="only lamina's compiled step of each model, node by node (in this process, "
                             "with --threads N on N threads)")
    parser.add_argument("--serve", choices=("lamina", "torch", "keras"), help=argparse.SUPPRESS)
    parser.add_argument("--rss", nargs=2, metavar=("FRAMEWORK", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    if args.rss:
        rss_run(*args.rss, args.quick)
        return 0
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models or any(m not in MODELS for m in models):
        parser.error(f"--models takes names from {', '.join(MODELS)}. Received: {args.models!r}")
    rounds = args.rounds or (1 if args.quick else 3)
    if args.profile:
        if args.threads and os.environ.get("BENCH_CONV_THREADS") != str(args.threads):
            # OpenBLAS sizes its pool when NumPy is imported: run again with the thread variables set
            os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **thread_env(args.threads)})
        pin()
        for m in models:
            profile_lamina(m, 5 if args.quick else 20)
        return 0
    kinds = {"lamina": "lamina", "PyTorch": "torch", "Keras/JAX": "keras"}
    if args.no_keras:
        kinds.pop("Keras/JAX")
    workers = {fw: Worker(fw, kind, 600 if args.quick else 1800, args.threads) for fw, kind in kinds.items()}
    try:
        print_machine(workers)
        print(f"threads per framework: {args.threads or 'each framework default (one per usable core)'}")
        print(f"data: {load_data('simple', 1, 1)[2]} for the simple model, synthetic 32x32x3 for the deep one")
        results = run_rounds(workers, models, rounds, args.quick)
        rss = {}
        if not args.no_rss:
            for m in models:
                rss[m] = {}
                for fw, kind in kinds.items():
                    print(f"  peak RSS, {m}: {fw} ...", flush=True)
                    rss[m][fw] = measure_rss(kind, m, args.threads, args.quick)
    finally:
        for worker in workers.values():
            worker.close()
    for m in models:
        print_table(m, {fw: v for fw, v in results[m].items() if v}, rss.get(m, {}), args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
