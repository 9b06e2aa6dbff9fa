"""A tape-free training step for the most common model: a plain chain of Dense layers.

Small dense models on a CPU are overhead-bound, so for a Sequential (or single-path Functional)
stack of Dense layers whose activations have output-expressible derivatives (relu, tanh, sigmoid,
softmax, linear, ...) and a crossentropy computed from the logits, one training step is written
out by hand: matmuls into preallocated buffers, the loss gradient ``p - y`` directly, and the
weight gradients written straight into the ``grad_views`` of the model's
:class:`~lamina.optimizers.flat_buffer.FlatBuffer`, which the optimizer updates in a few vectorised
calls. No graph nodes, no closures, no per-op dispatch.

The numbers are those of the generic GradientTape path (same formulas, same order of float32
operations up to summation order); ``tests/test_dense_chain.py`` checks the two against each other.
Anything outside the supported set (regularizers, Dropout, BatchNormalization, other losses,
multi-output models...) takes the generic path, and so does every model compiled with
``run_eagerly=True`` or ``jit_compile=False``.
"""

from __future__ import annotations

import numpy as np

from lamina import activations
from lamina import losses as losses_lib
from lamina.layers.dense import Dense


class DenseChainStep:
    """The hand-written forward/backward for one eligible model; see :func:`plan`."""

    def __init__(self, model, dense_layers, kind: str, label_smoothing: float, buffer):
        self.model = model
        self.buffer = buffer
        self.layers = dense_layers
        self.kind = kind  # "sparse", "categorical" or "binary"
        self.label_smoothing = float(label_smoothing)
        self.hidden = [activations.FUSED[layer.activation] for layer in dense_layers[:-1]]
        # The model's gradient views (its trainable order): the optimizer recognises them as the
        # buffer's own and updates from its flat `grads` without a copy.
        self.variables = list(buffer.variables)
        self.grad_views = buffer.grad_views
        by_id = {id(v): g for v, g in zip(self.variables, self.grad_views)}
        self.kernel_grads = [by_id[id(layer.kernel)] for layer in dense_layers]
        self.bias_grads = [by_id[id(layer.bias)] if layer.bias is not None else None for layer in dense_layers]
        self._buffers: dict[int, list[np.ndarray]] = {}
        self._rows = np.arange(32)  # row indices for the usual batch size, reused every step

    def _activations_for(self, n: int) -> list[np.ndarray]:
        bufs = self._buffers.get(n)
        if bufs is None:
            bufs = [np.empty((n, layer.units), dtype=np.float32) for layer in self.layers]
            if len(self._buffers) > 4:
                self._buffers.clear()
            self._buffers[n] = bufs
        return bufs

    def step(self, x: np.ndarray, y: np.ndarray, sample_weight) -> tuple[float, np.ndarray]:
        """Forward, loss, backward and optimizer update for one batch; returns (loss, probabilities)."""
        n = x.shape[0]
        bufs = self._activations_for(n)
        acts = [x]
        a = x
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            z = np.matmul(a, layer.kernel._value, out=bufs[i])
            if layer.bias is not None:
                z += layer.bias._value
            if i < last:
                a = self.hidden[i][0](z)
                acts.append(a)
        loss, dz, probs = self._loss_and_grad(z, y, sample_weight, n)
        for i in range(last, -1, -1):
            layer = self.layers[i]
            np.matmul(acts[i].T, dz, out=self.kernel_grads[i])
            if self.bias_grads[i] is not None:
                np.sum(dz, axis=0, out=self.bias_grads[i])
            if i > 0:
                da = dz @ layer.kernel._value.T
                dz = self.hidden[i - 1][1](acts[i], da)
        model = self.model
        if model._step_hooks:  # the trainer's step hooks see the local gradients, as in the generic step
            model._hooks_gradients(self.grad_views, self.variables)
        if model._distribution is not None:
            model._distribution.reduce_buffer_gradients(self.buffer, n)
        model.optimizer.apply(self.grad_views, self.variables)
        return loss, probs

    def empty_step(self) -> None:
        """This rank's share of a short last batch is empty: it still joins the gradient average."""
        self.buffer.grads.fill(0)
        self.model._distribution.reduce_buffer_gradients(self.buffer, 0)
        self.model.optimizer.apply(self.grad_views, self.variables)

    def _loss_and_grad(self, z, y, sample_weight, n):
        """Loss (Keras's sum_over_batch_size) and its gradient w.r.t. the logits ``z``."""
        if self.kind == "binary":
            yv = y.reshape(z.shape).astype(np.float32, copy=False)
            if self.label_smoothing:
                yv = yv * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
            with np.errstate(under="ignore"):
                per = np.maximum(z, 0) - z * yv + np.log1p(np.exp(-np.abs(z)))
            probs = activations.sigmoid(z)
            per_sample = per.mean(axis=-1)
            dz = (probs - yv) / z.shape[-1]
        else:
            m = z.max(axis=1, keepdims=True)
            e = np.exp(z - m)
            s = e.sum(axis=1, keepdims=True)
            probs = e / s
            lse = np.log(s) + m
            if self.kind == "sparse":
                idx = y.reshape(-1).astype(np.intp, copy=False)
                rows = self._rows if self._rows.shape[0] == n else np.arange(n)
                per_sample = (lse[:, 0] - z[rows, idx])
                dz = probs.copy()
                dz[rows, idx] -= 1
            else:
                yv = y.astype(np.float32, copy=False)
                if self.label_smoothing:
                    yv = yv * (1 - self.label_smoothing) + self.label_smoothing / z.shape[-1]
                ysum = yv.sum(axis=1, keepdims=True)
                per_sample = (lse * ysum - (yv * z).sum(axis=1, keepdims=True))[:, 0]
                dz = probs * ysum - yv
        if sample_weight is not None:
            w = np.asarray(sample_weight, dtype=np.float32).reshape(n)
            loss = float(np.dot(per_sample.astype(np.float32), w)) / n
            dz *= (w / n)[:, None]
        else:
            loss = float(per_sample.sum(dtype=np.float32)) / n
            dz *= np.float32(1.0 / n)
        return loss, dz.astype(np.float32, copy=False), probs


_KINDS = {
    losses_lib.sparse_categorical_crossentropy: "sparse",
    losses_lib.categorical_crossentropy: "categorical",
    losses_lib.binary_crossentropy: "binary",
}


def plan(model, buffer) -> DenseChainStep | None:
    """A :class:`DenseChainStep` when ``model`` and its compiled loss fit the fast path, else None.

    ``buffer`` is the model's FlatBuffer; the step needs it to hold every trainable weight, in order.
    """
    if len(model._output_losses) != 1:
        return None
    output_loss = model._output_losses[0]
    logits_loss = output_loss.logits_loss
    if logits_loss is None or not isinstance(logits_loss, losses_lib.LossFunctionWrapper):
        return None
    if output_loss.weight != 1.0:
        return None
    kind = _KINDS.get(logits_loss.fn)
    kwargs = logits_loss._fn_kwargs
    if kind is None or logits_loss.reduction != "sum_over_batch_size" or kwargs.get("axis", -1) != -1:
        return None
    if kwargs.get("ignore_class") is not None:
        return None
    layers = _dense_chain(model)
    if not layers or not all(isinstance(layer, Dense) for layer in layers):
        return None
    for i, layer in enumerate(layers):
        if layer.kernel_regularizer or layer.bias_regularizer or layer.activity_regularizer:
            return None
        if not layer.trainable or layer.kernel.dtype != np.float32 or layer._inbound_nodes is None:
            return None
        if i < len(layers) - 1 and layer.activation not in activations.FUSED:
            return None
    if model.losses:
        return None
    ids = [id(v) for layer in layers for v in (layer.kernel, layer.bias) if v is not None]
    if sorted(ids) != sorted(id(v) for v in model.trainable_weights) or not buffer.covers(model.trainable_weights):
        return None
    return DenseChainStep(model, layers, kind, kwargs.get("label_smoothing", 0.0) or 0.0, buffer)


def _dense_chain(model) -> list | None:
    """The layers of a single-path stack (Sequential, or a Functional chain), in order."""
    stack = getattr(model, "_stack", None)
    if stack is not None:
        return list(stack)
    nodes = getattr(model, "_nodes", None)
    if nodes is None or len(model.inputs) != 1 or len(model.outputs) != 1:
        return None
    chain, previous = [], model.inputs[0]
    for node in nodes:
        if len(node.input_tensors) != 1 or node.input_tensors[0] is not previous or node.call_kwargs:
            return None
        if len(node.output_tensors) != 1:
            return None
        chain.append(node.layer)
        previous = node.output_tensors[0]
    return chain if previous is model.outputs[0] else None
