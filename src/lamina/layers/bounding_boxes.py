"""Bounding boxes as Keras's image preprocessing layers take them: a dict ``{"boxes": (..., N, 4),
"labels": (..., N)}`` in one of Keras's formats, and the conversions between formats.

Formats (corners or centre and size, absolute pixels or ``rel_`` fractions of the image):
``xyxy`` = (left, top, right, bottom), ``yxyx``, ``xywh`` = (left, top, width, height),
``center_xywh``, ``center_yxhw``, and ``rel_xyxy``, ``rel_yxyx``, ``rel_xywh``, ``rel_center_xywh``.
Every conversion goes through ``xyxy``.
"""

from __future__ import annotations

import numpy as np

FORMATS = ("xyxy", "yxyx", "xywh", "center_xywh", "center_yxhw", "rel_xyxy", "rel_yxyx", "rel_xywh",
           "rel_center_xywh")


def _split(boxes):
    return tuple(boxes[..., i:i + 1] for i in range(4))


def _to_xyxy(boxes, fmt: str, height, width):
    if fmt.startswith("rel_"):  # the absolute format's corners, in fractions, times the image's size
        x1, y1, x2, y2 = _split(_to_xyxy(boxes, fmt[4:], None, None))
        return np.concatenate([x1 * width, y1 * height, x2 * width, y2 * height], axis=-1)
    a, b, c, d = _split(boxes)
    if fmt == "xyxy":
        return boxes
    if fmt == "yxyx":
        return np.concatenate([b, a, d, c], axis=-1)
    if fmt == "xywh":
        return np.concatenate([a, b, a + c, b + d], axis=-1)
    if fmt == "center_yxhw":
        a, b, c, d = b, a, d, c
    return np.concatenate([a - c / 2.0, b - d / 2.0, a + c / 2.0, b + d / 2.0], axis=-1)


def _from_xyxy(boxes, fmt: str, height, width):
    x1, y1, x2, y2 = _split(boxes)
    if fmt.startswith("rel_"):
        return _from_xyxy(np.concatenate([x1 / width, y1 / height, x2 / width, y2 / height], axis=-1), fmt[4:],
                          None, None)
    if fmt == "xyxy":
        return boxes
    if fmt == "yxyx":
        return np.concatenate([y1, x1, y2, x2], axis=-1)
    if fmt == "xywh":
        return np.concatenate([x1, y1, x2 - x1, y2 - y1], axis=-1)
    cx, cy, w, h = x1 + (x2 - x1) / 2.0, y1 + (y2 - y1) / 2.0, x2 - x1, y2 - y1
    return np.concatenate([cx, cy, w, h] if fmt == "center_xywh" else [cy, cx, h, w], axis=-1)


def convert_format(boxes, source: str, target: str, height=None, width=None, dtype="float32"):
    """``boxes`` (an array ``(..., 4)``, or a dict holding one under ``"boxes"``) from format ``source`` to
    ``target``; ``height`` and ``width`` (the image's, in pixels) are needed when either is relative."""
    if isinstance(boxes, dict):
        return {**boxes, "boxes": convert_format(boxes["boxes"], source, target, height, width, dtype)}
    boxes = np.asarray(boxes)
    if boxes.shape[-1:] != (4,):
        raise ValueError(f"`boxes` must be a tensor with the last dimension of 4. Received: boxes.shape={boxes.shape}")
    source, target = source.lower(), target.lower()
    if source not in FORMATS or target not in FORMATS:
        raise ValueError(f"Invalid source or target format. Supported formats: {FORMATS}. "
                         f"Received: source={source!r}, target={target!r}")
    if (source.startswith("rel_") or target.startswith("rel_")) and (height is None or width is None):
        raise ValueError("convert_format() must receive `height` and `width` transforming between relative and "
                         f"absolute formats. Received: source={source!r}, target={target!r}, height={height}, "
                         f"width={width}")
    boxes = boxes.astype(dtype)
    if source == target:
        return boxes
    if source.startswith("rel_") and target.startswith("rel_"):
        source, target = source[4:], target[4:]
    height = None if height is None else np.asarray(height, dtype)
    width = None if width is None else np.asarray(width, dtype)
    return _from_xyxy(_to_xyxy(boxes, source, height, width), target, height, width).astype(dtype)


def clip_to_image_size(bounding_boxes: dict, height=None, width=None, bounding_box_format: str = "xyxy") -> dict:
    """``xyxy`` (or ``rel_xyxy``) boxes clipped to the image; a box left with no area gets label -1."""
    if bounding_box_format not in ("xyxy", "rel_xyxy"):
        raise ValueError(f"clip_to_image_size: only 'xyxy' and 'rel_xyxy' boxes can be clipped. "
                         f"Received: bounding_box_format={bounding_box_format!r}")
    boxes = np.asarray(bounding_boxes["boxes"])
    if bounding_box_format == "xyxy":
        if height is None or width is None:
            raise ValueError("`height` and `width` must be set if `format='xyxy'`. "
                             f"Received: height={height}, width={width}")
        high = np.array([width, height, width, height], dtype=boxes.dtype)
    else:
        high = np.ones(4, dtype=boxes.dtype)
    boxes = np.clip(boxes, np.zeros(4, dtype=boxes.dtype), high)
    result = {**bounding_boxes, "boxes": boxes}
    if bounding_boxes.get("labels") is not None:
        area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
        result["labels"] = np.where(area > 0, bounding_boxes["labels"], -1)
    return result


def dense_bounding_boxes(bounding_boxes) -> dict:
    """Checks the ``{"boxes", "labels"}`` dict and returns it with ``boxes`` a float32 array (``labels`` an
    array); ragged lists of boxes (a different count per image) are refused."""
    if not isinstance(bounding_boxes, dict) or "boxes" not in bounding_boxes or "labels" not in bounding_boxes:
        raise ValueError("Expected `bounding_boxes` argument to be a dict with keys 'boxes' and 'labels'. "
                         f"Received: bounding_boxes={bounding_boxes!r:.200}")
    try:
        boxes = np.asarray(bounding_boxes["boxes"], dtype="float32")
        labels = np.asarray(bounding_boxes["labels"])
    except ValueError:
        raise ValueError("lamina takes bounding boxes as dense arrays (the same number of boxes per image; pad "
                         "with boxes of zeros and label -1). Received: ragged bounding_boxes['boxes']") from None
    if boxes.shape[-1:] != (4,):
        raise ValueError(f"`boxes` must be a tensor with the last dimension of 4. Received: boxes.shape={boxes.shape}")
    return {**bounding_boxes, "boxes": boxes, "labels": labels}
