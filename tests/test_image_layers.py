"""Resizing, CenterCrop, Rescaling and SpatialDropout1D/2D/3D against real Keras 3 (torch backend): forward
values and input gradients, central differences in float64, configs both ways, `.keras` files both ways,
integer images, unbatched images, and bad-argument errors."""

import itertools
import json

import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.layers import bounding_boxes
from lamina.layers.image_resize import resize_matrix
from tests.helpers import check_layer_gradients, keras_forward_and_grads, lamina_forward_and_grads, random_inputs

FORMATS = ("channels_last", "channels_first")


def _layout(shape, data_format):
    """A channels-last image shape (rank 3 or 4) in ``data_format``."""
    if data_format == "channels_last":
        return tuple(shape)
    return (*shape[:-3], shape[-1], *shape[-3:-1])


def _own(config: dict) -> dict:
    """The layer's own config keys, JSON-normalised (names and dtype policies differ by library)."""
    return {k: v for k, v in json.loads(json.dumps(config)).items() if k not in ("name", "dtype")}


# ------------------------------------------------------------------------------------------- Resizing

RESIZE_CASES = [
    (interp, crop_pad, antialias, fmt, size)
    for interp, crop_pad, antialias, fmt, size in itertools.product(
        ("nearest", "bilinear", "bicubic"), ("none", "crop", "pad"), (False, True), FORMATS, ((4, 5), (11, 6)))
]


def _resize_kwargs(interp, crop_pad, antialias, fmt, size):
    return {"height": size[0], "width": size[1], "interpolation": interp, "antialias": antialias,
            "crop_to_aspect_ratio": crop_pad == "crop", "pad_to_aspect_ratio": crop_pad == "pad",
            "fill_value": 0.5, "data_format": fmt}


@pytest.mark.parametrize("interp,crop_pad,antialias,fmt,size", RESIZE_CASES,
                         ids=["-".join(map(str, c)) for c in RESIZE_CASES])
def test_resizing_forward_and_input_gradient_match_keras(keras, interp, crop_pad, antialias, fmt, size):
    kwargs = _resize_kwargs(interp, crop_pad, antialias, fmt, size)
    ours, theirs = layers.Resizing(**kwargs), keras.layers.Resizing(**kwargs)
    x = random_inputs(_layout((2, 7, 9, 3), fmt))
    out_shape = ours.compute_output_shape(x.shape)
    proj = random_inputs(out_shape, seed=4)
    ky, kdx, _ = keras_forward_and_grads(theirs, x, proj)
    ly, ldx, _ = lamina_forward_and_grads(ours, x, proj)
    assert ly.shape == ky.shape == out_shape and ly.dtype == np.float32
    np.testing.assert_allclose(ly, ky, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ldx, kdx, rtol=1e-4, atol=1e-5)
    # one image (rank 3) is resized as a batch of one
    np.testing.assert_allclose(ours(x[0]), ly[0], rtol=1e-6, atol=1e-6)
    assert tuple(ours.compute_output_shape(x.shape[1:])) == tuple(theirs.compute_output_shape(x.shape[1:]))


@pytest.mark.parametrize("n_in,n_out", [(n_in, n_out) for n_in in (1, 2, 3, 5, 8, 13) for n_out in (1, 2, 4, 7, 16)])
def test_resize_weights_match_torch_for_many_sizes(keras, n_in, n_out):
    import torch  # lazy: the oracle's backend
    import torch.nn.functional as F  # lazy: the oracle

    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, 1, n_in, 1).repeat(1, 1, 1, 3)
    for interp, mode in (("nearest", "nearest-exact"), ("bilinear", "bilinear"), ("bicubic", "bicubic")):
        for antialias in ((False,) if interp == "nearest" else (False, True)):
            corners = None if interp == "nearest" else False
            theirs = F.interpolate(eye, size=(n_out, 3), mode=mode, align_corners=corners, antialias=antialias)
            np.testing.assert_allclose(resize_matrix(n_in, n_out, interp, antialias),
                                       theirs.numpy()[:, 0, :, 1].T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("interp", ["lanczos3", "lanczos5"])
def test_lanczos_matches_keras_scale_and_translate(keras, interp, antialias):
    # Keras's torch backend has no lanczos; its NumPy backend's resize is the reference. Importing that
    # module rebinds `keras.src.backend.numpy` (the torch backend's numpy ops): put it back afterwards.
    # That backend resizes through jax, which the dev extra does not install (CI skips this oracle).
    pytest.importorskip("jax", reason="Keras's lanczos resize (NumPy backend) runs on jax, which is not installed")
    import keras.src.backend as keras_backend  # lazy: the oracle

    torch_numpy = keras_backend.numpy
    try:
        from keras.src.backend.numpy import image as numpy_image  # lazy: the oracle, NumPy backend module
    finally:
        keras_backend.numpy = torch_numpy

    x = random_inputs((2, 9, 7, 2))
    for size in ((4, 5), (15, 12), (9, 3)):
        theirs = numpy_image.resize(x, size, interpolation=interp, antialias=antialias, data_format="channels_last")
        ours = layers.Resizing(*size, interpolation=interp, antialias=antialias)(x)
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs", [
    {"interpolation": "bilinear"}, {"interpolation": "bicubic", "antialias": True},
    {"interpolation": "nearest", "crop_to_aspect_ratio": True}, {"pad_to_aspect_ratio": True, "fill_value": 3.0},
    {"interpolation": "lanczos3", "antialias": True, "data_format": "channels_first"},
])
def test_resizing_gradients_match_central_differences(kwargs):
    fmt = kwargs.get("data_format", "channels_last")
    for size in ((3, 4), (8, 5)):
        layer = layers.Resizing(*size, **kwargs, dtype="float64")
        check_layer_gradients(layer, random_inputs(_layout((2, 5, 6, 2), fmt), dtype="float64"))


@pytest.mark.parametrize("interp", ["nearest", "bilinear", "bicubic"])
@pytest.mark.parametrize("dtype", ["uint8", "int32"])
def test_integer_images_come_back_rounded_in_their_dtype(keras, interp, dtype):
    x = np.random.default_rng(2).integers(0, 256, (2, 9, 7, 3)).astype(dtype)
    theirs = keras.ops.convert_to_numpy(keras.layers.Resizing(5, 11, interpolation=interp)(x))
    ours = layers.Resizing(5, 11, interpolation=interp)(x)
    assert ours.dtype == theirs.dtype == np.dtype(dtype)
    # float32 sums in another order may round a value lying at k + 0.5 the other way: at most 1 apart
    assert np.abs(ours.astype(np.int64) - theirs.astype(np.int64)).max() <= 1
    assert np.mean(ours == theirs) > 0.99


def test_resizing_numbers_on_a_small_image():
    img = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(layers.Resizing(2, 2, interpolation="nearest")(img)[0, ..., 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(layers.Resizing(2, 2)(img)[0, ..., 0], [[2.5, 4.5], [10.5, 12.5]])
    padded = layers.Resizing(2, 4, pad_to_aspect_ratio=True, fill_value=-1, interpolation="nearest")(img)
    np.testing.assert_array_equal(padded[0, ..., 0], [[-1, 5, 7, -1], [-1, 13, 15, -1]])
    cropped = layers.Resizing(4, 2, crop_to_aspect_ratio=True, interpolation="nearest")(img)
    np.testing.assert_array_equal(cropped[0, ..., 0], [[1, 2], [5, 6], [9, 10], [13, 14]])


def test_resizing_dict_inputs_resize_masks_with_nearest():
    images = random_inputs((2, 6, 6, 3))
    masks = np.random.default_rng(0).integers(0, 4, (2, 6, 6, 1)).astype("float32")
    out = layers.Resizing(3, 3, interpolation="bilinear")({"images": images, "segmentation_masks": masks,
                                                           "labels": np.array([1, 2])})
    np.testing.assert_allclose(out["images"], layers.Resizing(3, 3)(images))
    np.testing.assert_array_equal(out["segmentation_masks"], layers.Resizing(3, 3, interpolation="nearest")(masks))
    np.testing.assert_array_equal(out["labels"], [1, 2])
    with pytest.raises(ValueError, match="didn't specify a bounding box format.*Received: bounding_box_format=None"):
        layers.Resizing(3, 3)({"images": images, "bounding_boxes": {"boxes": np.zeros((2, 1, 4)), "labels": [1]}})
    with pytest.raises(ValueError, match="keys 'boxes' and 'labels'"):
        layers.Resizing(3, 3, bounding_box_format="xyxy")({"images": images, "bounding_boxes": {"boxes": [1]}})
    with pytest.raises(ValueError, match="dense arrays.*ragged"):
        layers.Resizing(3, 3, bounding_box_format="xyxy")(
            {"images": images, "bounding_boxes": {"boxes": [[[1, 1, 2, 2]], []], "labels": [[1], []]}})


def test_bounding_box_formats_convert_as_keras(keras):
    from keras.src.layers.preprocessing.image_preprocessing.bounding_boxes import converters  # lazy: the oracle

    boxes = np.random.default_rng(0).uniform(0, 1, (2, 5, 4)).astype("float32")
    for source, target in itertools.product(bounding_boxes.FORMATS, bounding_boxes.FORMATS):
        theirs = keras.ops.convert_to_numpy(converters.convert_format(boxes.copy(), source, target, height=7, width=9))
        ours = bounding_boxes.convert_format(boxes, source, target, height=7, width=9)
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7, err_msg=f"{source} -> {target}")
    with pytest.raises(ValueError, match="Invalid source or target format"):
        bounding_boxes.convert_format(boxes, "xyxy", "corners")
    with pytest.raises(ValueError, match="must receive `height` and `width`"):
        bounding_boxes.convert_format(boxes, "xyxy", "rel_xyxy")


BOX_CASES = [
    ("Resizing", {"height": 20, "width": 20}, (10, 8, 3)),
    ("Resizing", {"height": 20, "width": 20, "pad_to_aspect_ratio": True}, (10, 8, 3)),
    ("Resizing", {"height": 20, "width": 20, "crop_to_aspect_ratio": True}, (10, 8, 3)),
    ("Resizing", {"height": 6, "width": 15, "crop_to_aspect_ratio": True}, (2, 10, 8, 3)),
    ("Resizing", {"height": 6, "width": 15, "pad_to_aspect_ratio": True, "data_format": "channels_first"},
     (2, 3, 10, 8)),
    ("CenterCrop", {"height": 5, "width": 5}, (10, 8, 3)),
    ("CenterCrop", {"height": 20, "width": 20}, (10, 8, 3)),
    ("CenterCrop", {"height": 4, "width": 12, "data_format": "channels_first"}, (2, 3, 10, 8)),
]


@pytest.mark.parametrize("fmt", ["xyxy", "center_yxhw", "rel_xywh"])
@pytest.mark.parametrize("name,kwargs,shape", BOX_CASES, ids=[f"{n}-{k}-{s}" for n, k, s in BOX_CASES])
def test_bounding_boxes_move_with_the_image_as_in_keras(keras, name, kwargs, shape, fmt):
    rng = np.random.default_rng(3)
    batch = (shape[0],) if len(shape) == 4 else ()
    xyxy = np.sort(rng.uniform(-2, 11, (*batch, 5, 2, 2)), axis=-2).transpose(
        *range(len(batch) + 1), -1, -2).reshape(*batch, 5, 4)
    xyxy[..., 0, :] = 0  # a padding entry
    height, width = (shape[-2], shape[-1]) if kwargs.get("data_format") == "channels_first" else shape[-3:-1]
    boxes = bounding_boxes.convert_format(xyxy, "xyxy", fmt, height=height, width=width)
    labels = rng.integers(0, 3, (*batch, 5))

    def run(lib):
        data = {"images": random_inputs(shape), "labels": np.arange(2),
                "bounding_boxes": {"boxes": boxes.copy(), "labels": labels.copy()}}
        out = getattr(lib.layers, name)(**kwargs, bounding_box_format=fmt)(data)
        return {k: keras.ops.convert_to_numpy(v) for k, v in out["bounding_boxes"].items()}, out

    theirs, _ = run(keras)
    ours, out = run(lamina)
    np.testing.assert_allclose(ours["boxes"], theirs["boxes"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ours["labels"], theirs["labels"])
    assert out["images"].shape == getattr(layers, name)(**kwargs).compute_output_shape(shape)


# ----------------------------------------------------------------------------------------- CenterCrop

CROP_CASES = [(size, fmt, batched) for size in ((4, 5), (3, 9), (7, 2), (10, 4), (8, 12), (2, 2))
              for fmt in FORMATS for batched in (True, False)]


@pytest.mark.parametrize("size,fmt,batched", CROP_CASES, ids=[str(c) for c in CROP_CASES])
def test_center_crop_matches_keras(keras, size, fmt, batched):
    ours, theirs = layers.CenterCrop(*size, data_format=fmt), keras.layers.CenterCrop(*size, data_format=fmt)
    x = random_inputs(_layout((2, 7, 9, 3), fmt))
    x = x if batched else x[0]
    proj = random_inputs(ours.compute_output_shape(x.shape), seed=4)
    ky, kdx, _ = keras_forward_and_grads(theirs, x, proj)
    ly, ldx, _ = lamina_forward_and_grads(ours, x, proj)
    assert ly.shape == ky.shape
    np.testing.assert_allclose(ly, ky, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ldx, kdx, rtol=1e-4, atol=1e-5)
    assert tuple(ours.compute_output_shape(x.shape)) == tuple(theirs.compute_output_shape(x.shape))


def test_center_crop_window_and_dtype():
    img = np.arange(5 * 6, dtype="uint8").reshape(5, 6, 1)
    out = layers.CenterCrop(3, 3)(img)
    assert out.dtype == np.float32  # Keras casts to the compute dtype
    np.testing.assert_array_equal(out[..., 0], np.arange(30).reshape(5, 6)[1:4, 1:4])


@pytest.mark.parametrize("size", [(3, 4), (9, 4)])
def test_center_crop_gradients_match_central_differences(size):
    check_layer_gradients(layers.CenterCrop(*size, dtype="float64"), random_inputs((2, 6, 7, 2), dtype="float64"))


# ------------------------------------------------------------------------------------------- Rescaling

@pytest.mark.parametrize("kwargs,dtype", [
    ({"scale": 1 / 255}, "uint8"), ({"scale": 1 / 127.5, "offset": -1}, "float32"),
    ({"scale": [0.5, 2.0, -1.0], "offset": [1.0, 0.0, 2.0]}, "float32"), ({"scale": 2, "offset": 1}, "int32"),
    ({"scale": np.array([1.0, 2.0, 3.0])}, "float64"),
])
def test_rescaling_matches_keras(keras, kwargs, dtype):
    ours, theirs = layers.Rescaling(**kwargs), keras.layers.Rescaling(**kwargs)
    x = (random_inputs((2, 4, 5, 3)) * 50 + 100).astype(dtype)
    ly, ky = ours(x), keras.ops.convert_to_numpy(theirs(x))
    assert ly.dtype == ky.dtype == np.float32
    np.testing.assert_allclose(ly, ky, rtol=1e-6, atol=1e-6)
    # configs both ways (a NumPy scale is Keras's __numpy__ entry)
    assert _own(ours.get_config()) == _own(theirs.get_config())
    np.testing.assert_allclose(layers.Rescaling.from_config(json.loads(json.dumps(theirs.get_config())))(x), ky,
                               rtol=1e-6)
    again = keras.layers.Rescaling.from_config(json.loads(json.dumps(ours.get_config())))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(x)), ky, rtol=1e-6)


def test_rescaling_channels_first_scale_meets_the_channel_axis(keras):
    x = random_inputs((2, 3, 4, 5))
    keras.config.set_image_data_format("channels_first")
    lamina.config.set_image_data_format("channels_first")
    try:
        ky = keras.ops.convert_to_numpy(keras.layers.Rescaling([1.0, 2.0, 3.0])(x))
        ly = layers.Rescaling([1.0, 2.0, 3.0])(x)
    finally:
        keras.config.set_image_data_format("channels_last")
        lamina.config.set_image_data_format("channels_last")
    np.testing.assert_allclose(ly, ky, rtol=1e-6)
    np.testing.assert_allclose(ly, x * np.array([1.0, 2.0, 3.0], "float32")[:, None, None])


def test_rescaling_gradient_and_mask():
    check_layer_gradients(layers.Rescaling([0.5, -2.0], offset=1.0, dtype="float64"),
                          random_inputs((3, 4, 2), dtype="float64"))
    assert layers.Rescaling(2.0).supports_masking


def test_rescaling_bad_scale():
    with pytest.raises(ValueError, match="Rescaling.*`scale`.*Received: scale='big'"):
        layers.Rescaling("big")
    with pytest.raises(ValueError, match=r"must broadcast against the inputs.*Received: inputs of shape \(2, 4, 3\)"):
        layers.Rescaling([1.0, 2.0])(np.ones((2, 4, 3), "float32"))


# -------------------------------------------------------------------------------------- SpatialDropout

DROPOUT_CASES = [("SpatialDropout1D", {}, (4, 6, 8))] + [
    (name, {"data_format": fmt}, _layout(shape, fmt) if fmt == "channels_last" else
     (shape[0], shape[-1], *shape[1:-1]))
    for name, shape in (("SpatialDropout2D", (4, 5, 6, 8)), ("SpatialDropout3D", (4, 3, 4, 5, 8)))
    for fmt in FORMATS]


def _channel_axis(name, kwargs):
    return 1 if kwargs.get("data_format") == "channels_first" else -1


@pytest.mark.parametrize("name,kwargs,shape", DROPOUT_CASES, ids=[f"{n}-{k}" for n, k, _ in DROPOUT_CASES])
def test_spatial_dropout_drops_whole_channels(name, kwargs, shape):
    layer = getattr(layers, name)(0.4, seed=3, **kwargs)
    x = random_inputs(shape) + 5.0  # no zeros of its own
    np.testing.assert_array_equal(layer(x), x)  # inference: unchanged
    np.testing.assert_array_equal(layer(x, training=False), x)
    y = layer(x, training=True)
    dropped = y == 0
    np.testing.assert_allclose(y[~dropped], x[~dropped] / 0.6, rtol=1e-6)
    # one decision per (sample, channel), the same at every spatial position
    c_axis = _channel_axis(name, kwargs) % len(shape)
    spatial = tuple(i for i in range(1, len(shape)) if i != c_axis)
    np.testing.assert_array_equal(dropped.all(axis=spatial), dropped.any(axis=spatial))
    assert 0 < np.mean(dropped) < 1
    # seeded: a new layer with the same seed draws the same masks; the stream advances call after call
    again = getattr(layers, name)(0.4, seed=3, **kwargs)
    np.testing.assert_array_equal(again(x, training=True), y)
    assert not np.array_equal(layer(x, training=True), y)


def test_spatial_dropout_rate_statistics_and_gradient():
    layer = layers.SpatialDropout2D(0.3, seed=1)
    x = np.ones((400, 2, 2, 50), "float32")
    y = layer(x, training=True)
    assert abs(np.mean(y[:, 0, 0, :] == 0) - 0.3) < 0.02
    np.testing.assert_allclose(np.mean(y), 1.0, atol=0.03)  # inverted dropout keeps the mean
    with lamina.GradientTape() as tape:
        xs = lamina.Variable(random_inputs((3, 4, 4, 5)))
        out = layer(xs, training=True)
        loss = lamina.ops.sum(out)
    grad = tape.gradient(loss, xs)
    np.testing.assert_allclose(grad, np.asarray(out) / np.asarray(xs.numpy()), rtol=1e-5)


@pytest.mark.parametrize("name,kwargs,shape", DROPOUT_CASES, ids=[f"{n}-{k}" for n, k, _ in DROPOUT_CASES])
def test_spatial_dropout_config_matches_keras(keras, name, kwargs, shape):
    ours, theirs = getattr(layers, name)(0.25, seed=7, **kwargs), getattr(keras.layers, name)(0.25, seed=7, **kwargs)
    assert json.loads(json.dumps(ours.get_config())) == {**theirs.get_config(), "name": ours.name}
    assert getattr(keras.layers, name).from_config(ours.get_config()).get_config()["rate"] == 0.25
    assert getattr(layers, name).from_config(theirs.get_config()).get_config() == {**theirs.get_config()}
    x = random_inputs(shape)
    np.testing.assert_array_equal(ours(x), keras.ops.convert_to_numpy(theirs(x)))  # inference: identity both


def test_spatial_dropout_bad_arguments_like_keras(keras):
    for kwargs in ({"rate": 1.5}, {"rate": -0.1}):
        with pytest.raises(ValueError):
            keras.layers.SpatialDropout1D(**kwargs)
        with pytest.raises(ValueError, match="rate.*Received: rate="):
            layers.SpatialDropout1D(**kwargs)
    with pytest.raises(TypeError):
        keras.layers.SpatialDropout1D(0.5, noise_shape=(1, 1, 1))
    with pytest.raises(TypeError):
        layers.SpatialDropout1D(0.5, noise_shape=(1, 1, 1))
    with pytest.raises(ValueError, match="data_format.*Received: data_format='nhwc'"):
        layers.SpatialDropout2D(0.5, data_format="nhwc")
    with pytest.raises(ValueError, match="ndim"):
        layers.SpatialDropout2D(0.5)(np.zeros((2, 3, 4), "float32"))


# --------------------------------------------------------------------------- configs, files and errors

CONFIG_LAYERS = [
    ("Resizing", {"height": 5, "width": 4, "interpolation": "bicubic", "antialias": True,
                  "data_format": "channels_first"}, (2, 3, 7, 6)),
    ("Resizing", {"height": 6, "width": 3, "pad_to_aspect_ratio": True, "fill_value": 2.0}, (2, 7, 6, 3)),
    ("Resizing", {"height": 3, "width": 3, "crop_to_aspect_ratio": True, "interpolation": "nearest"}, (2, 7, 6, 3)),
    ("CenterCrop", {"height": 3, "width": 4}, (2, 7, 6, 3)),
    ("CenterCrop", {"height": 9, "width": 4, "data_format": "channels_first"}, (2, 3, 7, 6)),
    ("Rescaling", {"scale": 0.5, "offset": [1.0, 2.0, 3.0]}, (2, 7, 6, 3)),
    ("SpatialDropout2D", {"rate": 0.5, "seed": 2}, (2, 7, 6, 3)),
    ("SpatialDropout3D", {"rate": 0.5, "data_format": "channels_first"}, (2, 3, 2, 7, 6)),
    ("SpatialDropout1D", {"rate": 0.1}, (2, 7, 6)),
]
CONFIG_IDS = [f"{n}-{i}" for i, (n, _, _) in enumerate(CONFIG_LAYERS)]


@pytest.mark.parametrize("name,kwargs,shape", CONFIG_LAYERS, ids=CONFIG_IDS)
def test_configs_equal_keras_both_ways(keras, name, kwargs, shape):
    ours, theirs = getattr(layers, name)(**kwargs), getattr(keras.layers, name)(**kwargs)
    assert _own(ours.get_config()) == _own(theirs.get_config())
    assert list(ours.get_config()) == list(theirs.get_config())  # same keys in the same order
    assert _own(getattr(layers, name).from_config(theirs.get_config()).get_config()) == _own(theirs.get_config())
    assert _own(getattr(keras.layers, name).from_config(ours.get_config()).get_config()) == _own(theirs.get_config())
    x = random_inputs(shape)
    np.testing.assert_allclose(ours(x), keras.ops.convert_to_numpy(theirs(x)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,kwargs,shape", CONFIG_LAYERS, ids=CONFIG_IDS)
def test_keras_files_both_ways(keras, tmp_path, name, kwargs, shape):
    x = random_inputs(shape)
    theirs = keras.Sequential([keras.Input(shape[1:]), getattr(keras.layers, name)(**kwargs), keras.layers.Dense(2)])
    theirs.save(str(tmp_path / "k.keras"))
    ours = lamina.saving.load_model(str(tmp_path / "k.keras"))
    assert type(ours.layers[0]).__name__ == name
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    ours.save(str(tmp_path / "l.keras"))
    back = keras.saving.load_model(str(tmp_path / "l.keras"))
    assert type(back.layers[0]).__name__ == name
    np.testing.assert_allclose(back.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs,message", [
    ({"interpolation": "area"}, "interpolation.*Received: interpolation='area'"),
    ({"fill_mode": "reflect"}, "Only `'constant'` is supported. Received: fill_mode='reflect'"),
    ({"crop_to_aspect_ratio": True, "pad_to_aspect_ratio": True}, "Only one of `pad_to_aspect_ratio`"),
    ({"factor": 2}, "does not take a `factor` argument. Received: factor=2"),
])
def test_resizing_bad_arguments_fail_as_in_keras(keras, kwargs, message):
    x = random_inputs((1, 4, 4, 1))
    with pytest.raises(ValueError, match=message.split(".")[0]):
        keras.layers.Resizing(2, 2, **kwargs)(x)
    with pytest.raises(ValueError, match=message):
        layers.Resizing(2, 2, **kwargs)


@pytest.mark.parametrize("name", ["Resizing", "CenterCrop"])
def test_image_layers_refuse_bad_sizes_and_ranks(name):
    for bad in (0, -3, 2.5, "4", True):
        with pytest.raises(ValueError, match=f"{name}: argument `height` must be a positive integer"):
            getattr(layers, name)(bad, 3)
    with pytest.raises(ValueError, match=r"rank 3 \(single image\) or 4.*Received: data.shape=\(2, 3, 4, 5, 6\)"):
        getattr(layers, name)(2, 2)(np.zeros((2, 3, 4, 5, 6), "float32"))
    with pytest.raises(ValueError, match="size 3 \\(unbatched\\) or 4"):
        getattr(layers, name)(2, 2).compute_output_shape((2, 3))
    with pytest.raises(ValueError, match="data_format"):
        getattr(layers, name)(2, 2, data_format="nchw")


def test_symbolic_model_with_image_layers_trains():
    inputs = layers.Input((9, 8, 3))
    h = layers.Rescaling(1 / 255)(inputs)
    h = layers.Resizing(6, 6)(h)
    h = layers.CenterCrop(4, 4)(h)
    h = layers.SpatialDropout2D(0.2, seed=1)(h)
    model = lamina.Model(inputs, layers.Dense(1)(layers.Flatten()(h)))
    assert model.output_shape == (None, 1)
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).integers(0, 255, (8, 9, 8, 3)).astype("float32")
    history = model.fit(x, np.ones((8, 1)), epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
