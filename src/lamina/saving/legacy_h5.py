"""The legacy Keras 2 full-model HDF5 file (``model.save("m.h5")``), read and written.

Layout: root attributes ``model_config`` (JSON ``{"class_name", "config"}``), ``training_config``
(JSON: ``optimizer_config``, ``loss``, ``metrics``, ``weighted_metrics``, ``loss_weights``),
``keras_version``, ``backend``; group ``model_weights`` with attribute ``layer_names`` and one group
per layer (attribute ``weight_names``, datasets at those names, trainable weights first); group
``optimizer_weights`` (attribute ``weight_names``) for the optimizer state.

Weights are matched to layers by name when all names agree (a model rebuilt from the file's own
config), else by position among the layers that have weights, as Keras does. As for ``.keras``
files, everything is read and checked before anything is assigned: the file must be a regular file,
every component of every name it lists (``layer_names``, ``weight_names``) must be a hard link inside
it (see :meth:`H5Reader.child <lamina.saving.h5_weights.H5Reader.child>`), and the weights its
config describes must fit in the values it stores before the model is built.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import warnings

import numpy as np

from lamina.saving import compile_config, h5_weights, saving_lib, serialization_lib, state_walk, weights_loading
from lamina.saving.atomic import write_bytes_atomic
from lamina.saving.errors import FileFormatError


def _legacy_weights(layer) -> list:
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def _keras_paths(layer, prefix: str, out: dict) -> dict:
    """id(variable) -> the path Keras gives it: the names of the layers from ``layer`` down to the one that
    owns it, then its own name (``custom_model_x/my_dense_1/dense/kernel``); unique where lamina's
    ``layer/variable`` paths of nested layers are not."""
    for v in layer._variables:
        out.setdefault(id(v), f"{prefix}/{v.name}")
    for sub in layer._layers:
        if sub is not layer:
            _keras_paths(sub, f"{prefix}/{sub.name}", out)
    return out


def _weight_names(layer, weights: list) -> list[str]:
    paths = _keras_paths(layer, layer.name, {})
    names, seen = [], set()
    for w in weights:
        name = paths.get(id(w)) or str(getattr(w, "path", w.name))
        base, k = name, 0
        while name in seen:  # two datasets of one name cannot exist in a group
            k += 1
            name = f"{base}_{k}"
        seen.add(name)
        names.append(name)
    return names


def _decode(v):
    return v.decode("utf-8") if isinstance(v, (bytes, np.bytes_)) else str(v)


def _names_attr(group, name: str) -> list[str]:
    if name in group.attrs:
        return [_decode(n) for n in np.atleast_1d(group.attrs[name])]
    out, i = [], 0
    while f"{name}{i}" in group.attrs:  # Keras splits long name lists into chunks
        out.extend(_decode(n) for n in np.atleast_1d(group.attrs[f"{name}{i}"]))
        i += 1
    return out


def _reader(filename) -> h5_weights.H5Reader:
    """The file at ``filename`` (a regular file), open for checked reading."""
    try:
        return h5_weights.H5Reader(filename, filename, saving_lib.MAX_BYTES)
    except FileFormatError as e:
        raise FileFormatError(filename, e.problem.replace("the weights are not", "it is not")) from None


def _read_named(reader: h5_weights.H5Reader, group, names: list[str], where: str) -> list[np.ndarray]:
    """The datasets ``names`` (paths like ``dense/kernel:0``) under ``group``, checked and read."""
    out = []
    for n in names:
        if any(not p for p in n.split("/")):
            raise FileFormatError(reader.filename, f"'{where}' lists an invalid weight name {n!r}.")
        shape, dtype, ds = reader.dataset_meta(group, n, f"{where}/{n}")
        out.append(reader.read(ds, shape, dtype, f"{where}/{n}"))
    return out


def _plan_layers(model, reader: h5_weights.H5Reader, group, where: str, skip_mismatch: bool) -> list:
    """Match the layers listed in ``group`` (at path ``where``) to the model's and read their weights."""
    fn = reader.filename
    layers = [la for la in state_walk.keras_layers(model) if _legacy_weights(la)]
    saved = []
    for name in _names_attr(group, "layer_names"):
        sub = reader.child(group, name, where)
        if sub is None:
            raise FileFormatError(fn, f"'layer_names' lists '{name}' but the file has no such group.")
        wnames = _names_attr(sub, "weight_names")
        if wnames:
            saved.append((name, sub, wnames))
    if len(saved) != len(layers):
        raise FileFormatError(fn, f"the file holds weights for {len(saved)} layers but the model has "
                                  f"{len(layers)} layers with weights.")
    by_name = {la.name: la for la in layers}
    pairs = ([(by_name[n], n, s, w) for n, s, w in saved] if all(n in by_name for n, _, _ in saved)
             else [(la, n, s, w) for la, (n, s, w) in zip(layers, saved)])
    plan = []
    for layer, name, sub, wnames in pairs:
        variables = _legacy_weights(layer)
        problem = None
        if len(wnames) != len(variables):
            problem = f"layer '{layer.name}' expects {len(variables)} weights; the file has {len(wnames)}"
        else:
            values = _read_named(reader, sub, wnames, f"{where}/{name}" if where else name)
            for v, a in zip(variables, values):
                if tuple(a.shape) != tuple(v.shape):
                    problem = (f"weight '{v.name}' of layer '{layer.name}' has shape {tuple(v.shape)}; the file "
                               f"has {tuple(a.shape)}")
                    break
        if problem is not None:
            if skip_mismatch:
                warnings.warn(f"Skipping loading weights of layer '{layer.name}' from '{fn}': {problem}.",
                              stacklevel=3)
                continue
            raise FileFormatError(fn, problem + ".")
        plan.extend(zip(variables, values))
    return plan


def load_weights(model, path, skip_mismatch: bool = False) -> None:
    """Load a legacy ``.h5`` weights file (or the weights of a legacy full-model file)."""
    filename = os.fspath(path)
    with _reader(filename) as reader:
        try:
            group = reader.child(reader.file, "model_weights")
            where = "model_weights" if group is not None else ""
            plan = _plan_layers(model, reader, reader.file if group is None else group, where, skip_mismatch)
        except FileFormatError:
            raise
        except Exception as e:
            raise FileFormatError(filename, f"the weights could not be read ({type(e).__name__}: {e}).") from None
    h5_weights.apply_plan(plan)


def _json_attr(f, name: str, filename):
    raw = f.attrs.get(name)
    if raw is None:
        return None
    if isinstance(raw, (bytes, np.bytes_)):
        raw = bytes(raw)
    elif not isinstance(raw, str):
        raise FileFormatError(filename, f"attribute '{name}' is not a JSON string.")
    if len(raw) > saving_lib.MAX_CONFIG_BYTES:
        raise FileFormatError(filename, f"attribute '{name}' holds {len(raw)} bytes, more than the limit of "
                                        f"{saving_lib.MAX_CONFIG_BYTES} (lamina.saving.saving_lib.MAX_CONFIG_BYTES).")
    return saving_lib.parse_json(raw if isinstance(raw, bytes) else raw.encode(), f"attribute '{name}'", filename)


def _fit_kwargs(cls, config: dict) -> dict:
    params = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in config.items() if k in params and k != "self"}


def _compile_args(training_config: dict, custom_objects) -> dict:
    from lamina import losses, optimizers  # lazy: loaded on first use; weights-only loads skip them

    opt_cfg = training_config.get("optimizer_config")
    optimizer = "rmsprop"
    if isinstance(opt_cfg, dict) and "class_name" in opt_cfg:
        name = str(opt_cfg["class_name"]).split(">")[-1]
        cls = (custom_objects or {}).get(name) or optimizers.ALL_OBJECTS_DICT.get(name.lower())
        if cls is None:
            raise ValueError(f"Unknown optimizer '{name}' in training_config.")
        cfg = dict(opt_cfg.get("config") or {})
        if isinstance(cfg.get("learning_rate"), dict):
            cfg["learning_rate"] = optimizers.schedules.deserialize(cfg["learning_rate"], custom_objects)
        optimizer = cls(**_fit_kwargs(cls, cfg))

    def metric(m):
        if isinstance(m, list):
            return [metric(x) for x in m]
        if isinstance(m, dict) and m.get("class_name") == "MeanMetricWrapper":
            cfg = m.get("config") or {}
            return cfg.get("fn") or cfg.get("name")
        if isinstance(m, dict):
            from lamina import metrics  # lazy: as losses and optimizers above

            return metrics.deserialize(m, custom_objects)
        return m

    def loss(lo):
        if isinstance(lo, dict) and "class_name" in lo:
            return losses.deserialize(lo, custom_objects)
        if isinstance(lo, dict):
            return {k: loss(v) for k, v in lo.items()}
        if isinstance(lo, list):
            return [loss(x) for x in lo]
        return lo

    metrics_cfg = training_config.get("metrics")
    if isinstance(metrics_cfg, list) and len(metrics_cfg) == 1 and isinstance(metrics_cfg[0], list):
        metrics_cfg = metrics_cfg[0]  # Keras 2 nests per output
    return {"optimizer": optimizer, "loss": loss(training_config.get("loss")),
            "metrics": metric(metrics_cfg), "weighted_metrics": metric(training_config.get("weighted_metrics")),
            "loss_weights": training_config.get("loss_weights")}


def load_model(path, custom_objects=None, compile: bool = True, safe_mode: bool = True):
    """A model from a legacy Keras 2 ``.h5`` file (config, weights, and optimizer when compiling)."""
    filename = os.fspath(path)
    with _reader(filename) as reader:
        f = reader.file
        try:
            config = _json_attr(f, "model_config", filename)
            if config is None:
                raise FileFormatError(filename, "it has no 'model_config' attribute, so it holds weights only: "
                                                "build the model and call model.load_weights(path).")
            group = reader.child(f, "model_weights")
            if group is None:
                raise FileFormatError(filename, "it has no 'model_weights' group.")
            model = saving_lib.model_from_config(config, custom_objects, compile=False, safe_mode=safe_mode,
                                                 filename=filename, stored_values=reader.stored_values())
            plan = _plan_layers(model, reader, group, "model_weights", False)
            training_config = _json_attr(f, "training_config", filename) if compile else None
            if compile and isinstance(training_config, dict):
                compile_config.check_optimizer_config(training_config.get("optimizer_config"), filename)
                try:
                    model.compile(**_compile_args(training_config, custom_objects), lint=False)
                except Exception as e:
                    raise FileFormatError(filename, f"its training_config could not be compiled ({e}).") from e
                plan += _plan_optimizer(model, reader, f)
        except FileFormatError:
            raise
        except Exception as e:
            raise FileFormatError(filename, f"it could not be read ({type(e).__name__}: {str(e)[:300]}).") from None
    h5_weights.apply_plan(plan)
    return model


def _plan_optimizer(model, reader, f) -> list:
    group = reader.child(f, "optimizer_weights")
    if group is None:
        return []
    names = _names_attr(group, "weight_names")
    compile_config.prepare_optimizer(model)
    variables = list(model.optimizer.variables)
    values = _read_named(reader, group, names, "optimizer_weights")
    if len(values) != len(variables) or any(tuple(a.shape) != tuple(v.shape) for v, a in zip(variables, values)):
        warnings.warn(f"The optimizer state in '{reader.filename}' does not match optimizer "
                      f"'{model.optimizer.name}' ({len(values)} saved values for {len(variables)} variables); "
                      "the optimizer starts fresh.", stacklevel=3)
        return []
    plan = list(zip(variables, values))
    weights_loading.check_state(plan, model.optimizer, reader.filename)
    return plan


def save_model(model, path, overwrite: bool = True, include_optimizer: bool = True) -> None:
    """Write the legacy HDF5 full-model file (as Keras 3 does for ``.h5`` paths), atomically."""
    h5py = h5_weights._h5py(path)
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.attrs["keras_version"] = saving_lib.KERAS_FORMAT_VERSION
        f.attrs["backend"] = "numpy"
        f.attrs["model_config"] = json.dumps({"class_name": type(model).__name__, "config": model.get_config()},
                                             default=serialization_lib.json_default).encode("utf8")
        opt = getattr(model, "optimizer", None)
        if include_optimizer and opt is not None and getattr(model, "compiled", False):
            cc = model.get_compile_config() or {}
            training = {k: v for k, v in cc.items() if k in ("loss", "metrics", "weighted_metrics", "loss_weights")}
            training["optimizer_config"] = {"class_name": type(opt).__name__, "config": opt.get_config()}
            f.attrs["training_config"] = json.dumps(serialization_lib.serialize_keras_object(training),
                                                    default=serialization_lib.json_default).encode()
        group = f.create_group("model_weights")
        layers = state_walk.keras_layers(model)
        group.attrs["layer_names"] = [la.name.encode("utf8") for la in layers]
        group.attrs["backend"] = b"numpy"
        group.attrs["keras_version"] = saving_lib.KERAS_FORMAT_VERSION.encode()
        for layer in sorted(layers, key=lambda la: la.name):
            sub = group.create_group(layer.name)
            weights = _legacy_weights(layer)
            names = [n.encode("utf8") for n in _weight_names(layer, weights)]
            sub.attrs["weight_names"] = names
            for n, w in zip(names, weights):
                sub.create_dataset(n.decode(), data=np.asarray(w.numpy()))
        top = group.create_group("top_level_model_weights")
        top.attrs["weight_names"] = []
        if include_optimizer and opt is not None and getattr(model, "compiled", False) and opt.built:
            og = f.create_group("optimizer_weights")
            variables = state_walk.optimizer_variables_keras_order(opt, state_walk.keras_trainable_variables(model))
            names = [str(getattr(v, "path", v.name)).encode("utf8") for v in variables]
            og.attrs["weight_names"] = names
            for n, v in zip(names, variables):
                og.create_dataset(n.decode(), data=np.asarray(v.numpy()))
    write_bytes_atomic(path, buf.getvalue(), overwrite=overwrite)


# Keras's own names for the two (keras.src.legacy.saving.legacy_h5_format), same signatures.
save_model_to_hdf5 = save_model
load_model_from_hdf5 = load_model
