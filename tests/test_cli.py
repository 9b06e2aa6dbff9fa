"""The `lamina` command's main job: `lamina demo`."""

import pytest

import lamina
from lamina import cli


@pytest.mark.slow
def test_demo_trains_fashion_mnist_and_reports(capsys):
    try:
        lamina.datasets.fashion_mnist.load_data()
    except lamina.datasets.DatasetUnavailableError:
        pytest.skip("Fashion-MNIST is not installed")
    assert cli.main(["demo", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 109,386" in out
    assert "1875/1875" in out  # Keras prints no "Epoch 1/1" header for a single epoch
    assert "Fashion-MNIST test accuracy after 1 epoch(s): 0.8" in out


def test_demo_falls_back_to_circles_and_says_how_to_get_the_data(monkeypatch, capsys):
    def unavailable():
        raise lamina.datasets.DatasetUnavailableError("Fashion-MNIST not found (test)")

    monkeypatch.setattr(lamina.datasets.fashion_mnist, "load_data", unavailable)
    assert cli.main(["demo", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "apt-get install dataset-fashion-mnist" in out
    assert "Circles, no activation (a linear stack): test accuracy" in out
    relu_line = [line for line in out.splitlines() if line.startswith("Circles, relu")][0]
    assert float(relu_line.rsplit(" ", 1)[1]) > 0.95


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "demo" in capsys.readouterr().out
