"""``Hashing`` and its two hashes (FarmHash Fingerprint64, SipHash-2-4) against TensorFlow and real Keras."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

import lamina
from lamina.layers.string_hash import fingerprint64, siphash24
from tests.helpers.keras_files import read_members

B = 2**63 - 1  # the most buckets TensorFlow takes: bucket == hash % B shows (almost) the whole hash


def _random_strings(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = "abcXYZ019 é漢字🙂\x00\n"
    out = ["", "a", "\x00", "é"]
    out += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 300))) for _ in range(count)]
    out += ["".join(chr(rng.randrange(32, 127)) for _ in range(n)) for n in range(0, 200)]  # every branch length
    return out


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


def test_fingerprint64_and_siphash_match_tensorflow(tf):
    data = [s.encode("utf-8") for s in _random_strings(1500, seed=1)]
    t = tf.constant(data)
    expected = tf.strings.to_hash_bucket_fast(t, B).numpy()
    np.testing.assert_array_equal((fingerprint64(data) % np.uint64(B)).astype(np.int64), expected)
    for key in ([133, 137], [211, 137], [0, 0], [2**63 - 1, 5], [-7, -7]):
        expected = tf.strings.to_hash_bucket_strong(t, B, key=key).numpy()
        np.testing.assert_array_equal((siphash24(data, key) % np.uint64(B)).astype(np.int64), expected,
                                      err_msg=f"key={key}")


def test_hashes_of_nothing_are_empty():
    assert fingerprint64([]).shape == (0,) and siphash24([], [1, 2]).dtype == np.uint64


def _keras_out(keras, layer, x):
    return np.asarray(keras.ops.convert_to_numpy(layer(x)))


@pytest.mark.parametrize("salt", [None, 133, [133, 137], -7])
@pytest.mark.parametrize("mask_value", [None, "", "omar"])
def test_string_bins_match_keras(keras, tf, salt, mask_value):
    strings = _random_strings(300, seed=2) + ["omar"] * 5
    x = np.array(strings, dtype=object).reshape(-1, 1)
    for num_bins in (1, 2, 7, 1000):
        kwargs = {"num_bins": num_bins, "salt": salt, "mask_value": mask_value}
        ours = lamina.layers.Hashing(**kwargs)(x)
        theirs = _keras_out(keras, keras.layers.Hashing(**kwargs), tf.constant([[s] for s in strings]))
        assert ours.dtype == np.int64 and ours.shape == x.shape
        np.testing.assert_array_equal(ours, theirs, err_msg=str(kwargs))


def test_python_lists_keep_exact_text(keras, tf):
    """A list of strings hashes each string as written, trailing NULs too (NumPy's str arrays would drop them)."""
    strings = ["a\x00", "a", "b\x00\x00", ""]
    ours = lamina.layers.Hashing(num_bins=10**6)(strings)
    theirs = _keras_out(keras, keras.layers.Hashing(num_bins=10**6), tf.constant(strings))
    np.testing.assert_array_equal(ours, theirs)
    assert ours[0] != ours[1]


@pytest.mark.parametrize("salt", [None, [133, 137]])
def test_integer_and_float_bins_match_keras(keras, tf, salt):
    rng = np.random.default_rng(3)
    ints = np.concatenate([rng.integers(-10**12, 10**12, 200), np.arange(-50, 50)]).reshape(-1, 2)
    for x in (ints, ints.astype(np.int32), np.array([True, False]), np.array([1.7, -2.5, 3.0, -0.2])):
        ours = lamina.layers.Hashing(num_bins=97, salt=salt)(x)
        theirs = _keras_out(keras, keras.layers.Hashing(num_bins=97, salt=salt), x)
        np.testing.assert_array_equal(ours, theirs, err_msg=str(x.dtype))
    masked = lamina.layers.Hashing(num_bins=5, mask_value=3)(np.array([1, 3, 3, 4]))
    np.testing.assert_array_equal(masked, _keras_out(keras, keras.layers.Hashing(num_bins=5, mask_value=3),
                                                     np.array([1, 3, 3, 4])))
    assert masked[1] == masked[2] == 0


@pytest.mark.parametrize("mode", ["one_hot", "multi_hot", "count"])
def test_encoded_outputs_match_keras(keras, tf, mode):
    rng = np.random.default_rng(4)
    inputs = [rng.integers(0, 40, (6, 1)), rng.integers(0, 40, (6,))]
    # Keras's one_hot fails on a scalar (IndexError); lamina gives (num_bins,), pinned below
    inputs += [rng.integers(0, 40, (5, 4)), np.int64(3)] if mode != "one_hot" else [rng.integers(0, 40, (5, 4, 1))]
    for x in inputs:
        for dtype in (None, "float64"):
            ours = lamina.layers.Hashing(num_bins=6, output_mode=mode, dtype=dtype)
            theirs = keras.layers.Hashing(num_bins=6, output_mode=mode, dtype=dtype)
            expected = _keras_out(keras, theirs, x)
            out = ours(x)
            assert out.dtype == expected.dtype and out.shape == expected.shape, (x.shape, dtype)
            np.testing.assert_array_equal(out, expected)
            assert tuple(ours.compute_output_shape(np.shape(x))) == out.shape


def test_one_hot_of_a_wider_last_axis_appends_the_bins(keras, tf):
    x = np.arange(12).reshape(3, 4)
    ours = lamina.layers.Hashing(num_bins=5, output_mode="one_hot")
    np.testing.assert_array_equal(ours(x), _keras_out(keras, keras.layers.Hashing(num_bins=5, output_mode="one_hot"),
                                                      x))
    assert ours(x).shape == ours.compute_output_shape((3, 4)) == (3, 4, 5)
    symbolic = ours(lamina.layers.Input(shape=(4,)))
    assert symbolic.shape == (None, 4, 5)
    np.testing.assert_array_equal(ours(np.int64(3)), ours(np.array([3])))  # both (num_bins,)


def test_config_equals_keras_and_round_trips(keras, tf):
    for kwargs in ({"num_bins": 8}, {"num_bins": 3, "salt": 5, "mask_value": "x", "output_mode": "count"},
                   {"num_bins": 4, "salt": (1, 2), "output_mode": "one_hot", "dtype": "float64"}):
        ours = lamina.layers.Hashing(**kwargs, name="h").get_config()
        theirs = keras.layers.Hashing(**kwargs, name="h").get_config()
        assert ours["dtype"]["config"]["name"] == theirs["dtype"]["config"]["name"]
        drop = ("dtype",)
        assert {k: v for k, v in ours.items() if k not in drop} == {k: v for k, v in theirs.items() if k not in drop}
        again = lamina.layers.Hashing.from_config(ours)
        assert again.get_config() == ours
        assert lamina.layers.deserialize(lamina.layers.serialize(again)).get_config() == ours


def test_keras_files_both_ways(keras, tf, tmp_path):
    x = np.random.default_rng(5).integers(-1000, 1000, (8, 3))
    inp = keras.Input(shape=(3,), dtype="int64")
    km = keras.Model(inp, keras.layers.Hashing(num_bins=50, salt=[3, 4], mask_value=0)(inp))
    km.save(tmp_path / "k.keras")
    expected = _keras_out(keras, km, x)
    lm = lamina.saving.load_model(tmp_path / "k.keras")
    np.testing.assert_array_equal(lm.predict(x, verbose=0), expected)
    lm.save(tmp_path / "l.keras")
    ours = json.loads(read_members(tmp_path / "l.keras")["config.json"])
    theirs = json.loads(read_members(tmp_path / "k.keras")["config.json"])
    hashing = [c["config"] for c in ours["config"]["layers"] if c["class_name"] == "Hashing"]
    assert hashing and {k: v for k, v in hashing[0].items() if k != "dtype"} == {
        k: v for k, v in theirs["config"]["layers"][1]["config"].items() if k != "dtype"}
    k2 = keras.saving.load_model(tmp_path / "l.keras")
    np.testing.assert_array_equal(_keras_out(keras, k2, x), expected)


def test_string_model_round_trips_in_lamina(tmp_path):
    inp = lamina.layers.Input(shape=(), dtype="string")
    model = lamina.Model(inp, lamina.layers.Hashing(num_bins=100)(inp))
    words = np.array(["omar", "stringer", "marlo", "wire", "skywalker"])
    before = model(words)
    model.save(tmp_path / "m.keras")
    np.testing.assert_array_equal(lamina.saving.load_model(tmp_path / "m.keras")(words), before)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_bins": 0}, "cannot be `None` or non-positive"),
    ({"num_bins": None}, "cannot be `None` or non-positive"),
    ({"num_bins": 2, "salt": "s"}, "can only be a tuple of size 2"),
    ({"num_bins": 2, "salt": [1, 2, 3]}, "can only be a tuple of size 2"),
    ({"num_bins": 2, "salt": True}, "can only be a tuple of size 2"),
    ({"num_bins": 2, "output_mode": "tf_idf"}, "Invalid value for argument `output_mode`"),
    ({"num_bins": 2, "dtype": "float32"}, 'When `output_mode="int"`, `dtype` should be an integer'),
    ({"num_bins": 2, "sparse": True}, "`sparse` may only be true"),
    ({"num_bins": 2, "sparse": True, "output_mode": "count"}, "lamina has no sparse tensors"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lamina.layers.Hashing(**kwargs)


def test_inputs_it_cannot_hash_are_refused_clearly():
    with pytest.raises(ValueError, match="rank 1 or 2"):
        lamina.layers.Hashing(num_bins=3, output_mode="multi_hot")(np.zeros((2, 3, 4), dtype=int))
    with pytest.raises(ValueError, match="non-finite"):
        lamina.layers.Hashing(num_bins=3)(np.array([1.0, np.nan]))
    with pytest.raises(TypeError, match="mask_value='a' is text but the inputs are numbers"):
        lamina.layers.Hashing(num_bins=3, mask_value="a")(np.array([1, 2]))
    with pytest.raises(TypeError, match="hashes strings, bytes or integers"):
        lamina.layers.Hashing(num_bins=3)(np.array([{"a": 1}], dtype=object))
