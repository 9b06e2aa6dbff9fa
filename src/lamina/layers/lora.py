"""LoRA for Dense, the convolutions and Embedding: the checks on a request and the two factors.

With LoRA on, a layer's frozen weight ``W`` is used as ``W + (lora_alpha / rank) * a @ b`` (``a``
flattened to ``(-1, rank)``); ``b`` starts at zero, so the output is unchanged at first. The factors are
float32 whatever the layer's dtype, as Keras's: low-precision factors under- and overflow.
"""

from __future__ import annotations

import numpy as np

from lamina import initializers


def checked_lora_rank(layer, rank, constraint, noun: str, argument: str, build_call: str) -> int:
    """``rank`` as an int, after Keras's checks: no constraint on the frozen weight (``argument`` names
    it), the layer built, LoRA not on yet, a positive integer rank."""
    owner = f"{type(layer).__name__} '{layer.name}'"
    if constraint:
        raise ValueError(f"Lora is incompatible with {noun} constraints. In order to enable lora on this layer, "
                         f"remove the `{argument}` argument. Received: {argument}={constraint!r}")
    if not layer.built:
        raise ValueError(f"Cannot enable lora on a layer that isn't yet built ({owner}). "
                         f"Call it on data or call `{build_call}` first.")
    if layer.lora_enabled:
        raise ValueError(f"lora is already enabled. This can only be done once per layer ({owner}).")
    if isinstance(rank, float) and rank.is_integer():
        rank = int(rank)
    if not isinstance(rank, (int, np.integer)) or isinstance(rank, bool) or rank <= 0:
        raise ValueError(f"{owner}: the LoRA rank must be a positive integer. Received: rank={rank!r}")
    return int(rank)


def add_lora_factors(layer, frozen, prefix: str, a_shape: tuple, b_shape: tuple, rank: int, lora_alpha,
                     a_initializer, b_initializer, regularizer) -> tuple:
    """Add ``{prefix}_a`` and ``{prefix}_b`` to ``layer``, freeze ``frozen`` and switch LoRA on;
    returns the two factors."""
    a = layer.add_weight(name=f"{prefix}_a", shape=a_shape, initializer=initializers.get(a_initializer),
                         dtype="float32", regularizer=regularizer)
    b = layer.add_weight(name=f"{prefix}_b", shape=b_shape, initializer=initializers.get(b_initializer),
                         dtype="float32", regularizer=regularizer)
    frozen.trainable = False
    layer.lora_enabled = True
    layer.lora_rank = rank
    layer.lora_alpha = lora_alpha if lora_alpha is not None else rank
    return a, b


def assign_saved_arrays(layer, store, targets: list, factors: tuple = ()) -> None:
    """Assign ``store["0"]``, ``store["1"]``... to ``targets`` after checking every name and shape, then
    zero the LoRA ``factors``: Keras saves a LoRA layer's merged kernel, so a loaded layer starts from it
    with a zero update."""
    owner = f"{type(layer).__name__} '{layer.name}'"
    want = [str(i) for i in range(len(targets))]
    if sorted(store) != sorted(want):
        raise ValueError(f"{owner} expects {len(want)} saved arrays named {want} for "
                         f"{[v.name for v in targets]}. Received: keys={sorted(store)}")
    for key, var in zip(want, targets):
        value = np.asarray(store[key])
        if value.shape != tuple(var.shape):
            raise ValueError(f"{owner}: saved array '{key}' has the wrong shape for variable "
                             f"'{var.name}' {tuple(var.shape)}. Received: shape={value.shape}")
    for key, var in zip(want, targets):
        var.assign(np.asarray(store[key], dtype=var.dtype))
    for factor in factors:
        factor.assign(np.zeros(factor.shape, "float32"))
