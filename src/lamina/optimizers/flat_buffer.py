"""``FlatBuffer``: a model's float32 trainable weights and their gradients, each in one contiguous array.

Small models on a CPU are overhead-bound: one vectorised call over all weights beats one call per
variable. So the trainer makes the float32 trainable variables views into one ``weights`` array,
the buffer keeps a matching ``grads`` array with one view per variable, and everything that touches
a whole step works on those two arrays:

* the optimizer updates ``weights`` from ``grads`` in a few flat calls;
* the compiled step (``models/compiled_step.py``) writes its gradients into ``grad_views``;
* a data-parallel strategy all-reduces ``message`` — ``grads`` followed by one spare slot (the
  rank's sample count) — in one collective, in place.

Variable ``i`` occupies ``weights[offsets[i]:offsets[i] + sizes[i]]`` (and the same span of
``grads``). Layout questions are answered by identity, never by comparing memory addresses:
:meth:`is_bound` (every variable still holds its view) and :meth:`holds_grads` (these arrays are
exactly ``grad_views``, in order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DTYPE = np.dtype(np.float32)


class FlatBuffer:
    """Contiguous float32 storage for ``variables`` (their values are rebound to views of it).

    Args:
        variables: the variables to hold, in order: float32 only (:meth:`eligible` filters a model's
            list); any other dtype raises.
        bind: False makes a gradients-only buffer (``grads``, ``grad_views``, ``message``; no
            ``weights``, nothing rebound) for variables of any float dtype, in the widest of them:
            what a data-parallel strategy all-reduces for a custom loop's variable list.
    """

    def __init__(self, variables: Sequence, bind: bool = True):
        variables = tuple(variables)
        if bind:
            wrong = [getattr(v, "path", v) for v in variables if np.dtype(v.dtype) != DTYPE]
            if wrong:
                raise ValueError(f"FlatBuffer holds float32 variables only. Received: other dtypes for {wrong}")
            dtype = DTYPE
        else:  # gradients only: wide enough for every variable (float64 ones keep their precision)
            dtype = np.result_type(DTYPE, *[np.dtype(v.dtype) for v in variables])
        self.variables = variables
        self.dtype = dtype
        self.shapes = [tuple(v.shape) for v in variables]
        self.sizes = [int(v.size) for v in variables]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes, dtype=np.int64)]).tolist()[:-1]
        self.total = sum(self.sizes)
        # The gradients and a spare last slot share one allocation, so an all-reduce sends them with the
        # sample count, without a copy (a second buffer would push a small model's weights out of cache).
        self.message = np.zeros(self.total + 1, dtype)
        self.grads = self.message[:self.total]
        self.grad_views = self._views(self.grads)
        self.weights = np.empty(self.total, DTYPE) if bind else None
        self.weight_views = self._views(self.weights) if bind else []
        for v, view in zip(variables, self.weight_views):
            v._rebind(view)  # copies the current value in: nothing the user sees changes

    @staticmethod
    def eligible(variables: Sequence) -> list:
        """The float32 variables of ``variables``, in order (what a model's buffer holds)."""
        return [v for v in variables if np.dtype(v.dtype) == DTYPE]

    def _views(self, flat: np.ndarray) -> list[np.ndarray]:
        parts = zip(self.offsets, self.sizes, self.shapes, strict=True)
        return [flat[o:o + n].reshape(s) for o, n, s in parts]

    def covers(self, variables: Sequence) -> bool:
        """True if ``variables`` are exactly this buffer's variables (the same objects), in order."""
        mine = self.variables
        return len(variables) == len(mine) and all(a is b for a, b in zip(variables, mine, strict=True))

    def is_bound(self) -> bool:
        """True while every variable still holds its view of :attr:`weights`.

        Assigning a value writes into the view and keeps it; anything that gives a variable a new
        array (a rebinding by other code) makes this False, and the buffer must then be rebuilt. A
        gradients-only buffer (``bind=False``) binds nothing: always False.
        """
        views = self.weight_views
        return self.weights is not None and all(v._value is w for v, w in zip(self.variables, views, strict=True))

    def holds_grads(self, arrays: Sequence) -> bool:
        """True if ``arrays`` are exactly :attr:`grad_views` (the same objects), in order."""
        views = self.grad_views
        return len(arrays) == len(views) and all(a is b for a, b in zip(arrays, views, strict=True))

    def __repr__(self) -> str:
        kind = "" if self.weights is not None else ", gradients only"
        return f"<FlatBuffer variables={len(self.variables)}, total={self.total}, dtype={self.dtype}{kind}>"
