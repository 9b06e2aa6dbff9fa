"""``Resizing``: images (one, or a batch) resized to ``(height, width)``, optionally after a centred crop or
padding to the target's aspect ratio. The arithmetic is in :mod:`lamina.layers.image_resize`."""

from __future__ import annotations

import numpy as np

from lamina import ops
from lamina.autodiff import unwrap
from lamina.layers.bounding_boxes import clip_to_image_size, convert_format, dense_bounding_boxes
from lamina.layers.flatten import standardize_data_format
from lamina.layers.image_resize import RESIZE_INTERPOLATIONS, resize_images
from lamina.layers.layer import Layer
from lamina.layers.tf_data_bridge import holds_tf_tensor


def _positive_int(value, argument: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{owner}: argument `{argument}` must be a positive integer (pixels). "
                         f"Received: {argument}={value!r}")
    return int(value)


class ImagePreprocessingLayer(Layer):
    """What Keras's image preprocessing layers share: ``data_format``, rank 3 (one image) or 4 (a batch)
    inputs, and dict inputs ``{"images", "labels", "segmentation_masks"}`` (labels pass through, masks
    are transformed with ``nearest``). Subclasses give ``_transform(images, interpolation)`` for a batch and
    ``_output_size(height, width)``."""

    _tf_data_inputs = "compute_dtype"  # runs inside tf.data, inputs cast as Keras's DataLayer (tf_data_bridge)

    def __init__(self, height, width, data_format=None, bounding_box_format=None, factor=None, **kwargs):
        super().__init__(**kwargs)
        if factor is not None:
            raise ValueError(f"Layer {type(self).__name__} does not take a `factor` argument. Received: "
                             f"factor={factor}")
        self.bounding_box_format = bounding_box_format
        self.data_format = standardize_data_format(data_format, type(self).__name__)
        self.height = _positive_int(height, "height", type(self).__name__)
        self.width = _positive_int(width, "width", type(self).__name__)

    @staticmethod
    def _batched(shape) -> bool:
        if len(shape) not in (3, 4):
            raise ValueError("Expected image tensor to have rank 3 (single image) or 4 (batch of images). "
                             f"Received: data.shape={shape}")
        return len(shape) == 4

    def _apply(self, images, interpolation: str):
        if self._batched(np.shape(unwrap(images))):
            return self._transform(images, interpolation)
        return ops.squeeze(self._transform(ops.expand_dims(images, 0), interpolation), axis=0)

    def __call__(self, inputs, *args, **kwargs):
        if not (isinstance(inputs, dict) and "bounding_boxes" in inputs) or holds_tf_tensor(inputs):
            return super().__call__(inputs, *args, **kwargs)  # TensorFlow tensors: Layer hands them to the bridge
        # Boxes are a nested dict of coordinates, not an image: they skip the layer's input conversion
        # and are transformed from the images' size before and the layer's size after.
        if not self.bounding_box_format:
            raise ValueError("You passed an input with a 'bounding_boxes' key, but you didn't specify a bounding box "
                             f"format. Pass a `bounding_box_format` argument to your {type(self).__name__} layer, "
                             "e.g. `bounding_box_format='xyxy'`. Received: bounding_box_format=None")
        boxes = dense_bounding_boxes(inputs["bounding_boxes"])
        shape = np.shape(unwrap(inputs["images"]))
        self._batched(shape)
        out = super().__call__({k: v for k, v in inputs.items() if k != "bounding_boxes"}, *args, **kwargs)
        first = self.data_format == "channels_first"
        height, width = (shape[-2], shape[-1]) if first else (shape[-3], shape[-2])
        xyxy = convert_format(boxes, self.bounding_box_format, "xyxy", height=height, width=width)
        out["bounding_boxes"] = convert_format(self._transform_boxes(xyxy, height, width), "xyxy",
                                               self.bounding_box_format, height=self.height, width=self.width)
        return out

    def _transform_boxes(self, bounding_boxes: dict, height: int, width: int) -> dict:
        """``xyxy`` boxes of an image of ``(height, width)`` placed on the output image."""
        raise NotImplementedError

    def call(self, inputs):
        if not isinstance(inputs, dict):
            return self._apply(inputs, self._interpolation())
        out = dict(inputs)
        out["images"] = self._apply(inputs["images"], self._interpolation())
        if "segmentation_masks" in inputs:
            out["segmentation_masks"] = self._apply(inputs["segmentation_masks"], "nearest")
        return out

    def _interpolation(self) -> str:
        return "bilinear"

    def _transform(self, images, interpolation: str):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        if len(shape) not in (3, 4):
            raise ValueError("`input_shape` must be a non-nested tuple or list of rank-1 with size 3 (unbatched) "
                             f"or 4 (batched). Received: input_shape={tuple(input_shape)}")
        first = 1 if len(shape) == 4 else 0
        if self.data_format == "channels_first":
            first += 1
        shape[first], shape[first + 1] = self.height, self.width
        return tuple(shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config["data_format"] = self.data_format
        if self.bounding_box_format is not None:
            config["bounding_box_format"] = self.bounding_box_format
        return config


def to_input_dtype(resized, dtype: np.dtype):
    """A float result back in an integer input's dtype: rounded (half to even) and clipped to its range."""
    if np.issubdtype(dtype, np.floating):
        return resized
    info = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(unwrap(resized))), info.min, info.max).astype(dtype)


class Resizing(ImagePreprocessingLayer):
    """Images resized to ``(height, width)`` with ``interpolation`` ``"bilinear"`` (default), ``"nearest"``,
    ``"bicubic"``, ``"lanczos3"`` or ``"lanczos5"``; ``antialias`` low-pass filters when shrinking
    (bilinear, bicubic, lanczos).

    ``crop_to_aspect_ratio`` first crops the largest centred window with the target's aspect ratio;
    ``pad_to_aspect_ratio`` instead pads the short side evenly with ``fill_value`` (``fill_mode`` must be
    ``"constant"``). Integer images come back in their dtype (rounded, clipped); float images in the
    layer's compute dtype. Gradients flow to float inputs.
    """

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False,
                 pad_to_aspect_ratio=False, fill_mode="constant", fill_value=0.0, antialias=False,
                 data_format=None, **kwargs):
        super().__init__(height, width, data_format=data_format, **kwargs)
        if interpolation not in RESIZE_INTERPOLATIONS:
            raise ValueError(f"Resizing: invalid value for argument `interpolation`. Expected one of "
                             f"{RESIZE_INTERPOLATIONS}. Received: interpolation={interpolation!r}")
        if fill_mode != "constant":
            raise ValueError("Resizing: invalid value for argument `fill_mode`. Only `'constant'` is supported. "
                             f"Received: fill_mode={fill_mode!r}")
        if crop_to_aspect_ratio and pad_to_aspect_ratio:
            raise ValueError("Only one of `pad_to_aspect_ratio` & `crop_to_aspect_ratio` can be `True`. "
                             f"Received: crop_to_aspect_ratio={crop_to_aspect_ratio}, "
                             f"pad_to_aspect_ratio={pad_to_aspect_ratio}")
        self.interpolation = interpolation
        self.crop_to_aspect_ratio = crop_to_aspect_ratio
        self.pad_to_aspect_ratio = pad_to_aspect_ratio
        self.fill_mode = fill_mode
        self.fill_value = fill_value
        self.antialias = bool(antialias)
        self.height_axis, self.width_axis = (-2, -1) if self.data_format == "channels_first" else (-3, -2)
        self._build_at_init()

    def _interpolation(self) -> str:
        return self.interpolation

    def _transform(self, images, interpolation: str):
        dtype = np.asarray(unwrap(images)).dtype
        if not np.issubdtype(dtype, np.floating):
            images = ops.cast(images, "float32")
        resized = resize_images(images, (self.height, self.width), interpolation=interpolation,
                                antialias=self.antialias, crop_to_aspect_ratio=self.crop_to_aspect_ratio,
                                pad_to_aspect_ratio=self.pad_to_aspect_ratio, fill_value=self.fill_value,
                                data_format=self.data_format)
        return to_input_dtype(resized, dtype)

    def _transform_boxes(self, bounding_boxes: dict, height: int, width: int) -> dict:
        boxes = bounding_boxes["boxes"]
        # all -1 or all 0: padding entries, which stay zeros
        padding = np.all(boxes == -1, axis=-1) | np.all(boxes == 0, axis=-1)
        h, w = np.float32(height), np.float32(width)
        if self.pad_to_aspect_ratio:
            ratio = np.minimum(np.float32(self.height) / h, np.float32(self.width) / w)
            scale_x = scale_y = ratio
            shift_x, shift_y = -((self.width - w * ratio) // 2), -((self.height - h * ratio) // 2)
        elif self.crop_to_aspect_ratio:
            source = w / h
            wider = source > self.width / self.height
            new_width = np.float32(self.height * source if wider else self.width)
            new_height = np.float32(self.height if wider else self.width / source)
            scale_x, scale_y = new_width / w, new_height / h
            shift_x, shift_y = (new_width - self.width) // 2, (new_height - self.height) // 2
        else:
            scale_x, scale_y = np.float32(self.width) / w, np.float32(self.height) / h
            shift_x = shift_y = np.float32(0)
        scale = np.array([scale_x, scale_y, scale_x, scale_y], dtype=boxes.dtype)
        shift = np.array([shift_x, shift_y, shift_x, shift_y], dtype=boxes.dtype)
        clipped = clip_to_image_size({**bounding_boxes, "boxes": boxes * scale - shift}, self.height, self.width)
        clipped["boxes"] = np.where(padding[..., None], np.float32(0), clipped["boxes"])
        return clipped

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "height": self.height,
            "width": self.width,
            "interpolation": self.interpolation,
            "crop_to_aspect_ratio": self.crop_to_aspect_ratio,
            "pad_to_aspect_ratio": self.pad_to_aspect_ratio,
            "fill_mode": self.fill_mode,
            "fill_value": self.fill_value,
            "antialias": self.antialias,
            "data_format": self.data_format,
        })
        return config
