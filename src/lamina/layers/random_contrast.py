"""``RandomContrast``: scales each image's deviation from its per-channel mean by a random factor, in training."""

from __future__ import annotations

from lamina import ops
from lamina.layers.image_augmentation import BaseImagePreprocessingLayer, is_number


class RandomContrast(BaseImagePreprocessingLayer):
    """Per image, ``c ~ U[1 - lower, 1 + upper]`` with ``(lower, upper)`` from ``factor`` (a number ``f`` in
    ``[0, 1]`` gives ``(0, f)``, Keras's reading, so ``c ∈ [1, 1 + f]``; a pair is sorted), and

        ``out = clip((x - mean) · c + mean, *value_range)``

    with ``mean`` over height and width, per channel. Outside training the images pass through as given
    (no cast, as Keras's). The transformation is ``{"contrast_factor": (batch, 1, 1, 1)}``; labels, masks
    and bounding boxes pass through.
    """

    _FACTOR_BOUNDS = (0, 1)

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(**kwargs)
        self._set_factor(factor)
        if not isinstance(value_range, (tuple, list)) or len(value_range) != 2 or \
                not all(is_number(v) for v in value_range) or value_range[0] > value_range[1]:
            raise ValueError("The `value_range` argument of RandomContrast should be two numbers (low, high) with low "
                             f"<= high. Received: value_range={value_range!r}")
        self.value_range = value_range
        self._seeded(seed)

    def get_random_transformation(self, data, training=True, seed=None):
        batch, _ = self._batch_size(data)
        if not training:
            return None
        factor = self._uniform((batch, 1, 1, 1), 1.0 - self.factor[0], 1.0 + self.factor[1], seed,
                               dtype=self.compute_dtype)
        return {"contrast_factor": factor}

    def transform_images(self, images, transformation, training=True):
        if not (training and transformation is not None):
            return images
        images = ops.cast(images, self.compute_dtype)
        axes = (-2, -1) if self.data_format == "channels_first" else (-3, -2)
        mean = ops.mean(images, axis=axes, keepdims=True)
        factor = ops.cast(transformation["contrast_factor"], self.compute_dtype)
        out = ops.add(ops.multiply(ops.subtract(images, mean), factor), mean)
        return ops.clip(out, self.value_range[0], self.value_range[1])

    def transform_segmentation_masks(self, segmentation_masks, transformation, training=True):
        return segmentation_masks

    def transform_bounding_boxes(self, bounding_boxes, transformation, training=True):
        return bounding_boxes

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(factor=self.factor, value_range=self.value_range, seed=self.seed)
        return config
