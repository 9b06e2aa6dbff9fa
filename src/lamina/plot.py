"""Pictures of activations, training histories, decision boundaries and activation health.

Needs matplotlib (``pip install lamina[plot]``), imported when a function here is first called, so
``import lamina`` stays light. Every function returns a ``matplotlib.figure.Figure`` made without
pyplot (no global state, no GUI backend): save it with ``fig.savefig("chart.png")`` or display it
in a notebook.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lamina import activations as acts
from lamina.autodiff import GradientTape, Variable

__all__ = ["activations", "decision_boundary", "health", "history"]

# The classic chart's colours; other activations take the next free colour of matplotlib's cycle.
COLORS = {"sigmoid": "tab:blue", "tanh": "tab:green", "relu": "tab:red"}
_CYCLE = ("tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")


def _figure(nrows: int = 1, ncols: int = 1, size=(6.4, 4.8)):
    try:
        from matplotlib.figure import Figure  # optional extra: lamina[plot]
    except ImportError:
        raise ImportError(
            "lamina.plot needs matplotlib. Install it with `pip install lamina[plot]` (or `pip install "
            "matplotlib`). Received: no module named 'matplotlib'"
        ) from None
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes.ravel()


def _colors(names: Sequence[str]) -> dict[str, str]:
    free = [c for c in _CYCLE]
    out = {}
    for n in names:
        out[n] = COLORS.get(n) or (free.pop(0) if free else None)
    return out


def activations(names: Sequence[str] | str = ("sigmoid", "tanh", "relu"), derivatives: bool = False,
                x_range: tuple[float, float] = (-5.0, 5.0), points: int = 401):
    """The classic activation chart: each named activation over ``x_range`` (sigmoid blue, tanh
    green, relu red). With ``derivatives=True`` a second panel shows each derivative, computed by
    lamina's autodiff engine (``GradientTape``), not by a formula."""
    if isinstance(names, str):
        names = (names,)
    names = list(names)
    if not names:
        raise ValueError("plot.activations needs at least one activation name. Received: names=()")
    lo, hi = x_range
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"plot.activations: x_range must be (low, high) with low < high. Received: x_range={x_range}")
    fns = {n: acts.get(n) for n in names}  # unknown names fail here with the list of valid ones
    x = np.linspace(lo, hi, points, dtype=np.float32)
    fig, axes = _figure(1, 2 if derivatives else 1, size=(11, 4.5) if derivatives else (6.4, 4.8))
    colors = _colors(names)
    for name, fn in fns.items():
        axes[0].plot(x, np.asarray(fn(x)), color=colors[name], label=name, linewidth=2)
        if derivatives:
            v = Variable(x)
            with GradientTape() as tape:
                y = fn(v)
                total = y.sum() if hasattr(y, "sum") else y
            grad = tape.gradient(total, v)
            grad = np.zeros_like(x) if grad is None else np.asarray(grad)
            axes[1].plot(x, grad, color=colors[name], label=f"{name}'", linewidth=2)
    axes[0].set_title("Activation functions")
    axes[0].set_xlabel("x")
    axes[0].set_ylabel("f(x)")
    if derivatives:
        axes[1].set_title("Derivatives (from autodiff)")
        axes[1].set_xlabel("x")
        axes[1].set_ylabel("f'(x)")
    for ax in axes:
        ax.axhline(0, color="0.7", linewidth=0.8, zorder=0)
        ax.axvline(0, color="0.7", linewidth=0.8, zorder=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
    return fig


def _history_dict(hist) -> dict:
    if hasattr(hist, "history") and isinstance(hist.history, dict):
        return hist.history
    if isinstance(hist, dict):
        return hist
    raise TypeError(
        "plot.history expects the History returned by fit() (or its .history dict). "
        f"Received: {type(hist).__name__}"
    )


def history(hist):
    """Loss and each metric per epoch, training and validation (``val_``) on the same axes: one
    panel per quantity."""
    logs = _history_dict(hist)
    metrics = [k for k in logs if not k.startswith("val_") and k not in ("learning_rate", "lr")]
    metrics += [k[4:] for k in logs if k.startswith("val_") and k[4:] not in logs]
    if not metrics:
        raise ValueError(f"plot.history: the history holds no metrics. Received: keys {list(logs)}")
    fig, axes = _figure(1, len(metrics), size=(4.8 * len(metrics), 4.0))
    for ax, name in zip(axes, metrics):
        for key, label, style in ((name, "training", "-"), ("val_" + name, "validation", "--")):
            values = logs.get(key)
            if values:
                epochs = np.arange(1, len(values) + 1)
                ax.plot(epochs, values, style, marker="o", markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend()
    return fig


def decision_boundary(model, x, y, ax=None, resolution: int = 200, title: str | None = None):
    """The model's predicted class over the plane, with the points of ``x`` coloured by ``y``.

    ``x`` has two features. One sigmoid output is thresholded at 0.5; several outputs take the
    argmax. Pass ``ax`` to draw into an existing axes (its figure is returned).
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"plot.decision_boundary needs 2-D points of shape (n, 2). Received: x.shape={x.shape}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"plot.decision_boundary: x and y need as many rows. Received: {x.shape[0]} and {y.shape[0]}")
    labels = y.argmax(axis=-1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(-1)
    if ax is None:
        fig, axes = _figure(1, 1, size=(5.5, 5.0))
        ax = axes[0]
    else:
        fig = ax.figure
    pad = 0.1 * (x.max(axis=0) - x.min(axis=0) + 1e-9)
    (x0, y0), (x1, y1) = x.min(axis=0) - pad, x.max(axis=0) + pad
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    pred = np.asarray(model.predict(grid, batch_size=4096, verbose=0))
    cls = (pred.reshape(-1) > 0.5).astype(int) if pred.ndim == 1 or pred.shape[-1] == 1 else pred.argmax(axis=-1)
    n_cls = int(max(cls.max(initial=0), labels.max(initial=0))) + 1
    ax.contourf(gx, gy, cls.reshape(gx.shape), levels=np.arange(n_cls + 1) - 0.5, cmap="coolwarm", alpha=0.35)
    ax.scatter(x[:, 0], x[:, 1], c=labels, cmap="coolwarm", s=8, edgecolors="k", linewidths=0.2,
               vmin=0, vmax=max(n_cls - 1, 1))
    ax.set_aspect("equal", adjustable="box")
    ax.set_title(title if title is not None else f"Decision boundary of '{model.name}'")
    return fig


def _health_dict(obj) -> dict:
    h = getattr(obj, "health", obj)
    if not isinstance(h, dict) or "layers" not in h:
        raise TypeError(
            "plot.health expects a History from fit(..., health=True), an ActivationHealth callback or its "
            f".health dict. Received: {type(obj).__name__}"
        )
    return h


def health(hist):
    """Activation health over the epochs: dead fraction (ReLU-family layers), saturated fraction
    (sigmoid/tanh layers) and gradient norm (log scale) per layer.

    With recurrent layers (``history.health["recurrent"]``) a second row shows, per recurrent layer, the
    saturated fraction of each gate over the epochs, the gradient norm reaching each timestep (log scale, in
    the order the layer reads the sequence; the first measured epoch dashed, the last solid) and its first/last
    timestep ratio over the epochs (log scale)."""
    h = _health_dict(hist)
    epochs = np.asarray(h.get("epochs", []), dtype=float) + 1
    recurrent = {n: r for n, r in (h.get("recurrent") or {}).items() if "skipped" not in r}
    fig, axes = _figure(2 if recurrent else 1, 3, size=(15, 8.4 if recurrent else 4.2))
    panels = (("dead", "Dead units (ReLU family)"), ("saturated", "Saturated pre-activations"))
    for ax, (key, title) in zip(axes[:2], panels):
        for name, rec in h["layers"].items():
            values = rec.get(key)
            if values:
                ax.plot(epochs[-len(values):], _nan_none(values), marker="o", markersize=3,
                        label=f"{name} ({rec.get('activation')})")
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("fraction")
        ax.set_title(title)
    for name, values in h.get("grad_norm", {}).items():
        axes[2].plot(epochs[-len(values):], _positive(values), marker="o", markersize=3, label=name)
    axes[2].set_yscale("log")
    axes[2].set_title("Gradient norm per layer")
    for ax in axes[:3]:
        ax.set_xlabel("epoch")
    if recurrent:
        _recurrent_panels(axes[3:], epochs, recurrent)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    return fig


def _nan_none(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _positive(values) -> np.ndarray:
    vals = _nan_none(values)
    vals[~(vals > 0)] = np.nan  # a zero norm has no place on a log axis
    return vals


def _recurrent_panels(axes, epochs, recurrent: dict) -> None:
    """Gate saturation over epochs, the per-timestep gradient norm curve, its first/last ratio over epochs."""
    sat, flow, ratio = axes
    for name, rec in recurrent.items():
        for gate, values in rec.get("saturated", {}).items():
            sat.plot(epochs[-len(values):], _nan_none(values), marker="o", markersize=3, label=f"{name}: {gate}")
        curves = [(e, c) for e, c in zip(epochs[-len(rec.get("grad_norm_t", [])):], rec.get("grad_norm_t", []))
                  if c is not None]
        chosen, styles = ([curves[0], curves[-1]], ["--", "-"]) if len(curves) > 1 else (curves, ["-"])
        color = None  # both epochs of one layer in one colour
        for (epoch, curve), style in zip(chosen, styles):
            (line,) = flow.plot(np.arange(len(curve)), _positive(curve), style, color=color, linewidth=1.5,
                                label=f"{name}, epoch {int(epoch)}")
            color = line.get_color()
        values = rec.get("grad_ratio_t")
        if values:
            ratio.plot(epochs[-len(values):], _positive(values), marker="o", markersize=3, label=name)
    sat.set_ylim(-0.02, 1.02)
    sat.set_ylabel("fraction")
    sat.set_title("Saturated gate values (recurrent layers)")
    sat.set_xlabel("epoch")
    flow.set_yscale("log")
    flow.set_title("Gradient norm reaching each timestep")
    flow.set_xlabel("timestep (in the order the layer reads)")
    ratio.set_yscale("log")
    ratio.set_title("Gradient through time: first / last timestep")
    ratio.set_xlabel("epoch")
