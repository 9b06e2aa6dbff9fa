"""``ActivationHealth``: dead ReLUs, saturated sigmoids and vanishing gradients, watched per epoch."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np

from lamina.callbacks._io import print_msg
from lamina.callbacks.callback import Callback
from lamina.callbacks.history import History
from lamina.models import data as data_lib


def _check_fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"ActivationHealth: `{name}` must be a number in [0, 1]. Received: {name}={value!r}")
    return float(value)


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"ActivationHealth: `{name}` must be a positive integer. Received: {name}={value!r}")
    return int(value)


class ActivationHealth(Callback):
    """Per epoch, per layer with an activation: dead and saturated fractions, activation mean and
    spread, the gradient norm of each weighted layer and the first/last gradient-norm ratio.

    ``model.fit(..., health=True)`` adds one with the defaults. Statistics come from an inference
    pass over ``sample_size`` rows (by default a random subset of the training data that ``fit``
    keeps) and one forward + backward pass with the compiled loss; nothing in the model changes.
    Definitions and thresholds: :mod:`lamina.diagnostics.health` (dead = a ReLU-family unit whose
    activation is never > 0 on the sample; saturated = pre-activations with ``|z| > 5`` for sigmoid,
    ``> 2.5`` for tanh).

    Recurrent layers (SimpleRNN, LSTM, GRU, a generic RNN over their cells, each half of a Bidirectional)
    are replayed on the sample to see inside: the saturation of each gate (LSTM: input, forget and output
    gates within 0.01 of 0 or 1, candidate and squashed cell state within 0.01 of -1 or +1; GRU: update,
    reset, candidate; SimpleRNN: its activation) and the gradient norm reaching each timestep of the layer's
    input, in reading order, with its first/last ratio (gradient flow through time). Definitions:
    :mod:`lamina.diagnostics.recurrent_health`.

    Results go to ``history.health`` (and ``self.health``); every list has one entry per measured epoch
    (None where a layer was not measured that epoch)::

        {"epochs": [0, 1, ...],
         "layers": {name: {"activation": "relu", "dead": [...], "mean": [...], "std": [...]}},
         "grad_norm": {name: [...]}, "grad_ratio": [...], "nan": None or {"layer", "op", ...},
         "recurrent": {name: {"cell": "LSTM", "go_backwards": False,
                              "activations": {"input": "sigmoid", ..., "cell": "tanh"},
                              "saturated": {"input": [...], "forget": [...], ...},
                              "grad_norm_t": [[g_0, ..., g_{T-1}], ...], "grad_ratio_t": [...]}}}

    A recurrent layer the doctor cannot replay (a user-written or stacked cell, ``stateful``, an
    ``initial_state``) has ``{"cell", "go_backwards", "skipped": why}`` instead; a Bidirectional's halves are
    named ``"bidirectional/forward_lstm"`` and ``"bidirectional/backward_lstm"``.

    A ``HealthWarning`` fires (once per layer and kind per ``fit``) when a layer's dead or saturated
    fraction (or a recurrent gate's saturated fraction) exceeds its threshold or the gradient ratio (or a
    recurrent layer's first/last timestep ratio) falls below ``ratio_threshold``; with
    ``nan_check`` the first batch whose loss is NaN or inf is rerun layer by layer and the first
    layer and op that produced the bad value is named (``health["nan"]``).

    Cost: one forward + backward pass over ``sample_size`` rows per measured epoch (plus, per recurrent
    layer, a replay of it on those rows with its backward pass, step by step on the tape: a few times the
    layer's own fused pass), and a check of one small gradient per step (``nan_check``). ``budget`` caps the
    share of the training time the measurements may take: an epoch is skipped while the time spent
    measuring exceeds ``budget`` times the time spent training (the first and last epochs are always
    measured), so very short epochs are measured every few epochs; ``health["epochs"]`` lists the
    measured ones.

    Args:
        x_sample, y_sample: rows to measure on; None uses the sample ``fit`` keeps.
        sample_size: at most this many rows are used.
        every: measure every ``every`` epochs (at most).
        budget: the largest share of training time measuring may take (default 5 %); None
            measures every ``every`` epochs whatever it costs.
        dead_threshold, saturation_threshold: fractions above which a layer (or a recurrent layer's gate)
            is reported.
        ratio_threshold: first/last gradient-norm ratio (across layers, or across a recurrent layer's
            timesteps) below which gradients count as vanishing.
        verbose: print a table per measured epoch; None follows ``fit``'s ``verbose``.
        nan_check: locate the source of a NaN/inf loss.
    """

    def __init__(self, x_sample=None, y_sample=None, sample_size: int = 256, every: int = 1,
                 budget: float | None = 0.05, dead_threshold: float = 0.5, saturation_threshold: float = 0.5,
                 ratio_threshold: float = 1e-3,
                 verbose: int | None = None, nan_check: bool = True):
        super().__init__()
        self.x_sample = x_sample
        self.y_sample = y_sample
        self.sample_size = _check_positive_int("sample_size", sample_size)
        self.every = _check_positive_int("every", every)
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0):
            raise ValueError(f"ActivationHealth: `budget` must be a number > 0 or None. Received: budget={budget!r}")
        self.budget = None if budget is None else float(budget)
        self.dead_threshold = _check_fraction("dead_threshold", dead_threshold)
        self.saturation_threshold = _check_fraction("saturation_threshold", saturation_threshold)
        if isinstance(ratio_threshold, bool) or not isinstance(ratio_threshold, (int, float)) or ratio_threshold < 0:
            raise ValueError(
                "ActivationHealth: `ratio_threshold` must be a number >= 0. "
                f"Received: ratio_threshold={ratio_threshold!r}"
            )
        self.ratio_threshold = float(ratio_threshold)
        self.verbose = verbose
        self.nan_check = bool(nan_check)
        self.health: dict = self._empty()
        self.seconds = 0.0  # time spent measuring during the last fit
        self._train_seconds = 0.0
        self._epoch_start = 0.0
        self._warned: set = set()
        self._xs = self._ys = None
        self._hook = None  # the _NanProbe registered on the model during fit
        self._batch = None
        self._epoch = 0
        self._step = -1

    @staticmethod
    def _empty() -> dict:
        return {"epochs": [], "layers": {}, "grad_norm": {}, "grad_ratio": [], "nan": None, "recurrent": {}}

    # ------------------------------------------------------------------ fit hooks

    def on_train_begin(self, logs=None):
        self.health = self._empty()
        self.seconds = 0.0
        self._train_seconds = 0.0
        self._warned = set()
        xs, ys = self.x_sample, self.y_sample
        if xs is None:
            sample = getattr(self.model, "_fit_sample", None)
            if sample is not None:
                xs, ys = sample
        if xs is not None:
            n = self.sample_size
            xs = data_lib.slice_all(xs, slice(0, n))
            ys = data_lib.slice_all(ys, slice(0, n)) if ys is not None else None
        else:
            self._warn("no-sample", "ActivationHealth has no data to measure on (fit was given a generator): "
                                    "pass ActivationHealth(x_sample=..., y_sample=...).")
        self._xs, self._ys = xs, ys
        history = getattr(self.model, "history", None)
        if isinstance(history, History):
            history.health = self.health
        if self.nan_check:
            self._install()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._step = -1
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        self._train_seconds += start - self._epoch_start
        if self._xs is None or (epoch + 1) % self.every:
            return
        last = epoch + 1 >= (self.params or {}).get("epochs", 0)
        if self.budget is not None and self.health["epochs"] and not last \
                and self.seconds > self.budget * self._train_seconds:
            return
        self.measure(epoch)
        self.seconds += time.perf_counter() - start

    def on_train_end(self, logs=None):
        self._uninstall()

    # ------------------------------------------------------------------ measuring

    def measure(self, epoch: int) -> dict:
        """Measure now and append the results for ``epoch``; returns this epoch's record."""
        # lazy: import cost; the doctor (lamina.diagnostics) loads only once health is measured
        from lamina.diagnostics import health as health_lib
        from lamina.diagnostics._graph import Graph

        model = self.model
        recurrent: dict = {}
        stats, norms = health_lib.measure(model, self._xs, self._ys, Graph(model), recurrent=recurrent)
        ratio = health_lib.gradient_ratio(norms)
        n_before = len(self.health["epochs"])
        self.health["epochs"].append(epoch)
        for name, entry in stats.items():
            rec = self.health["layers"].setdefault(name, {"activation": entry["activation"]})
            for key in ("dead", "saturated", "mean", "std"):
                if key in entry:
                    rec.setdefault(key, [None] * n_before).append(entry[key])
        for name, value in norms.items():
            self.health["grad_norm"].setdefault(name, [None] * n_before).append(value)
        self.health["grad_ratio"].append(ratio)
        self._append_recurrent(recurrent, n_before + 1)
        self._check_thresholds(stats, norms, ratio)
        self._check_recurrent(recurrent)
        if self._verbosity():
            self._print_table(epoch, stats, norms, ratio)
            if recurrent:
                print_msg(_recurrent_table(recurrent))
        return {"layers": stats, "grad_norm": norms, "grad_ratio": ratio, "recurrent": recurrent}

    def _append_recurrent(self, recurrent: dict, n: int) -> None:
        """This epoch's recurrent entries into ``health["recurrent"]``: every list ends with ``n`` entries,
        None for the epochs a layer (or a gate) was not measured."""

        def put(values: list, value) -> None:
            values.extend([None] * (n - 1 - len(values)))
            values.append(value)

        for name, entry in recurrent.items():
            rec = self.health["recurrent"].setdefault(
                name, {"cell": entry["cell"], "go_backwards": entry["go_backwards"]})
            if "skipped" in entry:
                rec["skipped"] = entry["skipped"]
                continue
            rec.pop("skipped", None)
            rec["activations"] = entry["activations"]
            for gate, value in entry["saturated"].items():
                put(rec.setdefault("saturated", {}).setdefault(gate, []), value)
            for key in ("grad_norm_t", "grad_ratio_t"):
                if key in entry:
                    put(rec.setdefault(key, []), entry[key])
        for rec in self.health["recurrent"].values():
            for values in list(rec.get("saturated", {}).values()) + [rec[k] for k in ("grad_norm_t", "grad_ratio_t")
                                                                      if k in rec]:
                values.extend([None] * (n - len(values)))

    def _verbosity(self) -> int:
        if self.verbose is not None:
            return int(self.verbose)
        v = (self.params or {}).get("verbose", 0)
        return 1 if v == "auto" else int(v or 0)

    def _check_thresholds(self, stats, norms, ratio) -> None:
        for name, e in stats.items():
            if e.get("dead", 0.0) > self.dead_threshold:
                self._warn(("dead", name),
                           f"Layer '{name}': {e['dead']:.0%} of its {e['activation']} {e.get('units', 'units')} never "
                           "activated on the sample (dead units pass no gradient). Lower the learning rate, use "
                           "kernel_initializer='he_normal' and a zero/small bias, or try LeakyReLU.")
            if e.get("saturated", 0.0) > self.saturation_threshold and not e.get("paired_with_loss"):
                self._warn(("saturated", name),
                           f"Layer '{name}': {e['saturated']:.0%} of its {e['activation']} pre-activations are on the "
                           "flat part of the curve, where the gradient is almost 0. Scale the inputs, add "
                           "BatchNormalization before the activation, or use relu.")
        if math.isfinite(ratio) and ratio < self.ratio_threshold:
            names = list(norms)
            share = "no gradient at all (are its units dead?)" if ratio == 0 else \
                f"{ratio:.1e} of the gradient norm of the last layer '{names[-1]}'"
            self._warn(("ratio",),
                       f"Vanishing gradients: the first layer '{names[0]}' gets {share}, so the early layers barely "
                       "learn. Use relu with kernel_initializer='he_normal', add BatchNormalization, or use fewer "
                       "layers.")

    def _check_recurrent(self, recurrent: dict) -> None:
        # lazy: import cost, as in measure()
        from lamina.diagnostics.recurrent_health import saturation_words

        for name, e in recurrent.items():
            cell = e["cell"]
            high = [(gate, v) for gate, v in e.get("saturated", {}).items()
                    if v is not None and v > self.saturation_threshold]
            if high:
                acts = list(dict.fromkeys(e["activations"][gate] for gate, _ in high))
                listing = ", ".join(f"{_GATE_WORDS[gate]} {v:.0%}" for gate, v in high)
                rules = "; ".join(f"{act}: {saturation_words(act)}" for act in acts)
                self._warn(("gates", name),
                           f"Layer '{name}' ({cell}) is saturated: {listing} of the values lie on the flat part of "
                           f"the activation ({rules}), where the slope is almost 0 and the weights feeding them "
                           "barely learn. Scale or normalise the inputs, lower the learning rate, or clip gradients "
                           "(clipnorm=1.0).")
            ratio = e.get("grad_ratio_t")
            if ratio is not None and math.isfinite(ratio) and ratio < self.ratio_threshold:
                steps = len(e["grad_norm_t"])
                share = "no gradient at all" if ratio == 0 else f"{ratio:.1e} of the gradient norm of the last one"
                fix = "Use LSTM or GRU, whose gates carry the gradient across time, or shorter sequences." \
                    if cell == "SimpleRNN" else (
                        f"Look at its {'forget' if cell == 'LSTM' else 'update'} gate's saturation in "
                        "history.health['recurrent'], or use shorter sequences.")
                self._warn(("time", name),
                           f"Vanishing gradients through time: in layer '{name}' ({cell}) the first of its {steps} "
                           f"timesteps gets {share}, so it barely learns from the start of the sequence. {fix}")

    def _warn(self, key, message: str) -> None:
        from lamina.diagnostics.findings import HealthWarning  # lazy: import cost, as in measure()

        if key in self._warned:
            return
        self._warned.add(key)
        warnings.warn(message, HealthWarning, stacklevel=2)

    def _print_table(self, epoch, stats, norms, ratio) -> None:
        names = list(stats) + [n for n in norms if n not in stats]
        width = max([len(n) for n in names] + [5])
        lines = [f"health, epoch {epoch + 1}:",
                 f"  {'layer':<{width}}  {'activation':<11}{'dead':>7}{'sat.':>7}{'mean':>9}{'std':>9}"
                 f"{'grad norm':>11}"]

        def pct(v):
            return "-" if v is None else f"{v:.0%}"

        def num(v, fmt):
            return "-" if v is None else format(v, fmt)

        for n in names:
            e = stats.get(n, {})
            lines.append(f"  {n:<{width}}  {e.get('activation', '-'):<11}{pct(e.get('dead')):>7}"
                         f"{pct(e.get('saturated')):>7}{num(e.get('mean'), '.3f'):>9}{num(e.get('std'), '.3f'):>9}"
                         f"{num(norms.get(n), '.2e'):>11}")
        if math.isfinite(ratio):
            lines.append(f"  gradient norm ratio, first/last layer: {ratio:.2e}")
        print_msg("\n".join(lines))

    # ------------------------------------------------------------------ NaN / inf source

    def _install(self) -> None:
        """Register a step hook (``model.add_step_hook``) that remembers each batch and, between the
        backward pass and the optimizer update, catches the first NaN/inf gradient while the weights
        are still those that produced it. Both the tape step and the compiled step call it.

        The per-step check looks at one small gradient (the output layer's bias, or the smaller of
        the last two): a NaN or inf loss reaches every output-layer gradient through ``p - y``.
        """
        model = self.model
        if model is None or not hasattr(model, "add_step_hook"):
            return
        self._uninstall()  # a hook left by a fit that ended in an exception
        self._hook = _NanProbe(self)
        model.add_step_hook(self._hook)

    def _uninstall(self) -> None:
        hook, self._hook = self._hook, None
        if hook is not None and any(h is hook for h in getattr(hook.model, "_step_hooks", ())):
            hook.model.remove_step_hook(hook)
        self._batch = None

    def _diagnose(self) -> None:
        from lamina.diagnostics import health as health_lib  # lazy: import cost, as in measure()

        x, y = self._batch
        report = health_lib.locate_nonfinite(self.model, x, y)
        if report is None:
            report = {"layer": None, "op": "unknown", "value": "nan",
                      "message": "the gradients are NaN or inf, yet rerunning the batch layer by layer in "
                                 "inference mode gave finite values everywhere (a training-only layer?)"}
        report = dict(report, epoch=self._epoch, batch=max(self._step, 0))
        self.health["nan"] = report
        self._warn(("nan",), f"Training produced {report['value']} at epoch {self._epoch + 1}, batch "
                             f"{report['batch']}: {report['message']}.")


_GATE_WORDS = {"input": "input gate", "forget": "forget gate", "output": "output gate", "update": "update gate",
               "reset": "reset gate", "candidate": "candidate", "cell": "squashed cell state",
               "activation": "activation"}


def _recurrent_table(recurrent: dict) -> str:
    """The verbose lines for the recurrent layers: saturation per gate, then the through-time ratio."""
    lines = ["  recurrent layers: saturated values per gate; gradient norm at the first timestep over the last"]
    for name, e in recurrent.items():
        if "skipped" in e:
            lines.append(f"  {name} ({e['cell'] or 'RNN'}): not measured: {e['skipped']}")
            continue
        gates = ", ".join(f"{gate} {v:.0%}" for gate, v in e["saturated"].items() if v is not None and v == v)
        ratio = e.get("grad_ratio_t")
        flow = "" if ratio is None or not math.isfinite(ratio) else \
            f"; gradient first/last timestep {ratio:.2e} ({len(e['grad_norm_t'])} steps)"
        lines.append(f"  {name} ({e['cell']}): {gates or 'no saturating activation'}{flow}")
    return "\n".join(lines)


class _NanProbe:
    """ActivationHealth's step hook: the batch of each step, and a NaN/inf check of one gradient."""

    def __init__(self, callback: ActivationHealth):
        self.callback = callback
        self.model = callback.model
        self._probe = None  # index of the gradient to check, found on the first call

    def begin(self, x, y, sample_weight) -> None:
        cb = self.callback
        cb._batch = (x, y)
        cb._step += 1

    def gradients(self, grads, variables) -> None:
        cb = self.callback
        if cb.health["nan"] is not None or not grads:
            return
        if self._probe is None:
            tail = [i for i in (len(grads) - 2, len(grads) - 1) if i >= 0 and grads[i] is not None]
            self._probe = min(tail, key=lambda i: np.size(grads[i])) if tail else -1
        i = self._probe
        g = grads[i] if 0 <= i < len(grads) else None
        if g is not None:
            total = float(np.sum(g))
            if total - total != 0.0:  # NaN or +-inf
                cb._diagnose()
