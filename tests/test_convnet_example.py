"""keras.io's simple convnet on Fashion-MNIST: the example script learns, `lamina demo --model convnet` runs."""

import importlib.util
import pathlib

import numpy as np
import pytest

import lamina
from lamina import cli

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "fashion_mnist_convnet.py"


def example():
    spec = importlib.util.spec_from_file_location("fashion_mnist_convnet", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def need_fashion_mnist():
    try:
        lamina.datasets.fashion_mnist.load_data()
    except lamina.datasets.DatasetUnavailableError:
        pytest.skip("Fashion-MNIST is not installed")


def test_the_example_builds_keras_io_convnet_with_keras_predictions(keras):
    ex = example()
    ours, theirs = ex.build_model(lamina), ex.build_model(keras)
    assert [type(layer).__name__ for layer in ours.layers] == [type(layer).__name__ for layer in theirs.layers]
    assert ours.count_params() == theirs.count_params() == 34_826
    theirs.set_weights(ours.get_weights())
    x = np.random.default_rng(0).random((8, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), np.asarray(theirs.predict(x, verbose=0)),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_the_convnet_learns_fashion_mnist(capsys):
    """The example on the first 10,000 training images for 2 epochs (batch 128, Adam, seed 0), scored on the
    whole 10,000-image test set, must reach 0.77 (lamina measured 0.7846 here).

    The bar comes from real Keras 3.15.1 (torch backend) running the same script on the same subset, epochs
    and batch size:
        KERAS_BACKEND=torch .venv/bin/python examples/fashion_mnist_convnet.py --keras \
            --train-samples 10000 --epochs 2 --seed S --verbose 0
    gave 0.7905, 0.7803, 0.7888, 0.7853, 0.7767 for S = 0..4 (mean 0.784); the bar sits below the lowest.
    The same run with both Conv2D layers frozen (trainable=False, only the Dense head learns) gave 0.6922 and
    0.6882 (S = 0, 1), so the bar needs the convolutions themselves to learn. The full issue figure (>= 0.88
    after 3 epochs on all 60,000 images) is `python examples/fashion_mnist_convnet.py` (minutes, not a test).
    Cost: 20,000 training and 10,000 test images through the convnet (about a minute of CPU).
    """
    need_fashion_mnist()
    result = example().main(["--train-samples", "10000", "--epochs", "2", "--seed", "0", "--verbose", "0"])
    assert result["accuracy"] >= 0.77
    assert "test accuracy: " in capsys.readouterr().out


@pytest.mark.slow
def test_demo_convnet_runs_with_its_defaults_overridden(capsys):
    need_fashion_mnist()
    assert cli.main(["demo", "--model", "convnet", "--epochs", "1", "--train-samples", "256"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 34,826" in out and "conv2d" in out
    assert "2/2" in out  # 256 images in batches of 128
    assert "Fashion-MNIST test accuracy after 1 epoch(s) (convnet, 256 training images): 0." in out


def test_demo_convnet_without_the_data_says_so_and_trains_the_circles(monkeypatch, capsys):
    def unavailable():
        raise lamina.datasets.DatasetUnavailableError("Fashion-MNIST not found (test)")

    monkeypatch.setattr(lamina.datasets.fashion_mnist, "load_data", unavailable)
    assert cli.main(["demo", "--model", "convnet", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "Fashion-MNIST was not found: the convnet demo needs its images" in out
    assert "apt-get install dataset-fashion-mnist" in out and "Circles, relu hidden layers: test accuracy" in out


def test_demo_circles_with_the_convnet_is_refused(capsys):
    assert cli.main(["demo", "circles", "--model", "convnet"]) == 2
    assert "--model convnet needs images" in capsys.readouterr().err


def test_demo_model_choices_and_defaults(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "demo", lambda args: seen.append(args) or 0)
    assert cli.main(["demo"]) == 0 and seen[0].model == "dense" and seen[0].epochs is None
    with pytest.raises(SystemExit):
        cli.main(["demo", "--model", "resnet"])
