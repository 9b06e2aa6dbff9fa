"""``RNN``: runs a recurrent cell over the time axis of ``(batch, timesteps, features)`` inputs.

Two ways to run, one result. A built-in cell (``SimpleRNNCell``, ``LSTMCell``, ``GRUCell``) with activations
the fused loop knows runs fused (``rnn_scan``): one matmul projects every timestep's input, a loop on plain
arrays does the recurrence, and the whole sequence is ONE node on the tape whose backward is a hand-written
reverse loop (backpropagation through time). Any other cell — a user's, a ``StackedRNNCells``, a built-in
cell with recurrent dropout while training — runs its ``call`` step by step, each step recorded on the tape
(whose backward walk is iterative, so long sequences do not recurse either).
"""

from __future__ import annotations

import numpy as np

from lamina import backend, ops, regularizers, tree
from lamina.autodiff import Tensor, Variable, needs_gradient, recording, unwrap
from lamina.layers import rnn_accel
from lamina.layers.dropout_rnn_cell import DropoutRNNCell
from lamina.layers.embedding import Embedding
from lamina.layers.keras_tensor import KerasTensor
from lamina.layers.layer import InputSpec, Layer
from lamina.layers.rnn_cells import BaseRNNCell
from lamina.layers.rnn_scan import (
    project,
    record_outputs,
    scan_backward,
    scan_forward,
    time_slices,
    weight_gradients,
)
from lamina.layers.stacked_rnn_cells import StackedRNNCells
from lamina.saving.object_config import deserialize_layer, serialize_layer


def _check_cell(cell) -> None:
    if "call" not in dir(cell):
        raise ValueError(f"Argument `cell` should have a `call` method. Received: cell={cell}")
    if "state_size" not in dir(cell):
        raise ValueError(
            "The RNN cell should have a `state_size` attribute (single integer or list of integers, one integer "
            f"per RNN state). Received: cell={cell}"
        )


class RNN(Layer):
    """Base class for recurrent layers: ``cell`` (or a list of cells, stacked) applied at every timestep.

    A cell has ``state_size`` (an int or a list of ints, one per state), optionally ``output_size`` and
    ``get_initial_state(batch_size)``, and ``call(inputs_t, states, training=...) -> (output_t, new_states)``.

    Args:
        return_sequences: return every timestep's output ``(batch, timesteps, output_size)``, else the last.
        return_state: also return the final states, after the output.
        go_backwards: process the sequence in reverse (the returned sequence is in processing order).
        stateful: the final states of a batch are the initial states of the next (``reset_state()`` zeroes
            them); needs a fixed batch size.
        unroll: accepted for Keras's API; lamina's loop is the same either way.
        zero_output_for_mask: masked timesteps output zeros instead of repeating the previous output.

    Call arguments: ``sequences``, ``initial_state`` (a list of state arrays), ``mask`` (``(batch,
    timesteps)`` booleans, True keeps: a masked step keeps the previous states), ``training``.
    """

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False, stateful=False,
                 unroll=False, zero_output_for_mask=False, **kwargs):
        if isinstance(cell, (list, tuple)):
            cell = StackedRNNCells(cell)
        _check_cell(cell)
        super().__init__(**kwargs)
        self.zero_output_for_mask = zero_output_for_mask
        self.cell = cell
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.go_backwards = go_backwards
        self.stateful = stateful
        self.unroll = unroll
        self.supports_masking = True
        self.input_spec = None
        object.__setattr__(self, "states", None)  # stateful state variables: not weights (as in Keras)
        self._expected_batch_size = None
        state_size = getattr(cell, "state_size", None)
        if state_size is None:
            raise ValueError("state_size must be specified as property on the RNN cell.")
        if not isinstance(state_size, (list, tuple, int)):
            raise ValueError("state_size must be an integer, or a list/tuple of integers (one for each state "
                             f"tensor). Received: state_size={state_size!r}")
        self.single_state = isinstance(state_size, int)
        self.state_size = [state_size] if self.single_state else list(state_size)

    # ------------------------------------------------------------------ shapes and masks

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch, length = sequences_shape[0], sequences_shape[1]
        states = [(batch, s) if isinstance(s, int) else [(batch, d) for d in s] for s in self.state_size]
        output_size = getattr(self.cell, "output_size", None)
        if output_size is None:
            output_size = self.state_size[0]
        if not isinstance(output_size, int):
            raise ValueError(f"output_size must be an integer. Received: output_size={output_size!r}")
        output = (batch, length, output_size) if self.return_sequences else (batch, output_size)
        return (output, *states) if self.return_state else output

    def _may_start_mask(self) -> bool:
        # lamina's recurrent layers pass the input's mask on (or drop it), never make one; a user's may
        return not type(self).compute_mask.__module__.startswith("lamina.")

    def compute_mask(self, inputs, mask=None):
        mask = tree.flatten(mask)[0] if mask is not None else None
        output_mask = mask if self.return_sequences else None
        return [output_mask] + [None] * len(self.state_size) if self.return_state else output_mask

    # ------------------------------------------------------------------ building and state

    def build(self, sequences_shape, initial_state_shape=None) -> None:
        step_shape = (sequences_shape[0],) + tuple(sequences_shape[2:])
        if isinstance(self.cell, Layer) and not self.cell.built:
            self.cell._maybe_build(step_shape)
            self.cell.built = True
        if self.stateful:
            if self.states is not None:
                self.reset_state()
            else:
                if sequences_shape[0] is None:
                    raise ValueError("When using `stateful=True` in a RNN, the batch size must be static. Found "
                                     f"dynamic batch size: sequence.shape={tuple(sequences_shape)}")
                self._create_state_variables(sequences_shape[0])
        self.built = True

    def _create_state_variables(self, batch_size: int) -> None:
        def variable(value):
            return Variable(np.asarray(unwrap(value)), trainable=False, dtype=self.variable_dtype, name="rnn_state")

        object.__setattr__(self, "states", tree.map_structure(variable, self.get_initial_state(batch_size)))
        self._expected_batch_size = batch_size

    def get_initial_state(self, batch_size):
        """The states a sequence starts from: the cell's ``get_initial_state``, else zeros (a list)."""
        fn = getattr(self.cell, "get_initial_state", None)
        if fn is None:
            return [np.zeros((batch_size, d), dtype=self.compute_dtype) for d in self.state_size]
        state = fn(batch_size=batch_size)
        return list(state) if tree.is_nested(state) else [state]

    def reset_state(self) -> None:
        """Zero the states of a stateful layer."""
        if self.states is not None:
            for v in tree.flatten(self.states):
                v.assign(np.zeros(v.shape, dtype=v.dtype))

    def reset_states(self) -> None:
        """Keras's older name of :meth:`reset_state`."""
        self.reset_state()

    # ------------------------------------------------------------------ calling

    def __call__(self, *args, **kwargs):
        args, kwargs = sequence_call_arguments(args, kwargs)
        return super().__call__(*args, **kwargs)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        shape = tuple(ops.shape(sequences))
        if len(shape) < 3:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) expects inputs of shape (batch, "
                             f"timesteps, features). Received: inputs.shape={shape}")
        if mask is None:
            mask = backend.get_keras_mask(sequences)
        mask = _time_mask(mask, shape, self.name)
        states = self._initial_states(initial_state, shape[0])
        cell = self.cell
        if isinstance(cell, BaseRNNCell) and len(shape) == 3 and cell._can_fuse(training):
            outputs = self._fused_call(sequences, states, mask, training)
        else:
            outputs = self._stepwise_call(sequences, states, mask, training)
        _reset_dropout(cell)
        output, final = outputs[0], outputs[1:]
        if self.stateful:
            for var, value in zip(tree.flatten(self.states), final):
                var.assign(np.asarray(unwrap(value)))
        if self.return_sequences and mask is not None and isinstance(unwrap(output), np.ndarray):
            backend.set_keras_mask(output, mask)
        if self.return_state:
            return (output, *states_structure(self, final))
        return output

    def _initial_states(self, initial_state, batch_size) -> list:
        """The initial states as a nested list in the compute dtype."""
        if initial_state is None:
            if self.stateful:
                if self.states is None:
                    self._create_state_variables(batch_size)
                initial_state = tree.map_structure(lambda v: v.value, self.states)
            else:
                initial_state = self.get_initial_state(batch_size)
        if self.stateful and self._expected_batch_size is not None and batch_size != self._expected_batch_size:
            raise ValueError(
                "If an RNN is stateful, the batch size of the input sequences must be the same as the batch size "
                f"of the initial state.\n- Expected batch size: {self._expected_batch_size}\n- Received batch "
                f"size: {batch_size}"
            )
        if not tree.is_nested(initial_state):
            initial_state = [initial_state]
        initial_state = tree.map_structure(self._as_compute, list(initial_state))
        _check_states(self, tree.flatten(initial_state), batch_size)
        return initial_state

    def _as_compute(self, x):
        if isinstance(x, (Tensor, Variable)):
            value = unwrap(x)
            return x if value.dtype == self._compute_np_dtype or self._compute_np_dtype is None \
                else ops.cast(x, self.compute_dtype)
        value = np.asarray(x)
        if self._compute_np_dtype is not None and value.dtype != self._compute_np_dtype:
            value = value.astype(self._compute_np_dtype)
        return value

    def _fused_call(self, sequences, states, mask, training) -> list:
        """The whole sequence as one recorded node (see ``rnn_scan``); returns [output, *final states]."""
        cell = self.cell
        xv = np.asarray(unwrap(sequences))
        dtype = self._compute_np_dtype or np.dtype(backend.floatx())
        if xv.dtype != dtype:
            xv = xv.astype(dtype)
        kernel, recurrent_kernel, input_bias, recurrent_bias = cell._fused_weights()
        xt = xv.transpose(1, 0, 2)  # time-major (a view)
        if self.go_backwards:
            xt = xt[::-1]
        drop = cell._input_dropout_masks(xv[:, 0], training)
        s0 = [np.asarray(unwrap(s), dtype=dtype) for s in states]
        weights = (cell.kernel, cell.recurrent_kernel) + (() if cell.bias is None else (cell.bias,))
        parents = (sequences,) + weights + tuple(states)
        keep = recording() and any(needs_gradient(p) for p in parents)
        mask_tm = None if mask is None else (mask.T[::-1] if self.go_backwards else mask.T)[..., None]
        seq = self.return_sequences
        trainer = None if not keep or mask_tm is not None or drop is not None else \
            cell._sequence_trainer(kernel, recurrent_kernel, input_bias, dtype)
        if trainer is not None:  # compiled training loops with the weight gradients in them (``lstm_training``)
            outputs, last, final = trainer.forward(xt, s0, seq)

            def gradients(d_outputs, d_last, g_states):
                dxt, d_kernel, d_bias, d_rk, d_s0 = trainer.backward(d_outputs, d_last, g_states)
                return dxt, d_kernel, d_bias, d_rk, None, d_s0
        else:
            xt = np.ascontiguousarray(xt)  # one copy, so that every (T * batch, features) reshape below is a view
            loop = cell._kernel(recurrent_kernel, recurrent_bias, xt.shape[0] if keep else 2, xt.shape[1], dtype)
            outputs, last, final, xp_shape = self._scan(loop, xt, (kernel, input_bias), drop, s0, mask_tm, keep)

            def gradients(d_outputs, d_last, g_states):
                dxp, d_s0 = scan_backward(loop, xp_shape, d_outputs, d_last, g_states, mask_tm,
                                          self.zero_output_for_mask)
                return (*weight_gradients(loop, xt, kernel, drop, dxp, input_bias is not None), d_s0)
        output = outputs.transpose(1, 0, 2) if seq else last
        results = [output] + (final if self.return_state else [])
        if not keep:
            return results + ([] if self.return_state else final)

        def vjp(grads):
            g_out = grads[0]
            g_states = list(grads[1:]) + [None] * (len(final) - len(grads) + 1)
            d_outputs = None if g_out is None or not seq else np.asarray(g_out).transpose(1, 0, 2)
            d_last = None if g_out is None or seq else g_out
            dxt, d_kernel, d_bias, d_rk, d_rb, d_s0 = gradients(d_outputs, d_last, g_states)
            if self.go_backwards:
                dxt = dxt[::-1]
            return tuple([dxt.transpose(1, 0, 2)] + cell._weight_gradients(d_kernel, d_rk, d_bias, d_rb) + d_s0)

        return record_outputs(results, parents, vjp) + ([] if self.return_state else final)

    def _scan(self, loop, xt, weights, drop, s0, mask_tm, keep):
        """:func:`scan_forward` over the projected inputs ``xt @ kernel + bias``; returns its ``(outputs, last,
        states)`` and the projected inputs' shape. At inference a kernel that projects inside its compiled loop
        (``infer_from_inputs``: the compiled LSTM) does so without a mask or input dropout."""
        kernel, input_bias = weights
        direct = None if keep else getattr(loop, "infer_from_inputs", None)
        if direct is not None and mask_tm is None and drop is None and kernel.dtype == xt.dtype == loop.dtype \
                and (input_bias is None or input_bias.dtype == xt.dtype):
            bias = np.zeros(kernel.shape[1], dtype=xt.dtype) if input_bias is None else input_bias
            return (*direct(xt, kernel, bias, s0, self.return_sequences), xt.shape[:2] + (kernel.shape[1],))
        xp = project(xt, kernel, input_bias, drop)
        return (*scan_forward(loop, xp, s0, mask_tm, self.return_sequences, self.zero_output_for_mask, keep),
                xp.shape)

    def _stepwise_call(self, sequences, states, mask, training) -> list:
        """The cell's own ``call`` at every step, recorded on the tape; returns [output, *final states]."""
        cell = self.cell
        kwargs = {"training": training} if _takes_training(cell) else {}
        step_fn = cell if isinstance(cell, Layer) else cell.call
        slices = time_slices(sequences)
        if self.go_backwards:
            slices = slices[::-1]
        mask_tm = None if mask is None else (mask.T[::-1] if self.go_backwards else mask.T)[..., None]
        states = list(states)
        outputs, y = [], None
        for t, x_t in enumerate(slices):
            y_new, new = step_fn(x_t, tuple(states), **kwargs)
            new = list(new) if tree.is_nested(new) else [new]
            if mask_tm is not None:
                m = mask_tm[t]
                new = tree.pack_sequence_as(new, [ops.where(m, n, s) for n, s in
                                                  zip(tree.flatten(new), tree.flatten(states))])
                previous = ops.zeros_like(y_new) if y is None or self.zero_output_for_mask else y
                y_new = ops.where(m, y_new, previous)
            states, y = new, y_new
            if self.return_sequences:
                outputs.append(y)
        output = ops.stack(outputs, axis=1) if self.return_sequences else y
        output = self._as_compute(output)
        return [output] + [self._as_compute(s) for s in tree.flatten(states)]

    # ------------------------------------------------------------------ config

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "stateful": self.stateful,
            "unroll": self.unroll,
            "zero_output_for_mask": self.zero_output_for_mask,
            "cell": serialize_layer(self.cell),
        })
        return config

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None):
        config = dict(config)
        cell = deserialize_layer(config.pop("cell"), custom_objects)
        return cls(cell, **config)


def states_structure(layer, flat_states):
    """The final states nested as the cell's ``state_size`` (a cell with several states gives a list)."""
    out, i = [], 0
    for size in layer.state_size:
        if isinstance(size, (list, tuple)):
            out.append(list(flat_states[i:i + len(size)]))
            i += len(size)
        else:
            out.append(flat_states[i])
            i += 1
    return out


def _check_states(layer, states: list, batch_size) -> None:
    """One ``(batch, size)`` state per entry of the cell's ``state_size`` (flattened), else a ValueError."""
    sizes = tree.flatten(layer.state_size)
    shapes = [tuple(ops.shape(s)) for s in states]
    expected = [(batch_size, size) for size in sizes]
    if len(shapes) != len(expected) or any(
            isinstance(size, int) and tuple(shape) != exp for shape, exp, size in zip(shapes, expected, sizes)):
        raise ValueError(
            f"Layer '{layer.name}' expects {len(expected)} initial state(s) of shapes {expected} (the cell's "
            f"state_size={layer.cell.state_size}). Received: initial states of shapes {shapes}"
        )


def _time_mask(mask, shape, name):
    """``mask`` as a (batch, timesteps) boolean array, or None."""
    if isinstance(mask, (list, tuple)):
        mask = mask[0] if mask else None
    if mask is None:
        return None
    value = np.asarray(unwrap(mask))
    if value.ndim == 3 and value.shape[-1] == 1:
        value = value[..., 0]
    if value.shape != tuple(shape[:2]):
        raise ValueError(f"The mask of RNN layer '{name}' must have shape (batch, timesteps) = {tuple(shape[:2])}. "
                         f"Received: mask.shape={value.shape}")
    return value.astype(bool, copy=False)


def _takes_training(cell) -> bool:
    if isinstance(cell, Layer):
        return cell._call_has_training
    import inspect  # lazy: only a cell that is not a Layer gets here

    return "training" in inspect.signature(cell.call).parameters


def _reset_dropout(cell) -> None:
    if isinstance(cell, DropoutRNNCell):
        cell.reset_dropout_mask()
        cell.reset_recurrent_dropout_mask()
    for sub in getattr(cell, "cells", ()) if isinstance(cell, StackedRNNCells) else ():
        _reset_dropout(sub)


class CellRNN(RNN):
    """The shared part of ``SimpleRNN``, ``LSTM`` and ``GRU``: an ``RNN`` over a built-in cell made from the
    layer's own arguments, whose config is the cell's arguments rather than a nested cell."""

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False, stateful=False,
                 unroll=False, **kwargs):
        super().__init__(cell, return_sequences=return_sequences, return_state=return_state,
                         go_backwards=go_backwards, stateful=stateful, unroll=unroll, **kwargs)
        self.input_spec = InputSpec(ndim=3)

    def get_config(self) -> dict:
        config = super().get_config()
        del config["cell"]
        config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        config.update(self.cell._config())
        return config

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None):
        return cls(**config)


def forward_cell_properties(cls: type, names) -> type:
    """Read-only properties of ``cls`` that read the cell's attribute of the same name (Keras's ``LSTM.units``)."""
    for name in names:
        setattr(cls, name, property(lambda self, name=name: getattr(self.cell, name),
                                    doc=f"The cell's ``{name}``."))
    return cls


def cell_kwargs(kwargs: dict, name: str) -> dict:
    """The arguments a layer passes on to the cell it makes: its dtype and trainable flag, the cell's name."""
    return {"dtype": kwargs.get("dtype"), "trainable": kwargs.get("trainable", True), "name": name}



def embedding_fed_step(embedding, layer):
    """An :class:`EmbeddingFedRNN` for an ``Embedding`` followed by a recurrent layer whose calls are the
    built-in ones (a subclass overriding ``call`` keeps its own), else None."""
    if type(embedding).call is not Embedding.call or not isinstance(embedding, Embedding) \
            or not isinstance(layer, RNN) or type(layer).call is not RNN.call \
            or type(layer)._fused_call is not RNN._fused_call:
        return None
    return EmbeddingFedRNN(embedding, layer)


class EmbeddingFedRNN:
    """``layer.call(embedding.call(ids))`` at inference as one step that never makes the embedded or projected
    sequence: the input projection of a looked-up row is a row of the table ``embeddings @ kernel + bias``
    (vocabulary, gates x units), so the compiled loop reads its gate pre-activations straight from that table
    by token id (``infer_from_table`` of the compiled LSTM and GRU kernels).

    Used by Sequential's inference plan for an ``Embedding`` followed by a recurrent layer. It applies when the
    meaning is exactly the two calls': a plain Embedding (no ``mask_zero``, LoRA or quantization), a layer that
    runs the compiled whole-sequence loop (built-in LSTM, ``reset_after`` GRU, default activations), not
    stateful, no ``return_state``, float32/float64 throughout, not training. Elsewhere the two calls run.

    The table is made when it costs no more than the projection it replaces (vocabulary <= tokens in the
    call) and kept with copies of the weights it came from: a later call compares them (a read of the
    embeddings, far cheaper than the product) and makes it again once any changed (training, ``set_weights``).
    """

    in_blocks = True  # its loops run on blocks of rows on threads; memory per row: states and one step's gates

    def __init__(self, embedding, layer):
        self.embedding, self.layer = embedding, layer
        self._table = None
        self._sources = ()

    def __call__(self, x, training=None):
        ids = None if training else self._token_ids(x)
        table = None if ids is None else self._current_table(ids.size)
        if table is None:
            return self.layer.call(self.embedding.call(x), training=training)
        layer, cell = self.layer, self.layer.cell
        dtype = table.dtype
        _, recurrent_kernel, _, recurrent_bias = cell._fused_weights()
        loop = cell._kernel(recurrent_kernel, recurrent_bias, 2, ids.shape[0], dtype)
        if getattr(loop, "infer_from_table", None) is None:
            return self.layer.call(self.embedding.call(x), training=training)
        ids_tm = ids.T[::-1] if layer.go_backwards else ids.T
        states = [np.asarray(unwrap(s), dtype=dtype) for s in layer.get_initial_state(ids.shape[0])]
        outputs, last, _ = loop.infer_from_table(table, np.ascontiguousarray(ids_tm, dtype=np.intp), states,
                                                 layer.return_sequences)
        return outputs.transpose(1, 0, 2) if layer.return_sequences else last

    def _token_ids(self, x):
        """``x`` as (batch, timesteps) indices in [0, vocabulary), or None where the fused step does not apply."""
        emb, layer = self.embedding, self.layer
        cell = layer.cell
        dtype = layer._compute_np_dtype
        if emb.mask_zero or emb.lora_enabled or emb.quantization_mode is not None or layer.stateful \
                or layer.return_state or not isinstance(cell, BaseRNNCell) or not cell._can_fuse(False) \
                or dtype not in (np.float32, np.float64) or emb._compute_np_dtype != dtype \
                or emb._embeddings.dtype != dtype or cell.kernel.dtype != dtype or rnn_accel.kernels(dtype) is None:
            return None
        ids = emb._indices(x)  # the Embedding's own checks and messages
        if ids.ndim != 2 or 0 in ids.shape:
            return None
        return np.where(ids < 0, ids + emb.input_dim, ids) if ids.min() < 0 else ids

    def _current_table(self, tokens: int):
        """``embeddings @ kernel + bias`` (gate blocks in the loop's order) for the weights as they are now,
        the kept one if they have not changed; None when making it would cost more than the projection."""
        cell = self.layer.cell
        sources = [unwrap(self.embedding._embeddings), unwrap(cell.kernel)] + \
            ([] if cell.bias is None else [unwrap(cell.bias)])
        if self._table is not None and len(sources) == len(self._sources) and all(
                np.array_equal(a, b) for a, b in zip(sources, self._sources)):
            return self._table
        if self.embedding.input_dim > tokens:
            return None
        kernel, _, input_bias, _ = cell._fused_weights()
        table = sources[0]
        if input_bias is None:
            input_bias = np.zeros(kernel.shape[1], dtype=kernel.dtype)
        kernel, input_bias = np.ascontiguousarray(kernel), np.ascontiguousarray(input_bias)
        product = rnn_accel.matmul_bias(np.ascontiguousarray(table), kernel, input_bias)
        self._table = table @ kernel + input_bias if product is None else product
        self._sources = [np.array(a, copy=True) for a in sources]
        return self._table


def sequence_call_arguments(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The arguments of a ``call(sequences, initial_state=None, mask=None, ...)`` arranged for the base class.

    ``initial_state`` and a symbolic ``mask`` (Keras writes one into the nodes of a saved Functional model)
    travel positionally, so that a Functional graph records them (as Keras's RNN does); on arrays the mask
    goes back to its keyword, where the base class looks for a given mask.
    """
    if len(args) == 1 and ("initial_state" in kwargs or _symbolic(kwargs.get("mask"))):
        state = kwargs.pop("initial_state", None)
        args = (args[0], state) if not _symbolic(kwargs.get("mask")) else (args[0], state, kwargs.pop("mask"))
        if len(args) == 2 and args[1] is None:
            args = args[:1]
    if len(args) == 3 and not _symbolic(args):
        args, kwargs["mask"] = args[:2], args[2]
    return args, kwargs


def _symbolic(x) -> bool:
    return any(isinstance(t, KerasTensor) for t in tree.flatten(x)) if x is not None else False


__all__ = ["RNN", "CellRNN", "DropoutRNNCell"]
