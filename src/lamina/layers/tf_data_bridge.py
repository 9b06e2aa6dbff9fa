"""Preprocessing layers called on TensorFlow tensors, as in ``dataset.map(layer)`` of a ``tf.data`` pipeline.

Keras runs its data layers there with its TensorFlow backend; lamina computes with NumPy, so the layer's own
NumPy call is wrapped in ``tf.numpy_function`` and the outputs are given the dtype and static shape the layer
declares (``_output_dtype`` and ``compute_output_shape``). This works for eager tensors too.

A layer opts in with the class attribute ``_tf_data_inputs``:

- ``"compute_dtype"``: every input is cast to the layer's compute dtype first, as Keras's ``DataLayer`` does
  inside ``tf.data`` (Rescaling, Resizing, CenterCrop, the Random* image layers); the outputs are then all in
  the compute dtype, dicts with ``"images"``, ``"labels"``, ``"segmentation_masks"``, ``"bounding_boxes"``
  included.
- ``"as_is"``: inputs keep their dtype (StringLookup, IntegerLookup, TextVectorization, Hashing, which Keras
  runs on TensorFlow itself); ``tf.string`` arrives as text.

Any other layer given a graph (symbolic) TensorFlow tensor gets a TypeError naming it; an eager tensor is read
as a NumPy array, as before. TensorFlow is imported only when such a tensor is seen: lamina never needs it.
Random layers draw from their own (NumPy) stream on each element: ``training`` is the call's default (True),
as Keras's layers in ``tf.data``.
"""

from __future__ import annotations

import numpy as np

from lamina.autodiff import unwrap


def is_tf_tensor(value) -> bool:
    """A TensorFlow tensor (eager, symbolic, ragged, sparse), told by its type's module: no import needed."""
    return type(value).__module__.startswith("tensorflow")


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def holds_tf_tensor(inputs) -> bool:
    return any(is_tf_tensor(leaf) for leaf in _leaves(inputs))


def _flatten_with(value, leaves: list):
    """``value`` with each leaf replaced by its index in ``leaves`` (appended)."""
    if isinstance(value, dict):
        return {k: _flatten_with(v, leaves) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_flatten_with(v, leaves) for v in value)
    leaves.append(value)
    return len(leaves) - 1


def _pack(template, leaves: list):
    if isinstance(template, dict):
        return {k: _pack(v, leaves) for k, v in template.items()}
    if isinstance(template, (list, tuple)):
        return type(template)(_pack(v, leaves) for v in template)
    return leaves[template]


def _refuse(layer, inputs, why: str):
    kinds = sorted({type(leaf).__name__ for leaf in _leaves(inputs) if is_tf_tensor(leaf)})
    raise TypeError(f"Layer '{layer.name}' (of type {type(layer).__name__}) {why} lamina layers take NumPy arrays; "
                    "of them only the preprocessing layers (Rescaling, Resizing, CenterCrop, the Random* image layers, "
                    "StringLookup, IntegerLookup, TextVectorization, Hashing) run inside a tf.data pipeline "
                    f"(`dataset.map(layer)`). Received: TensorFlow {', '.join(kinds)}")


def call_on_tf_tensors(layer, inputs, args: tuple, kwargs: dict):
    """``layer(inputs, *args, **kwargs)`` for inputs holding TensorFlow tensors (see the module docstring)."""
    mode = getattr(layer, "_tf_data_inputs", None)
    if mode is None:
        if any(is_tf_tensor(leaf) and not hasattr(leaf, "numpy") for leaf in _leaves(inputs)):
            _refuse(layer, inputs, "was called on a TensorFlow graph tensor (e.g. inside `tf.data.Dataset.map`).")
        leaves: list = []
        template = _flatten_with(inputs, leaves)
        return layer(_pack(template, [leaf.numpy() if is_tf_tensor(leaf) else leaf for leaf in leaves]),
                     *args, **kwargs)
    if args or any(holds_tf_tensor(v) for v in kwargs.values()):
        _refuse(layer, inputs, "takes one (possibly nested) input inside tf.data; extra tensors cannot pass.")
    import tensorflow as tf  # lazy: only a caller already holding TensorFlow tensors gets here

    leaves = []
    template = _flatten_with(inputs, leaves)
    if not all(isinstance(leaf, tf.Tensor) for leaf in leaves):
        _refuse(layer, inputs, "takes dense tensors of one shape in tf.data (no ragged or sparse tensors, no "
                               "Python values next to them).")
    if mode == "compute_dtype":
        leaves = [tf.cast(leaf, layer.compute_dtype) for leaf in leaves]
    out_template, specs = _output_specs(layer, template, leaves, tf)
    out_dtypes = [tf.as_dtype(dtype) for dtype, _ in specs]

    def run(*arrays):
        values = [_from_tf(a) for a in arrays]
        out = layer(_pack(template, values), **kwargs)
        flat: list = []
        structure = _flatten_with(out, flat)
        if structure != out_template:
            raise ValueError(f"Layer '{layer.name}' returned outputs of another structure than it declares for "
                             f"tf.data. Received: {structure!r}, expected {out_template!r}")
        return [_to_tf(unwrap(o), dtype, shape, layer) for o, (dtype, shape) in zip(flat, specs)]

    outs = tf.numpy_function(run, leaves, out_dtypes, stateful=True, name=f"lamina_{layer.name}")
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    for o, (_, shape) in zip(outs, specs):
        o.set_shape(shape)
    return _pack(out_template, outs)


def _output_specs(layer, template, leaves, tf):
    """``(output structure of indices, [(dtype name, static shape or None)])``: dicts keep their keys, each
    image-like entry reshaped by ``compute_output_shape``; other entries keep their shape."""
    dtype = layer._output_dtype()

    def shape_of(leaf, resized: bool):
        static = leaf.shape
        if static.rank is None:
            return None
        if not resized:
            return tuple(static.as_list())
        try:
            return tuple(layer.compute_output_shape(tuple(static.as_list())))
        except (ValueError, TypeError, NotImplementedError, AttributeError):  # unknown until run: left open
            return None

    if isinstance(template, dict):
        specs = []

        def walk(node, resized_key):
            if isinstance(node, dict):
                return {k: walk(v, resized_key or k in ("images", "segmentation_masks")) for k, v in node.items()}
            if isinstance(node, (list, tuple)):
                return type(node)(walk(v, resized_key) for v in node)
            specs.append((dtype, shape_of(leaves[node], resized_key)))
            return len(specs) - 1

        return walk({k: v for k, v in template.items()}, False), specs
    if not isinstance(template, int):
        _refuse(layer, leaves, "takes one tensor (or a dict of them) in tf.data, not a list.")
    return 0, [(dtype, shape_of(leaves[0], True))]


def _from_tf(array):
    """``tf.string`` arrives as an object array of bytes: lamina's text layers read str."""
    array = np.asarray(array)
    if array.dtype.kind in "OS":
        return np.vectorize(lambda b: b.decode("utf-8") if isinstance(b, bytes) else b, otypes=[object])(array) \
            if array.size else array.astype(str)
    return array


def _to_tf(value, dtype: str, shape, layer):
    value = np.asarray(value)
    if dtype == "string" or value.dtype.kind in "UO":
        value = np.vectorize(lambda s: s.encode("utf-8") if isinstance(s, str) else s, otypes=[object])(value) \
            if value.size else value.astype(object)
    else:
        value = value.astype(dtype, copy=False)
    if shape is not None and (len(shape) != value.ndim or any(s not in (None, v) for s, v in zip(shape, value.shape))):
        raise ValueError(f"Layer '{layer.name}' returned an output of shape {value.shape} inside tf.data, where it "
                         f"declared {shape}. Received: output shape {value.shape}")
    return value


__all__ = ["call_on_tf_tensors", "holds_tf_tensor", "is_tf_tensor"]
