"""The compiled training step: a model's graph traced once into a flat plan, replayed every step.

Keras makes its fast path a transform of the one step (``jit`` on JAX, ``torch.compile`` on torch);
lamina's counterpart is this plan. :func:`trace` walks the model's layer graph (a Sequential stack or
a Functional graph) once and turns every layer call into a node that works on plain arrays:

- *kernel nodes* for the layers whose forward and backward are written as array functions — Dense
  (matmul + bias + a fused activation, :func:`~lamina.layers.dense.dense_forward`), Dropout (its
  multiplier drawn by the layer's own ``_draw_scale``) and BatchNormalization in training (its
  ``batch_norm_train_kernel`` and moving-statistics update). These are the same functions the tape
  step runs, so both steps compute the same numbers; Dense writes its weight gradients straight into
  the optimizer's :class:`~lamina.optimizers.flat_buffer.FlatBuffer`.
- for convnets (channels_last): ``Conv1D/2D/3D`` with a fused activation (``conv_forward`` /
  ``conv_backward`` of :mod:`lamina.conv_kernels` + bias + activation, weight gradients into the buffer
  as Dense's), max and average pooling (``pool_forward`` / ``pool_backward``), ``Flatten`` and
  ``Reshape`` (a view) and ``Activation`` with a fused function. A relu whose output only a max pooling
  reads moves past it (``relu(max(z)) = max(relu(z))``, exact, ties included; :func:`_fuse_relu_pool`),
  so the relu and its gradient mask run on the pooled, smaller array. A 3x3 convolution on few channels
  and a 2x2 max pooling run as one compiled pass (:func:`lamina.conv_accel.conv_max_pool`) in the pooling node.
- a *tape node* for every other layer: the layer is called on leaf Tensors under a tape of its own
  and its backward is the tape's, limited to that layer. Any layer a user writes is covered, with the
  eager step's numbers by construction.

Replaying the plan costs one Python call per node each way: no ``Layer.__call__`` checks (the
inputs were checked once for the whole batch), no graph walk, no topological sort over the model.
The loss: sparse, categorical and binary crossentropy from the logits run fused
(:class:`CrossentropyFromLogits`, gradient ``(p - y) w / n``); every other loss, loss weight,
multi-output model and regularization or ``add_loss`` penalty goes through the compiled
``_compute_loss`` on leaves standing for the predictions, under a small tape, so it behaves exactly
as in the tape step.

In a user's own ``train_step``, ``self(x, training=True)`` under the user's tape runs the plan's
forward as one recorded node whose vjp is the plan's backward (:meth:`CompiledStep.call_recorded`).

Kernels allocate their outputs per call, so a plan serves every batch shape: a new input signature
needs no retrace. What the plan cannot express raises :class:`NotCompilable` with the reason; the
trainer then runs the tape step (and warns when ``jit_compile=True`` was asked for explicitly).
"""

from __future__ import annotations

import copy
import math
import weakref

import numpy as np

from lamina import activations, conv_accel, row_split
from lamina import losses as losses_lib
from lamina.autodiff import GradientTape, Tensor, backward, record, unwrap
from lamina.conv_kernels import conv_backward, conv_forward, pad_input
from lamina.layers.activation import Activation
from lamina.layers.average_pooling import AveragePooling1D, AveragePooling2D, AveragePooling3D
from lamina.layers.batch_normalization import BatchNormalization, batch_norm_train_kernel
from lamina.layers.conv import Conv1D, Conv2D, Conv3D
from lamina.layers.dense import Dense, dense_backward, dense_forward
from lamina.layers.dropout import Dropout
from lamina.layers.flatten import Flatten
from lamina.layers.input_layer import InputLayer
from lamina.layers.keras_tensor import KerasTensor, flatten, pack_like
from lamina.layers.masking import Masking
from lamina.layers.max_pooling import MaxPooling1D, MaxPooling2D, MaxPooling3D
from lamina.layers.pooling import pool_backward, pool_backward_bias, pool_forward
from lamina.layers.reshape import Reshape


class NotCompilable(Exception):
    """The model (or this batch) cannot run as a compiled plan; the message says why."""


# ----------------------------------------------------------------------------- nodes


_F32 = np.dtype(np.float32)


def _autocast(x: np.ndarray) -> np.ndarray:
    """Floats cast to float32 as a float32 layer's ``__call__`` casts them (Keras's autocast)."""
    return x if x.dtype == _F32 or x.dtype.kind != "f" else x.astype(_F32)


def _accumulate(grads: list, slot: int, g) -> None:
    """Add ``g`` into ``grads[slot]`` (the first contribution is stored as is: a slot read by two
    nodes, a fan-out, sums its gradients like the tape)."""
    old = grads[slot]
    grads[slot] = g if old is None else old + g


class _Node:
    """One layer call: reads ``vals[ins]``, writes ``vals[outs]``; backward reads ``grads[outs]``."""

    __slots__ = ("layer", "ins", "outs", "need_in")

    def __init__(self, layer, ins: list[int], outs: list[int]):
        self.layer = layer
        self.ins = ins
        self.outs = outs
        self.need_in: list[bool] = [False] * len(ins)

    def weight_indices(self) -> list[int]:
        """The flat-buffer positions of the weights this node writes gradients for."""
        return []


class _DenseNode(_Node):
    """``act(x @ kernel + bias)`` with a fused activation (linear when the loss takes logits)."""

    __slots__ = ("fused", "kernel", "bias", "k_index", "b_index", "x", "y")

    def __init__(self, layer, ins, outs, fused, step):
        super().__init__(layer, ins, outs)
        self.fused = fused
        self.kernel = layer._kernel
        self.bias = layer.bias
        self.k_index = step.variable_index(layer._kernel)
        self.b_index = None if layer.bias is None else step.variable_index(layer.bias)

    def weight_indices(self) -> list[int]:
        return [i for i in (self.k_index, self.b_index) if i is not None]

    def forward(self, vals: list) -> None:
        x = self.x = _autocast(vals[self.ins[0]])
        bias = self.bias
        self.y = vals[self.outs[0]] = dense_forward(x, self.kernel._value, None if bias is None else bias._value,
                                                    self.fused)

    def backward(self, grads: list, step) -> None:
        k_out, b_out = step.direct(self.k_index), step.direct(self.b_index)
        dx, dk, db = dense_backward(grads[self.outs[0]], self.x, self.y, self.kernel._value, self.bias is not None,
                                    self.fused[1], self.need_in[0], k_out, b_out)
        if k_out is None:
            step.add_gradient(self.k_index, dk)
        if db is not None and b_out is None:
            step.add_gradient(self.b_index, db)
        if dx is not None:
            _accumulate(grads, self.ins[0], dx)


class _DropoutNode(_Node):
    """``x * scale`` with the layer's freshly drawn multiplier (identity at rate 0)."""

    __slots__ = ("scale",)

    def forward(self, vals: list) -> None:
        x = _autocast(vals[self.ins[0]])
        if self.layer.rate == 0:
            self.scale = None
            vals[self.outs[0]] = x
            return
        self.scale = self.layer._draw_scale(x)
        vals[self.outs[0]] = np.multiply(x, self.scale)

    def backward(self, grads: list, step) -> None:
        if self.need_in[0]:
            g = grads[self.outs[0]]
            _accumulate(grads, self.ins[0], g if self.scale is None else g * self.scale)


class _BatchNormNode(_Node):
    """Batch statistics, normalisation and the moving-average update, as the layer's training call."""

    __slots__ = ("vjp", "g_index", "b_index")

    def __init__(self, layer, ins, outs, step):
        super().__init__(layer, ins, outs)
        self.g_index = None if layer.gamma is None else step.variable_index(layer.gamma)
        self.b_index = None if layer.beta is None else step.variable_index(layer.beta)

    def weight_indices(self) -> list[int]:
        return [i for i in (self.g_index, self.b_index) if i is not None]

    def forward(self, vals: list) -> None:
        layer = self.layer
        x = _autocast(vals[self.ins[0]])
        y, mean, var, self.vjp = batch_norm_train_kernel(
            x, None if layer.gamma is None else layer.gamma._value, None if layer.beta is None else layer.beta._value,
            layer.axis % x.ndim, layer.epsilon, None, self.need_in[0])
        layer._update_moving(mean, var)
        vals[self.outs[0]] = y

    def backward(self, grads: list, step) -> None:
        parts = list(self.vjp(grads[self.outs[0]]))
        dx = parts.pop(0)
        for index in (self.g_index, self.b_index):
            if index is not None:
                step.add_gradient(index, parts.pop(0))
        if dx is not None:
            _accumulate(grads, self.ins[0], dx)


class _ConvNode(_Node):
    """``act(conv(x, kernel) + bias)`` of a channels-last ``Conv1D/2D/3D`` with a fused activation, on
    :mod:`lamina.conv_kernels`; the weight gradients go straight into the flat buffer, as Dense's. ``in_pool``:
    the max pooling after it runs the whole convolution (:func:`_fuse_relu_pool`); this node passes its input
    on, and the input's gradient back."""

    __slots__ = ("fused", "kernel", "bias", "k_index", "b_index", "x", "y", "geometry", "bias_in_pool", "in_pool")

    def __init__(self, layer, ins, outs, fused, step):
        super().__init__(layer, ins, outs)
        self.fused = fused
        self.kernel = layer._kernel
        self.bias = layer.bias
        self.k_index = step.variable_index(layer._kernel)
        self.b_index = None if layer.bias is None else step.variable_index(layer.bias)
        self.bias_in_pool = False  # the max pooling after it adds the bias and takes its gradient
        self.in_pool = False

    def weight_indices(self) -> list[int]:
        return [i for i in (self.k_index, self.b_index) if i is not None]

    def forward(self, vals: list) -> None:
        if self.in_pool:
            vals[self.outs[0]] = vals[self.ins[0]]
            return
        layer = self.layer
        x = self.x = _autocast(vals[self.ins[0]])
        # pads depend on the spatial size, which may change from batch to batch
        self.geometry = (layer.strides, layer._pads(x.shape[1:-1]), layer.dilation_rate, layer.groups)
        y = conv_forward(x, self.kernel._value, *self.geometry)
        if self.bias is not None and not self.bias_in_pool:
            y += self.bias._value
        self.y = vals[self.outs[0]] = self.fused[0](y)

    def backward(self, grads: list, step) -> None:
        g = grads[self.outs[0]]
        if self.in_pool:  # the pooling wrote the weights' gradients, and the input's as this node's output's
            if self.need_in[0]:
                _accumulate(grads, self.ins[0], g)
            return
        dz = self.fused[1](self.y, g)
        k_out = step.direct(self.k_index)
        dx, dk = conv_backward(dz, self.x, self.kernel._value, *self.geometry, need_dx=self.need_in[0],
                               dk_out=k_out)
        if k_out is None:
            step.add_gradient(self.k_index, dk)
        if self.b_index is not None and not self.bias_in_pool:
            b_out = step.direct(self.b_index)
            db = np.add.reduce(dz.reshape(-1, dz.shape[-1]), axis=0, out=b_out)
            if b_out is None:
                step.add_gradient(self.b_index, db)
        if dx is not None:
            _accumulate(grads, self.ins[0], dx)


class _PoolNode(_Node):
    """Channels-last max or average pooling (:func:`lamina.layers.pooling.pool_forward`).

    ``relu``: the relu of the convolution before it, moved here (see :func:`_fuse_relu_pool`):
    ``max(relu(z)) = relu(max(z))`` cell for cell, on a quarter of the cells for a 2x2 pool, and the
    relu's gradient mask ``y > 0`` is taken on the pooled output. ``conv``: that convolution's node when
    its bias moved here too (``max(z + b)`` is computed as the convolution would, the bias added cell by
    cell before the comparison); this node then writes the bias gradient.

    ``whole``: that convolution's node when the whole convolution runs here, a 3x3 one on few channels before
    a 2x2 pooling (:func:`lamina.conv_accel.conv_max_pool`, window by window: its full-size map is never
    made). This node then writes the kernel's and the bias's gradients, and the input's when the
    convolution's input needs one (through the unfused backward, from the winners kept)."""

    __slots__ = ("context", "relu", "conv", "whole", "x", "xp", "y", "arg", "geometry")

    def __init__(self, layer, ins, outs):
        super().__init__(layer, ins, outs)
        self.relu = False
        self.conv = None
        self.whole = None

    def weight_indices(self) -> list[int]:
        if self.whole is not None:
            return self.whole.weight_indices()
        return [] if self.conv is None else [self.conv.b_index]

    def forward(self, vals: list) -> None:
        if self.whole is not None:
            vals[self.outs[0]] = self._forward_whole(_autocast(vals[self.ins[0]]))
            return
        layer = self.layer
        bias = None if self.conv is None else self.conv.bias._value
        vals[self.outs[0]], self.context = pool_forward(_autocast(vals[self.ins[0]]), layer.pool_size, layer.strides,
                                                        layer.padding.lower(), layer._mode, bias, self.relu)

    def backward(self, grads: list, step) -> None:
        g = grads[self.outs[0]]
        if self.whole is not None:
            self._backward_whole(g, grads, step)
            return
        if self.conv is None:
            if self.need_in[0]:
                _accumulate(grads, self.ins[0], pool_backward(g, self.context))
            return
        dx, db = pool_backward_bias(g, self.context)
        _put_bias_gradient(step, self.conv.b_index, db)
        _accumulate(grads, self.ins[0], dx)

    def _forward_whole(self, x: np.ndarray) -> np.ndarray:
        """``relu?(max_pool(conv(x) + bias))``: fused, or (kernels off, a NaN) the convolution's map, then the
        pooling with the bias and relu, as without ``whole``."""
        conv, layer = self.whole.layer, self.layer
        kernel = self.whole.kernel._value
        bias = None if self.whole.bias is None else self.whole.bias._value
        self.x = x
        # pads depend on the spatial size, which may change from batch to batch
        self.geometry = (conv.strides, conv._pads(x.shape[1:-1]), conv.dilation_rate, conv.groups)
        self.xp = pad_input(x, self.geometry[1])
        fast = conv_accel.conv_max_pool(self.xp, kernel, bias, self.relu)
        if fast is not None:
            self.context = None
            self.y, self.arg = fast
            return self.y
        z = conv_forward(x, kernel, *self.geometry)
        y, self.context = pool_forward(z, layer.pool_size, layer.strides, "valid", "max", bias, self.relu)
        return y

    def _backward_whole(self, g: np.ndarray, grads: list, step) -> None:
        """The kernel's and the bias's gradients (fused when the input needs none), and the input's."""
        conv = self.whole
        k_out = step.direct(conv.k_index)
        need_dx = conv.need_in[0]
        if self.context is None and not need_dx:
            dk, db = conv_accel.conv_max_pool_backward(g, self.arg, self.xp, dk_out=k_out)
        else:
            if self.context is None:  # the convolution's output gradient, from the winners kept
                z_shape = (len(self.xp), self.xp.shape[1] - 2, self.xp.shape[2] - 2, self.y.shape[-1])
                dz, db = conv_accel.max_pool_backward(g, self.arg, self.y, z_shape, (2, 2), (2, 2), self.relu)
            else:
                dz, db = pool_backward_bias(g, self.context)
            dx, dk = conv_backward(dz, self.x, conv.kernel._value, *self.geometry, need_dx=need_dx, dk_out=k_out)
            if dx is not None:
                _accumulate(grads, self.ins[0], dx)
        if k_out is None:
            step.add_gradient(conv.k_index, dk.astype(conv.kernel._value.dtype, copy=False))
        if conv.b_index is not None:
            _put_bias_gradient(step, conv.b_index, db)


def _put_bias_gradient(step, index: int, db: np.ndarray) -> None:
    """``db`` (float64 from the compiled pooling) into the buffer's view, or added as ``index``'s gradient."""
    b_out = step.direct(index)
    if b_out is None:
        step.add_gradient(index, db)
    else:
        np.copyto(b_out, db, casting="same_kind")


class _ReshapeNode(_Node):
    """A channels-last ``Flatten`` or a ``Reshape``: a view of its input; the gradient is reshaped back."""

    __slots__ = ("shape",)

    def forward(self, vals: list) -> None:
        x = vals[self.ins[0]]
        self.shape = x.shape
        rest = (math.prod(x.shape[1:]),) if isinstance(self.layer, Flatten) else self.layer._resolve(x.shape[1:])
        vals[self.outs[0]] = x.reshape((x.shape[0], *rest))

    def backward(self, grads: list, step) -> None:
        if self.need_in[0]:
            _accumulate(grads, self.ins[0], grads[self.outs[0]].reshape(self.shape))


class _ActivationNode(_Node):
    """An ``Activation`` layer whose function is one of the fused pairs: ``y = f(x)``, ``dx = f'(y) g``.
    ``fused`` None: a relu moved into the max pooling after it (:func:`_fuse_relu_pool`); the identity."""

    __slots__ = ("fused", "y")

    def __init__(self, layer, ins, outs, fused):
        super().__init__(layer, ins, outs)
        self.fused = fused

    def forward(self, vals: list) -> None:
        x = _autocast(vals[self.ins[0]])
        if self.fused is None:
            vals[self.outs[0]] = x
            return
        # the fused forward works in place: on a copy, the input slot is read again by its own backward
        self.y = vals[self.outs[0]] = self.fused[0](np.array(x))

    def backward(self, grads: list, step) -> None:
        if self.need_in[0]:
            g = grads[self.outs[0]]
            _accumulate(grads, self.ins[0], g if self.fused is None else self.fused[1](self.y, g))


class _TapeNode(_Node):
    """Any other layer: called on leaf Tensors under its own tape; backward is that tape's."""

    __slots__ = ("template", "kwargs", "logits", "weights", "leaves", "results")

    def __init__(self, layer, ins, outs, template, kwargs: dict, logits: bool, step):
        super().__init__(layer, ins, outs)
        self.template = template  # the call's input structure; slot numbers stand for the arrays
        self.kwargs = kwargs
        self.logits = logits
        self.weights = [(v, step.variable_index(v)) for v in layer.trainable_weights]

    def weight_indices(self) -> list[int]:
        return [i for _, i in self.weights]

    def forward(self, vals: list) -> None:
        leaves = self.leaves = [Tensor(vals[i]) for i in self.ins]
        args = self.template(leaves)
        with GradientTape():
            out = self.layer.call_logits(args) if self.logits else self.layer(args, **self.kwargs)
        results = self.results = flatten(out) if len(self.outs) > 1 else [out]
        for slot, value in zip(self.outs, results, strict=True):
            vals[slot] = unwrap(value)

    def backward(self, grads: list, step) -> None:
        targets, seeds = [], []
        for slot, value in zip(self.outs, self.results, strict=True):
            if grads[slot] is not None and isinstance(value, Tensor):
                targets.append(value)
                seeds.append(grads[slot])
        found = backward(targets, seeds)
        for slot, leaf, need in zip(self.ins, self.leaves, self.need_in, strict=True):
            g = found.get(id(leaf))
            if need and g is not None:
                _accumulate(grads, slot, g)
        for v, index in self.weights:
            g = found.get(id(v))
            if g is not None:
                step.add_gradient(index, g)

    def absorb(self, found: dict, grads: list) -> None:
        """Take the gradients the loss's own backward left on this node's leaves (its layers' add_loss
        or activity penalties were computed from them)."""
        for slot, leaf, need in zip(self.ins, self.leaves, self.need_in, strict=True):
            g = found.get(id(leaf))
            if need and g is not None:
                _accumulate(grads, slot, g)


# ----------------------------------------------------------------------------- the plan


class _Segment(_Node):
    """A chain of row-wise nodes holding a convolution (:func:`_group_segments`) that, on a batch large enough,
    runs block by block of rows on several threads (:mod:`lamina.row_split`): each block forward through the
    whole chain, and back, on its own copies of the nodes (each keeps its block's state); the blocks' weight
    gradients are summed in block order, so the result does not depend on which thread took which block. The
    chain's inner maps never exist for the whole batch, and a block's stay in cache. On a small batch, or
    without numba, the chain's own nodes run on the whole batch as if ungrouped."""

    __slots__ = ("nodes", "copies", "n_slots", "indices", "parts", "workers")

    def __init__(self, nodes: list, n_slots: int):
        super().__init__(None, list(nodes[0].ins), list(nodes[-1].outs))
        self.nodes = nodes
        self.copies: list = []  # per block: copies of the nodes, made on first need
        self.n_slots = n_slots
        self.indices = sorted({i for node in nodes for i in node.weight_indices()})
        self.need_in = nodes[0].need_in
        self.parts = None  # this step's blocks ((start, stop) rows), or None: the whole batch

    def weight_indices(self) -> list[int]:
        return self.indices

    def forward(self, vals: list) -> None:
        x = vals[self.ins[0]]
        self.workers = _segment_workers(len(x))
        if self.workers <= 1:
            self.parts = None
            for node in self.nodes:
                node.forward(vals)
            return
        self.parts = row_split.spans(len(x), max(self.workers, -(-len(x) // row_split.BLOCK_ROWS)))
        while len(self.copies) < len(self.parts):
            self.copies.append([copy.copy(node) for node in self.nodes])

        def block(nodes, a, b):
            local = [None] * self.n_slots
            local[self.ins[0]] = x[a:b]
            for node in nodes:
                node.forward(local)
            return local[self.outs[0]]

        outs = row_split.run([lambda n=n, a=a, b=b: block(n, a, b) for n, (a, b) in zip(self.copies, self.parts)],
                             self.workers)
        vals[self.outs[0]] = np.concatenate(outs)

    def backward(self, grads: list, step) -> None:
        if self.parts is None:
            for node in reversed(self.nodes):
                if grads[node.outs[0]] is not None:
                    node.backward(grads, step)
            return
        g = grads[self.outs[0]]

        def block(nodes, a, b):
            local, sink = [None] * self.n_slots, _BlockGradients()
            local[self.outs[0]] = g[a:b]
            for node in reversed(nodes):
                if local[node.outs[0]] is not None:
                    node.backward(local, sink)
            return sink.grads, local[self.ins[0]]

        results = row_split.run([lambda n=n, a=a, b=b: block(n, a, b) for n, (a, b) in zip(self.copies, self.parts)],
                                self.workers)
        for index in self.indices:
            parts = [found[index] for found, _ in results if index in found]
            if parts:
                total = parts[0]
                for part in parts[1:]:
                    total = total + part
                step.add_gradient(index, total)
        if self.need_in[0] and all(dx is not None for _, dx in results):
            _accumulate(grads, self.ins[0], np.concatenate([dx for _, dx in results]))


def _segment_workers(rows: int) -> int:
    """Threads for a segment's blocks (1: the whole batch on this thread); tests replace it."""
    return conv_accel.split_workers(rows)


class _BlockGradients:
    """The ``step`` a block's nodes write their weight gradients to: kept per block, summed by the segment."""

    __slots__ = ("grads",)

    def __init__(self):
        self.grads: dict = {}

    def direct(self, index):
        return None  # no block owns the buffer's view

    def add_gradient(self, index: int, g) -> None:
        have = self.grads.get(index)
        self.grads[index] = g if have is None else have + g


class CompiledStep:
    """A traced training step for one model; :meth:`step` runs forward, loss, backward and update."""

    def __init__(self, model, buffer, logits: bool):
        self.model = model
        self.buffer = buffer
        self.variables = list(buffer.variables)
        self.grad_views = buffer.grad_views
        self._index = {id(v): i for i, v in enumerate(self.variables)}
        self._writers = [0] * len(self.variables)  # how many places write each variable's gradient
        self._written = [False] * len(self.variables)
        self._fresh: list | None = None  # gradients of a recorded call go to new arrays, not the buffer
        self._pending = None  # a weak reference to the output of a recorded call not yet differentiated
        self.logits = logits  # the output layer gives its pre-activation (the fused loss takes logits)
        self.nodes: list = []
        self.n_slots = 0
        self.input_slots: list[int] = []
        self.output_slots: list[int] = []
        self.regularized: list = []  # (variable, index) pairs whose penalty the loss includes
        self.fused_loss = None  # a CrossentropyFromLogits when the one loss is one of the three
        self.splits = False  # does any node split the batch over threads (a _Segment)?

    # -- building

    def variable_index(self, v) -> int:
        """``v``'s position in the flat buffer (one more gradient writer counted)."""
        index = self._index.get(id(v))
        if index is None:
            raise NotCompilable(f"the trainable weight '{v.path}' is not in the model's float32 weight buffer")
        self._writers[index] += 1
        return index

    def new_slot(self) -> int:
        self.n_slots += 1
        return self.n_slots - 1

    def finish(self) -> None:
        """Mark which slots carry gradients and count the regularizers' gradient writers."""
        for v in self.variables:
            if v.regularizer is not None:
                self.regularized.append((v, self.variable_index(v)))
        carries = [False] * self.n_slots
        for node in self.nodes:
            node.need_in = [carries[i] for i in node.ins]
            has_weights = any(self._writers[i] for i in node.weight_indices())
            if has_weights or any(node.need_in):
                for o in node.outs:
                    carries[o] = True
        # A gradient written by exactly one place goes straight into the buffer (Dense's `out=`).
        self._sole = [n == 1 for n in self._writers]
        self._unwritten = [False] * len(self.variables)
        self._reversed = self.nodes[::-1]
        self._all_weights = list(zip(self.variables, range(len(self.variables)), strict=True))
        self._tape_nodes = [node for node in self.nodes if isinstance(node, _TapeNode)]
        self._penalty_layers = [sub for node in self._tape_nodes for sub in _all_layers(node.layer)]
        if not self.regularized and len(self.output_slots) == 1:
            self.fused_loss = CrossentropyFromLogits.make(self.model) if self.logits else None

    def flat_nodes(self) -> list:
        """The plan's nodes in order, each segment's own nodes in its place."""
        return [inner for node in self.nodes for inner in (node.nodes if isinstance(node, _Segment) else [node])]

    # -- replay helpers used by the nodes

    def direct(self, index):
        """The buffer view to write ``index``'s gradient into in place, or None (accumulated)."""
        if index is None or self._fresh is not None or not self._sole[index] or self._written[index]:
            return None
        self._written[index] = True
        return self.grad_views[index]

    def add_gradient(self, index: int, g) -> None:
        fresh = self._fresh
        if fresh is not None:
            fresh[index] = g if fresh[index] is None else fresh[index] + g
            return
        view = self.grad_views[index]
        if self._written[index]:
            view += g
        else:
            np.copyto(view, g, casting="same_kind")
            self._written[index] = True

    # -- one step

    def inputs_for(self, x) -> list | None:
        """The batch's input arrays in slot order, or None when this batch must take the tape step
        (inputs that are not float32 arrays go through the layers' own conversions there)."""
        model = self.model
        if hasattr(model, "_flatten_inputs"):
            flat = model._adjust_ranks(model._flatten_inputs(x))
        else:  # a Sequential
            flat = [model._standardize_rank(x) if hasattr(model, "_standardize_rank") else x]
        for a in flat:
            if type(a) is not np.ndarray or a.dtype != np.float32 or not a.ndim or not a.shape[0]:
                return None
        return flat

    def step(self, flat: list, y, sw) -> tuple:
        """Forward, loss, backward and optimizer update; returns ``(loss, per_output, y_pred, logits)``
        where ``logits`` says whether ``y_pred`` still lacks its output activation. When segments split over
        threads, or the batch is small (:data:`lamina.row_split.SMALL_CALL`), BLAS stays at one thread for the
        whole step."""
        if self.splits and (_segment_workers(len(flat[0])) > 1 or flat[0].size <= row_split.SMALL_CALL):
            with row_split.blas_held():
                return self._step(flat, y, sw)
        return self._step(flat, y, sw)

    def _step(self, flat: list, y, sw) -> tuple:
        vals = self._forward(flat)
        preds = [vals[s] for s in self.output_slots]
        self._written[:] = self._unwritten
        penalties = any(layer._losses for layer in self._penalty_layers)
        if self.fused_loss is not None and not penalties and self.fused_loss.fits(preds[0], y, sw):
            loss_value, dz, probs = self.fused_loss(preds[0], y, sw)
            grads = [None] * self.n_slots
            grads[self.output_slots[0]] = dz
            result = (loss_value, [loss_value], probs, False)
        else:
            grads, result = self._tape_loss(preds, y, sw, penalties)
        self._backward(grads)
        if penalties:
            for layer in self._penalty_layers:
                layer._losses.clear()
        self._apply(flat)
        return result

    def _tape_loss(self, preds: list, y, sw, penalties: bool) -> tuple:
        """The compiled loss (any loss, weights, regularization) on leaves standing for ``preds``, under
        a small tape: the gradients it leaves on the outputs' slots, and the step's result."""
        leaves = [Tensor(p) for p in preds]
        with GradientTape():
            total, per_output = self.model._compute_loss(y, self._pack_outputs(leaves), sw, self.logits)
        if not isinstance(total, Tensor):
            raise NotCompilable("the loss does not depend on the model's outputs")
        found = backward([total])
        # add_loss / activity penalties were built on some tape nodes' leaves and weights: the loss's
        # backward already reached those; weight regularizers' penalties reach their weights.
        for v, index in self._all_weights if penalties else self.regularized:
            g = found.get(id(v))
            if g is not None:
                self.add_gradient(index, g)
        grads = [None] * self.n_slots
        for slot, leaf in zip(self.output_slots, leaves, strict=True):
            g = found.get(id(leaf))
            if g is not None:
                _accumulate(grads, slot, g)
        if penalties:
            for node in self._tape_nodes:
                node.absorb(found, grads)
        return grads, (float(total.data), per_output, self._pack_outputs(preds), self.logits)

    def call_recorded(self, x):
        """``model(x, training=True)`` under a user's tape (a custom ``train_step`` or training loop)
        as ONE recorded node over the plan: its vjp runs the plan's backward into new arrays, one per
        weight. None when this call must take the layers' own path: inputs the plan does not take, or
        an earlier recorded call whose output is still alive and not yet differentiated (the nodes
        hold one call's intermediates)."""
        pending = self._pending
        if pending is not None and pending() is not None:
            return None
        flat = self.inputs_for(x)
        if flat is None:
            return None
        vals = self._forward(flat)
        out_slot = self.output_slots[0]
        n_inputs = len(flat)

        def vjp(g):
            self._pending = None
            grads = [None] * self.n_slots
            grads[out_slot] = g
            self._fresh = fresh = [None] * len(self.variables)
            try:
                self._backward(grads)
            finally:
                self._fresh = None
            return (None,) * n_inputs + tuple(fresh)

        out = record(vals[out_slot], tuple(flat) + tuple(self.variables), vjp)
        self._pending = weakref.ref(out) if isinstance(out, Tensor) else None
        return out

    def _forward(self, flat: list) -> list:
        """Every node's forward, in order; returns the slots' values."""
        vals = [None] * self.n_slots
        for slot, a in zip(self.input_slots, flat, strict=True):
            vals[slot] = a
        for node in self.nodes:
            node.forward(vals)
        return vals

    def _backward(self, grads: list) -> None:
        """Every node's backward, in reverse, skipping a node none of whose outputs got a gradient."""
        for node in self._reversed:
            if grads[node.outs[0]] is not None or (len(node.outs) > 1 and any(grads[o] is not None for o in node.outs)):
                node.backward(grads, self)

    def _apply(self, flat: list) -> None:
        model = self.model
        if all(self._written):
            grads = self.grad_views
        else:  # a weight the loss does not reach: None, as the tape step gives (the optimizer warns)
            grads = [g if w else None for g, w in zip(self.grad_views, self._written, strict=True)]
        if model._step_hooks:
            model._hooks_gradients(grads, self.variables)
            grads = model._hooks_reduce(grads, self.variables, flat[0].shape[0])
        model.optimizer.apply(grads, self.variables)

    def _pack_outputs(self, values: list):
        struct = getattr(self.model, "_outputs_struct", None)
        if struct is None:
            return values[0]
        return pack_like(struct, values)


# ----------------------------------------------------------------------------- fused loss


class CrossentropyFromLogits:
    """Keras's sparse, categorical and binary crossentropy from logits, reduced over the batch
    (``sum_over_batch_size``, optional per-sample weights), with the gradient w.r.t. the logits
    written out: ``(p - y) * w / n``. The fused loss node of the compiled step."""

    def __init__(self, kind: str, label_smoothing: float):
        self.kind = kind  # "sparse", "categorical" or "binary"
        self.label_smoothing = float(label_smoothing)
        self._rows = np.arange(32)  # row indices for the usual batch size, reused every step

    @classmethod
    def make(cls, model):
        """The fused loss for ``model``'s compiled loss, or None when it is not one of the three."""
        output_loss = model._output_losses[0]
        fn = output_loss.logits_loss
        if fn is None or not isinstance(fn, losses_lib.LossFunctionWrapper) or output_loss.weight != 1.0:
            return None
        kind = _KINDS.get(fn.fn)
        kwargs = fn._fn_kwargs
        if kind is None or fn.reduction != "sum_over_batch_size" or kwargs.get("axis", -1) != -1 \
                or kwargs.get("ignore_class") is not None or fn.dtype != "float32":
            return None
        return cls(kind, kwargs.get("label_smoothing", 0.0) or 0.0)

    def fits(self, z, y, sample_weight) -> bool:
        """Whether this batch is one the fused form computes exactly as the loss would: 2-D logits,
        labels of the matching shape (integral and in range for the sparse kind), per-sample weights.
        Anything else goes through the loss itself, which computes it or raises its own error."""
        if type(y) is not np.ndarray or z.ndim != 2 or y.shape[0] != z.shape[0]:
            return False
        if sample_weight is not None and (np.ndim(sample_weight) != 1 or len(sample_weight) != z.shape[0]):
            return False
        if self.kind == "categorical":
            return y.shape == z.shape
        if self.kind == "binary":
            return y.size == z.size
        if y.size != z.shape[0] or y.dtype.kind not in "iuf":
            return False
        if y.dtype.kind == "f" and not np.array_equal(y, np.trunc(y)):
            return False
        return bool(y.min() >= 0 and y.max() < z.shape[1])

    def __call__(self, z, y, sample_weight) -> tuple:
        """``(loss, dloss/dz, probabilities)`` for logits ``z`` of shape ``(n, k)``."""
        n = z.shape[0]
        if self.kind == "binary":
            per_sample, dz, probs = self._binary(z, y)
        else:
            per_sample, dz, probs = self._softmax(z, y, n)
        if sample_weight is not None:
            w = np.asarray(sample_weight, dtype=np.float32).reshape(n)
            loss = float(np.dot(per_sample.astype(np.float32), w)) / n
            dz *= (w / n)[:, None]
        else:
            loss = float(per_sample.sum(dtype=np.float32)) / n
            dz *= np.float32(1.0 / n)
        return loss, dz.astype(np.float32, copy=False), probs

    def _binary(self, z, y):
        yv = y.reshape(z.shape).astype(np.float32, copy=False)
        if self.label_smoothing:
            yv = yv * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        with np.errstate(under="ignore"):
            per = np.maximum(z, 0) - z * yv + np.log1p(np.exp(-np.abs(z)))
        probs = activations.sigmoid(z)
        # the mean over one unit is that unit (x / 1 is exact): skip np.mean's overhead
        return (per[:, 0] if z.shape[-1] == 1 else per.mean(axis=-1)), (probs - yv) / z.shape[-1], probs

    def _softmax(self, z, y, n):
        m = z.max(axis=1, keepdims=True)
        e = np.exp(z - m)
        s = e.sum(axis=1, keepdims=True)
        probs = e / s
        lse = np.log(s) + m
        if self.kind == "sparse":
            idx = y.reshape(-1).astype(np.intp, copy=False)
            rows = self._rows if self._rows.shape[0] == n else np.arange(n)
            dz = probs.copy()
            dz[rows, idx] -= 1
            return lse[:, 0] - z[rows, idx], dz, probs
        yv = y.astype(np.float32, copy=False)
        if self.label_smoothing:
            yv = yv * (1 - self.label_smoothing) + self.label_smoothing / z.shape[-1]
        ysum = yv.sum(axis=1, keepdims=True)
        return (lse * ysum - (yv * z).sum(axis=1, keepdims=True))[:, 0], probs * ysum - yv, probs


_KINDS = {
    losses_lib.sparse_categorical_crossentropy: "sparse",
    losses_lib.categorical_crossentropy: "categorical",
    losses_lib.binary_crossentropy: "binary",
}


# ----------------------------------------------------------------------------- tracing


def _scales_loss(optimizer) -> bool:
    """Does the training step have to scale the loss for ``optimizer`` (``scale_loss`` is not identity)?"""
    return getattr(optimizer, "loss_scale_factor", None) is not None or hasattr(optimizer, "inner_optimizer")


def trace(model, buffer, for_call: bool = False) -> CompiledStep:
    """The plan of ``model``'s training step over ``buffer`` (its FlatBuffer, or None when it has no
    float32 trainable weights); raises NotCompilable with the reason when there is none.

    ``for_call=True`` plans the model's own forward (with its output activation) for
    :meth:`CompiledStep.call_recorded`: one output, and only lamina's own layers (a user's layer may
    add losses that must reach the layers below it through the user's tape)."""
    stack = getattr(model, "_stack", None)
    if stack is None and getattr(model, "_nodes", None) is None:
        raise NotCompilable(f"model '{model.name}' has no layer graph (a subclassed model's `call` is Python code)")
    if buffer is None:
        raise NotCompilable("it has no float32 trainable weights")
    for layer in _all_layers(model):
        if getattr(layer, "_lowp_call", False):
            # The kernels and the buffer compute in float32; a mixed or 16-bit layer trains on the tape.
            raise NotCompilable(f"layer '{layer.name}' computes in {layer.compute_dtype} (dtype policy "
                                f"'{layer.dtype_policy.name}'), the plan in float32")
        if isinstance(layer, Masking) or getattr(layer, "mask_zero", False):
            # The plan passes plain arrays between nodes; the mask a Masking or Embedding(mask_zero=True) layer
            # attaches to its output (read by the layers after it and the loss) would be lost.
            raise NotCompilable(f"layer '{layer.name}' ({type(layer).__name__}) attaches a mask to its output, "
                                "which the plan's arrays cannot carry")
    if not for_call and _scales_loss(model.optimizer):
        # The plan's backward starts from the unscaled loss, but such an optimizer divides the gradients.
        raise NotCompilable(f"optimizer '{model.optimizer.name}' scales the loss (loss scaling runs on the tape step)")
    step = CompiledStep(model, buffer, logits=bool(model._use_logits) and not for_call)
    if stack is not None:
        _trace_stack(step, list(stack))
    else:
        _trace_graph(step, model)
    _fuse_relu_pool(step)
    if for_call:
        _check_callable(step)
    elif len(step.output_slots) != len(model._output_losses):
        raise NotCompilable("the model's outputs and its compiled losses do not pair up")
    step.finish()
    _group_segments(step)
    unwritten = [v.path for v, n in zip(step.variables, step._writers, strict=True) if n == 0]
    covered = {id(v) for v in step.variables}
    missing = [v.path for v in model.trainable_weights if id(v) not in covered]
    if unwritten or missing:
        raise NotCompilable(f"the trainable weights {unwritten + missing} are not reached by the traced layers")
    return step


def _readers(step: CompiledStep) -> list[int]:
    """How many nodes (and model outputs) read each slot."""
    readers = [0] * step.n_slots
    for node in step.nodes:
        for slot in node.ins:
            readers[slot] += 1
    for slot in step.output_slots:
        readers[slot] += 1
    return readers


def _fuse_relu_pool(step: CompiledStep) -> None:
    """Move the relu of a convolution or an ``Activation("relu")`` past the max pooling that alone reads
    its output. Exact, ties included: where a window's maximum is positive, the cells holding it are the
    same before and after the relu; where it is not, the relu's gradient is zero either way. A linear (or
    relu) convolution's bias moves into the pooling as well (added cell by cell there, before the max); a
    3x3 one on few channels before a 2x2 pooling, the whole convolution (:func:`_runs_in_pool`)."""
    readers = _readers(step)
    relu, linear = activations.FUSED[activations.relu], activations.FUSED[activations.linear]
    for node, pool in zip(step.nodes, step.nodes[1:]):
        if not (isinstance(node, (_ConvNode, _ActivationNode)) and isinstance(pool, _PoolNode)
                and pool.layer._mode == "max" and pool.ins == node.outs and readers[node.outs[0]] == 1):
            continue
        if node.fused is relu:
            node.fused = linear if isinstance(node, _ConvNode) else None
            pool.relu = True
        if isinstance(node, _ConvNode) and node.fused is linear:
            if _runs_in_pool(node, pool):
                node.in_pool, pool.whole = True, node
            elif node.bias is not None:
                # the bias too: max(z + b) = max(z) + b; one pass over z fewer each way on the compiled pooling
                node.bias_in_pool, pool.conv = True, node


def _runs_in_pool(conv: _ConvNode, pool: _PoolNode) -> bool:
    """Does the max pooling run ``conv`` as well (:func:`lamina.conv_accel.conv_max_pool`): a ``Conv2D``
    with a 3x3 kernel on few channels, stride 1, then a "valid" 2x2 pooling of stride 2, numba on?"""
    layer = conv.layer
    return type(layer) is Conv2D and layer.padding in ("valid", "same") and conv_accel.conv_pool_fits(
        conv.kernel.shape, layer.strides, layer.dilation_rate, layer.groups, pool.layer.pool_size,
        pool.layer.strides, pool.layer.padding.lower())


def _check_callable(step: CompiledStep) -> None:
    if len(step.output_slots) != 1:
        raise NotCompilable("a recorded call of the compiled forward has one output")
    for node in step.nodes:
        if isinstance(node, _TapeNode):
            for layer in _all_layers(node.layer):
                if not type(layer).__module__.startswith("lamina.") or layer.activity_regularizer is not None:
                    raise NotCompilable(f"layer '{layer.name}' may add losses of its own")


_ROW_NODES = (_ConvNode, _PoolNode, _ReshapeNode, _ActivationNode)  # each output row from its input row alone


def _group_segments(step: CompiledStep) -> None:
    """Replace each chain of row-wise nodes (:data:`_ROW_NODES`) that holds a convolution by a :class:`_Segment`:
    consecutive nodes of one input and one output, each inner output read by the next node alone."""
    readers = _readers(step)
    grouped, chain = [], []

    def close():
        if any(isinstance(node, _ConvNode) for node in chain):
            grouped.append(_Segment(list(chain), step.n_slots))
        else:
            grouped.extend(chain)
        chain.clear()

    for node in step.nodes:
        if not (isinstance(node, _ROW_NODES) and len(node.ins) == 1 and len(node.outs) == 1):
            close()
            grouped.append(node)
            continue
        if chain and not (node.ins == chain[-1].outs and readers[node.ins[0]] == 1):
            close()
        chain.append(node)
    close()
    step.nodes = grouped
    step._reversed = grouped[::-1]
    step.splits = any(isinstance(node, _Segment) for node in grouped)


def _all_layers(layer) -> list:
    out, todo = [], [layer]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(current._layers)
    return out


def _trace_stack(step: CompiledStep, layers: list) -> None:
    slot = step.new_slot()
    step.input_slots.append(slot)
    last = len(layers) - 1
    for i, layer in enumerate(layers):
        if isinstance(layer, InputLayer):
            continue
        kwargs = {"training": True} if layer._call_has_training else {}
        out = step.new_slot()
        step.nodes.append(_node_for(step, layer, [slot], [out], _single, kwargs, step.logits and i == last))
        slot = out
    step.output_slots.append(slot)


def _single(values: list):
    return values[0]


def _trace_graph(step: CompiledStep, model) -> None:
    slots: dict[int, int] = {}
    for t in model.inputs:
        slots[id(t)] = step.new_slot()
        step.input_slots.append(slots[id(t)])
    out_ids = {id(t) for t in model.outputs}
    for node in model._nodes:
        layer = node.layer
        if isinstance(layer, InputLayer):
            continue
        if node.call_args:  # layer(x, y): the kernels and templates take one argument; the tape path runs it
            raise NotCompilable(f"layer '{layer.name}' is called with {1 + len(node.call_args)} positional arguments")
        items = flatten(node.call_inputs)
        ins = [slots[id(t)] for t in items if isinstance(t, KerasTensor)]
        template = _template(node.call_inputs, items)
        kwargs = dict(node.call_kwargs)
        if layer._call_has_training and "training" not in kwargs:
            kwargs["training"] = True
        outs = []
        for t in node.output_tensors:
            slots[id(t)] = step.new_slot()
            outs.append(slots[id(t)])
        logits = step.logits and any(id(t) in out_ids for t in node.output_tensors) and hasattr(layer, "call_logits")
        step.nodes.append(_node_for(step, layer, ins, outs, template, kwargs, logits))
    step.output_slots.extend(slots[id(t)] for t in model.outputs)


def _template(structure, items: list):
    """A function building the call's inputs from the node's arrays (constants stay in place)."""
    if len(items) == 1 and isinstance(items[0], KerasTensor) and structure is items[0]:
        return _single
    positions = [i for i, t in enumerate(items) if isinstance(t, KerasTensor)]

    def build(values: list):
        filled = list(items)
        for p, v in zip(positions, values, strict=True):
            filled[p] = v
        return pack_like(structure, filled)

    return build


def _node_for(step: CompiledStep, layer, ins, outs, template, kwargs: dict, logits: bool):
    """A kernel node where the layer has one for this call, else a tape node."""
    single = template is _single and len(outs) == 1
    # Kernels skip Layer.__call__, so a layer whose __call__ adds an activity penalty stays on its tape.
    plain = set(kwargs) <= {"training"} and kwargs.get("training", True) is True
    if single and plain and layer.built and layer.activity_regularizer is None and layer.dtype == "float32" \
            and layer.autocast:
        if type(layer) is Dense:
            fused = activations.FUSED.get(activations.linear if logits else layer.activation)
            # LoRA and quantized kernels are not the plain `_kernel` variable the node reads: their own call runs.
            plain_kernel = not layer.lora_enabled and layer.quantization_mode is None
            if fused is not None and layer.trainable and plain_kernel:
                return _DenseNode(layer, ins, outs, fused, step)
        elif type(layer) is Dropout:
            return _DropoutNode(layer, ins, outs)
        elif type(layer) is BatchNormalization and layer.trainable and not layer.synchronized and not layer.renorm:
            return _BatchNormNode(layer, ins, outs, step)  # batch renormalization runs on its tape node
        else:
            node = _spatial_node(step, layer, ins, outs, logits)
            if node is not None:
                return node
    return _TapeNode(layer, ins, outs, template, kwargs, logits, step)


_CONVS = (Conv1D, Conv2D, Conv3D)
_POOLS = (MaxPooling1D, MaxPooling2D, MaxPooling3D, AveragePooling1D, AveragePooling2D, AveragePooling3D)


def _spatial_node(step: CompiledStep, layer, ins, outs, logits: bool):
    """The kernel node of a convolution, pooling, Flatten/Reshape or Activation layer, or None when this
    layer's call has none (channels_first, LoRA, an unfused activation, zero strides: its tape node)."""
    kind = type(layer)
    channels_last = getattr(layer, "data_format", "channels_last") == "channels_last"
    if kind in _CONVS:
        fused = activations.FUSED.get(activations.linear if logits else layer.activation)
        if fused is not None and channels_last and layer.trainable and not layer.lora_enabled:
            return _ConvNode(layer, ins, outs, fused, step)
    elif kind in _POOLS:
        if channels_last and 0 not in layer.strides:
            return _PoolNode(layer, ins, outs)
    elif kind is Flatten and channels_last or kind is Reshape:
        return _ReshapeNode(layer, ins, outs)
    elif kind is Activation and not logits:
        fused = activations.FUSED.get(layer.activation)
        if fused is not None:
            return _ActivationNode(layer, ins, outs, fused)
    return None
