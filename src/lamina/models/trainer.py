"""The training API shared by every model: compile, fit, evaluate, predict and the *_on_batch forms.

One training step is: forward under a GradientTape (Dense+activation as fused nodes), the loss —
computed from the logits when a sigmoid/softmax output feeds its crossentropy, as Keras's
TensorFlow backend does (stable, gradient p - y) — plus regularization penalties, one backward
pass, one optimizer update, then the metrics on plain arrays.
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np

from lamina import backend
from lamina.autodiff import GradientTape, Tensor, unwrap
from lamina.models import data as data_lib


def _structure_names(model) -> list[str]:
    outputs = getattr(model, "outputs", None) or []
    return [t._keras_history[0].name for t in outputs]


class _OutputLoss:
    """One output's loss, its weight, and (when applicable) its from-logits twin."""

    def __init__(self, loss, weight: float, name: str):
        self.loss = loss
        self.weight = weight
        self.name = name
        self.logits_loss = None  # set when the trainer can feed logits


class Trainer:
    """Mixed into :class:`~lamina.models.model.Model`."""

    def __init__(self):
        self.compiled = False
        self.optimizer = None
        self.loss = None
        self.stop_training = False
        self.history = None
        self._output_losses: list[_OutputLoss] = []
        self._output_metrics: list[list] = []
        self._metric_specs = None
        self._weighted_metric_specs = None
        self._loss_tracker = None
        self._per_output_trackers: list = []
        self._compile_config = None  # the raw compile() arguments; saving serializes them
        self._use_logits = None
        # A data-parallel strategy (lamina.distribute) attached by `strategy.scope()` or
        # `fit(strategy=...)`; None trains in this process alone.
        self._distribution = None
        self._fast_step = None  # a DenseChainStep when the model fits the hand-written fast path
        self._fast_planned = False

    # ------------------------------------------------------------------ compile

    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1, jit_compile="auto",
                auto_scale_loss=True, **kwargs) -> None:
        """Configure training: optimizer, loss (per output for multi-output models), metrics."""
        from lamina import losses as losses_lib
        from lamina import metrics as metrics_lib
        from lamina import optimizers
        from lamina.models import compile_utils

        lint = kwargs.pop("lint", None)
        if kwargs:
            raise TypeError(f"compile() got unexpected keyword arguments: {sorted(kwargs)}")
        self.optimizer = optimizers.get(optimizer)
        self.loss = loss
        self._compile_config = {"optimizer": optimizer, "loss": loss, "loss_weights": loss_weights,
                                "metrics": metrics, "weighted_metrics": weighted_metrics}
        names = _structure_names(self)
        n_out = max(1, len(names))
        self._output_losses = []
        if loss is None:
            losses_per_output = [None] * n_out
        elif isinstance(loss, dict):
            unknown = [k for k in loss if k not in names]
            if unknown:
                raise ValueError(
                    f"compile(loss=...) has keys {unknown} that are not outputs of model '{self.name}'. "
                    f"Expected keys among: {names}. Received: loss keys {list(loss)}"
                )
            losses_per_output = [loss.get(n) for n in names]
        elif isinstance(loss, (list, tuple)):
            if len(loss) != n_out:
                raise ValueError(
                    f"compile(loss=[...]) needs one loss per output: model '{self.name}' has {n_out} "
                    f"outputs. Received: {len(loss)} losses"
                )
            losses_per_output = list(loss)
        else:
            losses_per_output = [loss] * n_out
        if isinstance(loss_weights, dict):
            weights = [float(loss_weights.get(n, 1.0)) for n in names]
        elif isinstance(loss_weights, (list, tuple)):
            weights = [float(w) for w in loss_weights]
        elif loss_weights is None:
            weights = [1.0] * n_out
        else:
            weights = [float(loss_weights)] * n_out
        for i, lo in enumerate(losses_per_output):
            obj = compile_utils.as_loss_object(losses_lib.get(lo)) if lo is not None else None
            name = names[i] if names else "output"
            self._output_losses.append(_OutputLoss(obj, weights[i] if i < len(weights) else 1.0, name))
        self._metric_specs = metrics
        self._weighted_metric_specs = weighted_metrics
        self._output_metrics = []  # resolved lazily: "accuracy" depends on label shapes
        self._loss_tracker = metrics_lib.Mean(name="loss")
        self._per_output_trackers = [metrics_lib.Mean(name=f"{ol.name}_loss") for ol in self._output_losses] \
            if len(self._output_losses) > 1 else []
        self._use_logits = None
        self._fast_planned = False
        # Compiled inside `with strategy.scope():` — train data-parallel with that strategy.
        strategy_mod = sys.modules.get("lamina.distribute.strategy")
        if strategy_mod is not None and strategy_mod.current() is not None:
            strategy_mod.current()._attach(self)
        self.compiled = True
        self.stop_training = False
        self._lint_mode = lint
        if lint is not False:
            self._run_lint(lint)

    def _run_lint(self, mode) -> None:
        """The activation doctor's structural and loss rules (see lamina.diagnostics.lint)."""
        from lamina.diagnostics.lint import check_at_compile

        check_at_compile(self, mode)

    def _before_fit(self, x, y) -> None:
        """The activation doctor's data rules, and a row sample kept for ActivationHealth."""
        from lamina.diagnostics.lint import check_at_fit

        check_at_fit(self, x, y, getattr(self, "_lint_mode", None))

    def _assert_compiled(self, what: str) -> None:
        if not self.compiled:
            raise RuntimeError(
                f"You must call `compile()` before calling `{what}()` on model '{self.name}'. "
                "For example: model.compile(optimizer='adam', loss='sparse_categorical_crossentropy')."
            )
        if all(ol.loss is None for ol in self._output_losses) and what in ("fit", "train_on_batch"):
            raise ValueError(
                f"Model '{self.name}' was compiled without a loss, so it cannot be trained. "
                "Pass loss=... to compile()."
            )

    # ------------------------------------------------------------------ metrics

    def _build_metrics(self, y_batch, y_pred) -> None:
        from lamina import metrics as metrics_lib

        ys = self._as_list(y_batch)
        preds = self._as_list(y_pred)
        names = [ol.name for ol in self._output_losses]
        self._output_metrics = []
        for i in range(len(self._output_losses)):
            out = []
            for spec_list, weighted in ((self._metric_specs, False), (self._weighted_metric_specs, True)):
                specs = self._metrics_for_output(spec_list, i, names)
                for spec in specs:
                    yt = ys[i] if i < len(ys) else None
                    m = metrics_lib.get_metric(spec, np.shape(yt) if yt is not None else None,
                                               np.shape(unwrap(preds[i])), loss=self._output_losses[i].loss)
                    if len(self._output_losses) > 1:
                        m._display_name = f"{names[i]}_{m.name}"
                    else:
                        m._display_name = m.name
                    m._weighted = weighted
                    out.append(m)
            self._output_metrics.append(out)

    @staticmethod
    def _metrics_for_output(spec_list, i, names) -> list:
        if spec_list is None:
            return []
        if isinstance(spec_list, dict):
            s = spec_list.get(names[i], [])
            return list(s) if isinstance(s, (list, tuple)) else [s]
        if isinstance(spec_list, (list, tuple)) and spec_list and isinstance(spec_list[0], (list, tuple)):
            return list(spec_list[i]) if i < len(spec_list) else []
        return list(spec_list) if isinstance(spec_list, (list, tuple)) else [spec_list]

    @property
    def metrics(self) -> list:
        out = [self._loss_tracker] if self._loss_tracker is not None else []
        out += self._per_output_trackers
        for ms in self._output_metrics:
            out.extend(ms)
        return out

    @property
    def metrics_names(self) -> list[str]:
        return [getattr(m, "_display_name", m.name) for m in self.metrics]

    def reset_metrics(self) -> None:
        for m in self.metrics:
            m.reset_state()

    def _logs(self) -> dict:
        logs = {}
        for m in self.metrics:
            logs[getattr(m, "_display_name", m.name)] = float(m.result())
        return logs

    # ------------------------------------------------------------------ one step

    def _as_list(self, s) -> list:
        if s is None:
            return []
        if isinstance(s, dict):
            names = [ol.name for ol in self._output_losses]
            return [s[n] for n in names if n in s] if all(n in s for n in names) else list(s.values())
        if isinstance(s, (list, tuple)) and len(self._output_losses) > 1:
            return list(s)
        return [s]

    def _decide_logits(self) -> bool:
        """Use logits when the single output is sigmoid/softmax feeding the matching crossentropy."""
        if self._use_logits is not None:
            return self._use_logits
        self._use_logits = False
        if len(self._output_losses) != 1 or not hasattr(self, "_run"):
            return False
        ol = self._output_losses[0]
        from lamina.models import compile_utils

        twin = compile_utils.logits_twin(ol.loss, self._output_activation()) if ol.loss is not None else None
        if twin is not None:
            ol.logits_loss = twin
            self._use_logits = True
        return self._use_logits

    def _output_layer(self):
        outputs = getattr(self, "outputs", None)
        if not outputs or len(outputs) != 1:
            return None
        return outputs[0]._keras_history[0]

    def _output_activation(self):
        layer = self._output_layer()
        if layer is None or not hasattr(layer, "call_logits"):
            return None
        return getattr(layer, "activation", None)

    def _forward(self, x, training: bool, logits: bool = False):
        if hasattr(self, "_run"):
            flat = x
            if hasattr(self, "_flatten_inputs"):
                flat = self._flatten_inputs(x)
            return self._run(flat, training=training, logits=logits)
        return self(x, training=training)

    def _compute_loss(self, y, y_pred, sample_weight, logits: bool):
        ys = self._as_list(y)
        preds = self._as_list(y_pred)
        sws = self._as_list(sample_weight) if isinstance(sample_weight, (dict, list, tuple)) else \
            [sample_weight] * len(self._output_losses)
        total = None
        per_output = []
        for i, ol in enumerate(self._output_losses):
            if ol.loss is None:
                per_output.append(None)
                continue
            fn = ol.logits_loss if logits else ol.loss
            value = fn(ys[i], preds[i], sample_weight=sws[i] if i < len(sws) else None)
            per_output.append(value)
            term = value * ol.weight if ol.weight != 1.0 else value
            total = term if total is None else total + term
        reg = self.losses
        if reg:
            for r in reg:
                total = total + r
        return total, per_output

    def _prepare_logits_for_metrics(self, y_pred, logits: bool):
        if not logits:
            return y_pred
        from lamina import ops

        act = self._output_activation()
        return np.asarray(act(unwrap(y_pred))) if act is not None else ops.softmax(unwrap(y_pred))

    def _update_metrics(self, y, y_pred, sample_weight, loss_value, per_output, batch_size) -> None:
        # The loss tracker is a Mean of batch losses weighted by batch size (Keras's rule); its two
        # state variables are updated in place directly, the per-step hot path.
        tracker = self._loss_tracker
        tracker.total.value[...] += loss_value * batch_size
        tracker.count.value[...] += batch_size
        for tracker, value in zip(self._per_output_trackers, per_output):
            if value is not None:
                tracker.update_state(float(unwrap(value)), sample_weight=batch_size)
        if not self._output_metrics and (self._metric_specs or self._weighted_metric_specs):
            self._build_metrics(y, y_pred)
        ys = self._as_list(y)
        preds = self._as_list(y_pred)
        for i, ms in enumerate(self._output_metrics):
            for m in ms:
                sw = sample_weight if m._weighted else None
                if isinstance(sw, (list, tuple, dict)):
                    sw = self._as_list(sw)[i]
                m.update_state(ys[i], unwrap(preds[i]), sample_weight=sw)

    def _plan_fast_step(self) -> None:
        """Choose the hand-written Dense-chain step when the model and loss allow (see dense_chain)."""
        from lamina.models import dense_chain

        self._fast_planned = True
        self._fast_step = None
        if not self._decide_logits():
            return
        self._consolidate_weights()
        self._fast_step = dense_chain.plan(self)

    def _consolidate_weights(self) -> None:
        """Make the float32 trainable weights views of one flat buffer (the optimizer then updates
        them all in a few vectorised calls, and an all-reduce moves them in one message)."""
        from lamina.optimizers.optimizer import _span

        weights = [v for v in self.trainable_weights if v.dtype == np.float32]
        if not weights:
            return
        sizes = [v.size for v in weights]
        if _span([v._value for v in weights], sizes, sum(sizes), np.float32) is not None:
            return  # already one buffer (the optimizer's own test for it)
        flat = np.empty(sum(v.size for v in weights), dtype=np.float32)
        offset = 0
        for v in weights:
            v._rebind(flat[offset:offset + v.size].reshape(v.shape))
            offset += v.size

    def _train_step(self, x, y, sw) -> None:
        if not self._fast_planned:
            self._plan_fast_step()
        fast = self._fast_step
        if fast is not None and type(x) is np.ndarray and x.dtype == np.float32 and type(y) is np.ndarray \
                and (sw is None or np.ndim(sw) == 1) and x.ndim == 2 and x.shape[0]:
            loss_value, probs = fast.step(x, y, sw)
            self._update_metrics(y, probs, sw, loss_value, (), x.shape[0])
            return
        logits = self._decide_logits()
        trainable = self.trainable_weights
        if self._distribution is not None and _batch_len(x) == 0:
            # This rank's share of a short last batch is empty: it still joins the gradient average.
            if self._fast_step is not None:
                self._fast_step.empty_step()
                return
            grads = self._distribution.reduce_gradients([None] * len(trainable), trainable, 0)
            self.optimizer.apply(grads, trainable)
            return
        self._clear_losses()
        with GradientTape() as tape:
            y_pred = self._forward(x, training=True, logits=logits)
            loss, per_output = self._compute_loss(y, y_pred, sw, logits)
        if not isinstance(loss, Tensor):
            raise ValueError(
                f"The loss of model '{self.name}' does not depend on any trainable weight, so training "
                "cannot change it. Check that the model has trainable layers."
            )
        grads = tape.gradient(loss, trainable)
        if self._distribution is not None:
            grads = self._distribution.reduce_gradients(grads, trainable, _batch_len(x))
        self.optimizer.apply(grads, trainable)
        self._clear_losses()
        loss_value = float(loss.data)
        y_metric = self._prepare_logits_for_metrics(y_pred, logits) if self._output_metrics or \
            self._metric_specs or self._weighted_metric_specs else y_pred
        self._update_metrics(y, y_metric, sw, loss_value, per_output, _batch_len(x))

    def _test_step(self, x, y, sw) -> None:
        y_pred = self._forward(x, training=False)
        loss, per_output = self._compute_loss(y, y_pred, sw, logits=False)
        loss_value = float(unwrap(loss)) if loss is not None else 0.0
        self._update_metrics(y, y_pred, sw, loss_value, per_output, _batch_len(x))

    # ------------------------------------------------------------------ data

    def _prepare_arrays(self, x, y, sample_weight, what: str, check_labels: bool = True):
        x = data_lib._map(lambda a: data_lib.to_array(a, what, "x"), x)
        y = data_lib._map(lambda a: data_lib.to_array(a, what, "y", float_cast=False), y)
        if sample_weight is not None:
            sample_weight = data_lib._map(lambda a: data_lib.to_array(a, what, "sample_weight"), sample_weight)
        data_lib.num_samples(x, y, sample_weight, what)
        data_lib.check_finite(x, what, "x")
        if y is not None:
            ys = data_lib._leaves(y)
            data_lib.check_finite(ys, what, "y")
            if check_labels:
                self._check_targets(y)
        self._check_input_shapes(x)
        return x, y, sample_weight

    def _check_input_shapes(self, x) -> None:
        inputs = getattr(self, "inputs", None)
        if not inputs:
            return
        flat = self._flatten_inputs(x) if hasattr(self, "_flatten_inputs") else [x]
        if hasattr(self, "_check_inputs"):
            self._check_inputs(flat)
        elif hasattr(self, "_check_input"):
            self._check_input(flat[0])

    def _check_targets(self, y) -> None:
        """Labels vs loss before the first step (ranges, one-hot vs sparse), in the loss's words."""
        from lamina.models import compile_utils

        ys = self._as_list(y)
        outputs = getattr(self, "outputs", None) or []
        for i, ol in enumerate(self._output_losses):
            if ol.loss is None or i >= len(ys):
                continue
            out_shape = outputs[i].shape if i < len(outputs) else None
            compile_utils.check_targets(ol.loss, ys[i], out_shape)

    # ------------------------------------------------------------------ fit

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1, **kwargs):
        """Train for ``epochs`` epochs; returns a History whose ``history`` maps metric → values."""
        from lamina import callbacks as callbacks_lib

        health = kwargs.pop("health", None)
        strategy = kwargs.pop("strategy", None)
        if kwargs:
            raise TypeError(f"fit() got unexpected keyword arguments: {sorted(kwargs)}")
        self._assert_compiled("fit")
        if x is None:
            raise ValueError("fit() needs training data. Received: x=None")
        if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size <= 0):
            raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
        if not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"`epochs` must be a non-negative integer. Received: epochs={epochs!r}")
        if class_weight is not None and sample_weight is not None:
            raise ValueError(
                "Arguments `sample_weight` and `class_weight` cannot be specified at the same time. "
                f"Received: sample_weight=..., class_weight={class_weight}"
            )
        verbose = 1 if verbose == "auto" else int(verbose)
        batch_size = batch_size or 32
        val = None
        if strategy is not None:
            strategy._attach(self)
        dist = self._distribution
        if dist is not None and not dist.is_chief:
            verbose = 0
        if data_lib.is_array_like(x):
            x, y, sample_weight = self._prepare_arrays(x, y, sample_weight, "fit")
            if y is None:
                raise ValueError("fit() with array inputs needs targets. Received: y=None")
            self._ensure_built(x)
            if validation_data is None and validation_split:
                (x, y, sample_weight), val = data_lib.split_validation(x, y, sample_weight, validation_split)
            if class_weight is not None:
                sample_weight = data_lib.class_weights_to_sample_weights(self._as_list(y)[0], class_weight)
            train = data_lib.ArrayBatches(x, y, sample_weight, batch_size=batch_size, shuffle=shuffle,
                                          steps=steps_per_epoch, what="fit",
                                          rng=dist.shuffle_rng() if dist is not None else None,
                                          shard=dist.shard if dist is not None else None)
        else:
            if y is not None:
                raise ValueError(
                    "When `x` is a generator or iterable of batches, `y` must be None (targets come with "
                    f"each batch). Received: y of type {type(y).__name__}"
                )
            if validation_split:
                raise ValueError("`validation_split` is only supported for array inputs.")
            train = data_lib.IterableBatches(x, steps=steps_per_epoch, what="fit")
        self._before_fit(x, y)
        if validation_data is not None:
            val = self._unpack_validation(validation_data)
        steps = len(train) if train.steps is not None else None

        history = callbacks_lib.History()
        cb_list = [history] + list(callbacks or [])
        if verbose:
            cb_list.append(callbacks_lib.ProgbarLogger())
        if health:
            from lamina.callbacks import ActivationHealth

            cb_list.append(ActivationHealth() if health is True else health)
        if dist is not None:
            cb_list = dist.filter_callbacks(cb_list)
            dist.on_fit_begin(self)
        cbs = callbacks_lib.CallbackList(cb_list, model=self, verbose=verbose, epochs=epochs, steps=steps)
        self.stop_training = False
        self._fast_planned = False  # layers may have been frozen or replaced since the last fit
        cbs.on_train_begin()
        listen_begin = _listens(cbs, "on_train_batch_begin")
        listen_end = _listens(cbs, "on_train_batch_end")
        logs = {}
        for epoch in range(initial_epoch, epochs):
            self.reset_metrics()
            cbs.on_epoch_begin(epoch)
            step = -1
            for step, (xb, yb, swb) in enumerate(train.epoch()):
                if not isinstance(train, data_lib.ArrayBatches):
                    first = step == 0 and epoch == initial_epoch
                    xb, yb, swb = self._prepare_stream_batch(xb, yb, swb, class_weight, first)
                if listen_begin:
                    cbs.on_train_batch_begin(step)
                self._train_step(xb, yb, swb)
                if listen_end:
                    cbs.on_train_batch_end(step, self._batch_logs())
                if self.stop_training:
                    break
            if step < 0:
                warnings.warn(
                    f"Your input ran out of data at epoch {epoch + 1}; training stops here. Make sure the "
                    "data can produce steps_per_epoch * epochs batches (use a re-iterable or a "
                    "generator that loops).", UserWarning, stacklevel=2,
                )
                break
            if dist is not None:
                dist.reduce_metrics(self.metrics)
            logs = self._logs()
            if val is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._evaluate_data(val, validation_batch_size or batch_size, validation_steps)
                logs.update({"val_" + k: v for k, v in val_logs.items()})
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cbs.on_train_end(logs)
        self.history = history
        return history

    def _batch_logs(self) -> dict:
        return self._logs()

    def _ensure_built(self, x) -> None:
        if not self.built:
            first = data_lib._leaves(x)[0]
            self._maybe_build((None,) + tuple(np.shape(first))[1:])

    def _prepare_stream_batch(self, xb, yb, swb, class_weight, first: bool):
        xb = data_lib._map(lambda a: data_lib.to_array(a, "fit", "x"), xb)
        if yb is not None:
            yb = data_lib._map(lambda a: data_lib.to_array(a, "fit", "y", float_cast=False), yb)
        if swb is not None:
            swb = data_lib._map(lambda a: data_lib.to_array(a, "fit", "sample_weight"), swb)
        if yb is None and self._output_losses and self._output_losses[0].loss is not None:
            raise ValueError(
                "Batches from the training generator must include targets: (x, y) or (x, y, sample_weight)."
            )
        if first:
            data_lib.num_samples(xb, yb, swb, "fit")
            self._ensure_built(xb)
            self._check_input_shapes(xb)
        if class_weight is not None and swb is None:
            swb = data_lib.class_weights_to_sample_weights(self._as_list(yb)[0], class_weight)
        return xb, yb, swb

    def _unpack_validation(self, validation_data):
        if isinstance(validation_data, tuple) and len(validation_data) in (2, 3):
            vx, vy = validation_data[0], validation_data[1]
            vsw = validation_data[2] if len(validation_data) == 3 else None
            return self._prepare_arrays(vx, vy, vsw, "fit (validation_data)")
        if data_lib.is_array_like(validation_data):
            raise ValueError(
                "validation_data must be a tuple (x_val, y_val) or (x_val, y_val, sample_weight), or an "
                f"iterable of batches. Received: {type(validation_data).__name__}"
            )
        return validation_data  # an iterable of batches

    def _evaluate_data(self, data, batch_size, steps) -> dict:
        self.reset_metrics()
        dist = self._distribution
        if isinstance(data, tuple):
            batches = data_lib.ArrayBatches(*data, batch_size=batch_size, steps=steps, what="evaluate",
                                            shard=dist.shard if dist is not None else None).epoch()
        else:
            batches = data_lib.IterableBatches(data, steps=steps, what="evaluate").epoch()
        for xb, yb, swb in batches:
            if not isinstance(data, tuple):
                xb, yb, swb = self._prepare_stream_batch(xb, yb, swb, None, False)
            if _batch_len(xb):
                self._test_step(xb, yb, swb)
        if dist is not None:
            dist.reduce_metrics(self.metrics)
        return self._logs()

    # ------------------------------------------------------------------ evaluate / predict

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False, **kwargs):
        """Loss and metrics on the given data: a scalar, a list in ``metrics_names`` order, or a dict."""
        from lamina import callbacks as callbacks_lib

        self._assert_compiled("evaluate")
        verbose = 1 if verbose == "auto" else int(verbose)
        batch_size = batch_size or 32
        dist = self._distribution
        if dist is not None and not dist.is_chief:
            verbose = 0
        if data_lib.is_array_like(x):
            x, y, sample_weight = self._prepare_arrays(x, y, sample_weight, "evaluate")
            self._ensure_built(x)
            data = (x, y, sample_weight)
            n_steps = data_lib.ArrayBatches(x, y, sample_weight, batch_size=batch_size, steps=steps,
                                            shard=dist.shard if dist is not None else None).steps
        else:
            data = x
            n_steps = steps
        cb_list = list(callbacks or [])
        if verbose:
            cb_list.append(callbacks_lib.ProgbarLogger())
        cbs = callbacks_lib.CallbackList(cb_list, model=self, verbose=verbose, epochs=1, steps=n_steps)
        cbs.on_test_begin()
        self.reset_metrics()
        if isinstance(data, tuple):
            batches = data_lib.ArrayBatches(*data, batch_size=batch_size, steps=steps, what="evaluate",
                                            shard=dist.shard if dist is not None else None).epoch()
        else:
            batches = data_lib.IterableBatches(data, steps=steps, what="evaluate").epoch()
        listen_end = _listens(cbs, "on_test_batch_end")
        for i, (xb, yb, swb) in enumerate(batches):
            if not isinstance(data, tuple):
                xb, yb, swb = self._prepare_stream_batch(xb, yb, swb, None, i == 0)
            cbs.on_test_batch_begin(i)
            if _batch_len(xb):
                self._test_step(xb, yb, swb)
            if listen_end:
                cbs.on_test_batch_end(i, self._logs())
        if dist is not None:
            dist.reduce_metrics(self.metrics)
        logs = self._logs()
        cbs.on_test_end(logs)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Outputs for ``x`` in batches, concatenated; plain NumPy, no graph.

        Rows are independent at inference, so ``batch_size=None`` processes up to
        ``PREDICT_CHUNK`` rows per call (Keras uses 32): the same numbers, far fewer Python steps.
        """
        verbose = 1 if verbose == "auto" else int(verbose)
        if not verbose and not callbacks and steps is None and type(x) is np.ndarray and self.built \
                and self._distribution is None and hasattr(self, "_run") and x.dtype == np.float32 \
                and x.ndim >= 1 and 0 < len(x) <= (batch_size or PREDICT_CHUNK):
            # The latency path: one in-memory batch, no progress bar: validate and run.
            self._check_input_shapes(x)
            return self._predict_batch(x)
        dist = self._distribution
        if dist is not None and not dist.is_chief:
            verbose = 0
        if data_lib.is_array_like(x):
            x = data_lib._map(lambda a: data_lib.to_array(a, "predict", "x"), x)
            n = data_lib.num_samples(x, what="predict")
            self._ensure_built(x)
            self._check_input_shapes(x)
            if dist is not None:
                # Each rank predicts one contiguous block; the blocks are gathered back in order.
                x = data_lib.slice_all(x, dist.block_of(n))
                n = data_lib.num_samples(x, what="predict")
            bs = batch_size or PREDICT_CHUNK
            n_steps = math.ceil(n / bs) if n else 0
            if steps is not None:
                n_steps = min(n_steps, int(steps))
            batches = (data_lib.slice_all(x, slice(i * bs, (i + 1) * bs)) for i in range(n_steps))
        else:
            n_steps = steps
            batches = (b[0] for b in data_lib.IterableBatches(x, steps=steps, what="predict").epoch())
        cbs = None
        if verbose or callbacks:
            from lamina import callbacks as callbacks_lib

            cb_list = list(callbacks or []) + ([callbacks_lib.ProgbarLogger()] if verbose else [])
            cbs = callbacks_lib.CallbackList(cb_list, model=self, verbose=verbose, epochs=1, steps=n_steps)
            cbs.on_predict_begin()
        outs = []
        for i, xb in enumerate(batches):
            if cbs is not None:
                cbs.on_predict_batch_begin(i)
            outs.append(self._predict_batch(xb))
            if cbs is not None:
                cbs.on_predict_batch_end(i, {"outputs": outs[-1]})
        if cbs is not None:
            cbs.on_predict_end()
        if dist is not None and data_lib.is_array_like(x):
            return dist.gather_blocks(outs)
        return _concat_outputs(outs)

    def _predict_batch(self, xb):
        out = self._forward(xb, training=False) if hasattr(self, "_run") else self(xb, training=False)
        return data_lib._map(lambda a: np.asarray(unwrap(a)), out) if not isinstance(out, np.ndarray) else out

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One gradient step on one batch; returns the loss (and metrics) of that batch."""
        self._assert_compiled("train_on_batch")
        if class_weight is not None and sample_weight is not None:
            raise ValueError("Arguments `sample_weight` and `class_weight` cannot be specified at the same time.")
        x, y, sample_weight = self._prepare_arrays(x, y, sample_weight, "train_on_batch")
        self._ensure_built(x)
        if class_weight is not None:
            sample_weight = data_lib.class_weights_to_sample_weights(self._as_list(y)[0], class_weight)
        self.reset_metrics()
        self._train_step(x, y, sample_weight)
        return self._return_logs(return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._assert_compiled("test_on_batch")
        x, y, sample_weight = self._prepare_arrays(x, y, sample_weight, "test_on_batch")
        self._ensure_built(x)
        self.reset_metrics()
        self._test_step(x, y, sample_weight)
        return self._return_logs(return_dict)

    def predict_on_batch(self, x):
        x = data_lib._map(lambda a: data_lib.to_array(a, "predict_on_batch", "x"), x)
        self._ensure_built(x)
        self._check_input_shapes(x)
        return self._predict_batch(x)

    def _return_logs(self, return_dict: bool):
        logs = self._logs()
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values


PREDICT_CHUNK = 2048


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
    if isinstance(first, dict):
        return {k: np.concatenate([o[k] for o in outs]) for k in first}
    if isinstance(first, (list, tuple)):
        return [np.concatenate([o[i] for o in outs]) for i in range(len(first))]
    return np.concatenate(outs) if len(outs) > 1 else np.asarray(first)

