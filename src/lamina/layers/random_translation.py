"""``RandomTranslation``: shifts each image by a random fraction of its height and width, in training."""

from __future__ import annotations

import numpy as np

from lamina import ops
from lamina.layers.affine_transform import affine_transform
from lamina.layers.bounding_boxes import clip_to_image_size, convert_format
from lamina.layers.image_augmentation import (
    BaseImagePreprocessingLayer,
    factor_range,
    spatial_size,
)


class RandomTranslation(BaseImagePreprocessingLayer):
    """Shifts ``dy = height · U[lower, upper]`` from ``height_factor`` (positive: down) and ``dx = width ·
    U[lower, upper]`` from ``width_factor`` (positive: right) pixels, each factor a number ``f`` (the range
    ``[-|f|, |f|]``) or a pair in ``[-1, 1]``. The output pixel ``(x, y)`` reads the input at ``(x - dx,
    y - dy)``; ``fill_mode``, ``fill_value`` and ``interpolation`` as in RandomRotation.

    The transformation is ``{"translations": float32 (batch, 2) = [[dx, dy], ...], "input_shape": shape}``.
    Bounding boxes shift by ``(dx, dy)`` too, clipped to the image (a box left with no area gets label -1).
    """

    _USE_BASE_FACTOR = False

    def __init__(self, height_factor, width_factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.height_factor = height_factor
        self.height_lower, self.height_upper = factor_range(height_factor, "height_factor", "RandomTranslation",
                                                            -1.0, False)
        self.width_factor = width_factor
        self.width_lower, self.width_upper = factor_range(width_factor, "width_factor", "RandomTranslation",
                                                          -1.0, False)
        self._set_affine_options(fill_mode, interpolation, fill_value)
        self._seeded(seed)

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        batch, _ = self._batch_size(data)
        shape = tuple(ops.shape(self._images_of(data)))
        height, width = spatial_size(shape, self.data_format)
        dy = self._uniform((batch, 1), self.height_lower, self.height_upper, seed) * height
        dx = self._uniform((batch, 1), self.width_lower, self.width_upper, seed) * width
        return {"translations": np.concatenate([dx, dy], axis=1).astype("float32"), "input_shape": shape}

    @staticmethod
    def _get_translation_matrix(translations) -> np.ndarray:
        """affine_transform rows ``[1, 0, -dx, 0, 1, -dy, 0, 0]`` for ``translations`` ``[[dx, dy], ...]``."""
        translations = np.asarray(translations, dtype="float32")
        ones, zeros = np.ones_like(translations[:, :1]), np.zeros_like(translations[:, :1])
        return np.concatenate([ones, zeros, -translations[:, 0:1], zeros, ones, -translations[:, 1:2], zeros, zeros],
                              axis=1)

    def _transform_images(self, images, transformation, interpolation):
        return affine_transform(images, self._get_translation_matrix(transformation["translations"]),
                                interpolation=interpolation, fill_mode=self.fill_mode, fill_value=self.fill_value,
                                data_format=self.data_format)

    def transform_bounding_boxes(self, bounding_boxes, transformation, training=True):
        if not training or transformation is None:
            return bounding_boxes
        height, width = spatial_size(transformation["input_shape"], self.data_format)
        boxes = convert_format(bounding_boxes, self.bounding_box_format, "xyxy", height=height, width=width)
        corners = boxes["boxes"]
        shifts = np.asarray(transformation["translations"], dtype=corners.dtype)
        dx, dy = shifts[:, 0:1], shifts[:, 1:2]
        if corners.ndim == 3:
            dx, dy = dx[:, None], dy[:, None]
        x1, y1, x2, y2 = np.split(corners, 4, axis=-1)
        corners = np.concatenate([x1 + dx, y1 + dy, x2 + dx, y2 + dy], axis=-1)
        boxes = clip_to_image_size({**boxes, "boxes": corners}, height=height, width=width, bounding_box_format="xyxy")
        return convert_format(boxes, "xyxy", self.bounding_box_format, height=height, width=width)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(height_factor=self.height_factor, width_factor=self.width_factor, fill_mode=self.fill_mode,
                      interpolation=self.interpolation, seed=self.seed, fill_value=self.fill_value,
                      data_format=self.data_format)
        return config
