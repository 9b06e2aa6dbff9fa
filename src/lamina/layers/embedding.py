"""``Embedding``: looks up a row of a ``(input_dim, output_dim)`` table for every integer index."""

from __future__ import annotations

import warnings

import numpy as np

from lamina import backend, constraints, initializers, ops, regularizers
from lamina.autodiff import record, unwrap
from lamina.layers import rnn_accel
from lamina.layers.embedding_quantize import EmbeddingQuantization
from lamina.layers.keras_tensor import KerasTensor
from lamina.layers.layer import Layer
from lamina.layers.lora import add_lora_factors, checked_lora_rank
from lamina.quantizers import deserialize as deserialize_quantization_config
from lamina.quantizers import serialize as serialize_quantization_config


def _check_dim(value, arg: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"`{arg}` must be a positive integer. Received: {arg}={value!r} "
                         f"(of type {type(value).__name__}).")
    return int(value)


def scatter_rows(indices: np.ndarray, g: np.ndarray, rows: int) -> np.ndarray:
    """The gradient of ``table[indices]`` for the table: ``out[i] = sum of g[..., k, :] where indices[k] == i``
    (a scatter-add; an index seen twice adds twice)."""
    out = np.zeros((rows, g.shape[-1]), dtype=g.dtype)
    flat, g = indices.reshape(-1), g.reshape(-1, g.shape[-1])
    if flat.size == 0:
        return out
    flat = np.where(flat < 0, flat + rows, flat)  # -1 and rows - 1 are one row
    compiled = rnn_accel.kernels(g.dtype)
    if compiled is not None:  # one compiled loop (numba): ~100x faster than the NumPy ways below
        compiled["scatter_add_rows"](flat, np.ascontiguousarray(g), out)
        return out
    # Sorted, each row's gradients are one segment summed by one reduceat: ~3x faster than np.add.at
    # (which adds row by row) on an LSTM's batch of 64 x 80 tokens.
    order = np.argsort(flat, kind="stable")
    ids = flat[order]
    starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
    out[ids[starts]] = np.add.reduceat(g[order], starts, axis=0)
    return out


class Embedding(EmbeddingQuantization, Layer):
    """``Embedding(input_dim, output_dim)(x)[..., :] = embeddings[x[...]]``: integer inputs of any shape
    ``s`` give outputs of shape ``(*s, output_dim)``.

    Indices must lie in ``[-input_dim, input_dim)``; a negative one counts from the end, as Keras's
    ``take`` does. Float inputs are truncated to integers (Keras casts them to int32).

    ``mask_zero=True`` makes index 0 padding: the output carries the mask ``x != 0``, which the layers
    after it (GlobalAveragePooling1D, the recurrent layers, the losses) read. ``weights`` sets the initial
    table; ``lora_rank`` (or :meth:`enable_lora`) freezes it and trains ``embeddings + (lora_alpha /
    lora_rank) * lora_embeddings_a @ lora_embeddings_b`` instead. ``input_length`` (Keras 2 configs) is
    accepted with Keras's deprecation warning and ignored.

    The gradient of the table is a scatter-add of the output gradient into the looked-up rows.

    Quantization (:meth:`quantize`, or a ``"int8_from_float32"`` / ``"int4_from_float32"`` dtype): see
    :mod:`lamina.layers.embedding_quantize`. The variable is ``_embeddings``; ``embeddings`` reads it.
    """

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", embeddings_regularizer=None,
                 embeddings_constraint=None, mask_zero=False, weights=None, lora_rank=None, lora_alpha=None,
                 quantization_config=None, **kwargs):
        input_dim = _check_dim(input_dim, "input_dim")
        output_dim = _check_dim(output_dim, "output_dim")
        if kwargs.pop("input_length", None) is not None:
            warnings.warn("Argument `input_length` is deprecated. Just remove it.", stacklevel=2)
        super().__init__(**kwargs)
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.embeddings_constraint = constraints.get(embeddings_constraint)
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero
        self.autocast = False  # the inputs are indices: a float input is truncated, not cast to floatx
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha if lora_alpha is not None else lora_rank
        self.lora_enabled = False
        self.quantization_config = quantization_config
        if weights is not None:
            self.build()
            self.set_weights(weights if isinstance(weights, list) and len(weights) == 1 else [weights])

    # ------------------------------------------------------------------ weights

    def build(self, input_shape=None) -> None:
        if self.built:
            return
        if self.quantization_mode:
            self.quantized_build((self.input_dim, self.output_dim), self.quantization_mode,
                                 self.quantization_config)
        else:
            self._embeddings = self.add_weight(shape=(self.input_dim, self.output_dim),
                                               initializer=self.embeddings_initializer, name="embeddings",
                                               regularizer=self.embeddings_regularizer,
                                               constraint=self.embeddings_constraint, trainable=True)
        self.built = True
        if self.lora_rank:
            self.enable_lora(self.lora_rank, lora_alpha=self.lora_alpha)

    @property
    def embeddings(self):
        """The table: the ``embeddings`` variable, or with LoRA enabled the merged array
        ``embeddings + (lora_alpha / lora_rank) * lora_embeddings_a @ lora_embeddings_b``."""
        if not self.built:
            raise AttributeError(f"Embedding '{self.name}' has no `embeddings` until it is built. Call it on "
                                 "data or call `build()` first.")
        if self.quantization_mode is not None:
            table = self._unpacked_table()  # the stored integers, as Keras's property gives them
            return self._merged_table(table) if self.lora_enabled else table
        return self._merged_table() if self.lora_enabled else self._embeddings

    def enable_lora(self, rank, lora_alpha=None, a_initializer="he_uniform", b_initializer="zeros") -> None:
        """Freeze ``embeddings`` and add trainable float32 ``lora_embeddings_a`` ``(input_dim, rank)`` and
        ``lora_embeddings_b`` ``(rank, output_dim)`` (b starts at zero: the output is unchanged at first)."""
        rank = checked_lora_rank(self, rank, self.embeddings_constraint, "embedding", "embeddings_constraint",
                                 "build()")
        self.lora_embeddings_a, self.lora_embeddings_b = add_lora_factors(
            self, self._embeddings, "lora_embeddings", (self.input_dim, rank), (rank, self.output_dim), rank,
            lora_alpha, a_initializer, b_initializer, self.embeddings_regularizer)

    def _merged_table(self, base=None) -> np.ndarray:
        base = unwrap(self._embeddings) if base is None else base
        delta = (self.lora_alpha / self.lora_rank) * (self.lora_embeddings_a._value @ self.lora_embeddings_b._value)
        return (base + delta).astype(self.compute_dtype, copy=False)

    # Saving as Keras: with LoRA on, the table written is the merged one (quantized again when the layer
    # is quantized) and loading resets the factors; a quantized layer writes its variables in Keras's order.
    # `save_own_variables` exists only then (the weight walker asks `hasattr`).
    @property
    def save_own_variables(self):
        if not self.lora_enabled and self.quantization_mode is None:
            raise AttributeError("save_own_variables")
        return self._save_merged

    def _save_merged(self, store) -> None:
        if not self.built:
            return
        if self.quantization_mode is not None:
            store.update(self._saved_quantized())
        else:
            store["0"] = self._merged_table().astype(self._embeddings.dtype, copy=False)

    def load_own_variables(self, store) -> None:
        """Assign ``store["0"]``, ``store["1"]``... to the variables of the layer's mode, in Keras's order (and
        zero the LoRA factors)."""
        if not self.built:
            return
        targets = self._load_targets() if self.quantization_mode is not None else [self._embeddings]
        want = [str(i) for i in range(len(targets))]
        if sorted(store) != want:
            raise ValueError(f"Embedding '{self.name}' expects {len(want)} saved arrays named {want} for "
                             f"{[v.name for v in targets]}. Received: keys={sorted(store)}")
        arrays = [self._weight_array(v, store[k]) for k, v in zip(want, targets, strict=True)]
        for var, value in zip(targets, arrays, strict=True):
            var.assign(value)
        if self.lora_enabled:
            self.lora_embeddings_a.assign(np.zeros(self.lora_embeddings_a.shape, "float32"))
            self.lora_embeddings_b.assign(np.zeros(self.lora_embeddings_b.shape, "float32"))

    # ------------------------------------------------------------------ call

    def _indices(self, inputs) -> np.ndarray:
        """The inputs as integer indices, checked against ``input_dim``."""
        x = np.asarray(unwrap(inputs))
        if x.dtype.kind not in "iu":
            if x.dtype.kind not in "fb":
                raise TypeError(f"Embedding '{self.name}' expects integer indices. Received: inputs of dtype "
                                f"{x.dtype}")
            x = x.astype(np.int32)  # Keras casts: 1.7 -> 1
        if x.size and (x.min() < -self.input_dim or x.max() >= self.input_dim):
            raise IndexError(f"Embedding '{self.name}' has input_dim={self.input_dim}: every index must lie in "
                             f"[0, {self.input_dim}) (or [-{self.input_dim}, 0) from the end). Received: indices "
                             f"from {x.min()} to {x.max()}")
        return x

    def call(self, inputs):
        if self.quantization_mode is not None:
            out = self.quantized_call(inputs)
            if self.mask_zero:
                backend.set_keras_mask(out, np.not_equal(self._indices(inputs), 0))
            return out
        idx = self._indices(inputs)
        if self.lora_enabled:
            out = self._lora_lookup(idx)
        else:
            table = self._embeddings
            value = unwrap(table)
            y = np.take(value, idx, axis=0)  # ~3x faster than value[idx] (fancy indexing); negatives wrap alike
            if y.dtype != self._compute_np_dtype and self._compute_np_dtype is not None:
                y = y.astype(self._compute_np_dtype)
            rows, dtype = value.shape[0], np.dtype(table.dtype)  # the gradient in the variable's dtype
            out = record(y, (table,), lambda g: (scatter_rows(idx, g.astype(dtype, copy=False), rows),))
        if self.mask_zero:
            backend.set_keras_mask(out, np.not_equal(idx, 0))  # in call: a model's fast path keeps it too
        return out

    def _lora_lookup(self, idx: np.ndarray):
        """Rows of the merged table, one graph node over ``(embeddings, a, b)``: with ``G`` the scattered
        gradient, ``dE = G``, ``da = s * G @ b.T``, ``db = s * a.T @ G`` (``s = alpha / rank``)."""
        table, a, b = self._embeddings, self.lora_embeddings_a, self.lora_embeddings_b
        s = self.lora_alpha / self.lora_rank
        y = self._merged_table()[idx]

        def vjp(g):
            full = scatter_rows(idx, g.astype("float32", copy=False), self.input_dim)
            return full.astype(table.dtype, copy=False), s * (full @ b._value.T), s * (a._value.T @ full)

        return record(y, (table, a, b), vjp)

    def _may_start_mask(self) -> bool:
        return bool(self.mask_zero)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        if isinstance(inputs, KerasTensor):
            return ops.not_equal(inputs, 0)  # a graph node: a model can return the mask
        return np.not_equal(unwrap(inputs), 0)

    def __call__(self, inputs, *args, **kwargs):
        out = super().__call__(inputs, *args, **kwargs)
        if self.mask_zero and isinstance(out, KerasTensor) and isinstance(inputs, KerasTensor):
            backend.set_keras_mask(out, self.compute_mask(inputs))  # as call() does for arrays
        return out

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape), self.output_dim)

    # ------------------------------------------------------------------ config

    def get_build_config(self) -> dict | None:
        config = super().get_build_config()
        # build() needs no shape: a layer built without one (Keras's `layer.build()`) is still rebuilt on load
        return {"input_shape": None} if config is None and self.built else config

    def build_from_config(self, config: dict | None) -> None:
        if config and config.get("input_shape") is None and "input_shape" in config:
            self.build()
            return
        super().build_from_config(config)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
            "embeddings_regularizer": regularizers.serialize(self.embeddings_regularizer),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "embeddings_constraint": constraints.serialize(self.embeddings_constraint),
            "mask_zero": self.mask_zero,
            "quantization_config": serialize_quantization_config(self.quantization_config),
        })
        if self.lora_rank:
            config["lora_rank"] = self.lora_rank
            config["lora_alpha"] = self.lora_alpha
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        config["quantization_config"] = deserialize_quantization_config(config.get("quantization_config"))
        try:
            return cls(**config)
        except (TypeError, ValueError) as e:  # as Keras: any failure to rebuild is a TypeError
            raise TypeError(f"Error when deserializing class '{cls.__name__}' using config={str(config)[:300]}. "
                            f"Exception encountered: {e}") from None
