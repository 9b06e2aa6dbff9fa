"""``ConvLSTMCell`` and ``ConvLSTM``: an LSTM whose input and recurrent transformations are convolutions.

At each step, with ``*`` a convolution (the input one with the layer's strides, padding and dilation, the
recurrent one stride 1, ``"same"``), gates in Keras's order i, f, c, o::

    i = σ(W_i * x_t + U_i * h + b_i)      f = σ(W_f * x_t + U_f * h + b_f)
    c' = f ⊙ c + i ⊙ tanh(W_c * x_t + U_c * h + b_c)
    o = σ(W_o * x_t + U_o * h + b_o)      h' = o ⊙ tanh(c')

(σ is ``recurrent_activation``, tanh is ``activation``). The layer convolves every timestep's input at once
(one convolution over ``batch * timesteps`` images), then runs the recurrence step by step on the tape, so
gradients are the recorded ops' own.
"""

from __future__ import annotations

import numpy as np

from lamina import activations, backend, constraints, initializers, ops, random, regularizers
from lamina.autodiff import Tensor, Variable, unwrap
from lamina.layers.base_conv import conv_output_shape
from lamina.layers.dropout_rnn_cell import DropoutRNNCell
from lamina.layers.flatten import standardize_data_format
from lamina.layers.layer import InputSpec, Layer
from lamina.layers.rnn import RNN, forward_cell_properties
from lamina.layers.rnn_scan import time_slices
from lamina.layers.spatial_arguments import standardize_tuple


def _check_filters(filters) -> int:
    if isinstance(filters, float) and filters.is_integer():
        filters = int(filters)
    if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters <= 0:
        raise ValueError("Invalid value for argument `filters` of ConvLSTM: expected a positive integer. "
                         f"Received: filters={filters!r}")
    return int(filters)


def _check_rate(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise ValueError(f"The `{name}` of ConvLSTM must be a number between 0 and 1. Received: {name}={value!r}")
    return min(1.0, max(0.0, float(value)))  # clipped, as Keras does


def _check_padding(padding) -> str:
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError("The `padding` argument of ConvLSTM must be one of 'valid', 'same' (case-insensitive). "
                         f"Received: padding={padding!r}")
    return padding.lower()


def _contiguous(initializer):
    """``initializer`` whose arrays are C-contiguous: Orthogonal returns a transposed view when the kernel has fewer
    rows than columns (here always: filters * k < 4 filters for k < 4), and every step's convolution reads it."""
    def init(shape, dtype=None):
        return np.ascontiguousarray(initializer(shape, dtype=dtype))

    return init


class ConvLSTMCell(Layer, DropoutRNNCell):
    """One step of a convolutional LSTM (see the module docstring); ``rank`` spatial axes (1, 2 or 3).

    Weights: ``kernel (*kernel_size, channels, 4 filters)``, ``recurrent_kernel (*kernel_size, filters,
    4 filters)``, ``bias (4 filters,)`` (with ``unit_forget_bias`` the forget block starts at 1).
    ``call(inputs, states, training)`` takes ``inputs`` ``(batch, *spatial, channels)`` (channels first with
    ``data_format="channels_first"``) and ``states = [h, c]``, and returns ``(h', [h', c'])``.
    ``dropout`` / ``recurrent_dropout`` mask the input / ``h`` with one mask per gate, drawn once per sequence.
    """

    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 activation="tanh", recurrent_activation="sigmoid", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", unit_forget_bias=True,
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        if rank not in (1, 2, 3):
            raise ValueError(f"Rank {rank} convolutions are not currently implemented. Received: rank={rank}")
        self.rank = rank
        self.filters = _check_filters(filters)
        self.kernel_size = standardize_tuple(kernel_size, rank, "kernel_size")
        self.strides = standardize_tuple(strides, rank, "strides", allow_zero=True)
        self.padding = _check_padding(padding)
        self.data_format = standardize_data_format(data_format, "ConvLSTM")
        self.dilation_rate = standardize_tuple(dilation_rate, rank, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError("Specifying `strides > 1` is not compatible with `dilation_rate > 1`. Please provide "
                             f"`strides=1` or `dilation_rate=1`. Received: strides={self.strides} and "
                             f"dilation_rate={self.dilation_rate}")
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.dropout = _check_rate(dropout, "dropout")
        self.recurrent_dropout = _check_rate(recurrent_dropout, "recurrent_dropout")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"The `seed` of ConvLSTM must be an integer or None. Received: seed={seed!r}")
        self.seed = seed
        # as the other recurrent cells: a seed gives the cell its own stream, else the global generator draws
        self.seed_generator = None if seed is None else random.SeedGenerator(seed)
        self.dropout_mask_count = 4  # one mask per gate
        self.state_size = -1  # as Keras: the states are feature maps whose shape the input decides
        self.spatial_dims = None
        self.input_dim = None

    @property
    def _channel_axis(self) -> int:
        return 1 if self.data_format == "channels_first" else -1

    def build(self, inputs_shape, states_shape=None) -> None:
        inputs_shape = tuple(inputs_shape)
        first = self.data_format == "channels_first"
        spatial = inputs_shape[2:] if first else inputs_shape[1:-1]
        if len(spatial) != self.rank or None in spatial:
            raise ValueError("ConvLSTM layers only support static input shapes for the spatial dimension "
                             f"({self.rank} of them). Received invalid input shape: input_shape={inputs_shape}")
        channels = inputs_shape[1] if first else inputs_shape[-1]
        if channels is None:
            raise ValueError("The channel dimension of the inputs should be defined. Found None. Full input shape "
                             f"received: input_shape={inputs_shape}")
        self.spatial_dims = tuple(int(d) for d in spatial)
        self.input_dim = int(channels)
        width = 4 * self.filters
        self.kernel = self.add_weight(shape=self.kernel_size + (self.input_dim, width), name="kernel",
                                      initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.recurrent_kernel = self.add_weight(
            shape=self.kernel_size + (self.filters, width), name="recurrent_kernel",
            initializer=_contiguous(self.recurrent_initializer), regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint)
        if self.use_bias:
            self.bias = self.add_weight(shape=(width,), name="bias", initializer=self._bias_init(),
                                        regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        else:
            self.bias = None
        self.built = True

    def _bias_init(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        filters, init = self.filters, self.bias_initializer

        def forget_ones(shape, dtype=None):
            return np.concatenate([np.asarray(init((filters,), dtype=dtype)), np.ones((filters,), dtype=dtype),
                                   np.asarray(init((2 * filters,), dtype=dtype))])

        return forget_ones

    # ------------------------------------------------------------------ the step

    def _input_gates(self, inputs, masks=None):
        """``W * x + b`` for the four gates, concatenated on the channel axis; ``masks`` (one per gate, the
        shape of ``inputs``) apply input dropout, one convolution per gate."""
        if masks is None:
            z = self._conv(inputs, self.kernel, self.strides, self.padding, self.dilation_rate)
        else:
            kernels = ops.split(self.kernel, 4, axis=self.rank + 1)
            z = ops.concatenate([self._conv(ops.multiply(inputs, m), k, self.strides, self.padding,
                                            self.dilation_rate) for m, k in zip(masks, kernels)],
                                axis=self._channel_axis)
        if self.bias is None:
            return z
        shape = [1] * (self.rank + 2)
        shape[self._channel_axis] = 4 * self.filters
        return ops.add(z, ops.reshape(self.bias, tuple(shape)))

    def _recurrent_gates(self, h, masks=None):
        ones = (1,) * self.rank
        if masks is None:
            return self._conv(h, self.recurrent_kernel, ones, "same", ones)
        kernels = ops.split(self.recurrent_kernel, 4, axis=self.rank + 1)
        return ops.concatenate([self._conv(ops.multiply(h, m), k, ones, "same", ones) for m, k in zip(masks, kernels)],
                               axis=self._channel_axis)

    def _conv(self, x, kernel, strides, padding, dilation):
        return ops.conv(x, kernel, strides=strides, padding=padding, data_format=self.data_format,
                        dilation_rate=dilation)

    def _recurrent_masks(self, h, training):
        return self.get_recurrent_dropout_mask(h) if training and 0 < self.recurrent_dropout < 1 else None

    def _step(self, x_gates, h, c, training):
        """One step from the input's gate pre-activations ``x_gates``: returns ``(h', c')``."""
        z = ops.add(x_gates, self._recurrent_gates(h, self._recurrent_masks(h, training)))
        zi, zf, zc, zo = ops.split(z, 4, axis=self._channel_axis)
        i = self.recurrent_activation(zi)
        f = self.recurrent_activation(zf)
        c_new = ops.add(ops.multiply(f, c), ops.multiply(i, self.activation(zc)))
        o = self.recurrent_activation(zo)
        return ops.multiply(o, self.activation(c_new)), c_new

    def call(self, inputs, states, training=False):
        h, c = states[0], states[1]
        masks = self.get_dropout_mask(inputs) if training and 0 < self.dropout < 1 else None
        h_new, c_new = self._step(self._input_gates(inputs, masks), h, c, training)
        return h_new, [h_new, c_new]

    # ------------------------------------------------------------------ shapes and config

    def compute_output_shape(self, inputs_shape, states_shape=None):
        out = conv_output_shape(inputs_shape, self.filters, self.kernel_size, self.strides, self.padding,
                                self.data_format, self.dilation_rate)
        return out, [out, out]

    def get_initial_state(self, batch_size=None):
        """Zero ``h`` and ``c`` of the output's shape (the cell must be built: the spatial size decides it)."""
        if self.spatial_dims is None:
            raise ValueError(f"ConvLSTMCell '{self.name}' must be built (it needs the input's spatial size) before "
                             "get_initial_state. Received: an unbuilt cell")
        if self.data_format == "channels_last":
            input_shape = (batch_size,) + self.spatial_dims + (self.input_dim,)
        else:
            input_shape = (batch_size, self.input_dim) + self.spatial_dims
        shape = self.compute_output_shape(input_shape)[0]
        return [np.zeros(shape, dtype=self.compute_dtype), np.zeros(shape, dtype=self.compute_dtype)]

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(_cell_config(self))
        return config


def _cell_config(cell) -> dict:
    return {
        "filters": cell.filters,
        "kernel_size": cell.kernel_size,
        "strides": cell.strides,
        "padding": cell.padding,
        "data_format": cell.data_format,
        "dilation_rate": cell.dilation_rate,
        "activation": activations.serialize(cell.activation),
        "recurrent_activation": activations.serialize(cell.recurrent_activation),
        "use_bias": cell.use_bias,
        "kernel_initializer": initializers.serialize(cell.kernel_initializer),
        "recurrent_initializer": initializers.serialize(cell.recurrent_initializer),
        "bias_initializer": initializers.serialize(cell.bias_initializer),
        "unit_forget_bias": cell.unit_forget_bias,
        "kernel_regularizer": regularizers.serialize(cell.kernel_regularizer),
        "recurrent_regularizer": regularizers.serialize(cell.recurrent_regularizer),
        "bias_regularizer": regularizers.serialize(cell.bias_regularizer),
        "kernel_constraint": constraints.serialize(cell.kernel_constraint),
        "recurrent_constraint": constraints.serialize(cell.recurrent_constraint),
        "bias_constraint": constraints.serialize(cell.bias_constraint),
        "dropout": cell.dropout,
        "recurrent_dropout": cell.recurrent_dropout,
        "seed": cell.seed,
    }


_CELL_ARGUMENTS = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "activation",
                   "recurrent_activation", "use_bias", "kernel_initializer", "recurrent_initializer",
                   "bias_initializer", "unit_forget_bias", "kernel_regularizer", "recurrent_regularizer",
                   "bias_regularizer", "kernel_constraint", "recurrent_constraint", "bias_constraint", "dropout",
                   "recurrent_dropout")


class ConvLSTM(RNN):
    """A convolutional LSTM over ``(batch, timesteps, *spatial, channels)`` sequences (``(batch, timesteps,
    channels, *spatial)`` with ``data_format="channels_first"``); ``rank`` spatial axes. The cell's arguments
    are :class:`ConvLSTMCell`'s; ``return_sequences``, ``return_state``, ``go_backwards``, ``stateful`` and
    masks as :class:`~lamina.layers.RNN` (a masked step keeps the previous ``h``, ``c`` and output).
    """

    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 activation="tanh", recurrent_activation="sigmoid", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", unit_forget_bias=True,
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 return_sequences=False, return_state=False, go_backwards=False, stateful=False, **kwargs):
        cell = ConvLSTMCell(
            rank=rank, filters=filters, kernel_size=kernel_size, strides=strides, padding=padding,
            data_format=data_format, dilation_rate=dilation_rate, activation=activation,
            recurrent_activation=recurrent_activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias, kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint, recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint, dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed,
            name="conv_lstm_cell", dtype=kwargs.get("dtype"))
        super().__init__(cell, return_sequences=return_sequences, return_state=return_state,
                         go_backwards=go_backwards, stateful=stateful, **kwargs)
        self.rank = rank
        self.input_spec = InputSpec(ndim=rank + 3)

    # ------------------------------------------------------------------ shapes and masks

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch, steps = sequences_shape[0], sequences_shape[1]
        state = tuple(self.cell.compute_output_shape((batch,) + tuple(sequences_shape[2:]))[0][1:])
        output = (batch, steps) + state if self.return_sequences else (batch,) + state
        return (output, (batch,) + state, (batch,) + state) if self.return_state else output

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        output_mask = mask if self.return_sequences else None
        return [output_mask, None, None] if self.return_state else output_mask

    # ------------------------------------------------------------------ calling

    def call(self, sequences, initial_state=None, mask=None, training=False):
        shape = tuple(ops.shape(sequences))
        if len(shape) != self.rank + 3:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) expects inputs of rank {self.rank + 3} "
                             f"(batch, timesteps, {self.rank} spatial axes and channels). Received: "
                             f"inputs.shape={shape}")
        batch, steps = shape[0], shape[1]
        if mask is None:
            mask = backend.get_keras_mask(sequences)
        mask = _time_mask(mask, shape, self.name)
        h, c = self._start_states(initial_state, batch)
        cell = self.cell
        try:
            x_gates = self._all_input_gates(sequences, shape, training)
            slices = time_slices(x_gates)
            order = range(steps - 1, -1, -1) if self.go_backwards else range(steps)
            outputs, y = [], None
            for t in order:
                h_new, c_new = cell._step(slices[t], h, c, training)
                y_new = h_new
                if mask is not None:
                    m = mask[:, t].reshape((batch,) + (1,) * (self.rank + 1))
                    h_new, c_new = ops.where(m, h_new, h), ops.where(m, c_new, c)
                    previous = ops.zeros_like(y_new) if y is None or self.zero_output_for_mask else y
                    y_new = ops.where(m, y_new, previous)
                h, c, y = h_new, c_new, y_new
                if self.return_sequences:
                    outputs.append(y)
        finally:
            cell.reset_dropout_mask()
            cell.reset_recurrent_dropout_mask()
        if y is None:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) needs at least one timestep. Received: "
                             f"inputs.shape={shape}")
        output = ops.stack(outputs, axis=1) if self.return_sequences else y
        if self.stateful:
            for var, value in zip(self.states, (h, c)):
                var.assign(np.asarray(unwrap(value)))
        if self.return_sequences and mask is not None and isinstance(unwrap(output), np.ndarray):
            backend.set_keras_mask(output, mask)
        return (output, h, c) if self.return_state else output

    def _all_input_gates(self, sequences, shape, training):
        """The input convolution of every timestep at once: ``(batch, timesteps, ...)`` gate pre-activations."""
        cell = self.cell
        batch, steps, step_shape = shape[0], shape[1], shape[2:]
        flat = ops.reshape(sequences, (batch * steps,) + step_shape)
        masks = None
        if training and 0 < cell.dropout < 1:
            first = np.asarray(unwrap(sequences))[:, 0]
            # the same mask at every step (Keras draws one per sequence): repeated along time
            masks = [np.repeat(m[:, None], steps, axis=1).reshape((batch * steps,) + step_shape)
                     for m in cell.get_dropout_mask(first)]
        z = cell._input_gates(flat, masks)
        return ops.reshape(z, (batch, steps) + tuple(ops.shape(z))[1:])

    def _start_states(self, initial_state, batch) -> list:
        """``[h, c]``: given, the stateful layer's, or zeros; checked against the output's shape."""
        if initial_state is None:
            if self.stateful:
                if self.states is None:
                    self._create_state_variables(batch)
                if batch != self._expected_batch_size:
                    raise ValueError(
                        "If an RNN is stateful, the batch size of the input sequences must be the same as the "
                        f"batch size of the initial state.\n- Expected batch size: {self._expected_batch_size}\n"
                        f"- Received batch size: {batch}")
                return [v.value for v in self.states]
            return self.cell.get_initial_state(batch)
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        expected = self.cell.get_initial_state(batch)[0].shape
        shapes = [tuple(ops.shape(s)) for s in states]
        if len(states) != 2 or any(s != expected for s in shapes):
            raise ValueError(f"Layer '{self.name}' expects 2 initial states (h and c), each of shape {expected}. "
                             f"Received: initial states of shapes {shapes}")
        return [self._state_in_compute_dtype(s) for s in states]

    def _state_in_compute_dtype(self, state):
        dtype = self.compute_dtype
        if isinstance(state, (Tensor, Variable)):
            return state if unwrap(state).dtype == np.dtype(dtype) else ops.cast(state, dtype)
        return np.asarray(state, dtype=dtype)

    # ------------------------------------------------------------------ config

    def get_config(self) -> dict:
        config = super().get_config()
        del config["cell"]
        config.update(_cell_config(self.cell))
        config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        return config

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None):
        return cls(**config)


forward_cell_properties(ConvLSTM, _CELL_ARGUMENTS)


def _time_mask(mask, shape, name):
    """``mask`` as a (batch, timesteps) boolean array, or None."""
    if isinstance(mask, (list, tuple)):
        mask = mask[0] if mask else None
    if mask is None:
        return None
    value = np.asarray(unwrap(mask))
    if value.shape != tuple(shape[:2]):
        raise ValueError(f"The mask of layer '{name}' must have shape (batch, timesteps) = {tuple(shape[:2])}. "
                         f"Received: mask.shape={value.shape}")
    return value.astype(bool, copy=False)


class ConvLSTM1D(ConvLSTM):
    """1D convolutional LSTM: sequences of ``(steps, channels)`` signals; arguments as :class:`ConvLSTM`."""

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(1, filters, kernel_size, **kwargs)


class ConvLSTM2D(ConvLSTM):
    """2D convolutional LSTM: sequences of ``(rows, cols, channels)`` images; arguments as :class:`ConvLSTM`."""

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(2, filters, kernel_size, **kwargs)


class ConvLSTM3D(ConvLSTM):
    """3D convolutional LSTM: sequences of ``(depth, rows, cols, channels)`` volumes; arguments as
    :class:`ConvLSTM`."""

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(3, filters, kernel_size, **kwargs)


__all__ = ["ConvLSTM", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "ConvLSTMCell"]
