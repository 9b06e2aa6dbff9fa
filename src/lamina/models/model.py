"""``Model``: a layer with a training API; ``Model(inputs, outputs)`` builds a Functional model.

Three ways to make one, as in Keras: ``Sequential([...])``, ``Model(inputs=..., outputs=...)``
(returns a :class:`~lamina.models.functional.Functional`), or subclassing ``Model`` with layers
set in ``__init__`` and a ``call`` method.
"""

from __future__ import annotations

import numpy as np

from lamina.layers.layer import Layer
from lamina.models import state_tree as state_tree_lib
from lamina.models.model_quantize import ModelQuantization
from lamina.models.trainer import Trainer
from lamina.saving.object_registry import builtin_objects


def _functional_class() -> type:
    """``Functional``, the subclass that ``Model(inputs, outputs)`` builds (as in Keras).

    It subclasses this module's ``Model``, so it cannot be imported here; lamina.models registers it
    with the built-in layers when the package finishes loading, before any model can be built.
    """
    return builtin_objects("layers")["Functional"]


def _functional_arguments(args: tuple, kwargs: dict) -> bool:
    """Whether ``Model(...)``'s arguments are a graph's inputs and outputs (Keras's rule)."""
    return len(args) == 2 or (len(args) == 1 and "outputs" in kwargs) or ("inputs" in kwargs and "outputs" in kwargs)


def _inject_functional(cls: type, functional: type) -> None:
    """Swap ``Model`` for ``Functional`` among the bases of ``cls`` (and of its Model ancestors), once.

    Keras does the same, so that ``class CustomModel(keras.Model)`` without its own ``__init__``
    builds a graph from ``CustomModel(inputs, outputs)`` and keeps its overridden steps.
    """
    bases = []
    for base in cls.__bases__:
        if base is Model:
            base = functional
        elif issubclass(base, Model) and not issubclass(base, functional):
            _inject_functional(base, functional)
        bases.append(base)
    cls.__bases__ = tuple(bases)


class Model(ModelQuantization, Trainer, Layer):
    """Groups layers into an object with training and inference features."""

    def __new__(cls, *args, **kwargs):
        if cls is Model and _functional_arguments(args, kwargs):
            return object.__new__(_functional_class())
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        functional = _functional_class()
        if _functional_arguments(args, kwargs) and not isinstance(self, functional):
            # A subclass (say one overriding train_step) given inputs and outputs, by its caller or by
            # its own __init__'s super().__init__(inputs, outputs): a Functional model of that
            # subclass, as in Keras. Decided here, on the arguments Model itself receives, so that a
            # subclass whose own __init__ takes two other positional arguments is left alone.
            _inject_functional(type(self), functional)
            functional.__init__(self, *args, **kwargs)
            return
        if args:
            raise TypeError(
                "Model() takes keyword arguments only when subclassed (name=, trainable=...). "
                f"To build a Functional model pass inputs= and outputs=. Received: {len(args)} "
                "positional arguments"
            )
        kwargs.pop("inputs", None)
        Trainer.__init__(self)
        Layer.__init__(self, **kwargs)

    @property
    def layers(self) -> list[Layer]:
        return [layer for layer in self._layers]

    # The refusal to assign `layers` (Keras's); Sequential names its own way to change them.
    _layers_reserved = "`Model.layers` attribute is reserved and cannot be assigned: a model's layers come " \
                       "from its graph (or from the layers its subclass assigns to other attributes)."

    def __setattr__(self, name, value):
        # Checked before Layer.__setattr__ tracks the value, so a refused list leaves no layer behind.
        if name == "layers":
            raise AttributeError(f"{self._layers_reserved} Received: an assignment to '{self.name}'.layers")
        super().__setattr__(name, value)

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """The layer called ``name``, or at position ``index`` of ``layers``."""
        if index is not None and name is not None:
            raise ValueError(
                f"Provide only a layer name or a layer index, not both. Received: name={name!r}, index={index}"
            )
        if index is not None:
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(
                    f"Was asked to retrieve layer at index {index} but model only has "
                    f"{len(self.layers)} layers."
                )
            return self.layers[index]
        if name is not None:
            for layer in self.layers:
                if layer.name == name:
                    return layer
            raise ValueError(
                f"No such layer: {name}. Existing layers are: {[layer.name for layer in self.layers]}."
            )
        raise ValueError("Provide either a layer name or layer index at `get_layer`.")

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None) -> None:
        """Print a table of the layers: name (type), output shape, parameter count; then totals."""
        from lamina.models.summary import print_summary  # lazy: shutil and textwrap cost ~2 ms

        print_summary(self, line_length=line_length, print_fn=print_fn, show_trainable=show_trainable)

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(
                f"You tried to call `count_params` on model '{self.name}', but the model isn't built. "
                "Build it first: give the first layer an input_shape, start with an Input, or call the "
                "model on data."
            )
        return int(sum(int(np.prod(v.shape)) for v in self.weights))

    def build(self, input_shape=None) -> None:
        """Subclassed models build by running ``call`` once on zeros of ``input_shape``."""
        if self.built:
            return
        if input_shape is None:
            raise ValueError(f"Model '{self.name}' needs an input_shape to build. Received: input_shape=None")
        if type(self).call is Model.call:
            self.built = True
            return
        shape = tuple(1 if d is None else d for d in input_shape)
        self.built = True
        self.call(np.zeros(shape, dtype=self.dtype))
        self._build_shapes = tuple(input_shape)

    def call(self, inputs, training=None):
        raise NotImplementedError(
            f"Model '{self.name}' has no `call` method. Subclass Model and define call(self, inputs), "
            "or build a Functional model with Model(inputs=..., outputs=...)."
        )

    def _maybe_build(self, input_shape) -> None:
        if self.built:
            return
        self._build_shapes = input_shape
        self.built = True

    def build_from_config(self, config: dict | None) -> None:
        """As Keras: a subclassed model loaded from a file builds with ``build(input_shape)`` (running ``call``
        once), so the layers it holds get the variables the saved weights fill."""
        shape = (config or {}).get("input_shape")
        flat = isinstance(shape, (list, tuple)) and all(d is None or isinstance(d, int) for d in shape)
        if self.built or not flat or hasattr(self, "_stack") or hasattr(self, "_nodes"):
            return super().build_from_config(config)  # Sequential / Functional / nested shapes: as before
        self.build(tuple(shape))

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        if "input_layers" in config and "output_layers" in config:
            functional = _functional_class()
            # A subclass of Model rebuilt from a graph config is that subclass (Keras's functional_from_config).
            target = functional if cls is Model else cls
            return functional.from_config.__func__(target, config, custom_objects=custom_objects)
        return super().from_config(config)

    # ------------------------------------------------------------------ saving (see lamina.saving)

    def save(self, filepath, overwrite: bool = True, zipped: bool | None = None, **kwargs) -> None:
        """Save architecture, weights, compile config and optimizer state to a ``.keras`` file
        (``.h5``: the legacy HDF5 file; ``zipped=False``: a folder). Written atomically."""
        from lamina.saving import saving_api  # lazy: saving sits above models (and brings h5py)

        saving_api.save_model(self, filepath, overwrite=overwrite, zipped=zipped, **kwargs)

    def save_weights(self, filepath, overwrite: bool = True, max_shard_size=None) -> None:
        """Save the weights (and built optimizer state) to a ``.weights.h5`` file, atomically; with
        ``max_shard_size`` (GB per file) to a ``.weights.json`` index and its shard files."""
        from lamina.saving import saving_api  # lazy: saving sits above models (and brings h5py)

        saving_api.save_weights(self, filepath, overwrite=overwrite, max_shard_size=max_shard_size)

    def load_weights(self, filepath, skip_mismatch: bool = False, **kwargs) -> None:
        """Load weights from ``.weights.h5``, ``.keras`` or legacy ``.h5``; all checked before any changes."""
        from lamina.saving import saving_api  # lazy: saving sits above models (and brings h5py)

        saving_api.load_weights(self, filepath, skip_mismatch=skip_mismatch, **kwargs)

    def to_json(self, **kwargs) -> str:
        """The model's config (Keras 3 format) as a JSON string; ``kwargs`` go to ``json.dumps``."""
        import json  # lazy: import cost, for this one method

        from lamina.saving import serialization_lib  # lazy: it loads losses, metrics, optimizers

        return json.dumps(serialization_lib.serialize_keras_object(self), default=serialization_lib.json_default,
                          **kwargs)

    def get_state_tree(self, value_format: str = "backend_tensor") -> dict:
        """The variables as ``{"trainable_variables": {...}, "non_trainable_variables": ...,
        "optimizer_variables": ..., "metrics_variables": ...}``, each nested along the variable paths."""
        return state_tree_lib.get_state_tree(self, value_format)

    def set_state_tree(self, state_tree: dict) -> None:
        """Assign the values of a :meth:`get_state_tree`-shaped dict (any subset of groups and paths)."""
        state_tree_lib.set_state_tree(self, state_tree)

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
        """Keras exports inference artifacts (SavedModel, ONNX, OpenVINO, LiteRT, torch) through a
        TensorFlow, JAX or torch backend; lamina runs on NumPy alone and writes none of them."""
        del verbose, input_signature, kwargs  # Keras's signature
        formats = ("tf_saved_model", "onnx", "openvino", "litert", "torch")
        if format not in formats:
            raise ValueError(f"Unrecognized format={format}. Supported formats are: {list(formats)}.")
        what = "`export_saved_model`" if format == "tf_saved_model" else f"Export to format='{format}'"
        raise NotImplementedError(
            f"{what} only currently supports the tensorflow, jax and torch backends. lamina runs on NumPy "
            f"alone and cannot write this artifact: save the model with model.save('model.keras') and export "
            f"that file with Keras. Received: filepath={filepath!r}, format={format!r}"
        )

    def get_compile_config(self) -> dict:
        """The compile arguments, serialized as Keras 3 writes them ({} if not compiled)."""
        from lamina.saving import compile_config  # lazy: it loads losses, metrics, optimizers

        return compile_config.get_compile_config(self)

    def compile_from_config(self, config: dict) -> None:
        """Compile from :meth:`get_compile_config`'s dict and build the optimizer, as Keras does."""
        from lamina.saving import compile_config  # lazy: it loads losses, metrics, optimizers

        compile_config.compile_from_config(self, config)


def model_from_json(json_string: str, custom_objects: dict | None = None):
    """A model from ``model.to_json()``'s string, new weights (Keras spells it under ``models.model`` too)."""
    from lamina.saving import saving_api  # lazy: saving sits above models (and brings h5py)

    return saving_api.model_from_json(json_string, custom_objects=custom_objects)
