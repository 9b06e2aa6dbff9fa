"""The base of Keras's image augmentation layers (``RandomFlip``, ``RandomRotation``, ``RandomZoom``,
``RandomTranslation``, ``RandomContrast``): one random draw per image, applied in training only.

A call splits in two, as in Keras: ``get_random_transformation(data, training)`` draws this call's
parameters (a dict of arrays, ``None`` outside training) and ``transform_images(images, transformation,
training)`` applies them, deterministically. Inputs are an image ``(height, width, channels)``, a batch
``(batch, height, width, channels)`` (channels second with ``data_format="channels_first"``), or a dict
with ``"images"`` and optionally ``"labels"`` (unchanged), ``"segmentation_masks"`` (moved with the images,
read with ``"nearest"``) and ``"bounding_boxes"`` (``{"boxes", "labels"}`` in ``bounding_box_format``, dense:
the same number of boxes per image).

``training``: the call's own default is ``True``, as Keras's (a layer called directly, or inside a model
called directly, augments); ``fit`` passes ``True`` and ``predict``/``evaluate`` pass ``False``, where
the images pass through (cast to the compute dtype but by RandomContrast, as Keras's). ``training=None`` is the
default: lamina's models hand ``None`` down where Keras's leave the argument out.

``seed``: an int gives the layer its own :class:`~lamina.random.SeedGenerator` (``generator``), so two
layers with the same seed draw the same transformations call after call; without one the draws come
from lamina's global generator (``lamina.utils.set_random_seed`` governs them), as lamina's Dropout.
The streams are NumPy's, so the draws differ from Keras's; the transformations made from given draws
are Keras's.
"""

from __future__ import annotations

import math
import types

import numpy as np

from lamina import backend as _backend
from lamina import ops, random
from lamina.autodiff import unwrap
from lamina.layers import affine_transform as _affine
from lamina.layers.bounding_boxes import dense_bounding_boxes
from lamina.layers.layer import Layer

# What Keras's data layers reach through ``self.backend``: lamina's ops, random draws and image functions
# (Keras's tests patch ``layer.backend.random.uniform`` to fix a draw; the layers here draw through it).
BACKEND = types.SimpleNamespace(
    numpy=ops, random=random, image=types.SimpleNamespace(affine_transform=_affine.affine_transform),
    shape=ops.shape, cast=ops.cast, convert_to_tensor=ops.convert_to_tensor, name=_backend.backend(),
    core=types.SimpleNamespace(shape=ops.shape),
)

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("nearest", "bilinear")


def standardize_data_format(data_format, owner: str) -> str:
    """``None`` is ``keras.config.image_data_format()``."""
    if data_format is None:
        return _backend.image_data_format()
    value = str(data_format).lower()
    if value not in ("channels_last", "channels_first"):
        raise ValueError(f"The `data_format` argument of {owner} must be one of 'channels_first', 'channels_last'. "
                         f"Received: data_format={data_format!r}")
    return value


def is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_choice(value, choices: tuple, argument: str, owner: str) -> str:
    """Keras raises NotImplementedError for a ``fill_mode`` or ``interpolation`` it does not know."""
    if value not in choices:
        raise NotImplementedError(f"Unknown `{argument}` {value} for {owner}. Expected one of {choices}. "
                                  f"Received: {argument}={value!r}")
    return value


def spatial_size(shape: tuple, data_format: str) -> tuple:
    """``(height, width)`` of an image or a batch of images."""
    return (shape[-2], shape[-1]) if data_format == "channels_first" else (shape[-3], shape[-2])


class BaseImagePreprocessingLayer(Layer):
    """Shared by the augmentation layers: the ``factor`` argument (``_USE_BASE_FACTOR``), dict inputs,
    unbatched images, the ``training`` switch and the affine matrix of rotations.

    ``factor``: a number ``f`` (the range ``[-|f|, |f|]`` clipped to ``_FACTOR_BOUNDS``) or two numbers
    ``(lower, upper)``, stored as the pair ``self.factor``.
    """

    _USE_BASE_FACTOR = True
    _tf_data_inputs = "compute_dtype"  # runs inside tf.data, inputs cast as Keras's DataLayer (tf_data_bridge)
    _FACTOR_BOUNDS = (-1, 1)
    interpolation = "bilinear"
    backend = BACKEND  # on the class: it holds modules, which an instance's copies and pickles could not

    def __init__(self, factor=None, bounding_box_format=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.bounding_box_format = bounding_box_format
        self.data_format = standardize_data_format(data_format, type(self).__name__)
        if self._USE_BASE_FACTOR:
            self._set_factor(factor or 0.0)
        elif factor is not None:
            raise ValueError(f"Layer {type(self).__name__} does not take a `factor` argument. Received: "
                             f"factor={factor}")
        self.generator = None
        self._build_at_init()

    def _seeded(self, seed) -> None:
        """Keep ``seed`` and make the layer's generator from it (an int or None)."""
        if seed is not None and not (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)):
            raise ValueError(f"The `seed` of {type(self).__name__} must be an integer or None. Received: seed={seed!r}")
        self.seed = seed
        self.generator = None if seed is None else random.SeedGenerator(seed)

    def _set_affine_options(self, fill_mode, interpolation, fill_value) -> None:
        """How ``affine_transform`` samples and fills (RandomRotation, RandomTranslation, RandomZoom), checked."""
        owner = type(self).__name__
        self.fill_mode = check_choice(fill_mode, FILL_MODES, "fill_mode", owner)
        self.interpolation = check_choice(interpolation, INTERPOLATIONS, "interpolation", owner)
        self.fill_value = fill_value

    def _set_factor(self, factor) -> None:
        low, high = self._FACTOR_BOUNDS
        message = (f"The `factor` argument of {type(self).__name__} should be a number (or a list of two numbers) "
                   f"in the range [{low}, {high}]. Received: factor={factor}")
        if isinstance(factor, (tuple, list)):
            if len(factor) != 2 or not all(is_number(f) for f in factor) or factor[0] > high or factor[1] < low:
                raise ValueError(message)
            lower, upper = sorted(factor)
        elif is_number(factor):
            if not low <= factor <= high:
                raise ValueError(message)
            lower, upper = max(-abs(factor), low), abs(factor)
        else:
            raise ValueError(message)
        self.factor = (lower, upper)

    # ------------------------------------------------------------------ the two halves of a call

    def get_random_transformation(self, data, training=True, seed=None):
        """This call's random parameters (a dict), or None when not training."""
        return None

    def _transform_images(self, images, transformation, interpolation):
        raise NotImplementedError(f"{type(self).__name__} does not define `_transform_images`.")

    def transform_images(self, images, transformation, training=True):
        """``images`` (a batch) in the compute dtype, transformed by ``transformation`` when training."""
        images = ops.cast(images, self.compute_dtype)
        if training and transformation is not None:
            images = self._transform_images(images, transformation, self.interpolation)
        return images

    def transform_labels(self, labels, transformation, training=True):
        return labels

    def transform_segmentation_masks(self, segmentation_masks, transformation, training=True):
        """Masks move with their images, read with ``"nearest"`` so that class ids stay whole."""
        if training and transformation is not None:
            segmentation_masks = self._transform_images(segmentation_masks, transformation, "nearest")
        return segmentation_masks

    def transform_bounding_boxes(self, bounding_boxes, transformation, training=True):
        raise NotImplementedError(f"{type(self).__name__} does not define `transform_bounding_boxes`, so it cannot "
                                  f"take a dict with 'bounding_boxes'. Received: keys={sorted(bounding_boxes)}")

    def transform_single_image(self, image, transformation, training=True):
        return self.transform_images(image[None], transformation, training=training)[0]

    # ------------------------------------------------------------------ calling

    @staticmethod
    def _images_of(data):
        return data["images"] if isinstance(data, dict) else data

    def _batch_size(self, data) -> tuple[int, bool]:
        """``(batch size, batched)`` of the images in ``data``; 1 for a single image."""
        shape = tuple(np.shape(unwrap(self._images_of(data))))
        if len(shape) == 3:
            return 1, False
        if len(shape) == 4:
            return shape[0], True
        raise ValueError(f"{type(self).__name__} expects an image tensor of rank 3 (single image) or 4 (batch of "
                         f"images). Received: data.shape={shape}")

    def _convert_inputs(self, inputs):
        if isinstance(inputs, dict):  # nested dicts (bounding boxes) too; every leaf as Layer converts it
            return {key: self._convert_inputs(value) for key, value in inputs.items()}
        return super()._convert_inputs(inputs)

    def _apply(self, method, value, transformation, training: bool, batched: bool):
        if batched:
            return method(value, transformation, training=training)
        return method(value[None], transformation, training=training)[0]

    def call(self, data, training=True):
        training = True if training is None else bool(training)
        if isinstance(data, dict) and "images" not in data:
            raise ValueError(f"{type(self).__name__} takes images or a dict with an 'images' key. Received: a dict "
                             f"with keys {sorted(data)}")
        _, batched = self._batch_size(data)
        transformation = self.get_random_transformation(data, training=training)
        if not isinstance(data, dict):
            return self._apply(self.transform_images, data, transformation, training, batched)
        out = dict(data)
        out["images"] = self._apply(self.transform_images, data["images"], transformation, training, batched)
        if "labels" in data:
            out["labels"] = self._apply(self.transform_labels, data["labels"], transformation, training, batched)
        if "segmentation_masks" in data:
            out["segmentation_masks"] = self._apply(self.transform_segmentation_masks, data["segmentation_masks"],
                                                    transformation, training, batched)
        if "bounding_boxes" in data:
            if not self.bounding_box_format:
                raise ValueError(
                    "You passed an input with a 'bounding_boxes' key, but you didn't specify a bounding box format. "
                    f"Pass a `bounding_box_format` argument to your {type(self).__name__} layer, e.g. "
                    "`bounding_box_format='xyxy'`. Received: bounding_box_format=None")
            out["bounding_boxes"] = self._transform_boxes(data["bounding_boxes"], transformation, training, batched)
        return out

    def _transform_boxes(self, bounding_boxes, transformation, training: bool, batched: bool) -> dict:
        """Dense ``{"boxes", "labels"}`` through ``transform_bounding_boxes``; a single image's boxes get a
        batch axis of 1 for it, as Keras's ``transform_single_bounding_box``."""
        boxes = dense_bounding_boxes(bounding_boxes)
        if batched:
            return self.transform_bounding_boxes(boxes, transformation, training=training)
        single = {**boxes, "boxes": boxes["boxes"][None], "labels": boxes["labels"][None]}
        out = self.transform_bounding_boxes(single, transformation, training=training)
        return {**out, "boxes": np.squeeze(out["boxes"], 0), "labels": np.squeeze(out["labels"], 0)}

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config["data_format"] = self.data_format
        if self.bounding_box_format is not None:
            config["bounding_box_format"] = self.bounding_box_format
        return config

    # ------------------------------------------------------------------ helpers for the subclasses

    def _uniform(self, shape, minval, maxval, seed=None, dtype=None):
        """One draw from ``seed`` (``get_random_transformation``'s: an int or a SeedGenerator), else from the
        layer's stream; ``uniform`` is looked up on ``self.backend`` at call time (Keras's tests patch it)."""
        seed = self.generator if seed is None else seed
        return np.asarray(unwrap(self.backend.random.uniform(shape, minval=minval, maxval=maxval, dtype=dtype,
                                                              seed=seed)))

    @staticmethod
    def _compute_affine_matrix(center_x, center_y, angle, translate_x, translate_y, scale, shear_x, shear_y,
                               height, width) -> np.ndarray:
        """Rows ``[a0, a1, a2, b0, b1, b2, 0, 0]`` of ``scale · shear · rotation`` about the centre
        ``(cx, cy) = (center_x (width - 1), center_y (height - 1))`` (angles in degrees):

        ``a0 = s (cos θ + tan(shx) sin θ)``, ``a1 = s (tan(shx) cos θ - sin θ)``, ``a2 = tx + cx - cx a0 - cy a1``;
        ``b0 = s (tan(shy) cos θ + sin θ)``, ``b1 = s (cos θ - tan(shy) sin θ)``, ``b2 = ty + cy - cx b0 - cy b1``.
        """
        angle = np.asarray(angle)
        dtype = angle.dtype
        to_radians = dtype.type(math.pi / 180.0)
        theta = angle * to_radians
        tan_x, tan_y = np.tan(np.asarray(shear_x, dtype) * to_radians), np.tan(np.asarray(shear_y, dtype) * to_radians)
        cx = dtype.type(center_x) * (dtype.type(width) - 1)
        cy = dtype.type(center_y) * (dtype.type(height) - 1)
        cos, sin = np.cos(theta), np.sin(theta)
        a0 = scale * (cos + tan_x * sin)
        a1 = scale * (-sin + tan_x * cos)
        a2 = translate_x + cx - cx * a0 - cy * a1
        b0 = scale * (tan_y * cos + sin)
        b1 = scale * (tan_y * -sin + cos)
        b2 = translate_y + cy - cx * b0 - cy * b1
        zeros = np.zeros_like(a0)
        return np.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1).astype(dtype)


def factor_range(factor, argument: str, owner: str, low: float, low_open: bool) -> tuple:
    """``(lower, upper)`` of ``height_factor``/``width_factor``: a number ``f`` is ``(-|f|, |f|)``, a pair is
    sorted; each number lies in ``(low, 1]`` (``low_open``) or ``[low, 1]``."""
    interval = f"({low}, 1.0]" if low_open else f"[{low}, 1.0]"

    def check(value):
        if not is_number(value) or value > 1.0 or value < low or (low_open and value == low):
            raise ValueError(f"The `{argument}` argument of {owner} should be a number (or a list of two numbers) "
                             f"in the range {interval}. Received: {argument}={factor}")

    if isinstance(factor, (tuple, list)):
        if len(factor) != 2:
            check(None)
        check(factor[0])
        check(factor[1])
        return tuple(sorted(factor))
    check(factor)
    return (-abs(factor), abs(factor))
