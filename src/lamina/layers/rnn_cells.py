"""What the built-in cells (``SimpleRNNCell``, ``LSTMCell``, ``GRUCell``) share: arguments, weights, config,
and the fused sequence pass that ``RNN`` runs instead of calling the cell step by step."""

from __future__ import annotations

import numpy as np

from lamina import activations, constraints, initializers, random, regularizers
from lamina.autodiff import unwrap
from lamina.layers.dropout_rnn_cell import DropoutRNNCell
from lamina.layers.layer import Layer
from lamina.layers.rnn_scan import activation_pair


def check_units(units, cls_name: str) -> int:
    if isinstance(units, float) and units.is_integer():
        units = int(units)
    if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
        raise ValueError(
            f"Received an invalid value for argument `units` of {cls_name}, expected a positive integer. "
            f"Received: units={units!r}"
        )
    return int(units)


def _rate(value, name: str, cls_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise ValueError(f"The `{name}` of {cls_name} must be a number between 0 and 1. Received: {name}={value!r}")
    return min(1.0, max(0.0, float(value)))  # clipped, as Keras does


class BaseRNNCell(Layer, DropoutRNNCell):
    """A cell with ``kernel`` (input → gates), ``recurrent_kernel`` (state → gates) and an optional ``bias``;
    ``_gates`` blocks of ``units`` columns each. Subclasses define the step (``call``), ``_kernel`` (the fused
    loop's step object) and their extra arguments."""

    _gates = 1
    _gate_order = None  # a permutation of the gate blocks for the fused loop's weights (None: as stored)

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 **kwargs):
        cls_name = type(self).__name__
        units = check_units(units, cls_name)
        super().__init__(**kwargs)
        self.units = units
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.dropout = _rate(dropout, "dropout", cls_name)
        self.recurrent_dropout = _rate(recurrent_dropout, "recurrent_dropout", cls_name)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"The `seed` of {cls_name} must be an integer or None. Received: seed={seed!r}")
        self.seed = seed
        # The cell's own stream for its dropout masks, as Keras's: always one (without a seed its seed is drawn
        # from the global generator, so ``lamina.utils.set_random_seed`` still governs it); its state is one of
        # the cell's non-trainable variables, not a weight.
        self.seed_generator = random.SeedGenerator(seed)
        self.output_size = units

    def build(self, input_shape) -> None:
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(f"The last dimension (features) of the inputs to {type(self).__name__} "
                             f"'{self.name}' must be known. Received: input_shape={tuple(input_shape)}")
        width = self._gates * self.units
        self.kernel = self.add_weight(shape=(input_dim, width), name="kernel", initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, width), name="recurrent_kernel", initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer, constraint=self.recurrent_constraint)
        if self.use_bias:
            self.bias = self.add_weight(shape=self._bias_shape(), name="bias", initializer=self._bias_init(),
                                        regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        else:
            self.bias = None
        self.built = True

    def _bias_shape(self) -> tuple:
        return (self._gates * self.units,)

    def _bias_init(self):
        return self.bias_initializer

    def get_initial_state(self, batch_size=None):
        sizes = self.state_size if isinstance(self.state_size, (list, tuple)) else [self.state_size]
        return [np.zeros((batch_size, d), dtype=self.compute_dtype) for d in sizes]

    # ------------------------------------------------------------------ the fused pass

    def _fused_activations(self):
        """The (apply, derivative) pairs the fused loop uses, or None when an activation is not one it knows."""
        pairs = [activation_pair(self.activation)]
        if hasattr(self, "recurrent_activation"):
            pairs.append(activation_pair(self.recurrent_activation))
        return None if any(p is None for p in pairs) else pairs

    def _can_fuse(self, training) -> bool:
        """Whether ``RNN`` may run this cell with the fused loop: the cell's own step (not a subclass's),
        activations the loop knows and no recurrent dropout while training (its per-gate masks on the state
        need a matmul per gate and step; the cell's ``call`` does that on the tape)."""
        owner = self._fused_call_owner()
        own = owner is not None and type(self).call is owner.call
        return own and self._fused_activations() is not None and not (training and 0 < self.recurrent_dropout)

    def _sequence_trainer(self, kernel, recurrent_kernel, input_bias, dtype):
        """An object running a whole training call's loops (``forward`` / ``backward``, see ``lstm_training``), or
        None: the fused loop of ``rnn_scan`` runs."""
        return None

    def _fused_call_owner(self) -> type | None:
        """The built-in class whose ``call`` the fused loop reproduces (None: never fuse)."""
        return None

    def _input_dropout_masks(self, step_input, training) -> list | None:
        """Per gate block (in the fused order), the input dropout mask, or None without dropout."""
        if not (training and 0 < self.dropout < 1):
            return None
        mask = self.get_dropout_mask(step_input)
        masks = list(mask) if isinstance(mask, (list, tuple)) else [mask] * self._gates
        return masks if self._gate_order is None else [masks[i] for i in self._gate_order]

    def _fused_weights(self):
        """Kernel, recurrent kernel, input bias and recurrent bias as arrays in the compute dtype, gate blocks
        in the fused order."""
        bias = None if self.bias is None else self._to_fused_order(unwrap(self.bias))
        return self._to_fused_order(unwrap(self.kernel)), self._to_fused_order(unwrap(self.recurrent_kernel)), \
            bias, None

    def _to_fused_order(self, a):
        if self._gate_order is None:
            return a
        blocks = split_gates(a, self._gates)
        return np.concatenate([blocks[i] for i in self._gate_order], axis=-1)

    def _from_fused_order(self, a):
        if self._gate_order is None:
            return a
        blocks = split_gates(a, self._gates)
        return np.concatenate([blocks[i] for i in np.argsort(self._gate_order)], axis=-1)

    def _weight_gradients(self, d_kernel, d_recurrent_kernel, d_input_bias, d_recurrent_bias) -> list:
        """The fused loop's weight gradients in the stored layout, in ``weights`` order."""
        grads = [self._from_fused_order(d_kernel), self._from_fused_order(d_recurrent_kernel)]
        if self.bias is not None:
            grads.append(self._from_fused_order(self._bias_gradient(d_input_bias, d_recurrent_bias)))
        return grads

    def _bias_gradient(self, d_input_bias, d_recurrent_bias):
        return d_input_bias

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(self._config())
        return config

    def _config(self) -> dict:
        return {
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": constraints.serialize(self.recurrent_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }


def split_gates(x, count: int):
    """``x``'s last axis in ``count`` equal blocks (views for arrays)."""
    width = x.shape[-1] // count
    return [x[..., i * width:(i + 1) * width] for i in range(count)]


# The cell arguments every built-in recurrent layer exposes as read-only properties.
CELL_PROPERTIES = ("units", "activation", "use_bias", "kernel_initializer", "recurrent_initializer",
                   "bias_initializer", "kernel_regularizer", "recurrent_regularizer", "bias_regularizer",
                   "kernel_constraint", "recurrent_constraint", "bias_constraint", "dropout", "recurrent_dropout")
