"""``RandomZoom``: zooms each image in or out about its centre by a random amount, in training."""

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


class RandomZoom(BaseImagePreprocessingLayer):
    """Zoom factors ``zy ~ U[1 + lower, 1 + upper]`` from ``height_factor`` and ``zx`` likewise from
    ``width_factor`` (each a number ``f``, the range ``[-|f|, |f|]``, or a pair in ``(-1, 1]``; positive
    zooms out). ``width_factor=None`` keeps the aspect ratio: ``zx = zy``, one draw.

    The output pixel ``(x, y)`` reads the input at ``(zx x + (width - 1)(1 - zx) / 2, zy y + (height - 1)(1 -
    zy) / 2)``; ``fill_mode``, ``fill_value`` and ``interpolation`` as in RandomRotation. The
    transformation is ``{"height_zoom": (batch, 1), "width_zoom": (batch, 1), "input_shape": shape}``.

    Bounding boxes, as Keras's: the input region the output shows, ``[x0, x0 + zx·width] × [y0, y0 + zy·height]``
    with ``(x0, y0)`` the offsets above, clips each box, which is then rescaled to the whole image
    (a box left with no area gets label -1).
    """

    _USE_BASE_FACTOR = False

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.height_factor = height_factor
        self.height_lower, self.height_upper = factor_range(height_factor, "height_factor", "RandomZoom", -1.0, True)
        self.width_factor = width_factor
        if width_factor is not None:
            self.width_lower, self.width_upper = factor_range(width_factor, "width_factor", "RandomZoom", -1.0, True)
        self._set_affine_options(fill_mode, interpolation, fill_value)
        self._seeded(seed)

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        batch, _ = self._batch_size(data)
        height_zoom = self._uniform((batch, 1), 1.0 + self.height_lower, 1.0 + self.height_upper, seed)
        width_zoom = height_zoom
        if self.width_factor is not None:
            width_zoom = self._uniform((batch, 1), 1.0 + self.width_lower, 1.0 + self.width_upper, seed)
        return {"height_zoom": height_zoom, "width_zoom": width_zoom,
                "input_shape": tuple(ops.shape(self._images_of(data)))}

    @staticmethod
    def _get_zoom_matrix(zooms, image_height, image_width) -> np.ndarray:
        """affine_transform rows for ``zooms`` ``(batch, 2)`` = ``[[zx, zy], ...]``."""
        zooms = np.asarray(zooms, dtype="float32")
        zx, zy = zooms[:, 0:1], zooms[:, 1:2]
        x_offset = (np.float32(image_width) - 1) / 2 * (1 - zx)
        y_offset = (np.float32(image_height) - 1) / 2 * (1 - zy)
        zeros = np.zeros_like(zx)
        return np.concatenate([zx, zeros, x_offset, zeros, zy, y_offset, zeros, zeros], axis=1)

    def _transform_images(self, images, transformation, interpolation):
        zooms = np.concatenate([np.asarray(transformation["width_zoom"]), np.asarray(transformation["height_zoom"])],
                               axis=1)
        height, width = spatial_size(ops.shape(images), self.data_format)
        return affine_transform(images, self._get_zoom_matrix(zooms, height, width), interpolation=interpolation,
                                fill_mode=self.fill_mode, fill_value=self.fill_value, data_format=self.data_format)

    def transform_bounding_boxes(self, bounding_boxes, transformation, training=True):
        if not training or transformation is None:
            return bounding_boxes
        height, width = spatial_size(transformation["input_shape"], self.data_format)
        boxes = convert_format(bounding_boxes, self.bounding_box_format, "xyxy", height=height, width=width)
        zooms = np.concatenate([np.asarray(transformation["width_zoom"]), np.asarray(transformation["height_zoom"])],
                               axis=1).astype("float32")
        matrix = self._get_zoom_matrix(zooms, height, width)
        x_start, y_start = matrix[:, 2:3], matrix[:, 5:6]  # where the output's corners come from
        x_end, y_end = matrix[:, 0:1] * width + x_start, matrix[:, 4:5] * height + y_start
        shown_height, shown_width = (y_end - y_start)[..., None], (x_end - x_start)[..., None]
        corners = boxes["boxes"]
        if corners.ndim == 3:
            x_start, y_start, x_end, y_end = (a[..., None] for a in (x_start, y_start, x_end, y_end))
        x1, y1, x2, y2 = np.split(corners, 4, axis=-1)
        corners = np.concatenate([np.clip(x1, x_start, x_end) - x_start, np.clip(y1, y_start, y_end) - y_start,
                                  np.clip(x2, x_start, x_end) - x_start, np.clip(y2, y_start, y_end) - y_start],
                                 axis=-1)
        boxes = convert_format({**boxes, "boxes": corners}, "xyxy", "rel_xyxy", height=shown_height, width=shown_width)
        boxes = clip_to_image_size(boxes, bounding_box_format="rel_xyxy")
        return convert_format(boxes, "rel_xyxy", self.bounding_box_format, height=height, width=width)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(height_factor=self.height_factor, width_factor=self.width_factor, fill_mode=self.fill_mode,
                      interpolation=self.interpolation, seed=self.seed, fill_value=self.fill_value,
                      data_format=self.data_format)
        return config
