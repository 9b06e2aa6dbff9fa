"""Quantized Dense against float32: file sizes, kernel bytes in memory, predict time, output error.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_quantize.py [--width 2048]
        [--depth 3] [--batch 32 512] [--repeats 5]

Builds ``Input(width) → depth × Dense(width, relu) → Dense(10)``, copies its float weights into one
model per mode (``model.quantize(mode)``), and prints per mode: the ``.weights.h5`` and ``.keras`` sizes,
the bytes the kernels hold in memory (``_kernel`` variables; scales and zero points listed apart), the best
``predict`` wall time per batch size, and the largest output difference from the float model. The int8
row quantizes inputs per row at call time (Keras's default); ``int8-w`` is weight-only; ``int4`` packs two
values per byte in groups of 128 input rows. On a shared machine, add ``OPENBLAS_NUM_THREADS=1``: busy
OpenBLAS threads otherwise dominate the small-batch times.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import lamina
from lamina import layers
from lamina.quantizers import Int4QuantizationConfig, Int8QuantizationConfig

MODES = {"float32": None, "int8": Int8QuantizationConfig(),
         "int8-w": Int8QuantizationConfig(activation_quantizer=None), "int4": Int4QuantizationConfig()}


def build(width: int, depth: int):
    dense = [layers.Dense(width, activation="relu") for _ in range(depth)]
    return lamina.Sequential([lamina.Input((width,)), *dense, layers.Dense(10)])


def quantized_copy(reference, width: int, depth: int, config):
    model = build(width, depth)
    model.set_weights(reference.get_weights())
    if config is not None:
        model.quantize(config=config)
    return model


def memory_bytes(model) -> tuple[int, int]:
    """(bytes in the kernels, bytes in the other quantization variables: scales, zero points, g_idx)."""
    kernels = extra = 0
    for layer in model.layers:
        kernels += layer._kernel.numpy().nbytes
        extra += sum(v.numpy().nbytes for v in layer.variables
                     if v.name in ("kernel_scale", "kernel_zero", "g_idx"))
    return kernels, extra


def best_predict_times(models: dict, x, batches: list, repeats: int) -> dict:
    """mode → best predict seconds per batch size; the modes take turns within each repeat, so that
    the load of a shared machine falls on all of them alike."""
    best = {mode: [float("inf")] * len(batches) for mode in models}
    for model in models.values():
        for b in batches:
            model.predict(x[:b], batch_size=b, verbose=0)  # warm: the predict function is made once
    for _ in range(repeats):
        for mode, model in models.items():
            for i, b in enumerate(batches):
                t = time.perf_counter()
                model.predict(x, batch_size=b, verbose=0)
                best[mode][i] = min(best[mode][i], time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 512])
    parser.add_argument("--rows", type=int, default=2048, help="rows predicted per timing")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    lamina.utils.set_random_seed(0)
    reference = build(args.width, args.depth)
    x = np.random.default_rng(0).normal(size=(args.rows, args.width)).astype("float32")
    y_float = reference.predict(x, batch_size=512, verbose=0)
    print(f"MLP {args.width} wide, {args.depth} hidden Dense + Dense(10); {args.rows} rows predicted; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")
    head = f"{'mode':8} {'weights.h5':>11} {'.keras':>9} {'kernels':>9} {'scales':>8}"
    head += "".join(f" {'predict b' + str(b):>13}" for b in args.batch) + f" {'max |dy|':>9}"
    print(head)
    models = {mode: quantized_copy(reference, args.width, args.depth, config) for mode, config in MODES.items()}
    times = best_predict_times(models, x, args.batch, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        for mode, model in models.items():
            h5, keras_file = os.path.join(tmp, f"{mode}.weights.h5"), os.path.join(tmp, f"{mode}.keras")
            model.save_weights(h5)
            model.save(keras_file)
            kernels, extra = memory_bytes(model)
            error = float(np.max(np.abs(model.predict(x, batch_size=512, verbose=0) - y_float)))
            row = (f"{mode:8} {os.path.getsize(h5) / 1e6:8.2f} MB {os.path.getsize(keras_file) / 1e6:6.2f} MB "
                   f"{kernels / 1e6:6.2f} MB {extra / 1e3:5.1f} kB")
            row += "".join(f" {t * 1e3:7.1f} ms {t / t0:4.2f}x"
                           for t, t0 in zip(times[mode], times["float32"], strict=True))
            print(row + f" {error:9.4f}")
    print(f"(max |y| of the float model: {float(np.max(np.abs(y_float))):.3f})")


if __name__ == "__main__":
    main()
