"""``StringLookup``: strings to indices through a vocabulary (and back with ``invert=True``).

Tokens are Python ``str``: ``bytes`` inputs are decoded with ``encoding``, as TensorFlow's string tensors are
read by Keras. Outputs are NumPy arrays (see :mod:`lamina.layers.index_lookup`); inverted lookups are object
arrays of ``str`` with the input's shape.
"""

from __future__ import annotations

from lamina.layers.index_lookup import IndexLookup, refuse_sparse


class StringLookup(IndexLookup):
    """Maps strings to integer indices from a vocabulary (``vocabulary=`` or ``adapt``); see Keras's
    ``keras.layers.StringLookup`` for the arguments. ``sparse=True`` is refused (no sparse tensors)."""

    def __init__(self, max_tokens=None, num_oov_indices=1, mask_token=None, oov_token="[UNK]", vocabulary=None,
                 idf_weights=None, invert=False, output_mode="int", pad_to_max_tokens=False, sparse=False,
                 encoding="utf-8", name=None, salt=None, **kwargs):
        refuse_sparse("StringLookup", sparse)
        self.encoding = encoding
        kwargs.pop("vocabulary_dtype", None)  # strings only: Keras's config leaves it out
        super().__init__(max_tokens=max_tokens, num_oov_indices=num_oov_indices, mask_token=mask_token,
                         oov_token=oov_token, vocabulary=vocabulary, idf_weights=idf_weights, invert=invert,
                         output_mode=output_mode, pad_to_max_tokens=pad_to_max_tokens, sparse=sparse, name=name,
                         salt=salt, vocabulary_dtype="string", **kwargs)

    def get_config(self) -> dict:
        config = super().get_config()
        del config["vocabulary_dtype"]
        config["encoding"] = self.encoding
        return config
