"""The image augmentation layers (RandomFlip, RandomRotation, RandomZoom, RandomTranslation, RandomContrast)
and ``affine_transform``, against real Keras 3 on torch.

Draws from two different generators cannot match, so the oracle tests split a call as the layers do:
given the same transformation dict (or the same patched draws), lamina's images equal Keras's; the draws
themselves are tested for seed determinism and against their distributions.
"""

from __future__ import annotations

import itertools
import unittest.mock

import numpy as np
import pytest

import lamina
from lamina.autodiff import GradientTape, unwrap
from lamina.layers.affine_transform import affine_transform
from tests.helpers import gradcheck

GEOMETRIC = ("RandomRotation", "RandomZoom", "RandomTranslation")
ALL = ("RandomFlip", *GEOMETRIC, "RandomContrast")
FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("bilinear", "nearest")
DATA_FORMATS = ("channels_last", "channels_first")

# Arguments that make each layer draw something (Keras's required ones plus a few non-defaults).
ARGS = {
    "RandomFlip": {"mode": "horizontal_and_vertical"},
    "RandomRotation": {"factor": (-0.3, 0.2)},
    "RandomZoom": {"height_factor": (-0.4, 0.3), "width_factor": 0.25},
    "RandomTranslation": {"height_factor": 0.3, "width_factor": (-0.2, 0.4)},
    "RandomContrast": {"factor": (0.3, 0.6), "value_range": (0, 255)},
}


def _images(shape=(3, 7, 9, 2), seed=0, data_format="channels_last"):
    x = np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")
    return x if data_format == "channels_last" else np.ascontiguousarray(np.moveaxis(x, -1, -3))


def _copy_for_keras(keras, transformation: dict) -> dict:
    """Keras's torch affine_transform edits its transform in place: each library gets its own arrays."""
    return {k: keras.ops.convert_to_tensor(np.array(v)) if isinstance(v, np.ndarray) else v
            for k, v in transformation.items()}


def _np(keras, x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _transform_pair(keras, name, kwargs, x, training=True):
    """lamina's and Keras's ``transform_images`` on one transformation drawn by lamina's layer."""
    ours = getattr(lamina.layers, name)(**kwargs)
    theirs = getattr(keras.layers, name)(**kwargs)
    tr = ours.get_random_transformation(x, training=True)
    mine = np.asarray(unwrap(ours.transform_images(x, tr, training=training)))
    ref = _np(keras, theirs.transform_images(keras.ops.convert_to_tensor(x), _copy_for_keras(keras, tr),
                                             training=training))
    return mine, ref


# ---------------------------------------------------------------------------------- affine_transform


def _random_transforms(rng, batch):
    angle, scale = rng.uniform(-3, 3, batch), rng.uniform(0.5, 1.8, batch)
    t = np.zeros((batch, 8), "float32")
    t[:, 0], t[:, 1], t[:, 2] = scale * np.cos(angle), -scale * np.sin(angle), rng.uniform(-5, 5, batch)
    t[:, 3], t[:, 4], t[:, 5] = scale * np.sin(angle), scale * np.cos(angle), rng.uniform(-5, 5, batch)
    return t


@pytest.mark.parametrize("interpolation,fill_mode,data_format",
                         list(itertools.product(INTERPOLATIONS, (*FILL_MODES, "mirror"), DATA_FORMATS)))
def test_affine_transform_matches_keras(keras, interpolation, fill_mode, data_format):
    rng = np.random.default_rng(1)
    for shape in [(3, 6, 8, 2), (2, 5, 5, 3), (1, 9, 4, 2)]:
        x = _images(shape, seed=shape[1], data_format=data_format)
        t = _random_transforms(rng, shape[0])
        ours = affine_transform(x, t, interpolation, fill_mode, 7.5, data_format)
        ref = _np(keras, keras.ops.image.affine_transform(x, t.copy(), interpolation, fill_mode, 7.5, data_format))
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-3, err_msg=str(shape))
        single = affine_transform(x[0], t[0], interpolation, fill_mode, 7.5, data_format)  # unbatched
        np.testing.assert_allclose(single, ref[0], rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("fill_mode,interpolation", list(itertools.product(FILL_MODES, INTERPOLATIONS)))
def test_affine_transform_of_one_pixel_wide_images_matches_keras(keras, fill_mode, interpolation):
    for shape in [(2, 1, 5, 2), (1, 4, 1, 1), (1, 1, 1, 3)]:
        x = _images(shape, seed=9)
        t = _random_transforms(np.random.default_rng(10), shape[0])
        ref = _np(keras, keras.ops.image.affine_transform(x, t.copy(), interpolation, fill_mode, -2.0))
        np.testing.assert_allclose(affine_transform(x, t, interpolation, fill_mode, -2.0), ref, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("fill_mode", FILL_MODES)
def test_affine_transform_of_integer_images_rounds_like_keras(keras, fill_mode):
    x = np.random.default_rng(2).integers(0, 255, (2, 6, 7, 3)).astype("uint8")
    t = _random_transforms(np.random.default_rng(3), 2)
    ours = affine_transform(x, t, "bilinear", fill_mode, 0, "channels_last")
    ref = _np(keras, keras.ops.image.affine_transform(x, t.copy(), "bilinear", fill_mode, 0, "channels_last"))
    assert ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("fill_mode,interpolation", list(itertools.product(FILL_MODES, INTERPOLATIONS)))
def test_affine_transform_gradient_matches_keras_and_central_differences(keras, fill_mode, interpolation):
    import torch  # lazy: the oracle's backend

    x = _images((2, 5, 6, 2), seed=4) / 255
    t = _random_transforms(np.random.default_rng(5), 2)
    proj = gradcheck.projection(x.shape, seed=1).astype("float32")
    xv = lamina.Variable(x)
    with GradientTape() as tape:
        loss = lamina.ops.sum(lamina.ops.multiply(affine_transform(xv, t, interpolation, fill_mode, 0.3), proj))
    ours = np.asarray(tape.gradient(loss, xv))
    xt = torch.tensor(x, requires_grad=True)
    out = keras.ops.image.affine_transform(xt, torch.tensor(t.copy()), interpolation, fill_mode, 0.3)
    (out * torch.tensor(proj)).sum().backward()
    np.testing.assert_allclose(ours, xt.grad.numpy(), rtol=1e-5, atol=1e-5)
    gradcheck.check_gradients(lambda a: affine_transform(a, t.astype(a.dtype), interpolation, fill_mode, 0.3), x)


def test_affine_transform_refuses_bad_arguments():
    x, t = np.zeros((2, 4, 4, 1), "float32"), np.zeros((2, 8), "float32")
    with pytest.raises(ValueError, match="interpolation"):
        affine_transform(x, t, interpolation="bicubic")
    with pytest.raises(ValueError, match="fill_mode"):
        affine_transform(x, t, fill_mode="edge")
    with pytest.raises(ValueError, match="rank"):
        affine_transform(x[0, 0], t)
    with pytest.raises(ValueError, match="transform"):
        affine_transform(x, t[:, :6])
    with pytest.raises(ValueError, match="one transform per image"):
        affine_transform(x, t[:1].repeat(3, axis=0))


def test_affine_transform_projective_rows_divide_by_k():
    """``c0, c1`` (used by Keras on TensorFlow only): ``x' = (a0 x + a1 y + a2) / (c0 x + c1 y + 1)``."""
    x = np.arange(16, dtype="float64").reshape(1, 4, 4, 1)
    t = np.array([[1, 0, 0, 0, 1, 0, 0.25, 0]], "float64")
    out = affine_transform(x, t, "bilinear", "constant")[0, :, :, 0]
    cols = np.arange(4) / (0.25 * np.arange(4) + 1)  # the source column of each output column
    rows = np.arange(4)[:, None] / (0.25 * np.arange(4)[None, :] + 1)
    np.testing.assert_allclose(out, rows * 4 + cols, atol=1e-12)


# ---------------------------------------------------------------------------------- transform_images vs Keras


@pytest.mark.parametrize("name,fill_mode,interpolation,data_format",
                         list(itertools.product(GEOMETRIC, FILL_MODES, INTERPOLATIONS, DATA_FORMATS)))
def test_geometric_transform_images_match_keras(keras, name, fill_mode, interpolation, data_format):
    kwargs = {**ARGS[name], "fill_mode": fill_mode, "interpolation": interpolation, "fill_value": 11.0,
              "data_format": data_format}
    for shape in [(4, 7, 9, 2), (2, 8, 5, 1)]:
        mine, ref = _transform_pair(keras, name, kwargs, _images(shape, seed=shape[0], data_format=data_format))
        np.testing.assert_allclose(mine, ref, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("mode,data_format",
                         list(itertools.product(("horizontal", "vertical", "horizontal_and_vertical"), DATA_FORMATS)))
def test_flip_transform_images_match_keras(keras, mode, data_format):
    mine, ref = _transform_pair(keras, "RandomFlip", {"mode": mode, "seed": 3, "data_format": data_format},
                                _images((6, 4, 5, 3), data_format=data_format))
    np.testing.assert_array_equal(mine, ref)


@pytest.mark.parametrize("data_format,value_range", [("channels_last", (0, 255)), ("channels_first", (0, 255)),
                                                     ("channels_last", (10, 120))])
def test_contrast_transform_images_match_keras(keras, data_format, value_range):
    kwargs = {"factor": (0.2, 0.9), "value_range": value_range, "data_format": data_format}
    mine, ref = _transform_pair(keras, "RandomContrast", kwargs, _images((5, 6, 7, 3), data_format=data_format))
    np.testing.assert_allclose(mine, ref, rtol=1e-5, atol=1e-3)
    assert mine.min() >= value_range[0] and mine.max() <= value_range[1]


def test_rotation_matrix_equals_keras(keras):
    angle = np.array([-170.0, -30.5, 0.0, 45.0, 90.0, 123.4], "float32")
    zeros, ones = np.zeros(6, "float32"), np.ones(6, "float32")
    ours = lamina.layers.RandomRotation(0.1)._compute_affine_matrix(0.5, 0.5, angle, zeros, zeros, ones, zeros,
                                                                     zeros, 7, 10)
    theirs = keras.layers.RandomRotation(0.1)._compute_affine_matrix(
        0.5, 0.5, keras.ops.convert_to_tensor(angle), *(keras.ops.convert_to_tensor(a) for a in
                                                         (zeros, zeros, ones, zeros, zeros)), 7, 10)
    np.testing.assert_allclose(ours, _np(keras, theirs), rtol=1e-6, atol=1e-5)


# ---------------------------------------------------------------------------------- whole calls, same draws


def _draws(values, convert):
    """A stand-in for ``random.uniform`` returning ``values`` in turn (each shaped as asked, then ``convert``ed)."""
    queue = list(values)

    def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
        return convert(np.asarray(queue.pop(0), "float32").reshape(tuple(shape)))

    return uniform


def _patched_call(layer, draws, x, convert=np.asarray, **kwargs):
    """``layer(x)`` with its random draws replaced by ``draws``."""
    with unittest.mock.patch.object(layer.backend.random, "uniform", side_effect=_draws(draws, convert)):
        return layer(x, **kwargs)


@pytest.mark.parametrize("name,draws", [
    ("RandomFlip", [[[[[0.3]]], [[[0.7]]], [[[0.5]]]]]),
    ("RandomRotation", [[-50.0, 20.0, 99.0]]),
    ("RandomZoom", [[[0.7], [1.2], [1.0]], [[1.3], [0.8], [0.75]]]),
    ("RandomTranslation", [[[0.1], [-0.25], [0.0]], [[-0.3], [0.2], [0.5]]]),
    ("RandomContrast", [[[[[1.2]]], [[[0.6]]], [[[1.5]]]]]),
])
@pytest.mark.parametrize("batched", [True, False])
def test_full_call_matches_keras_on_the_same_draws(keras, name, draws, batched):
    """Draws → transformation → images, whole: the draws are scaled and ordered as Keras's."""
    kwargs = {**ARGS[name], "seed": 1}
    x = _images((3, 6, 8, 2))
    if not batched:
        x, draws = x[1], [[d[1]] for d in draws]
    ours = np.asarray(unwrap(_patched_call(getattr(lamina.layers, name)(**kwargs), draws, x)))
    theirs = getattr(keras.layers, name)(**kwargs)
    ref = _np(keras, _patched_call(theirs, draws, x, keras.ops.convert_to_tensor))
    assert ours.shape == x.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("name", ALL)
def test_dict_inputs_match_keras(keras, name):
    """Images, labels and segmentation masks move together (masks read with "nearest")."""
    rng = np.random.default_rng(6)
    data = {"images": _images((2, 6, 7, 3)), "labels": rng.uniform(size=(2, 4)).astype("float32"),
            "segmentation_masks": rng.integers(0, 4, (2, 6, 7, 1)).astype("float32")}
    draws = {"RandomFlip": [[[[[0.2]]], [[[0.9]]]]], "RandomRotation": [[33.0, -71.0]],
             "RandomZoom": [[[0.8], [1.3]], [[1.1], [0.7]]], "RandomTranslation": [[[0.2], [-0.1]], [[0.3], [0.1]]],
             "RandomContrast": [[[[[1.3]]], [[[0.8]]]]]}[name]
    ours = _patched_call(getattr(lamina.layers, name)(**ARGS[name]), draws, dict(data))
    theirs = _patched_call(getattr(keras.layers, name)(**ARGS[name]), draws, dict(data), keras.ops.convert_to_tensor)
    # Keras's torch affine_transform rewrites the rotation matrix in place when it transforms the images, so
    # its masks would move by a scrambled matrix: the masks' reference is the same layer reading "nearest".
    nearest = {**ARGS[name], "interpolation": "nearest"} if name in GEOMETRIC else ARGS[name]
    masks = _patched_call(getattr(keras.layers, name)(**nearest), draws, data["segmentation_masks"],
                          keras.ops.convert_to_tensor)
    theirs = {**theirs, "segmentation_masks": masks if name != "RandomContrast" else data["segmentation_masks"]}
    for key in data:
        np.testing.assert_allclose(np.asarray(unwrap(ours[key])), _np(keras, theirs[key]), rtol=1e-5, atol=1e-3,
                                   err_msg=key)
    assert set(np.unique(np.asarray(unwrap(ours["segmentation_masks"])))) <= {0.0, 1.0, 2.0, 3.0}


BOX_DRAWS = {"RandomFlip": [[[[[0.2]]], [[[0.9]]]]], "RandomRotation": [[33.0, -71.0]],
             "RandomZoom": [[[0.8], [1.3]], [[1.1], [0.7]]], "RandomTranslation": [[[0.2], [-0.1]], [[0.3], [0.1]]],
             "RandomContrast": [[[[[1.3]]], [[[0.8]]]]]}


def _boxes(batched):
    boxes = np.array([[[1, 2, 4, 5], [0, 0, 7, 9], [5, 6, 6.5, 8]], [[2, 1, 3, 7], [6, 7, 7, 9], [0, 3, 2, 4]]],
                     "float32")
    labels = np.array([[0, 1, 2], [3, 4, 5]])
    return {"boxes": boxes, "labels": labels} if batched else {"boxes": boxes[1], "labels": labels[1]}


def test_dict_inputs_in_a_functional_model():
    inputs = {"images": lamina.Input((6, 7, 3)), "labels": lamina.Input((4,))}
    outputs = lamina.layers.RandomRotation(0.2, seed=1)(inputs)
    assert {k: (v.shape, v.dtype) for k, v in outputs.items()} == {
        "images": ((None, 6, 7, 3), "float32"), "labels": ((None, 4), "float32")}
    model = lamina.Model(inputs, outputs)
    data = {"images": _images((2, 6, 7, 3)), "labels": np.ones((2, 4), "float32")}
    out = model.predict(data, verbose=0)
    np.testing.assert_array_equal(out["images"], data["images"])  # predict: no augmentation
    np.testing.assert_array_equal(out["labels"], data["labels"])


# Keras's RandomRotation reads boxes as xyxy whatever the format: it is compared in xyxy only (and below).
@pytest.mark.parametrize("name,fmt", [(n, f) for n in ALL for f in ("xyxy", "rel_xyxy", "center_xywh", "yxyx")
                                      if n != "RandomRotation" or f == "xyxy"])
@pytest.mark.parametrize("batched", [True, False])
def test_bounding_boxes_match_keras(keras, name, fmt, batched):
    """Boxes move with their images (flips, shifts, zooms, turns), clipped, labels -1 where nothing is left."""
    from lamina.layers.bounding_boxes import convert_format  # lazy: the boxes' own module, used here only

    height, width = 10, 8
    boxes = _boxes(batched)
    boxes["boxes"] = convert_format(boxes["boxes"], "xyxy", fmt, height=height, width=width)
    images = _images((2, height, width, 3))
    draws = BOX_DRAWS[name] if batched else [[d[1]] for d in BOX_DRAWS[name]]
    data = {"images": images if batched else images[1], "bounding_boxes": boxes}
    kwargs = {**ARGS[name], "bounding_box_format": fmt}
    ours = _patched_call(getattr(lamina.layers, name)(**kwargs), draws, {**data, "bounding_boxes": dict(boxes)})
    theirs = _patched_call(getattr(keras.layers, name)(**kwargs), draws, {**data, "bounding_boxes": dict(boxes)},
                           keras.ops.convert_to_tensor)
    for key in ("boxes", "labels"):
        np.testing.assert_allclose(np.asarray(ours["bounding_boxes"][key]), _np(keras, theirs["bounding_boxes"][key]),
                                   rtol=1e-5, atol=1e-4, err_msg=key)


def test_rotated_boxes_in_other_formats_are_the_xyxy_boxes_converted():
    from lamina.layers.bounding_boxes import convert_format  # lazy: the boxes' own module, used here only

    images, boxes = _images((2, 10, 8, 3)), _boxes(True)
    out = {}
    for fmt in ("xyxy", "center_xywh"):
        given = {**boxes, "boxes": convert_format(boxes["boxes"], "xyxy", fmt, height=10, width=8)}
        layer = lamina.layers.RandomRotation(0.2, bounding_box_format=fmt)
        out[fmt] = _patched_call(layer, BOX_DRAWS["RandomRotation"], {"images": images, "bounding_boxes": given})
    np.testing.assert_allclose(convert_format(out["xyxy"]["bounding_boxes"]["boxes"], "xyxy", "center_xywh"),
                               out["center_xywh"]["bounding_boxes"]["boxes"], rtol=1e-5, atol=1e-4)


def test_bounding_boxes_need_a_format_and_an_images_key():
    data = {"images": _images((1, 5, 5, 3)), "bounding_boxes": {"boxes": np.array([[[1, 1, 3, 3]]], "float32"),
                                                                "labels": np.array([[0]])}}
    with pytest.raises(ValueError, match="bounding_box_format"):
        lamina.layers.RandomFlip()(data)
    with pytest.raises(ValueError, match="'images'"):
        lamina.layers.RandomFlip()({"pictures": data["images"]})
    out = lamina.layers.RandomFlip(bounding_box_format="xyxy")(data, training=False)
    np.testing.assert_array_equal(out["bounding_boxes"]["boxes"], data["bounding_boxes"]["boxes"])


# ---------------------------------------------------------------------------------- training switch, dtypes


@pytest.mark.parametrize("name", ALL)
def test_identity_outside_training_and_active_by_default(name):
    x = _images((4, 6, 8, 3))
    layer = getattr(lamina.layers, name)(**ARGS[name], seed=5)
    np.testing.assert_array_equal(layer(x, training=False), x)
    model = lamina.Sequential([lamina.Input((6, 8, 3)), layer])
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)
    assert any(not np.array_equal(layer(x), x) for _ in range(5)), "a direct call trains by default, as Keras's"
    assert any(not np.array_equal(layer(x, training=True), x) for _ in range(5))
    assert any(not np.array_equal(model(x), x) for _ in range(5)), "a model called directly augments, as Keras's"


@pytest.mark.parametrize("name", ALL)
def test_output_dtypes_match_keras(keras, name):
    x = np.random.default_rng(7).integers(0, 255, (2, 5, 6, 3)).astype("uint8")
    for training in (True, False):
        ours = getattr(lamina.layers, name)(**ARGS[name])(x, training=training)
        theirs = getattr(keras.layers, name)(**ARGS[name])(x, training=training)
        assert np.asarray(unwrap(ours)).dtype == _np(keras, theirs).dtype, training
    half = getattr(lamina.layers, name)(**ARGS[name], dtype="mixed_float16")(x.astype("float32"))
    assert np.asarray(unwrap(half)).dtype == np.float16


def test_fit_augments_and_predict_and_evaluate_do_not():
    calls = []
    layer = lamina.layers.RandomFlip(seed=2)
    original = layer.get_random_transformation

    def spy(data, training=True, seed=None):
        calls.append(training)
        return original(data, training=training)

    layer.get_random_transformation = spy
    model = lamina.Sequential([lamina.Input((4, 4, 1)), layer, lamina.layers.Flatten(), lamina.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = _images((8, 4, 4, 1)) / 255, np.zeros((8, 1), "float32")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, validation_data=(x, y))
    assert calls == [True, False]  # the training batch, then the validation batch
    calls.clear()
    model.predict(x, verbose=0)
    model.evaluate(x, y, verbose=0)
    assert calls == [False, False]


def _step_model(lib, name):
    return lib.Sequential([lib.Input((5, 6, 2)), lib.layers.Dense(3), getattr(lib.layers, name)(**ARGS[name]),
                           lib.layers.Flatten(), lib.layers.Dense(1)])


@pytest.mark.parametrize("name", ALL)
def test_one_training_step_matches_keras_on_the_same_draws(keras, name):
    """Dense -> augmentation -> Dense, one SGD step on identical weights and draws: the gradient flows back
    through the transformed images to the first Dense as in Keras."""
    x = np.random.default_rng(12).normal(size=(3, 5, 6, 2)).astype("float32") * 50 + 100
    y = np.random.default_rng(13).normal(size=(3, 1)).astype("float32")
    theirs, ours = _step_model(keras, name), _step_model(lamina, name)
    ours.set_weights(theirs.get_weights())
    first_kernel = theirs.get_weights()[0].copy()
    draws = [[[[[0.2]]], [[[0.9]]], [[[0.4]]]]] if name == "RandomFlip" else {
        "RandomRotation": [[33.0, -71.0, 12.0]], "RandomZoom": [[[0.8], [1.3], [1.0]], [[1.1], [0.7], [0.9]]],
        "RandomTranslation": [[[0.2], [-0.1], [0.4]], [[0.3], [0.1], [-0.2]]],
        "RandomContrast": [[[[[1.3]]], [[[0.8]]], [[[1.1]]]]]}[name]
    for model, convert in ((theirs, keras.ops.convert_to_tensor), (ours, np.asarray)):
        model.compile(optimizer="sgd", loss="mse")
        layer = model.layers[1]
        with unittest.mock.patch.object(layer.backend.random, "uniform", side_effect=_draws(draws, convert)):
            model.train_on_batch(x, y)
    assert not np.allclose(ours.get_weights()[0], first_kernel)  # the first Dense learned through the layer
    for mine, ref in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_earlier_layers(name):
    """The augmentation sits between trainable layers: its transform of the images is differentiated."""
    kwargs = {**ARGS[name], "value_range": (-1e6, 1e6)} if name == "RandomContrast" else ARGS[name]
    layer = getattr(lamina.layers, name)(**kwargs, seed=3, dtype="float64")
    x = _images((2, 5, 6, 2)).astype("float64") / 255
    tr = layer.get_random_transformation(x, training=True)
    gradcheck.check_gradients(lambda a: layer.transform_images(a, tr, training=True), x, float32=False)


# ---------------------------------------------------------------------------------- randomness


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_draws_and_successive_calls_differ(name):
    x = _images((3, 6, 7, 2))
    a, b = (getattr(lamina.layers, name)(**ARGS[name], seed=42) for _ in range(2))
    outs_a = [np.asarray(a(x)) for _ in range(3)]
    outs_b = [np.asarray(b(x)) for _ in range(3)]
    for oa, ob in zip(outs_a, outs_b):
        np.testing.assert_array_equal(oa, ob)
    assert not all(np.array_equal(outs_a[0], o) for o in outs_a[1:])
    other = getattr(lamina.layers, name)(**ARGS[name], seed=43)
    assert not all(np.array_equal(o, np.asarray(other(x))) for o in outs_a)


@pytest.mark.parametrize("name", ALL)
def test_a_seed_passed_to_get_random_transformation_overrides_the_layers(name):
    x = _images((3, 6, 7, 2))
    layer = getattr(lamina.layers, name)(**ARGS[name], seed=1)
    state = layer.generator.state.numpy().copy()
    first, again, other = (layer.get_random_transformation(x, training=True, seed=s) for s in (7, 7, 8))
    key = next(k for k, v in first.items() if isinstance(v, np.ndarray))
    np.testing.assert_array_equal(first[key], again[key])  # an int seed draws statelessly, as Keras's
    assert not np.array_equal(first[key], other[key])
    np.testing.assert_array_equal(layer.generator.state.numpy(), state)  # the layer's own stream is untouched


@pytest.mark.parametrize("name", ALL)
def test_copies_and_pickles_continue_the_stream(name):
    import copy  # lazy: this test only
    import pickle  # lazy: this test only

    x = _images((2, 5, 6, 2))
    layer = getattr(lamina.layers, name)(**ARGS[name], seed=21)
    layer(x)
    twins = [copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))]
    expected = np.asarray(layer(x))
    for twin in twins:
        np.testing.assert_array_equal(np.asarray(twin(x)), expected)


@pytest.mark.parametrize("name", ALL)
def test_unseeded_draws_follow_set_random_seed(name):
    x = _images((3, 6, 7, 2))
    layer = getattr(lamina.layers, name)(**ARGS[name])
    lamina.utils.set_random_seed(9)
    first = [np.asarray(layer(x)) for _ in range(2)]
    lamina.utils.set_random_seed(9)
    again = [np.asarray(layer(x)) for _ in range(2)]
    for f, g in zip(first, again):
        np.testing.assert_array_equal(f, g)


def _many(name, n=4000, **overrides):
    layer = getattr(lamina.layers, name)(**{**ARGS[name], **overrides}, seed=11)
    return layer.get_random_transformation(np.zeros((n, 2, 3, 1), "float32"), training=True)


def _uniform_ok(values, low, high):
    """All draws in [low, high], mean and spread those of U[low, high] (to 5 standard errors)."""
    values = np.asarray(values, "float64").ravel()
    assert values.min() >= low - 1e-4 and values.max() <= high + 1e-4
    n, width = values.size, high - low
    assert abs(values.mean() - (low + high) / 2) < 5 * width / np.sqrt(12 * n)
    assert abs(values.std() - width / np.sqrt(12)) < 0.05 * width


def test_draws_follow_their_distributions():
    flips = _many("RandomFlip")["flips"]
    assert flips.shape == (4000, 1, 1, 1) and flips.dtype == bool
    assert abs(flips.mean() - 0.5) < 5 * 0.5 / np.sqrt(4000)
    _uniform_ok(_many("RandomRotation")["angle"], -0.3 * 360, 0.2 * 360)
    zoom = _many("RandomZoom")
    _uniform_ok(zoom["height_zoom"], 0.6, 1.3)
    _uniform_ok(zoom["width_zoom"], 0.75, 1.25)
    same = _many("RandomZoom", width_factor=None)
    np.testing.assert_array_equal(same["height_zoom"], same["width_zoom"])  # aspect kept: one draw
    shifts = _many("RandomTranslation")["translations"]  # images 2 high, 3 wide
    _uniform_ok(shifts[:, 0], -0.2 * 3, 0.4 * 3)
    _uniform_ok(shifts[:, 1], -0.3 * 2, 0.3 * 2)
    _uniform_ok(_many("RandomContrast")["contrast_factor"], 1 - 0.3, 1 + 0.6)
    _uniform_ok(_many("RandomContrast", factor=0.5)["contrast_factor"], 1.0, 1.5)  # Keras: a number f is (0, f)


# ---------------------------------------------------------------------------------- config and files

CONFIGS = [
    ("RandomFlip", {"mode": "vertical", "seed": 4, "data_format": "channels_first"}),
    ("RandomRotation", {"factor": 0.2, "fill_mode": "constant", "interpolation": "nearest", "fill_value": 2.5,
                        "seed": 1}),
    ("RandomRotation", {"factor": (-0.1, 0.3)}),
    ("RandomZoom", {"height_factor": (-0.3, 0.2), "width_factor": None, "fill_mode": "wrap"}),
    ("RandomZoom", {"height_factor": 0.1, "width_factor": 0.4, "seed": 8, "data_format": "channels_first"}),
    ("RandomTranslation", {"height_factor": 0.1, "width_factor": (-0.3, 0.2), "fill_mode": "nearest"}),
    ("RandomContrast", {"factor": 0.4, "value_range": (0, 1), "seed": 3}),
    ("RandomContrast", {"factor": (0.1, 0.2), "bounding_box_format": "xyxy"}),
]


def _own(config):
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items() if k not in ("name", "dtype")}


@pytest.mark.parametrize("name,kwargs", CONFIGS)
def test_config_equals_keras_and_round_trips(keras, name, kwargs):
    ours = getattr(lamina.layers, name)(**kwargs)
    theirs = getattr(keras.layers, name)(**kwargs)
    assert _own(ours.get_config()) == _own(theirs.get_config())
    again = type(ours).from_config(ours.get_config())
    assert again.get_config() == ours.get_config()
    assert getattr(keras.layers, name).from_config(ours.get_config()).get_config()["seed"] == kwargs.get("seed")


def _keras_model(keras):
    return keras.Sequential([
        keras.Input((6, 5, 3)), keras.layers.RandomFlip("horizontal", seed=3),
        keras.layers.RandomRotation(0.1, fill_mode="constant", seed=4), keras.layers.RandomZoom(0.2, 0.1, seed=5),
        keras.layers.RandomTranslation((-0.1, 0.2), 0.1, interpolation="nearest", seed=6),
        keras.layers.RandomContrast((0.1, 0.3), value_range=(0, 1), seed=7), keras.layers.Flatten(),
        keras.layers.Dense(2)])


def test_keras_files_both_ways(keras, tmp_path):
    x = _images((2, 6, 5, 3)) / 255
    theirs = _keras_model(keras)
    theirs.save(tmp_path / "keras.keras")
    ours = lamina.saving.load_model(tmp_path / "keras.keras")
    assert [type(la).__name__ for la in ours.layers][:5] == ["RandomFlip", "RandomRotation", "RandomZoom",
                                                               "RandomTranslation", "RandomContrast"]
    for mine, ref in zip(ours.layers[:5], theirs.layers[:5]):
        assert _own(mine.get_config()) == _own(ref.get_config())
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-4, atol=1e-6)
    ours.save(tmp_path / "lamina.keras")
    back = keras.models.load_model(tmp_path / "lamina.keras")
    for mine, ref in zip(ours.layers[:5], back.layers[:5]):
        assert _own(mine.get_config()) == _own(ref.get_config())
    np.testing.assert_allclose(back.predict(x, verbose=0), ours.predict(x, verbose=0), rtol=1e-4, atol=1e-6)


def test_public_names():
    for name in ALL:
        assert getattr(lamina.layers, name).__name__ == name
        assert name in lamina.layers.__all__
        assert lamina.layers.deserialize(lamina.layers.serialize(getattr(lamina.layers, name)(**ARGS[name]))) \
            .__class__.__name__ == name


# ---------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name,kwargs,error", [
    ("RandomRotation", {"factor": 1.5}, ValueError),
    ("RandomRotation", {"factor": (0.1, 0.2, 0.3)}, ValueError),
    ("RandomRotation", {"factor": "big"}, ValueError),
    ("RandomRotation", {"factor": 0.1, "fill_mode": "edge"}, NotImplementedError),
    ("RandomRotation", {"factor": 0.1, "interpolation": "bicubic"}, NotImplementedError),
    ("RandomZoom", {"height_factor": -1.0}, ValueError),
    ("RandomZoom", {"height_factor": 0.2, "width_factor": 1.2}, ValueError),
    ("RandomZoom", {"height_factor": (0.1, 0.2, 0.3)}, ValueError),
    ("RandomZoom", {"height_factor": 0.2, "fill_mode": "mirror"}, NotImplementedError),
    ("RandomTranslation", {"height_factor": 1.5, "width_factor": 0.1}, ValueError),
    ("RandomTranslation", {"height_factor": 0.1, "width_factor": (-2.0, 0.1)}, ValueError),
    ("RandomTranslation", {"height_factor": 0.1, "width_factor": 0.1, "interpolation": "area"},
     NotImplementedError),
    ("RandomContrast", {"factor": 1.5}, ValueError),
    ("RandomContrast", {"factor": -0.2}, ValueError),
    ("RandomContrast", {"factor": None}, ValueError),
    ("RandomFlip", {"mode": "horizontal", "data_format": "channels_middle"}, ValueError),
])
def test_bad_arguments_raise_like_keras(keras, name, kwargs, error):
    with pytest.raises(error):
        getattr(keras.layers, name)(**kwargs)
    with pytest.raises(error, match="Received"):
        getattr(lamina.layers, name)(**kwargs)


def test_lamina_refuses_what_keras_would_silently_ignore():
    with pytest.raises(ValueError, match="mode"):  # Keras accepts any string and never flips
        lamina.layers.RandomFlip(mode="diagonal")
    with pytest.raises(ValueError, match="seed"):
        lamina.layers.RandomRotation(0.2, seed="abc")
    with pytest.raises(ValueError, match="value_range"):
        lamina.layers.RandomContrast(0.2, value_range=(255, 0))


@pytest.mark.parametrize("name", ALL)
def test_wrong_rank_raises_like_keras(keras, name):
    x = np.zeros((2, 3, 4, 5, 1), "float32")
    with pytest.raises(ValueError):
        getattr(keras.layers, name)(**ARGS[name])(x)
    with pytest.raises(ValueError, match=r"rank 3 .* or 4 .*Received: data.shape=\(2, 3, 4, 5, 1\)"):
        getattr(lamina.layers, name)(**ARGS[name])(x)
