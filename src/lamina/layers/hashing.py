"""``Hashing``: strings or integers hashed into ``num_bins`` bins, as Keras's layer (TensorFlow's hash ops).

bin = ``Fingerprint64(s) % num_bins`` (FarmHash) without a salt, ``SipHash-2-4(salt, s) % num_bins`` with one,
where ``s`` is the UTF-8 bytes of a string, or the decimal text of an integer (floats are truncated to
integers first; booleans read ``"true"`` / ``"false"``), as ``tf.as_string`` writes them. With a
``mask_value`` (and ``num_bins > 1``) bin 0 is kept for it and the others hash into bins ``1 .. num_bins-1``.
"""

from __future__ import annotations

import numpy as np

from lamina import backend
from lamina.autodiff import Tensor, Variable, unwrap
from lamina.layers.layer import Layer
from lamina.layers.string_hash import fingerprint64, siphash24

_OUTPUT_MODES = ("int", "one_hot", "multi_hot", "count")


def _check_salt(salt):
    """Keras's salt forms: None, one integer (used twice) or a pair of integers; returned as a list."""
    if salt is None:
        return None

    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if isinstance(salt, (tuple, list)) and len(salt) == 2 and all(is_int(v) for v in salt):
        return [int(v) for v in salt]
    if is_int(salt):
        return [int(salt), int(salt)]
    raise ValueError("The `salt` argument for `Hashing` can only be a tuple of size 2 integers, or a single "
                     f"integer. Received: salt={salt}.")


class Hashing(Layer):
    """Hashes categorical values (strings or integers) into ``num_bins`` bins.

    Args:
        num_bins: the number of bins, including the mask bin when ``mask_value`` is set.
        mask_value: the value mapped to bin 0 (None: no mask bin).
        salt: None (FarmHash64), an integer or a pair of integers (the key of SipHash-2-4; one integer ``k``
            means ``[k, k]``).
        output_mode: ``"int"`` (the bins), ``"one_hot"`` (a ``num_bins`` axis appended, or replacing a last
            axis of size 1), ``"multi_hot"`` / ``"count"`` (the last axis of an input of rank <= 2 encoded
            as one sample: which bins occur / how often).
        sparse: Keras's sparse outputs; lamina has no sparse tensors, so only ``False``.
        dtype: the output dtype; ``"int64"`` for ``"int"`` mode (``"int32"`` allowed), else the float type.
    """

    _tf_data_inputs = "as_is"  # runs inside tf.data on TensorFlow tensors (layers.tf_data_bridge)

    def __init__(self, num_bins, mask_value=None, salt=None, output_mode="int", sparse=False, **kwargs):
        if kwargs.get("dtype") is None:
            kwargs["dtype"] = "int64" if output_mode == "int" else backend.floatx()
        super().__init__(**kwargs)
        if num_bins is None or isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) \
                or num_bins <= 0:
            raise ValueError("The `num_bins` for `Hashing` cannot be `None` or non-positive values. "
                             f"Received: num_bins={num_bins}.")
        if output_mode == "int" and self.dtype_policy.name not in ("int32", "int64"):
            raise ValueError('When `output_mode="int"`, `dtype` should be an integer type, \'int32\' or '
                             f"'int64'. Received: dtype={kwargs['dtype']}")
        if output_mode not in _OUTPUT_MODES:
            raise ValueError(f"Invalid value for argument `output_mode`. Expected one of {_OUTPUT_MODES}. "
                             f"Received: output_mode={output_mode}")
        if sparse and output_mode == "int":
            raise ValueError('`sparse` may only be true if `output_mode` is `"one_hot"`, `"multi_hot"`, or '
                             f'`"count"`. Received: sparse={sparse} and output_mode={output_mode}')
        if sparse:
            raise ValueError("Hashing: `sparse=True` returns TensorFlow sparse tensors in Keras; lamina has no "
                             "sparse tensors (its outputs are dense NumPy arrays). Use sparse=False. "
                             f"Received: sparse={sparse}")
        self.num_bins = int(num_bins)
        self.mask_value = mask_value
        self.salt = _check_salt(salt)
        self.strong_hash = self.salt is not None
        self.output_mode = output_mode
        self.sparse = bool(sparse)
        self._build_at_init()

    # ------------------------------------------------------------------ inputs

    def _convert_inputs(self, inputs):
        """Text stays text: str/bytes/object arrays (and lists of strings) pass as they are; numbers as arrays."""
        if isinstance(inputs, (Tensor, Variable)):
            return np.asarray(unwrap(inputs))
        if isinstance(inputs, np.ndarray):
            return inputs
        try:
            array = np.asarray(inputs)
            if array.dtype.kind in "US":  # NumPy's fixed-width strings drop trailing NULs: keep the exact text
                array = np.asarray(inputs, dtype=object)
        except (ValueError, TypeError) as e:
            raise TypeError(f"Layer '{self.name}' (Hashing) expects strings or integers in a rectangular array. "
                            f"Received: {type(inputs).__name__} that NumPy cannot convert ({e})") from None
        return array

    def _unique(self, values: np.ndarray):
        """The distinct values (a list) and each element's index into it."""
        flat = values.reshape(-1)
        if flat.dtype.kind in "biuf":
            uniq, inverse = np.unique(flat, return_inverse=True)
            return uniq.tolist(), inverse.reshape(-1)
        index = {}
        items = flat.tolist()
        try:
            inverse = np.fromiter((index.setdefault(v, len(index)) for v in items), dtype=np.int64, count=flat.size)
        except TypeError:  # an unhashable element (a dict, a list): name it, as for any element it cannot hash
            for v in items:
                self._as_bytes(v, flat.dtype.kind)
            raise
        return list(index), inverse

    def _as_bytes(self, value, kind: str) -> bytes:
        """The bytes TensorFlow hashes for one value: UTF-8 text, or the decimal text of a number."""
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, (bool, np.bool_)):
            return b"true" if value else b"false"
        if isinstance(value, (int, np.integer)):
            return str(int(value)).encode()
        if isinstance(value, (float, np.floating)) and kind == "f":
            return str(int(value)).encode()  # tf.cast(float, int64): truncated toward zero
        raise TypeError(f"Layer '{self.name}' (Hashing) hashes strings, bytes or integers. Received: an element "
                        f"{value!r} of type {type(value).__name__}")

    def _mask_of(self, uniq: list, kind: str) -> np.ndarray:
        """Which distinct values equal ``mask_value``."""
        mask_value = self.mask_value
        text_mask = isinstance(mask_value, (str, bytes))
        if kind in "biuf":
            if text_mask:
                raise TypeError(f"Layer '{self.name}' (Hashing): mask_value={mask_value!r} is text but the inputs "
                                f"are numbers. Received: inputs of dtype kind {kind!r}")
            return np.asarray(uniq) == mask_value
        key = mask_value.encode("utf-8") if isinstance(mask_value, str) else mask_value
        return np.array([(v.encode("utf-8") if isinstance(v, str) else v) == key for v in uniq], dtype=bool)

    def _hash_values_to_bins(self, values: np.ndarray) -> np.ndarray:
        """The bin of every element of ``values`` (int64, same shape)."""
        kind = values.dtype.kind
        if kind == "f" and not np.all(np.isfinite(values)):
            raise ValueError(f"Layer '{self.name}' (Hashing) hashes floats as the integers they truncate to; NaN "
                             "and infinity have none. Received: inputs with non-finite values")
        if kind not in "biufUSO":
            raise TypeError(f"Layer '{self.name}' (Hashing) hashes strings or integers. Received: an array of "
                            f"dtype {values.dtype}")
        uniq, inverse = self._unique(values)
        data = [self._as_bytes(v, kind) for v in uniq]
        bins = self.num_bins
        masked = self.mask_value is not None and bins > 1
        if masked:
            bins -= 1
        hashes = siphash24(data, self.salt) if self.strong_hash else fingerprint64(data)
        out = (hashes % np.uint64(bins)).astype(np.int64)
        if masked:
            out = np.where(self._mask_of(uniq, kind), 0, out + 1)
        return out[inverse].reshape(values.shape)

    # ------------------------------------------------------------------ calling

    def call(self, inputs):
        values = np.asarray(inputs)
        dtype = np.dtype(self.compute_dtype)
        if self.output_mode == "one_hot" and values.ndim and values.shape[-1] == 1:
            values = values[..., 0]
        bins = self._hash_values_to_bins(values)
        if self.output_mode == "int":
            return bins.astype(dtype)
        if self.output_mode == "one_hot":
            return (bins[..., None] == np.arange(self.num_bins)).astype(dtype)
        if bins.ndim > 2:
            raise ValueError(f"Layer '{self.name}' (Hashing): output_mode={self.output_mode!r} encodes the last "
                             "axis of inputs of rank 1 or 2 (a sample or a batch of samples), as TensorFlow's "
                             f"bincount does. Received: inputs of shape {values.shape}")
        samples = bins.reshape(-1, bins.shape[-1] if bins.ndim else 1)
        counts = np.zeros((samples.shape[0], self.num_bins), dtype=np.int64)
        np.add.at(counts, (np.arange(samples.shape[0])[:, None], samples), 1)
        if self.output_mode == "multi_hot":
            counts = np.minimum(counts, 1)
        return counts.reshape(bins.shape[:-1] + (self.num_bins,)).astype(dtype)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if self.output_mode == "int":
            return shape
        if self.output_mode == "one_hot":
            return (shape[:-1] if shape and shape[-1] == 1 else shape) + (self.num_bins,)
        return shape[:-1] + (self.num_bins,)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"num_bins": self.num_bins, "salt": self.salt, "mask_value": self.mask_value,
                       "output_mode": self.output_mode, "sparse": self.sparse})
        return config


__all__ = ["Hashing"]
