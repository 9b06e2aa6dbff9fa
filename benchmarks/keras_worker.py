"""Keras for bench_train.py, in its own process (KERAS_BACKEND is read at import), serving requests.

    KERAS_BACKEND=jax python benchmarks/keras_worker.py

Reads one JSON request a line on stdin and answers each with one JSON line on stdout, so the parent can
take turns row by row with lamina and PyTorch (background load then hits every framework alike):
``{"cmd": "steps", "row": NAME, "quick": BOOL}`` times one per-step row of step_rows.py, compiled with
``jit_compile=True``; ``{"cmd": "seed", "epochs32": N, "epochs256": M}`` takes the tutorial-MLP epochs,
accuracy and predict figures bench_train.py takes for lamina and PyTorch; ``{"cmd": "env"}`` reports
versions and threads. A failed request answers ``{"error": ...}``; end of input ends the process. Data
and batch orders come from the same helpers as the parent's, so every framework trains on identical batches.
"""

from __future__ import annotations

import json
import os
import sys
import time

import bench_train as bt
import step_rows as sr


def run_seed(keras, data, epochs32: int, epochs256: int) -> dict:
    """The tutorial MLP: epochs at batch 32 and 256 in the shared orders, test accuracy, predict timings."""
    (x, y), (xt, yt) = data
    orders32 = bt.epoch_orders(len(x), epochs32, seed=1)
    orders256 = bt.epoch_orders(len(x), epochs256, seed=2)

    def build():
        return sr.build_model(keras, sr.ROWS["mlp32"], **compile_options(keras))

    def train_epochs(model, orders, batch):
        times = []
        for order in orders:
            xo, yo = x[order], y[order]
            t = time.perf_counter()
            model.fit(xo, yo, batch_size=batch, epochs=1, shuffle=False, verbose=0)
            times.append(time.perf_counter() - t)
        return times

    build().fit(x[:256], y[:256], batch_size=32, epochs=1, verbose=0)
    model = build()
    t32 = train_epochs(model, orders32, 32)
    acc = float(model.evaluate(xt, yt, verbose=0)[1])
    m256 = build()
    m256.fit(x[:512], y[:512], batch_size=256, epochs=1, verbose=0)
    t256 = train_epochs(m256, orders256, 256)
    x1 = xt[:1]
    return {
        "epoch32": bt.median_after_first(t32), "epochs32": t32, "epoch256": bt.median_after_first(t256),
        "acc": acc, "predict10k": bt.best_of(lambda: model.predict(xt, verbose=0), 3, 2),
        "lat_predict": bt.best_of(lambda: model.predict(x1, verbose=0), 3, 50),
        "lat_call": bt.best_of(lambda: model(x1), 3, 200),
    }


def compile_options(keras) -> dict:
    """XLA on JAX (``jit_compile=True``); Keras's own default elsewhere (on torch, True means torch.compile)."""
    return {"jit_compile": True} if keras.backend.backend() == "jax" else {}


def device_sync(keras):
    """A ``sync(model)`` for step_clock: on JAX, wait for the state fit's last dispatched step produces."""
    if keras.backend.backend() != "jax":
        return None, 1
    import jax  # lazy: only on the JAX backend

    def sync(model):
        # fit keeps the in-flight state in model._jax_state (Keras 3's JAX trainer), a tracked dict of tracked
        # lists that jax does not see as a pytree: wait on its arrays one by one. Nothing goes back into the
        # model; this only waits.
        state = getattr(model, "_jax_state", None) or {}
        jax.block_until_ready([array for group in state.values() for array in group])

    return sync, sr.JAX_WINDOW


def run_steps(keras, name: str, fashion, quick: bool) -> dict:
    sync, window = device_sync(keras)
    row = sr.ROWS[name]
    x, y = sr.row_data(row, fashion, quick)
    return sr.time_fit_row(keras, row, x, y, window=window, sync=sync, **compile_options(keras))


def env_info(keras) -> dict:
    info = {"keras": keras.__version__, "backend": keras.backend.backend(), "jax": None, "devices": None,
            "xla_flags": os.environ.get("XLA_FLAGS"), "os_threads": len(os.listdir("/proc/self/task"))
            if os.path.isdir("/proc/self/task") else None, "pools": bt.thread_pools()}
    if info["backend"] == "jax":
        import jax  # lazy: only on the JAX backend

        info["jax"] = jax.__version__
        info["devices"] = ", ".join(str(d) for d in jax.devices())
    return info


def answer(keras, request: dict, data) -> dict:
    cmd = request.get("cmd")
    if cmd == "steps":
        return run_steps(keras, request["row"], data[0], request.get("quick", False))
    if cmd == "seed":
        return run_seed(keras, data, request["epochs32"], request["epochs256"])
    if cmd == "env":
        return env_info(keras)
    raise ValueError(f"Unknown request; expected cmd steps, seed or env. Received: {request!r}")


def main() -> None:
    import keras  # lazy: KERAS_BACKEND must be set before this import; the parent sets it

    train, test, _ = bt.load_data()
    for line in sys.stdin:
        try:
            reply = answer(keras, json.loads(line), (train, test))
        except Exception as exc:  # one failed request must not take the other rows with it
            reply = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
