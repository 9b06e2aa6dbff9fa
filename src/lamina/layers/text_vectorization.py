"""``TextVectorization``: strings → standardize → split → n-grams → vocabulary indices (or multi-hot,
counts, TF-IDF), as Keras's layer, on NumPy alone.

The vocabulary lives in a ``StringLookup`` (``mask_token=""``: index 0 pads, 1 is ``[UNK]``), saved in the
``.keras`` file as Keras saves it (``vocabulary.txt`` under the layer's asset folder and its lookup's).
``output_mode="int"`` pads every row with 0 to ``output_sequence_length`` (or to the longest row) and cuts
longer ones (``ragged=True`` is refused, as Keras refuses it off TensorFlow: no ragged tensors). A callable
``standardize`` receives a NumPy array of ``str`` (as Keras gives it on non-TensorFlow backends) and a
callable ``split`` a 1-D one; each returns strings (a split: one list of tokens per string).
"""

from __future__ import annotations

import numpy as np

from lamina.layers import text_standardize as text
from lamina.layers.index_lookup import (
    adapt_batches,
    check_choice,
    plain,
    refuse_sparse,
    standard_output_mode,
    to_text_array,
)
from lamina.layers.keras_tensor import KerasTensor
from lamina.layers.layer import Layer
from lamina.layers.string_lookup import StringLookup
from lamina.saving.object_config import deserialize_object, serialize_value

_STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation")
_SPLIT = ("whitespace", "character")


def _check_callable_choice(argument: str, value, allowed) -> None:
    if value is None or callable(value):
        return
    check_choice("TextVectorization", argument, value, allowed)


class TextVectorization(Layer):
    """Maps text to integer sequences or to per-sample vectors; see Keras's ``keras.layers.TextVectorization``.

    ``sparse=True`` and ``ragged=True`` are refused (no sparse or ragged tensors, as on Keras's torch backend).
    """

    _accepts_text = True  # a model starting with it takes text arrays (Layer._takes_text)
    _tf_data_inputs = "as_is"  # runs inside tf.data on TensorFlow tensors (layers.tf_data_bridge)

    def __init__(self, max_tokens=None, standardize="lower_and_strip_punctuation", split="whitespace", ngrams=None,
                 output_mode="int", output_sequence_length=None, pad_to_max_tokens=False, vocabulary=None,
                 idf_weights=None, sparse=False, ragged=False, encoding="utf-8", name=None, **kwargs):
        refuse_sparse("TextVectorization", sparse)
        _check_callable_choice("standardize", standardize, _STANDARDIZE)
        _check_callable_choice("split", split, _SPLIT)
        output_mode = standard_output_mode("TextVectorization", output_mode)
        if not (ngrams is None or isinstance(ngrams, int)
                or isinstance(ngrams, tuple) and all(isinstance(item, int) for item in ngrams)):
            raise ValueError(f"`ngrams` must be None, an integer, or a tuple of integers. Received: ngrams={ngrams}")
        if output_mode == "int" and not (output_sequence_length is None or isinstance(output_sequence_length, int)):
            raise ValueError("`output_sequence_length` must be either None or an integer when `output_mode` is "
                             f"'int'. Received: output_sequence_length={output_sequence_length}")
        if output_mode != "int" and output_sequence_length is not None:
            raise ValueError("`output_sequence_length` must not be set if `output_mode` is not 'int'. "
                             f"Received output_sequence_length={output_sequence_length}.")
        if ragged and output_mode != "int":
            raise ValueError("`ragged` must not be true if `output_mode` is not `'int'`. "
                             f"Received: ragged={ragged} and output_mode={output_mode}")
        if ragged:
            raise ValueError("TextVectorization: `ragged=True` is not supported with lamina (NumPy arrays only, no "
                             "ragged tensors; Keras allows it only on the TensorFlow backend). Pad the rows with "
                             f"`output_sequence_length` instead. Received: ragged={ragged}")
        self._max_tokens = max_tokens
        self._standardize = standardize
        self._split = split
        self._ngrams_arg = ngrams
        self._ngrams = tuple(range(1, ngrams + 1)) if isinstance(ngrams, int) else ngrams
        self._ragged = ragged
        self._output_mode = output_mode
        self._output_sequence_length = output_sequence_length
        self._encoding = encoding
        self._has_input_vocabulary = kwargs.pop("has_input_vocabulary", vocabulary is not None)
        vocabulary_size = kwargs.pop("vocabulary_size", None)
        super().__init__(name=name, **kwargs)
        self._lookup_layer = StringLookup(
            max_tokens=max_tokens, vocabulary=vocabulary, idf_weights=idf_weights,
            pad_to_max_tokens=pad_to_max_tokens, mask_token="", output_mode=output_mode, sparse=sparse,
            has_input_vocabulary=self._has_input_vocabulary, encoding=encoding, vocabulary_size=vocabulary_size)
        self.built = True

    # ------------------------------------------------------------------ vocabulary

    def adapt(self, data, batch_size=None, steps=None) -> None:
        """Learns the vocabulary from texts: an array or list of strings, or an iterable of such batches
        (a ``PyDataset``, a generator, a ``tf.data.Dataset``)."""
        def whole(data):
            array = to_text_array(data, self._encoding, "TextVectorization")
            self.update_state(array[:, None] if array.ndim == 1 else array)

        adapt_batches(self, data, steps, whole)

    def update_state(self, data) -> None:
        self._lookup_layer.update_state(self._preprocess(data))

    def finalize_state(self) -> None:
        self._lookup_layer.finalize_state()

    def reset_state(self) -> None:
        self._lookup_layer.reset_state()

    def get_vocabulary(self, include_special_tokens: bool = True) -> list:
        return self._lookup_layer.get_vocabulary(include_special_tokens)

    def vocabulary_size(self) -> int:
        return self._lookup_layer.vocabulary_size()

    def set_vocabulary(self, vocabulary, idf_weights=None) -> None:
        """Sets the vocabulary (a list or a file path) and, for ``tf_idf``, the idf weights."""
        self._lookup_layer.set_vocabulary(vocabulary, idf_weights=idf_weights)

    # ------------------------------------------------------------------ the text steps

    def _standardized(self, inputs) -> np.ndarray:
        array = to_text_array(inputs, self._encoding, "TextVectorization")
        if callable(self._standardize):
            return to_text_array(self._standardize(array.astype(str)), self._encoding, "TextVectorization")
        steps = {"lower": (text.lower,), "strip_punctuation": (text.strip_punctuation,),
                 "lower_and_strip_punctuation": (text.lower, text.strip_punctuation)}.get(self._standardize, ())
        if not steps:
            return array
        flat = array.ravel().tolist()
        for step in steps:
            flat = [step(s) for s in flat]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(array.shape)

    def _split_rows(self, array: np.ndarray):
        """The split tokens: one list per string (a single list for a scalar string)."""
        if array.ndim > 1:
            if array.shape[-1] != 1:
                raise ValueError("When using `TextVectorization` to tokenize strings, the input rank must be 1 or "
                                 f"the last shape dimension must be 1. Received: inputs.shape={array.shape} "
                                 f"with rank={array.ndim}")
            array = array[..., 0]
        if array.ndim > 1:  # Keras on TensorFlow makes a ragged tensor of rank 3 here; lamina has none
            raise ValueError("TextVectorization splits a batch of texts: inputs of shape (batch,) or (batch, 1). "
                             f"Received: inputs.shape={array.shape + (1,)}")
        if callable(self._split):
            pieces = self._split(array.astype(str))
            return [to_text_array(row, self._encoding, "TextVectorization").ravel().tolist()
                    for row in (plain(pieces) if array.ndim else [plain(pieces)])]
        fn = text.split_whitespace if self._split == "whitespace" else text.split_characters
        if array.ndim == 0:
            return [fn(array.item())]
        return [fn(s) for s in array.reshape(-1).tolist()]

    def _preprocess(self, inputs):
        """Standardized (and split, n-grammed) tokens: an object array when not split, else a list of rows."""
        array = self._standardized(inputs)
        if self._split is None:
            if self._ngrams is not None:
                rows = array.reshape(-1, array.shape[-1] if array.ndim else 1).tolist()
                return [np.array(text.ngrams(r, self._ngrams), dtype=object) for r in rows]
            return array
        rows = self._split_rows(array)
        if self._ngrams is not None:
            rows = [text.ngrams(r, self._ngrams) for r in rows]
        out = []
        for r in rows:
            row = np.empty(len(r), dtype=object)
            row[:] = r
            out.append(row)
        return out

    # ------------------------------------------------------------------ call

    def _convert_inputs(self, inputs):
        return inputs  # strings: converted by call (Keras: _convert_input_args=False)

    def call(self, inputs):
        inputs = plain(inputs)
        scalar = np.ndim(inputs) == 0  # one text: one row of tokens, returned without a batch axis
        tokens = self._preprocess(inputs)
        lookup = self._lookup_layer
        lookup._ensure_known_vocab_size()
        if not isinstance(tokens, list):  # not split: a dense array of tokens
            return self._fit_length(lookup._call_dense(lookup._tokens_array(tokens)))
        if self._output_mode == "int":
            rows = [lookup._call_dense(row) for row in tokens]
            if scalar:
                return self._fit_length(rows[0])
            return self._pad_rows(rows)
        depth = lookup.max_tokens if lookup.pad_to_max_tokens else lookup._frozen_vocab_size
        if self._output_mode == "one_hot":
            lengths = {len(r) for r in tokens}
            if len(lengths) > 1:
                raise ValueError("TextVectorization: `output_mode='one_hot'` encodes one token per element, so the "
                                 "split texts must all have the same number of tokens (use 'multi_hot' or 'count' "
                                 f"for texts). Received: texts of {sorted(lengths)} tokens")
            return lookup._encode(lookup._lookup(np.stack(tokens) if tokens else np.empty((0, 0), object)), depth)
        encoded = [lookup._encode(lookup._lookup(row), depth) for row in tokens]
        if scalar:
            return encoded[0]
        return np.stack(encoded) if encoded else np.zeros((0, depth), dtype=lookup._output_dtype())

    def _fit_length(self, indices: np.ndarray) -> np.ndarray:
        """A dense result cut or zero-padded on its last axis to ``output_sequence_length``."""
        length = self._output_sequence_length
        if self._output_mode != "int" or length is None:
            return indices
        if indices.ndim == 0:
            return indices
        indices = indices[..., :length]
        pad = [(0, 0)] * (indices.ndim - 1) + [(0, length - indices.shape[-1])]
        return np.pad(indices, pad)

    def _pad_rows(self, rows: list):
        length = self._output_sequence_length
        if length is not None:
            rows = [r[:length] for r in rows]
        width = length if length is not None else max((len(r) for r in rows), default=0)
        out = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            out[i, :len(r)] = r
        return out

    # ------------------------------------------------------------------ shapes

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if self._output_mode == "int":
            return (input_shape[0] if input_shape else None, self._output_sequence_length)
        if self._split is None:
            if len(input_shape) <= 1:
                input_shape = input_shape + (1,)
        else:  # split: a trailing axis of 1 is squeezed before the tokens make a new (ragged) axis
            if len(input_shape) > 1 and input_shape[-1] == 1:
                input_shape = input_shape[:-1]
            input_shape = input_shape + (None,)
        return self._lookup_layer.compute_output_shape(input_shape)

    def _output_dtype(self) -> str:
        return self._lookup_layer._output_dtype()

    def compute_output_spec(self, inputs):
        return KerasTensor(self.compute_output_shape(inputs.shape), dtype=self._output_dtype())

    # ------------------------------------------------------------------ config and files

    def get_config(self) -> dict:
        lookup = self._lookup_layer
        config = super().get_config()
        config.update({
            "max_tokens": lookup.max_tokens,
            "standardize": serialize_value(self._standardize) if callable(self._standardize) else self._standardize,
            "split": serialize_value(self._split) if callable(self._split) else self._split,
            "ngrams": self._ngrams_arg, "output_mode": self._output_mode,
            "output_sequence_length": self._output_sequence_length, "pad_to_max_tokens": lookup.pad_to_max_tokens,
            "sparse": lookup.sparse, "ragged": self._ragged,
            "vocabulary": serialize_value(plain(lookup.input_vocabulary)) if lookup.input_vocabulary is not None
            else None,
            "idf_weights": serialize_value(plain(lookup.input_idf_weights)) if lookup.input_idf_weights is not None
            else None,
            "encoding": self._encoding, "vocabulary_size": self.vocabulary_size(),
        })
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("standardize", "split"):
            if config.get(key) is not None and not isinstance(config[key], str):
                config[key] = deserialize_object(config[key], key, {}, custom_objects)
        if isinstance(config.get("ngrams"), list):
            config["ngrams"] = tuple(config["ngrams"])
        return cls(**config)

    def save_own_variables(self, store) -> None:
        self._lookup_layer.save_own_variables(store)

    def load_own_variables(self, store) -> None:
        self._lookup_layer.load_own_variables(store)

    def save_assets(self, dir_path: str) -> None:
        self._lookup_layer.save_assets(dir_path)

    def load_assets(self, dir_path) -> None:
        self._lookup_layer.load_assets(dir_path)
