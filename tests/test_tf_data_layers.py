"""Preprocessing layers mapped over a ``tf.data.Dataset`` (layers/tf_data_bridge.py): the same numbers as the
layer's NumPy call, the declared dtype and static shape in ``element_spec``, and a clear error for other layers."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import lamina  # noqa: E402
from lamina import layers  # noqa: E402

IMAGES = np.random.RandomState(0).uniform(0, 255, size=(4, 10, 12, 3)).astype("float32")
WORDS = np.array([["a", "c"], ["b", "zz"], ["c", "a"], ["b", "b"]])
INTS = np.array([[3, 7], [9, 3], [7, 7], [1, 9]], dtype="int64")
SENTENCES = np.array(["the cat sat", "a dog ran far away", "the dog", "cat cat"])


def text_vectorization(**kwargs):
    layer = layers.TextVectorization(**kwargs)
    layer.adapt(SENTENCES)
    return layer


# (make the layer, the data, the batch size (None: element by element), the expected element_spec shape)
CASES = {
    "rescaling": (lambda: layers.Rescaling(1 / 255, offset=-1), IMAGES, 2, (None, 10, 12, 3)),
    "resizing": (lambda: layers.Resizing(5, 7), IMAGES, 2, (None, 5, 7, 3)),
    "resizing_one_image": (lambda: layers.Resizing(6, 4, interpolation="bicubic"), IMAGES, None, (6, 4, 3)),
    "center_crop": (lambda: layers.CenterCrop(4, 6), IMAGES, 2, (None, 4, 6, 3)),
    "random_flip": (lambda: layers.RandomFlip(seed=3), IMAGES, 2, (None, 10, 12, 3)),
    "random_rotation": (lambda: layers.RandomRotation(0.2, seed=4), IMAGES, 2, (None, 10, 12, 3)),
    "random_zoom": (lambda: layers.RandomZoom(0.3, seed=5), IMAGES, None, (10, 12, 3)),
    "random_translation": (lambda: layers.RandomTranslation(0.2, 0.1, seed=6), IMAGES, 2, (None, 10, 12, 3)),
    "random_contrast": (lambda: layers.RandomContrast(0.5, seed=7), IMAGES, 2, (None, 10, 12, 3)),
    "string_lookup": (lambda: layers.StringLookup(vocabulary=["a", "b", "c"]), WORDS, 2, (None, 2)),
    "string_lookup_multi_hot": (lambda: layers.StringLookup(vocabulary=["a", "b", "c"], output_mode="multi_hot"),
                                WORDS, 2, (None, 4)),
    "integer_lookup": (lambda: layers.IntegerLookup(vocabulary=[3, 7, 9]), INTS, None, (2,)),
    "text_vectorization": (lambda: text_vectorization(output_sequence_length=5), SENTENCES, 2, (None, 5)),
    # 8 words and the OOV token
    "text_vectorization_tf_idf": (lambda: text_vectorization(output_mode="tf_idf"), SENTENCES, 2, (None, 9)),
    "hashing": (lambda: layers.Hashing(5, salt=3), WORDS, 2, (None, 2)),
    "hashing_ints_multi_hot": (lambda: layers.Hashing(4, output_mode="multi_hot"), INTS, 2, (None, 4)),
}


def mapped(layer, data, batch):
    ds = tf.data.Dataset.from_tensor_slices(data)
    if batch:
        ds = ds.batch(batch)
    return ds.map(layer)


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_mapped_over_a_dataset_matches_its_numpy_call(name):
    make, data, batch, shape = CASES[name]
    ds = mapped(make(), data, batch)
    twin = make()  # same seed: the same draws, element after element
    chunks = [data[i:i + batch] for i in range(0, len(data), batch)] if batch else list(data)
    expected = [np.asarray(twin(chunk)) for chunk in chunks]
    got = list(ds.as_numpy_iterator())
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6)
    assert tuple(ds.element_spec.shape.as_list()) == shape
    assert ds.element_spec.dtype == tf.as_dtype(expected[0].dtype)


def test_random_layers_augment_inside_tf_data():
    """Keras's layers in tf.data run with the call's default ``training=True``: the images change."""
    out = next(iter(mapped(layers.RandomRotation(0.4, seed=1), IMAGES, 4))).numpy()
    assert not np.allclose(out, IMAGES)


def test_integer_images_are_cast_to_the_compute_dtype_as_keras_data_layers():
    images = IMAGES.astype("uint8")
    ds = mapped(layers.Resizing(5, 6), images, 2)
    assert ds.element_spec.dtype == tf.float32
    expected = layers.Resizing(5, 6)(images[:2].astype("float32"))
    np.testing.assert_allclose(next(iter(ds)).numpy(), expected, rtol=1e-6)


def test_string_lookup_invert_gives_strings():
    layer = layers.StringLookup(vocabulary=["a", "b", "c"], invert=True)
    ds = mapped(layer, np.array([[1, 3], [2, 0]], dtype="int64"), 2)
    assert ds.element_spec.dtype == tf.string and ds.element_spec.shape.as_list() == [None, 2]
    assert next(iter(ds)).numpy().tolist() == [[b"a", b"c"], [b"b", b"[UNK]"]]


def test_dict_with_bounding_boxes_through_resizing():
    boxes = np.array([[[1, 1, 4, 4], [2, 3, 8, 9]], [[0, 0, 5, 5], [6, 2, 10, 8]]], dtype="float32")
    data = {"images": IMAGES[:2], "labels": np.array([1.0, 2.0], "float32"),
            "bounding_boxes": {"boxes": boxes, "labels": np.array([[1, 2], [3, 0]], "float32")}}
    layer = layers.Resizing(5, 6, bounding_box_format="xyxy", pad_to_aspect_ratio=True)
    ds = tf.data.Dataset.from_tensors(data).map(layer)
    assert ds.element_spec["images"].shape.as_list() == [2, 5, 6, 3]
    assert ds.element_spec["bounding_boxes"]["boxes"].shape.as_list() == [2, 2, 4]
    got = next(iter(ds))
    expected = layer(data)
    np.testing.assert_allclose(got["images"].numpy(), expected["images"], rtol=1e-6)
    np.testing.assert_allclose(got["bounding_boxes"]["boxes"].numpy(), expected["bounding_boxes"]["boxes"])
    np.testing.assert_array_equal(got["labels"].numpy(), data["labels"])


def test_eager_tensor_gives_a_tensorflow_tensor_back():
    out = layers.Rescaling(2.0)(tf.constant(IMAGES[:1]))
    assert isinstance(out, tf.Tensor) and out.shape == (1, 10, 12, 3)
    np.testing.assert_allclose(out.numpy(), IMAGES[:1] * 2, rtol=1e-6)


@pytest.mark.parametrize("make", [lambda: layers.Dense(2), lambda: lamina.Sequential([layers.Dense(2)])])
def test_other_layers_refuse_graph_tensors_clearly(make):
    layer = make()
    with pytest.raises(TypeError, match=rf"Layer '{layer.name}' .*take NumPy arrays.*Received: TensorFlow"):
        mapped(layer, IMAGES, 2)


def test_other_layers_still_read_eager_tensors_as_arrays():
    layer = layers.Dense(2)
    out = layer(tf.constant(IMAGES[:2]))
    np.testing.assert_allclose(out, layer(IMAGES[:2]), rtol=1e-6)
