"""What ``compile`` makes of its loss and metrics arguments (Keras's ``compile_utils``).

:class:`CompileLoss` holds one :class:`OutputLoss` per model output and computes the weighted total;
:class:`CompileMetrics` builds the compiled metrics from the first targets they see and updates them.
Also here: wrapping loss functions, the from-logits twin of a crossentropy, and label checks.
"""

from __future__ import annotations

import numpy as np

from lamina import activations, backend, tree
from lamina import losses as losses_lib
from lamina import metrics as metrics_lib
from lamina.autodiff import unwrap
from lamina.models.data import per_output
from lamina.models.nested_loss import NestedLoss

_CROSSENTROPIES = {
    losses_lib.binary_crossentropy: "sigmoid",
    losses_lib.categorical_crossentropy: "softmax",
    losses_lib.sparse_categorical_crossentropy: "softmax",
}


def as_loss_object(loss):
    """A Loss instance: functions (``"mse"`` resolves to one) are wrapped as Keras's compile does."""
    if loss is None or isinstance(loss, losses_lib.Loss):
        return loss
    if callable(loss):
        return losses_lib.LossFunctionWrapper(loss, name=getattr(loss, "__name__", None))
    raise ValueError(f"Could not interpret loss: {loss!r}")


def _crossentropy_for(y_true, y_pred):
    """The crossentropy Keras's compile picks for "crossentropy"/"ce" from the shapes: binary for a
    single-unit output, sparse categorical for integer labels (a rank below the output's, or a last
    axis of 1 against several units), categorical otherwise."""
    st, sp = np.shape(unwrap(y_true)), np.shape(unwrap(y_pred))
    if sp[-1:] == (1,):
        return losses_lib.binary_crossentropy
    if len(st) < len(sp) or (st[-1:] == (1,) and sp[-1:] != (1,)):
        return losses_lib.sparse_categorical_crossentropy
    return losses_lib.categorical_crossentropy


class _CrossentropyByShape(losses_lib.LossFunctionWrapper):
    """compile(loss="crossentropy") (or "ce"): the crossentropy is chosen by the first targets and
    predictions it sees (see :func:`_crossentropy_for`), then kept, as Keras's compile does."""

    def __init__(self, name: str):
        # Until the first call, fn is a stand-in no label check or logits twin recognises.
        super().__init__(_crossentropy_for, name=name)
        self._resolved = False

    def _call_with_mask(self, y_true, y_pred):
        if not self._resolved:
            self.fn = _crossentropy_for(y_true, y_pred)
            self._resolved = True
        return super()._call_with_mask(y_true, y_pred)


def resolve_loss(spec):
    """One output's compile() loss as a Loss object (None stays None); "crossentropy"/"ce" (any case)
    wait for the data to pick their crossentropy."""
    if spec is None:
        return None
    if isinstance(spec, str) and spec.lower() in ("crossentropy", "ce"):
        return _CrossentropyByShape(spec)
    return as_loss_object(losses_lib.get(spec))


def logits_twin(loss, activation):
    """The same loss with ``from_logits=True`` when ``activation`` is the one it undoes, else None.

    Keras's TensorFlow backend does this (through ``_keras_logits``): a sigmoid output feeding a
    binary crossentropy, or a softmax output a categorical one, is computed from the logits —
    stable for saturated outputs, with gradient ``p - y``.
    """
    if not isinstance(loss, losses_lib.LossFunctionWrapper) or activation is None:
        return None
    kind = _CROSSENTROPIES.get(loss.fn)
    if kind is None or loss._fn_kwargs.get("from_logits", False):
        return None
    if loss._fn_kwargs.get("axis", -1) != -1:
        return None
    if (kind == "sigmoid" and activation is not activations.sigmoid) or (
            kind == "softmax" and activation is not activations.softmax):
        return None
    kwargs = dict(loss._fn_kwargs, from_logits=True)
    return losses_lib.LossFunctionWrapper(loss.fn, reduction=loss.reduction, name=loss.name, **kwargs)


def _fn_of(loss):
    return loss.fn if isinstance(loss, losses_lib.LossFunctionWrapper) else loss


def check_targets(loss, y, output_shape) -> None:
    """Labels that cannot fit the loss fail here, before any step, in the loss's own terms."""
    fn = _fn_of(loss)
    y = np.asarray(y)
    name = getattr(loss, "name", getattr(fn, "__name__", "loss"))
    units = output_shape[-1] if output_shape else None
    if fn is losses_lib.sparse_categorical_crossentropy:
        if units is not None and y.ndim == len(output_shape) and y.shape[-1] == units and units > 1:
            raise ValueError(
                f"Loss '{name}' expects integer class indices of shape (n,), but the labels look one-hot "
                f"(shape {y.shape} matches the output's {tuple(output_shape)}). Use "
                "'categorical_crossentropy' for one-hot labels, or pass y.argmax(axis=-1). "
                f"Received: y.shape={y.shape}"
            )
        if y.size and y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
            raise ValueError(
                f"Loss '{name}' expects integer class indices. Received: non-integer labels such as "
                f"{y[np.mod(y, 1) != 0].ravel()[0]}"
            )
        ignore = getattr(loss, "_fn_kwargs", {}).get("ignore_class", getattr(loss, "ignore_class", None))
        valid = y if ignore is None else y[y != ignore]
        if units is not None and valid.size and (valid.min() < 0 or valid.max() >= units):
            raise ValueError(
                f"Loss '{name}': labels must lie in [0, {units}) for a model with {units} output units. "
                f"Received: labels from {valid.min()} to {valid.max()}"
            )
    elif fn is losses_lib.categorical_crossentropy:
        if units is not None and units > 1 and (y.ndim < len(output_shape) or y.shape[-1] != units):
            raise ValueError(
                f"Loss '{name}' expects one-hot labels of shape (n, {units}) to match the output, but "
                f"got shape {y.shape}. For integer class indices use 'sparse_categorical_crossentropy', "
                f"or one-hot encode with lamina.utils.to_categorical(y, {units}). Received: y.shape={y.shape}"
            )


# ----------------------------------------------------------------------------- CompileLoss


class OutputLoss:
    """One output's loss, its weight, its name, and (once the trainer decides it) its from-logits twin."""

    def __init__(self, loss, weight: float, name: str):
        self.loss = loss
        self.weight = weight
        self.name = name
        self.logits_loss = None  # set when the trainer can feed logits

    def __repr__(self) -> str:
        return f"OutputLoss(name={self.name!r}, loss={self.loss!r}, weight={self.weight})"


def _losses_per_output(loss, names: list, model_name: str) -> list:
    """compile()'s ``loss`` (one for all outputs, a list, or a dict by output name) as one entry per output."""
    n_out = max(1, len(names))
    if loss is None:
        return [None] * n_out
    if isinstance(loss, dict):
        unknown = [k for k in loss if k not in names]
        if unknown:
            raise ValueError(
                f"compile(loss=...) has keys {unknown} that are not outputs of model '{model_name}'. "
                f"Expected keys among: {names}. Received: loss keys {list(loss)}"
            )
        return [_single(loss.get(n)) for n in names]
    if isinstance(loss, (list, tuple)):
        if len(loss) != n_out:
            raise ValueError(
                f"compile(loss=[...]) needs one loss per output: model '{model_name}' has {n_out} "
                f"outputs. Received: {len(loss)} losses"
            )
        return [_single(entry) for entry in loss]
    return [loss] * n_out


def _single(entry):
    """One output's loss entry: a list or tuple holding one loss is that loss, as Keras accepts
    (``{"out": ["mse"]}``, ``["mse", ["bce"]]``)."""
    if isinstance(entry, (list, tuple)) and len(entry) == 1:
        return entry[0]
    return entry


def _split_unknown_keys(loss, names: list, model_name: str, dict_outputs: bool) -> tuple:
    """``(error, loss)``: for a loss dict with keys that are not outputs, the error fit will raise
    (a KeyError when the outputs are a dict, as Keras's) and the dict without those keys."""
    if not isinstance(loss, dict):
        return None, loss
    unknown = [k for k in loss if k not in names]
    if not unknown:
        return None, loss
    if dict_outputs:
        error = KeyError(
            f"The key(s) {unknown} in the `loss` argument, can't be found in either the model's output "
            f"(`y_pred`) or in the labels (`y_true`): model '{model_name}' outputs a dict with keys {names}. "
            f"Received: loss keys {list(loss)}"
        )
    else:
        error = ValueError(
            f"compile(loss=...) has keys {unknown} that are not outputs of model '{model_name}'. "
            f"Expected keys among: {names}. Received: loss keys {list(loss)}"
        )
    return error, {k: v for k, v in loss.items() if k in names}


def _is_leaf_entry(entry) -> bool:
    """One output's loss: a loss (or None), or a list/tuple holding one (see :func:`_single`)."""
    if isinstance(entry, (list, tuple)):
        return len(entry) == 1 and not tree.is_nested(entry[0])
    return not isinstance(entry, dict)


def _is_nested_spec(loss, names: list, output_struct, deferred: bool) -> bool:
    """Whether compile's ``loss`` must be laid over the prediction structure (nested_loss) rather than
    read as one loss per output: nested outputs, a namedtuple of losses, an entry that is itself a
    structure, or (with ``deferred``) a list whose length is not the number of outputs."""
    if loss is None or not tree.is_nested(loss) and not _nested_outputs(output_struct):
        return False
    if _nested_outputs(output_struct) or (isinstance(loss, tuple) and hasattr(type(loss), "_fields")):
        return True
    entries = list(loss.values()) if isinstance(loss, dict) else list(loss)
    if not all(_is_leaf_entry(e) for e in entries):
        return True
    return deferred and isinstance(loss, (list, tuple)) and len(loss) != max(1, len(names))


def _nested_outputs(output_struct) -> bool:
    """Outputs nested deeper than one list, tuple or dict of tensors."""
    if not tree.is_nested(output_struct):
        return False
    children = output_struct.values() if isinstance(output_struct, dict) else output_struct
    return any(tree.is_nested(c) for c in children)


def _weights_per_output(loss_weights, names: list) -> list:
    """compile()'s ``loss_weights`` (a number, a list, or a dict by output name; 1 where missing)."""
    n_out = max(1, len(names))
    if isinstance(loss_weights, dict):
        weights = [float(loss_weights.get(n, 1.0)) for n in names]
    elif isinstance(loss_weights, (list, tuple)):
        weights = [float(w) for w in loss_weights]
    elif loss_weights is None:
        weights = [1.0] * n_out
    else:
        weights = [float(loss_weights)] * n_out
    return weights + [1.0] * (n_out - len(weights))


class CompileLoss:
    """compile()'s loss over the model's outputs (Keras's ``CompileLoss``)::

        total = sum_i weight_i * loss_i(y_i, y_pred_i, sample_weight_i) + sum(penalties)

    Outputs compiled without a loss add nothing (``total`` is None when nothing does). With several
    outputs, :attr:`metrics` holds one ``Mean`` tracker per output (``"<output>_loss"``), which the
    trainer updates with each batch's per-output losses (only outputs with a loss have one, and only
    when several do).
    """

    def __init__(self, loss, loss_weights=None, output_names=(), model_name: str = "model",
                 dict_outputs: bool = False, output_struct=None, deferred: bool = False):
        names = list(output_names)
        # Losses that do not map one-to-one onto the outputs apply at paths of the predictions, found
        # from the first batch (see nested_loss); ``deferred``: the model's compute_loss may hand the
        # loss predictions of another structure than its outputs, so a count mismatch waits for them.
        self.nested = None
        self.last_values: list = []  # each output's (or path's) loss in the last call, for the trackers
        if _is_nested_spec(loss, names, output_struct, deferred):
            tensors = tree.flatten(output_struct) if output_struct is not None else []
            flat_names = [t._keras_history[0].name for t in tensors] if tensors else names
            self.nested = NestedLoss(loss, loss_weights, flat_names, resolve_loss)
            self.structure_error = None
            self.output_losses = []  # no per-output loss: the doctor's and the compiled step's checks skip
            self.output_names = names
            self.metrics = []  # one "<name>_loss" tracker per path loss, made with them (see _build_nested)
            return
        weights = _weights_per_output(loss_weights, names)
        # A loss dict naming no output fails when the model first trains or evaluates (Keras builds its
        # compiled loss from the first batch, so compile() itself accepts it); see :attr:`structure_error`.
        self.structure_error, loss = _split_unknown_keys(loss, names, model_name, dict_outputs)
        self.output_losses = [
            OutputLoss(resolve_loss(spec), weights[i],
                       names[i] if names else "output")
            for i, spec in enumerate(_losses_per_output(loss, names, model_name))
        ]
        self.output_names = [output_loss.name for output_loss in self.output_losses]
        # One tracker per output that has a loss, when more than one has (Keras's rule): the trainer
        # feeds them the non-None entries of each step's per-output losses, in order.
        with_loss = [o.name for o in self.output_losses if o.loss is not None]
        self.metrics = [metrics_lib.Mean(name=f"{name}_loss") for name in with_loss] if len(with_loss) > 1 else []

    @property
    def has_loss(self) -> bool:
        """Whether any loss was compiled (a structured loss always has one)."""
        return self.nested is not None or any(o.loss is not None for o in self.output_losses)

    def split(self, s) -> list:
        """Targets, predictions or sample weights as one entry per output, in output order."""
        return per_output(s, self.output_names)

    def _call_nested(self, y_true, y_pred, sample_weight, penalties):
        nested = self.nested
        fresh = not nested.built
        values = self.last_values = nested(y_true, y_pred, sample_weight)
        if fresh and len(nested.path_losses) > 1:  # trackers, in place: the trainer holds this list
            self.metrics.extend(metrics_lib.Mean(name=f"{p.name}_loss") for p in nested.path_losses)
        total = None
        for value, path_loss in zip(values, nested.path_losses):
            term = value if path_loss.weight is None else value * float(path_loss.weight)
            total = term if total is None else total + term
        return add_penalties(total, penalties), values

    def __call__(self, y_true, y_pred, sample_weight=None, logits: bool = False, penalties=()):
        """``(total, per_output)``: the weighted total (a Tensor under a tape, or None) and each output's
        unweighted loss (None for an output without one). ``logits``: the predictions are the output
        layer's logits, and each loss is its from-logits twin. A structured loss gives one value per
        path loss instead."""
        if self.nested is not None:
            return self._call_nested(y_true, y_pred, sample_weight, penalties)
        names = self.output_names
        ys = per_output(y_true, names)
        preds = per_output(y_pred, names)
        sws = per_output(sample_weight, names) if isinstance(sample_weight, (dict, list, tuple)) else \
            [sample_weight] * len(self.output_losses)
        total = None
        losses = []
        for i, output_loss in enumerate(self.output_losses):
            if output_loss.loss is None:
                losses.append(None)
                continue
            fn = output_loss.logits_loss if logits else output_loss.loss
            value = fn(ys[i], preds[i], sample_weight=sws[i] if i < len(sws) else None)
            losses.append(value)
            term = value * output_loss.weight if output_loss.weight != 1.0 else value
            total = term if total is None else total + term
        for penalty in penalties:  # inline, not add_penalties(): this runs every step
            total = penalty if total is None else total + penalty
        self.last_values = losses
        return total, losses

    def adopt_logits(self, activation) -> bool:
        """Give the single output its from-logits twin when ``activation`` is the one its crossentropy
        undoes (see :func:`logits_twin`); returns whether it did."""
        if self.nested is not None or len(self.output_losses) != 1 or self.output_losses[0].loss is None:
            return False
        output_loss = self.output_losses[0]
        twin = logits_twin(output_loss.loss, activation)
        if twin is None:
            return False
        output_loss.logits_loss = twin
        return True


def add_penalties(total, penalties):
    """``total`` plus each regularization penalty (None stays None when there are none)."""
    for penalty in penalties:
        total = penalty if total is None else total + penalty
    return total


# ----------------------------------------------------------------------------- CompileMetrics


def _specs_for_output(specs, i: int, names: list) -> list:
    """The metric identifiers of output ``i``: one list for every output, a list with one entry per
    output (an identifier or a list of them; Keras's rule whenever the list is as long as the outputs
    and there are several), or a dict by output name (a value may be one identifier or a list)."""
    if specs is None:
        return []
    if isinstance(specs, dict):
        # One output: every metric in the dict is its own, whatever the key (as Keras).
        entry = specs.get(names[i], []) if len(names) > 1 else [m for v in specs.values() for m in _as_list(v)]
        return _as_list(entry)
    if isinstance(specs, (list, tuple)) and len(names) > 1 and len(specs) == len(names):
        return _as_list(specs[i])
    if isinstance(specs, (list, tuple)) and specs and isinstance(specs[0], (list, tuple)):
        return list(specs[i]) if i < len(specs) else []
    return _as_list(specs)


def _as_list(entry) -> list:
    return list(entry) if isinstance(entry, (list, tuple)) else [entry]


def _check_metric_keys(specs, argument: str, names: list) -> None:
    """A dict of metrics must name outputs of the model (checked when the metrics are built, as Keras)."""
    if not isinstance(specs, dict) or len(names) <= 1:
        return
    unknown = [k for k in specs if k not in names]
    if unknown:
        raise ValueError(
            f"Invalid `{argument}`: its keys {unknown} are not outputs of the model. `{argument}` must be "
            f"a dict keyed by output name among {names}, or a list with one entry per output. "
            f"Received: {argument}={specs}"
        )


def _name_uniquely(output_metrics: list, names) -> None:
    """Each metric's ``_display_name``: ``"<output>_<name>"`` (just the name for one output), made
    unique as Keras makes its log keys: the unweighted metrics of every output first, a repeated name
    getting ``_1``, ``_2``, ...; then the weighted ones, a name already taken becoming
    ``"<output>_weighted_<name>"`` (numbered likewise if that is taken too)."""
    counters: dict[str, int] = {}

    def number(name: str) -> str:
        if name not in counters:
            counters[name] = 1
            return name
        index = counters[name]
        counters[name] += 1
        return f"{name}_{index}"

    for weighted in (False, True):
        for i, ms in enumerate(output_metrics):
            prefix = f"{names[i]}_" if names else ""
            for m in ms:
                if m._weighted is not weighted:
                    continue
                name = prefix + m.name
                if weighted and name in counters:
                    name = f"{prefix}weighted_{m.name}"
                m._display_name = number(name)


class CompileMetrics:
    """compile()'s ``metrics`` and ``weighted_metrics`` for each output (Keras's ``CompileMetrics``).

    Built from the first targets and predictions they see: ``"accuracy"`` becomes binary,
    categorical or sparse categorical accuracy by their shapes and the output's loss.
    ``output_metrics[i]`` lists output i's metrics, the unweighted ones first; each metric carries
    ``_display_name`` (``"<output>_<name>"`` when there are several outputs) and ``_weighted``
    (whether it reads the sample weights).
    """

    name = "compile_metrics"

    def __init__(self, metrics, weighted_metrics, compile_loss: CompileLoss):
        self.metric_specs = metrics
        self.weighted_metric_specs = weighted_metrics
        self._compile_loss = compile_loss
        self.output_metrics: list[list] = []

    @property
    def built(self) -> bool:
        return bool(self.output_metrics)

    @property
    def metrics(self) -> list:
        """Every compiled metric, output by output."""
        return [m for ms in self.output_metrics for m in ms]

    def build(self, y_true, y_pred) -> None:
        output_losses = self._compile_loss.output_losses
        names = self._compile_loss.output_names
        _check_metric_keys(self.metric_specs, "metrics", names)
        _check_metric_keys(self.weighted_metric_specs, "weighted_metrics", names)
        ys = per_output(y_true, names)
        preds = per_output(y_pred, names)
        self.output_metrics = []
        # A structured loss has no per-output losses: its metrics follow the output names alone.
        count = len(output_losses) if output_losses else max(1, len(names))
        if self._compile_loss.nested is not None and (len(preds) != count or any(map(tree.is_nested, preds))):
            raise ValueError(
                f"Invalid `metrics`: compiled metrics are read one output at a time, but the predictions are "
                f"nested ({tree.map_structure(lambda _: '*', y_pred)}) and cannot be split into the {count} "
                f"outputs {names}. Compute such metrics in a callback or a custom train_step. "
                f"Received: metrics={self.metric_specs}, weighted_metrics={self.weighted_metric_specs}"
            )
        for i in range(count):
            loss = output_losses[i].loss if output_losses else None
            out = []
            for specs, weighted in ((self.metric_specs, False), (self.weighted_metric_specs, True)):
                for spec in _specs_for_output(specs, i, names):
                    yt = ys[i] if i < len(ys) else None
                    m = metrics_lib.get_metric(spec, np.shape(yt) if yt is not None else None,
                                               np.shape(unwrap(preds[i])), loss=loss)
                    m._weighted = weighted
                    out.append(m)
            self.output_metrics.append(out)
        _name_uniquely(self.output_metrics, names if count > 1 else None)

    def ensure_built(self, y_true, y_pred) -> None:
        """Build from these targets unless built already (or there is nothing to build)."""
        if not self.output_metrics and (self.metric_specs or self.weighted_metric_specs):
            self.build(y_true, y_pred)

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        """Each output's metrics on its targets and predictions; weighted ones take the sample weights."""
        output_metrics = self.output_metrics
        if not output_metrics:
            if not (self.metric_specs or self.weighted_metric_specs):
                return
            self.build(y_true, y_pred)
            output_metrics = self.output_metrics
        names = self._compile_loss.output_names
        ys = per_output(y_true, names)
        preds = per_output(y_pred, names)
        for i, ms in enumerate(output_metrics):
            for m in ms:
                sw = sample_weight if m._weighted else None
                if isinstance(sw, (list, tuple, dict)):
                    sw = per_output(sw, names)[i]
                m.update_state(ys[i], _with_mask(preds[i]), sample_weight=sw)

    def reset_state(self) -> None:
        for m in self.metrics:
            m.reset_state()

    def result(self) -> dict:
        """Each metric's result by its display name."""
        return {m._display_name: m.result() for m in self.metrics}


def _with_mask(pred):
    """``unwrap(pred)``, keeping the mask a layer attached to the recorded output (the metrics weight by it)."""
    value = unwrap(pred)
    if backend._MASKS and value is not pred:
        mask = backend.get_keras_mask(pred)
        if mask is not None and backend.get_keras_mask(value) is None:
            backend.set_keras_mask(value, mask)
    return value
