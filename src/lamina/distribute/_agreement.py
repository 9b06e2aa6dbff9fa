"""The check at the start of a data-parallel ``fit`` that every rank is about to train the same way.

Ranks that differ in their optimizer, learning rate, loss or layer settings would each apply the
same averaged gradients in their own way and end with different weights, silently; ranks with a
different number of steps (another data length, batch size or epoch count) would wait for each
other inside a collective until the timeout. So each rank describes its settings as a flat
``{setting: value}`` table of short strings, the ranks compare a SHA-256 digest of it (one small
allgather), and only when the digests differ do they exchange the tables to name what differs.
"""

from __future__ import annotations

import hashlib
import numbers

import numpy as np

_MAX_VALUE_CHARS = 160  # per value in the error message: the setting, not a whole config dump
_MAX_SETTINGS_SHOWN = 8


def describe(value) -> str:
    """A short, stable text for a setting: equal on two ranks exactly when the setting is."""
    if value is None or isinstance(value, (bool, str)):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        # A float32 hyper-parameter (0.01 stored as 0.009999999776...) reads as the number typed.
        return str(np.float32(value)) if float(np.float32(value)) == value else repr(value)
    if isinstance(value, dict):
        if "class_name" in value and "config" in value:  # a serialized object, e.g. an initializer
            if value["class_name"] == "function":
                return describe(value["config"])
            return f"{value['class_name']}({_describe_items(value['config'])})"
        return "{" + _describe_items(value) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(describe(v) for v in value) + "]"
    if isinstance(value, np.ndarray):
        return f"array{value.shape}:{hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()[:12]}"
    config = _config_of(value)
    if config is not None:
        config.pop("name", None)  # auto-numbered ("auc_1"): differs between ranks for no reason
        return f"{type(value).__name__}({_describe_items(config)})"
    if callable(value):
        return getattr(value, "__qualname__", None) or type(value).__name__
    return type(value).__name__


def _describe_items(config) -> str:
    if not isinstance(config, dict):
        return describe(config)
    return ", ".join(f"{k}={describe(v)}" for k, v in sorted(config.items(), key=lambda kv: str(kv[0])))


def _config_of(obj) -> dict | None:
    get_config = getattr(obj, "get_config", None)
    if not callable(get_config):
        return None
    try:
        config = get_config()
    except (NotImplementedError, TypeError, ValueError, AttributeError):
        return None  # a custom object without a usable config: its class name stands for it
    return dict(config) if isinstance(config, dict) else None


def _ignored(config_key: str) -> bool:
    """Layer settings that may differ between ranks without harm.

    ``name``: auto-numbered (``dense_3``), so it depends on what else a rank built before. Initializers
    and ``seed``: rank 0's weights are broadcast, and a per-rank seed (e.g. Dropout's) is legitimate.
    """
    return config_key in ("name", "seed") or config_key.endswith("_initializer")


def _layer_settings(layers, prefix: str, out: dict) -> None:
    for i, layer in enumerate(layers):
        key = f"{prefix}[{i}]"
        out[key] = type(layer).__name__
        inner = getattr(layer, "layers", None)
        if isinstance(inner, list):  # a nested model: its own config names its layers, so walk them
            _layer_settings(inner, key + ".layers", out)
            continue
        config = _config_of(layer) or {}
        for name, value in config.items():
            if not _ignored(name):
                out[f"{key}.{name}"] = describe(value)
        if layer.weights:
            out[f"{key}.weights"] = ", ".join(
                f"{tuple(v.shape)} {np.dtype(v.dtype).name}" for v in layer.weights)


def _num_samples(data) -> int | None:
    """Rows of an in-memory ``(x, y, ...)`` tuple (None for an iterable of batches)."""
    if not isinstance(data, tuple) or not data:
        return None
    leaf = data[0]
    while isinstance(leaf, (dict, list, tuple)) and leaf:
        leaf = next(iter(leaf.values())) if isinstance(leaf, dict) else leaf[0]
    shape = np.shape(leaf)
    return int(shape[0]) if shape else None


def fit_settings(model, train, batch_size, epochs, initial_epoch, validation) -> dict[str, str]:
    """This rank's ``{setting: value}`` table: model, compile() and fit() settings."""
    out: dict[str, str] = {}
    _layer_settings(list(getattr(model, "layers", [])), "model.layers", out)
    optimizer = getattr(model, "optimizer", None)
    out["optimizer"] = type(optimizer).__name__
    config = _config_of(optimizer) or {}
    config.pop("name", None)
    for name, value in config.items():
        out[f"optimizer.{name}"] = describe(value)
    output_losses = getattr(model, "_output_losses", [])
    for i, output_loss in enumerate(output_losses):
        key = "loss" if len(output_losses) == 1 else f"loss[{i}]"
        out[key] = describe(output_loss.loss)
        out[key + ".weight"] = describe(output_loss.weight)
    compiled = getattr(model, "_compile_config", {}) or {}
    out["metrics"] = describe(compiled.get("metrics") or [])
    out["weighted_metrics"] = describe(compiled.get("weighted_metrics") or [])
    samples = getattr(train, "n", None)
    out["fit.data"] = "arrays" if samples is not None else "an iterable of batches"
    if samples is not None:  # the batch size of an iterable is whatever it yields
        out["fit.samples"] = describe(samples)
        out["fit.batch_size"] = describe(batch_size)
        out["fit.shuffle"] = describe(getattr(train, "shuffle", None))
    out["fit.steps_per_epoch"] = describe(getattr(train, "steps", None))
    out["fit.epochs"] = describe(epochs)
    out["fit.initial_epoch"] = describe(initial_epoch)
    out["fit.validation_samples"] = describe(_num_samples(validation)) if validation is not None else "None"
    return out


def digest(settings: dict[str, str]) -> bytes:
    """SHA-256 of the table; sorted, so two tables digest alike exactly when :func:`differences` is empty."""
    h = hashlib.sha256()
    for key, value in sorted(settings.items()):
        h.update(key.encode() + b"\x00" + value.encode() + b"\x01")
    return h.digest()


def _ranks(ranks: list[int]) -> str:
    return f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {ranks}"


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_VALUE_CHARS else text[:_MAX_VALUE_CHARS - 3] + "..."


def differences(tables: list[dict[str, str]]) -> list[str]:
    """``"setting = value on rank r, other on rank s"`` for each setting not equal on every rank."""
    keys = list(dict.fromkeys(k for table in tables for k in table))
    lines, differing = [], []
    for key in keys:
        if any(key.startswith(parent + ".") for parent in differing):
            continue  # "optimizer = SGD ..., Adam ..." already says that their settings differ
        by_value: dict[str, list[int]] = {}
        for rank, table in enumerate(tables):
            by_value.setdefault(table.get(key, "(absent)"), []).append(rank)
        if len(by_value) > 1:
            differing.append(key)
            lines.append(f"{key} = " + ", ".join(f"{_clip(v)} on {_ranks(r)}" for v, r in by_value.items()))
    return lines


def disagreement_message(tables: list[dict[str, str]]) -> str:
    lines = differences(tables)
    shown = "; ".join(lines[:_MAX_SETTINGS_SHOWN])
    if len(lines) > _MAX_SETTINGS_SHOWN:
        shown += f"; and {len(lines) - _MAX_SETTINGS_SHOWN} more"
    return (
        "MPIStrategy: the ranks disagree on how to train, so fit() stops on every rank before the first "
        "step (they would end with different weights, or wait for each other until the timeout). Every "
        "rank must build the same model, compile it with the same optimizer, loss and metrics, and call "
        f"fit() with the same data length, batch_size and epochs. Received: {shown}"
    )
