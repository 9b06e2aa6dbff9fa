"""lamina.plot: each figure renders to a non-empty PNG with the expected axes and lines."""

import io
import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
from matplotlib.colors import to_rgba  # noqa: E402

import lamina  # noqa: E402
from lamina import layers as L  # noqa: E402
from lamina import plot  # noqa: E402


def render(fig) -> np.ndarray:
    """The figure as a PNG, decoded: checks it is a real, non-blank image."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    data = buf.getvalue()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    buf.seek(0)
    image = matplotlib.image.imread(buf)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    assert image[..., :3].std() > 0.01  # not a blank canvas
    return image


@pytest.fixture(scope="module")
def trained():
    lamina.utils.set_random_seed(0)
    x, y = lamina.datasets.make_circles(300, noise=0.05, factor=0.5, seed=0)
    model = lamina.Sequential([L.Input((2,)), L.Dense(16, activation="relu"), L.Dense(16, activation="relu"),
                               L.Dense(1, activation="sigmoid")])
    model.compile(optimizer=lamina.optimizers.Adam(0.02), loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=3, batch_size=32, validation_split=0.2, verbose=0, health=True)
    return model, history, x, y


def test_activation_chart_has_the_classic_colours():
    fig = plot.activations()
    render(fig)
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert list(lines) == ["sigmoid", "tanh", "relu"]
    assert to_rgba(lines["sigmoid"].get_color()) == to_rgba("tab:blue")
    assert to_rgba(lines["tanh"].get_color()) == to_rgba("tab:green")
    assert to_rgba(lines["relu"].get_color()) == to_rgba("tab:red")
    x, y = lines["tanh"].get_data()
    np.testing.assert_allclose(y, np.tanh(x), atol=1e-6)


def test_activation_chart_with_derivatives_from_autodiff():
    fig = plot.activations(("relu", "sigmoid", "elu", "gelu"), derivatives=True)
    render(fig)
    assert len(fig.axes) == 2
    f_ax, d_ax = fig.axes
    labelled = [line for line in d_ax.get_lines() if not line.get_label().startswith("_")]
    assert [line.get_label() for line in labelled] == ["relu'", "sigmoid'", "elu'", "gelu'"]
    assert len([line for line in f_ax.get_lines() if not line.get_label().startswith("_")]) == 4
    x, d_relu = labelled[0].get_data()
    np.testing.assert_array_equal(d_relu, (x > 0).astype(np.float32))
    _, d_sig = labelled[1].get_data()
    s = 1 / (1 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(d_sig, s * (1 - s), atol=1e-6)
    colors = {to_rgba(line.get_color()) for line in labelled}
    assert len(colors) == 4  # every activation its own colour


def test_activation_chart_bad_input():
    with pytest.raises(ValueError, match="Unknown activation function 'sigmoidd'"):
        plot.activations(["sigmoidd"])
    with pytest.raises(ValueError, match="x_range"):
        plot.activations(x_range=(1, -1))
    with pytest.raises(ValueError, match="at least one"):
        plot.activations(())


def test_history_plot(trained):
    _, history, _, _ = trained
    fig = plot.history(history)
    render(fig)
    assert sorted(ax.get_title() for ax in fig.axes) == ["accuracy", "loss"]
    for ax in fig.axes:
        assert [line.get_label() for line in ax.get_lines()] == ["training", "validation"]
        assert len(ax.get_lines()[0].get_xdata()) == 3
    with pytest.raises(TypeError, match="History"):
        plot.history([1, 2])


def test_decision_boundary(trained):
    model, _, x, y = trained
    fig = plot.decision_boundary(model, x, y, resolution=60)
    render(fig)
    (ax,) = fig.axes
    assert len(ax.collections) >= 2  # the filled contour and the scattered points
    assert model.name in ax.get_title()
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        plot.decision_boundary(model, np.zeros((4, 3)), np.zeros(4))


def test_health_plot(trained):
    model, history, _, _ = trained
    fig = plot.health(history)
    render(fig)
    dead_ax, sat_ax, grad_ax = fig.axes
    relu_layers = [layer for layer in model.layers if layer.activation.__name__ == "relu"]
    assert len(dead_ax.get_lines()) == len(relu_layers)
    assert len(sat_ax.get_lines()) == 1  # the sigmoid output
    assert len(grad_ax.get_lines()) == 3 and grad_ax.get_yscale() == "log"
    with pytest.raises(TypeError, match="health=True"):
        plot.health({"loss": [1.0]})


def test_importing_lamina_does_not_import_matplotlib():
    code = "import sys, lamina, lamina.diagnostics, lamina.callbacks; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
