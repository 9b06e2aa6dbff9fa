"""One Keras run for bench_train.py, in its own process (KERAS_BACKEND is read at import).

    KERAS_BACKEND=jax python benchmarks/keras_worker.py EPOCHS32 EPOCHS256

Prints one JSON line with the same measurements bench_train.py takes for lamina and PyTorch, on
the same data and epoch orders (it imports bench_train for both).
"""

from __future__ import annotations

import json
import sys
import time

import bench_train as bt


def main() -> None:
    epochs32, epochs256 = int(sys.argv[1]), int(sys.argv[2])
    import keras

    (x, y), (xt, yt), _ = bt.load_data()
    orders32 = bt.epoch_orders(len(x), epochs32, seed=1)
    orders256 = bt.epoch_orders(len(x), epochs256, seed=2)

    def build():
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((784,)), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")])
        m.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
        return m

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
    print(json.dumps({
        "epoch32": bt.median_after_first(t32), "epochs32": t32, "epoch256": bt.median_after_first(t256),
        "acc": acc, "predict10k": bt.best_of(lambda: model.predict(xt, verbose=0), 3, 2),
        "lat_predict": bt.best_of(lambda: model.predict(x1, verbose=0), 3, 50),
        "lat_call": bt.best_of(lambda: model(x1), 3, 200),
    }))


if __name__ == "__main__":
    main()
