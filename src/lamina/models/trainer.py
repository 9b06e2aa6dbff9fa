"""The training API shared by every model: compile, fit, evaluate, predict and the *_on_batch forms.

One training step is: forward under a GradientTape (Dense+activation as fused nodes), the loss —
computed from the logits when a sigmoid/softmax output feeds its crossentropy, as Keras's
TensorFlow backend does (stable, gradient p - y) — plus regularization penalties, one backward
pass, one optimizer update, then the metrics on plain arrays.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

from lamina import backend, ops, tree
from lamina.autodiff import GradientTape, Tensor, recording, unwrap
from lamina.models import data as data_lib


def _structure_names(model) -> list[str]:
    """The output names compile() matches losses and metrics to: the keys of a flat dict of outputs
    (what its predictions and targets are keyed by, as Keras's compile reads them), else the names of
    the output layers."""
    struct = getattr(model, "_outputs_struct", None)
    if isinstance(struct, dict) and not any(isinstance(v, (list, tuple, dict)) for v in struct.values()):
        return [str(k) for k in struct]
    outputs = getattr(model, "outputs", None) or []
    return [t._keras_history[0].name for t in outputs]


class Trainer:
    """Mixed into :class:`~lamina.models.model.Model`."""

    def __init__(self):
        self.compiled = False
        self.optimizer = None
        self.loss = None
        self.stop_training = False
        self.history = None
        # compile() makes these (models/compile_utils.py); the attributes below alias their parts, which
        # the steps, the doctor and distribute read directly.
        self._compile_loss = None  # CompileLoss: one OutputLoss per output, the weighted total
        self._compile_metrics = None  # CompileMetrics: the compiled metrics (see _output_metrics)
        self._output_losses: list = []  # self._compile_loss.output_losses
        self._per_output_trackers: list = []  # self._compile_loss.metrics
        self._metric_specs = None
        self._weighted_metric_specs = None
        self._loss_tracker = None  # the Mean of the total loss, "loss"
        self._compile_config = None  # the raw compile() arguments; saving serializes them
        self._use_logits = None
        # A data-parallel strategy (lamina.distribute) attached by `strategy.scope()` or
        # `fit(strategy=...)`; None trains in this process alone.
        self._distribution = None
        self._fast_step = None  # the CompiledStep (models/compiled_step.py) when the model traces
        self._call_plan = None  # the compiled forward a user's train_step calls (CompiledStep.call_recorded)
        self._fast_planned = False
        self._run_eagerly = False
        self._jit_compile = True  # "auto" resolved: the compiled step where the model allows it
        self._jit_requested = "auto"  # as given: only an explicit True warns when the step cannot compile
        # Objects observing each training step (see add_step_hook); empty, the step pays one truthiness check.
        self._step_hooks: list = []
        # The per-batch callables fit, evaluate and predict run (Keras's names); made on first use.
        self.train_function = None
        self.test_function = None
        self.predict_function = None

    # ------------------------------------------------------------------ compile

    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1, jit_compile="auto",
                auto_scale_loss=True, **kwargs) -> None:
        """Configure training: optimizer, loss (per output for multi-output models), metrics.

        ``run_eagerly=True`` or ``jit_compile=False`` train with the generic GradientTape step only;
        the default (``run_eagerly=False``, ``jit_compile="auto"``) traces the compiled step (see
        ``models/compiled_step.py``; same numbers) and falls back to the tape step, silently, for a
        model it cannot express; ``jit_compile=True`` warns once, saying why. ``"auto"`` resolves to
        ``not run_eagerly``; ``jit_compile=True`` with ``run_eagerly=True`` warns and is turned off, as
        in Keras. Both are readable and settable afterwards (``model.run_eagerly``, ``model.jit_compile``).
        """
        # lazy: metrics and optimizers load on first use (import lamina stays cheap), and compile_utils
        # imports losses and metrics
        from lamina import metrics as metrics_lib
        from lamina import optimizers
        from lamina.models import compile_utils

        lint = kwargs.pop("lint", None)
        if kwargs:
            raise TypeError(f"compile() got unexpected keyword arguments: {sorted(kwargs)}")
        run_eagerly = _check_run_eagerly(run_eagerly)
        jit_compile = _check_jit_compile(jit_compile)
        if jit_compile is True and run_eagerly:
            warnings.warn("compile(): `run_eagerly=True` runs every step eagerly, so `jit_compile=True` is "
                          "ignored and set to False. Received: run_eagerly=True, jit_compile=True",
                          UserWarning, stacklevel=2)
        if run_eagerly:
            jit_compile = False
        self.optimizer = optimizers.get(optimizer)
        if auto_scale_loss and self.optimizer is not None and self.dtype_policy.name == "mixed_float16" \
                and not isinstance(self.optimizer, optimizers.LossScaleOptimizer):
            # As Keras: float16 gradients underflow without loss scaling.
            self.optimizer = optimizers.LossScaleOptimizer(self.optimizer, name="loss_scale_optimizer")
            self.optimizer._auto_wrapped = True  # saved as compile's own optimizer (saving/compile_config.py)
        self.loss = loss
        # jit_compile is kept unresolved ("auto") for saving: Keras then applies its backend's own default.
        self._compile_config = {"optimizer": optimizer, "loss": loss, "loss_weights": loss_weights,
                                "metrics": metrics, "weighted_metrics": weighted_metrics,
                                "run_eagerly": run_eagerly, "jit_compile": jit_compile}
        self._run_eagerly = run_eagerly
        self._jit_requested = jit_compile
        self._jit_compile = not run_eagerly if jit_compile == "auto" else jit_compile
        loss_tracker = metrics_lib.Mean(name="loss")  # made before the per-output trackers, as it always was
        self._compile_loss = compile_utils.CompileLoss(loss, loss_weights, _structure_names(self), self.name,
                                                       isinstance(getattr(self, "_outputs_struct", None), dict),
                                                       output_struct=getattr(self, "_outputs_struct", None),
                                                       deferred=not _is_default(self, "compute_loss"))
        self._output_losses = self._compile_loss.output_losses
        self._per_output_trackers = self._compile_loss.metrics
        self._metric_specs = metrics
        self._weighted_metric_specs = weighted_metrics
        # Built lazily, from the first targets: "accuracy" depends on the label shapes.
        self._compile_metrics = compile_utils.CompileMetrics(metrics, weighted_metrics, self._compile_loss)
        self._loss_tracker = loss_tracker
        self._use_logits = None
        self._fast_planned = False
        self.train_function = self.test_function = self.predict_function = None
        # Compiled inside `with strategy.scope():` — train data-parallel with that strategy.
        strategy_mod = sys.modules.get("lamina.distribute.strategy")
        if strategy_mod is not None and strategy_mod.current() is not None:
            strategy_mod.current()._attach(self)
        self.compiled = True
        self.stop_training = False
        self._lint_mode = lint
        if lint is not False:
            self._run_lint(lint)

    @property
    def run_eagerly(self) -> bool:
        """Whether training runs the generic GradientTape step only (no compiled step); settable,
        taking effect at the next step."""
        return self._run_eagerly

    @run_eagerly.setter
    def run_eagerly(self, value) -> None:
        self._run_eagerly = _check_run_eagerly(value)
        self._fast_planned = False  # re-plan at the next step

    @property
    def jit_compile(self) -> bool:
        """Whether training may take the compiled step (``models/compiled_step.py``); ``"auto"`` at
        compile resolves to ``not run_eagerly``. Settable, taking effect at the next step."""
        return self._jit_compile

    @jit_compile.setter
    def jit_compile(self, value) -> None:
        value = _check_jit_compile(value)
        self._jit_requested = value
        self._jit_compile = not self._run_eagerly if value == "auto" else value
        self._fast_planned = False

    # ------------------------------------------------------------------ step hooks

    def add_step_hook(self, hook) -> None:
        """Observe every training step (lamina's extension; Keras has no such API).

        ``hook`` defines either or both of:

        - ``begin(x, y, sample_weight)``: called at the start of each training step, before the
          forward pass, with the batch as the step receives it;
        - ``gradients(grads, variables)``: called after the backward pass and before the optimizer
          update, with this process's own (local) gradients, before any data-parallel averaging;
          ``grads[i]`` is the gradient of ``variables[i]`` (None where a variable gets none). A
          data-parallel rank whose share of a short last batch is empty runs no backward pass and
          calls no ``gradients``;
        - ``reduce_gradients(grads, variables, batch_size)``: called after every hook's ``gradients``,
          returns the gradients the optimizer applies (``batch_size``: this process's samples in the
          step, 0 for an empty share, where ``grads`` are all None). This is how a data-parallel
          strategy (``lamina.distribute``) averages gradients across processes: it adds itself as a
          hook when it is attached to the model. Reducing hooks run in turn, each on the last's result.

        All run in the generic GradientTape step and in the compiled step alike. ``begin`` and
        ``gradients`` read; they must not modify the gradients or the weights in place (the compiled
        step reuses its buffers). Hooks run in the order they were added. Without hooks a step pays
        one check of an empty list.
        """
        if not any(callable(getattr(hook, name, None)) for name in ("begin", "gradients", "reduce_gradients")):
            raise TypeError(
                f"add_step_hook() on model '{self.name}' needs an object with a `begin(x, y, sample_weight)`, "
                f"a `gradients(grads, variables)` and/or a `reduce_gradients(grads, variables, batch_size)` "
                f"method. Received: {hook!r:.200} of type {type(hook).__name__}"
            )
        if any(h is hook for h in self._step_hooks):
            raise ValueError(f"This step hook is already added to model '{self.name}'. Received: {hook!r:.200}")
        self._step_hooks.append(hook)

    def remove_step_hook(self, hook) -> None:
        """Stop calling ``hook`` (added by :meth:`add_step_hook`; lamina's extension)."""
        for i, h in enumerate(self._step_hooks):
            if h is hook:
                del self._step_hooks[i]
                return
        raise ValueError(f"This step hook was never added to model '{self.name}' (or was already removed). "
                         f"Received: {hook!r:.200}")

    def _hooks_begin(self, x, y, sw) -> None:
        for hook in tuple(self._step_hooks):  # a tuple: a hook may remove itself
            begin = getattr(hook, "begin", None)
            if begin is not None:
                begin(x, y, sw)

    def _hooks_gradients(self, grads, variables) -> None:
        for hook in tuple(self._step_hooks):
            gradients = getattr(hook, "gradients", None)
            if gradients is not None:
                gradients(grads, variables)

    def _hooks_reduce(self, grads, variables, batch_size: int):
        for hook in tuple(self._step_hooks):
            reduce = getattr(hook, "reduce_gradients", None)
            if reduce is not None:
                grads = reduce(grads, variables, batch_size)
        return grads

    def _reduces(self) -> bool:
        """Whether some hook reduces gradients across processes (then even an empty batch joins in)."""
        return any(callable(getattr(hook, "reduce_gradients", None)) for hook in self._step_hooks)

    def _run_lint(self, mode) -> None:
        """The activation doctor's structural and loss rules (see lamina.diagnostics.lint)."""
        from lamina.diagnostics.lint import check_at_compile  # lazy: diagnostics load on first use

        check_at_compile(self, mode)

    def _before_fit(self, x, y) -> None:
        """The activation doctor's data rules, and a row sample kept for ActivationHealth."""
        from lamina.diagnostics.lint import check_at_fit  # lazy: diagnostics load on first use

        check_at_fit(self, x, y, getattr(self, "_lint_mode", None))

    def _assert_compiled(self, what: str) -> None:
        if not self.compiled:
            raise RuntimeError(
                f"You must call `compile()` before calling `{what}()` on model '{self.name}'. "
                "For example: model.compile(optimizer='adam', loss='sparse_categorical_crossentropy')."
            )
        if getattr(self._compile_loss, "structure_error", None) is not None:
            raise self._compile_loss.structure_error
        # No compiled loss is checked after the forward (_no_loss_error): a model may add its own
        # losses there with add_loss, and then trains on those alone, as in Keras.

    # ------------------------------------------------------------------ metrics

    def _build_metrics(self, y_batch, y_pred) -> None:
        """Build the compiled metrics from these targets and predictions (see CompileMetrics.build)."""
        self._compile_metrics.build(y_batch, y_pred)

    @property
    def _output_metrics(self) -> list[list]:
        """The compiled metrics, one list per output (empty until built): CompileMetrics.output_metrics.
        Settable: a strategy hands a rank that saw no data the metrics the others built."""
        compile_metrics = self._compile_metrics
        return compile_metrics.output_metrics if compile_metrics is not None else []

    @_output_metrics.setter
    def _output_metrics(self, value: list) -> None:
        if self._compile_metrics is None:
            raise RuntimeError(f"Model '{self.name}' is not compiled, so it has no compiled metrics to replace.")
        self._compile_metrics.output_metrics = value

    @property
    def metrics(self) -> list:
        """The loss tracker, the per-output loss trackers, then the compiled metrics output by output."""
        out = [self._loss_tracker] if self._loss_tracker is not None else []
        out += self._per_output_trackers
        if self._compile_metrics is not None:
            out += self._compile_metrics.metrics
        return out

    @property
    def metrics_variables(self) -> list:
        """The state variables of every metric in :attr:`metrics` (Keras's ``metrics_variables``)."""
        return [v for m in self.metrics for v in m.variables]

    @property
    def metrics_names(self) -> list[str]:
        return [getattr(m, "_display_name", m.name) for m in self.metrics]

    def reset_metrics(self) -> None:
        for m in self.metrics:
            m.reset_state()

    def _metric_results(self) -> dict:
        """Each metric's result by display name, in ``metrics_names`` order (loss first)."""
        return {getattr(m, "_display_name", m.name): _log_value(m.result()) for m in self.metrics}

    def _logs(self) -> dict:
        """The logs callbacks and dict returns see: sorted by name, as Keras 3 orders them."""
        return dict(sorted(self._metric_results().items()))

    # ------------------------------------------------------------------ the steps (overridable, as in Keras)

    def train_step(self, data) -> dict:
        """One training step on one batch; returns the logs (metric name → value).

        ``data`` is a batch as fit gives it: ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``.
        Override it to customize what ``fit`` does (Keras's "Customizing what happens in fit()"):
        forward under ``lamina.GradientTape``, ``self.compute_loss(...)``, ``tape.gradient``,
        ``self.optimizer.apply(...)``, update ``self.metrics``, return their results. ``fit`` then
        calls it for every batch and logs what it returns. The default is lamina's own step (the
        compiled step where the model allows it) followed by :meth:`get_metrics_result`;
        ``fit`` runs that step without building a logs dict when no callback reads one.
        """
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        self._train_step(x, y, sample_weight)
        return self.get_metrics_result()

    def test_step(self, data) -> dict:
        """One evaluation step on one batch (``data`` as in :meth:`train_step`); returns the logs.
        ``evaluate`` and fit's validation call an override for every batch."""
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        self._test_step(x, y, sample_weight)
        return self.get_metrics_result()

    def predict_step(self, data):
        """The outputs for one batch (``data``: ``x`` or ``(x,)``); ``predict`` concatenates them."""
        x, _, _ = unpack_x_y_sample_weight(data)
        return self._predict_batch(x)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss of ``y_pred`` against ``y`` (weighted per output) plus the model's
        regularization penalties (``self.losses``), as a scalar Tensor under a tape.

        ``x`` and ``training`` are accepted for Keras's signature; the compiled loss does not use them.
        """
        del x, training  # Keras's signature; a subclass overriding compute_loss may use them
        total, _ = self._compute_loss(y, y_pred, sample_weight, logits=False)
        if total is None:
            raise ValueError(
                f"No loss to compute for model '{self.name}': it was compiled without a loss and has no "
                "regularization penalties. Provide a `loss` argument in `compile()`. Received: loss=None"
            )
        if y is not None and y_pred is not None:
            # Built now, so that a custom train_step looping over `self.metrics` after compute_loss finds them.
            self._ensure_metrics_built(y, y_pred)
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None) -> dict:
        """Update the compiled metrics with this batch; returns :meth:`get_metrics_result`.
        (The loss tracker is the step's to update.)"""
        del x  # Keras's signature
        self._update_compiled_metrics(y, y_pred, sample_weight)
        return self.get_metrics_result()

    def get_metrics_result(self) -> dict:
        """Every metric in ``self.metrics`` by name, as Python floats (a dict result is merged in)."""
        results = {}
        for m in self.metrics:
            value = m.result()
            if isinstance(value, dict):
                results.update(value)
            else:
                results[getattr(m, "_display_name", m.name)] = value
        return _pythonify_logs(results)

    def _get_metrics_result_or_logs(self, logs) -> dict:
        """The metrics' results when a step returned exactly their names (Keras's rule), else the
        step's own logs: a custom step may report something other than ``self.metrics``."""
        results = self.get_metrics_result()
        if isinstance(logs, dict) and set(logs) == set(results):
            return results
        return _pythonify_logs(logs)

    def make_train_function(self, force: bool = False):
        """The callable ``fit`` and ``train_on_batch`` run per batch: ``train_function(data) -> logs``,
        calling :meth:`train_step`. Kept in ``self.train_function`` (``force=True`` remakes it)."""
        if self.train_function is None or force:
            self.train_function = _StepFunction(self, "train")
        return self.train_function

    def make_test_function(self, force: bool = False):
        """The callable ``evaluate`` (and fit's validation) run per batch, calling :meth:`test_step`."""
        if self.test_function is None or force:
            self.test_function = _StepFunction(self, "test")
        return self.test_function

    def make_predict_function(self, force: bool = False):
        """The callable ``predict`` and ``predict_on_batch`` run per batch, calling :meth:`predict_step`."""
        if self.predict_function is None or force:
            self.predict_function = _StepFunction(self, "predict")
        return self.predict_function

    def _logs_of(self, step_logs) -> dict:
        """Logs after a loop: the metrics' (``step_logs`` None: lamina's own step ran) or Keras's rule."""
        return self._logs() if step_logs is None else self._get_metrics_result_or_logs(step_logs)

    def _flatten_logs(self, logs: dict):
        """The list form of ``evaluate``/``*_on_batch`` returns: ``metrics_names`` order, then the
        other keys sorted (one value alone is returned as a scalar), as Keras orders them."""
        names = [n for n in self.metrics_names if n in logs]
        values = [logs[n] for n in names] + [logs[k] for k in sorted(logs) if k not in names]
        return values[0] if len(values) == 1 else values

    # ------------------------------------------------------------------ one step

    def _as_list(self, s) -> list:
        """Targets, predictions or sample weights as one entry per output, in output order."""
        compile_loss = self._compile_loss
        return data_lib.per_output(s, compile_loss.output_names if compile_loss is not None else ())

    def _decide_logits(self) -> bool:
        """Use logits when the single output is sigmoid/softmax feeding the matching crossentropy."""
        if self._use_logits is not None:
            return self._use_logits
        self._use_logits = False
        if len(self._output_losses) != 1 or not hasattr(self, "_run") or not _is_default(self, "compute_loss"):
            return False
        self._use_logits = self._compile_loss.adopt_logits(self._output_activation())
        return self._use_logits

    def _output_layer(self):
        outputs = getattr(self, "outputs", None)
        if not outputs or len(outputs) != 1:
            return None
        return outputs[0]._keras_history[0]

    def _output_activation(self):
        layer = self._output_layer()
        # A mixed-precision output layer computes through its __call__ (autocast), not call_logits.
        if layer is None or not hasattr(layer, "call_logits") or getattr(layer, "_lowp_call", False):
            return None
        return getattr(layer, "activation", None)

    def _forward(self, x, training: bool, logits: bool = False):
        if hasattr(self, "_run"):
            flat = x
            if hasattr(self, "_flatten_inputs"):
                flat = self._adjust_ranks(self._flatten_inputs(x))
            elif hasattr(self, "_standardize_rank"):  # a Sequential's one input
                flat = self._standardize_rank(x)
            return self._run(flat, training=training, logits=logits)
        return self(x, training=training)

    def _compute_loss(self, y, y_pred, sample_weight, logits: bool):
        """``(total, per_output)``: the compiled loss (see CompileLoss) plus the regularization penalties."""
        compile_loss = self._compile_loss
        if compile_loss is None:  # not compiled: the penalties alone
            from lamina.models import compile_utils  # lazy: compile_utils imports losses, which load on first use

            return compile_utils.add_penalties(None, self.losses), []
        return compile_loss(y, y_pred, sample_weight, logits, self.losses)

    def _step_loss(self, x, y, y_pred, sw, logits: bool, training: bool):
        """The step's ``(total, per_output)``; a model overriding ``compute_loss`` has it called (as
        Keras's steps do), the per-output values then being those its compiled loss last computed."""
        if _is_default(self, "compute_loss"):
            return self._compute_loss(y, y_pred, sw, logits)
        total = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sw, training=training)
        compile_loss = self._compile_loss
        return total, (compile_loss.last_values if compile_loss is not None else [])

    def _prepare_logits_for_metrics(self, y_pred, logits: bool):
        if not logits:
            return y_pred
        act = self._output_activation()
        out = np.asarray(act(unwrap(y_pred))) if act is not None else ops.softmax(unwrap(y_pred))
        mask = backend.get_keras_mask(y_pred) if backend._MASKS else None
        if mask is not None:
            backend.set_keras_mask(out, mask)  # the metrics weight by the output's mask, as Keras's
        return out

    def _update_metrics(self, y, y_pred, sample_weight, loss_value, per_output, batch_size) -> None:
        # The loss tracker is a Mean of batch losses weighted by batch size (Keras's rule); its two
        # state variables are updated in place directly, the per-step hot path.
        tracker = self._loss_tracker
        tracker.total.value[...] += loss_value * batch_size
        tracker.count.value[...] += batch_size
        # One tracker per output with a loss (None in per_output marks an output without one).
        for tracker, value in zip(self._per_output_trackers, [v for v in per_output if v is not None]):
            tracker.update_state(float(unwrap(value)), sample_weight=batch_size)
        self._compile_metrics.update_state(y, y_pred, sample_weight)

    def _ensure_metrics_built(self, y, y_pred) -> None:
        """The compiled metrics are built from the first targets they see ("accuracy" depends on them)."""
        if self._compile_metrics is not None:
            self._compile_metrics.ensure_built(y, y_pred)

    def _update_compiled_metrics(self, y, y_pred, sample_weight) -> None:
        """The compiled metrics (built from the first targets they see); weighted ones take the weights."""
        if self._compile_metrics is not None:
            self._compile_metrics.update_state(y, y_pred, sample_weight)

    def _plan_fast_step(self) -> None:
        """Trace the compiled step (models/compiled_step.py) unless the model runs eagerly; a model
        that cannot be traced trains with the tape step, with a warning if jit_compile=True was asked."""
        from lamina.models import compiled_step  # lazy: the compiled step loads on the first fit

        self._fast_planned = True
        self._fast_step = self._call_plan = None
        if self._run_eagerly or not self._jit_compile:
            return
        own_step = _is_default(self, "train_step")
        if own_step and not _is_default(self, "compute_loss"):
            return  # the user's compute_loss runs on the tape, as Keras's train_step calls it
        if own_step:
            self._decide_logits()
        buffer = self._consolidate_weights()
        try:
            if own_step:
                self._fast_step = compiled_step.trace(self, buffer)
            else:  # a user's train_step: its `self(x, training=True)` runs the compiled forward and backward
                self._call_plan = compiled_step.trace(self, buffer, for_call=True)
        except compiled_step.NotCompilable as reason:
            self._not_compiled(reason)

    def _compiled_call(self, x, kwargs: dict):
        """``self(x, training=True)`` under a tape inside a user's train_step: the compiled forward as one
        recorded node (see CompiledStep.call_recorded), or None for the layers' own path."""
        plan = self._call_plan
        if plan is None or kwargs.get("training") is not True or len(kwargs) != 1 or not recording():
            return None
        return plan.call_recorded(x)

    def _not_compiled(self, reason) -> None:
        self._fast_step = None
        if self._jit_requested is True and not getattr(self, "_warned_not_compiled", False):
            self._warned_not_compiled = True
            warnings.warn(f"Model '{self.name}' trains with the eager (tape) step: the compiled step cannot "
                          f"express it because {reason}. Received: jit_compile=True", stacklevel=3)

    def _consolidate_weights(self):
        """Make the float32 trainable weights views of one :class:`~lamina.optimizers.flat_buffer.FlatBuffer`
        (returned; None without float32 weights), shared with the optimizer (which then updates them all
        in a few vectorised calls), the compiled step and a strategy's all-reduce (one message).
        Reused while it still holds exactly these variables."""
        from lamina.optimizers.flat_buffer import FlatBuffer  # lazy: optimizers load on first use

        weights = FlatBuffer.eligible(self.trainable_weights)
        if not weights:
            return None
        buffer = self.__dict__.get("_flat_buffer")
        if buffer is None or not buffer.covers(weights) or not buffer.is_bound():
            buffer = FlatBuffer(weights)
            self._flat_buffer = buffer
        self.optimizer._use_flat_buffer(buffer)
        return buffer

    def _train_step(self, x, y, sw) -> None:
        if self._step_hooks:
            self._hooks_begin(x, y, sw)
        if not self._fast_planned:
            self._plan_fast_step()
        fast = self._fast_step
        flat = None if fast is None else fast.inputs_for(x)
        if flat is not None:
            from lamina.models.compiled_step import NotCompilable  # lazy: loaded with the compiled step

            try:
                loss_value, per_output, y_pred, logits = fast.step(flat, y, sw)
            except NotCompilable as reason:  # found while running (the loss reaches no output): tape step
                self._not_compiled(reason)
            else:
                self._finish_train_step(y, y_pred, sw, loss_value, per_output, flat[0].shape[0], logits)
                return
        logits = self._decide_logits()
        trainable = self.trainable_weights
        if self._step_hooks and _batch_len(x) == 0 and self._reduces():
            # This rank's share of a short last batch is empty: it still joins the gradient average.
            grads = self._hooks_reduce([None] * len(trainable), trainable, 0)
            self.optimizer.apply(grads, trainable)
            return
        self._clear_losses()
        with GradientTape() as tape:
            y_pred = self._forward(x, training=True, logits=logits)
            loss, per_output = self._step_loss(x, y, y_pred, sw, logits, training=True)
            # As Keras: the gradients are those of the scaled loss (the optimizer unscales them); the
            # metrics get the unscaled loss.
            scaled = loss if loss is None else self.optimizer.scale_loss(loss)
        if loss is None:
            raise self._no_loss_error()
        # Read again after the forward: a subclassed model makes its weights in its first call, and the
        # gradients must cover those too (else the optimizer is built on a partial list).
        trainable = self.trainable_weights
        if not trainable:  # as Keras: nothing to update; the step still runs the forward and the metrics
            warnings.warn("The model does not have any trainable weights.", UserWarning, stacklevel=2)
            self._clear_losses()
            self._finish_train_step(y, y_pred, sw, float(unwrap(loss)) if loss is not None else 0.0, per_output,
                                    _batch_len(x), logits)
            return
        if not isinstance(loss, Tensor):
            raise ValueError(
                f"The loss of model '{self.name}' does not depend on any trainable weight, so training "
                "cannot change it. Check that the model has trainable layers."
            )
        # With dynamic loss scaling, float16 gradients overflow now and then by design (the optimizer
        # finds the inf, skips the step and halves the scale): NumPy's overflow warnings are noise there.
        quiet = {"over": "ignore", "invalid": "ignore"} if hasattr(self.optimizer, "check_finite") else {}
        with np.errstate(**quiet):
            grads = tape.gradient(scaled, trainable)
        if self._step_hooks:
            self._hooks_gradients(grads, trainable)
            grads = self._hooks_reduce(grads, trainable, _batch_len(x))
        self.optimizer.apply(grads, trainable)
        self._clear_losses()
        self._finish_train_step(y, y_pred, sw, float(loss.data), per_output, _batch_len(x), logits)

    def _no_loss_error(self) -> ValueError:
        """The error for a step with nothing to minimise: no compiled loss and no added losses."""
        return ValueError(
            f"Model '{self.name}' has no loss to train on: it was compiled without a loss and its forward "
            "pass added none (with `add_loss`) nor any regularization penalty. Pass loss=... to compile(). "
            "Received: loss=None"
        )

    def _finish_train_step(self, y, y_pred, sw, loss_value: float, per_output, batch_size: int, logits: bool):
        """The metrics' share of a training step (the tape and the compiled step alike): predictions
        made from logits get their output activation back first."""
        y_metric = self._prepare_logits_for_metrics(y_pred, logits) if self._output_metrics or \
            self._metric_specs or self._weighted_metric_specs else y_pred
        self._update_metrics(y, y_metric, sw, loss_value, per_output, batch_size)

    def _test_step(self, x, y, sw) -> None:
        y_pred = self._forward(x, training=False)
        loss, per_output = self._step_loss(x, y, y_pred, sw, logits=False, training=False)
        loss_value = float(unwrap(loss)) if loss is not None else 0.0
        self._update_metrics(y, y_pred, sw, loss_value, per_output, _batch_len(x))

    # ------------------------------------------------------------------ data

    def _prepare_arrays(self, x, y, sample_weight, what: str, check_labels: bool = True):
        """Convert array data once and check it once: sample counts, NaN/inf in x, y and the sample
        weights, labels against the loss, input shapes."""
        x, y, sample_weight = _as_arrays(x, y, sample_weight, what, self._takes_text())
        if hasattr(self, "_check_optional_inputs"):
            self._check_optional_inputs(x)
        data_lib.require_samples(x, y, sample_weight, what)
        self._check_values(x, y, sample_weight, what, check_labels)
        self._check_input_shapes(x)
        return x, y, sample_weight

    def _check_values(self, x, y, sample_weight, what: str, check_labels: bool = True) -> None:
        """One finite check each of x, y and the sample weights, and the labels against the loss."""
        data_lib.check_finite(x, what, "x")
        if y is not None:
            self._check_targets_finite(y, what)
            if check_labels:
                self._check_targets(y)
        if sample_weight is not None:
            data_lib.check_finite(sample_weight, what, "sample_weight", advice=_WEIGHT_ADVICE)

    def _check_targets_finite(self, y, what: str) -> None:
        """NaN or inf targets raise, unless ``fit`` was given a ``TerminateOnNaN``: the user then chose
        to have a non-finite loss stop training, which these targets cause at their batch, so fit warns
        and trains (Keras's behaviour, and what TerminateOnNaN is for). Inputs are refused either way."""
        try:
            data_lib.check_finite(data_lib._leaves(y), what, "y")
        except ValueError as error:
            if what != "fit" or not self.__dict__.get("_loss_watched_for_nan"):
                raise
            found = str(error).rsplit("Received: ", 1)[-1]
            warnings.warn(f"`y` passed to fit contains NaN or inf values; training goes ahead because fit was given "
                          "a TerminateOnNaN callback, which stops it at the first batch whose loss they make "
                          f"non-finite. Received: {found}", UserWarning, stacklevel=2)

    def _check_input_shapes(self, x) -> None:
        single = hasattr(self, "_check_input") and not hasattr(self, "_flatten_inputs")  # a Sequential
        if single and isinstance(x, (dict, list, tuple)):
            got = f"a dict with keys {list(x)}" if isinstance(x, dict) else \
                f"a {type(x).__name__} of {len(x)} array{'s' if len(x) != 1 else ''}"
            raise ValueError(
                f"Sequential model '{self.name}' takes a single input array; a dict or list of arrays is for "
                f"a functional Model with several inputs. Received: {got}"
            )
        inputs = getattr(self, "inputs", None)
        if not inputs:
            return
        flat = self._flatten_inputs(x) if hasattr(self, "_flatten_inputs") else [x]
        if hasattr(self, "_check_inputs"):
            self._check_inputs(self._adjust_ranks(flat))
        elif hasattr(self, "_check_input"):
            self._check_input(self._standardize_rank(flat[0]))

    def _check_targets(self, y) -> None:
        """Labels vs loss before the first step (ranges, one-hot vs sparse), in the loss's words."""
        from lamina.models import compile_utils  # lazy: compile_utils imports losses, which load on first use

        ys = self._as_list(y) if self._output_losses else []  # a structured loss has none per output
        outputs = getattr(self, "outputs", None) or []
        for i, output_loss in enumerate(self._output_losses):
            if output_loss.loss is None or i >= len(ys):
                continue
            out_shape = outputs[i].shape if i < len(outputs) else None
            compile_utils.check_targets(output_loss.loss, ys[i], out_shape)

    def _check_metrics_before_training(self, x, y, sample_weight, what: str) -> None:
        """Update the metrics once on the first ``PROBE_ROWS`` samples, without training.

        A training step computes the loss before the optimizer update but the metrics after it, so
        targets a metric cannot read (say a ``(n, 1, 1)`` y for sparse accuracy) would fail with the
        weights already changed. Costs one small inference forward per ``fit``, nothing without metrics.
        """
        if not (self._metric_specs or self._weighted_metric_specs):
            return
        xs, ys, sws = (data_lib.slice_all(s, slice(0, PROBE_ROWS)) for s in (x, y, sample_weight))
        # The probe leaves no trace in the model's state either: a layer that counts its calls sees the
        # training steps only, as in Keras, which has no probe.
        state = [(v, np.array(v.numpy(), copy=True)) for v in self.non_trainable_weights]
        try:
            self._update_metrics(ys, self._forward(xs, training=False), sws, 0.0, (), _batch_len(xs))
        except (ValueError, TypeError) as error:
            raise data_lib.same_kind(error)(
                f"{what}: the metrics were tried on the first samples before any training step (no weight "
                f"has changed) and failed: {error}"
            ) from error
        finally:
            self._clear_losses()
            self.reset_metrics()
            for v, value in state:
                if not np.array_equal(v.numpy(), value, equal_nan=value.dtype.kind in "fc"):
                    v.assign(value)

    # The model's share of an EpochIterator's work: its prepare_arrays (once per loop, on array data)
    # and prepare_batch (each batch of a stream, which the iterator names when it fails).

    def _prepare_loop_arrays(self, x, y, sample_weight, what: str):
        """Array data for evaluate and the ``*_on_batch`` forms: converted and checked, the model built."""
        x, y, sample_weight = self._prepare_arrays(x, y, sample_weight, what)
        self._ensure_built(x)
        return x, y, sample_weight

    def _prepare_fit_arrays(self, x, y, sample_weight, what: str):
        """fit's array data, which must come with targets when a loss was compiled (without one, the
        model trains on the losses its forward adds)."""
        x, y, sample_weight = self._prepare_arrays(x, y, sample_weight, what)
        if y is None and self._compile_loss is not None and self._compile_loss.has_loss:
            raise ValueError("fit() with array inputs needs targets. Received: y=None")
        self._ensure_built(x)
        return x, y, sample_weight

    def _prepare_validation_arrays(self, x, y, sample_weight, what: str):
        """fit's ``validation_data`` arrays, on which the metrics are tried too once the model is built."""
        val = self._prepare_arrays(x, y, sample_weight, what)
        if self.built:
            self._check_metrics_before_training(*val, what)
        return val

    def _prepare_input_arrays(self, x, y, sample_weight, what: str):
        """Inputs for predict and predict_on_batch (no targets): converted and checked, the model built."""
        del y, sample_weight  # predict reads x only
        text = self._takes_text()  # a model reading strings (TextVectorization first) is given text as it is
        x = data_lib._map(lambda a: data_lib.to_array(a, what, "x", text=text), data_lib.require_arrays(x, what, "x"))
        data_lib.check_batch_dims(x, what=what)
        self._ensure_built(x)
        self._check_input_shapes(x)
        return x, None, None

    def _prepare_input_batch(self, x_batch, y_batch, weight_batch, what: str):
        """A streamed batch for predict: its x alone (targets a batch may carry are not read)."""
        del y_batch, weight_batch
        return self._check_stream_batch(x_batch, None, None, what)

    def _check_stream_batch(self, x_batch, y_batch, weight_batch, what: str):
        """One streamed batch, converted and checked as arrays are (one cheap pass each)."""
        x_batch, y_batch, weight_batch = _as_arrays(x_batch, y_batch, weight_batch, what, self._takes_text())
        if what == "predict":
            data_lib.check_batch_dims(x_batch, what=what)
        else:
            if y_batch is None and self._output_losses and self._output_losses[0].loss is not None:
                raise ValueError(
                    f"Batches given to {what} must include targets: (x, y) or (x, y, sample_weight). "
                    f"Received: a batch with x only (of type {type(x_batch).__name__})"
                )
            data_lib.require_samples(x_batch, y_batch, weight_batch, what)
        self._ensure_built(x_batch)
        self._check_input_shapes(x_batch)
        if what != "predict":
            self._check_values(x_batch, y_batch, weight_batch, what)
        return x_batch, y_batch, weight_batch

    # ------------------------------------------------------------------ fit

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1, **kwargs):
        """Train for ``epochs`` epochs; returns a History whose ``history`` maps metric → values.

        Everything about the data is checked before the first step (shapes, NaN/inf in x, y and the
        sample or class weights, labels against the loss and the metrics), so a ``fit`` that fails
        on its input changes no weight; batches from a generator are checked one by one.
        """
        health = kwargs.pop("health", None)
        strategy = kwargs.pop("strategy", None)
        if kwargs:
            raise TypeError(f"fit() got unexpected keyword arguments: {sorted(kwargs)}")
        self._check_fit_arguments(x, batch_size, (initial_epoch, epochs), steps_per_epoch, class_weight, sample_weight,
                                  (validation_batch_size, validation_steps, validation_freq))
        user_callbacks = _callback_list(callbacks, "fit")
        self._loss_watched_for_nan = _watches_nan(user_callbacks)  # see _check_targets_finite
        verbose = _verbosity(verbose, "fit")
        batch_size = batch_size or 32
        if strategy is not None:
            strategy._attach(self)
        dist = self._distribution
        if dist is not None and not dist.is_chief:
            verbose = 0
        train = self._fit_iterator(x, y, sample_weight, class_weight, batch_size, shuffle, steps_per_epoch,
                                   validation_split if validation_data is None else 0.0)
        self._before_fit(train.x, train.y)
        if train.arrays:
            self._check_metrics_before_training(train.x, train.y, train.sample_weight, "fit")
        val = self._validation_iterator(validation_data, train.validation, validation_batch_size or batch_size,
                                        validation_steps)
        if dist is not None:  # every rank must train alike: one clear error on all of them if not
            dist.check_agreement(self, train, batch_size, epochs, initial_epoch, val.data if val is not None else None)
        history, cbs = self._fit_callbacks(user_callbacks, verbose, health, epochs, train)
        self.stop_training = False
        self._fast_planned = False  # layers may have been frozen or replaced since the last fit
        cbs.on_train_begin()
        # A callback may set where training resumes (BackupAndRestore, as in Keras); read it once.
        initial_epoch = self.__dict__.pop("_initial_epoch", None) or initial_epoch
        logs = self._fit_epochs(train, cbs, range(initial_epoch, epochs), val, validation_freq)
        if self.optimizer is not None and epochs > 0:  # as Keras: with use_ema, the averages become the weights
            self.optimizer.finalize_variable_values(self.trainable_weights)
        cbs.on_train_end(logs)
        self.history = history
        return history

    def _check_fit_arguments(self, x, batch_size, epoch_range: tuple, steps_per_epoch, class_weight, sample_weight,
                             validation_settings: tuple) -> None:
        validation_batch_size, validation_steps, validation_freq = validation_settings
        self._assert_compiled("fit")
        if x is None:
            raise ValueError("fit() needs training data. Received: x=None")
        data_lib.check_positive_int(batch_size, "fit")
        data_lib.check_positive_int(validation_batch_size, "fit", "validation_batch_size")
        data_lib.check_positive_int(steps_per_epoch, "fit", "steps_per_epoch")
        data_lib.check_positive_int(validation_steps, "fit", "validation_steps")
        _check_validation_freq(validation_freq)
        for name, value in zip(("initial_epoch", "epochs"), epoch_range, strict=True):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"`{name}` must be a non-negative integer. Received: {name}={value!r}")
        if class_weight is not None and sample_weight is not None:
            raise ValueError(
                "Arguments `sample_weight` and `class_weight` cannot be specified at the same time. "
                f"Received: sample_weight=..., class_weight={class_weight}"
            )
        if class_weight is not None:
            data_lib.check_class_weight(class_weight, "fit")

    def _fit_iterator(self, x, y, sample_weight, class_weight, batch_size, shuffle, steps_per_epoch,
                      validation_split) -> data_lib.EpochIterator:
        """fit's training batches (``validation_split`` is 0 when ``validation_data`` is given: that one
        wins, as in Keras); under a strategy each rank takes its part of every global batch."""
        dist = self._distribution
        return data_lib.EpochIterator(
            x, y, sample_weight, batch_size, steps_per_epoch, shuffle, class_weight, what="fit",
            validation_split=validation_split, prepare_arrays=self._prepare_fit_arrays,
            prepare_batch=self._check_stream_batch, targets=self._as_list,
            rng=dist.shuffle_rng if dist is not None else None, shard=dist.shard if dist is not None else None)

    def _validation_iterator(self, validation_data, held_out, batch_size, steps):
        """fit's validation batches: from ``validation_data`` (a tuple of arrays, checked now, or an
        iterable of batches) or else the ``validation_split`` tail ``held_out``; None without either."""
        if validation_data is None and held_out is None:
            return None
        prepare = self._prepare_validation_arrays
        if validation_data is None:
            (x, y, sample_weight), arrays, prepare = held_out, True, None  # prepared with the training data
        elif isinstance(validation_data, tuple) and len(validation_data) in (2, 3):
            x, y, sample_weight = validation_data if len(validation_data) == 3 else (*validation_data, None)
            arrays = True
        elif data_lib.is_array_like(validation_data):
            raise ValueError(
                "validation_data must be a tuple (x_val, y_val) or (x_val, y_val, sample_weight), or an "
                f"iterable of batches. Received: {type(validation_data).__name__}"
            )
        else:
            x, y, sample_weight, arrays = validation_data, None, None, False
        dist = self._distribution
        return data_lib.EpochIterator(x, y, sample_weight, batch_size, steps, what="fit (validation_data)",
                                      arrays=arrays, prepare_arrays=prepare, prepare_batch=self._check_stream_batch,
                                      shard=dist.shard if dist is not None else None)

    def _fit_callbacks(self, user_callbacks: list, verbose: int, health, epochs: int, train):
        """The History and the CallbackList that ``fit`` drives."""
        from lamina import callbacks as callbacks_lib  # lazy: callbacks load on first use

        history = callbacks_lib.History()
        # Keras's order: the user's callbacks, then History (it records the keys they add, e.g. learning_rate)
        cb_list = user_callbacks + [history]
        if verbose:
            cb_list.append(callbacks_lib.ProgbarLogger())
        if health:
            cb_list.append(callbacks_lib.ActivationHealth() if health is True else health)
        dist = self._distribution
        if dist is not None:
            cb_list = dist.filter_callbacks(cb_list)
            dist.on_fit_begin(self)
        return history, callbacks_lib.CallbackList(cb_list, model=self, verbose=verbose, epochs=epochs,
                                                   steps=train.steps)

    def _fit_epochs(self, train, cbs, epochs: range, val, validation_freq) -> dict:
        """The epoch loop (``val``: the validation EpochIterator or None); returns the last epoch's logs."""
        listen = (_listens(cbs, "on_train_batch_begin"), _listens(cbs, "on_train_batch_end"))
        train_function = self.make_train_function()
        dist = self._distribution
        logs = {}
        for epoch in epochs:
            self.reset_metrics()
            cbs.on_epoch_begin(epoch)
            n_steps, step_logs = self._fit_one_epoch(train, cbs, (epoch, epoch == epochs.start), listen,
                                                     train_function)
            if not n_steps:
                if epoch == epochs.start:
                    raise ValueError(
                        "`x` passed to fit produced no batches, so there is nothing to train on. Pass a "
                        "non-empty iterable, or a fresh generator. Received: an empty iterable of type "
                        f"{type(train.source).__name__}"
                    )
                warnings.warn(
                    f"Your input ran out of data at epoch {epoch + 1}; training stops here. Make sure the "
                    "data can produce steps_per_epoch * epochs batches (use a re-iterable or a "
                    "generator that loops).", UserWarning, stacklevel=3,
                )
                break
            if dist is not None:
                dist.reduce_metrics(self.metrics)
            logs = self._logs_of(step_logs)
            if val is not None and _validates_after(epoch, validation_freq):
                val_logs = self._evaluate_data(val, cbs)
                logs.update({"val_" + k: v for k, v in val_logs.items()})
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        return logs

    def _fit_one_epoch(self, train, cbs, epoch_info: tuple, listen: tuple, train_function) -> tuple:
        """One pass over the training batches; returns how many steps ran and the last logs a
        custom train step returned (None when lamina's own step ran: its logs are the metrics')."""
        epoch, first_epoch = epoch_info
        listen_begin, listen_end = listen
        # A stream's first batch is the first data the metrics see (arrays were tried before fit began).
        probe = first_epoch and not train.arrays
        # lamina's own step runs directly, with logs built only for a callback that reads them.
        own_step = getattr(train_function, "uses_default_step", False)
        step, step_logs = -1, None
        for step, (x_batch, y_batch, weight_batch) in train.enumerate_epoch(epoch):
            if probe and step == 0:
                self._check_metrics_before_training(x_batch, y_batch, weight_batch, "fit")
            if listen_begin:
                cbs.on_train_batch_begin(step)
            if own_step:
                self._train_step(x_batch, y_batch, weight_batch)
            else:
                step_logs = train_function(pack_x_y_sample_weight(x_batch, y_batch, weight_batch))
            if listen_end:
                cbs.on_train_batch_end(step, self._batch_logs() if own_step else _pythonify_logs(step_logs))
            if self.stop_training:
                break
        return step + 1, step_logs

    def _batch_logs(self) -> dict:
        return self._logs()

    def _ensure_built(self, x) -> None:
        if not self.built:
            first = data_lib._leaves(x)[0]
            self._maybe_build((None,) + tuple(np.shape(first))[1:])

    def _evaluate_data(self, batches, cbs) -> dict:
        """fit's validation: the test steps over ``batches`` (an EpochIterator); returns the logs.

        As in Keras, fit's callbacks see it as an evaluate: ``on_test_begin``, the test batches and
        ``on_test_end`` with the unprefixed logs (TensorBoard writes ``evaluation_*_vs_iterations`` there).
        """
        cbs.on_test_begin()
        self.reset_metrics()
        dist = self._distribution
        _, step_logs = self._test_batches(batches, cbs)
        if dist is not None:
            dist.reduce_metrics(self.metrics)
        logs = self._logs_of(step_logs)
        cbs.on_test_end(logs)
        return logs

    def _test_batches(self, batches, cbs=None) -> tuple:
        """Test steps over one epoch of ``batches`` (an EpochIterator); returns their count and the
        last logs a custom test step returned (None for lamina's own step)."""
        listen_end = cbs is not None and _listens(cbs, "on_test_batch_end")
        test_function = self.make_test_function()
        own_step = getattr(test_function, "uses_default_step", False)
        i, step_logs = -1, None
        for i, (x_batch, y_batch, weight_batch) in batches.enumerate_epoch():
            if cbs is not None:
                cbs.on_test_batch_begin(i)
            if not own_step:
                step_logs = test_function(pack_x_y_sample_weight(x_batch, y_batch, weight_batch))
            elif _batch_len(x_batch):
                self._test_step(x_batch, y_batch, weight_batch)
            if listen_end:
                cbs.on_test_batch_end(i, self._logs() if own_step else _pythonify_logs(step_logs))
        return i + 1, step_logs

    # ------------------------------------------------------------------ evaluate / predict

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False, **kwargs):
        """Loss and metrics on the given data: a scalar, a list in ``metrics_names`` order, or a dict."""
        from lamina import callbacks as callbacks_lib  # lazy: callbacks load on first use

        self._assert_compiled("evaluate")
        data_lib.check_positive_int(batch_size, "evaluate")
        data_lib.check_positive_int(steps, "evaluate", "steps")
        cb_list = _callback_list(callbacks, "evaluate")
        verbose = _verbosity(verbose, "evaluate")
        batch_size = batch_size or 32
        dist = self._distribution
        if dist is not None and not dist.is_chief:
            verbose = 0
        batches = data_lib.EpochIterator(x, y, sample_weight, batch_size, steps, what="evaluate",
                                         prepare_arrays=self._prepare_loop_arrays,
                                         prepare_batch=self._check_stream_batch,
                                         shard=dist.shard if dist is not None else None)
        if verbose:
            cb_list.append(callbacks_lib.ProgbarLogger())
        cbs = callbacks_lib.CallbackList(cb_list, model=self, verbose=verbose, epochs=1, steps=batches.steps)
        cbs.on_test_begin()
        self.reset_metrics()
        n_run, step_logs = self._test_batches(batches, cbs)
        if not n_run and not batches.arrays:
            raise ValueError(
                "`x` passed to evaluate produced no batches, so there is nothing to evaluate. Pass a "
                f"non-empty iterable, or a fresh generator. Received: an empty iterable of type {type(x).__name__}"
            )
        if dist is not None:
            dist.reduce_metrics(self.metrics)
        logs = self._logs_of(step_logs)
        cbs.on_test_end(logs)
        return logs if return_dict else self._flatten_logs(logs)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Outputs for ``x`` in batches, concatenated; plain NumPy, no graph.

        Rows are independent at inference, so ``batch_size=None`` processes up to
        ``PREDICT_CHUNK`` rows per call (Keras uses 32): the same numbers, far fewer Python steps. So does
        a smaller ``batch_size`` when no progress bar or callback watches the batches and the model works
        through blocks of rows of its own (a convnet's stack, or an Embedding-fed LSTM, split over threads:
        their memory is a block's; a Dense head's, the rows' features).
        An array with 0 samples gives 0 rows of the output's shape (``(0, 3)`` for a 3-unit output,
        a list or dict of such for several outputs), where Keras fails; an iterable that yields no
        batch is a ValueError.
        """
        data_lib.check_positive_int(batch_size, "predict")
        data_lib.check_positive_int(steps, "predict", "steps")
        verbose = _verbosity(verbose, "predict")
        quiet = not verbose and not callbacks and steps is None and type(x) is np.ndarray and self.built \
            and self._distribution is None and getattr(self.make_predict_function(), "uses_default_step", False)
        if quiet and (batch_size or PREDICT_CHUNK) < PREDICT_CHUNK and getattr(self, "_predicts_in_blocks", bool)():
            # Nothing watches the batches, and the model works through blocks of rows of its own (its memory a
            # block's): whole chunks go to it at once, the same numbers with fewer hand-offs to its threads.
            batch_size = PREDICT_CHUNK
        if quiet and hasattr(self, "_run") and x.dtype == np.float32 \
                and x.ndim >= 1 and 0 < len(x) <= (batch_size or PREDICT_CHUNK):
            # The latency path: one in-memory batch, no progress bar: validate and run.
            self._check_input_shapes(x)
            return self._predict_batch(x)
        cb_list = _callback_list(callbacks, "predict")
        dist = self._distribution
        if dist is not None and not dist.is_chief:
            verbose = 0
        # Under a strategy each rank predicts one contiguous block; the blocks are gathered back in order.
        batches = data_lib.EpochIterator(x, None, None, batch_size or PREDICT_CHUNK, steps, what="predict",
                                         prepare_arrays=self._prepare_input_arrays,
                                         prepare_batch=self._prepare_input_batch,
                                         block=dist.block_of if dist is not None else None)
        if batches.arrays and batches.n == 0:  # shaped by the model itself
            return self._predict_with(self.make_predict_function(), batches.x)
        outs = self._predict_loop(batches, verbose, cb_list)
        if dist is not None and batches.arrays:
            return dist.gather_blocks(outs)
        if not outs:
            raise ValueError(
                "`x` passed to predict produced no batches, so there is nothing to predict. Pass a "
                f"non-empty iterable, or a fresh generator. Received: an empty iterable of type {type(x).__name__}"
            )
        return _concat_outputs(outs)

    def _predict_loop(self, batches, verbose: int, cb_list: list) -> list:
        """The outputs of one epoch of ``batches`` (an EpochIterator), batch by batch."""
        cbs = None
        if verbose or cb_list:
            from lamina import callbacks as callbacks_lib  # lazy: callbacks load on first use

            cb_list = cb_list + ([callbacks_lib.ProgbarLogger()] if verbose else [])
            cbs = callbacks_lib.CallbackList(cb_list, model=self, verbose=verbose, epochs=1, steps=batches.steps)
            cbs.on_predict_begin()
        outs = []
        predict_function = self.make_predict_function()
        for i, (x_batch, _, _) in batches.enumerate_epoch():
            if cbs is not None:
                cbs.on_predict_batch_begin(i)
            outs.append(self._predict_with(predict_function, x_batch))
            if cbs is not None:
                cbs.on_predict_batch_end(i, {"outputs": outs[-1]})
        if cbs is not None:
            cbs.on_predict_end()
        return outs

    def _predict_with(self, predict_function, x_batch):
        """One batch through ``predict_function`` (lamina's own step directly), outputs as NumPy."""
        if getattr(predict_function, "uses_default_step", False):
            return self._predict_batch(x_batch)
        out = predict_function(pack_x_y_sample_weight(x_batch))
        return data_lib._map(lambda a: np.asarray(unwrap(a)), out) if isinstance(out, (dict, list, tuple)) \
            else np.asarray(unwrap(out))

    def _predict_batch(self, x_batch):
        out = self._forward(x_batch, training=False) if hasattr(self, "_run") else self(x_batch, training=False)
        # tree keeps the outputs' own containers (a tuple, a namedtuple), as Keras's predict returns them
        return tree.map_structure(lambda a: np.asarray(unwrap(a)), out) if not isinstance(out, np.ndarray) else out

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One gradient step on one batch; returns the loss (and metrics) of that batch."""
        self._assert_compiled("train_on_batch")
        if class_weight is not None and sample_weight is not None:
            raise ValueError("Arguments `sample_weight` and `class_weight` cannot be specified at the same time.")
        if class_weight is not None:
            data_lib.check_class_weight(class_weight, "train_on_batch")
        x, y, sample_weight = data_lib.EpochIterator(
            x, y, sample_weight, class_weight=class_weight, what="train_on_batch", arrays=True,
            prepare_arrays=self._prepare_loop_arrays, targets=self._as_list).one_batch()
        if not self._output_metrics:
            # Until the metrics exist (the first call) they have not seen targets: try them first.
            self._check_metrics_before_training(x, y, sample_weight, "train_on_batch")
        self.reset_metrics()
        logs = self.make_train_function()(pack_x_y_sample_weight(x, y, sample_weight))
        return self._return_logs(return_dict, logs)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._assert_compiled("test_on_batch")
        x, y, sample_weight = data_lib.EpochIterator(x, y, sample_weight, what="test_on_batch", arrays=True,
                                                     prepare_arrays=self._prepare_loop_arrays).one_batch()
        self.reset_metrics()
        logs = self.make_test_function()(pack_x_y_sample_weight(x, y, sample_weight))
        return self._return_logs(return_dict, logs)

    def predict_on_batch(self, x):
        x, _, _ = data_lib.EpochIterator(x, what="predict_on_batch", arrays=True,
                                         prepare_arrays=self._prepare_input_arrays).one_batch()
        return self._predict_with(self.make_predict_function(), x)

    def _return_logs(self, return_dict: bool, step_logs):
        """What a step returned (as floats), as a dict or in ``metrics_names`` order (Keras's rule)."""
        logs = _pythonify_logs(step_logs)
        return logs if return_dict else self._flatten_logs(logs)


PREDICT_CHUNK = 2048


def unpack_x_y_sample_weight(data) -> tuple:
    """``(x, y, sample_weight)`` from a batch ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``
    (a list counts as a tuple, as in Keras); missing parts are None."""
    return data_lib.unpack(tuple(data) if isinstance(data, list) else data, "a train/test/predict step")


def pack_x_y_sample_weight(x, y=None, sample_weight=None):
    """The batch a step receives: ``x`` (``(x,)`` when x is itself a list or tuple), ``(x, y)`` or
    ``(x, y, sample_weight)``."""
    if y is None:
        return (x,) if isinstance(x, (list, tuple)) else x
    if sample_weight is None:
        return x, y
    return x, y, sample_weight


def _is_default(model, step: str) -> bool:
    """Whether ``model``'s ``step`` ("train_step", ...) is lamina's own, not a user's override."""
    return getattr(getattr(model, step), "__func__", None) is getattr(Trainer, step)


class _StepFunction:
    """``model.train_function`` & co: ``fn(data)`` runs the model's ``<kind>_step`` on one batch.

    ``uses_default_step`` tells the loops that the step is lamina's own, which they then run
    directly (no batch tuple, no logs dict unless a callback reads one).
    """

    __slots__ = ("model", "kind", "uses_default_step")

    def __init__(self, model, kind: str):
        self.model = model
        self.kind = kind
        self.uses_default_step = _is_default(model, f"{kind}_step")

    def __call__(self, data):
        model = self.model
        if not self.uses_default_step and self.kind != "predict":
            model._clear_losses()  # activity penalties of this batch only (lamina's step clears its own)
            if self.kind == "train" and not model._fast_planned:
                model._plan_fast_step()  # the user's step then calls the compiled forward
        return getattr(model, f"{self.kind}_step")(data)

    def __repr__(self) -> str:
        return f"<{self.kind}_function of model '{self.model.name}'>"


def _log_value(result):
    """A metric's result as logs hold it: a Python float, or an array for a per-class result (F1Score)."""
    value = np.asarray(unwrap(result))
    return float(value.reshape(())) if value.size == 1 else value


def _pythonify_logs(logs) -> dict:
    """Logs as callbacks and History take them: sorted by name, nested dicts merged, scalar arrays and
    Tensors as Python floats (other values kept as they are)."""
    out = {}
    for key, value in sorted((logs or {}).items()):
        if isinstance(value, dict):
            out.update(_pythonify_logs(value))
            continue
        try:
            value = float(unwrap(value))
        except (TypeError, ValueError):
            pass
        out[key] = value
    return out
PROBE_ROWS = 4  # rows on which fit tries the metrics before training
_WEIGHT_ADVICE = "which would turn every model weight into NaN at the first step. Every sample weight must be finite."


def _check_run_eagerly(value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`run_eagerly` must be True or False. Received: run_eagerly={value!r}")
    return bool(value)


def _check_jit_compile(value):
    """A bool, or "auto" (kept as the string)."""
    if isinstance(value, str) and value == "auto":
        return "auto"
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f'`jit_compile` must be True, False or "auto". Received: jit_compile={value!r}')
    return bool(value)


def _check_validation_freq(validation_freq) -> None:
    """A positive integer (validate every that many epochs) or a list of epoch numbers counted from 1."""
    freqs = validation_freq if isinstance(validation_freq, (list, tuple)) else [validation_freq]
    if not freqs or not all(isinstance(f, (int, np.integer)) and not isinstance(f, bool) and f > 0 for f in freqs):
        raise ValueError(
            "`validation_freq` passed to fit must be a positive integer (validate every that many epochs) or a "
            f"list of epochs counted from 1, e.g. [1, 5, 10]. Received: validation_freq={validation_freq!r}"
        )


def _validates_after(epoch: int, validation_freq) -> bool:
    """Whether fit validates at the end of ``epoch`` (0-based), as Keras reads ``validation_freq``."""
    if isinstance(validation_freq, (list, tuple)):
        return epoch + 1 in validation_freq
    return (epoch + 1) % validation_freq == 0


def _watches_nan(callbacks: list) -> bool:
    """Whether one of the user's callbacks is a TerminateOnNaN (it stops training on a non-finite loss)."""
    from lamina.callbacks.terminate_on_nan import TerminateOnNaN  # lazy: callbacks load on first use

    return any(isinstance(cb, TerminateOnNaN) for cb in callbacks)


def _callback_list(callbacks, what: str) -> list:
    """The user's ``callbacks`` (a list, nested lists, or one callback) as a flat list of callbacks."""
    from lamina.callbacks.callback_list import HOOKS  # lazy: callbacks load on first use

    flat, todo = [], [callbacks] if callbacks is not None else []
    while todo:
        item = todo.pop(0)
        if isinstance(item, (list, tuple)):
            todo[:0] = list(item)
            continue
        if not all(callable(getattr(item, hook, None)) for hook in HOOKS):
            raise TypeError(
                f"`callbacks` passed to {what} must be a list of keras.callbacks.Callback instances, e.g. "
                f"callbacks=[EarlyStopping(patience=3)]. Received: {data_lib._short(item)} of type "
                f"{type(item).__name__}"
            )
        flat.append(item)
    return flat


def _verbosity(verbose, what: str) -> int:
    """Keras's ``verbose``: "auto" (a progress bar, 1), 0 (silent), 1 (a bar) or 2 (a line per epoch)."""
    if verbose == "auto":
        return 1
    if isinstance(verbose, (bool, int, np.integer)) and 0 <= verbose <= 2:
        return int(verbose)
    raise ValueError(f"{what}(): `verbose` must be 'auto', 0, 1 or 2. Received: verbose={verbose!r}")


def _as_arrays(x, y, sample_weight, what: str, text: bool = False):
    """``x``, ``y`` and ``sample_weight`` (each an array, a nested list or a structure of them) as
    NumPy arrays; floats in x and the weights cast to floatx, targets keep their dtype; x may be text
    where ``text`` (a model reading strings)."""
    x = data_lib._map(lambda a: data_lib.to_array(a, what, "x", text=text), data_lib.require_arrays(x, what, "x"))
    if y is not None:
        y = data_lib._map(lambda a: data_lib.to_array(a, what, "y", float_cast=False),
                          data_lib.require_arrays(y, what, "y"))
    if sample_weight is not None:
        sample_weight = data_lib._map(lambda a: data_lib.to_array(a, what, "sample_weight"),
                                      data_lib.require_arrays(sample_weight, what, "sample_weight"))
    return x, y, sample_weight


def _listens(cbs, hook: str) -> bool:
    """Does any callback in the list handle ``hook``? (Logs cost microseconds: build them only then.)"""
    dispatch = getattr(cbs, "_dispatch", None)
    return dispatch is None or bool(dispatch.get(hook, True))


def _batch_len(x) -> int:
    first = data_lib._leaves(x)[0]
    return int(np.shape(first)[0])


def _concat_outputs(outs: list):
    if not outs:
        return np.zeros((0,), dtype=backend.floatx())
    first = outs[0]
    if tree.is_nested(first):  # the outputs' own structure (tuple, namedtuple, nested dict) is kept
        return tree.map_structure(lambda *parts: np.concatenate(parts), *outs)
    return np.concatenate(outs) if len(outs) > 1 else np.asarray(first)

