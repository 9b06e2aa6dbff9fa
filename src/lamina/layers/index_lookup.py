"""``IndexLookup``: the vocabulary table shared by ``StringLookup`` and ``IntegerLookup``.

Indices, as Keras lays them out: ``[mask] + [oov] * num_oov_indices + tokens``, the mask slot only when
``mask_token`` is set and ``output_mode="int"``. ``adapt`` counts tokens, orders them by count (high to
low), ties by the token itself (high to low, as Keras's ``np.lexsort(...)[::-1]``), and keeps the first
``max_tokens - len(special tokens)``. With ``output_mode="tf_idf"`` it also counts documents:
``idf = log(1 + num_documents / (1 + document_count))``, the OOV slots getting the mean idf.

lamina has no string tensors: inputs are Python lists, NumPy ``str``/``bytes``/object arrays (or anything
with a ``.numpy()``); a ragged nested list is looked up row by row into a list of arrays. Outputs are
NumPy arrays: int64 indices; floatx (float32) for ``one_hot``/``multi_hot``/``count``/``tf_idf``, the dtype
Keras's ``compute_output_spec`` declares (its eager lookups on torch return int64 counts of equal values).
"""

from __future__ import annotations

import collections
import os

import numpy as np

from lamina import backend
from lamina.layers.keras_tensor import KerasTensor
from lamina.layers.layer import Layer
from lamina.layers.string_hash import fingerprint64, siphash24

OUTPUT_MODES = ("int", "one_hot", "multi_hot", "count", "tf_idf")
_DROPPED = np.iinfo(np.int64).max  # a mask token's index outside "int" mode: counted nowhere


def check_choice(layer: str, argument: str, value, allowed) -> None:
    """Keras's ``validate_string_arg`` message for a string argument outside ``allowed``."""
    if value not in allowed:
        raise ValueError(f"Unknown value for `{argument}` argument of layer {layer}. "
                         f"Allowed values are: {list(allowed)}. Received: {value}")


def standard_output_mode(layer: str, output_mode):
    """Keras's old names (``"binary"``, ``"tf-idf"``) mapped to today's, then checked."""
    output_mode = {"binary": "multi_hot", "tf-idf": "tf_idf"}.get(output_mode, output_mode)
    check_choice(layer, "output_mode", output_mode, OUTPUT_MODES)
    return output_mode


def refuse_sparse(layer: str, sparse) -> None:
    if sparse:
        raise ValueError(f"{layer}: `sparse=True` is not supported with lamina (NumPy arrays only, no sparse "
                         f"tensors; Keras allows it only on the TensorFlow backend). Received: sparse={sparse}")


def plain(x):
    """A framework tensor (anything with ``.numpy()``: TensorFlow, torch) as a NumPy array; others as given."""
    if not isinstance(x, (np.ndarray, list, tuple, str, bytes)) and hasattr(x, "numpy"):
        return x.numpy()
    return x


def adapt_batches(layer, data, steps, whole) -> None:
    """Keras's ``adapt`` loop: ``layer``'s state reset; ``whole(data)`` for an array, a list or a string, else each
    batch of the iterable ``data`` (at most ``steps``) through ``layer.update_state``; the state finalized."""
    layer.reset_state()
    data = plain(data)
    if isinstance(data, (list, tuple, np.ndarray, str, bytes)):
        whole(data)
    elif hasattr(data, "__iter__"):
        for i, batch in enumerate(data):
            if steps is not None and i >= steps:
                break
            layer.update_state(batch)
    else:
        raise ValueError(f"{type(layer).__name__}.adapt: `data` must be an array, a list or an iterable of batches. "
                         f"Received: data of type {type(data).__name__}")
    layer.finalize_state()


def to_text_array(data, encoding: str = "utf-8", layer: str = "StringLookup") -> np.ndarray:
    """``data`` (a str, list, NumPy str/bytes/object array, or a tensor with ``.numpy()``) as an object array
    of ``str`` with the same shape; ``bytes`` are decoded with ``encoding``."""
    data = plain(data)
    array = data if isinstance(data, np.ndarray) else np.asarray(data, dtype=object)
    if array.dtype.kind == "U":
        return array.astype(object)
    if array.dtype.kind not in "SO":
        raise TypeError(f"{layer} expects strings (a list or a NumPy array of str or bytes). "
                        f"Received: inputs of dtype {array.dtype}")
    flat = array.ravel().tolist()
    for i, item in enumerate(flat):
        if isinstance(item, bytes):
            flat[i] = item.decode(encoding)
        elif not isinstance(item, str):
            raise TypeError(f"{layer} expects strings (a list or a NumPy array of str or bytes). "
                            f"Received: an element {item!r} of type {type(item).__name__}")
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(array.shape)


def to_int_array(data, layer: str = "IntegerLookup") -> np.ndarray:
    """``data`` (a list, a NumPy integer array, an object array of ints) as an int64 array. Floats holding
    whole numbers (a model's float input) are accepted while the float type holds every integer up to them
    (2**24 in float32, 2**53 in float64); beyond, an id may already have been rounded, so they are refused."""
    array = np.asarray(plain(data))
    if array.dtype == object:
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in array.ravel().tolist())
    elif array.dtype.kind == "f" and array.dtype.itemsize in (4, 8):
        exact = 2.0 ** (np.finfo(array.dtype).nmant + 1)  # every integer up to it is exact
        ok = bool(np.all(np.isfinite(array)) and np.all(array == np.round(array)) and np.all(np.abs(array) <= exact))
        if not ok:
            raise TypeError(f"{layer} expects integers; float inputs must hold whole numbers no larger than "
                            f"{int(exact)} (beyond, {array.dtype} cannot hold every integer): pass an int64 array. "
                            f"Received: inputs of dtype {array.dtype}")
    else:
        ok = array.dtype.kind in "iu"
    if not ok:
        raise TypeError(f"{layer} expects integers (a list or a NumPy array of ints). "
                        f"Received: inputs of dtype {array.dtype}")
    return array.astype(np.int64)


def _listify(x):
    """A vocabulary or idf weights as a config value (plain lists), as Keras's ``listify_tensors``."""
    x = plain(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x


def _one_hot(indices: np.ndarray, depth: int) -> np.ndarray:
    """int64 one-hot rows; an index outside ``[0, depth)`` (a dropped mask token) gives a row of zeros."""
    return (indices[..., None] == np.arange(depth)).astype(np.int64)


class IndexLookup(Layer):
    """Maps tokens to indices through a vocabulary (or indices back to tokens with ``invert=True``).

    The base of ``StringLookup`` and ``IntegerLookup`` (Keras keeps it in ``keras.src.layers``); tokens are
    strings for ``vocabulary_dtype="string"``, integers otherwise.
    """

    _accepts_text = True  # a model starting with it takes text arrays (Layer._takes_text)
    _tf_data_inputs = "as_is"  # runs inside tf.data on TensorFlow tensors (layers.tf_data_bridge)

    def __init__(self, max_tokens, num_oov_indices, mask_token, oov_token, vocabulary_dtype, vocabulary=None,
                 idf_weights=None, invert=False, output_mode="int", sparse=False, pad_to_max_tokens=False,
                 oov_method="floormod", name=None, salt=None, **kwargs):
        layer = type(self).__name__
        if max_tokens is not None and max_tokens <= 1:
            raise ValueError(f"If set, `max_tokens` must be greater than 1. Received: max_tokens={max_tokens}")
        if pad_to_max_tokens and max_tokens is None:
            raise ValueError(f"If pad_to_max_tokens is True, must set `max_tokens`. Received: max_tokens={max_tokens}")
        if num_oov_indices < 0:
            raise ValueError("`num_oov_indices` must be greater than or equal to 0. "
                             f"Received: num_oov_indices={num_oov_indices}")
        check_choice(layer, "oov_method", oov_method, ("floormod", "farmhash"))
        salt = self._check_salt(salt, oov_method, vocabulary_dtype)
        output_mode = standard_output_mode(layer, output_mode)
        if invert and output_mode != "int":
            raise ValueError("`output_mode` must be `'int'` when `invert` is true. "
                             f"Received: output_mode={output_mode}")
        if sparse and output_mode == "int":
            raise ValueError("`sparse` may only be true if `output_mode` is `'one_hot'`, `'multi_hot'`, `'count'` "
                             f"or `'tf_idf'`. Received: sparse={sparse} and output_mode={output_mode}")
        refuse_sparse(layer, sparse)
        if idf_weights is not None and output_mode != "tf_idf":
            raise ValueError("`idf_weights` should only be set if `output_mode` is `'tf_idf'`. "
                             f"Received: idf_weights={idf_weights} and output_mode={output_mode}")
        frozen_size = kwargs.pop("vocabulary_size", None)
        has_input_vocabulary = kwargs.pop("has_input_vocabulary", vocabulary is not None)
        kwargs.pop("trainable", None)
        kwargs.pop("dtype", None)
        if kwargs:
            raise ValueError(f"Unrecognized keyword argument(s): {kwargs}")
        super().__init__(name=name)
        self._token_kind = "string" if vocabulary_dtype in ("string", "str") else "int64"
        self.invert = invert
        self.max_tokens = max_tokens
        self.num_oov_indices = num_oov_indices
        self.mask_token = mask_token
        self.oov_token = oov_token
        self.output_mode = output_mode
        self.sparse = sparse
        self.pad_to_max_tokens = pad_to_max_tokens
        self.vocabulary_dtype = vocabulary_dtype
        self.oov_method = oov_method
        self.salt = salt
        self._frozen_vocab_size = frozen_size
        # A vocabulary file is not kept in the config: it goes into the .keras file as an asset.
        self.input_vocabulary = vocabulary if not isinstance(vocabulary, (str, os.PathLike)) else None
        self.input_idf_weights = idf_weights
        self._has_input_vocabulary = has_input_vocabulary
        self._tokens: list = []
        self._index: dict = {}
        self.idf_weights = None
        if output_mode == "tf_idf":
            if has_input_vocabulary and idf_weights is None:
                raise ValueError("When specifying the `vocabulary` argument, in TF-IDF output mode, the "
                                 "`idf_weights` argument must also be provided.")
            if idf_weights is not None:
                self.idf_weights = np.asarray(plain(idf_weights), dtype=backend.floatx())
        if vocabulary is not None:
            self.set_vocabulary(vocabulary, idf_weights)
        self.reset_state()
        self.built = True  # nothing to build: the table is the state

    def _check_salt(self, salt, oov_method, vocabulary_dtype):
        if salt is None:
            return None
        if vocabulary_dtype == "int64" and oov_method != "farmhash":
            raise ValueError(f"`salt` can only be used when `oov_method='farmhash'`. Received: oov_method={oov_method}")
        if isinstance(salt, (tuple, list)) and len(salt) == 2:
            return list(salt)
        if isinstance(salt, int):
            return [salt, salt]
        raise ValueError(f"The `salt` argument for `IndexLookup` can only be a tuple of 2 integers, or a single "
                         f"integer. Received: salt={salt}.")

    # ------------------------------------------------------------------ tokens

    def _tokens_array(self, data) -> np.ndarray:
        """``data`` (rectangular) as an object array of tokens (str) or an int64 array."""
        if self._token_kind == "string":
            return to_text_array(data, getattr(self, "encoding", "utf-8"), type(self).__name__)
        return to_int_array(data, type(self).__name__)

    def _token_from_line(self, line: str):
        return line if self._token_kind == "string" else int(line)

    # ------------------------------------------------------------------ layout

    def _oov_start_index(self) -> int:
        return 1 if self.mask_token is not None and self.output_mode == "int" else 0

    def _token_start_index(self) -> int:
        return self._oov_start_index() + self.num_oov_indices

    def vocabulary_size(self) -> int:
        """The size of the vocabulary, mask and OOV indices included."""
        return len(self._tokens) + self._token_start_index()

    def get_vocabulary(self, include_special_tokens: bool = True) -> list:
        """The vocabulary; with the special tokens a term's position is its index."""
        vocab = [self.oov_token] * self._token_start_index() + list(self._tokens)
        if self.mask_token is not None and self.output_mode == "int":
            vocab[0] = self.mask_token
        if not include_special_tokens:
            vocab = vocab[self._token_start_index():]
        return vocab

    # ------------------------------------------------------------------ setting the vocabulary

    def set_vocabulary(self, vocabulary, idf_weights=None) -> None:
        """Sets the vocabulary (a list, tuple, 1-D array, or the path of a file with one term per line) and,
        for ``output_mode="tf_idf"``, the idf weights (one per term)."""
        if self.output_mode == "tf_idf":
            if idf_weights is None:
                raise ValueError("`idf_weights` must be set if output_mode is 'tf_idf'.")
        elif idf_weights is not None:
            raise ValueError("`idf_weights` should only be set if output_mode is `'tf_idf'`. "
                             f"Received: output_mode={self.output_mode} and idf_weights={idf_weights}")
        if isinstance(vocabulary, (str, os.PathLike)):
            self._set_vocabulary_file(os.fspath(vocabulary))
            return
        vocabulary = plain(vocabulary)
        tokens = self._tokens_array(vocabulary).ravel().tolist()
        if not tokens:
            raise ValueError(f"Cannot set an empty vocabulary. Received: vocabulary={vocabulary}")
        special = [self.mask_token] * self._oov_start_index() + [self.oov_token] * self.num_oov_indices
        found_special = tokens[:len(special)] == special
        body = tokens[len(special):] if found_special else tokens
        self._check_tokens(body, tokens, special)
        self._set_tokens(body)
        if self.output_mode == "tf_idf":
            self._set_idf_weights(idf_weights, len(tokens), found_special)

    def _check_tokens(self, body: list, tokens: list, special: list) -> None:
        repeated = [t for t, c in collections.Counter(body).items() if c > 1]
        if repeated:
            raise ValueError("The passed vocabulary has at least one repeated term. Please uniquify your dataset. "
                             f"The repeated terms are: {repeated}")
        for what, token, needed in (("mask_token", self.mask_token, True), ("oov_token", self.oov_token, self.invert)):
            if token is not None and needed and token in body:
                at = max(i for i, t in enumerate(tokens) if t == token)
                raise ValueError("Found reserved {0} token at unexpected location in `vocabulary`. Note that "
                                 "passed `vocabulary` does not need to include the OOV and mask tokens. Either remove "
                                 "all mask and OOV tokens, or include them only at the start of the vocabulary in "
                                 "precisely "
                                 f"this order: {special}. Received: {what}={token} at vocabulary index [{at}]"
                                 .format("mask" if what == "mask_token" else "OOV"))
        size = self._token_start_index() + len(body)
        if self.max_tokens is not None and size > self.max_tokens:
            raise ValueError("Attempted to set a vocabulary larger than the maximum vocab size. Received vocabulary "
                             f"size is {size}; `max_tokens` is {self.max_tokens}.")

    def _set_vocabulary_file(self, path: str) -> None:
        if backend.safe_mode_override() is True:
            raise ValueError("Requested the loading of a vocabulary file outside of the model archive. This carries "
                             "a potential risk of loading arbitrary and sensitive files and thus it is disallowed by "
                             "default. If you trust the source of the artifact, you can override this error by "
                             "passing `safe_mode=False` to the loading function, or calling "
                             f"`keras.config.enable_unsafe_deserialization()`. Vocabulary file: '{path}'")
        if not os.path.isfile(path):
            raise ValueError(f"Vocabulary file {path} does not exist.")
        if self.output_mode == "tf_idf":
            raise ValueError("output_mode `'tf_idf'` does not support loading a vocabulary from file.")
        with open(path, encoding=getattr(self, "encoding", "utf-8")) as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the newline ending the last line starts no term
        try:
            tokens = [self._token_from_line(line) for line in lines]
        except ValueError:
            raise ValueError(f"{type(self).__name__}: vocabulary file {path} must hold one integer per line. "
                             f"Received: a line that is not an integer") from None
        self._check_tokens(tokens, tokens, [])
        self._set_tokens(tokens)

    def _set_tokens(self, tokens: list) -> None:
        self._tokens = list(tokens)
        start = self._token_start_index()
        self._index = {t: start + i for i, t in enumerate(self._tokens)}
        self._record_vocabulary_size()

    def _set_idf_weights(self, idf_weights, vocabulary_length: int, found_special: bool) -> None:
        weights = np.asarray(plain(idf_weights))
        if len(weights) != vocabulary_length:
            raise ValueError("`idf_weights` must be the same length as vocabulary. "
                             f"len(idf_weights) is {len(weights)}; len(vocabulary) is {vocabulary_length}")
        if weights.ndim != 1:
            raise ValueError(f"TF-IDF data must be a 1-index array. Received: type(idf_weights)={type(idf_weights)}")
        front = 0 if found_special else self._token_start_index()
        front_value = 0 if found_special else np.average(weights)
        back = self.max_tokens - front - len(weights) if self.pad_to_max_tokens and self.max_tokens else 0
        padded = np.pad(weights, (front, back), "constant", constant_values=(front_value, 0))
        self.idf_weights = padded.astype(backend.floatx())

    def _record_vocabulary_size(self) -> None:
        size = self.vocabulary_size()
        if self.output_mode != "int" and not self.pad_to_max_tokens and self._frozen_vocab_size is not None \
                and size != self._frozen_vocab_size:
            raise RuntimeError(f"When using `output_mode={self.output_mode}` and `pad_to_max_tokens=False`, the "
                               "vocabulary size cannot be changed after the layer is called. Old vocab size is "
                               f"{self._frozen_vocab_size}, new vocab size is {size}")
        self._frozen_vocab_size = size

    # ------------------------------------------------------------------ adapt

    def adapt(self, data, steps=None) -> None:
        """Learns the vocabulary (and the idf weights) from ``data``: an array or list of tokens (each element
        one document), or an iterable of such batches (a ``PyDataset``, a generator, a ``tf.data.Dataset``)."""
        def whole(data):
            rows = self._rows(data)
            if rows is None:  # rectangular: a rank-1 array holds one token per document
                array = self._tokens_array(data)
                self.update_state(array[:, None] if array.ndim == 1 else array)
            else:
                self.update_state(rows)

        adapt_batches(self, data, steps, whole)

    def _rows(self, data):
        """A ragged nested list as a list of 1-D token arrays; None when ``data`` is rectangular."""
        if isinstance(data, np.ndarray) and data.dtype != object:
            return None
        try:
            array = np.asarray(data)
        except ValueError:  # NumPy refuses inhomogeneous nesting
            array = None
        if array is not None and not (array.dtype == object and array.ndim and
                                      any(isinstance(x, (list, tuple, np.ndarray)) for x in array.flat)):
            return None
        return [self._tokens_array(row).ravel() for row in data]

    def reset_state(self) -> None:
        if self._has_input_vocabulary:
            return
        self._token_counts: collections.Counter = collections.Counter()
        self._document_counts: collections.Counter = collections.Counter()
        self._num_documents = 0

    def update_state(self, data) -> None:
        if self._has_input_vocabulary:
            raise ValueError(f"Cannot adapt layer '{self.name}' after setting a static vocabulary via `vocabulary` "
                             "argument or `set_vocabulary()` method.")
        documents = self._documents(plain(data))
        for doc in documents:
            tokens = doc.tolist()
            self._token_counts.update(tokens)
            if self.output_mode == "tf_idf":
                self._document_counts.update(set(tokens))
        if self.output_mode == "tf_idf":
            self._num_documents += len(documents)

    def _documents(self, data) -> list:
        """A batch as a list of 1-D token arrays, one per document (a rank-1 batch is one document)."""
        rows = self._rows(data) if isinstance(data, (list, tuple, np.ndarray)) else None
        if rows is not None:
            return rows
        array = self._tokens_array(data)
        if array.ndim <= 1:
            array = array.reshape(1, -1)
        return list(array.reshape(array.shape[0], -1))

    def finalize_state(self) -> None:
        if self._has_input_vocabulary or not self._token_counts:
            self._record_vocabulary_size()
            return
        counts = self._token_counts
        for special in (self.mask_token, self.oov_token):
            if special is not None:
                counts.pop(special, None)
        # Count high to low, ties broken by the token high to low (Keras sorts with np.lexsort, then reverses).
        tokens = sorted(counts, key=lambda t: (counts[t], t), reverse=True)
        if self.max_tokens:
            tokens = tokens[:self.max_tokens - self._token_start_index()]
        self._set_tokens(tokens)
        if self.output_mode == "tf_idf":
            doc_counts = np.array([self._document_counts[t] for t in tokens], dtype=np.float64)
            idf = np.log(1 + self._num_documents / (1 + doc_counts)).astype(backend.floatx())
            front = np.full(self._token_start_index(), np.mean(idf) if len(idf) else 0, dtype=idf.dtype)
            weights = np.concatenate([front, idf])
            if self.pad_to_max_tokens and self.max_tokens is not None:
                weights = np.pad(weights, (0, self.max_tokens - len(weights)))
            self.idf_weights = weights.astype(backend.floatx())
        self.reset_state()

    # ------------------------------------------------------------------ call

    def _convert_inputs(self, inputs):
        return inputs  # tokens are not numbers: call converts them itself (Keras: _convert_input_args=False)

    def call(self, inputs):
        self._ensure_known_vocab_size()
        inputs = plain(inputs)
        rows = self._rows(inputs) if isinstance(inputs, (list, tuple, np.ndarray)) else None
        if rows is not None:  # ragged: each row on its own (a list of arrays)
            return [self._call_dense(row) for row in rows]
        return self._call_dense(self._lookup_input_array(inputs))

    def _lookup_input_array(self, inputs) -> np.ndarray:
        if self.invert:
            array = np.asarray(inputs)
            if array.dtype.kind not in "iu":
                raise TypeError(f"{type(self).__name__} with `invert=True` maps integer indices back to tokens. "
                                f"Received: inputs of dtype {array.dtype}")
            return array.astype(np.int64)
        return self._tokens_array(inputs)

    def _call_dense(self, array: np.ndarray):
        if self.invert:
            return self._invert(array)
        lookups = self._lookup(array)
        if self.output_mode == "int":
            return lookups
        depth = self.max_tokens if self.pad_to_max_tokens else self._frozen_vocab_size
        return self._encode(lookups, depth)

    def _invert(self, indices: np.ndarray) -> np.ndarray:
        vocab = self.get_vocabulary()
        table = {i: t for i, t in enumerate(vocab) if i >= self._token_start_index()}
        if self.mask_token is not None:
            table[0] = self.mask_token
        flat = [table.get(i, self.oov_token) for i in indices.ravel().tolist()]
        out = np.empty(len(flat), dtype=object if self._token_kind == "string" else np.int64)
        out[:] = flat
        return out.reshape(indices.shape)

    def _lookup(self, array: np.ndarray) -> np.ndarray:
        flat = array.ravel().tolist()
        oov = -1 if self.num_oov_indices != 1 else self._oov_start_index()
        mask_value = 0 if self.output_mode == "int" else _DROPPED
        index, mask = self._index, self.mask_token
        found = np.fromiter(((mask_value if (mask is not None and t == mask) else index.get(t, oov)) for t in flat),
                            dtype=np.int64, count=len(flat)).reshape(array.shape)
        if self.num_oov_indices == 0:
            missing = found == -1
            if missing.any():
                raise ValueError(f"Layer '{self.name}': when `num_oov_indices=0` all inputs should be in vocabulary, "
                                 f"found OOV values {array[missing].tolist()}, consider setting `num_oov_indices=1`.")
        elif self.num_oov_indices > 1:
            missing = found == -1
            if missing.any():
                found[missing] = self._oov_buckets(array[missing]) + self._oov_start_index()
        return found

    def _oov_buckets(self, tokens: np.ndarray) -> np.ndarray:
        """The OOV index (0..num_oov_indices-1) of each unknown token: ``token % n`` for integers with the
        default ``oov_method``, else FarmHash64 (SipHash with a ``salt``) of its UTF-8 bytes ``% n``."""
        n = self.num_oov_indices
        if self._token_kind == "int64" and self.oov_method != "farmhash":
            return np.mod(tokens.astype(np.int64), n)
        data = [str(t).encode("utf-8") if not isinstance(t, bytes) else t for t in tokens.tolist()]
        if self.salt is not None:
            key = [int(k) & ((1 << 64) - 1) for k in self.salt]
            hashed = siphash24(data, key)
        else:
            hashed = fingerprint64(data)
        return (hashed % np.uint64(n)).astype(np.int64)

    def _encode(self, lookups: np.ndarray, depth: int):
        """one_hot / multi_hot / count / tf_idf from the indices, with Keras's rules: one_hot encodes each
        element (a last axis of 1 replaced); multi_hot and count reduce a rank-1 or rank-2 input over its last
        axis (a rank-1 input is one sample); above rank 2 Keras's count sums over axis 1, kept here."""
        if lookups.ndim == 0:
            lookups = lookups.reshape(1)
        if self.output_mode == "one_hot":
            if lookups.ndim > 1 and lookups.shape[-1] == 1:
                lookups = lookups[..., 0]
            return _one_hot(lookups, depth).astype(backend.floatx())
        if lookups.ndim <= 2:
            rows = lookups.reshape(1, -1) if lookups.ndim == 1 else lookups
            ok = (rows >= 0) & (rows < depth)
            flat = (np.arange(rows.shape[0])[:, None] * depth + rows)[ok]
            out = np.bincount(flat, minlength=rows.shape[0] * depth).reshape(rows.shape[0], depth).astype(np.int64)
            out = out[0] if lookups.ndim == 1 else out
            if self.output_mode == "multi_hot":
                out = np.minimum(out, 1)
        elif self.output_mode == "multi_hot":
            out = _one_hot(lookups, depth).max(axis=-2)
        else:
            out = _one_hot(lookups, depth).sum(axis=1)
        out = out.astype(backend.floatx())
        return out * self.idf_weights if self.output_mode == "tf_idf" else out

    def _ensure_known_vocab_size(self) -> None:
        if self.output_mode == "int" or self.pad_to_max_tokens:
            return
        if self._frozen_vocab_size is None:
            raise RuntimeError(f"When using `output_mode={self.output_mode}` and `pad_to_max_tokens=False`, you must "
                               "set the layer's vocabulary before calling it. Either pass a `vocabulary` argument to "
                               "the layer, or call `adapt` with some sample data.")

    # ------------------------------------------------------------------ shapes

    def compute_output_shape(self, input_shape):
        if self.output_mode == "int":
            return tuple(input_shape)
        depth = self.max_tokens if self.pad_to_max_tokens else self._frozen_vocab_size
        input_shape = tuple(input_shape)
        if self.output_mode == "one_hot":
            if len(input_shape) > 1 and input_shape[-1] == 1:
                return input_shape[:-1] + (depth,)
            return input_shape + (depth,)
        return input_shape[:-1] + (depth,)

    def _output_dtype(self) -> str:
        if self.invert:
            return self.vocabulary_dtype
        return "int64" if self.output_mode == "int" else backend.floatx()

    def compute_output_spec(self, inputs):
        return KerasTensor(self.compute_output_shape(inputs.shape), dtype=self._output_dtype())

    # ------------------------------------------------------------------ config and files

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "invert": self.invert, "max_tokens": self.max_tokens, "num_oov_indices": self.num_oov_indices,
            "oov_token": self.oov_token, "mask_token": self.mask_token, "output_mode": self.output_mode,
            "sparse": self.sparse, "pad_to_max_tokens": self.pad_to_max_tokens,
            "vocabulary_dtype": self.vocabulary_dtype, "idf_weights": _listify(self.input_idf_weights),
            "vocabulary": _listify(self.input_vocabulary), "vocabulary_size": self._frozen_vocab_size,
            "oov_method": self.oov_method, "salt": self.salt,
        })
        return config

    def get_build_config(self):
        return {}

    def build_from_config(self, config) -> None:
        self.built = True

    def save_own_variables(self, store) -> None:
        if self.output_mode == "tf_idf" and self.idf_weights is not None:
            store["idf_weights"] = np.asarray(self.idf_weights)

    def load_own_variables(self, store) -> None:
        if self.output_mode == "tf_idf":
            self.idf_weights = np.asarray(store["idf_weights"], dtype=backend.floatx())

    def save_assets(self, dir_path: str) -> None:
        """The vocabulary as ``vocabulary.txt`` (special tokens first), unless the config holds it."""
        if self.input_vocabulary is not None:
            return
        with open(os.path.join(dir_path, "vocabulary.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(str(w) for w in self.get_vocabulary(include_special_tokens=True)))

    def load_assets(self, dir_path) -> None:
        if self.input_vocabulary is not None or dir_path is None:
            return
        path = os.path.join(dir_path, "vocabulary.txt")
        if not os.path.isfile(path):
            return
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        while lines and lines[-1] == "":
            lines.pop()
        values = [self._token_from_line(line) for line in lines]
        if self.output_mode == "tf_idf":
            self.set_vocabulary(values, idf_weights=self.idf_weights)
        else:
            self.set_vocabulary(values)
