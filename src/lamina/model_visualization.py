"""``keras.utils.plot_model``: a picture of a model's layer graph.

Drawn by Graphviz's ``dot`` program where it is installed (Keras's look), else by matplotlib (the
``plot`` extra) with the layers placed by depth; a ``.dot`` file needs neither.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from lamina.layers.input_layer import InputLayer
from lamina.models.summary import _node_in_model, _shape_str

_RANKDIRS = ("TB", "LR", "BT", "RL")


def _graph(model) -> tuple[list, list[tuple[int, int]]]:
    """The layers (as drawn, in order) and the edges between them as index pairs."""
    if getattr(model, "_nodes", None) is None:  # Sequential: a chain
        layers = list(model.layers)
        return layers, [(i, i + 1) for i in range(len(layers) - 1)]
    layers = list(getattr(model, "_operations", None) or model.layers)
    position = {id(layer): i for i, layer in enumerate(layers)}
    edges = []
    for i, layer in enumerate(layers):
        for node in layer._inbound_nodes:
            if node not in model._nodes:
                continue
            for tensor in node.input_tensors:
                source = tensor._keras_history[0]
                if id(source) in position:
                    edges.append((position[id(source)], i))
    return layers, edges


def _label(layer, model, show_shapes, show_dtype, show_layer_names, show_layer_activations, show_trainable) -> str:
    kind = getattr(layer, "keras_class_name", None) or type(layer).__name__
    lines = [f"{layer.name} ({kind})" if show_layer_names else kind]
    activation = getattr(layer, "activation", None)
    if show_layer_activations and activation is not None:
        lines.append(f"Activation: {getattr(activation, '__name__', type(activation).__name__)}")
    if show_shapes:
        shown = any(_node_in_model(n, model) for n in layer._inbound_nodes) or isinstance(layer, InputLayer)
        lines.append(f"Output shape: {_shape_str(layer, model) if shown else '?'}")
    if show_dtype:
        lines.append(f"dtype: {getattr(layer, 'dtype', None)}")
    if show_trainable:
        lines.append(f"Trainable: {'Y' if layer.trainable else 'N'}")
    return "\n".join(lines)


def model_to_dot_text(labels: list[str], edges, rankdir: str, dpi: int) -> str:
    """Graphviz source for boxes ``labels`` joined by ``edges``."""
    quote = lambda text: '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    lines = ["digraph G {", f"  rankdir={rankdir};", f"  dpi={int(dpi)};",
             "  node [shape=record, fontname=Helvetica];"]
    lines += [f"  n{i} [label={quote(text)}];" for i, text in enumerate(labels)]
    lines += [f"  n{a} -> n{b};" for a, b in edges]
    return "\n".join(lines + ["}"]) + "\n"


def _depths(count: int, edges) -> list[int]:
    """Each box's rank: the longest path to it from a box with no inputs (the graph is acyclic)."""
    depth = [0] * count
    for _ in range(count):  # relax until stable; ``count`` passes are always enough
        changed = False
        for a, b in edges:
            if depth[b] < depth[a] + 1:
                depth[b], changed = depth[a] + 1, True
        if not changed:
            break
    return depth


def _draw_matplotlib(labels: list[str], edges, rankdir: str, dpi: int, to_file: str) -> None:
    try:
        from matplotlib.figure import Figure  # optional extra: lamina[plot]
    except ImportError:
        raise ImportError(
            "plot_model needs Graphviz's `dot` program (https://graphviz.org/download/) or matplotlib "
            "(`pip install lamina[plot]`) to draw a picture; a `.dot` file needs neither. Received: "
            f"to_file={to_file!r} with neither installed"
        ) from None
    depth = _depths(len(labels), edges)
    rows: dict[int, list[int]] = {}
    for i, d in enumerate(depth):
        rows.setdefault(d, []).append(i)
    place = {}
    for d, members in rows.items():
        for k, i in enumerate(members):
            across, down = (k - (len(members) - 1) / 2) * 3.2, -d * 1.4
            place[i] = {"TB": (across, down), "BT": (across, -down), "LR": (-down * 2.2, -across / 2.2),
                        "RL": (down * 2.2, -across / 2.2)}[rankdir]
    xs, ys = [p[0] for p in place.values()], [p[1] for p in place.values()]
    width, height = max(xs) - min(xs) + 3.4, max(ys) - min(ys) + 1.4
    fig = Figure(figsize=(max(width, 3.4) * 0.9, max(height, 1.4) * 0.9))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(min(xs) - 1.7, max(xs) + 1.7)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    ax.axis("off")
    boxes = [ax.text(*place[i], text, ha="center", va="center", fontsize=8,
                     bbox={"boxstyle": "round,pad=0.4", "facecolor": "white", "edgecolor": "black"})
             for i, text in enumerate(labels)]
    for a, b in edges:
        ax.annotate("", xy=place[b], xytext=place[a], xycoords="data",
                    arrowprops={"arrowstyle": "->", "patchA": boxes[a].get_bbox_patch(),
                                "patchB": boxes[b].get_bbox_patch(), "shrinkA": 2, "shrinkB": 2})
    fig.savefig(to_file, dpi=dpi)


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False, show_layer_names=False,
               rankdir="TB", expand_nested=False, dpi=200, show_layer_activations=False, show_trainable=False,
               splines="ortho", **kwargs) -> None:
    """Save a picture of ``model``'s layers and their connections to ``to_file`` (its extension picks
    the format: png, pdf, svg...; ``.dot`` writes Graphviz source). ``expand_nested`` and ``splines``
    are accepted for Keras's signature; nested models are drawn as one box."""
    if kwargs:
        raise ValueError(f"Unrecognized keyword arguments: {kwargs}")
    if not model.built:
        raise ValueError("This model has not yet been built. Build the model first by calling `build()` or by "
                         f"calling the model on a batch of data. Received: model {model.name!r} (unbuilt)")
    if rankdir not in _RANKDIRS:
        raise ValueError(f"`rankdir` must be one of {_RANKDIRS}. Received: rankdir={rankdir!r}")
    layers, edges = _graph(model)
    labels = [_label(layer, model, show_shapes, show_dtype, show_layer_names, show_layer_activations,
                     show_trainable) for layer in layers]
    to_file = os.fspath(to_file)
    extension = os.path.splitext(to_file)[1][1:].lower() or "png"
    source = model_to_dot_text(labels, edges, rankdir, dpi)
    if extension == "dot":
        with open(to_file, "w", encoding="utf-8") as f:
            f.write(source)
        return None
    dot = shutil.which("dot")
    if dot is not None:
        subprocess.run([dot, f"-T{extension}", "-o", to_file], input=source.encode(), check=True)
        return None
    _draw_matplotlib(labels, edges, rankdir, dpi, to_file)
    return None
