"""``RandomRotation``: rotates each image about its centre by a random angle, in training."""

from __future__ import annotations

import numpy as np

from lamina.layers.affine_transform import affine_transform
from lamina.layers.bounding_boxes import clip_to_image_size, convert_format
from lamina.layers.image_augmentation import (
    BaseImagePreprocessingLayer,
    spatial_size,
)


class RandomRotation(BaseImagePreprocessingLayer):
    """The angle ``θ ~ U[360·lower, 360·upper]`` degrees per image, ``(lower, upper)`` from ``factor`` (a
    fraction of a full turn: ``0.2`` is ``[-72°, 72°]``; positive turns counter-clockwise). Pixels that
    come from outside the image follow ``fill_mode`` (``"reflect"``, ``"wrap"``, ``"nearest"``, or
    ``"constant"`` with ``fill_value``); ``interpolation`` is ``"bilinear"`` or ``"nearest"``.

    The transformation holds ``angle`` (degrees), ``rotation_matrix`` (affine_transform's rows, about
    the centre ``((width - 1) / 2, (height - 1) / 2)``), ``image_height``, ``image_width``, ``batch_size``.

    Bounding boxes: each box's four corners turn by ``θ`` about the centre and the box becomes their
    enclosing box, clipped to the image (a box left with no area gets label -1). Boxes are read in
    ``bounding_box_format`` (Keras's reads them as ``xyxy`` whatever the format; the same for ``xyxy``).
    """

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0,
                 data_format=None, **kwargs):
        super().__init__(factor=factor, data_format=data_format, **kwargs)
        self._seeded(seed)
        self._set_affine_options(fill_mode, interpolation, fill_value)

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        batch, batched = self._batch_size(data)
        height, width = spatial_size(np.shape(self._images_of(data)), self.data_format)
        angle = self._uniform((batch,), self.factor[0] * 360.0, self.factor[1] * 360.0, seed)
        zeros, ones = np.zeros(batch, angle.dtype), np.ones(batch, angle.dtype)
        matrix = self._compute_affine_matrix(0.5, 0.5, angle, zeros, zeros, ones, zeros, zeros, height, width)
        return {"angle": angle, "rotation_matrix": matrix if batched else matrix[0], "image_height": height,
                "image_width": width, "batch_size": batch}

    def _transform_images(self, images, transformation, interpolation):
        return affine_transform(images, transformation["rotation_matrix"], interpolation=interpolation,
                                fill_mode=self.fill_mode, fill_value=self.fill_value, data_format=self.data_format)

    def transform_bounding_boxes(self, bounding_boxes, transformation, training=True):
        if not training or transformation is None:
            return bounding_boxes
        height, width = transformation["image_height"], transformation["image_width"]
        boxes = convert_format(bounding_boxes, self.bounding_box_format, "xyxy", height=height, width=width)
        corners = self._rotate_boxes(boxes["boxes"], np.asarray(transformation["angle"]), height, width)
        boxes = clip_to_image_size({**boxes, "boxes": corners}, height=height, width=width, bounding_box_format="xyxy")
        return convert_format(boxes, "xyxy", self.bounding_box_format, height=height, width=width)

    @staticmethod
    def _rotate_boxes(boxes: np.ndarray, angle: np.ndarray, height: int, width: int) -> np.ndarray:
        """The boxes ``(batch, n, 4)`` enclosing each box's corners turned by ``angle`` degrees about the
        centre ``(cx, cy)``: ``x' = cx + cos φ (x - cx) - sin φ (y - cy)``, ``y' = cy + sin φ (x - cx) + cos φ
        (y - cy)`` with ``φ = -θ`` (images turn by the inverse of the map that samples them)."""
        dtype = angle.dtype
        phi = (-angle * (np.pi / 180.0)).astype(dtype)[:, None, None]
        cos, sin = np.cos(phi), np.sin(phi)
        cx, cy = dtype.type(0.5 * (width - 1)), dtype.type(0.5 * (height - 1))
        boxes = boxes.astype(dtype)
        xs = boxes[..., [0, 2, 2, 0]]  # the four corners: (x1, y1), (x2, y1), (x2, y2), (x1, y2)
        ys = boxes[..., [1, 1, 3, 3]]
        turned_x = cos * xs - sin * ys + (cx - cos * cx + sin * cy)
        turned_y = sin * xs + cos * ys + (cy - sin * cx - cos * cy)
        return np.concatenate([turned_x.min(-1, keepdims=True), turned_y.min(-1, keepdims=True),
                               turned_x.max(-1, keepdims=True), turned_y.max(-1, keepdims=True)], axis=-1)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(factor=self.factor, data_format=self.data_format, fill_mode=self.fill_mode,
                      fill_value=self.fill_value, interpolation=self.interpolation, seed=self.seed)
        return config
