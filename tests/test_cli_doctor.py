"""The doctor's commands: `lamina plot activations`, `lamina demo circles`, `lamina lint`."""

import numpy as np
import pytest

import lamina
from lamina import cli
from lamina import layers as L
from lamina.diagnostics import LintWarning

PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_activations_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "charts" / "chart.png"
    assert cli.main(["plot", "activations", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG
    assert "sigmoid, tanh, relu" in capsys.readouterr().out


def test_plot_named_activations_with_derivatives(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "elu.png"
    assert cli.main(["plot", "activations", "elu", "selu", "--derivatives", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 10_000
    assert "elu, selu and their derivatives" in capsys.readouterr().out


def test_plot_bad_name_and_missing_chart(tmp_path, capsys):
    assert cli.main(["plot", "activations", "nope", "-o", str(tmp_path / "x.png")]) == 2
    assert "Unknown activation function 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
    assert cli.main(["plot"]) == 2


def test_demo_circles_draws_both_boundaries(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert cli.main(["demo", "circles", "--epochs", "1", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    accs = {line.split(",")[1].split(":")[0].strip(): float(line.rsplit(" ", 1)[1])
            for line in out.splitlines() if line.startswith("Circles,")}
    assert accs["relu hidden layers"] > 0.9 and accs["no activation (a linear stack)"] < 0.7
    assert "lint (warning, no-nonlinearity)" in out  # the doctor speaks about the linear stack
    assert (tmp_path / "circles.png").read_bytes()[:8] == PNG
    assert f"Wrote both decision boundaries to {tmp_path / 'circles.png'}" in out


def test_demo_keeps_its_fashion_mnist_default(monkeypatch):
    parser_args = []
    monkeypatch.setattr(cli, "demo", lambda args: parser_args.append(args) or 0)
    assert cli.main(["demo", "--epochs", "2"]) == 0
    assert parser_args[0].dataset is None and parser_args[0].epochs == 2 and parser_args[0].output is None


def test_lint_a_saved_model(tmp_path, capsys):
    bad = lamina.Sequential([L.Input((4,)), L.Dense(8, activation="relu"), L.Dense(3)])
    bad.compile(optimizer="adam", loss="sparse_categorical_crossentropy", lint=False)
    path = tmp_path / "bad.keras"
    bad.save(str(path))
    assert cli.main(["lint", str(path)]) == 1
    out = capsys.readouterr().out
    assert "error linear-output-probabilistic-loss" in out and "1 error(s)" in out

    linear = lamina.Sequential([L.Input((4,)), L.Dense(8), L.Dense(8), L.Dense(3, activation="softmax")])
    with pytest.warns(LintWarning, match="no-nonlinearity"):
        linear.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    linear.fit(np.zeros((4, 4), "float32"), np.zeros(4), verbose=0)
    path = tmp_path / "linear.keras"
    linear.save(str(path))
    assert cli.main(["lint", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warning no-nonlinearity" in out and "0 error(s), 1 warning(s)" in out


def test_lint_a_missing_file(tmp_path, capsys):
    assert cli.main(["lint", str(tmp_path / "nope.keras")]) == 2
    assert "no such file" in capsys.readouterr().err
