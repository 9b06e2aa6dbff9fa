"""``IntegerLookup``: integers to indices through a vocabulary (and back with ``invert=True``).

The default ``oov_token`` is -1, the mask token (when set) an integer too; unknown integers go to OOV
index ``token % num_oov_indices`` (``oov_method="floormod"``) or by FarmHash64 of their decimal text
(``"farmhash"``), as in Keras.
"""

from __future__ import annotations

from lamina.layers.index_lookup import IndexLookup, refuse_sparse


class IntegerLookup(IndexLookup):
    """Maps integers to contiguous indices from a vocabulary (``vocabulary=`` or ``adapt``); see Keras's
    ``keras.layers.IntegerLookup`` for the arguments. ``sparse=True`` is refused (no sparse tensors)."""

    def __init__(self, max_tokens=None, num_oov_indices=1, mask_token=None, oov_token=-1, vocabulary=None,
                 vocabulary_dtype="int64", idf_weights=None, invert=False, output_mode="int", sparse=False,
                 pad_to_max_tokens=False, oov_method="floormod", salt=None, name=None, **kwargs):
        if max_tokens is not None and max_tokens <= 1:
            raise ValueError("If `max_tokens` is set for `IntegerLookup`, it must be greater than 1. "
                             f"Received: max_tokens={max_tokens}")
        if num_oov_indices < 0:
            raise ValueError("The value of `num_oov_indices` argument for `IntegerLookup` must >= 0. "
                             f"Received: num_oov_indices={num_oov_indices}")
        refuse_sparse("IntegerLookup", sparse)
        if vocabulary_dtype != "int64":
            raise ValueError("Only `vocabulary_dtype='int64'` is supported at this time. "
                             f"Received: vocabulary_dtype={vocabulary_dtype}")
        super().__init__(max_tokens=max_tokens, num_oov_indices=num_oov_indices, mask_token=mask_token,
                         oov_token=oov_token, vocabulary=vocabulary, vocabulary_dtype=vocabulary_dtype,
                         idf_weights=idf_weights, invert=invert, output_mode=output_mode, sparse=sparse,
                         pad_to_max_tokens=pad_to_max_tokens, oov_method=oov_method, salt=salt, name=name, **kwargs)

    def get_config(self) -> dict:
        config = super().get_config()
        for key in ("oov_token", "mask_token"):
            if config[key] is not None:
                config[key] = int(config[key])
        if config["vocabulary"] is not None:
            config["vocabulary"] = [int(v) for v in config["vocabulary"]]
        return config
