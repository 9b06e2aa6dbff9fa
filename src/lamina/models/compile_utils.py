"""What ``compile`` and ``fit`` decide about losses: wrapping, the from-logits twin, label checks."""

from __future__ import annotations

import numpy as np

from lamina import activations
from lamina import losses as losses_lib

_CROSSENTROPIES = {
    losses_lib.binary_crossentropy: "sigmoid",
    losses_lib.categorical_crossentropy: "softmax",
    losses_lib.sparse_categorical_crossentropy: "softmax",
}


def as_loss_object(loss):
    """A Loss instance: functions (``"mse"`` resolves to one) are wrapped as Keras's compile does."""
    if loss is None or isinstance(loss, losses_lib.Loss):
        return loss
    if callable(loss):
        return losses_lib.LossFunctionWrapper(loss, name=getattr(loss, "__name__", None))
    raise ValueError(f"Could not interpret loss: {loss!r}")


def logits_twin(loss, activation):
    """The same loss with ``from_logits=True`` when ``activation`` is the one it undoes, else None.

    Keras's TensorFlow backend does this (through ``_keras_logits``): a sigmoid output feeding a
    binary crossentropy, or a softmax output a categorical one, is computed from the logits —
    stable for saturated outputs, with gradient ``p - y``.
    """
    if not isinstance(loss, losses_lib.LossFunctionWrapper) or activation is None:
        return None
    kind = _CROSSENTROPIES.get(loss.fn)
    if kind is None or loss._fn_kwargs.get("from_logits", False):
        return None
    if loss._fn_kwargs.get("axis", -1) != -1:
        return None
    if (kind == "sigmoid" and activation is not activations.sigmoid) or (
            kind == "softmax" and activation is not activations.softmax):
        return None
    kwargs = dict(loss._fn_kwargs, from_logits=True)
    return losses_lib.LossFunctionWrapper(loss.fn, reduction=loss.reduction, name=loss.name, **kwargs)


def _fn_of(loss):
    return loss.fn if isinstance(loss, losses_lib.LossFunctionWrapper) else loss


def check_targets(loss, y, output_shape) -> None:
    """Labels that cannot fit the loss fail here, before any step, in the loss's own terms."""
    fn = _fn_of(loss)
    y = np.asarray(y)
    name = getattr(loss, "name", getattr(fn, "__name__", "loss"))
    units = output_shape[-1] if output_shape else None
    if fn is losses_lib.sparse_categorical_crossentropy:
        if units is not None and y.ndim == len(output_shape) and y.shape[-1] == units and units > 1:
            raise ValueError(
                f"Loss '{name}' expects integer class indices of shape (n,), but the labels look one-hot "
                f"(shape {y.shape} matches the output's {tuple(output_shape)}). Use "
                "'categorical_crossentropy' for one-hot labels, or pass y.argmax(axis=-1). "
                f"Received: y.shape={y.shape}"
            )
        if y.size and y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
            raise ValueError(
                f"Loss '{name}' expects integer class indices. Received: non-integer labels such as "
                f"{y[np.mod(y, 1) != 0].ravel()[0]}"
            )
        ignore = getattr(loss, "_fn_kwargs", {}).get("ignore_class", getattr(loss, "ignore_class", None))
        valid = y if ignore is None else y[y != ignore]
        if units is not None and valid.size and (valid.min() < 0 or valid.max() >= units):
            raise ValueError(
                f"Loss '{name}': labels must lie in [0, {units}) for a model with {units} output units. "
                f"Received: labels from {valid.min()} to {valid.max()}"
            )
    elif fn is losses_lib.categorical_crossentropy:
        if units is not None and units > 1 and (y.ndim < len(output_shape) or y.shape[-1] != units):
            raise ValueError(
                f"Loss '{name}' expects one-hot labels of shape (n, {units}) to match the output, but "
                f"got shape {y.shape}. For integer class indices use 'sparse_categorical_crossentropy', "
                f"or one-hot encode with lamina.utils.to_categorical(y, {units}). Received: y.shape={y.shape}"
            )
