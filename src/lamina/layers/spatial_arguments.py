"""Argument checks shared by the spatial layers (padding, cropping, up-sampling, pooling), as Keras words them."""

from __future__ import annotations

import numpy as np


def standardize_tuple(value, n: int, name: str, allow_zero: bool = False) -> tuple:
    """``value`` (an int or ``n`` ints) as a tuple of ``n`` ints, each ``> 0`` (``>= 0`` with ``allow_zero``),
    with Keras's messages. Unlike Keras, a non-integer such as 1.5 is refused here rather than left to fail
    (or be truncated) inside the op."""
    message = f"The `{name}` argument must be a tuple of {n} integers. Received {name}={value}"
    if isinstance(value, (int, np.integer)):
        values = (int(value),) * n
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise ValueError(message) from None
        if len(values) != n:
            raise ValueError(message)
        for item in values:
            try:
                whole = int(item) == item
            except (ValueError, TypeError):
                raise ValueError(f"{message}including element {item} of type {type(item)}") from None
            if not whole:
                raise ValueError(f"{message}, including the non-integer value {item!r}")
        values = tuple(int(v) for v in values)
    need = ">= 0" if allow_zero else "> 0"
    bad = {v for v in values if (v < 0 if allow_zero else v <= 0)}
    if bad:
        raise ValueError(f"{message}, including values {bad} that do not satisfy `value {need}`")
    return values


_ORDINALS = ("1st", "2nd", "3rd")


def standardize_pairs(value, rank: int, name: str, owner: str, example: str) -> tuple:
    """An int, or ``rank`` entries each an int or a ``(before, after)`` pair, as ``rank`` pairs."""
    if isinstance(value, (int, np.integer)):
        if value < 0:
            raise ValueError(f"`{name}` of {owner} cannot be negative. Received: {name}={value}.")
        return ((int(value), int(value)),) * rank
    if not hasattr(value, "__len__"):
        raise ValueError(
            f"`{name}` of {owner} should be either an int, a tuple of {rank} ints or a tuple of {rank} tuples "
            f"of 2 ints ({example}). Received: {name}={value}."
        )
    if len(value) != rank:
        raise ValueError(f"`{name}` of {owner} should have {rank} elements. Received: {name}={value}.")
    return tuple(standardize_tuple(entry, 2, f"{_ORDINALS[i]} entry of {name}", allow_zero=True)
                 for i, entry in enumerate(value))


def spatial_axes(data_format: str, rank: int) -> tuple:
    """The axes of the ``rank`` spatial dimensions of a ``(batch, ..., channels)`` or channels-first input."""
    first = 2 if data_format == "channels_first" else 1
    return tuple(range(first, first + rank))
