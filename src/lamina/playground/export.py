"""What the page downloads: the trained model as a ``.keras`` file, and a Python script that builds and
trains the same network on the same data (it runs with ``import lamina as keras`` and with ``import keras``).
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile

from lamina.playground import data, network
from lamina.playground.session import COMPUTE_LOCK, Session
from lamina.playground.settings import Settings

__all__ = ["keras_bytes", "python_code"]


def keras_bytes(session: Session) -> bytes:
    """The session's model saved by lamina's ``.keras`` writer, as bytes (the file lives in a private
    temporary folder the server names itself, removed afterwards)."""
    folder = tempfile.mkdtemp(prefix="lamina-playground-")
    try:
        path = os.path.join(folder, "playground.keras")
        with COMPUTE_LOCK:
            session.model.save(path)
        with open(path, "rb") as f:
            return f.read()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _layer_lines(s: Settings) -> list[str]:
    reg = {"l1": f"keras.regularizers.L1(l1={s.regularization_rate!r})",
           "l2": f"keras.regularizers.L2(l2={s.regularization_rate!r})"}.get(s.regularization)
    reg_arg = f", kernel_regularizer={reg}" if reg else ""
    lines = [f"    keras.Input(shape=({len(s.features)},)),"]
    for i, spec in enumerate(s.layers, 1):
        act = "None" if s.batch_norm else repr(spec.activation)
        lines.append(f"    layers.Dense({spec.units}, activation={act}{reg_arg}, name='hidden_{i}'),")
        if s.batch_norm:
            lines.append(f"    layers.BatchNormalization(name='batch_norm_{i}'),")
            lines.append(f"    layers.Activation({spec.activation!r}, name='activation_{i}'),")
        if s.dropout > 0:
            lines.append(f"    layers.Dropout({s.dropout!r}, name='dropout_{i}'),")
    lines.append(f"    layers.Dense({s.output_units}, activation={s.resolved_output_activation()!r}{reg_arg}, "
                 "name='output'),")
    return lines


def python_code(s: Settings, epochs: int = 100) -> str:
    """A standalone script: the data generator (the playground's own source), the network, ``fit`` and
    the test accuracy. Every value in it comes from validated settings, written with ``repr``."""
    gen = inspect.getsource(data.GENERATORS[s.dataset])
    feats = inspect.getsource(data.features)
    opt = network.OPTIMIZER_CLASSES[s.optimizer]
    if s.resolved_loss() == "sparse_categorical_crossentropy":
        target = "y_train, y_test = label_train, label_test"
    elif s.output_units == 1:
        target = "y_train, y_test = (label_train.reshape(-1, 1).astype('float32'), label_test.reshape(-1, 1)" \
                 ".astype('float32'))"
    else:
        target = "y_train, y_test = np.eye(2, dtype='float32')[label_train], np.eye(2, dtype='float32')[label_test]"
    if s.output_units == 2:
        predict = "predicted = (out[:, 1] > out[:, 0]).astype('int64')"
    else:
        predict = f"predicted = (out[:, 0] > {network.threshold(s)!r}).astype('int64')"
    return f'''"""A network from lamina playground: {s.dataset}, {len(s.layers)} hidden layer(s).

Runs as is with lamina; for Keras 3, replace the first import with `import keras`.
"""
import lamina as keras
import numpy as np
layers = keras.layers


{gen}

{feats}

rng = np.random.default_rng({s.seed})
points, label = {s.dataset}({s.points}, {s.noise!r}, rng)
order = rng.permutation({s.points})
points, label = points[order].astype("float32"), label[order].astype("int64")
cut = min({s.points} - 1, max(1, int(round({s.points} * {s.train_ratio!r}))))
names = {list(s.features)!r}
x_train, x_test = features(points[:cut], names), features(points[cut:], names)
label_train, label_test = label[:cut], label[cut:]
{target}

keras.utils.set_random_seed({s.seed})
model = keras.Sequential([
{chr(10).join(_layer_lines(s))}
], name="playground")
model.compile(optimizer=keras.optimizers.{opt}(learning_rate={s.learning_rate!r}), loss={s.resolved_loss()!r})
model.fit(x_train, y_train, batch_size={s.batch_size}, epochs={int(epochs)}, verbose=0)
out = np.asarray(model.predict(x_test, verbose=0))
{predict}
print(f"test accuracy: {{np.mean(predicted == label_test):.3f}}")
'''
