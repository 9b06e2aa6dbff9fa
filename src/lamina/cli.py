"""The ``lamina`` command: ``lamina demo`` trains the seed model and reports test accuracy."""

from __future__ import annotations

import argparse
import sys
import time


def _seed_model(lamina, input_dim: int, classes: int):
    layers = lamina.layers
    return lamina.Sequential([
        layers.Dense(128, activation="relu", input_shape=(input_dim,)),
        layers.Dense(64, activation="relu"),
        layers.Dense(classes, activation="softmax"),
    ])


def demo(args) -> int:
    import lamina
    from lamina.datasets import DatasetUnavailableError

    lamina.utils.set_random_seed(args.seed)
    try:
        (x_train, y_train), (x_test, y_test) = lamina.datasets.fashion_mnist.load_data()
    except DatasetUnavailableError as err:
        print("Fashion-MNIST was not found, so this demo trains on the concentric-circles data instead.")
        print(f"  ({str(err).splitlines()[0]})")
        print("  To get Fashion-MNIST: `apt-get install dataset-fashion-mnist`, or set LAMINA_DATA.\n")
        return _demo_circles(lamina, args)
    x_train = x_train.reshape(len(x_train), -1).astype("float32") / 255.0
    x_test = x_test.reshape(len(x_test), -1).astype("float32") / 255.0
    model = _seed_model(lamina, 784, 10)
    model.summary()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=32, verbose=1)
    took = time.perf_counter() - start
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"\nFashion-MNIST test accuracy after {args.epochs} epoch(s): {acc:.4f} (loss {loss:.4f}); "
          f"training took {took:.1f} s.")
    return 0


def _demo_circles(lamina, args) -> int:
    x, y = lamina.datasets.make_circles(n_samples=2000, noise=0.05, factor=0.5, seed=args.seed)
    split = 1500
    for label, act in (("no activation (a linear stack)", None), ("relu hidden layers", "relu")):
        model = lamina.Sequential([
            lamina.layers.Dense(16, activation=act, input_shape=(2,)),
            lamina.layers.Dense(16, activation=act),
            lamina.layers.Dense(1, activation="sigmoid"),
        ])
        model.compile(optimizer=lamina.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"])
        model.fit(x[:split], y[:split], epochs=args.epochs * 6, batch_size=32, verbose=2 if act else 0)
        _, acc = model.evaluate(x[split:], y[split:], verbose=0)
        print(f"Circles, {label}: test accuracy {acc:.3f}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="lamina", description="lamina: Keras-compatible deep learning on NumPy.")
    sub = parser.add_subparsers(dest="command")
    p_demo = sub.add_parser("demo", help="train the seed model on Fashion-MNIST and report test accuracy")
    p_demo.add_argument("--epochs", type=int, default=5)
    p_demo.add_argument("--seed", type=int, default=0)
    p_demo.set_defaults(func=demo)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
