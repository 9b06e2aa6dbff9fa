"""``clone_model``: the same architecture with new layers (and so new weights), as Keras's ``clone_model``."""

from __future__ import annotations

import inspect

from lamina.layers.input_layer import Input, InputLayer
from lamina.layers.keras_tensor import KerasTensor, flatten, pack_like
from lamina.layers.op_layer import OpLayer
from lamina.models.functional import Functional
from lamina.models.model import Model
from lamina.models.sequential import Sequential
from lamina.saving import serialization_lib


def _fresh_layer(layer):
    """The default clone: a layer of the same class and config, unbuilt, so its weights are new."""
    return layer.__class__.from_config(layer.get_config())


def _cloner(clone_function, call_function, recursive: bool, cache: dict):
    """``clone_function`` (default :func:`_fresh_layer`) made to return one clone per layer (a layer
    shared in the graph stays shared), cloning nested Sequential/Functional models with
    :func:`clone_model` itself when ``recursive``."""
    clone_function = clone_function or _fresh_layer
    if not callable(clone_function):
        raise ValueError(f"Expected `clone_function` argument to be a callable. Received: "
                         f"clone_function={clone_function!r}")

    def clone(layer):
        if id(layer) not in cache:
            if recursive and isinstance(layer, (Sequential, Functional)):
                # call_function means nothing to a Sequential (its layers are listed, not called).
                call = None if isinstance(layer, Sequential) else call_function
                cache[id(layer)] = clone_model(layer, clone_function=clone_function, call_function=call,
                                               recursive=True, cache=cache)
            else:
                cache[id(layer)] = clone_function(layer)
        return cache[id(layer)]

    return clone


def clone_model(model, input_tensors=None, clone_function=None, call_function=None, recursive: bool = False,
                **kwargs):
    """A copy of ``model``'s architecture on new layers: ``clone_function(layer)`` makes each one
    (default: ``layer.__class__.from_config(layer.get_config())``, new weights; ``lambda layer: layer``
    reuses the layers and their weights), ``call_function(layer, *args, **kwargs)`` calls it in a
    Functional graph (default: ``layer(*args, **kwargs)``; Functional models only), ``input_tensors``
    (symbolic tensors shaped like ``model.input``) replace the new Inputs. ``recursive`` clones
    nested Sequential/Functional models the same way instead of passing them to ``clone_function``.
    A model compiled before is compiled alike. A subclassed model is rebuilt from its config.
    """
    cache = kwargs.pop("cache", None)  # shared by the recursive calls
    if kwargs:
        raise ValueError(f"clone_model: unexpected keyword argument(s). Received: {tuple(kwargs)}")
    cache = {} if cache is None else cache
    if isinstance(model, Sequential):
        if call_function is not None:
            raise ValueError(
                "clone_model: `call_function` is not supported with Sequential models: their layers are "
                "listed, not called, when the model is built. Use it with Functional models only. Received: "
                f"model '{model.name}' of type {type(model).__name__}, call_function={call_function!r}"
            )
        clone = _cloner(clone_function, None, recursive, cache)
        return _compiled_like(model, _clone_sequential(model, clone, input_tensors))
    if isinstance(model, Functional) and (type(model).get_config is Functional.get_config
                                          or clone_function is not None or input_tensors is not None):
        clone = _cloner(clone_function, call_function, recursive, cache)
        return _compiled_like(model, _clone_functional(model, clone, call_function, input_tensors))
    if clone_function is not None or input_tensors is not None or call_function is not None:
        raise ValueError(
            "clone_model: `clone_function`, `call_function` and `input_tensors` apply to Sequential and "
            "Functional models only; a subclassed model is rebuilt from its get_config(). Received: model "
            f"'{getattr(model, 'name', model)}' of type {type(model).__name__}"
        )
    if not isinstance(model, Model):
        raise ValueError(f"clone_model expects a lamina Model. Received: {type(model).__name__}")
    config = serialization_lib.serialize_keras_object(model)
    return serialization_lib.deserialize_keras_object(config, custom_objects={type(model).__name__: type(model)})


def _compiled_like(model, copy):
    if model.compiled:
        copy.compile_from_config(model.get_compile_config())
    return copy


def _clone_sequential(model: Sequential, clone, input_tensors):
    layers = [clone(layer) for layer in model.layers]
    source = model._input_layer
    if input_tensors is not None:
        if isinstance(input_tensors, (list, tuple)):
            if len(input_tensors) != 1:
                raise ValueError("clone_model: `input_tensors` of a Sequential model must be one tensor. "
                                 f"Received: {len(input_tensors)} tensors")
            input_tensors = input_tensors[0]
        if not isinstance(input_tensors, KerasTensor) or not isinstance(input_tensors._keras_history[0], InputLayer):
            raise ValueError(
                "clone_model: `input_tensors` of a Sequential model must be a keras.Input(...) tensor. "
                f"Received: {input_tensors!r:.120}"
            )
        layers = [input_tensors, *layers]
    elif source is not None:
        layers = [Input(batch_shape=source.batch_shape, dtype=source._input_dtype, name=source.name,
                        optional=source.optional), *layers]
    return Sequential(layers, name=model.name, trainable=model.trainable)


def _new_inputs(model: Functional, input_tensors):
    """The clone's inputs, in ``model.input``'s structure: ``input_tensors`` when given, else new Inputs
    like the original ones."""
    if input_tensors is None:
        def fresh(tensor):
            layer = tensor._keras_history[0]
            return Input(batch_shape=tensor.shape, dtype=tensor.dtype, name=layer.name,
                         optional=getattr(layer, "optional", False))

        return pack_like(model._inputs_struct, [fresh(t) for t in model.inputs])
    given = flatten(input_tensors)
    if not all(isinstance(t, KerasTensor) for t in given):
        raise ValueError("clone_model: all entries in `input_tensors` must be symbolic tensors (keras.Input(...) "
                         f"or layer outputs). Received: input_tensors={input_tensors!r:.200}")
    if len(given) != len(model.inputs):
        raise ValueError(f"clone_model: `input_tensors` must have the structure of model.input "
                         f"({len(model.inputs)} tensors). Received: {len(given)} tensors")
    return input_tensors


def _clone_functional(model: Functional, clone, call_function, input_tensors):
    """Re-run ``model``'s graph on the new inputs, each node's layer replaced by its clone (op nodes,
    which hold no weights, are called again as they are)."""
    new_inputs = _new_inputs(model, input_tensors)
    values = {id(t): v for t, v in zip(model.inputs, flatten(new_inputs))}
    for node in model._nodes:
        layer = node.layer if isinstance(node.layer, OpLayer) else clone(node.layer)
        args = pack_like(node.call_inputs, [values[id(t)] if isinstance(t, KerasTensor) else t
                                            for t in flatten(node.call_inputs)])
        more = [pack_like(a, [values[id(t)] if isinstance(t, KerasTensor) else t for t in flatten(a)])
                for a in node.call_args]
        out = call_function(layer, args, *more, **node.call_kwargs) if call_function is not None else \
            layer(args, *more, **node.call_kwargs)
        outs = flatten(out) if len(node.output_tensors) > 1 else [out]
        for t, v in zip(node.output_tensors, outs):
            values[id(t)] = v
    outputs = pack_like(model._outputs_struct, [values[id(t)] for t in model.outputs])
    if type(model) is not Functional and _takes_inputs_outputs(type(model)):
        return type(model)(new_inputs, outputs, name=model.name)
    return Functional(new_inputs, outputs, name=model.name)


def _takes_inputs_outputs(cls) -> bool:
    """Whether ``cls(inputs, outputs, name=...)`` builds it (Keras's functional-like constructor)."""
    try:
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        return False
    names = [p.name for p in params[:2]]
    return names == ["inputs", "outputs"] or any(p.kind is p.VAR_POSITIONAL for p in params[:1])
