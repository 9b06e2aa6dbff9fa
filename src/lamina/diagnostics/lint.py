"""Model lint: activation mistakes caught before training.

``lint(model, x=None, y=None)`` returns a list of :class:`~lamina.diagnostics.Finding`. ``compile``
runs the structural and loss rules (``check_at_compile``) and ``fit`` the data rules
(``check_at_fit``): errors raise :class:`~lamina.diagnostics.ModelError` unless the model was
compiled with ``lint="warn"``; warnings and hints go through Python's ``warnings`` with the
categories ``LintWarning`` and ``LintHint``; ``lint=False`` skips everything. ``compile`` without
``lint=`` takes the process-wide mode of ``lamina.config.set_lint_mode`` (``"raise"`` by default,
``"warn"``, ``"off"``), for Keras code that cannot be edited.

Rules (rule id — severity):

* ``softmax-single-unit`` — error: softmax/log_softmax over an axis of size 1 is always 1 (0); for a
  convolution (``Conv2D(1, 3, activation="softmax")``), its channel axis with one filter.
* ``softmax-channels-first`` — warning: a ``channels_first`` convolution with a softmax activation
  normalises over its last (spatial) axis, not its channels.
* ``linear-chain`` — warning: Dense or convolution layers with no activation between them (through
  Dropout, Flatten, Reshape, BatchNormalization and the weightless linear layers: average pooling,
  padding, cropping, up-sampling) compose to a single linear map.
* ``no-nonlinearity`` — warning: a classifier whose hidden layers (Dense or convolutions) have no
  non-linearity at all is a linear classifier however deep it is (reported instead of
  ``linear-chain``).
* ``from-logits-after-probability`` — error: ``from_logits=True`` after a sigmoid/softmax output.
* ``linear-output-probabilistic-loss`` — error: a crossentropy with ``from_logits=False`` on an
  output with no activation (it would clip or renormalise raw scores).
* ``softmax-binary-crossentropy`` — warning: softmax output of several units with binary crossentropy.
* ``sigmoid-categorical-crossentropy`` — warning: sigmoid output with a categorical crossentropy.
* ``categorical-loss-single-unit`` — error: a categorical crossentropy on one output unit is always 0.
* ``nonnegative-output-crossentropy`` — warning: relu/softplus-style output into a crossentropy.
* ``deep-sigmoid-stack`` — hint: ``DEEP_STACK`` or more consecutive sigmoid (or hard_sigmoid) hidden
  layers (Dense or convolutions, counted through Flatten, Dropout and pooling, so sigmoid convolutions
  flattened into sigmoid Dense layers are one stack) with the default (Glorot) initialisation:
  gradients shrink layer by layer. For a Conv2D(16, 3)-MaxPooling2D-Conv2D(16, 3)-Flatten-Dense(32)-Dense(32)
  stack on 12x12 standard-normal images the first-conv/last-hidden gradient-norm ratio is 6e-3 to 1e-2 with
  sigmoid against 0.35-0.8 with relu (3 seeds). Measured with
  32-unit layers on standard-normal inputs, the first/last gradient-norm ratio is 4e-3 at 4 sigmoid
  layers, 2e-4 at 6 and 1e-5 at 8. Tanh stacks are not flagged: with Glorot initialisation (designed
  for tanh) the ratio stays near 0.7-1 even at 10 layers; their saturation shows in ``ActivationHealth``.
* with data: ``labels-one-hot-for-sparse``, ``labels-integers-for-categorical``,
  ``labels-out-of-range``, ``labels-class-count`` — errors; ``inputs-unscaled`` — hint (values of
  ``UNSCALED`` or more, 99th percentile of ``|x|``, reaching a sigmoid/tanh layer);
  ``inputs-huge`` — warning (a largest ``|x|`` of ``HUGE`` or more reaching any built-in layer,
  reported instead of ``inputs-unscaled``). Measured on a 16-unit relu network: at ``|x| ~ 1e4``
  SGD turns the loss NaN within 3 epochs (MSE and sparse crossentropy alike); Adam at 1e30 still
  reports a loss of 7e29.
* sequences (:mod:`lamina.diagnostics.sequence_lint`): ``recurrent-unbounded-gates`` — warning,
  ``recurrent-unbounded-state`` — hint (relu-style gates or state over long sequences);
  ``mask-dropped`` — warning (a masked sequence reaching a layer that ignores the mask); with the
  targets, ``time-axis-dropped`` / ``time-axis-kept`` — errors (per-step targets for a per-sequence
  output, or the other way round).
"""

from __future__ import annotations

import warnings

import numpy as np

from lamina import config, initializers
from lamina import layers as layers_lib
from lamina.diagnostics import _graph, health, sequence_lint
from lamina.diagnostics._graph import (
    ACT,
    AFFINE,
    AFFINE_ACT,
    LINEAR_OP,
    NORM,
    OTHER,
    SATURATING,
    TRANSPARENT,
    Graph,
    activation_of,
    channel_axis,
    conv_class,
    is_affine,
    role_of,
)
from lamina.diagnostics.findings import Finding, LintHint, LintWarning, ModelError

__all__ = ["DEEP_STACK", "HUGE", "UNSCALED", "check_at_compile", "check_at_fit", "lint"]

DEEP_STACK = 4  # consecutive sigmoid/tanh hidden layers that earn the vanishing-gradient hint
UNSCALED = 100.0  # 99th percentile of |x| from which inputs into sigmoid/tanh count as unscaled
HUGE = 1e4  # largest |x| from which inputs count as huge for any layer (SGD already turns NaN there)
_SIGMOIDS = ("sigmoid", "hard_sigmoid")
_SEVERITY_ORDER = {"error": 0, "warning": 1, "hint": 2}
_MODES = (None, True, "warn", False)


def lint(model, x=None, y=None) -> list[Finding]:
    """Every finding for ``model`` (structure, output activation vs compiled loss, and, given data,
    labels vs loss and input scaling), errors first."""
    _check_model(model)
    graph = Graph(model)
    findings = _structural(model, graph) + _loss_rules(model, graph)
    if x is not None or y is not None:
        findings += _data_rules(model, x, y, graph)
    return _sorted(findings)


def check_at_compile(model, mode=None) -> None:
    """Run the structural and loss rules at the end of ``compile`` (the trainer's hook)."""
    mode = _check_mode(mode)
    model._lint_mode = mode
    if mode is False:
        return
    graph = Graph(model)
    model._lint_structure_done = graph.known
    findings = _structural(model, graph) + _loss_rules(model, graph)
    _report(findings, mode, stacklevel=5)


def check_at_fit(model, x, y, mode=None) -> None:
    """At the start of ``fit`` (after the data is prepared): keep a row sample for
    ``ActivationHealth``, then run the data rules (and the structural ones if the model was not
    built at compile time)."""
    mode = _check_mode(mode)
    health.keep_sample(model, x, y)
    if mode is False:
        return
    findings = []
    graph = Graph(model)
    if not getattr(model, "_lint_structure_done", False) and graph.known:
        findings += _structural(model, graph) + _loss_rules(model, graph)
        model._lint_structure_done = True
    sample = getattr(model, "_fit_sample", None)
    xs = sample[0] if sample is not None else None
    findings += _data_rules(model, xs, y, graph)
    _report(findings, mode, stacklevel=5)


# ----------------------------------------------------------------------------- plumbing


def _check_model(model) -> None:
    if not hasattr(model, "layers") or not hasattr(model, "weights"):
        raise TypeError(f"lint expects a lamina Model. Received: {type(model).__name__} {model!r:.80}")


def _check_mode(mode):
    """``mode`` as True (errors raise), ``"warn"`` or False; None takes ``lamina.config.lint_mode()``."""
    if not any(mode is m or (isinstance(m, str) and mode == m) for m in _MODES):
        raise ValueError(
            "compile(lint=...) must be None (the mode of lamina.config.set_lint_mode, 'raise' by default), "
            "True (errors raise, warnings warn), 'warn' (errors become warnings) or False (no checks). "
            f"Received: lint={mode!r}"
        )
    if mode is None:
        mode = {"raise": True, "warn": "warn", "off": False}[config.lint_mode()]
    return mode


def _sorted(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: _SEVERITY_ORDER[f.severity])


def _report(findings: list[Finding], mode, stacklevel: int) -> None:
    findings = _sorted(findings)
    errors = [f for f in findings if f.severity == "error"]
    if errors and mode != "warn":
        raise ModelError(errors)
    for f in findings:
        category = LintHint if f.severity == "hint" else LintWarning
        warnings.warn(str(f), category, stacklevel=stacklevel)


def _names(nodes) -> tuple[str, ...]:
    return tuple(g.layer.name for g in nodes)


# ----------------------------------------------------------------------------- structure


def _axis_sizes(shape, axis) -> list:
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    out = []
    for a in axes:
        if -len(shape) <= a < len(shape):
            out.append(shape[a])
    return out


def _softmax_axis(layer):
    if isinstance(layer, layers_lib.Softmax):
        return layer.axis
    return -1


def _next_affine(graph: Graph, g, through=(TRANSPARENT, NORM, LINEAR_OP), saturating_acts: bool = False,
                 pools: bool = False):
    """The Dense or convolution layer ``g`` feeds alone, through layers whose role is in ``through``
    (and, with ``saturating_acts``, sigmoid/tanh activation layers; with ``pools``, pooling layers);
    else None."""
    cur = g
    while True:
        kids = graph.children(cur)
        if len(kids) != 1 or graph.is_output(cur):
            return None
        k = kids[0]
        if is_affine(k.layer):
            return k
        if role_of(k.layer) in through or (saturating_acts and _effective_saturating_act(k.layer)) or (
                pools and _is_pooling(k.layer)):
            cur = k
            continue
        return None


def _is_pooling(layer) -> bool:
    """Max or average pooling, local or global: they pass a shrunken gradient on, never a larger one."""
    return "Pooling" in type(layer).__name__ and type(layer).__module__.startswith("lamina.")


def _effective_saturating_act(layer) -> bool:
    return role_of(layer) == ACT and activation_of(layer) in SATURATING


def _dense_saturating(graph: Graph, g) -> str | None:
    """The sigmoid/tanh-style activation a Dense or convolution node effectively applies (its own, or
    that of the Activation layer it feeds alone), or None."""
    act = activation_of(g.layer)
    if act in SATURATING:
        return act
    if act == "linear":
        cur = g
        while True:
            kids = graph.children(cur)
            if len(kids) != 1:
                return None
            k = kids[0]
            r = role_of(k.layer)
            if r == TRANSPARENT:
                cur = k
                continue
            a = activation_of(k.layer)
            return a if r == ACT and a in SATURATING else None
    return None


def _structural(model, graph: Graph | None = None) -> list[Finding]:
    graph = graph or Graph(model)
    if not graph.known:
        return []
    out: list[Finding] = []
    # softmax over an axis of size 1
    for g in graph.nodes:
        act = activation_of(g.layer)
        if act not in ("softmax", "log_softmax") or not g.outputs:
            continue
        sizes = _axis_sizes(g.outputs[0].shape, _softmax_axis(g.layer))
        if sizes and all(s == 1 for s in sizes):
            value = "1.0" if act == "softmax" else "0.0"
            out.append(_softmax_single_unit(g.layer, act, value))
        elif conv_class(g.layer) and channel_axis(g.layer) == 1 and len(g.outputs[0].shape) > 2:
            out.append(_softmax_channels_first(g.layer, act, g.outputs[0].shape[1]))
    heads = {id(h) for h in (graph.head(i) for i in range(len(graph.outputs))) if h is not None}
    # a classifier with no non-linearity at all
    no_nonlin = _no_nonlinearity(model, graph, heads)
    if no_nonlin is not None:
        out.append(no_nonlin)
    else:
        out += _linear_chains(graph)
    out += _deep_saturating(graph, heads)
    out += sequence_lint.recurrent_rules(graph) + sequence_lint.mask_rules(graph)
    return out


def _softmax_single_unit(layer, act: str, value: str) -> Finding:
    kind = conv_class(layer) if channel_axis(layer) == -1 else None
    if kind:  # a channels_last convolution's activation runs over its channel axis: one channel
        conv = kind if kind in _graph.PLAIN_CONV else "Conv2D"
        return Finding(
            "softmax-single-unit", "error", (layer.name,),
            f"Layer {_graph.layer_label(layer)} applies {act} over its channel axis, which holds a single "
            f"channel, so its output is always {value} at every position whatever the input: nothing can be "
            "learned through it.",
            f"For a per-position yes/no output (a mask) use {conv}(1, ..., activation='sigmoid') with "
            f"binary_crossentropy; for k classes per position use {conv}(k, ..., activation='softmax').",
        )
    return Finding(
        "softmax-single-unit", "error", (layer.name,),
        f"Layer {_graph.layer_label(layer)} applies {act} over an axis of size 1, so its output "
        f"is always {value} whatever the input: nothing can be learned through it.",
        "For a yes/no output use one unit with activation='sigmoid' and binary_crossentropy; for k "
        "classes use k units with softmax.",
    )


def _softmax_channels_first(layer, act: str, channels) -> Finding:
    return Finding(
        "softmax-channels-first", "warning", (layer.name,),
        f"Layer {_graph.layer_label(layer)} has data_format='channels_first' and activation='{act}': "
        f"the activation runs over the last axis, which is a spatial axis here, not the {channels} "
        "channels, so it normalises each row of pixels instead of the class scores at each position.",
        f"Use data_format='channels_last', or no activation on the {type(layer).__name__} followed by "
        f"lamina.layers.Softmax(axis=1).",
    )


def _is_nonlinear(g) -> bool:
    r = role_of(g.layer)
    return r in (AFFINE_ACT, ACT, OTHER)


def _no_nonlinearity(model, graph: Graph, heads: set) -> Finding | None:
    if len(graph.outputs) != 1:
        return None
    head = graph.head(0)
    if head is None:
        return None
    head_act = activation_of(head.layer)
    loss_kind = None
    losses = getattr(model, "_output_losses", None) or []
    if losses and losses[0].loss is not None:
        loss_kind = _loss_info(losses[0].loss)[0]
    classifier = head_act in ("sigmoid", "softmax", "log_softmax") or loss_kind is not None
    if not classifier:
        return None
    dense = [g for g in graph.nodes if is_affine(g.layer)]
    if len(dense) < 2:
        return None
    if any(_is_nonlinear(g) for g in graph.nodes if id(g) not in heads):
        return None
    kinds = sorted({type(g.layer).__name__ for g in dense})
    what = "Dense layers" if kinds == ["Dense"] else f"layers with weights ({', '.join(kinds)})"
    return Finding(
        "no-nonlinearity", "warning", _names(dense),
        f"The classifier has {len(dense)} {what} but no non-linearity before its output, so it "
        "computes a single linear map followed by the output activation: a linear classifier, however "
        "many layers it has (it cannot separate, say, two concentric circles).",
        "Give the hidden layers a non-linear activation, e.g. Dense(64, activation='relu').",
    )


def _linear_chains(graph: Graph) -> list[Finding]:
    affine = [g for g in graph.nodes if role_of(g.layer) == AFFINE]
    nxt = {id(g): _next_affine(graph, g) for g in affine}
    targets = {id(n) for n in nxt.values() if n is not None}
    out = []
    for g in affine:
        if id(g) in targets:
            continue
        chain = [g]
        cur = g
        while id(cur) in nxt and nxt[id(cur)] is not None:
            cur = nxt[id(cur)]
            chain.append(cur)
        if len(chain) >= 2 and any(conv_class(n.layer) for n in chain):
            out.append(_linear_conv_chain(chain))
        elif len(chain) >= 2:
            out.append(Finding(
                "linear-chain", "warning", _names(chain),
                f"Dense layers {', '.join(repr(n) for n in _names(chain))} follow one another with no "
                "activation in between (Dropout, Flatten, Reshape and BatchNormalization do not count), "
                "so these compose to a single linear map: the extra layers add parameters, not power.",
                "Give the hidden Dense layers a non-linear activation such as 'relu', or use one Dense layer "
                "(lamina.diagnostics.fold(model) merges them for inference).",
            ))
    return out


def _linear_conv_chain(chain: list) -> Finding:
    labels = ", ".join(_graph.layer_label(n.layer) for n in chain)
    return Finding(
        "linear-chain", "warning", _names(chain),
        f"Layers {labels} follow one another with no activation in between (Dropout, Flatten, padding, "
        "average pooling and BatchNormalization do not count): a convolution without an activation is a "
        "linear map, so these compose to a single linear map (one larger convolution, or one Dense): the "
        "extra layers add parameters, not power.",
        "Give the hidden layers a non-linear activation, e.g. Conv2D(32, 3, activation='relu'), or put "
        "an Activation('relu') (or MaxPooling) between them.",
    )


def _is_default_init(layer) -> bool:
    init = getattr(layer, "kernel_initializer", None)
    return isinstance(init, (initializers.GlorotUniform, initializers.GlorotNormal))


def _deep_saturating(graph: Graph, heads: set) -> list[Finding]:
    sat = [g for g in graph.nodes if is_affine(g.layer) and id(g) not in heads
           and _dense_saturating(graph, g) in _SIGMOIDS]
    sat_ids = {id(g) for g in sat}
    nxt = {}
    for g in sat:
        n = _next_affine(graph, g, through=(TRANSPARENT, LINEAR_OP), saturating_acts=True, pools=True)
        nxt[id(g)] = n if n is not None and id(n) in sat_ids else None
    targets = {id(n) for n in nxt.values() if n is not None}
    out = []
    for g in sat:
        if id(g) in targets:
            continue
        run = [g]
        while nxt.get(id(run[-1])) is not None:
            run.append(nxt[id(run[-1])])
        if len(run) >= DEEP_STACK and all(_is_default_init(n.layer) for n in run):
            acts = sorted({_dense_saturating(graph, n) for n in run})
            out.append(Finding(
                "deep-sigmoid-stack", "hint", _names(run),
                f"{len(run)} consecutive {'/'.join(acts)} hidden layers with the default Glorot "
                "initialisation: each layer scales the backward signal by the activation's slope (at most "
                "0.25), so the first layers' gradients vanish and they barely learn.",
                "Use activation='relu' (with kernel_initializer='he_normal') in the hidden layers, add "
                "BatchNormalization between them, or use fewer layers.",
            ))
    return out


# ----------------------------------------------------------------------------- output vs loss


def _loss_info(loss) -> tuple[str | None, bool, object]:
    """``(kind, from_logits, fn)`` with kind "binary", "categorical", "sparse" or None."""
    from lamina import losses as losses_lib  # lazy: losses load on first use, and only a compiled model has one

    fn = getattr(loss, "fn", loss)
    kwargs = getattr(loss, "_fn_kwargs", {}) or {}
    kinds = {
        losses_lib.binary_crossentropy: "binary",
        losses_lib.binary_focal_crossentropy: "binary",
        losses_lib.categorical_crossentropy: "categorical",
        losses_lib.categorical_focal_crossentropy: "categorical",
        losses_lib.sparse_categorical_crossentropy: "sparse",
    }
    kind = kinds.get(fn) if callable(fn) else None
    return kind, bool(kwargs.get("from_logits", False)), fn


def _head_activation(graph: Graph, i: int) -> tuple[str | None, object]:
    """The activation that produces output ``i`` ("linear" for an affine layer), and the head node."""
    head = graph.head(i)
    if head is None:
        return None, None
    r = role_of(head.layer)
    if r in (AFFINE, NORM, _graph.LINEAR_MERGE):
        return "linear", head
    return activation_of(head.layer), head


def _loss_rules(model, graph: Graph | None = None) -> list[Finding]:
    graph = graph or Graph(model)
    losses = getattr(model, "_output_losses", None) or []
    if not graph.known or not losses:
        return []
    out = []
    for i, output_loss in enumerate(losses):
        if output_loss.loss is None or i >= len(graph.outputs):
            continue
        kind, from_logits, fn = _loss_info(output_loss.loss)
        if kind is None:
            continue
        act, head = _head_activation(graph, i)
        if act is None:
            continue
        units = graph.outputs[i].shape[-1] if graph.outputs[i].shape else None
        lname = getattr(output_loss.loss, "name", getattr(fn, "__name__", "loss"))
        layers = (head.layer.name,)
        label = _graph.layer_label(head.layer)
        if from_logits and act in ("sigmoid", "softmax"):
            out.append(Finding(
                "from-logits-after-probability", "error", layers,
                f"The output layer {label} applies {act}, but the loss '{lname}' has from_logits=True, so it "
                f"applies a {'sigmoid' if kind == 'binary' else 'softmax'} again to values already in [0, 1]: "
                "the predicted probabilities are squashed and the gradients are wrong.",
                f"Either drop the output activation (activation=None) and keep from_logits=True, or keep "
                f"{act} and use from_logits=False.",
            ))
        elif not from_logits and act == "linear":
            out.append(Finding(
                "linear-output-probabilistic-loss", "error", layers,
                f"The output layer {label} has no activation, but the loss '{lname}' has from_logits=False, "
                "so it reads raw scores as probabilities: they are clipped to [epsilon, 1 - epsilon]"
                f"{' or renormalised by their sum' if kind != 'binary' else ''}, which stalls or breaks "
                "training.",
                f"Pass from_logits=True to the loss (e.g. {_logits_example(kind)}), or give the output "
                f"layer activation='{'sigmoid' if kind == 'binary' else 'softmax'}'.",
            ))
        if kind == "binary" and act == "softmax" and units is not None and units > 1:
            out.append(Finding(
                "softmax-binary-crossentropy", "warning", layers,
                f"The output layer {label} applies softmax over {units} units, which makes them sum to 1, "
                f"but '{lname}' scores each unit as an independent yes/no: the loss and the accuracy it "
                "reports do not describe a single-label classifier.",
                "For one class per sample use categorical_crossentropy (one-hot labels) or "
                "sparse_categorical_crossentropy (integer labels); for several labels per sample use "
                "activation='sigmoid'.",
            ))
        if kind in ("categorical", "sparse"):
            if units == 1 and act not in ("softmax", "log_softmax"):
                out.append(Finding(
                    "categorical-loss-single-unit", "error", layers,
                    f"'{lname}' normalises the predictions over the class axis, which has a single unit "
                    f"in layer {label}: the loss is 0 whatever the model predicts, so nothing is learned.",
                    "For two classes use one sigmoid unit with binary_crossentropy, or two units with "
                    "softmax.",
                ))
            elif act == "sigmoid":
                out.append(Finding(
                    "sigmoid-categorical-crossentropy", "warning", layers,
                    f"The output layer {label} applies sigmoid (independent units) but '{lname}' expects a "
                    "probability distribution over classes: the loss renormalises the outputs and the "
                    "probabilities the model reports do not sum to 1.",
                    "Use activation='softmax' for one class per sample, or binary_crossentropy for several "
                    "labels per sample.",
                ))
        if act in ("relu", "relu6", "softplus", "exponential"):
            out.append(Finding(
                "nonnegative-output-crossentropy", "warning", layers,
                f"The output layer {label} applies {act}, whose outputs are never negative, into the "
                f"crossentropy '{lname}': as probabilities they exceed 1 or stick at 0, and as logits they "
                "cannot express 'unlikely'.",
                f"Use activation='{'sigmoid' if kind == 'binary' else 'softmax'}' on the output, or no "
                "activation with from_logits=True.",
            ))
    return out


def _logits_example(kind: str) -> str:
    return {"binary": "BinaryCrossentropy(from_logits=True)",
            "categorical": "CategoricalCrossentropy(from_logits=True)",
            "sparse": "SparseCategoricalCrossentropy(from_logits=True)"}[kind]


# ----------------------------------------------------------------------------- data


def _as_list(model, s) -> list:
    if s is None:
        return []
    if hasattr(model, "_as_list"):
        return model._as_list(s)
    return list(s) if isinstance(s, (list, tuple)) else [s]


def _data_rules(model, x, y, graph: Graph | None = None) -> list[Finding]:
    graph = graph or Graph(model)
    out = []
    xs = _flat_inputs(model, x) if x is not None and graph.known else None
    timed = _time_axis_rules(model, y, graph, xs) if y is not None and graph.known else []
    out += timed
    if y is not None:
        out += _label_rules(model, y, graph, skip={f.details["output"] for f in timed})
    if xs is not None:
        out += _input_rules(model, xs, graph)
        out += sequence_lint.recurrent_rules(graph, xs)
    return out


def _flat_inputs(model, x) -> list | None:
    try:
        return _graph.flatten_inputs(model, x)
    except (ValueError, TypeError):
        return None


def _time_axis_rules(model, y, graph: Graph, xs: list | None) -> list[Finding]:
    """``time-axis-dropped`` / ``time-axis-kept`` (see :mod:`lamina.diagnostics.sequence_lint`), each with
    ``details["output"]``: the label rules skip that output (its labels are not wrong, its time axis is)."""
    losses = getattr(model, "_output_losses", None) or []
    ys = _as_list(model, y)
    out = []
    for i, output_loss in enumerate(losses):
        if output_loss.loss is None or i >= len(ys) or i >= len(graph.outputs) or not hasattr(ys[i], "shape"):
            continue
        finding = sequence_lint.target_rules(graph, i, _loss_info(output_loss.loss)[0], ys[i], xs)
        if finding is not None:
            out.append(Finding(finding.rule, finding.severity, finding.layers, finding.message, finding.fix,
                               details={"output": i}))
    return out


def _looks_one_hot(y: np.ndarray) -> bool:
    if y.size == 0:
        return False
    rows = y.reshape(-1, y.shape[-1])[:2048]
    return bool(np.all((rows == 0) | (rows == 1)) and np.all(rows.sum(axis=-1) == 1))


def _label_rules(model, y, graph: Graph, skip=frozenset()) -> list[Finding]:
    losses = getattr(model, "_output_losses", None) or []
    ys = _as_list(model, y)
    out = []
    for i, output_loss in enumerate(losses):
        if output_loss.loss is None or i >= len(ys) or i >= len(graph.outputs) or i in skip:
            continue
        kind, _, fn = _loss_info(output_loss.loss)
        if kind is None:
            continue
        yi = np.asarray(ys[i])
        if yi.size == 0 or yi.dtype.kind not in "biuf":
            continue
        out_shape = graph.outputs[i].shape
        units = out_shape[-1] if out_shape else None
        lname = getattr(output_loss.loss, "name", getattr(fn, "__name__", "loss"))
        layer = graph.producer.get(id(graph.outputs[i]))
        layers = (layer.layer.name,) if layer is not None else ()
        lo, hi = float(np.min(yi)), float(np.max(yi))
        if kind == "sparse":
            if units and units > 1 and yi.ndim == len(out_shape) and yi.shape[-1] == units and _looks_one_hot(yi):
                out.append(Finding(
                    "labels-one-hot-for-sparse", "error", layers,
                    f"The labels are one-hot (shape {yi.shape}), but '{lname}' expects integer class indices "
                    "of shape (n,).",
                    "Use categorical_crossentropy with one-hot labels, or pass y.argmax(axis=-1).",
                ))
                continue
            ignore = (getattr(output_loss.loss, "_fn_kwargs", {}) or {}).get("ignore_class")
            valid = yi if ignore is None else yi[yi != ignore]
            if valid.size == 0:
                continue
            lo, hi = float(valid.min()), float(valid.max())
            if lo < 0:
                out.append(Finding(
                    "labels-out-of-range", "error", layers,
                    f"'{lname}' needs class indices from 0, but the labels go down to {lo:g}.",
                    "Map the labels to 0..k-1 (e.g. with np.unique(y, return_inverse=True)).",
                ))
            elif units is not None and hi >= units:
                out.append(Finding(
                    "labels-class-count", "error", layers,
                    f"The labels go up to {hi:g}, i.e. at least {int(hi) + 1} classes, but the output has "
                    f"{units} unit{'s' if units != 1 else ''}.",
                    f"Give the output layer {int(hi) + 1} units (one per class), or check the labels.",
                ))
        elif kind == "categorical":
            if units and units > 1 and (yi.ndim < len(out_shape) or yi.shape[-1] == 1):
                out.append(Finding(
                    "labels-integers-for-categorical", "error", layers,
                    f"The labels look like integer class indices (shape {yi.shape}), but '{lname}' expects "
                    f"one-hot rows of {units} values.",
                    f"Use sparse_categorical_crossentropy, or one-hot encode with "
                    f"lamina.utils.to_categorical(y, {units}).",
                ))
            elif units and yi.shape[-1] != units:
                out.append(Finding(
                    "labels-class-count", "error", layers,
                    f"The one-hot labels have {yi.shape[-1]} classes, but the output has {units} units.",
                    f"Give the output layer {yi.shape[-1]} units, or check the labels.",
                ))
        elif kind == "binary" and (lo < 0 or hi > 1):
            many = hi > 1 and np.all(np.mod(yi, 1) == 0)
            fix = (f"For {int(hi) + 1} classes use {int(hi) + 1} softmax units with "
                   "sparse_categorical_crossentropy." if many else
                   "Rescale the targets to [0, 1] (e.g. map -1/1 labels to 0/1).")
            out.append(Finding(
                "labels-out-of-range", "error", layers,
                f"'{lname}' needs labels in [0, 1] (probabilities of the positive class), but they range "
                f"from {lo:g} to {hi:g}.",
                fix,
            ))
    return out


def _first_consumers(graph: Graph, tensor) -> list:
    """The first non-transparent nodes a model input reaches."""
    out, todo, seen = [], list(graph.consumers.get(id(tensor), [])), set()
    while todo:
        g = todo.pop()
        if id(g) in seen:
            continue
        seen.add(id(g))
        if role_of(g.layer) == TRANSPARENT:
            todo.extend(graph.children(g))
        else:
            out.append(g)
    return out


def _input_rules(model, xs: list, graph: Graph) -> list[Finding]:
    out = []
    for t, xi in zip(graph.inputs, xs):
        arr = np.asarray(xi)
        if arr.size == 0 or arr.dtype.kind not in "biuf":
            continue
        first = _first_consumers(graph, t)
        in_name = t._keras_history[0].name if t._keras_history else "input"
        finding = _huge_inputs(arr, first, in_name) or _unscaled_inputs(graph, arr, first, in_name)
        if finding is not None:
            out.append(finding)
    return out


def _huge_inputs(arr: np.ndarray, first: list, in_name: str) -> Finding | None:
    """``inputs-huge``: values of ``HUGE`` or more reaching a built-in layer (custom layers may read
    their inputs as indices, so they do not count)."""
    reached = [g for g in first if role_of(g.layer) != OTHER]
    if not reached:
        return None
    peak = max(abs(float(arr.max())), abs(float(arr.min())))  # no |x| temporary
    if not peak >= HUGE:
        return None
    return Finding(
        "inputs-huge", "warning", _names(reached),
        f"Input '{in_name}' has values up to {peak:.3g} in absolute value, far from the unit scale layers "
        f"are initialised for: layer {_graph.layer_label(reached[0].layer)} turns them into pre-activations "
        "and gradients of that size, so the loss explodes or turns NaN within a few steps.",
        "Standardise the inputs before training, e.g. x = (x - mean) / std with the training set's mean and "
        "standard deviation per feature, or divide by the largest value.",
    )


def _unscaled_inputs(graph: Graph, arr: np.ndarray, first: list, in_name: str) -> Finding | None:
    """``inputs-unscaled``: a 99th percentile of ``|x|`` of ``UNSCALED`` or more reaching sigmoid/tanh."""
    hits = []
    for g in first:
        if is_affine(g.layer):
            act = _dense_saturating(graph, g)
        else:
            act = activation_of(g.layer) if role_of(g.layer) == ACT else None
        if act in SATURATING:
            hits.append((g, act))
    if not hits:
        return None
    flat = np.abs(arr.reshape(-1)[:1_000_000].astype(np.float64))
    p99 = float(np.percentile(flat, 99))
    if p99 < UNSCALED:
        return None
    g, act = hits[0]
    return Finding(
        "inputs-unscaled", "hint", _names([h[0] for h in hits]),
        f"Input '{in_name}' reaches the {act} layer {_graph.layer_label(g.layer)} with values up to "
        f"{p99:.4g} (99th percentile of |x|): pre-activations that large sit on the flat part of "
        f"{act}, so its gradients vanish from the first step.",
        "Scale the inputs first, e.g. x / 255.0 for pixels or (x - mean) / std, or start the model "
        "with BatchNormalization.",
    )
