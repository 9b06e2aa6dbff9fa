"""``RandomFlip``: flips each image left-right and/or top-bottom with probability 1/2, in training."""

from __future__ import annotations

import numpy as np

from lamina import ops
from lamina.layers.bounding_boxes import clip_to_image_size, convert_format
from lamina.layers.image_augmentation import BaseImagePreprocessingLayer, spatial_size

HORIZONTAL = "horizontal"
VERTICAL = "vertical"
HORIZONTAL_AND_VERTICAL = "horizontal_and_vertical"
MODES = (HORIZONTAL, VERTICAL, HORIZONTAL_AND_VERTICAL)


class RandomFlip(BaseImagePreprocessingLayer):
    """One draw ``u ~ U[0, 1)`` per image; the image is flipped where ``u <= 0.5``.

    ``mode``: ``"horizontal"`` (left-right), ``"vertical"`` (top-bottom) or ``"horizontal_and_vertical"``
    (both flips together, on the same draw, as Keras's). The transformation is ``{"flips": bool (batch, 1,
    1, 1), "input_shape": shape}``. Segmentation masks flip with their images; bounding boxes (with
    ``bounding_box_format``) flip with them: in relative corners ``x -> 1 - x``, ``y -> 1 - y``, and a box
    left with no area gets label -1.
    """

    _USE_BASE_FACTOR = False

    def __init__(self, mode=HORIZONTAL_AND_VERTICAL, seed=None, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        if mode not in MODES:  # Keras accepts any string and then never flips
            raise ValueError(f"The `mode` argument of RandomFlip must be one of {MODES}. Received: mode={mode!r}")
        self.mode = mode
        self._seeded(seed)

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        batch, _ = self._batch_size(data)
        images = self._images_of(data)
        flips = self._uniform((batch, 1, 1, 1), 0.0, 1.0, seed) <= 0.5
        return {"flips": flips, "input_shape": tuple(ops.shape(images))}

    def transform_images(self, images, transformation, training=True):
        images = ops.cast(images, self.compute_dtype)
        if training and transformation is not None:
            return self._flip(images, transformation["flips"])
        return images

    def transform_segmentation_masks(self, segmentation_masks, transformation, training=True):
        return self.transform_images(segmentation_masks, transformation, training=training)

    def transform_bounding_boxes(self, bounding_boxes, transformation, training=True):
        if not training or transformation is None:
            return bounding_boxes
        height, width = spatial_size(transformation["input_shape"], self.data_format)
        boxes = convert_format(bounding_boxes, self.bounding_box_format, "rel_xyxy", height=height, width=width)
        flips = np.squeeze(np.asarray(transformation["flips"]), axis=-1)
        rel = boxes["boxes"]
        if self.mode in (HORIZONTAL, HORIZONTAL_AND_VERTICAL):
            x1, y1, x2, y2 = np.split(rel, 4, axis=-1)
            rel = np.where(flips, np.concatenate([1 - x2, y1, 1 - x1, y2], axis=-1), rel)
        if self.mode in (VERTICAL, HORIZONTAL_AND_VERTICAL):
            x1, y1, x2, y2 = np.split(rel, 4, axis=-1)
            rel = np.where(flips, np.concatenate([x1, 1 - y2, x2, 1 - y1], axis=-1), rel)
        # Keras clips these relative corners as pixels ("xyxy"): only what falls below 0 changes
        boxes = clip_to_image_size({**boxes, "boxes": rel}, height=height, width=width, bounding_box_format="xyxy")
        return convert_format(boxes, "rel_xyxy", self.bounding_box_format, height=height, width=width)

    def _flip(self, images, flips):
        width_axis, height_axis = (-1, -2) if self.data_format == "channels_first" else (-2, -3)
        out = images
        if self.mode in (HORIZONTAL, HORIZONTAL_AND_VERTICAL):
            out = ops.where(flips, ops.flip(out, axis=width_axis), out)
        if self.mode in (VERTICAL, HORIZONTAL_AND_VERTICAL):
            out = ops.where(flips, ops.flip(out, axis=height_axis), out)
        return out

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(seed=self.seed, mode=self.mode)
        return config
