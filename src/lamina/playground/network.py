"""The network a ``Settings`` describes, built with a Keras-compatible module (lamina here; the
exported script writes the same calls for ``import keras``), and the labels in the form its loss takes.

Per hidden layer: ``Dense(units, activation)``; with batch_norm, ``Dense`` without activation, then
``BatchNormalization`` and ``Activation``; with dropout, a ``Dropout`` after it. The output is
``Dense(output_units, output activation)``.
"""

from __future__ import annotations

import numpy as np

from lamina.playground.settings import Settings

__all__ = ["OPTIMIZER_CLASSES", "build", "threshold", "targets"]

OPTIMIZER_CLASSES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad",
                     "nadam": "Nadam", "adamax": "Adamax"}


def _regularizer(keras, s: Settings):
    if s.regularization == "l1":
        return keras.regularizers.L1(l1=s.regularization_rate)
    if s.regularization == "l2":
        return keras.regularizers.L2(l2=s.regularization_rate)
    return None


def build(keras, s: Settings, n_features: int):
    """``(model, neuron_layers)``: the compiled model and, per hidden layer then the output, the layer
    whose output is that layer's activated units (what the page draws as neurons)."""
    layers = keras.layers
    stack = [keras.Input(shape=(n_features,))]
    neuron_layers = []
    for i, spec in enumerate(s.layers, 1):
        dense = layers.Dense(spec.units, activation=None if s.batch_norm else spec.activation,
                             kernel_regularizer=_regularizer(keras, s), name=f"hidden_{i}")
        stack.append(dense)
        if s.batch_norm:
            stack += [layers.BatchNormalization(name=f"batch_norm_{i}"),
                      layers.Activation(spec.activation, name=f"activation_{i}")]
        neuron_layers.append(stack[-1])
        if s.dropout > 0:
            stack.append(layers.Dropout(s.dropout, name=f"dropout_{i}"))
    output = layers.Dense(s.output_units, activation=s.resolved_output_activation(),
                          kernel_regularizer=_regularizer(keras, s), name="output")
    stack.append(output)
    neuron_layers.append(output)
    model = keras.Sequential(stack, name="playground")
    optimizer = getattr(keras.optimizers, OPTIMIZER_CLASSES[s.optimizer])(learning_rate=s.learning_rate)
    kwargs = {"lint": False} if getattr(keras, "__name__", "") == "lamina" else {}  # the page shows lint's findings
    model.compile(optimizer=optimizer, loss=s.resolved_loss(), **kwargs)
    return model, neuron_layers


def targets(labels: np.ndarray, s: Settings) -> np.ndarray:
    """Labels 0/1 as the loss wants them: class indices for sparse crossentropy, a float column for one
    output unit, one-hot rows for two."""
    if s.resolved_loss() == "sparse_categorical_crossentropy":
        return labels.astype("int64")
    if s.output_units == 1:
        return labels.astype("float32").reshape(-1, 1)
    return np.eye(2, dtype="float32")[labels]


def threshold(s: Settings) -> float:
    """Where one output unit's value splits the classes: 0 for the hinge losses (labels -1/1), else 0.5."""
    return 0.0 if s.resolved_loss() in ("hinge", "squared_hinge") else 0.5
