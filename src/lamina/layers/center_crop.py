"""``CenterCrop``: the central ``(height, width)`` window of each image."""

from __future__ import annotations

import numpy as np

from lamina import ops
from lamina.autodiff import unwrap
from lamina.layers.bounding_boxes import clip_to_image_size, convert_format
from lamina.layers.image_resize import crop_box, crop_to_window, resize_images, spatial_axes_2d
from lamina.layers.resizing import ImagePreprocessingLayer


def center_crop(images, height: int, width: int, data_format: str = "channels_last"):
    """The centred ``(height, width)`` window of a rank-3 or rank-4 float ``images``; where the image is
    smaller than that on some side, Keras's ``smart_resize`` instead: the largest centred window with the
    target's aspect ratio, resized (bilinear) to ``(height, width)``."""
    shape = np.shape(unwrap(images))
    h_axis, w_axis = spatial_axes_2d(len(shape), data_format)
    h_diff, w_diff = shape[h_axis] - height, shape[w_axis] - width
    if h_diff >= 0 and w_diff >= 0:
        return crop_to_window(images, h_diff // 2, w_diff // 2, height, width, data_format)
    window = crop_box(shape[h_axis], shape[w_axis], height, width)
    return resize_images(crop_to_window(images, *window, data_format), (height, width), data_format=data_format)


class CenterCrop(ImagePreprocessingLayer):
    """Crops the central ``(height, width)`` window of each image (the window starts at
    ``(H - height) // 2``, ``(W - width) // 2``). An image smaller than the target on some side is instead
    cropped to the target's aspect ratio and resized to it (bilinear). Outputs are in the compute dtype.
    """

    def __init__(self, height, width, data_format=None, **kwargs):
        super().__init__(height, width, data_format=data_format, **kwargs)
        self._build_at_init()

    def _transform(self, images, interpolation: str):
        if np.asarray(unwrap(images)).dtype != np.dtype(self.compute_dtype):
            images = ops.cast(images, self.compute_dtype)
        return center_crop(images, self.height, self.width, self.data_format)

    def _transform_boxes(self, bounding_boxes: dict, height: int, width: int) -> dict:
        if height >= self.height and width >= self.width:
            top, left, crop_height, crop_width = (height - self.height) // 2, (width - self.width) // 2, None, None
        else:
            top, left, crop_height, crop_width = crop_box(height, width, self.height, self.width)
        window_height, window_width = crop_height or self.height, crop_width or self.width
        low = np.array([left, top, left, top], dtype=np.float32)
        boxes = np.clip(bounding_boxes["boxes"], low, low + np.array([window_width, window_height] * 2, np.float32))
        boxes = boxes - low
        if crop_height is not None:  # the window is resized to the layer's size: boxes scale with it
            boxes = convert_format(convert_format(boxes, "xyxy", "rel_xyxy", height=crop_height, width=crop_width),
                                   "rel_xyxy", "xyxy", height=self.height, width=self.width)
        return clip_to_image_size({**bounding_boxes, "boxes": boxes}, self.height, self.width)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"height": self.height, "width": self.width, "data_format": self.data_format})
        return config
