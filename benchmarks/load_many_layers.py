"""Saving and loading a deep ``.keras`` model: a Sequential stack of ``Dense(1)`` layers.

    python benchmarks/load_many_layers.py [--layers 2000 20000] [--repeats 1]

Builds the model, saves it (``model.save``) and loads it back (``lamina.models.load_model``), and
prints the best wall-clock seconds of each, with the file's size (the aim: 20,000 layers loaded in
under 2 s). Every load is checked to give back the saved weights.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import lamina
from lamina import layers


def build(n: int):
    model = lamina.Sequential([lamina.Input((1,))] + [layers.Dense(1) for _ in range(n)])
    return model


def best(fn, repeats: int) -> tuple[float, object]:
    out, t_best = None, float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        t_best = min(t_best, time.perf_counter() - t)
    return t_best, out


def run(n: int, repeats: int) -> None:
    t = time.perf_counter()
    model = build(n)
    t_build = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"deep_{n}.keras")
        t_save, _ = best(lambda: model.save(path), repeats)
        size = os.path.getsize(path)
        t_load, loaded = best(lambda: lamina.models.load_model(path), repeats)
    want, got = model.get_weights(), loaded.get_weights()
    if len(want) != len(got) or not all(np.array_equal(a, b) for a, b in zip(want, got)):
        raise SystemExit(f"{n} layers: the loaded weights differ from the saved ones")
    print(f"{n:>6} Dense(1) layers  file {size / 1e6:6.2f} MB  build {t_build:6.2f} s  "
          f"save {t_save:6.2f} s  load {t_load:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    for n in args.layers:
        run(n, args.repeats)


if __name__ == "__main__":
    main()
