"""TextVectorization against real Keras (torch backend; Keras needs TensorFlow for it): standardize (TF's
ASCII-only lowercasing and punctuation regex on non-ASCII text), split, ngrams, output modes, sequence length,
vocabulary files and lists, configs, `.keras` files both ways, models on string input, and the errors."""

import json
import zipfile

import numpy as np
import pytest

import lamina
from lamina import layers as L
from lamina.layers import text_standardize
from tests.helpers.text_oracle import numpy_of as _np
from tests.helpers.text_oracle import same_as_keras as _same

CORPUS = np.array(["The cat sat on the mat.", "The dog ran, FAST!", "Été à Paris: café crème", "ÉTÉ été Été",
                   "tabs\tand\nnew lines\u00a0no-break", "ΣΑΣ σας"])
TEXTS = np.array(["the CAT ran", "café, été! x", "", "a b c d e f g h i j"])


@pytest.mark.oracle
@pytest.mark.parametrize("kwargs", [
    {}, {"max_tokens": 8, "output_sequence_length": 5}, {"standardize": "lower", "output_sequence_length": 2},
    {"standardize": "strip_punctuation"}, {"standardize": None, "split": "character", "output_sequence_length": 12},
    {"ngrams": 2}, {"ngrams": (3, 1), "max_tokens": 20}, {"split": None, "standardize": "lower"},
])
def test_int_output_matches_keras(kl, kwargs):
    k, lam = kl.TextVectorization(**kwargs), L.TextVectorization(**kwargs)
    k.adapt(CORPUS)
    lam.adapt(CORPUS)
    _same(k, lam, TEXTS)
    _same(k, lam, TEXTS[:, None])


@pytest.mark.oracle
@pytest.mark.parametrize("mode", ["multi_hot", "count", "tf_idf"])
@pytest.mark.parametrize("kwargs", [{}, {"ngrams": 2}, {"max_tokens": 30, "pad_to_max_tokens": True}])
def test_vector_outputs_match_keras(kl, mode, kwargs):
    k, lam = kl.TextVectorization(output_mode=mode, **kwargs), L.TextVectorization(output_mode=mode, **kwargs)
    k.adapt(CORPUS)
    lam.adapt(CORPUS)
    _same(k, lam, TEXTS, rtol=1e-5)


def test_standardize_follows_tensorflow_on_non_ascii_text(kl):
    tf = pytest.importorskip("tensorflow")
    texts = ["ÉTÉ Été ÀB ΣΑΣ İstanbul", "a.b,c-d!e?f'g\"h(i)j[k]l{m}n~o|p", "¿Qué? «citation» — dash … 「引用」"]
    lowered = [s.decode() for s in tf.strings.lower(texts).numpy()]
    assert [text_standardize.lower(t) for t in texts] == lowered
    stripped = [s.decode() for s in tf.strings.regex_replace(
        texts, r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']', "").numpy()]
    assert [text_standardize.strip_punctuation(t) for t in texts] == stripped
    spaced = "a\u00a0b c\u3000d\te\x0bf\x1cg  h\u2003i\r\nj"
    assert text_standardize.split_whitespace(spaced) == [s.decode() for s in tf.strings.split([spaced]).to_list()[0]]
    assert text_standardize.split_characters("été") == [
        s.decode() for s in tf.strings.unicode_split("été", "UTF-8").numpy()]


@pytest.mark.oracle
def test_callable_standardize_and_split_and_scalar_input(kl):
    def shout(x):  # a NumPy array of str, as Keras hands a callable on non-TensorFlow backends
        return np.char.upper(x)

    k = kl.TextVectorization(standardize=shout, vocabulary=["A", "B"], output_sequence_length=3)
    lam = L.TextVectorization(standardize=shout, vocabulary=["A", "B"], output_sequence_length=3)
    _same(k, lam, np.array(["a b c", "b"]))
    scalar_k, scalar_l = _np(k("a b a b")), lam("a b a b")
    assert scalar_l.shape == scalar_k.shape == (3,)
    np.testing.assert_array_equal(scalar_l, scalar_k)
    comma = L.TextVectorization(standardize="lower", split=lambda x: [s.split(",") for s in x],
                                vocabulary=["a", "b c"])
    np.testing.assert_array_equal(comma(["a,b c,d", "a"]), [[2, 3, 1], [2, 0, 0]])


@pytest.mark.oracle
def test_bytes_inputs_are_decoded_with_the_encoding(kl):
    k, lam = kl.TextVectorization(), L.TextVectorization()
    k.adapt(CORPUS)
    lam.adapt(np.char.encode(CORPUS, "utf-8"))  # bytes in, the same vocabulary of str out
    _same(k, lam, np.char.encode(TEXTS, "utf-8"))
    latin = L.TextVectorization(encoding="latin-1", vocabulary=["été"])
    np.testing.assert_array_equal(latin(np.array(["été x".encode("latin-1")])), [[2, 1]])


@pytest.mark.oracle
def test_adapt_from_a_py_dataset_or_a_generator_with_steps(kl):
    class Batches(lamina.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return CORPUS.reshape(3, 2)[i]

    k = kl.TextVectorization()
    k.adapt(CORPUS)
    lam = L.TextVectorization()
    lam.adapt(Batches())
    assert lam.get_vocabulary() == [str(t) for t in k.get_vocabulary()]
    first_two = L.TextVectorization()
    first_two.adapt((CORPUS[i:i + 2] for i in range(0, 6, 2)), steps=2)
    expected = L.TextVectorization()
    expected.adapt(CORPUS[:4])
    assert first_two.get_vocabulary() == expected.get_vocabulary()


@pytest.mark.oracle
def test_vocabulary_list_file_and_idf_weights_match_keras(kl, tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("the\ncat\nété\n", encoding="utf-8")
    _same(kl.TextVectorization(vocabulary=str(path)), L.TextVectorization(vocabulary=str(path)), TEXTS)
    kwargs = {"vocabulary": ["the", "cat", "été"], "idf_weights": [0.5, 1.5, 2.0], "output_mode": "tf_idf"}
    _same(kl.TextVectorization(**kwargs), L.TextVectorization(**kwargs), TEXTS)
    lam = L.TextVectorization()
    lam.set_vocabulary(["x", "y"])
    assert lam.get_vocabulary() == ["", "[UNK]", "x", "y"] and lam.vocabulary_size() == 4


@pytest.mark.oracle
@pytest.mark.parametrize("kwargs", [
    {"max_tokens": 10, "output_sequence_length": 4}, {"output_mode": "tf_idf", "ngrams": 2},
    {"vocabulary": ["a", "b"], "split": "character", "standardize": "lower"},
])
def test_config_equals_keras_and_round_trips(kl, kwargs):
    k, lam = kl.TextVectorization(name="tv", **kwargs), L.TextVectorization(name="tv", **kwargs)
    if "vocabulary" not in kwargs:
        k.adapt(CORPUS)
        lam.adapt(CORPUS)
    k_cfg, l_cfg = k.get_config(), lam.get_config()
    k_cfg.pop("dtype"), l_cfg.pop("dtype")
    assert l_cfg == k_cfg
    assert L.TextVectorization.from_config(json.loads(json.dumps(lam.get_config()))).get_config()["ngrams"] == \
        kwargs.get("ngrams")


@pytest.mark.oracle
@pytest.mark.parametrize("kwargs", [{"max_tokens": 12, "output_sequence_length": 6},
                                    {"output_mode": "tf_idf", "ngrams": 2}, {"output_mode": "count"}])
def test_keras_files_both_ways_with_equal_outputs(kl, keras, tmp_path, kwargs):
    x = TEXTS[:, None]
    k_tv = kl.TextVectorization(**kwargs)
    k_tv.adapt(CORPUS)
    k_model = keras.Sequential([keras.Input(shape=(1,), dtype="string"), k_tv])
    k_model.save(tmp_path / "k.keras")
    loaded = lamina.models.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), _np(k_tv(x)), rtol=1e-6)

    l_tv = L.TextVectorization(**kwargs)
    l_tv.adapt(CORPUS)
    l_model = lamina.Sequential([lamina.Input(shape=(1,), dtype="string"), l_tv])
    l_model.save(tmp_path / "l.keras")
    names = set(zipfile.ZipFile(tmp_path / "l.keras").namelist())
    assert names == set(zipfile.ZipFile(tmp_path / "k.keras").namelist())  # vocabulary.txt twice, as Keras
    k_loaded = keras.models.load_model(tmp_path / "l.keras")
    np.testing.assert_allclose(_np(k_loaded.layers[0](x)), l_model.predict(x, verbose=0), rtol=1e-6)


@pytest.mark.oracle
def test_embedding_model_saved_by_keras_predicts_equal_in_lamina(kl, keras, tmp_path):
    k_tv = kl.TextVectorization(max_tokens=20, output_sequence_length=5)
    k_tv.adapt(CORPUS)
    emb = kl.Embedding(20, 3)
    pool = kl.GlobalAveragePooling1D()
    k_model = keras.Sequential([keras.Input(shape=(1,), dtype="string"), k_tv, emb, pool, kl.Dense(1)])
    k_model.save(tmp_path / "k.keras")
    x = TEXTS[:, None]
    expected = _np(k_model.layers[3](pool(emb(k_tv(x)))))
    np.testing.assert_allclose(lamina.models.load_model(tmp_path / "k.keras").predict(x, verbose=0), expected,
                               rtol=1e-5, atol=1e-7)


def test_functional_and_sequential_models_on_string_input():
    tv = L.TextVectorization(max_tokens=20, output_sequence_length=5)
    tv.adapt(CORPUS)
    inp = lamina.Input(shape=(1,), dtype="string")
    ids = tv(inp)
    assert ids.shape == (None, 5) and ids.dtype == "int64"
    out = L.Dense(1, activation="sigmoid")(L.GlobalAveragePooling1D()(L.Embedding(20, 4)(ids)))
    model = lamina.Model(inp, out)
    model.compile("adam", "binary_crossentropy")
    model.fit(TEXTS[:, None], np.array([[1.0], [0.0], [1.0], [0.0]]), epochs=2, verbose=0)
    assert model.predict(TEXTS[:, None], verbose=0).shape == (4, 1)
    counts = L.TextVectorization(output_mode="count", vocabulary=["a", "b"])(lamina.Input(shape=(1,), dtype="string"))
    assert counts.shape == (None, 3) and counts.dtype == "float32"  # [UNK], a, b: no mask slot outside "int"
    idf = L.TextVectorization(output_mode="tf_idf", vocabulary=["a"], idf_weights=[1.0])(
        lamina.Input(shape=(), dtype="string"))
    assert idf.shape == (None, 2) and idf.dtype == "float32"
    seq = lamina.Sequential([lamina.Input(shape=(1,), dtype="string"), tv, L.Embedding(20, 2), L.Flatten()])
    assert seq(TEXTS[:, None]).shape == (4, 10)
    no_input = lamina.Sequential([tv, L.Embedding(20, 2)])  # built from the first text batch
    assert no_input(TEXTS[:, None]).shape == (4, 5, 2)
    assert no_input.predict(TEXTS[:, None], verbose=0).shape == (4, 5, 2)


def test_a_registered_standardize_function_survives_config_and_file(tmp_path):
    @lamina.saving.register_keras_serializable(package="text_test")
    def shout(x):
        return np.char.upper(x)

    model = lamina.Sequential([lamina.Input(shape=(1,), dtype="string"),
                               L.TextVectorization(standardize=shout, vocabulary=["A"])])
    assert model.layers[0].get_config()["standardize"]["config"] == "text_test>shout"
    model.save(tmp_path / "m.keras")
    loaded = lamina.models.load_model(tmp_path / "m.keras")
    assert loaded.layers[0]._standardize is shout
    np.testing.assert_array_equal(loaded.predict(np.array([["a b"]]), verbose=0), [[2, 1]])


def test_text_given_to_a_numeric_model_is_still_refused_by_name():
    model = lamina.Sequential([lamina.Input(shape=(1,)), L.Dense(1)])
    with pytest.raises(TypeError, match=r"`x` passed to predict must be numeric .* Received: an array of dtype <U"):
        model.predict(np.array([["text"]]), verbose=0)


@pytest.mark.parametrize("make, message", [
    (lambda: L.TextVectorization(standardize="upper"), "Received: upper"),
    (lambda: L.TextVectorization(split="comma"), "argument of layer TextVectorization"),
    (lambda: L.TextVectorization(ngrams=[1, 2]), "Received: ngrams=[1, 2]"),
    (lambda: L.TextVectorization(output_sequence_length=2.5), "Received: output_sequence_length=2.5"),
    (lambda: L.TextVectorization(output_mode="count", output_sequence_length=3), "Received output_sequence_length=3"),
    (lambda: L.TextVectorization(ragged=True, output_mode="count"), "Received: ragged=True and output_mode=count"),
    (lambda: L.TextVectorization(sparse=True), "`sparse=True` is not supported"),
    (lambda: L.TextVectorization(ragged=True), "`ragged=True` is not supported with lamina"),
    (lambda: L.TextVectorization(vocabulary=["a"])(np.array([["a", "b"]])), "Received: inputs.shape=(1, 2)"),
    (lambda: L.TextVectorization(vocabulary=["a"])(np.array([1.0])), "TextVectorization expects strings"),
    (lambda: L.TextVectorization(vocabulary=["a"])(np.full((2, 3, 1), "a")), "Received: inputs.shape=(2, 3, 1)"),
    (lambda: L.TextVectorization(vocabulary=["a"], output_mode="one_hot")(["a b", "a"]), "texts of [1, 2] tokens"),
])
def test_bad_arguments_are_named_as_keras_names_them(make, message):
    with pytest.raises((ValueError, TypeError)) as info:
        make()
    assert message in str(info.value)
