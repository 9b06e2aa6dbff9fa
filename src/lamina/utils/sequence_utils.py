"""``pad_sequences``: a list of sequences of different lengths as one padded (or truncated) array."""

from __future__ import annotations

import numpy as np


def _sequence_lengths(sequences) -> tuple[list[int], tuple]:
    """Each sequence's length, and the shape of one step (from the first non-empty sequence)."""
    lengths, step_shape = [], None
    for i, seq in enumerate(sequences):
        try:
            lengths.append(len(seq))
        except TypeError:
            raise ValueError(f"`sequences` must be a list of iterables (lists or arrays). Received: "
                             f"{seq!r} of type {type(seq).__name__} at position {i}") from None
        if step_shape is None and len(seq):
            step_shape = np.asarray(seq).shape[1:]
    return lengths, step_shape or ()


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre", value=0.0) -> np.ndarray:
    """Pad (or cut) a list of sequences to one length: an array of shape ``(len(sequences), maxlen, *step)``.

    ``maxlen`` defaults to the longest sequence; ``padding``/``truncating`` ("pre" or "post") say at which
    end ``value`` is added or steps are dropped. Strings need ``dtype=object`` (or a string dtype).
    """
    if not hasattr(sequences, "__len__"):
        raise ValueError(f"`sequences` must be a list of sequences. Received: {type(sequences).__name__}")
    for name, choice in (("padding", padding), ("truncating", truncating)):
        if choice not in ("pre", "post"):
            raise ValueError(f'`{name}` must be "pre" or "post". Received: {name}={choice!r}')
    lengths, step_shape = _sequence_lengths(sequences)
    if maxlen is None:
        maxlen = max(lengths, default=0)
    if isinstance(maxlen, bool) or not isinstance(maxlen, (int, np.integer)) or maxlen < 0:
        raise ValueError(f"`maxlen` must be a non-negative integer or None. Received: maxlen={maxlen!r}")
    is_text = np.issubdtype(dtype, np.str_) or np.issubdtype(dtype, np.bytes_)
    if isinstance(value, str) and dtype is not object and not is_text:
        raise ValueError(f"`dtype` {dtype} is not compatible with `value`'s type: {type(value)}; pass dtype=object "
                         f"for variable-length strings. Received: value={value!r}, dtype={dtype!r}")
    out = np.full((len(lengths), int(maxlen)) + step_shape, value, dtype=dtype)
    for i, seq in enumerate(sequences):
        if not len(seq) or not maxlen:
            continue
        kept = np.asarray(seq[-maxlen:] if truncating == "pre" else seq[:maxlen], dtype=dtype)
        if kept.shape[1:] != step_shape:
            raise ValueError(f"Every step of every sequence must have the same shape. Received: steps of shape "
                             f"{kept.shape[1:]} in sequence {i}, expected {step_shape}")
        if padding == "post":
            out[i, :len(kept)] = kept
        else:
            out[i, maxlen - len(kept):] = kept
    return out
