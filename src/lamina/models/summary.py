"""``model.summary()``: Keras's box-drawn table of layers, output shapes and parameter counts."""

from __future__ import annotations

import shutil
import textwrap

import numpy as np

from lamina.layers.input_layer import InputLayer


def readable_size(n_bytes: float) -> str:
    """427.29 KB style, with 1024 steps, as Keras prints."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n_bytes < 1024:
            return f"{n_bytes:.2f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.2f} PB"


def _param_bytes(weights) -> int:
    return int(sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in weights))


def _shape_str(layer, model) -> str:
    shapes = []
    nodes = [n for n in layer._inbound_nodes if _node_in_model(n, model)]
    for node in nodes[:1]:
        shapes = [t.shape for t in node.output_tensors]
    if not shapes:
        return "?"
    text = ", ".join(str(s) for s in shapes)
    return text if len(shapes) == 1 else f"[{text}]"


def _node_in_model(node, model) -> bool:
    nodes = getattr(model, "_nodes", None)
    if nodes is None:  # Sequential: the stack's latest graph
        return node is (node.layer._inbound_nodes[-1] if node.layer._inbound_nodes else None)
    return node in nodes or isinstance(node.layer, InputLayer)


def _connections(layer, model) -> str:
    parts = []
    for node in layer._inbound_nodes:
        if node not in getattr(model, "_nodes", ()):
            continue
        for t in node.input_tensors:
            src, node_index, tensor_index = t._keras_history
            parts.append(f"{src.name}[{node_index}][{tensor_index}]")
    return ", ".join(parts) if parts else "-"


def _is_branching(model) -> bool:
    nodes = getattr(model, "_nodes", None)
    if nodes is None:
        return False
    if len(model.inputs) > 1 or len(model.outputs) > 1:
        return True
    return any(len(n.input_tensors) != 1 for n in nodes) or any(
        len(layer._inbound_nodes) > 1 for layer in model.layers
    )


def _rows(model, connected: bool, show_trainable: bool) -> list[list[str]]:
    """One row of cells per layer: name (type), output shape, parameters[, connections][, trainable]."""
    if not model.built:
        return [[f"{layer.name} ({type(layer).__name__})", "?", "0 (unbuilt)"] for layer in model.layers]
    rows = []
    for layer in getattr(model, "_operations", None) or model.layers:  # a Functional's op nodes too, as Keras
        if isinstance(layer, InputLayer) and not hasattr(model, "_nodes"):
            continue
        params = sum(int(np.prod(w.shape)) for w in layer.weights) if layer.built else 0
        kind = getattr(layer, "keras_class_name", None) or type(layer).__name__  # an op node: Keras's op class
        row = [f"{layer.name} ({kind})", _shape_str(layer, model), f"{params:,}"]
        if connected:
            row.append(_connections(layer, model))
        if show_trainable:
            row.append("Y" if layer.trainable else "N")
        rows.append(row)
    return rows


def print_summary(model, line_length=None, print_fn=None, show_trainable=False) -> None:
    print_fn = print_fn or print
    connected = _is_branching(model)
    headers = ["Layer (type)", "Output Shape", "Param #"] + (["Connected to"] if connected else [])
    if show_trainable:
        headers.append("Trainable")
    total_width = line_length or (min(shutil.get_terminal_size((100, 20)).columns, 110) if connected else 78)
    fracs = [0.45, 0.32, 0.23] if not connected else [0.3, 0.24, 0.16, 0.3]
    if show_trainable:
        fracs = [f * 0.9 for f in fracs] + [0.1]
    widths = [max(len(h) + 2, int(total_width * f)) for h, f in zip(headers, fracs)]
    aligns = ["<", "<", ">"] + (["<"] if connected else []) + (["^"] if show_trainable else [])

    rows = _rows(model, connected, show_trainable)

    def line(left, mid, right, fill):
        return left + mid.join(fill * w for w in widths) + right

    def fmt_row(cells):
        wrapped = [textwrap.wrap(c, w - 2) or [""] for c, w in zip(cells, widths)]
        height = max(len(w) for w in wrapped)
        out = []
        for i in range(height):
            parts = []
            for cell_lines, w, a in zip(wrapped, widths, aligns):
                text = cell_lines[i] if i < len(cell_lines) else ""
                parts.append(" " + format(text, f"{a}{w - 2}") + " ")
            out.append("│" + "│".join(parts) + "│")
        return out

    print_fn(f'Model: "{model.name}"')
    print_fn(line("┏", "┳", "┓", "━"))
    header = "┃" + "┃".join(" " + format(h, f"{a}{w - 2}") + " " for h, w, a in zip(headers, widths, aligns)) + "┃"
    print_fn(header)
    print_fn(line("┡", "╇", "┩", "━"))
    for i, row in enumerate(rows):
        for text in fmt_row(row):
            print_fn(text)
        if i < len(rows) - 1:
            print_fn(line("├", "┼", "┤", "─"))
    print_fn(line("└", "┴", "┘", "─"))
    weights = model.weights if model.built else []
    trainable = model.trainable_weights if model.built else []
    t_ids = {id(w) for w in trainable}
    non_trainable = [w for w in weights if id(w) not in t_ids]
    total = sum(int(np.prod(w.shape)) for w in weights)
    n_train = sum(int(np.prod(w.shape)) for w in trainable)
    optimizer = getattr(model, "optimizer", None)
    opt_vars = [v for v in getattr(optimizer, "variables", [])] if optimizer is not None else []
    print_fn(f" Total params: {total:,} ({readable_size(_param_bytes(weights))})")
    print_fn(f" Trainable params: {n_train:,} ({readable_size(_param_bytes(trainable))})")
    print_fn(f" Non-trainable params: {total - n_train:,} ({readable_size(_param_bytes(non_trainable))})")
    if opt_vars:
        n_opt = sum(int(np.prod(v.shape)) for v in opt_vars)
        print_fn(f" Optimizer params: {n_opt:,} ({readable_size(_param_bytes(opt_vars))})")
