"""The ``lamina`` command.

* ``lamina demo`` trains the seed model on Fashion-MNIST and reports test accuracy;
  ``lamina demo --model convnet`` trains keras.io's simple convnet on it instead;
  ``lamina demo circles -o out/`` trains a linear and a relu stack on the circles and draws both
  decision boundaries side by side;
* ``lamina plot activations [NAMES...] [--derivatives] -o chart.png`` draws the activation chart;
* ``lamina lint model.keras`` lints a saved model (exit status 1 when it has errors);
* ``lamina playground [--port N] [--no-browser]`` serves the activation playground on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _seed_model(lamina, input_dim: int, classes: int):
    layers = lamina.layers
    return lamina.Sequential([
        layers.Dense(128, activation="relu", input_shape=(input_dim,)),
        layers.Dense(64, activation="relu"),
        layers.Dense(classes, activation="softmax"),
    ])


def _convnet(lamina, classes: int):
    """keras.io's simple MNIST convnet, for 28x28 grey images."""
    layers = lamina.layers
    return lamina.Sequential([
        lamina.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(classes, activation="softmax"),
    ], name="convnet")


# Per model: the builder, the input layout, and fit's defaults (epochs, batch size), as in each Keras tutorial.
_DEMO_MODELS = {
    "dense": (lambda lamina: _seed_model(lamina, 784, 10), (784,), 5, 32),
    "convnet": (lambda lamina: _convnet(lamina, 10), (28, 28, 1), 3, 128),
}


def demo(args) -> int:
    import lamina  # lazy: `lamina --help` answers without importing the library
    from lamina.datasets import DatasetUnavailableError  # lazy: as above

    lamina.utils.set_random_seed(args.seed)
    model_name = getattr(args, "model", None) or "dense"
    if getattr(args, "dataset", None) == "circles":
        if model_name != "dense":
            print(f"lamina demo circles trains Dense stacks on 2-D points; --model {model_name} needs images "
                  "(drop `circles` to train it on Fashion-MNIST).", file=sys.stderr)
            return 2
        return _demo_circles(lamina, args)
    try:
        (x_train, y_train), (x_test, y_test) = lamina.datasets.fashion_mnist.load_data()
    except DatasetUnavailableError as err:
        what = "this demo" if model_name == "dense" else f"the {model_name} demo needs its images, so this demo"
        print(f"Fashion-MNIST was not found: {what} trains on the concentric-circles data instead.")
        print(f"  ({str(err).splitlines()[0]})")
        print("  To get Fashion-MNIST: `apt-get install dataset-fashion-mnist`, or set LAMINA_DATA.\n")
        return _demo_circles(lamina, args)
    build, shape, default_epochs, default_batch = _DEMO_MODELS[model_name]
    epochs = args.epochs if args.epochs is not None else default_epochs
    batch_size = args.batch_size if getattr(args, "batch_size", None) is not None else default_batch
    if getattr(args, "train_samples", None) is not None:
        x_train, y_train = x_train[:args.train_samples], y_train[:args.train_samples]
    x_train = x_train.reshape((len(x_train),) + shape).astype("float32") / 255.0
    x_test = x_test.reshape((len(x_test),) + shape).astype("float32") / 255.0
    model = build(lamina)
    model.summary()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=1)
    took = time.perf_counter() - start
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    label = "" if model_name == "dense" else f" ({model_name}, {len(x_train)} training images)"
    print(f"\nFashion-MNIST test accuracy after {epochs} epoch(s){label}: {acc:.4f} (loss {loss:.4f}); "
          f"training took {took:.1f} s.")
    return 0


def _demo_circles(lamina, args) -> int:
    x, y = lamina.datasets.make_circles(n_samples=2000, noise=0.05, factor=0.5, seed=args.seed)
    epochs = args.epochs if args.epochs is not None else 5
    split = 1500
    results = []
    for label, act in (("no activation (a linear stack)", None), ("relu hidden layers", "relu")):
        model = lamina.Sequential([
            lamina.layers.Dense(16, activation=act, input_shape=(2,)),
            lamina.layers.Dense(16, activation=act),
            lamina.layers.Dense(1, activation="sigmoid"),
        ], name="linear_stack" if act is None else "relu_stack")
        # The linear stack is the point of the demo: show what lint says about it, then train it anyway.
        model.compile(optimizer=lamina.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"],
                      lint=False)
        for finding in lamina.diagnostics.lint(model):
            print(f"  lint ({finding.severity}, {finding.rule}): {finding.message}")
        model.fit(x[:split], y[:split], epochs=epochs * 6, batch_size=32, verbose=2 if act else 0)
        _, acc = model.evaluate(x[split:], y[split:], verbose=0)
        print(f"Circles, {label}: test accuracy {acc:.3f}")
        results.append((label, model, acc))
    output = getattr(args, "output", None)
    if output:
        try:
            path = _circles_picture(results, x[split:], y[split:], output)
        except ImportError as err:
            print(f"Could not draw the decision boundaries: {err}", file=sys.stderr)
            return 1
        print(f"Wrote both decision boundaries to {path}")
    elif getattr(args, "dataset", None) == "circles":
        print("(Add -o DIR to save both decision boundaries as DIR/circles.png.)")
    return 0


def _circles_picture(results, x, y, output: str) -> str:
    from lamina import plot  # lazy: as above, and matplotlib is an optional extra

    os.makedirs(output, exist_ok=True)
    path = os.path.join(output, "circles.png")
    fig, axes = plot._figure(1, len(results), size=(5.2 * len(results), 5.0))
    for ax, (label, model, acc) in zip(axes, results):
        plot.decision_boundary(model, x, y, ax=ax, title=f"{label}\ntest accuracy {acc:.1%}")
    fig.suptitle("Concentric circles: a linear stack vs relu hidden layers")
    fig.savefig(path, dpi=100)
    return path


def plot_activations(args) -> int:
    from lamina import plot  # lazy: as above, and matplotlib is an optional extra

    names = args.names or ["sigmoid", "tanh", "relu"]
    try:
        fig = plot.activations(names, derivatives=args.derivatives)
    except ValueError as err:
        print(f"lamina plot activations: {err}", file=sys.stderr)
        return 2
    except ImportError as err:
        print(f"lamina plot activations: {err}", file=sys.stderr)
        return 1
    folder = os.path.dirname(args.output)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig.savefig(args.output, dpi=100)
    print(f"Wrote {', '.join(names)}{' and their derivatives' if args.derivatives else ''} to {args.output}")
    return 0


def lint_file(args) -> int:
    import lamina  # lazy: `lamina --help` answers without importing the library

    load = getattr(lamina.models, "load_model", None) or getattr(lamina.saving, "load_model", None)
    if load is None:
        print("lamina lint needs lamina.models.load_model, which this installation lacks.", file=sys.stderr)
        return 2
    if not os.path.exists(args.path):
        print(f"lamina lint: no such file. Received: {args.path}", file=sys.stderr)
        return 2
    try:
        model = load(args.path)
    except (OSError, ValueError, TypeError, KeyError) as err:
        print(f"lamina lint: could not load {args.path}: {err}", file=sys.stderr)
        return 2
    findings = lamina.diagnostics.lint(model)
    for finding in findings:
        print(finding)
    counts = {s: sum(f.severity == s for f in findings) for s in ("error", "warning", "hint")}
    print(f"{args.path}: {counts['error']} error(s), {counts['warning']} warning(s), {counts['hint']} hint(s)")
    return 1 if counts["error"] else 0


def playground(args) -> int:
    if not 0 <= args.port <= 65535:
        print(f"lamina playground: --port must be from 0 (any free port) to 65535. Received: {args.port}",
              file=sys.stderr)
        return 2
    from lamina.playground import main as serve  # lazy: the server's extra loads only for this command

    return serve(port=args.port, open_browser=not args.no_browser)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="lamina", description="lamina: Keras-compatible deep learning on NumPy.")
    sub = parser.add_subparsers(dest="command")
    p_demo = sub.add_parser("demo", help="train the seed model on Fashion-MNIST and report test accuracy")
    p_demo.add_argument("dataset", nargs="?", choices=["circles"],
                        help="'circles': a linear and a relu stack on concentric circles instead")
    p_demo.add_argument("--model", choices=sorted(_DEMO_MODELS), default="dense",
                        help="'dense' (default): the seed model, 5 epochs, batch 32; 'convnet': keras.io's simple "
                             "convnet (two Conv2D + MaxPooling2D blocks), 3 epochs, batch 128")
    p_demo.add_argument("--epochs", type=int, default=None, help="default: 5 (dense), 3 (convnet)")
    p_demo.add_argument("--batch-size", type=int, default=None, help="default: 32 (dense), 128 (convnet)")
    p_demo.add_argument("--train-samples", type=int, default=None,
                        help="train on the first N Fashion-MNIST training images only (a quicker run)")
    p_demo.add_argument("--seed", type=int, default=0)
    p_demo.add_argument("-o", "--output", default=None, help="folder for the circles picture (circles.png)")
    p_demo.set_defaults(func=demo)
    p_plot = sub.add_parser("plot", help="draw charts (needs matplotlib)")
    charts = p_plot.add_subparsers(dest="chart")
    p_act = charts.add_parser("activations", help="the activation chart: sigmoid, tanh, relu or any names")
    p_act.add_argument("names", nargs="*", help="activation names (default: sigmoid tanh relu)")
    p_act.add_argument("--derivatives", action="store_true", help="add a panel with the derivatives")
    p_act.add_argument("-o", "--output", default="activations.png", help="the PNG file to write")
    p_act.set_defaults(func=plot_activations)
    p_plot.set_defaults(func=lambda _args: (p_plot.print_help(), 2)[1])
    p_lint = sub.add_parser("lint", help="check a saved model for activation mistakes")
    p_lint.add_argument("path", help="a .keras (or .h5) model file")
    p_lint.set_defaults(func=lint_file)
    p_play = sub.add_parser("playground", help="the activation playground in the browser (the `playground` extra)")
    p_play.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p_play.add_argument("--no-browser", action="store_true", help="print the URL without opening a browser")
    p_play.set_defaults(func=playground)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
