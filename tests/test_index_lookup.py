"""StringLookup and IntegerLookup against real Keras (torch backend, whose lookup tables need TensorFlow):
adapt order and max_tokens, OOV buckets (floormod, FarmHash64, SipHash salt), masks, invert, every output
mode, vocabulary files, configs, `.keras` files both ways, models on string input, and the errors."""

import json
import zipfile

import numpy as np
import pytest

import lamina
from lamina import layers as L
from tests.helpers.text_oracle import numpy_of as _np
from tests.helpers.text_oracle import same_as_keras as _same

ADAPT = np.array(["the", "cat", "a", "the", "dog", "cat", "b", "zz", "the", "Été", "été", "café"])
WORDS = np.array([["the", "x", "café"], ["cat", "dog", "Été"]])


@pytest.mark.oracle
@pytest.mark.parametrize("kwargs", [
    {}, {"max_tokens": 5}, {"mask_token": "", "num_oov_indices": 2}, {"num_oov_indices": 0, "max_tokens": 9},
    {"mask_token": "[MASK]", "oov_token": "<?>"},
])
def test_string_lookup_adapt_order_and_int_output_match_keras(kl, kwargs):
    k, lam = kl.StringLookup(**kwargs), L.StringLookup(**kwargs)
    k.adapt(ADAPT)
    lam.adapt(ADAPT)
    x = WORDS if kwargs.get("num_oov_indices", 1) else np.array([["the", "cat"], ["Été", "dog"]])
    out = _same(k, lam, x)
    assert lam.vocabulary_size() == k.vocabulary_size()
    assert lam.get_vocabulary(include_special_tokens=False) == [str(t) for t in k.get_vocabulary(False)]
    assert out.dtype == np.int64


@pytest.mark.oracle
@pytest.mark.parametrize("mode", ["one_hot", "multi_hot", "count", "tf_idf"])
@pytest.mark.parametrize("pad", [False, True])
def test_string_lookup_output_modes_match_keras(kl, mode, pad):
    kwargs = {"output_mode": mode, "mask_token": "", "pad_to_max_tokens": pad, "max_tokens": 12}
    k, lam = kl.StringLookup(**kwargs), L.StringLookup(**kwargs)
    data = np.array([["a", "b", "a"], ["c", "a", "q"], ["a", "", "b"]])
    k.adapt(data)
    lam.adapt(data)
    for x in (np.array([["a", "b", "a"], ["c", "", "z"]]), np.array([["a"], ["z"]]), np.array(["a", "c", "c"])):
        if mode == "one_hot" and x.shape == (2, 3):
            continue  # Keras's own one_hot path refuses this input on torch; the rank-1/last-axis-1 cases run
        _same(k, lam, x)


@pytest.mark.oracle
def test_tf_idf_with_given_weights_and_set_vocabulary_matches_keras(kl):
    kwargs = {"vocabulary": ["a", "b", "c"], "idf_weights": [0.5, 1.0, 2.0], "output_mode": "tf_idf"}
    k, lam = kl.StringLookup(**kwargs), L.StringLookup(**kwargs)
    _same(k, lam, np.array([["a", "b", "a"], ["c", "z", "z"]]))
    k.set_vocabulary(["[UNK]", "c", "d", "e"], idf_weights=[9.0, 1.0, 2.0, 3.0])
    lam.set_vocabulary(["[UNK]", "c", "d", "e"], idf_weights=[9.0, 1.0, 2.0, 3.0])
    _same(k, lam, np.array([["c", "d", "q"]]))


@pytest.mark.oracle
@pytest.mark.parametrize("kwargs", [{"num_oov_indices": 5}, {"num_oov_indices": 4, "salt": 1337},
                                    {"num_oov_indices": 3, "salt": [7, 11]}])
def test_string_oov_buckets_hash_as_keras(kl, kwargs):
    k, lam = kl.StringLookup(vocabulary=["a", "b"], **kwargs), L.StringLookup(vocabulary=["a", "b"], **kwargs)
    x = np.array(["a", "x", "y", "zz", "héllo", "", "a much longer token than sixteen bytes, then over 64 " * 2])
    _same(k, lam, x)


@pytest.mark.oracle
@pytest.mark.parametrize("kwargs", [{"num_oov_indices": 3}, {"num_oov_indices": 3, "oov_method": "farmhash"},
                                    {"num_oov_indices": 2, "oov_method": "farmhash", "salt": 5}, {"mask_token": 0}])
def test_integer_lookup_matches_keras(kl, kwargs):
    k, lam = kl.IntegerLookup(**kwargs), L.IntegerLookup(**kwargs)
    data = np.array([5, 5, 9, 12, 12, 12, 0, 0, 0, 0, 7, -3])
    k.adapt(data)
    lam.adapt(data)
    _same(k, lam, np.array([[5, 0, 9], [12, 40, -7]]))
    assert lam.get_config()["oov_token"] == -1


@pytest.mark.oracle
def test_invert_maps_indices_back_as_keras(kl):
    k = kl.IntegerLookup(vocabulary=[5, 6, 7], invert=True, mask_token=0)
    lam = L.IntegerLookup(vocabulary=[5, 6, 7], invert=True, mask_token=0)
    _same(k, lam, np.array([0, 1, 2, 3, 4, 5]))
    ks = kl.StringLookup(vocabulary=["a", "b", "c"], invert=True)
    ls = L.StringLookup(vocabulary=["a", "b", "c"], invert=True)
    x = np.array([0, 1, 2, 3, 9])
    assert ls(x).tolist() == list(ks(x))
    assert ls(np.array([[1, 2], [3, 0]])).tolist() == [["a", "b"], ["c", "[UNK]"]]  # any rank (Keras on torch: 1-D)


@pytest.mark.oracle
def test_vocabulary_file_and_special_tokens_at_the_start_match_keras(kl, tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("the\ncat\nÉté\n", encoding="utf-8")
    _same(kl.StringLookup(vocabulary=str(path)), L.StringLookup(vocabulary=str(path)), WORDS)
    _same(kl.StringLookup(vocabulary=["", "[UNK]", "a"], mask_token=""),
          L.StringLookup(vocabulary=["", "[UNK]", "a"], mask_token=""), np.array(["a", "", "b"]))
    ints = tmp_path / "ints.txt"
    ints.write_text("10\n20\n30", encoding="utf-8")
    _same(kl.IntegerLookup(vocabulary=str(ints)), L.IntegerLookup(vocabulary=str(ints)), np.array([10, 30, 5]))
    assert L.StringLookup(vocabulary=str(path)).get_config()["vocabulary"] is None  # saved as an asset instead


@pytest.mark.oracle
@pytest.mark.parametrize("cls, kwargs", [
    ("StringLookup", {"vocabulary": ["a", "b"], "mask_token": "", "num_oov_indices": 2}),
    ("StringLookup", {"vocabulary": ["a", "b"], "output_mode": "tf_idf", "idf_weights": [1.0, 2.0]}),
    ("StringLookup", {"max_tokens": 4, "output_mode": "count", "pad_to_max_tokens": True}),
    ("IntegerLookup", {"vocabulary": [1, 2, 3], "oov_token": 1, "mask_token": 0}),
    ("IntegerLookup", {"vocabulary": [4, 5], "invert": True, "num_oov_indices": 2}),
])
def test_config_keys_and_values_equal_keras(kl, cls, kwargs):
    k, lam = getattr(kl, cls)(name="x", **kwargs), getattr(L, cls)(name="x", **kwargs)
    k_cfg, l_cfg = k.get_config(), lam.get_config()
    k_cfg.pop("dtype"), l_cfg.pop("dtype")
    assert l_cfg == k_cfg
    again = getattr(L, cls).from_config(lam.get_config())
    assert again.get_vocabulary() == lam.get_vocabulary()
    assert k.__class__.from_config(json.loads(json.dumps(l_cfg))).get_vocabulary() == k.get_vocabulary()


@pytest.mark.oracle
def test_adapt_takes_batches_from_a_py_dataset_and_a_tf_dataset(kl):
    tf = pytest.importorskip("tensorflow")

    class Batches(lamina.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return ADAPT.reshape(2, -1)[i]

    lam, k = L.StringLookup(), kl.StringLookup()
    lam.adapt(Batches())
    k.adapt(tf.data.Dataset.from_tensor_slices(ADAPT).batch(6))
    assert lam.get_vocabulary() == [str(t) for t in k.get_vocabulary()]
    tf_lam = L.StringLookup()
    tf_lam.adapt(tf.data.Dataset.from_tensor_slices(ADAPT).batch(5), steps=2)  # bytes batches, decoded
    assert tf_lam.vocabulary_size() == len(set(ADAPT[:10])) + 1


def test_ragged_lists_are_looked_up_row_by_row():
    layer = L.StringLookup(vocabulary=["a", "b"])
    out = layer([["a", "b", "c"], ["b"]])
    assert [r.tolist() for r in out] == [[1, 2, 0], [2]]
    counting = L.StringLookup(output_mode="count")
    counting.adapt([["a"], ["b", "b", "a"]])
    assert counting.get_vocabulary() == ["[UNK]", "b", "a"]  # two of each: the tie goes to the higher token


@pytest.mark.oracle
@pytest.mark.parametrize("mode", ["int", "multi_hot", "tf_idf"])
def test_keras_files_both_ways_with_equal_outputs(kl, keras, tmp_path, mode):
    x = np.array([["a", "b", "z"], ["c", "c", "a"]])
    data = np.array([["a", "b", "a"], ["c", "a", "q"]])
    k_lookup = kl.StringLookup(output_mode=mode)
    k_lookup.adapt(data)
    k_model = keras.Sequential([keras.Input(shape=(3,), dtype="string"), k_lookup])
    k_model.save(tmp_path / "k.keras")
    loaded = lamina.models.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), _np(k_lookup(x)), rtol=1e-6)

    l_lookup = L.StringLookup(output_mode=mode)
    l_lookup.adapt(data)
    l_model = lamina.Sequential([lamina.Input(shape=(3,), dtype="string"), l_lookup])
    l_model.save(tmp_path / "l.keras")
    names = zipfile.ZipFile(tmp_path / "l.keras").namelist()
    assert "assets/layers/string_lookup/vocabulary.txt" in names
    k_loaded = keras.models.load_model(tmp_path / "l.keras")
    np.testing.assert_allclose(_np(k_loaded.layers[0](x)), l_model.predict(x, verbose=0), rtol=1e-6)


def test_models_on_string_input_and_symbolic_specs():
    lookup = L.StringLookup(vocabulary=["a", "b", "c"], output_mode="multi_hot")
    inp = lamina.Input(shape=(3,), dtype="string")
    hot = lookup(inp)
    assert hot.shape == (None, 4) and hot.dtype == "float32"
    model = lamina.Model(inp, L.Dense(2)(hot))
    assert model.predict(np.array([["a", "b", "z"]]), verbose=0).shape == (1, 2)
    ids = L.StringLookup(vocabulary=["a", "b"], mask_token="")(lamina.Input(shape=(4,), dtype="string"))
    assert ids.shape == (None, 4) and ids.dtype == "int64"
    inverted = L.IntegerLookup(vocabulary=[3, 4], invert=True)(lamina.Input(shape=(2,), dtype="int64"))
    assert inverted.dtype == "int64"
    seq = lamina.Sequential([lamina.Input(shape=(2,), dtype="string"), L.StringLookup(vocabulary=["a", "b"]),
                             L.Embedding(3, 4), L.Flatten(), L.Dense(1)])
    seq.compile("sgd", "mse")
    seq.fit(np.array([["a", "b"], ["b", "q"]]), np.array([[1.0], [0.0]]), epochs=1, verbose=0)
    assert seq.predict(np.array([["a", "b"]], dtype=object), verbose=0).shape == (1, 1)


@pytest.mark.parametrize("make, message", [
    (lambda: L.StringLookup(max_tokens=1), "`max_tokens` must be greater than 1. Received: max_tokens=1"),
    (lambda: L.IntegerLookup(num_oov_indices=-1), "must >= 0. Received: num_oov_indices=-1"),
    (lambda: L.StringLookup(output_mode="bag"), "Received: bag"),
    (lambda: L.StringLookup(output_mode="count", sparse=True), "`sparse=True` is not supported"),
    (lambda: L.StringLookup(invert=True, output_mode="count"), "when `invert` is true. Received: output_mode=count"),
    (lambda: L.StringLookup(idf_weights=[1.0]), "Received: idf_weights=[1.0] and output_mode=int"),
    (lambda: L.StringLookup(vocabulary=["a", "a"]), "repeated terms are: ['a']"),
    (lambda: L.StringLookup(vocabulary=["a", ""], mask_token=""), "Received: mask_token= at vocabulary index [1]"),
    (lambda: L.IntegerLookup(vocabulary=[1, 2], oov_token=1, mask_token=0, invert=True),
     "Received: oov_token=1 at vocabulary index [0]"),
    (lambda: L.StringLookup(vocabulary=["a", "b", "c"], max_tokens=3), "vocab size. Received vocabulary size is 4"),
    (lambda: L.StringLookup(vocabulary="/no/such/vocab.txt"), "Vocabulary file /no/such/vocab.txt does not exist."),
    (lambda: L.StringLookup(vocabulary=["a"], output_mode="tf_idf"), "`idf_weights` argument must also be provided"),
    (lambda: L.IntegerLookup(vocabulary_dtype="int32"), "Received: vocabulary_dtype=int32"),
    (lambda: L.IntegerLookup(salt=3), "`salt` can only be used when `oov_method='farmhash'`"),
    (lambda: L.StringLookup(vocabulary=["a"], num_oov_indices=0)(["b"]), "found OOV values ['b']"),
    (lambda: L.StringLookup(output_mode="count")(["b"]), "you must set the layer's vocabulary before calling it"),
    (lambda: L.StringLookup(vocabulary=["a"]).adapt(["a"]), "Cannot adapt layer"),
])
def test_bad_arguments_are_named_as_keras_names_them(make, message):
    with pytest.raises((ValueError, RuntimeError, TypeError)) as info:
        make()
    assert message in str(info.value)


def test_numbers_are_refused_by_string_lookup_and_text_by_integer_lookup():
    with pytest.raises(TypeError, match="StringLookup expects strings"):
        L.StringLookup(vocabulary=["a"])(np.array([1.5]))
    with pytest.raises(TypeError, match="IntegerLookup expects integers"):
        L.IntegerLookup(vocabulary=[1])(np.array(["1"]))


def test_integer_lookup_in_models_keeps_ids_exact_or_refuses_rounded_ones():
    lookup = L.IntegerLookup(vocabulary=[10, 20, 123456789])
    seq = lamina.Sequential([lamina.Input(shape=(2,), dtype="int64"), lookup, L.Embedding(4, 2)])
    ids = np.array([[10, 123456789]])
    np.testing.assert_array_equal(seq.layers[0](ids), [[1, 3]])
    assert seq.predict(ids, verbose=0).shape == (1, 2, 2)  # int64 ids reach the lookup uncast
    inp = lamina.Input(shape=(2,), dtype="int64")
    functional = lamina.Model(inp, L.IntegerLookup(vocabulary=[10, 20])(inp))
    np.testing.assert_array_equal(functional.predict(np.array([[10, 20], [3, 20]]), verbose=0), [[1, 2], [0, 2]])
    with pytest.raises(TypeError, match="no larger than 16777216 .* pass an int64 array"):
        functional.predict(np.array([[123456789, 20]]), verbose=0)  # float32 inputs: that id may be rounded
    with pytest.raises(TypeError, match="IntegerLookup expects integers"):
        L.IntegerLookup(vocabulary=[1])(np.array([1.5]))
