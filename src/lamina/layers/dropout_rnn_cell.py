"""``DropoutRNNCell``: the dropout masks a recurrent cell draws once per sequence and reuses at every step."""

from __future__ import annotations

import numpy as np

from lamina import backend, random
from lamina.autodiff import unwrap


class DropoutRNNCell:
    """Mixin for RNN cells (Keras's): ``get_dropout_mask(x_t)`` and ``get_recurrent_dropout_mask(h)`` draw an
    inverted-dropout multiplier (0 or ``1 / (1 - rate)``) the first time they are asked during a sequence and
    return the same one at every later step, until the ``RNN`` layer calls ``reset_dropout_mask`` /
    ``reset_recurrent_dropout_mask`` at the end of the call.

    The cell provides ``dropout``, ``recurrent_dropout`` and ``seed_generator`` (a
    :class:`~lamina.random.SeedGenerator`, or None to draw from lamina's global generator). With
    ``dropout_mask_count = k`` set, each getter returns a list of ``k`` independent masks (one per gate).
    """

    def _create_dropout_mask(self, step_input, rate):
        value = np.asarray(unwrap(step_input))
        dtype = value.dtype if np.issubdtype(value.dtype, np.floating) else np.dtype(backend.floatx())
        count = getattr(self, "dropout_mask_count", None)
        masks = [_inverted_dropout(value.shape, rate, dtype, getattr(self, "seed_generator", None))
                 for _ in range(1 if count is None else count)]
        return masks[0] if count is None else masks

    def get_dropout_mask(self, step_input):
        if getattr(self, "_dropout_mask", None) is None and self.dropout > 0:
            self._dropout_mask = self._create_dropout_mask(step_input, self.dropout)
        return getattr(self, "_dropout_mask", None)

    def get_recurrent_dropout_mask(self, step_input):
        if getattr(self, "_recurrent_dropout_mask", None) is None and self.recurrent_dropout > 0:
            self._recurrent_dropout_mask = self._create_dropout_mask(step_input, self.recurrent_dropout)
        return getattr(self, "_recurrent_dropout_mask", None)

    def reset_dropout_mask(self) -> None:
        """Forget the input mask: the next sequence draws a new one."""
        self._dropout_mask = None

    def reset_recurrent_dropout_mask(self) -> None:
        """Forget the recurrent mask: the next sequence draws a new one."""
        self._recurrent_dropout_mask = None


def _inverted_dropout(shape, rate: float, dtype, seed_generator) -> np.ndarray:
    """0 with probability ``rate``, else ``1 / (1 - rate)`` (all zeros at rate 1)."""
    if rate >= 1:
        return np.zeros(shape, dtype=dtype)
    keep = 1.0 - rate
    kept = random._generator(seed_generator).random(shape, dtype=np.float32) < keep
    return np.where(kept, dtype.type(1.0 / keep), dtype.type(0))


__all__ = ["DropoutRNNCell"]
