"""Where one training step of the seed model goes, piece by piece (best of repeated runs, hot caches).

    python benchmarks/profile_step.py [--batch 32]

Prints microseconds for the whole step, the compiled forward+backward+update, the optimizer update,
the metrics update, and the two large matmuls on their own: the figures behind the "what bounds
it" part of the performance notes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import lamina
from lamina import layers


def best_us(fn, number: int = 500, repeats: int = 7) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t) / number)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    n = parser.parse_args().batch
    lamina.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((4096, 784), dtype=np.float32)
    y = rng.integers(0, 10, 4096)
    model = lamina.Sequential([layers.Input((784,)), layers.Dense(128, activation="relu"),
                               layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=n, epochs=1, verbose=0)
    fast = model._fast_step
    if fast is None:
        raise SystemExit("the model did not take the compiled step")
    xb, yb = x[:n], y[:n]
    probs = model.predict(xb, verbose=0)
    w1 = model.layers[0].kernel.numpy()
    dz = rng.random((n, 128), dtype=np.float32)
    out, grad = np.empty((n, 128), np.float32), np.empty((784, 128), np.float32)
    rows = [
        ("whole training step", best_us(lambda: model._train_step(xb, yb, None))),
        ("  compiled step (forward, backward, optimizer)", best_us(lambda: fast.step([xb], yb, None))),
        ("  optimizer.apply", best_us(lambda: model.optimizer.apply(fast.grad_views, fast.variables))),
        ("  metrics update", best_us(lambda: model._update_metrics(yb, probs, None, 0.5, (), n))),
        (f"  matmul x @ W1 ({n}x784 @ 784x128)", best_us(lambda: np.matmul(xb, w1, out=out))),
        (f"  matmul x.T @ dz (784x{n} @ {n}x128)", best_us(lambda: np.matmul(xb.T, dz, out=grad))),
    ]
    for label, us in rows:
        print(f"{label:46} {us:8.1f} us")


if __name__ == "__main__":
    main()
