"""``Model.quantize``: quantize every quantizable leaf layer of a model (Dense), optionally filtered."""

from __future__ import annotations

import re
import warnings

from lamina.quantizers.quantization_config import validate_and_resolve_config


def _matches(layer, filters) -> bool:
    """Whether ``filters`` (None, a regex string, a list of them, or a callable) selects ``layer``."""
    if filters is None:
        return True
    if isinstance(filters, str):
        return re.search(filters, layer.name) is not None
    if isinstance(filters, (list, tuple)):
        return any(re.search(pattern, layer.name) is not None for pattern in filters)
    return bool(filters(layer))


class ModelQuantization:
    """The quantization methods of :class:`~lamina.models.model.Model` (a mixin)."""

    def quantize(self, mode=None, config=None, filters=None, **kwargs) -> None:
        """Quantize the weights of every leaf layer that supports it (Dense), in place.

        Args:
            mode: ``"int8"``, ``"int4"`` or ``"float8"`` (optional when ``config`` says it).
            config: a :class:`~lamina.quantizers.QuantizationConfig` (its quantizers, int4's block size).
            filters: only layers whose name matches this regex (or one of this list of regexes), or for
                which this callable returns True, are quantized.

        The model must be built. Its training, evaluation and prediction functions are rebuilt at the
        next call.
        """
        type_check = kwargs.pop("type_check", True)
        if kwargs:
            raise ValueError(f"Unrecognized keyword arguments passed to {type(self).__name__}.quantize: {kwargs}")
        if filters is not None and not (isinstance(filters, (str, list, tuple)) or callable(filters)):
            raise ValueError("The `filters` argument must be a regex string, a list of regex strings, or a callable. "
                             f"Received: filters={filters!r} (of type {type(filters).__name__})")
        config = validate_and_resolve_config(mode, config)  # a bad mode fails before any layer changes
        changed = False
        for layer in self._flatten_layers():
            if layer._layers or not hasattr(layer, "quantize") or not _matches(layer, filters):
                continue
            try:
                layer.quantize(config.mode, type_check=type_check, config=config)
                changed = True
            except NotImplementedError as e:  # a Dense subclass: its `call` may not be Dense's
                warnings.warn(str(e), stacklevel=2)
        if changed:
            self._fast_planned = False
            self.train_function = self.test_function = self.predict_function = None
