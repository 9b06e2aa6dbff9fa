"""keras.io's "simple MNIST convnet", unchanged but for the import, on Fashion-MNIST.

    python examples/fashion_mnist_convnet.py                 # 3 epochs on all 60,000 images
    python examples/fashion_mnist_convnet.py --train-samples 10000 --epochs 2 --seed 0

``--keras`` runs the very same code on real Keras 3 (set ``KERAS_BACKEND``, e.g. ``torch``) for a side-by-side
figure; the data comes from ``lamina.datasets.fashion_mnist`` either way. The last line printed is the result.
Measured with the defaults (seed 0) on a shared 2-core machine: lamina 0.8613 test accuracy (loss 0.3786),
Keras 3.15.1 on torch 0.8670 (loss 0.3778); both used about 7 minutes of CPU time.
"""

import argparse
import sys
import time

import numpy as np

from lamina.datasets import fashion_mnist


def build_model(keras, num_classes: int = 10):
    layers = keras.layers
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(num_classes, activation="softmax"),
    ])


def load(train_samples: int | None = None):
    """Fashion-MNIST scaled to [0, 1] with a channel axis: ``(x_train, y_train), (x_test, y_test)``; the first
    ``train_samples`` training images when given (the files are already in random order)."""
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    if train_samples is not None:
        x_train, y_train = x_train[:train_samples], y_train[:train_samples]
    x_train = np.expand_dims(x_train.astype("float32") / 255, -1)
    x_test = np.expand_dims(x_test.astype("float32") / 255, -1)
    return (x_train, y_train), (x_test, y_test)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-samples", type=int, default=None, help="train on the first N images only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=2)
    parser.add_argument("--keras", action="store_true", help="run on real Keras 3 instead of lamina")
    args = parser.parse_args(argv)
    if args.keras:
        import keras  # lazy: the optional side-by-side run on real Keras
    else:
        import lamina as keras  # lazy: an argparse error answers without importing the library

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load(args.train_samples)
    model = build_model(keras)
    if args.verbose:
        model.summary()
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=args.verbose)
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, batch_size=args.batch_size, verbose=0)
    print(f"test accuracy: {accuracy:.4f} (loss {loss:.4f}); training {args.epochs} epoch(s) on {len(x_train)} "
          f"images took {seconds:.1f} s")
    return {"accuracy": float(accuracy), "loss": float(loss), "seconds": seconds, "model": model}


if __name__ == "__main__":
    main(sys.argv[1:])
