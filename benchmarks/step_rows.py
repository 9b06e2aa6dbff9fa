"""The per-step training rows bench_train.py times: specs, data, builders, clocks.

One training step is what each framework's ``fit`` does per batch: forward, loss, backward, the Adam(1e-3)
update and the accuracy metric. lamina and Keras share the builders below (lamina keeps Keras's API);
PyTorch gets the equivalent eager ``nn.Module`` and a loop that keeps the same running loss and accuracy.
Every framework sees identical batches: one fixed permutation per row, then ``shuffle=False``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

WARM_STEPS = 5  # steps of the timed fit left out of the median (the fit's own first-step set-up)
QUICK_STEPS = 60  # steps timed per row in --quick mode (after the warm-up)
JAX_WINDOW = 10  # Keras/JAX steps per timed sample (see step_clock)


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    batch: int
    data: str  # "circles" or "fashion"


ROWS = {
    "circles": Row("circles", "circles 2-64-64-1 sigmoid, BCE", 32, "circles"),
    "mlp32": Row("mlp32", "tutorial MLP 784-128-64-10", 32, "fashion"),
    "mlp256": Row("mlp256", "tutorial MLP 784-128-64-10", 256, "fashion"),
    "wide": Row("wide", "wide MLP 784-1024-1024-10", 128, "fashion"),
    "bn_dropout": Row("bn_dropout", "BN+Dropout MLP 784-256-128-10", 64, "fashion"),
    "functional": Row("functional", "Functional two-branch 784-(128|64)-10", 32, "fashion"),
}


def cores() -> int:
    """CPUs this process may run on (the affinity mask, which a container may narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def make_circles(n: int = 20000, noise: float = 0.1, factor: float = 0.5, seed: int = 0):
    """Two concentric circles (outer label 0, inner radius ``factor`` label 1), shuffled, Gaussian noise.

    Built here with NumPy alone so that every lamina version and every framework gets the same points.
    """
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 2.0 * np.pi, n // 2, endpoint=False)
    ring = np.stack([np.cos(t), np.sin(t)], axis=1)
    x = np.concatenate([ring, factor * ring])
    y = np.concatenate([np.zeros(n // 2), np.ones(n // 2)])
    order = rng.permutation(n)
    x = x[order] + rng.normal(0.0, noise, x.shape)
    return x.astype("float32"), y[order].astype("float32").reshape(-1, 1)


def row_data(row: Row, fashion, quick: bool):
    """``(x, y)`` for ``row`` in the order every framework trains on, cut to whole batches (a last short
    batch would make a jit-compiling peer compile a second time inside the timed epoch)."""
    x, y = make_circles() if row.data == "circles" else fashion
    order = np.random.default_rng(7).permutation(len(x))
    steps = WARM_STEPS + QUICK_STEPS if quick else len(x) // row.batch
    keep = order[: steps * row.batch]
    return np.ascontiguousarray(x[keep]), np.ascontiguousarray(y[keep])


# ----------------------------------------------------------------------------- lamina and Keras


def build_model(lib, row: Row, **compile_kwargs):
    """The row's model in ``lib`` (lamina or keras), compiled with Adam(1e-3) and accuracy."""
    lib.utils.set_random_seed(0)
    L = lib.layers
    if row.data == "circles":
        model = lib.Sequential([L.Input((2,)), L.Dense(64, activation="relu"), L.Dense(64, activation="relu"),
                                L.Dense(1, activation="sigmoid")])
        loss = "binary_crossentropy"
    else:
        model = _fashion_model(lib, row.name)
        loss = "sparse_categorical_crossentropy"
    model.compile(optimizer=lib.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"], **compile_kwargs)
    return model


def _fashion_model(lib, name: str):
    L = lib.layers
    if name in ("mlp32", "mlp256"):
        return lib.Sequential([L.Input((784,)), L.Dense(128, activation="relu"), L.Dense(64, activation="relu"),
                               L.Dense(10, activation="softmax")])
    if name == "wide":
        return lib.Sequential([L.Input((784,)), L.Dense(1024, activation="relu"), L.Dense(1024, activation="relu"),
                               L.Dense(10, activation="softmax")])
    if name == "bn_dropout":
        return lib.Sequential([L.Input((784,)),
                               L.Dense(256), L.BatchNormalization(), L.Activation("relu"), L.Dropout(0.2),
                               L.Dense(128), L.BatchNormalization(), L.Activation("relu"), L.Dropout(0.2),
                               L.Dense(10, activation="softmax")])
    if name == "functional":
        inputs = L.Input((784,))
        merged = L.Concatenate()([L.Dense(128, activation="relu")(inputs), L.Dense(64, activation="tanh")(inputs)])
        return lib.Model(inputs, L.Dense(10, activation="softmax")(merged))
    raise ValueError(f"No Fashion-MNIST model for row {name!r}. Received: {name!r}")


def step_clock(base, window: int = 1, sync=None):
    """A callback class (subclass of ``base``) stamping the start of every ``window``-th train batch after
    the warm-up, and the epoch's end.

    It listens to ``on_train_batch_begin`` only, so neither framework builds per-batch logs for it and
    Keras keeps its asynchronous dispatch. JAX runs a step after ``fit`` has moved on to the next batch, so
    for Keras/JAX a per-batch stamp would time the dispatch alone: there ``window`` batches make one
    sample and ``sync(model)`` waits for the device before each stamp. The epoch-end stamp comes after the
    epoch's results are ready in every framework.
    """

    class StepClock(base):
        def __init__(self):
            super().__init__()
            self.marks = []  # (perf_counter, batch index)
            self.last = -1

        def on_train_batch_begin(self, batch, logs=None):
            self.last = batch
            if batch >= WARM_STEPS and (batch - WARM_STEPS) % window == 0:
                if sync is not None:
                    sync(self.model)
                self.marks.append((time.perf_counter(), batch))

        def on_epoch_end(self, epoch, logs=None):
            self.marks.append((time.perf_counter(), self.last + 1))
            self.final_logs = dict(logs or {})

    return StepClock


def first_fit(lib, row: Row, x, y, **compile_kwargs):
    """A fresh compiled model and the wall seconds of its first ``fit`` on one batch (compile excluded)."""
    model = build_model(lib, row, **compile_kwargs)
    t = time.perf_counter()
    model.fit(x[: row.batch], y[: row.batch], batch_size=row.batch, epochs=1, shuffle=False, verbose=0)
    return model, time.perf_counter() - t


def time_fit_row(lib, row: Row, x, y, window: int = 1, sync=None, **compile_kwargs) -> dict:
    """Trace and per-step times of one timed epoch.

    The trace is the first one-batch ``fit`` of a fresh compiled model, after a throwaway model of the same
    architecture has taken that step: what is left is the per-model cost (building the step, tracing,
    compiling), not the process's first-use costs (lazy imports, kernels compiled once per process),
    which would otherwise land on whichever row runs first.
    """
    first_fit(lib, row, x, y, **compile_kwargs)
    model, trace = first_fit(lib, row, x, y, **compile_kwargs)
    clock = step_clock(lib.callbacks.Callback, window, sync)()
    model.fit(x, y, batch_size=row.batch, epochs=1, shuffle=False, verbose=0, callbacks=[clock])
    return summarize(clock.marks, trace, clock.final_logs.get("loss"), window)


def summarize(marks: list[tuple[float, int]], trace: float, loss, window: int = 1) -> dict:
    """Median and mean microseconds per step from ``(time, batch index)`` stamps (the last one: the end)."""
    per_step = [(t1 - t0) / (s1 - s0) for (t0, s0), (t1, s1) in zip(marks, marks[1:], strict=False)]
    (t_first, s_first), (t_end, s_end) = marks[0], marks[-1]
    return {"median_us": statistics.median(per_step) * 1e6, "mean_us": (t_end - t_first) / (s_end - s_first) * 1e6,
            "steps": s_end - s_first, "window": window, "trace_ms": trace * 1e3,
            "loss": None if loss is None else float(loss)}


# ----------------------------------------------------------------------------- PyTorch (eager)


def torch_model(row: Row):
    """The row's model as an eager ``nn.Module`` emitting logits (the loss applies sigmoid/softmax fused),
    Glorot-uniform weights and zero biases as in Keras, BatchNorm with Keras's eps and momentum."""
    import torch  # lazy: optional peer, imported only when the PyTorch rows run

    nn = torch.nn

    class TwoBranch(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.out = nn.Linear(784, 128), nn.Linear(784, 64), nn.Linear(192, 10)

        def forward(self, x):
            return self.out(torch.cat([torch.relu(self.a(x)), torch.tanh(self.b(x))], dim=1))

    def bn(n):
        return nn.BatchNorm1d(n, eps=1e-3, momentum=0.01)  # Keras's epsilon; torch momentum = 1 - Keras's 0.99

    builders = {
        "circles": lambda: nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1)),
        "mlp": lambda: nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)),
        "wide": lambda: nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                                      nn.Linear(1024, 10)),
        "bn_dropout": lambda: nn.Sequential(nn.Linear(784, 256), bn(256), nn.ReLU(), nn.Dropout(0.2),
                                            nn.Linear(256, 128), bn(128), nn.ReLU(), nn.Dropout(0.2),
                                            nn.Linear(128, 10)),
        "functional": TwoBranch,
    }
    key = "mlp" if row.name in ("mlp32", "mlp256") else row.name
    if key not in builders:
        raise ValueError(f"No PyTorch model for row {row.name!r}. Received: {row.name!r}")
    model = builders[key]()
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return model


class TorchTrainer:
    """Fit's step in eager PyTorch: zero grads, forward, loss, backward, Adam update, running loss and
    accuracy (kept as tensors, as fit keeps its metric state, read once at the epoch's end)."""

    def __init__(self, row: Row, model):
        import torch  # lazy: optional peer, imported only when the PyTorch rows run

        self.model = model
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)  # Keras's epsilon
        self.binary = row.data == "circles"
        self.loss_fn = torch.nn.BCEWithLogitsLoss() if self.binary else torch.nn.CrossEntropyLoss()
        self._no_grad = torch.no_grad
        self._zeros = torch.zeros
        self.reset_metrics()

    def reset_metrics(self) -> None:
        self.loss_sum, self.correct, self.seen = self._zeros(()), self._zeros(()), 0

    def step(self, xb, yb) -> None:
        self.opt.zero_grad(set_to_none=True)
        out = self.model(xb)
        loss = self.loss_fn(out, yb)
        loss.backward()
        self.opt.step()
        with self._no_grad():
            pred = (out > 0).to(yb.dtype) if self.binary else out.argmax(1)
            self.correct += (pred == yb).sum()
            self.loss_sum += loss.detach() * len(yb)
            self.seen += len(yb)

    def logs(self) -> dict:
        return {"loss": float(self.loss_sum) / self.seen, "accuracy": float(self.correct) / self.seen}


def time_torch_row(row: Row, x, y) -> dict:
    """Trace (first step of a fresh model) and per-step times of one epoch, as :func:`time_fit_row`."""
    import torch  # lazy: optional peer, imported only when the PyTorch rows run

    xt, yt = torch.from_numpy(x), torch.from_numpy(y if row.data == "circles" else y.astype("int64"))
    b = row.batch
    torch.manual_seed(0)
    TorchTrainer(row, torch_model(row)).step(xt[:b], yt[:b])  # the throwaway first model, as time_fit_row
    trainer = TorchTrainer(row, torch_model(row))
    trainer.model.train()
    t = time.perf_counter()
    trainer.step(xt[:b], yt[:b])
    trace = time.perf_counter() - t
    trainer.reset_metrics()  # the timed epoch starts with fresh metrics, as each fit epoch does
    marks = []
    for step, i in enumerate(range(0, len(xt), b)):
        if step >= WARM_STEPS:
            marks.append((time.perf_counter(), step))
        trainer.step(xt[i:i + b], yt[i:i + b])
    logs = trainer.logs()  # the epoch-end read of the metrics, inside the last step's time as in fit
    marks.append((time.perf_counter(), step + 1))
    return summarize(marks, trace, logs["loss"])


def cold_first_step(row: Row) -> float | None:
    """Milliseconds of the first one-batch ``fit`` of a fresh lamina model in a fresh Python process (the
    data is loaded and the model compiled before the clock starts), or None if that process failed."""
    out = subprocess.run([sys.executable, __file__, row.name], capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    return float(lines[-1]) if out.returncode == 0 and lines else None


def _print_cold_first_step(name: str) -> None:
    import bench_train  # lazy: bench_train imports this module

    import lamina  # lazy: the clock starts after this import

    row = ROWS[name]
    train, _, _ = bench_train.load_data() if row.data == "fashion" else (None, None, None)
    x, y = row_data(row, train, quick=True)
    _, seconds = first_fit(lamina, row, x, y)
    print(seconds * 1e3)


if __name__ == "__main__":
    _print_cold_first_step(sys.argv[1])
